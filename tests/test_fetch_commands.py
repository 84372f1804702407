"""Data that fetches itself, through the commands: `eval` without --data-root downloads the dataset from a local
server into the default root and evaluates it; a second run downloads nothing; offline, --no-download and
manual-only errors; `calip3d fetch` and `--list`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from calip3d.cli.eval import main as eval_main
from calip3d.cli.fetch import main as fetch_main
from calip3d.cli.fewshot import main as fewshot_main
from calip3d.fetch import RELEASES
from calip3d.fetch.manifest import MANIFEST_NAME
from fetch_helpers import served, sha256, substitute
from tiny_models import write_tiny

pytest_plugins = ["fetch_helpers"]  # fixtures: server, h5_zip, caltech_release
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("tinyfetch"), "resnet", seed=6)


@pytest.fixture
def h5_served(server, h5_zip, monkeypatch):
    return substitute(monkeypatch, "modelnet40", served(server, RELEASES["modelnet40"].files[0], h5_zip,
                                                        checksum=False))


@pytest.fixture
def default_root(tmp_path, monkeypatch):
    """The default data root for this test, which does not exist yet."""
    root = tmp_path / "xdg" / "calip3d" / "data"
    monkeypatch.delenv("CALIP3D_DATA", raising=False)
    monkeypatch.delenv("CALIP3D_OFFLINE", raising=False)
    monkeypatch.delenv("CALIP3D_MIRROR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return root


def test_eval_downloads_a_missing_dataset_then_evaluates(tiny, h5_served, server, default_root, tmp_path,
                                                         modelnet_h5_dir):
    argv = ["--dataset", "modelnet40", "--backbone", str(tiny[0]), "--pretrained", str(tiny[1]), "--tune-on",
            "none", "--output", str(tmp_path / "out.json")]
    assert eval_main(argv) == 0
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["num_samples"] == 29  # the real test shapes, served as the release zip
    data = result["provenance"]["data"]
    zip_sha = sha256(server.root / "a" / "modelnet40_ply_hdf5_2048.zip")
    assert data["data_root"] == str(default_root) and data["fetched"]
    assert [f["sha256"] for f in data["files"]] == [zip_sha]
    assert (default_root / MANIFEST_NAME).is_file()
    # the term cache lives beside the data, never inside it
    assert (tmp_path / "xdg" / "calip3d" / "features").is_dir()
    assert not list(default_root.rglob("terms-*.pt"))
    requests = server.count()
    assert eval_main(argv) == 0  # a second run downloads nothing
    assert server.count() == requests == 1
    assert json.loads((tmp_path / "out.json").read_text())["pointclip"] == result["pointclip"]


def test_fewshot_and_fetch_command_use_the_same_root(tiny, h5_served, server, default_root, tmp_path, capsys):
    assert fetch_main(["modelnet40", "--mirror", server.url("nothing-here")]) == 0
    assert server.paths() == ["nothing-here/modelnet40_ply_hdf5_2048.zip", "a/modelnet40_ply_hdf5_2048.zip"]
    assert f"modelnet40: downloaded to {default_root / 'modelnet40_ply_hdf5_2048'}" in capsys.readouterr().out
    assert fetch_main(["modelnet40"]) == 0 and "already present" in capsys.readouterr().out
    assert fewshot_main(["--dataset", "modelnet40", "--backbone", str(tiny[0]), "--pretrained", str(tiny[1]),
                         "--shots", "1", "--method", "zero-shot", "--views", "6", "--split-dir",
                         str(tmp_path / "splits"), "--output", str(tmp_path / "fs.json")]) == 0
    assert json.loads((tmp_path / "fs.json").read_text())["provenance"]["data"]["data_root"] == str(default_root)
    assert server.count() == 2


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "calip3d", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env={**os.environ, **env})


def test_offline_and_no_download_name_the_fetch_command(tiny, tmp_path):
    root = tmp_path / "empty"
    common = ["eval", "--dataset", "modelnet40", "--backbone", str(tiny[0]), "--pretrained", str(tiny[1])]
    offline = _cli(*common, env={"CALIP3D_DATA": str(root), "CALIP3D_OFFLINE": "1"})
    assert offline.returncode == 2 and "Traceback" not in offline.stderr
    assert "automatic download is off (CALIP3D_OFFLINE=1)" in offline.stderr
    assert f"calip3d fetch modelnet40 --root {root}" in offline.stderr
    flag = _cli(*common, "--data-root", str(root), "--no-download", env={})
    assert flag.returncode == 2 and "automatic download is off (--no-download)" in flag.stderr
    assert "modelnet40_ply_hdf5_2048" in flag.stderr  # the expected layout


def test_manual_only_dataset_through_eval_and_fetch(tiny, tmp_path):
    for args in (["fetch", "scanobjectnn-hardest", "--root", str(tmp_path)],
                 ["eval", "--dataset", "PB_T50_RS", "--data-root", str(tmp_path), "--backbone", str(tiny[0]),
                  "--pretrained", str(tiny[1])]):
        proc = _cli(*args, env={})
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "https://forms.gle/ZZRnnmaUdwfRucoy7" in proc.stderr and "h5_files/main_split" in proc.stderr


def test_list_shows_status_sources_and_size(shared_data, tmp_path):
    present = _cli("fetch", "--list", "--root", str(shared_data), env={})
    assert present.returncode == 0, present.stderr
    lines = present.stdout.splitlines()

    def status(name: str) -> str:
        return next(line for line in lines if line.startswith(f"{name}:") or f", {name}:" in line
                    or line.startswith(f"{name}, "))

    assert "present" in status("modelnet40") and "present" in status("caltech101")
    assert "manual only" in status("scanobjectnn-objonly") and "manual only" in status("imagenet")
    assert "missing" in status("oxford_pets")
    assert "huggingface.co/datasets/Msun/modelnet40" in present.stdout and "~435 MB" in present.stdout
    empty = _cli("fetch", "--list", "--data-root", str(tmp_path / "none"), env={})
    assert "present" not in empty.stdout.replace("present / missing", "")
    nothing = _cli("fetch", env={"CALIP3D_DATA": str(tmp_path)})
    assert nothing.returncode == 2 and "name at least one dataset" in nothing.stderr
