"""`calip3d table RESULT.json...`: eval (and fewshot) result files merged into one table, beside the published numbers.

Datasets are rows (the JSON's `dataset`), methods columns (prefixed by the model build, e.g. `RN50 openai:`, when files
of several builds are merged), each followed by the comparable published number (same backbone and weights tag) and
the difference; an average row per group (2D, 3D). Markdown or CSV by the output's extension; Markdown on stdout
without --output. `--plot FILE.png`: CLIP vs CALIP per dataset with the published numbers marked.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from calip3d.atomic import atomic_write_text
from calip3d.errors import run_cli
from calip3d.figures import results_bar_chart
from calip3d.tables import chart_rows, merge_results, render, to_markdown

from .flags import new_parser, speaks_flags


def build_parser(prog: str = "calip3d table") -> argparse.ArgumentParser:
    parser = new_parser(prog, __doc__)
    parser.add_argument("results", nargs="+", metavar="RESULT.json", help="eval or fewshot result files")
    parser.add_argument("--output", default=None, metavar="FILE.md|FILE.csv",
                        help="write the table there (format by extension) instead of printing Markdown")
    parser.add_argument("--plot", default=None, metavar="FILE.png", help="also draw CLIP vs CALIP per dataset")
    return parser


@speaks_flags
def main(argv: Sequence[str] | None = None, prog: str = "calip3d table") -> int:
    args = build_parser(prog).parse_args(argv)
    table = merge_results(args.results)
    if args.output:
        print(f"table written to {atomic_write_text(args.output, render(table, args.output))}")
    else:
        print(to_markdown(table))
    if args.plot:
        print(f"plot written to {results_bar_chart(chart_rows(table), args.plot)}")
    return 0


def entry() -> None:
    run_cli(main)
