"""The manifest under the data root: what calip3d fetched there, with the sha256 of every file.

`<root>/.calip3d-manifest.json` = `{"version": 1, "files": {name: FileRecord}, "datasets": {key: {"folder",
"installed", "files": [names]}}}`. For a file with no published checksum, the sha256 recorded here when its
dataset was first installed is the one every later download must match.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from calip3d.atomic import atomic_write
from calip3d.errors import CalipError

MANIFEST_NAME = ".calip3d-manifest.json"


@dataclass(frozen=True)
class FileRecord:
    """A verified download: its byte count and sha256, the published checksum it matched (None: none is
    published, the sha256 is checked against the manifest instead) and the URL it came from."""

    name: str
    size: int
    sha256: str
    checksum: str | None
    url: str


class Manifest:
    """The manifest of one data root (read when created; a missing file is an empty manifest)."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / MANIFEST_NAME
        self._data = self._load()

    def _load(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {"version": 1, "files": {}, "datasets": {}}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data.get("files"), dict) or not isinstance(data.get("datasets"), dict):
                raise ValueError("expected the keys 'files' and 'datasets'")
            return data
        except (OSError, ValueError, AttributeError) as err:
            raise CalipError(f"cannot read the download manifest {self.path}: {err}; fix or delete it") from None

    def file(self, name: str) -> FileRecord | None:
        """The record of file `name`, if one was installed under this root."""
        record = self._data["files"].get(name)
        return FileRecord(**record) if record else None

    def dataset(self, key: str) -> tuple[dict[str, Any], list[FileRecord]] | None:
        """(the dataset's entry, its file records), if calip3d installed it under this root."""
        entry = self._data["datasets"].get(key)
        if entry is None:
            return None
        return entry, [record for name in entry["files"] if (record := self.file(name)) is not None]

    def record_install(self, key: str, folder: str, records: Sequence[FileRecord]) -> None:
        """Record that dataset `key` was installed in `folder` from `records`, and save (re-reading the file first,
        so that entries written meanwhile by another process are kept)."""
        self._data = self._load()
        for record in records:
            self._data["files"][record.name] = asdict(record)
        self._data["datasets"][key] = {
            "folder": folder,
            "installed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": [record.name for record in records],
        }
        text = json.dumps(self._data, indent=2, sort_keys=True) + "\n"
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
