"""Datasets of your own files, from folders: `--dataset folder:PATH` (or a PATH that is an existing folder).

Layouts (hidden files and folders, starting with `.`, are skipped):
- `PATH/<split>/<class>/<file>`, splits among `train`, `val`, `test` (every folder under PATH is then a split);
- `PATH/<class>/<file>`: a test split only (tuning and few-shot training need a train split).
Files may also lie in sub-folders of a class folder. The kind comes from the files' extensions (any case): images
(`IMAGE_EXTS`) or point clouds and meshes (`CLOUD_EXTS`, every format `calip3d classify` reads; meshes are sampled to
points as `classify` samples them, `MESH_SAMPLES` points on the surface); a folder holding both kinds is an error
naming an example of each. Files with other extensions are ignored (said on stderr).

Classes: the class folders of every split, sorted by folder name (label i = the i-th folder); their names are the
folder names with `_` and `-` as spaces, or the names given by `PATH/classnames.txt` (lines `<folder> <class name>`,
as CoOp's ImageNet file). The default prompt is CoOp's "a photo of a {}." for images and PointCLIP's zero-shot
"point cloud depth map of a {}." for point clouds; `--templates FILE.json` (a list of templates, e.g. one) replaces it.

Images are read when they are encoded (an unreadable one stops the run naming it, or is skipped with
`--skip-bad-files`); point clouds are read here, each as the registered datasets' clouds are prepared (y-up,
`sample_points`, unit sphere), and a bad one (unreadable, empty, NaN) stops the load naming it, or with
`FolderPointSettings(skip_bad_files=True)` (`--skip-bad-files`) is left out, listed on stderr and in the split's
`settings.skipped_files`. A class folder left without a usable file, and a split without class folders, are
errors. Every file's path relative to PATH, size and modification time are part of the split's fingerprint (the cache
key), so adding, removing or replacing a file encodes anew.

The layout itself (splits, kind, classes, files) is read from file names by `calip3d.datasets.folder_layout`, which
`calip3d.datasets.registry.get_dataset` uses to describe the folder; this module reads the splits.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from calip3d.errors import CalipError
from calip3d.cloud_files import load_point_cloud
from calip3d.point_preprocessing import normalize_unit_sphere, sample_points

from .folder_layout import (
    CLASSNAMES_FILE, CLOUD_EXTS, FOLDER_PREFIX, FOLDER_SPLITS, IMAGE_EXTS, IMAGES, POINTS, FolderFile, FolderScan,
    scan_folder,
)
from .images import ImageSplit
from .pointclouds import PointSettings, PointSplit

MESH_SAMPLES = 10000  # points sampled on a mesh's surface before `sample_points` (classify's default)
FOLDER_FORMAT = "folder"  # `settings.format` of a folder's point-cloud split
_PROGRESS_FILES = 100
__all__ = ["CLASSNAMES_FILE", "CLOUD_EXTS", "FOLDER_FORMAT", "IMAGE_EXTS", "MESH_SAMPLES", "FOLDER_SPLITS", "FolderFile",
           "FolderImageSplit", "FolderPointSettings", "FolderPointSplit", "FolderScan", "files_digest",
           "folder_provenance", "load_folder_split", "scan_folder"]


@dataclass(frozen=True)
class FolderPointSettings(PointSettings):
    """`PointSettings` plus what only a folder of point clouds reads: the points sampled on a mesh's surface
    (`mesh_samples`), and `skip_bad_files`, which leaves out the clouds that cannot be read instead of stopping at the
    first. A read split's settings list them in `skipped_files` (`{"file", "error"}` each)."""

    mesh_samples: int = MESH_SAMPLES
    skip_bad_files: bool = False
    skipped_files: list[dict[str, str]] = field(default_factory=list)


def _main_rank() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _missing_split(scan: FolderScan, split: str) -> CalipError:
    """No `split` in the folder: where it would go, and (train) what needs it."""
    if scan.layout == "flat":
        where = (f"{scan.root} has the flat layout PATH/<class>/<file>, a test split only, so it has no {split} "
                 f"split: put the {split} items in {os.path.join(scan.root, split)}/<class>/<file> and the test "
                 f"items in {os.path.join(scan.root, 'test')}/<class>/<file>")
    else:
        found = ", ".join(s for s in FOLDER_SPLITS if s in scan.files)
        where = f"{scan.root} has no {split} split (it has: {found}): add {os.path.join(scan.root, split)}/<class>/<file>"
    if split == "train":
        where += (". Few-shot training and tuning (betas, view weights) draw from the train split; without one, "
                  "evaluate without tuning: EvalConfig(tune=TuneConfig(on='none'))")
    return CalipError(where)


def _note_ignored(scan: FolderScan) -> None:
    if scan.ignored and _main_rank():
        print(f"note: {scan.root}: ignored {len(scan.ignored)} file(s) that are not "
              f"{'images' if scan.kind == IMAGES else 'point clouds'} in class folders, e.g. {scan.ignored[0]}",
              file=sys.stderr)


@dataclass
class FolderImageSplit(ImageSplit):
    """An `ImageSplit` of a folder dataset; `files` (relative path, size, mtime of each item) join the fingerprint."""

    files: list[tuple[str, int, int]] = field(default_factory=list)

    def subset(self, indices: Sequence[int]) -> "FolderImageSplit":
        rows = [int(i) for i in indices]
        return replace(self, items=[self.items[i] for i in rows], files=[self.files[i] for i in rows])


@dataclass
class FolderPointSplit(PointSplit):
    """A `PointSplit` of a folder dataset: `files` (relative path, size, mtime of each cloud) join the fingerprint,
    and the clouds' ids are their paths (so a saved few-shot split no longer matches once files change)."""

    files: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:  # type: ignore[override]
        return [os.path.join(self.source_root, rel) for rel, _, _ in self.files]

    @property
    def source_root(self) -> str:
        return self.name[len(FOLDER_PREFIX):]

    def subset(self, indices: Sequence[int] | np.ndarray) -> "FolderPointSplit":
        part = super().subset(indices)
        index = np.asarray(indices)
        rows = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64).reshape(-1)
        return replace(part, files=[self.files[int(i)] for i in rows])


def _read_cloud(path: str, points: PointSettings) -> np.ndarray:
    """One file as the registered datasets' clouds are prepared: y-up, `sample_points`, unit sphere."""
    cloud = load_point_cloud(path, num_points=None, up_axis=points.up_axis,
                             mesh_samples=getattr(points, "mesh_samples", MESH_SAMPLES),
                             sampling=points.sampling, seed=points.seed)
    try:
        cloud = sample_points(cloud, points.num_points, points.sampling, points.seed)
        return normalize_unit_sphere(cloud) if points.normalize else cloud
    except CalipError as err:  # e.g. the first --points points all at one place: no extent to scale
        raise CalipError(f"{path}: {err}") from None


def _load_points(scan: FolderScan, split: str, files: Sequence[FolderFile], points: PointSettings) -> FolderPointSplit:
    if points.format not in (None, FOLDER_FORMAT):
        raise CalipError(f"PointSettings.format {points.format!r} names a ModelNet40 release; {scan.name} is a folder "
                         "of your own files (leave PointSettings.format unset)")
    skip = bool(getattr(points, "skip_bad_files", False))
    clouds, kept, skipped = [], [], []
    bar = tqdm(files, desc=f"{os.path.basename(scan.root)} {split}", unit="file",
               disable=len(files) < _PROGRESS_FILES or not _main_rank())
    for item in bar:
        path = os.path.join(scan.root, item.relpath)
        try:
            cloud = _read_cloud(path, points)
        except CalipError as err:
            if not skip:
                raise
            skipped.append({"file": item.relpath, "error": str(err)})
            continue
        clouds.append(cloud)
        kept.append(item)
    if skipped and _main_rank():
        print(f"warning: skipped {len(skipped)} unreadable point-cloud file(s) of {scan.name} {split} "
              "(--skip-bad-files):", file=sys.stderr)
        for bad in skipped:
            print(f"  {bad['error']}", file=sys.stderr)
    _check_classes_left(scan, split, files, kept)
    settings = FolderPointSettings(FOLDER_FORMAT, points.num_points, points.sampling, points.seed, points.normalize,
                                   points.up_axis, getattr(points, "mesh_samples", MESH_SAMPLES), skip, skipped)
    return FolderPointSplit(
        name=scan.name, split=split, classnames=list(scan.classnames),
        points=np.ascontiguousarray(np.stack(clouds), dtype=np.float32),
        labels=np.asarray([f.label for f in kept], dtype=np.int64), source=_source(scan, split, len(kept)),
        settings=settings, files=[tuple(f.key()) for f in kept])


def _check_classes_left(scan: FolderScan, split: str, files: Sequence[FolderFile], kept: Sequence[FolderFile]) -> None:
    """A class folder of `split` whose every file was skipped is an error naming it."""
    left = {f.label for f in kept}
    for label in sorted({f.label for f in files} - left):
        folder = os.path.join(scan.split_dir(split), scan.class_folders[label])
        raise CalipError(f"class folder {folder} has no usable point-cloud file (every one was unreadable and "
                         "skipped)")


def _source(scan: FolderScan, split: str, count: int) -> str:
    return f"{scan.split_dir(split)} ({count} files, folder dataset)"


def load_folder_split(name: str, split: str = "test", points: PointSettings = PointSettings()) -> ImageSplit | PointSplit:
    """One split of the folder dataset `name` (`folder:PATH` or a path): a `FolderImageSplit` (images are read when
    encoded) or a `FolderPointSplit` read now with `points` (a `FolderPointSettings` with `skip_bad_files` leaves out
    unreadable clouds). See the module docstring for the layout and the errors."""
    if split not in FOLDER_SPLITS:
        raise CalipError(f"unknown split {split!r}; expected one of: {', '.join(FOLDER_SPLITS)}")
    scan = scan_folder(name[len(FOLDER_PREFIX):] if name.startswith(FOLDER_PREFIX) else name)
    if split not in scan.files:
        raise _missing_split(scan, split)
    _note_ignored(scan)
    files = [f.stat(scan.root) for f in scan.files[split]]
    if scan.kind == POINTS:
        return _load_points(scan, split, files, points)
    return FolderImageSplit(name=scan.name, split=split, classnames=list(scan.classnames),
                            items=[(os.path.join(scan.root, f.relpath), f.label) for f in files],
                            source=_source(scan, split, len(files)), files=[tuple(f.key()) for f in files])


def files_digest(scan: FolderScan) -> tuple[str, dict[str, int]]:
    """sha256 over every file of every split (relative path, size, mtime), and the file count of each split."""
    digest = hashlib.sha256()
    counts = {}
    for split, files in scan.files.items():
        stated = [f.stat(scan.root) for f in files]
        counts[split] = len(stated)
        digest.update(json.dumps([split, [f.key() + [f.label] for f in stated]]).encode())
    return "sha256:" + digest.hexdigest(), counts


def folder_provenance(name: str) -> dict[str, Any]:
    """For results: the folder, its layout and kind, the class list (folders and names, in label order, and the
    classnames file if any), the files of each split and a digest of the file list (paths, sizes, mtimes)."""
    scan = scan_folder(name[len(FOLDER_PREFIX):] if name.startswith(FOLDER_PREFIX) else name)
    digest, counts = files_digest(scan)
    return {"dataset": scan.name, "folder": scan.root, "fetched": False, "kind": scan.kind, "layout": scan.layout,
            "class_folders": list(scan.class_folders), "classnames": list(scan.classnames),
            "classnames_file": scan.classnames_file, "files": counts, "files_digest": digest,
            "ignored_files": len(scan.ignored)}
