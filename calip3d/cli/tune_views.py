"""`calip3d tune-views`: PointCLIP view weights (and CALIP's betas) tuned on train clouds, reported on a split.

Uses the same cached per-view terms as `calip3d eval`, so a second run with another grid, search method or tuning
subset does not re-encode. Test-tuned numbers only with --oracle, labelled ORACLE. Writes a `calip3d.eval/1` JSON.

    calip3d tune-views --dataset modelnet40 --data-root DATA --tune-split fewshot --shots 16 --method exhaustive
    calip3d tune-views --dataset modelnet40 --data-root DATA --views 10 --method coordinate
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from calip3d.datasets.registry import POINTS, registered_names
from calip3d.errors import run_cli
from calip3d.zeroshot import TuneViewsConfig, run_tune_views

from .eval import TEMPLATES_HELP, add_search_flags, search_config
from .flags import (
    add_backbone_flags, add_cache_flags, add_data_flags, add_point_flags, add_projector_flags, add_scale_flags,
    add_temperature_flag, calip_config, check_minimums, dataset_output_name, encode_config, new_parser, point_settings,
    projector_config, run_pipeline, speaks_flags,
)


def build_parser(prog: str = "calip3d tune-views") -> argparse.ArgumentParser:
    parser = new_parser(prog, __doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help=f"a point-cloud dataset: {', '.join(registered_names(POINTS))}, "
                        "or folder:PATH (your own clouds in PATH/{train,test}/<class>/<file>; data/README.md)")
    add_data_flags(parser)
    add_backbone_flags(parser)
    add_scale_flags(parser)
    parser.add_argument("--split", choices=("test", "train"), default="test", help="split the tuned weights are "
                        "scored on (train: the tuning clouds come from it too, so its rows are labelled ORACLE)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N clouds of --split")
    tuning = parser.add_argument_group("view-weight tuning")
    tuning.add_argument("--tune-split", choices=("fewshot", "train"), default="fewshot",
                        help="tune on --shots train clouds per class (seed --tune-seed) or on the whole train split")
    tuning.add_argument("--shots", type=int, default=16, help="shots per class for --tune-split fewshot")
    tuning.add_argument("--tune-seed", type=int, default=1, help="seed of the shot draw")
    tuning.add_argument("--method", choices=("auto", "exhaustive", "coordinate"), default="auto",
                        help="exhaustive grid (PointCLIP's post-search) or coordinate ascent (fine grids, 10 views)")
    tuning.add_argument("--restarts", type=int, default=3, help="random restarts of coordinate ascent")
    tuning.add_argument("--rounds", type=int, default=2, help="alternations of the joint view-weight/beta search")
    tuning.add_argument("--oracle", action="store_true", help="also tune on the TEST labels (reported as ORACLE)")
    tuning.add_argument("--view-grid", default="0.25,0.5,0.75,1.0",
                        help="grid of view-weight values (PointCLIP's post-search grid)")
    add_search_flags(tuning)
    calip = parser.add_argument_group("CALIP")
    add_temperature_flag(calip, "attention temperature (official code: 0.5, i.e. A*2)")
    calip.add_argument("--templates", default="default", help=TEMPLATES_HELP)
    points = parser.add_argument_group("point clouds")
    add_projector_flags(points, None, "number of views (default: 6 for pointclip, 10 for realistic)", settings=True)
    add_point_flags(points, sampling=True)
    out = parser.add_argument_group("outputs")
    add_cache_flags(out)
    out.add_argument("--output", default=None,
                     help="JSON result path (default: results/tune_views_<dataset>_<views>v.json)")
    return parser


@speaks_flags
def main(argv: Sequence[str] | None = None, prog: str = "calip3d tune-views") -> int:
    args = build_parser(prog).parse_args(argv)
    check_minimums(args, {"batch_size": 1, "limit": 1, "shots": 1, "points": 1, "search_steps": 1, "rounds": 1,
                          "restarts": 0, "workers": 0})
    config = TuneViewsConfig(
        dataset=args.dataset, data_root=args.data_root, split=args.split, limit=args.limit,
        tune_split=args.tune_split, shots=args.shots, seed=args.tune_seed, oracle=args.oracle,
        templates=args.templates,
        search=search_config(args, view_method=args.method, restarts=args.restarts, rounds=args.rounds),
        points=point_settings(args), projector=projector_config(args), encode=encode_config(args),
        calip=calip_config(args))
    result = run_pipeline(args, config, run_tune_views)
    if result is None:  # another rank of a torchrun job: its shards went to rank 0, which reports
        return 0
    print(result.table())
    views = result.provenance["projector"]["num_views"]
    output = Path(args.output or f"results/tune_views_{dataset_output_name(result.dataset)}_{views}v.json")
    result.write_json(output)
    print(f"results written to {output}")
    return 0


def entry() -> None:
    run_cli(main)
