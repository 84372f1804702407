"""`python -m calip3d.eval` on the real Caltech101 split with a tiny model (config JSON + checkpoint)."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from calip3d.cache import CACHE_FORMAT, FeatureCache
from calip3d.cli.eval import main
from calip3d.encoding import Terms
from calip3d.metrics import topk_accuracy
from tiny_models import write_tiny

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("tiny"), "resnet", seed=1)


def _argv(tiny, caltech_root, tmp_path, *extra):
    config, checkpoint = tiny
    return ["--dataset", "caltech101", "--data-root", str(caltech_root), "--backbone", str(config),
            "--pretrained", str(checkpoint), "--limit", "40", "--tune-limit", "30", "--workers", "0",
            "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out.json"), *extra]


def test_cli_end_to_end_subprocess(tiny, caltech_root, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "calip3d.eval", *_argv(tiny, caltech_root, tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["num_samples"] == 40 and result["num_classes"] == 100
    assert result["methods"] == ["clip", "calip_paper", "calip_tuned"]
    assert result["calip_paper"]["betas"] == [1.0, 5.0, 0.18]
    assert "val" in result["calip_tuned"]["betas_source"] and not result["calip_tuned"]["oracle"]
    assert result["calip_tuned"]["search"]["beta2_max"] >= 5.0  # covers the paper's Caltech101 beta2
    prov = result["provenance"]
    assert prov["split_file"].endswith("split_zhou_Caltech101.json")
    assert "sha256:" in prov["backbone"]["weights"] and prov["temperature"] == 0.5
    assert "torch" in prov["versions"] and "a photo of a {}." in prov["templates"]
    for name in result["methods"]:
        assert 0.0 <= result[name]["top1"] <= result[name]["top5"] <= 100.0
    assert "clip" in proc.stdout and "calip_tuned" in proc.stdout


def test_results_match_cached_terms_and_cache_is_reused(tiny, caltech_root, tmp_path):
    assert main(_argv(tiny, caltech_root, tmp_path, "--tune-on", "test")) == 0
    first = json.loads((tmp_path / "out.json").read_text())
    assert first["provenance"]["cache"] == "miss"
    assert first["calip_oracle"]["oracle"] and "ORACLE" in first["calip_oracle"]["betas_source"]
    files = sorted((tmp_path / "cache").glob("terms-*.pt"))
    assert len(files) == 2  # test slice and tuning set

    # the reported numbers are the cached terms scored with the reported betas
    blob = torch.load(files[0], weights_only=True)
    terms = [Terms(**torch.load(f, weights_only=True)["tensors"]) for f in files]
    test_terms = next(t for t in terms if len(t.labels) == 40)
    b1, b2, b3 = first["calip_paper"]["betas"]
    logits = 100 * (b1 * test_terms.clip + b2 * test_terms.visual_guided + b3 * test_terms.textual_blended)
    assert first["calip_paper"]["top1"] == pytest.approx(topk_accuracy(logits, test_terms.labels, 1))
    assert blob["format"] == CACHE_FORMAT

    # a rerun that changes only betas is served from the cache
    assert main(_argv(tiny, caltech_root, tmp_path, "--betas", "1,0.5,0.05")) == 0
    second = json.loads((tmp_path / "out.json").read_text())
    assert second["provenance"]["cache"] == "hit"
    assert second["clip"] == first["clip"] and second["calip_paper"] == first["calip_paper"]
    assert second["calip_user"]["betas"] == [1.0, 0.5, 0.05]

    # a corrupt entry is detected and recomputed, never used
    for f in files:
        f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    assert main(_argv(tiny, caltech_root, tmp_path)) == 0
    third = json.loads((tmp_path / "out.json").read_text())
    assert third["provenance"]["cache"] == "stale"
    assert third["clip"] == first["clip"] and third["calip_paper"] == first["calip_paper"]


def _terms(rows: int = 3) -> Terms:
    return Terms(*(torch.randn(rows, 2) for _ in range(4)), torch.arange(rows) % 2, torch.arange(rows))


@pytest.mark.parametrize("tamper", ["other spec", "bytes", "shape", "dtype", "format", "truncated", "foreign object"])
def test_entry_altered_after_writing_is_stale(tmp_path, tamper):
    """An entry changed after it was written (written for something else under this name, bit rot, a cut copy, a
    foreign tool) is never used and is replaced: where it still loads, the spec or the digest notices (same bytes
    under another shape or dtype too); a pickled object is refused unread."""
    cache = FeatureCache(tmp_path)
    terms = _terms()
    spec = {"a": 1}
    path = cache.save(spec, terms)
    blob = torch.load(path, weights_only=True)
    clip = blob["tensors"]["clip"]
    if tamper == "other spec":
        blob["spec"] = {"a": 2}
    elif tamper == "bytes":
        clip[1, 0] += 1.0
    elif tamper == "shape":
        blob["tensors"]["clip"] = clip.reshape(2, 3)
    elif tamper == "dtype":
        blob["tensors"]["clip"] = clip.view(torch.int32)  # the same bytes and shape
    elif tamper == "format":
        blob["format"] = CACHE_FORMAT - 1
    elif tamper == "foreign object":
        blob["note"] = Fraction(1, 3)  # would load with weights_only=False, and be a hit
    torch.save(blob, path)
    if tamper == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    assert cache.load(spec, Terms) is None and cache.last_status == "stale" and not path.exists()
    cache.save(spec, terms)
    loaded = cache.load(spec, Terms)
    assert cache.last_status == "hit" and torch.equal(loaded.clip, terms.clip)


def test_cache_file_names_and_disabled_cache(tmp_path):
    cache = FeatureCache(tmp_path)
    assert cache.last_status == "unused" and FeatureCache(None).last_status == "disabled"
    assert cache.path({"kind": "tokens", "a": 1}).name.startswith("tokens-")
    assert cache.path({"a": 1}).name.startswith("entry-")
    disabled = FeatureCache(None)
    assert disabled.path({"a": 1}) is None and disabled.load({"a": 1}, Terms) is None
    assert disabled.last_status == "disabled" and disabled.save({"a": 1}, None) is None
    saved = cache.save({"a": 1}, _terms())
    cache.remove({"a": 1})
    assert saved is not None and not saved.exists()
    cache.remove({"a": 1})  # nothing to remove: no error


def test_cache_announces_what_it_writes_and_its_size(tmp_path, capsys):
    cache = FeatureCache(tmp_path, announce=True)
    mib = torch.zeros(2 ** 18)  # 2^18 float32 values: 1 MiB
    terms = Terms(mib, *(torch.zeros(1) for _ in range(3)), torch.tensor([0]), torch.arange(1))
    path = cache.save({"a": 1}, terms)
    assert capsys.readouterr().err.strip() == f"writing entry of the data to the cache: 1.0 MiB, {path}"
    cache.save({"kind": "terms", "a": 1}, terms, what="test split")
    assert "writing terms of the test split to the cache: 1.0 MiB" in capsys.readouterr().err
    FeatureCache(tmp_path).save({"a": 2}, terms)
    assert capsys.readouterr().err == ""


def test_default_cache_folder_is_beside_the_data_never_above_it(tmp_path, monkeypatch):
    from calip3d.cache import default_cache_dir
    from calip3d.datasets.root import default_data_root

    monkeypatch.delenv("CALIP3D_CACHE", raising=False)
    monkeypatch.delenv("CALIP3D_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "calip3d" / "features"
    assert default_data_root() == tmp_path / "xdg" / "calip3d" / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/xdg")  # not absolute: ignored, as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "calip3d" / "features"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "calip3d" / "features"
    assert default_data_root() == tmp_path / "home" / ".cache" / "calip3d" / "data"
    monkeypatch.setenv("CALIP3D_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("CALIP3D_CACHE", "~/mine")  # quoted in a shell: not expanded there
    assert default_cache_dir() == tmp_path / "home" / "mine"


@pytest.mark.parametrize("extra, message", [
    (["--betas", "1,2"], "three numbers"),
    (["--limit", "0"], "--limit must be >= 1"),
    (["--templates", "/no/such.json"], "no/such.json"),
])
def test_user_mistakes_give_clear_errors(tiny, caltech_root, tmp_path, extra, message):
    proc = subprocess.run([sys.executable, "-m", "calip3d.eval", *_argv(tiny, caltech_root, tmp_path, *extra)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr


def test_missing_dataset_prints_expected_layout(tiny, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "calip3d.eval", "--dataset", "oxford_pets", "--data-root",
                           str(tmp_path), "--backbone", str(tiny[0]), "--pretrained", str(tiny[1])],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "split_zhou_OxfordPets.json" in proc.stderr
