"""`run_fewshot`: K-shot training of CALIP-FS or a baseline on frozen CLIP features, then the test split.

Protocol (CoOp's): K train shots per class drawn with the seed, min(K, 4) val shots per class (from val, or from train
without the train shots where a dataset has no val split), the full test split. The drawn split is saved and reused.
What is chosen on which data follows `config.protocol` (`calip3d.fewshot.selection`): the honest protocol chooses
everything on the val shots; the release protocol as each baseline's released code does, labelled.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backbone import CLIPBackbone
from ..datasets import DatasetInfo, Split, get_dataset
from ..distributed import Progress, Ranks, current
from ..encoding import EncodedBatch, Encoder, Tokens, collect
from ..errors import CalipError
from ..metrics import topk_accuracy
from ..pointnn.features import PointNNConfig, pointnn_features
from ..prompts import PromptSet, build_prompts, pointclip_fewshot_prompts
from ..results import FEWSHOT_SCHEMA, provenance
from ..run_context import RunContext
from .betas import resolve_betas
from .config import FewShotConfig
from .methods import FewShotMethod, FitData, MethodSettings, get_method, zero_shot_logits
from .protocol import ALL_SHOTS, FewShotSplit, draw_split, get_split
from .selection import TEST_SPLIT, VAL_SHOTS, VAL_SPLIT, Selection
from .training import load_checkpoint, save_checkpoint


@dataclass
class FewShotData:
    """A run's dataset (its `context`) and its train / val / test splits (val None where the dataset has none:
    ImageNet and 3D)."""

    context: RunContext
    train: Split
    val: Split | None
    test: Split

    @classmethod
    def load(cls, context: RunContext) -> "FewShotData":
        train, test = (context.load(s) for s in ("train", "test"))
        return cls(context, train, context.load("val") if context.info.has_val_split else None, test)

    @property
    def info(self) -> DatasetInfo:
        return self.context.info

    def draw(self, shots: int, seed: int, short_classes: str) -> FewShotSplit:
        return draw_split(self.info.name, self.train.classnames, list(self.train.labels), self.train.ids, shots,
                          seed, list(self.val.labels) if self.val else None, self.val.ids if self.val else None,
                          short_classes)

    def test_split(self, limit: int | None) -> Split:
        """The test split, or `limit` of its items spread evenly over it (splits are sorted by class, so the first
        items would all be one class)."""
        if not limit or limit >= len(self.test):
            return self.test
        return self.test.subset(np.linspace(0, len(self.test) - 1, limit).round().astype(np.int64))


def _prompts(data: FewShotData, templates: str | None) -> PromptSet:
    if data.info.is_points and templates is None:
        return pointclip_fewshot_prompts(data.train.classnames)
    return build_prompts(data.info.name, data.train.classnames, templates or "default")


def _split_notes(split: FewShotSplit, path: Path) -> None:
    """Say which classes had too few train items, and how they were handled."""
    if split.short:
        handled = "keep all their items" if split.short_classes == "keep" else "were sampled with replacement"
        print(f"note: {len(split.short)} class(es) have fewer than {split.shots} train items and {handled} "
              f"(--short-classes {split.short_classes}; listed in {path})", file=sys.stderr)
    if split.empty:
        print(f"note: classes with no train item keep only their text features: {', '.join(split.empty)}",
              file=sys.stderr)


def _fit(method: FewShotMethod, lr_grid: tuple[float, ...] | None, data: FitData) -> FewShotMethod:
    """Fit `method`; with `lr_grid`, once per learning rate, keeping the best on the val shots (first on ties)."""
    if not lr_grid or method.train_config is None:
        method.fit(data)
        return method
    if len(data.sets[VAL_SHOTS]) == 0:
        raise CalipError("FewShotConfig.lr_grid selects on the val shots, but this split has none")
    best, search = None, []
    for lr in lr_grid:
        candidate = method.with_lr(lr)
        candidate.fit(data)
        search.append([lr, candidate.val_top1])
        if best is None or candidate.val_top1 > best.val_top1:
            best = candidate
    best.details["lr_search"] = search
    best.extra_selections.append(Selection("lr", VAL_SHOTS, "first best accuracy over --lr-grid"))
    return best


def _split(config: FewShotConfig, data: FewShotData, ranks: Ranks) -> tuple[FewShotSplit, Path, bool]:
    """The saved split (drawn and written by rank 0, shared with the other ranks), its file and whether it was reused."""
    suffix = "" if config.short_classes == "keep" else f"_{config.short_classes}"
    path = Path(config.split_dir) / f"{data.info.file_stem}_shot{config.shots}_seed{config.seed}{suffix}.json"
    split, reused = ranks.agree(get_split(path, data.draw(config.shots, config.seed, config.short_classes))
                                if ranks.main else None)
    _split_notes(split, path)
    return split, path, reused


def _shot_tokens(encoder: Encoder, data: FewShotData, split: FewShotSplit, augment: int, seed: int,
                 val_only: bool) -> tuple[Tokens | None, list[Tokens | None], Tokens | None]:
    """(train shots, `augment` augmented copies of them, val shots), never skipping an unreadable shot; only the val
    shots with `val_only`. No val shot (every train item of a class is a train shot): empty val tokens. In a
    torchrun job every rank encodes its shards and only rank 0 gets the tokens."""
    shots = replace(encoder, loading=replace(encoder.loading, skip_bad_files=False))
    val_pool = data.val if split.val_source == "val" else data.train
    val_split = val_pool.subset(split.val)
    val = shots.tokens(val_split, "val shots") if len(val_split) else None
    if val_only:
        return None, [], val
    train = data.train.subset(split.train)
    copies = [shots.tokens(train.augmented(seed * 1000 + copy), f"augmented copy {copy + 1}") for copy in range(augment)]
    train_tokens = shots.tokens(train, "train shots")
    if val is None and train_tokens is not None:
        val = train_tokens.subset([])
    return train_tokens, copies, val


def _score_test(encoder: Encoder, method: FewShotMethod, test: Split, encoded: Tokens | None, has_encoded: bool,
                text: torch.Tensor, batch_size: int, zs_betas: tuple[float, float, float],
                views: int | None) -> dict[str, Any] | None:
    """The method's and the zero-shot references' logits of every test item, then their accuracies. Test tokens
    already `encoded` (a release choice read them) or cached are scored by rank 0; otherwise the test split is encoded
    and scored batch by batch, each rank its shard with rank 0's fitted method. None on the other ranks."""
    def reduce(batch: EncodedBatch) -> dict[str, torch.Tensor]:
        clip, calip = zero_shot_logits(batch.global_feats, batch.spatial_feats, text, zs_betas,
                                       method.settings.temperature, views)
        return {"method": method.logits(batch, text), "clip": clip, "calip": calip}

    if not has_encoded and encoder.cache.dir is None:  # `reduce` uses rank 0's fitted method, on this rank's device
        method = encoder.ranks.share(method)
        method.settings = replace(method.settings, device=str(encoder.backbone.device))
        outs = encoder.map(test, reduce, "test")
    else:
        tokens = encoded if has_encoded else encoder.tokens(test, "test split")
        with Progress(0 if tokens is None else len(tokens), "test") as progress:
            outs = None if tokens is None else collect(tokens.batches(batch_size), reduce, progress)
    if outs is None:
        return None
    labels = outs["labels"]
    scores: dict[str, Any] = {key: {"top1": topk_accuracy(outs[key], labels, 1),
                                    "top5": topk_accuracy(outs[key], labels, 5)} for key in ("method", "clip", "calip")}
    return {**scores, "num_samples": int(labels.numel())}


def pointnn_config(config: FewShotConfig, backbone: CLIPBackbone, memory: bool) -> PointNNConfig:
    """Point-NN's settings for a run: the release's encoder; its batch-wide statistic under the release protocol,
    the per-cloud one otherwise (`pointnn_normalize` overrides); the memory clouds' point order shuffled with the
    run's seed only with `pointnn_shuffle`."""
    normalize = config.pointnn_normalize or ("batch" if config.protocol == "release" else "cloud")
    shuffle = config.seed if memory and config.pointnn_shuffle else None
    return PointNNConfig(normalize=normalize, shuffle_seed=shuffle, device=str(backbone.device))


def _pointnn_inputs(config: FewShotConfig, data: FewShotData, split: FewShotSplit, test: Split, encoder: Encoder,
                    backbone: CLIPBackbone) -> dict[str, Any] | None:
    """Point-NN features and labels of the train shots (the memory), the val shots and the test split, on rank 0
    (every rank encodes its share); the settings used."""
    val_pool = data.val if split.val_source == "val" else data.train
    parts = {"train": data.train.subset(split.train), "val": val_pool.subset(split.val), "test": test}
    out: dict[str, Any] = {"all_shots": config.shots == ALL_SHOTS,
                           "encoder": pointnn_config(config, backbone, memory=True).describe()}
    for name, part in parts.items():
        settings = pointnn_config(config, backbone, memory=name == "train")
        out[name] = pointnn_features(part, settings, encoder.cache, encoder.ranks, f"Point-NN {name}")
        out[f"{name}_labels"] = torch.as_tensor(part.labels, dtype=torch.long)
    return out if encoder.ranks.main else None


def _release_reported(method: FewShotMethod, test_top1: float) -> dict[str, Any] | None:
    """Tip-Adapter-F's release prints max(best-epoch test accuracy, after-search test accuracy)."""
    if method.name != "tip-adapter-f" or method.settings.options.protocol != "release" or method.train_result is None:
        return None
    return {"top1": max(method.train_result.best_val_acc, test_top1), "rule": "max(the test-chosen epoch's test "
            "accuracy at the initial alpha, beta; the test accuracy after the search), as Tip-Adapter main.py "
            "prints it: ORACLE"}


def _note_ignored(config: FewShotConfig, method_cls: type[FewShotMethod], info: DatasetInfo) -> list[str]:
    """The flags that do nothing for the chosen method, said in a note (and recorded in the result)."""
    ignored = config.without_effect(method_cls, info.is_points)
    if ignored:
        print(f"note: {', '.join(ignored)} {'has' if len(ignored) == 1 else 'have'} no effect on --method "
              f"{method_cls.name}{'' if info.is_points else ' with an image dataset'}; ignored", file=sys.stderr)
    return ignored


def run_fewshot(config: FewShotConfig, backbone: CLIPBackbone) -> tuple[dict[str, Any], Path] | None:
    """Draw (or reuse) the split, encode the shots, fit the method, score the test split. Returns the result (schema
    `calip3d.fewshot/2`) and the split file. In a torchrun job (`calip3d.distributed.session`) every rank encodes its
    shards, rank 0 alone fits the method, writes the split file and checkpoint and returns the result; the other ranks
    score their test shard with rank 0's method and return None. One straight sequence: split, encoder and prompts,
    shots, betas, method, the sets its choices read, fit, test, result."""
    method_cls = get_method(config.method)
    ignored = _note_ignored(config, method_cls, get_dataset(config.dataset))
    if config.base is not None and config.base not in method_cls.BASES:
        takes = f"takes base {' or '.join(method_cls.BASES)}" if method_cls.BASES else "adds to no zero-shot logits"
        raise CalipError(f"FewShotConfig.base is {config.base!r}, but method {method_cls.name} {takes}")
    if config.shots == ALL_SHOTS and not method_cls.all_shots:
        raise CalipError(f"FewShotConfig.shots 'all' (the whole train split) is for Point-NN's memory; method "
                         f"{method_cls.name} takes K shots per class")
    if config.eval_only and not method_cls.module_checkpointed:
        raise CalipError("FewShotConfig.eval_only loads a trained module: use it with FewShotConfig.method "
                         "'calip-fs' or 'pointclip-adapter'")
    context = RunContext.build(config, backbone)
    data = FewShotData.load(context)
    ranks = current()
    split, split_path, reused = _split(config, data, ranks)
    views, encoder = context.views, context.encoder
    prompts = _prompts(data, config.templates)
    text = backbone.prompt_features(prompts.prompts)
    augment = method_cls.default_augment(data.info.name) if config.augment is None else config.augment
    shots, copies, val = _shot_tokens(encoder, data, split, augment, config.seed, config.eval_only)
    betas, betas_selection = ranks.agree(resolve_betas(config.calip.betas, config.protocol, data.info, val, text,
                                                       config.calip.temperature, views) if ranks.main else None)
    settings = MethodSettings(
        options=config, dataset=data.info.name, has_val_split=data.val is not None, betas=betas,
        betas_selection=betas_selection, temperature=config.calip.temperature, device=str(backbone.device),
        augment=augment)
    method = method_cls(settings, views)
    test = data.test_split(config.limit)
    sets = {VAL_SHOTS: val}
    sources = {s.source for s in method.selections()}
    if VAL_SPLIT in sources:
        sets[VAL_SPLIT] = encoder.tokens(data.val, "val split")
    if TEST_SPLIT in sources:  # a release choice made on test (ORACLE); otherwise test is encoded after fitting
        sets[TEST_SPLIT] = encoder.tokens(test, "test split")
    extra = {"pointnn": _pointnn_inputs(config, data, split, test, encoder, backbone)} \
        if method_cls.needs_pointnn else {}
    meta = {"backbone": backbone.info.name, "weights": backbone.info.weights, "classnames": list(data.train.classnames),
            "dataset": data.info.name, "views": views, "method": config.method, "prompts": prompts.description,
            "features": config.features}
    checkpoint = Path(config.checkpoint) if config.checkpoint else Path("results/fewshot/checkpoints") / \
        f"{data.info.file_stem}_{config.method}_{config.shots}shot_seed{config.seed}.pt"
    if config.eval_only:
        load_checkpoint(checkpoint, expected_meta=meta, module=method.build_module(backbone.embed_dim))
    elif ranks.main:  # the other ranks get the fitted method when they score their test shards
        method = _fit(method, config.lr_grid, FitData(shots, copies, text, sets, extra))
        if method.module_checkpointed:
            save_checkpoint(checkpoint, method.module, {**meta, "shots": config.shots, "seed": config.seed})
    scores = _score_test(encoder, method, test, sets.get(TEST_SPLIT), TEST_SPLIT in sets, text,
                         config.encode.batch_size, betas, views)
    if scores is None:
        return None
    selections = method.selections()
    result = {
        "schema": FEWSHOT_SCHEMA, "dataset": data.info.name, "method": config.method, "shots": config.shots,
        "seed": config.seed, "protocol": config.protocol, "num_samples": scores["num_samples"],
        "num_classes": len(data.train.classnames), "test": scores["method"], "val_top1": method.val_top1,
        "oracle": any(s.oracle for s in selections), "selections": [s.as_dict() for s in selections],
        "release_reported": _release_reported(method, scores["method"]["top1"]),
        "zero_shot_reference": {"clip": scores["clip"],
                                "calip": {**scores["calip"], "betas": list(betas), "betas_selection":
                                          betas_selection.as_dict()}},
        "split_file": str(split_path), "split_reused": reused,
        "split": {k: v for k, v in asdict(split).items() if k not in ("train", "val", "classnames")},
        "hyperparameters": method.hyperparameters(), "ignored_flags": ignored,
        "checkpoint": str(checkpoint) if method.module_checkpointed else None,
        "history": [r._asdict() for r in method.train_result.history] if method.train_result else None,
        "provenance": provenance(**context.provenance(  # images: points and projector recorded as None
            data.test, device=str(backbone.device), templates=prompts.description, test_split_file=data.test.source,
            limit=config.limit, **({} if data.info.is_points else {"points": None, "projector": None}))),
    }
    return result, split_path
