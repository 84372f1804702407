"""The records of the point-cloud datasets: ModelNet40, ModelNet10 and ScanObjectNN's three variants, with the
releases they are read from (ModelNet40 from two; the ScanObjectNN variants share one) and their published sizes,
PointCLIP's Table 1 presets and the layouts the loaders expect (`calip3d.datasets.pointclouds`). Sources as in
`data_sources.md` (November 2026). No point-cloud release has a val split, and CALIP published no 3D betas."""

from __future__ import annotations

from .files import Release, RemoteFile, unpack
from .record import POINTS, DatasetRecord, PointLayout, SplitSizes

POINTCLOUD_ZS_TEMPLATE = "point cloud depth map of a {}."  # PointCLIP zero-shot
POINTCLOUD_FS_TEMPLATE = "point cloud of a big {}."  # PointCLIP few-shot

MODELNET40_CLASSES = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone", "cup", "curtain",
    "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp", "laptop", "mantel",
    "monitor", "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink", "sofa", "stairs", "stool",
    "table", "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox",
)
MODELNET10_CLASSES = (
    "bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table", "toilet",
)
SCANOBJECTNN_CLASSES = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table",
    "bed", "pillow", "sink", "sofa", "toilet",
)

H5_DIR = "modelnet40_ply_hdf5_2048"
RESAMPLED_DIR = "modelnet40_normal_resampled"
SCANOBJECTNN_H5_DIR = "h5_files"  # the folder of ScanObjectNN's release holding each variant's folder
_SHAPENET = "https://shapenet.cs.stanford.edu/media"

H5_LAYOUT = f"""<data_root>/
  {H5_DIR}/
    shape_names.txt                  (40 class names; line i is label i)
    train_files.txt, test_files.txt  (optional lists of h5 files, found by file name in this folder)
    ply_data_train0.h5 ... ply_data_train4.h5, ply_data_test0.h5, ply_data_test1.h5
Get it from the modelnet40_ply_hdf5_2048 release (PointNet, modelnet40_ply_hdf5_2048.zip)."""
RESAMPLED_LAYOUT = f"""<data_root>/
  {RESAMPLED_DIR}/
    modelnet40_shape_names.txt, modelnet40_{{train,test}}.txt, modelnet10_{{train,test}}.txt
    airplane/airplane_0001.txt ...   (one folder per class; lines x,y,z,nx,ny,nz)
Get it from the modelnet40_normal_resampled release (PointNet++, modelnet40_normal_resampled.zip)."""
SCANOBJECTNN_LAYOUT = (
    "<data_root>/scanobjectnn/h5_files/  (or <data_root>/h5_files/ or <data_root>/scanobjectnn/)\n"
    "  main_split_nobg/  {training,test}_objectdataset.h5                       (OBJ_ONLY)\n"
    "  main_split/       {training,test}_objectdataset.h5                       (OBJ_BG)\n"
    "  main_split/       {training,test}_objectdataset_augmentedrot_scale75.h5  (PB_T50_RS, \"hardest\")\n"
    "Get it from ScanObjectNN h5_files.zip (request it via the ScanObjectNN terms-of-use form)."
)

MODELNET40_H5 = Release(
    key="modelnet40", title="ModelNet40 (h5, 2048 points)", folder=H5_DIR, loaders=("modelnet40",), fmt="h5",
    files=(RemoteFile(
        f"{H5_DIR}.zip", unpack(H5_DIR, H5_DIR),
        urls=(f"https://huggingface.co/datasets/Msun/modelnet40/resolve/main/{H5_DIR}.zip",
              f"https://github.com/ma-xu/pointMLP-pytorch/releases/download/Modenet40_dataset/{H5_DIR}.zip",
              f"{_SHAPENET}/{H5_DIR}.zip"),
        size_hint="435 MB"),),
    origin=f"`{H5_DIR}.zip` (PointNet; the original {_SHAPENET}/{H5_DIR}.zip is offline; sources above)",
)
MODELNET_RESAMPLED = Release(
    key=RESAMPLED_DIR, title="ModelNet40 / ModelNet10 (resampled txt)", folder=RESAMPLED_DIR,
    loaders=("modelnet40", "modelnet10"), fmt="resampled",
    files=(RemoteFile(
        f"{RESAMPLED_DIR}.zip", unpack(RESAMPLED_DIR, RESAMPLED_DIR), urls=(f"{_SHAPENET}/{RESAMPLED_DIR}.zip",),
        size_hint="1.6 GB",
        alternative=RemoteFile(
            f"{RESAMPLED_DIR}.tar.gz", unpack(RESAMPLED_DIR, RESAMPLED_DIR),
            urls=(f"https://huggingface.co/datasets/cminst/ModelNet40/resolve/main/{RESAMPLED_DIR}.tar.gz",),
            size=6_977_525_760,
            checksum="sha256:4a65e4946e1c473a1a239e7ad8cc88c731d9d698ea11e68aeaac69005bdcd262")),),
    origin=f"`{RESAMPLED_DIR}.zip` (PointNet++; 1.6 GB; sources above)",
)
SCANOBJECTNN = Release(
    key="scanobjectnn", title="ScanObjectNN (OBJ_ONLY, OBJ_BG, PB_T50_RS)", folder="scanobjectnn",
    loaders=("scanobjectnn-objonly", "scanobjectnn-objbg", "scanobjectnn-hardest"), fmt="h5", access="manual",
    files=(RemoteFile("h5_files.zip", None),),
    instructions=(
        "ScanObjectNN's authors require accepting their terms of use before download: fill in the form at "
        "https://forms.gle/ZZRnnmaUdwfRucoy7 (announced in hkust-vgd/scanobjectnn#41, "
        "https://hkust-vgd.github.io/scanobjectnn/), download h5_files.zip from the link you receive and "
        "unzip it into {root}/scanobjectnn/, so that {root}/scanobjectnn/h5_files/main_split/ "
        "and {root}/scanobjectnn/h5_files/main_split_nobg/ hold the *_objectdataset*.h5 files."),
    origin=("ScanObjectNN `h5_files.zip`, https://hkust-vgd.github.io/scanobjectnn/ (ask for it through the "
            "terms-of-use form)"),
)

# PointCLIP Table 1: view weights (front, right, back, left, top, bottom), searched on TEST labels (an oracle), and
# the best zero-shot (projection distance, depth-map side length).
_SCANOBJECTNN_TABLE1 = {"view_weights": (3, 10, 7, 4, 1, 0), "projection": (1.8, 196)}


def _scanobjectnn(name: str, title: str, h5_file: tuple[str, str], sizes: SplitSizes, *aliases: str) -> DatasetRecord:
    """One ScanObjectNN variant: its folder under h5_files/ and file name after `{training,test}_`, and its sizes."""
    return DatasetRecord(name=name, kind=POINTS, title=title, template=POINTCLOUD_ZS_TEMPLATE, aliases=aliases,
                         classnames=SCANOBJECTNN_CLASSES, presets_key="scanobjectnn",
                         points=PointLayout(("h5",), (SCANOBJECTNN_LAYOUT,), h5_file), releases=(SCANOBJECTNN,),
                         sizes=(sizes,), **_SCANOBJECTNN_TABLE1)


POINT_RECORDS: tuple[DatasetRecord, ...] = (
    DatasetRecord(name="modelnet40", kind=POINTS, title="ModelNet40", template=POINTCLOUD_ZS_TEMPLATE,
                  classnames=MODELNET40_CLASSES, presets_key="modelnet40",
                  points=PointLayout(("h5", "resampled"), (H5_LAYOUT, RESAMPLED_LAYOUT)),
                  releases=(MODELNET40_H5, MODELNET_RESAMPLED),
                  sizes=(SplitSizes(40, 9_840, None, 2_468), SplitSizes(40, 9_843, None, 2_468)),
                  view_weights=(3, 9, 5, 4, 5, 4), projection=(1.6, 121)),
    DatasetRecord(name="modelnet10", kind=POINTS, title="ModelNet10", template=POINTCLOUD_ZS_TEMPLATE,
                  classnames=MODELNET10_CLASSES, presets_key="modelnet10",
                  points=PointLayout(("resampled",), (RESAMPLED_LAYOUT,)), releases=(MODELNET_RESAMPLED,),
                  sizes=(SplitSizes(10, 3_991, None, 908),), view_weights=(2, 5, 7, 10, 5, 6), projection=(1.7, 100)),
    _scanobjectnn("scanobjectnn-objonly", "ScanObjectNN OBJ_ONLY", ("main_split_nobg", "objectdataset.h5"),
                  SplitSizes(15, 2_309, None, 581), "obj_only", "scanobjectnn_obj_only"),
    _scanobjectnn("scanobjectnn-objbg", "ScanObjectNN OBJ_BG", ("main_split", "objectdataset.h5"),
                  SplitSizes(15, 2_309, None, 581), "obj_bg", "scanobjectnn_obj_bg"),
    _scanobjectnn("scanobjectnn-hardest", "ScanObjectNN PB_T50_RS",
                  ("main_split", "objectdataset_augmentedrot_scale75.h5"), SplitSizes(15, 11_416, None, 2_882),
                  "pb_t50_rs", "scanobjectnn_pb_t50_rs", "hardest"),
)
