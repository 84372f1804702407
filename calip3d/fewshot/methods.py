"""The few-shot methods behind one interface and one registry: `fit` on train/val tokens, then `logits` of test
batches. Each method owns its defaults (`TRAIN`, the training settings it uses unless the user overrides them) and
records exactly the hyperparameters it used (`hyperparameters`).

Every method sees the same frozen features. For point clouds, the global-feature baselines (Tip-Adapter(-F), linear
probe) use PointCLIP's formulation: the normalised concatenation of the V view features against the normalised text
repeated V times, so `f . t = mean_v <f_v, t>`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..aggregation import aggregate_views, mean_weights
from ..attention import combine_terms
from ..attention.parametric import ParametricCALIP
from ..encoding import Tokens, view_terms
from ..errors import CalipError
from ..metrics import topk_accuracy
from ..presets import LOGIT_SCALE
from .baselines import LinearProbe, PointCLIPAdapter, TipAdapter, TipAdapterF
from .training import TrainConfig, TrainResult, predict, train_classifier


def flat_global(glob: torch.Tensor) -> torch.Tensor:
    """`[N, D]` -> normalised `[N, D]`; `[N, V, D]` -> normalised concatenation `[N, V*D]`."""
    return F.normalize(glob.float().flatten(1) if glob.ndim == 3 else glob.float(), dim=-1)


def flat_text(text: torch.Tensor, views: int | None) -> torch.Tensor:
    return text.float() if not views else F.normalize(text.float().repeat(1, views), dim=-1)


def zero_shot_logits(glob: torch.Tensor, spatial: torch.Tensor, text: torch.Tensor, betas: tuple[float, ...],
                     temperature: float, views: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(CLIP/PointCLIP logits, CALIP logits) `[B, K]` of one batch; 3D terms are averaged over views (1/V)."""
    terms = view_terms(glob, spatial, text, temperature)
    if views:
        terms = tuple(aggregate_views(t, mean_weights(views)) for t in terms)
    return LOGIT_SCALE * terms[0], combine_terms(terms, betas)


@dataclass(frozen=True)
class MethodSettings:
    """Settings every method may read: CALIP's betas and temperature (zero-shot reference, CALIP-FS), the seed and
    device, and CALIP-FS's module shape (`hidden` rank, `learn_betas`, `shared_views`)."""

    betas: tuple[float, float, float]
    temperature: float
    seed: int
    device: str
    hidden: int | None = None
    learn_betas: bool = False
    shared_views: bool = True


class FewShotMethod:
    """Base class: `fit(train, val, text)` then `logits(global, spatial, text)` per test batch. Subclasses set
    `name`, `TRAIN` (None: not trained by gradient descent) and `module_checkpointed` (a trained module that
    `--checkpoint` saves and `--eval-only` reloads)."""

    name: ClassVar[str]
    selection: ClassVar[str]  # what is chosen on the val shots (recorded in results)
    TRAIN: ClassVar[TrainConfig | None] = None
    module_checkpointed: ClassVar[bool] = False
    needs_views: ClassVar[bool] = False

    def __init__(self, settings: MethodSettings, views: int | None, train: TrainConfig | None = None) -> None:
        if self.needs_views and not views:
            raise CalipError(f"--method {self.name} needs a 3D dataset (it adapts per-view features)")
        self.settings, self.views = settings, views
        self.train_config = None if self.TRAIN is None else \
            replace(train or self.TRAIN, seed=settings.seed, device=settings.device)
        self.module: torch.nn.Module | None = None
        self.train_result: TrainResult | None = None
        self.val_top1: float | None = None
        self.details: dict[str, Any] = {}

    def with_lr(self, lr: float) -> "FewShotMethod":
        """A fresh copy of this method that trains with learning rate `lr`."""
        return type(self)(self.settings, self.views, replace(self.train_config, lr=lr))

    def fit(self, train: Tokens, val: Tokens, text: torch.Tensor, copies: int = 1) -> None:
        """Fit on the train tokens (`copies` augmented copies of the same items, concatenated) and val tokens."""
        if len(val):
            self.val_top1 = topk_accuracy(self.logits(val.global_feats, val.spatial_feats, text), val.labels)

    def logits(self, glob: torch.Tensor, spatial: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Scores `[B, K]` of one batch of tokens."""
        raise NotImplementedError

    def build_module(self, dim: int) -> torch.nn.Module:
        """The trainable module (also used to rebuild it from a checkpoint)."""
        raise CalipError(f"--method {self.name} has no trainable module to checkpoint")

    def hyperparameters(self) -> dict[str, Any]:
        """Exactly the settings this method used."""
        return {**(self.train_config.as_dict() if self.train_config else {}), **self.details}


class ZeroShot(FewShotMethod):
    """CALIP zero-shot on the same split (views averaged): the reference every few-shot method should beat."""

    name = "zero-shot"
    selection = "nothing (zero-shot)"

    def logits(self, glob: torch.Tensor, spatial: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return zero_shot_logits(glob, spatial, text, self.settings.betas, self.settings.temperature, self.views)[1]

    def hyperparameters(self) -> dict[str, Any]:
        return {"betas": list(self.settings.betas), "temperature": self.settings.temperature}


class CalipFS(FewShotMethod):
    """CALIP-FS: `ParametricCALIP` trained on the shots (docs/calip_fs.md), best epoch on the val shots."""

    name = "calip-fs"
    selection = "best epoch on the val shots"
    TRAIN = TrainConfig()
    module_checkpointed = True

    def build_module(self, dim: int) -> torch.nn.Module:
        s = self.settings
        views = self.views or 1
        self.module = ParametricCALIP(dim, num_views=views, shared_views=s.shared_views, hidden=s.hidden,
                                      betas=s.betas, learn_betas=s.learn_betas, temperature=s.temperature,
                                      view_weights=mean_weights(views) if self.views else None, init_seed=s.seed)
        return self.module

    def fit(self, train: Tokens, val: Tokens, text: torch.Tensor, copies: int = 1) -> None:
        module = self.build_module(train.global_feats.shape[-1])
        has_val = len(val) > 0
        self.train_result = train_classifier(
            module, (train.global_feats, train.spatial_feats), train.labels,
            (val.global_feats, val.spatial_feats) if has_val else None, val.labels if has_val else None, text,
            self.train_config, desc="CALIP-FS")
        self.val_top1 = self.train_result.best_val_acc

    def logits(self, glob: torch.Tensor, spatial: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return predict(self.module, (glob, spatial), text, device=self.settings.device)

    def hyperparameters(self) -> dict[str, Any]:
        s = self.settings
        return {**super().hyperparameters(), "hidden": s.hidden, "learn_betas": s.learn_betas,
                "shared_views": s.shared_views, "betas": list(s.betas), "temperature": s.temperature}


class PointCLIPAdapterMethod(FewShotMethod):
    """PointCLIP's inter-view adapter on the per-view global features (3D only), trained as released."""

    name = "pointclip-adapter"
    selection = "best epoch on the val shots"
    TRAIN = PointCLIPAdapter.TRAIN
    module_checkpointed = True
    needs_views = True

    def build_module(self, dim: int) -> torch.nn.Module:
        with torch.random.fork_rng():  # the adapter's layers draw their initial weights from the seeded global RNG
            torch.manual_seed(self.settings.seed)
            self.module = PointCLIPAdapter(dim, self.views)
        return self.module

    def fit(self, train: Tokens, val: Tokens, text: torch.Tensor, copies: int = 1) -> None:
        module = self.build_module(train.global_feats.shape[-1])
        has_val = len(val) > 0
        self.train_result = module.fit(train.global_feats, train.labels, text, val.global_feats if has_val else None,
                                       val.labels if has_val else None, train=self.train_config)
        self.val_top1 = self.train_result.best_val_acc

    def logits(self, glob: torch.Tensor, spatial: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return predict(self.module, glob, text, device=self.settings.device)


class TipAdapterMethod(FewShotMethod):
    """Tip-Adapter's training-free cache model, alpha and beta searched on the val shots."""

    name = "tip-adapter"
    selection = "alpha and beta searched on the val shots"

    def _model(self) -> TipAdapter:
        return TipAdapter()

    def fit(self, train: Tokens, val: Tokens, text: torch.Tensor, copies: int = 1) -> None:
        feats = flat_global(train.global_feats)
        if copies > 1:  # augmented copies of the same items, in the same order: [A, M, D]
            feats = feats.view(copies, -1, feats.shape[-1])
        has_val = len(val) > 0
        val_feats, val_labels = (flat_global(val.global_feats), val.labels) if has_val else (None, None)
        self.model = self._model()
        self._fit_model(feats, train.labels[: feats.shape[-2]], flat_text(text, self.views), val_feats, val_labels)
        self.details = {"alpha": self.model.alpha, "beta": self.model.beta}
        if has_val:
            self.val_top1 = topk_accuracy(self.model.logits(val_feats), val.labels)

    def _fit_model(self, feats: torch.Tensor, labels: torch.Tensor, text: torch.Tensor, val_feats: Any,
                   val_labels: Any) -> None:
        self.model.fit(feats, labels, text, val_feats, val_labels)

    def logits(self, glob: torch.Tensor, spatial: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.model.logits(flat_global(glob))


class TipAdapterFMethod(TipAdapterMethod):
    """Tip-Adapter-F: the cache keys fine-tuned with the released settings (`TipAdapterF.TRAIN`)."""

    name = "tip-adapter-f"
    selection = "best epoch on the val shots, then alpha and beta searched on them"
    TRAIN = TipAdapterF.TRAIN

    def _model(self) -> TipAdapter:
        return TipAdapterF()

    def _fit_model(self, feats: torch.Tensor, labels: torch.Tensor, text: torch.Tensor, val_feats: Any,
                   val_labels: Any) -> None:
        self.model.fit(feats, labels, text, val_feats, val_labels, train=self.train_config)
        self.train_result = self.model.train_result


class LinearProbeMethod(FewShotMethod):
    """The CLIP paper's linear probe (L-BFGS logistic regression), C searched on the val shots."""

    name = "linear-probe"
    selection = "C searched on the val shots"

    def fit(self, train: Tokens, val: Tokens, text: torch.Tensor, copies: int = 1) -> None:
        has_val = len(val) > 0
        self.model = LinearProbe().fit(flat_global(train.global_feats), train.labels,
                                       flat_global(val.global_feats) if has_val else None,
                                       val.labels if has_val else None, num_classes=text.shape[0])
        self.details = {"C": self.model.C, "search": [list(map(float, x)) for x in self.model.search_history]}
        if has_val:
            self.val_top1 = topk_accuracy(self.model.logits(flat_global(val.global_feats)), val.labels)

    def logits(self, glob: torch.Tensor, spatial: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.model.logits(flat_global(glob))


METHODS: dict[str, type[FewShotMethod]] = {cls.name: cls for cls in (
    CalipFS, TipAdapterMethod, TipAdapterFMethod, LinearProbeMethod, PointCLIPAdapterMethod, ZeroShot)}


def get_method(name: str) -> type[FewShotMethod]:
    if name not in METHODS:
        raise CalipError(f"unknown --method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]
