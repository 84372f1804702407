"""`calip3d fewshot` (`python -m calip3d.fewshot`): K-shot training of CALIP-FS or a baseline on frozen CLIP
features, then the test split.

Protocol (CoOp's): K train shots per class drawn with --seed, min(K, 4) val shots per class (from val, or from train
without the train shots where a dataset has no val split), the full test split. The drawn split is saved and
reused. Hyperparameters are selected on the val shots (best-on-val epoch), never on test.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from calip3d.errors import run_cli
from calip3d.fewshot import FewShotConfig, TrainOverrides, run_fewshot
from calip3d.fewshot.methods import METHODS
from calip3d.results import write_json

from .flags import (
    add_backbone_flags, add_point_flags, add_projector_flags, add_scale_flags, add_temperature_flag, backbone_config,
    check_minimums, distributed_session, encode_config, new_parser, parse_betas, parse_positive_list, point_settings,
    projector_config,
)


def build_parser(prog: str = "calip3d fewshot") -> argparse.ArgumentParser:
    parser = new_parser(prog, __doc__)
    parser.add_argument("--dataset", required=True, help="a 2D CoOp dataset or a 3D dataset (as calip3d eval)")
    parser.add_argument("--data-root", required=True, help="folder holding the dataset folders")
    parser.add_argument("--shots", type=int, default=16, help="train shots per class (1, 2, 4, 8, 16)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the shot draw and of training")
    parser.add_argument("--method", choices=tuple(METHODS), default="calip-fs", help="method to train and evaluate")
    add_backbone_flags(parser)
    add_scale_flags(parser)
    train = parser.add_argument_group("training (defaults: each method's own; choose on val)")
    train.add_argument("--epochs", type=int, default=None,
                       help="epochs (default: 100 for calip-fs, 20 for tip-adapter-f, 250 for pointclip-adapter)")
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
    train.add_argument("--augment", type=int, default=0,
                       help="pre-encode N augmented copies of the train shots (random crop/flip for images, "
                            "random scale/translate for point clouds)")
    calip = parser.add_argument_group("CALIP")
    calip.add_argument("--betas", type=parse_betas, default=None,
                       help="initial/zero-shot betas 1,B2,B3 (default: the paper's per-dataset pair for 2D, "
                            "1,1.12,0.02 for 3D)")
    add_temperature_flag(calip, "attention temperature")
    calip.add_argument("--templates", default=None,
                       help="prompt spec as in calip3d eval (default: CoOp's template; 3D: 'point cloud of a big {}.')")
    data = parser.add_argument_group("data")
    data.add_argument("--limit", type=int, default=None, help="evaluate only the first N test samples")
    data.add_argument("--split-dir", default="results/fewshot/splits", help="where drawn splits are saved/reused")
    add_projector_flags(data, 10, "3D views (PointCLIP's few-shot preset: 10 views, resolution 224, distance 1.4)",
                        settings=False)
    add_point_flags(data, sampling=False)
    data.add_argument("--skip-bad-files", action="store_true", help="skip unreadable test images")
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
    check_minimums(args, {"shots": 1, "train_batch_size": 1, "batch_size": 1, "points": 1, "augment": 0,
                          "limit": 1, "workers": 0})
    return FewShotConfig(
        dataset=args.dataset, data_root=args.data_root, shots=args.shots, seed=args.seed, method=args.method,
        train=TrainOverrides(epochs=args.epochs, lr=args.lr, batch_size=args.train_batch_size,
                             weight_decay=args.weight_decay, label_smoothing=args.label_smoothing),
        lr_grid=parse_positive_list("--lr-grid", args.lr_grid) if args.lr_grid else None, hidden=args.hidden,
        learn_betas=args.learn_betas, per_view=args.per_view, augment=args.augment, betas=args.betas,
        templates=args.templates, limit=args.limit, split_dir=args.split_dir, checkpoint=args.checkpoint,
        eval_only=args.eval_only, points=point_settings(args), projector=projector_config(args),
        encode=encode_config(args, cache_dir=args.cache_tokens, use_cache=bool(args.cache_tokens),
                             announce_cache=True))


def main(argv: Sequence[str] | None = None, prog: str = "calip3d fewshot") -> int:
    args = build_parser(prog).parse_args(argv)
    config = fewshot_config(args)
    with distributed_session(args) as ranks:
        outcome = run_fewshot(config, backbone_config(args, ranks).load())
        if outcome is None:  # another rank of a torchrun job: its shards went to rank 0, which reports
            return 0
        result, _ = outcome
        output = Path(args.output) if args.output else \
            Path("results/fewshot") / f"{result['dataset']}_{args.method}_{args.shots}shot_seed{args.seed}.json"
        write_json(output, result)
        val = result["val_top1"]
        test, zs = result["test"], result["zero_shot_reference"]
        print(f"{result['dataset']} {args.shots}-shot seed {args.seed}: {args.method} test top-1 {test['top1']:.2f} "
              f"(top-5 {test['top5']:.2f}, val {'-' if val is None else f'{val:.2f}'}); zero-shot CLIP "
              f"{zs['clip']['top1']:.2f}, CALIP {zs['calip']['top1']:.2f}")
        print(f"results written to {output}")
    return 0


def entry() -> None:
    run_cli(main)
