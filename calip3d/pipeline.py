"""The `eval` pipeline: dataset -> (projection) -> backbone -> CALIP terms (cached) -> methods -> result dict."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from .errors import CalipError
from .features import TermCache, default_cache_dir
from .presets import (
    DEFAULT_3D_BETAS, DEFAULT_3D_BETAS_SOURCE, PAPER_BETAS, PAPER_BETAS_SOURCE, POINTCLIP_TABLE1_VIEW_WEIGHTS,
    beta_search_range,
)
from .report import SCHEMA, provenance
from .sampling import sample_per_class
from .zeroshot import Encoder, image_methods, point_methods


def make_encoder(args: argparse.Namespace) -> Encoder:
    from .eval import load_from_args

    backbone, transform, info, precision = load_from_args(args)
    cache = TermCache(None if args.no_cache else (args.cache_dir or default_cache_dir()))
    return Encoder(backbone=backbone, transform=transform, info=info, precision=precision,
                   batch_size=args.batch_size, workers=args.workers, temperature=args.temperature, cache=cache,
                   skip_bad_files=getattr(args, "skip_bad_files", False))


def search_range(args: argparse.Namespace, dataset: str) -> tuple[float, float]:
    beta2_max, beta3_max = beta_search_range(dataset)
    return args.beta2_max or beta2_max, args.beta3_max or beta3_max


def run_eval(args: argparse.Namespace) -> dict[str, Any]:
    from .eval import is_point_dataset

    if is_point_dataset(args.dataset):
        return run_point_eval(args)
    return run_image_eval(args)


def _tuning_plan(args: argparse.Namespace, tuning_split: str) -> tuple[bool, bool]:
    """(tune on the held-out tuning set?, also report the oracle?). Tuning on the evaluated split itself is the
    oracle protocol, so it is reported as such instead of as tuned."""
    if args.tune_on == "none":
        return False, False
    if args.split == tuning_split:
        print(f"note: --split {args.split} is also the tuning split; its tuned betas are reported as ORACLE",
              file=sys.stderr)
        return False, True
    return True, args.tune_on == "test"


def run_image_eval(args: argparse.Namespace) -> dict[str, Any]:
    from .datasets.images import load_image_split, resolve_image_dataset
    from .prompts import build_prompts

    dataset = resolve_image_dataset(args.dataset)
    test = load_image_split(dataset, args.data_root, args.split)
    items = test.items[: args.limit] if args.limit else test.items
    encoder = make_encoder(args)
    prompts = build_prompts(dataset, test.classnames, args.templates)
    text = encoder.backbone.prompt_features(prompts.prompts)
    test_terms = encoder.image_terms(test, items, text, prompts.description, desc=f"{dataset} {args.split}")
    cache_status = encoder.cache.last_status

    tune_terms, tune_source, tune_info = None, None, {}
    tuning_split = "test" if dataset == "imagenet" else "val"
    tune, oracle = _tuning_plan(args, tuning_split)
    if tune:
        if dataset == "imagenet":  # CoOp's ImageNet val is its test: draw shots from train instead
            train = load_image_split(dataset, args.data_root, "train")
            draw = sample_per_class([y for _, y in train.items], args.tune_shots, args.tune_seed,
                                    num_classes=len(train.classnames))
            tune_items = [train.items[i] for i in draw.indices]
            tune_split, tune_source = train, f"{args.tune_shots} train images per class (seed {args.tune_seed})"
        else:
            tune_split = load_image_split(dataset, args.data_root, "val")
            tune_items, tune_source = tune_split.items, "the CoOp val split"
        tune_items = tune_items[: args.tune_limit] if args.tune_limit else tune_items
        tune_source += f", {len(tune_items)} images"
        tune_terms = encoder.image_terms(tune_split, tune_items, text, prompts.description, desc="tuning set")
        tune_info = {"tuning_set": tune_source, "tuning_split_file": tune_split.split_file}

    beta2_max, beta3_max = search_range(args, dataset)
    methods = image_methods(
        test_terms, tune_terms, tune_source, PAPER_BETAS.get(dataset), PAPER_BETAS_SOURCE, args.betas, oracle,
        beta2_max, beta3_max, args.search_steps)
    skipped = len(items) - len(test_terms.labels)
    if skipped:
        print(f"warning: skipped {skipped} unreadable image(s) (--skip-bad-files)", file=sys.stderr)
    return {
        "schema": SCHEMA, "dataset": dataset, "split": args.split, "num_samples": int(len(test_terms.labels)),
        "num_classes": len(test.classnames), **methods, "methods": list(methods),
        "provenance": provenance(
            backbone=encoder.info.as_dict(), precision=encoder.precision, templates=prompts.description,
            split_file=test.split_file, temperature=args.temperature, limit=args.limit, skipped_files=skipped,
            transform=repr(encoder.transform), cache=cache_status, **tune_info),
    }


def run_point_eval(args: argparse.Namespace) -> dict[str, Any]:
    from .datasets.pointclouds import load_point_split
    from .projection import make_projector
    from .prompts import build_prompts

    dataset = args.dataset
    load = dict(fmt=args.format, num_points=args.points, sampling=args.sampling, seed=0,
                normalize=not args.no_normalize, up_axis=args.up_axis)
    test = load_point_split(dataset, args.data_root, args.split, **load)
    if args.limit:
        test = test.subset(np.arange(min(args.limit, len(test.labels))))
    encoder = make_encoder(args)
    overrides = {k: v for k, v in (("distance", args.distance), ("resolution", args.resolution)) if v is not None}
    projector = make_projector(args.projector, views=args.views, image_size=encoder.backbone.image_size, **overrides)
    view_weights, vw_source, vw_oracle = _view_weights(args, dataset, projector.num_views)
    prompts = build_prompts(dataset, test.classnames, args.templates)
    text = encoder.backbone.prompt_features(prompts.prompts)
    test_terms = encoder.point_terms(test, projector, text, prompts.description, desc=f"{dataset} {args.split}")
    cache_status = encoder.cache.last_status
    tune, oracle = _tuning_plan(args, "train")
    tune_terms, tune_source = None, None
    if tune:
        train = load_point_split(dataset, args.data_root, "train", **load)
        draw = sample_per_class(train.labels, args.tune_shots, args.tune_seed, num_classes=len(train.classnames))
        rows = np.asarray(draw.indices[: args.tune_limit] if args.tune_limit else draw.indices)
        tune = train.subset(rows)
        tune_source = f"{args.tune_shots} train clouds per class (seed {args.tune_seed}), {len(rows)} clouds"
        tune_terms = encoder.point_terms(tune, projector, text, prompts.description, desc="tuning set")

    beta2_max, beta3_max = search_range(args, dataset)
    grid = _grid(args.view_grid)
    methods = point_methods(
        test_terms, tune_terms, tune_source, DEFAULT_3D_BETAS, DEFAULT_3D_BETAS_SOURCE, view_weights, vw_source,
        vw_oracle, args.betas, oracle, beta2_max, beta3_max, args.search_steps, grid)
    return {
        "schema": SCHEMA, "dataset": dataset, "split": args.split, "num_samples": int(len(test_terms.labels)),
        "num_classes": len(test.classnames), **methods, "methods": list(methods),
        "provenance": provenance(
            backbone=encoder.info.as_dict(), precision=encoder.precision, templates=prompts.description,
            split_file=test.source, temperature=args.temperature, limit=args.limit, points=test.settings,
            projector=projector.describe(), cache=cache_status, tuning_set=tune_source),
    }


def _grid(text: str) -> tuple[float, ...]:
    try:
        grid = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise CalipError(f"--view-grid expects comma-separated numbers, got {text!r}") from None
    if not grid or any(v <= 0 for v in grid):
        raise CalipError("--view-grid values must be positive")
    return grid


def _view_weights(args: argparse.Namespace, dataset: str, views: int) -> tuple[list[float] | None, str, bool]:
    """(weights or None for uniform, where they came from, oracle?)."""
    chosen = args.view_weights
    if chosen is None or chosen == "uniform":
        return None, "uniform", False
    if chosen == "paper":
        key = "scanobjectnn" if dataset.startswith("scanobjectnn") else dataset
        if views != 6:
            raise CalipError("--view-weights paper is PointCLIP's 6-view Table 1; use --views 6")
        return list(POINTCLIP_TABLE1_VIEW_WEIGHTS[key]), "ORACLE: PointCLIP Table 1 (searched on test labels)", True
    if len(chosen) != views:
        raise CalipError(f"--view-weights has {len(chosen)} values but the projector makes {views} views")
    return list(chosen), "--view-weights", False

