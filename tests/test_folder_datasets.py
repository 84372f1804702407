"""Folder datasets (`--dataset folder:PATH`) built from the real files in ../shared/data: Caltech101 images linked into
`PATH/<split>/<class>/` and ModelNet40 clouds written as .npy, .xyz, .ply and .off meshes, in both layouts. The
commands run as users run them (eval -> fewshot -> show on one folder, tune-views, torchrun), and give the numbers of
the registered dataset restricted to the same items."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from calip3d.backbone import BackboneConfig
from calip3d.cli.eval import main as eval_main
from calip3d.cli.fewshot import main as fewshot_main
from calip3d.cli.show import main as show_main
from calip3d.cli.tune_views import main as tune_views_main
from calip3d.datasets import (
    FolderPointSettings, PointSettings, dataset_file_stem, get_dataset, is_folder_dataset, load_split,
)
from calip3d.encoding import EncodeConfig
from calip3d.errors import CalipError
from calip3d.fetch import dataset_provenance
from calip3d.fewshot.methods import tip_released
from calip3d.prompts import build_prompts
from calip3d.zeroshot import EvalConfig, TuneConfig
from calip3d.run_context import RunContext
from calip3d.zeroshot.pipeline import prepare
from tiny_models import write_tiny

REPO = Path(__file__).resolve().parents[1]

# Caltech101 class folder -> (our folder name, CoOp's class name); our folders sort in the same order
CALTECH = {"Faces": ("Faces", "face"), "Leopards": ("Leopards", "leopard"), "wild_cat": ("wild_cat", "wild_cat"),
           "yin_yang": ("yin-yang", "yin_yang")}
COUNTS = {"train": 4, "val": 2, "test": 3}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("tinyfolder"), "resnet", seed=2)


def _model(tiny) -> list[str]:
    return ["--backbone", str(tiny[0]), "--pretrained", str(tiny[1]), "--workers", "0"]


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------------ building folders


def _caltech_items(caltech_root: Path, counts: dict[str, int]) -> dict[str, dict[str, list[str]]]:
    """split -> Caltech class folder -> the first `counts[split]` relative paths of CoOp's split, by file name."""
    coop = _json(caltech_root / "caltech-101" / "split_zhou_Caltech101.json")
    return {split: {c: sorted(rel for rel, _, _ in coop[split] if rel.split("/")[0] == c)[:n] for c in CALTECH}
            for split, n in counts.items()}


def image_folder(target: Path, caltech_root: Path, counts: dict[str, int] = COUNTS, flat: bool = False,
                 classnames: bool = True) -> Path:
    """Real Caltech101 images linked into `target/<split>/<class>/` (or `target/<class>/`, the test images)."""
    images = caltech_root / "caltech-101" / "101_ObjectCategories"
    for split, per_class in _caltech_items(caltech_root, counts).items():
        for source, rels in per_class.items():
            folder = target / (CALTECH[source][0] if flat else f"{split}/{CALTECH[source][0]}")
            folder.mkdir(parents=True, exist_ok=True)
            for rel in rels:
                (folder / Path(rel).name).symlink_to(images / rel)
    if classnames:
        (target / "classnames.txt").write_text("Faces face\nLeopards leopard\nwild_cat wild cat\nyin-yang yin yang\n")
    return target


def coop_root(target: Path, caltech_root: Path, counts: dict[str, int] = COUNTS) -> Path:
    """A data root whose caltech101 is CoOp's split restricted to the items of `image_folder`, in its order."""
    folder = target / "caltech-101"
    folder.mkdir(parents=True)
    (folder / "101_ObjectCategories").symlink_to(caltech_root / "caltech-101" / "101_ObjectCategories")
    split = {s: [[rel, label, CALTECH[c][1]] for label, (c, rels) in enumerate(per_class.items()) for rel in rels]
             for s, per_class in _caltech_items(caltech_root, counts).items()}
    (folder / "split_zhou_Caltech101.json").write_text(json.dumps(split))
    return target


def _h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as handle:
        return handle["data"][()][..., :3].astype(np.float32), handle["label"][()].reshape(-1).astype(np.int64)


def write_cloud(path: Path, cloud: np.ndarray) -> Path:
    """`cloud [P, 3]` float32 as .npy, .xyz, ascii .ply (doubles: exact) or an .off mesh (its convex hull)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(" ".join(repr(float(v)) for v in point) for point in cloud)
    if path.suffix == ".npy":
        np.save(path, cloud)
    elif path.suffix == ".xyz":
        path.write_text(rows + "\n")
    elif path.suffix == ".ply":
        path.write_text(f"ply\nformat ascii 1.0\nelement vertex {len(cloud)}\nproperty double x\nproperty double y\n"
                        f"property double z\nend_header\n{rows}\n")
    else:
        import open3d as o3d

        hull, _ = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.astype(np.float64))).compute_convex_hull()
        vertices, faces = np.asarray(hull.vertices), np.asarray(hull.triangles)
        path.write_text(f"OFF\n{len(vertices)} {len(faces)} 0\n"
                        + "".join(f"{x!r} {y!r} {z!r}\n" for x, y, z in vertices.tolist())
                        + "".join(f"3 {a} {b} {c}\n" for a, b, c in faces.tolist()))
    return path


LOSSLESS = (".npy", ".xyz", ".ply")


def cloud_folder(target: Path, modelnet_h5_dir: Path, suffixes=LOSSLESS) -> tuple[Path, list[str], np.ndarray]:
    """The 29 real ModelNet40 test clouds in `target/<class>/<class>_<i>.<suffix>` (flat layout), suffixes in turn.
    Returns the folder, its class folders (sorted; bookshelf/ is book_shelf/) and the clouds in the folder's order
    `[29, 2048, 3]`."""
    names = [{"bookshelf": "book_shelf"}.get(n, n) for n in (modelnet_h5_dir / "shape_names.txt").read_text().split()]
    clouds, labels = _h5(modelnet_h5_dir / "ply_data_test0.h5")
    entries = sorted((names[label], f"{names[label]}_{i:04d}", i) for i, label in enumerate(labels))
    for n, (cls, stem, i) in enumerate(entries):
        write_cloud(target / cls / f"{stem}{suffixes[n % len(suffixes)]}", clouds[i])
    return target, sorted({cls for cls, _, _ in entries}), clouds[[i for _, _, i in entries]]


def h5_root(target: Path, classes: list[str], clouds: np.ndarray, labels: np.ndarray) -> Path:
    """A data root whose modelnet40 (h5 release) holds exactly `clouds` labelled into `classes`."""
    folder = target / "modelnet40_ply_hdf5_2048"
    folder.mkdir(parents=True)
    (folder / "shape_names.txt").write_text("\n".join(classes) + "\n")
    for split in ("train", "test"):
        with h5py.File(folder / f"ply_data_{split}0.h5", "w") as handle:
            handle["data"] = clouds
            handle["label"] = labels.astype(np.uint8)[:, None]
    return target


def _open3d() -> None:
    try:
        import open3d  # noqa: F401
    except (ImportError, OSError) as err:  # the system libraries libgl1 / libusb-1.0-0 missing
        pytest.skip(f"open3d does not import here ({err}); .xyz, .ply and .off need it")


# ------------------------------------------------------------------------------------------------ names and classes


def test_a_folder_is_described_like_a_registered_dataset(caltech_root, tmp_path, monkeypatch):
    """Fails if: the class order is not the sorted folder names, `_`/`-` are kept, the name does not round-trip
    (relative path, bare path, folder: prefix), the file stem is not file-safe, has_val_split ignores val/, or a
    preset lookup raises KeyError for a folder."""
    folder = image_folder(tmp_path / "my data", caltech_root, classnames=False)
    monkeypatch.chdir(tmp_path)
    info = get_dataset("folder:my data")
    assert info.name == f"folder:{folder}" and info.folder == str(folder) and info.kind == "images"
    assert info.classnames == ("Faces", "Leopards", "wild cat", "yin yang")
    assert info.splits == ("train", "val", "test") and info.has_val_split and not info.is_points
    assert get_dataset(info.name) == info and get_dataset(str(folder)) == info and get_dataset("./my data") == info
    assert is_folder_dataset(info.name) and not is_folder_dataset("caltech101")
    stem = info.file_stem
    assert stem == dataset_file_stem(info.name) and stem.startswith("folder-my_data-") and "/" not in stem
    assert get_dataset("caltech101").file_stem == "caltech101"
    assert info.template == "a photo of a {}." and info.paper_betas is None
    assert info.default_betas[0] == (1.12, 0.02) and info.beta_search_range == (2.0, 0.1)
    assert tip_released(info.name)[0] == tip_released("imagenet")[0]
    assert build_prompts(info.name, list(info.classnames)).prompts[2] == ["a photo of a wild cat."]
    assert info.template.format("x") == "a photo of a x." and info.table1_projection is None
    with pytest.raises(CalipError, match="no view weights"):
        info.table1_view_weights

    test = load_split(info.name, "/no/such/root", "test")  # the data root is not used
    assert len(test) == 12 and test.labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    relative = [Path(p).relative_to(folder).as_posix() for p in test.ids]
    assert [r.split("/")[1] for r in relative] == [f for f in ("Faces", "Leopards", "wild_cat", "yin-yang")
                                                   for _ in range(3)]
    assert relative[:3] == sorted(relative[:3]) and [f[0] for f in test.files] == relative
    assert [len(load_split(info.name, None, s)) for s in ("train", "val")] == [16, 8]

    # classnames.txt names the classes (CoOp's ImageNet format); the label order stays the folders'
    (folder / "classnames.txt").write_text("yin-yang yin yang symbol\nFaces human face\nLeopards leopard\n"
                                           "wild_cat wild cat\n")
    assert get_dataset(info.name).classnames == ("human face", "leopard", "wild cat", "yin yang symbol")
    (folder / "classnames.txt").write_text("Faces human face\n")
    with pytest.raises(CalipError, match=r"classnames.txt names no class for the folder\(s\) Leopards, wild_cat"):
        get_dataset(info.name)


def test_a_folder_is_scanned_once_until_it_changes(caltech_root, tmp_path, monkeypatch):
    """A run asks for the layout many times: an unchanged folder is listed once. Fails if: every lookup walks the
    whole tree again; an added file, a new classnames.txt or a folder modified just before the scan is not seen."""
    import calip3d.datasets.folder_layout as layout

    folder = image_folder(tmp_path / "caltech4", caltech_root, classnames=False)
    scans = []
    real_scan = layout._scan
    monkeypatch.setattr(layout, "_scan", lambda root, visited: scans.append(root) or real_scan(root, visited))
    name = f"folder:{folder}"

    def age() -> None:  # every folder of the tree last modified an hour ago
        for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
            os.utime(path, (1, os.stat(path).st_mtime - 3600))

    assert len(load_split(name, None, "test")) == 12
    get_dataset(name)
    assert len(scans) == 3  # just written: scanned at every lookup (the lookup, the split, the lookup again)
    age()
    for _ in range(3):
        info = get_dataset(name)
        split = load_split(name, None, "test")
    assert len(scans) == 4 and len(split) == 12  # aged: once for the six lookups
    extra = folder / "test" / "Faces"
    (extra / "copy.jpg").symlink_to(next(extra.iterdir()).resolve())  # a file added: its folder changes
    assert len(load_split(name, None, "test")) == 13 and len(scans) > 4
    age()
    get_dataset(name)
    (folder / "classnames.txt").write_text("Faces face\nLeopards leopard\nwild_cat wild cat\nyin-yang yin yang\n")
    assert get_dataset(name).classnames == ("face", "leopard", "wild cat", "yin yang") != info.classnames


def test_flat_layout_is_a_test_split_and_tuning_needs_a_train_split(tiny, caltech_root, tmp_path, capsys):
    """Fails if: the flat layout is not read as test only, tuning silently draws from test, or the error does not say
    what to do (the library names TuneConfig(on='none'), the command --tune-on none)."""
    folder = image_folder(tmp_path / "flat", caltech_root, {"test": 3}, flat=True)
    info = get_dataset(f"folder:{folder}")
    assert info.splits == ("test",) and not info.has_val_split and info.classnames[0] == "face"
    with pytest.raises(CalipError, match=r"flat layout PATH/<class>/<file>, a test split only.*"
                                         r"TuneConfig\(on='none'\)"):
        load_split(info.name, None, "train")
    argv = ["--dataset", f"folder:{folder}", *_model(tiny), "--no-cache", "--output", str(tmp_path / "flat.json")]
    with pytest.raises(CalipError, match="no train or val split to tune the betas on.*pass --tune-on none"):
        eval_main(argv)
    assert eval_main([*argv, "--tune-on", "none"]) == 0
    result = _json(tmp_path / "flat.json")
    assert result["num_samples"] == 12 and result["num_classes"] == 4 and result["methods"] == ["clip"]


# ------------------------------------------------------------------------------------------------ same numbers


def test_image_folder_gives_the_registered_datasets_numbers_and_chains(tiny, caltech_root, tmp_path, monkeypatch):
    """The folder and caltech101 restricted to the same items (same class names, prompts and order): identical
    per-item CALIP terms and result rows. Then eval -> fewshot -> show on the folder with default output names.
    Fails if: items are ordered or labelled differently, the prompt differs, a file name is built from the raw
    name (folder:/... is not a file name), or dataset provenance raises KeyError for a folder."""
    folder = image_folder(tmp_path / "caltech4", caltech_root)
    root = coop_root(tmp_path / "root", caltech_root)
    backbone = BackboneConfig(str(tiny[0]), str(tiny[1]), device="cpu").load()
    configs = [EvalConfig(dataset=name, data_root=str(root), tune=TuneConfig(on="none"),
                          encode=EncodeConfig(workers=0, use_cache=False)) for name in (f"folder:{folder}", "caltech101")]
    terms = [prepare(config, RunContext.build(config, backbone)) for config in configs]
    assert terms[0].test.classnames == ["face", "leopard", "wild cat", "yin yang"]
    assert terms[0].prompts.prompts == terms[1].prompts.prompts
    for key, value in terms[1].terms.tensors().items():
        assert torch.equal(terms[0].terms.tensors()[key], value), key

    monkeypatch.chdir(tmp_path)
    common = [*_model(tiny), "--betas", "1,2,0.1", "--no-cache"]
    assert eval_main(["--dataset", "caltech101", "--data-root", str(root), *common, "--tune-on", "none",
                      "--output", "registered.json"]) == 0
    assert eval_main(["--dataset", f"folder:{folder}", *common]) == 0
    stem = get_dataset(str(folder)).file_stem
    ours, theirs = _json(tmp_path / "results" / f"{stem}_tiny-resnet_test.json"), _json(tmp_path / "registered.json")
    assert ours["dataset"] == f"folder:{folder}" and (ours["num_samples"], ours["num_classes"]) == (12, 4)
    assert ours["clip"] == theirs["clip"] and ours["calip_user"] == theirs["calip_user"]
    assert ours["methods"] == ["clip", "calip_user", "calip_tuned"]  # tuned on the folder's val split
    assert "8 images" in ours["calip_tuned"]["betas_source"]
    data = ours["provenance"]["data"]
    assert data["folder"] == str(folder) and data["classnames"] == ["face", "leopard", "wild cat", "yin yang"]
    assert data["class_folders"] == ["Faces", "Leopards", "wild_cat", "yin-yang"] and data["kind"] == "images"
    assert data["files"] == {"train": 16, "val": 8, "test": 12} and data["files_digest"].startswith("sha256:")
    assert data == dataset_provenance(f"folder:{folder}")

    assert fewshot_main(["--dataset", f"folder:{folder}", *_model(tiny), "--shots", "2", "--epochs", "1"]) == 0
    fewshot = _json(tmp_path / "results" / "fewshot" / f"{stem}_calip-fs_2shot_seed1.json")
    assert fewshot["dataset"] == f"folder:{folder}" and fewshot["num_samples"] == 12
    assert fewshot["split"]["val_source"] == "val"  # the folder's val split
    assert Path(fewshot["split_file"]) == Path("results/fewshot/splits") / f"{stem}_shot2_seed1.json"
    assert Path(fewshot["checkpoint"]).name == f"{stem}_calip-fs_2shot_seed1.pt" and Path(fewshot["checkpoint"]).exists()
    assert fewshot["provenance"]["data"]["files_digest"] == data["files_digest"]
    assert fewshot["zero_shot_reference"]["clip"] == {k: ours["clip"][k] for k in ("top1", "top5")}

    assert show_main(["--dataset", f"folder:{folder}", "--index", "4", *_model(tiny)[:4], "--output", "show"]) == 0
    assert (tmp_path / "show" / f"{stem}_test_4.png").is_file()


def test_point_folder_gives_the_registered_datasets_numbers(tiny, modelnet_h5_dir, tmp_path):
    """The 29 ModelNet40 test clouds as .npy/.xyz/.ply files vs the same clouds in an h5 release with the folder's
    classes: identical prepared points and result rows. Fails if: a format is read lossily or in another order,
    clouds are prepared differently from the h5 route (y-up, first-N sampling, unit sphere), or the default
    point-cloud prompt differs."""
    _open3d()
    folder, classes, clouds = cloud_folder(tmp_path / "clouds", modelnet_h5_dir)
    info = get_dataset(f"folder:{folder}")
    assert info.kind == "points" and info.splits == ("test",) and len(classes) == 20
    assert info.template == "point cloud depth map of a {}."
    assert list(info.classnames) == [c.replace("_", " ") for c in classes] and "book shelf" in info.classnames
    labels = np.repeat(np.arange(len(classes)), [sum(1 for f in (folder / c).iterdir()) for c in classes])
    root = h5_root(tmp_path / "root", classes, clouds, labels)
    settings = PointSettings(num_points=512)
    ours, theirs = load_split(info.name, None, "test", settings), load_split("modelnet40", root, "test", settings)
    assert np.array_equal(ours.labels, theirs.labels) and np.array_equal(ours.points, theirs.points)
    assert ours.settings.format == "folder" and ours.settings.skipped_files == []
    assert ours.ids[0].startswith(str(folder))

    common = [*_model(tiny), "--tune-on", "none", "--no-cache", "--points", "512", "--betas", "1,1.5,0.05"]
    assert eval_main(["--dataset", str(folder), *common, "--output", str(tmp_path / "ours.json")]) == 0
    assert eval_main(["--dataset", "modelnet40", "--data-root", str(root), *common,
                      "--output", str(tmp_path / "theirs.json")]) == 0
    a, b = _json(tmp_path / "ours.json"), _json(tmp_path / "theirs.json")
    assert (a["num_samples"], a["num_classes"]) == (29, 20) and a["methods"] == b["methods"]
    for method in a["methods"]:
        assert a[method] == b[method], method
    assert a["provenance"]["points"]["num_points"] == 512 and a["provenance"]["data"]["layout"] == "flat"


def test_point_folder_with_meshes_in_splits_runs_every_command(tiny, modelnet_h5_dir, tmp_path, monkeypatch):
    """Train and test clouds with .off meshes among them: eval tunes on train shots, tune-views and fewshot run and
    name their files after the folder. Fails if: meshes are not sampled to points, the train split is not found, or
    a 3D preset or output name breaks on a folder."""
    _open3d()
    names = (modelnet_h5_dir / "shape_names.txt").read_text().split()
    folder = tmp_path / "shapes"
    chosen = ("monitor", "vase", "desk", "dresser")
    for split in ("train", "test"):
        clouds, labels = _h5(modelnet_h5_dir / f"ply_data_{split}0.h5")
        picked = [i for i, label in enumerate(labels) if names[label] in chosen]
        for n, i in enumerate(picked[:12]):
            write_cloud(folder / split / names[labels[i]] / f"{i:04d}{('.off', '.npy', '.xyz', '.ply')[n % 4]}",
                        clouds[i])
    info = get_dataset(f"folder:{folder}")
    assert info.splits == ("train", "test") and info.classnames == ("desk", "dresser", "monitor", "vase")
    train = load_split(info.name, None, "train")
    mesh = [k for k, (rel, _, _) in enumerate(train.files) if rel.endswith(".off")]
    assert mesh and train.points.shape[1:] == (1024, 3) and np.isfinite(train.points).all()
    assert np.allclose(np.linalg.norm(train.points[mesh[0]], axis=-1).max(), 1.0)  # sampled, then unit sphere

    monkeypatch.chdir(tmp_path)
    common = ["--dataset", f"folder:{folder}", *_model(tiny), "--batch-size", "8"]
    assert eval_main([*common, "--tune-shots", "1", "--search-steps", "5", "--no-cache"]) == 0
    stem = info.file_stem
    result = _json(tmp_path / "results" / f"{stem}_tiny-resnet_test.json")
    assert "calip_tuned" in result["methods"] and "1 train clouds per class" in result["calip_tuned"]["betas_source"]
    assert tune_views_main([*common, "--shots", "1", "--rounds", "1", "--restarts", "0", "--search-steps", "5",
                            "--no-cache"]) == 0
    assert (tmp_path / "results" / f"tune_views_{stem}_6v.json").is_file()
    assert fewshot_main([*common, "--shots", "1", "--epochs", "1", "--views", "6"]) == 0
    fewshot = _json(tmp_path / "results" / "fewshot" / f"{stem}_calip-fs_1shot_seed1.json")
    assert fewshot["split"]["val_source"] == "train" and fewshot["provenance"]["points"]["format"] == "folder"


# ------------------------------------------------------------------------------------------------ the cache


def test_the_cache_key_follows_every_file(tiny, caltech_root, tmp_path):
    """Hit when nothing changed; miss after a file is added, replaced (new size), touched (same size, new mtime) or
    removed. Fails if the key holds only the paths (a replaced image would reuse stale terms)."""
    folder = image_folder(tmp_path / "data", caltech_root, {"test": 3})
    argv = ["--dataset", f"folder:{folder}", *_model(tiny), "--tune-on", "none", "--cache-dir", str(tmp_path / "c"),
            "--output", str(tmp_path / "out.json")]

    def cache() -> tuple[str, int]:
        assert eval_main(argv) == 0
        result = _json(tmp_path / "out.json")
        return result["provenance"]["cache"], result["num_samples"]

    assert cache() == ("miss", 12) and cache() == ("hit", 12)
    spare = caltech_root / "caltech-101" / "101_ObjectCategories" / "Faces" / "image_0100.jpg"
    added = folder / "test" / "Faces" / "image_9999.jpg"
    shutil.copy(spare, added)
    assert cache() == ("miss", 13) and cache() == ("hit", 13)
    shutil.copy(caltech_root / "caltech-101" / "101_ObjectCategories" / "Faces" / "image_0101.jpg", added)
    assert cache() == ("miss", 13)
    stat = added.stat()
    os.utime(added, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    assert cache() == ("miss", 13) and cache() == ("hit", 13)
    digest = dataset_provenance(f"folder:{folder}")["files_digest"]
    os.utime(added, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10 ** 9))
    assert dataset_provenance(f"folder:{folder}")["files_digest"] != digest
    added.unlink()
    assert cache() == ("hit", 12)  # back to the first state: its entry is still there


# ------------------------------------------------------------------------------------------------ errors


def test_malformed_folders_are_errors_naming_the_problem(caltech_root, modelnet_h5_dir, tmp_path):
    """Fails if: images and clouds mix silently, an empty class folder or split is accepted, split folders mix with
    class folders, two folders give one class name, or a missing folder gives a traceback instead of an error."""
    folder = image_folder(tmp_path / "mixed", caltech_root, {"test": 2}, classnames=False)
    np.save(folder / "test" / "Leopards" / "cloud.npy", np.zeros((4, 3), np.float32))
    with pytest.raises(CalipError, match=r"mixes images \(8, e\.g\. test/Faces/image_\d+\.jpg\) and point clouds "
                                         r"\(1, e\.g\. test/Leopards/cloud\.npy\)"):
        get_dataset(f"folder:{folder}")
    (folder / "test" / "Leopards" / "cloud.npy").unlink()
    (folder / "test" / "empty_class").mkdir()
    (folder / "test" / "empty_class" / "notes.md").write_text("no images here")
    with pytest.raises(CalipError, match=f"class folder {folder / 'test' / 'empty_class'} holds no image file"):
        get_dataset(f"folder:{folder}")
    shutil.rmtree(folder / "test" / "empty_class")
    (folder / "train").mkdir()
    with pytest.raises(CalipError, match=f"empty split: {folder / 'train'} has no class folders"):
        get_dataset(f"folder:{folder}")
    (folder / "train").rmdir()
    (folder / "extra").mkdir()
    with pytest.raises(CalipError, match=r"has split folders \(test\) and other folders \(extra\)"):
        get_dataset(f"folder:{folder}")
    (folder / "extra").rmdir()
    shutil.copytree(folder / "test" / "wild_cat", folder / "test" / "wild-cat", symlinks=True)
    with pytest.raises(CalipError, match="'wild-cat' and 'wild_cat'|'wild_cat' and 'wild-cat'"):
        get_dataset(f"folder:{folder}")
    shutil.rmtree(folder / "test" / "wild-cat")
    with pytest.raises(CalipError, match="no such folder"):
        get_dataset(f"folder:{tmp_path / 'absent'}")
    with pytest.raises(CalipError, match="holds images, not point clouds"):
        get_dataset(f"folder:{folder / 'test'}", kind="points")
    with pytest.raises(CalipError, match="unknown dataset 'cifar10'.*folder:PATH"):
        get_dataset("cifar10")


def test_a_bad_image_stops_the_run_or_is_skipped_and_listed(tiny, caltech_root, tmp_path, capsys):
    """Fails if: an undecodable .jpg is not named, or --skip-bad-files neither drops nor lists it."""
    folder = image_folder(tmp_path / "data", caltech_root, {"test": 3})
    bad = folder / "test" / "Leopards" / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    argv = ["--dataset", f"folder:{folder}", *_model(tiny), "--tune-on", "none", "--no-cache",
            "--output", str(tmp_path / "out.json")]
    with pytest.raises(CalipError, match=f"cannot read image {bad}"):
        eval_main(argv)
    capsys.readouterr()
    assert eval_main([*argv, "--skip-bad-files"]) == 0
    assert f"skipping unreadable image {bad}" in capsys.readouterr().err
    result = _json(tmp_path / "out.json")
    assert result["num_samples"] == 12 and result["provenance"]["skipped_files"] == 1


def test_bad_clouds_stop_the_load_or_are_skipped_and_listed(tiny, modelnet_h5_dir, tmp_path, capsys):
    """An unreadable .ply, an empty cloud and one with NaN. Fails if: the error does not name the file, skipping is
    not listed on stderr and in the result, or a class folder left with no cloud is accepted."""
    _open3d()
    folder, classes, _ = cloud_folder(tmp_path / "clouds", modelnet_h5_dir, suffixes=(".npy",))
    (folder / "vase" / "broken.ply").write_text("not a ply file")
    np.save(folder / "monitor" / "empty.npy", np.zeros((0, 3), np.float32))
    nan = np.load(next((folder / "desk").iterdir()))
    nan[5] = np.nan
    np.save(folder / "desk" / "nan.npy", nan)
    name = f"folder:{folder}"
    with pytest.raises(CalipError, match=f"{folder / 'desk' / 'nan.npy'}: 1 of 2048 points have NaN"):
        load_split(name, None, "test")
    (folder / "desk" / "nan.npy").rename(tmp_path / "nan.npy")
    with pytest.raises(CalipError, match=f"{folder / 'monitor' / 'empty.npy'}: the point cloud is empty"):
        load_split(name, None, "test")
    (folder / "monitor" / "empty.npy").rename(tmp_path / "empty.npy")
    with pytest.raises(CalipError, match=f"{folder / 'vase' / 'broken.ply'}: not a PLY file"):
        load_split(name, None, "test")
    for bad, where in (("nan.npy", "desk"), ("empty.npy", "monitor")):
        (tmp_path / bad).rename(folder / where / bad)
    skipping = FolderPointSettings(skip_bad_files=True)
    split = load_split(name, None, "test", skipping)
    assert len(split) == 29 and [s["file"] for s in split.settings.skipped_files] == [
        "desk/nan.npy", "monitor/empty.npy", "vase/broken.ply"]
    assert "broken.ply" not in "".join(rel for rel, _, _ in split.files)

    argv = ["--dataset", name, *_model(tiny), "--tune-on", "none", "--no-cache", "--output", str(tmp_path / "o.json")]
    capsys.readouterr()
    assert eval_main([*argv, "--skip-bad-files"]) == 0
    err = capsys.readouterr().err
    assert "skipped 3 unreadable point-cloud file(s)" in err and str(folder / "vase" / "broken.ply") in err
    result = _json(tmp_path / "o.json")
    assert result["num_samples"] == 29
    assert len(result["provenance"]["points"]["skipped_files"]) == 3

    lone = folder / classes[0]
    for path in lone.iterdir():
        path.write_bytes(b"\x00garbage")
    with pytest.raises(CalipError, match=f"class folder {lone} has no usable point-cloud file"):
        load_split(name, None, "test", skipping)


# ------------------------------------------------------------------------------------------------ torchrun


def test_two_ranks_give_one_process_results_on_a_folder(tiny, caltech_root, tmp_path, one_thread):
    """Fails if a rank resolves the folder, its items or its order differently, or reads the data root."""
    folder = image_folder(tmp_path / "data", caltech_root)
    argv = ["--dataset", f"folder:{folder}", *_model(tiny), "--batch-size", "4", "--tune-on", "test",
            "--search-steps", "20"]
    assert eval_main([*argv, "--cache-dir", str(tmp_path / "c1"), "--output", str(tmp_path / "one.json")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "calip3d", "eval", *argv, "--cache-dir", str(tmp_path / "c2"), "--output",
                           str(tmp_path / "two.json")], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    one, two = _json(tmp_path / "one.json"), _json(tmp_path / "two.json")
    one_prov, two_prov = one.pop("provenance"), two.pop("provenance")
    assert two == one and "calip_tuned" in one and "calip_oracle" in one
    assert two_prov["items_per_rank"] == [6, 6] and two_prov["data"] == one_prov["data"]
