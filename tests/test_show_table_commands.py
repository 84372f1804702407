"""`calip3d show`, `calip3d table`, and the reference block, paper column and --plot of `eval`, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from calip3d.attention import calip_terms
from calip3d.backbone import load_backbone
from calip3d.cli.eval import main as eval_main
from calip3d.cli.show import main as show_main
from calip3d.cli.table import main as table_main
from calip3d.datasets import load_split
from calip3d.explain import load_maps
from calip3d.results import EvalResult, MethodResult
from tiny_models import write_tiny

REPO = Path(__file__).resolve().parents[1]
CHAIR = "modelnet40_normal_resampled/chair/chair_0391.txt"
PLANE = "caltech-101/101_ObjectCategories/airplanes/image_0001.jpg"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("tinyshow"), "resnet", seed=7)


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("L"), dtype=np.float32)


def test_show_a_real_cloud_and_image_with_maps(tiny, shared_data, tmp_path, capsys):
    image_copy = tmp_path / "PLANE.JPEG"  # extensions in any case
    image_copy.write_bytes((shared_data / PLANE).read_bytes())
    argv = [str(shared_data / CHAIR), str(image_copy), "--labels", "chair", "airplane", "lamp", "table",
            "--backbone", str(tiny[0]), "--pretrained", str(tiny[1]), "--output", str(tmp_path / "show"),
            "--save-maps", str(tmp_path / "maps.npz"), "--classes", "2"]
    assert show_main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "show").iterdir()) == ["PLANE.png", "chair_0391.png"]
    for png in (tmp_path / "show").iterdir():
        pixels = _png(png)
        assert pixels.shape[1] >= 1000 and pixels.std() > 10, png  # readable size, not blank
    cloud = load_maps(tmp_path / "maps_chair_0391.npz")
    assert cloud.positions.shape[:2] == (6, 2) and cloud.terms.shape == (6, 2, 3)
    np.testing.assert_allclose(cloud.positions.sum(-1), 1.0, atol=1e-5)
    assert list(cloud.view_weights) == [1.0] * 6 and list(cloud.betas) == pytest.approx([1.0, 1.12, 0.02])
    image = load_maps(tmp_path / "maps_PLANE.npz")
    assert image.positions.shape[:2] == (1, 2) and image.views.shape[0] == 1
    assert "chair_0391: " in capsys.readouterr().out

    # the saved terms are calip_terms' for the views the command projected (re-encoded here independently)
    backbone, _, _ = load_backbone(str(tiny[0]), str(tiny[1]))
    views = torch.from_numpy(cloud.views)[:, None].repeat(1, 3, 1, 1)
    glob, spatial = backbone.encode_image(views)
    labels = ["chair", "airplane", "lamp", "table"]
    text = backbone.prompt_features([[f"point cloud depth map of a {c}."] for c in labels])
    terms = torch.stack(calip_terms(glob, spatial, text), dim=-1)  # [V, 4, 3]
    shown = [labels.index(c) for c in cloud.classes]
    np.testing.assert_allclose(cloud.terms, terms[:, shown].numpy(), atol=1e-5)


def test_show_a_dataset_item_and_refuse_a_bad_file(tiny, shared_data, tmp_path):
    argv = ["--dataset", "modelnet40", "--index", "3", "--data-root", str(shared_data), "--backbone", str(tiny[0]),
            "--pretrained", str(tiny[1]), "--output", str(tmp_path / "out"), "--views", "10"]
    assert show_main(argv) == 0
    assert _png(tmp_path / "out" / "modelnet40_test_3.png").shape[1] >= 1000
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    proc = subprocess.run([sys.executable, "-m", "calip3d", "show", str(shared_data / CHAIR), str(bad), "--labels",
                           "a", "b", "--backbone", str(tiny[0]), "--pretrained", str(tiny[1]), "--output",
                           str(tmp_path / "bad")], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and str(bad) in proc.stderr
    assert not (tmp_path / "bad").exists()  # nothing written, not even for the good input


def _comparable(dataset: str, methods: list[MethodResult]) -> EvalResult:
    """A result as a real RN50 / openai run would record it."""
    backbone = {"name": "RN50", "pretrained": "openai", "weights": "tag:openai", "architecture": "resnet"}
    return EvalResult(dataset, "test", 10, 5, methods, {"backbone": backbone})


def test_eval_result_json_and_printed_table_carry_the_reference():
    comparable = _comparable("caltech101", [MethodResult("clip", 85.0, 95.0, None, "plain CLIP"),
                                            MethodResult("calip_tuned", 90.0, 96.0, [1, 2, 0.1], "tuned"),
                                            MethodResult("tda", 88.0, 96.0, None, "TDA")])
    data = comparable.to_dict()
    assert {r["method"] for r in data["reference"]} == {"CLIP", "CALIP", "TDA"}
    assert all(r["comparable"] for r in data["reference"])
    table = comparable.table()
    assert "paper" in table.splitlines()[1]
    clip_row = next(line for line in table.splitlines() if line.startswith("clip "))
    assert "86.29 (-1.29)" in clip_row
    assert "89.70 (-1.70)" in next(line for line in table.splitlines() if line.startswith("tda "))  # TDA's README
    local = EvalResult("caltech101", "test", 10, 5, comparable.methods,
                       {"backbone": {"name": "RN50", "pretrained": "/w/rn50.pt", "weights": "file:/w/rn50.pt"}})
    assert not any(r["comparable"] for r in local.to_dict()["reference"])
    assert "paper" not in local.table().splitlines()[1]


def test_eval_writes_reference_and_plot_then_table_merges_2d_and_3d(tiny, shared_data, tmp_path):
    common = ["--data-root", str(shared_data), "--backbone", str(tiny[0]), "--pretrained", str(tiny[1]),
              "--tune-on", "none", "--no-cache", "--workers", "0", "--limit", "6"]
    assert eval_main(["--dataset", "caltech101", *common, "--output", str(tmp_path / "c.json"),
                      "--plot", str(tmp_path / "c.png")]) == 0
    assert eval_main(["--dataset", "modelnet40", *common, "--output", str(tmp_path / "m.json")]) == 0
    caltech = json.loads((tmp_path / "c.json").read_text())
    assert caltech["reference"] and not any(r["comparable"] for r in caltech["reference"])  # a local file
    assert _png(tmp_path / "c.png").shape[1] >= 1000
    assert table_main([str(tmp_path / "c.json"), str(tmp_path / "m.json"), "--output", str(tmp_path / "t.csv"),
                       "--plot", str(tmp_path / "t.png")]) == 0
    lines = (tmp_path / "t.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = {line.split(",")[0]: line.split(",") for line in lines[1:]}
    assert {"caltech101", "modelnet40"} <= set(rows)
    assert float(rows["caltech101"][header.index("clip")]) == pytest.approx(caltech["clip"]["top1"], abs=0.01)
    assert rows["modelnet40"][header.index("clip")] == ""  # 3D rows have pointclip, not clip
    assert "CLIP paper" not in header  # nothing comparable for a tiny model from a file
    broken = tmp_path / "not-a-result.json"
    broken.write_text(json.dumps({"hello": 1}))
    proc = subprocess.run([sys.executable, "-m", "calip3d", "table", str(broken)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "not a calip3d result file" in proc.stderr and "Traceback" not in proc.stderr


def test_image_label_set_reads_the_dataset_classes(tiny, shared_data, tmp_path):
    argv = [str(shared_data / PLANE), "--label-set", "caltech101", "--data-root", str(shared_data), "--backbone",
            str(tiny[0]), "--pretrained", str(tiny[1]), "--output", str(tmp_path), "--save-maps",
            str(tmp_path / "m.npz")]
    assert show_main(argv) == 0
    classes = load_split("caltech101", shared_data, "test").classnames
    assert set(load_maps(tmp_path / "m.npz").classes) <= set(classes)
    assert list(load_maps(tmp_path / "m.npz").betas) == pytest.approx([1.0, 5.0, 0.18])  # the dataset's pair
