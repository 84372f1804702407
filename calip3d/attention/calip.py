"""CALIP's parameter-free cross-modal attention (Guo et al., AAAI 2023), exactly as the official script computes it.

    A     = Fs Ft^T / temperature                   [B, N, K]
    Ft^a  = softmax_N(A)^T Fs                       [B, K, D]   (image-aware text features)
    Fs^a  = softmax_K(A) Ft                         [B, N, D]   (text-aware spatial features)
    Fv^a  = mean_N(Fs^a) + max_N(Fs^a)              [B, D]
    clip            = Fv Ft^T                       [B, K]
    visual_guided   = <Fv, Ft^a[k]>                 [B, K]
    textual_blended = Fv^a Ft^T                     [B, K]

The official code multiplies A by 2, i.e. temperature 0.5 on both sides, and does not re-normalise Ft^a or Fv^a.
"""

from __future__ import annotations

from typing import Sequence

import torch

from calip3d.aggregation import aggregate_views
from calip3d.published import CALIP_TEMPERATURE, DEFAULT_BETAS, LOGIT_SCALE

CALIP_DEFAULT_TEMPERATURE = CALIP_TEMPERATURE
_CHUNK_ELEMENTS = 1 << 24  # bound on B*N*max(K, D) elements per chunk (64 MiB of float32)


def calip_attention(
    spatial_feats: torch.Tensor, text_feats: torch.Tensor, temperature: float = CALIP_DEFAULT_TEMPERATURE
) -> tuple[torch.Tensor, torch.Tensor]:
    """CALIP's two attention maps from A = Fs Ft^T / temperature, `spatial_feats` [B, N, D], `text_feats` [K, D].

    Returns `(over_positions, over_classes)`, each [B, N, K]: the softmax of A over the N spatial positions (per
    class; it weights the visual-guided term) and over the K classes (per position; it builds Fs^a).
    """
    attn = torch.matmul(spatial_feats, text_feats.t()) / temperature  # [b, N, K]
    return attn.softmax(dim=1), attn.softmax(dim=2)


def terms_from_attention(
    global_feats: torch.Tensor,
    spatial_feats: torch.Tensor,
    text_feats: torch.Tensor,
    over_positions: torch.Tensor,
    over_classes: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three terms, each [B, K], from the features and the maps of `calip_attention` (same dtypes throughout)."""
    fv, fs, ft = global_feats, spatial_feats, text_feats
    # visual_guided[b, k] = <Fv[b], sum_n P[b, n, k] Fs[b, n]> = sum_n P[b, n, k] <Fv[b], Fs[b, n]>
    fv_dot_fs = torch.einsum("bd,bnd->bn", fv, fs)  # [b, N]
    visual_guided = torch.einsum("bnk,bn->bk", over_positions, fv_dot_fs)
    fs_a = torch.matmul(over_classes, ft)  # [b, N, D]
    fv_a = fs_a.mean(dim=1) + fs_a.amax(dim=1)  # [b, D]
    clip = fv @ ft.t()
    textual_blended = fv_a @ ft.t()
    return clip, visual_guided, textual_blended


def _terms_chunk(fv: torch.Tensor, fs: torch.Tensor, ft: torch.Tensor, temperature: float):
    return terms_from_attention(fv, fs, ft, *calip_attention(fs, ft, temperature))


def calip_terms(
    global_feats: torch.Tensor,
    spatial_feats: torch.Tensor,
    text_feats: torch.Tensor,
    temperature: float = CALIP_DEFAULT_TEMPERATURE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three CALIP logit terms, without logit scale.

    `global_feats` [B, D], `spatial_feats` [B, N, D], `text_feats` [K, D], rows already L2-normalised.
    Returns `(clip, visual_guided, textual_blended)`, each [B, K] in float32. Half-precision inputs are computed in
    float32 (the softmax included). Batched over images and chunked so memory stays bounded.
    """
    if global_feats.ndim != 2 or spatial_feats.ndim != 3 or text_feats.ndim != 2:
        raise ValueError(
            f"expected global [B, D], spatial [B, N, D], text [K, D]; got {tuple(global_feats.shape)}, "
            f"{tuple(spatial_feats.shape)}, {tuple(text_feats.shape)}"
        )
    batch, positions, dim = spatial_feats.shape
    if global_feats.shape != (batch, dim) or text_feats.shape[1] != dim:
        raise ValueError(
            f"shape mismatch: global {tuple(global_feats.shape)}, spatial {tuple(spatial_feats.shape)}, "
            f"text {tuple(text_feats.shape)}"
        )
    ft = text_feats.float()
    chunk = max(1, _CHUNK_ELEMENTS // max(1, positions * max(dim, ft.shape[0])))
    parts = [
        _terms_chunk(global_feats[i:i + chunk].float(), spatial_feats[i:i + chunk].float(), ft, temperature)
        for i in range(0, batch, chunk)
    ]
    if len(parts) == 1:
        return parts[0]
    return tuple(torch.cat(p, dim=0) for p in zip(*parts))  # type: ignore[return-value]


def combine_terms(
    terms: Sequence[torch.Tensor], betas: Sequence[float], logit_scale: float = LOGIT_SCALE
) -> torch.Tensor:
    """`logit_scale * sum_i beta_i * term_i` for the three terms (any matching shapes, e.g. [B, K] or [B, V, K])."""
    if len(betas) != 3 or len(terms) != 3:
        raise ValueError("need three terms and three betas (beta1, beta2, beta3)")
    clip, visual_guided, textual_blended = terms
    b1, b2, b3 = (float(b) for b in betas)
    return logit_scale * (b1 * clip + b2 * visual_guided + b3 * textual_blended)


def calip_scores(terms: Sequence[torch.Tensor], betas: Sequence[float] | None,
                 view_weights: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """The logits `[N, K]` of every scoring path from the three terms: each `[N, K]` (images) or `[N, V, K]` (point
    clouds: each term summed over views with `view_weights`, None = the plain sum, then combined), times
    `LOGIT_SCALE`. `betas` None: the CLIP term alone (plain CLIP / PointCLIP)."""
    used = terms if betas is not None else terms[:1]
    if used[0].ndim == 3:
        used = [aggregate_views(t, view_weights) for t in used]
    return LOGIT_SCALE * used[0] if betas is None else combine_terms(used, betas)


def calip_logits(
    global_feats: torch.Tensor,
    spatial_feats: torch.Tensor,
    text_feats: torch.Tensor,
    betas: Sequence[float] = DEFAULT_BETAS,
    temperature: float = CALIP_DEFAULT_TEMPERATURE,
    logit_scale: float = LOGIT_SCALE,
) -> torch.Tensor:
    """`logit_scale * (b1*clip + b2*visual_guided + b3*textual_blended)`, [B, K]."""
    return combine_terms(calip_terms(global_feats, spatial_feats, text_feats, temperature), betas, logit_scale)
