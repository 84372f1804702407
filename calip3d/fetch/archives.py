"""Safe extraction of zip and tar archives (plain, gz, bz2 or xz; recognised by content, not by file name).

An archive is refused as a whole when any member has an absolute path, a `..` component, lies inside a link,
is a link pointing outside the archive's folder, or is a device or fifo file. zipfile would silently rename such
members and tarfile's `filter="data"` refuses them one at a time; the same check runs first on both formats,
and the folder being extracted into is removed on any failure, so nothing half-extracted stays behind. Tar
members are checked as they are read (one pass over a compressed stream) and still go through `filter="data"`.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Iterator

from calip3d.errors import CalipError

# tarfile's extraction filters exist from Python 3.12 and in 3.10.12 / 3.11.4; without them the check below is the
# only guard.
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


class UnsafeArchive(CalipError):
    """An archive refused because of one of its members."""


def extract_archive(archive: Path, dest: Path) -> None:
    """Extract `archive` into the new folder `dest`; on any failure `dest` is removed and the error raised.

    Raises `UnsafeArchive` naming the first unsafe member, or `CalipError` for an unreadable archive.
    """
    dest.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, dest)
        else:
            _extract_tar(archive, dest)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as err:
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(err, getattr(tarfile, "FilterError", ())):
            raise UnsafeArchive(f"refused the archive {archive.name}: {err}; nothing of it was kept") from None
        raise CalipError(f"cannot extract {archive.name}: {err}") from None
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


class _MemberCheck:
    """Checks the members of one archive in order (links seen so far are remembered)."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.links: set[str] = set()

    def __call__(self, name: str, link: str | None = None, hard: bool = False, special: bool = False) -> None:
        path = name.replace("\\", "/").rstrip("/")
        parts = path.split("/")
        if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
            self._refuse(name, "has an absolute path")
        if ".." in parts:
            self._refuse(name, "has a '..' component")
        if any("/".join(parts[:i]) in self.links for i in range(1, len(parts))):
            self._refuse(name, "lies inside a link")
        if special:
            self._refuse(name, "is a device or fifo file")
        if link is not None:
            target = link.replace("\\", "/")
            resolved = posixpath.normpath(posixpath.join("" if hard else posixpath.dirname(path), target))
            if target.startswith("/") or re.match(r"[A-Za-z]:", target) or resolved.split("/")[0] == "..":
                self._refuse(name, f"is a link pointing outside the archive (to {link!r})")
            if not hard:
                self.links.add(path)

    def _refuse(self, name: str, problem: str) -> None:
        raise UnsafeArchive(f"refused the archive {self.archive.name}: its member {name!r} {problem}; "
                            "nothing of it was kept")


def _extract_zip(archive: Path, dest: Path) -> None:
    check = _MemberCheck(archive)
    with zipfile.ZipFile(archive) as zf:
        links = {}
        for info in zf.infolist():
            mode = info.external_attr >> 16 if info.create_system == 3 else 0  # unix mode bits, when recorded
            link = zf.read(info).decode("utf-8") if stat.S_ISLNK(mode) else None
            special = stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
            check(info.filename, link=link, special=special)
            if link is not None:
                links[info.filename] = link
        zf.extractall(dest)
    for name, target in links.items():  # zipfile writes a link as a file holding its target: make it a link
        path = dest / name
        path.unlink()
        os.symlink(target, path)


def _extract_tar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:
        tar.extractall(dest, members=_checked(tar, _MemberCheck(archive)), **_TAR_FILTER)


def _checked(tar: tarfile.TarFile, check: _MemberCheck) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        link = member.linkname if member.issym() or member.islnk() else None
        check(member.name, link=link, hard=member.islnk(), special=member.ischr() or member.isblk() or member.isfifo())
        yield member
