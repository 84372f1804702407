"""`run_eval`: dataset -> (projection) -> backbone -> CALIP terms (cached) -> scored methods -> `EvalResult`.

Used by `calip3d eval`, and from Python::

    from calip3d.backbone import BackboneConfig
    from calip3d.zeroshot import EvalConfig, run_eval

    backbone = BackboneConfig("RN50", "openai").load()
    result = run_eval(EvalConfig(dataset="caltech101", data_root="DATA"), backbone)
    print(result.table())
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from calip3d.backbone import CLIPBackbone
from calip3d.datasets import DatasetInfo, Split
from calip3d.encoding import Encoder, Terms
from calip3d.errors import CalipError
from calip3d.pointnn.features import PointNNConfig, pointnn_features
from calip3d.prompts import build_prompts
from calip3d.results import EvalResult, provenance
from calip3d.run_context import RunContext
from calip3d.sampling import sample_per_class

from .config import EvalConfig, SplitRunConfig, TuneConfig
from .registry import ScoringRun, Tuning, ViewWeights, needs_of, score_methods, select_methods


@dataclass
class Prepared:
    """What every zero-shot pipeline starts from: the run's context (dataset, data root, projector, encoder), the
    evaluated split (limited), the prompts and the test terms (None on the ranks of a torchrun job other than 0), their
    cache status and how their encoding was spread over the ranks."""

    context: RunContext
    test: Split
    prompts: Any
    text: Any
    terms: Terms | None = None
    cache_status: str = ""
    distribution: dict[str, Any] = field(default_factory=dict)

    @property
    def info(self) -> DatasetInfo:
        return self.context.info

    @property
    def encoder(self) -> Encoder:
        return self.context.encoder

    def encode(self, split: Split, desc: str) -> Terms | None:
        """The terms of another split of the run's dataset against the run's prompts (e.g. the tuning set)."""
        return self.encoder.terms(split, self.text, self.prompts.description, desc=desc)

    def provenance(self, config: SplitRunConfig, **fields: Any) -> dict[str, Any]:
        """What a zero-shot result records: the context's provenance (data, model, encoding, point settings,
        projector), the prompts, the evaluated split's file, CALIP's temperature, the limit, the cache status and
        `fields`."""
        return provenance(**self.context.provenance(
            self.test, self.distribution, templates=self.prompts.description, split_file=self.test.source,
            temperature=config.calip.temperature, limit=config.limit), cache=self.cache_status, **fields)


def prepare(config: SplitRunConfig, context: RunContext) -> Prepared:
    """Load the evaluated split (first `config.limit` items) and the prompts, encode the test terms (over the ranks
    of the current session: see `Encoder`)."""
    test = context.load(config.split)
    if config.limit:
        test = test.subset(np.arange(min(config.limit, len(test))))
    prompts = build_prompts(context.info.name, test.classnames, config.templates)
    text = context.backbone.prompt_features(prompts.prompts)
    run = Prepared(context, test, prompts, text)
    run.terms = run.encode(test, f"{context.info.name} {config.split}")
    run.cache_status, run.distribution = context.encoder.cache.last_status, context.encoder.distribution()
    return run


def tuning_plan(tune_on: str, split: str, tuning_split: str) -> tuple[bool, bool]:
    """(tune on the held-out tuning set?, also report the oracle?). Tuning on the evaluated split itself is the
    oracle protocol, so it is reported as such instead of as tuned."""
    if tune_on == "none":
        return False, False
    if split == tuning_split:
        print(f"note: --split {split} is also the tuning split; its tuned betas are reported as ORACLE",
              file=sys.stderr)
        return False, True
    return True, tune_on == "test"


def draw_shots(context: RunContext, shots: int, seed: int, limit: int | None = None) -> tuple[Split, str]:
    """`shots` train items per class drawn with `seed` (first `limit` of them), and their description."""
    train = context.load("train")
    draw = sample_per_class(train.labels, shots, seed, num_classes=len(train.classnames))
    rows = draw.indices[:limit] if limit else draw.indices
    noun = "clouds" if context.info.is_points else "images"
    return train.subset(rows), f"{shots} train {noun} per class (seed {seed}), {len(rows)} {noun}"


def tuning_set(context: RunContext, tune: TuneConfig) -> tuple[Split, str]:
    """The held-out tuning set: CoOp's val split, or train shots for ImageNet (whose CoOp val is its test) and 3D."""
    info = context.info
    if not info.has_val_split:
        return draw_shots(context, tune.shots, tune.seed, tune.limit)
    val = context.load("val")
    if tune.limit:
        val = val.subset(range(min(tune.limit, len(val))))
    noun = "clouds" if info.is_points else "images"
    return val, f"the {'val' if info.is_folder else 'CoOp val'} split, {len(val)} {noun}"


def pointnn_inputs(run: Prepared, config: EvalConfig, tuning: Split, tuning_description: str) -> dict[str, Any]:
    """Point-NN features of the memory (`memory_shots` train clouds per class, drawn with the tuning seed apart from
    the tuning clouds), of the tuning set and of the test split (rank 0; every rank encodes its share)."""
    train = run.context.load("train")
    k = len(train.classnames)
    held = sample_per_class(train.labels, config.tune.shots, config.tune.seed, num_classes=k).indices
    held = held[:config.tune.limit] if config.tune.limit else held
    draw = sample_per_class(train.labels, config.memory_shots, config.tune.seed, num_classes=k, exclude=set(held))
    memory = train.subset(draw.indices)
    settings = PointNNConfig(device=str(run.encoder.backbone.device))
    cache, ranks = run.encoder.cache, run.encoder.ranks
    out = {name: pointnn_features(part, settings, cache, ranks, f"Point-NN {name}")
           for name, part in (("memory", memory), ("tuning", tuning), ("test", run.test))}
    return {**out, "memory_labels": torch.as_tensor(memory.labels, dtype=torch.long),
            "description": f"{config.memory_shots} train clouds per class (seed {config.tune.seed}), apart from "
                           f"{tuning_description}: {len(memory)} clouds",
            "encoder": settings.describe()}


def run_eval(config: EvalConfig, backbone: CLIPBackbone) -> EvalResult | None:
    """Zero-shot CLIP / PointCLIP vs CALIP on one dataset split, under the honest tuning protocol. In a torchrun job
    (`calip3d.distributed.session`) every rank encodes its shards; rank 0 searches and returns the result, the other
    ranks None."""
    context = RunContext.build(config, backbone)
    info = context.info
    if info.is_points:  # checked before anything is encoded
        view_weights = resolve_view_weights(config.view_weights, info, context.views)
    chosen = select_methods(config.methods, info)
    run = prepare(config, context)
    tuning_split = "val" if info.has_val_split else ("test" if info.name == "imagenet" else "train")
    tune, oracle = tuning_plan(config.tune.on, config.split, tuning_split)
    tuning = None
    if tune:
        split, description = tuning_set(context, config.tune)
        tuning = Tuning(run.encode(split, "tuning set"), description)
    extra = {}
    if "pointnn" in needs_of(chosen) and config.memory_shots is not None and tuning is not None:
        extra["pointnn"] = pointnn_inputs(run, config, split, description)
    if not run.encoder.ranks.main:
        return None
    scoring = ScoringRun(info, run.terms, tuning, oracle, config.calip.betas,
                         view_weights if info.is_points else ViewWeights(), config.search,
                         config.search.beta_range(info.beta_search_range), options=config, extra=extra)
    methods = score_methods(chosen, scoring, explicit=config.methods is not None)
    if info.is_points:
        prov = run.provenance(config, tuning_set=tuning.description if tuning else None)
    else:
        skipped = len(run.test) - len(run.terms.labels)
        if skipped:
            print(f"warning: skipped {skipped} unreadable image(s) (--skip-bad-files)", file=sys.stderr)
        tune_info = {"tuning_set": tuning.description, "tuning_split_file": split.source} if tuning else {}
        prov = run.provenance(config, skipped_files=skipped, transform=repr(backbone.transform), **tune_info)
    return EvalResult(info.name, config.split, int(len(run.terms.labels)), len(run.test.classnames), methods, prov)


def resolve_view_weights(chosen: str | tuple[float, ...] | None, info: DatasetInfo,
                         views: int) -> ViewWeights:
    """The view weights `EvalConfig.view_weights` names (weights None: uniform), where they came from, oracle?"""
    if chosen is None or chosen == "uniform":
        return ViewWeights()
    if chosen == "paper":
        if views != 6:
            raise CalipError("EvalConfig.view_weights 'paper' is PointCLIP's 6-view Table 1; use "
                             "ProjectorConfig.views=6")
        return ViewWeights(list(info.table1_view_weights), "ORACLE: PointCLIP Table 1 (searched on test labels)", True)
    if isinstance(chosen, str):
        raise CalipError(f"EvalConfig.view_weights expects W1,...,WV, 'uniform' or 'paper', got {chosen!r}")
    if len(chosen) != views:
        raise CalipError(f"EvalConfig.view_weights has {len(chosen)} values but the projector makes {views} views")
    return ViewWeights(list(chosen), "--view-weights")
