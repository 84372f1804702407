"""Few-shot sweep: datasets x shots x seeds x methods through `python -m calip3d.fewshot`, on the same drawn splits.

Writes a table of mean and standard deviation over seeds (CSV and JSON) and a plot of test accuracy against shots
(PNG). Every other flag is passed to `calip3d.fewshot` unchanged (backbone, weights, data root, epochs, ...). Tokens
are cached (`--cache-tokens`): the test split once per dataset, the drawn shots once per (shots, seed), so each
extra method costs only its own training.

    python experiments/fewshot_sweep.py --datasets caltech101 modelnet40 --shots 1 2 4 8 16 --seeds 1 2 3 \
        --methods zero-shot tip-adapter tip-x ape gda calip-fs -- --data-root DATA --backbone RN50 --pretrained openai
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

from calip3d.errors import run_cli
from calip3d.cli.fewshot import main as fewshot_main
from calip3d.fewshot.methods import METHODS


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--methods", nargs="+", choices=METHODS,
                        default=["zero-shot", "tip-adapter", "tip-x", "ape", "gda", "calip-fs"],
                        help="few-shot methods (default: the training-free ones and CALIP-FS; point clouds also take "
                             "point-nn)")
    parser.add_argument("--out-dir", default="results/fewshot_sweep", help="where runs, table and plot go")
    return parser.parse_known_args(argv)


def summarise(runs: list[dict]) -> list[dict]:
    """Mean and standard deviation (over seeds) of test top-1 per (dataset, method, shots)."""
    groups: dict[tuple, list[float]] = {}
    for run in runs:
        groups.setdefault((run["dataset"], run["method"], run["shots"]), []).append(run["top1"])
    rows = []
    for (dataset, method, shots), values in sorted(groups.items()):
        rows.append({"dataset": dataset, "method": method, "shots": shots, "seeds": len(values),
                     "mean_top1": statistics.fmean(values),
                     "std_top1": statistics.stdev(values) if len(values) > 1 else 0.0})
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for method in sorted({r["method"] for r in rows if r["dataset"] == dataset}):
            pts = sorted((r["shots"], r["mean_top1"], r["std_top1"]) for r in rows
                         if r["dataset"] == dataset and r["method"] == method)
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                        capsize=3, label=method)
        ax.set_xscale("log", base=2)
        shots = sorted({r["shots"] for r in rows if r["dataset"] == dataset})
        ax.set_xticks(shots, [str(k) for k in shots])  # 1, 4, 16 rather than powers of two
        ax.minorticks_off()
        ax.set_xlabel("shots per class")
        ax.set_ylabel("test top-1 (%)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args, passthrough = parse(argv)
    passthrough = [a for a in passthrough if a != "--"]
    out = Path(args.out_dir)
    runs = []
    for dataset in args.datasets:
        for shots in args.shots:
            for seed in args.seeds:
                for method in args.methods:
                    result_path = out / "runs" / f"{dataset}_{method}_{shots}shot_seed{seed}.json"
                    fewshot_main(["--dataset", dataset, "--shots", str(shots), "--seed", str(seed), "--method",
                                  method, "--output", str(result_path), "--split-dir", str(out / "splits"),
                                  "--checkpoint", str(out / "checkpoints" / result_path.with_suffix(".pt").name),
                                  "--cache-tokens", str(out / "tokens"), *passthrough])
                    result = json.loads(result_path.read_text())
                    runs.append({"dataset": result["dataset"], "method": method, "shots": shots, "seed": seed,
                                 "top1": result["test"]["top1"], "top5": result["test"]["top5"],
                                 "val_top1": result["val_top1"]})
    rows = summarise(runs)
    with open(out / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.json").write_text(json.dumps({"runs": runs, "summary": rows}, indent=2) + "\n")
    plot(rows, out / "accuracy_vs_shots.png")
    print(f"{'dataset':14s} {'method':18s} {'shots':>5s} {'top-1 mean':>10s} {'std':>6s}")
    for r in rows:
        print(f"{r['dataset']:14s} {r['method']:18s} {r['shots']:5d} {r['mean_top1']:10.2f} {r['std_top1']:6.2f}")
    print(f"table: {out / 'summary.csv'}, {out / 'summary.json'}; plot: {out / 'accuracy_vs_shots.png'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
