"""`calip3d SUBCOMMAND ...` (also `python -m calip3d`): one entry point dispatching to the commands."""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

from calip3d import __version__
from calip3d.errors import CalipError, run_cli

# name -> (module under calip3d.cli, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "eval": ("eval", "zero-shot CLIP / PointCLIP vs CALIP on a dataset: table + JSON results"),
    "classify": ("classify", "zero-shot CALIP on your own point-cloud and mesh files"),
    "fewshot": ("fewshot", "K-shot CALIP-FS or a baseline (Tip-Adapter(-F), linear probe, PointCLIP adapter)"),
    "tune-views": ("tune_views", "tune PointCLIP view weights (and CALIP's betas) on train clouds"),
    "show": ("show", "pictures of CALIP's attention over point-cloud views or an image, and its scores"),
    "table": ("table", "merge result files into one table beside the published numbers (Markdown/CSV, --plot)"),
    "fetch": ("fetch", "download datasets into the data root (verified, resumable); --list shows their status"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: calip3d SUBCOMMAND [flags]   (calip3d {__version__})", "",
             "Zero-shot and few-shot classification of point clouds and images with CLIP and CALIP.", "",
             "subcommands:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "`calip3d SUBCOMMAND --help` explains each command's flags."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        print(f"calip3d {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        raise CalipError(f"unknown subcommand {name!r}; choose one of: {', '.join(COMMANDS)} (calip3d --help)")
    module = importlib.import_module(f"calip3d.cli.{COMMANDS[name][0]}")
    return module.main(argv[1:], prog=f"calip3d {name}")


def entry() -> None:
    run_cli(main)
