"""Few-shot baselines on cached frozen CLIP features: Tip-Adapter, Tip-Adapter-F, linear probe, PointCLIP's adapter.

Each is used as `fit(...)` then `logits(feats) -> [B, K]`. Global features are `[N, D]` (PointCLIP: per view,
`[N, V, D]`), text features `[K, D]`. Sources (facts read from the released code, code written here):
- Tip-Adapter / -F: gaopengcuhk/Tip-Adapter `main.py`, `utils.py`, `configs/*.yaml`;
- linear probe: the CLIP paper's protocol as CoOp's `lpclip/linear_probe.py` runs it (C grid, then bisection);
- PointCLIP adapter: ZrrSkywalker/PointCLIP `trainers/fewshot.py`, `configs/trainers/PointCLIP_FS/*.yaml`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from calip3d.errors import CalipError

from .training import TrainConfig, TrainResult, predict, smooth_cross_entropy, train_classifier

_CHUNK_ELEMENTS = 1 << 22  # rows * cache-size elements per chunk of the Tip-Adapter search


def _features(x: torch.Tensor, ndim: int, what: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != ndim:
        raise CalipError(f"{what} must have {ndim} axes, got shape {tuple(x.shape)}")
    return x.float()


def _labels(y: torch.Tensor, n: int, what: str) -> torch.Tensor:
    y = torch.as_tensor(y).long().view(-1)
    if y.numel() != n:
        raise CalipError(f"{what}: {y.numel()} labels for {n} samples")
    return y


# ------------------------------------------------------------------------------------------------ Tip-Adapter


def tip_grid(scale: float, steps: int) -> list[float]:
    """Tip-Adapter's search grid: `[i * (scale - 0.1) / steps + 0.1 for i in range(steps)]`."""
    if steps < 1 or not scale > 0.1:
        raise CalipError(f"Tip-Adapter search needs steps >= 1 and scale > 0.1, got steps={steps}, scale={scale}")
    return [i * (scale - 0.1) / steps + 0.1 for i in range(steps)]


@dataclass(frozen=True)
class TipSearchResult:
    """Best (alpha, beta) on the val features; `accuracy` in percent. First maximum, beta outer, alpha inner."""

    accuracy: float
    alpha: float
    beta: float
    alpha_grid: tuple[float, ...]
    beta_grid: tuple[float, ...]


class TipAdapter:
    """Training-free cache model (Zhang et al., ECCV 2022):
    `logits = scale * f Wt^T + alpha * exp(-beta * (1 - f keys^T)) values`.

    Keys are the train features averaged over augmented copies when given `[A, M, D]` and L2-normalised once (as
    released: the mean of 10 augmented passes of raw CLIP features), values their one-hot labels. `alpha`, `beta`
    are the initial values (Tip-Adapter-F trains with them); the search grids have `beta_steps` x `alpha_steps`
    points up to `beta_scale`, `alpha_scale` (`tip_grid`). The released per-dataset values are in
    `calip3d.published.TIP_ADAPTER_RELEASED` (e.g. ImageNet 7/3 with alpha 1.17, Flowers 50/50 with alpha 10).
    """

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, logit_scale: float = 100.0, beta_scale: float = 7.0,
                 alpha_scale: float = 3.0, beta_steps: int = 200, alpha_steps: int = 20) -> None:
        self.alpha, self.beta, self.logit_scale = float(alpha), float(beta), float(logit_scale)
        self.beta_grid = tuple(tip_grid(beta_scale, beta_steps))
        self.alpha_grid = tuple(tip_grid(alpha_scale, alpha_steps))
        self.search_result: TipSearchResult | None = None
        self.keys: torch.Tensor | None = None

    def build_cache(self, train_feats: torch.Tensor, train_labels: torch.Tensor, text: torch.Tensor) -> None:
        """Keys `[M, D]` from train features `[M, D]` (or `[A, M, D]` augmented copies, averaged), values
        one-hot `[M, K]` with K = number of text rows."""
        feats = torch.as_tensor(train_feats).float()
        if feats.ndim == 3:
            feats = feats.mean(dim=0)
        feats = _features(feats, 2, "train features")
        self.text = F.normalize(_features(text, 2, "text features"), dim=-1)
        if feats.shape[1] != self.text.shape[1]:
            raise CalipError(f"train features have dimension {feats.shape[1]}, text features {self.text.shape[1]}")
        labels = _labels(train_labels, feats.shape[0], "train features")
        k = self.text.shape[0]
        if labels.numel() == 0 or labels.min() < 0 or labels.max() >= k:
            raise CalipError(f"train labels must lie in [0, {k}) (one per text feature row)")
        self.keys = F.normalize(feats, dim=-1)
        self.values = F.one_hot(labels, k).float()

    def affinity(self, feats: torch.Tensor) -> torch.Tensor:
        """`f keys^T`, `[B, M]`."""
        return feats @ self.keys.t()

    def _parts(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys is None:
            raise CalipError("call fit() before logits()")
        feats = F.normalize(_features(feats, 2, "features"), dim=-1)
        return self.logit_scale * feats @ self.text.t(), self.affinity(feats)

    def logits(self, feats: torch.Tensor, alpha: float | None = None, beta: float | None = None) -> torch.Tensor:
        """`[B, K]` for features `[B, D]` (re-normalised), with the fitted (or given) alpha and beta."""
        alpha = self.alpha if alpha is None else alpha
        beta = self.beta if beta is None else beta
        with torch.no_grad():
            clip, aff = self._parts(feats)
            return clip + alpha * torch.exp(-beta * (1 - aff)) @ self.values

    @torch.no_grad()
    def search(self, val_feats: torch.Tensor, val_labels: torch.Tensor) -> TipSearchResult:
        """Grid search of (beta, alpha) on val by top-1 accuracy; sets `self.alpha`, `self.beta`."""
        clip, aff = self._parts(val_feats)
        labels = _labels(val_labels, clip.shape[0], "val features")
        alphas = torch.tensor(self.alpha_grid)
        chunk = max(1, _CHUNK_ELEMENTS // max(1, aff.shape[1] + len(alphas) * clip.shape[1]))
        best = (-1, 0.0, 0.0)
        for beta in self.beta_grid:
            correct = torch.zeros(len(alphas), dtype=torch.long)
            for i in range(0, clip.shape[0], chunk):
                cache = torch.exp(-beta * (1 - aff[i:i + chunk])) @ self.values
                pred = (clip[i:i + chunk] + alphas.view(-1, 1, 1) * cache).argmax(dim=2)
                correct += (pred == labels[i:i + chunk]).sum(dim=1)
            j = int(correct.argmax())
            if int(correct[j]) > best[0]:
                best = (int(correct[j]), self.alpha_grid[j], beta)
        self.alpha, self.beta = best[1], best[2]
        self.search_result = TipSearchResult(100.0 * best[0] / max(1, labels.numel()), self.alpha, self.beta,
                                             self.alpha_grid, self.beta_grid)
        return self.search_result

    def fit(self, train_feats: torch.Tensor, train_labels: torch.Tensor, text: torch.Tensor,
            val_feats: torch.Tensor | None = None, val_labels: torch.Tensor | None = None) -> "TipAdapter":
        """Build the cache; with val data, search alpha and beta on it (else keep the initial ones)."""
        self.build_cache(train_feats, train_labels, text)
        if val_feats is not None and val_labels is not None:
            self.search(val_feats, val_labels)
        return self


class _CacheHead(nn.Module):
    """Tip-Adapter-F's trainable part: keys `[M, D]` as a bias-free linear layer; alpha and beta fixed."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, alpha: float, beta: float, logit_scale: float):
        super().__init__()
        self.keys = nn.Parameter(keys.clone())
        self.register_buffer("values", values.clone())
        self.alpha, self.beta, self.logit_scale = alpha, beta, logit_scale

    def forward(self, feats: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        cache = torch.exp(-self.beta * (1 - feats @ self.keys.t())) @ self.values
        return self.logit_scale * feats @ text.t() + self.alpha * cache


class TipAdapterF(TipAdapter):
    """Tip-Adapter-F: the cache keys are fine-tuned (`TRAIN`: AdamW, lr 1e-3, eps 1e-4, torch's default weight decay
    0.01, batch 256, 20 epochs (EuroSAT: 100), per-step cosine, plain cross-entropy, alpha/beta at their initial
    values while training; `train`'s given settings replace them), the best epoch is kept (chosen on `select`), then
    alpha and beta are searched (on `search`). Given `[A, M, D]` augmented copies, epoch e trains on copy (e - 1) mod
    A (the release re-draws the augmentation every epoch) and the cache starts from their mean."""

    TRAIN = TrainConfig(epochs=20, lr=1e-3, batch_size=256, weight_decay=0.01, label_smoothing=0.0, adam_eps=1e-4)

    def fit(self, train_feats: torch.Tensor, train_labels: torch.Tensor, text: torch.Tensor,
            select: tuple[torch.Tensor, torch.Tensor] | None = None,
            search: tuple[torch.Tensor, torch.Tensor] | None = None, train: TrainConfig = TrainConfig(),
            progress: bool = False) -> "TipAdapterF":
        self.build_cache(train_feats, train_labels, text)
        feats = torch.as_tensor(train_feats).float()
        copies = feats.shape[0] if feats.ndim == 3 else 1
        rows = F.normalize(feats.reshape(-1, feats.shape[-1]), dim=-1)
        labels = _labels(train_labels, self.keys.shape[0], "train features").repeat(copies)
        head = _CacheHead(self.keys, self.values, self.alpha, self.beta, self.logit_scale)
        select_feats = None if select is None else F.normalize(_features(select[0], 2, "selection features"), dim=-1)
        self.train_result = train_classifier(head, rows, labels, select_feats, None if select is None else select[1],
                                             self.text, train.over(self.TRAIN), progress=progress, desc="Tip-Adapter-F",
                                             copies=copies)
        self.keys = head.keys.detach().cpu()
        if search is not None:
            self.search(*search)
        return self


# ------------------------------------------------------------------------------------------------ linear probe

COOP_C_GRID = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)


def fit_logistic_regression(feats: torch.Tensor, labels: torch.Tensor, num_classes: int, C: float,
                            max_iter: int = 1000, tol: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression with scikit-learn's objective `C * sum_i CE_i + ||W||^2 / 2` (bias not
    penalised), minimised in float64 by full-batch L-BFGS (strong Wolfe) from zero, and stopped like scikit-learn's
    lbfgs (largest gradient entry <= `tol`, or `max_iter` iterations). Returns `W [K, D]`, `b [K]`."""
    x = feats.double()
    y = labels.long()
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    scale = C * x.shape[0]  # minimise the objective divided by C * N (a mean loss), so tolerances scale with it
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=tol / scale,
                            tolerance_change=1e-12, history_size=10, line_search_fn="strong_wolfe")
    penalty = 1.0 / (2.0 * scale)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ weight.t() + bias, y) + penalty * weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return weight.detach(), bias.detach()


PROBE_CHOICES = ("best", "last")


class LinearProbe:
    """Linear probe on global features (CLIP paper; CoOp's `lpclip` search), raw as CoOp's `lpclip` extracts them
    or L2-normalised (`normalize`, as CLIP_benchmark). The inverse L2 strength C is picked on val: first the grid
    `c_grid` (default 1e6 .. 1e-6, x100 steps), then `refine_steps` bisection steps in log10 space around the best
    (start [0.1 C, 10 C]; at each step the better end wins, the left on ties). `choose`: "best" keeps the first best
    val accuracy among all C tried, in the order tried (`search_history`); "last" keeps the winner of the last
    bisection step, as CoOp's script reports it."""

    def __init__(self, c_grid: Sequence[float] = COOP_C_GRID, refine_steps: int = 8, max_iter: int = 1000,
                 normalize: bool = True, choose: str = "best") -> None:
        if not c_grid or any(not c > 0 for c in c_grid):
            raise CalipError(f"c_grid must be positive numbers, got {list(c_grid)}")
        if choose not in PROBE_CHOICES:
            raise CalipError(f"choose must be one of {PROBE_CHOICES}, got {choose!r}")
        self.c_grid, self.refine_steps, self.max_iter = tuple(float(c) for c in c_grid), int(refine_steps), max_iter
        self.normalize, self.choose = bool(normalize), choose
        self.search_history: list[tuple[float, float]] = []
        self.weight: torch.Tensor | None = None

    def _inputs(self, feats: torch.Tensor, what: str) -> torch.Tensor:
        x = _features(feats, 2, what)
        return F.normalize(x, dim=-1) if self.normalize else x

    def _fit_c(self, x: torch.Tensor, y: torch.Tensor, k: int, c: float) -> tuple[torch.Tensor, torch.Tensor]:
        return fit_logistic_regression(x, y, k, c, self.max_iter)

    def fit(self, train_feats: torch.Tensor, train_labels: torch.Tensor, val_feats: torch.Tensor | None = None,
            val_labels: torch.Tensor | None = None, C: float | None = None,
            num_classes: int | None = None) -> "LinearProbe":
        """Fit with the given `C`, or search C on val (one of the two is required)."""
        x = self._inputs(train_feats, "train features")
        y = _labels(train_labels, x.shape[0], "train features")
        k = int(num_classes) if num_classes is not None else int(y.max()) + 1
        if y.numel() == 0 or y.min() < 0 or y.max() >= k:
            raise CalipError(f"train labels must lie in [0, {k})")
        if C is not None:
            self.C, self.search_history = float(C), []
            self.weight, self.bias = self._fit_c(x, y, k, self.C)
            return self
        if val_feats is None or val_labels is None:
            raise CalipError("LinearProbe.fit needs validation features to search C, or an explicit C")
        xv = self._inputs(val_feats, "val features").double()
        yv = _labels(val_labels, xv.shape[0], "val features")
        tried: dict[float, tuple[float, tuple[torch.Tensor, torch.Tensor]]] = {}

        def score(c: float) -> float:
            if c not in tried:
                w, b = self._fit_c(x, y, k, c)
                acc = 100.0 * float(((xv @ w.t() + b).argmax(dim=1) == yv).double().mean())
                tried[c] = (acc, (w, b))
            return tried[c][0]

        accs = [score(c) for c in self.c_grid]
        last = self.c_grid[accs.index(max(accs))]
        lo, hi = math.log10(last) - 1.0, math.log10(last) + 1.0
        for _ in range(self.refine_steps):
            if score(10.0 ** lo) < score(10.0 ** hi):
                last, lo = 10.0 ** hi, 0.5 * (lo + hi)
            else:
                last, hi = 10.0 ** lo, 0.5 * (lo + hi)
        self.search_history = [(c, acc) for c, (acc, _) in tried.items()]
        best_acc = max(acc for _, acc in self.search_history)
        self.C = last if self.choose == "last" else next(c for c, acc in self.search_history if acc == best_acc)
        self.weight, self.bias = tried[self.C][1]
        return self

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """`[B, K]` (float32) for features `[B, D]` (re-normalised)."""
        if self.weight is None:
            raise CalipError("call fit() before logits()")
        x = self._inputs(feats, "features").double()
        return (x @ self.weight.t() + self.bias).float()


# ------------------------------------------------------------------------------------------------ PointCLIP adapter


class PointCLIPAdapter(nn.Module):
    """PointCLIP's inter-view adapter (few-shot), following the released `trainers/fewshot.py`:

        g   = [BN1d(D) on every view -> Dropout -> flatten [B, V*D] -> Linear(V*D, D) -> BN1d(D) -> ReLU -> Dropout]
              applied to `f_v * w_v` (learnable per-view weights w, initialised at 0.5, scale this input only)
        a   = ReLU(Linear(D, V*D)(ReLU(Linear(D, D)(g))))                    [B, V*D]
        f^a = ratio * a + (1 - ratio) * concat(f_v)                            ratio 0.6
        logits = scale * normalise(f^a) . normalise(concat(t, ..., t))       = scale * sum_v <f^a_v, t> / (sqrt(V) |f^a| |t|)

    `feats` are per-view global features `[B, V, D]`: the raw (unnormalised) CLIP features, as the release feeds
    them, or L2-normalised ones.
    """

    def __init__(self, dim: int, num_views: int, ratio: float = 0.6, dropout: float = 0.075,
                 init_view_weight: float = 0.5, logit_scale: float = 100.0) -> None:
        super().__init__()
        if dim < 1 or num_views < 1:
            raise CalipError(f"PointCLIPAdapter needs dim >= 1 and num_views >= 1, got {dim}, {num_views}")
        self.dim, self.num_views, self.ratio, self.dropout = int(dim), int(num_views), float(ratio), float(dropout)
        self.init_view_weight, self.logit_scale = float(init_view_weight), float(logit_scale)
        self.view_weights = nn.Parameter(torch.full((num_views,), self.init_view_weight))
        self.view_norm = nn.BatchNorm1d(dim)
        self.global_f = nn.Sequential(
            nn.Dropout(dropout), nn.Flatten(), nn.Linear(dim * num_views, dim), nn.BatchNorm1d(dim), nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.view_f = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim * num_views), nn.ReLU())
        self._text: torch.Tensor | None = None

    def describe(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "dim": self.dim, "num_views": self.num_views, "ratio": self.ratio,
                "dropout": self.dropout, "init_view_weight": self.init_view_weight, "logit_scale": self.logit_scale}

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def adapt(self, feats: torch.Tensor) -> torch.Tensor:
        """Adapted per-view features `[B, V, D]` (before normalisation)."""
        if feats.ndim != 3 or feats.shape[1:] != (self.num_views, self.dim):
            raise CalipError(f"PointCLIPAdapter expects per-view features [B, {self.num_views}, {self.dim}], "
                             f"got {tuple(feats.shape)}")
        b = feats.shape[0]
        x = feats.to(self.view_weights.dtype)
        weighted = x * self.view_weights.view(1, -1, 1)
        normed = self.view_norm(weighted.reshape(b * self.num_views, self.dim)).view(b, self.num_views, self.dim)
        adapted = self.view_f(self.global_f(normed)).view(b, self.num_views, self.dim)
        return self.ratio * adapted + (1.0 - self.ratio) * x

    def forward(self, feats: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """`[B, K]` logits for per-view features `[B, V, D]` and text `[K, D]`."""
        adapted = self.adapt(feats)
        text = F.normalize(text.to(adapted.dtype), dim=-1)
        norm = adapted.flatten(1).norm(dim=1, keepdim=True).clamp_min(1e-12)
        return self.logit_scale * torch.einsum("bvd,kd->bk", adapted, text) / (norm * math.sqrt(self.num_views))

    TRAIN = TrainConfig(epochs=250, lr=0.01, batch_size=32, weight_decay=5e-4, label_smoothing=0.2, optimizer="sgd",
                        warmup_epochs=1, drop_last=True)

    def fit(self, train_feats: torch.Tensor, train_labels: torch.Tensor, text: torch.Tensor,
            val_feats: torch.Tensor | None = None, val_labels: torch.Tensor | None = None,
            train: TrainConfig = TrainConfig(), progress: bool = True, copies: int = 1) -> TrainResult:
        """Train as the release (`TRAIN`, where `train` gives no setting): SGD (momentum 0.9, weight decay 5e-4), lr
        0.01, batch 32, 250 epochs, cosine, 1 constant warm-up epoch at 1e-5, DGCNN's smoothed loss with eps =
        `label_smoothing` 0.2, incomplete last batch dropped; the best epoch on `val` kept. `copies` augmented copies
        (rows copy after copy): epoch e trains on copy (e - 1) mod `copies`, as the release augments every epoch."""
        feats = _features(train_feats, 3, "train features")
        if feats.shape[0] < 2 * copies:
            raise CalipError("PointCLIPAdapter needs at least 2 training samples (batch norm)")
        self._text = _features(text, 2, "text features")
        has_val = val_feats is not None and val_labels is not None
        train = train.over(self.TRAIN)
        return train_classifier(
            self, feats, train_labels, _features(val_feats, 3, "val features") if has_val else None,
            val_labels if has_val else None, self._text, train,
            loss_fn=lambda z, y: smooth_cross_entropy(z, y, train.label_smoothing), progress=progress,
            desc="PointCLIP adapter", copies=copies)

    def logits(self, feats: torch.Tensor, text: torch.Tensor | None = None, batch_size: int = 256) -> torch.Tensor:
        """Eval-mode logits `[B, K]` (CPU) with the text from `fit` unless `text` is given."""
        text = self._text if text is None else text
        if text is None:
            raise CalipError("call fit() first or pass the text features")
        device = self.view_weights.device
        return predict(self, _features(feats, 3, "features"), text, batch_size, device)
