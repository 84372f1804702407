"""Point-NN features of a split of clouds: the one cache (keyed on every encoder setting and the split's
fingerprint, which holds its point settings) and the ranks of a torchrun job (each rank encodes a contiguous block
of the release's batches; rank 0 gets them all, in dataset order).

The release shuffles each training cloud's point order with unseeded numpy before taking its first 1,024 points, so
its memory bank changes from run to run. calip3d skips that shuffle by default, or, with `shuffle_seed`, permutes
each cloud's points with a generator seeded per cloud (recorded): reproducible either way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch

from calip3d.cache import FeatureCache
from calip3d.distributed import Ranks
from calip3d.errors import CalipError

from .encoder import NORMALIZATIONS, RELEASE_BATCH_SIZE, PointNN, encode_clouds

NO_SHUFFLE = "none: each cloud's points in their stored order (the release shuffles them unseeded, not reproducible)"


class CloudSplit(Protocol):
    """What is read of a split: its clouds `[N, P, 3]` and a fingerprint for the cache key."""

    points: np.ndarray

    def fingerprint(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PointNNConfig:
    """The encoder's settings (`PointNN`'s arguments, the release's by default except `normalize`), the batch size
    of the batch-wide statistic, the seeded point shuffle (None: none) and the device ("auto", "cpu", "cuda")."""

    num_stages: int = 4
    embed_dim: int = 72
    k_neighbors: int = 90
    alpha: float = 1000.0
    beta: float = 100.0
    normalize: str = "cloud"
    batch_size: int = RELEASE_BATCH_SIZE
    shuffle_seed: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise CalipError(f"PointNNConfig.normalize must be one of {', '.join(NORMALIZATIONS)}, "
                             f"got {self.normalize!r}")
        if self.batch_size < 1:
            raise CalipError(f"PointNNConfig.batch_size must be >= 1, got {self.batch_size}")

    def encoder(self) -> PointNN:
        return PointNN(self.num_stages, self.embed_dim, self.k_neighbors, self.alpha, self.beta, self.normalize)

    def describe(self) -> dict[str, Any]:
        """Every setting, with what the shuffle was and what the statistic depends on (for results)."""
        out = asdict(self)
        out["shuffle"] = NO_SHUFFLE if self.shuffle_seed is None else \
            f"each cloud's points permuted with numpy's default_rng(({self.shuffle_seed}, cloud index))"
        out["statistic"] = ("per cloud: a cloud's feature depends on that cloud only" if self.normalize == "cloud"
                            else f"the whole batch's (the release): batches of {self.batch_size} consecutive clouds "
                                 "in dataset order, so a feature depends on its batch mates")
        return out


@dataclass
class PointNNFeatures:
    """Cached Point-NN features `[N, F]` float32 of a split."""

    features: torch.Tensor

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"features": self.features}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "PointNNFeatures":
        return cls(tensors["features"])


def shuffled(points: np.ndarray, seed: int) -> np.ndarray:
    """Each cloud's points `[N, P, 3]` permuted by a generator seeded with (seed, its index)."""
    out = np.empty_like(points)
    for i, cloud in enumerate(points):
        out[i] = cloud[np.random.default_rng((seed, i)).permutation(len(cloud))]
    return out


def pointnn_features(split: CloudSplit, config: PointNNConfig, cache: FeatureCache, ranks: Ranks,
                     desc: str) -> torch.Tensor | None:
    """Point-NN features `[N, F]` of `split` on rank 0 (None on the other ranks), from the cache when an entry with
    the same settings and data exists, else encoded (sharded over the ranks by whole batches) and cached."""
    spec = {"kind": "pointnn", "stored": ["features"], "encoder": asdict(config) | {"device": None},
            "data": split.fingerprint()}
    cached = cache.load(spec, PointNNFeatures) if ranks.main else None
    if ranks.agree(cached is not None):
        return cached.features if ranks.main else None
    points = split.points if config.shuffle_seed is None else shuffled(split.points, config.shuffle_seed)
    batches = -(-len(points) // config.batch_size)
    mine = ranks.shard(batches)
    rows = slice(mine.start * config.batch_size, min(len(points), mine.stop * config.batch_size))
    part = encode_clouds(points[rows], config.encoder(), config.batch_size, config.device, desc) \
        if rows.stop > rows.start else None
    gathered = ranks.gather(part)
    if gathered is None:
        return None
    features = torch.cat([p for p in gathered if p is not None]) if len(points) else torch.zeros(0, 0)
    cache.save(spec, PointNNFeatures(features), desc)
    return features
