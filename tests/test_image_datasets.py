"""CoOp-layout image loaders: the real Caltech101 split, and tiny layouts in each dataset's CoOp format."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from calip3d.datasets.images import (
    IMAGE_DATASETS,
    ImageFileDataset,
    collate_skip_bad,
    load_image_split,
    resolve_image_dataset,
)
from calip3d.errors import CalipError

# Folder, image folder and split file per dataset, as written in CoOp's DATASETS.md / datasets/*.py.
COOP_JSON_LAYOUTS = {
    "caltech101": ("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json"),
    "oxford_pets": ("oxford_pets", "images", "split_zhou_OxfordPets.json"),
    "stanford_cars": ("stanford_cars", "", "split_zhou_StanfordCars.json"),
    "oxford_flowers": ("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json"),
    "food101": ("food-101", "images", "split_zhou_Food101.json"),
    "sun397": ("sun397", "SUN397", "split_zhou_SUN397.json"),
    "dtd": ("dtd", "images", "split_zhou_DescribableTextures.json"),
    "eurosat": ("eurosat", "2750", "split_zhou_EuroSAT.json"),
    "ucf101": ("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json"),
}
FAKE_CLASSES = ["alpha_one", "Beta Two", "gamma"]


def to_tensor_32(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.resize((32, 32)), dtype=np.uint8).copy()).permute(2, 0, 1)


def write_jpg(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, 255 - value, 128)).save(path, "JPEG")


def write_coop_json_layout(root: Path, folder: str, image_dir: str, split_file: str) -> dict:
    """Two images per class per split (in class folders) and the CoOp split json; returns the json."""
    split = {}
    for s, offset in (("train", 0), ("val", 10), ("test", 20)):
        entries = []
        for label, cname in enumerate(FAKE_CLASSES):
            for k in range(2):
                rel = f"c{label}/{s}_{k}.jpg"
                write_jpg(root / folder / image_dir / rel, offset + 40 * label + k)
                entries.append([rel, label, cname])
        split[s] = entries[::-1]  # not in label order, as CoOp's files are not necessarily
    (root / folder / split_file).write_text(json.dumps(split))
    return split


# ------------------------------------------------------------------------------------------ real Caltech101


@pytest.mark.parametrize("split,count", [("train", 4128), ("val", 1649), ("test", 2465)])
def test_caltech101_real_split(caltech_root: Path, split: str, count: int) -> None:
    result = load_image_split("caltech101", caltech_root, split)
    raw = json.loads((caltech_root / "caltech-101" / "split_zhou_Caltech101.json").read_text())
    caltech = os.path.join(os.path.abspath(caltech_root), "caltech-101")
    image_dir = os.path.join(caltech, "101_ObjectCategories")

    assert result.name == "caltech101" and result.split == split
    assert len(result.classnames) == 100
    assert len(result.items) == count
    assert result.items == [(os.path.join(image_dir, rel), label) for rel, label, _ in raw[split]]
    for rel, label, cname in raw["train"] + raw["val"] + raw["test"]:
        assert result.classnames[label] == cname
    assert result.classnames[:5] == ["face", "leopard", "motorbike", "accordion", "airplane"]
    for path, _ in result.items[::97] + result.items[-1:]:
        assert os.path.isfile(path), path
    assert result.source == os.path.join(caltech, "split_zhou_Caltech101.json")


def test_image_file_dataset_loads_real_images(caltech_root: Path) -> None:
    items = load_image_split("caltech101", caltech_root, "test").items[:3]
    ds = ImageFileDataset(items, transform=to_tensor_32)
    assert len(ds) == 3
    image, label, index = ds[2]
    expected = np.asarray(Image.open(items[2][0]).convert("RGB").resize((32, 32)))
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
    assert torch.equal(image, torch.from_numpy(expected.copy()).permute(2, 0, 1))
    assert (label, index) == (items[2][1], 2)


def test_unreadable_images_raise_or_are_skipped(caltech_root: Path, tmp_path: Path) -> None:
    good = load_image_split("caltech101", caltech_root, "test").items[0][0]
    truncated = tmp_path / "truncated.jpg"
    data = Path(good).read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image")
    items = [(good, 0), (str(truncated), 1), (str(garbage), 2), (good, 3), (str(tmp_path / "missing.jpg"), 4)]

    strict = ImageFileDataset(items, transform=to_tensor_32)
    for bad in (1, 2, 4):
        with pytest.raises(CalipError, match=str(items[bad][0])):
            strict[bad]

    lenient = ImageFileDataset(items, transform=to_tensor_32, skip_bad_files=True)
    assert lenient[1] is None and lenient[2] is None and lenient[4] is None
    batches = list(DataLoader(lenient, batch_size=5, collate_fn=collate_skip_bad))
    assert len(batches) == 1
    images, labels, indices = batches[0]
    assert images.shape == (2, 3, 32, 32)
    assert labels.tolist() == [0, 3] and indices.tolist() == [0, 3]
    assert torch.equal(images[0], images[1])

    images, labels, indices = collate_skip_bad([None, None])
    assert images.numel() == 0 and labels.numel() == 0 and indices.numel() == 0


# ------------------------------------------------------------------------------------------ fake layouts


@pytest.mark.parametrize("name", sorted(COOP_JSON_LAYOUTS))
def test_coop_json_layouts(tmp_path: Path, name: str) -> None:
    folder, image_dir, split_file = COOP_JSON_LAYOUTS[name]
    raw = write_coop_json_layout(tmp_path, folder, image_dir, split_file)
    for split in ("train", "val", "test"):
        result = load_image_split(name, tmp_path, split)
        assert result.classnames == FAKE_CLASSES
        expected = [(os.path.join(tmp_path, folder, image_dir, rel), label) for rel, label, _ in raw[split]]
        assert result.items == expected
        assert result.source == os.path.join(tmp_path, folder, split_file)
        assert all(os.path.isfile(path) for path, _ in result.items)


def test_eurosat_raw_folder_names_get_coop_names(tmp_path: Path) -> None:
    write_jpg(tmp_path / "eurosat/2750/AnnualCrop/AnnualCrop_1.jpg", 1)
    write_jpg(tmp_path / "eurosat/2750/SeaLake/SeaLake_1.jpg", 2)
    split = {s: [["AnnualCrop/AnnualCrop_1.jpg", 0, "AnnualCrop"], ["SeaLake/SeaLake_1.jpg", 1, "SeaLake"]]
             for s in ("train", "val", "test")}
    (tmp_path / "eurosat/split_zhou_EuroSAT.json").write_text(json.dumps(split))
    assert load_image_split("eurosat", tmp_path).classnames == ["Annual Crop Land", "Sea or Lake"]


def test_imagenet_layout(tmp_path: Path) -> None:
    names = {"n01443537": "goldfish", "n01440764": "tench", "n01484850": "great white shark"}
    (tmp_path / "imagenet").mkdir()
    (tmp_path / "imagenet/classnames.txt").write_text("".join(f"{w} {n}\n" for w, n in names.items()))
    for s in ("train", "val"):
        for i, wnid in enumerate(names):
            for k in range(2):
                write_jpg(tmp_path / f"imagenet/images/{s}/{wnid}/{wnid}_{s}{k}.JPEG", 30 * i + k)
    wnids = sorted(names)

    train = load_image_split("ImageNet", tmp_path, "train")
    assert train.classnames == [names[w] for w in wnids] == ["tench", "goldfish", "great white shark"]
    assert train.items == [(os.path.join(tmp_path, f"imagenet/images/train/{w}/{w}_train{k}.JPEG"), label)
                           for label, w in enumerate(wnids) for k in range(2)]
    test, val = load_image_split("imagenet", tmp_path, "test"), load_image_split("imagenet", tmp_path, "val")
    assert test.items == val.items
    assert test.items[0] == (os.path.join(tmp_path, "imagenet/images/val/n01440764/n01440764_val0.JPEG"), 0)
    assert test.source == os.path.join(tmp_path, "imagenet/classnames.txt")

    (tmp_path / "imagenet/images/val/n99999999").mkdir()
    with pytest.raises(CalipError, match="n99999999"):
        load_image_split("imagenet", tmp_path, "val")
    shutil.rmtree(tmp_path / "imagenet/images/val")
    write_jpg(tmp_path / "imagenet/images/val/ILSVRC2012_val_00000001.JPEG", 0)
    with pytest.raises(CalipError, match="no wnid folders"):
        load_image_split("imagenet", tmp_path, "test")


def test_fgvc_aircraft_layout(tmp_path: Path) -> None:
    variants = ["707-320", "F-16A/B", "Falcon 2000"]
    root = tmp_path / "fgvc_aircraft"
    root.mkdir()
    (root / "variants.txt").write_text("\n".join(variants) + "\n")
    lines = {"train": [("0034309", "Falcon 2000"), ("1025794", "707-320")],
             "val": [("0062765", "F-16A/B")], "test": [("2230377", "F-16A/B"), ("1514522", "Falcon 2000")]}
    for split, rows in lines.items():
        (root / f"images_variant_{split}.txt").write_text("".join(f"{i} {v}\n" for i, v in rows))
        for k, (image_id, _) in enumerate(rows):
            write_jpg(root / "images" / f"{image_id}.jpg", 50 * k)
    for split, rows in lines.items():
        result = load_image_split("fgvcaircraft", tmp_path, split)
        assert result.classnames == variants
        expected = [(os.path.join(root, "images", f"{i}.jpg"), variants.index(v)) for i, v in rows]
        assert result.items == expected
        assert result.source == os.path.join(root, f"images_variant_{split}.txt")

    (root / "images_variant_val.txt").write_text("0062765 Concorde\n")
    with pytest.raises(CalipError, match="images_variant_val.txt:1"):
        load_image_split("fgvc_aircraft", tmp_path, "val")


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("name", sorted(IMAGE_DATASETS))
def test_missing_dataset_shows_expected_layout(tmp_path: Path, name: str) -> None:
    spec = IMAGE_DATASETS[name]
    with pytest.raises(CalipError) as err:
        load_image_split(name, tmp_path, "test")
    message = str(err.value)
    assert str(tmp_path / spec.folder) in message
    assert "expected layout" in message and f"{spec.folder}/" in message
    assert "where to get it" in message
    if spec.fmt == "coop-json":
        assert spec.split_file in message and "CoOp's DATASETS.md" in message


@pytest.mark.parametrize("name", sorted(COOP_JSON_LAYOUTS))
def test_missing_split_file_names_it(tmp_path: Path, name: str) -> None:
    folder, image_dir, split_file = COOP_JSON_LAYOUTS[name]
    (tmp_path / folder / image_dir).mkdir(parents=True, exist_ok=True)
    with pytest.raises(CalipError, match=f"split file not found: .*{split_file}(.|\n)*expected layout"):
        load_image_split(name, tmp_path)


def test_missing_images_and_bad_json(tmp_path: Path) -> None:
    raw = write_coop_json_layout(tmp_path, "dtd", "images", "split_zhou_DescribableTextures.json")
    first = os.path.join(tmp_path, "dtd/images", raw["test"][0][0])
    os.remove(first)
    with pytest.raises(CalipError, match=f"first test image .* not found: {first}"):
        load_image_split("dtd", tmp_path, "test")
    (tmp_path / "dtd/split_zhou_DescribableTextures.json").write_text('{"train": [["a.jpg", 0]]}')
    with pytest.raises(CalipError, match="CoOp format"):
        load_image_split("dtd", tmp_path)
    raw["val"].append(["x.jpg", 0, "not_alpha"])
    (tmp_path / "dtd/split_zhou_DescribableTextures.json").write_text(json.dumps(raw))
    with pytest.raises(CalipError, match="label 0 is named both"):
        load_image_split("dtd", tmp_path)
    (tmp_path / "dtd/split_zhou_DescribableTextures.json").write_text("{not json")
    with pytest.raises(CalipError, match="cannot read split file"):
        load_image_split("dtd", tmp_path)
    with pytest.raises(CalipError, match="unknown split"):
        load_image_split("dtd", tmp_path, "trainval")


@pytest.mark.parametrize("alias,key", [
    ("Caltech-101", "caltech101"), ("caltech_101", "caltech101"), ("OxfordPets", "oxford_pets"),
    ("oxfordpets", "oxford_pets"), ("stanfordcars", "stanford_cars"), ("flowers102", "oxford_flowers"),
    ("OxfordFlowers", "oxford_flowers"), ("food-101", "food101"), ("fgvcaircraft", "fgvc_aircraft"),
    ("FGVCAircraft", "fgvc_aircraft"), ("SUN397", "sun397"), ("DescribableTextures", "dtd"),
    ("EuroSAT", "eurosat"),
    ("UCF-101", "ucf101"), ("ImageNet", "imagenet"), ("imagenet-1k", "imagenet"),
])
def test_aliases(alias: str, key: str) -> None:
    assert resolve_image_dataset(alias) == key


def test_unknown_dataset_lists_names() -> None:
    with pytest.raises(CalipError, match="caltech101.*ucf101"):
        resolve_image_dataset("cifar10")
