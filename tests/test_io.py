"""load_point_cloud on a real ModelNet shape written in every supported format, on meshes written by
hand, and on every kind of bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import open3d as o3d
import pytest

from calip3d.errors import CalipError
from calip3d.cloud_files import load_point_cloud, read_text_array
from calip3d.point_preprocessing import sample_points

CUBE_VERTICES = np.array([[x, y, z] for z in (0, 1) for y in (0, 1) for x in (0, 1)], dtype=float)
CUBE_FACES = np.array(  # two triangles per side, indices into CUBE_VERTICES (bit 0 = x, bit 1 = y, bit 2 = z)
    [[0, 2, 3], [0, 3, 1], [4, 5, 7], [4, 7, 6], [0, 1, 5], [0, 5, 4],
     [2, 6, 7], [2, 7, 3], [0, 4, 6], [0, 6, 2], [1, 3, 7], [1, 7, 5]]
)


@pytest.fixture(scope="module")
def shape(modelnet_h5_dir: Path) -> np.ndarray:
    """A real ModelNet40 shape: [2048, 3] float32 (and its normals in columns 3..5)."""
    with h5py.File(modelnet_h5_dir / "ply_data_test0.h5", "r") as handle:
        return np.concatenate([handle["data"][3], handle["normal"][3]], axis=1)


def write_open3d(path: Path, xyz: np.ndarray) -> None:
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz.astype(float)))
    assert o3d.io.write_point_cloud(str(path), cloud)


@pytest.mark.parametrize("suffix", [".ply", ".pcd", ".xyz", ".pts"])
def test_open3d_point_clouds(shape: np.ndarray, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"shape{suffix}"
    write_open3d(path, shape[:, :3])
    points = load_point_cloud(path)
    assert points.dtype == np.float32 and points.shape == (2048, 3)
    np.testing.assert_allclose(points, shape[:, :3], atol=1e-6)


def test_pts_without_count_line(shape: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "shape.pts"
    np.savetxt(path, shape[:100, :3], fmt="%.6f")
    np.testing.assert_allclose(load_point_cloud(path), shape[:100, :3], atol=1e-6)


def test_numpy_and_text_formats(shape: np.ndarray, tmp_path: Path) -> None:
    np.save(tmp_path / "shape.npy", shape)
    np.savez(tmp_path / "shape.npz", normals=shape[:, 3:], points=shape[:, :3])
    np.savez(tmp_path / "first.npz", shape)  # no known key: the first array
    np.savetxt(tmp_path / "commas.txt", shape, fmt="%.6f", delimiter=",")  # like modelnet40_normal_resampled
    np.savetxt(tmp_path / "spaces.txt", shape[:, :3], fmt="%.6f", delimiter=" ")
    exact, text = ("shape.npy", "shape.npz", "first.npz"), ("commas.txt", "spaces.txt")
    for name, atol in [(n, 0) for n in exact] + [(n, 1e-6) for n in text]:
        points = load_point_cloud(tmp_path / name)
        assert points.dtype == np.float32 and points.shape == (2048, 3), name
        np.testing.assert_allclose(points, shape[:, :3], atol=atol, err_msg=name)


def test_read_text_array_rows_and_columns(shape: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "commas.txt"
    np.savetxt(path, shape, fmt="%.6f", delimiter=",")
    expected = np.array([[float(v) for v in line.split(",")] for line in path.read_text().splitlines()])
    cases = [({}, 2048, 6), ({"max_rows": 10}, 10, 6), ({"max_rows": 5, "columns": 3}, 5, 3)]
    for kwargs, rows, cols in cases:
        parsed = read_text_array(path, **kwargs)
        assert parsed.dtype == np.float32 and parsed.shape == (rows, cols)
        np.testing.assert_allclose(parsed, expected[:rows, :cols], rtol=1e-6)
    np.savetxt(path, shape, fmt="%.6f")  # space separated
    np.testing.assert_allclose(read_text_array(path, columns=3), expected[:, :3], rtol=1e-6)


def test_h5_with_several_clouds(modelnet_h5_dir: Path, tmp_path: Path) -> None:
    with h5py.File(modelnet_h5_dir / "ply_data_test0.h5", "r") as handle:
        clouds = handle["data"][:4]
    with h5py.File(tmp_path / "clouds.h5", "w") as handle:
        handle["data"] = clouds
        handle["label"] = np.arange(4)
    with pytest.warns(UserWarning, match="holds 4 clouds; taking the first"):
        np.testing.assert_array_equal(load_point_cloud(tmp_path / "clouds.h5"), clouds[0])
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "clouds.h5", index=2), clouds[2])
    with pytest.raises(CalipError, match="index 4 is out of range; the file holds 4 clouds"):
        load_point_cloud(tmp_path / "clouds.h5", index=4)
    with h5py.File(tmp_path / "one.h5", "w") as handle:
        handle["points"] = clouds[1]
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "one.h5"), clouds[1])


def test_num_points_and_up_axis(shape: np.ndarray, tmp_path: Path) -> None:
    np.save(tmp_path / "shape.npy", shape[:, :3])
    xyz = shape[:, :3]
    np.testing.assert_array_equal(
        load_point_cloud(tmp_path / "shape.npy", num_points=256), sample_points(xyz, 256, "fps")
    )
    np.testing.assert_array_equal(
        load_point_cloud(tmp_path / "shape.npy", num_points=100, sampling="random", seed=4),
        sample_points(xyz, 100, "random", seed=4),
    )
    z_up = np.stack([xyz[:, 0], -xyz[:, 2], xyz[:, 1]], axis=1)  # the y-up shape expressed z-up
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "shape.npy"), xyz)
    np.save(tmp_path / "z_up.npy", z_up)
    np.testing.assert_allclose(load_point_cloud(tmp_path / "z_up.npy", up_axis="z"), xyz)


# ---------------------------------------------------------------- meshes


def write_cube(path: Path) -> None:
    """A unit cube mesh written as text in the format of the file's extension."""
    v, f = CUBE_VERTICES, CUBE_FACES
    suffix = path.suffix
    if suffix == ".off":
        lines = ["OFF", f"{len(v)} {len(f)} 0"] + [" ".join(map(str, p)) for p in v]
        lines += [f"3 {a} {b} {c}" for a, b, c in f]
    elif suffix == ".obj":
        lines = [f"v {x} {y} {z}" for x, y, z in v] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in f]
    elif suffix == ".ply":
        lines = ["ply", "format ascii 1.0", f"element vertex {len(v)}", "property float x",
                 "property float y", "property float z", f"element face {len(f)}",
                 "property list uchar int vertex_indices", "end_header"]
        lines += [" ".join(map(str, p)) for p in v] + [f"3 {a} {b} {c}" for a, b, c in f]
    else:  # ascii STL
        lines = ["solid cube"]
        for tri in f:
            corners = [f"vertex {x} {y} {z}" for x, y, z in v[tri]]
            lines += ["facet normal 0 0 0", "outer loop", *corners, "endloop", "endfacet"]
        lines.append("endsolid cube")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("suffix", [".off", ".obj", ".stl", ".ply"])
def test_mesh_points_lie_on_the_surface(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"cube{suffix}"
    write_cube(path)
    points = load_point_cloud(path, mesh_samples=3000)
    assert points.shape == (3000, 3) and points.dtype == np.float32
    assert points.min() >= -1e-6 and points.max() <= 1 + 1e-6
    to_surface = np.minimum(points, 1 - points).min(axis=1)  # distance to the nearest cube side
    assert to_surface.max() < 1e-6
    sides = [(axis, value) for axis in range(3) for value in (0, 1)]
    counts = [int((np.abs(points[:, a] - v) < 1e-6).sum()) for a, v in sides]
    assert min(counts) > 300  # every side is sampled (about 500 each)
    np.testing.assert_array_equal(points, load_point_cloud(path, mesh_samples=3000))  # deterministic
    assert not np.array_equal(points, load_point_cloud(path, mesh_samples=3000, seed=1))
    assert load_point_cloud(path, num_points=64).shape == (64, 3)


def test_modelnet_off_with_glued_header(tmp_path: Path) -> None:
    path = tmp_path / "cube.off"
    write_cube(path)
    text = path.read_text().split("\n", 2)
    (tmp_path / "glued.off").write_text(f"OFF{text[1]}\n{text[2]}")  # "OFF8 12 0", as in many ModelNet files
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "glued.off"), load_point_cloud(path))


# ---------------------------------------------------------------- bad input


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    cloud = np.random.default_rng(0).random((20, 3))
    cases = {
        "nan.npy": cloud.copy(),
        "inf.npy": cloud.copy(),
        "same.npy": np.ones((20, 3)),
        "no_rows.npy": np.zeros((0, 3)),
        "single.npy": cloud[:1],
        "two_columns.npy": cloud[:, :2],
        "flat.npy": cloud.reshape(-1),
    }
    cases["nan.npy"][3, 1] = np.nan
    cases["inf.npy"][5, 2] = -np.inf
    for name, array in cases.items():
        np.save(tmp_path / name, array)
    (tmp_path / "blank.txt").write_text("\n")
    (tmp_path / "header.txt").write_text("x,y,z\n1,2,3\n4,5,6\n")
    header = ["ply", "format ascii 1.0", "element vertex 0", "property float x", "property float y",
              "property float z", "end_header"]
    (tmp_path / "no_vertex.ply").write_text("\n".join(header) + "\n")
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip file")
    with h5py.File(tmp_path / "keys.h5", "w") as handle:
        handle["coords"] = cloud
    (tmp_path / "vertices.off").write_text("OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n")
    (tmp_path / "vertices.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    (tmp_path / "cloud.las").write_bytes(b"")
    expected = {
        "missing.ply": "not found",
        "nan.npy": "1 of 20 points have NaN or infinite coordinates",
        "inf.npy": "1 of 20 points have NaN or infinite coordinates",
        "no_rows.npy": "the point cloud is empty",
        "blank.txt": "the point cloud is empty",
        "no_vertex.ply": r"no points could be read from it \(empty or malformed \.ply file\)",
        "same.npy": "all 20 points are identical",
        "single.npy": "single point",
        "two_columns.npy": r"expected points of shape \[P, >=3\].*\(20, 2\)",
        "flat.npy": r"expected points of shape \[P, >=3\].*\(60,\)",
        "header.txt": "could not parse it as a table of numbers",
        "corrupt.npz": "cannot read",
        "keys.h5": "no 'data' or 'points' dataset.*coords",
        "vertices.off": "mesh has no faces",
        "vertices.obj": "mesh has no faces",
        "cloud.las": "unknown point-cloud file extension '.las'",
    }
    for name, pattern in expected.items():
        with pytest.raises(CalipError, match=pattern) as info:
            load_point_cloud(tmp_path / name)
        assert name in str(info.value)


def test_bad_arguments(tmp_path: Path) -> None:
    np.save(tmp_path / "c.npy", np.random.default_rng(0).random((20, 3)))
    with pytest.raises(CalipError, match="unknown up axis"):
        load_point_cloud(tmp_path / "c.npy", up_axis="x")
    with pytest.raises(CalipError, match="unknown sampling method"):
        load_point_cloud(tmp_path / "c.npy", num_points=5, sampling="grid")
    with pytest.raises(CalipError, match="index=1 is out of range"):
        load_point_cloud(tmp_path / "c.npy", index=1)


def test_open3d_import_failure_names_the_system_libraries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cube(tmp_path / "cube.off")
    monkeypatch.setitem(sys.modules, "open3d", None)  # `import open3d` now raises ImportError
    with pytest.raises(CalipError, match=r"cube\.off needs open3d.*libgl1.*libusb-1\.0-0.*apt-get install"):
        load_point_cloud(tmp_path / "cube.off")
    np.save(tmp_path / "c.npy", CUBE_VERTICES)  # numpy formats still work without open3d
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "c.npy"), CUBE_VERTICES)
