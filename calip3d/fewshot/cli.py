"""`python -m calip3d.fewshot`: K-shot training of CALIP-FS or a baseline on frozen CLIP features, then the test split.

Protocol (CoOp's): K train shots per class drawn with --seed, min(K, 4) val shots per class (from val, or from train
without the train shots where a dataset has no val split), the full test split. The drawn split is saved and
reused. Hyperparameters are selected on the val shots (best-on-val epoch), never on test.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import CalipError, run_cli
from ..eval import HelpFormatter, _betas, add_backbone_args, load_from_args
from ..metrics import topk_accuracy
from ..report import provenance, write_json
from .methods import METHODS, TRAINED_MODULES, FewShotMethod, Hyper, zero_shot_logits
from .protocol import FewShotSplit, digest_ids, draw_split, get_split
from .tokens import (
    TokenCache, Tokens, augment_points, augmented_image_transform, concat_tokens, encode_tokens, image_batches,
    point_batches,
)
from .training import CALIP_FS_DEFAULTS, load_checkpoint, save_checkpoint

SCHEMA = "calip3d.fewshot/1"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m calip3d.fewshot", description=__doc__,
        formatter_class=HelpFormatter)
    parser.add_argument("--dataset", required=True, help="a 2D CoOp dataset or a 3D dataset (as calip3d.eval)")
    parser.add_argument("--data-root", required=True, help="folder holding the dataset folders")
    parser.add_argument("--shots", type=int, default=16, help="train shots per class (1, 2, 4, 8, 16)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the shot draw and of training")
    parser.add_argument("--method", choices=METHODS, default="calip-fs", help="method to train and evaluate")
    add_backbone_args(parser)
    train = parser.add_argument_group("training (defaults: CALIP-FS's; choose on val)")
    train.add_argument("--epochs", type=int, default=None,
                       help="epochs (default: 100 for calip-fs, 20 for tip-adapter-f, 250 for pointclip-adapter)")
    train.add_argument("--lr", type=float, default=None,
                       help="learning rate (default: 1e-3; 0.01 for pointclip-adapter as PointCLIP)")
    train.add_argument("--lr-grid", default=None, metavar="LR1,LR2,...",
                       help="train once per learning rate and keep the one with the best val-shot accuracy "
                            "(first on ties); the search is recorded in the results")
    train.add_argument("--train-batch-size", type=int, default=32, help="training batch size")
    train.add_argument("--weight-decay", type=float, default=None, help="weight decay (default 1e-4)")
    train.add_argument("--label-smoothing", type=float, default=None,
                       help="label smoothing (default 0.1; 0.2 for pointclip-adapter)")
    train.add_argument("--hidden", type=int, default=None,
                       help="rank of CALIP-FS's residual projections (default: full rank)")
    train.add_argument("--learn-betas", action="store_true", help="also train CALIP-FS's betas")
    train.add_argument("--per-view", action="store_true", help="3D: one set of CALIP-FS projections per view")
    train.add_argument("--augment", type=int, default=0,
                       help="pre-encode N augmented copies of the train shots (random crop/flip for images, "
                            "random scale/translate for point clouds)")
    calip = parser.add_argument_group("CALIP")
    calip.add_argument("--betas", type=_betas, default=None,
                       help="initial/zero-shot betas 1,B2,B3 (default: the paper's per-dataset pair for 2D, "
                            "1,1.12,0.02 for 3D)")
    calip.add_argument("--temperature", type=float, default=0.5, help="attention temperature")
    calip.add_argument("--templates", default=None,
                       help="prompt spec as in calip3d.eval (default: CoOp's template; 3D: 'point cloud of a big {}.')")
    data = parser.add_argument_group("data")
    data.add_argument("--limit", type=int, default=None, help="evaluate only the first N test samples")
    data.add_argument("--split-dir", default="results/fewshot/splits", help="where drawn splits are saved/reused")
    data.add_argument("--projector", choices=("pointclip", "realistic"), default="pointclip", help="3D projection")
    data.add_argument("--views", type=int, choices=(6, 10), default=10,
                      help="3D views (PointCLIP's few-shot preset: 10 views, resolution 224, distance 1.4)")
    data.add_argument("--points", type=int, default=1024, help="points per cloud")
    data.add_argument("--format", choices=("h5", "resampled"), default=None, help="ModelNet40 release")
    data.add_argument("--up-axis", choices=("y", "z"), default="y", help="up axis of the data")
    data.add_argument("--skip-bad-files", action="store_true", help="skip unreadable test images")
    out = parser.add_argument_group("outputs")
    out.add_argument("--output", default=None,
                     help="JSON result (default results/fewshot/<dataset>_<method>_<K>shot_seed<S>.json)")
    out.add_argument("--checkpoint", default=None,
                     help="where to save the trained module (calip-fs, pointclip-adapter); with --eval-only, the "
                          "checkpoint to load")
    out.add_argument("--eval-only", action="store_true", help="load --checkpoint and only evaluate")
    out.add_argument("--cache-tokens", default=None, metavar="DIR",
                     help="keep the test split's float16 tokens in DIR for repeated evaluations (size printed)")
    return parser


def _lr_grid(text: str) -> list[float]:
    try:
        grid = [float(v) for v in text.split(",")]
    except ValueError:
        grid = []
    if not grid or any(v <= 0 for v in grid):
        raise CalipError(f"--lr-grid expects positive learning rates LR1,LR2,..., got {text!r}")
    return grid


def _fit(method: FewShotMethod, lr_grid: list[float] | None, train: Tokens, val: Tokens, text: torch.Tensor,
         copies: int) -> FewShotMethod:
    """Fit `method`; with `lr_grid`, once per learning rate, keeping the best on the val shots."""
    if not lr_grid:
        method.fit(train, val, text, copies=copies)
        return method
    if len(val) == 0:
        raise CalipError("--lr-grid selects on the val shots, but this split has none")
    best, search = None, []
    for lr in lr_grid:
        candidate = FewShotMethod(method.name, replace(method.hyper, lr=lr), method.views)
        candidate.fit(train, val, text, copies=copies)
        search.append([lr, candidate.val_top1])
        if best is None or candidate.val_top1 > best.val_top1:
            best = candidate
    best.details["lr_search"] = search
    return best


def _defaults(args: argparse.Namespace) -> tuple[int, float, float, float]:
    """(epochs, lr, weight decay, label smoothing) for the method, unless given."""
    epochs = {"tip-adapter-f": 20, "pointclip-adapter": 250}.get(args.method, CALIP_FS_DEFAULTS["epochs"])
    lr = 0.01 if args.method == "pointclip-adapter" else CALIP_FS_DEFAULTS["lr"]
    wd = 5e-4 if args.method == "pointclip-adapter" else CALIP_FS_DEFAULTS["weight_decay"]
    ls = 0.2 if args.method == "pointclip-adapter" else CALIP_FS_DEFAULTS["label_smoothing"]
    pick = lambda given, default: default if given is None else given  # noqa: E731
    return (pick(args.epochs, epochs), pick(args.lr, lr), pick(args.weight_decay, wd),
            pick(args.label_smoothing, ls))


class Source:
    """A dataset's train / val / test items behind one interface for images and point clouds."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ..eval import is_point_dataset

        self.args = args
        self.is_3d = is_point_dataset(args.dataset)
        if self.is_3d:
            from ..datasets.pointclouds import load_point_split

            load = dict(fmt=args.format, num_points=args.points, sampling="first", seed=0, normalize=True,
                        up_axis=args.up_axis)
            self.dataset = args.dataset
            self.train = load_point_split(args.dataset, args.data_root, "train", **load)
            self.test = load_point_split(args.dataset, args.data_root, "test", **load)
            self.val = None
            self.classnames = self.train.classnames
            self.train_labels, self.train_ids = list(self.train.labels), list(range(len(self.train.labels)))
        else:
            from ..datasets.images import load_image_split, resolve_image_dataset

            self.dataset = resolve_image_dataset(args.dataset)
            self.train = load_image_split(self.dataset, args.data_root, "train")
            self.test = load_image_split(self.dataset, args.data_root, "test")
            self.val = None if self.dataset == "imagenet" else load_image_split(self.dataset, args.data_root, "val")
            self.classnames = self.train.classnames
            self.train_labels = [y for _, y in self.train.items]
            self.train_ids = [p for p, _ in self.train.items]

    def draw(self) -> FewShotSplit:
        val_labels = [y for _, y in self.val.items] if self.val is not None else None
        val_ids = [p for p, _ in self.val.items] if self.val is not None else None
        return draw_split(self.dataset, self.classnames, self.train_labels, self.train_ids, self.args.shots,
                          self.args.seed, val_labels, val_ids)

    @property
    def split_file(self) -> str:
        return self.test.source if self.is_3d else self.test.split_file

    def test_size(self) -> int:
        n = len(self.test.labels) if self.is_3d else len(self.test.items)
        return min(n, self.args.limit) if self.args.limit else n


def _encode_subset(source: Source, backbone: Any, transform: Any, projector: Any, indices: Sequence[int],
                   from_val: bool, desc: str, augment_seed: int | None = None) -> Tokens:
    """Tokens of the chosen train (or val) items; `augment_seed` draws one augmented copy."""
    args = source.args
    if source.is_3d:
        points = source.train.points[np.asarray(indices, dtype=np.int64)]
        if augment_seed is not None:
            points = augment_points(points, augment_seed)
        labels = source.train.labels[np.asarray(indices, dtype=np.int64)]
        batches = point_batches(points, labels, projector, args.batch_size, backbone.device)
    else:
        pool = source.val.items if from_val else source.train.items
        items = [pool[i] for i in indices]
        tf = transform if augment_seed is None else augmented_image_transform(transform, backbone.image_size)
        batches = image_batches(items, tf, args.batch_size, args.workers, augment_seed or 0)
    return encode_tokens(backbone, batches, len(indices), desc)


def _test_batches(source: Source, backbone: Any, transform: Any, projector: Any) -> Iterable[tuple]:
    n = source.test_size()
    if source.is_3d:
        yield from point_batches(source.test.points[:n], source.test.labels[:n], projector, source.args.batch_size,
                                 backbone.device)
    else:
        from torch.utils.data import DataLoader

        from ..datasets.images import ImageFileDataset, collate_skip_bad

        data = ImageFileDataset(source.test.items[:n], transform, skip_bad_files=source.args.skip_bad_files)
        for images, labels, _ in DataLoader(data, batch_size=source.args.batch_size,
                                            num_workers=source.args.workers, collate_fn=collate_skip_bad):
            yield images, labels


def _score_test(method: FewShotMethod, batches: Iterable[tuple], backbone: Any, text: torch.Tensor,
                total: int, zs_betas: tuple[float, float, float], views: int | None) -> dict[str, Any]:
    """Stream test batches through the frozen encoder and the method; keep only logits."""
    outs: dict[str, list[torch.Tensor]] = {"method": [], "clip": [], "calip": [], "labels": []}
    weights = torch.full((views,), 1.0 / views) if views else None
    with torch.inference_mode(), tqdm(total=total, desc="test", unit="item", leave=False, dynamic_ncols=True) as bar:
        for glob, spatial, labels in batches:
            clip, calip = zero_shot_logits(glob, spatial, text, zs_betas, method.hyper.temperature, weights)
            outs["method"].append(method.logits(glob, spatial, text).cpu())
            outs["clip"].append(clip.cpu())
            outs["calip"].append(calip.cpu())
            outs["labels"].append(torch.as_tensor(labels).long().cpu())
            bar.update(glob.shape[0])
    labels = torch.cat(outs["labels"])
    res = {}
    for key in ("method", "clip", "calip"):
        logits = torch.cat(outs[key])
        res[key] = {"top1": topk_accuracy(logits, labels, 1), "top5": topk_accuracy(logits, labels, 5)}
    res["num_samples"] = int(labels.numel())
    return res


def _token_stream(batches: Iterable[tuple], backbone: Any) -> Iterable[tuple]:
    for images, labels in batches:
        views = images.shape[1] if images.ndim == 5 else None
        glob, spatial = backbone.encode_image(images.flatten(0, 1) if views else images)
        if views:
            glob = glob.view(images.shape[0], views, -1)
            spatial = spatial.view(images.shape[0], views, *spatial.shape[1:])
        yield glob, spatial, labels


def _tokens_as_batches(tokens: Tokens, size: int) -> Iterable[tuple]:
    for i in range(0, len(tokens), size):
        yield (tokens.global_feats[i:i + size], tokens.spatial_feats[i:i + size].float(), tokens.labels[i:i + size])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag in ("shots", "train_batch_size", "batch_size", "points"):
        if getattr(args, flag) < 1:
            raise CalipError(f"--{flag.replace('_', '-')} must be >= 1")
    if args.lr_grid and args.method not in ("calip-fs", "pointclip-adapter", "tip-adapter-f"):
        raise CalipError(f"--lr-grid applies to trained methods (calip-fs, pointclip-adapter, tip-adapter-f), "
                         f"not {args.method}")
    if args.augment < 0 or (args.limit is not None and args.limit < 1):
        raise CalipError("--augment must be >= 0 and --limit >= 1")
    if args.eval_only and not args.checkpoint:
        raise CalipError("--eval-only needs --checkpoint PATH")
    if args.eval_only and args.method not in TRAINED_MODULES:
        raise CalipError(f"--eval-only loads a trained module: use it with --method {' or '.join(TRAINED_MODULES)}")

    from ..presets import DEFAULT_3D_BETAS, PAPER_BETAS
    from ..projection import make_projector
    from ..prompts import POINTCLOUD_FS_TEMPLATE, build_prompts, from_templates

    source = Source(args)
    split_path = Path(args.split_dir) / f"{source.dataset}_shot{args.shots}_seed{args.seed}.json"
    split, reused = get_split(split_path, source.draw())
    if split.with_replacement:
        print(f"note: {len(split.with_replacement)} class(es) have fewer than {args.shots} train items and were "
              f"sampled with replacement (listed in {split_path})", file=sys.stderr)
    if split.empty:
        print(f"note: classes with no train item keep only their text features: {', '.join(split.empty)}",
              file=sys.stderr)

    backbone, transform, info, precision = load_from_args(args)
    projector = (make_projector(args.projector, views=args.views, image_size=backbone.image_size)
                 if source.is_3d else None)
    views = projector.num_views if projector else None
    if source.is_3d and args.templates is None:
        prompts = from_templates(source.classnames, [POINTCLOUD_FS_TEMPLATE], f"pointclip-fs: '{POINTCLOUD_FS_TEMPLATE}'")
    else:
        prompts = build_prompts(source.dataset, source.classnames, args.templates or "default")
    text = backbone.prompt_features(prompts.prompts)
    betas = args.betas or (1.0, *PAPER_BETAS.get(source.dataset, DEFAULT_3D_BETAS))
    epochs, lr, wd, smoothing = _defaults(args)
    torch.manual_seed(args.seed)
    hyper = Hyper(epochs=epochs, lr=lr, batch_size=args.train_batch_size, weight_decay=wd,
                  label_smoothing=smoothing, seed=args.seed, hidden=args.hidden, learn_betas=args.learn_betas,
                  shared_views=not args.per_view, betas=betas, temperature=args.temperature,
                  device=str(backbone.device))
    lr_grid = _lr_grid(args.lr_grid) if args.lr_grid else None
    method = FewShotMethod(args.method, hyper, views)
    meta = {"backbone": info.name, "weights": info.weights, "classnames": list(source.classnames),
            "dataset": source.dataset, "views": views, "method": args.method, "prompts": prompts.description}
    checkpoint = Path(args.checkpoint) if args.checkpoint else \
        Path("results/fewshot/checkpoints") / f"{source.dataset}_{args.method}_{args.shots}shot_seed{args.seed}.pt"

    cache = TokenCache(Path(args.cache_tokens)) if args.cache_tokens else None
    base_spec = {"backbone": info.as_dict(), "precision": precision, "dataset": source.dataset, "views": views,
                 "projector": projector.describe() if projector else None, "transform": repr(transform)}
    if args.eval_only:
        module = method.build_module(backbone.embed_dim)
        load_checkpoint(checkpoint, expected_meta=meta, module=module)
        val_tokens = None
    else:
        def shots(indices: list[int], from_val: bool, desc: str, augment_seed: int | None = None) -> Tokens:
            compute = lambda: _encode_subset(source, backbone, transform, projector, indices,  # noqa: E731
                                             from_val, desc, augment_seed)
            if cache is None:
                return compute()
            spec = {**base_spec, "part": desc, "indices": digest_ids(indices), "from_val": from_val,
                    "augment_seed": augment_seed, "split_ids": [split.train_ids, split.val_ids]}
            return cache.get_or_compute(spec, compute, desc)

        train_parts = [shots(split.train, False, "train shots")]
        for copy in range(args.augment):
            train_parts.append(shots(split.train, False, f"augmented copy {copy + 1}", args.seed * 1000 + copy))
        train_tokens = concat_tokens(train_parts)
        val_tokens = shots(split.val, split.val_source == "val", "val shots")
        method = _fit(method, lr_grid, train_tokens, val_tokens, text, 1 + args.augment)
        if args.method in TRAINED_MODULES:
            save_checkpoint(checkpoint, method.module, {**meta, "shots": args.shots, "seed": args.seed})

    total = source.test_size()
    if cache is not None:
        spec = {**base_spec, "part": "test", "split_file": source.split_file, "limit": args.limit}
        tokens = cache.get_or_compute(
            spec, lambda: encode_tokens(backbone, _test_batches(source, backbone, transform, projector), total,
                                        "test tokens"), "test")
        batches = _tokens_as_batches(tokens, args.batch_size)
    else:
        batches = _token_stream(_test_batches(source, backbone, transform, projector), backbone)
    scores = _score_test(method, batches, backbone, text, total, betas, views)

    result = {
        "schema": SCHEMA, "dataset": source.dataset, "method": args.method, "shots": args.shots, "seed": args.seed,
        "num_samples": scores["num_samples"], "num_classes": len(source.classnames),
        "test": scores["method"], "val_top1": method.val_top1,
        "zero_shot_reference": {"clip": scores["clip"], "calip": {**scores["calip"], "betas": list(betas)}},
        "split_file": str(split_path), "split_reused": reused,
        "split": {k: v for k, v in asdict(split).items() if k not in ("train", "val", "classnames")},
        "hyperparameters": {**{k: v for k, v in asdict(method.hyper).items() if k != "extra"}, "augment": args.augment,
                            "selection": "best epoch on the val shots" if args.method in TRAINED_MODULES
                            else "searched on the val shots", **method.details},
        "checkpoint": str(checkpoint) if args.method in TRAINED_MODULES else None,
        "history": [r._asdict() for r in method.train_result.history] if method.train_result else None,
        "provenance": provenance(backbone=info.as_dict(), precision=precision, templates=prompts.description,
                                 test_split_file=source.split_file,
                                 projector=projector.describe() if projector else None),
    }
    output = Path(args.output) if args.output else \
        Path("results/fewshot") / f"{source.dataset}_{args.method}_{args.shots}shot_seed{args.seed}.json"
    write_json(output, result)
    val_text = "-" if method.val_top1 is None else f"{method.val_top1:.2f}"
    print(f"{source.dataset} {args.shots}-shot seed {args.seed}: {args.method} test top-1 "
          f"{scores['method']['top1']:.2f} (top-5 {scores['method']['top5']:.2f}, val {val_text}); zero-shot "
          f"CLIP {scores['clip']['top1']:.2f}, CALIP {scores['calip']['top1']:.2f}")
    print(f"results written to {output}")
    return 0


def entry() -> None:
    run_cli(main)
