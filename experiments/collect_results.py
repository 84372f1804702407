"""Collect `calip3d.eval` JSON results into one table (Markdown on stdout, CSV beside it).

    python experiments/collect_results.py results/*_RN50_test.json --csv results/zeroshot_RN50.csv
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="JSON files written by python -m calip3d.eval")
    parser.add_argument("--csv", default=None, help="also write the table as CSV")
    args = parser.parse_args()
    rows = []
    for path in args.results:
        result = json.loads(Path(path).read_text())
        for method in result["methods"]:
            entry = result[method]
            rows.append({"dataset": result["dataset"], "method": method + (" (ORACLE)" if entry["oracle"] else ""),
                         "top1": f"{entry['top1']:.2f}", "top5": f"{entry['top5']:.2f}",
                         "betas": "-" if entry.get("betas") is None else ",".join(f"{b:g}" for b in entry["betas"]),
                         "source": entry.get("betas_source", ""), "samples": result["num_samples"]})
    if not rows:
        return
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
