"""Benchmark calip3d.zeroshot.tda.tda_logits against the release's per-sample loop, side by side.

Synthetic but ImageNet-sized stream (default N=50,000, D=1024, C=1000): unit class centres, text features
normalise(centre + a random unit vector), image features normalise(centre + s * a random unit vector) with s drawn
uniformly from [3, 12] per sample, base logits 100 f W^T. This gives about 50% zero-shot accuracy, about 40% of the
samples below TDA's entropy window and the rest inside it, so both caches fill and keep being replaced. The
straightforward loop (per sample: Python dict caches, the keys of all classes concatenated, one torch matvec, as the
release runs it) is timed on the first `--reference-samples` samples; the stream is causal, so the first rows of the
full fast run are compared with it (max abs diff). Its per-sample cost grows as the caches fill, so its rate on a
prefix flatters it.

    python experiments/bench_tda.py [--samples 50000] [--reference-samples 5000] [--threads 1] [--output [PATH]]
"""

from __future__ import annotations

import argparse
import math
import resource
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench_report import Report, machine
from calip3d.zeroshot.tda import TDA_RELEASED, TDASettings, tda_logits

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "measurements" / "tda_cpu.txt"


def synthetic_stream(seed: int, n: int, dim: int, classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 unit features [N, D], base logits 100 f W^T [N, C] and true labels [N], in stream order."""
    g = torch.Generator().manual_seed(seed)

    def unit(rows: int) -> torch.Tensor:
        return F.normalize(torch.randn(rows, dim, generator=g), dim=1)

    centres = unit(classes)
    text = F.normalize(centres + unit(classes), dim=1)
    labels = torch.randint(0, classes, (n,), generator=g)
    feats = torch.empty(n, dim)
    for start in range(0, n, 8192):  # chunks: bounded temporaries
        rows = labels[start:start + 8192]
        spread = 3.0 + 9.0 * torch.rand(len(rows), 1, generator=g)
        feats[start:start + len(rows)] = F.normalize(centres[rows] + spread * unit(len(rows)), dim=1)
    return feats, 100.0 * feats @ text.T, labels


def release_loop(feats: torch.Tensor, logits: torch.Tensor, s: TDASettings) -> tuple[torch.Tensor, dict[str, int]]:
    """The release's stream, one sample at a time: caches are dicts class -> [(entropy, feature [1, D], p [1, C])]
    sorted by entropy; per sample the keys of all classes are concatenated and one matvec gives the affinities."""
    classes = logits.shape[1]
    pos: dict[int, list] = {}
    neg: dict[int, list] = {}
    stats = {"pos_replaced": 0, "neg_offered": 0, "neg_replaced": 0}

    def offer(cache: dict, label: int, item: tuple, capacity: int) -> bool:
        if label not in cache:
            cache[label] = [item]
            return False
        replaced = False
        if len(cache[label]) < capacity:
            cache[label].append(item)
        elif item[0] < cache[label][-1][0]:
            cache[label][-1], replaced = item, True
        cache[label] = sorted(cache[label], key=lambda entry: entry[0])
        return replaced

    def cache_logits(f: torch.Tensor, cache: dict, alpha: float, beta: float, mask: bool) -> torch.Tensor:
        keys, values = [], []
        for label in sorted(cache):
            for item in cache[label]:
                keys.append(item[1])
                values.append(item[2] if mask else label)
        if mask:
            p = torch.cat(values)
            value_matrix = ((p > s.mask_low) & (p < s.mask_high)).to(f.dtype)
        else:
            value_matrix = F.one_hot(torch.tensor(values), classes).to(f.dtype)
        affinity = f @ torch.cat(keys).T
        return alpha * (torch.exp(-(beta - beta * affinity)) @ value_matrix)

    out = torch.empty_like(logits)
    for i in range(logits.shape[0]):
        f, z = feats[i:i + 1], logits[i:i + 1]
        loss = -(z.softmax(1) * z.log_softmax(1)).sum(1)
        h = float(loss / math.log2(classes))
        label = int(z.argmax(1))
        stats["pos_replaced"] += offer(pos, label, (float(loss), f, None), s.shot_capacity)
        if s.entropy_low < h < s.entropy_high:
            stats["neg_offered"] += 1
            stats["neg_replaced"] += offer(neg, label, (float(loss), f, z.softmax(1)), s.shot_capacity_neg)
        final = z.clone()
        if pos:
            final += cache_logits(f, pos, s.alpha_pos, s.beta_pos, False)
        if neg:
            final -= cache_logits(f, neg, s.alpha_neg, s.beta_neg, True)
        out[i] = final[0]
    stats["pos_entries"] = sum(len(v) for v in pos.values())
    stats["neg_entries"] = sum(len(v) for v in neg.values())
    return out, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=50_000, help="stream length for tda_logits")
    parser.add_argument("--dim", type=int, default=1024, help="feature dimension D")
    parser.add_argument("--classes", type=int, default=1000, help="number of classes C")
    parser.add_argument("--reference-samples", type=int, default=5000,
                        help="prefix the per-sample loop runs (and both are compared on)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic stream")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--output", nargs="?", const=str(DEFAULT_OUTPUT), default=None, metavar="PATH",
                        help="also write the report to PATH (default experiments/measurements/tda_cpu.txt)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    report = Report()
    say = report.say
    say(machine())
    feats, logits, labels = synthetic_stream(args.seed, args.samples, args.dim, args.classes)
    alpha, beta = TDA_RELEASED["imagenet"]
    settings = TDASettings(alpha_pos=alpha, beta_pos=beta)
    h = torch.cat([-(z.softmax(1) * z.log_softmax(1)).sum(1) for z in logits.split(4096)]) / math.log2(args.classes)
    inside = ((h > settings.entropy_low) & (h < settings.entropy_high)).float().mean()
    say(f"== synthetic stream N={args.samples}, D={args.dim}, C={args.classes} (float32, seed {args.seed}); "
        f"zero-shot accuracy {100 * (logits.argmax(1) == labels).float().mean():.2f}%, entropy h below window "
        f"{100 * (h <= settings.entropy_low).float().mean():.1f}%, inside {100 * inside:.1f}%")
    say(f"settings: ImageNet release {settings}")

    t0 = time.perf_counter()
    fast = tda_logits(feats, logits, settings)
    t_fast = time.perf_counter() - t0
    say(f"tda_logits, {args.samples} samples: {t_fast:.2f} s = {args.samples / t_fast:,.0f} samples/s; "
        f"TDA accuracy {100 * (fast.argmax(1) == labels).float().mean():.2f}%")

    m = min(args.reference_samples, args.samples)
    t0 = time.perf_counter()
    slow, stats = release_loop(feats[:m], logits[:m], settings)
    t_slow = time.perf_counter() - t0
    say(f"per-sample loop, first {m} samples: {t_slow:.2f} s = {m / t_slow:,.1f} samples/s; caches at the end: "
        f"{stats['pos_entries']} positive entries ({stats['pos_replaced']} replacements), {stats['neg_entries']} "
        f"negative ({stats['neg_offered']} offered, {stats['neg_replaced']} replacements)")
    t0 = time.perf_counter()
    fast_prefix = tda_logits(feats[:m], logits[:m], settings)
    t_prefix = time.perf_counter() - t0
    diff = float((fast[:m] - slow).abs().max())
    same_prefix = float((fast_prefix - fast[:m]).abs().max())
    agree = float((fast[:m].argmax(1) == slow.argmax(1)).float().mean())
    say(f"same logits on the first {m} samples: max abs diff {diff:.2e} (logits up to "
        f"{float(slow.abs().max()):.1f}); top-1 agreement {100 * agree:.2f}%; the prefix run alone: "
        f"{t_prefix:.2f} s, max abs diff to the full run {same_prefix:.1e}")
    say(f"speedup (samples/s, full fast run vs loop on the prefix): {(args.samples / t_fast) / (m / t_slow):,.0f}x; "
        f"on the same prefix: {t_slow / t_prefix:,.0f}x")
    say(f"peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.2f} GiB "
        f"(features + logits: {(feats.numel() + logits.numel()) * 4 / 2 ** 30:.2f} GiB)")
    if args.output:
        print(f"wrote {report.write(args.output)}")


if __name__ == "__main__":
    main()
