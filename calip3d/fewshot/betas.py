"""CALIP's betas for a few-shot run (the zero-shot reference, zero-shot and CALIP-FS's start): given, CALIP's
published per-dataset values, or searched on the val shots."""

from __future__ import annotations

import torch

from ..aggregation import aggregate_views, mean_weights
from ..attention import BETA_CHOICES
from ..datasets import DatasetInfo
from ..encoding import Tokens, view_terms
from ..errors import CalipError
from ..search import search_betas
from .selection import GIVEN, PUBLISHED, VAL_SHOTS, Selection


def default_betas_choice(protocol: str) -> str:
    """The honest protocol searches the betas on the val shots; the release protocol takes CALIP's published ones."""
    return "val" if protocol == "honest" else "paper"


def published_betas(info: DatasetInfo) -> tuple[tuple[float, float, float], Selection]:
    """CALIP's published (1, beta2, beta3) for `info`, labelled: the authors searched them on each dataset's test
    split (ORACLE); 3D datasets have none and get the ImageNet pair (searched on ImageNet's test set, not theirs)."""
    (beta2, beta3), source = info.default_betas
    if info.paper_betas is not None:
        return (1.0, beta2, beta3), Selection("betas", PUBLISHED, source, "searched on this dataset's test split by "
                                              "the CALIP authors", oracle=True)
    return (1.0, beta2, beta3), Selection("betas", PUBLISHED, source, "searched on ImageNet's test split by the CALIP "
                                          "authors, not on this dataset's")


def val_shot_betas(info: DatasetInfo, val: Tokens, text: torch.Tensor, temperature: float,
                   views: int | None) -> tuple[tuple[float, float, float], Selection]:
    """(1, beta2, beta3) searched on the val shots' CALIP terms (views averaged) over CALIP's 200 x 200 grid up to
    the dataset's range; the first maximum in the official loop order."""
    if len(val) == 0:
        raise CalipError("the betas are searched on the val shots, but this split has none: give "
                         "CalipConfig.betas='paper' or three betas 1,B2,B3")
    terms = view_terms(val.global_feats.float(), val.spatial_feats.float(), text.to(val.global_feats.device),
                       temperature)
    if views:
        terms = tuple(aggregate_views(t, mean_weights(views)) for t in terms)
    beta2_max, beta3_max = info.beta_search_range
    found = search_betas(*terms, val.labels, beta2_max=beta2_max, beta3_max=beta3_max)
    rule = f"first maximum of CALIP's 200 x 200 grid up to ({beta2_max:g}, {beta3_max:g})"
    return (1.0, found.beta2, found.beta3), Selection("betas", VAL_SHOTS, rule)


def resolve_betas(choice: tuple[float, float, float] | str | None, protocol: str, info: DatasetInfo, val: Tokens,
                  text: torch.Tensor, temperature: float,
                  views: int | None) -> tuple[tuple[float, float, float], Selection]:
    """The betas `choice` names ("val", "paper", explicit values; None: the protocol's default) and how they were
    chosen."""
    choice = default_betas_choice(protocol) if choice is None else choice
    if isinstance(choice, str):
        if choice not in BETA_CHOICES:
            raise CalipError(f"CalipConfig.betas must be 1,B2,B3, 'val' or 'paper', got {choice!r}")
        if choice == "paper":
            return published_betas(info)
        return val_shot_betas(info, val, text, temperature, views)
    return tuple(float(b) for b in choice), Selection("betas", GIVEN, "--betas")  # type: ignore[return-value]
