"""The few-shot protocol and `python -m calip3d.fewshot` end to end with varied tiny models (1 shot, 2 epochs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calip3d.errors import CalipError
from calip3d.cli.fewshot import main as fewshot_main
from calip3d.fewshot.protocol import draw_split, get_split
from calip3d.sampling import sample_per_class
from tiny_models import write_tiny

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")  # small matrices: no oversubscription


@pytest.mark.parametrize("short_classes", ["keep", "repeat"])
def test_sampler_is_class_balanced_deterministic_and_handles_short_classes(short_classes):
    labels = np.array([0] * 10 + [1] * 3 + [2] * 7 + [4] * 5)  # class 1 is short, class 3 has no item
    a = sample_per_class(labels, 4, seed=1, num_classes=5, short_classes=short_classes)
    b = sample_per_class(labels, 4, seed=1, num_classes=5, short_classes=short_classes)
    c = sample_per_class(labels, 4, seed=2, num_classes=5, short_classes=short_classes)
    assert a.indices == b.indices and a.indices != c.indices
    counts = np.bincount(labels[a.indices], minlength=5)
    assert counts.tolist() == [4, 4 if short_classes == "repeat" else 3, 4, 0, 4]
    assert a.short == [1] and a.empty == [3] and a.short_classes == short_classes
    for cls in (0, 2, 4):  # enough items: no repeats
        picked = [i for i in a.indices if labels[i] == cls]
        assert len(set(picked)) == 4
    if short_classes == "keep":  # CoOp: every item of the short class, each once
        assert sorted(i for i in a.indices if labels[i] == 1) == [10, 11, 12]
    excluded = sample_per_class(labels, 2, seed=1, num_classes=5, exclude=set(a.indices))
    assert not set(excluded.indices) & set(a.indices)


def test_sampler_class_count_exact_classes_and_bad_arguments():
    labels = [0, 0, 1, 1, 1, 2, 2]  # class 0 and class 2 hold exactly K = 2 items: not short
    inferred = sample_per_class(labels, 2, seed=5)
    assert np.bincount(np.asarray(labels)[inferred.indices]).tolist() == [2, 2, 2]
    assert inferred.short == [] and inferred.empty == [] and (inferred.shots, inferred.seed) == (2, 5)
    assert sorted(inferred.indices[:2]) == [0, 1] and sorted(inferred.indices[4:]) == [5, 6]
    wider = sample_per_class(labels, 2, seed=5, num_classes=5)  # classes past the last label are empty
    assert wider.indices == inferred.indices and wider.empty == [3, 4]
    nothing = sample_per_class([], 2, seed=5)  # no labels: no classes, nothing drawn
    assert nothing.indices == [] and nothing.empty == []
    with pytest.raises(ValueError, match="shots must be >= 1, got 0"):
        sample_per_class(labels, 0, seed=1)
    with pytest.raises(ValueError, match="short_classes must be one of"):
        sample_per_class(labels, 2, seed=1, short_classes="drop")


def test_split_saved_and_reloaded(tmp_path):
    labels = [i % 5 for i in range(40)]
    ids = [f"img{i}.jpg" for i in range(40)]
    names = [f"c{i}" for i in range(5)]
    drawn = draw_split("toy", names, labels, ids, shots=4, seed=3)
    assert drawn.val_source == "train" and drawn.val_shots == 4
    assert not set(drawn.train) & set(drawn.val)
    path = tmp_path / "split.json"
    first, reused = get_split(path, drawn)
    assert not reused and path.exists()
    again, reused = get_split(path, draw_split("toy", names, labels, ids, shots=4, seed=3))
    assert reused and again.train == drawn.train and again.val == drawn.val
    other_items = draw_split("toy", names, labels, [f"x{i}" for i in range(40)], shots=4, seed=3)
    with pytest.raises(CalipError, match="does not match"):
        get_split(path, other_items)
    with pytest.raises(CalipError, match="short_classes differs"):
        get_split(path, draw_split("toy", names, labels, ids, shots=4, seed=3, short_classes="repeat"))


def _argv(tiny, root, tmp_path, dataset, *extra):
    return ["--dataset", dataset, "--data-root", str(root), "--backbone", str(tiny[0]), "--pretrained", str(tiny[1]),
            "--shots", "1", "--epochs", "2", "--augment", "1", "--seed", "1", "--split-dir", str(tmp_path / "splits"),
            "--output", str(tmp_path / "out.json"), "--checkpoint", str(tmp_path / "ck.pt"), "--workers", "0",
            *extra]


def test_limit_spreads_over_the_class_sorted_test_split(caltech_root, varied_images):
    from calip3d.backbone import BackboneConfig
    from calip3d.fewshot.config import FewShotConfig
    from calip3d.fewshot.pipeline import FewShotData
    from calip3d.run_context import RunContext

    backbone = BackboneConfig(str(varied_images[0]), str(varied_images[1]), device="cpu").load()
    data = FewShotData.load(RunContext.build(FewShotConfig("caltech101", str(caltech_root)), backbone))
    limited = data.test_split(50)
    assert len(limited) == 50 and len(set(limited.labels.tolist())) >= 30  # the first 50 items: 1 class
    assert limited.items[0] == data.test.items[0] and limited.items[-1] == data.test.items[-1]
    assert data.test_split(None) is data.test and data.test_split(10 ** 6) is data.test


def test_caltech101_calip_fs_end_to_end_and_checkpoint_round_trip(varied_images, caltech_root, tmp_path):
    tiny = varied_images
    proc = subprocess.run([sys.executable, "-m", "calip3d.fewshot",
                           *_argv(tiny, caltech_root, tmp_path, "caltech101", "--limit", "40")],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "out.json").read_text())
    split = json.loads((tmp_path / "splits" / "caltech101_shot1_seed1.json").read_text())
    assert len(split["train"]) == 100 and len(split["val"]) == 100 and split["val_source"] == "val"
    assert result["method"] == "calip-fs" and result["num_samples"] == 40
    assert result["protocol"] == "honest" and not result["oracle"]
    assert [h["epoch"] for h in result["history"]][-2:] == [1, 2]
    assert result["hyperparameters"]["epochs"] == 2 and result["val_top1"] is not None
    assert "clip" in result["zero_shot_reference"] and result["split_file"].endswith("caltech101_shot1_seed1.json")

    # evaluating the saved checkpoint reproduces the test numbers
    assert fewshot_main(_argv(tiny, caltech_root, tmp_path, "caltech101", "--limit", "40", "--eval-only",
                              "--output", str(tmp_path / "eval.json"))) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["test"] == result["test"]


def test_modelnet40_methods_and_mismatched_checkpoint(varied_points, modelnet_h5_dir, tmp_path):
    tiny = varied_points
    root = modelnet_h5_dir.parent
    assert fewshot_main(_argv(tiny, root, tmp_path, "modelnet40")) == 0
    first = json.loads((tmp_path / "out.json").read_text())
    assert first["provenance"]["projector"]["num_views"] == 10
    assert first["provenance"]["templates"].startswith("pointclip-fs")
    assert "door" in first["split"]["empty"] and first["split"]["short_classes"] == "keep"

    # same seed, same numbers
    assert fewshot_main(_argv(tiny, root, tmp_path, "modelnet40", "--output", str(tmp_path / "again.json"),
                              "--checkpoint", str(tmp_path / "ck2.pt"))) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["test"] == first["test"] and again["history"] == first["history"] and again["split_reused"]

    assert fewshot_main(_argv(tiny, root, tmp_path, "modelnet40", "--lr-grid", "0.01,0.001", "--views", "6",
                              "--output", str(tmp_path / "grid.json"), "--checkpoint", str(tmp_path / "g.pt"))) == 0
    grid = json.loads((tmp_path / "grid.json").read_text())
    searched = grid["hyperparameters"]["lr_search"]
    assert [lr for lr, _ in searched] == [0.01, 0.001]
    best = max(searched, key=lambda item: item[1])  # first maximum, as the command keeps it
    assert grid["hyperparameters"]["lr"] == best[0] and grid["val_top1"] == best[1]

    for method in ("tip-adapter", "linear-probe", "pointclip-adapter", "zero-shot"):
        assert fewshot_main(_argv(tiny, root, tmp_path, "modelnet40", "--method", method, "--output",
                                  str(tmp_path / f"{method}.json"), "--checkpoint", str(tmp_path / "pc.pt"))) == 0
        assert json.loads((tmp_path / f"{method}.json").read_text())["num_samples"] == 29

    with pytest.raises(CalipError, match="another setup"):  # a CALIP-FS checkpoint read as the adapter's
        fewshot_main(_argv(tiny, root, tmp_path, "modelnet40", "--method", "pointclip-adapter", "--eval-only"))
    other = write_tiny(tmp_path / "other", "vit", seed=0)
    with pytest.raises(CalipError, match="backbone"):
        fewshot_main(_argv(other, root, tmp_path, "modelnet40", "--eval-only"))


def test_pointclip_adapter_needs_3d(varied_images, caltech_root, tmp_path):
    tiny = varied_images
    with pytest.raises(CalipError, match="3D"):
        fewshot_main(_argv(tiny, caltech_root, tmp_path, "caltech101", "--method", "pointclip-adapter",
                           "--limit", "5"))


def test_sweep_writes_table_and_plot(varied_points, modelnet_h5_dir, tmp_path):
    tiny = varied_points
    proc = subprocess.run(
        [sys.executable, "experiments/fewshot_sweep.py", "--datasets", "modelnet40", "--shots", "1", "--seeds", "1",
         "2", "--methods", "zero-shot", "tip-adapter", "--out-dir", str(tmp_path / "sweep"), "--",
         "--data-root", str(modelnet_h5_dir.parent), "--backbone", str(tiny[0]), "--pretrained", str(tiny[1]),
         "--views", "6", "--augment", "1"],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert len(summary["runs"]) == 4 and len(summary["summary"]) == 2
    row = summary["summary"][0]
    runs = [r["top1"] for r in summary["runs"] if r["method"] == row["method"]]
    assert row["mean_top1"] == pytest.approx(sum(runs) / 2)
    assert (tmp_path / "sweep" / "summary.csv").read_text().startswith("dataset,method,shots")
    assert (tmp_path / "sweep" / "accuracy_vs_shots.png").read_bytes()[:4] == b"\x89PNG"
    # the test split is encoded once, the train and val shots and the augmented copy once per seed, whatever the
    # number of methods
    assert len(list((tmp_path / "sweep" / "tokens").glob("tokens-*.pt"))) == 1 + 2 * 3
    assert proc.stderr.count("writing tokens of the test split to the cache") == 1
