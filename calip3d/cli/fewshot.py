"""`calip3d fewshot` (`python -m calip3d.fewshot`): K-shot training of CALIP-FS or a baseline on frozen CLIP
features, then the test split.

Protocol (CoOp's): K train shots per class drawn with --seed, min(K, 4) val shots per class (from val, or from train
without the train shots where a dataset has no val split), the full test split. The drawn split is saved and
reused. --protocol honest (default) chooses every hyperparameter on the val shots, never on test; --protocol release
chooses as each baseline's released code does (to reproduce its published numbers), and labels each choice that
reads test labels ORACLE.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from calip3d.attention import BETA_CHOICES
from calip3d.errors import CalipError, run_cli
from calip3d.fewshot import FewShotConfig, TipSettings, TrainConfig, fewshot_table, run_fewshot
from calip3d.fewshot.config import BASES, FEATURES
from calip3d.fewshot.protocol import ALL_SHOTS
from calip3d.fewshot.methods import METHODS
from calip3d.fewshot.selection import PROTOCOLS
from calip3d.results import write_json
from calip3d.sampling import SHORT_CLASSES

from .flags import (
    add_backbone_flags, add_data_flags, add_point_flags, add_projector_flags, add_scale_flags, add_temperature_flag,
    calip_config, check_minimums, dataset_output_name, encode_config, new_parser, parse_betas, parse_positive_list,
    point_settings, projector_config, run_pipeline, speaks_flags,
)


def parse_fewshot_betas(text: str) -> tuple[float, float, float] | str:
    """`--betas 1,B2,B3`, `val` or `paper`."""
    return text if text in BETA_CHOICES else parse_betas(text)


def parse_shots(text: str) -> int | str:
    """`--shots K` or `--shots all`."""
    if text == ALL_SHOTS:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'all', got {text!r}") from None


def parse_pair(flag: str, text: str | None, kind: type = float) -> tuple | None:
    """`--tip-search-scale BETA,ALPHA` and `--tip-search-steps BETA,ALPHA`: two positive numbers."""
    if text is None:
        return None
    values = parse_positive_list(flag, text)
    if len(values) != 2 or (kind is int and any(v != int(v) for v in values)):
        raise CalipError(f"{flag} expects two positive {'integers' if kind is int else 'numbers'} BETA,ALPHA, "
                         f"got {text!r}")
    return tuple(kind(v) for v in values)


def build_parser(prog: str = "calip3d fewshot") -> argparse.ArgumentParser:
    parser = new_parser(prog, __doc__)
    parser.add_argument("--dataset", required=True, help="a 2D CoOp dataset or a 3D dataset (as calip3d eval), or "
                        "folder:PATH with PATH/train/<class>/<file> and PATH/test/... (data/README.md)")
    add_data_flags(parser)
    parser.add_argument("--shots", type=parse_shots, default=16,
                        help="train shots per class (1, 2, 4, 8, 16), or 'all': the whole train split (point-nn's "
                             "memory, the release's setting)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the shot draw and of training")
    parser.add_argument("--method", choices=tuple(METHODS), default="calip-fs", help="method to train and evaluate")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="honest",
                        help="honest: every choice on the val shots, nothing reads test labels before the final "
                             "score; release: each baseline's released choices (full val split, test-chosen epochs: "
                             "ORACLE, CALIP's published betas), to compare with published numbers (default: honest)")
    parser.add_argument("--short-classes", choices=SHORT_CLASSES, default="keep",
                        help="a class with fewer than K train items: keep all of them (CoOp, Dassl's repeat=False) "
                             "or draw K with replacement (Tip-Adapter's and PointCLIP's copies, repeat=True) "
                             "(default: keep)")
    add_backbone_flags(parser)
    add_scale_flags(parser)
    train = parser.add_argument_group("training (defaults: each method's own, as released)")
    train.add_argument("--epochs", type=int, default=None,
                       help="epochs (default: 100 for calip-fs, 20 for tip-adapter-f (EuroSAT: 100, as released), "
                            "250 for pointclip-adapter)")
    train.add_argument("--lr", type=float, default=None,
                       help="learning rate (default: 1e-3; 0.01 for pointclip-adapter as PointCLIP)")
    train.add_argument("--lr-grid", default=None, metavar="LR1,LR2,...",
                       help="train once per learning rate and keep the one with the best val-shot accuracy "
                            "(first on ties); the search is recorded in the results")
    train.add_argument("--train-batch-size", type=int, default=None,
                       help="training batch size (default: 32; 256 for tip-adapter-f as released)")
    train.add_argument("--weight-decay", type=float, default=None,
                       help="weight decay (default 1e-4; 0.01 for tip-adapter-f, 5e-4 for pointclip-adapter)")
    train.add_argument("--label-smoothing", type=float, default=None,
                       help="label smoothing (default 0.1; none for tip-adapter-f, 0.2 for pointclip-adapter)")
    train.add_argument("--hidden", type=int, default=None,
                       help="rank of CALIP-FS's residual projections (default: full rank)")
    train.add_argument("--learn-betas", action="store_true", help="also train CALIP-FS's betas")
    train.add_argument("--per-view", action="store_true", help="3D: one set of CALIP-FS projections per view")
    train.add_argument("--augment", type=int, default=None,
                       help="pre-encode N augmented copies of the train shots (random crop/flip for images, "
                            "random scale/translate for point clouds). tip-adapter(-f): the cache keys are their "
                            "mean (default 10, as released); tip-adapter-f and pointclip-adapter train on one copy "
                            "per epoch, cycled (default 10; N >= epochs re-draws every epoch as the releases do); "
                            "calip-fs, linear-probe: extra training rows (default 0)")
    train.add_argument("--features", choices=FEATURES, default="raw",
                       help="linear-probe and pointclip-adapter inputs: raw CLIP features, as CoOp's lpclip and "
                            "PointCLIP feed them, or L2-normalised, as CLIP_benchmark's probe (default: raw)")
    train.add_argument("--base", choices=BASES, default=None,
                       help="the zero-shot logits a training-free method adds to: clip (CLIP; for point clouds "
                            "PointCLIP, also spelled pointclip), as released, or calip (CALIP with the run's --betas: "
                            "a calip3d combination with no published counterpart). Default: each method's own "
                            "(gda, ape, tip-x: clip; point-nn: none, Point-NN alone)")
    pnn = parser.add_argument_group("Point-NN (--method point-nn; weights-free, point clouds)")
    pnn.add_argument("--pointnn-normalize", choices=("cloud", "batch"), default=None,
                     help="each stage's std over one cloud (a prediction depends on its cloud only) or over the whole "
                          "batch of 16 consecutive clouds, as released (default: batch with --protocol release, "
                          "else cloud)")
    pnn.add_argument("--no-normalize", action="store_true",
                     help="do not centre and scale the clouds to the unit sphere (every method reads the same "
                          "clouds; Point-NN's release feeds the raw first 1,024 points)")
    pnn.add_argument("--pointnn-shuffle", action="store_true",
                     help="shuffle each memory cloud's point order with --seed before encoding, as the release does "
                          "(unseeded there); default: no shuffle")
    tip = parser.add_argument_group("Tip-Adapter (defaults: the dataset's released configs/*.yaml; 3D: ImageNet's)")
    tip.add_argument("--tip-alpha", type=float, default=None, help="initial alpha (Tip-Adapter-F trains with it)")
    tip.add_argument("--tip-beta", type=float, default=None, help="initial beta (Tip-Adapter-F trains with it)")
    tip.add_argument("--tip-search-scale", default=None, metavar="BETA,ALPHA",
                     help="upper bounds of the beta and alpha search grids (e.g. 7,3 ImageNet, 50,50 Flowers)")
    tip.add_argument("--tip-search-steps", default=None, metavar="BETA,ALPHA",
                     help="grid points of the beta and alpha searches (released: 200,20)")
    calip = parser.add_argument_group("CALIP")
    calip.add_argument("--betas", type=parse_fewshot_betas, default=None,
                       help="CALIP's betas (the zero-shot reference, zero-shot, CALIP-FS's start): 1,B2,B3; 'val' "
                            "searched on the val shots (honest default); 'paper' CALIP's published per-dataset pair, "
                            "which its authors searched on test (release default; 3D: the ImageNet pair)")
    add_temperature_flag(calip, "attention temperature")
    calip.add_argument("--templates", default=None,
                       help="prompt spec as in calip3d eval (default: CoOp's template; 3D: 'point cloud of a big {}.')")
    data = parser.add_argument_group("data")
    data.add_argument("--limit", type=int, default=None,
                      help="evaluate only N test samples, spread evenly over the test split (every class-sorted "
                           "split keeps several classes)")
    data.add_argument("--split-dir", default="results/fewshot/splits", help="where drawn splits are saved/reused")
    add_projector_flags(data, 10, "3D views (PointCLIP's few-shot preset: 10 views, resolution 224, distance 1.4)",
                        settings=False)
    add_point_flags(data, sampling=False)
    data.add_argument("--skip-bad-files", action="store_true",
                      help="skip unreadable test images; for a folder:PATH of point clouds, the unreadable clouds of "
                           "every split (listed, and in the result)")
    out = parser.add_argument_group("outputs")
    out.add_argument("--output", default=None,
                     help="JSON result (default results/fewshot/<dataset>_<method>_<K>shot_seed<S>.json)")
    out.add_argument("--checkpoint", default=None,
                     help="where to save the trained module (calip-fs, pointclip-adapter); with --eval-only, the "
                          "checkpoint to load")
    out.add_argument("--eval-only", action="store_true", help="load --checkpoint and only evaluate")
    out.add_argument("--cache-tokens", default=None, metavar="DIR",
                     help="keep the test split's float16 tokens (and the drawn shots') in DIR for repeated "
                          "evaluations (sizes printed)")
    return parser


def fewshot_config(args: argparse.Namespace) -> FewShotConfig:
    shots = {} if args.shots == ALL_SHOTS else {"shots": 1}
    check_minimums(args, {**shots, "train_batch_size": 1, "batch_size": 1, "points": 1, "augment": 0,
                          "limit": 1, "workers": 0, "tip_alpha": 0, "tip_beta": 0})
    return FewShotConfig(
        dataset=args.dataset, data_root=args.data_root, shots=args.shots, seed=args.seed, method=args.method,
        protocol=args.protocol, short_classes=args.short_classes,
        train=TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.train_batch_size,
                          weight_decay=args.weight_decay, label_smoothing=args.label_smoothing),
        lr_grid=parse_positive_list("--lr-grid", args.lr_grid) if args.lr_grid else None, hidden=args.hidden,
        learn_betas=args.learn_betas, per_view=args.per_view, augment=args.augment, features=args.features,
        base=args.base, pointnn_normalize=args.pointnn_normalize, pointnn_shuffle=args.pointnn_shuffle,
        tip=TipSettings(init_alpha=args.tip_alpha, init_beta=args.tip_beta,
                        search_scale=parse_pair("--tip-search-scale", args.tip_search_scale),
                        search_steps=parse_pair("--tip-search-steps", args.tip_search_steps, int)),
        templates=args.templates, limit=args.limit, split_dir=args.split_dir, checkpoint=args.checkpoint,
        eval_only=args.eval_only, points=point_settings(args), projector=projector_config(args),
        encode=encode_config(args, cache_dir=args.cache_tokens, use_cache=bool(args.cache_tokens),
                             announce_cache=True), calip=calip_config(args))


@speaks_flags
def main(argv: Sequence[str] | None = None, prog: str = "calip3d fewshot") -> int:
    args = build_parser(prog).parse_args(argv)
    config = fewshot_config(args)
    outcome = run_pipeline(args, config, run_fewshot)
    if outcome is None:  # another rank of a torchrun job: its shards went to rank 0, which reports
        return 0
    result, _ = outcome
    output = Path(args.output) if args.output else \
        Path("results/fewshot") / f"{dataset_output_name(result['dataset'])}_{args.method}_{args.shots}shot_seed" \
                                  f"{args.seed}.json"
    write_json(output, result)
    print(fewshot_table(result))
    print(f"results written to {output}")
    return 0


def entry() -> None:
    run_cli(main)
