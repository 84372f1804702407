"""The one registry of datasets, images and point clouds alike: lookup by name or alias, kind, class names, default
prompt and the published presets of each dataset (the numbers themselves live in `calip3d.presets`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from calip3d.errors import CalipError
from calip3d.presets import (
    DEFAULT_3D_BETAS, DEFAULT_3D_BETAS_SOURCE, PAPER_BETAS, PAPER_BETAS_SOURCE, POINTCLIP_TABLE1_PROJECTION,
    POINTCLIP_TABLE1_VIEW_WEIGHTS, beta_search_range,
)

IMAGES, POINTS = "images", "points"

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


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset. `classnames` is the fixed label order where the release does not store it (None: read from the
    release, e.g. CoOp's split files); `template` the default single prompt (CoOp's per-dataset template, PointCLIP's
    zero-shot one for point clouds); `presets_key` the key of PointCLIP's Table 1 for point-cloud datasets."""

    name: str
    kind: str
    title: str
    template: str
    aliases: tuple[str, ...] = ()
    classnames: tuple[str, ...] | None = None
    formats: tuple[str, ...] = ()
    presets_key: str | None = None

    @property
    def is_points(self) -> bool:
        return self.kind == POINTS

    @property
    def paper_betas(self) -> tuple[float, float] | None:
        """CALIP's published (beta2, beta3) for this dataset, or None (3D: none published)."""
        return PAPER_BETAS.get(self.name)

    @property
    def default_betas(self) -> tuple[tuple[float, float], str]:
        """(beta2, beta3) used when the user gives none, and where they come from."""
        if self.paper_betas is not None:
            return self.paper_betas, PAPER_BETAS_SOURCE
        return DEFAULT_3D_BETAS, DEFAULT_3D_BETAS_SOURCE

    @property
    def beta_search_range(self) -> tuple[float, float]:
        """Upper bounds of the beta2 and beta3 grids (the official ones, widened to cover the paper's values)."""
        return beta_search_range(self.name)

    @property
    def table1_view_weights(self) -> tuple[float, ...] | None:
        """PointCLIP's Table 1 view weights (searched on test labels: an oracle), or None."""
        return POINTCLIP_TABLE1_VIEW_WEIGHTS.get(self.presets_key or "")

    @property
    def table1_projection(self) -> tuple[float, int] | None:
        """PointCLIP's Table 1 (distance, resolution), or None."""
        return POINTCLIP_TABLE1_PROJECTION.get(self.presets_key or "")


def _images(name: str, title: str, template: str, *aliases: str) -> DatasetInfo:
    return DatasetInfo(name=name, kind=IMAGES, title=title, template=template, aliases=aliases)


def _points(name: str, title: str, classnames: tuple[str, ...] | None, formats: tuple[str, ...], key: str,
            *aliases: str) -> DatasetInfo:
    return DatasetInfo(name=name, kind=POINTS, title=title, template=POINTCLOUD_ZS_TEMPLATE, aliases=aliases,
                       classnames=classnames, formats=formats, presets_key=key)


# Image templates: CoOp's CUSTOM_TEMPLATES (trainers/zsclip.py). Aliases are matched ignoring case, '-', '_' and
# spaces, so CoOp's class names (OxfordPets) and folder names (caltech-101) need no entry of their own.
_ENTRIES = (
    _images("imagenet", "ImageNet", "a photo of a {}.", "imagenet1k", "in1k", "ilsvrc2012"),
    _images("caltech101", "Caltech101", "a photo of a {}.", "caltech"),
    _images("oxford_pets", "OxfordPets", "a photo of a {}, a type of pet.", "pets", "oxford_iiit_pet"),
    _images("stanford_cars", "StanfordCars", "a photo of a {}.", "cars"),
    _images("oxford_flowers", "OxfordFlowers", "a photo of a {}, a type of flower.", "flowers102", "flowers",
            "oxford_flowers102"),
    _images("food101", "Food101", "a photo of {}, a type of food.", "food"),
    _images("fgvc_aircraft", "FGVCAircraft", "a photo of a {}, a type of aircraft.", "aircraft"),
    _images("sun397", "SUN397", "a photo of a {}.", "sun"),
    _images("dtd", "DescribableTextures", "{} texture.", "textures", "describable_textures"),
    _images("eurosat", "EuroSAT", "a centered satellite photo of {}."),
    _images("ucf101", "UCF101", "a photo of a person doing {}.", "ucf"),
    _points("modelnet40", "ModelNet40", MODELNET40_CLASSES, ("h5", "resampled"), "modelnet40"),
    _points("modelnet10", "ModelNet10", MODELNET10_CLASSES, ("resampled",), "modelnet10"),
    _points("scanobjectnn-objonly", "ScanObjectNN OBJ_ONLY", SCANOBJECTNN_CLASSES, ("h5",), "scanobjectnn",
            "obj_only", "scanobjectnn_obj_only"),
    _points("scanobjectnn-objbg", "ScanObjectNN OBJ_BG", SCANOBJECTNN_CLASSES, ("h5",), "scanobjectnn",
            "obj_bg", "scanobjectnn_obj_bg"),
    _points("scanobjectnn-hardest", "ScanObjectNN PB_T50_RS", SCANOBJECTNN_CLASSES, ("h5",), "scanobjectnn",
            "pb_t50_rs", "scanobjectnn_pb_t50_rs", "hardest"),
)
DATASETS: dict[str, DatasetInfo] = {entry.name: entry for entry in _ENTRIES}

# --label-set names for your own files: the point-cloud class lists (ScanObjectNN's three variants share one).
LABEL_SETS: dict[str, tuple[str, ...]] = {
    "modelnet40": MODELNET40_CLASSES, "modelnet10": MODELNET10_CLASSES, "scanobjectnn": SCANOBJECTNN_CLASSES,
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_LOOKUP: dict[str, str] = {_norm(alias): entry.name for entry in _ENTRIES for alias in
                           (entry.name, entry.title, *entry.aliases)}


def get_dataset(name: str, kind: str | None = None) -> DatasetInfo:
    """The registry entry for `name` or an alias (case, '-', '_' and spaces ignored); `kind` restricts the lookup to
    "images" or "points"."""
    key = _LOOKUP.get(_norm(name))
    if key is None or (kind is not None and DATASETS[key].kind != kind):
        names = [d.name for d in _ENTRIES if kind is None or d.kind == kind]
        what = {IMAGES: "image dataset", POINTS: "point-cloud dataset"}.get(kind or "", "dataset")
        raise CalipError(f"unknown {what} '{name}'; expected one of: {', '.join(names)}")
    return DATASETS[key]


def is_point_dataset(name: str) -> bool:
    """True for a point-cloud dataset name or alias; False for an image dataset; CalipError for an unknown name."""
    return get_dataset(name).is_points
