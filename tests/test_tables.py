"""Merging result files into one table beside the published numbers; the reference table and comparability."""

from __future__ import annotations

import csv
import io
import json

import open_clip
import pytest

from calip3d.datasets.images import IMAGE_DATASETS
from calip3d.datasets.registry import DATASETS as REGISTRY
from calip3d.errors import CalipError
from calip3d.published import COOP11_MEAN, PUBLISHED_RESULTS, published_results
from calip3d.reference import normalise_backbone, paper_column, reference_block
from calip3d.tables import chart_rows, merge_results, render, to_csv, to_markdown


def _backbone(name, weights):
    tag = weights[4:] if weights.startswith("tag:") else None
    return {"name": name, "pretrained": tag or weights, "weights": weights, "quick_gelu": tag == "openai",
            "architecture": "vit" if name.lower().startswith("vit") else "resnet", "image_size": 224,
            "embed_dim": 1024}


def eval_result(dataset, methods, name="RN50", weights="tag:openai"):
    """A `calip3d.eval/1` result as `calip3d.pipeline` writes it (methods: name -> (top1, oracle))."""
    result = {"schema": "calip3d.eval/1", "dataset": dataset, "split": "test", "num_samples": 100, "num_classes": 10,
              "methods": list(methods),
              "provenance": {"versions": {}, "command": "python -m calip3d.eval", "backbone": _backbone(name, weights),
                             "precision": "fp32", "temperature": 0.5}}
    for method, (top1, oracle) in methods.items():
        result[method] = {"top1": top1, "top5": min(100.0, top1 + 20), "betas": None, "betas_source": "", "oracle": oracle}
    return result


def fewshot_result(dataset, method, shots, seed, top1, name="RN101"):
    return {"schema": "calip3d.fewshot/1", "dataset": dataset, "method": method, "shots": shots, "seed": seed,
            "num_samples": 100, "num_classes": 40, "test": {"top1": top1, "top5": 95.0}, "val_top1": top1 + 1,
            "zero_shot_reference": {}, "provenance": {"backbone": _backbone(name, "tag:openai")}}


@pytest.fixture
def result_files(tmp_path):
    files = {
        "caltech_rn50.json": eval_result("caltech101", {"clip": (85.0, False), "calip_paper": (86.5, False),
                                                        "calip_oracle": (88.0, True)}),
        "imagenet_rn50.json": eval_result("imagenet", {"clip": (57.0, False), "calip_paper": (59.5, False)}),
        "modelnet40_rn50.json": eval_result("modelnet40", {"pointclip": (18.0, False), "calip": (22.0, False)}),
        "scan_rn50.json": eval_result("scanobjectnn-hardest", {"pointclip": (12.0, False), "calip": (14.0, False)}),
        # same backbone, other weights: never comparable
        "caltech_laion.json": eval_result("caltech101", {"clip": (88.0, False), "calip_paper": (89.0, False)},
                                          weights="tag:laion400m_e32"),
        "fs_seed1.json": fewshot_result("modelnet40", "pointclip-adapter", 16, 1, 85.0),
        "fs_seed2.json": fewshot_result("modelnet40", "pointclip-adapter", 16, 2, 86.0),
    }
    paths = []
    for name, payload in files.items():
        (tmp_path / name).write_text(json.dumps(payload))
        paths.append(tmp_path / name)
    return paths


def _parse_markdown(text):
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    return header, {row[0]: dict(zip(header, row)) for row in rows}


def test_table_rows_columns_and_published_numbers(result_files):
    table = merge_results(result_files)
    assert table.datasets == ["imagenet", "caltech101", "modelnet40", "scanobjectnn-hardest"]
    assert table.averages == ["average (2D)", "average (3D)"]
    header, rows = _parse_markdown(to_markdown(table))
    rn50, laion, rn101 = "RN50 openai: ", "RN50 laion400m_e32: ", "RN101 openai: "
    assert header[:7] == ["dataset", rn50 + "clip", rn50 + "CLIP paper", rn50 + "Δ clip", rn50 + "calip_paper",
                          rn50 + "CALIP paper", rn50 + "Δ calip_paper"]
    assert rows["caltech101"][rn50 + "clip"] == "85.00"
    assert rows["caltech101"][rn50 + "CLIP paper"] == "86.29"
    assert rows["caltech101"][rn50 + "Δ clip"] == "-1.29"
    assert rows["imagenet"][rn50 + "CALIP paper"] == "60.57"
    assert rows["caltech101"][rn50 + "calip_oracle"] == "88.00†"
    assert rows["caltech101"][rn50 + "Δ calip_oracle"] == "+0.29"  # compared with the one CALIP paper column
    assert rows["modelnet40"][rn50 + "PointCLIP paper"] == "20.18"
    assert rows["scanobjectnn-hardest"][rn50 + "PointCLIP paper"] == "15.38"
    assert rows["modelnet40"][rn50 + "calip"] == "22.00"
    assert not any(h.startswith(rn50 + "Δ calip ") or h == rn50 + "Δ calip" for h in header)  # no CALIP 3D paper
    # other weights: their own columns, no published numbers beside them
    assert rows["caltech101"][laion + "clip"] == "88.00"
    assert not any(h.startswith(laion) and (h.endswith(" paper") or "Δ" in h) for h in header)
    assert rows["imagenet"][laion + "clip"] == "-"
    # few-shot: seeds averaged, compared with PointCLIP's 16-shot RN101 number
    assert rows["modelnet40"][rn101 + "pointclip-adapter 16-shot"] == "85.50 (2 seeds)"
    assert rows["modelnet40"][rn101 + "PointCLIP 16-shot paper"] == "87.20"
    assert rows["average (2D)"][rn50 + "clip"] == "71.00"
    assert rows["average (3D)"][rn50 + "pointclip"] == "15.00"
    assert rows["average (2D)"][rn50 + "calip_oracle"] == "88.00 (1/2)"
    assert rows["average (2D)"][laion + "clip"] == "88.00 (1/2)"

    parsed = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert [r["dataset"] for r in parsed] == table.row_labels
    by_row = {r["dataset"]: r for r in parsed}
    assert float(by_row["caltech101"][rn50 + "CALIP paper"]) == 87.71
    assert by_row["imagenet"][laion + "clip"] == ""
    assert list(parsed[0]) == header  # same columns as the Markdown table


def test_chart_rows_mark_only_comparable(result_files):
    rows = {r.label: r for r in chart_rows(merge_results(result_files))}
    caltech = rows["caltech101\nRN50 openai"]
    assert caltech.values == {"CLIP / PointCLIP": 85.0, "CALIP": 86.5}
    assert caltech.published == {"CLIP / PointCLIP": 86.29, "CALIP": 87.71}
    assert rows["modelnet40\nRN50 openai"].published == {"CLIP / PointCLIP": 20.18}
    assert rows["caltech101\nRN50 laion400m_e32"].published == {}


def test_render_by_extension_and_bad_files(result_files, tmp_path):
    table = merge_results(result_files[:2])
    assert render(table, "x.MD").startswith("| dataset |")
    assert render(table, "x.csv").startswith("dataset,")
    with pytest.raises(CalipError, match="x.txt"):
        render(table, "x.txt")
    not_result = tmp_path / "other.json"
    not_result.write_text(json.dumps({"hello": 1}))
    with pytest.raises(CalipError, match="other.json is not a calip3d result file"):
        merge_results([not_result])
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CalipError, match="broken.json"):
        merge_results([broken])
    with pytest.raises(CalipError, match="both give clip on caltech101"):
        merge_results([result_files[0], result_files[0]])


def test_reference_block_and_paper_column():
    block = reference_block("caltech101", "RN50", "openai")
    assert {(r["method"], r["value"], r["comparable"]) for r in block} == {("CLIP", 86.29, True),
                                                                           ("CALIP", 87.71, True), ("TDA", 89.7, True)}
    assert all("GDA" in r["source"] for r in block if r["method"] != "TDA")
    assert next(r for r in block if r["method"] == "TDA")["source"].startswith("TDA (CVPR 2024)")
    assert not any(r["comparable"] for r in reference_block("caltech101", "ViT-B/16", "openai"))
    assert not any(r["comparable"] for r in reference_block("caltech101", "RN50", "laion400m_e32"))
    v2 = [r for r in reference_block("modelnet40", "ViT-B/16", "openai") if r["method"] == "PointCLIP V2"]
    assert any(r["value"] == 64.22 and r["comparable"] for r in v2)
    assert normalise_backbone("ViT-B/16") == normalise_backbone("vit-b-16-quickgelu") == "vit-b-16"

    cells = paper_column(eval_result("caltech101", {"clip": (85.0, False), "calip_tuned": (87.0, False)}))
    assert str(cells["clip"]) == "86.29 (-1.29)" and cells["calip_tuned"].value == 87.71
    local = eval_result("caltech101", {"clip": (85.0, False)}, weights="file:/w/RN50.pt sha256:00")
    assert paper_column(local) == {"clip": None}


def test_published_table_is_well_formed():
    known = set(REGISTRY) | {COOP11_MEAN}
    assert {r.dataset for r in PUBLISHED_RESULTS} <= known
    for dataset in IMAGE_DATASETS:
        zero_shot = {(r.method, r.backbone) for r in published_results(dataset) if r.setting == "zero-shot"}
        assert zero_shot == {("CLIP", "RN50"), ("CALIP", "RN50"), ("TDA", "RN50")}
    imagenet_16 = {r.method: r.value for r in published_results("imagenet") if r.setting == "16-shot"}
    assert imagenet_16 == {"GDA": 63.82, "APE": 63.42, "Tip-X": 62.61, "Tip-Adapter": 62.03, "Tip-Adapter-F": 65.51}
    means = {(r.method, r.setting): r.value for r in published_results(COOP11_MEAN)}
    assert means[("GDA", "16-shot")] == 76.05 and means[("APE", "1-shot")] == 65.13 and means[("TDA", "zero-shot")]
    assert all(r.protocol == "release" for r in PUBLISHED_RESULTS if r.setting != "zero-shot" and r.method != "PointCLIP")
    for result in PUBLISHED_RESULTS:
        assert open_clip.get_model_config(result.backbone) is not None, result
        assert result.weights == "openai" and result.source and result.setting.endswith(("zero-shot", "-shot"))
    scan = [r for r in PUBLISHED_RESULTS if r.method == "PointCLIP" and r.source.startswith("PointCLIP (")
            and r.dataset.startswith("scanobjectnn")]
    assert scan and all("does not name the ScanObjectNN variant" in r.note for r in scan)
    assert published_results("modelnet40")[0].value == 20.18  # primary source first


def test_training_free_numbers_sit_only_beside_comparable_runs(tmp_path):
    """GDA at 16 shots on the 11 CoOp datasets: under the release protocol the table shows GDA's published ImageNet
    number and its published 11-dataset mean beside our 2D average; honest runs, other backbones and partial sets
    of datasets get no published mean."""
    from calip3d.tables import coop_datasets, to_markdown

    def write(protocol, name="RN50", datasets=None):
        paths = []
        for i, dataset in enumerate(datasets or coop_datasets()):
            result = {**fewshot_result(dataset, "gda", 16, 1, 70.0 + i, name=name), "schema": "calip3d.fewshot/2",
                      "protocol": protocol, "oracle": protocol == "release" and dataset == "imagenet"}
            path = tmp_path / f"{protocol}{name}{len(paths)}{len(datasets or [])}.json"
            path.write_text(json.dumps(result))
            paths.append(path)
        return paths

    table = merge_results(write("release"))
    paper = next(c for c in table.columns if c.kind == "paper")
    assert paper.header == "GDA 16-shot paper"
    assert table.rows["imagenet"][paper.key].value == 63.82
    average = table.rows["average"]
    ours = next(c for c in table.columns if c.kind == "ours")
    assert average[paper.key].value == 76.05
    assert average[f"{ours.key}|diff"].value == pytest.approx(75.0 - 76.05)  # our mean is 70 + 5
    assert "mean over the 11 CoOp datasets" in to_markdown(table)
    assert table.rows["imagenet"][ours.key].oracle  # the release protocol's ImageNet search is ORACLE
    for paths in (write("honest"), write("release", name="ViT-B-16")):
        assert not [c for c in merge_results(paths).columns if c.kind == "paper"]
    partial = merge_results(write("release", datasets=["caltech101", "imagenet"]))
    paper = next(c for c in partial.columns if c.kind == "paper")
    assert paper.key not in partial.rows["average"] or partial.rows["average"][paper.key].value == 63.82
