"""Plain CLIP / PointCLIP and CALIP as zero-shot methods: fixed betas and view weights, tuned on the held-out tuning
set, and, only on request, tuned on the test labels (ORACLE).

Terms are `[N, K]` (images) or `[N, V, K]` (point clouds, per view); every row's logits are `calip_scores` of them
(`ZeroShotMethod.calip_row`):
`LOGIT_SCALE * (b1 clip + b2 vg + b3 tb)` after view aggregation (betas None: the CLIP term alone).
"""

from __future__ import annotations

from typing import Any, ClassVar

from calip3d.aggregation import uniform_weights
from calip3d.published import LOGIT_SCALE
from calip3d.results import MethodResult
from calip3d.search import search_betas, search_joint, search_view_weights

from .registry import (
    IMAGES, ORACLE_SOURCE, POINTS, ScoringRun, Tuning, ZeroShotMethod, register_zero_shot,
)

CLIP_SOURCE = "plain CLIP (global only)"
POINTCLIP_SOURCE = "plain PointCLIP (global only)"
UNIFORM_SOURCE = "uniform (PointCLIP's released code)"
NO_TUNING = "no held-out tuning set (tune on 'none', or the evaluated split is the tuning split)"
NO_ORACLE = "oracle rows are scored only when asked for (EvalConfig.tune.on 'test')"


def _uniform(run: ScoringRun) -> list[float]:
    return uniform_weights(run.test.clip.shape[1])


def calip_betas(run: ScoringRun) -> tuple[tuple[float, float, float], str]:
    """The fixed betas of CALIP's untuned row and where they come from: the user's, else the dataset's published
    pair (2D) or the default pair (3D)."""
    if run.user_betas is not None:
        return run.user_betas, "--betas"
    (beta2, beta3), source = run.info.default_betas
    return (1.0, beta2, beta3), source


@register_zero_shot
class Clip(ZeroShotMethod):
    name = "clip"
    summary = "plain CLIP: the global image feature against the class prompts (no attention)"
    kinds = frozenset({IMAGES})
    paper_method = "CLIP"

    def score(self, run: ScoringRun) -> MethodResult:
        return self.calip_row(run, None, betas_source=CLIP_SOURCE)


@register_zero_shot
class PointClip(ZeroShotMethod):
    name = "pointclip"
    summary = "plain PointCLIP: the views' global features summed with uniform weights, as released"
    kinds = frozenset({POINTS})
    paper_method = "PointCLIP"

    def score(self, run: ScoringRun) -> MethodResult:
        uniform = _uniform(run)
        return self.calip_row(run, None, uniform, betas_source=POINTCLIP_SOURCE, view_weights=uniform,
                              view_weights_source=UNIFORM_SOURCE)


@register_zero_shot
class PointClipWeighted(ZeroShotMethod):
    name = "pointclip_weighted"
    summary = "PointCLIP with the run's view weights (--view-weights; 'paper' = Table 1, ORACLE)"
    kinds = frozenset({POINTS})
    paper_method = "PointCLIP"

    def unavailable(self, run: ScoringRun) -> str | None:
        return None if run.view_weights.weights is not None else "no view weights given (EvalConfig.view_weights)"

    def score(self, run: ScoringRun) -> MethodResult:
        vw = run.view_weights
        return self.calip_row(run, None, vw.weights, betas_source=POINTCLIP_SOURCE, oracle=vw.oracle,
                              view_weights=vw.weights, view_weights_source=vw.source)


@register_zero_shot
class CalipPaper(ZeroShotMethod):
    name = "calip_paper"
    summary = "CALIP with the betas its paper reports for the dataset (searched on test by its authors)"
    kinds = frozenset({IMAGES})
    paper_method = "CALIP"

    def unavailable(self, run: ScoringRun) -> str | None:
        return None if run.info.paper_betas is not None else f"CALIP publishes no betas for {run.info.name}"

    def score(self, run: ScoringRun) -> MethodResult:
        betas = (1.0, *run.info.paper_betas)
        return self.calip_row(run, betas, betas_source=run.info.default_betas[1])


@register_zero_shot
class CalipUser(ZeroShotMethod):
    name = "calip_user"
    summary = "CALIP with the user's betas (--betas)"
    kinds = frozenset({IMAGES})
    paper_method = "CALIP"

    def unavailable(self, run: ScoringRun) -> str | None:
        return None if run.user_betas is not None else "no betas given (EvalConfig.betas)"

    def score(self, run: ScoringRun) -> MethodResult:
        return self.calip_row(run, run.user_betas, betas_source="--betas")


@register_zero_shot
class Calip3D(ZeroShotMethod):
    name = "calip"
    summary = "CALIP per view, views aggregated with the run's weights; the user's betas or CALIP's ImageNet pair"
    kinds = frozenset({POINTS})

    def score(self, run: ScoringRun) -> MethodResult:
        vw = run.view_weights
        weights = vw.weights if vw.weights is not None else _uniform(run)
        betas, source = calip_betas(run)
        return self.calip_row(run, betas, weights, betas_source=source, oracle=vw.oracle, view_weights=weights,
                              view_weights_source=vw.source)


class _Tuned(ZeroShotMethod):
    """A row tuned on the held-out tuning set, or (`ORACLE`) on the test labels."""

    ORACLE: ClassVar[bool] = False
    suffix: ClassVar[str] = "tuned"

    def unavailable(self, run: ScoringRun) -> str | None:
        if self.ORACLE:
            return None if run.oracle else NO_ORACLE
        return None if run.tuning is not None else NO_TUNING

    def tuning(self, run: ScoringRun) -> Tuning:
        return Tuning(run.test, "") if self.ORACLE else run.tuning

    def where(self, run: ScoringRun) -> str:
        return ORACLE_SOURCE if self.ORACLE else f"tuned on {run.tuning.description}"


def tuned_calip(run: ScoringRun, oracle: bool) -> tuple[tuple[float, float, float], list[float] | None, float]:
    """CALIP's betas (3D: with the view weights, searched jointly) tuned on the tuning set or, with `oracle`, on the
    test labels, and the accuracy the search reached; computed once per run."""
    def compute() -> tuple[tuple[float, float, float], list[float] | None, float]:
        source = run.test if oracle else run.tuning.terms
        beta2_max, beta3_max = run.beta_range
        if run.is_points:
            s = run.search
            joint = search_joint(*source.triple, source.labels, grid=s.view_grid, beta2_max=beta2_max,
                                 beta3_max=beta3_max, steps=s.steps, rounds=s.rounds, method=s.view_method)
            return (1.0, joint.beta2, joint.beta3), list(joint.weights), joint.accuracy
        found = search_betas(*source.triple, source.labels, beta2_max=beta2_max, beta3_max=beta3_max,
                             steps=run.search.steps)
        return (1.0, found.beta2, found.beta3), None, found.accuracy
    return run.tuned(f"calip {'oracle' if oracle else 'tuned'}", compute)


def tuned_view_weights(run: ScoringRun, oracle: bool) -> Any:
    """PointCLIP's view weights searched on the tuning set or, with `oracle`, on the test labels (the search's
    result: `weights`, `accuracy`, `method`); computed once per run."""
    def compute() -> Any:
        source = run.test if oracle else run.tuning.terms
        return search_view_weights(LOGIT_SCALE * source.clip, source.labels, grid=run.search.view_grid,
                                   method=run.search.view_method, restarts=run.search.restarts)
    return run.tuned(f"pointclip {'oracle' if oracle else 'tuned'}", compute)


class _PointClipTuned(_Tuned):
    kinds = frozenset({POINTS})
    paper_method = "PointCLIP"

    def score(self, run: ScoringRun) -> MethodResult:
        found = tuned_view_weights(run, self.ORACLE)
        details = {"tuning_top1": found.accuracy, "search_method": found.method, "search": run.search_details()}
        return self.calip_row(run, None, found.weights, betas_source=POINTCLIP_SOURCE, oracle=self.ORACLE,
                              view_weights=list(found.weights), view_weights_source=self.where(run), details=details)


class _CalipTuned(_Tuned):
    paper_method = "CALIP"

    def score(self, run: ScoringRun) -> MethodResult:
        betas, weights, tuning_top1 = tuned_calip(run, self.ORACLE)
        where = self.where(run)
        details: dict[str, Any] = {"tuning_top1": tuning_top1, "search": run.search_details()}
        if self.ORACLE and not run.is_points:  # as the 2D oracle row has always been recorded
            details = {"search": run.search_details()}
        return self.calip_row(run, betas, weights, betas_source=where, oracle=self.ORACLE, view_weights=weights,
                              view_weights_source=where if run.is_points else None, details=details)


@register_zero_shot
class PointClipTunedRow(_PointClipTuned):
    name = "pointclip_tuned"
    summary = "PointCLIP with view weights searched on the tuning clouds (train shots)"


@register_zero_shot
class CalipTunedRow(_CalipTuned):
    name = "calip_tuned"
    summary = "CALIP with betas (3D: and view weights, jointly) searched on the held-out tuning set"


@register_zero_shot
class PointClipOracleRow(_PointClipTuned):
    name = "pointclip_oracle"
    summary = "PointCLIP with view weights searched on the test labels: ORACLE, on request"
    ORACLE = True


@register_zero_shot
class CalipOracleRow(_CalipTuned):
    name = "calip_oracle"
    summary = "CALIP with betas (3D: and view weights) searched on the test labels: ORACLE, on request"
    ORACLE = True
