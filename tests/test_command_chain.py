"""The commands chained as a user runs them, each reading what the previous ones wrote, on the real data:
`eval` (images and clouds) -> `fewshot` (two methods) -> `tune-views` -> `table` over every file -> `show --dataset`.
Each command can pass alone while the chain breaks (e.g. `table` refusing the schema `fewshot` writes)."""

from __future__ import annotations

import json

import pytest

from calip3d.cli.main import main as calip3d_main
from tiny_models import write_tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("chain"), "resnet", seed=3)


def _run(*argv: str) -> None:
    assert calip3d_main(list(argv)) == 0, argv


def test_eval_fewshot_tune_views_table_show(tiny, shared_data, tmp_path, capsys):
    model = ["--backbone", str(tiny[0]), "--pretrained", str(tiny[1]), "--workers", "0"]
    root = ["--data-root", str(shared_data)]
    cache = ["--cache-dir", str(tmp_path / "cache")]
    out = tmp_path / "results"
    _run("eval", "--dataset", "caltech101", *root, *model, *cache, "--limit", "40", "--tune-limit", "40",
         "--methods", "clip,calip_paper,calip_tuned,tda", "--output", str(out / "caltech.json"))
    _run("eval", "--dataset", "modelnet40", *root, *model, *cache, "--tune-shots", "1",
         "--output", str(out / "modelnet40.json"))
    few = [*root, *model, "--shots", "1", "--split-dir", str(tmp_path / "splits")]
    _run("fewshot", "--dataset", "caltech101", *few, "--method", "tip-adapter", "--augment", "1", "--limit", "30",
         "--output", str(out / "caltech_tip.json"))
    _run("fewshot", "--dataset", "modelnet40", *few, "--method", "zero-shot", "--output", str(out / "mn40_zs.json"))
    _run("tune-views", "--dataset", "modelnet10", *root, *model, *cache, "--shots", "1",
         "--output", str(out / "modelnet10_views.json"))
    capsys.readouterr()
    files = sorted(out.glob("*.json"))
    assert len(files) == 5
    _run("table", *map(str, files), "--output", str(tmp_path / "table.csv"))
    rows = {line.split(",")[0]: line.split(",") for line in (tmp_path / "table.csv").read_text().splitlines()}
    header = rows.pop("dataset")
    for path in files:  # every method of every file is in its cell, with the file's number
        result = json.loads(path.read_text())
        if result["schema"].startswith("calip3d.fewshot"):
            cells = {f"{result['method']} {result['shots']}-shot": result["test"]["top1"]}
        else:
            cells = {m: result[m]["top1"] for m in result["methods"]}
        for column, top1 in cells.items():
            assert float(rows[result["dataset"]][header.index(column)]) == pytest.approx(top1, abs=0.005), \
                (path.name, column)
    assert {"caltech101", "modelnet40", "modelnet10"} <= set(rows)
    assert "tda" in header and "tip-adapter 1-shot" in header and "zero-shot 1-shot" in header

    _run("show", "--dataset", "modelnet40", *root, "--index", "3", "--backbone", str(tiny[0]), "--pretrained",
         str(tiny[1]), "--output", str(tmp_path / "show"))
    assert len(list((tmp_path / "show").glob("*.png"))) == 1
