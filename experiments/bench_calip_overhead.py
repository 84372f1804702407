"""CALIP's cost over plain CLIP on the same split and backbone (issue: at most 1.10x).

Both runs load and preprocess the same images with the same DataLoader; plain CLIP runs open_clip's
`encode_image` and one matmul, CALIP runs the attention pooling over every position plus `calip_terms`. A second
measurement on pre-decoded image tensors isolates the model cost. Prints the seconds and the ratio.

    python experiments/bench_calip_overhead.py --data-root ../shared/data --dataset caltech101 --limit 256 \
        --backbone RN50 --pretrained none
    python experiments/bench_calip_overhead.py --synthetic 2048 --backbone ViT-B-16 --device cuda   # no data
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

from calip3d.attention import calip_terms
from calip3d.backbone import load_backbone
from calip3d.datasets.images import ImageFileDataset, collate_skip_bad, load_image_split
from calip3d.prompts import build_prompts


def run(backbone, batches, text, spatial: bool) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for images, _, _ in batches:
            if spatial:
                glob, tokens = backbone.encode_image(images)
                calip_terms(glob, tokens, text)
            else:
                backbone.encode_global(images).float() @ text.t()
        if backbone.device.type == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None, help="folder with the dataset (omit with --synthetic)")
    parser.add_argument("--synthetic", type=int, default=0,
                        help="use N random images and 100 random classes instead of a dataset (model cost only)")
    parser.add_argument("--dataset", default="caltech101")
    parser.add_argument("--backbone", default="RN50")
    parser.add_argument("--pretrained", default="none", help="'none' = random weights (same compute)")
    parser.add_argument("--limit", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default=None)
    parser.add_argument("--repeats", type=int, default=2, help="alternating repeats; the minimum is reported")
    args = parser.parse_args()

    precision = args.precision or ("fp16" if args.device.startswith("cuda") else "fp32")
    pretrained = None if args.pretrained == "none" else args.pretrained
    backbone, transform, info = load_backbone(args.backbone, pretrained, device=args.device, precision=precision)
    if args.synthetic:
        size = backbone.image_size
        gen = torch.Generator().manual_seed(0)
        decoded = [(torch.randn(min(args.batch_size, args.synthetic - i), 3, size, size, generator=gen)
                    .to(backbone.device), None, None) for i in range(0, args.synthetic, args.batch_size)]
        text = backbone.prompt_features([[f"a photo of a class {k}."] for k in range(100)])
        count, name, measurements = args.synthetic, "synthetic", [("model only (random images)", lambda: decoded)]
    else:
        if not args.data_root:
            parser.error("--data-root is required unless --synthetic N is given")
        split = load_image_split(args.dataset, args.data_root, "test")
        items = split.items[: args.limit]
        text = backbone.prompt_features(build_prompts(args.dataset, split.classnames).prompts)
        loader = DataLoader(ImageFileDataset(items, transform), batch_size=args.batch_size,
                            num_workers=args.workers, collate_fn=collate_skip_bad)
        decoded = [(x.to(backbone.device), y, i) for x, y, i in loader]
        count, name = len(items), f"{args.dataset} test"
        measurements = [("end to end (load + encode)", lambda: loader), ("model only (decoded)", lambda: decoded)]

    rows = []
    for label, batches in measurements:
        run(backbone, decoded[:1], text, True)  # warm-up
        clip_s, calip_s = [], []
        for _ in range(args.repeats):
            clip_s.append(run(backbone, batches(), text, spatial=False))
            calip_s.append(run(backbone, batches(), text, spatial=True))
        rows.append((label, min(clip_s), min(calip_s)))
    print(f"{args.backbone} ({info.weights}), {count} {name} images, {args.device} {precision}, "
          f"batch {args.batch_size}")
    print(f"{'measurement':30s} {'CLIP s':>8s} {'CALIP s':>8s} {'ratio':>6s}")
    for label, clip_t, calip_t in rows:
        print(f"{label:30s} {clip_t:8.2f} {calip_t:8.2f} {calip_t / clip_t:6.3f}")


if __name__ == "__main__":
    main()
