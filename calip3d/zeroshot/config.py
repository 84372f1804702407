"""Typed configs of the zero-shot pipelines (`run_eval`, `run_tune_views`); the command layer builds them from flags."""

from __future__ import annotations

from dataclasses import dataclass, field

from calip3d.errors import CalipError, check_at_least
from calip3d.published import DEFAULT_SEARCH_STEPS, VIEW_WEIGHT_GRID
from calip3d.run_context import RunConfig

TUNE_ON = ("val", "none", "test")


@dataclass(frozen=True)
class TuneConfig:
    """The held-out tuning set: `on` "val" (CoOp val; for ImageNet and 3D, `shots` train items per class drawn with
    `seed`), "test" (also the same tuned on the test labels, labelled ORACLE) or "none"; `limit` its first items."""

    on: str = "val"
    shots: int = 16
    seed: int = 1
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.on not in TUNE_ON:
            raise CalipError(f"TuneConfig.on must be one of {', '.join(TUNE_ON)}, got {self.on!r}")
        check_at_least(self.shots, 1, "TuneConfig.shots")
        check_at_least(self.limit, 1, "TuneConfig.limit")


VIEW_METHODS = ("auto", "exhaustive", "coordinate")


@dataclass(frozen=True)
class SearchConfig:
    """Searches: beta upper bounds (None = the dataset's range, see `DatasetInfo.beta_search_range`) and steps per
    beta; view weights from `view_grid` by `view_method` (exhaustive grid, coordinate ascent with `restarts` random
    restarts, or auto), alternated with the betas for `rounds` rounds in the joint search."""

    beta2_max: float | None = None
    beta3_max: float | None = None
    steps: int = DEFAULT_SEARCH_STEPS
    view_grid: tuple[float, ...] = VIEW_WEIGHT_GRID
    view_method: str = "auto"
    restarts: int = 0
    rounds: int = 2

    def __post_init__(self) -> None:
        check_at_least(self.steps, 1, "SearchConfig.steps")
        check_at_least(self.restarts, 0, "SearchConfig.restarts")
        check_at_least(self.rounds, 1, "SearchConfig.rounds")
        if not self.view_grid or any(not v > 0 for v in self.view_grid):
            raise CalipError(f"SearchConfig.view_grid values must be positive, got {list(self.view_grid)}")
        if self.view_method not in VIEW_METHODS:
            raise CalipError(f"SearchConfig.view_method must be one of {', '.join(VIEW_METHODS)}, got {self.view_method!r}")

    def beta_range(self, dataset_range: tuple[float, float]) -> tuple[float, float]:
        return self.beta2_max or dataset_range[0], self.beta3_max or dataset_range[1]


@dataclass(frozen=True)
class SplitRunConfig(RunConfig):
    """A `RunConfig` scored on one split: `split` (its first `limit` items) with the prompts `templates` names."""

    split: str = "test"
    limit: int | None = None
    templates: str = "default"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least(self.limit, 1, f"{type(self).__name__}.limit")


@dataclass(frozen=True)
class EvalConfig(SplitRunConfig):
    """One zero-shot evaluation. `calip.betas` adds a row with the user's betas (3D: replaces the default pair);
    `view_weights` None/"uniform", "paper" (PointCLIP Table 1, ORACLE) or explicit weights; `methods` the zero-shot
    methods to score, by registry name (None: the default set, `calip3d.zeroshot.ZERO_SHOT_METHODS`); `stream_seeds`
    the test-stream orders of the test-time methods (TDA; the release's seed 1), scores averaged; `memory_shots`
    train clouds per class in Point-NN's memory (its rows need one); `tune` the held-out tuning set and `search` how
    betas and view weights are searched on it."""

    view_weights: str | tuple[float, ...] | None = None
    methods: tuple[str, ...] | None = None
    stream_seeds: tuple[int, ...] = (1,)
    memory_shots: int | None = None
    tune: TuneConfig = field(default_factory=TuneConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least(self.memory_shots, 1, "EvalConfig.memory_shots")
        if not self.stream_seeds:
            raise CalipError("EvalConfig.stream_seeds must hold at least one seed")
        self.calip.numeric_betas("EvalConfig")


@dataclass(frozen=True)
class TuneViewsConfig(SplitRunConfig):
    """View-weight (and beta) tuning of a point-cloud dataset on `tune_split` ("fewshot": `shots` train clouds per
    class drawn with `seed`; "train": the whole train split), scored on `split`; `search` says how (its default here:
    3 restarts of coordinate ascent); `oracle` also tunes on the evaluated split's labels (labelled ORACLE);
    `calip.betas` replaces the default pair of the untuned CALIP row."""

    tune_split: str = "fewshot"
    shots: int = 16
    seed: int = 1
    oracle: bool = False
    search: SearchConfig = field(default_factory=lambda: SearchConfig(restarts=3))

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least(self.shots, 1, "TuneViewsConfig.shots")
        if self.tune_split not in ("fewshot", "train"):
            raise CalipError(f"TuneViewsConfig.tune_split must be 'fewshot' or 'train', got {self.tune_split!r}")
        self.calip.numeric_betas("TuneViewsConfig")
