"""Dataset names as the commands take them, mapped to registry entries, and the loaders' own layout check."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from calip3d.datasets.images import load_image_split
from calip3d.datasets.pointclouds import load_point_split
from calip3d.datasets.registry import DATASETS
from calip3d.datasets.registry import get_dataset, is_folder_dataset
from calip3d.errors import CalipError
from calip3d.records import dataset_record

from .sources import RELEASES, Dataset

LayoutCheck = Callable[[Path], object]  # raises CalipError when the dataset under the given root is not usable


def dataset_names() -> list[str]:
    """Every name `resolve_dataset` takes, besides the registry's aliases."""
    names = [d.name for d in DATASETS.values() if d.is_points] + [d.name for d in DATASETS.values() if not d.is_points]
    return names + [key for key in RELEASES if key not in names]


def resolve_dataset(name: str, fmt: str | None = None) -> Dataset:
    """The registry entry for `name` as `eval` takes it, or for a registry key.

    `modelnet40` is the h5 release (the format `eval` reads by default), or with `fmt="resampled"`
    `modelnet40_normal_resampled`, which `modelnet10` also reads; the `scanobjectnn-*` variants share one release;
    image datasets accept their aliases (`Caltech-101`, `flowers102`, ...).
    """
    if name not in RELEASES and is_folder_dataset(name):
        raise CalipError(f"{name} is a folder of your own files: there is nothing to fetch")
    try:
        info = get_dataset(name)
    except CalipError:
        if name not in RELEASES:
            raise CalipError(f"unknown dataset {name!r}; expected one of: {', '.join(dataset_names())}") from None
        info = None
    entry = RELEASES[name] if info is None else _release_of(info.name, fmt)
    if fmt is not None and fmt != entry.fmt:
        raise CalipError(f"PointSettings.format {fmt!r} does not apply to {entry.key}")
    return entry


def _release_of(name: str, fmt: str | None) -> Dataset:
    """The entry of the release dataset `name` is fetched from (for a point-cloud dataset, the one of format `fmt`,
    None: its default format), as its record names it; a record without one is a `CalipError` naming the dataset."""
    record = dataset_record(name)
    releases = record.require("releases")
    if record.is_points:
        formats = record.require("points").formats
        chosen = fmt or formats[0]
        if chosen not in formats:
            raise CalipError(f"{name} is not available as PointSettings.format {fmt!r}; it is read as: "
                             f"{', '.join(formats)}")
        releases = tuple(release for release in releases if release.fmt == chosen)
        if not releases:
            raise CalipError(f"{name}: its dataset record (calip3d.records) has no files to fetch for "
                             f"PointSettings.format {chosen!r}")
    entry = RELEASES.get(releases[0].key)
    if entry is None:
        raise CalipError(f"{name}: its release {releases[0].key} is not among the fetch sources")
    return entry


def default_layout_check(entry: Dataset, names: Sequence[str] | None = None) -> LayoutCheck:
    """Load the test split of each of `entry.loaders` (or only of `names`) from a data root, with the loaders `eval`
    uses (point clouds cut to their first 2 points, so that the check reads little more than the file lists).

    The check raises the loaders' `CalipError` (which shows the expected layout) when the dataset is not usable.
    """
    def check(root: Path) -> None:
        for name in names or entry.loaders:
            if get_dataset(name).is_points:
                load_point_split(name, root, "test", fmt=entry.fmt, num_points=2, normalize=False)  # reads little
            else:
                load_image_split(name, root, "test")

    return check


def layout_problem(check: LayoutCheck, root: Path) -> CalipError | None:
    """The error `check` raises for `root`, or None when the dataset there is usable."""
    try:
        check(root)
    except CalipError as err:
        return err
    return None
