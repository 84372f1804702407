"""TDA's test-time caches (Karmanov et al., CVPR 2024) as zero-shot methods: `tda` on plain CLIP / PointCLIP logits,
as released, and `calip_tda` on CALIP's logits (pseudo-labels and entropies from CALIP: a calip3d combination, no
published counterpart).

Features are the global features (point clouds: PointCLIP's normalised concatenation of the views); the base logits
are the view-aggregated logits of the run's view weights. The test split streams in the order of a seeded
permutation per stream seed (`EvalConfig.stream_seeds`; the release shuffles with seed 1). The positive cache's
alpha and beta: with a held-out tuning set, chosen on it by streaming over it (caches empty, then the test stream
starts with empty caches again); without one, the release's per-dataset values, whose selection is undocumented.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any

import torch

from calip3d.aggregation import flat_global
from calip3d.attention import calip_scores
from calip3d.metrics import topk_accuracy
from calip3d.results import MethodResult

from .calip_rows import CLIP_SOURCE, POINTCLIP_SOURCE, calip_betas, tuned_calip
from .registry import ScoringRun, ZeroShotMethod, accuracies, register_zero_shot
from .tda import TDA_RELEASED, TDA_SOURCE, TDASettings, tda_logits

# calip3d's tuning grid: every positive (alpha, beta) pair of the release's CoOp-dataset configs lies on it.
TDA_ALPHA_GRID = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0)
TDA_BETA_GRID = (1.0, 2.0, 3.0, 5.0, 7.0, 8.0)
TDA_GRID_SOURCE = ("calip3d's grid alpha {0.5,1,2,3,4,5} x beta {1,2,3,5,7,8}, covering every pair of the release's "
                   "CoOp-dataset configs (the release documents no selection, TDA issue #7); first best accuracy")
TDA_FALLBACK = "imagenet"


def stream_order(n: int, seed: int) -> torch.Tensor:
    """The stream's order of `n` items for `seed`: a seeded permutation (the release shuffles its test loader with
    seed 1; calip3d's permutation is `torch.randperm` with a generator seeded `seed`, not the release's sampler)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))


def streamed(features: torch.Tensor, base: torch.Tensor, settings: TDASettings, seed: int) -> torch.Tensor:
    """TDA logits `[N, C]` of items streamed in `stream_order(N, seed)`, returned in item order."""
    order = stream_order(len(base), seed)
    out = torch.empty_like(base)
    out[order] = tda_logits(features[order], base[order], settings)
    return out


def released_settings(dataset: str) -> tuple[TDASettings, str]:
    """The release's positive-cache settings for `dataset` (ImageNet's where it has none) and their source."""
    key = dataset if dataset in TDA_RELEASED else TDA_FALLBACK
    alpha, beta = TDA_RELEASED[key]
    note = "" if key == dataset else f" (no TDA config for {dataset}: ImageNet's)"
    return TDASettings(alpha, beta), f"{TDA_SOURCE}{note}"


class _TDA(ZeroShotMethod):
    """TDA on a base: subclasses say which logits (`base`) and which betas / view weights they use."""

    default = False

    def base(self, run: ScoringRun, terms: Any) -> torch.Tensor:
        raise NotImplementedError

    def base_row(self, run: ScoringRun) -> dict[str, Any]:
        raise NotImplementedError

    def choose(self, run: ScoringRun, seed: int) -> tuple[TDASettings, str, dict[str, Any]]:
        """(settings, where alpha and beta came from, the search's record)."""
        if run.tuning is None:
            settings, source = released_settings(run.info.name)
            return settings, f"the release's per-dataset values, selection undocumented: {source}", {}
        terms = run.tuning.terms
        features, base, labels = flat_global(terms.global_feats), self.base(run, terms), terms.labels
        best, search = (TDA_ALPHA_GRID[0], TDA_BETA_GRID[0], -1.0), []
        for alpha in TDA_ALPHA_GRID:
            for beta in TDA_BETA_GRID:
                top1 = topk_accuracy(streamed(features, base, TDASettings(alpha, beta), seed), labels, 1)
                search.append([alpha, beta, top1])
                if top1 > best[2]:
                    best = (alpha, beta, top1)
        where = f"tuned on {run.tuning.description}, streamed in stream seed {seed}'s order: {TDA_GRID_SOURCE}"
        return TDASettings(best[0], best[1]), where, {"tuning_top1": best[2], "search": search}

    def score(self, run: ScoringRun) -> MethodResult:
        seeds = list(run.options.stream_seeds)
        settings, where, search = self.choose(run, seeds[0])
        features, base, labels = flat_global(run.test.global_feats), self.base(run, run.test), run.labels
        per_seed = [accuracies(streamed(features, base, settings, seed), labels) for seed in seeds]
        top1s = [a["top1"] for a in per_seed]
        details = {"tda": {**asdict(settings), "source": where}, **search, "stream_seeds": seeds,
                   "per_seed_top1": top1s, "top1_std": statistics.pstdev(top1s) if len(top1s) > 1 else 0.0,
                   "stream_order": "torch.randperm seeded with each stream seed (the release: its loader shuffled "
                                   "with seed 1)"}
        row = self.base_row(run)
        caches = f"TDA caches alpha {settings.alpha_pos:g}, beta {settings.beta_pos:g}: {where.split(':')[0]}"
        row["betas_source"] = f"{row['betas_source']}; {caches}"
        return MethodResult(self.name, top1=statistics.fmean(top1s),
                            top5=statistics.fmean(a["top5"] for a in per_seed), **row, details=details)


@register_zero_shot
class TDA(_TDA):
    name = "tda"
    summary = "TDA test-time caches on plain CLIP / PointCLIP logits, as released (on request)"
    paper_method = "TDA"

    def base(self, run: ScoringRun, terms: Any) -> torch.Tensor:
        return calip_scores(terms.triple, None, run.view_weights.weights)

    def base_row(self, run: ScoringRun) -> dict[str, Any]:
        vw = run.view_weights
        views = {"view_weights": vw.weights or [1.0] * run.test.clip.shape[1], "view_weights_source": vw.source} \
            if run.is_points else {}
        return {"betas": None, "betas_source": POINTCLIP_SOURCE if run.is_points else CLIP_SOURCE,
                "oracle": vw.oracle, **views}


@register_zero_shot
class CalipTDA(_TDA):
    name = "calip_tda"
    summary = ("TDA's caches on CALIP's logits (betas, 3D view weights: tuned on the tuning set, else the fixed "
               "ones): a calip3d combination (on request)")

    def _calip(self, run: ScoringRun) -> tuple[tuple[float, float, float], list[float] | None, str, str, bool]:
        """(betas, view weights, betas' source, view weights' source, oracle?) of the CALIP base."""
        if run.tuning is not None:
            betas, weights, _ = tuned_calip(run, oracle=False)
            where = f"tuned on {run.tuning.description}"
            return betas, weights, where, where, False
        betas, source = calip_betas(run)
        vw = run.view_weights
        return betas, vw.weights, source, vw.source, vw.oracle

    def base(self, run: ScoringRun, terms: Any) -> torch.Tensor:
        betas, weights, *_ = self._calip(run)
        return calip_scores(terms.triple, betas, weights)

    def base_row(self, run: ScoringRun) -> dict[str, Any]:
        betas, weights, betas_source, views_source, oracle = self._calip(run)
        views = {"view_weights": weights or [1.0] * run.test.clip.shape[1], "view_weights_source": views_source} \
            if run.is_points else {}
        return {"betas": list(betas), "betas_source": f"{betas_source} (CALIP base: no published counterpart)",
                "oracle": oracle, **views}
