"""Datasets: one registry for images and point clouds (`registry`), their readers (`images`, `pointclouds`) and
`load_split`, which reads a split of either kind behind one interface (name, split, classnames, source, labels,
`len`, `subset`, `fingerprint`, `batches`), for a registered dataset or a folder of your own (`folder`)."""

from __future__ import annotations

from pathlib import Path

from .folder import FolderImageSplit, FolderPointSettings, FolderPointSplit, load_folder_split
from .images import ImageSplit, load_image_split
from .pointclouds import PointSettings, PointSplit
from .registry import (
    DATASETS, LABEL_SETS, DatasetInfo, dataset_file_stem, get_dataset, is_folder_dataset, is_point_dataset,
)
from .root import data_root, default_data_root

Split = ImageSplit | PointSplit


def load_split(name: str, root: str | Path | None, split: str = "test",
               points: PointSettings = PointSettings()) -> Split:
    """One split of any registered dataset under `root` (None: the default data root), or of a folder dataset
    (`folder:PATH`; `root` is not used); `points` says how point clouds are read (ignored for images)."""
    info = get_dataset(name)
    if info.is_folder:
        return load_folder_split(info.name, split, points)
    folder = data_root(root)
    if info.is_points:
        return points.load(info.name, folder, split)
    return load_image_split(info.name, folder, split)


__all__ = ["DATASETS", "LABEL_SETS", "DatasetInfo", "FolderImageSplit", "FolderPointSettings", "FolderPointSplit",
           "ImageSplit", "PointSettings", "PointSplit", "Split", "data_root", "dataset_file_stem", "default_data_root",
           "get_dataset", "is_folder_dataset", "is_point_dataset", "load_split"]
