"""Typed config of a few-shot run (`run_fewshot`); the command layer builds it from flags."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from ..datasets import PointSettings
from ..encoding import EncodeConfig
from ..errors import CalipError, check_at_least
from ..projection import ProjectorConfig
from .training import TrainConfig


@dataclass(frozen=True)
class TrainOverrides:
    """Training settings the user chose; None keeps the method's own default (`FewShotMethod.TRAIN`)."""

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
    """One few-shot run: `shots` per class drawn with `seed` (saved under `split_dir`), `method` trained with its
    own defaults unless `train` overrides them (`lr_grid`: one run per learning rate, best on the val shots kept),
    CALIP-FS's module shape (`hidden`, `learn_betas`, `per_view`), `augment` pre-encoded augmented copies of the train
    shots, the zero-shot `betas` (None: the dataset's), prompts (`templates` None: CoOp's template, 3D: PointCLIP's
    few-shot prompt), the first `limit` test items, checkpoints, and how items are encoded (`encode`: its cache is
    the token cache)."""

    dataset: str
    data_root: str | None = None
    shots: int = 16
    seed: int = 1
    method: str = "calip-fs"
    train: TrainOverrides = field(default_factory=TrainOverrides)
    lr_grid: tuple[float, ...] | None = None
    hidden: int | None = None
    learn_betas: bool = False
    per_view: bool = False
    augment: int = 0
    betas: tuple[float, float, float] | None = None
    templates: str | None = None
    limit: int | None = None
    split_dir: str = "results/fewshot/splits"
    checkpoint: str | None = None
    eval_only: bool = False
    points: PointSettings = field(default_factory=PointSettings)
    projector: ProjectorConfig = field(default_factory=lambda: ProjectorConfig(views=10))
    encode: EncodeConfig = field(default_factory=lambda: EncodeConfig(use_cache=False, announce_cache=True))

    def __post_init__(self) -> None:
        check_at_least(self.shots, 1, "--shots")
        check_at_least(self.limit, 1, "--limit")
        check_at_least(self.augment, 0, "--augment")
        check_at_least(self.points.num_points, 1, "--points")
        if self.train.batch_size is not None:
            check_at_least(self.train.batch_size, 1, "--train-batch-size")
        if self.eval_only and not self.checkpoint:
            raise CalipError("--eval-only needs --checkpoint PATH")
