"""Point-NN's memory-bank classifier and its gamma search, as the release runs them (ZrrSkywalker/Point-NN
`run_nn_cls.py`; methods.md sections 3.1 and 5.3).

The memory bank is the training features with one-hot labels. Test and memory features are L2-normalised (no
epsilon: a zero feature gives NaN, as released) and `logits = exp(-gamma * (1 - t m^T)) @ onehot`, in float32. The
release picks gamma on the **test** set over `{0, 2, ..., 9998}`: start from `(gamma, accuracy) = (0, 0)` and
replace only on a strictly higher accuracy, so the first best gamma of the grid wins (a test-set oracle, to be
labelled as such).

Arithmetic, shared by `memory_logits` and the search so that the search's decisions are `memory_logits`' own:
`1 - a`, `-gamma * (1 - a)` and `exp` in float32, the class sums in float32 over the memory sorted by class. Where
`exp`'s float32 result is subnormal (argument below -87), torch's float32 `exp` takes a slow path (about 100 times
slower); those terms are computed as float64 `exp` rounded to float32 instead, which is the correctly rounded value
(torch's float32 kernel agrees to within one unit, 2^-149, on about 0.1% of them).

A prediction is the class of the largest logit, the lowest class index on ties (`torch.argmax`). The release takes
`torch.topk(1)`, whose choice among tied logits is the kernel's (on the CPU, torch 2.14 picks class 28 of an all-zero
row of 40); ties arise where every term of a row underflows to 0 (large gamma, affinities far from 1).
"""

from __future__ import annotations

import numbers
from typing import Iterable

import numpy as np
import torch

from calip3d.errors import CalipError

POINTNN_GAMMA_GRID = range(0, 10000, 2)
POINTNN_GAMMA_GRID_SOURCE = ("ZrrSkywalker/Point-NN run_nn_cls.py: gamma in {0, 2, ..., 9998} searched on the test "
                             "set, start (0, 0), strict improvement only (methods.md sections 3.1, 5.3)")
_CHUNK_ELEMENTS = 1 << 20  # float32 elements of the [gammas, S, columns] working tensor (4 MiB; fastest here)
_NORMAL_ARG = -87.0  # float32 exp(x) is a normal number (>= 1.6e-38) for x >= this, and fast
_SUBNORMAL_TERM = 1.7e-38  # > exp(-87): every term the fast path flushes to zero is smaller than this
_ZERO_ARG = -104.0  # float32 exp(x) rounds to exactly 0 below ln(2^-150) = -103.97
_FLOOR_ARG = -200.0  # far below that: the float64 exp stays off its slow path

ArrayLike = torch.Tensor | np.ndarray


def _unit(feats: torch.Tensor) -> torch.Tensor:
    return feats / feats.norm(dim=-1, keepdim=True)


def _check(test: ArrayLike, memory: ArrayLike, labels: ArrayLike,
           num_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    test, memory, labels = torch.as_tensor(test), torch.as_tensor(memory), torch.as_tensor(labels)
    if test.dim() != 2 or memory.dim() != 2 or test.shape[1] != memory.shape[1]:
        raise CalipError(f"Point-NN memory bank: expected test [M, F] and memory [S, F] features, got "
                         f"{tuple(test.shape)} and {tuple(memory.shape)}")
    if labels.shape != (memory.shape[0],) or labels.is_floating_point():
        raise CalipError(f"Point-NN memory bank: expected integer labels [{memory.shape[0]}] (one per memory "
                         f"feature), got {labels.dtype} {tuple(labels.shape)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise CalipError(f"Point-NN memory bank: num_classes must be an integer >= 1, got {num_classes!r}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise CalipError(f"Point-NN memory bank: labels must lie in [0, {num_classes}), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    dtype = torch.float64 if torch.float64 in (test.dtype, memory.dtype) else torch.float32
    device = test.device
    return test.to(device, dtype), memory.to(device, dtype), labels.to(device, torch.long)


def affinity(test: ArrayLike, memory: ArrayLike) -> torch.Tensor:
    """Cosine similarities `[M, S]` of `test [M, F]` and `memory [S, F]`, each row L2-normalised without epsilon."""
    test, memory = torch.as_tensor(test), torch.as_tensor(memory)
    return _unit(test) @ _unit(memory.to(test.device, test.dtype)).T


class _Bank:
    """The memory sorted by class, memory-major: `distance = 1 - a` as `[S, M]` with its rows in class order, so a
    class sum is a sum over a contiguous block of rows, accumulated row after row (the same order for any number of
    test columns, so the search reproduces `memory_logits` bit for bit)."""

    def __init__(self, test: torch.Tensor, memory: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
        order = torch.argsort(labels, stable=True)
        self.distance = (1 - affinity(memory[order], test)).contiguous()  # [S, M]
        ends = torch.bincount(labels, minlength=num_classes).cumsum(0).tolist()
        self.slices = [slice(start, end) for start, end in zip([0] + ends[:-1], ends)]

    def class_sums(self, terms: torch.Tensor) -> torch.Tensor:
        """`terms [..., S, M]` (rows in class order) -> per-class sums `[..., C, M]`."""
        return torch.stack([terms[..., part, :].sum(dim=-2) for part in self.slices], dim=-2)


def _exp_terms(arg: torch.Tensor) -> torch.Tensor:
    """`exp(arg)` for float32 `arg <= 0`, with the subnormal results (arg < -87) from float64 `exp` rounded to
    float32: the correctly rounded values, without float32 exp's slow path. float64 `arg` is exponentiated as is."""
    if arg.dtype == torch.float64:
        return arg.exp()
    low = arg < _NORMAL_ARG
    terms = arg.clamp(min=_NORMAL_ARG).exp_()
    if bool(low.any()):
        terms[low] = arg[low].double().clamp_(min=_FLOOR_ARG).exp_().to(arg.dtype)
    return terms


def memory_logits(test: ArrayLike, memory: ArrayLike, labels: ArrayLike, num_classes: int,
                  gamma: float) -> torch.Tensor:
    """Point-NN's logits `[M, C]`: `exp(-gamma * (1 - t m^T)) @ onehot(labels)` for `test [M, F]`, `memory [S, F]`
    and `labels [S]` in `[0, num_classes)`, both feature sets L2-normalised (no epsilon), on the test features'
    device, float32 (float64 if either feature set is). See the module's docstring for the arithmetic."""
    test, memory, labels = _check(test, memory, labels, num_classes)
    bank = _Bank(test, memory, labels, num_classes)
    return bank.class_sums(_exp_terms(-gamma * bank.distance)).T


def gamma_correct_counts(test: ArrayLike, memory: ArrayLike, labels: ArrayLike, num_classes: int,
                         eval_labels: ArrayLike, grid: Iterable[float] = POINTNN_GAMMA_GRID) -> torch.Tensor:
    """How many of `eval_labels [M]` `memory_logits` predicts right (argmax, lowest class on ties) at each gamma of
    `grid`: int64 `[len(grid)]` on the CPU.

    The affinities are computed once; the gammas are evaluated in chunks of a `[gammas, S, columns]` tensor where
    each subnormal term is replaced by exp(-87) = 1.6e-38 (no slow path, no masking). A decision those stand-ins
    could change (the top two classes closer than S * 1.7e-38, e.g. a test item whose every term is subnormal or
    zero, or an exact tie) is taken again with `memory_logits`' own arithmetic, so the counts are `memory_logits`'."""
    test, memory, labels = _check(test, memory, labels, num_classes)
    eval_labels = torch.as_tensor(eval_labels).to(test.device, torch.long)
    if eval_labels.shape != (test.shape[0],):
        raise CalipError(f"Point-NN gamma search: expected eval_labels [{test.shape[0]}] (one per test feature), "
                         f"got {tuple(eval_labels.shape)}")
    gammas = [float(g) for g in grid]
    counts = torch.zeros(len(gammas), dtype=torch.long)
    if not gammas or test.shape[0] == 0:
        return counts
    bank = _Bank(test, memory, labels, num_classes)
    size, columns = bank.distance.shape
    neg = torch.tensor(gammas, dtype=test.dtype, device=test.device).neg_()
    per_gamma = max(1, _CHUNK_ELEMENTS // max(1, size))
    width = min(columns, per_gamma)  # test items per chunk
    chunk = max(1, per_gamma // width)  # gammas per chunk
    work = torch.empty(min(chunk, len(gammas)), size, width, dtype=test.dtype, device=test.device)
    for col0 in range(0, columns, width):
        distance = bank.distance[:, col0:col0 + width].contiguous()  # [S, W]
        truth = eval_labels[col0:col0 + width]
        for g0 in range(0, len(gammas), chunk):
            g = neg[g0:g0 + chunk].view(-1, 1, 1)
            arg = torch.mul(distance, g, out=work[:len(g), :, :distance.shape[1]])  # -gamma * (1 - a)
            predicted = _predictions(bank, arg, distance, g)  # [G, W]
            counts[g0:g0 + len(g)] += (predicted == truth).sum(dim=1).cpu()
    return counts


def _predictions(bank: _Bank, arg: torch.Tensor, distance: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """`memory_logits`' predictions `[G, W]` for `arg [G, S, W]` (overwritten) = `distance [S, W]` * `g [G, 1, 1]`."""
    if arg.dtype == torch.float64:  # no float32 subnormals
        return bank.class_sums(arg.exp_()).argmax(dim=-2)
    sums = bank.class_sums(arg.clamp_(min=_NORMAL_ARG).exp_())  # [G, C, W], subnormal terms stood in by exp(-87)
    predicted = sums.argmax(dim=-2)
    if sums.shape[-2] < 2:
        return predicted
    top = sums.topk(2, dim=-2).values
    doubt = top[:, 0] - top[:, 1] <= distance.shape[0] * _SUBNORMAL_TERM  # [G, W]
    if bool(doubt.any()):
        # Items whose every term underflows to 0 have all-zero logits: class 0. The others are taken again exactly.
        zero = distance.amin(dim=0) * g.view(-1, 1) < _ZERO_ARG  # [G, W]: the largest -gamma * (1 - a) of the item
        predicted[doubt & zero] = 0
        gi, wi = (doubt & ~zero).nonzero(as_tuple=True)
        if len(gi):
            exact = bank.class_sums(_exp_terms(distance[:, wi] * g.view(1, -1)[:, gi]))  # [C, U]
            predicted[gi, wi] = exact.argmax(dim=0)
    return predicted


def search_gamma(test_feats: ArrayLike, memory: ArrayLike, labels: ArrayLike, num_classes: int,
                 eval_labels: ArrayLike, grid: Iterable[float] = POINTNN_GAMMA_GRID) -> tuple[float, float]:
    """The release's gamma choice: `(gamma, accuracy in percent)` over `grid` (default `POINTNN_GAMMA_GRID`,
    searched on whatever `eval_labels [M]` label `test_feats [M, F]`; the release uses the test set). Starts from
    `(0, 0.0)` and takes a gamma only when its accuracy is strictly higher, so the first best of the grid in its
    order wins, and `(0, 0.0)` comes back when no gamma classifies anything right."""
    grid = list(grid)
    counts = gamma_correct_counts(test_feats, memory, labels, num_classes, eval_labels, grid)
    if counts.numel() == 0 or int(counts.max()) == 0:
        return 0, 0.0
    best = int(torch.argmax(counts))  # the first maximum
    return grid[best], 100.0 * int(counts[best]) / int(torch.as_tensor(eval_labels).shape[0])
