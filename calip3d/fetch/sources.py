"""Where each dataset comes from: every release to fetch (files, sources, published checksums), keyed by release.

A view of the dataset records (`calip3d.records`), where each release is written next to the dataset it serves:
the point-cloud releases first (ModelNet40's h5 and resampled releases, ScanObjectNN's shared one), then the image
datasets', in the records' order. Facts (URLs in order of preference, byte counts, checksums) are those of
`data_sources.md` (November 2026); the layout each dataset must end up in is the loaders' (`calip3d.datasets`).

Tests substitute entries with `monkeypatch.setitem(RELEASES, key, dataclasses.replace(entry, files=...))`.
"""

from __future__ import annotations

from typing import MutableMapping

from calip3d.records import (  # noqa: F401  (re-exported: the fetch modules and tests import them from here)
    ACCESS, COOP_DATASETS_MD, POINTS, DatasetRecord, Install, Release, RemoteFile, copy_to, unpack, view,
)

Dataset = Release  # one registry entry: the files that make up `folder` under the data root


def _releases(records: tuple[DatasetRecord, ...]) -> dict[str, Release]:
    """Every record's releases by key, the point-cloud datasets' first; a release shared by several datasets once."""
    found: dict[str, Release] = {}
    for record in sorted(records, key=lambda record: record.kind != POINTS):
        for release in record.releases:
            found.setdefault(release.key, release)
    return found


RELEASES: MutableMapping[str, Dataset] = view(_releases)
