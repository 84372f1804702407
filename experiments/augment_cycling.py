"""Per-epoch augmentation, as the releases do it, against cycling fewer pre-encoded augmented copies.

Tip-Adapter-F and PointCLIP's adapter draw a new augmentation of every training item each epoch. calip3d trains on
pre-encoded copies, epoch e on copy (e - 1) mod A: with A >= epochs that is a fresh draw every epoch (the released
behaviour), with fewer copies they repeat. This runs `calip3d fewshot` with A = epochs (exact), the default A and
A = 0 (no augmentation) over a few seeds and prints test top-1 per setting.

    python experiments/augment_cycling.py --data-root DATA --backbone RN50 --pretrained openai --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from calip3d.cli.fewshot import main as fewshot_main

# (dataset, method, shots, epochs, copies to compare)
RUNS = (("caltech101", "tip-adapter-f", 4, 20, (20, 10, 0)),
        ("modelnet40", "pointclip-adapter", 2, 20, (20, 5, 0)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--backbone", required=True, nargs="+", help="one model per dataset of RUNS, or one for all")
    parser.add_argument("--pretrained", required=True, nargs="+")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--limit", type=int, default=None, help="test items per run (spread over the split)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="augment_cycling_"))
    rows = []
    for i, (dataset, method, shots, epochs, settings) in enumerate(RUNS):
        backbone = args.backbone[min(i, len(args.backbone) - 1)]
        pretrained = args.pretrained[min(i, len(args.pretrained) - 1)]
        for copies in settings:
            tops = []
            for seed in args.seeds:
                out = work / f"{dataset}-{copies}-{seed}.json"
                fewshot_main(["--dataset", dataset, "--data-root", args.data_root, "--backbone", backbone,
                              "--pretrained", pretrained, "--method", method, "--shots", str(shots), "--seed", str(seed),
                              "--epochs", str(epochs), "--augment", str(copies), "--workers", "0",
                              "--cache-tokens", str(work / "tokens"), "--split-dir", str(work / "splits"),
                              "--output", str(out), "--checkpoint", str(work / "ck.pt"),
                              *(["--limit", str(args.limit)] if args.limit else [])])
                tops.append(json.loads(out.read_text())["test"]["top1"])
            rows.append((dataset, method, copies, epochs, tops))
    print(f"{'dataset':<12} {'method':<18} {'copies':>6} {'epochs':>6}  mean top-1 (per seed)")
    for dataset, method, copies, epochs, tops in rows:
        kind = "per-epoch" if copies >= epochs else ("cycled" if copies else "none")
        print(f"{dataset:<12} {method:<18} {copies:>6} {epochs:>6}  {statistics.fmean(tops):6.2f} "
              f"({', '.join(f'{t:.2f}' for t in tops)})  {kind}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
