"""Datasets: one registry for images and point clouds (`registry`), their readers (`images`, `pointclouds`) and
`load_split`, which reads a split of either kind behind one interface (name, split, classnames, source, labels,
`len`, `subset`, `fingerprint`, `batches`)."""

from __future__ import annotations

from pathlib import Path

from .images import ImageSplit, load_image_split
from .pointclouds import PointSettings, PointSplit
from .registry import DATASETS, LABEL_SETS, DatasetInfo, get_dataset, is_point_dataset

Split = ImageSplit | PointSplit


def load_split(name: str, data_root: str | Path, split: str = "test",
               points: PointSettings = PointSettings()) -> Split:
    """One split of any registered dataset; `points` says how point clouds are read (ignored for images)."""
    info = get_dataset(name)
    if info.is_points:
        return points.load(info.name, data_root, split)
    return load_image_split(info.name, data_root, split)


__all__ = ["DATASETS", "LABEL_SETS", "DatasetInfo", "ImageSplit", "PointSettings", "PointSplit", "Split",
           "get_dataset", "is_point_dataset", "load_split"]
