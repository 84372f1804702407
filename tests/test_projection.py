"""calip3d.projection against straightforward per-point references, hand-computed cases and real ModelNet40 shapes."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from calip3d.errors import CalipError
from calip3d.published import POINTCLIP_TABLE1_PROJECTION as PAPER_SETTINGS
from calip3d.projection import (PointCLIPProjector, RealisticProjector, euler_to_matrix,
                                make_projector)

PI = math.pi
# PointCLIP's view tables, written out from its released mv_utils_zs.py / mv_utils_fs.py.
ZS_ANGLES = [(0, 0, PI / 2), (PI / 2, 0, PI / 2), (PI, 0, PI / 2), (3 * PI / 2, 0, PI / 2),
             (0, -PI / 2, PI / 2), (0, PI / 2, PI / 2)]
FS_ANGLES = ZS_ANGLES[:4] + [(5 * PI / 4, -PI / 4, PI / 2), (5 * PI / 4, PI / 4, PI / 2),
                             (7 * PI / 4, -PI / 4, PI / 2), (7 * PI / 4, PI / 4, PI / 2)] + ZS_ANGLES[4:]
# PointCLIP V2's released views and tilts.
V2_ANGLES = [(k * PI / 4, 0, PI / 2) for k in (1, 3, 5, 7)] + ZS_ANGLES
V2_TILTS = [(0, PI / 9, 0)] * 8 + [(0, PI / 15, 0)] * 2

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def rotation(ax: float, ay: float, az: float) -> list[list[float]]:
    """Rx(ax) Ry(ay) Rz(az) as nested lists (math module, float64)."""
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = [[1, 0, 0], [0, cx, -sx], [0, sx, cx]]
    ry = [[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]
    rz = [[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]

    def mul(a, b):
        return [[sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)] for i in range(3)]

    return mul(mul(rx, ry), rz)


def apply(m: list[list[float]], p) -> list[float]:
    return [m[i][0] * p[0] + m[i][1] * p[1] + m[i][2] * p[2] for i in range(3)]


def reference_pointclip_depth(points: np.ndarray, angles, distance: float, resolution: int) -> np.ndarray:
    """One cloud `[P, 3]` -> `[V, R, R]`, one point at a time: harmonic mean of the depths in each pixel."""
    out = np.zeros((len(angles), resolution, resolution))
    for v, angle in enumerate(angles):
        m = rotation(*angle)
        count = np.zeros((resolution, resolution))
        inv = np.zeros((resolution, resolution))
        for p in points.tolist():
            x, y, z = apply(m, p)
            z += distance
            if z <= 0:
                continue
            row = math.ceil((x / z + 1) * resolution / 2 - 0.5)
            col = math.ceil((y / z + 1) * resolution / 2 - 0.5)
            if 0 <= row < resolution and 0 <= col < resolution:
                count[row, col] += 1
                inv[row, col] += 1 / z
        out[v] = np.where(count > 0, count / np.where(inv > 0, inv, 1), 0)
    return out


def reference_realistic(points: np.ndarray) -> np.ndarray:
    """One cloud `[P, 3]` -> `[10, 110, 110]` with PointCLIP V2's released settings, written out step by step."""
    res, dep, ratio, bias = 112, 8, 0.8, 0.2
    maps = []
    for angle, tilt in zip(V2_ANGLES, V2_TILTS):
        r1, r2 = rotation(*angle), rotation(*tilt)
        cam = np.array([[c - t for c, t in zip(apply(r2, apply(r1, p)), (-0.5, -0.5, -1.5))] for p in points.tolist()])
        lo, hi = cam.min(0), cam.max(0)
        centre, span = (lo + hi) / 2, (hi - lo).max()
        grid = np.zeros((dep, res, res))
        for p in cam.tolist():
            x, y, z = ((c - m) / span * 2 for c, m in zip(p, centre))
            row = min(max(math.ceil((x * ratio + 1) / 2 * res), 1), res - 2)
            col = min(max(math.ceil((y * ratio + 1) / 2 * res), 1), res - 2)
            zf = ((z + 1) / 2 + bias) / (1 + bias) * (dep - 2)
            slice_ = math.ceil(zf)
            grid[slice_, row, col] = max(grid[slice_, row, col], min(max(zf, 1), dep - 2))
        # densify: output pixel i takes the max over input rows i-2 .. i+4 (7 wide, 2 padded cells before)
        padded = np.full((dep, res + 4, res + 4), -np.inf)
        padded[:, 2:-2, 2:-2] = grid
        dense = np.full((dep, res - 2, res - 2), -np.inf)
        for di in range(7):
            for dj in range(7):
                dense = np.maximum(dense, padded[:, di:di + res - 2, dj:dj + res - 2])
        # smooth: 3 x 3 Gaussian, sigma 3, zero padding 1
        g = np.exp(-np.array([1.0, 0.0, 1.0]) / 18)
        kernel = np.outer(g, g) / np.outer(g, g).sum()
        zpad = np.pad(dense, ((0, 0), (1, 1), (1, 1)))
        smooth = sum(kernel[a, b] * zpad[:, a:a + res - 2, b:b + res - 2] for a in range(3) for b in range(3))
        img = smooth.max(0)
        maps.append(1 - img / img.max())
    return np.stack(maps)


def pixels_agree(ours: np.ndarray, ref: np.ndarray, rtol: float = 1e-5) -> np.ndarray:
    """Boolean map: both empty, or both filled with values equal to rtol."""
    both_empty = (ours == 0) & (ref == 0)
    close = (ours > 0) & (ref > 0) & (np.abs(ours - ref) <= rtol * np.abs(ref))
    return both_empty | close


@pytest.fixture(scope="module")
def shapes(modelnet_h5_dir) -> np.ndarray:
    """The first 4 real test shapes of ply_data_test0.h5, first 1024 points each: `[4, 1024, 3]` float32."""
    with h5py.File(modelnet_h5_dir / "ply_data_test0.h5", "r") as f:
        data = f["data"][:4, :1024]
    assert data.shape == (4, 1024, 3) and data.dtype == np.float32
    return data


# ---------------------------------------------------------------- PointCLIP projection


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pointclip_zero_shot_matches_per_point_reference_on_real_shapes(shapes, dtype):
    proj = PointCLIPProjector.zero_shot()
    ours = proj.depth_maps(torch.tensor(shapes, dtype=dtype)).double().numpy()
    ref = np.stack([reference_pointclip_depth(s.astype(np.float64), ZS_ANGLES, 1.6, 128) for s in shapes])
    assert ours.shape == ref.shape == (4, 6, 128, 128)
    agree = pixels_agree(ours, ref)
    assert agree.mean() >= 0.99995, f"{(~agree).sum()} of {agree.size} pixels differ"
    filled = (ref > 0).sum(axis=(2, 3))
    assert filled.min() > 200  # real, non-trivial maps in every view


def test_pointclip_few_shot_views_and_odd_paper_resolution_match_reference(shapes):
    few = PointCLIPProjector.few_shot()
    assert (few.num_views, few.distance, few.resolution) == (10, 1.4, 224)
    ours = few.depth_maps(torch.from_numpy(shapes[:1])).double().numpy()[0]
    ref = reference_pointclip_depth(shapes[0].astype(np.float64), FS_ANGLES, 1.4, 224)
    assert pixels_agree(ours, ref).mean() >= 0.99995

    distance, resolution = PAPER_SETTINGS["modelnet40"]
    paper = PointCLIPProjector(6, distance, resolution)
    ours = paper.depth_maps(torch.from_numpy(shapes[1:2])).double().numpy()[0]
    ref = reference_pointclip_depth(shapes[1].astype(np.float64), ZS_ANGLES, distance, resolution)
    assert ours.shape == (6, 121, 121) and pixels_agree(ours, ref).mean() >= 0.99995


def test_pointclip_single_point_lands_on_hand_computed_pixel_in_each_view():
    # p = (a, b, c) = (0.3, -0.2, 0.1). Camera coordinates per view (worked out from R = Rx Ry Rz):
    # front (-b, a, c+d)   right (-b, -c, a+d)   back (-b, -a, d-c)   left (-b, c, d-a)
    # top (-c, a, d-b)     bottom (c, a, d+b)    with d = 1.6; row = ceil((x/z + 1) 64 - 0.5), col likewise from y.
    expected = {  # view: (row, col, depth)
        "front": (72, 75, 1.7),   # x/z = 0.2/1.7 -> 71.03 ; y/z = 0.3/1.7 -> 74.79
        "right": (71, 61, 1.9),   # 0.2/1.9 -> 70.24 ; -0.1/1.9 -> 60.13
        "back": (73, 51, 1.5),    # 0.2/1.5 -> 72.03 ; -0.3/1.5 -> 50.70
        "left": (74, 69, 1.3),    # 0.2/1.3 -> 73.35 ; 0.1/1.3 -> 68.42
        "top": (60, 75, 1.8),     # -0.1/1.8 -> 59.94 ; 0.3/1.8 -> 74.17
        "bottom": (69, 78, 1.4),  # 0.1/1.4 -> 68.07 ; 0.3/1.4 -> 77.21
    }
    proj = PointCLIPProjector.zero_shot()
    assert proj.view_names == tuple(expected)
    maps = proj.depth_maps(torch.tensor([[[0.3, -0.2, 0.1]]], dtype=torch.float64))[0]
    for v, (row, col, depth) in enumerate(expected.values()):
        filled = torch.nonzero(maps[v]).tolist()
        assert filled == [[row, col]], (proj.view_names[v], filled)
        assert maps[v, row, col].item() == pytest.approx(depth, rel=1e-12)


def test_pointclip_upright_orientation_top_of_object_is_top_of_image():
    # y is up in ModelNet: a point above the centre appears in the upper rows of the four side views.
    proj = PointCLIPProjector.zero_shot()
    maps = proj.depth_maps(torch.tensor([[[0.0, 0.5, 0.0]]]))[0]
    for v in range(4):
        row, col = torch.nonzero(maps[v])[0].tolist()
        assert row < 64 and col == 64


def test_pointclip_harmonic_mean_drops_behind_camera_and_outside():
    proj = PointCLIPProjector.zero_shot()
    points = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 0.4], [0.0, 0.0, -2.0], [5.0, 0.0, 0.0]]], dtype=torch.float64)
    front = proj.depth_maps(points)[0, 0]
    # the first two share the centre pixel (64, 64) at depths 1.6 and 2.0; (0,0,-2) has z = -0.4; (5,0,0) is outside
    assert torch.nonzero(front).tolist() == [[64, 64]]
    assert front[64, 64].item() == pytest.approx(2 / (1 / 1.6 + 1 / 2.0), rel=1e-12)


def test_euler_to_matrix_is_rx_ry_rz():
    angles = torch.tensor(FS_ANGLES + [(0.3, -1.1, 2.0)], dtype=torch.float64)
    ours = euler_to_matrix(angles)
    ref = torch.tensor([rotation(*a) for a in angles.tolist()], dtype=torch.float64)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-15)


def test_pointclip_views_names_presets_and_describe():
    zs, fs = PointCLIPProjector("zeroshot"), PointCLIPProjector("fewshot")
    assert zs.angles == PointCLIPProjector(6).angles and fs.angles == PointCLIPProjector(10).angles
    assert np.allclose(zs.angles, ZS_ANGLES) and np.allclose(fs.angles, FS_ANGLES)
    assert fs.view_names == ("front", "right", "back", "left", "lower-back-left", "upper-back-left",
                             "upper-front-left", "lower-front-left", "top", "bottom")
    custom = PointCLIPProjector([(0.1, 0.2, 0.3)], distance=2.0, resolution=50, image_size=64)
    assert custom.num_views == 1 and custom.view_names == ("view0",)
    d = custom.describe()
    assert d["kind"] == "pointclip" and d["distance"] == 2.0 and d["resolution"] == 50 and d["image_size"] == 64
    assert d["euler_angles"] == [[0.1, 0.2, 0.3]]
    assert PAPER_SETTINGS == {"modelnet10": (1.7, 100), "modelnet40": (1.6, 121), "scanobjectnn": (1.8, 196)}


# ---------------------------------------------------------------- realistic projection


def test_realistic_quantize_hand_checked_voxels():
    proj = RealisticProjector(resolution=20, depth=6, obj_ratio=0.75, depth_bias=0.2)
    cam = torch.tensor([[[-1.0, -0.6, -0.5], [1.0, 0.6, 0.5], [0.3, -0.25, 0.1], [0.3, -0.25, 0.15]]],
                       dtype=torch.float64)
    # centre 0, longest side 2 -> unit coordinates = cam; row = ceil((0.75 x + 1) / 2 * 20), col from y likewise,
    # zf = ((z + 1) / 2 + 0.2) / 1.2 * 4, slice ceil(zf), value clip(zf, 1, 4); the last two share a voxel (max kept)
    expected = {(2, 3, 6): 1.5, (4, 18, 15): 0.95 / 1.2 * 4, (3, 13, 9): 0.775 / 1.2 * 4}
    grid = proj.quantize(cam)[0]
    assert grid.shape == (6, 20, 20)
    assert {tuple(i) for i in torch.nonzero(grid).tolist()} == set(expected)
    for (d, r, c), value in expected.items():
        assert grid[d, r, c].item() == pytest.approx(value, rel=1e-12)


def test_realistic_quantize_single_point_lands_in_centre_voxel():
    grid = RealisticProjector().quantize(torch.tensor([[[0.4, -0.3, 0.2]]]))[0]
    # one point: centred to 0 (no division by a zero extent), row = col = ceil(0.5 * 112) = 56,
    # zf = (0.5 + 0.2) / 1.2 * 6 = 3.5 -> slice 4
    assert torch.nonzero(grid).tolist() == [[4, 56, 56]]
    assert grid[4, 56, 56].item() == pytest.approx(3.5, rel=1e-6)


def test_realistic_densify_hand_checked_window():
    proj = RealisticProjector()  # pool (1, 7, 7), padding (0, 2, 2)
    grid = torch.zeros(1, 10, 10)
    grid[0, 3, 4], grid[0, 8, 8] = 1.0, 2.0
    out = proj.densify(grid)
    # output (i, j) = max of input rows i-2 .. i+4, cols j-2 .. j+4 (inside the 10 x 10 grid): 8 x 8
    expected = torch.zeros(1, 8, 8)
    expected[0, 0:6, 0:7] = 1.0  # rows i with i-2 <= 3 <= i+4, cols j with j-2 <= 4 <= j+4
    expected[0, 4:8, 4:8] = 2.0  # rows/cols i with i-2 <= 8 <= i+4
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_realistic_smooth_hand_checked_gaussian():
    proj = RealisticProjector()  # 1 x 3 x 3, sigma_xy 3, zero padding 1
    grid = torch.zeros(1, 5, 5, dtype=torch.float64)
    grid[0, 2, 2] = 1.0
    out = proj.smooth(grid)
    e = math.exp(-1 / 18)
    norm = (1 + 2 * e) ** 2
    expected = torch.zeros(1, 5, 5, dtype=torch.float64)
    expected[0, 1:4, 1:4] = torch.tensor([[e * e, e, e * e], [e, 1, e], [e * e, e, e * e]], dtype=torch.float64) / norm
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)
    deep = RealisticProjector(smooth_size=(3, 1, 1), smooth_padding=(1, 0, 0), sigma_z=2.0).gaussian_kernel(
        torch.float64)
    ez = math.exp(-1 / 8)
    torch.testing.assert_close(deep.flatten(), torch.tensor([ez, 1, ez], dtype=torch.float64) / (1 + 2 * ez))


def test_realistic_squeeze_hand_checked():
    grid = torch.tensor([[[1.0, 0.0], [2.0, 0.0]], [[0.0, 4.0], [3.0, 0.0]]])  # [D=2, 2, 2]
    # max over depth [[1, 4], [3, 0]], / 4, 1 - that
    torch.testing.assert_close(RealisticProjector.squeeze(grid), torch.tensor([[0.75, 0.0], [0.25, 1.0]]))


def test_realistic_full_pipeline_matches_step_by_step_reference_on_real_shape(shapes):
    proj = RealisticProjector()
    assert proj.view_names == ("front-right", "back-right", "back-left", "front-left", "front", "right", "back",
                               "left", "top", "bottom")
    assert np.allclose(proj.angles, V2_ANGLES) and np.allclose(proj.tilts, V2_TILTS)
    ours = proj.depth_maps(torch.tensor(shapes[:1], dtype=torch.float64))[0].numpy()
    ref = reference_realistic(shapes[0].astype(np.float64))
    assert ours.shape == ref.shape == (10, 110, 110)
    close = np.abs(ours - ref) <= 1e-9
    assert close.mean() >= 0.9999, f"{(~close).sum()} pixels differ"
    assert (ref < 1).mean() > 0.1  # the object covers a real part of each image


# ---------------------------------------------------------------- both projectors


PROJECTORS = [PointCLIPProjector.zero_shot, PointCLIPProjector.few_shot, RealisticProjector,
              lambda: RealisticProjector(views=6)]


@pytest.mark.parametrize("build", PROJECTORS)
def test_batch_equals_one_cloud_at_a_time(shapes, build):
    proj = build()
    points = torch.from_numpy(shapes)
    together = proj.depth_maps(points)
    alone = torch.cat([proj.depth_maps(points[i:i + 1]) for i in range(len(points))])
    torch.testing.assert_close(together, alone, rtol=0, atol=0)


@pytest.mark.parametrize("build", PROJECTORS)
def test_images_are_bilinear_align_corners_resize_of_rgb_depth_maps(shapes, build):
    proj = build()
    points = torch.from_numpy(shapes[:2])
    maps = proj.depth_maps(points)
    b, v, h, w = maps.shape
    rgb = maps.reshape(b * v, 1, h, w).repeat(1, 3, 1, 1)
    expected = F.interpolate(rgb, size=(224, 224), mode="bilinear", align_corners=True).reshape(b, v, 3, 224, 224)
    images = proj.images(points)
    assert images.shape == (2, proj.num_views, 3, 224, 224)
    torch.testing.assert_close(images, expected, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("build", PROJECTORS)
def test_device_and_dtype_agnostic(shapes, build, device):
    proj = build()
    ref = proj.depth_maps(torch.from_numpy(shapes[:2])).numpy()
    for dtype in (torch.float32, torch.float64):
        out = proj.depth_maps(torch.tensor(shapes[:2], dtype=dtype, device=device))
        assert out.dtype == dtype and out.device.type == device
        close = np.abs(out.cpu().double().numpy() - ref) <= 1e-5
        assert close.mean() >= 0.9999


def test_make_projector_presets_overrides_and_errors():
    zs = make_projector("pointclip")
    assert (zs.num_views, zs.distance, zs.resolution, zs.image_size) == (6, 1.6, 128, 224)
    fs = make_projector("pointclip", views=10, image_size=112)
    assert (fs.num_views, fs.distance, fs.resolution, fs.image_size) == (10, 1.4, 224, 112)
    paper = make_projector("pointclip", 6, 224, distance=1.7, resolution=100)
    assert (paper.distance, paper.resolution) == (1.7, 100)
    real = make_projector("realistic")
    assert real.num_views == 10 and real.describe()["pool_size"] == [1, 7, 7]
    assert make_projector("realistic", views=6, obj_ratio=0.7).obj_ratio == 0.7
    with pytest.raises(CalipError, match="unknown projector kind 'phong'"):
        make_projector("phong")
    with pytest.raises(CalipError, match="unknown setting"):
        make_projector("pointclip", obj_ratio=0.7)
    with pytest.raises(CalipError, match="6 .*or 10"):
        make_projector("pointclip", views=8)
    with pytest.raises(CalipError, match="10 .*or 6"):
        make_projector("realistic", views=12)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((1, 10, 3), dtype=np.float32), "torch.Tensor"),
    (torch.zeros(10, 3), r"\[B, P, 3\]"),
    (torch.zeros(1, 10, 2), r"\[B, P, 3\]"),
    (torch.zeros(1, 0, 3), r"\[B, P, 3\]"),
    (torch.zeros(1, 10, 3, dtype=torch.int64), "floating-point"),
])
def test_bad_points_raise_calip_error(bad, message):
    for proj in (PointCLIPProjector(), RealisticProjector()):
        with pytest.raises(CalipError, match=message):
            proj.images(bad)


def test_bad_settings_raise_calip_error():
    with pytest.raises(CalipError, match="unknown PointCLIP view set"):
        PointCLIPProjector("all")
    with pytest.raises(CalipError, match="Euler angles"):
        PointCLIPProjector([(0.0, 1.0)])
    with pytest.raises(CalipError, match="resolution"):
        PointCLIPProjector(resolution=0)
    with pytest.raises(CalipError, match="image_size"):
        RealisticProjector(image_size=-1)
    with pytest.raises(CalipError, match="one .* triple per view"):
        RealisticProjector(views=[(0, 0, 0)], tilts=[(0, 0, 0), (0, 0, 0)])
    with pytest.raises(CalipError, match="pool_padding at most half"):
        RealisticProjector(pool_size=(1, 3, 3), pool_padding=(0, 2, 2))
    with pytest.raises(CalipError, match="depth_bias >= 0"):
        RealisticProjector(depth_bias=-0.5)


@pytest.mark.parametrize("pool, pad", [((1, 7, 7), (0, 2, 2)), ((3, 5, 5), (1, 2, 2)), ((2, 6, 6), (1, 3, 3)),
                                       ((1, 1, 1), (0, 0, 0)), ((2, 3, 4), (0, 1, 2))])
def test_realistic_densify_and_smooth_equal_torch_pooling_and_convolution(pool, pad):
    grid = torch.rand(2, 3, 6, 20, 18, generator=torch.Generator().manual_seed(sum(pool)))
    grid[grid < 0.7] = 0  # sparse, like a quantized grid
    proj = RealisticProjector(pool_size=pool, pool_padding=pad, smooth_size=(3, 3, 3), smooth_padding=(1, 1, 1))
    flat = grid.reshape(-1, 1, *grid.shape[-3:])
    pooled = F.max_pool3d(flat, pool, stride=1, padding=pad)
    assert torch.equal(proj.densify(grid), pooled.view(*grid.shape[:2], *pooled.shape[-3:]))
    conv = F.conv3d(flat, proj.gaussian_kernel()[None, None], padding=(1, 1, 1))
    torch.testing.assert_close(proj.smooth(grid), conv.view(*grid.shape[:2], *conv.shape[-3:]), atol=1e-6, rtol=1e-6)


def test_realistic_six_view_subset_against_a_transcription_of_v2s_view_list():
    """PointCLIP V2's `Realistic_Projection` (zeroshot_cls/trainers/mv_utils_zs.py), transcribed here on its own:
    10 rows of (Euler angles, translation) and 10 tilt rows; a point becomes p @ R1^T @ R2^T - t with
    R = X(x) Y(y) Z(z). Our 6-view subset must be its rows 4..9 (the axis-aligned side views, then top and bottom),
    tilts included, in that order."""
    pi, trans = np.pi, -1.5
    v2_views = [[[1 * pi / 4, 0, pi / 2], [-0.5, -0.5, trans]], [[3 * pi / 4, 0, pi / 2], [-0.5, -0.5, trans]],
                [[5 * pi / 4, 0, pi / 2], [-0.5, -0.5, trans]], [[7 * pi / 4, 0, pi / 2], [-0.5, -0.5, trans]],
                [[0 * pi / 2, 0, pi / 2], [-0.5, -0.5, trans]], [[1 * pi / 2, 0, pi / 2], [-0.5, -0.5, trans]],
                [[2 * pi / 2, 0, pi / 2], [-0.5, -0.5, trans]], [[3 * pi / 2, 0, pi / 2], [-0.5, -0.5, trans]],
                [[0, -pi / 2, pi / 2], [-0.5, -0.5, trans]], [[0, pi / 2, pi / 2], [-0.5, -0.5, trans]]]
    v2_tilts = [[0, pi / 9, 0]] * 8 + [[0, pi / 15, 0]] * 2

    def euler(x: float, y: float, z: float) -> np.ndarray:
        cx, sx, cy, sy, cz, sz = np.cos(x), np.sin(x), np.cos(y), np.sin(y), np.cos(z), np.sin(z)
        rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
        return rx @ ry @ rz

    points = np.random.default_rng(0).uniform(-1, 1, size=(1, 50, 3))
    six = RealisticProjector(views=6)
    assert six.num_views == 6 and list(six.view_names) == ["front", "right", "back", "left", "top", "bottom"]
    ours = six.camera_points(torch.tensor(points, dtype=torch.float64))[0].numpy()
    for ours_view, row in zip(ours, range(4, 10)):
        (angles, translation), tilt = v2_views[row], v2_tilts[row]
        expected = points[0] @ euler(*angles).T @ euler(*tilt).T - np.array(translation)
        np.testing.assert_allclose(ours_view, expected, atol=1e-9)
    ten = RealisticProjector(views=10).camera_points(torch.tensor(points, dtype=torch.float64))[0].numpy()
    np.testing.assert_allclose(ten[4:], ours, atol=1e-12)
