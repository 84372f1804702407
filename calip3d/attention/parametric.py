"""CALIP-FS: CALIP's attention with a few learnable linear layers, trained on K shots with CLIP frozen.

The paper (arXiv 2209.14169) only says it "inserts a small number of linear layers in CALIP's attention module";
layer shapes and training settings were never released. This design (see docs/calip_fs.md):

    pre-projections  (before the attention map)   Pv on spatial tokens, Pt on text features
    post-projections (after the bidirectional update)  Qt on Ft^a, Qv on Fs^a

    A     = Pv(Fs) Pt(Ft)^T / temperature             [B, N, K]
    Ft^a  = Qt(softmax_N(A)^T Fs)                      [B, K, D]
    Fs^a  = Qv(softmax_K(A) Ft)                        [B, N, D]
    Fv^a  = mean_N(Fs^a) + max_N(Fs^a)                 [B, D]
    logits = scale * (b1 Fv Ft^T + b2 <Fv, Ft^a> + b3 Fv^a Ft^T)

Every map is residual, `x + W x` (full rank) or `x + U (A x)` (rank `hidden`), with `W` / `U` zero at init, so the
untrained module computes zero-shot CALIP exactly. Since the maps are linear, they are applied where they are
cheapest, without changing the result: `A = Fs (Pv^T Pt Ft)^T` projects K rows instead of B*N tokens;
`<Fv, Qt(Ft^a)> = sum_n P[n, k] <Qt^T Fv, Fs_n>` never builds `[B, K, D]`; `Qv(P Ft) = P Qv(Ft)`. A value
projection on Fs or Ft would be redundant with the post-projections for the same reason, so there is none.

Point clouds: global `[B, V, D]`, spatial `[B, V, N, D]`; the per-view terms `[B, V, K]` are summed with view
weights. `shared_views=True` uses one set of maps for all views, False one set per view.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from calip3d.aggregation import aggregate_views
from calip3d.errors import CalipError
from calip3d.published import DEFAULT_BETAS, LOGIT_SCALE

from .calip import CALIP_DEFAULT_TEMPERATURE

_CHUNK_ELEMENTS = 1 << 24  # bound on b*V*N*max(K, D) elements of the transient tensors per chunk


class ResidualMap(nn.Module):
    """`x -> x + W x` on the last axis, with `copies` independent maps (one per view, or 1 shared).

    `hidden=None`: `W` is a full `[D, D]` matrix, zero at init. `hidden=r`: `W = U A` with `A [r, D]` random
    (uniform, bound 1/sqrt(D), drawn from `generator`) and `U [D, r]` zero, so `W = 0` at init either way.
    Inputs are `[C, M, D]` with C equal to `copies` or 1 (broadcast), or `[M, D]`.
    """

    def __init__(self, dim: int, copies: int = 1, hidden: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.dim, self.copies, self.hidden = dim, copies, hidden
        if hidden is None:
            self.weight = nn.Parameter(torch.zeros(copies, dim, dim))
        else:
            bound = 1.0 / math.sqrt(dim)
            down = (torch.rand(copies, hidden, dim, generator=generator) * 2 - 1) * bound
            self.down = nn.Parameter(down)
            self.up = nn.Parameter(torch.zeros(copies, dim, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x + W x`."""
        if self.hidden is None:
            return x + x @ self.weight.transpose(-1, -2)
        return x + (x @ self.down.transpose(-1, -2)) @ self.up.transpose(-1, -2)

    def adjoint(self, x: torch.Tensor) -> torch.Tensor:
        """`x + W^T x`, so that `<y, map(x)> = <map.adjoint(y), x>`."""
        if self.hidden is None:
            return x + x @ self.weight
        return x + (x @ self.up) @ self.down


class ParametricCALIP(nn.Module):
    """CALIP-FS on frozen features. `forward(global, spatial, text) -> logits [B, K]`.

    2D: global `[B, D]`, spatial `[B, N, D]` (needs `num_views=1`). 3D: global `[B, V, D]`, spatial `[B, V, N, D]`.
    `text` is `[K, D]`; all rows L2-normalised as cached (nothing is re-normalised, as in `calip_terms`).
    Inputs of any float dtype are computed in the parameters' dtype, chunk by chunk.
    """

    def __init__(
        self,
        dim: int,
        num_views: int = 1,
        shared_views: bool = True,
        hidden: int | None = None,
        betas: Sequence[float] = DEFAULT_BETAS,
        learn_betas: bool = False,
        temperature: float = CALIP_DEFAULT_TEMPERATURE,
        logit_scale: float = LOGIT_SCALE,
        view_weights: Sequence[float] | None = None,
        learn_view_weights: bool = False,
        init_seed: int = 0,
    ) -> None:
        super().__init__()
        if int(dim) < 1 or int(num_views) < 1:
            raise CalipError(f"ParametricCALIP needs dim >= 1 and num_views >= 1, got dim={dim}, num_views={num_views}")
        if hidden is not None and int(hidden) < 1:
            raise CalipError(f"hidden must be a positive rank or None (full rank), got {hidden}")
        if len(betas) != 3:
            raise CalipError(f"betas must be three numbers (beta1, beta2, beta3), got {list(betas)}")
        if not temperature > 0:
            raise CalipError(f"temperature must be > 0, got {temperature}")
        weights = [1.0] * num_views if view_weights is None else [float(w) for w in view_weights]
        if len(weights) != num_views:
            raise CalipError(f"view_weights has {len(weights)} values but num_views is {num_views}")
        self.dim, self.num_views, self.shared_views = int(dim), int(num_views), bool(shared_views)
        self.hidden = None if hidden is None else int(hidden)
        self.temperature, self.logit_scale = float(temperature), float(logit_scale)
        self.learn_betas, self.learn_view_weights = bool(learn_betas), bool(learn_view_weights)
        self.init_seed = int(init_seed)
        self._init_betas = [float(b) for b in betas]
        self._init_view_weights = weights

        generator = torch.Generator().manual_seed(int(init_seed))
        copies = 1 if self.shared_views else self.num_views
        self.pre_visual, self.pre_text, self.post_text, self.post_visual = (
            ResidualMap(self.dim, copies, self.hidden, generator) for _ in range(4)
        )
        betas_t = torch.tensor(self._init_betas, dtype=torch.float32)
        weights_t = torch.tensor(weights, dtype=torch.float32)
        if self.learn_betas:
            self.betas = nn.Parameter(betas_t)
        else:
            self.register_buffer("betas", betas_t)
        if self.learn_view_weights:
            self.view_weights = nn.Parameter(weights_t)
        else:
            self.register_buffer("view_weights", weights_t)

    # ------------------------------------------------------------------------------------------------ config

    def describe(self) -> dict[str, Any]:
        """The constructor arguments as plain JSON-able values (stored in checkpoints)."""
        return {
            "class": type(self).__name__,
            "dim": self.dim,
            "num_views": self.num_views,
            "shared_views": self.shared_views,
            "hidden": self.hidden,
            "betas": list(self._init_betas),
            "learn_betas": self.learn_betas,
            "temperature": self.temperature,
            "logit_scale": self.logit_scale,
            "view_weights": list(self._init_view_weights),
            "learn_view_weights": self.learn_view_weights,
            "init_seed": self.init_seed,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ParametricCALIP":
        """Rebuild an (untrained) module from `describe()`'s output; load the state_dict afterwards."""
        kwargs = {k: v for k, v in config.items() if k != "class"}
        if config.get("class", cls.__name__) != cls.__name__:
            raise CalipError(f"config is for {config.get('class')!r}, not {cls.__name__}")
        try:
            return cls(**kwargs)
        except TypeError as err:
            raise CalipError(f"bad ParametricCALIP config {config}: {err}") from None

    def num_trainable(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # ------------------------------------------------------------------------------------------------ math

    def _check(self, fv: torch.Tensor, fs: torch.Tensor, ft: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate shapes; return global `[B, V, D]` and spatial `[B, V, N, D]` (V = 1 for 2D inputs)."""
        if ft.ndim != 2 or ft.shape[1] != self.dim:
            raise CalipError(f"text features must be [K, {self.dim}], got {tuple(ft.shape)}")
        if fv.ndim == 2 and fs.ndim == 3:
            if self.num_views != 1:
                raise CalipError(f"this module has {self.num_views} views: expected global [B, V, D] and spatial "
                                 f"[B, V, N, D], got {tuple(fv.shape)} and {tuple(fs.shape)}")
            fv, fs = fv.unsqueeze(1), fs.unsqueeze(1)
        elif not (fv.ndim == 3 and fs.ndim == 4):
            raise CalipError(f"expected global [B, D] + spatial [B, N, D], or [B, V, D] + [B, V, N, D]; "
                             f"got {tuple(fv.shape)} and {tuple(fs.shape)}")
        b, v, _, d = fs.shape
        if fv.shape != (b, v, d) or d != self.dim or v != self.num_views:
            raise CalipError(f"shape mismatch: global {tuple(fv.shape)}, spatial {tuple(fs.shape)}; expected "
                             f"{self.num_views} view(s) of dimension {self.dim}")
        return fv, fs

    def _view_terms_chunk(self, fv: torch.Tensor, fs: torch.Tensor, ft: torch.Tensor, keys: torch.Tensor,
                          values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """fv `[b, V, D]`, fs `[b, V, N, D]`, ft `[K, D]`, keys / values `[C, K, D]` -> three `[b, V, K]`.

        Written as (broadcast) matmuls over the contiguous `[b, V, N, D]` tokens: no permuted copies of them."""
        if keys.shape[0] == 1:  # shared maps: plain 2-D weights fold into one large matmul
            keys, values = keys[0], values[0]
        attn = fs @ keys.transpose(-1, -2) / self.temperature  # [b, V, N, K]
        over_positions = attn.softmax(dim=2)
        over_classes = attn.softmax(dim=3)
        probe = self.post_text.adjoint(fv.transpose(0, 1)).transpose(0, 1)  # Qt^T Fv, [b, V, D]
        probe_dot_fs = fs @ probe.unsqueeze(-1)  # [b, V, N, 1]
        visual_guided = (over_positions.transpose(-1, -2) @ probe_dot_fs).squeeze(-1)
        fs_a = over_classes @ values  # [b, V, N, D]
        fv_a = fs_a.mean(dim=2) + fs_a.max(dim=2).values
        clip = fv @ ft.t()
        textual_blended = fv_a @ ft.t()
        return clip, visual_guided, textual_blended

    def view_terms(self, global_feats: torch.Tensor, spatial_feats: torch.Tensor,
                   text_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three terms per view, each `[B, V, K]` (V = 1 for 2D inputs), before view weighting."""
        dtype = self.betas.dtype
        fv, fs = self._check(global_feats, spatial_feats, text_feats)
        ft = text_feats.to(dtype)
        keys = self.pre_visual.adjoint(self.pre_text(ft.unsqueeze(0)))  # Pv^T Pt Ft, [C, K, D]
        values = self.post_visual(ft.unsqueeze(0))  # Qv Ft, [C, K, D]
        b, v, n, d = fs.shape
        chunk = max(1, _CHUNK_ELEMENTS // max(1, v * n * max(d, ft.shape[0])))
        parts = [
            self._view_terms_chunk(fv[i:i + chunk].to(dtype), fs[i:i + chunk].to(dtype), ft, keys, values)
            for i in range(0, b, chunk)
        ]
        if len(parts) == 1:
            return parts[0]
        return tuple(torch.cat(p, dim=0) for p in zip(*parts))  # type: ignore[return-value]

    def terms(self, global_feats: torch.Tensor, spatial_feats: torch.Tensor,
              text_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(clip, visual_guided, textual_blended)`, each `[B, K]`: per-view terms summed with the view weights."""
        per_view = self.view_terms(global_feats, spatial_feats, text_feats)
        return tuple(aggregate_views(t, self.view_weights) for t in per_view)  # type: ignore[return-value]

    def forward(self, global_feats: torch.Tensor, spatial_feats: torch.Tensor, text_feats: torch.Tensor) -> torch.Tensor:
        """`logit_scale * (b1 clip + b2 visual_guided + b3 textual_blended)`, `[B, K]`."""
        clip, visual_guided, textual_blended = self.terms(global_feats, spatial_feats, text_feats)
        b1, b2, b3 = self.betas
        return self.logit_scale * (b1 * clip + b2 * visual_guided + b3 * textual_blended)
