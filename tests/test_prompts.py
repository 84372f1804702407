"""Prompt building: CoOp defaults, the CALIP ensemble, PointCLIP templates, JSON template and CuPL files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from calip3d.errors import CalipError
from calip3d.prompts import (
    IMAGENET_ENSEMBLE,
    POINTCLOUD_FS_TEMPLATE,
    build_prompts,
    from_templates,
)

# CoOp trainers/zsclip.py CUSTOM_TEMPLATES, written out independently of calip3d.prompts.
EXPECTED_SINGLE = {
    "caltech101": "a photo of a {}.",
    "oxford_pets": "a photo of a {}, a type of pet.",
    "stanford_cars": "a photo of a {}.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "food101": "a photo of {}, a type of food.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "sun397": "a photo of a {}.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "ucf101": "a photo of a person doing {}.",
    "imagenet": "a photo of a {}.",
}
CALIP_7 = ["itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
           "a {} in a video game.", "art of the {}.", "a photo of the small {}."]
CLASSES = ["Apply_Eye_Makeup", "Annual Crop Land", "flower_pot"]
SPOKEN = ["Apply Eye Makeup", "Annual Crop Land", "flower pot"]


@pytest.mark.parametrize("dataset", sorted(set(EXPECTED_SINGLE) - {"imagenet"}))
def test_default_is_coop_single_template(dataset: str) -> None:
    template = EXPECTED_SINGLE[dataset]
    result = build_prompts(dataset, CLASSES)
    assert result.prompts == [[template.format(name)] for name in SPOKEN]
    assert result.templates == [template]
    assert result.description == f"coop-single: '{template}'"
    assert build_prompts(dataset, CLASSES, "single").prompts == result.prompts


def test_aliases_resolve_to_the_same_template() -> None:
    pets = build_prompts("OxfordPets", ["abyssinian"])
    assert pets.prompts == [["a photo of a abyssinian, a type of pet."]]
    assert build_prompts("DescribableTextures", ["banded"]).prompts == [["banded texture."]]


def test_imagenet_default_is_the_calip_ensemble() -> None:
    result = build_prompts("imagenet", ["tench", "great_white_shark"])
    assert result.templates == CALIP_7 == IMAGENET_ENSEMBLE
    assert result.prompts == [[t.format(name) for t in CALIP_7] for name in ("tench", "great white shark")]
    assert build_prompts("imagenet", ["tench"], "single").prompts == [["a photo of a tench."]]


def test_ensemble_for_any_dataset() -> None:
    result = build_prompts("caltech101", CLASSES, "ensemble")
    assert result.prompts == [[t.format(name) for t in CALIP_7] for name in SPOKEN]
    assert "7" in result.description


@pytest.mark.parametrize("dataset", ["modelnet40", "ModelNet10", "scanobjectnn-hardest", "scanobjectnn_obj_only"])
def test_pointcloud_default_is_pointclip_zero_shot(dataset: str) -> None:
    result = build_prompts(dataset, ["flower_pot", "chair"])
    assert result.prompts == [["point cloud depth map of a flower pot."],
                              ["point cloud depth map of a chair."]]
    assert build_prompts(dataset, ["chair"], "single").prompts == [["point cloud depth map of a chair."]]


def test_pointcloud_few_shot_template() -> None:
    result = from_templates(["night_stand"], [POINTCLOUD_FS_TEMPLATE], "pointclip-fs")
    assert result.prompts == [["point cloud of a big night stand."]]


def test_json_template_list(tmp_path: Path) -> None:
    path = tmp_path / "templates.json"
    templates = ["a blurry photo of a {}.", "{} in the wild"]
    path.write_text(json.dumps(templates))
    result = build_prompts("caltech101", CLASSES, str(path))
    assert result.prompts == [[t.format(name) for t in templates] for name in SPOKEN]
    assert result.templates == templates
    assert result.description == f"file:{path} (sha256 {hashlib.sha256(path.read_bytes()).hexdigest()})"


def test_cupl_dict(tmp_path: Path) -> None:
    path = tmp_path / "cupl.json"
    table = {
        "Apply_Eye_Makeup": ["A person applying eye makeup.", "Someone with a mascara brush."],
        "annual crop land": ["Farmland seen from orbit."],
        "flower pot": ["A clay pot with a plant."],
        "unused class": ["ignored"],
    }
    path.write_text(json.dumps(table))
    result = build_prompts("ucf101", CLASSES, str(path))
    assert result.prompts == [table["Apply_Eye_Makeup"], table["annual crop land"], table["flower pot"]]
    assert result.templates is None
    assert result.description.startswith(f"file:{path} (sha256 ")

    del table["flower pot"]
    path.write_text(json.dumps(table))
    with pytest.raises(CalipError, match="no prompts for 1 of 3 classes: 'flower_pot'"):
        build_prompts("ucf101", CLASSES, str(path))
    table["flower pot"] = []
    path.write_text(json.dumps(table))
    with pytest.raises(CalipError, match="non-empty list"):
        build_prompts("ucf101", CLASSES, str(path))


@pytest.mark.parametrize("templates", [["a photo of a dog."], ["a {} and a {}."], [3], []])
def test_bad_templates_are_rejected(tmp_path: Path, templates: list) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(templates))
    with pytest.raises(CalipError, match=str(path)):
        build_prompts("dtd", CLASSES, str(path))


def test_bad_specs(tmp_path: Path) -> None:
    with pytest.raises(CalipError, match="default, single, ensemble"):
        build_prompts("dtd", CLASSES, "fancy")
    (tmp_path / "broken.json").write_text("[not json")
    with pytest.raises(CalipError, match="not valid JSON"):
        build_prompts("dtd", CLASSES, str(tmp_path / "broken.json"))
    (tmp_path / "number.json").write_text("3")
    with pytest.raises(CalipError, match="list of templates"):
        build_prompts("dtd", CLASSES, str(tmp_path / "number.json"))
    with pytest.raises(CalipError, match="unknown dataset"):
        build_prompts("cifar10", CLASSES)
    with pytest.raises(CalipError, match="no class names"):
        build_prompts("dtd", [])
