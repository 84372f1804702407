"""The one registry of datasets, images and point clouds alike: lookup by name or alias, kind, class names, default
prompt and the published presets of each dataset. It is a view of the dataset records (`calip3d.records`), where
each dataset is written once; `DATASETS`, `LABEL_SETS` and the lookup follow the records as they change.

`DatasetInfo` is a view of one record: it holds the record and reads the dataset's names, kind, prompt, class names,
formats and presets from it. `folder:PATH` (or a PATH that is an existing folder) names a dataset of your own files
(`calip3d.datasets.folder`), described by the same `DatasetInfo` over a `FolderRecord` built from its files; its
name, `folder:` and the absolute path, round-trips through `get_dataset`."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Generic, Mapping, TypeVar, overload

from calip3d.errors import CalipError
from calip3d.published import (
    DEFAULT_2D_BETAS_SOURCE, DEFAULT_3D_BETAS, DEFAULT_3D_BETAS_SOURCE, PAPER_BETAS, PAPER_BETAS_SOURCE,
    POINTCLIP_TABLE1_PROJECTION, POINTCLIP_TABLE1_VIEW_WEIGHTS, beta_search_range,
)
from calip3d.records import IMAGES, POINTCLOUD_ZS_TEMPLATE, POINTS, DatasetRecord, records, view
from calip3d.records.points import (  # noqa: F401  (re-exported: imported from here by users and tests)
    MODELNET10_CLASSES, MODELNET40_CLASSES, POINTCLOUD_FS_TEMPLATE, SCANOBJECTNN_CLASSES,
)

from .folder_layout import FOLDER_PREFIX, FOLDER_SPLITS, scan_folder

FOLDER_IMAGE_TEMPLATE = "a photo of a {}."  # a folder of images (CoOp's generic template)
T = TypeVar("T")


class RecordField(Generic[T]):
    """An attribute of a `DatasetInfo` that reads the field of the same name of its record (on the class: itself)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.field = name

    @overload
    def __get__(self, info: None, owner: type) -> RecordField[T]: ...

    @overload
    def __get__(self, info: DatasetInfo, owner: type | None = None) -> T: ...

    def __get__(self, info: DatasetInfo | None, owner: type | None = None) -> T | RecordField[T]:
        return self if info is None else getattr(info.record, self.field)


@dataclass(frozen=True)
class FolderRecord(DatasetRecord):
    """The record of a folder dataset (`folder_info`), built from its files and registered nowhere; unlike the
    registered records it compares by value, so that two reads of an unchanged folder describe the same dataset."""


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: a view of its `record`, whose fields it reads (`RecordField`): `name`, `kind`, `title`, `aliases`,
    `template` (the default single prompt: CoOp's per-dataset template, PointCLIP's zero-shot one for point clouds),
    `classnames` (the fixed label order where the release does not store it; None: read from the release, e.g. CoOp's
    split files) and `presets_key` (the key of PointCLIP's Table 1 for point-cloud datasets). A folder dataset
    (`calip3d.datasets.folder`) has `folder` (its absolute path) and the `splits` found there; its `FolderRecord`
    holds its class names in label order."""

    record: DatasetRecord
    folder: str | None = None
    splits: tuple[str, ...] = ()

    name = RecordField[str]()
    kind = RecordField[str]()
    title = RecordField[str]()
    template = RecordField[str]()
    aliases = RecordField[tuple[str, ...]]()
    classnames = RecordField[tuple[str, ...] | None]()
    presets_key = RecordField[str | None]()

    @property
    def formats(self) -> tuple[str, ...]:
        """The point-cloud formats of the dataset's releases, the default first (none for images and folders)."""
        return self.record.points.formats if self.record.points else ()

    @property
    def is_points(self) -> bool:
        return self.kind == POINTS

    @property
    def is_folder(self) -> bool:
        """A dataset of your own files (`folder:PATH`)."""
        return self.folder is not None

    @property
    def file_stem(self) -> str:
        """The dataset's part of output file names (results, few-shot split files, checkpoints): the name, or for a
        folder dataset `folder-<folder name>-<8 hex digits of its path>`."""
        return dataset_file_stem(self.name)

    @property
    def has_val_split(self) -> bool:
        """Whether the dataset has a val split of its own: CoOp's image datasets except ImageNet (whose CoOp val is
        its test split); no point-cloud release has one; a folder dataset when it has PATH/val/."""
        if self.is_folder:
            return "val" in self.splits
        return self.record.val_split

    @property
    def paper_betas(self) -> tuple[float, float] | None:
        """CALIP's published (beta2, beta3) for this dataset, or None (3D: none published)."""
        return PAPER_BETAS.get(self.name)

    @property
    def default_betas(self) -> tuple[tuple[float, float], str]:
        """(beta2, beta3) used when the user gives none, and where they come from (CALIP's ImageNet pair where none
        was published for this dataset)."""
        if self.paper_betas is not None:
            return self.paper_betas, PAPER_BETAS_SOURCE
        return DEFAULT_3D_BETAS, DEFAULT_3D_BETAS_SOURCE if self.is_points else DEFAULT_2D_BETAS_SOURCE

    @property
    def beta_search_range(self) -> tuple[float, float]:
        """Upper bounds of the beta2 and beta3 grids (the official ones, widened to cover the paper's values)."""
        return beta_search_range(self.name)

    @property
    def table1_view_weights(self) -> tuple[float, ...] | None:
        """PointCLIP's Table 1 view weights (searched on test labels: an oracle), or None; a folder dataset has none
        to give (CalipError)."""
        if self.is_folder:
            raise CalipError(f"PointCLIP's Table 1 has no view weights for {self.name} (EvalConfig.view_weights "
                             "'paper' is for ModelNet and ScanObjectNN): give W1,...,WV or uniform")
        return POINTCLIP_TABLE1_VIEW_WEIGHTS.get(self.presets_key or "")

    @property
    def table1_projection(self) -> tuple[float, int] | None:
        """PointCLIP's Table 1 (distance, resolution), or None."""
        return POINTCLIP_TABLE1_PROJECTION.get(self.presets_key or "")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


# Aliases are matched ignoring case, '-', '_' and spaces, so CoOp's class names (OxfordPets) and folder names
# (caltech-101) need no entry of their own.
DATASETS: Mapping[str, DatasetInfo] = view(lambda rs: {record.name: DatasetInfo(record) for record in rs})
_LOOKUP: Mapping[str, str] = view(lambda rs: {_norm(alias): record.name for record in rs
                                              for alias in (record.name, record.title, *record.aliases)})

# --label-set names for your own files: the point-cloud class lists (ScanObjectNN's three variants share one).
LABEL_SETS: Mapping[str, tuple[str, ...]] = view(
    lambda rs: {r.presets_key: r.classnames for r in rs if r.is_points and r.presets_key and r.classnames})


def registered_names(kind: str | None = None) -> tuple[str, ...]:
    """The --dataset names of the registered datasets (of `kind`, "images" or "points"), in the records' order."""
    return tuple(record.name for record in records(kind))


def dataset_order() -> tuple[str, ...]:
    """The order of datasets in tables: the image datasets, then the point-cloud ones, each in the records' order."""
    return registered_names(IMAGES) + registered_names(POINTS)


def folder_path(name: str) -> str | None:
    """The absolute folder of a folder dataset name, else None (a registry name or an unknown one).

    `folder:PATH` always names a folder (PATH absolute, or relative to the working directory; `~` expanded). Without
    the prefix, a name that looks like a path (holds `/` or starts with `.` or `~`) and is an existing folder names it,
    and so does any other existing folder that is not a registry name or alias: `dtd` is the registry's DTD even
    where ./dtd exists (write ./dtd or folder:dtd for the folder)."""
    if name.startswith(FOLDER_PREFIX):
        path = name[len(FOLDER_PREFIX):]
        if not path:
            raise CalipError("a folder dataset needs a path: folder:PATH")
        return os.path.abspath(os.path.expanduser(path))
    path_like = "/" in name or os.sep in name or name.startswith((".", "~"))
    if (path_like or _norm(name) not in _LOOKUP) and os.path.isdir(os.path.expanduser(name)):
        return os.path.abspath(os.path.expanduser(name))
    return None


def is_folder_dataset(name: str) -> bool:
    """Whether `name` names a folder dataset (`folder:PATH`, or an existing folder: see `folder_path`)."""
    return folder_path(name) is not None


def dataset_file_stem(name: str) -> str:
    """The part of output file names for dataset `name`: `name` itself, except for a folder dataset:
    `folder-<folder name>-<first 8 hex digits of the sha256 of its absolute path>` (file-safe, and two folders of the
    same name get different stems)."""
    path = folder_path(name)
    if path is None:
        return name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(path.rstrip(os.sep)) or "root").strip("._") or "root"
    return f"folder-{base}-{hashlib.sha256(path.encode()).hexdigest()[:8]}"


def folder_info(path: str) -> DatasetInfo:
    """The `DatasetInfo` of the folder dataset at `path`, from its file names (`folder_layout.scan_folder`): kind,
    class names in label order, splits, and the default prompt of its kind."""
    scan = scan_folder(path)
    record = FolderRecord(name=scan.name, kind=scan.kind, title=os.path.basename(scan.root) or scan.root,
                          template=FOLDER_IMAGE_TEMPLATE if scan.kind == IMAGES else POINTCLOUD_ZS_TEMPLATE,
                          classnames=scan.classnames)
    return DatasetInfo(record, folder=scan.root, splits=tuple(s for s in FOLDER_SPLITS if s in scan.files))


def get_dataset(name: str, kind: str | None = None) -> DatasetInfo:
    """The registry entry for `name` or an alias (case, '-', '_' and spaces ignored), or the `DatasetInfo` of a folder
    dataset (`folder:PATH`, see `folder_path`; its folder is read to find the kind, splits and classes); `kind`
    restricts the lookup to "images" or "points"."""
    path = folder_path(name)
    if path is not None:
        info = folder_info(path)
        if kind is not None and info.kind != kind:
            what = {IMAGES: "images", POINTS: "point clouds"}
            raise CalipError(f"{info.name} holds {what[info.kind]}, not {what.get(kind, kind)}")
        return info
    key = _LOOKUP.get(_norm(name))
    if key is None or (kind is not None and DATASETS[key].kind != kind):
        names = registered_names(kind)
        what = {IMAGES: "image dataset", POINTS: "point-cloud dataset"}.get(kind or "", "dataset")
        raise CalipError(f"unknown {what} '{name}'; expected one of: {', '.join(names)}; or folder:PATH, a folder of "
                         "your own files (data/README.md)")
    return DATASETS[key]


def is_point_dataset(name: str) -> bool:
    """True for a point-cloud dataset name or alias; False for an image dataset; CalipError for an unknown name."""
    return get_dataset(name).is_points
