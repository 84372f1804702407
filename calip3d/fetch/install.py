"""Placing a verified download into the staging copy of its dataset, as its registry entry says."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from calip3d.errors import CalipError

from .archives import extract_archive
from .sources import RemoteFile


def install_file(download: Path, file: RemoteFile, staging: Path, work: Path) -> None:
    """Put `download` (a verified copy of `file`) at `staging / file.install.target`.

    A plain file is copied; an archive is extracted (then its nested archives in turn) into new folders under
    `work`, and the part named by `take` is moved to the target. `staging` and `work` must be on one file system.
    """
    rule = file.install
    if rule is None:
        raise CalipError(f"{file.name} cannot be installed automatically")
    target = staging / rule.target
    if target.exists():
        raise CalipError(f"{file.name}: {rule.target} is already there (two files of the dataset install to it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not rule.archive:
        shutil.copyfile(download, target)
        return
    folder = work / f"{file.name}.0"
    extract_archive(download, folder)
    for level, nested in enumerate(rule.nested, 1):
        inner = folder / nested
        if not inner.is_file():
            raise _not_inside(file, nested, folder)
        folder = work / f"{file.name}.{level}"
        extract_archive(inner, folder)
    source = folder / rule.take
    if not source.exists():
        raise _not_inside(file, rule.take, folder)
    os.replace(source, target)


def _not_inside(file: RemoteFile, path: str, folder: Path) -> CalipError:
    found = sorted(entry.name for entry in folder.iterdir())
    shown = ", ".join(found[:10]) + (", ..." if len(found) > 10 else "")
    return CalipError(f"{file.name}: expected {path} inside the archive, which holds: {shown or 'nothing'}")
