"""`calip3d fetch NAME...` (`python -m calip3d fetch`): download datasets into the data root, verified and safely
extracted; `--list` shows every dataset's status, sources and size.

Sources and checksums: data/README.md. Mirrors (`--mirror URL`, or `CALIP3D_MIRROR`) are tried first as
`URL/<file name>`. ScanObjectNN and ImageNet are never downloaded (terms of use): the error says what to get, from
where and where to put it; SUN397 and StanfordCars only from a mirror holding the checksummed files.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from calip3d.errors import CalipError, run_cli
from calip3d.fetch import data_root, dataset_names, fetch_dataset, format_listing, list_datasets

from .flags import new_parser, speaks_flags


def build_parser(prog: str = "calip3d fetch") -> argparse.ArgumentParser:
    parser = new_parser(prog, __doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"datasets as eval takes them: {', '.join(dataset_names())}")
    parser.add_argument("--root", "--data-root", dest="root", default=None,
                        help="the data root (default: $CALIP3D_DATA, else ~/.cache/calip3d/data)")
    parser.add_argument("--mirror", action="append", default=None, metavar="URL",
                        help="try URL/<file name> first (repeatable; default: $CALIP3D_MIRROR, comma-separated)")
    parser.add_argument("--format", choices=("h5", "resampled"), default=None,
                        help="ModelNet40 release: h5 (modelnet40_ply_hdf5_2048, what eval reads by default) or "
                             "resampled (modelnet40_normal_resampled, which modelnet10 reads)")
    parser.add_argument("--list", action="store_true", help="list every dataset: status under the root, sources, size")
    return parser


@speaks_flags
def main(argv: Sequence[str] | None = None, prog: str = "calip3d fetch") -> int:
    args = build_parser(prog).parse_args(argv)
    root = data_root(args.root)
    if args.list:
        print(format_listing(list_datasets(root), root))
        return 0
    if not args.names:
        raise CalipError("name at least one dataset to fetch (calip3d fetch --list shows them)")
    for name in args.names:
        report = fetch_dataset(name, root, mirrors=args.mirror, fmt=args.format)
        print(f"{name}: {'downloaded to' if report.fetched else 'already present in'} {report.folder}")
    return 0


def entry() -> None:
    run_cli(main)
