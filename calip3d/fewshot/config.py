"""Typed config of a few-shot run (`run_fewshot`); the command layer builds it from flags."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

from ..datasets import PointSettings
from ..encoding import EncodeConfig
from ..errors import CalipError, check_at_least
from ..projection import ProjectorConfig
from ..sampling import SHORT_CLASSES
from .betas import BETA_CHOICES
from .methods import FEATURES, FewShotMethod, TipSettings
from .protocol import ALL_SHOTS
from .selection import PROTOCOLS
from .training import TrainConfig

BASES = ("clip", "pointclip", "calip")  # the zero-shot logits a method may add to ("pointclip" = "clip" in 3D)


@dataclass(frozen=True)
class TrainOverrides:
    """Training settings the user chose; None keeps the method's own default (`FewShotMethod.train_defaults`)."""

    FLAGS: ClassVar[dict[str, str]] = {"batch_size": "--train-batch-size"}

    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None

    def given(self) -> dict[str, float | int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def apply(self, config: TrainConfig) -> TrainConfig:
        return replace(config, **self.given())


@dataclass(frozen=True)
class FewShotConfig:
    """One few-shot run: `shots` per class drawn with `seed` (saved under `split_dir`; classes with fewer items:
    `short_classes`), `method` trained with its own defaults unless `train` overrides them (`lr_grid`: one run per
    learning rate, best on the val shots kept), chosen as `protocol` says (see `calip3d.fewshot.selection`),
    CALIP-FS's module shape (`hidden`, `learn_betas`, `per_view`), `augment` pre-encoded augmented copies of the
    train shots (None: the method's default), Tip-Adapter's settings (`tip`), the baselines' input `features` (raw
    as released, or normalized), CALIP's `betas` (1,B2,B3, "val" or "paper"; None: the protocol's default), prompts
    (`templates` None: CoOp's template, 3D: PointCLIP's few-shot prompt), `limit` test items spread over the test
    split, checkpoints, and how items are encoded (`encode`: its cache is the token cache)."""

    COMMON: ClassVar[frozenset[str]] = frozenset({
        "dataset", "data_root", "shots", "seed", "method", "protocol", "short_classes", "betas", "templates", "limit",
        "split_dir", "points", "projector", "encode"})  # read for every method (betas: the zero-shot reference)

    dataset: str
    data_root: str | None = None
    shots: int | str = 16
    seed: int = 1
    method: str = "calip-fs"
    protocol: str = "honest"
    short_classes: str = "keep"
    train: TrainOverrides = field(default_factory=TrainOverrides)
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
    betas: tuple[float, float, float] | str | None = None
    templates: str | None = None
    limit: int | None = None
    split_dir: str = "results/fewshot/splits"
    checkpoint: str | None = None
    eval_only: bool = False
    points: PointSettings = field(default_factory=PointSettings)
    projector: ProjectorConfig = field(default_factory=lambda: ProjectorConfig(views=10))
    encode: EncodeConfig = field(default_factory=lambda: EncodeConfig(use_cache=False, announce_cache=True))

    def __post_init__(self) -> None:
        if self.shots != ALL_SHOTS:
            if isinstance(self.shots, str):
                raise CalipError(f"FewShotConfig.shots must be an integer >= 1 or 'all', got {self.shots!r}")
            check_at_least(self.shots, 1, "FewShotConfig.shots")
        check_at_least(self.limit, 1, "FewShotConfig.limit")
        check_at_least(self.augment, 0, "FewShotConfig.augment")
        check_at_least(self.points.num_points, 1, "PointSettings.num_points")
        if self.train.batch_size is not None:
            check_at_least(self.train.batch_size, 1, "TrainOverrides.batch_size")
        for name, value, allowed in (("protocol", self.protocol, PROTOCOLS),
                                     ("short_classes", self.short_classes, SHORT_CLASSES),
                                     ("features", self.features, FEATURES)):
            if value not in allowed:
                raise CalipError(f"FewShotConfig.{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.base is not None and self.base not in BASES:
            raise CalipError(f"FewShotConfig.base must be one of {', '.join(BASES)} or None, got {self.base!r}")
        if isinstance(self.betas, str) and self.betas not in BETA_CHOICES:
            raise CalipError(f"FewShotConfig.betas must be 1,B2,B3, 'val' or 'paper', got {self.betas!r}")
        if self.eval_only and not self.checkpoint:
            raise CalipError("FewShotConfig.eval_only needs FewShotConfig.checkpoint=PATH, the checkpoint to load")

    def without_effect(self, method: type[FewShotMethod], is_points: bool) -> list[str]:
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
        return [TrainOverrides.FLAGS.get(k, f"--{k.replace('_', '-')}") for k in value.given()]
    if name == "tip":
        return [f"--tip-{f.name.replace('_', '-')}" for f in fields(value) if getattr(value, f.name) is not None]
    if name in ("points", "projector"):
        return [f"--{f.name.replace('num_points', 'points').replace('_', '-')}" for f in fields(value)
                if getattr(value, f.name) != getattr(default, f.name)]
    return [f"--{name.replace('_', '-')}"]
