"""Point clouds -> multi-view depth images for CLIP, batched over clouds and views, on any torch device.

- `PointCLIPProjector`: PointCLIP's perspective scatter projection (ZrrSkywalker/PointCLIP `trainers/mv_utils_zs.py`
  and `mv_utils_fs.py`, commit 02c91ee): one pixel per point, pixel value = harmonic mean of the depths landing in it.
- `RealisticProjector`: PointCLIP V2's quantize -> densify -> smooth -> squeeze projection with the settings of its
  released code (yangyangyang127/PointCLIP_V2 `zeroshot_cls/trainers/mv_utils_zs.py`, commit 04779d3).
- `make_projector`: build either from a kind name.

Both return `depth_maps(points [B, P, 3]) -> [B, V, H, W]` and `images(points) -> [B, V, 3, S, S]`: the map repeated
to 3 channels and bilinearly resized (align_corners=True) to S, with no mean/std normalisation, as both peers feed CLIP.
Views are given as Euler angles (x, y, z); the rotation is R = Rx Ry Rz and a point p (row vector) becomes p R^T.
"""

from __future__ import annotations

import inspect
import itertools
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from calip3d.errors import CalipError
from calip3d.published import POINTCLIP_RELEASED_PROJECTION

__all__ = [
    "PointCLIPProjector",
    "ProjectorConfig",
    "RealisticProjector",
    "euler_to_matrix",
    "make_projector",
]

_PI = math.pi
_EPS = 1e-12  # PointCLIP adds it to z before dividing; kept so the arithmetic matches its code

_FRONT, _RIGHT, _BACK, _LEFT = ((k * _PI / 2, 0.0, _PI / 2) for k in range(4))
_TOP, _BOTTOM = (0.0, -_PI / 2, _PI / 2), (0.0, _PI / 2, _PI / 2)

# Names follow PointCLIP's order (front, right, back, left, top, bottom); for the y-up ModelNet files the camera of
# "front" sits at -z, "right" at -x, "back" at +z, "left" at +x, "top" at +y, "bottom" at -y.
_POINTCLIP_PRESETS: dict[int, tuple[tuple[tuple[float, float, float], ...], tuple[str, ...]]] = {
    6: (
        (_FRONT, _RIGHT, _BACK, _LEFT, _TOP, _BOTTOM),
        ("front", "right", "back", "left", "top", "bottom"),
    ),
    # mv_utils_fs.py: the four corner views sit between the side views and top/bottom (not after the six).
    10: (
        (
            _FRONT, _RIGHT, _BACK, _LEFT,
            (5 * _PI / 4, -_PI / 4, _PI / 2), (5 * _PI / 4, _PI / 4, _PI / 2),
            (7 * _PI / 4, -_PI / 4, _PI / 2), (7 * _PI / 4, _PI / 4, _PI / 2),
            _TOP, _BOTTOM,
        ),
        (
            "front", "right", "back", "left",
            "lower-back-left", "upper-back-left", "upper-front-left", "lower-front-left",
            "top", "bottom",
        ),
    ),
}
_POINTCLIP_ALIASES = {"zeroshot": 6, "fewshot": 10}

_SIDE_TILT, _POLE_TILT = (0.0, _PI / 9, 0.0), (0.0, _PI / 15, 0.0)
_V2_VIEWS = (
    tuple((k * _PI / 4, 0.0, _PI / 2) for k in (1, 3, 5, 7)) + (_FRONT, _RIGHT, _BACK, _LEFT, _TOP, _BOTTOM)
)
_V2_NAMES = ("front-right", "back-right", "back-left", "front-left", "front", "right", "back", "left", "top", "bottom")
_V2_TILTS = (_SIDE_TILT,) * 8 + (_POLE_TILT,) * 2
# 10: the released views; 6: its axis-aligned subset (front, right, back, left, top, bottom), our own choice.
_REALISTIC_PRESETS = {
    10: (_V2_VIEWS, _V2_NAMES, _V2_TILTS),
    6: (_V2_VIEWS[4:], _V2_NAMES[4:], _V2_TILTS[4:]),
}


def euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """Euler angles `[V, 3]` (x, y, z, radians) -> rotation matrices `[V, 3, 3]`, R = Rx @ Ry @ Rz (right-handed)."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    zero, one = torch.zeros_like(angles[:, 0]), torch.ones_like(angles[:, 0])
    cx, cy, cz = cos.unbind(-1)
    sx, sy, sz = sin.unbind(-1)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).view(-1, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).view(-1, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).view(-1, 3, 3)
    return rx @ ry @ rz


def _check_points(points: Any) -> torch.Tensor:
    if not isinstance(points, torch.Tensor):
        raise CalipError(f"points must be a torch.Tensor of shape [B, P, 3], got {type(points).__name__} "
                         "(convert with torch.as_tensor(points, dtype=torch.float32))")
    if points.dim() != 3 or points.shape[-1] != 3 or points.shape[0] < 1 or points.shape[1] < 1:
        raise CalipError(f"points must have shape [B, P, 3] with B, P >= 1, got {tuple(points.shape)}")
    if not points.is_floating_point():
        raise CalipError(f"points must be a floating-point tensor, got dtype {points.dtype}")
    return points


def _check_positive_int(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CalipError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_vector(value: Any, what: str) -> tuple[float, float, float]:
    try:
        vector = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        vector = ()
    if len(vector) != 3 or not all(math.isfinite(v) for v in vector):
        raise CalipError(f"{what} must be three finite numbers (x, y, z), got {value!r}")
    return vector


def _check_angle_list(views: Any, what: str) -> tuple[tuple[float, float, float], ...]:
    """A non-empty list of (x, y, z) Euler angles in radians."""
    try:
        items = [] if isinstance(views, (str, bytes)) else list(views)
    except TypeError:
        items = []
    if not items:
        raise CalipError(f"{what} must be a non-empty list of (x, y, z) Euler angles in radians, got {views!r}")
    return tuple(_check_vector(view, f"{what}[{i}] (Euler angles)") for i, view in enumerate(items))


def _check_triple(value: Any, what: str) -> tuple[int, int, int]:
    if not isinstance(value, (tuple, list)) or len(value) != 3 or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value):
        raise CalipError(f"{what} must be three non-negative integers (depth, x, y), got {value!r}")
    return tuple(value)


class _MultiViewProjector(ABC):
    """Shared view bookkeeping and the depth-map -> CLIP-image step. A projector class registered with
    `@register_projector` says how its released setup is built from a number of views (`released`)."""

    kind: str
    default_views: int

    @classmethod
    def released(cls, views: int | None, image_size: int, overrides: dict[str, Any]) -> "_MultiViewProjector":
        """The projector with its released settings for `views` (None: `default_views`), `overrides` winning."""
        return cls(views=cls.default_views if views is None else views, image_size=image_size, **overrides)

    def __init__(self, angles: tuple[tuple[float, float, float], ...], names: tuple[str, ...], image_size: int):
        self.angles = angles
        self.view_names = names
        self.image_size = _check_positive_int(image_size, "image_size")
        self._matrix_cache: dict[tuple[Any, ...], torch.Tensor] = {}

    @property
    def num_views(self) -> int:
        return len(self.angles)

    def _rotations_t(self, angles: tuple[tuple[float, float, float], ...], like: torch.Tensor) -> torch.Tensor:
        """R^T `[V, 3, 3]` for `angles`, computed in `like`'s dtype on its device (cached)."""
        key = (angles, like.dtype, like.device)
        if key not in self._matrix_cache:
            table = torch.tensor(angles, dtype=torch.float64).to(device=like.device, dtype=like.dtype)
            self._matrix_cache[key] = euler_to_matrix(table).transpose(1, 2).contiguous()
        return self._matrix_cache[key]

    def _vector(self, values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
        """`values` `[n]` in `like`'s dtype on its device (cached: no host-to-device copy, which would make the host
        wait for the device, per batch)."""
        key = ("vector", tuple(values), like.dtype, like.device)
        if key not in self._matrix_cache:
            self._matrix_cache[key] = torch.tensor(key[1], dtype=like.dtype).to(like.device)
        return self._matrix_cache[key]

    @abstractmethod
    def depth_maps(self, points: torch.Tensor) -> torch.Tensor:
        """`[B, P, 3]` -> `[B, V, H, W]`."""

    def images(self, points: torch.Tensor) -> torch.Tensor:
        """`[B, P, 3]` -> `[B, V, 3, S, S]`: depth maps repeated to RGB, bilinear (align_corners=True) to S."""
        maps = self.depth_maps(points)
        b, v, h, w = maps.shape
        size = self.image_size
        resized = F.interpolate(maps.reshape(b * v, 1, h, w), size=(size, size), mode="bilinear", align_corners=True)
        return resized.reshape(b, v, 1, size, size).repeat(1, 1, 3, 1, 1)


PROJECTORS: dict[str, type[_MultiViewProjector]] = {}  # kind -> class, filled by `register_projector`


def register_projector(cls: type[_MultiViewProjector]) -> type[_MultiViewProjector]:
    """Class decorator: add a projector to `PROJECTORS` under its `kind` (`--projector KIND`)."""
    if cls.kind in PROJECTORS:
        raise ValueError(f"projector {cls.kind!r} registered twice")
    PROJECTORS[cls.kind] = cls
    return cls


@register_projector
class PointCLIPProjector(_MultiViewProjector):
    """PointCLIP's online perspective projection (no rendering, one pixel per point).

    For each view: p -> p R^T, z -> z + distance, u = x / z, w = y / z, pixel row ceil((u + 1) R / 2 - 0.5), column
    ceil((w + 1) R / 2 - 0.5) (flat index row * R + column, as PointCLIP scatters). Points with z <= 0 or outside the
    R x R image are dropped. A pixel holds sum(z / z) / sum(1 / z) over its points, i.e. the harmonic mean of their
    depths (PointCLIP's inverse-depth-weighted scatter); empty pixels are 0.

    views: 6 or "zeroshot" (front, right, back, left, top, bottom: (k pi/2, 0, pi/2) for k = 0..3, then
    (0, -pi/2, pi/2), (0, pi/2, pi/2)); 10 or "fewshot" (mv_utils_fs.py order: the 4 side views, the 4 corner views
    (5pi/4, -+pi/4, pi/2), (7pi/4, -+pi/4, pi/2), then top and bottom); or an explicit list of (x, y, z) Euler angles.
    The released code uses distance 1.6 / resolution 128 for zero-shot and 1.4 / 224 for few-shot (see `zero_shot()`,
    `few_shot()`); the paper's per-dataset settings are in `calip3d.published.POINTCLIP_TABLE1_PROJECTION`.
    """

    kind = "pointclip"
    default_views = 6

    @classmethod
    def released(cls, views: int | None, image_size: int, overrides: dict[str, Any]) -> "PointCLIPProjector":
        """6 views (None) -> the released zero-shot setup (1.6, 128), 10 -> the few-shot setup (1.4, 224)."""
        views = cls.default_views if views is None else views
        released = POINTCLIP_RELEASED_PROJECTION.get(views) if isinstance(views, int) else None
        preset = dict(zip(("distance", "resolution"), released)) if released else {}
        return cls(views=views, image_size=image_size, **{**preset, **overrides})

    def __init__(self, views: int | str | Sequence[Sequence[float]] = 6, distance: float = 1.6,
                 resolution: int = 128, image_size: int = 224):
        if isinstance(views, str):
            if views not in _POINTCLIP_ALIASES:
                raise CalipError(f"unknown PointCLIP view set {views!r}; expected one of "
                                 f"{', '.join(_POINTCLIP_ALIASES)}, 6, 10 or a list of Euler angles")
            views = _POINTCLIP_ALIASES[views]
        if isinstance(views, int) and not isinstance(views, bool):
            if views not in _POINTCLIP_PRESETS:
                raise CalipError(f"PointCLIP defines 6 (zero-shot) or 10 (few-shot) views, got views={views}; "
                                 "pass a list of (x, y, z) Euler angles for other view sets")
            angles, names = _POINTCLIP_PRESETS[views]
        else:
            angles = _check_angle_list(views, "views")
            names = tuple(f"view{i}" for i in range(len(angles)))
        if isinstance(distance, bool) or not isinstance(distance, (int, float)) or not math.isfinite(distance):
            raise CalipError(f"distance must be a finite number, got {distance!r}")
        super().__init__(angles, names, image_size)
        self.distance = float(distance)
        self.resolution = _check_positive_int(resolution, "resolution")

    @classmethod
    def zero_shot(cls, image_size: int = 224) -> "PointCLIPProjector":
        """PointCLIP's released zero-shot projection: 6 views, distance 1.6, 128 x 128."""
        return cls(6, *POINTCLIP_RELEASED_PROJECTION[6], image_size)

    @classmethod
    def few_shot(cls, image_size: int = 224) -> "PointCLIPProjector":
        """PointCLIP's released few-shot projection: 10 views, distance 1.4, 224 x 224."""
        return cls(10, *POINTCLIP_RELEASED_PROJECTION[10], image_size)

    def describe(self) -> dict[str, Any]:
        """Settings, for results provenance."""
        return {
            "kind": "pointclip",
            "num_views": self.num_views,
            "view_names": list(self.view_names),
            "euler_angles": [list(a) for a in self.angles],
            "distance": self.distance,
            "resolution": self.resolution,
            "image_size": self.image_size,
            "pixel_value": "harmonic mean of depths (sum(z/z) / sum(1/z))",
            "reference": "ZrrSkywalker/PointCLIP trainers/mv_utils_zs.py, mv_utils_fs.py",
        }

    def camera_points(self, points: torch.Tensor) -> torch.Tensor:
        """`[B, P, 3]` -> camera coordinates `[B, V, P, 3]` (rotated, z moved by `distance`)."""
        points = _check_points(points)
        cam = torch.matmul(points.unsqueeze(1), self._rotations_t(self.angles, points))
        return cam + self._vector((0.0, 0.0, self.distance), cam)

    def depth_maps(self, points: torch.Tensor) -> torch.Tensor:
        """`[B, P, 3]` -> `[B, V, R, R]` depth maps (row from x, column from y; empty pixels 0)."""
        cam = self.camera_points(points)
        res = self.resolution
        x, y, z = cam.unbind(-1)  # each [B, V, P]
        row = torch.ceil((x / (z + _EPS) + 1) * res / 2 - 0.5)
        col = torch.ceil((y / (z + _EPS) + 1) * res / 2 - 0.5)
        valid = (z > 0) & (row >= 0) & (row <= res - 1) & (col >= 0) & (col <= res - 1)
        index = torch.where(valid, row * res + col, res * res).long()  # dropped points go to a spare bin
        weight = torch.where(valid, 1 / (z + _EPS), 0)
        num = torch.zeros(*cam.shape[:2], res * res + 1, dtype=cam.dtype, device=cam.device)
        den = torch.zeros_like(num)
        num.scatter_add_(-1, index, z * weight)
        den.scatter_add_(-1, index, weight)
        den = den[..., :-1]
        return (num[..., :-1] / (den + (den == 0).to(den.dtype))).view(*cam.shape[:2], res, res)


@register_projector
class RealisticProjector(_MultiViewProjector):
    """PointCLIP V2's realistic projection, with the settings of its released code (which gave the 64.22%).

    Per cloud and view: rotate (main view, then a small tilt), quantize into a grid [D, R, R] (scatter-max of the
    depth value), densify (3-D max-pool), smooth (fixed Gaussian conv), squeeze (max over depth), divide by the
    image's maximum and output 1 - that. `depth_maps` gives `[B, V, R', R']` with R' = R + 2 pad - pool + 1 (110 for
    the defaults: the released pooling shrinks the map by 2 pixels); `images` resizes it to `image_size`.

    The steps, as in the released `mv_utils_zs.py` (all settable here):
    - views: 10 = the released set, azimuths pi/4, 3pi/4, 5pi/4, 7pi/4, 0, pi/2, pi, 3pi/2 ((a, 0, pi/2)) then top
      (0, -pi/2, pi/2) and bottom (0, pi/2, pi/2), each followed by a tilt about y of pi/9 (side views) or pi/15
      (top/bottom): p -> p R1^T R2^T - translation. 6 = its axis-aligned subset (our choice). Or explicit Euler
      angles (`tilts` defaults to none for those). Names follow PointCLIP's camera sides for the untilted rotation.
    - translation (-0.5, -0.5, -1.5) (TRANS = -1.5) is subtracted, but the per-view re-centring below cancels it
      (only float rounding is affected); kept to reproduce the code's arithmetic.
    - quantize: per cloud and view, centre on the bounding-box centre, divide by the longest box side, times 2
      (coordinates in [-1, 1]); x, y times `obj_ratio`; column/row index ceil((c + 1) / 2 R) clipped to [1, R - 2];
      depth value zf = ((z + 1) / 2 + depth_bias) / (1 + depth_bias) (D - 2), slice ceil(zf), stored value zf
      clipped to [1, D - 2]; each voxel keeps the maximum value (background `background`). Rows come from x.
    - densify: max-pool (depth, x, y) kernel `pool_size`, stride 1, padding `pool_padding` (padded cells ignored).
    - smooth: convolution with a normalised Gaussian of size `smooth_size`, sigma `sigma_xy` in x, y and `sigma_z`
      in depth, zero padding `smooth_padding`.
    - squeeze: maximum over depth; then img / max(img) per image; output 1 - that (background 1, far side dark).

    Differences from the paper's text (section 4.1 / 3.1), all following the released code:
    - densify is a 1 x 7 x 7 (depth, x, y) MAX-pool with padding (0, 2, 2), not a (6, 6, 2) MIN-pool; the padding
      makes the window asymmetric (input rows i-2 .. i+4 for output row i) and the map 110 x 110, not 112;
    - voxels keep the MAXIMUM depth value and the squeeze takes the MAXIMUM over depth (paper: minimum, occlusion),
      followed by 1 - normalised depth;
    - object scale `obj_ratio` 0.8 on x, y only (paper: s = 0.7), depth squeezed into slices 1 .. D - 2 by
      `depth_bias` 0.2 (not in the paper);
    - Gaussian 1 x 3 x 3 with sigma_xy = 3 (nearly a box filter), sigma_z = 1 (no effect with a 1-deep kernel);
      the paper's (3, 3, 1) kernel is the same size, its sigma is not given;
    - each view is re-centred and re-scaled after rotation (paper: coordinates normalised to [0, 1]), and the views
      carry the extra pi/9, pi/15 tilts (not in the paper).
    Other deviations from the code: a cloud whose points all coincide (longest side 0) is not divided by zero
    (the code gives NaN; here it lands in the centre); the depth slice index is clamped to [0, D - 1] (a no-op for
    depth_bias >= 0); pure torch `scatter_reduce_` instead of torch-scatter, and no hard-coded device.
    """

    kind = "realistic"
    default_views = 10

    def __init__(self, views: int | Sequence[Sequence[float]] = 10, tilts: Sequence[Sequence[float]] | None = None,
                 resolution: int = 112, depth: int = 8, obj_ratio: float = 0.8, depth_bias: float = 0.2,
                 translation: Sequence[float] = (-0.5, -0.5, -1.5), pool_size: Sequence[int] = (1, 7, 7),
                 pool_padding: Sequence[int] = (0, 2, 2), smooth_size: Sequence[int] = (1, 3, 3),
                 smooth_padding: Sequence[int] = (0, 1, 1), sigma_xy: float = 3.0, sigma_z: float = 1.0,
                 background: float = 0.0, image_size: int = 224):
        if isinstance(views, int) and not isinstance(views, bool):
            if views not in _REALISTIC_PRESETS:
                raise CalipError(f"the realistic projection defines 10 (released) or 6 views, got views={views}; "
                                 "pass a list of (x, y, z) Euler angles for other view sets")
            angles, names, preset_tilts = _REALISTIC_PRESETS[views]
        else:
            angles = _check_angle_list(views, "views")
            names = tuple(f"view{i}" for i in range(len(angles)))
            preset_tilts = ((0.0, 0.0, 0.0),) * len(angles)
        tilt_angles = preset_tilts if tilts is None else _check_angle_list(tilts, "tilts")
        if len(tilt_angles) != len(angles):
            raise CalipError(f"tilts must give one (x, y, z) triple per view: {len(angles)} views, "
                             f"{len(tilt_angles)} tilts")
        super().__init__(angles, names, image_size)
        self.tilts = tilt_angles
        self.resolution = _check_positive_int(resolution, "resolution", 3)
        self.depth = _check_positive_int(depth, "depth", 3)
        for name, value in (("obj_ratio", obj_ratio), ("depth_bias", depth_bias), ("sigma_xy", sigma_xy),
                            ("sigma_z", sigma_z), ("background", background)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise CalipError(f"{name} must be a finite number, got {value!r}")
        if obj_ratio <= 0 or depth_bias < 0 or sigma_xy <= 0 or sigma_z <= 0:
            raise CalipError(f"need obj_ratio > 0, depth_bias >= 0, sigma_xy > 0, sigma_z > 0; got obj_ratio="
                             f"{obj_ratio}, depth_bias={depth_bias}, sigma_xy={sigma_xy}, sigma_z={sigma_z}")
        self.obj_ratio, self.depth_bias = float(obj_ratio), float(depth_bias)
        self.sigma_xy, self.sigma_z, self.background = float(sigma_xy), float(sigma_z), float(background)
        self.translation = _check_vector(translation, "translation")
        self.pool_size, self.pool_padding = _check_triple(pool_size, "pool_size"), _check_triple(pool_padding,
                                                                                                 "pool_padding")
        self.smooth_size = _check_triple(smooth_size, "smooth_size")
        self.smooth_padding = _check_triple(smooth_padding, "smooth_padding")
        if min(self.pool_size) < 1 or any(2 * p > k for p, k in zip(self.pool_padding, self.pool_size)):
            raise CalipError(f"pool_size must be >= 1 and pool_padding at most half of it, got pool_size="
                             f"{self.pool_size}, pool_padding={self.pool_padding}")
        if min(self.smooth_size) < 1:
            raise CalipError(f"smooth_size must be >= 1 in every axis, got {self.smooth_size}")
        grid = (self.depth, self.resolution, self.resolution)
        out = [n + 2 * p - k + 1 for n, p, k in zip(grid, self.pool_padding, self.pool_size)]
        out = [n + 2 * p - k + 1 for n, p, k in zip(out, self.smooth_padding, self.smooth_size)]
        if min(out) < 1:
            raise CalipError(f"pooling {self.pool_size} / smoothing {self.smooth_size} leave nothing of the "
                             f"{grid} grid with paddings {self.pool_padding}, {self.smooth_padding}")

    def describe(self) -> dict[str, Any]:
        """Settings, for results provenance."""
        return {
            "kind": "realistic",
            "num_views": self.num_views,
            "view_names": list(self.view_names),
            "euler_angles": [list(a) for a in self.angles],
            "tilts": [list(t) for t in self.tilts],
            "translation": list(self.translation),
            "resolution": self.resolution,
            "depth": self.depth,
            "obj_ratio": self.obj_ratio,
            "depth_bias": self.depth_bias,
            "pool_size": list(self.pool_size),
            "pool_padding": list(self.pool_padding),
            "smooth_size": list(self.smooth_size),
            "smooth_padding": list(self.smooth_padding),
            "sigma_xy": self.sigma_xy,
            "sigma_z": self.sigma_z,
            "background": self.background,
            "image_size": self.image_size,
            "reference": "yangyangyang127/PointCLIP_V2 zeroshot_cls/trainers/mv_utils_zs.py (released settings)",
        }

    def camera_points(self, points: torch.Tensor) -> torch.Tensor:
        """`[B, P, 3]` -> `[B, V, P, 3]`: p R1^T R2^T - translation (view rotation, then tilt)."""
        points = _check_points(points)
        cam = torch.matmul(points.unsqueeze(1), self._rotations_t(self.angles, points))
        cam = torch.matmul(cam, self._rotations_t(self.tilts, points))
        return cam - self._vector(self.translation, cam)

    def quantize(self, cam: torch.Tensor) -> torch.Tensor:
        """Camera points `[..., P, 3]` -> grid `[..., D, R, R]` (rows from x, columns from y; max per voxel)."""
        res, dep = self.resolution, self.depth
        lead = cam.shape[:-2]
        cam = cam.reshape(-1, *cam.shape[-2:])
        pmax, pmin = cam.amax(dim=1), cam.amin(dim=1)  # [N, 3]
        centre = (pmax + pmin) / 2
        span = (pmax - pmin).amax(dim=-1)
        span = torch.where(span > 0, span, torch.ones_like(span))  # all points equal: no division by zero
        unit = (cam - centre[:, None, :]) / span[:, None, None] * 2.0
        x, y, z = unit[..., 0] * self.obj_ratio, unit[..., 1] * self.obj_ratio, unit[..., 2]
        ix = torch.ceil((x + 1) / 2 * res).clamp(1, res - 2)
        iy = torch.ceil((y + 1) / 2 * res).clamp(1, res - 2)
        zf = ((z + 1) / 2 + self.depth_bias) / (1 + self.depth_bias) * (dep - 2)
        iz = torch.ceil(zf).clamp(0, dep - 1)
        index = (iz * res * res + iy * res + ix).long()
        grid = torch.full((cam.shape[0], dep * res * res), self.background, dtype=cam.dtype, device=cam.device)
        grid.scatter_reduce_(1, index, zf.clamp(1, dep - 2), reduce="amax", include_self=True)
        return grid.view(*lead, dep, res, res).transpose(-1, -2)

    def densify(self, grid: torch.Tensor) -> torch.Tensor:
        """`[..., D, H, W]` -> `[..., D', H', W']`: stride-1 max-pool with `pool_size` / `pool_padding`.

        Equal to `F.max_pool3d` (max is separable and exact), computed axis by axis with log-step shifted maxima,
        which is about 10x faster than `max_pool3d` on the CPU."""
        for axis, (size, pad) in enumerate(zip(self.pool_size, self.pool_padding)):
            grid = _window_max(grid, size, pad, axis - 3)
        return grid

    def gaussian_kernel(self, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        """Normalised Gaussian `[kd, kx, ky]`: exp(-d^2 / (2 sigma^2)) per axis around the centre index k // 2."""
        axes = []
        for size, sigma in zip(self.smooth_size, (self.sigma_z, self.sigma_xy, self.sigma_xy)):
            offsets = torch.arange(size, dtype=dtype, device=device) - size // 2
            axes.append(torch.exp(-offsets ** 2 / (2 * sigma ** 2)))
        plane = axes[1][:, None] * axes[2][None, :]
        kernel = axes[0][:, None, None] * (plane / plane.sum())  # normalised in x, y first, as the released code
        return kernel / kernel.sum()

    def smooth(self, grid: torch.Tensor) -> torch.Tensor:
        """`[..., D, H, W]` -> Gaussian-smoothed `[..., D', H', W']` (zero padding `smooth_padding`).

        The released code's `conv3d`, written as a weighted sum of shifted slices (equal up to float rounding, about
        3x faster on the CPU for this single-channel kernel)."""
        kernel = self.gaussian_kernel(grid.dtype, grid.device)
        pd, px, py = self.smooth_padding
        padded = F.pad(grid, (py, py, px, px, pd, pd))
        out_shape = [padded.shape[-3 + i] - kernel.shape[i] + 1 for i in range(3)]
        out = torch.zeros(*grid.shape[:-3], *out_shape, dtype=grid.dtype, device=grid.device)
        for (a, b, c), weight in zip(itertools.product(*map(range, kernel.shape)), kernel.flatten()):
            out += weight * padded[..., a:a + out_shape[0], b:b + out_shape[1], c:c + out_shape[2]]
        return out

    @staticmethod
    def squeeze(grid: torch.Tensor) -> torch.Tensor:
        """`[..., D, H, W]` -> `[..., H, W]`: 1 - (max over depth) / (its maximum over the image)."""
        img = grid.amax(dim=-3)
        return 1 - img / img.amax(dim=(-2, -1), keepdim=True)

    def depth_maps(self, points: torch.Tensor) -> torch.Tensor:
        """`[B, P, 3]` -> `[B, V, R', R']` (R' = 110 for the released settings)."""
        return self.squeeze(self.smooth(self.densify(self.quantize(self.camera_points(points)))))


def _window_max(x: torch.Tensor, size: int, pad: int, dim: int) -> torch.Tensor:
    """Stride-1 maximum over windows of `size` along `dim`, with `pad` cells of -inf on both sides (max-pool
    semantics), by doubling: windows of 1, 2, 4, ... then one overlapping maximum of two windows."""
    if size == 1 and pad == 0:
        return x
    if pad:
        fill = x.new_full((*x.shape[:dim % x.ndim], pad, *x.shape[dim % x.ndim + 1:]), float("-inf"))
        x = torch.cat([fill, x, fill], dim=dim)
    n = x.shape[dim] - size + 1
    span, m = 1, x
    while span * 2 <= size:
        m = torch.maximum(m.narrow(dim, 0, m.shape[dim] - span), m.narrow(dim, span, m.shape[dim] - span))
        span *= 2
    return torch.maximum(m.narrow(dim, 0, n), m.narrow(dim, size - span, n))


def make_projector(kind: str = "pointclip", views: int | None = None, image_size: int = 224,
                   **overrides: Any) -> PointCLIPProjector | RealisticProjector:
    """Build a projector by name.

    - "pointclip": views None/6 -> the released zero-shot setup (1.6, 128), 10 -> the few-shot setup (1.4, 224);
    - "realistic": views None/10 -> PointCLIP V2's released setup, 6 -> its axis-aligned subset.
    `overrides` are constructor arguments of the class (e.g. distance=1.7, resolution=100) and win over the presets.
    """
    if kind not in PROJECTORS:
        raise CalipError(f"unknown projector kind {kind!r}; expected one of {', '.join(PROJECTORS)}")
    cls = PROJECTORS[kind]
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "views", "image_size"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise CalipError(f"unknown setting(s) {', '.join(unknown)} for the {kind} projector; "
                         f"expected some of {', '.join(sorted(allowed))}")
    return cls.released(views, image_size, overrides)


@dataclass(frozen=True)
class ProjectorConfig:
    """Which projector to build and the settings the user chose; None = the projector's released default."""

    kind: str = "pointclip"
    views: int | None = None
    distance: float | None = None
    resolution: int | None = None

    def build(self, image_size: int) -> PointCLIPProjector | RealisticProjector:
        """The projector for a backbone of `image_size` pixels."""
        overrides = {k: v for k, v in (("distance", self.distance), ("resolution", self.resolution)) if v is not None}
        return make_projector(self.kind, views=self.views, image_size=image_size, **overrides)
