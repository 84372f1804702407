"""The few-shot methods behind one interface: fit on train/val tokens, then score batches of test tokens.

Every method sees the same frozen features. For point clouds, the global-feature baselines (Tip-Adapter(-F),
linear probe) use PointCLIP's formulation: the normalised concatenation of the V view features against the
normalised text repeated V times, so `f . t = mean_v <f_v, t>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..attention import calip_terms, combine_terms
from ..attention.parametric import ParametricCALIP
from ..errors import CalipError
from .baselines import LinearProbe, PointCLIPAdapter, TipAdapter, TipAdapterF
from .tokens import Tokens
from .training import TrainResult, predict, train_classifier

METHODS = ("calip-fs", "tip-adapter", "tip-adapter-f", "linear-probe", "pointclip-adapter", "zero-shot")
TRAINED_MODULES = ("calip-fs", "pointclip-adapter")


def flat_global(glob: torch.Tensor) -> torch.Tensor:
    """`[N, D]` -> normalised `[N, D]`; `[N, V, D]` -> normalised concatenation `[N, V*D]`."""
    return F.normalize(glob.float().flatten(1) if glob.ndim == 3 else glob.float(), dim=-1)


def flat_text(text: torch.Tensor, views: int | None) -> torch.Tensor:
    return text.float() if not views else F.normalize(text.float().repeat(1, views), dim=-1)


def zero_shot_logits(glob: torch.Tensor, spatial: torch.Tensor, text: torch.Tensor, betas: tuple[float, ...],
                     temperature: float, view_weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(CLIP/PointCLIP logits, CALIP logits) `[B, K]` of one batch; 3D terms are summed over views with weights."""
    if glob.ndim == 2:
        terms = calip_terms(glob, spatial, text, temperature)
    else:
        b, v = glob.shape[:2]
        flat = calip_terms(glob.flatten(0, 1), spatial.flatten(0, 1), text, temperature)
        w = view_weights if view_weights is not None else torch.ones(v)
        terms = tuple(torch.einsum("bvk,v->bk", t.view(b, v, -1), w.to(t)) for t in flat)
    return 100.0 * terms[0], combine_terms(terms, betas)


@dataclass
class Hyper:
    epochs: int
    lr: float
    batch_size: int
    weight_decay: float
    label_smoothing: float
    seed: int
    hidden: int | None
    learn_betas: bool
    shared_views: bool
    betas: tuple[float, float, float]
    temperature: float
    device: str
    extra: dict[str, Any] = field(default_factory=dict)


class FewShotMethod:
    """`fit(train, val, text)` then `logits(global, spatial, text)` per test batch."""

    def __init__(self, name: str, hyper: Hyper, views: int | None) -> None:
        if name not in METHODS:
            raise CalipError(f"unknown --method {name!r}; choose from {', '.join(METHODS)}")
        if name == "pointclip-adapter" and not views:
            raise CalipError("--method pointclip-adapter is PointCLIP's inter-view adapter: it needs a 3D dataset")
        self.name, self.hyper, self.views = name, hyper, views
        self.module: torch.nn.Module | None = None
        self.model: Any = None
        self.train_result: TrainResult | None = None
        self.val_top1: float | None = None
        self.details: dict[str, Any] = {}

    def build_module(self, dim: int) -> torch.nn.Module:
        """The trainable module of calip-fs / pointclip-adapter (also used to rebuild it from a checkpoint)."""
        h = self.hyper
        if self.name == "calip-fs":
            views = self.views or 1
            weights = [1.0 / views] * views if self.views else None
            self.module = ParametricCALIP(dim, num_views=views, shared_views=h.shared_views, hidden=h.hidden,
                                          betas=h.betas, learn_betas=h.learn_betas, temperature=h.temperature,
                                          view_weights=weights, init_seed=h.seed)
        elif self.name == "pointclip-adapter":
            self.module = PointCLIPAdapter(dim, self.views)
        else:
            raise CalipError(f"--method {self.name} has no trainable module to checkpoint")
        return self.module

    def fit(self, train: Tokens, val: Tokens, text: torch.Tensor, copies: int = 1) -> None:
        h = self.hyper
        dim = train.global_feats.shape[-1]
        val_ok = len(val) > 0
        if self.name == "calip-fs":
            module = self.build_module(dim)
            self.train_result = train_classifier(
                module, (train.global_feats, train.spatial_feats), train.labels,
                (val.global_feats, val.spatial_feats) if val_ok else None, val.labels if val_ok else None, text,
                epochs=h.epochs, lr=h.lr, batch_size=h.batch_size, weight_decay=h.weight_decay,
                label_smoothing=h.label_smoothing, seed=h.seed, device=h.device, desc="CALIP-FS")
            module.load_state_dict(self.train_result.state_dict)
            self.val_top1 = self.train_result.best_val_acc
        elif self.name == "pointclip-adapter":
            module = self.build_module(dim)
            self.train_result = module.fit(
                train.global_feats, train.labels, text, val.global_feats if val_ok else None,
                val.labels if val_ok else None, epochs=h.epochs, lr=h.lr, batch_size=h.batch_size,
                weight_decay=h.weight_decay, seed=h.seed, smoothing=h.label_smoothing, device=h.device)
            module.load_state_dict(self.train_result.state_dict)
            self.val_top1 = self.train_result.best_val_acc
        elif self.name in ("tip-adapter", "tip-adapter-f"):
            feats = flat_global(train.global_feats)
            if copies > 1:  # augmented copies of the same items, in the same order: [A, M, D]
                feats = feats.view(copies, -1, feats.shape[-1])
            labels = train.labels[: feats.shape[-2]]
            val_args = (flat_global(val.global_feats), val.labels) if val_ok else (None, None)
            tip = TipAdapter() if self.name == "tip-adapter" else TipAdapterF()
            if self.name == "tip-adapter":
                tip.fit(feats, labels, flat_text(text, self.views), *val_args)
            else:
                tip.fit(feats, labels, flat_text(text, self.views), *val_args, epochs=h.epochs, lr=h.lr,
                        seed=h.seed, device=h.device)
            self.model = tip
            self.details = {"alpha": tip.alpha, "beta": tip.beta}
            if val_ok:
                self.val_top1 = _top1(tip.logits(val_args[0]), val.labels)
        elif self.name == "linear-probe":
            probe = LinearProbe()
            probe.fit(flat_global(train.global_feats), train.labels,
                      flat_global(val.global_feats) if val_ok else None, val.labels if val_ok else None,
                      num_classes=text.shape[0])
            self.model = probe
            self.details = {"C": probe.C, "search": [list(map(float, x)) for x in probe.search_history]}
            if val_ok:
                self.val_top1 = _top1(probe.logits(flat_global(val.global_feats)), val.labels)
        elif val_ok:
            self.val_top1 = _top1(self.logits(val.global_feats, val.spatial_feats, text), val.labels)

    def logits(self, glob: torch.Tensor, spatial: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Scores `[B, K]` of one batch of test tokens."""
        if self.name in TRAINED_MODULES:
            inputs = (glob, spatial) if self.name == "calip-fs" else glob
            return predict(self.module, inputs, text, device=self.hyper.device)
        if self.model is not None:  # tip-adapter(-f), linear-probe: global features only
            return self.model.logits(flat_global(glob))
        weights = torch.full((self.views,), 1.0 / self.views) if self.views else None
        return zero_shot_logits(glob, spatial, text, self.hyper.betas, self.hyper.temperature, weights)[1]


def _top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    from ..metrics import topk_accuracy

    return topk_accuracy(logits, labels, 1)

