"""Zero-shot CALIP on your own point-cloud and mesh files: load, normalise, project, encode, score.

Each file is loaded (`calip3d.cloud_files.load_point_cloud`), sampled to `num_points` points, centred and scaled to
the unit sphere, projected to depth maps, and classified with per-view CALIP aggregated over views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from calip3d.attention import CalipConfig, calip_scores
from calip3d.backbone import CLIPBackbone
from calip3d.datasets.registry import POINTCLOUD_ZS_TEMPLATE as CLASSIFY_TEMPLATE
from calip3d.encoding import view_terms
from calip3d.errors import CalipError, check_at_least
from calip3d.cloud_files import load_point_cloud
from calip3d.point_preprocessing import normalize_unit_sphere
from calip3d.published import DEFAULT_BETAS
from calip3d.projection import ProjectorConfig
from calip3d.prompts import from_templates, validate_template


@dataclass(frozen=True)
class ClassifyConfig:
    """Candidate `labels`, the prompt `template`, CALIP's betas and temperature (`calip`; betas None: the default
    pair, `DEFAULT_BETAS`), view weights (None = the plain sum over views) and how files become clouds
    (`num_points`, `up_axis`, `mesh_samples`) and views (`projector`)."""

    labels: tuple[str, ...]
    template: str = CLASSIFY_TEMPLATE
    calip: CalipConfig = field(default_factory=CalipConfig)
    view_weights: tuple[float, ...] | None = None
    num_points: int = 1024
    up_axis: str = "y"
    mesh_samples: int = 10000
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)

    def __post_init__(self) -> None:
        if len(set(self.labels)) != len(self.labels):
            raise CalipError("ClassifyConfig.labels contains duplicates")
        check_at_least(self.num_points, 1, "ClassifyConfig.num_points")
        validate_template(self.template, "ClassifyConfig.template")
        self.calip.numeric_betas("ClassifyConfig")

    @property
    def betas(self) -> tuple[float, float, float]:
        """The betas used: `calip.betas`, else `DEFAULT_BETAS` (1, CALIP's ImageNet beta2, beta3)."""
        return self.calip.numeric_betas("ClassifyConfig") or DEFAULT_BETAS


def load_clouds(files: Sequence[str | Path], config: ClassifyConfig) -> np.ndarray:
    """`[F, num_points, 3]` float32 clouds, each normalised to the unit sphere."""
    return np.stack([
        normalize_unit_sphere(load_point_cloud(f, num_points=config.num_points, up_axis=config.up_axis,
                                               mesh_samples=config.mesh_samples))
        for f in files
    ]).astype(np.float32)


def classify_clouds(clouds: np.ndarray, config: ClassifyConfig, backbone: CLIPBackbone) -> torch.Tensor:
    """CALIP probabilities `[F, K]` over `config.labels` for clouds `[F, P, 3]`."""
    projector = config.projector.build(backbone.image_size)
    if config.view_weights is not None and len(config.view_weights) != projector.num_views:
        raise CalipError(f"ClassifyConfig.view_weights has {len(config.view_weights)} values; the projector makes "
                         f"{projector.num_views} views")
    text = backbone.prompt_features(from_templates(list(config.labels), [config.template], "classify").prompts)
    with torch.inference_mode():
        images = projector.images(torch.from_numpy(clouds).to(backbone.device))  # [F, V, 3, S, S]
        glob, spatial = backbone.encode_image(images.flatten(0, 1))
        shape = (len(clouds), projector.num_views)
        terms = view_terms(glob.view(*shape, -1), spatial.view(*shape, *spatial.shape[1:]), text,
                           config.calip.temperature)
        logits = calip_scores([t.cpu() for t in terms], config.betas, config.view_weights)
        return logits.softmax(dim=-1)
