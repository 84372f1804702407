"""Point-NN beside PointCLIP and CALIP in `eval` (point clouds, on request, with a memory: `EvalConfig.memory_shots`
train clouds per class, drawn apart from the tuning set): `point_nn` (Point-NN's memory bank alone), and the fusions
`pointclip_pointnn` / `calip_pointnn` (zero-shot logits + w * Point-NN logits: a calip3d design, no published
counterpart). gamma (the release's grid) and w (calip3d's grid) are chosen on the held-out tuning set, never on
test.
"""

from __future__ import annotations

from typing import Any

import torch

from calip3d.attention import calip_scores
from calip3d.metrics import topk_accuracy
from calip3d.pointnn import memory_logits, search_gamma
from calip3d.results import MethodResult

from .calip_rows import POINTCLIP_SOURCE, tuned_calip, tuned_view_weights
from .registry import POINTS, ScoringRun, ZeroShotMethod, accuracies, register_zero_shot

FUSION_GRID = (0.0, *[round(10 ** (e / 4), 6) for e in range(-8, 13)])  # as the few-shot point-nn fusion
FUSION_RULE = "first best of calip3d's grid {0, 10^-2 .. 10^3 in 21 log steps} (a calip3d addition, no release)"
NO_MEMORY = "Point-NN needs a memory of train clouds (EvalConfig.memory_shots)"
NO_TUNING = "gamma and the fusion weight are chosen on the tuning set, and this run has none (tune on 'none')"


class _PointNN(ZeroShotMethod):
    kinds = frozenset({POINTS})
    default = False
    needs = frozenset({"pointnn"})

    def unavailable(self, run: ScoringRun) -> str | None:
        if run.options.memory_shots is None:
            return NO_MEMORY
        return None if run.tuning is not None else NO_TUNING

    def gamma(self, run: ScoringRun) -> tuple[float, float]:
        """gamma chosen on the tuning set, once per run."""
        pnn = run.extra["pointnn"]
        return run.tuned("pointnn gamma", lambda: search_gamma(
            pnn["tuning"], pnn["memory"], pnn["memory_labels"], run.test.clip.shape[-1], run.tuning.terms.labels))

    def own(self, run: ScoringRun, which: str) -> torch.Tensor:
        pnn = run.extra["pointnn"]
        return memory_logits(pnn[which], pnn["memory"], pnn["memory_labels"], run.test.clip.shape[-1],
                             self.gamma(run)[0])

    def record(self, run: ScoringRun) -> dict[str, Any]:
        pnn = run.extra["pointnn"]
        gamma, top1 = self.gamma(run)
        return {"gamma": gamma, "gamma_tuning_top1": top1, "gamma_source": f"first best of the release's grid "
                f"{{0, 2, ..., 9998}} on {run.tuning.description}", "memory": pnn["description"],
                "encoder": pnn["encoder"]}


@register_zero_shot
class PointNNRow(_PointNN):
    name = "point_nn"
    summary = "Point-NN's weight-free encoder and memory bank of train clouds (--memory-shots K; on request)"

    def score(self, run: ScoringRun) -> MethodResult:
        return MethodResult(self.name, **accuracies(self.own(run, "test"), run.labels), betas=None,
                            betas_source="Point-NN memory bank (no CLIP)", details=self.record(run))


class _Fused(_PointNN):
    """Zero-shot logits + w * Point-NN logits, w chosen on the tuning set."""

    def base(self, run: ScoringRun, terms: Any) -> torch.Tensor:
        raise NotImplementedError

    def base_row(self, run: ScoringRun) -> dict[str, Any]:
        raise NotImplementedError

    def score(self, run: ScoringRun) -> MethodResult:
        tuning_base, tuning_own = self.base(run, run.tuning.terms), self.own(run, "tuning")
        best, search = (0.0, -1.0), []
        for weight in FUSION_GRID:
            top1 = topk_accuracy(tuning_base + weight * tuning_own, run.tuning.terms.labels, 1)
            search.append([weight, top1])
            if top1 > best[1]:
                best = (weight, top1)
        logits = self.base(run, run.test) + best[0] * self.own(run, "test")
        details = {**self.record(run), "fusion_weight": best[0], "fusion_tuning_top1": best[1],
                   "fusion_search": search, "fusion": f"{FUSION_RULE}, on {run.tuning.description}"}
        row = self.base_row(run)
        row["betas_source"] += f"; + {best[0]:g} x Point-NN (gamma {self.gamma(run)[0]:g}): no published counterpart"
        return MethodResult(self.name, **accuracies(logits, run.labels), **row, details=details)


@register_zero_shot
class PointClipPointNN(_Fused):
    name = "pointclip_pointnn"
    summary = "PointCLIP (view weights tuned on the tuning set) + Point-NN, weight tuned there: calip3d's fusion"

    def _weights(self, run: ScoringRun) -> list[float]:
        return list(tuned_view_weights(run, oracle=False).weights)

    def base(self, run: ScoringRun, terms: Any) -> torch.Tensor:
        return calip_scores(terms.triple, None, self._weights(run))

    def base_row(self, run: ScoringRun) -> dict[str, Any]:
        where = f"tuned on {run.tuning.description}"
        return {"betas": None, "betas_source": POINTCLIP_SOURCE, "view_weights": self._weights(run),
                "view_weights_source": where}


@register_zero_shot
class CalipPointNN(_Fused):
    name = "calip_pointnn"
    summary = "CALIP (betas and view weights tuned on the tuning set) + Point-NN, weight tuned there: calip3d's fusion"

    def base(self, run: ScoringRun, terms: Any) -> torch.Tensor:
        betas, weights, _ = tuned_calip(run, oracle=False)
        return calip_scores(terms.triple, betas, weights)

    def base_row(self, run: ScoringRun) -> dict[str, Any]:
        betas, weights, _ = tuned_calip(run, oracle=False)
        where = f"tuned on {run.tuning.description}"
        return {"betas": list(betas), "betas_source": where, "view_weights": weights, "view_weights_source": where}
