"""Safe extraction: unsafe members refuse the whole archive, nothing is written outside, nothing half-extracted stays."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from calip3d.errors import CalipError
from calip3d.fetch.archives import UnsafeArchive, extract_archive
from fetch_helpers import tar_bytes, tree, zip_bytes

GOOD = {"pkg/a.txt": b"a", "pkg/sub/b.txt": b"b"}


def tar_with(members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> bytes:
    """A tar of regular files (name, data) and other members (TarInfo) in the given order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def zip_with_link(name: str, target: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("pkg/a.txt", b"a")
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
    return buffer.getvalue()


@pytest.fixture
def place(tmp_path: Path):
    """Write archive bytes under tmp_path/parent/root/ and return (archive path, destination, parent)."""
    parent = tmp_path / "parent"
    root = parent / "root"
    root.mkdir(parents=True)

    def make(data: bytes, name: str = "release.bin") -> tuple[Path, Path, Path]:
        archive = root / name
        archive.write_bytes(data)
        return archive, root / ".calip3d-tmp-x" / f"{name}.0", parent

    return make


def assert_refused(archive: Path, dest: Path, parent: Path, match: str) -> None:
    with pytest.raises(UnsafeArchive, match=match) as info:
        extract_archive(archive, dest)
    assert "nothing of it was kept" in str(info.value)
    assert not dest.exists()
    assert tree(parent) == ["root", "root/.calip3d-tmp-x", f"root/{archive.name}"]  # nothing written elsewhere


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
@pytest.mark.parametrize("bad, why", [
    ("../evil.txt", "'..' component"),
    ("pkg/../../evil.txt", "'..' component"),
    ("/tmp/calip3d-evil.txt", "absolute path"),
    ("C:/evil.txt", "absolute path"),
])
def test_dotdot_and_absolute_members_refuse_the_archive(place, fmt, bad, why):
    members = {**GOOD, bad: b"evil"}
    archive, dest, parent = place(zip_bytes(members) if fmt == "zip" else tar_bytes(members))
    assert_refused(archive, dest, parent, why)
    assert not Path("/tmp/calip3d-evil.txt").exists()


def test_symlink_leaving_the_root_refuses_the_archive(place):
    data = tar_with([("pkg/a.txt", b"a"), link("pkg/out", "../../.."), ("pkg/out/pwned.txt", b"x")])
    archive, dest, parent = place(data)
    assert_refused(archive, dest, parent, r"link pointing outside the archive \(to '../../..'\)")


@pytest.mark.parametrize("member, why", [
    (link("pkg/abs", "/etc/passwd"), "link pointing outside"),
    (link("pkg/hard", "../outside.txt", tarfile.LNKTYPE), "link pointing outside"),
    (link("pkg/dev", "", tarfile.CHRTYPE), "device or fifo"),
    (link("pkg/pipe", "", tarfile.FIFOTYPE), "device or fifo"),
])
def test_absolute_links_hard_links_and_devices_refuse_the_archive(place, member, why):
    archive, dest, parent = place(tar_with([("pkg/a.txt", b"a"), member]))
    assert_refused(archive, dest, parent, why)


def test_member_inside_an_inner_link_is_refused(place):
    archive, dest, parent = place(tar_with([link("pkg/here", "sub"), ("pkg/here/x.txt", b"x")]))
    assert_refused(archive, dest, parent, "lies inside a link")


def test_zip_symlink_leaving_the_root_is_refused(place):
    archive, dest, parent = place(zip_with_link("pkg/out", "../../../etc"))
    assert_refused(archive, dest, parent, "link pointing outside")


def test_links_inside_the_archive_are_kept_as_links(place):
    archive, dest, _ = place(zip_with_link("pkg/alias.txt", "a.txt"))
    extract_archive(archive, dest)
    assert (dest / "pkg/alias.txt").is_symlink() and (dest / "pkg/alias.txt").read_bytes() == b"a"
    archive, dest2, _ = place(tar_with([("pkg/a.txt", b"a"), link("pkg/alias.txt", "a.txt")]), "release2.bin")
    extract_archive(archive, dest2)
    assert (dest2 / "pkg/alias.txt").is_symlink() and (dest2 / "pkg/alias.txt").read_bytes() == b"a"


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_recognised_by_content_not_by_name(place, mode):
    archive, dest, _ = place(tar_bytes(GOOD, mode=mode), "misnamed.tar.gz")
    extract_archive(archive, dest)
    assert tree(dest) == ["pkg", "pkg/a.txt", "pkg/sub", "pkg/sub/b.txt"]
    assert (dest / "pkg/sub/b.txt").read_bytes() == b"b"


def test_unreadable_archive_is_an_error_and_leaves_nothing(place):
    data = tar_bytes(GOOD)
    archive, dest, parent = place(data[: len(data) // 2])
    with pytest.raises(CalipError, match="cannot extract release.bin"):
        extract_archive(archive, dest)
    assert not dest.exists()
    archive, dest, parent = place(b"neither zip nor tar", "other.bin")
    with pytest.raises(CalipError, match="cannot extract other.bin"):
        extract_archive(archive, dest)
    assert not dest.exists()
