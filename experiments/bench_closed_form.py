"""Benchmark GDA, APE and Tip-X (calip3d.fewshot.closed_form): fit + the whole released search, the fast
implementation beside a straightforward re-expression of each release's loop, side by side, and whether both choose
the same hyperparameters.

Inputs are synthetic L2-normalised features with class structure (not CLIP features): C class centres sharing
a common direction, text features and samples scattered around them (the zero-shot top-1 printed says how hard),
ImageNet-sized at `--scale 1`: 16 shots x 1000 classes x 10 augmented passes (GDA keeps the 160,000 passes as rows; APE and
Tip-X average them into 16,000 cache keys), D = 1024, 50,000 search (val) features. `--scale s` multiplies the
classes and the val features by s (shots, passes and D stay). The grids are the releases': GDA's 7 alphas, APE's
ImageNet config (200 x 20 x 5, Q = 500), Tip-X's 20 x 200 x 50.

The straightforward loops re-express the releases: one dense one-hot matmul (and, for APE, the exp) per grid point,
Tip-X's affinity, rescaling and class products recomputed for every (alpha, beta) as tipx.py does. On a 2-core CPU
they cannot run at ImageNet size, so they run at `--ref-scale` (with the fast implementation beside them, the
ratio and the same-choice check at that size); the fast implementation alone then runs at `--scale`.

    python experiments/bench_closed_form.py [--scale 1 | --scale gda=1,ape=0.1,tip-x=0.1] [--ref-scale 0.02]
        [--methods gda,ape,tip-x] [--threads 1] [--seed 0] [--output experiments/measurements/closed_form_cpu.txt
        [--append]]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from bench_report import Report, machine
from calip3d.fewshot import closed_form as cf

SHOTS, PASSES, DIM, CLASSES, EVALS = 16, 10, 1024, 1000, 50_000
APE_CONFIG = {"scale": (7, 7, 0.5), "step": (200, 20, 5), "feat_num": 500, "lambdas": (0.7, 0.3)}  # ImageNet's


@dataclass
class Data:
    """Synthetic features: `rows [C*16*10, D]` (every augmented pass), `row_labels`, `keys [C*16, D]` (the passes'
    mean, normalised), `key_labels`, `text [C, D]`, `val [M, D]`, `val_labels`."""

    rows: torch.Tensor
    row_labels: torch.Tensor
    keys: torch.Tensor
    key_labels: torch.Tensor
    text: torch.Tensor
    val: torch.Tensor
    val_labels: torch.Tensor

    def describe(self) -> str:
        zs = float((self.val @ self.text.T).argmax(1).eq(self.val_labels).float().mean()) * 100
        return (f"C={self.text.shape[0]}, D={self.text.shape[1]}, rows={self.rows.shape[0]}, keys="
                f"{self.keys.shape[0]}, val={self.val.shape[0]}; zero-shot top-1 {zs:.1f}%")


def synthetic(scale: float, seed: int) -> Data:
    g = torch.Generator().manual_seed(seed)
    classes, evals = max(2, round(CLASSES * scale)), max(10, round(EVALS * scale))

    def around(centres: torch.Tensor, spread: float) -> torch.Tensor:
        """Unit vectors at `centres` plus Gaussian noise of `spread` per coordinate."""
        return F.normalize(centres + spread * torch.randn(centres.shape, generator=g), dim=-1)

    shared = F.normalize(torch.randn(1, DIM, generator=g), dim=-1)  # a common direction, as CLIP features have
    centres = F.normalize(0.6 * shared + F.normalize(torch.randn(classes, DIM, generator=g), dim=-1), dim=-1)
    text = around(centres, 0.065)
    key_labels = torch.arange(classes).repeat_interleave(SHOTS)
    shots = around(centres[key_labels], 0.15)
    passes = torch.stack([around(shots, 0.02) for _ in range(PASSES)])  # [P, N, D]: augmentation jitter
    val_labels = torch.randint(0, classes, (evals,), generator=g)
    return Data(passes.flatten(0, 1), key_labels.repeat(PASSES), F.normalize(passes.mean(0), dim=-1), key_labels,
                text, around(centres[val_labels], 0.15), val_labels)


# ------------------------------------------------------------------------------------------------ fast


def fast_gda(d: Data) -> dict[str, float]:
    weight, bias = cf.gda_head(d.rows, d.row_labels, d.text.shape[0])
    return cf.gda_search(100 * d.val @ d.text.T, cf.gda_logits(d.val, weight, bias), d.val_labels).params


def fast_ape(d: Data) -> dict[str, float]:
    cache = cf.ape_fit(d.text, d.keys, d.key_labels, min(APE_CONFIG["feat_num"], DIM), APE_CONFIG["lambdas"])
    grids = cf.ape_grids(APE_CONFIG["scale"], APE_CONFIG["step"])
    return cf.ape_search(100 * d.val @ d.text.T, cache, d.val, d.val_labels, grids).params


def fast_tipx(d: Data) -> dict[str, float]:
    cache = cf.tipx_fit(d.keys, d.key_labels, d.text)
    kl_range, affinity_range = cf.tipx_ranges(cache, d.val)
    kl_logits = cf.tipx_kl_logits(cache, d.val, affinity_range, kl_range)
    return cf.tipx_search(100 * d.val @ d.text.T, cache, d.val, kl_logits, d.val_labels).params


# ------------------------------------------------------------------------------------------------ straightforward


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The releases' cls_acc: top-1 in percent."""
    return 100.0 * float((logits.topk(1, 1)[1][:, 0] == labels).float().sum()) / labels.shape[0]


def loop_gda(d: Data) -> dict[str, float]:
    """main_few_shots.py `run`: class means and centred rows per class, torch.cov, pinv, W and b, the alpha loop."""
    num_classes = d.text.shape[0]
    mus = torch.cat([d.rows[d.row_labels == i].mean(dim=0, keepdim=True) for i in range(num_classes)])
    centred = torch.cat([d.rows[d.row_labels == i] - mus[i].unsqueeze(0) for i in range(num_classes)])
    cov = centred.T.cov()
    cov_inv = centred.shape[1] * torch.linalg.pinv((centred.shape[0] - 1) * cov + cov.trace() * torch.eye(DIM))
    ps = torch.ones(num_classes) / num_classes
    w = torch.einsum("nd, dc -> cn", mus, cov_inv)
    b = ps.log() - torch.einsum("nd, dc, nc -> n", mus, cov_inv, mus) / 2
    best_acc, best_alpha = 0.0, 0.1
    for alpha in [0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0]:
        acc = accuracy(100.0 * d.val @ d.text.T + alpha * (d.val @ w + b), d.val_labels)
        if acc > best_acc:
            best_acc, best_alpha = acc, alpha
    return {"alpha": best_alpha}


def loop_ape(d: Data) -> dict[str, float]:
    """main.py `APE` with utils.py `cal_criterion` (class-pair loop, every sample pair of the two at once)."""
    num_classes = d.text.shape[0]
    feats = torch.cat([d.text[:, None], d.keys.view(num_classes, SHOTS, DIM)], dim=1)  # [C, 1 + K, D]
    class_sum = feats.sum(1)
    sim = torch.zeros(DIM)
    for i in range(num_classes):
        for j in range(num_classes):
            if i != j:
                sim += class_sum[i] * class_sum[j]
    sim /= num_classes * (num_classes - 1) * feats.shape[1] ** 2
    criterion = -APE_CONFIG["lambdas"][0] * sim + APE_CONFIG["lambdas"][1] * torch.var(d.text.T, dim=1)
    indices = torch.topk(criterion, k=APE_CONFIG["feat_num"]).indices
    keys = F.normalize(d.keys[:, indices], dim=-1)
    text = F.normalize(d.text[:, indices], dim=-1)
    val = F.normalize(d.val[:, indices], dim=-1)
    values = F.one_hot(d.key_labels, num_classes).float()
    key_logits = (keys @ text.T).softmax(1)
    cache_div = torch.sum(values * torch.log2((values + 1e-6) / (key_logits + 1e-6)), dim=1)[:, None]
    r_ff = val @ keys.T
    r_fw = 100.0 * d.val @ d.text.T
    grids = cf.ape_grids(APE_CONFIG["scale"], APE_CONFIG["step"])
    best, chosen = 0.0, {"beta": 0.0, "alpha": 0.0, "gamma": 0.0}
    for beta in grids["beta"]:
        for alpha in grids["alpha"]:
            for gamma in grids["gamma"]:
                soft_cache_values = values * (cache_div * gamma).exp()
                cache_logits = ((-1) * (beta - beta * r_ff)).exp() @ soft_cache_values
                acc = accuracy(r_fw + cache_logits * alpha, d.val_labels)
                if acc > best:
                    best, chosen = acc, {"beta": beta, "alpha": alpha, "gamma": gamma}
    return chosen


def loop_tipx(d: Data) -> dict[str, float]:
    """tipx.py: distributions at T = 0.5, the batched KL (every row), then hparam_search's loops, the affinity,
    cache, rescaling and KL class products recomputed for every (alpha, beta)."""
    num_classes = d.text.shape[0]
    values = F.one_hot(d.key_labels, num_classes).float()
    p = ((d.val @ d.text.T) / 0.5).softmax(-1)
    q = ((d.keys @ d.text.T) / 0.5).softmax(-1)
    kl = torch.zeros(d.val.shape[0], d.keys.shape[0])
    for i in range(0, d.val.shape[0], 100):
        batch = p[i:i + 100]
        repeated = torch.repeat_interleave(batch, q.shape[0], dim=0)
        kl[i:i + 100] = (repeated * (repeated.log() - torch.cat([q] * batch.shape[0]).log())).sum(-1).view(
            batch.shape[0], -1)
    grids = cf.tipx_grids()
    best, chosen = 0.0, {"alpha": 0.0, "beta": 0.0, "gamma": 0.0}
    clip_logits = 100.0 * d.val @ d.text.T
    for alpha in grids["alpha"]:
        for beta in grids["beta"]:
            new_knowledge = d.val @ d.keys.T
            cache_logits = ((-1) * (beta - beta * new_knowledge)).exp() @ values
            scaled = (kl - kl.min()) / (kl.max() - kl.min()) * (new_knowledge.max() - new_knowledge.min()) + \
                new_knowledge.min()
            kl_logits = (-scaled) @ values
            for gamma in grids["gamma"]:
                acc = accuracy(clip_logits + kl_logits * gamma + cache_logits * alpha, d.val_labels)
                if acc > best:
                    best, chosen = acc, {"alpha": alpha, "beta": beta, "gamma": gamma}
    return chosen


METHODS: dict[str, tuple[Callable[[Data], dict], Callable[[Data], dict]]] = {
    "gda": (fast_gda, loop_gda), "ape": (fast_ape, loop_ape), "tip-x": (fast_tipx, loop_tipx)}


def timed(fn: Callable[[Data], dict], data: Data) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = fn(data)
    return time.perf_counter() - t0, out


def fmt(params: dict) -> str:
    return ", ".join(f"{k}={v:.6g}" for k, v in params.items())


def parse_scales(text: str, methods: list[str]) -> dict[str, float]:
    """`--scale`: one number for every method, or `name=value` pairs (methods not named: 0, skipped)."""
    if "=" not in text:
        return {m: float(text) for m in methods}
    given = {k.strip(): float(v) for k, v in (item.split("=") for item in text.split(","))}
    return {m: given.get(m, 0.0) for m in methods}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="1",
                        help="size of the fast-only run (1 = ImageNet-sized, 0: skip it), one number or per method: "
                             "gda=1,ape=0.1,tip-x=0.1")
    parser.add_argument("--ref-scale", type=float, default=0.02,
                        help="size of the side-by-side run with the straightforward loops (0: skip them)")
    parser.add_argument("--methods", default="gda,ape,tip-x", help="comma-separated subset of gda,ape,tip-x")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic features")
    parser.add_argument("--output", default=None, help="also write the report to this file")
    parser.add_argument("--append", action="store_true", help="append to --output instead of replacing it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = Report()
    say = report.say
    say(f"{machine()}; synthetic L2-normalised features with class structure")
    say(f"command: python {' '.join(sys.argv)}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    warm = synthetic(0.002, args.seed + 1)  # first calls load kernels (LAPACK, einsum's helpers): not timed
    for name in methods:
        for fn in METHODS[name]:
            if name != "tip-x" or fn is METHODS[name][0]:
                fn(warm)
    if args.ref_scale > 0:
        ref = synthetic(args.ref_scale, args.seed)
        say(f"== side by side at --ref-scale {args.ref_scale}: {ref.describe()}")
        for name in methods:
            fast_fn, loop_fn = METHODS[name]
            t_fast, chosen_fast = timed(fast_fn, ref)
            t_loop, chosen_loop = timed(loop_fn, ref)
            same = chosen_fast.keys() == chosen_loop.keys() and all(
                math.isclose(chosen_fast[k], chosen_loop[k], rel_tol=0, abs_tol=1e-12) for k in chosen_fast)
            say(f"{name}: fast {t_fast:.2f} s, straightforward {t_loop:.2f} s, ratio {t_loop / t_fast:.1f}x; same "
                f"choice: {same} (fast {fmt(chosen_fast)}; loop {fmt(chosen_loop)})")
    scales = parse_scales(args.scale, methods)
    for scale in sorted({v for v in scales.values() if v > 0}, reverse=True):
        full = synthetic(scale, args.seed)
        say(f"== fast implementation alone at scale {scale}: {full.describe()}")
        for name in [m for m in methods if scales[m] == scale]:
            t_fast, chosen = timed(METHODS[name][0], full)
            say(f"{name}: fit + whole released search {t_fast:.1f} s -> {fmt(chosen)}")
    if args.output:
        report.write(args.output, args.append)


if __name__ == "__main__":
    main()
