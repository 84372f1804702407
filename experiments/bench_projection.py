"""Projection speed: ms per cloud for PointCLIP's and PointCLIP V2's projections, batched, on one device.

    python experiments/bench_projection.py [--device cpu|cuda] [--batch 32] [--points 1024] [--threads N]

Times `depth_maps` and `images` (224 x 224 RGB) for a batch of real ModelNet40 shapes (ply_data_test0.h5, repeated
to fill the batch; seeded random points if the file is absent), prints them beside PointCLIP V2's quoted
10-view latencies (Table 1: PointCLIP 11.3 ms, V2 16.7 ms on a GPU; the paper does not say per cloud or per batch),
then the speed-up over the straightforward per-point loops of tests/test_projection.py on a few clouds (CPU).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from calip3d.projection import PointCLIPProjector, RealisticProjector  # noqa: E402
from tests.test_projection import (FS_ANGLES, ZS_ANGLES, reference_pointclip_depth,  # noqa: E402
                                   reference_realistic)

QUOTED_MS = {"pointclip-10": 11.3, "realistic-10": 16.7}  # PointCLIP V2 Table 1, 10 views, GPU


def load_clouds(h5: Path, batch: int, points: int) -> np.ndarray:
    """`[batch, points, 3]` float32: real shapes from `h5` (cycled), else seeded points on the unit sphere."""
    if h5.exists():
        import h5py

        with h5py.File(h5, "r") as f:
            data = f["data"][:, :points]
        print(f"clouds: {h5} ({len(data)} shapes, cycled to {batch})")
        return np.resize(data, (batch, points, 3)).astype(np.float32)
    print(f"clouds: {h5} not found; seeded random points on the unit sphere")
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(batch, points, 3)).astype(np.float32)
    return cloud / np.linalg.norm(cloud, axis=-1, keepdims=True)


def time_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of `fn` in ms over `repeats` runs after 2 warm-ups."""
    times = []
    for i in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 2:
            times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-clouds", type=int, default=2, help="clouds for the per-point loop comparison")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--h5", type=Path,
                        default=REPO.parent / "shared/data/modelnet40_ply_hdf5_2048/ply_data_test0.h5")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clouds = load_clouds(args.h5, args.batch, args.points)
    points = torch.from_numpy(clouds).to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; B={args.batch}, P={args.points}, float32\n")

    projectors = {
        "pointclip-6": PointCLIPProjector.zero_shot(),
        "pointclip-10": PointCLIPProjector.few_shot(),
        "realistic-6": RealisticProjector(views=6),
        "realistic-10": RealisticProjector(),
    }
    per_cloud = {}
    print(f"{'projector':<14}{'views':>6}{'maps':>10}{'batch ms':>11}{'ms/cloud':>10}"
          f"{'+224 RGB ms/cloud':>19}{'quoted (V2 T1)':>16}")
    with torch.inference_mode():
        for key, proj in projectors.items():
            maps_ms = time_ms(lambda: proj.depth_maps(points), device, args.repeats)
            images_ms = time_ms(lambda: proj.images(points), device, args.repeats)
            side = proj.depth_maps(points[:1]).shape[-1]
            per_cloud[key] = maps_ms / args.batch
            quoted = f"{QUOTED_MS[key]:.1f} ms" if key in QUOTED_MS else "-"
            print(f"{key:<14}{proj.num_views:>6}{side:>7}^2 {maps_ms:>10.2f}{maps_ms / args.batch:>10.3f}"
                  f"{images_ms / args.batch:>19.3f}{quoted:>16}")

    print(f"\nper-point loop references (tests/test_projection.py, float64, CPU) on {args.loop_clouds} clouds:")
    loops = {
        "pointclip-6": lambda c: reference_pointclip_depth(c, ZS_ANGLES, 1.6, 128),
        "pointclip-10": lambda c: reference_pointclip_depth(c, FS_ANGLES, 1.4, 224),
        "realistic-10": reference_realistic,
    }
    print(f"{'projector':<14}{'loop ms/cloud':>15}{'batched ms/cloud':>18}{'speed-up':>10}")
    for key, loop in loops.items():
        start = time.perf_counter()
        for cloud in clouds[:args.loop_clouds].astype(np.float64):
            loop(cloud)
        loop_ms = (time.perf_counter() - start) * 1000 / args.loop_clouds
        print(f"{key:<14}{loop_ms:>15.1f}{per_cloud[key]:>18.3f}{loop_ms / per_cloud[key]:>9.0f}x")


if __name__ == "__main__":
    main()
