"""The few-shot methods behind one interface and one registry: `fit` on the encoded shots, then `logits` of test
batches. Each method owns its defaults (`train_defaults`, `default_augment`), the config fields it reads
(`OPTIONS`: any other flag is reported as having no effect), what it chooses and on which data under each protocol
(`selections`), and records exactly the hyperparameters it used (`hyperparameters`).

Every method sees the same frozen features. For point clouds, the global-feature baselines (Tip-Adapter(-F), linear
probe) use PointCLIP's formulation: the normalised concatenation of the V view features against the normalised text
repeated V times, so `f . t = mean_v <f_v, t>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol

import torch
import torch.nn.functional as F

from ..aggregation import aggregate_views, flat_global, mean_weights
from ..attention import combine_terms
from ..attention.parametric import ParametricCALIP
from ..encoding import Tokens, view_terms
from ..errors import CalipError
from ..metrics import topk_accuracy
from ..reference import register_comparable
from ..published import LOGIT_SCALE, TIP_ADAPTER_FALLBACK, TIP_ADAPTER_RELEASED, TIP_ADAPTER_SOURCE, TipAdapterRelease
from .baselines import LinearProbe, PointCLIPAdapter, TipAdapter, TipAdapterF
from .config import FewShotConfig
from .selection import TEST_SPLIT, VAL_SHOTS, Selection, released_search
from .training import TRAIN_DEFAULTS, TrainConfig, TrainResult, predict, train_classifier

METHODS: dict[str, type["FewShotMethod"]] = {}  # filled by `register_method`, in registration order


def register_method(cls: type["FewShotMethod"]) -> type["FewShotMethod"]:
    """Class decorator: add a few-shot method to `METHODS` under its `name` (one entry per method)."""
    if cls.name in METHODS:
        raise ValueError(f"few-shot method {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    register_comparable(cls.name, cls.paper_method, few_shot=True)
    return cls


class TokenBatch(Protocol):
    """What `logits` reads of a batch (`EncodedBatch` or `Tokens`)."""

    global_feats: torch.Tensor
    spatial_feats: torch.Tensor
    global_norms: torch.Tensor | None


def flat_text(text: torch.Tensor, views: int | None) -> torch.Tensor:
    return text.float() if not views else F.normalize(text.float().repeat(1, views), dim=-1)


def raw_global(batch: TokenBatch) -> torch.Tensor:
    """CLIP's unnormalised global features `[N, (V,) D]`."""
    if batch.global_norms is None:
        raise CalipError("these features carry no norms; encode them again (the raw features are needed)")
    return batch.global_feats.float() * batch.global_norms.float().unsqueeze(-1)


def cache_features(batch: TokenBatch) -> torch.Tensor:
    """What Tip-Adapter averages over augmented passes before normalising once: raw CLIP features for images, as
    released; for point clouds (no release) PointCLIP's normalised concatenation of the views, `[N, F]`."""
    return flat_global(batch.global_feats) if batch.global_feats.ndim == 3 else raw_global(batch)


def zero_shot_logits(glob: torch.Tensor, spatial: torch.Tensor, text: torch.Tensor, betas: tuple[float, ...],
                     temperature: float, views: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(CLIP/PointCLIP logits, CALIP logits) `[B, K]` of one batch; 3D terms are averaged over views (1/V)."""
    terms = view_terms(glob, spatial, text, temperature)
    if views:
        terms = tuple(aggregate_views(t, mean_weights(views)) for t in terms)
    return LOGIT_SCALE * terms[0], combine_terms(terms, betas)


def tip_released(dataset: str) -> tuple[TipAdapterRelease, str]:
    """Tip-Adapter's released config for `dataset` (ImageNet's where it has none, e.g. point clouds) and its
    source."""
    key = dataset if dataset in TIP_ADAPTER_RELEASED else TIP_ADAPTER_FALLBACK
    source = TIP_ADAPTER_SOURCE.format({"fgvc_aircraft": "fgvc"}.get(key, key))
    return TIP_ADAPTER_RELEASED[key], source + ("" if key == dataset else f" (no Tip-Adapter config for {dataset})")


@dataclass(frozen=True)
class MethodSettings:
    """What a method reads: the run's config (`options`: the user's choices) and what the run resolved: the
    dataset's name and whether it has a val split, CALIP's betas (how they were chosen: `betas_selection`) and
    temperature, the device and the number of augmented copies (`options.augment` or the method's default)."""

    options: FewShotConfig
    dataset: str
    has_val_split: bool
    betas: tuple[float, float, float]
    betas_selection: Selection
    temperature: float
    device: str
    augment: int


@dataclass
class FitData:
    """What a method is fitted on: the K train shots, their augmented copies (same items, same order), the class
    text features `[K, D]`, and the labelled sets its selections are made on, by source (`VAL_SHOTS` always;
    `VAL_SPLIT` and `TEST_SPLIT` when a release-protocol selection reads them), and `extra` inputs a method needs
    beyond the tokens (`needs_pointnn`: Point-NN features of the train shots, val shots and test split)."""

    shots: Tokens
    copies: list[Tokens]
    text: torch.Tensor
    sets: dict[str, Tokens]
    extra: dict[str, Any] = field(default_factory=dict)  # inputs beyond CLIP's tokens (Point-NN's features)

    def rows(self) -> Tokens:
        """The shots and their copies as one set of training rows."""
        return Tokens.concat([self.shots, *self.copies])

    def cycled(self) -> tuple[Tokens, int]:
        """The augmented copies copy after copy, and their number (the shots themselves when there is none), for
        training that draws a new augmentation every epoch."""
        return (Tokens.concat(self.copies), len(self.copies)) if self.copies else (self.shots, 1)


class FewShotMethod:
    """Base class: `fit(data)` then `logits(batch, text)` per test batch. Subclasses set `name`, `OPTIONS` (the
    `FewShotConfig` fields they read beyond the common ones), `TRAIN` (None: not trained by gradient descent) and
    `module_checkpointed` (a trained module that `--checkpoint` saves and `--eval-only` reloads)."""

    name: ClassVar[str]
    OPTIONS: ClassVar[frozenset[str]] = frozenset()
    TRAIN: ClassVar[TrainConfig | None] = None
    module_checkpointed: ClassVar[bool] = False
    needs_views: ClassVar[bool] = False
    BASES: ClassVar[tuple[str, ...]] = ()  # zero-shot logits the method can add to (`FewShotConfig.base`)
    DEFAULT_BASE: ClassVar[str | None] = None
    paper_method: ClassVar[str | None] = None  # the published method its K-shot numbers compare with
    needs_pointnn: ClassVar[bool] = False  # fitted on Point-NN features of the clouds (FitData.extra["pointnn"])
    all_shots: ClassVar[bool] = False  # takes `shots` "all" (the whole train split)

    def __init__(self, settings: MethodSettings, views: int | None) -> None:
        if self.needs_views and not views:
            raise CalipError(f"FewShotConfig.method {self.name!r} needs a 3D dataset (it adapts per-view features)")
        self.settings, self.views = settings, views
        defaults = self.train_defaults(settings.dataset)
        self.train_config = None if defaults is None else \
            replace(settings.options.train.over(defaults), seed=settings.options.seed, device=settings.device)
        self.module: torch.nn.Module | None = None
        self.train_result: TrainResult | None = None
        self.val_top1: float | None = None
        self.details: dict[str, Any] = {}
        self.extra_selections: list[Selection] = []

    @classmethod
    def train_defaults(cls, dataset: str) -> TrainConfig | None:
        """Every training setting this method uses on `dataset` where the user gives none (`FewShotConfig.train`)."""
        return None if cls.TRAIN is None else cls.TRAIN.over(TRAIN_DEFAULTS)

    @classmethod
    def default_augment(cls, dataset: str) -> int:
        """Augmented copies of the train shots encoded when `--augment` is not given."""
        return 0

    def selections(self) -> list[Selection]:
        """What this method chooses, on which data, under its protocol."""
        return list(self.extra_selections)

    def with_lr(self, lr: float) -> "FewShotMethod":
        """A fresh copy of this method that trains with learning rate `lr`."""
        options = self.settings.options
        return type(self)(replace(self.settings, options=replace(options, train=replace(options.train, lr=lr))),
                          self.views)

    def fit(self, data: FitData) -> None:
        """Fit on `data`; the accuracy on the val shots is kept in `val_top1`."""
        raise NotImplementedError

    def logits(self, batch: TokenBatch, text: torch.Tensor) -> torch.Tensor:
        """Scores `[B, K]` of one batch of tokens."""
        raise NotImplementedError

    def build_module(self, dim: int) -> torch.nn.Module:
        """The trainable module (also used to rebuild it from a checkpoint)."""
        raise CalipError(f"FewShotConfig.method {self.name!r} has no trainable module to checkpoint")

    def hyperparameters(self) -> dict[str, Any]:
        """Exactly the settings this method used."""
        return {**(self.train_config.as_dict() if self.train_config else {}), **self.details}

    @property
    def base(self) -> str | None:
        """The zero-shot logits this method adds to: "clip" (CLIP / PointCLIP), "calip" (CALIP with the run's
        betas) or None."""
        base = self.settings.options.base or self.DEFAULT_BASE
        return "clip" if base == "pointclip" else base

    def base_logits(self, batch: TokenBatch, text: torch.Tensor) -> torch.Tensor:
        """`[B, K]` zero-shot logits of `base` (3D: views averaged), the run's betas for CALIP."""
        clip, calip = zero_shot_logits(batch.global_feats, batch.spatial_feats, text, self.settings.betas,
                                       self.settings.temperature, self.views)
        return calip if self.base == "calip" else clip

    def _score_val(self, data: FitData) -> None:
        val = data.sets[VAL_SHOTS]
        if len(val):
            self.val_top1 = topk_accuracy(self.logits(val, data.text), val.labels)

    def _augmentation(self, use: str) -> dict[str, Any]:
        return {"augment": self.settings.augment, **({"augmentation": use} if self.settings.augment else {})}


@register_method
class CalipFS(FewShotMethod):
    """CALIP-FS: `ParametricCALIP` trained on the shots (docs/calip_fs.md), best epoch on the val shots. There is
    no released code, so both protocols choose the epoch on the val shots; they differ in the starting betas."""

    name = "calip-fs"
    OPTIONS = frozenset({"train", "lr_grid", "hidden", "learn_betas", "per_view", "augment", "checkpoint",
                         "eval_only"})
    TRAIN = TRAIN_DEFAULTS
    module_checkpointed = True

    def selections(self) -> list[Selection]:
        epoch = Selection("epoch", VAL_SHOTS, "first best accuracy", "CALIP-FS code is unreleased: the honest rule "
                          "under both protocols")
        return [self.settings.betas_selection, epoch, *self.extra_selections]

    def build_module(self, dim: int) -> torch.nn.Module:
        s, o = self.settings, self.settings.options
        views = self.views or 1
        self.module = ParametricCALIP(dim, num_views=views, shared_views=not o.per_view, hidden=o.hidden,
                                      betas=s.betas, learn_betas=o.learn_betas, temperature=s.temperature,
                                      view_weights=mean_weights(views) if self.views else None, init_seed=o.seed)
        return self.module

    def fit(self, data: FitData) -> None:
        rows, val = data.rows(), data.sets[VAL_SHOTS]
        module = self.build_module(rows.global_feats.shape[-1])
        has_val = len(val) > 0
        self.train_result = train_classifier(
            module, (rows.global_feats, rows.spatial_feats), rows.labels,
            (val.global_feats, val.spatial_feats) if has_val else None, val.labels if has_val else None, data.text,
            self.train_config, desc="CALIP-FS")
        self.val_top1 = self.train_result.best_val_acc

    def logits(self, batch: TokenBatch, text: torch.Tensor) -> torch.Tensor:
        return predict(self.module, (batch.global_feats, batch.spatial_feats), text, device=self.settings.device)

    def hyperparameters(self) -> dict[str, Any]:
        s, o = self.settings, self.settings.options
        return {**super().hyperparameters(), "hidden": o.hidden, "learn_betas": o.learn_betas,
                "shared_views": not o.per_view, "betas": list(s.betas), "temperature": s.temperature,
                **self._augmentation("the copies are extra training rows")}


@register_method
class TipAdapterMethod(FewShotMethod):
    """Tip-Adapter's training-free cache model with its released per-dataset settings; the cache keys are the mean
    of the augmented copies' raw features, normalised once; alpha and beta searched as each protocol says."""

    name = "tip-adapter"
    paper_method = "Tip-Adapter"
    OPTIONS = frozenset({"augment", "tip"})
    MODEL: ClassVar[type[TipAdapter]] = TipAdapter
    RELEASED = "Tip-Adapter main.py search_hp on the full val split"

    @classmethod
    def default_augment(cls, dataset: str) -> int:
        return tip_released(dataset)[0].augment_epochs

    def _search_selection(self) -> Selection:
        return released_search("alpha, beta", "first maximum of Tip-Adapter's grid (beta outer, alpha inner)",
                               self.settings.options.protocol, self.settings.has_val_split, self.RELEASED)

    def selections(self) -> list[Selection]:
        return [self._search_selection()]

    def _keys(self, data: FitData) -> torch.Tensor:
        """`[A, M, F]` cache features of the augmented copies (the release averages 10 augmented passes), or of the
        shots `[M, F]` without copies."""
        if not data.copies:
            return cache_features(data.shots)
        return torch.stack([cache_features(copy) for copy in data.copies])

    def _labelled(self, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor] | None:
        return (flat_global(tokens.global_feats), tokens.labels) if len(tokens) else None

    def fit(self, data: FitData) -> None:
        tip = self.settings.options.tip.resolve(*tip_released(self.settings.dataset))
        (beta_scale, alpha_scale), (beta_steps, alpha_steps) = tip["search_scale"], tip["search_steps"]
        self.model = self.MODEL(alpha=tip["init_alpha"], beta=tip["init_beta"], beta_scale=beta_scale,
                                alpha_scale=alpha_scale, beta_steps=beta_steps, alpha_steps=alpha_steps)
        search = self._labelled(data.sets[self._search_selection().source])
        self._fit_model(self._keys(data), data.shots.labels, flat_text(data.text, self.views), search, data)
        self.details = {"alpha": self.model.alpha, "beta": self.model.beta, **tip,
                        **self._augmentation("cache keys: the mean of the copies' raw features, normalised once")}
        self._score_val(data)

    def _fit_model(self, keys: torch.Tensor, labels: torch.Tensor, text: torch.Tensor,
                   search: tuple[torch.Tensor, torch.Tensor] | None, data: FitData) -> None:
        self.model.fit(keys, labels, text, *(search or (None, None)))

    def logits(self, batch: TokenBatch, text: torch.Tensor) -> torch.Tensor:
        return self.model.logits(flat_global(batch.global_feats))


@register_method
class TipAdapterFMethod(TipAdapterMethod):
    """Tip-Adapter-F: the cache keys fine-tuned with the released settings under both protocols (AdamW, batch 256,
    weight decay 0.01, no label smoothing, 20 epochs, EuroSAT 100), one augmented copy per epoch; the epoch and
    then alpha and beta chosen as each protocol says."""

    name = "tip-adapter-f"
    paper_method = "Tip-Adapter-F"
    OPTIONS = frozenset({"augment", "tip", "train", "lr_grid"})
    MODEL = TipAdapterF
    TRAIN = TipAdapterF.TRAIN

    @classmethod
    def train_defaults(cls, dataset: str) -> TrainConfig:
        return replace(super().train_defaults(dataset), epochs=tip_released(dataset)[0].train_epochs)

    def _epoch_selection(self) -> Selection:
        if self.settings.options.protocol == "honest":
            return Selection("epoch", VAL_SHOTS, "first best accuracy at the initial alpha, beta")
        return Selection("epoch", TEST_SPLIT, "first best accuracy at the initial alpha, beta", "as released: "
                         "Tip-Adapter main.py evaluates every epoch on test and keeps the best", oracle=True)

    def selections(self) -> list[Selection]:
        return [self._epoch_selection(), self._search_selection(), *self.extra_selections]

    def _fit_model(self, keys: torch.Tensor, labels: torch.Tensor, text: torch.Tensor,
                   search: tuple[torch.Tensor, torch.Tensor] | None, data: FitData) -> None:
        select = self._labelled(data.sets[self._epoch_selection().source])
        self.model.fit(keys, labels, text, select=select, search=search, train=self.train_config)
        self.train_result = self.model.train_result

    def hyperparameters(self) -> dict[str, Any]:
        cycled = "; training: one copy per epoch, cycled (the release draws anew every epoch)"
        return {**super().hyperparameters(),
                **({"augmentation": self.details["augmentation"] + cycled} if self.settings.augment else {})}


@register_method
class LinearProbeMethod(FewShotMethod):
    """The CLIP paper's linear probe (L-BFGS logistic regression) on raw features, as CoOp's `lpclip` extracts
    them (or L2-normalised, as CLIP_benchmark), C searched on the val shots; the release keeps the last bisection
    step's C, the honest protocol the best C tried."""

    name = "linear-probe"
    OPTIONS = frozenset({"features", "augment"})

    def selections(self) -> list[Selection]:
        if self.settings.options.protocol == "honest":
            return [Selection("C", VAL_SHOTS, "best of CoOp's grid and 8 bisection steps")]
        return [Selection("C", VAL_SHOTS, "winner of the last of 8 bisection steps after CoOp's grid",
                          "as released: CoOp lpclip/linear_probe.py")]

    def _inputs(self, batch: TokenBatch) -> torch.Tensor:
        raw = self.settings.options.features == "raw"
        return raw_global(batch).flatten(1) if raw else flat_global(batch.global_feats)

    def fit(self, data: FitData) -> None:
        rows, val = data.rows(), data.sets[VAL_SHOTS]
        has_val = len(val) > 0
        choose = "best" if self.settings.options.protocol == "honest" else "last"
        self.model = LinearProbe(normalize=False, choose=choose).fit(
            self._inputs(rows), rows.labels, self._inputs(val) if has_val else None, val.labels if has_val else None,
            num_classes=data.text.shape[0])
        self.details = {"C": self.model.C, "features": self.settings.options.features, "choose": choose,
                        "search": [list(map(float, x)) for x in self.model.search_history],
                        **self._augmentation("the copies are extra training rows")}
        self._score_val(data)

    def logits(self, batch: TokenBatch, text: torch.Tensor) -> torch.Tensor:
        return self.model.logits(self._inputs(batch))


@register_method
class PointCLIPAdapterMethod(FewShotMethod):
    """PointCLIP's inter-view adapter on the per-view global features (3D only), trained as released: raw CLIP
    features, a new draw of its scale/shift augmentation every epoch (cycled pre-encoded copies)."""

    name = "pointclip-adapter"
    paper_method = "PointCLIP"
    OPTIONS = frozenset({"train", "lr_grid", "features", "augment", "checkpoint", "eval_only"})
    TRAIN = PointCLIPAdapter.TRAIN
    module_checkpointed = True
    needs_views = True

    @classmethod
    def default_augment(cls, dataset: str) -> int:
        return 10

    def selections(self) -> list[Selection]:
        if self.settings.options.protocol == "honest":
            epoch = Selection("epoch", VAL_SHOTS, "first best accuracy")
        else:
            epoch = Selection("epoch", TEST_SPLIT, "first best accuracy", "as released: PointCLIP's ModelNet40 val "
                              "split is its test split, TEST.FINAL_MODEL best_val", oracle=True)
        return [epoch, *self.extra_selections]

    def _inputs(self, batch: TokenBatch) -> torch.Tensor:
        return raw_global(batch) if self.settings.options.features == "raw" else batch.global_feats.float()

    def build_module(self, dim: int) -> torch.nn.Module:
        with torch.random.fork_rng():  # the adapter's layers draw their initial weights from the seeded global RNG
            torch.manual_seed(self.settings.options.seed)
            self.module = PointCLIPAdapter(dim, self.views)
        return self.module

    def fit(self, data: FitData) -> None:
        rows, copies = data.cycled()
        select = data.sets[self.selections()[0].source]
        module = self.build_module(rows.global_feats.shape[-1])
        has_select = len(select) > 0
        self.train_result = module.fit(self._inputs(rows), rows.labels, data.text,
                                       self._inputs(select) if has_select else None,
                                       select.labels if has_select else None, train=self.train_config, copies=copies)
        self._score_val(data)

    def logits(self, batch: TokenBatch, text: torch.Tensor) -> torch.Tensor:
        return predict(self.module, self._inputs(batch), text, device=self.settings.device)

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "features": self.settings.options.features,
                **self._augmentation("one copy per epoch, cycled (the release draws anew every epoch)")}


@register_method
class ZeroShot(FewShotMethod):
    """CALIP zero-shot on the same split (views averaged): the reference every few-shot method should beat."""

    name = "zero-shot"

    def selections(self) -> list[Selection]:
        return [self.settings.betas_selection]

    def fit(self, data: FitData) -> None:
        self._score_val(data)

    def logits(self, batch: TokenBatch, text: torch.Tensor) -> torch.Tensor:
        return zero_shot_logits(batch.global_feats, batch.spatial_feats, text, self.settings.betas,
                                self.settings.temperature, self.views)[1]

    def hyperparameters(self) -> dict[str, Any]:
        return {"betas": list(self.settings.betas), "temperature": self.settings.temperature}


def get_method(name: str) -> type[FewShotMethod]:
    if name not in METHODS:
        raise CalipError(f"unknown FewShotConfig.method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]
