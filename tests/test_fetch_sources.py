"""The registry: its facts match data_sources.md and data/README.md, it covers every name `eval` takes, and it
places each dataset where the loaders read it. Also the data root, mirror and offline settings."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from calip3d.datasets.images import IMAGE_DATASETS
from calip3d.datasets.registry import DATASETS as REGISTRY
from calip3d.errors import CalipError
from calip3d.fetch import RELEASES, default_data_root, mirrors_from_env, offline, resolve_dataset
from calip3d.fetch.download import source_urls
from calip3d.fetch.verify import parse_checksum
from conftest import REPO, SHARED_DATA

ALL_FILES = [(entry, choice) for entry in RELEASES.values() for file in entry.files for choice in file.choices()]


def facts_of(file) -> list[str]:
    """The registry's facts about `file` that `text` must state: checksum digest, exact size, Drive id, URLs."""
    facts = [parse_checksum(file.checksum)[1]] if file.checksum else []
    facts += [f"{file.size:,}"] if file.size is not None else []
    return facts + ([file.gdrive_id] if file.gdrive_id else [])


def test_registry_facts_are_those_of_data_sources_md():
    path = SHARED_DATA.parent / "reference" / "data_sources.md"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    text = path.read_text()
    for entry, file in ALL_FILES:
        assert file.name in text or file.name.startswith("split_zhou_") and "split_zhou_<Name>.json" in text, file.name
        for fact in facts_of(file):
            assert fact in text, (entry.key, file.name, fact)
        for url in file.urls:  # every host is one the facts name, with the file's own path
            parts = urlsplit(url)
            assert f"{parts.scheme}://{parts.netloc}" in text and parts.path.rsplit("/", 1)[-1] in text, url


def test_data_readme_shows_every_source_and_checksum():
    text = (REPO / "data" / "README.md").read_text()
    for entry, file in ALL_FILES:
        urls = source_urls(file) if entry.access != "manual" else []
        for fact in facts_of(file) + [file.checksum or file.name] + urls:
            assert fact in text, (entry.key, file.name, fact)
    assert "calip3d downloads nothing" not in text


def test_every_name_eval_takes_has_an_entry_in_the_loaders_folder():
    for name in [d for d in REGISTRY if REGISTRY[d].is_points]:
        for fmt in REGISTRY[name].formats:
            entry = resolve_dataset(name, fmt)
            assert name in entry.loaders and entry.fmt == fmt
    for name, spec in IMAGE_DATASETS.items():
        entry = resolve_dataset(name)
        assert entry.key == name and entry.folder == spec.folder and entry.loaders == (name,)
    assert resolve_dataset("modelnet40").folder == "modelnet40_ply_hdf5_2048"  # the format eval reads by default
    assert resolve_dataset("modelnet40", "resampled") is resolve_dataset("modelnet10") is resolve_dataset(
        "modelnet40_normal_resampled")
    assert resolve_dataset("scanobjectnn-hardest").key == "scanobjectnn"
    assert resolve_dataset("Caltech-101").key == "caltech101" and resolve_dataset("flowers102").key == "oxford_flowers"


@pytest.mark.parametrize("name, fmt, message", [
    ("modelnet10", "h5", "modelnet10 is not available as PointSettings.format 'h5'; it is read as: resampled"),
    ("caltech101", "h5", "PointSettings.format 'h5' does not apply to caltech101"),
    ("modelnet41", None, "unknown dataset 'modelnet41'; expected one of: modelnet40, modelnet10"),
])
def test_wrong_names_and_formats(name, fmt, message):
    with pytest.raises(CalipError, match=re.escape(message)):
        resolve_dataset(name, fmt)


def test_install_rules_stay_inside_the_dataset_folder():
    for entry, file in ALL_FILES:
        names = [choice.name for f in entry.files for choice in f.choices()]
        assert len(names) == len(set(names)), entry.key  # downloads of one dataset never share a file name
        if entry.access == "manual":
            assert file.install is None and not file.urls and "{root}" in entry.instructions
            continue
        target = Path(file.install.target)
        assert target.parts[0] == entry.folder and ".." not in target.parts, (entry.key, file.name)


def test_mirror_only_files_are_checksummed_and_have_no_official_url():
    mirror_only = [entry for entry in RELEASES.values() if entry.access == "mirror"]
    assert sorted(entry.key for entry in mirror_only) == ["stanford_cars", "sun397"]
    for entry in mirror_only:
        assert "--mirror" in entry.instructions
        for file in entry.files:
            assert file.gdrive_id or (file.checksum and not file.urls), file.name


def test_default_data_root(monkeypatch, tmp_path):
    monkeypatch.delenv("CALIP3D_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_data_root() == tmp_path / "home" / ".cache" / "calip3d" / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # ignored, as the XDG spec says
    assert default_data_root() == tmp_path / "home" / ".cache" / "calip3d" / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_root() == tmp_path / "xdg" / "calip3d" / "data"
    monkeypatch.setenv("CALIP3D_DATA", "~/datasets")
    assert default_data_root() == tmp_path / "home" / "datasets"
    assert not (tmp_path / "home").exists()  # asking for the root creates nothing


def test_mirrors_and_offline_from_the_environment(monkeypatch):
    monkeypatch.setenv("CALIP3D_MIRROR", "https://a.example/data/, ,http://b.example")
    assert mirrors_from_env() == ["https://a.example/data", "http://b.example"]
    monkeypatch.setenv("CALIP3D_MIRROR", "/local/folder")
    with pytest.raises(CalipError, match="is not an http:// or https:// URL"):
        mirrors_from_env()
    for value, expected in (("1", True), ("true", True), ("0", False), ("", False)):
        monkeypatch.setenv("CALIP3D_OFFLINE", value)
        assert offline() is expected
