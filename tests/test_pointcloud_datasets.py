"""Point-cloud datasets on the real release files (ScanObjectNN on h5 files written here in the official
layout), and the point operations (sampling, normalisation, up axis) against straightforward code."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from calip3d.datasets.pointclouds import PointSettings, load_point_split
from calip3d.datasets.registry import DATASETS as POINT_DATASETS, SCANOBJECTNN_CLASSES
from calip3d.errors import CalipError
from calip3d.point_preprocessing import farthest_point_indices, normalize_unit_sphere, sample_points, to_y_up


def pc_normalize(cloud: np.ndarray) -> np.ndarray:
    """PointNet's pc_normalize, one cloud at a time."""
    centred = cloud - cloud.mean(axis=0)
    return centred / np.sqrt((centred**2).sum(axis=1)).max()


def fps_loop(cloud: np.ndarray, n: int) -> list[int]:
    """Plain farthest-point sampling from index 0."""
    chosen = [0]
    nearest = np.full(len(cloud), np.inf, dtype=cloud.dtype)
    for _ in range(n - 1):
        diff = cloud - cloud[chosen[-1]]
        nearest = np.minimum(nearest, diff[:, 0] ** 2 + diff[:, 1] ** 2 + diff[:, 2] ** 2)
        chosen.append(int(np.argmax(nearest)))
    return chosen


@pytest.fixture(scope="module")
def raw_h5(modelnet_h5_dir: Path) -> dict[str, np.ndarray]:
    out = {}
    for split in ("train", "test"):
        with h5py.File(modelnet_h5_dir / f"ply_data_{split}0.h5", "r") as handle:
            out[split] = handle["data"][()]
            out[split + "_label"] = handle["label"][()].reshape(-1)
    return out


def read_names(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- ModelNet40 h5


@pytest.mark.parametrize("split,count", [("test", 29), ("train", 127)])
def test_modelnet40_h5_split(modelnet_h5_dir: Path, raw_h5: dict, split: str, count: int) -> None:
    data = load_point_split("modelnet40", modelnet_h5_dir.parent, split=split)
    assert data.settings == PointSettings(format="h5")  # typed: the settings used, the format resolved
    assert data.settings.as_dict() == {
        "format": "h5", "num_points": 1024, "sampling": "first", "seed": 0, "normalize": True, "up_axis": "y",
    }
    assert data.points.shape == (count, 1024, 3) and data.points.dtype == np.float32
    assert data.labels.dtype == np.int64 and len(data) == count
    assert data.classnames == read_names(modelnet_h5_dir / "shape_names.txt")
    assert len(data.classnames) == 40 and data.classnames[0] == "airplane" and data.classnames[-1] == "xbox"
    assert 0 <= data.labels.min() and data.labels.max() < 40
    np.testing.assert_array_equal(data.labels, raw_h5[split + "_label"])
    expected = np.stack([pc_normalize(c[:1024]) for c in raw_h5[split]])
    np.testing.assert_allclose(data.points, expected, atol=1e-6)
    assert f"ply_data_{split}0.h5" in data.source


def test_modelnet40_h5_raw_values_without_normalisation(modelnet_h5_dir: Path, raw_h5: dict) -> None:
    data = load_point_split("modelnet40", modelnet_h5_dir.parent, num_points=2048, normalize=False)
    np.testing.assert_array_equal(data.points, raw_h5["test"])
    z_up = load_point_split(
        "modelnet40", modelnet_h5_dir.parent, num_points=2048, normalize=False, up_axis="z"
    )
    np.testing.assert_array_equal(z_up.points, to_y_up(raw_h5["test"], "z"))
    assert z_up.settings.up_axis == "z"


def test_modelnet40_h5_fps_and_random(modelnet_h5_dir: Path, raw_h5: dict) -> None:
    fps = load_point_split("modelnet40", modelnet_h5_dir.parent, num_points=256, sampling="fps")
    for i in (0, 17):
        expected = pc_normalize(raw_h5["test"][i][fps_loop(raw_h5["test"][i], 256)])
        np.testing.assert_allclose(fps.points[i], expected, atol=1e-6)
    rand = load_point_split("modelnet40", modelnet_h5_dir.parent, num_points=256, sampling="random", seed=3)
    index = np.random.default_rng(3).choice(2048, size=256, replace=False)
    np.testing.assert_allclose(rand.points[5], pc_normalize(raw_h5["test"][5][index]), atol=1e-6)
    assert rand.settings.sampling == "random" and rand.settings.seed == 3


def test_modelnet40_h5_files_found_by_name(modelnet_h5_dir: Path, raw_h5: dict, tmp_path: Path) -> None:
    folder = tmp_path / "modelnet40_ply_hdf5_2048"
    folder.mkdir()
    (folder / "shape_names.txt").symlink_to(modelnet_h5_dir / "shape_names.txt")
    (folder / "ply_data_test0.h5").symlink_to(modelnet_h5_dir / "ply_data_test0.h5")
    (folder / "test_files.txt").write_text("C:\\datasets\\modelnet\\ply_data_test0.h5\n\n")
    data = load_point_split("modelnet40", tmp_path, normalize=False)
    np.testing.assert_array_equal(data.points, raw_h5["test"][:, :1024])
    (folder / "test_files.txt").unlink()  # no list: sorted glob of ply_data_test*.h5
    assert len(load_point_split("modelnet40", tmp_path)) == 29
    (folder / "test_files.txt").write_text("/elsewhere/data/modelnet40_ply_hdf5_2048/ply_data_test1.h5\n")
    with pytest.raises(CalipError, match=r"ply_data_test1\.h5.*test_files\.txt"):
        load_point_split("modelnet40", tmp_path)


# ---------------------------------------------------------------- ModelNet resampled


def parse_shape_txt(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", dtype=np.float32)


@pytest.mark.parametrize("sampling", ["first", "random"])
def test_modelnet40_resampled(modelnet_resampled_dir: Path, sampling: str) -> None:
    data = load_point_split("modelnet40", modelnet_resampled_dir.parent, fmt="resampled", sampling=sampling)
    names = read_names(modelnet_resampled_dir / "modelnet40_shape_names.txt")
    ids = read_names(modelnet_resampled_dir / "modelnet40_test.txt")
    assert data.classnames == names and len(data) == len(ids) == 29
    assert data.settings.format == "resampled"
    rng = np.random.default_rng(0)
    index = np.arange(1024) if sampling == "first" else rng.choice(10000, 1024, replace=False)
    for i in (0, 13, 28):
        cls = ids[i][: ids[i].rindex("_")]
        assert data.labels[i] == names.index(cls)
        raw = parse_shape_txt(modelnet_resampled_dir / cls / f"{ids[i]}.txt")
        assert raw.shape == (10000, 6)
        np.testing.assert_allclose(data.points[i], pc_normalize(raw[index, :3]), atol=1e-6)


@pytest.mark.parametrize("split,count", [("test", 11), ("train", 20)])
def test_modelnet10_lists(modelnet_resampled_dir: Path, split: str, count: int) -> None:
    root = modelnet_resampled_dir.parent
    data = load_point_split("modelnet10", root, split=split, num_points=512, normalize=False)
    names = read_names(modelnet_resampled_dir / "modelnet10_shape_names.txt")
    assert data.classnames == names == list(POINT_DATASETS["modelnet10"].classnames)
    ids = read_names(modelnet_resampled_dir / f"modelnet10_{split}.txt")
    assert len(data) == len(ids) == count and data.points.shape == (count, 512, 3)
    for i, shape_id in enumerate(ids):  # e.g. night_stand_0080 -> folder night_stand
        cls = shape_id[: shape_id.rindex("_")]
        assert data.classnames[data.labels[i]] == cls
        raw = parse_shape_txt(modelnet_resampled_dir / cls / f"{shape_id}.txt")
        np.testing.assert_array_equal(data.points[i], raw[:512, :3])


def test_modelnet10_has_no_h5_route(modelnet_resampled_dir: Path) -> None:
    with pytest.raises(CalipError, match="modelnet10.*resampled"):
        load_point_split("modelnet10", modelnet_resampled_dir.parent, fmt="h5")


def test_modelnet40_defaults_to_resampled_when_alone(modelnet_resampled_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "modelnet40_normal_resampled").symlink_to(modelnet_resampled_dir)
    data = load_point_split("modelnet40", tmp_path, num_points=64)
    assert data.settings.format == "resampled" and len(data) == 29


def test_missing_dataset_and_split_files_show_the_layout(tmp_path: Path) -> None:
    with pytest.raises(CalipError, match=r"(?s)modelnet40 in .* not found.*hdf5_2048/.*\(PointNet,.*normal_resampled/"):
        load_point_split("modelnet40", tmp_path)
    with pytest.raises(CalipError, match=r"(?s)h5 folder .*hdf5_2048 not found.*shape_names\.txt.*PointNet"):
        load_point_split("modelnet40", tmp_path, fmt="h5")
    with pytest.raises(CalipError, match=r"(?s)normal_resampled.*not found.*modelnet10_\{train,test\}\.txt"):
        load_point_split("modelnet10", tmp_path)
    with pytest.raises(CalipError, match=r"(?s)h5_files.*main_split_nobg.*terms-of-use"):
        load_point_split("scanobjectnn-objonly", tmp_path)
    folder = tmp_path / "modelnet40_normal_resampled"
    folder.mkdir()
    (folder / "modelnet10_test.txt").write_text("chair_0001\n")
    with pytest.raises(CalipError, match=r"(?s)modelnet10_train\.txt not found.*Expected layout"):
        load_point_split("modelnet10", tmp_path, split="train")
    with pytest.raises(CalipError, match=r"chair_0001\.txt \(listed in .*modelnet10_test\.txt\) not found"):
        load_point_split("modelnet10", tmp_path)


def test_bad_arguments_are_calip_errors(modelnet_h5_dir: Path) -> None:
    root = modelnet_h5_dir.parent
    for kwargs, pattern in [
        ({"name": "modelnet"}, "unknown point-cloud dataset"),
        ({"split": "val"}, "unknown split 'val'"),
        ({"fmt": "ply"}, "unknown point-cloud format"),
        ({"sampling": "grid"}, "PointSettings.sampling must be one of first, fps, random, got 'grid'"),
        ({"up_axis": "x"}, "PointSettings.up_axis must be one of y, z"),
        ({"num_points": 0}, "PointSettings.num_points must be an integer >= 1, got 0"),
    ]:
        with pytest.raises(CalipError, match=pattern):
            load_point_split(**{"name": "modelnet40", "data_root": root, **kwargs})


# ---------------------------------------------------------------- ScanObjectNN (official layout written here)

SCANOBJECTNN_FILES = {
    "scanobjectnn-objonly": "main_split_nobg/{}_objectdataset.h5",
    "scanobjectnn-objbg": "main_split/{}_objectdataset.h5",
    "scanobjectnn-hardest": "main_split/{}_objectdataset_augmentedrot_scale75.h5",
}


def write_scanobjectnn(base: Path, clouds: np.ndarray) -> dict[tuple[str, str], tuple[np.ndarray, ...]]:
    """Write every variant's training/test h5 under `base` with distinct (un-normalised) contents."""
    written = {}
    for v, (name, pattern) in enumerate(SCANOBJECTNN_FILES.items()):
        for s, split in enumerate(("training", "test")):
            rng = np.random.default_rng(10 * v + s)
            count = 6 + v + s
            offset = rng.normal(size=(count, 1, 3)).astype(np.float32)
            data = clouds[rng.choice(len(clouds), count)] * 3.0 + offset
            labels = rng.integers(0, 15, size=count)
            path = base / pattern.format(split)
            path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(path, "w") as handle:
                handle["data"] = data.astype(np.float32)
                handle["label"] = labels.astype(np.int64)
                handle["mask"] = (rng.random((count, data.shape[1])) < 0.5).astype(np.int32)
            written[(name, split)] = (data.astype(np.float32), labels)
    return written


@pytest.mark.parametrize("placement", ["scanobjectnn/h5_files", "h5_files", "scanobjectnn"])
def test_scanobjectnn_variants(raw_h5: dict, tmp_path: Path, placement: str) -> None:
    written = write_scanobjectnn(tmp_path / placement, raw_h5["test"])
    for name in SCANOBJECTNN_FILES:
        for split, file_split in (("train", "training"), ("test", "test")):
            data = load_point_split(name, tmp_path, split=split)
            raw, labels = written[(name, file_split)]
            assert data.classnames == list(SCANOBJECTNN_CLASSES) and len(data.classnames) == 15
            assert data.classnames[0] == "bag" and data.classnames[-1] == "toilet"
            np.testing.assert_array_equal(data.labels, labels)
            expected = np.stack([pc_normalize(c[:1024]) for c in raw])
            np.testing.assert_allclose(data.points, expected, atol=1e-5)
            assert data.source.endswith(SCANOBJECTNN_FILES[name].format(file_split))
            assert data.settings.format == "h5"
    with pytest.raises(CalipError, match="scanobjectnn-hardest is not available as fmt='resampled'"):
        load_point_split("scanobjectnn-hardest", tmp_path, fmt="resampled")


def test_scanobjectnn_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "h5_files/main_split/test_objectdataset.h5"
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as handle:
        handle["data"] = np.zeros((2, 8, 3), np.float32)
    with pytest.raises(CalipError, match=r"test_objectdataset\.h5: no 'label' dataset"):
        load_point_split("scanobjectnn-objbg", tmp_path)
    with h5py.File(path, "w") as handle:
        handle["data"] = np.random.default_rng(0).random((2, 8, 3), dtype=np.float32)
        handle["label"] = np.array([3, 15])
    with pytest.raises(CalipError, match=r"labels must lie in \[0, 15\)"):
        load_point_split("scanobjectnn-objbg", tmp_path)


def test_subset(modelnet_h5_dir: Path) -> None:
    data = load_point_split("modelnet40", modelnet_h5_dir.parent)
    part = data.subset([4, 0, 4])
    assert part.name == data.name and part.classnames == data.classnames and part.settings == data.settings
    np.testing.assert_array_equal(part.points, data.points[[4, 0, 4]])
    np.testing.assert_array_equal(part.labels, data.labels[[4, 0, 4]])
    assert len(data.subset(data.labels == 37)) == 4
    with pytest.raises(CalipError, match="29 clouds"):
        data.subset([29])


# ---------------------------------------------------------------- point operations


def test_fps_matches_a_plain_loop_and_spreads_points(raw_h5: dict) -> None:
    clouds = raw_h5["test"][:3]
    batched = farthest_point_indices(clouds, 128)
    for cloud, picked in zip(clouds, batched):
        assert picked.tolist() == fps_loop(cloud, 128)
        assert len(set(picked.tolist())) == 128
    expected = np.take_along_axis(clouds, batched[..., None], 1)
    np.testing.assert_array_equal(sample_points(clouds, 128, "fps"), expected)
    # The release files are already in farthest-point order: FPS keeps the first points.
    assert (batched < 128).mean() > 0.95
    # On a shuffled cloud, FPS points are far apart: a larger minimum pairwise distance than the first 128.

    def min_gap(points: np.ndarray) -> float:
        dist = np.linalg.norm(points[:, None] - points[None], axis=-1)
        return dist[~np.eye(len(points), dtype=bool)].min()

    shuffled = clouds[0][np.random.default_rng(0).permutation(2048)]
    assert min_gap(sample_points(shuffled, 128, "fps")) > 3 * min_gap(shuffled[:128])


def test_sampling_methods_and_padding() -> None:
    cloud = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    np.testing.assert_array_equal(sample_points(cloud, 10, "first"), cloud[:10])
    rand = sample_points(cloud, 10, "random", seed=7)
    np.testing.assert_array_equal(rand, cloud[np.random.default_rng(7).choice(50, 10, replace=False)])
    assert not np.array_equal(rand, sample_points(cloud, 10, "random", seed=8))
    batch = np.stack([cloud, -cloud])
    alone = sample_points(-cloud, 10, "random", seed=7)
    np.testing.assert_array_equal(sample_points(batch, 10, "random", seed=7)[1], alone)
    for method in ("first", "fps", "random"):  # fewer points than asked: all of them, then seeded repeats
        padded = sample_points(cloud, 64, method, seed=2)
        np.testing.assert_array_equal(padded[:50], cloud)
        repeats = np.random.default_rng(2).choice(50, 14, replace=True)
        np.testing.assert_array_equal(padded[50:], cloud[repeats])
    with pytest.raises(CalipError, match="unknown sampling method"):
        sample_points(cloud, 10, "poisson")
    with pytest.raises(CalipError, match="positive integer"):
        sample_points(cloud, 0)
    with pytest.raises(CalipError, match=r"shape \[P, 3\]"):
        sample_points(cloud[:, :2], 4)


def test_normalize_unit_sphere(raw_h5: dict) -> None:
    clouds = raw_h5["train"][:4] * 5 + 2
    out = normalize_unit_sphere(clouds)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.stack([pc_normalize(c) for c in clouds]), atol=1e-6)
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1).max(axis=1), 1, atol=1e-6)
    with pytest.raises(CalipError, match="zero extent"):
        normalize_unit_sphere(np.ones((5, 3)))


def test_to_y_up() -> None:
    # In z-up coordinates: up, front (-y, as Blender's front view), right.
    up_front_right = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(to_y_up(up_front_right, "z"), [[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    rotation = to_y_up(np.eye(3), "z")
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3))
    assert np.isclose(np.linalg.det(rotation), 1.0)  # a rotation, not a mirror
    np.testing.assert_array_equal(to_y_up(up_front_right, "y"), up_front_right)
    with pytest.raises(CalipError, match="unknown up axis 'x'"):
        to_y_up(up_front_right, "x")
