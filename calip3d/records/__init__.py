"""The dataset records: one `DatasetRecord` per dataset, the only place a dataset is described (`record`: the
fields). CoOp's image datasets are in `coop`, the point-cloud ones in `points`; `RECORDS` holds them all, in the order
of the tables (2D in CoOp's order, then 3D). Everything else is derived from them (`view`): the dataset registry
(`calip3d.datasets.registry`), the image layouts, the fetch sources, the presets per dataset, help texts, the table
order, `calip3d fetch --list` and data/README.md's tables of sources and of the datasets' sizes.

Plain data on the bottom layer: this package imports nothing from calip3d but `errors`."""

from __future__ import annotations

from typing import Callable

from calip3d.errors import CalipError

from .coop import COOP_DATASETS_MD, COOP_RECORDS
from .files import ACCESS, Install, Release, RemoteFile, copy_to, unpack
from .points import POINT_RECORDS, POINTCLOUD_FS_TEMPLATE, POINTCLOUD_ZS_TEMPLATE
from .record import IMAGES, POINTS, DatasetRecord, ImageLayout, PointLayout, SplitSizes, TipAdapterRelease
from .live import LiveView

RECORDS: dict[str, DatasetRecord] = {record.name: record for record in (*COOP_RECORDS, *POINT_RECORDS)}


def records(kind: str | None = None) -> tuple[DatasetRecord, ...]:
    """Every record in order, or those of `kind` ("images" or "points")."""
    return tuple(r for r in RECORDS.values() if kind is None or r.kind == kind)


def dataset_record(name: str) -> DatasetRecord:
    """The record named `name` (its --dataset name, not an alias: `calip3d.datasets.get_dataset` resolves those)."""
    try:
        return RECORDS[name]
    except KeyError:
        raise CalipError(f"{name}: no dataset record of that name; expected one of: {', '.join(RECORDS)}") from None


def view(derive: Callable[[tuple[DatasetRecord, ...]], dict]) -> LiveView:
    """A dict derived from the records by `derive` (all records, in order), kept up to date as they change."""
    return LiveView(derive, RECORDS)


__all__ = ["ACCESS", "COOP_DATASETS_MD", "IMAGES", "POINTCLOUD_FS_TEMPLATE", "POINTCLOUD_ZS_TEMPLATE", "POINTS",
           "RECORDS", "DatasetRecord", "ImageLayout", "Install", "LiveView", "PointLayout", "Release", "RemoteFile",
           "SplitSizes", "TipAdapterRelease", "copy_to", "dataset_record", "records", "unpack", "view"]
