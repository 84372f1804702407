"""View aggregation: per-view logits or terms `[..., V, K]` summed over views with explicit weights.

The one aggregation of every scoring path (zero-shot PointCLIP and CALIP, classify, few-shot's 1/V weights, CALIP-FS).
The searches in `calip3d.search` decide correctness with their own float64 formula in a fixed accumulation order
(`weighted_view_sum`), which their exactness guarantee is stated for; they only choose weights, which are then scored
here.
"""

from __future__ import annotations

from typing import Sequence

import torch

import torch.nn.functional as F

from .errors import CalipError


def uniform_weights(views: int) -> list[float]:
    """PointCLIP's default: every view weighted 1."""
    return [1.0] * views


def mean_weights(views: int) -> list[float]:
    """Every view weighted 1/V (the few-shot zero-shot reference and CALIP-FS start)."""
    return [1.0 / views] * views


def aggregate_views(per_view: torch.Tensor, weights: Sequence[float] | torch.Tensor | None) -> torch.Tensor:
    """`sum_v weights[v] * per_view[..., v, :]`: `[..., V, K]` -> `[..., K]`, in `per_view`'s dtype and device.

    `weights` is `[V]` (a list or a tensor; a tensor keeps its autograd graph, e.g. learnable view weights), or None
    for the plain sum over views, as PointCLIP's released zero-shot code aggregates."""
    if weights is None:
        return per_view.sum(dim=-2)
    w = weights if isinstance(weights, torch.Tensor) else torch.tensor([float(x) for x in weights])
    if w.ndim != 1 or w.numel() != per_view.shape[-2]:
        raise CalipError(f"{w.numel()} view weights given for {per_view.shape[-2]} views")
    return torch.einsum("...vk,v->...k", per_view, w.to(dtype=per_view.dtype, device=per_view.device))


def flat_global(glob: torch.Tensor) -> torch.Tensor:
    """The per-item feature of the training-free methods: `[N, D]` -> L2-normalised `[N, D]`; point clouds
    `[N, V, D]` -> PointCLIP's normalised concatenation of the views `[N, V*D]` (so `f . t = mean_v <f_v, t>`
    against the text repeated V times and normalised)."""
    return F.normalize(glob.float().flatten(1) if glob.ndim == 3 else glob.float(), dim=-1)
