"""Whole datasets from a local server, built from the real files in their release layouts, then read by the loaders."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from calip3d.datasets.images import load_image_split
from calip3d.datasets.pointclouds import load_point_split
from calip3d.errors import CalipError
from calip3d.fetch import (
    RELEASES,
    dataset_provenance,
    dataset_status,
    ensure_dataset,
    fetch_dataset,
    format_listing,
    list_datasets,
)
from calip3d.fetch.manifest import MANIFEST_NAME
from fetch_helpers import served, sha256, substitute, tree, zip_bytes

pytest_plugins = ["fetch_helpers"]  # fixtures: server, h5_release, h5_zip, resampled_tar, caltech_release

H5_ZIP = "modelnet40_ply_hdf5_2048.zip"


@pytest.fixture
def root(tmp_path):
    """A data root that does not exist yet, inside a parent that holds nothing else."""
    return tmp_path / "parent" / "data"


@pytest.fixture
def h5_served(server, h5_zip, monkeypatch):
    """modelnet40 served from the test server (registry URL replaced; no checksum, as for the real zip)."""
    return substitute(monkeypatch, "modelnet40", served(server, RELEASES["modelnet40"].files[0], h5_zip,
                                                        checksum=False))


def fetch(name, root, log=None, **kwargs):
    """fetch_dataset without a progress bar, collecting its messages in `log`."""
    return fetch_dataset(name, root, progress=False, log=(log if log is not None else []).append, **kwargs)


def leftovers(root):
    """What fetch may leave besides datasets: the manifest, and lock files of the downloads folder."""
    return [p for p in tree(root) if p.startswith(".calip3d") and not p.endswith(".lock")
            and p not in (MANIFEST_NAME, ".calip3d-downloads")]


def test_modelnet40_h5_fetched_then_loaded_exactly(h5_served, server, root, modelnet_h5_dir):
    log: list[str] = []
    report = fetch("modelnet40", root, mirrors=(), log=log)
    assert report.fetched and report.folder == root / "modelnet40_ply_hdf5_2048"
    fetched = load_point_split("modelnet40", root, "test", num_points=1024)
    original = load_point_split("modelnet40", modelnet_h5_dir.parent, "test", num_points=1024)
    np.testing.assert_array_equal(fetched.points, original.points)
    np.testing.assert_array_equal(fetched.labels, original.labels)
    assert leftovers(root) == []  # no temporary folder, no download left
    zip_sha = sha256(server.root / "a" / H5_ZIP)
    assert any(f"sha256 {zip_sha} recorded in {root / MANIFEST_NAME}" in line for line in log)
    provenance = dataset_provenance("modelnet40", root)
    assert provenance["data_root"] == str(root) and provenance["fetched"]
    assert [(f["name"], f["sha256"], f["checksum"], f["url"]) for f in provenance["files"]] == [
        (H5_ZIP, zip_sha, None, server.url(f"a/{H5_ZIP}"))]


def test_second_fetch_downloads_nothing(h5_served, server, root):
    fetch("modelnet40", root, mirrors=())
    requests_before = server.count()
    report = fetch("modelnet40", root, mirrors=())
    assert not report.fetched and report.files == [] and server.count() == requests_before == 1


def test_cut_download_resumes_with_range_inside_a_fetch(server, h5_zip, root, monkeypatch):
    file = served(server, RELEASES["modelnet40"].files[0], h5_zip, size=True)
    substitute(monkeypatch, "modelnet40", file)
    server.cut[f"a/{H5_ZIP}"] = 1
    report = fetch("modelnet40", root, mirrors=())
    assert server.requests == [(f"a/{H5_ZIP}", None), (f"a/{H5_ZIP}", f"bytes={len(h5_zip) // 2}-")]
    assert report.files[0].sha256 == sha256(h5_zip) and report.files[0].checksum == file.checksum
    assert len(load_point_split("modelnet40", root, "train")) == 127


def test_caltech101_nested_archive_and_split_from_a_mirror(server, caltech_release, root, monkeypatch):
    archive, split = caltech_release
    zip_file, split_file = RELEASES["caltech101"].files
    substitute(monkeypatch, "caltech101", served(server, zip_file, archive), split_file)  # split: Drive id kept
    server.put(f"mirror/{split_file.name}", split)
    report = fetch("Caltech-101", root, mirrors=[server.url("mirror")])
    assert server.paths() == [f"mirror/{zip_file.name}", f"a/{zip_file.name}", f"mirror/{split_file.name}"]
    assert [f.url for f in report.files] == [server.url(f"a/{zip_file.name}"),
                                             server.url(f"mirror/{split_file.name}")]
    for name in ("train", "val", "test"):
        data = load_image_split("caltech101", root, name)
        assert len(data.items) == 6 and len(data.classnames) == 3
        for path, _ in data.items:
            with Image.open(path) as image:
                assert image.size[0] > 0
    top = sorted(p for p in tree(root / "caltech-101") if "/" not in p)
    assert top == ["101_ObjectCategories", "split_zhou_Caltech101.json"]
    assert leftovers(root) == []


def test_resampled_alternative_when_the_zip_is_gone(server, resampled_tar, root, monkeypatch):
    entry = RELEASES["modelnet40_normal_resampled"]
    primary = entry.files[0]
    alternative = served(server, primary.alternative, resampled_tar, size=True)
    gone = replace(primary, urls=(server.url(f"gone/{primary.name}"),), alternative=alternative)
    substitute(monkeypatch, entry.key, gone)
    fetch("modelnet10", root, mirrors=())
    assert server.paths() == [f"gone/{primary.name}", f"a/{alternative.name}"]
    assert dataset_status("modelnet40", root, fmt="resampled") == "present"
    assert len(load_point_split("modelnet10", root, "test")) == 2
    assert len(load_point_split("modelnet40", root, "train", fmt="resampled")) == 2


def test_checksum_mismatch_extracts_nothing(server, h5_zip, root, monkeypatch):
    file = served(server, RELEASES["modelnet40"].files[0], h5_zip)
    substitute(monkeypatch, "modelnet40", replace(file, checksum="sha256:" + "0" * 64))
    with pytest.raises(CalipError) as info:
        fetch("modelnet40", root, mirrors=())
    assert f"checksum mismatch for {H5_ZIP}: expected sha256 {'0' * 64}, actual sha256 {sha256(h5_zip)}" in str(
        info.value)
    assert leftovers(root) == [] and not (root / "modelnet40_ply_hdf5_2048").exists()


@pytest.mark.parametrize("bad", ["../evil.txt", "/tmp/calip3d-fetch-evil.txt"])
def test_unsafe_archive_is_refused_and_nothing_is_written_outside(server, h5_release, root, monkeypatch, bad):
    data = zip_bytes({**h5_release, bad: b"evil"})
    substitute(monkeypatch, "modelnet40", served(server, RELEASES["modelnet40"].files[0], data))
    with pytest.raises(CalipError, match="refused the archive modelnet40_ply_hdf5_2048.zip"):
        fetch("modelnet40", root, mirrors=())
    assert tree(root.parent) == ["data"] + [f"data/{p}" for p in tree(root)]  # the parent holds only the root
    assert leftovers(root) == [] and not (root / "modelnet40_ply_hdf5_2048").exists()
    assert not (root.parent / "evil.txt").exists() and not (root.parent.parent / "evil.txt").exists()


def test_failed_layout_check_moves_nothing_into_place(server, h5_release, root, monkeypatch):
    members = {k: v for k, v in h5_release.items() if not k.endswith("ply_data_test0.h5")}
    substitute(monkeypatch, "modelnet40", served(server, RELEASES["modelnet40"].files[0], zip_bytes(members)))
    with pytest.raises(CalipError, match=r"(?s)do not make a usable dataset, so nothing was put in place.*ply_data_test0"):
        fetch("modelnet40", root, mirrors=())
    assert not (root / "modelnet40_ply_hdf5_2048").exists() and leftovers(root) == []


def test_layout_check_given_by_the_caller_runs_on_the_temporary_copy(h5_served, root):
    roots = []

    def check(data_root):
        roots.append(data_root)
        load_point_split("modelnet40", data_root, "train")

    fetch("modelnet40", root, mirrors=(), layout_check=check)
    assert roots[:2] == [root, root] and len(roots) == 3  # before and after taking the lock, then the copy
    assert roots[2].parent.parent == root and roots[2].parent.name.startswith(".calip3d-tmp-")


def test_existing_incomplete_folder_is_not_overwritten(h5_served, server, root):
    (root / "modelnet40_ply_hdf5_2048").mkdir(parents=True)
    (root / "modelnet40_ply_hdf5_2048" / "mine.txt").write_text("keep")
    with pytest.raises(CalipError, match="exists but is not a usable modelnet40; calip3d does not overwrite it"):
        fetch("modelnet40", root, mirrors=())
    assert (root / "modelnet40_ply_hdf5_2048" / "mine.txt").read_text() == "keep" and server.count() == 0


def test_manual_only_datasets_say_what_where_from_and_where_to(root, server):
    with pytest.raises(CalipError) as info:
        fetch("scanobjectnn-objbg", root, mirrors=[server.url("mirror")])
    text = str(info.value)
    assert "https://forms.gle/ZZRnnmaUdwfRucoy7" in text and "h5_files.zip" in text
    assert f"{root}/scanobjectnn/h5_files/main_split/" in text
    with pytest.raises(CalipError, match=r"(?s)https://image-net.org.*imagenet/images/val/<wnid>/"):
        fetch("imagenet", root, mirrors=[server.url("mirror")])
    assert server.count() == 0


def test_mirror_only_datasets_need_a_mirror_and_a_checksum(server, caltech_release, root, monkeypatch):
    with pytest.raises(CalipError, match=r"(?s)Stanford Cars is not under the data root.*--mirror URL"):
        fetch("stanford_cars", root, mirrors=())
    archive, split = caltech_release
    zip_file, split_file = RELEASES["caltech101"].files
    served_zip = served(server, zip_file, archive, folder="mirror")
    substitute(monkeypatch, "caltech101", replace(served_zip, urls=()), served(server, split_file, split),
               access="mirror")
    with pytest.raises(CalipError, match="calip3d cannot download it"):
        fetch("caltech101", root, mirrors=())
    fetch("caltech101", root, mirrors=[server.url("mirror")])
    assert server.paths() == ["mirror/caltech-101.zip", "mirror/split_zhou_Caltech101.json", "a/split_zhou_Caltech101.json"]
    assert len(load_image_split("caltech101", root, "test").items) == 6


def test_offline_and_no_download(h5_served, server, root, monkeypatch):
    missing = (f"(?s)ModelNet40 h5 folder {root}/modelnet40_ply_hdf5_2048 not found. Expected layout"
               ".*calip3d fetch modelnet40")
    with pytest.raises(CalipError, match=missing):
        ensure_dataset("modelnet40", root, download=False)
    root.mkdir(parents=True)
    with pytest.raises(CalipError) as info:
        ensure_dataset("modelnet40", root, download=False)
    text = str(info.value)
    assert "ModelNet40 h5 folder" in text and "Expected layout" in text  # the loader's layout error
    assert f"modelnet40 is missing and automatic download is off (--no-download); get it with: calip3d fetch " \
           f"modelnet40 --root {root}" in text
    with pytest.raises(CalipError, match=r"automatic download is off \(several ranks under torchrun\)"):
        ensure_dataset("modelnet40", root, download=False, no_download_reason="several ranks under torchrun")
    with pytest.raises(CalipError, match=r"calip3d fetch modelnet40 --format resampled --root"):
        ensure_dataset("modelnet40", root, download=False, fmt="resampled")
    monkeypatch.setenv("CALIP3D_OFFLINE", "1")
    with pytest.raises(CalipError, match=r"automatic download is off \(CALIP3D_OFFLINE=1\)"):
        ensure_dataset("modelnet40", root)
    with pytest.raises(CalipError, match="CALIP3D_OFFLINE=1 turns downloads off"):
        fetch("modelnet40", root, mirrors=())
    assert server.count() == 0 and tree(root) == []


def test_automatic_download_on_first_use_then_nothing(h5_served, server, root, monkeypatch):
    monkeypatch.setenv("CALIP3D_DATA", str(root))
    monkeypatch.delenv("CALIP3D_MIRROR", raising=False)
    first = ensure_dataset("modelnet40", progress=False, log=[].append)
    assert first.fetched and first.root == root
    assert len(load_point_split("modelnet40", root, "test")) == 29
    assert not ensure_dataset("modelnet40").fetched and server.count() == 1


def test_mirror_from_the_environment(h5_served, server, root, h5_zip, monkeypatch):
    server.put(f"env-mirror/{H5_ZIP}", h5_zip)
    monkeypatch.setenv("CALIP3D_MIRROR", f" {server.url('env-mirror')}/ , ")
    fetch("modelnet40", root)
    assert server.paths() == [f"env-mirror/{H5_ZIP}"]


def test_status_and_listing(h5_served, root):
    statuses = {item.entry.key: item.status for item in list_datasets(root)}
    assert statuses["modelnet40"] == "missing" and statuses["scanobjectnn"] == "manual only"
    assert statuses["stanford_cars"] == "manual only" and statuses["caltech101"] == "missing"
    assert "does not exist yet" in format_listing(list_datasets(root), root)
    fetch("modelnet40", root, mirrors=())
    listing = list_datasets(root)
    assert {item.entry.key: item.status for item in listing}["modelnet40"] == "present"
    assert dataset_status("modelnet40", root) == "present" and dataset_status("modelnet10", root) == "missing"
    text = format_listing(listing, root)
    assert f"modelnet40: present  (ModelNet40 (h5, 2048 points), ~435 MB) -> {root}/modelnet40_ply_hdf5_2048" in text
    assert "modelnet40 --format resampled, modelnet10: missing" in text
    for entry in RELEASES.values():
        for file in entry.files:
            assert file.name in text and (file.checksum or "no published checksum") in text
