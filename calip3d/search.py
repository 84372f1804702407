"""Hyper-parameter search over cached logit terms: CALIP's (beta2, beta3) grid and PointCLIP's view weights.

Decision rule shared by every search here: an image counts as correct iff the logit of its true class is
**strictly greater** than every other class's logit. A tie for the top logit counts as wrong (`torch.topk`
would pick one of the tied classes instead). Logits are computed in float64 by these canonical formulas:

- betas: `clip + beta2 * visual_guided + beta3 * textual_blended` (beta1 = 1; the common logit scale 100
  does not change any comparison and is left out), evaluated left to right;
- views: `w_0 * L_0 + w_1 * L_1 + ... + w_{V-1} * L_{V-1}`, accumulated in view order.

The fast paths decide most comparisons from pairwise margins (true class minus other class, linear in the
hyper-parameters) and re-evaluate every decision close to zero with the canonical formula (within 1e-12 of
the logits' magnitude for the betas; within 1e-5 for the view weights, whose margins come from float32
matmuls), so their counts equal a straightforward loop that applies the rule above at every grid point. The
float32 logits of the official code may still differ on an image whose margin is within float32 rounding of
zero.

Optima are the first maximum in the official loop order: beta2 outer, beta3 inner; view weights in
`itertools.product(grid, repeat=V)` order.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from calip3d.errors import CalipError

_REL_TOL = 1e-12  # margins within this fraction of the logits' magnitudes are re-checked canonically
_CHUNK_ELEMENTS = 1 << 21  # float64 elements per working tensor (16 MiB)
_MAX_EXHAUSTIVE = 1 << 24  # combinations the exhaustive view search accepts
_AUTO_EXHAUSTIVE = 100_000  # method="auto" searches exhaustively up to this many combinations

ArrayLike = torch.Tensor | np.ndarray


@dataclass(frozen=True)
class BetaSearchResult:
    """Best CALIP (beta2, beta3) on the official grid; `accuracy` is top-1 in percent."""

    accuracy: float
    beta2: float
    beta3: float
    beta2_index: int
    beta3_index: int
    beta2_grid: tuple[float, ...]
    beta3_grid: tuple[float, ...]


@dataclass(frozen=True)
class ViewWeightResult:
    """Best per-view weights; `accuracy` is top-1 in percent, `evaluations` the weightings scored."""

    accuracy: float
    weights: tuple[float, ...]
    method: str
    evaluations: int


@dataclass(frozen=True)
class JointSearchResult:
    """Alternating view-weight / beta search; `history` holds the accuracy after each round."""

    accuracy: float
    weights: tuple[float, ...]
    beta2: float
    beta3: float
    history: tuple[float, ...]


# ------------------------------------------------------------------------------------------ input checks


def _as_float64(x: ArrayLike, name: str, ndim: int) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise CalipError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.dtype == torch.bool or x.is_complex():
        raise CalipError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.dim() != ndim:
        raise CalipError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    x = x.detach().to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise CalipError(f"{name} contains NaN or infinite values")
    return x


def _as_labels(labels: ArrayLike, n: int, k: int, device: torch.device) -> torch.Tensor:
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(np.ascontiguousarray(labels))
    if not isinstance(labels, torch.Tensor):
        raise CalipError(f"labels must be a torch.Tensor or numpy array, got {type(labels).__name__}")
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise CalipError(f"labels must be integers, got dtype {labels.dtype}")
    if tuple(labels.shape) != (n,):
        raise CalipError(f"labels must have shape [{n}] to match the logits, got {tuple(labels.shape)}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= k):
        raise CalipError(f"labels must lie in [0, {k - 1}] for {k} classes, got range "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return labels.to(device=device, dtype=torch.long)


def _check_logit_terms(terms: dict[str, ArrayLike], labels: ArrayLike,
                       ndim: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Validate same-shaped logit terms ([N, K] or [N, V, K]) and labels [N]; return float64 tensors."""
    names = list(terms)
    out = [_as_float64(terms[name], name, ndim) for name in names]
    for name, t in zip(names[1:], out[1:]):
        if t.shape != out[0].shape:
            raise CalipError(f"{name} has shape {tuple(t.shape)} but {names[0]} has {tuple(out[0].shape)}")
        if t.device != out[0].device:
            raise CalipError(f"{name} is on {t.device} but {names[0]} is on {out[0].device}")
    n, k = out[0].shape[0], out[0].shape[-1]
    if n == 0:
        raise CalipError("the logit terms hold no images (N = 0)")
    if k < 2:
        raise CalipError(f"classification needs at least 2 classes, got K = {k}")
    return out, _as_labels(labels, n, k, out[0].device)


def official_beta_grid(beta_max: float, steps: int = 200) -> list[float]:
    """CALIP's grid: `[i * (beta_max - 0.001) / steps + 0.001 for i in range(steps)]` (beta_max excluded)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise CalipError(f"steps must be an integer >= 1, got {steps!r}")
    if isinstance(beta_max, bool) or not isinstance(beta_max, numbers.Real) or not math.isfinite(beta_max) \
            or beta_max <= 0.001:
        raise CalipError(f"beta maximum must be a finite number > 0.001, got {beta_max!r}")
    return [i * (beta_max - 0.001) / steps + 0.001 for i in range(steps)]


def _check_grid(values: Sequence[float], name: str, increasing: bool) -> list[float]:
    vals = [float(v) for v in values]
    if not vals:
        raise CalipError(f"{name} is empty")
    if not all(math.isfinite(v) and v > 0 for v in vals):
        raise CalipError(f"{name} values must be finite and > 0, got {vals}")
    if increasing and any(b <= a for a, b in zip(vals, vals[1:])):
        raise CalipError(f"{name} must be strictly increasing, got {vals}")
    return vals


# ------------------------------------------------------------------------------------------- beta search


def _strict_correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[..., K] logits, labels broadcastable to [...] -> bool [...]: true logit > every other logit."""
    index = labels.expand(logits.shape[:-1]).unsqueeze(-1)
    true = logits.gather(-1, index).squeeze(-1)
    return true > logits.scatter(-1, index, -math.inf).amax(-1)


def _corner_margins(d0: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor, b2: tuple[float, float],
                    b3: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Min and max of the linear margin d0 + b2*d1 + b3*d2 over the box b2 x b3 (attained at its corners)."""
    corners = torch.stack([d0 + x * d1 + z * d2 for x in b2 for z in b3])
    return corners.amin(0), corners.amax(0)


def _canonical_beta_correct(clip: torch.Tensor, vg: torch.Tensor, tb: torch.Tensor, labels: torch.Tensor,
                            b2: torch.Tensor, g3: torch.Tensor) -> torch.Tensor:
    """Strict-rule correctness of images (terms [A, K]) at beta2 `b2[A]`, every beta3 `g3[S3]` -> [A, S3]."""
    logits = clip[:, None, :] + b2[:, None, None] * vg[:, None, :] + g3[None, :, None] * tb[:, None, :]
    return _strict_correct(logits, labels[:, None])


def beta_correct_counts(clip: ArrayLike, visual_guided: ArrayLike, textual_blended: ArrayLike,
                        labels: ArrayLike, beta2_values: Sequence[float],
                        beta3_values: Sequence[float]) -> torch.Tensor:
    """Number of correctly classified images at every grid point -> int64 [S2, S3].

    Terms are [N, K] logit terms without the logit scale, labels [N]; both beta lists must be strictly
    increasing and positive. Exact under the module's strict float64 rule, in O(pairs) per beta2 value: for a
    fixed beta2 each pair constraint is linear in beta3, so an image is correct on one open interval of beta3,
    added to the column with a difference array.
    """
    (clip, vg, tb), labels = _check_logit_terms(
        {"clip": clip, "visual_guided": visual_guided, "textual_blended": textual_blended}, labels, 2)
    g2 = torch.tensor(_check_grid(beta2_values, "beta2 grid", True), dtype=torch.float64, device=clip.device)
    g3 = torch.tensor(_check_grid(beta3_values, "beta3 grid", True), dtype=torch.float64, device=clip.device)
    s2, s3 = g2.numel(), g3.numel()
    true = [t.gather(1, labels[:, None]) for t in (clip, vg, tb)]
    d0, d1, d2 = (tr - t for tr, t in zip(true, (clip, vg, tb)))  # [N, K] true-minus-other differences
    largest = (1.0, float(g2[-1]), float(g3[-1]))
    tol = _REL_TOL * sum(w * (tr.abs() + t.abs()) for w, tr, t in zip(largest, true, (clip, vg, tb)))
    is_true = torch.arange(clip.shape[1], device=clip.device)[None, :] == labels[:, None]
    b3_box = (float(g3[0]), float(g3[-1]))

    # Global pruning over the whole box. With beta2, beta3 > 0 a pair with every difference <= 0 is never won
    # (rounding is monotone), which also covers exact ties.
    low, high = _corner_margins(d0, d1, d2, (float(g2[0]), float(g2[-1])), b3_box)
    lost = (((d0 <= 0) & (d1 <= 0) & (d2 <= 0) | (high < -tol)) & ~is_true).any(1)
    keep = (low <= tol) & ~is_true & ~lost[:, None]
    counts = torch.full((s2, s3), int((~lost & ~keep.any(1)).sum()), dtype=torch.long, device=clip.device)
    image, cls = keep.nonzero(as_tuple=True)
    d0, d1, d2, tol = d0[image, cls], d1[image, cls], d2[image, cls], tol[image, cls]

    rows_per_chunk = max(1, _CHUNK_ELEMENTS // max(1, d0.numel()))
    for start in range(0, s2 if d0.numel() else 0, rows_per_chunk):
        stop = min(s2, start + rows_per_chunk)
        counts[start:stop] += _beta_rows(clip, vg, tb, labels, d0, d1, d2, tol, image, g2[start:stop], g3,
                                         b3_box)
    return counts


def _beta_rows(clip: torch.Tensor, vg: torch.Tensor, tb: torch.Tensor, labels: torch.Tensor, d0: torch.Tensor,
               d1: torch.Tensor, d2: torch.Tensor, tol: torch.Tensor, image: torch.Tensor, b2: torch.Tensor,
               g3: torch.Tensor, b3_box: tuple[float, float]) -> torch.Tensor:
    """Correct counts [B, S3] for the beta2 values `b2[B]`, from the undecided pairs [P] of the whole box."""
    s3, device = g3.numel(), g3.device
    # Re-prune on this chunk's smaller box; `image` [P] is sorted.
    low, high = _corner_margins(d0, d1, d2, (float(b2[0]), float(b2[-1])), b3_box)
    present, local = torch.unique_consecutive(image, return_inverse=True)
    lost = torch.zeros(present.numel(), dtype=torch.bool, device=device)
    lost.index_fill_(0, local[high < -tol], True)
    keep = (low <= tol) & ~lost[local]
    images, local = torch.unique_consecutive(image[keep], return_inverse=True)
    won_everywhere = int((~lost).sum()) - images.numel()
    d0, d1, d2, tol = d0[keep], d1[keep], d2[keep], tol[keep]
    rows, u = b2.numel(), images.numel()

    c = d0 + b2[:, None] * d1  # [B, P]: margin = c + beta3 * d2 must be > 0
    nonzero = d2 != 0
    cross = -c / torch.where(nonzero, d2, torch.ones_like(d2))  # beta3 where the pair's margin changes sign
    inf = torch.full_like(c, math.inf)
    lower = torch.where(d2 > 0, cross, -inf)
    upper = torch.where(d2 < 0, cross, torch.where(nonzero | (c > 0), inf, -inf))
    # A pair is ambiguous where its margin at the grid point nearest the crossing is within tolerance.
    right = torch.searchsorted(g3, cross).clamp(max=s3 - 1)
    gap = torch.minimum((cross - g3[right]).abs(), (cross - g3[(right - 1).clamp(min=0)]).abs())
    ambiguous_pair = torch.where(nonzero, d2.abs() * gap <= tol, c.abs() <= tol)

    index = local.expand(rows, -1)
    lo = torch.full((rows, u), -math.inf, dtype=c.dtype, device=device)
    lo.scatter_reduce_(1, index, lower, "amax")
    hi = torch.full((rows, u), math.inf, dtype=c.dtype, device=device)
    hi.scatter_reduce_(1, index, upper, "amin")
    ambiguous = torch.zeros(rows, u, dtype=torch.bool, device=device)
    ambiguous.scatter_reduce_(1, index, ambiguous_pair, "amax")
    first = torch.searchsorted(g3, lo.contiguous(), right=True)  # first beta3 > lo
    stop = torch.searchsorted(g3, hi.contiguous())  # first beta3 >= hi
    valid = ((first < stop) & ~ambiguous).long()
    diff = torch.zeros(rows, s3 + 1, dtype=torch.long, device=device)
    diff.scatter_add_(1, first, valid).scatter_add_(1, stop, -valid)
    counts = diff[:, :s3].cumsum(1) + won_everywhere

    row, col = ambiguous.nonzero(as_tuple=True)
    step = max(1, _CHUNK_ELEMENTS // (s3 * clip.shape[1]))
    for i in range(0, row.numel(), step):
        r, img = row[i:i + step], images[col[i:i + step]]
        correct = _canonical_beta_correct(clip[img], vg[img], tb[img], labels[img], b2[r], g3)
        counts.index_add_(0, r, correct.long())
    return counts


def search_betas(clip: ArrayLike, visual_guided: ArrayLike, textual_blended: ArrayLike, labels: ArrayLike,
                 beta2_max: float = 2.0, beta3_max: float = 0.1, steps: int = 200) -> BetaSearchResult:
    """CALIP's (beta2, beta3) grid search with beta1 = 1 (official grid, see `official_beta_grid`).

    `clip`, `visual_guided`, `textual_blended`: [N, K] logit terms without the logit scale (torch or numpy);
    `labels`: [N] ints. Returns the first optimum in the official loop order (beta2 outer, beta3 inner).
    """
    g2, g3 = official_beta_grid(beta2_max, steps), official_beta_grid(beta3_max, steps)
    counts = beta_correct_counts(clip, visual_guided, textual_blended, labels, g2, g3)
    flat = counts.flatten()
    best = int((flat == flat.max()).nonzero()[0])
    i2, i3 = divmod(best, len(g3))
    return BetaSearchResult(accuracy=100.0 * int(flat[best]) / len(labels), beta2=g2[i2], beta3=g3[i3],
                            beta2_index=i2, beta3_index=i3, beta2_grid=tuple(g2), beta3_grid=tuple(g3))


# ------------------------------------------------------------------------------------ view-weight search


def weighted_view_sum(per_view: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Canonical view aggregation `w_0 * x[..., 0, :] + w_1 * x[..., 1, :] + ...` in view order.

    `per_view` [..., V, K], `weights` [V] or broadcastable [..., V] -> [..., K]. The fixed accumulation
    order (a short loop over the V views, vectorised over the rest) gives identical sums for identical inputs.
    """
    weights = weights.to(per_view)
    total = weights[..., 0, None] * per_view[..., 0, :]
    for v in range(1, per_view.shape[-2]):
        total = total + weights[..., v, None] * per_view[..., v, :]
    return total


def _dominated(diff: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Kept pairs implied by another kept pair of the same image -> bool [N, K].

    `diff` [N, K, V] true-minus-other differences. With positive weights, pair j' with diff_j' <= diff_j in
    every view has the smaller margin for every weighting, so j adds nothing once j' is checked (equal rows:
    the lower class index stays). The relation is a strict partial order: every dropped pair has a kept
    dominator.
    """
    n, k, _ = diff.shape
    out = torch.zeros_like(keep)
    lower_index = torch.ones(k, k, dtype=torch.bool, device=keep.device).triu(1)  # [j', j]: j' < j
    step = max(1, _CHUNK_ELEMENTS // (k * k))
    for s in range(0, n, step):
        d, kp = diff[s:s + step].permute(2, 0, 1), keep[s:s + step]  # [V, b, K]
        below = d[0, :, :, None] <= d[0, :, None, :]  # [b, j', j]: diff_j' <= diff_j in every view
        for x in d[1:]:  # a few views; faster than a reduction over a short dimension
            below &= x[:, :, None] <= x[:, None, :]
        equal = below & below.transpose(1, 2)
        out[s:s + step] = (below & (~equal | lower_index) & kp[:, :, None]).any(1) & kp
    return out


class _ViewEvaluator:
    """Counts correct images for many weightings of [N, V, K] per-view logits under the strict rule.

    A pair (image, wrong class) that the true class wins in every view (by more than the tolerance) is won
    for every positive weighting, and one it wins in no view (every difference <= 0) is lost for every
    weighting (rounding is monotone); only mixed pairs of images not already lost are kept, minus dominated
    ones. Their margins, scaled by the image's tolerance, come from float32 matmuls [M, V] @ [V, pairs] on
    blocks of images padded to a common pair count: an image is correct where its smallest scaled margin is
    > 1, wrong where it is < -1, and re-evaluated with the canonical float64 formula in between.
    """

    def __init__(self, per_view: torch.Tensor, labels: torch.Tensor, w_min: float, w_max: float) -> None:
        n, v, k = per_view.shape
        self.per_view, self.labels, self.w_max = per_view, labels, w_max
        is_true = torch.arange(k, device=labels.device)[None, :] == labels[:, None]  # [N, K]
        true = per_view.gather(2, labels[:, None, None].expand(n, v, 1))
        diff = (true - per_view).transpose(1, 2)  # [N, K, V]
        # Per-image tolerance from the largest pair magnitude, so pairs of one image compare on one scale.
        magnitude = (true.abs() + per_view.abs()).sum(1).amax(1, keepdim=True)  # [N, 1]
        lost = ((diff <= 0).all(2) & ~is_true).any(1)
        won = is_true | ((diff >= 0).all(2) & (w_min * diff.sum(2) > _REL_TOL * w_max * magnitude))
        keep = ~won & ~lost[:, None]
        keep &= ~_dominated(diff, keep)
        per_image = keep.sum(1)
        self.always = int((~lost & (per_image == 0)).sum())

        # Images with kept pairs, sorted by pair count; block widths are counts rounded up to a multiple of 4.
        order = torch.argsort(per_image, stable=True)
        order = order[per_image[order] > 0]
        self.images = order
        sizes = per_image[order]
        # Scaled so that weights / w_max (in (0, 1]) give margins in units of the tolerance; float32 rounding
        # moves them by < 0.1 unit.
        keep, rel = keep[order], 1e-5 * max(1.0, v / 10)
        scaled = diff[order] / (rel * magnitude[order, :, None])
        rank = keep.long().cumsum(1) - 1
        width = int(sizes.max()) if sizes.numel() else 0
        padded = torch.full((order.numel(), width, v), 1e30, dtype=torch.float64, device=diff.device)
        rows = torch.arange(order.numel(), device=diff.device)[:, None].expand_as(keep)
        padded[rows[keep], rank[keep]] = scaled[keep]
        widths = (sizes + 3) // 4 * 4
        self.blocks: list[tuple[int, torch.Tensor]] = []  # (block width, [V, width * images] float32)
        start = 0
        for w, count in zip(*torch.unique_consecutive(widths, return_counts=True)):
            stop, w = start + int(count), min(int(w), width)
            # Pair-slot-major columns, so the min over a block's slots runs over contiguous image rows.
            block = padded[start:stop, :w].transpose(0, 1).reshape(-1, v)
            self.blocks.append((w, block.T.to(torch.float32).contiguous()))
            start = stop

    def correct_counts(self, weights: torch.Tensor) -> torch.Tensor:
        """`weights` [M, V] (float64, positive) -> int64 [M] correct images per weighting."""
        m = weights.shape[0]
        counts = torch.full((m,), self.always, dtype=torch.long, device=weights.device)
        if not self.blocks:
            return counts
        step = max(1, _CHUNK_ELEMENTS // sum(block.shape[1] for _, block in self.blocks))
        unsure_step = max(1, _CHUNK_ELEMENTS // self.per_view[0].numel())  # canonical re-checks per batch
        for start in range(0, m, step):
            w = weights[start:start + step]
            w32 = (w / self.w_max).to(torch.float32)
            smallest = torch.cat([(w32 @ block).view(w.shape[0], width, -1).amin(1)
                                  for width, block in self.blocks], 1)
            counts[start:start + w.shape[0]] += (smallest > 1).sum(1)
            row, col = ((smallest >= -1) & (smallest <= 1)).nonzero(as_tuple=True)
            for i in range(0, row.numel(), unsure_step):
                r, img = row[i:i + unsure_step], self.images[col[i:i + unsure_step]]
                correct = _strict_correct(weighted_view_sum(self.per_view[img], w[r]), self.labels[img])
                counts[start:start + w.shape[0]].index_add_(0, r, correct.long())
        return counts


def _check_view_grid(grid: Sequence[float]) -> list[float]:
    if isinstance(grid, (np.ndarray, torch.Tensor)) and grid.ndim == 1:
        grid = grid.tolist()
    if isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence):
        raise CalipError(f"grid must be a sequence of positive weights, got {grid!r}")
    return _check_grid(grid, "view-weight grid", False)


def _exhaustive(evaluator: _ViewEvaluator, grid: torch.Tensor, views: int) -> tuple[int, torch.Tensor, int]:
    """Every combination in itertools.product order; returns (best count, best weights [V], evaluations)."""
    g = grid.numel()
    total = g ** views
    if total > _MAX_EXHAUSTIVE:
        raise CalipError(f"exhaustive search over {g}^{views} = {total} weightings is too large "
                         f"(limit {_MAX_EXHAUSTIVE}); use method='coordinate'")
    best_count, best_index = -1, 0
    step = 1 << 16  # weightings generated per batch; correct_counts chunks the matmuls itself
    powers = g ** torch.arange(views - 1, -1, -1, device=grid.device)
    for start in range(0, total, step):
        flat = torch.arange(start, min(total, start + step), device=grid.device)
        counts = evaluator.correct_counts(grid[(flat[:, None] // powers) % g])
        top = int(counts.max())
        if top > best_count:
            best_count, best_index = top, start + int((counts == top).nonzero()[0])
    return best_count, grid[(best_index // powers) % g], total


def _coordinate(evaluator: _ViewEvaluator, grid: torch.Tensor, views: int, max_rounds: int, restarts: int,
                seed: int) -> tuple[int, torch.Tensor, int]:
    """Coordinate ascent (see `search_view_weights`); returns (best count, best weights [V], evaluations)."""
    g = grid.numel()
    generator = torch.Generator().manual_seed(seed)
    starts = [torch.full((views,), int(torch.argmax(grid)), dtype=torch.long)]
    starts += list(torch.randint(0, g, (restarts, views), generator=generator))
    best_count, best, evaluations = -1, starts[0], 0
    for current in starts:
        current = current.to(grid.device)
        count = int(evaluator.correct_counts(grid[current][None])[0])
        evaluations += 1
        for _ in range(max_rounds):
            changed = False
            for v in range(views):
                candidates = current.repeat(g, 1)
                candidates[:, v] = torch.arange(g, device=grid.device)
                counts = evaluator.correct_counts(grid[candidates])
                evaluations += g
                top = int(counts.max())
                if top > count:
                    current, count, changed = candidates[int((counts == top).nonzero()[0])], top, True
            if not changed:
                break
        if count > best_count:
            best_count, best = count, current
    return best_count, grid[best], evaluations


def view_correct_counts(per_view_logits: ArrayLike, labels: ArrayLike, weights: ArrayLike) -> torch.Tensor:
    """Correct images for each weighting -> int64 [M].

    `per_view_logits` [N, V, K], labels [N], positive `weights` [M, V] (torch or numpy); the logits are
    `weighted_view_sum(per_view_logits, w)`, judged with the strict rule."""
    (per_view,), labels = _check_logit_terms({"per_view_logits": per_view_logits}, labels, 3)
    w = _as_float64(weights, "weights", 2).to(per_view.device)
    if w.shape[1] != per_view.shape[1]:
        raise CalipError(f"weights must have shape [M, {per_view.shape[1]}] for {per_view.shape[1]} views, "
                         f"got {tuple(w.shape)}")
    if w.numel() == 0 or not bool((w > 0).all()):
        raise CalipError("weights must be a non-empty [M, V] array of positive values")
    return _ViewEvaluator(per_view, labels, float(w.min()), float(w.max())).correct_counts(w)


def search_view_weights(per_view_logits: ArrayLike, labels: ArrayLike,
                        grid: Sequence[float] = (0.25, 0.5, 0.75, 1.0), method: str = "auto",
                        max_rounds: int = 10, restarts: int = 0, seed: int = 0) -> ViewWeightResult:
    """PointCLIP-style per-view weight search: logits = sum_v w_v * per_view_logits[:, v, :], w_v in `grid`.

    `per_view_logits` [N, V, K] (torch or numpy), `labels` [N], `grid` positive weight values. `method`:
    - "exhaustive": all len(grid)^V weightings; the first optimum in itertools.product(grid, repeat=V) order;
    - "coordinate": coordinate ascent from uniform weights (all = max(grid)), then from `restarts` random
      grid points drawn with `seed`. Each round visits the views in order, scores every grid value for that
      view with the others fixed and moves to the first best value only if it strictly improves; it stops
      after a round without change or after `max_rounds` rounds. The best start wins (the earliest on ties);
    - "auto": exhaustive up to 100k weightings (4^6 = 4096), else coordinate (4^10 is about 1M).
    """
    (per_view,), labels = _check_logit_terms({"per_view_logits": per_view_logits}, labels, 3)
    values = _check_view_grid(grid)
    if method not in ("auto", "exhaustive", "coordinate"):
        raise CalipError(f"method must be 'auto', 'exhaustive' or 'coordinate', got {method!r}")
    for name, value, least in (("max_rounds", max_rounds, 1), ("restarts", restarts, 0), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise CalipError(f"{name} must be an integer >= {least}, got {value!r}")
    views = per_view.shape[1]
    if method == "auto":
        method = "exhaustive" if len(values) ** views <= _AUTO_EXHAUSTIVE else "coordinate"
    grid_t = torch.tensor(values, dtype=torch.float64, device=per_view.device)
    evaluator = _ViewEvaluator(per_view, labels, min(values), max(values))
    if method == "exhaustive":
        count, weights, evaluations = _exhaustive(evaluator, grid_t, views)
    else:
        count, weights, evaluations = _coordinate(evaluator, grid_t, views, max_rounds, restarts, seed)
    return ViewWeightResult(accuracy=100.0 * count / per_view.shape[0], weights=tuple(weights.tolist()),
                            method=method, evaluations=evaluations)


def search_joint(clip: ArrayLike, visual_guided: ArrayLike, textual_blended: ArrayLike, labels: ArrayLike,
                 grid: Sequence[float] = (0.25, 0.5, 0.75, 1.0), beta2_max: float = 2.0,
                 beta3_max: float = 0.1, steps: int = 200, rounds: int = 2,
                 method: str = "auto") -> JointSearchResult:
    """Alternating search of CALIP betas and view weights on [N, V, K] per-view logit terms.

    Starts from uniform weights (all = max(grid)); each round (b) searches the betas on the view-aggregated
    terms `weighted_view_sum(term, w)`, then (a) the view weights on the per-view combined logits
    `clip + b2 * visual_guided + b3 * textual_blended`. The reported accuracy is that of the final logits
    `weighted_view_sum(clip + b2 * vg + b3 * tb, w)`; the best round wins (the earliest on ties).
    """
    (clip, vg, tb), labels = _check_logit_terms(
        {"clip": clip, "visual_guided": visual_guided, "textual_blended": textual_blended}, labels, 3)
    values = _check_view_grid(grid)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise CalipError(f"rounds must be an integer >= 1, got {rounds!r}")
    weights = torch.full((clip.shape[1],), max(values), dtype=torch.float64)
    history: list[float] = []
    best: tuple[float, tuple[float, ...], float, float] | None = None  # accuracy, weights, beta2, beta3
    for _ in range(rounds):
        betas = search_betas(*(weighted_view_sum(t, weights) for t in (clip, vg, tb)), labels,
                             beta2_max=beta2_max, beta3_max=beta3_max, steps=steps)
        combined = clip + betas.beta2 * vg + betas.beta3 * tb
        views = search_view_weights(combined, labels, grid=values, method=method)
        weights = torch.tensor(views.weights, dtype=torch.float64)
        history.append(views.accuracy)
        if best is None or views.accuracy > best[0]:
            best = (views.accuracy, views.weights, betas.beta2, betas.beta3)
    return JointSearchResult(*best, history=tuple(history))
