"""Benchmark calip3d.search against the straightforward loops, side by side on synthetic but realistic terms.

Beta search: Caltech-101-sized terms (N=2465, K=100), official 200x200 grid. The straightforward double
loop (one float32 logits matrix + one top-1 accuracy per grid point) is timed on `--loop-rows` evenly spaced
beta2 rows and extrapolated to the full grid (`--loop-rows 0` runs it in full). View weights:
ModelNet40-sized per-view logits (N=2468, V=6, K=40) over the 4^6 grid against the loop over
itertools.product, plus the time of the 10-view coordinate ascent (exhaustive would be 4^10 weightings).

    python experiments/bench_search.py [--seed 0] [--loop-rows 10] [--threads 0]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from typing import Callable, TypeVar

import torch

from calip3d.metrics import topk_accuracy
from calip3d.search import beta_correct_counts, official_beta_grid, search_betas, search_view_weights

T = TypeVar("T")


def best_of(repeats: int, fn: Callable[[], T]) -> tuple[float, T]:
    """Smallest wall time of `repeats` calls (for the sub-second fast paths), and the last result."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def _text_and_labels(generator: torch.Generator, n: int, k: int,
                     dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit class text features [K, D] and random labels [N]."""
    text = torch.nn.functional.normalize(torch.randn(k, dim, generator=generator), dim=1)
    return text, torch.randint(0, k, (n,), generator=generator)


def calip_terms(seed: int, n: int = 2465, k: int = 100, dim: int = 512) -> tuple[torch.Tensor, ...]:
    """float32 [N, K] terms (clip, visual_guided, textual_blended) without logit scale, and labels [N].

    clip = F_v F_t^T; the two CALIP terms share the clip similarities but add their own noisy class evidence
    (vg with a similar scale, tb with a larger one), so neither beta is zero at the optimum."""
    g = torch.Generator().manual_seed(seed)
    text, labels = _text_and_labels(g, n, k, dim)

    def evidence(signal: float) -> torch.Tensor:
        """Cosine similarities [N, K] of noisy unit features pulled towards the class text feature."""
        noisy = signal * text[labels] + torch.randn(n, dim, generator=g) / dim ** 0.5
        return torch.nn.functional.normalize(noisy, dim=1) @ text.T

    clip = evidence(0.155)
    vg = 0.7 * clip + 0.5 * evidence(0.06)
    tb = 3.0 * (0.5 * clip + evidence(0.05))
    return clip, vg, tb, labels


def view_logits(seed: int, n: int = 2468, views: int = 6, k: int = 40,
                dim: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 per-view logits [N, V, K] with view-dependent signal strength, and labels [N]."""
    g = torch.Generator().manual_seed(seed)
    text, labels = _text_and_labels(g, n, k, dim)
    signal = torch.linspace(0.04, 0.08, views)[torch.randperm(views, generator=g)]
    shared = torch.randn(n, 1, dim, generator=g)
    noise = 0.6 * shared + 0.8 * torch.randn(n, views, dim, generator=g)
    image = signal[None, :, None] * text[labels][:, None] + noise / dim ** 0.5
    image = torch.nn.functional.normalize(image, dim=2)
    return image @ text.T, labels


def loop_betas(clip: torch.Tensor, vg: torch.Tensor, tb: torch.Tensor, labels: torch.Tensor,
               g2: list[float], g3: list[float]) -> torch.Tensor:
    """Straightforward loop: accuracy [len(g2), len(g3)] in percent from float32 logits and topk."""
    acc = torch.empty(len(g2), len(g3))
    for i, b2 in enumerate(g2):
        for j, b3 in enumerate(g3):
            acc[i, j] = topk_accuracy(clip + b2 * vg + b3 * tb, labels, 1)
    return acc


def loop_views(per_view: torch.Tensor, labels: torch.Tensor,
               grid: tuple[float, ...]) -> tuple[float, tuple[float, ...]]:
    """Straightforward loop over itertools.product: one matmul + top-1 accuracy per weighting."""
    best, best_w = -1.0, ()
    flat = per_view.transpose(1, 2)  # [N, K, V]
    for w in itertools.product(grid, repeat=per_view.shape[1]):
        acc = topk_accuracy(flat @ torch.tensor(w), labels, 1)
        if acc > best:
            best, best_w = acc, w
    return best, best_w


def to_counts(accuracy: torch.Tensor, n: int) -> torch.Tensor:
    """Percent accuracies (float32, from topk_accuracy) -> exact int64 correct counts."""
    return (accuracy.double() * n / 100.0).round().long()


def first_best(counts: torch.Tensor) -> tuple[int, tuple[int, int]]:
    """Max of an int [S2, S3] grid and its first position in row-major (beta2 outer) order."""
    flat = counts.flatten()
    i = int((flat == flat.max()).nonzero()[0])
    return int(flat[i]), divmod(i, counts.shape[1])


def bench_betas(seed: int, loop_rows: int) -> None:
    clip, vg, tb, labels = calip_terms(seed)
    g2, g3 = official_beta_grid(2.0, 200), official_beta_grid(0.1, 200)
    print(f"== beta search: N={clip.shape[0]}, K={clip.shape[1]}, grid {len(g2)}x{len(g3)}, "
          f"clip-only accuracy {topk_accuracy(clip, labels):.2f}%")
    t_fast, fast = best_of(3, lambda: search_betas(clip, vg, tb, labels))
    print(f"search_betas (best of 3): {t_fast:.3f} s -> {fast.accuracy:.2f}% at beta2={fast.beta2:.4f}, "
          f"beta3={fast.beta3:.5f}")

    rows = list(range(len(g2))) if loop_rows <= 0 else \
        sorted({round(i * (len(g2) - 1) / max(1, loop_rows - 1)) for i in range(loop_rows)})
    t0 = time.perf_counter()
    loop_acc = loop_betas(clip, vg, tb, labels, [g2[i] for i in rows], g3)
    t_loop = (time.perf_counter() - t0) * len(g2) / len(rows)
    fast_counts = beta_correct_counts(clip, vg, tb, labels, [g2[i] for i in rows], g3)
    loop_counts = to_counts(loop_acc, clip.shape[0])
    loop_best, fast_best = first_best(loop_counts), first_best(fast_counts)
    scope = "full grid" if len(rows) == len(g2) else f"{len(rows)} sampled beta2 rows"
    extrapolated = "" if len(rows) == len(g2) else ", time extrapolated to 200 rows"
    print(f"loop ({scope}{extrapolated}): {t_loop:.2f} s")
    n = clip.shape[0]
    print(f"same optimum on {scope}: {loop_best == fast_best} (loop {100 * loop_best[0] / n:.2f}% at "
          f"{loop_best[1]}, fast {100 * fast_best[0] / n:.2f}% at {fast_best[1]}); "
          f"grid cells with different counts: {int((loop_counts != fast_counts).sum())} of "
          f"{fast_counts.numel()}")
    if len(rows) == len(g2):
        same = loop_best[1] == (fast.beta2_index, fast.beta3_index)
        print(f"full-grid optimum equal to search_betas: {same}")
    print(f"speedup beta search: {t_loop / t_fast:.0f}x")


def bench_views(seed: int) -> None:
    grid = (0.25, 0.5, 0.75, 1.0)
    per_view, labels = view_logits(seed)
    print(f"== view weights: N={per_view.shape[0]}, V={per_view.shape[1]}, K={per_view.shape[2]}, "
          f"{len(grid)}^{per_view.shape[1]} grid, "
          f"uniform accuracy {topk_accuracy(per_view.sum(1), labels):.2f}%")
    t_fast, fast = best_of(3, lambda: search_view_weights(per_view, labels, grid, method="exhaustive"))
    t0 = time.perf_counter()
    loop_acc, loop_w = loop_views(per_view, labels, grid)
    t_loop = time.perf_counter() - t0
    print(f"search_view_weights exhaustive (best of 3): {t_fast:.3f} s -> {fast.accuracy:.2f}% "
          f"at {fast.weights}")
    print(f"loop over itertools.product: {t_loop:.2f} s -> {loop_acc:.2f}% at {loop_w}")
    same = round(loop_acc * per_view.shape[0] / 100) == round(fast.accuracy * per_view.shape[0] / 100)
    print(f"same optimum: accuracy {same}, weights {tuple(loop_w) == fast.weights}")
    print(f"speedup view search: {t_loop / t_fast:.0f}x")

    t_coord, coord = best_of(3, lambda: search_view_weights(per_view, labels, grid, method="coordinate"))
    print(f"6-view coordinate ascent (best of 3): {t_coord:.3f} s, {coord.evaluations} weightings -> "
          f"{coord.accuracy:.2f}% (exhaustive optimum {fast.accuracy:.2f}%)")
    per_view10, labels10 = view_logits(seed, views=10)
    t_coord, coord10 = best_of(
        3, lambda: search_view_weights(per_view10, labels10, grid, method="auto", restarts=3))
    print(f"10-view {coord10.method} ascent (1 + 3 restarts, best of 3): {t_coord:.3f} s, "
          f"{coord10.evaluations} weightings -> {coord10.accuracy:.2f}% at {coord10.weights} "
          f"(uniform {topk_accuracy(per_view10.sum(1), labels10):.2f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic terms")
    parser.add_argument("--loop-rows", type=int, default=10,
                        help="beta2 rows the straightforward loop runs (evenly spaced, time "
                             "extrapolated); 0 = all 200")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    bench_betas(args.seed, args.loop_rows)
    bench_views(args.seed)


if __name__ == "__main__":
    main()
