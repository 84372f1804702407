"""`run_fewshot`: K-shot training of CALIP-FS or a baseline on frozen CLIP features, then the test split.

Protocol (CoOp's): K train shots per class drawn with the seed, min(K, 4) val shots per class (from val, or from train
without the train shots where a dataset has no val split), the full test split. The drawn split is saved and reused.
Hyperparameters are selected on the val shots (best-on-val epoch), never on test.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backbone import CLIPBackbone
from ..datasets import DatasetInfo, Split, get_dataset, load_split
from ..distributed import Progress, current
from ..encoding import EncodedBatch, Encoder, Tokens, collect
from ..errors import CalipError
from ..metrics import topk_accuracy
from ..prompts import PromptSet, build_prompts, pointclip_fewshot_prompts
from ..results import provenance
from .config import FewShotConfig
from .methods import FewShotMethod, MethodSettings, get_method, zero_shot_logits
from .protocol import FewShotSplit, draw_split, get_split
from .training import load_checkpoint, save_checkpoint

SCHEMA = "calip3d.fewshot/1"


@dataclass
class FewShotData:
    """A dataset's train / val / test splits (val None where the dataset has none: ImageNet and 3D)."""

    info: DatasetInfo
    train: Split
    val: Split | None
    test: Split

    @classmethod
    def load(cls, config: FewShotConfig) -> "FewShotData":
        info = get_dataset(config.dataset)
        train, test = (load_split(info.name, config.data_root, s, config.points) for s in ("train", "test"))
        has_val = not info.is_points and info.name != "imagenet"
        val = load_split(info.name, config.data_root, "val") if has_val else None
        return cls(info, train, val, test)

    def draw(self, shots: int, seed: int) -> FewShotSplit:
        return draw_split(self.info.name, self.train.classnames, list(self.train.labels), self.train.ids, shots,
                          seed, list(self.val.labels) if self.val else None, self.val.ids if self.val else None)

    def test_split(self, limit: int | None) -> Split:
        return self.test.subset(np.arange(min(limit, len(self.test)))) if limit else self.test


def _prompts(data: FewShotData, templates: str | None) -> PromptSet:
    if data.info.is_points and templates is None:
        return pointclip_fewshot_prompts(data.train.classnames)
    return build_prompts(data.info.name, data.train.classnames, templates or "default")


def _note_ignored(config: FewShotConfig, method: type[FewShotMethod]) -> None:
    """A flag that does nothing for the chosen method is named, not silently dropped."""
    ignored = [f"--{k.replace('_', '-')}" for k in config.train.given()] if method.TRAIN is None else []
    ignored += ["--lr-grid"] if config.lr_grid and method.TRAIN is None else []
    ignored += ["--checkpoint"] if config.checkpoint and not method.module_checkpointed else []
    ignored += [f for f, on in (("--hidden", config.hidden is not None), ("--learn-betas", config.learn_betas),
                                ("--per-view", config.per_view)) if on and method.name != "calip-fs"]
    if ignored:
        print(f"note: {', '.join(ignored)} {'has' if len(ignored) == 1 else 'have'} no effect on --method "
              f"{method.name}; ignored", file=sys.stderr)


def _fit(method: FewShotMethod, lr_grid: tuple[float, ...] | None, train: Tokens, val: Tokens, text: torch.Tensor,
         copies: int) -> FewShotMethod:
    """Fit `method`; with `lr_grid`, once per learning rate, keeping the best on the val shots (first on ties)."""
    if not lr_grid or method.TRAIN is None:
        method.fit(train, val, text, copies=copies)
        return method
    if len(val) == 0:
        raise CalipError("--lr-grid selects on the val shots, but this split has none")
    best, search = None, []
    for lr in lr_grid:
        candidate = method.with_lr(lr)
        candidate.fit(train, val, text, copies=copies)
        search.append([lr, candidate.val_top1])
        if best is None or candidate.val_top1 > best.val_top1:
            best = candidate
    best.details["lr_search"] = search
    return best


def _shot_tokens(encoder: Encoder, data: FewShotData, split: FewShotSplit, augment: int,
                 seed: int) -> tuple[Tokens, Tokens] | None:
    """(train tokens: the shots then `augment` augmented copies, val tokens), never skipping an unreadable shot; None
    on the ranks of a torchrun job other than 0."""
    shots = replace(encoder, loading=replace(encoder.loading, skip_bad_files=False))
    train = data.train.subset(split.train)
    parts = [shots.tokens(train, "train shots")]
    parts += [shots.tokens(train.augmented(seed * 1000 + copy), f"augmented copy {copy + 1}") for copy in range(augment)]
    val_pool = data.val if split.val_source == "val" else data.train
    val = shots.tokens(val_pool.subset(split.val), "val shots")
    return (Tokens.concat(parts), val) if encoder.ranks.main else None


def _score_test(encoder: Encoder, method: FewShotMethod, test: Split, text: torch.Tensor, batch_size: int,
                zs_betas: tuple[float, float, float], views: int | None) -> dict[str, Any] | None:
    """The method's and the zero-shot references' logits of every test item, then their accuracies. Without a cache
    the test split is encoded and scored batch by batch (each rank its shard, with rank 0's fitted method); with one,
    rank 0 scores the cached tokens. None on the ranks of a torchrun job other than 0."""
    def reduce(batch: EncodedBatch) -> dict[str, torch.Tensor]:
        clip, calip = zero_shot_logits(batch.global_feats, batch.spatial_feats, text, zs_betas,
                                       method.settings.temperature, views)
        return {"method": method.logits(batch.global_feats, batch.spatial_feats, text), "clip": clip,
                "calip": calip}

    if encoder.cache.dir is None:  # `reduce` uses rank 0's fitted method, on this rank's device
        method = encoder.ranks.share(method)
        method.settings = replace(method.settings, device=str(encoder.backbone.device))
        outs = encoder.map(test, reduce, "test")
    else:
        tokens = encoder.tokens(test, "test split")
        with Progress(0 if tokens is None else len(tokens), "test") as progress:
            outs = None if tokens is None else collect(tokens.batches(batch_size), reduce, progress)
    if outs is None:
        return None
    labels = outs["labels"]
    scores: dict[str, Any] = {key: {"top1": topk_accuracy(outs[key], labels, 1),
                                    "top5": topk_accuracy(outs[key], labels, 5)} for key in ("method", "clip", "calip")}
    return {**scores, "num_samples": int(labels.numel())}


def run_fewshot(config: FewShotConfig, backbone: CLIPBackbone) -> tuple[dict[str, Any], Path] | None:
    """Draw (or reuse) the split, encode the shots, fit the method, score the test split. Returns the result (schema
    `calip3d.fewshot/1`) and the split file. In a torchrun job (`calip3d.distributed.session`) every rank encodes its
    shards, rank 0 alone fits the method, writes the split file and checkpoint and returns the result; the other ranks
    score their test shard with rank 0's method and return None."""
    method_cls = get_method(config.method)
    _note_ignored(config, method_cls)
    if config.eval_only and not method_cls.module_checkpointed:
        raise CalipError("--eval-only loads a trained module: use it with --method calip-fs or pointclip-adapter")
    data = FewShotData.load(config)
    split_path = Path(config.split_dir) / f"{data.info.name}_shot{config.shots}_seed{config.seed}.json"
    ranks = current()
    split, reused = ranks.agree(get_split(split_path, data.draw(config.shots, config.seed)) if ranks.main else None)
    if split.with_replacement:
        print(f"note: {len(split.with_replacement)} class(es) have fewer than {config.shots} train items and were "
              f"sampled with replacement (listed in {split_path})", file=sys.stderr)
    if split.empty:
        print(f"note: classes with no train item keep only their text features: {', '.join(split.empty)}",
              file=sys.stderr)
    projector = config.projector.build(backbone.image_size) if data.info.is_points else None
    views = projector.num_views if projector else None
    encoder = config.encode.encoder(backbone, projector)
    prompts = _prompts(data, config.templates)
    text = backbone.prompt_features(prompts.prompts)
    betas = config.betas or (1.0, *data.info.default_betas[0])
    settings = MethodSettings(betas=betas, temperature=config.encode.temperature, seed=config.seed,
                              device=str(backbone.device), hidden=config.hidden, learn_betas=config.learn_betas,
                              shared_views=not config.per_view)
    train = config.train.apply(method_cls.TRAIN) if method_cls.TRAIN else None
    method = method_cls(settings, views, train)
    meta = {"backbone": backbone.info.name, "weights": backbone.info.weights, "classnames": list(data.train.classnames),
            "dataset": data.info.name, "views": views, "method": config.method, "prompts": prompts.description}
    checkpoint = Path(config.checkpoint) if config.checkpoint else Path("results/fewshot/checkpoints") / \
        f"{data.info.name}_{config.method}_{config.shots}shot_seed{config.seed}.pt"
    if config.eval_only:
        load_checkpoint(checkpoint, expected_meta=meta, module=method.build_module(backbone.embed_dim))
    else:
        shot_tokens = _shot_tokens(encoder, data, split, config.augment, config.seed)
        if shot_tokens is not None:  # rank 0 (the other ranks get its fitted method in _score_test)
            method = _fit(method, config.lr_grid, *shot_tokens, text, 1 + config.augment)
            if method.module_checkpointed:
                save_checkpoint(checkpoint, method.module, {**meta, "shots": config.shots, "seed": config.seed})
    scores = _score_test(encoder, method, data.test_split(config.limit), text, config.encode.batch_size, betas, views)
    if scores is None:
        return None
    result = {
        "schema": SCHEMA, "dataset": data.info.name, "method": config.method, "shots": config.shots,
        "seed": config.seed, "num_samples": scores["num_samples"], "num_classes": len(data.train.classnames),
        "test": scores["method"], "val_top1": method.val_top1,
        "zero_shot_reference": {"clip": scores["clip"], "calip": {**scores["calip"], "betas": list(betas)}},
        "split_file": str(split_path), "split_reused": reused,
        "split": {k: v for k, v in asdict(split).items() if k not in ("train", "val", "classnames")},
        "hyperparameters": {**method.hyperparameters(), "augment": config.augment, "selection": method.selection},
        "checkpoint": str(checkpoint) if method.module_checkpointed else None,
        "history": [r._asdict() for r in method.train_result.history] if method.train_result else None,
        "provenance": provenance(backbone=backbone.info.as_dict(), precision=backbone.precision,
                                 templates=prompts.description, test_split_file=data.test.source,
                                 projector=projector.describe() if projector else None, **encoder.distribution(),
                                 compiled=backbone.compiled),
    }
    return result, split_path
