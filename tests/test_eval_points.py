"""3D commands end to end on the real ModelNet40 sample with a tiny model: eval and classify."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from calip3d.cli.classify import main as classify_main
from calip3d.cli.eval import main as eval_main
from calip3d.encoding import Terms
from calip3d.metrics import topk_accuracy
from tiny_models import write_tiny

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("tiny3d"), "resnet", seed=2)


def _eval_argv(tiny, root, tmp_path, *extra):
    return ["--dataset", "modelnet40", "--data-root", str(root), "--backbone", str(tiny[0]), "--pretrained",
            str(tiny[1]), "--tune-shots", "1", "--cache-dir", str(tmp_path / "cache"),
            "--output", str(tmp_path / "out.json"), "--batch-size", "16", *extra]


def test_modelnet40_eval_reports_pointclip_beside_calip(tiny, modelnet_h5_dir, tmp_path):
    root = modelnet_h5_dir.parent
    assert eval_main(_eval_argv(tiny, root, tmp_path, "--tune-on", "test")) == 0
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["num_samples"] == 29 and result["num_classes"] == 39 + 1
    assert result["methods"][:2] == ["pointclip", "calip"]
    assert {"pointclip_tuned", "calip_tuned", "pointclip_oracle", "calip_oracle"} <= set(result["methods"])
    assert result["calip"]["betas"] == [1.0, 1.12, 0.02] and result["calip"]["view_weights"] == [1.0] * 6
    assert result["calip_oracle"]["oracle"] and not result["calip_tuned"]["oracle"]
    assert result["provenance"]["projector"]["num_views"] == 6
    assert result["provenance"]["points"]["num_points"] == 1024

    # the numbers are the cached per-view terms aggregated with the reported weights and betas
    files = list((tmp_path / "cache").glob("terms-*.pt"))
    terms = [Terms(**torch.load(f, weights_only=True)["tensors"]) for f in files]
    test_terms = next(t for t in terms if len(t.labels) == 29)
    assert test_terms.clip.shape == (29, 6, 40)
    entry = result["calip_tuned"]
    w = torch.tensor(entry["view_weights"])
    b1, b2, b3 = entry["betas"]
    logits = sum(b * torch.einsum("nvk,v->nk", t, w) for b, t in zip((b1, b2, b3), test_terms.triple))
    assert entry["top1"] == pytest.approx(topk_accuracy(logits, test_terms.labels, 1))
    pc = torch.einsum("nvk->nk", test_terms.clip)
    assert result["pointclip"]["top5"] == pytest.approx(topk_accuracy(pc, test_terms.labels, 5))


def test_paper_view_weights_are_labelled_oracle(tiny, modelnet_h5_dir, tmp_path):
    argv = _eval_argv(tiny, modelnet_h5_dir.parent, tmp_path, "--view-weights", "paper", "--tune-on", "none",
                      "--limit", "8")
    assert eval_main(argv) == 0
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["calip"]["view_weights"] == [3, 9, 5, 4, 5, 4] and result["calip"]["oracle"]
    assert result["pointclip_weighted"]["oracle"] and "ORACLE" in result["calip"]["view_weights_source"]


def test_realistic_projector_and_resampled_format_via_subprocess(tiny, modelnet_resampled_dir, tmp_path):
    argv = _eval_argv(tiny, modelnet_resampled_dir.parent, tmp_path, "--format", "resampled", "--projector",
                      "realistic", "--tune-on", "none", "--limit", "6", "--no-cache")
    proc = subprocess.run([sys.executable, "-m", "calip3d.eval", *argv], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["num_samples"] == 6 and result["pointclip"]["view_weights"] == [1.0] * 10
    assert "pointclip" in proc.stdout


def test_bad_view_weights_are_a_clear_error(tiny, modelnet_h5_dir, tmp_path):
    argv = _eval_argv(tiny, modelnet_h5_dir.parent, tmp_path, "--view-weights", "1,2,3", "--tune-on", "none")
    proc = subprocess.run([sys.executable, "-m", "calip3d.eval", *argv], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "6 views" in proc.stderr


def _write_off_cube(path: Path) -> None:
    v = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tris = [t for a, b, c, d in faces for t in ((a, b, c), (a, c, d))]
    lines = ["OFF", f"{len(v)} {len(tris)} 0", *[f"{x} {y} {z}" for x, y, z in v],
             *[f"3 {a} {b} {c}" for a, b, c in tris]]
    path.write_text("\n".join(lines) + "\n")


def test_classify_real_shape_and_mesh(tiny, modelnet_resampled_dir, tmp_path, capsys):
    shape = sorted((modelnet_resampled_dir / "airplane").glob("*.txt"))[0]
    mesh = tmp_path / "cube.off"
    _write_off_cube(mesh)
    out = tmp_path / "pred.json"
    argv = [str(shape), str(mesh), "--labels", "airplane", "chair", "box", "--backbone", str(tiny[0]),
            "--pretrained", str(tiny[1]), "--top-k", "2", "--output", str(out)]
    assert classify_main(argv) == 0
    printed = capsys.readouterr().out
    assert str(shape) in printed and str(mesh) in printed
    pred = json.loads(out.read_text())
    assert [p["file"] for p in pred["predictions"]] == [str(shape), str(mesh)]
    for p in pred["predictions"]:
        probs = [t["probability"] for t in p["top"]]
        assert len(probs) == 2 and probs[0] >= probs[1] and 0 < sum(probs) <= 1 + 1e-6
    assert pred["betas"] == [1.0, 1.12, 0.02] and pred["view_weights"] == [1.0] * 6


def test_classify_reports_bad_file_without_traceback(tiny, tmp_path):
    bad = tmp_path / "nan.npy"
    np.save(bad, np.array([[0.0, np.nan, 1.0], [1.0, 2.0, 3.0]]))
    proc = subprocess.run([sys.executable, "-m", "calip3d.classify", str(bad), "--labels", "a", "b",
                           "--backbone", str(tiny[0]), "--pretrained", str(tiny[1])],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "nan.npy" in proc.stderr


def test_scanobjectnn_eval_on_written_official_layout(tiny, tmp_path):
    import h5py

    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "scanobjectnn" / "h5_files" / "main_split_nobg"
    folder.mkdir(parents=True)
    for name, per_class in (("training_objectdataset.h5", 2), ("test_objectdataset.h5", 1)):
        labels = np.repeat(np.arange(15), per_class).astype(np.int64)
        with h5py.File(folder / name, "w") as handle:
            handle["data"] = (rng.normal(size=(len(labels), 2048, 3)) * 3 + 5).astype(np.float32)
            handle["label"] = labels
            handle["mask"] = np.zeros((len(labels), 2048), dtype=np.int64)
    argv = ["--dataset", "scanobjectnn-objonly", "--data-root", str(tmp_path / "data"), "--backbone", str(tiny[0]),
            "--pretrained", str(tiny[1]), "--tune-shots", "1", "--no-cache", "--output", str(tmp_path / "s.json")]
    assert eval_main(argv) == 0
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["num_samples"] == 15 and result["num_classes"] == 15
    assert result["provenance"]["points"]["normalize"] is True
    assert "15 clouds" in result["calip_tuned"]["betas_source"]
