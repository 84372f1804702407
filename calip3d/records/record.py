"""The shape of a dataset record: everything calip3d knows about one dataset, in one place.

A record holds the dataset's names, kind, prompt, class names (where the release does not store them), how it is
laid out and read (`ImageLayout` or `PointLayout`: the reader is also its layout check), the releases to fetch
(`Release`, with their files, sources and checksums), whether it has a val split, and its published presets
(CALIP's betas, PointCLIP's Table 1 view weights and projection, Tip-Adapter's released config) and its published
size (`SplitSizes`: classes and items per split, data/README.md's dataset tables). A part a record lacks is a
`CalipError` naming the dataset (`DatasetRecord.require`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

from calip3d.errors import CalipError

from .files import Release

IMAGES, POINTS = "images", "points"


class TipAdapterRelease(NamedTuple):
    """One `configs/<dataset>.yaml` of Tip-Adapter (gaopengcuhk/Tip-Adapter): the search grids' upper bounds
    `search_scale` (beta, alpha) and steps, the initial beta and alpha (Tip-Adapter-F trains with them), its
    training epochs and the augmented passes averaged into the cache keys (`augment_epoch`)."""

    search_scale: tuple[float, float]
    search_steps: tuple[int, int]
    init_beta: float
    init_alpha: float
    train_epochs: int
    augment_epochs: int


class SplitSizes(NamedTuple):
    """A dataset's size as published (for a point-cloud dataset, that of one of its releases): its classes and the
    items of its train, val and test splits; `val` is None where the dataset has no val split of its own (ImageNet,
    whose CoOp val is its test split; every point-cloud release)."""

    classes: int
    train: int
    val: int | None
    test: int


@dataclass(frozen=True)
class ImageLayout:
    """Where a CoOp-format image dataset lives under the data root and how its split is stored.

    `fmt` picks the reader (`calip3d.datasets.images`), which is also the layout check `calip3d fetch` runs:
    "coop-json" (`split_file` is CoOp's json), "imagenet" (`split_file` is the classnames file) or "fgvc" (`split_file`
    is the txt pattern). `layout` is the expected tree and `source` where to get it, both shown in errors;
    `classname_map` renames class names a split file may carry (EuroSAT's raw folder names)."""

    folder: str  # folder under the data root
    image_dir: str  # image folder relative to `folder` ("" = `folder` itself)
    split_file: str
    fmt: str
    layout: str
    source: str
    classname_map: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PointLayout:
    """How a point-cloud dataset is read (`calip3d.datasets.pointclouds`, also its layout check): the formats of its
    releases, the default first; the expected layout of each format (shown in errors); and for a ScanObjectNN
    variant its folder under `h5_files/` and the file name after `{training,test}_`."""

    formats: tuple[str, ...]
    layouts: tuple[str, ...]
    h5_file: tuple[str, str] | None = None

    def layout(self, fmt: str) -> str:
        """The expected layout of format `fmt`."""
        return self.layouts[self.formats.index(fmt)]


_PARTS = {
    "image": "image layout (folder, split file, reader)", "points": "point-cloud layout (formats, expected layout)",
    "releases": "files to fetch", "classnames": "class names", "sizes": "published sizes (classes, split sizes)",
}


@dataclass(frozen=True, eq=False)
class DatasetRecord:
    """One dataset. `name` is the --dataset name, `aliases` (and `title`) the other names it is found by (case, '-',
    '_' and spaces ignored); `title` is the dataset's own name (CoOp's class name for a CoOp dataset); `template` the
    default single prompt; `presets_key` (3D) the key its class list (--label-set) and PointCLIP's Table 1 go by
    (ScanObjectNN's variants share one). `releases`: point datasets one per format; `sizes` the published size of
    each release, in the same order. Records compare by identity."""

    name: str
    kind: str
    title: str
    template: str
    aliases: tuple[str, ...] = ()
    classnames: tuple[str, ...] | None = None
    presets_key: str | None = None
    image: ImageLayout | None = None
    points: PointLayout | None = None
    releases: tuple[Release, ...] = ()
    sizes: tuple[SplitSizes, ...] = ()
    val_split: bool = False
    betas: tuple[float, float] | None = None  # CALIP's published (beta2, beta3)
    view_weights: tuple[float, ...] | None = None  # PointCLIP Table 1 (searched on test labels: an oracle)
    projection: tuple[float, int] | None = None  # PointCLIP Table 1 (distance, depth-map side length)
    tip_adapter: TipAdapterRelease | None = None

    def __post_init__(self) -> None:
        if self.kind not in (IMAGES, POINTS):
            raise CalipError(f"{self.name}: kind must be {IMAGES!r} or {POINTS!r}, got {self.kind!r}")

    @property
    def is_points(self) -> bool:
        return self.kind == POINTS

    def require(self, part: str) -> Any:
        """The record's `part` (a field name), or a `CalipError` naming the dataset when the record lacks it."""
        value = getattr(self, part)
        if value is None or value == ():
            raise CalipError(f"{self.name}: its dataset record (calip3d.records) has no "
                             f"{_PARTS.get(part, part.replace('_', ' '))}")
        return value
