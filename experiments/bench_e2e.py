"""End-to-end throughput: does data loading keep the encoder busy? Items per second, in one run on one device and
the same inputs, of

- images: the bare open_clip encoder (`model.encode_image`) on pre-decoded tensors (already on the device); the same
  plus CALIP's spatial tokens and terms (the work `eval` adds); the bare encoder fed by the same decoding and
  transforms (PIL in DataLoader workers, pinned memory, non-blocking copies); `eval`'s encoding (`Encoder.terms`: load,
  decode, encode, terms, gather on the CPU), with PIL and with `--decode-on-device`; and the whole `run_eval` (text
  features and scoring included);
- point clouds: the bare encoder on pre-projected views; the projector then the bare encoder; `eval`'s encoding and
  `run_eval` on a ModelNet40-layout file;

each as a ratio to the bare encoder on pre-decoded inputs. RN50 and ViT-B-16 at 224 px with random weights (the same
compute as trained ones). Without `--data-root`, synthetic JPEGs (500x375, ImageNet-like sizes) and clouds are
written to a temporary folder. With `--compile`, the compiled encoding is timed too and its terms compared with the
eager ones; on a GPU the nvJPEG path's pixel deviation from PIL's is reported.

    python experiments/bench_e2e.py --device cuda --out experiments/measurements/e2e_h100.txt
    python experiments/bench_e2e.py --device cpu --images 48 --clouds 6 --out experiments/measurements/e2e_cpu_2core.txt
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from calip3d.backbone import BackboneConfig, CLIPBackbone  # noqa: E402
from calip3d.datasets import PointSettings, load_split  # noqa: E402
from calip3d.datasets.images import image_batches  # noqa: E402
from calip3d.datasets.registry import get_dataset  # noqa: E402
from calip3d.encoding import EncodeConfig, Encoder, view_terms  # noqa: E402
from calip3d.projection import ProjectorConfig  # noqa: E402
from calip3d.zeroshot import EvalConfig, TuneConfig, run_eval  # noqa: E402


def synthetic_images(root: Path, count: int) -> None:
    """`count` JPEGs (500x375, smooth colour fields with noise, quality 90) as a CoOp Caltech101 test split."""
    rng = np.random.default_rng(0)
    folder = root / "caltech-101" / "101_ObjectCategories" / "synthetic"
    folder.mkdir(parents=True)
    y, x = np.mgrid[0:375, 0:500] / 500.0
    items = []
    for i in range(count):
        a, b, c = rng.uniform(1, 6, size=3)
        field = np.stack([np.sin(a * x + i), np.cos(b * y - i), np.sin(c * (x + y))], axis=-1)
        pixels = np.clip(127.5 * (field + 1) + rng.normal(0, 12, field.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"image_{i:05d}.jpg", quality=90)
        items.append([f"synthetic/image_{i:05d}.jpg", i % 100, f"class {i % 100}"])
    # all 100 labels appear in the train list, as CoOp's json has them
    train = [[items[0][0], k, f"class {k}"] for k in range(100)]
    split = {"train": train, "val": items, "test": items}
    (root / "caltech-101" / "split_zhou_Caltech101.json").write_text(__import__("json").dumps(split))


def synthetic_clouds(root: Path, count: int) -> None:
    """`count` clouds of 2048 points on random ellipsoids, as ModelNet40's h5 release (test file only)."""
    import h5py

    folder = root / "modelnet40_ply_hdf5_2048"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    points = rng.normal(size=(count, 2048, 3))
    points = points / np.linalg.norm(points, axis=-1, keepdims=True) * rng.uniform(0.3, 1.0, size=(count, 1, 3))
    with h5py.File(folder / "ply_data_test0.h5", "w") as handle:
        handle["data"] = points.astype(np.float32)
        handle["label"] = (np.arange(count) % 40).astype(np.uint8)[:, None]
    (folder / "shape_names.txt").write_text("\n".join(get_dataset("modelnet40").classnames) + "\n")


def synchronize(device: torch.device) -> None:
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


def measure(rows: list[tuple[str, Callable[[], object] | None]], count: int, device: torch.device,
            repeats: int) -> list[tuple[str, float]]:
    """Items per second of each row's function over `count` items: the best of `repeats` rounds, the rows taking turns
    within a round (so that a machine shared with other jobs slows them alike), the device synchronised. A row without
    a function is a note."""
    best = {label: float("inf") for label, fn in rows if fn is not None}
    for _ in range(repeats):
        for label, fn in rows:
            if fn is None:
                continue
            synchronize(device)
            start = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):  # progress bars
                fn()
            synchronize(device)
            best[label] = min(best[label], time.perf_counter() - start)
    return [(label, count / best[label] if fn is not None else float("nan")) for label, fn in rows]


def bare(backbone: CLIPBackbone, batches: Callable[[], object]) -> Callable[[], None]:
    """open_clip's own `encode_image` over `batches()` (inputs `[B, 3, S, S]` or `[B, V, 3, S, S]`)."""
    model = backbone.model

    def run() -> None:
        with torch.inference_mode():
            for inputs in batches():
                inputs = inputs.to(backbone.device, backbone.dtype, non_blocking=True)
                model.encode_image(inputs.flatten(0, 1) if inputs.ndim == 5 else inputs)

    return run


def image_rows(backbone: CLIPBackbone, root: Path, args: argparse.Namespace, compiled: CLIPBackbone | None,
               repeats: int) -> list[tuple[str, float]]:
    split = load_split("caltech101", root, "test").subset(range(args.images))
    encode = EncodeConfig(batch_size=args.batch_size, use_cache=False)
    encoder = encode.encoder(backbone)
    text = backbone.prompt_features([[f"a photo of a {c}."] for c in split.classnames])
    loading = encoder.loading
    with torch.inference_mode():
        decoded = [x.to(backbone.device) for x, _, _ in split.batches(replace(loading, pin_memory=False))]

    def calip_on_decoded() -> None:
        with torch.inference_mode():
            for x in decoded:
                view_terms(*backbone.encode_image(x), text, encoder.temperature)

    def terms(enc: Encoder) -> Callable[[], object]:
        return lambda: enc.terms(split, text, "bench", "bench")

    def run_eval_images(decode_on_device: bool) -> Callable[[], object]:
        config = EvalConfig(dataset="caltech101", data_root=str(root), limit=args.images, tune=TuneConfig(on="none"),
                            encode=replace(encode, decode_on_device=decode_on_device))
        return lambda: run_eval(config, backbone)

    on_device = replace(encoder, loading=replace(loading, decode_on_device=True))

    def pil_batches() -> Iterator[torch.Tensor]:
        return (x for x, _, _ in image_batches(split.items, loading.transform, loading))

    bare(backbone, lambda: decoded[:1])()  # warm-up
    calip_on_decoded()
    rows: list[tuple[str, Callable[[], object] | None]] = [
        ("bare encode_image, pre-decoded tensors", bare(backbone, lambda: decoded)),
        ("+ CALIP tokens and terms, pre-decoded", calip_on_decoded),
        (f"bare encode_image, PIL decode ({loading.workers} workers)", bare(backbone, pil_batches)),
        ("eval encoding (Encoder.terms), PIL decode", terms(encoder)),
        ("eval encoding, --decode-on-device", terms(on_device)),
        ("run_eval (text features, scoring), PIL", run_eval_images(False)),
        ("run_eval, --decode-on-device", run_eval_images(True)),
    ]
    if compiled is not None:
        fast = replace(encoder, backbone=compiled)
        eager_terms, compiled_terms = encoder.terms(split, text, "b", "b"), fast.terms(split, text, "b", "b")
        diff = max((a - b).abs().max().item() for a, b in zip(eager_terms.triple, compiled_terms.triple))
        rows.append((f"eval encoding, --compile (terms max diff {diff:.1e})", terms(fast)))
    if backbone.device.type != "cpu":  # nvJPEG against PIL on the same files
        device_inputs = next(iter(split.batches(on_device.loading)))[0]
        std = torch.tensor(loading.transform.transforms[-1].std, device=backbone.device)[:, None, None]
        deviation = ((decoded[0] - device_inputs) * std).abs()
        rows.append((f"  nvJPEG vs PIL inputs: max {deviation.max().item() * 255:.1f}/255, mean "
                     f"{deviation.mean().item() * 255:.3f}/255 per pixel", None))
    return measure(rows, len(split), backbone.device, repeats)


def cloud_rows(backbone: CLIPBackbone, root: Path, args: argparse.Namespace, projector_kind: str,
               repeats: int) -> list[tuple[str, float]]:
    split = load_split("modelnet40", root, "test", PointSettings()).subset(range(args.clouds))
    projector = ProjectorConfig(kind=projector_kind, views=10).build(backbone.image_size)
    encode = EncodeConfig(batch_size=args.cloud_batch_size, use_cache=False)
    encoder = encode.encoder(backbone, projector)
    text = backbone.prompt_features([[f"point cloud depth map of a {c}."] for c in split.classnames])
    with torch.inference_mode():
        views = [x for x, _, _ in split.batches(encoder.loading)]
    clouds = torch.from_numpy(split.points).to(backbone.device)
    cuts = encoder.loading.batch_rows(len(split))
    bare(backbone, lambda: views[:1])()  # warm-up
    config = EvalConfig(dataset="modelnet40", data_root=str(root), limit=args.clouds, tune=TuneConfig(on="none"),
                        projector=ProjectorConfig(kind=projector_kind, views=10), encode=encode)
    return measure([
        ("bare encode_image, pre-projected views", bare(backbone, lambda: views)),
        ("projector + bare encode_image",
         bare(backbone, lambda: (projector.images(clouds[r.start:r.stop]) for r in cuts))),
        ("eval encoding (Encoder.terms)", lambda: encoder.terms(split, text, "b", "b")),
        ("run_eval (text features, scoring)", lambda: run_eval(config, backbone)),
    ], len(split), backbone.device, repeats)


def table(title: str, unit: str, rows: list[tuple[str, float]]) -> str:
    base = rows[0][1]
    lines = [title, f"{'measurement':58s} {unit + '/s':>10s} {'ratio':>6s}"]
    for label, value in rows:
        numbers = "" if value != value else f" {value:10.3g} {value / base:6.3f}"
        lines.append(f"{label:58s}{numbers}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["RN50", "ViT-B-16"])
    parser.add_argument("--data-root", default=None,
                        help="folder with caltech-101/ and modelnet40_ply_hdf5_2048/ (default: synthetic data)")
    parser.add_argument("--images", type=int, default=None, help="images timed (default: 2048 on a GPU, 48 on a CPU)")
    parser.add_argument("--clouds", type=int, default=None, help="clouds timed (default: 256 on a GPU, 6 on a CPU)")
    parser.add_argument("--batch-size", type=int, default=None, help="image batch (default: 128 GPU, 16 CPU)")
    parser.add_argument("--cloud-batch-size", type=int, default=None, help="cloud batch (default: 32 GPU, 2 CPU)")
    parser.add_argument("--projectors", nargs="*", default=["pointclip", "realistic"], help="none: no clouds")
    parser.add_argument("--no-images", dest="image_part", action="store_false", help="time the clouds only")
    parser.add_argument("--repeats", type=int, default=None, help="best of N runs (default: 2 GPU, 1 CPU)")
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile'd encoding")
    parser.add_argument("--out", default=None, help="also write the tables to this file")
    args = parser.parse_args()
    gpu = not args.device.startswith("cpu")
    args.images = args.images or (2048 if gpu else 48)
    args.clouds = args.clouds or (256 if gpu else 6)
    args.batch_size = args.batch_size or (128 if gpu else 16)
    args.cloud_batch_size = args.cloud_batch_size or (32 if gpu else 2)
    repeats = args.repeats or (2 if gpu else 1)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data_root) if args.data_root else Path(tmp)
        if not args.data_root:
            synthetic_images(root, args.images)
            synthetic_clouds(root, args.clouds)
        device = torch.device(args.device)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        data = args.data_root or "synthetic JPEGs 500x375 and clouds"
        load = ", load average %.1f %.1f %.1f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
        out = [f"bench_e2e on {name}, torch {torch.__version__}{load}; data: {data}"]
        print(out[0], flush=True)
        for model in args.models:
            backbone = BackboneConfig(model, None, device=args.device).load()
            compiled = None
            if args.compile:  # the same weights, compiled
                compiled = CLIPBackbone(backbone.model, backbone.tokenizer, backbone.transform, backbone.info)
                compiled.compile_image_tower()
            precision = backbone.precision
            if args.image_part:
                out.append(table(f"\n{model} {precision}, {args.images} images, batch {args.batch_size}", "img",
                                 image_rows(backbone, root, args, compiled, repeats)))
                print(out[-1], flush=True)
            for kind in args.projectors:
                out.append(table(f"\n{model} {precision}, {args.clouds} clouds, {kind} 10 views, batch "
                                 f"{args.cloud_batch_size}", "cloud", cloud_rows(backbone, root, args, kind, repeats)))
                print(out[-1], flush=True)
    if hasattr(os, "getloadavg"):
        out.append("\nload average at the end: %.1f %.1f %.1f" % os.getloadavg())
    if args.out:
        Path(args.out).write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
