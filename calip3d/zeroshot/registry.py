"""The zero-shot method registry: one class per method, each owning its rows' scoring, the options it reads, where
each of its choices comes from and the published method it is comparable with.

A method is scored from a `ScoringRun` (the test terms, the held-out tuning set, what was asked for); `eval`,
`tune-views` and the Python API pick methods by name (`EvalConfig.methods`; None: every default method that applies,
in registry order, which is the order of today's tables). A new zero-shot method is one module holding one class
decorated with `@register_zero_shot`, imported by `calip3d.zeroshot`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import torch

from calip3d.attention import calip_scores
from calip3d.datasets import DatasetInfo
from calip3d.encoding import Terms
from calip3d.errors import CalipError
from calip3d.metrics import topk_accuracy
from calip3d.reference import register_comparable
from calip3d.results import MethodResult

from .config import SearchConfig

ORACLE_SOURCE = "ORACLE: tuned on the test labels"
IMAGES, POINTS = "images", "points"


@dataclass(frozen=True)
class Tuning:
    """The terms to tune on and what they are (`description` goes into every tuned row's source)."""

    terms: Terms
    description: str


@dataclass(frozen=True)
class ViewWeights:
    """The view weights a run scores with (None: uniform), where they came from, and whether that read test
    labels."""

    weights: list[float] | None = None
    source: str = "uniform"
    oracle: bool = False


@dataclass
class ScoringRun:
    """Everything a zero-shot method scores from: the dataset, the test terms, the held-out tuning set (None: no
    tuning), whether oracle rows were asked for, the user's betas, the view weights, the searches' settings, the
    beta grid's bounds and the method options of the config (`options`, e.g. TDA's stream seeds). `extra` holds
    inputs a method needs beyond the terms, prepared by the pipeline before scoring (see `ZeroShotMethod.needs`)."""

    info: DatasetInfo
    test: Terms
    tuning: Tuning | None
    oracle: bool
    user_betas: tuple[float, float, float] | None
    view_weights: ViewWeights
    search: SearchConfig
    beta_range: tuple[float, float]
    options: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    _memo: dict[str, Any] = field(default_factory=dict)

    @property
    def is_points(self) -> bool:
        return self.info.is_points

    @property
    def labels(self) -> torch.Tensor:
        return self.test.labels

    def tuned(self, key: str, compute: Callable[[], Any]) -> Any:
        """`compute()` once per run under `key` (a search shared by several rows, e.g. CALIP's tuned betas)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def search_details(self) -> dict[str, Any]:
        """The searches' settings as recorded in every tuned row (3D: with the view grid)."""
        beta2_max, beta3_max = self.beta_range
        found = {"beta2_max": beta2_max, "beta3_max": beta3_max, "steps": self.search.steps}
        return {**found, "view_grid": list(self.search.view_grid)} if self.is_points else found


def accuracies(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 and top-5 accuracy in percent."""
    return {"top1": topk_accuracy(logits, labels, 1), "top5": topk_accuracy(logits, labels, 5)}


class ZeroShotMethod:
    """One zero-shot method. Subclasses set `name`, `summary` (one line for `--list-methods`), `kinds` (images,
    points), `default` (in the default method set), `paper_method` (the published method its numbers compare
    with, a `PublishedResult.method`; None: none), `needs` (inputs beyond the terms, e.g. "features"), and
    implement `unavailable` (why it cannot be scored in this run, or None) and `score`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    kinds: ClassVar[frozenset[str]] = frozenset({IMAGES, POINTS})
    default: ClassVar[bool] = True
    paper_method: ClassVar[str | None] = None
    needs: ClassVar[frozenset[str]] = frozenset()

    def unavailable(self, run: ScoringRun) -> str | None:
        """Why this method cannot be scored in `run` (None: it can)."""
        return None

    def score(self, run: ScoringRun) -> MethodResult:
        raise NotImplementedError

    def calip_row(self, run: ScoringRun, betas: tuple[float, ...] | None, weights: list[float] | None = None,
                  **fields: Any) -> MethodResult:
        """This method's row from the test terms: `calip_scores(terms, betas, weights)` scored against the labels
        (betas None: the CLIP term alone; weights None: images, or uniform views), with the row's other `fields`."""
        scores = accuracies(calip_scores(run.test.triple, betas, weights), run.labels)
        return MethodResult(self.name, **scores, betas=None if betas is None else list(betas), **fields)


ZERO_SHOT_METHODS: dict[str, type[ZeroShotMethod]] = {}


def register_zero_shot(cls: type[ZeroShotMethod]) -> type[ZeroShotMethod]:
    """Class decorator: add a zero-shot method to `ZERO_SHOT_METHODS` (registry order = default table order)."""
    if cls.name in ZERO_SHOT_METHODS:
        raise ValueError(f"zero-shot method {cls.name!r} registered twice")
    ZERO_SHOT_METHODS[cls.name] = cls
    register_comparable(cls.name, cls.paper_method)
    return cls


def kind_of(info: DatasetInfo) -> str:
    return POINTS if info.is_points else IMAGES


def get_zero_shot(name: str) -> type[ZeroShotMethod]:
    if name not in ZERO_SHOT_METHODS:
        raise CalipError(f"unknown zero-shot method {name!r}; choose from {', '.join(ZERO_SHOT_METHODS)}")
    return ZERO_SHOT_METHODS[name]


def select_methods(names: Sequence[str] | None, info: DatasetInfo) -> list[ZeroShotMethod]:
    """The methods of a run: `names` in the given order (each must suit the dataset's kind), or None for every
    default method of the dataset's kind in registry order. Whether each applies is decided at scoring time."""
    kind = kind_of(info)
    if names is None:
        return [cls() for cls in ZERO_SHOT_METHODS.values() if cls.default and kind in cls.kinds]
    chosen = []
    for name in names:
        cls = get_zero_shot(name)
        if kind not in cls.kinds:
            what = " and ".join("point-cloud" if k == POINTS else "image" for k in sorted(cls.kinds))
            raise CalipError(f"zero-shot method {name!r} scores {what} datasets; {info.name} is "
                             f"{'a point-cloud' if kind == POINTS else 'an image'} dataset")
        chosen.append(cls())
    return chosen


def score_methods(methods: Sequence[ZeroShotMethod], run: ScoringRun, explicit: bool) -> list[MethodResult]:
    """The rows of `methods` in order. A default method that does not apply is left out; one the user named
    (`explicit`) is an error saying why."""
    rows = []
    for method in methods:
        reason = method.unavailable(run)
        if reason is None:
            rows.append(method.score(run))
        elif explicit:
            raise CalipError(f"zero-shot method {method.name!r} cannot be scored in this run: {reason}")
    return rows


def needs_of(methods: Sequence[ZeroShotMethod]) -> frozenset[str]:
    """Every extra input the methods need."""
    return frozenset().union(*(m.needs for m in methods)) if methods else frozenset()


def paper_method_of(name: str) -> str | None:
    """The published method a zero-shot method's rows compare with (None for unknown names and methods without
    one)."""
    cls = ZERO_SHOT_METHODS.get(name)
    return cls.paper_method if cls else None


def method_list() -> str:
    """One line per registered zero-shot method: name, kinds, default or not, summary (for `--list-methods`)."""
    width = max(len(n) for n in ZERO_SHOT_METHODS)
    lines = []
    for name, cls in ZERO_SHOT_METHODS.items():
        kinds = "2D+3D" if len(cls.kinds) == 2 else ("3D" if POINTS in cls.kinds else "2D")
        lines.append(f"{name:<{width}}  {kinds:<5}  {'default' if cls.default else 'on request':<10}  "
                     f"{cls.summary}")
    return "\n".join(lines)
