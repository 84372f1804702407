"""Point-cloud operations in numpy: subsampling (first / farthest-point / random), unit-sphere
normalisation and the up axis.

Every function takes one cloud `[P, 3]` or a batch `[..., P, 3]`, and treats the clouds of a batch
independently.
"""

from __future__ import annotations

import numpy as np

from calip3d.errors import CalipError

SAMPLING_METHODS = ("first", "fps", "random")
UP_AXES = ("y", "z")


def check_sampling_method(method: str) -> None:
    """Raise a CalipError unless `method` is one of SAMPLING_METHODS."""
    if method not in SAMPLING_METHODS:
        raise CalipError(f"unknown sampling method {method!r}; expected one of {', '.join(SAMPLING_METHODS)}")


def check_up_axis(up_axis: str) -> None:
    """Raise a CalipError unless `up_axis` is one of UP_AXES."""
    if up_axis not in UP_AXES:
        raise CalipError(f"unknown up axis {up_axis!r}; expected one of {', '.join(UP_AXES)}")


def _check_cloud_array(points: np.ndarray, what: str) -> np.ndarray:
    points = np.asarray(points)
    if points.ndim < 2 or points.shape[-1] != 3:
        raise CalipError(f"{what}: expected points of shape [P, 3] or [..., P, 3], got {tuple(points.shape)}")
    return points


def farthest_point_indices(points: np.ndarray, n: int) -> np.ndarray:
    """Farthest-point sampling: indices `[..., n]` into `[..., P, 3]` (1 <= n <= P).

    Starts at index 0 (as PointNet++'s CUDA `furthest_point_sample` does), then repeatedly takes the
    point whose squared distance to the points chosen so far is largest (ties: the lowest index).
    Each of the n - 1 steps is one vectorised update over all points of all clouds, in the input's
    float precision (float32 for float32 input).
    """
    points = _check_cloud_array(points, "farthest_point_indices")
    batch_shape, num = points.shape[:-2], points.shape[-2]
    if not 1 <= n <= num:
        raise CalipError(f"farthest-point sampling needs 1 <= n <= {num} points, got n={n}")
    flat = points.reshape(-1, num, 3).astype(np.result_type(points.dtype, np.float32), copy=False)
    x, y, z = (np.ascontiguousarray(flat[..., d]) for d in range(3))  # each [B, P]
    rows = np.arange(flat.shape[0])
    chosen = np.zeros((flat.shape[0], n), dtype=np.int64)
    nearest = np.full((flat.shape[0], num), np.inf, dtype=flat.dtype)
    for step in range(1, n):
        last = chosen[:, step - 1]
        dist = (x - x[rows, last, None]) ** 2 + (y - y[rows, last, None]) ** 2
        dist += (z - z[rows, last, None]) ** 2
        np.minimum(nearest, dist, out=nearest)
        chosen[:, step] = nearest.argmax(axis=1)
    return chosen.reshape(*batch_shape, n)


def sample_points(points: np.ndarray, n: int, method: str = "first", seed: int = 0) -> np.ndarray:
    """Subsample `[..., P, 3]` to `[..., n, 3]`.

    - "first": the first n points, as PointCLIP reads them. ModelNet's h5 and normal_resampled files
      are stored in farthest-point order, so their first n points are almost exactly the FPS choice;
    - "fps": farthest-point sampling from index 0 (`farthest_point_indices`; `seed` is not used);
    - "random": n distinct indices drawn by `np.random.default_rng(seed)`, the same indices for every
      cloud of a batch (so sampling a batch equals sampling each cloud alone).

    When P < n (any method), the result is all P points in file order followed by n - P indices drawn
    with replacement by `np.random.default_rng(seed)`: deterministic, the same for every cloud of a batch.
    """
    points = _check_cloud_array(points, "sample_points")
    check_sampling_method(method)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise CalipError(f"number of points to sample must be a positive integer, got {n!r}")
    num = points.shape[-2]
    if num == 0:
        raise CalipError("sample_points: the cloud has no points")
    rng = np.random.default_rng(seed)
    if num < n:
        index = np.concatenate([np.arange(num), rng.choice(num, size=n - num, replace=True)])
    elif method == "first":
        index = np.arange(n)
    elif method == "random":
        index = rng.choice(num, size=n, replace=False)
    else:
        picked = farthest_point_indices(points, n)
        return np.take_along_axis(points, picked[..., None], axis=-2)
    return points[..., index, :]


def normalize_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre each cloud `[..., P, 3]` at its mean (as PointNet's `pc_normalize`), scale it so that its
    largest norm is 1. Float input keeps its dtype."""
    points = _check_cloud_array(points, "normalize_unit_sphere")
    centred = points - points.mean(axis=-2, keepdims=True)
    radius = np.linalg.norm(centred, axis=-1).max(axis=-1, keepdims=True)[..., None]
    if np.any(radius == 0):
        raise CalipError("normalize_unit_sphere: a cloud has zero extent (all its points are identical)")
    return (centred / radius).astype(np.result_type(points.dtype, np.float32), copy=False)


def to_y_up(points: np.ndarray, up_axis: str = "y") -> np.ndarray:
    """Express `[..., P, 3]` in the y-up convention of the datasets (ModelNet, ScanObjectNN).

    up_axis="y" returns the points unchanged; "z" rotates by -90 degrees about x: (x, y, z) -> (x, z, -y).
    That is a proper rotation (no mirroring): +z (up) becomes +y, and -y (the front of a z-up model, as
    in Blender's front view) becomes +z (the front in the y-up OpenGL convention), so a z-up object
    stands upright, facing the viewer.
    """
    points = _check_cloud_array(points, "to_y_up")
    check_up_axis(up_axis)
    if up_axis == "y":
        return points
    return np.stack([points[..., 0], points[..., 2], -points[..., 1]], axis=-1)


def augment_points(points: np.ndarray, seed: int) -> np.ndarray:
    """PointCLIP's few-shot augmentation of `[N, P, 3]` clouds: per-cloud anisotropic scale U(2/3, 3/2) and
    translation U(-0.2, 0.2) per axis, drawn by `np.random.default_rng(seed)`; float32."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(2.0 / 3.0, 1.5, size=(points.shape[0], 1, 3))
    shift = rng.uniform(-0.2, 0.2, size=(points.shape[0], 1, 3))
    return (points * scale + shift).astype(np.float32)
