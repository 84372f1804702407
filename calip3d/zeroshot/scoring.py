"""Scoring of cached CALIP terms under the honest protocol: plain CLIP / PointCLIP, CALIP with published (2D) or
default (3D) betas, CALIP tuned on a held-out tuning set, and, only on request, tuned on the test labels (ORACLE).

Terms are `[N, K]` (images) or `[N, V, K]` (point clouds, per view); logits are `LOGIT_SCALE * (b1 clip + b2 vg +
b3 tb)`, view-aggregated with `aggregate_views`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from calip3d.aggregation import aggregate_views, uniform_weights
from calip3d.attention import combine_terms
from calip3d.encoding import Terms
from calip3d.metrics import topk_accuracy
from calip3d.presets import LOGIT_SCALE
from calip3d.results import MethodResult
from calip3d.search import search_betas, search_joint, search_view_weights

from .config import SearchConfig

ORACLE_SOURCE = "ORACLE: tuned on the test labels"
CLIP_SOURCE = "plain CLIP (global only)"
POINTCLIP_SOURCE = "plain PointCLIP (global only)"


@dataclass(frozen=True)
class Tuning:
    """The terms to tune on and what they are (`description` goes into every tuned row's source)."""

    terms: Terms
    description: str


def accuracies(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 and top-5 accuracy in percent."""
    return {"top1": topk_accuracy(logits, labels, 1), "top5": topk_accuracy(logits, labels, 5)}


def calip_accuracies(terms: Sequence[torch.Tensor], labels: torch.Tensor,
                     betas: Sequence[float]) -> dict[str, float]:
    return accuracies(combine_terms(terms, betas), labels)


def image_methods(test: Terms, tune: Tuning | None, paper_betas: tuple[float, float] | None, paper_source: str,
                  user_betas: tuple[float, float, float] | None, oracle: bool, beta2_max: float, beta3_max: float,
                  steps: int) -> list[MethodResult]:
    """The rows of a 2D result, in table order."""
    labels = test.labels
    rows = [MethodResult("clip", **accuracies(LOGIT_SCALE * test.clip, labels), betas=None,
                         betas_source=CLIP_SOURCE)]
    fixed = [("calip_paper", (1.0, *paper_betas), paper_source)] if paper_betas is not None else []
    fixed += [("calip_user", user_betas, "--betas")] if user_betas is not None else []
    for name, betas, source in fixed:
        rows.append(MethodResult(name, **calip_accuracies(test.triple, labels, betas), betas=list(betas),
                                 betas_source=source))
    search = {"beta2_max": beta2_max, "beta3_max": beta3_max, "steps": steps}
    tunings = [("calip_tuned", tune, False)] if tune is not None else []
    tunings += [("calip_oracle", Tuning(test, ""), True)] if oracle else []
    for name, tuning, is_oracle in tunings:
        found = search_betas(*tuning.terms.triple, tuning.terms.labels, beta2_max=beta2_max, beta3_max=beta3_max,
                             steps=steps)
        betas = (1.0, found.beta2, found.beta3)
        details = {"search": search} if is_oracle else {"tuning_top1": found.accuracy, "search": search}
        rows.append(MethodResult(name, **calip_accuracies(test.triple, labels, betas), betas=list(betas),
                                 betas_source=ORACLE_SOURCE if is_oracle else f"tuned on {tuning.description}",
                                 oracle=is_oracle, details=details))
    return rows


def point_methods(test: Terms, tune: Tuning | None, default_betas: tuple[float, float], default_source: str,
                  view_weights: Sequence[float] | None, view_weights_source: str, view_weights_oracle: bool,
                  user_betas: tuple[float, float, float] | None, oracle: bool, beta2_max: float, beta3_max: float,
                  search_config: SearchConfig) -> list[MethodResult]:
    """The rows of a 3D result: PointCLIP (clip term, views summed) beside CALIP, default then tuned (view weights
    for PointCLIP; view weights jointly with the betas for CALIP)."""
    steps, grid = search_config.steps, search_config.view_grid
    labels = test.labels
    uniform = uniform_weights(test.clip.shape[1])
    weights = list(view_weights) if view_weights is not None else uniform
    rows = [MethodResult("pointclip", **accuracies(LOGIT_SCALE * aggregate_views(test.clip, uniform), labels),
                         betas=None, betas_source=POINTCLIP_SOURCE, view_weights=uniform,
                         view_weights_source="uniform (PointCLIP's released code)")]
    if view_weights is not None:
        rows.append(MethodResult("pointclip_weighted",
                                 **accuracies(LOGIT_SCALE * aggregate_views(test.clip, weights), labels), betas=None,
                                 betas_source=POINTCLIP_SOURCE, oracle=view_weights_oracle, view_weights=weights,
                                 view_weights_source=view_weights_source))
    betas = user_betas or (1.0, *default_betas)
    rows.append(MethodResult("calip", **calip_accuracies([aggregate_views(t, weights) for t in test.triple], labels,
                                                         betas),
                             betas=list(betas), betas_source="--betas" if user_betas else default_source,
                             oracle=view_weights_oracle, view_weights=weights, view_weights_source=view_weights_source))
    search = {"beta2_max": beta2_max, "beta3_max": beta3_max, "steps": steps, "view_grid": list(grid)}
    tunings = [("tuned", tune, False)] if tune is not None else []
    tunings += [("oracle", Tuning(test, ""), True)] if oracle else []
    for name, tuning, is_oracle in tunings:
        where = ORACLE_SOURCE if is_oracle else f"tuned on {tuning.description}"
        source = tuning.terms
        pc = search_view_weights(LOGIT_SCALE * source.clip, source.labels, grid=grid,
                                 method=search_config.view_method, restarts=search_config.restarts)
        rows.append(MethodResult(
            f"pointclip_{name}", **accuracies(LOGIT_SCALE * aggregate_views(test.clip, pc.weights), labels),
            betas=None, betas_source=POINTCLIP_SOURCE, oracle=is_oracle, view_weights=list(pc.weights),
            view_weights_source=where,
            details={"tuning_top1": pc.accuracy, "search_method": pc.method, "search": search}))
        joint = search_joint(*source.triple, source.labels, grid=grid, beta2_max=beta2_max, beta3_max=beta3_max,
                             steps=steps, rounds=search_config.rounds, method=search_config.view_method)
        jb = (1.0, joint.beta2, joint.beta3)
        rows.append(MethodResult(
            f"calip_{name}", **calip_accuracies([aggregate_views(t, joint.weights) for t in test.triple], labels, jb),
            betas=list(jb), betas_source=where, oracle=is_oracle, view_weights=list(joint.weights),
            view_weights_source=where, details={"tuning_top1": joint.accuracy, "search": search}))
    return rows
