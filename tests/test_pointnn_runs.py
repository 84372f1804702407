"""Point-NN through the commands, on the real ModelNet40 / ModelNet10 shapes in ../shared/data: `fewshot --method
point-nn` (K shots and the whole train split, both protocols, fused with PointCLIP or CALIP), its cached features,
the zero-shot rows of `eval`, and a 2-process torchrun run equal to one process. Point-NN needs no weights, so its
accuracies here are real (the tiny CLIP model only serves the zero-shot references and the fusion bases)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from calip3d.cli.eval import main as eval_main
from calip3d.cli.fewshot import main as fewshot_main
from calip3d.errors import CalipError

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


def _argv(model, root, out: Path, dataset: str, *extra: str) -> list[str]:
    return ["--dataset", dataset, "--data-root", str(root), "--backbone", str(model[0]), "--pretrained",
            str(model[1]), "--seed", "1", "--workers", "0", "--views", "6", "--split-dir", str(out.parent / "splits"),
            "--output", str(out), "--method", "point-nn", *extra]


def _run(model, root, out: Path, dataset: str, *extra: str) -> dict:
    assert fewshot_main(_argv(model, root, out, dataset, *extra)) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("dataset, chance", [("modelnet40", 100 / 40), ("modelnet10", 100 / 10)])
def test_point_nn_alone_is_far_above_chance(dataset, chance, varied_points, shared_data, tmp_path, capsys):
    fmt = ["--format", "resampled"] if dataset == "modelnet10" else []
    runs = {}
    for shots in ("1", "all"):
        for protocol in ("honest", "release"):
            result = _run(varied_points, shared_data, tmp_path / f"{shots}{protocol}.json", dataset, "--shots", shots,
                          "--protocol", protocol, *fmt)
            runs[(shots, protocol)] = result
            hyper = result["hyperparameters"]
            assert hyper["base"].startswith("none: Point-NN alone")
            assert hyper["encoder"]["normalize"] == ("batch" if protocol == "release" else "cloud")
            assert "none" in hyper["encoder"]["shuffle"]  # no shuffle by default, and it says so
            (gamma,) = result["selections"]
            assert gamma["what"] == "gamma" and gamma["oracle"] == (protocol == "release")
            assert result["oracle"] == (protocol == "release")
    print(dataset, {k: v["test"]["top1"] for k, v in runs.items()}, file=sys.stderr)
    # the release's setting (the whole train split as memory, gamma on test) and the honest one both classify
    assert runs[("all", "release")]["test"]["top1"] > 5 * chance
    assert runs[("all", "honest")]["test"]["top1"] > 3 * chance
    assert runs[("1", "honest")]["test"]["top1"] > 2 * chance
    full, honest = runs[("all", "release")]["hyperparameters"], runs[("all", "honest")]["hyperparameters"]
    assert full["memory_size"] > honest["memory_size"]  # the honest memory leaves the val shots out
    assert "the release's memory" in full["memory"]


def test_fusion_with_pointclip_and_calip_is_labelled_and_cached(varied_points, shared_data, tmp_path, capsys):
    cache = ["--cache-tokens", str(tmp_path / "tok")]
    for base in ("pointclip", "calip"):
        result = _run(varied_points, shared_data, tmp_path / f"{base}.json", "modelnet40", "--shots", "2",
                      "--base", base, *cache)
        hyper = result["hyperparameters"]
        assert "no published counterpart" in hyper["base"]
        assert hyper["fusion_weight"] in [w for w, _ in hyper["fusion_search"]]
        whats = [s["what"] for s in result["selections"]]
        assert whats == (["betas", "gamma", "fusion weight"] if base == "calip" else ["gamma", "fusion weight"])
        assert "calip3d addition" in result["selections"][-1]["label"]
    entries = sorted((tmp_path / "tok").glob("pointnn-*.pt"))
    assert len(entries) == 3  # memory, val shots, test: encoded once, reused by the second run
    stamps = [p.stat().st_mtime_ns for p in entries]
    _run(varied_points, shared_data, tmp_path / "again.json", "modelnet40", "--shots", "2", *cache)
    assert [p.stat().st_mtime_ns for p in entries] == stamps
    _run(varied_points, shared_data, tmp_path / "batch.json", "modelnet40", "--shots", "2", *cache,
         "--pointnn-normalize", "batch")
    assert len(list((tmp_path / "tok").glob("pointnn-*.pt"))) == 6  # another normalisation: other keys
    _run(varied_points, shared_data, tmp_path / "shuffled.json", "modelnet40", "--shots", "2", *cache,
         "--pointnn-shuffle")
    assert len(list((tmp_path / "tok").glob("pointnn-*.pt"))) == 7  # only the memory is shuffled: one new key


def test_shots_all_is_point_nn_only(varied_points, shared_data, tmp_path):
    with pytest.raises(CalipError, match="shots 'all'.*method tip-adapter takes K shots"):
        fewshot_main(_argv(varied_points, shared_data, tmp_path / "x.json", "modelnet40", "--shots", "all",
                           "--method", "tip-adapter"))
    with pytest.raises(CalipError, match="base is 'calip', but method zero-shot adds to no zero-shot logits"):
        fewshot_main(_argv(varied_points, shared_data, tmp_path / "x.json", "caltech101", "--base", "calip",
                           "--method", "zero-shot"))


def test_eval_rows_beside_pointclip_and_calip(varied_points, shared_data, tmp_path):
    out = tmp_path / "eval.json"
    argv = ["--dataset", "modelnet40", "--data-root", str(shared_data), "--backbone", str(varied_points[0]),
            "--pretrained", str(varied_points[1]), "--workers", "0", "--tune-shots", "1", "--memory-shots", "1",
            "--methods", "pointclip,calip_tuned,point_nn,pointclip_pointnn,calip_pointnn", "--output", str(out),
            "--cache-dir", str(tmp_path / "cache")]
    assert eval_main(argv) == 0
    result = json.loads(out.read_text())
    assert result["methods"] == ["pointclip", "calip_tuned", "point_nn", "pointclip_pointnn", "calip_pointnn"]
    assert result["point_nn"]["top1"] > 4 * 100 / 40
    assert "apart from" in result["point_nn"]["memory"]
    for name in ("pointclip_pointnn", "calip_pointnn"):
        assert "no published counterpart" in result[name]["betas_source"]
        assert result[name]["fusion_weight"] in [w for w, _ in result[name]["fusion_search"]]
    assert result["calip_pointnn"]["betas"] == result["calip_tuned"]["betas"]  # the same tuned CALIP base
    with pytest.raises(CalipError, match="memory"):
        eval_main(argv[:argv.index("--memory-shots")] + argv[argv.index("--memory-shots") + 2:])


def test_two_ranks_give_the_one_process_point_nn_result(varied_points, shared_data, tmp_path):
    common = ["--shots", "2", "--protocol", "release", "--base", "pointclip"]
    one = _run(varied_points, shared_data, tmp_path / "one" / "r.json", "modelnet40", *common)
    argv = _argv(varied_points, shared_data, tmp_path / "two" / "r.json", "modelnet40", *common)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "calip3d", "fewshot", *argv], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "r.json").read_text())
    for key in ("test", "hyperparameters", "selections", "val_top1", "zero_shot_reference"):
        assert two[key] == one[key], key
    assert two["provenance"]["world_size"] == 2
