"""Where each dataset comes from: the registry of files, sources and published checksums.

Facts (URLs in order of preference, byte counts, checksums) are those of `data_sources.md` (November 2026); a
checksum is listed only where a trustworthy source publishes it (TFDS checksum files, torchvision's md5, Hugging
Face LFS pointers). Everything else is checked by its exact published byte count and by the sha256 recorded in the
manifest on first download. The layout each dataset must end up in is the loaders' (`calip3d.datasets`).

Tests substitute entries with `monkeypatch.setitem(DATASETS, key, dataclasses.replace(entry, files=...))`.
"""

from __future__ import annotations

from dataclasses import dataclass

COOP_DATASETS_MD = "https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md"
ACCESS = ("download", "mirror", "manual")


@dataclass(frozen=True)
class Install:
    """How a downloaded file becomes part of the dataset: `target` is its path under the data root.

    A plain file (`archive=False`) is copied to `target`. An archive is extracted, then each of `nested` (archives
    inside it, each relative to the previous extraction) in turn, and `take` (a path inside the last extraction,
    "" = all of it) becomes `target`.
    """

    target: str
    archive: bool = False
    take: str = ""
    nested: tuple[str, ...] = ()


def copy_to(target: str) -> Install:
    """A plain file placed at `target`."""
    return Install(target)


def unpack(take: str, target: str, nested: tuple[str, ...] = ()) -> Install:
    """An archive whose `take` folder (after extracting `nested` archives in turn) becomes `target`."""
    return Install(target, archive=True, take=take, nested=nested)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset release.

    `name` is the release's own file name (also the path tried on a mirror); `urls` are tried in order, then
    Google Drive (`gdrive_id`, through gdown). `size` is an exact byte count or None; `size_hint` an approximate
    size, shown only. `checksum` is "sha256:<hex>" or "md5:<hex>" as published, or None. `alternative` is a
    different file giving the same data, tried when every source of this one fails. `install` is None for files
    that calip3d never installs itself (manual-only datasets).
    """

    name: str
    install: Install | None
    urls: tuple[str, ...] = ()
    gdrive_id: str | None = None
    size: int | None = None
    checksum: str | None = None
    size_hint: str | None = None
    alternative: RemoteFile | None = None

    def choices(self) -> tuple[RemoteFile, ...]:
        """This file, then its alternatives in order."""
        return (self,) + (self.alternative.choices() if self.alternative else ())


@dataclass(frozen=True)
class Dataset:
    """One registry entry: the files that make up `folder` (a folder directly under the data root).

    `loaders` are the names the loaders take for this release (all are checked for presence), with point-cloud
    format `fmt`. `access`: "download"; "mirror" (the official host is gone: fetched only from a user-given mirror,
    checked by checksum); "manual" (never downloaded: `instructions` say what to get, from where, where to put it).
    """

    key: str
    title: str
    folder: str
    files: tuple[RemoteFile, ...]
    loaders: tuple[str, ...]
    fmt: str | None = None
    access: str = "download"
    instructions: str = ""

    def __post_init__(self) -> None:
        if self.access not in ACCESS:
            raise ValueError(f"{self.key}: access must be one of {ACCESS}, got {self.access!r}")


def _split(folder: str, coop_name: str, drive_id: str) -> RemoteFile:
    """CoOp's split JSON for a dataset: on Google Drive only, no checksum published."""
    name = f"split_zhou_{coop_name}.json"
    return RemoteFile(name, copy_to(f"{folder}/{name}"), gdrive_id=drive_id)


_SHAPENET = "https://shapenet.cs.stanford.edu/media"
_VGG = "https://www.robots.ox.ac.uk/~vgg/data"
_RESAMPLED = "modelnet40_normal_resampled"

_ENTRIES = (
    Dataset(
        key="modelnet40", title="ModelNet40 (h5, 2048 points)", folder="modelnet40_ply_hdf5_2048",
        loaders=("modelnet40",), fmt="h5",
        files=(RemoteFile(
            "modelnet40_ply_hdf5_2048.zip", unpack("modelnet40_ply_hdf5_2048", "modelnet40_ply_hdf5_2048"),
            urls=("https://huggingface.co/datasets/Msun/modelnet40/resolve/main/modelnet40_ply_hdf5_2048.zip",
                  "https://github.com/ma-xu/pointMLP-pytorch/releases/download/Modenet40_dataset/"
                  "modelnet40_ply_hdf5_2048.zip",
                  f"{_SHAPENET}/modelnet40_ply_hdf5_2048.zip"),
            size_hint="435 MB"),),
    ),
    Dataset(
        key=_RESAMPLED, title="ModelNet40 / ModelNet10 (resampled txt)", folder=_RESAMPLED,
        loaders=("modelnet40", "modelnet10"), fmt="resampled",
        files=(RemoteFile(
            f"{_RESAMPLED}.zip", unpack(_RESAMPLED, _RESAMPLED), urls=(f"{_SHAPENET}/{_RESAMPLED}.zip",),
            size_hint="1.6 GB",
            alternative=RemoteFile(
                f"{_RESAMPLED}.tar.gz", unpack(_RESAMPLED, _RESAMPLED),
                urls=(f"https://huggingface.co/datasets/cminst/ModelNet40/resolve/main/{_RESAMPLED}.tar.gz",),
                size=6_977_525_760,
                checksum="sha256:4a65e4946e1c473a1a239e7ad8cc88c731d9d698ea11e68aeaac69005bdcd262")),),
    ),
    Dataset(
        key="scanobjectnn", title="ScanObjectNN (OBJ_ONLY, OBJ_BG, PB_T50_RS)", folder="scanobjectnn",
        loaders=("scanobjectnn-objonly", "scanobjectnn-objbg", "scanobjectnn-hardest"), fmt="h5",
        access="manual",
        files=(RemoteFile("h5_files.zip", None),),
        instructions=(
            "ScanObjectNN's authors require accepting their terms of use before download: fill in the form at "
            "https://forms.gle/ZZRnnmaUdwfRucoy7 (announced in hkust-vgd/scanobjectnn#41, "
            "https://hkust-vgd.github.io/scanobjectnn/), download h5_files.zip from the link you receive and "
            "unzip it into {root}/scanobjectnn/, so that {root}/scanobjectnn/h5_files/main_split/ "
            "and {root}/scanobjectnn/h5_files/main_split_nobg/ hold the *_objectdataset*.h5 files."),
    ),
    Dataset(
        key="imagenet", title="ImageNet (ILSVRC-2012)", folder="imagenet", loaders=("imagenet",), access="manual",
        files=(
            RemoteFile("ILSVRC2012_img_val.tar", None, size=6_744_924_160,
                       checksum="sha256:c7e06a6c0baccf06d8dbeb6577d71efff84673a5dbdd50633ab44f8ea0456ae0"),
            RemoteFile("classnames.txt", None, gdrive_id="1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"),
        ),
        instructions=(
            "ImageNet's licence requires registration: download ILSVRC2012_img_train.tar and "
            "ILSVRC2012_img_val.tar from https://image-net.org after signing in, extract them into "
            "{root}/imagenet/images/train/<wnid>/ and {root}/imagenet/images/val/<wnid>/ (sort the flat val "
            "images into wnid folders, e.g. with the common valprep.sh), and put CoOp's classnames.txt "
            f"(Google Drive id 1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF, linked from {COOP_DATASETS_MD}) at "
            "{root}/imagenet/classnames.txt."),
    ),
    Dataset(
        key="caltech101", title="Caltech101", folder="caltech-101", loaders=("caltech101",),
        files=(
            RemoteFile(
                "caltech-101.zip",
                unpack("101_ObjectCategories", "caltech-101/101_ObjectCategories",
                       nested=("caltech-101/101_ObjectCategories.tar.gz",)),
                urls=("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip?download=1",),
                size=137_414_764,
                checksum="sha256:331234750fc7f77520e50d9565e8b6907b03565e30320da1401130db08c61f91",
                alternative=RemoteFile(
                    "101_ObjectCategories.tar.gz",
                    unpack("101_ObjectCategories", "caltech-101/101_ObjectCategories"),
                    gdrive_id="137RyRjvTBkBiIfeYBNZBtViDHQ6_Ewsp", size=131_740_031,
                    checksum="sha256:af6ece2f339791ca20f855943d8b55dd60892c0a25105fcd631ee3d6430f9926")),
            _split("caltech-101", "Caltech101", "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"),
        ),
    ),
    Dataset(
        key="oxford_pets", title="Oxford-IIIT Pets", folder="oxford_pets", loaders=("oxford_pets",),
        files=(
            RemoteFile("images.tar.gz", unpack("images", "oxford_pets/images"),
                       urls=("https://thor.robots.ox.ac.uk/~vgg/data/pets/images.tar.gz",
                             f"{_VGG}/pets/data/images.tar.gz"),
                       size=791_918_971,
                       checksum="sha256:67195c5e1c01f1ab5f9b6a5d22b8c27a580d896ece458917e61d459337fa318d"),
            RemoteFile("annotations.tar.gz", unpack("annotations", "oxford_pets/annotations"),
                       urls=("https://thor.robots.ox.ac.uk/~vgg/data/pets/annotations.tar.gz",
                             f"{_VGG}/pets/data/annotations.tar.gz"),
                       size=19_173_078,
                       checksum="sha256:52425fb6de5c424942b7626b428656fcbd798db970a937df61750c0f1d358e91"),
            _split("oxford_pets", "OxfordPets", "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"),
        ),
    ),
    Dataset(
        key="stanford_cars", title="Stanford Cars", folder="stanford_cars", loaders=("stanford_cars",),
        access="mirror",
        files=(
            RemoteFile("cars_train.tgz", unpack("cars_train", "stanford_cars/cars_train"), size=979_269_282,
                       checksum="sha256:512b227b30e2f0a8aab9e09485786ab4479582073a144998da74d64b801fd288"),
            RemoteFile("cars_test.tgz", unpack("cars_test", "stanford_cars/cars_test"), size=977_350_468,
                       checksum="sha256:bffea656d6f425cba3c91c6d83336e4c5f86c6cffd8975b0f375d3a10da8e243"),
            RemoteFile("car_devkit.tgz", unpack("devkit", "stanford_cars/devkit"), size=330_960,
                       checksum="sha256:b97deb463af7d58b6bfaa18b2a4de9829f0f79e8ce663dfa9261bf7810e9accd"),
            RemoteFile("cars_test_annos_withlabels.mat", copy_to("stanford_cars/cars_test_annos_withlabels.mat"),
                       size=185_758,
                       checksum="sha256:790f75be8ea34eeded134cc559332baf23e30e91367e9ddca97d26ed9b895f05"),
            _split("stanford_cars", "StanfordCars", "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"),
        ),
        instructions=(
            "the official Stanford Cars host is gone (pytorch/vision#7545) and torchvision removed its download; "
            "calip3d downloads no unofficial copy. Give a mirror that holds the exact files cars_train.tgz, "
            "cars_test.tgz, car_devkit.tgz and cars_test_annos_withlabels.mat (checked by their published "
            "sha256): `--mirror URL` or CALIP3D_MIRROR. Or place them yourself: {root}/stanford_cars/cars_train/, "
            "cars_test/, devkit/ (extracted from the .tgz files) and cars_test_annos_withlabels.mat, with CoOp's "
            f"split_zhou_StanfordCars.json ({COOP_DATASETS_MD})."),
    ),
    Dataset(
        key="oxford_flowers", title="Oxford Flowers102", folder="oxford_flowers", loaders=("oxford_flowers",),
        files=(
            RemoteFile("102flowers.tgz", unpack("jpg", "oxford_flowers/jpg"),
                       urls=(f"{_VGG}/flowers/102/102flowers.tgz",), size=344_862_509,
                       checksum="sha256:2d01ecc807db462958cfe3d92f57a8c252b4abd240eb955770201e45f783b246"),
            RemoteFile("imagelabels.mat", copy_to("oxford_flowers/imagelabels.mat"),
                       urls=(f"{_VGG}/flowers/102/imagelabels.mat",), size=502,
                       checksum="sha256:4903e94206bac23bf772aadf06451916df56b58fc483a62db32a97b82656651d"),
            RemoteFile("setid.mat", copy_to("oxford_flowers/setid.mat"),
                       urls=(f"{_VGG}/flowers/102/setid.mat",), size=14_989,
                       checksum="sha256:46b8678f91fd95d3c8f4feab80d271a6c834a1dd896fe29fd3e6ad9ce5c8dccd"),
            RemoteFile("cat_to_name.json", copy_to("oxford_flowers/cat_to_name.json"),
                       gdrive_id="1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0"),
            _split("oxford_flowers", "OxfordFlowers", "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"),
        ),
    ),
    Dataset(
        key="food101", title="Food-101", folder="food-101", loaders=("food101",),
        files=(
            RemoteFile("food-101.tar.gz", unpack("food-101", "food-101"),
                       urls=("http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",), size=4_996_278_331,
                       checksum="sha256:d97d15e438b7f4498f96086a4f7e2fa42a32f2712e87d3295441b2b6314053a4"),
            _split("food-101", "Food101", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"),
        ),
    ),
    Dataset(
        key="fgvc_aircraft", title="FGVC-Aircraft", folder="fgvc_aircraft", loaders=("fgvc_aircraft",),
        files=(RemoteFile("fgvc-aircraft-2013b.tar.gz", unpack("fgvc-aircraft-2013b/data", "fgvc_aircraft"),
                          urls=(f"{_VGG}/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",),
                          size_hint="2.75 GB"),),
    ),
    Dataset(
        key="sun397", title="SUN397", folder="sun397", loaders=("sun397",), access="mirror",
        files=(
            RemoteFile("SUN397.tar.gz", unpack("SUN397", "sun397/SUN397"), size=39_077_296_924,
                       checksum="sha256:f404130965a7ad77bed5ececc71e720ab50f3cc1e1bb257257610d38f3b928ec"),
            _split("sun397", "SUN397", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"),
        ),
        instructions=(
            "the official https://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz is dead (pytorch/vision#9348, "
            "CoOp#90); calip3d downloads no unofficial copy. Give a mirror that holds the exact SUN397.tar.gz "
            "(checked by its published sha256): `--mirror URL` or CALIP3D_MIRROR. Or place it yourself: extract it "
            "so that {root}/sun397/SUN397/<letter>/<scene>/sun_*.jpg exist, with CoOp's split_zhou_SUN397.json "
            f"({COOP_DATASETS_MD}) at {{root}}/sun397/split_zhou_SUN397.json."),
    ),
    Dataset(
        key="dtd", title="Describable Textures (DTD)", folder="dtd", loaders=("dtd",),
        files=(
            RemoteFile("dtd-r1.0.1.tar.gz", unpack("dtd", "dtd"),
                       urls=(f"{_VGG}/dtd/download/dtd-r1.0.1.tar.gz",), size=625_239_812,
                       checksum="sha256:e42855a52a4950a3b59612834602aa253914755c95b0cff9ead6d07395f8e205"),
            _split("dtd", "DescribableTextures", "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"),
        ),
    ),
    Dataset(
        key="eurosat", title="EuroSAT (RGB)", folder="eurosat", loaders=("eurosat",),
        files=(
            RemoteFile("EuroSAT.zip", unpack("2750", "eurosat/2750"),
                       urls=("https://huggingface.co/datasets/torchgeo/eurosat/resolve/"
                             "c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip",),
                       checksum="md5:c8fa014336c82ac7804f0398fcb19387"),
            _split("eurosat", "EuroSAT", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"),
        ),
    ),
    Dataset(
        key="ucf101", title="UCF101 (CoOp's middle frames)", folder="ucf101", loaders=("ucf101",),
        files=(
            RemoteFile("UCF-101-midframes.zip", unpack("UCF-101-midframes", "ucf101/UCF-101-midframes"),
                       gdrive_id="10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O"),
            _split("ucf101", "UCF101", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"),
        ),
    ),
)

DATASETS: dict[str, Dataset] = {entry.key: entry for entry in _ENTRIES}
