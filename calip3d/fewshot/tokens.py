"""Frozen-encoder tokens for few-shot training and evaluation.

The few-shot train/val items are encoded once (optionally as N augmented copies), keeping global `[N, D]` and
spatial `[N, T, D]` tokens (per view for point clouds: `[N, V, D]`, `[N, V, T, D]`); spatial tokens are stored in
float16 to halve memory. The test split is streamed through the encoder by default; `TokenCache` keeps it on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from ..atomic import atomic_torch_save
from ..backbone import CLIPBackbone
from ..features import batched, cache_key

Batch = tuple[torch.Tensor, torch.Tensor]  # (images [B, 3, S, S] or [B, V, 3, S, S], labels [B])


@dataclass
class Tokens:
    """Encoded items: `global_feats` float32, `spatial_feats` float16, `labels` int64."""

    global_feats: torch.Tensor
    spatial_feats: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def nbytes(self) -> int:
        return sum(t.element_size() * t.numel() for t in (self.global_feats, self.spatial_feats, self.labels))


def encode_tokens(backbone: CLIPBackbone, batches: Iterable[Batch], total: int | None, desc: str) -> Tokens:
    """Encode every batch; views of a point cloud go through the backbone in one pass."""
    glob, spatial, labels = [], [], []
    with torch.inference_mode(), tqdm(total=total, desc=desc, unit="item", leave=False, dynamic_ncols=True) as bar:
        for images, y in batches:
            views = images.shape[1] if images.ndim == 5 else None
            g, s = backbone.encode_image(images.flatten(0, 1) if views else images)
            lead = (images.shape[0], views) if views else (images.shape[0],)
            glob.append(g.float().reshape(*lead, g.shape[-1]).cpu())
            spatial.append(s.half().reshape(*lead, *s.shape[1:]).cpu())
            labels.append(torch.as_tensor(y).long().cpu())
            bar.update(images.shape[0])
    return Tokens(torch.cat(glob).clone(), torch.cat(spatial).clone(), torch.cat(labels).clone())


def image_batches(items: list[tuple[str, int]], transform: Callable, batch_size: int, workers: int,
                  seed: int) -> Iterator[Batch]:
    """Load images through `transform` (a random augmentation is made deterministic by `seed`)."""
    from torch.utils.data import DataLoader

    from ..datasets.images import ImageFileDataset, collate_skip_bad

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    loader = DataLoader(ImageFileDataset(items, transform), batch_size=batch_size, num_workers=workers,
                        shuffle=False, collate_fn=collate_skip_bad, generator=generator)
    for images, labels, _ in loader:
        yield images, labels


def augmented_image_transform(val_transform: Any, size: int) -> Callable:
    """Random resized crop (scale 0.5-1) and horizontal flip, then the model's own normalisation."""
    from torchvision import transforms as T

    normalize = next(t for t in val_transform.transforms if isinstance(t, T.Normalize))
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.5, 1.0), interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(), T.Lambda(lambda im: im.convert("RGB")), T.ToTensor(), normalize,
    ])


def augment_points(points: np.ndarray, seed: int) -> np.ndarray:
    """PointCLIP's augmentation: per-cloud anisotropic scale U(2/3, 3/2) and translation U(-0.2, 0.2)."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(2.0 / 3.0, 1.5, size=(points.shape[0], 1, 3))
    shift = rng.uniform(-0.2, 0.2, size=(points.shape[0], 1, 3))
    return (points * scale + shift).astype(np.float32)


def point_batches(points: np.ndarray, labels: np.ndarray, projector: Any, batch_size: int,
                  device: torch.device) -> Iterator[Batch]:
    """Depth-map views `[B, V, 3, S, S]` of `points` `[N, P, 3]`, batch by batch."""
    for rows in batched(list(range(len(labels))), batch_size):
        cloud = torch.from_numpy(np.ascontiguousarray(points[rows])).to(device)
        yield projector.images(cloud), torch.from_numpy(np.asarray(labels[rows]))


def concat_tokens(parts: list[Tokens]) -> Tokens:
    return Tokens(*(torch.cat([getattr(p, f) for p in parts]) for f in ("global_feats", "spatial_feats", "labels")))


class TokenCache:
    """On-disk float16 token cache (`--cache-tokens`): the test split for repeated evaluations, and the drawn
    train/val shots, so that a sweep over methods encodes each split once."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, spec: dict[str, Any]) -> Path:
        return self.folder / f"tokens-{cache_key(spec)}.pt"

    def load(self, spec: dict[str, Any]) -> Tokens | None:
        path = self.path(spec)
        if not path.exists():
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob.get("spec") != cache_key(spec):
                raise ValueError("spec mismatch")
            return Tokens(blob["global_feats"], blob["spatial_feats"], blob["labels"])
        except Exception:  # noqa: BLE001 - a corrupt entry is recomputed, never used
            path.unlink(missing_ok=True)
            return None

    def get_or_compute(self, spec: dict[str, Any], compute: Callable[[], Tokens], what: str) -> Tokens:
        tokens = self.load(spec)
        if tokens is None:
            tokens = compute()
            self.save(spec, tokens, what)
        return tokens

    def save(self, spec: dict[str, Any], tokens: Tokens, what: str = "test") -> Path:
        path = self.path(spec)
        print(f"writing the {what} token cache: {tokens.nbytes() / 2**20:.1f} MiB to {path}")
        return atomic_torch_save({"spec": cache_key(spec), "global_feats": tokens.global_feats,
                                  "spatial_feats": tokens.spatial_feats, "labels": tokens.labels}, path)
