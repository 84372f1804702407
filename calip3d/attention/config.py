"""CALIP's settings, in one config: the betas weighting its three terms and the attention temperature."""

from __future__ import annotations

import math
from dataclasses import dataclass

from calip3d.errors import CalipError
from calip3d.published import CALIP_TEMPERATURE

BETA_CHOICES = ("val", "paper")  # betas chosen by a few-shot run: searched on the val shots, or CALIP's published


@dataclass(frozen=True)
class CalipConfig:
    """`betas` (beta1, beta2, beta3) of `b1 clip + b2 vg + b3 tb`: None takes the run's default (the dataset's
    published pair, else CALIP's ImageNet pair; see `DatasetInfo.default_betas`); a few-shot run also takes "val"
    or "paper" (`BETA_CHOICES`). `temperature` scales the attention maps (CALIP's official code: 0.5, the map
    multiplied by 2 on both sides); it changes the encoded terms, so it is part of their cache key."""

    betas: tuple[float, float, float] | str | None = None
    temperature: float = CALIP_TEMPERATURE

    def __post_init__(self) -> None:
        if isinstance(self.betas, str):
            if self.betas not in BETA_CHOICES:
                raise CalipError(f"CalipConfig.betas must be 1,B2,B3, 'val' or 'paper', got {self.betas!r}")
        elif self.betas is not None:
            if len(self.betas) != 3 or not all(math.isfinite(b) for b in self.betas):
                raise CalipError(f"CalipConfig.betas must be three numbers (beta1, beta2, beta3), got "
                                 f"{list(self.betas)}")
            object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if not self.temperature > 0:
            raise CalipError(f"CalipConfig.temperature must be > 0, got {self.temperature}")

    def numeric_betas(self, owner: str) -> tuple[float, float, float] | None:
        """The betas of a run that takes only numbers (or None), else a `CalipError` naming `owner`'s field."""
        if isinstance(self.betas, str):
            raise CalipError(f"CalipConfig.betas must be three numbers (beta1, beta2, beta3) for {owner}, got "
                             f"{self.betas!r} (a few-shot run's choice)")
        return self.betas
