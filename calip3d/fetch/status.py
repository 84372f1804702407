"""What is under a data root: each dataset's status, sources and size (`fetch --list`), and the provenance of the
data a result used."""

from __future__ import annotations

import os
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from calip3d.datasets.folder import folder_provenance
from calip3d.datasets.registry import DATASETS
from calip3d.datasets.registry import is_folder_dataset

from .catalog import LayoutCheck, default_layout_check, layout_problem, resolve_dataset
from .download import source_urls
from .env import data_root
from .manifest import Manifest
from .sources import RELEASES, Dataset, RemoteFile

STATUSES = ("present", "missing", "manual only")


@dataclass(frozen=True)
class DatasetListing:
    """One line of `fetch --list`: a registry entry, the names the commands take for it, its status and size."""

    entry: Dataset
    names: tuple[str, ...]
    status: str
    size: str


def dataset_status(name: str, root: str | os.PathLike | None = None, fmt: str | None = None,
                   layout_check: LayoutCheck | None = None) -> str:
    """The status of dataset `name` under `root`: one of `STATUSES`.

    "present": the layout check passes; "missing": it does not, and calip3d can download the dataset; "manual
    only": it does not, and calip3d downloads it only from a mirror or not at all. A root that does not exist is
    empty.
    """
    entry = resolve_dataset(name, fmt)
    return _status(entry, layout_check or default_layout_check(entry), data_root(root))


def list_datasets(root: str | os.PathLike | None = None) -> list[DatasetListing]:
    """Every registry entry with its status under `root` (None = the default data root)."""
    root = data_root(root)
    return [DatasetListing(entry, command_names(entry), _status(entry, default_layout_check(entry), root),
                           size_text(entry)) for entry in RELEASES.values()]


def format_listing(listings: Sequence[DatasetListing], root: str | os.PathLike | None = None) -> str:
    """The text `fetch --list` prints: per dataset its status, size, target folder, files, checksums and sources."""
    root = data_root(root)
    lines = [f"data root: {root}" + ("" if root.is_dir() else " (does not exist yet)")]
    for item in listings:
        entry = item.entry
        lines += ["", f"{', '.join(item.names)}: {item.status}  ({entry.title}, {item.size}) -> {root / entry.folder}"]
        if entry.access != "download":
            how = "manual only" if entry.access == "manual" else "from a --mirror only"
            text = f"{how}: {entry.instructions.replace('{root}', str(root))}"
            lines += textwrap.wrap(text, 118, initial_indent="  ", subsequent_indent="    ")
        for file in entry.files:
            for n, choice in enumerate(file.choices()):
                lines.append(f"  {'or ' * (n > 0)}{choice.name}  {_file_size(choice)}  "
                             f"{choice.checksum or 'no published checksum'}")
                lines += [f"      {url}" for url in source_urls(choice)]
    return "\n".join(lines)


def dataset_provenance(name: str, root: str | os.PathLike | None = None, fmt: str | None = None) -> dict[str, Any]:
    """For results: the data root used, and when calip3d fetched the dataset there, each file it came from (name,
    size, sha256, the published checksum it matched or None, URL) and when it was installed. A folder dataset
    (`folder:PATH`, never fetched) gives its folder, classes and a digest of its file list instead
    (`calip3d.datasets.folder.folder_provenance`)."""
    if name not in RELEASES and is_folder_dataset(name):
        return folder_provenance(name)
    entry = resolve_dataset(name, fmt)
    root = data_root(root)
    found = Manifest(root).dataset(entry.key)
    info: dict[str, Any] = {"data_root": str(root), "dataset": entry.key, "folder": str(root / entry.folder),
                            "fetched": found is not None}
    if found is not None:
        installed, records = found
        info.update(installed=installed["installed"], files=[asdict(record) for record in records])
    return info


def command_names(entry: Dataset) -> tuple[str, ...]:
    """The dataset names the commands take for `entry` (with `--format` where it is not the default)."""
    names = []
    for name in entry.loaders:
        formats = DATASETS[name].formats if name in DATASETS else ()
        names.append(f"{name} --format {entry.fmt}" if len(formats) > 1 and entry.fmt != formats[0] else name)
    return tuple(names)


def size_text(entry: Dataset) -> str:
    """The download size of `entry`'s files: exact where published, approximate (~) where only that is known."""
    exact = sum(file.size for file in entry.files if file.size is not None)
    parts = [_human(exact)] if exact else []
    parts += [f"~{file.size_hint}" for file in entry.files if file.size is None and file.size_hint]
    unknown = sum(1 for file in entry.files if file.size is None and not file.size_hint)
    if unknown:
        parts.append(f"{unknown} file{'s' * (unknown > 1)} of unpublished size")
    return " + ".join(parts)


def _status(entry: Dataset, check: LayoutCheck, root: Path) -> str:
    if layout_problem(check, root) is None:
        return "present"
    return "missing" if entry.access == "download" else "manual only"


def _file_size(file: RemoteFile) -> str:
    if file.size is not None:
        return f"{file.size:,} bytes"
    return f"~{file.size_hint}" if file.size_hint else "size not published"


def _human(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
