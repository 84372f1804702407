"""Closed-form training-free few-shot heads on frozen CLIP features: GDA, APE and Tip-X, and their released searches.

Vectorised torch, on any device; every function keeps its inputs' dtype (float32 in, float32 out; float64 in,
float64 out). Shapes: M evaluated features, N cache keys (or GDA rows), C classes, D feature dimension.

Sources, read (not copied) from the releases, each at HEAD (docs: /work/shared/reference/methods.md 1.1-1.3, 5.1):
- GDA: mrflogs/ICLR24 `main_few_shots.py` (`run`, commit 560fe21).
- APE: yangyangyang127/APE `main.py` (`APE`), `utils.py` (`cal_criterion`), `extract_features.py`,
  `configs/*.yaml` (commit 70460de).
- Tip-X: vishaal27/SuS-X `tipx.py` (`compute_image_text_distributions`, `get_kl_divergence_sims`, `scale_`,
  `hparam_search`, commit d7d4d37).

The searches return exactly the release's choice: every grid point's number of correct predictions is counted, then
the first grid point in the release's loop order with the largest count wins, provided it beats the release's
starting accuracy (0: a grid point with no correct prediction never replaces the starting values), as the releases'
`if acc > best_acc` loops do. They are fast where the straightforward loops are not:
- the affinity to the cache is computed once per chunk of samples, `exp(-beta (1 - A))` once per beta and reused for
  every inner parameter;
- one-hot label products (`E @ L`) are class-wise segment sums;
- at each outer grid point the inner parameters enter the logits linearly (`base + gamma * kl + alpha * cache`), so
  `_grid_correct` decides whole boxes of the inner grid per sample from the box's corners (the label class wins
  everywhere, or one class beats it everywhere), drops the classes that cannot be the argmax in the box, and splits
  the rest; the points it evaluates are evaluated in the release's arithmetic order, the first index winning ties as
  argmax does.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

LOGIT_SCALE = 100.0  # hard-coded in all three releases (not CLIP's logit_scale)
_BUDGET = 1 << 24  # elements of one [rows, N] matrix per chunk
_MARGIN_EPS = 128  # pruning margin in units of the dtype's eps, relative to the logits' magnitude

# ------------------------------------------------------------------------------------------------ shared pieces


def _rows(cols: int, budget: int = _BUDGET) -> int:
    """Rows per chunk so that a `[rows, cols]` matrix has at most `budget` elements."""
    return max(1, budget // max(1, cols))


@dataclass(frozen=True)
class Segments:
    """Class membership of N columns sorted by class: `labels [N]` (non-decreasing), `num_classes`. `class_sums`
    of `[..., N]` -> `[..., C]` is a reshape-and-sum when every class has the same number of columns, else a
    padded gather (classes with fewer or no columns add zeros)."""

    labels: torch.Tensor
    num_classes: int
    counts: torch.Tensor = field(init=False)
    per_class: int | None = field(init=False)
    padded: torch.Tensor | None = field(init=False)

    def __post_init__(self) -> None:
        counts = torch.bincount(self.labels, minlength=self.num_classes)
        object.__setattr__(self, "counts", counts)
        uniform = bool((counts == counts[0]).all()) and int(counts[0]) > 0
        object.__setattr__(self, "per_class", int(counts[0]) if uniform else None)
        padded = None
        if not uniform:  # [C, Kmax] column index per class slot, N (a zero column) where the class has fewer
            width = max(1, int(counts.max()))
            starts = torch.cumsum(counts, 0) - counts
            slot = torch.arange(width, device=self.labels.device)
            padded = torch.where(slot[None] < counts[:, None], starts[:, None] + slot[None],
                                 torch.full_like(slot[None], self.labels.numel()))
        object.__setattr__(self, "padded", padded)

    @staticmethod
    def sort(labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, "Segments"]:
        """(the stable permutation that sorts `labels` by class, the segments of the sorted labels)."""
        order = torch.sort(labels.long(), stable=True).indices
        return order, Segments(labels.long()[order], num_classes)

    def grouped(self, values: torch.Tensor) -> torch.Tensor:
        """`[..., N]` -> `[..., C, K]` (K columns per class, zero-padded)."""
        if self.per_class is not None:
            return values.unflatten(-1, (self.num_classes, self.per_class))
        zero = values.new_zeros(*values.shape[:-1], 1)
        return torch.cat([values, zero], dim=-1)[..., self.padded]

    def class_sums(self, values: torch.Tensor) -> torch.Tensor:
        """`[..., N]` -> `[..., C]`: the sum over each class's columns (`values @ one_hot(labels)`)."""
        return self.grouped(values).sum(-1)


def _values(b: torch.Tensor, ts: Sequence[torch.Tensor], c: Sequence[torch.Tensor]) -> torch.Tensor:
    """`(b + ts[0] * c[0]) + ts[1] * c[1] ...`, left to right as the releases write their logits."""
    v = b
    for t, k in zip(ts, c):
        v = v + t * k
    return v


_LEAF = 4  # a box of at most _LEAF * 2^T grid points is evaluated point by point, a larger one split ...
_LEAF_ELEMENTS = 1 << 20  # ... unless evaluating it touches at most this many logits


def _grid_correct(base: torch.Tensor, terms: Sequence[torch.Tensor], axes: Sequence[torch.Tensor],
                  labels: torch.Tensor, groups: torch.Tensor | None = None, num_groups: int = 1) -> torch.Tensor:
    """Correct counts `[num_groups, *[len(a) for a in axes]]` of `argmax_c logits == label` at every point of the
    product grid of `axes` (one 1-D coefficient tensor per term), where `logits = (base + terms[0] * a0) +
    terms[1] * a1 ...` (left to right, as the releases write it); `base` and each term `[R, C]`, `labels [R]`,
    `groups [R]` the group each row is counted in (None: all in group 0).

    Equal to evaluating every grid point on every class (argmax: the first maximum), faster: `logits_c -
    logits_label` is linear in the coefficients, so its signs at the corners of a box of the grid decide the whole
    box unless they change there. A row whose label class wins at every corner by a margin is right on the whole
    box; one whose label class loses at every corner to one same class is wrong on it. For the other rows the
    classes that one class beats at every corner are dropped (they cannot be the argmax in the box) and the box is
    split in two along its longest side, or, once it has at most `_LEAF * 2^T` points or is small
    (`_LEAF_ELEMENTS`), evaluated point by point on the classes left, kept in class order so that the first maximum
    is still the first. The margin covers rounding."""
    rows, num_classes = base.shape
    sizes = [a.numel() for a in axes]
    counts = torch.zeros(num_groups, *sizes, dtype=torch.long, device=base.device)
    if rows == 0:
        return counts
    groups = torch.zeros(rows, dtype=torch.long, device=base.device) if groups is None else groups
    if num_classes == 1:
        return counts + torch.bincount(groups, minlength=num_groups).view(-1, *[1] * len(sizes))
    flat = counts.view(num_groups, -1)
    strides = [math.prod(sizes[k + 1:]) for k in range(len(sizes))]
    scale = base.abs().amax(1, keepdim=True)
    for t, a in zip(terms, axes):
        scale = scale + a.abs().max() * t.abs().amax(1, keepdim=True)
    margin = _MARGIN_EPS * torch.finfo(base.dtype).eps * scale + torch.finfo(base.dtype).tiny  # [R, 1]
    leaf = _LEAF * 2 ** len(axes)

    def points(box: Sequence[slice]) -> torch.Tensor:
        """Flat indices of the box's grid points, row-major."""
        index = torch.zeros(1, dtype=torch.long, device=base.device)
        for k, sl in enumerate(box):
            index = (index[:, None] + strides[k] * torch.arange(sl.start, sl.stop, device=base.device)).flatten()
        return index

    # A node: its rows' groups, their logits' parts on the classes still in play (in class order; dropped ones
    # padded with base -inf, terms 0), the label's column, the margins, and the box of grid points.
    Node = tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor, torch.Tensor, tuple[slice, ...]]
    stack: list[Node] = [(groups, base, list(terms), labels[:, None], margin, tuple(slice(0, n) for n in sizes))]
    while stack:
        grp, b, ts, pos, m, box = stack.pop()
        sub_axes = [a[sl] for a, sl in zip(axes, box)]
        corners = [_values(b, ts, c) for c in itertools.product(*[(a.min(), a.max()) for a in sub_axes])]
        sure = torch.ones(b.shape[0], dtype=torch.bool, device=base.device)
        lead = None  # min over corners of (logit_c - logit_label): > margin for some c -> c beats the label
        for c in corners:
            at_label = c.gather(1, pos)
            sure &= (at_label - c.scatter(1, pos, -math.inf).amax(1, keepdim=True) > m).squeeze(1)
            gap = c - at_label
            lead = gap if lead is None else torch.minimum(lead, gap)
        hopeless = (lead > m).any(1)
        index = points(box)
        if bool(sure.any()):
            flat[:, index] += torch.bincount(grp[sure], minlength=num_groups)[:, None]
        keep = (~sure & ~hopeless).nonzero().squeeze(1)
        if keep.numel() == 0:
            continue
        corners = [c[keep] for c in corners]
        grp, b, ts, pos, m = grp[keep], b[keep], [t[keep] for t in ts], pos[keep], m[keep]
        alive = torch.ones_like(b, dtype=torch.bool)
        for ref_corner in corners:  # drop the classes that one class (first at a corner) beats at every corner
            r = ref_corner.argmax(1, keepdim=True)
            best = corners[0] - corners[0].gather(1, r)
            for c in corners[1:]:
                best = torch.maximum(best, c - c.gather(1, r))
            alive &= best >= -m
        alive.scatter_(1, pos, True)  # not hopeless: the label's class stays
        width = int(torch.count_nonzero(alive, dim=1).max())
        slots = torch.arange(b.shape[1], device=base.device)
        cols = torch.where(alive, slots, slots + b.shape[1]).topk(width, dim=1, largest=False).values
        valid = cols < b.shape[1]  # the classes left, in class order, then padding
        cols = cols % b.shape[1]
        b = b.gather(1, cols).masked_fill(~valid, -math.inf)
        ts = [t.gather(1, cols).masked_fill(~valid, 0) for t in ts]
        pos = (cols == pos).long().argmax(1, keepdim=True)
        longest = max(range(len(box)), key=lambda k: box[k].stop - box[k].start)
        small = index.numel() * b.numel() <= _LEAF_ELEMENTS  # evaluating it costs less than splitting it
        if index.numel() > leaf and not small and box[longest].stop - box[longest].start > 1:
            sl = box[longest]
            half = (sl.start + sl.stop) // 2
            for part in (slice(half, sl.stop), slice(sl.start, half)):
                stack.append((grp, b, ts, pos, m, box[:longest] + (part,) + box[longest + 1:]))
            continue
        grid = torch.cartesian_prod(*sub_axes).view(-1, len(sub_axes))  # [P, T], row-major
        slot = torch.arange(width, device=base.device)[None, None]
        not_before, not_after = slot >= pos[None], slot <= pos[None]
        step = _rows(b.numel())
        for i in range(0, grid.shape[0], step):
            g = grid[i:i + step]
            v = _values(b[None], [t[None] for t in ts], [g[:, k, None, None] for k in range(g.shape[1])])
            at = v.gather(2, pos[None].expand(v.shape[0], -1, -1))
            before = v.masked_fill(not_before, -math.inf).amax(2, keepdim=True)  # argmax: the first maximum wins
            after = v.masked_fill(not_after, -math.inf).amax(2, keepdim=True)
            hit = ((at > before) & (at >= after))[..., 0].T.long()  # [rows, points]
            flat[:, index[i:i + step]] += torch.zeros(num_groups, g.shape[0], dtype=torch.long,
                                                      device=base.device).index_add_(0, grp, hit)
    return counts


@dataclass(frozen=True)
class GridSearch:
    """A released grid search's outcome: `params` (name -> value) chosen, the grids by name in the release's loop
    order (outer first), `counts` of correct predictions on that grid (shape: the grids' lengths), `index` of the
    chosen point (None: no grid point beat the starting accuracy, the starting values are kept), `correct` and
    `accuracy` (percent) of the chosen point on the `total` searched samples."""

    params: dict[str, float]
    grids: dict[str, tuple[float, ...]]
    counts: torch.Tensor
    index: tuple[int, ...] | None
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / self.total if self.total else float("nan")


def first_best(counts: torch.Tensor, grids: dict[str, Sequence[float]], start: dict[str, float],
               start_correct: int = 0) -> GridSearch:
    """The release's rule over `counts` (shape: the grids' lengths, loop order outer first): the first grid point
    in row-major order with the largest count, if it beats `start_correct`; else the `start` values."""
    flat = counts.flatten()
    best = int(flat.max()) if flat.numel() else start_correct
    frozen = {k: tuple(float(v) for v in g) for k, g in grids.items()}
    if best <= start_correct:
        return GridSearch(dict(start), frozen, counts, None, start_correct, 0)
    i = int((flat == best).nonzero()[0])
    index = tuple(int(x) for x in torch.unravel_index(torch.tensor(i), counts.shape))
    params = {name: frozen[name][j] for name, j in zip(frozen, index)}
    return GridSearch(params, frozen, counts, index, best, 0)


def _with_total(result: GridSearch, total: int) -> GridSearch:
    return GridSearch(result.params, result.grids, result.counts, result.index, result.correct, total)


def _axis(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """A grid's values as a 1-D tensor in `like`'s dtype (a Python float times a tensor is computed in the tensor's
    dtype, so the products are the releases')."""
    return torch.tensor(list(values), dtype=like.dtype, device=like.device)


# ------------------------------------------------------------------------------------------------ GDA

GDA_ALPHAS = (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)  # main_few_shots.py l.70
GDA_START_ALPHA = 0.1  # best_alpha = 0.1, best_val_acc = 0 before the loop


def gda_head(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """GDA's linear head (ICLR24 `run`, l.55-66): `features [N, D]` (every augmented pass its own L2-normalised
    row), `labels [N]` -> `(weight [C, D], bias [C])` with logits `features @ weight.T + bias`.

    mu_c is the mean of class c's rows; Z the class-centred rows; `S = torch.cov(Z.T)` (re-centred, N - 1);
    precision `P = D * pinv((N - 1) S + tr(S) I)`; `weight[c] = mu_c P` (P symmetric: = P mu_c) and
    `bias_c = log(1/C) - mu_c P mu_c / 2` (uniform prior). A class with no row gets a zero mean (weight 0, bias
    log(1/C)): calip3d's choice, the release gives NaN."""
    n, d = features.shape
    labels = labels.long().to(features.device)
    counts = torch.bincount(labels, minlength=num_classes).to(features.dtype)
    sums = features.new_zeros(num_classes, d).index_add_(0, labels, features)
    means = sums / counts.clamp(min=1)[:, None]
    centred = features - means[labels]
    cov = torch.cov(centred.T).reshape(d, d)  # (a 0-dim tensor when D = 1)
    eye = torch.eye(d, dtype=features.dtype, device=features.device)
    precision = d * torch.linalg.pinv((n - 1) * cov + cov.trace() * eye)
    weight = means @ precision
    prior = torch.full((num_classes,), 1.0 / num_classes, dtype=features.dtype, device=features.device)
    bias = prior.log() - (weight * means).sum(1) / 2
    return weight, bias


def gda_logits(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """`[M, D]` -> `[M, C]`: `features @ weight.T + bias`."""
    return features @ weight.T + bias


def gda_fused_logits(test_features: torch.Tensor, text_classifier: torch.Tensor, weight: torch.Tensor,
                     bias: torch.Tensor, alpha: float) -> torch.Tensor:
    """GDA's fused logits `[M, C]`: `100 f T^T + alpha (f W^T + b)` (`test_features [M, D]`, `text_classifier
    [C, D]`); 100 is hard-coded in the release."""
    return LOGIT_SCALE * test_features @ text_classifier.T + alpha * gda_logits(test_features, weight, bias)


def gda_search(base: torch.Tensor, gda: torch.Tensor, labels: torch.Tensor,
               alphas: Sequence[float] = GDA_ALPHAS, start: float = GDA_START_ALPHA) -> GridSearch:
    """GDA's alpha search: `base [M, C]` (the release's `100 f T^T`) `+ alpha * gda [M, C]` (`gda_logits`), the
    first alpha of `alphas` with the best top-1 accuracy on `labels [M]`; `start` kept if none is correct."""
    labels = labels.long().to(base.device)
    axis = _axis(alphas, base)
    counts = torch.zeros(len(alphas), dtype=torch.long, device=base.device)
    step = _rows(base.shape[1] * 8)
    for i in range(0, base.shape[0], step):
        counts += _grid_correct(base[i:i + step], [gda[i:i + step]], [axis], labels[i:i + step])[0]
    return _with_total(first_best(counts, {"alpha": alphas}, {"alpha": start}), base.shape[0])


# ------------------------------------------------------------------------------------------------ APE

APE_EPS = 1e-6  # in div's log2((L + 1e-6) / (p + 1e-6))


def ape_grids(search_scale: Sequence[float], search_step: Sequence[int]) -> dict[str, tuple[float, ...]]:
    """APE's grids in its loop order (main.py `APE`): beta `i (s0 - 0.1) / n0 + 0.1`, alpha `i (s1 - 0.1) / n1 +
    0.1`, gamma `i s2 / n2` for i in range(n)."""
    s, n = search_scale, search_step
    return {"beta": tuple(i * (s[0] - 0.1) / n[0] + 0.1 for i in range(n[0])),
            "alpha": tuple(i * (s[1] - 0.1) / n[1] + 0.1 for i in range(n[1])),
            "gamma": tuple(i * s[2] / n[2] for i in range(n[2]))}


def ape_criterion(text: torch.Tensor, keys: torch.Tensor, key_labels: torch.Tensor,
                  lambdas: Sequence[float]) -> torch.Tensor:
    """APE's channel criterion `J [D] = -lambda1 S + lambda2 V` (utils.py `cal_criterion`, training-free:
    text and cache samples). `text [C, D]`, `keys [N, D]`, `key_labels [N]`.

    S_d is the mean of `f_{i,d} f_{j,d}` over all ordered pairs of samples of different classes, the samples of a
    class being its text feature and its keys: with s_c the sum of class c's samples and n_c their number,
    `S = ((sum_c s_c)^2 - sum_c s_c^2) / ((sum_c n_c)^2 - sum_c n_c^2)` (the release loops over the pairs and
    assumes K keys in every class; this is the same mean for any class sizes). V_d is the unbiased variance of the
    text features across classes. Computed in float64, returned in `text`'s dtype."""
    t, k = text.double(), keys.double()
    labels = key_labels.long().to(text.device)
    sums = t.clone().index_add_(0, labels, k)
    n = 1.0 + torch.bincount(labels, minlength=text.shape[0]).double()
    total = sums.sum(0)
    similarity = (total * total - (sums * sums).sum(0)) / (n.sum() ** 2 - (n * n).sum())
    criterion = -lambdas[0] * similarity + lambdas[1] * t.var(dim=0)
    return criterion.to(text.dtype)


@dataclass(frozen=True)
class ApeCache:
    """APE's fitted cache on the selected channels `indices [Q]`: `keys [N, Q]` and `text [C, Q]` re-normalised,
    sorted by class (`segments`), `div [N]` the keys' KL-based re-weighting exponent."""

    indices: torch.Tensor
    keys: torch.Tensor
    text: torch.Tensor
    segments: Segments
    div: torch.Tensor
    criterion: torch.Tensor

    @property
    def num_classes(self) -> int:
        return self.segments.num_classes


def ape_fit(text: torch.Tensor, keys: torch.Tensor, key_labels: torch.Tensor, feat_num: int,
            lambdas: Sequence[float]) -> ApeCache:
    """APE's training-free cache (main.py `APE`): the top-`feat_num` channels of `ape_criterion` (torch.topk
    order), the keys `[N, D]` and class text `[C, D]` restricted to them and re-normalised (text per class), and
    `div_j = sum_c L_jc log2((L_jc + 1e-6) / (softmax(F'_j W'^T)_c + 1e-6))` with the unscaled cosine logits of
    the key against the selected text (the release applies no logit scale there)."""
    criterion = ape_criterion(text, keys, key_labels, lambdas)
    indices = torch.topk(criterion.double(), k=feat_num).indices
    order, segments = Segments.sort(key_labels.to(keys.device), text.shape[0])
    sel_keys = F.normalize(keys[order][:, indices], dim=-1)
    sel_text = F.normalize(text[:, indices], dim=-1)
    probs = (sel_keys @ sel_text.T).softmax(dim=1)
    onehot = F.one_hot(segments.labels, text.shape[0]).to(keys.dtype)
    div = (onehot * torch.log2((onehot + APE_EPS) / (probs + APE_EPS))).sum(1)
    return ApeCache(indices, sel_keys, sel_text, segments, div, criterion)


def ape_affinity(cache: ApeCache, features: torch.Tensor) -> torch.Tensor:
    """`R_f'F'` `[M, N]`: the features `[M, D]` on the selected channels, re-normalised, against the keys."""
    return F.normalize(features[:, cache.indices], dim=-1) @ cache.keys.T


def ape_cache_logits(cache: ApeCache, affinity: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """`exp(-(beta - beta A)) @ (L * exp(div * gamma))` `[M, C]`, the product with the one-hot L as a class-wise
    sum."""
    weights = (cache.div * gamma).exp()
    return cache.segments.class_sums(((-1) * (beta - beta * affinity)).exp() * weights)


def ape_logits(base: torch.Tensor, cache: ApeCache, features: torch.Tensor, alpha: float, beta: float,
               gamma: float) -> torch.Tensor:
    """APE's logits `[M, C]`: `base` (the release: `100 f W^T` on all channels) `+ cache_logits * alpha`."""
    return base + ape_cache_logits(cache, ape_affinity(cache, features), beta, gamma) * alpha


def ape_search(base: torch.Tensor, cache: ApeCache, features: torch.Tensor, labels: torch.Tensor,
               grids: dict[str, Sequence[float]]) -> GridSearch:
    """APE's three-parameter search (main.py `APE`): loops beta, alpha, gamma (outer to inner) over `grids`
    (`ape_grids`), `acc > best_search_acc` from 0, starting values (0, 0, 0). `base [M, C]`, `features [M, D]`,
    `labels [M]`."""
    betas, alphas, gammas = grids["beta"], grids["alpha"], grids["gamma"]
    labels = labels.long().to(base.device)
    counts = torch.zeros(len(betas), len(alphas), len(gammas), dtype=torch.long, device=base.device)
    axis = _axis(alphas, base)
    gamma_t = _axis(gammas, base)
    weights = cache.segments.grouped((cache.div[None] * gamma_t[:, None]).exp())  # [G, C, K]
    n_gamma = len(gammas)
    step = min(_rows(cache.keys.shape[0]), _rows(n_gamma * cache.num_classes, _BUDGET // 2))
    for i in range(0, base.shape[0], step):
        affinity = ape_affinity(cache, features[i:i + step])
        b, y = base[i:i + step], labels[i:i + step]
        m = b.shape[0]
        b_rep, y_rep = b.repeat(n_gamma, 1), y.repeat(n_gamma)  # rows gamma-major: group = gamma index
        groups = torch.arange(n_gamma, device=base.device).repeat_interleave(m)
        for j, beta in enumerate(betas):
            grouped = cache.segments.grouped(((-1) * (beta - beta * affinity)).exp())  # [m, C, K]
            per_gamma = torch.einsum("mck,gck->gmc", grouped, weights).reshape(n_gamma * m, -1)
            counts[j] += _grid_correct(b_rep, [per_gamma], [axis], y_rep, groups, n_gamma).T
    start = {"beta": 0.0, "alpha": 0.0, "gamma": 0.0}
    return _with_total(first_best(counts, {"beta": betas, "alpha": alphas, "gamma": gammas}, start), base.shape[0])


# ------------------------------------------------------------------------------------------------ Tip-X

TIPX_TEMPERATURE = 0.5  # tipx.py --temperature default
TIPX_SEARCH_SCALE = (50, 50, 30)  # hparam_search: [beta, alpha, gamma]
TIPX_SEARCH_STEP = (200, 20, 50)


def tipx_grids() -> dict[str, tuple[float, ...]]:
    """Tip-X's grids in its loop order (tipx.py `hparam_search`): alpha `i (50 - 0.1) / 20 + 0.1` (0.1 .. 47.505),
    beta `i (50 - 1) / 200 + 1` (1 .. 49.755), gamma `i (30 - 0.1) / 50 + 0.1` (0.1 .. 29.402)."""
    s, n = TIPX_SEARCH_SCALE, TIPX_SEARCH_STEP
    return {"alpha": tuple(i * (s[1] - 0.1) / n[1] + 0.1 for i in range(n[1])),
            "beta": tuple(i * (s[0] - 1) / n[0] + 1 for i in range(n[0])),
            "gamma": tuple(i * (s[2] - 0.1) / n[2] + 0.1 for i in range(n[2]))}


def text_distributions(features: torch.Tensor, text: torch.Tensor,
                       temperature: float = TIPX_TEMPERATURE) -> torch.Tensor:
    """`softmax(x W^T / T)` `[M, C]` of features `[M, D]` over the class text `[C, D]` (cosine logits)."""
    return ((features @ text.T) / temperature).softmax(dim=-1)


def kl_divergence_matrix(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """`KL(p_m || q_n)` `[M, N]` for every pair of rows of `p [M, C]`, `q [N, C]`, in one matmul:
    `sum_c p log p - p @ log(q)^T`, computed in float64 (the difference cancels) and returned in `p`'s dtype."""
    return _kl(p, q.double().log()).to(p.dtype)


def _kl(p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """`sum_c p log p - p @ log_q^T` in float64 (`log_q` float64 `[N, C]`)."""
    p = p.double()
    return (p * p.log()).sum(-1, keepdim=True) - p @ log_q.T


def minmax_rescale(x: torch.Tensor, target_range: tuple[float, float],
                   source_range: tuple[float, float] | None = None) -> torch.Tensor:
    """tipx.py `scale_`: `(x - lo) / (hi - lo) * (t_hi - t_lo) + t_lo`, `(lo, hi)` = `source_range` or x's own
    min and max."""
    lo, hi = (x.min(), x.max()) if source_range is None else source_range
    t_lo, t_hi = target_range
    return (x - lo) / (hi - lo) * (t_hi - t_lo) + t_lo


@dataclass(frozen=True)
class TipXCache:
    """Tip-X's support set: `keys [N, D]` (normalised, sorted by class: `segments`), the class `text [C, D]`, and
    `log_q [N, C]` (float64), the log of the keys' text-space distributions at `temperature`."""

    keys: torch.Tensor
    text: torch.Tensor
    segments: Segments
    log_q: torch.Tensor
    temperature: float

    @property
    def num_classes(self) -> int:
        return self.segments.num_classes


def tipx_fit(keys: torch.Tensor, key_labels: torch.Tensor, text: torch.Tensor,
             temperature: float = TIPX_TEMPERATURE) -> TipXCache:
    """The support set of Tip-X from cache keys `[N, D]` (L2-normalised) with labels `[N]` and class text
    `[C, D]`."""
    order, segments = Segments.sort(key_labels.to(keys.device), text.shape[0])
    sorted_keys = keys[order]
    log_q = text_distributions(sorted_keys, text, temperature).double().log()
    return TipXCache(sorted_keys, text, segments, log_q, temperature)


def tipx_kl(cache: TipXCache, features: torch.Tensor) -> torch.Tensor:
    """`KL(p(x_m) || p(support_n))` `[M, N]` of features `[M, D]` (computed in float64, returned in their
    dtype). Every row: tipx.py's `get_kl_divergence_sims` loops over `M // 100` batches of 100 and leaves the last
    `M % 100` rows at 0 (calip3d computes them)."""
    p = text_distributions(features, cache.text, cache.temperature)
    return _kl(p, cache.log_q).to(features.dtype)


def tipx_ranges(cache: TipXCache, features: torch.Tensor) -> tuple[tuple[float, float], tuple[float, float]]:
    """((min, max) of the KL matrix, (min, max) of the affinities `f F^T`) of a set of features `[M, D]`, chunked:
    the ranges `scale_` reads."""
    kl_lo, kl_hi, a_lo, a_hi = math.inf, -math.inf, math.inf, -math.inf
    step = _rows(cache.keys.shape[0] * 2)
    for i in range(0, features.shape[0], step):
        kl, aff = tipx_kl(cache, features[i:i + step]), features[i:i + step] @ cache.keys.T
        kl_lo, kl_hi = min(kl_lo, float(kl.min())), max(kl_hi, float(kl.max()))
        a_lo, a_hi = min(a_lo, float(aff.min())), max(a_hi, float(aff.max()))
    return (kl_lo, kl_hi), (a_lo, a_hi)


def tipx_kl_logits(cache: TipXCache, features: torch.Tensor, target_range: tuple[float, float] | None = None,
                   source_range: tuple[float, float] | None = None) -> torch.Tensor:
    """Tip-X's `kl_logits` `[M, C]` of features `[M, D]`: the KL matrix min-max rescaled (`scale_`) from
    `source_range` to `target_range`, negated, summed over each class's support samples (`@ L`). None: the range
    of this set's own KL matrix / affinities `f F^T` (the release rescales the test KL matrix to the *val*
    affinities' range: pass that range to reproduce it)."""
    if target_range is None or source_range is None:
        own_kl, own_aff = tipx_ranges(cache, features)
        source_range = own_kl if source_range is None else source_range
        target_range = own_aff if target_range is None else target_range
    step = _rows(cache.keys.shape[0] * 2)
    parts = [cache.segments.class_sums(-minmax_rescale(tipx_kl(cache, features[i:i + step]), target_range,
                                                       source_range))
             for i in range(0, features.shape[0], step)]
    return torch.cat(parts) if parts else features.new_zeros(0, cache.num_classes)


def tipx_cache_logits(cache: TipXCache, affinity: torch.Tensor, beta: float) -> torch.Tensor:
    """`exp(-(beta - beta A)) @ L` `[M, C]` for affinities `A = f F^T` `[M, N]`."""
    return cache.segments.class_sums(((-1) * (beta - beta * affinity)).exp())


def tipx_logits(base: torch.Tensor, kl_logits: torch.Tensor, cache_logits: torch.Tensor, alpha: float,
                gamma: float) -> torch.Tensor:
    """Tip-X's logits `[M, C]`: `base` (the release: `100 f W^T`) `+ kl_logits * gamma + cache_logits * alpha`."""
    return base + kl_logits * gamma + cache_logits * alpha


def tipx_search(base: torch.Tensor, cache: TipXCache, features: torch.Tensor, kl_logits: torch.Tensor,
                labels: torch.Tensor, grids: dict[str, Sequence[float]] | None = None) -> GridSearch:
    """Tip-X's three-parameter search (tipx.py `hparam_search`): loops alpha, beta, gamma (outer to inner) over
    `grids` (default `tipx_grids()`), `acc > best` from 0, starting values (0, 0, 0). `base`, `kl_logits`
    `[M, C]`, `features [M, D]`, `labels [M]`."""
    grids = grids or tipx_grids()
    alphas, betas, gammas = grids["alpha"], grids["beta"], grids["gamma"]
    labels = labels.long().to(base.device)
    counts = torch.zeros(len(alphas), len(betas), len(gammas), dtype=torch.long, device=base.device)
    gamma_axis, alpha_axis = _axis(gammas, base), _axis(alphas, base)
    step = _rows(cache.keys.shape[0])
    for i in range(0, base.shape[0], step):
        affinity = features[i:i + step] @ cache.keys.T
        b, kl, y = base[i:i + step], kl_logits[i:i + step], labels[i:i + step]
        for j, beta in enumerate(betas):
            cached = tipx_cache_logits(cache, affinity, beta)
            counts[:, j, :] += _grid_correct(b, [kl, cached], [gamma_axis, alpha_axis], y)[0].T  # [gamma, alpha]
    start = {"alpha": 0.0, "beta": 0.0, "gamma": 0.0}
    return _with_total(first_best(counts, {"alpha": alphas, "beta": betas, "gamma": gammas}, start), base.shape[0])
