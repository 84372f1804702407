"""experiments/regression.py compare: equal runs pass, and a changed number, stdout line or cached tensor fails."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("regression", REPO / "experiments" / "regression.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_folder(folder: Path, top1: float = 50.0, stdout: str = "clip 50.00", cached: float = 1.0) -> Path:
    (folder / "cache").mkdir(parents=True)
    result = {"clip": {"top1": top1}, "time": str(folder), "provenance": {"data": f"{folder}/data", "versions": "x"}}
    (folder / "e1.json").write_text(json.dumps(result))
    (folder / "e1.stdout").write_text(f"{stdout}\nwritten to {folder}/e1.json\n")
    torch.save({"tensors": {"clip": torch.full((2, 3), cached)}}, folder / "cache" / "terms-1.pt")
    return folder


def test_compare_ignores_run_folders_and_times_but_not_numbers(tmp_path, capsys):
    regression = _module()
    first = _run_folder(tmp_path / "a")
    assert regression.compare(first, _run_folder(tmp_path / "b")) == 0
    assert "ALL EQUAL" in capsys.readouterr().out
    assert regression.compare(first, _run_folder(tmp_path / "c", top1=50.5)) == 1
    assert "e1.json .clip.top1: 50.0 != 50.5" in capsys.readouterr().out
    assert regression.compare(first, _run_folder(tmp_path / "d", stdout="clip 50.01")) == 1
    assert "e1.stdout: stdout differs" in capsys.readouterr().out
    assert regression.compare(first, _run_folder(tmp_path / "e", cached=2.0)) == 1
    assert "cache/clip: cached tensors differ" in capsys.readouterr().out


def test_every_run_writes_its_own_output(tmp_path):
    regression = _module()
    models = {name: ["--backbone", f"{name}.json"] for name in ("img", "pc", "vit")}
    runs = regression.commands(tmp_path, tmp_path / "data", models)
    assert len(runs) == 36
    folder = regression.folders(tmp_path)
    dataset = {name: argv[argv.index("--dataset") + 1] for name, argv in runs.items() if "--dataset" in argv}
    assert {dataset["e10"], dataset["f-folder"]} == {f"folder:{folder['clouds']}"}  # folder datasets, both commands
    assert dataset["e11"] == str(folder["images"])  # a PATH that is a folder names a folder dataset too
    outputs = [argv[argv.index("--output") + 1] for argv in runs.values()]
    assert len(set(outputs)) == len(runs)
    assert {argv[0] for argv in runs.values()} == {"eval", "classify", "fewshot", "tune-views"}
    from calip3d.fewshot.methods import METHODS
    from calip3d.zeroshot import ZERO_SHOT_METHODS
    few = {argv[argv.index("--method") + 1] for argv in runs.values() if argv[0] == "fewshot"}
    assert few == set(METHODS)  # every few-shot method of the registry is in the refactor check
    asked = {m for argv in runs.values() if "--methods" in argv for m in argv[argv.index("--methods") + 1].split(",")}
    on_request = {name for name, cls in ZERO_SHOT_METHODS.items() if not cls.default}
    assert on_request and on_request <= asked  # the default rows run in every eval; the others are asked for
