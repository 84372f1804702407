"""Typed config of a few-shot run (`run_fewshot`); the command layer builds it from flags."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Protocol

from ..encoding import EncodeConfig
from ..errors import CalipError, check_at_least
from ..projection import ProjectorConfig
from ..published import TipAdapterRelease
from ..run_context import RunConfig
from ..sampling import SHORT_CLASSES
from .protocol import ALL_SHOTS
from .selection import PROTOCOLS
from .training import TrainConfig, given_fields

BASES = ("clip", "pointclip", "calip")  # the zero-shot logits a method may add to ("pointclip" = "clip" in 3D)
FEATURES = ("raw", "normalized")  # the baselines' inputs: raw CLIP features, as released, or L2-normalised ones
# The `TrainConfig` fields whose flag is not `--field-name` (the others: `--epochs`, `--lr`, ...).
TRAIN_FLAGS: dict[str, str] = {"batch_size": "--train-batch-size"}


@dataclass(frozen=True)
class TipSettings:
    """Tip-Adapter's cache settings, named as its released configs (`TipAdapterRelease`): the initial `init_alpha`
    and `init_beta` (Tip-Adapter-F trains with them), the search grids' upper bounds (beta, alpha) and steps; None:
    the dataset's released config. `FLAGS`: the flag that sets each."""

    FLAGS: ClassVar[dict[str, str]] = {"init_alpha": "--tip-alpha", "init_beta": "--tip-beta",
                                       "search_scale": "--tip-search-scale", "search_steps": "--tip-search-steps"}

    init_alpha: float | None = None
    init_beta: float | None = None
    search_scale: tuple[float, float] | None = None
    search_steps: tuple[int, int] | None = None

    def resolve(self, released: TipAdapterRelease, source: str) -> dict[str, Any]:
        """Every setting, `released`'s where none is given (tuples as lists), and where they came from: `source`
        (the released config's) and the flags given."""
        chosen = given_fields(self)
        resolved = {**{f.name: getattr(released, f.name) for f in fields(self)}, **chosen}
        flags = ", ".join(self.FLAGS[name] for name in chosen)
        return {**{k: list(v) if isinstance(v, tuple) else v for k, v in resolved.items()},
                "config": source + (f"; {flags} given" if flags else "")}


class ReadsOptions(Protocol):
    """What `FewShotConfig.without_effect` reads of a method class (`calip3d.fewshot.methods.FewShotMethod`)."""

    OPTIONS: frozenset[str]


@dataclass(frozen=True)
class FewShotConfig(RunConfig):
    """One few-shot run: `shots` per class drawn with `seed` (saved under `split_dir`; classes with fewer items:
    `short_classes`), `method` trained with its own defaults where `train` leaves a setting None (`lr_grid`: one
    run per learning rate, best on the val shots kept), chosen as `protocol` says (see `calip3d.fewshot.selection`),
    CALIP-FS's module shape (`hidden`, `learn_betas`, `per_view`), `augment` pre-encoded augmented copies of the
    train shots (None: the method's default), Tip-Adapter's settings (`tip`), the baselines' input `features` (raw
    as released, or normalized), CALIP's betas and temperature (`calip`; betas 1,B2,B3, "val" or "paper"; None:
    the protocol's default), prompts (`templates` None: CoOp's template, 3D: PointCLIP's few-shot prompt), `limit`
    test items spread over the test split, checkpoints, and, as every `RunConfig`, the dataset and data root, how
    clouds are read and projected (10 views by default) and how items are encoded (`encode`: its cache is the token
    cache, off by default)."""

    COMMON: ClassVar[frozenset[str]] = frozenset({
        "dataset", "data_root", "shots", "seed", "method", "protocol", "short_classes", "calip", "templates", "limit",
        "split_dir", "points", "projector", "encode"})  # read for every method (calip: the zero-shot reference)

    projector: ProjectorConfig = field(default_factory=lambda: ProjectorConfig(views=10))
    encode: EncodeConfig = field(default_factory=lambda: EncodeConfig(use_cache=False, announce_cache=True))
    shots: int | str = 16
    seed: int = 1
    method: str = "calip-fs"
    protocol: str = "honest"
    short_classes: str = "keep"
    train: TrainConfig = field(default_factory=TrainConfig)
    lr_grid: tuple[float, ...] | None = None
    hidden: int | None = None
    learn_betas: bool = False
    per_view: bool = False
    augment: int | None = None
    tip: TipSettings = field(default_factory=TipSettings)
    features: str = "raw"
    base: str | None = None
    pointnn_normalize: str | None = None
    pointnn_shuffle: bool = False
    templates: str | None = None
    limit: int | None = None
    split_dir: str = "results/fewshot/splits"
    checkpoint: str | None = None
    eval_only: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shots != ALL_SHOTS:
            if isinstance(self.shots, str):
                raise CalipError(f"FewShotConfig.shots must be an integer >= 1 or 'all', got {self.shots!r}")
            check_at_least(self.shots, 1, "FewShotConfig.shots")
        check_at_least(self.limit, 1, "FewShotConfig.limit")
        check_at_least(self.augment, 0, "FewShotConfig.augment")
        for name, value, allowed in (("protocol", self.protocol, PROTOCOLS),
                                     ("short_classes", self.short_classes, SHORT_CLASSES),
                                     ("features", self.features, FEATURES)):
            if value not in allowed:
                raise CalipError(f"FewShotConfig.{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.base is not None and self.base not in BASES:
            raise CalipError(f"FewShotConfig.base must be one of {', '.join(BASES)} or None, got {self.base!r}")
        if self.eval_only and not self.checkpoint:
            raise CalipError("FewShotConfig.eval_only needs FewShotConfig.checkpoint=PATH, the checkpoint to load")

    def without_effect(self, method: type[ReadsOptions], is_points: bool) -> list[str]:
        """The flags set away from their defaults that the chosen method (or an image dataset) does not read,
        generated from the fields: anything outside `COMMON` and the method's `OPTIONS`."""
        defaults = FewShotConfig(self.dataset, self.data_root)
        unread = set() if is_points else {"points", "projector"}
        found = []
        for f in fields(self):
            value, default = getattr(self, f.name), getattr(defaults, f.name)
            if value == default or (f.name in self.COMMON - unread) or f.name in method.OPTIONS:
                continue
            found += _flags(f.name, value, default)
        return found


def _flags(name: str, value: Any, default: Any) -> list[str]:
    """The command-line flags behind a config field that differs from its default (nested settings by field)."""
    if name == "train":
        return [TRAIN_FLAGS.get(k, f"--{k.replace('_', '-')}") for k in given_fields(value)]
    if name == "tip":
        return [TipSettings.FLAGS[k] for k in given_fields(value)]
    if name in ("points", "projector"):
        return [f"--{f.name.replace('num_points', 'points').replace('_', '-')}" for f in fields(value)
                if getattr(value, f.name) != getattr(default, f.name)]
    return [f"--{name.replace('_', '-')}"]
