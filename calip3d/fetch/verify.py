"""Integrity of a complete download, checked before anything is extracted from it."""

from __future__ import annotations

import re
from pathlib import Path

import pooch

from calip3d.errors import CalipError

from .manifest import FileRecord, Manifest
from .sources import RemoteFile
from .transfer import Log, log_stderr


def parse_checksum(checksum: str) -> tuple[str, str]:
    """("sha256" | "md5", lower-case hex digest) of a registry checksum such as "sha256:<hex>"."""
    alg, _, digest = checksum.partition(":")
    length = {"sha256": 64, "md5": 32}.get(alg)
    if length is None or not re.fullmatch(f"[0-9a-fA-F]{{{length}}}", digest):
        raise ValueError(f"checksum {checksum!r} is not 'sha256:<64 hex digits>' or 'md5:<32 hex digits>'")
    return alg, digest.lower()


def verify_download(path: Path, file: RemoteFile, url: str, manifest: Manifest, log: Log = log_stderr) -> FileRecord:
    """Check `path` (a complete download of `file` from `url`) and return its record.

    Checked, in order: the exact published byte count; the published checksum (sha256, or md5 where only that is
    published); for a file with no published checksum, the sha256 recorded in the manifest when it was first
    installed (on a first download the sha256 is shown, and recorded once the dataset is installed). A mismatch
    deletes the download and raises `CalipError` naming the file, the expected and the actual value.
    """
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        _reject(path, f"{file.name} has {size:,} bytes, expected {file.size:,} (its published size)")
    sha256 = pooch.file_hash(str(path), alg="sha256")
    if file.checksum:
        alg, expected = parse_checksum(file.checksum)
        actual = sha256 if alg == "sha256" else pooch.file_hash(str(path), alg=alg)
        if actual != expected:
            _reject(path, f"checksum mismatch for {file.name}: expected {alg} {expected}, actual {alg} {actual}")
    else:
        recorded = manifest.file(file.name)
        if recorded is None:
            log(f"{file.name}: no checksum is published; its sha256 is {sha256}")
        elif recorded.sha256 != sha256:
            _reject(path, f"checksum mismatch for {file.name}: expected sha256 {recorded.sha256} (recorded in "
                          f"{manifest.path} when it was first downloaded), actual sha256 {sha256}; if the file "
                          "changed upstream on purpose, delete its entry from the manifest")
    return FileRecord(file.name, size, sha256, file.checksum, url)


def _reject(path: Path, problem: str) -> None:
    path.unlink(missing_ok=True)
    raise CalipError(f"{problem} (the download was deleted)")
