"""One run's context, built once: what every pipeline (`run_eval`, `run_tune_views`, `run_fewshot`) reads of its
dataset and model, and the provenance it records of them.

`RunConfig` holds the settings every run shares (the dataset and data root, how point clouds are read and projected,
how items are encoded, CALIP's settings); the pipelines' configs extend it. `RunContext.build(config, backbone)`
resolves the dataset and the data root once, builds the projector once (point-cloud datasets) and the encoder over
the backbone; `load(split)` reads a split with the run's point settings, and `provenance(test)` gives what each
result records of the data and the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from calip3d.attention import CalipConfig
from calip3d.backbone import CLIPBackbone
from calip3d.datasets import DatasetInfo, PointSettings, Split, data_root, get_dataset, load_split
from calip3d.encoding import EncodeConfig, Encoder
from calip3d.fetch import dataset_provenance
from calip3d.projection import ProjectorConfig


@dataclass(frozen=True)
class RunConfig:
    """Settings every run shares: `dataset` (a registered name or alias, or `folder:PATH`), `data_root` (None: the
    default data root, `calip3d.fetch`), how point clouds are read (`points`) and projected (`projector`; both unused
    for images), how items are encoded (`encode`: batch size, workers, cache) and CALIP's betas and temperature
    (`calip`)."""

    dataset: str
    data_root: str | None = None
    points: PointSettings = field(default_factory=PointSettings)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    calip: CalipConfig = field(default_factory=CalipConfig)

    def __post_init__(self) -> None:  # every part validates itself; the configs that extend this one add theirs
        pass


@dataclass
class RunContext:
    """A run's dataset (`info`), data root (absolute, resolved once), point settings, projector (None for images) and
    encoder (over the backbone, with CALIP's temperature)."""

    info: DatasetInfo
    root: str
    points: PointSettings
    projector: Any | None
    encoder: Encoder

    @classmethod
    def build(cls, config: RunConfig, backbone: CLIPBackbone) -> RunContext:
        info = get_dataset(config.dataset)
        projector = config.projector.build(backbone.image_size) if info.is_points else None
        encoder = config.encode.encoder(backbone, projector, config.calip.temperature)
        return cls(info, str(data_root(config.data_root)), config.points, projector, encoder)

    @property
    def backbone(self) -> CLIPBackbone:
        return self.encoder.backbone

    @property
    def views(self) -> int | None:
        """Views per cloud (None for images)."""
        return None if self.projector is None else self.projector.num_views

    def load(self, split: str) -> Split:
        """One split of the run's dataset, point clouds read with the run's point settings."""
        return load_split(self.info.name, self.root, split, self.points)

    def data_provenance(self, test: Split) -> dict[str, Any]:
        """The data root used, and the checksums of the dataset's files where calip3d fetched them (the release read
        for `test`)."""
        return dataset_provenance(self.info.name, self.root, test.settings.format if self.info.is_points else None)

    def encoding_provenance(self, distribution: dict[str, Any] | None = None) -> dict[str, Any]:
        """How the test items were encoded: over how many ranks (`distribution`, `Encoder.distribution()` of their
        encoding; None: of the encoder's last call), compiled or not, and where images were decoded."""
        decode = self.encoder.loading.decode_on_device and not self.info.is_points
        return {**(self.encoder.distribution() if distribution is None else distribution),
                "compiled": self.backbone.compiled,
                **({"decode": self.encoder.loading.fingerprint()["decode_on_device"]} if decode else {})}

    def provenance(self, test: Split, distribution: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """What a result records of its data and model: the backbone and its precision, `fields` (the pipeline's
        own), the data, how the test items were encoded (`encoding_provenance(distribution)`), and for point clouds
        the point settings and the projector."""
        clouds = {"points": test.settings.as_dict(), "projector": self.projector.describe()} if self.projector else {}
        return {"backbone": self.backbone.info.as_dict(), "precision": self.backbone.precision, **fields,
                "data": self.data_provenance(test), **self.encoding_provenance(distribution), **clouds}
