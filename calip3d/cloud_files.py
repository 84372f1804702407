"""Read one point cloud or mesh file as `[P, 3]` float32 points, with a clear error for every bad file.

Formats:
- point clouds through open3d (imported only when needed): .ply without faces, .pcd, .xyz, .pts;
- meshes through open3d, sampled to points: .off, .obj, .stl and .ply files that contain faces;
- numpy: .npy, .npz (key "points", "xyz" or "data", else the first array), .txt (rows separated by
  commas or spaces, x, y, z in the first 3 columns, e.g. modelnet40_normal_resampled's `x,y,z,nx,ny,nz`);
- HDF5: .h5/.hdf5 (dataset "data" or "points").
From an array of several clouds `[N, P, C]` (h5, npy, npz) the cloud `index` is taken; without an index,
the first cloud is taken and a warning says so.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from calip3d.errors import CalipError
from calip3d.point_preprocessing import check_sampling_method, check_up_axis, sample_points, to_y_up

OPEN3D_CLOUD_EXTS = (".ply", ".pcd", ".xyz", ".pts")
MESH_EXTS = (".off", ".obj", ".stl")
ARRAY_EXTS = (".npy", ".npz", ".txt", ".h5", ".hdf5")
SUPPORTED_EXTS = OPEN3D_CLOUD_EXTS + MESH_EXTS + ARRAY_EXTS
ARRAY_KEYS = ("points", "xyz", "data")


def _open3d(path: Path) -> Any:
    """Import open3d lazily; a failed import (package or system libraries missing) is a CalipError."""
    try:
        import open3d
    except (ImportError, OSError) as err:
        raise CalipError(
            f"reading {path.name} needs open3d, which failed to import ({err}). open3d needs the system "
            "libraries libgl1 and libusb-1.0-0: install them with "
            "`sudo apt-get install -y libgl1 libusb-1.0-0` (and `pip install open3d` if the package is "
            "missing), or convert the file to .npy, .txt or .h5"
        ) from None
    return open3d


def read_text_array(path: Path | str, max_rows: int | None = None, columns: int | None = None) -> np.ndarray:
    """Parse a text file of numeric rows separated by commas or whitespace: `[R, C]` float32.

    The delimiter is a comma when the first non-blank line has one, else whitespace. Parsing is numpy's
    C `np.loadtxt`, limited to the first `max_rows` rows and the first `columns` columns when given
    (reading only x, y, z of a 10,000-row `x,y,z,nx,ny,nz` file takes about half the time of all six).
    Blank lines and `#` comments are skipped.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            first = next((ln for ln in handle if ln.strip() and not ln.lstrip().startswith(b"#")), b"")
    except OSError as err:
        raise CalipError(f"cannot read {path}: {err.strerror or err}") from None
    if not first:
        return np.zeros((0, columns or 0), dtype=np.float32)
    try:
        return np.loadtxt(
            path, dtype=np.float32, delimiter="," if b"," in first else None, max_rows=max_rows,
            usecols=range(columns) if columns else None, ndmin=2,
        )
    except ValueError as err:
        raise CalipError(
            f"{path}: could not parse it as a table of numbers ({err}); "
            "expected rows like `x,y,z[,...]` or `x y z [...]`"
        ) from None


def _select_cloud(array: np.ndarray, path: Path, index: int | None) -> np.ndarray:
    """Pick one cloud `[P, C]` from `[P, C]` or `[N, P, C]`."""
    if array.ndim == 3:
        count = array.shape[0]
        if index is None:
            if count > 1:
                warnings.warn(
                    f"{path} holds {count} clouds; taking the first (pass index= to choose one)", stacklevel=3
                )
            index = 0
        if not -count <= index < count:
            raise CalipError(f"{path}: cloud index {index} is out of range; the file holds {count} clouds")
        return array[index]
    if index not in (None, 0):
        raise CalipError(f"{path}: holds a single cloud, so index={index} is out of range")
    return array


def _read_npz(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.keys())
        if not keys:
            raise CalipError(f"{path}: the .npz archive holds no arrays")
        return archive[next((k for k in ARRAY_KEYS if k in archive), keys[0])]


def _read_h5(path: Path) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as handle:
        key = next((k for k in ("data", "points") if k in handle), None)
        if key is None:
            raise CalipError(f"{path}: no 'data' or 'points' dataset in it (it has: {', '.join(handle)})")
        return handle[key][()]


def _read_array_file(path: Path, suffix: str) -> np.ndarray:
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        return _read_npz(path) if suffix == ".npz" else _read_h5(path)
    except CalipError:
        raise
    except Exception as err:  # corrupt or foreign file: name it instead of showing a library traceback
        raise CalipError(f"cannot read {path} as a {suffix} file ({type(err).__name__}: {err})") from None


def _ply_has_faces(path: Path) -> bool:
    """Whether a PLY header declares a non-empty `element face`."""
    with path.open("rb") as handle:
        header = handle.read(65536)
    end = header.find(b"end_header")
    if not header.startswith(b"ply") or end < 0:
        raise CalipError(f"{path}: not a PLY file (no 'ply' ... 'end_header' header)")
    match = re.search(rb"^element\s+face\s+(\d+)", header[:end], flags=re.MULTILINE)
    return bool(match and int(match.group(1)) > 0)


def _declares_vertices(path: Path) -> bool:
    """Whether an .off header or an .obj declares vertices (open3d reads vertex-only files as empty)."""
    text = path.read_bytes()
    if path.suffix.lower() == ".obj":
        return re.search(rb"^v\s", text, flags=re.MULTILINE) is not None
    if path.suffix.lower() == ".off":
        match = re.match(rb"\s*OFF\s*(\d+)", re.sub(rb"#[^\n]*", b"", text))
        return bool(match and int(match.group(1)) > 0)
    return False


def _read_mesh(path: Path, samples: int, seed: int) -> np.ndarray:
    """`samples` points sampled uniformly (area-weighted, open3d, seeded) on a mesh's surface: `[S, 3]`."""
    o3d = _open3d(path)
    with tempfile.TemporaryDirectory() as tmp:
        source = path
        if path.suffix.lower() == ".off":
            # Many ModelNet .off files glue the counts to the keyword ("OFF490 518 0"); open3d rejects that.
            text = path.read_bytes()
            fixed = re.sub(rb"\AOFF(?=\d)", b"OFF\n", text)
            if fixed != text:
                source = Path(tmp) / "fixed.off"
                source.write_bytes(fixed)
        with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
            mesh = o3d.io.read_triangle_mesh(str(source))
    if len(mesh.triangles) == 0:
        if len(mesh.vertices) > 0 or _declares_vertices(path):
            raise CalipError(f"{path}: mesh has no faces (only vertices), so there is no surface to sample")
        raise CalipError(f"{path}: could not read a mesh with faces from it (empty or malformed file)")
    o3d.utility.random.seed(seed)
    try:
        cloud = mesh.sample_points_uniformly(number_of_points=samples)
    except RuntimeError as err:
        raise CalipError(f"{path}: could not sample points on the mesh ({err})") from None
    return np.asarray(cloud.points)


def _read_open3d_cloud(path: Path) -> np.ndarray:
    o3d = _open3d(path)
    # open3d's "pts" reader needs a point-count first line; its "xyz" reader reads .pts with or without one.
    fmt = "xyz" if path.suffix.lower() == ".pts" else "auto"
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        cloud = o3d.io.read_point_cloud(str(path), format=fmt)
    if len(cloud.points) == 0:
        raise CalipError(f"{path}: no points could be read from it (empty or malformed {path.suffix} file)")
    return np.asarray(cloud.points)


def _read_any(path: Path, suffix: str, mesh_samples: int, seed: int) -> np.ndarray:
    if suffix in MESH_EXTS or (suffix == ".ply" and _ply_has_faces(path)):
        return _read_mesh(path, mesh_samples, seed)
    if suffix in OPEN3D_CLOUD_EXTS:
        return _read_open3d_cloud(path)
    if suffix == ".txt":
        return read_text_array(path)
    return np.asarray(_read_array_file(path, suffix))


def check_points(array: np.ndarray, path: Path | str) -> np.ndarray:
    """Validate a cloud `[P, C>=3]` read from `path`; return its coordinates `[P, 3]` float32."""
    if array.ndim == 2 and array.shape[0] == 0:
        raise CalipError(f"{path}: the point cloud is empty")
    if array.ndim != 2 or array.shape[1] < 3:
        raise CalipError(
            f"{path}: expected points of shape [P, >=3] (x, y, z first), got shape {tuple(array.shape)}"
        )
    if not np.issubdtype(array.dtype, np.number):
        raise CalipError(f"{path}: expected numeric coordinates, got dtype {array.dtype}")
    if array.shape[0] == 1:
        raise CalipError(f"{path}: the point cloud has a single point; at least 2 are needed")
    xyz = array[:, :3].astype(np.float32)
    bad = ~np.isfinite(xyz).all(axis=1)
    if bad.any():
        raise CalipError(f"{path}: {int(bad.sum())} of {len(xyz)} points have NaN or infinite coordinates")
    if not np.ptp(xyz, axis=0).any():
        raise CalipError(f"{path}: all {len(xyz)} points are identical (the cloud has zero extent)")
    return xyz


def load_point_cloud(
    path: Path | str,
    num_points: int | None = None,
    up_axis: str = "y",
    mesh_samples: int = 10000,
    sampling: str = "fps",
    seed: int = 0,
    index: int | None = None,
) -> np.ndarray:
    """Load a point-cloud or mesh file as `[P, 3]` float32, y-up, not normalised.

    Meshes give `mesh_samples` points sampled uniformly on their surface (open3d, deterministic for a
    `seed`; this seeds open3d's global random generator). With `num_points`, the cloud is subsampled by
    `sample_points(points, num_points, sampling, seed)`: the default "fps" does not depend on the order of
    the points in the file. up_axis="z" rotates a z-up scan to y-up (`to_y_up`). `index` picks one cloud
    of a file holding several (see the module docstring).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTS:
        raise CalipError(
            f"{path}: unknown point-cloud file extension {path.suffix or '(none)'!r}; "
            f"supported: {', '.join(SUPPORTED_EXTS)}"
        )
    if not path.exists():
        raise CalipError(f"point-cloud file not found: {path}")
    if not path.is_file():
        raise CalipError(f"{path} is not a file")
    check_up_axis(up_axis)
    check_sampling_method(sampling)
    if isinstance(mesh_samples, bool) or not isinstance(mesh_samples, (int, np.integer)) or mesh_samples < 2:
        raise CalipError(f"mesh_samples must be an integer >= 2, got {mesh_samples!r}")
    points = check_points(_select_cloud(_read_any(path, suffix, mesh_samples, seed), path, index), path)
    points = to_y_up(points, up_axis)
    if num_points is not None:
        points = sample_points(points, num_points, sampling, seed)
    return np.ascontiguousarray(points, dtype=np.float32)
