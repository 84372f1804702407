"""`calip3d eval` (`python -m calip3d.eval`): zero-shot CLIP / PointCLIP vs CALIP on an image or point-cloud dataset.

Prints a table and writes a JSON result (schema in `calip3d.results`). Terms are cached on disk, so a rerun that
changes only betas, view weights or the tuning protocol costs seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from calip3d.datasets import get_dataset, is_folder_dataset
from calip3d.datasets.registry import IMAGES, POINTS, registered_names
from calip3d.errors import CalipError, run_cli
from calip3d.figures import results_bar_chart
from calip3d.tables import build_table, chart_rows, entries_from_result
from calip3d.zeroshot import ZERO_SHOT_METHODS, EvalConfig, SearchConfig, TuneConfig, method_list, run_eval

from .flags import (
    add_backbone_flags, add_cache_flags, add_data_flags, add_point_flags, add_projector_flags, add_scale_flags,
    add_temperature_flag, calip_config, check_minimums, dataset_output_name, encode_config, new_parser, output_name,
    parse_betas, parse_positive_list, parse_view_weights, point_settings, projector_config, run_pipeline, speaks_flags,
)


def datasets_help() -> str:
    """The help of --dataset: every registered dataset (from the dataset records), then folder datasets."""
    return (f"2D: {', '.join(registered_names(IMAGES))}; 3D: {', '.join(registered_names(POINTS))} (aliases such as "
            "Caltech-101, flowers102, PB_T50_RS are accepted); or folder:PATH, your own images or point clouds in "
            "PATH/<class>/<file> (a test split only) or PATH/{train,val,test}/<class>/<file> (data/README.md)")


DATASETS_HELP = datasets_help()  # as imported; the parser asks datasets_help() itself
TEMPLATES_HELP = ("default (CoOp's single template; ImageNet: the 7-template ensemble; 3D: 'point cloud depth map of a "
                  "{}.'; a folder of images: 'a photo of a {}.'), single, ensemble, or FILE.json (templates, e.g. "
                  "[\"a photo of my {}.\"], or CuPL per-class prompts)")


def add_search_flags(group: argparse._ArgumentGroup) -> None:
    """The beta grid's bounds and steps (shared with `tune-views`)."""
    group.add_argument("--beta2-max", type=float, default=None,
                       help="upper bound of the beta2 grid (default: 2.0, widened to cover the paper's value)")
    group.add_argument("--beta3-max", type=float, default=None,
                       help="upper bound of the beta3 grid (default: 0.1, widened to cover the paper's value)")
    group.add_argument("--search-steps", type=int, default=200, help="grid steps per beta (official: 200)")


class ListMethods(argparse.Action):
    """`--list-methods`: print the zero-shot registry, one line per method, and exit (no --dataset needed)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(method_list())
        parser.exit()


def parse_methods(text: str) -> tuple[str, ...]:
    """`--methods NAME,...`: registered zero-shot methods, in the order given."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in ZERO_SHOT_METHODS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(unknown) or repr(text)}; choose from "
                                         f"{', '.join(ZERO_SHOT_METHODS)} (--list-methods describes them)")
    return names


def build_parser(prog: str = "calip3d eval") -> argparse.ArgumentParser:
    parser = new_parser(prog, "Zero-shot CLIP/PointCLIP vs CALIP on one dataset. Reports plain CLIP, CALIP with "
                              "published (2D) or default (3D) betas, and CALIP tuned on a held-out tuning set; "
                              "test-tuned ('oracle') numbers only with --tune-on test.")
    parser.add_argument("--dataset", required=True, help=datasets_help())
    parser.add_argument("--methods", type=parse_methods, default=None, metavar="NAME,...",
                        help="zero-shot methods to score, in this order (default: every default method that applies "
                             "to the dataset: the rows below)")
    parser.add_argument("--list-methods", action=ListMethods,
                        help="list the zero-shot methods (name, 2D/3D, default or on request, what it is) and exit")
    add_data_flags(parser)
    add_backbone_flags(parser)
    add_scale_flags(parser)
    parser.add_argument("--split", choices=("test", "val", "train"), default="test", help="split to evaluate")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples (quick looks)")
    calip = parser.add_argument_group("CALIP")
    calip.add_argument("--betas", type=parse_betas, default=None,
                       help="also report CALIP with these betas, '1,B2,B3' (beta1 is the CLIP term's weight)")
    calip.add_argument("--tune-on", choices=("val", "none", "test"), default="val",
                       help="val: tune betas on the tuning set (CoOp val; 16 train shots per class for ImageNet and "
                            "3D); test: ALSO report betas tuned on the test labels, labelled ORACLE; none: no tuning")
    calip.add_argument("--tune-shots", type=int, default=16,
                       help="shots per class of the tuning set drawn from train (ImageNet and 3D datasets)")
    calip.add_argument("--tune-seed", type=int, default=1, help="seed of the tuning-set draw")
    calip.add_argument("--tune-limit", type=int, default=None, help="use only the first N tuning samples")
    add_search_flags(calip)
    add_temperature_flag(calip, "attention temperature (official code: 0.5, i.e. A*2)")
    calip.add_argument("--templates", default="default", help=TEMPLATES_HELP)
    tda = parser.add_argument_group("test-time methods (tda, calip_tda: --methods ...)")
    stream = tda.add_mutually_exclusive_group()
    stream.add_argument("--stream-seed", type=int, default=None, metavar="N",
                        help="order of the test stream: a permutation seeded N (default 1, as the release's seed)")
    stream.add_argument("--stream-seeds", default=None, metavar="N1,N2,...",
                        help="several stream orders: the mean over them is reported, with each order's top-1 and "
                             "the spread in the JSON")
    pnn = parser.add_argument_group("Point-NN rows (point_nn, pointclip_pointnn, calip_pointnn: --methods ...)")
    pnn.add_argument("--memory-shots", type=int, default=None, metavar="K",
                     help="train clouds per class in Point-NN's memory, drawn with --tune-seed apart from the tuning "
                          "clouds (gamma and the fusion weight are chosen on the tuning clouds)")
    images = parser.add_argument_group("images")
    images.add_argument("--skip-bad-files", action="store_true",
                        help="skip unreadable images (reported) instead of stopping; for a folder:PATH of point "
                             "clouds, also the unreadable clouds (listed, and in the result)")
    points = parser.add_argument_group("point clouds")
    add_projector_flags(points, None, "number of views (default: 6 for pointclip, 10 for realistic)", settings=True)
    points.add_argument("--view-weights", type=parse_view_weights, default=None,
                        help="W1,...,WV; 'paper' = PointCLIP Table 1 (searched on test labels: ORACLE); "
                             "default uniform")
    points.add_argument("--view-grid", default="0.25,0.5,0.75,1.0",
                        help="grid of view-weight values for tuning (PointCLIP's post-search grid)")
    add_point_flags(points, sampling=True)
    out = parser.add_argument_group("outputs")
    add_cache_flags(out)
    out.add_argument("--output", default=None,
                     help="JSON result path (default: results/<dataset>_<backbone>_<split>.json; a folder "
                          "dataset's <dataset> is folder-<name>-<hash>)")
    out.add_argument("--plot", default=None, metavar="FILE.png",
                     help="also draw CLIP / PointCLIP vs CALIP with the comparable published numbers marked")
    return parser


def search_config(args: argparse.Namespace, **extra: object) -> SearchConfig:
    return SearchConfig(beta2_max=args.beta2_max, beta3_max=args.beta3_max, steps=args.search_steps,
                        view_grid=parse_positive_list("--view-grid", args.view_grid), **extra)


def stream_seeds(args: argparse.Namespace) -> tuple[int, ...]:
    """`--stream-seed N` or `--stream-seeds N1,N2,...` (default: 1)."""
    if args.stream_seeds is None:
        return (1 if args.stream_seed is None else args.stream_seed,)
    try:
        seeds = tuple(int(s) for s in args.stream_seeds.split(",") if s.strip())
    except ValueError:
        seeds = ()
    if not seeds:
        raise CalipError(f"--stream-seeds expects integers N1,N2,..., got {args.stream_seeds!r}")
    return seeds


def eval_config(args: argparse.Namespace) -> EvalConfig:
    check_minimums(args, {"memory_shots": 1, "batch_size": 1, "limit": 1, "tune_shots": 1, "points": 1, "search_steps": 1,
                          "tune_limit": 1, "workers": 0})
    return EvalConfig(
        dataset=args.dataset, data_root=args.data_root, split=args.split, limit=args.limit,
        templates=args.templates, view_weights=args.view_weights, methods=args.methods,
        stream_seeds=stream_seeds(args), memory_shots=args.memory_shots,
        tune=TuneConfig(on=args.tune_on, shots=args.tune_shots, seed=args.tune_seed, limit=args.tune_limit),
        search=search_config(args), points=point_settings(args), projector=projector_config(args),
        encode=encode_config(args), calip=calip_config(args))


def check_folder_tuning(config: EvalConfig) -> None:
    """A folder dataset without the split its betas are tuned on (val, else train): say so before anything runs."""
    if config.tune.on == "none" or not is_folder_dataset(config.dataset):
        return
    info = get_dataset(config.dataset)
    tuning_split = "val" if info.has_val_split else "train"
    if tuning_split not in info.splits and config.split != tuning_split:
        layout = " (PATH/<class>/<file> is a test split only)" if info.splits == ("test",) else ""
        raise CalipError(f"{info.name} has no train or val split to tune the betas on{layout}: pass --tune-on none, "
                         f"or add {info.folder}/train/<class>/<file> (or val/) beside {info.folder}/test/")


@speaks_flags
def main(argv: Sequence[str] | None = None, prog: str = "calip3d eval") -> int:
    args = build_parser(prog).parse_args(argv)
    config = eval_config(args)
    check_folder_tuning(config)
    result = run_pipeline(args, config, run_eval)
    if result is None:  # another rank of a torchrun job: its shards went to rank 0, which reports
        return 0
    print(result.table())
    output = Path(args.output or f"results/{dataset_output_name(args.dataset)}_{output_name(args.backbone)}_"
                                 f"{args.split}.json")
    result.write_json(output)
    print(f"results written to {output}")
    if args.plot:
        rows = chart_rows(build_table(entries_from_result(result.to_dict(), str(output))))
        print(f"plot written to {results_bar_chart(rows, args.plot, title=f'{result.dataset} / {result.split}')}")
    return 0


def entry() -> None:
    run_cli(main)
