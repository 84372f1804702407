"""TDA (Karmanov et al., CVPR 2024): training-free test-time adaptation with a positive and a negative cache.

Facts read (not copied) from the release kdiAAA/TDA at e697fb0 (`tda_runner.py`, `utils.py`, `configs/*.yaml`;
docs: /work/shared/reference/methods.md sections 2.1 and 5.2). `tda_logits` streams the samples in the given row
order (the release shuffles the test split with seed 1; the caller permutes) and gives the logits the release
computes for each sample right after updating its caches. Cache entries are ranked by their entropy in nats (what
the release stores); the window compares `h = nats / log2(C)` as a Python float (the release's `get_entropy`).

Fast path: which samples sit in which cache at each step depends only on the base logits (pseudo-label, entropy),
so the caches are first replayed with scalar bookkeeping (each entry's insertion and eviction step), then the cache
logits of blocks of consecutive steps come from one matmul against the entries alive during the block, masked by
their lifetimes.
"""

from __future__ import annotations

import math
from bisect import insort
from dataclasses import dataclass, fields
from typing import Callable

import torch

from calip3d.errors import CalipError

TDA_SOURCE = ("kdiAAA/TDA configs/<dataset>.yaml (positive alpha, beta; the negative cache's settings are the same "
              "in every config); how the values were chosen is not documented (TDA issue #7, no maintainer reply)")

# Positive cache (alpha, beta) of the release's config per calip3d dataset name (RN50 and ViT-B/16 share them).
TDA_RELEASED: dict[str, tuple[float, float]] = {
    "imagenet": (2.0, 5.0),
    "caltech101": (5.0, 5.0),
    "dtd": (2.0, 3.0),
    "eurosat": (4.0, 8.0),
    "fgvc_aircraft": (2.0, 2.0),
    "food101": (1.0, 1.0),
    "oxford_flowers": (1.0, 5.0),
    "oxford_pets": (2.0, 7.0),
    "stanford_cars": (1.0, 7.0),
    "sun397": (2.0, 3.0),
    "ucf101": (3.0, 8.0),
}

_ENTROPY_CHUNK_ELEMENTS = 1 << 22  # rows * classes per chunk of the entropy pass
_PAIR_CHUNK_ELEMENTS = 1 << 22  # (entry, class) pairs * block steps per gather of the negative term
_SPARSE_DENSITY = 1 / 32  # negative masks sparser than this (all entries) are added pair by pair, not by a matmul


@dataclass(frozen=True)
class TDASettings:
    """TDA's settings; the defaults are the release's (every config): capacities 3 / 2, negative alpha 0.117,
    beta 1.0, entropy window (0.2, 0.5) on `nats / log2(C)`, mask window (0.03, 1.0) on the stored probabilities."""

    alpha_pos: float
    beta_pos: float
    shot_capacity: int = 3
    alpha_neg: float = 0.117
    beta_neg: float = 1.0
    entropy_low: float = 0.2
    entropy_high: float = 0.5
    mask_low: float = 0.03
    mask_high: float = 1.0
    shot_capacity_neg: int = 2

    def __post_init__(self) -> None:
        for f in fields(self):
            value, what = getattr(self, f.name), f"TDASettings.{f.name}"
            if f.name.startswith("shot_capacity"):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise CalipError(f"{what} must be an integer, got {value!r}")
                if value < 0:
                    raise CalipError(f"{what} must be >= 0, got {value}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise CalipError(f"{what} must be a number, got {value!r}")
            if f.name.startswith(("alpha", "beta")):
                if not math.isfinite(value):
                    raise CalipError(f"{what} must be finite, got {value}")
                if value < 0:
                    raise CalipError(f"{what} must be >= 0, got {value}")
        for low, high in (("entropy_low", "entropy_high"), ("mask_low", "mask_high")):
            if not getattr(self, low) < getattr(self, high):
                raise CalipError(f"TDASettings.{low} must be < TDASettings.{high}, got {getattr(self, low)} >= "
                                 f"{getattr(self, high)}")


def _entropies_and_labels(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy in nats `[N]` (input dtype) and pseudo-labels `[N]` (argmax, lowest index on ties) of `[N, C]`."""
    rows = max(1, _ENTROPY_CHUNK_ELEMENTS // logits.shape[1])
    nats, labels = [], []
    for start in range(0, logits.shape[0], rows):
        z = logits[start:start + rows]
        nats.append(-(z.softmax(1) * z.log_softmax(1)).sum(1))
        labels.append(z.argmax(1))
    return torch.cat(nats), torch.cat(labels)


def _lifetimes(steps: list[int], labels: list[int], keys: list[float], capacity: int,
               end: int) -> tuple[list[int], list[int]]:
    """Replay one cache over the samples `steps` (ascending) that are offered to it: per class, up to `capacity`
    (0 acts as 1) entries sorted by `keys` (stable); a full class swaps its last entry for a strictly lower key.
    Returns each entry's insertion step (its own index, ascending) and eviction step (`end` if never evicted)."""
    capacity = max(capacity, 1)
    slots: dict[int, list[tuple[float, int]]] = {}
    births: list[int] = []
    deaths: list[int] = []
    position: dict[int, int] = {}
    for t in steps:
        slot, key = slots.get(labels[t]), keys[t]
        if slot is None:
            slots[labels[t]] = [(key, t)]
        elif len(slot) < capacity:
            insort(slot, (key, t))  # t exceeds every stored step: after equal keys, as a stable sort puts it
        elif key < slot[-1][0]:
            deaths[position.pop(slot.pop()[1])] = t
            insort(slot, (key, t))
        else:
            continue
        position[t] = len(births)
        births.append(t)
        deaths.append(end)
    return births, deaths


def _mask_pairs(base_logits: torch.Tensor, steps: torch.Tensor, low: float, high: float,
                budget: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(entry, class) pairs `[P]`, `[P]` where `low < softmax(base_logits[steps]) < high` (the negative entries'
    masks, thresholded in the input dtype), entries ascending; None once there are more than `budget`."""
    rows = max(1, _ENTROPY_CHUNK_ELEMENTS // base_logits.shape[1])
    entries, classes, total = [], [], 0
    for start in range(0, steps.numel(), rows):
        p = base_logits[steps[start:start + rows]].softmax(1)
        entry, cls = ((p > low) & (p < high)).nonzero(as_tuple=True)
        total += entry.numel()
        if total > budget:
            return None
        entries.append(entry + start)
        classes.append(cls)
    if not entries:
        return steps[:0], steps[:0]
    return torch.cat(entries), torch.cat(classes)


def _add_cache_term(out: torch.Tensor, features: torch.Tensor, births: list[int], deaths: list[int], alpha: float,
                    beta: float, block: int, pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
                    masks_of: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
    """`out [N, C] += alpha * exp(-(beta - beta f K_t^T)) @ V_t` for every step t, over the entries alive at t.
    The entries' rows of V: `pairs` (entry, class) where V = 1, entries ascending, or `masks_of(steps [E])`
    giving them as bool `[E, C]`."""
    n, classes = out.shape
    device, dtype = out.device, out.dtype
    born = torch.tensor(births, dtype=torch.long, device=device)
    dies = torch.tensor(deaths, dtype=torch.long, device=device)
    empty = torch.empty(0, dtype=torch.long, device=device)
    live = empty  # the entries alive at some step of the block, ascending
    if pairs is not None:
        pair_entry, pair_cls = pairs
        counts = torch.bincount(pair_entry, minlength=len(births))
        ptr = [0] + counts.cumsum(0).tolist()
        one_each = bool((counts == 1).all())  # one class per entry (the positive cache): pairs = entries in order
        live_row, live_cls = empty, empty  # the live entries' pairs: row in `live`, class
    else:
        live_masks = torch.empty(0, classes, dtype=torch.bool, device=device)
    first = 0
    for t0 in range(0, n, block):
        t1 = min(t0 + block, n)
        last = first
        while last < len(births) and births[last] < t1:
            last += 1
        keep = dies[live] > t0
        kept = int(keep.sum())
        if pairs is not None:
            in_kept = keep[live_row]
            new = slice(ptr[first], ptr[last])
            live_row = torch.cat([(keep.cumsum(0) - 1)[live_row[in_kept]], pair_entry[new] - first + kept])
            live_cls = torch.cat([live_cls[in_kept], pair_cls[new]])
        else:
            live_masks = torch.cat([live_masks[keep], masks_of(born[first:last])])
        live = torch.cat([live[keep], torch.arange(first, last, device=device)])
        first = last
        if live.numel() == 0:
            continue
        b_live, d_live = born[live], dies[live]
        weights = (features[b_live] @ features[t0:t1].T).mul_(beta).sub_(beta).exp_()  # [E, B]
        partial = ((b_live > t0) | (d_live < t1)).nonzero().squeeze(1)  # inserted or evicted inside the block
        if partial.numel():
            steps = torch.arange(t0, t1, device=device)
            dead = (b_live[partial, None] > steps) | (steps >= d_live[partial, None])
            weights[partial] = weights[partial].masked_fill_(dead, 0)
        if pairs is None:
            term = live_masks.T.to(dtype) @ weights  # [C, B]
        else:
            term = torch.zeros(classes, t1 - t0, dtype=dtype, device=device)
            if one_each:
                term.index_add_(0, live_cls, weights)
            else:
                chunk = max(1, _PAIR_CHUNK_ELEMENTS // (t1 - t0))
                for start in range(0, live_row.numel(), chunk):
                    term.index_add_(0, live_cls[start:start + chunk], weights[live_row[start:start + chunk]])
        out[t0:t1] += alpha * term.T


def tda_logits(features: torch.Tensor, base_logits: torch.Tensor, settings: TDASettings, *,
               block_size: int = 512) -> torch.Tensor:
    """TDA logits `[N, C]` of a stream of `features [N, D]` (used as given: L2-normalise them) with zero-shot
    `base_logits [N, C]` (`100 f W^T`), samples in row order; same dtype and device as the inputs.

    Per step: entropy `h = nats / log2(C)`, pseudo-label `argmax`; the positive cache is always updated, the
    negative one only when `entropy_low < h < entropy_high` (it stores `softmax(z)`); then
    `z + a_pos exp(-b_pos (1 - f K_pos^T)) @ onehot - a_neg exp(-b_neg (1 - f K_neg^T)) @ M`, where M = 1 where
    `mask_low < p < mask_high`. `block_size` steps share one matmul (memory ~ (C * capacity + block) * block)."""
    if not isinstance(settings, TDASettings):
        raise CalipError(f"tda_logits needs TDASettings, got {type(settings).__name__}")
    if features.ndim != 2 or base_logits.ndim != 2 or features.shape[0] != base_logits.shape[0]:
        raise CalipError(f"tda_logits needs features [N, D] and base logits [N, C], got {tuple(features.shape)} "
                         f"and {tuple(base_logits.shape)}")
    if features.dtype != base_logits.dtype or not base_logits.is_floating_point():
        raise CalipError(f"tda_logits needs features and base logits of one floating dtype, got {features.dtype} "
                         f"and {base_logits.dtype}")
    if features.device != base_logits.device:
        raise CalipError(f"tda_logits: features on {features.device}, base logits on {base_logits.device}")
    if base_logits.shape[1] < 2:
        raise CalipError(f"tda_logits needs at least 2 classes (entropy / log2(C)), got {base_logits.shape[1]}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise CalipError(f"tda_logits: block_size must be an integer >= 1, got {block_size!r}")
    n, classes = base_logits.shape
    out = base_logits.clone()
    if n == 0:
        return out
    nats, labels = _entropies_and_labels(base_logits)
    labels_list, nats_list = labels.tolist(), nats.tolist()
    s = settings
    if s.alpha_pos != 0:
        births, deaths = _lifetimes(list(range(n)), labels_list, nats_list, s.shot_capacity, n)
        entries = torch.arange(len(births), device=out.device)
        _add_cache_term(out, features, births, deaths, s.alpha_pos, s.beta_pos, block_size,
                        pairs=(entries, labels[births]))
    if s.alpha_neg != 0:
        h = (nats / math.log2(classes)).tolist()  # compared as Python floats, as the release's get_entropy returns
        offered = [t for t in range(n) if s.entropy_low < h[t] < s.entropy_high]
        births, deaths = _lifetimes(offered, labels_list, nats_list, s.shot_capacity_neg, n)
        steps = torch.tensor(births, dtype=torch.long, device=out.device)
        pairs = _mask_pairs(base_logits, steps, s.mask_low, s.mask_high, _SPARSE_DENSITY * len(births) * classes)

        def masks(rows: torch.Tensor) -> torch.Tensor:
            p = base_logits[rows].softmax(1)  # the entries' stored probabilities, thresholded in the input dtype
            return (p > s.mask_low) & (p < s.mask_high)

        _add_cache_term(out, features, births, deaths, -s.alpha_neg, s.beta_neg, block_size, pairs=pairs,
                        masks_of=None if pairs is not None else masks)
    return out
