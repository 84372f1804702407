"""The one encoding path: batches of images or projected point clouds -> frozen backbone -> what each caller keeps.

A split (images or point clouds, see `Encodable`) yields `(inputs, labels, indices)` batches; `encode_batches` runs the
backbone on them (all views of all clouds of a batch in one pass) and `collect` reduces each encoded batch to the
tensors a caller keeps, so memory grows only with what is kept:
- `extract_terms`: CALIP's three terms `[N, K]` (images) or `[N, V, K]` (point clouds, per view) and global features;
- `extract_tokens`: global `[N, (V,) D]` float32 and spatial `[N, (V,) T, D]` float16 tokens (few-shot training).
`Encoder` adds the on-disk cache (`calip3d.cache.FeatureCache`), keyed on everything that changes the bytes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar, Iterable, Iterator, NamedTuple, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from .attention import calip_terms
from .backbone import CLIPBackbone
from .cache import FeatureCache, default_cache_dir, fingerprint_fields
from .errors import CalipError, check_at_least
from .presets import CALIP_TEMPERATURE

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # inputs [B, 3, S, S] or [B, V, 3, S, S], labels, indices


class EncodedBatch(NamedTuple):
    """One encoded batch: global `[B, D]` or `[B, V, D]`, spatial `[B, T, D]` or `[B, V, T, D]`, labels and dataset
    indices `[B]`, and the global features' norms before normalisation `[B]` or `[B, V]`."""

    global_feats: torch.Tensor
    spatial_feats: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    global_norms: torch.Tensor | None = None


@dataclass(frozen=True)
class Loading:
    """How items become backbone inputs: images through `transform` (`workers` loader processes), point clouds
    through `projector` on `device`; `image_size` for random augmentations."""

    transform: Callable | None
    projector: Any | None
    batch_size: int
    workers: int
    device: torch.device
    image_size: int
    skip_bad_files: bool = False
    pin_memory: bool = False

    NOT_IN_KEY: ClassVar[frozenset[str]] = frozenset({"batch_size", "workers", "device", "pin_memory"})

    def fingerprint(self) -> dict[str, Any]:
        """Every setting but `NOT_IN_KEY` (batching, processes and devices change how, not what, the backbone sees):
        the transform (its repr), the projector (`describe()`), the augmentation size, bad-file skipping."""
        return fingerprint_fields(self, self.NOT_IN_KEY)


class Encodable(Protocol):
    """A dataset split as the encoder sees it (`ImageSplit`, `PointSplit`)."""

    def __len__(self) -> int: ...

    def fingerprint(self) -> dict[str, Any]: ...

    def batches(self, loading: Loading) -> Iterator[Batch]: ...


@dataclass
class Terms:
    """CALIP terms of a split. Each term is `[N, K]` (images) or `[N, V, K]` (point clouds, per view);
    `global_feats` is `[N, D]` or `[N, V, D]`; `labels` `[N]`; `indices` the dataset positions kept (bad files skipped)."""

    clip: torch.Tensor
    visual_guided: torch.Tensor
    textual_blended: torch.Tensor
    global_feats: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor

    @property
    def triple(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.clip, self.visual_guided, self.textual_blended

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in
                ("clip", "visual_guided", "textual_blended", "global_feats", "labels", "indices")}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "Terms":
        return cls(**tensors)

    def subset(self, rows: torch.Tensor | list[int]) -> "Terms":
        rows = torch.as_tensor(rows, dtype=torch.long)
        return Terms(**{k: v[rows] for k, v in self.tensors().items()})


@dataclass
class Tokens:
    """Encoded items for few-shot work: `global_feats` float32 `[N, (V,) D]` (L2-normalised), `spatial_feats` float16
    `[N, (V,) T, D]`, `labels` and dataset `indices` `[N]` int64, `global_norms` float32 `[N, (V)]` (the raw CLIP
    feature is `global_feats * global_norms[..., None]`)."""

    global_feats: torch.Tensor
    spatial_feats: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    global_norms: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def raw_global(self) -> torch.Tensor:
        """CLIP's unnormalised global features `[N, (V,) D]`."""
        return self.global_feats * self.global_norms.unsqueeze(-1)

    def subset(self, rows: torch.Tensor | list[int]) -> "Tokens":
        rows = torch.as_tensor(rows, dtype=torch.long)
        return Tokens(**{k: v[rows] for k, v in self.tensors().items()})

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "Tokens":
        return cls(**tensors)

    @classmethod
    def concat(cls, parts: list["Tokens"]) -> "Tokens":
        return cls(**{k: torch.cat([p.tensors()[k] for p in parts]) for k in parts[0].tensors()})

    def batches(self, size: int) -> Iterator[EncodedBatch]:
        """Slices of `size` rows as encoded batches (spatial tokens back in float32)."""
        for i in range(0, len(self), size):
            yield EncodedBatch(self.global_feats[i:i + size], self.spatial_feats[i:i + size].float(),
                               self.labels[i:i + size], self.indices[i:i + size], self.global_norms[i:i + size])


def encode_batches(backbone: CLIPBackbone, batches: Iterable[Batch]) -> Iterator[EncodedBatch]:
    """Run the backbone on each batch; the V views of a point-cloud batch `[B, V, 3, S, S]` go through in one pass and
    come back as `[B, V, ...]`. Empty batches (every file unreadable and skipped) are dropped."""
    for inputs, labels, indices in batches:
        if inputs.shape[0] == 0:
            continue
        views = inputs.shape[1] if inputs.ndim == 5 else None
        glob, spatial, norms = backbone.encode_image_norms(inputs.flatten(0, 1) if views else inputs)
        if views:
            glob = glob.view(inputs.shape[0], views, -1)
            spatial = spatial.view(inputs.shape[0], views, *spatial.shape[1:])
            norms = norms.view(inputs.shape[0], views)
        yield EncodedBatch(glob, spatial, torch.as_tensor(labels).long(), torch.as_tensor(indices).long(), norms)


Reduce = Callable[[EncodedBatch], dict[str, torch.Tensor]]


def collect(batches: Iterable[EncodedBatch], reduce: Reduce, total: int | None, desc: str) -> dict[str, torch.Tensor]:
    """`reduce` every encoded batch (under `torch.inference_mode`, with a progress bar on stderr) and concatenate the
    results, plus `labels` and `indices`, on the CPU."""
    parts: dict[str, list[torch.Tensor]] = {}
    with torch.inference_mode(), tqdm(total=total, desc=desc, unit="item", leave=False, dynamic_ncols=True) as bar:
        for batch in batches:
            kept = {**reduce(batch), "labels": batch.labels, "indices": batch.indices}
            for key, value in kept.items():
                parts.setdefault(key, []).append(value.cpu())
            bar.update(batch.labels.shape[0])
    if not parts:
        raise ValueError("no samples to encode")
    return {key: torch.cat(values) for key, values in parts.items()}


def view_terms(glob: torch.Tensor, spatial: torch.Tensor, text: torch.Tensor,
               temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`calip_terms` of images (global `[B, D]`, spatial `[B, T, D]` -> `[B, K]`) or of every view of point clouds
    (`[B, V, D]`, `[B, V, T, D]` -> `[B, V, K]`), all views in one call."""
    if glob.ndim == 2:
        return calip_terms(glob, spatial, text, temperature)
    b, v = glob.shape[:2]
    flat = calip_terms(glob.flatten(0, 1), spatial.flatten(0, 1), text, temperature)
    return tuple(t.view(b, v, -1) for t in flat)  # type: ignore[return-value]


def extract_terms(backbone: CLIPBackbone, batches: Iterable[Batch], text: torch.Tensor, temperature: float,
                  total: int | None = None, desc: str = "encoding") -> Terms:
    """CALIP terms of every batch, computed batch by batch (spatial tokens are dropped right away)."""
    text = text.to(backbone.device)

    def reduce(batch: EncodedBatch) -> dict[str, torch.Tensor]:
        clip, vg, tb = view_terms(batch.global_feats, batch.spatial_feats, text, temperature)
        return {"clip": clip, "visual_guided": vg, "textual_blended": tb, "global_feats": batch.global_feats.float()}

    return Terms.from_tensors(collect(encode_batches(backbone, batches), reduce, total, desc))


def extract_tokens(backbone: CLIPBackbone, batches: Iterable[Batch], total: int | None = None,
                   desc: str = "encoding") -> Tokens:
    """Global (float32) and spatial (float16) tokens of every batch."""

    def reduce(batch: EncodedBatch) -> dict[str, torch.Tensor]:
        return {"global_feats": batch.global_feats.float(), "spatial_feats": batch.spatial_feats.half(),
                "global_norms": batch.global_norms.float()}

    return Tokens.from_tensors(collect(encode_batches(backbone, batches), reduce, total, desc))


def point_batches(points: np.ndarray, labels: np.ndarray, loading: Loading) -> Iterator[Batch]:
    """Depth-map views `[B, V, 3, S, S]` of clouds `[N, P, 3]` (projected on `loading.device`), batch by batch."""
    for start in range(0, len(labels), loading.batch_size):
        rows = np.arange(start, min(len(labels), start + loading.batch_size))
        cloud = torch.from_numpy(np.ascontiguousarray(points[rows])).to(loading.device)
        yield loading.projector.images(cloud), torch.from_numpy(np.asarray(labels[rows])), torch.from_numpy(rows)


def digest_tensor(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's float32 values (for cache keys)."""
    return hashlib.sha256(np.ascontiguousarray(tensor.detach().float().cpu().numpy()).tobytes()).hexdigest()


@dataclass
class Encoder:
    """A frozen backbone, how inputs are loaded, CALIP's temperature and a cache: the terms or tokens of a split,
    read from the cache when an entry with the same key exists, else encoded and written there."""

    backbone: CLIPBackbone
    loading: Loading
    temperature: float
    cache: FeatureCache

    def spec(self, kind: str, split: Encodable, **extra: Any) -> dict[str, Any]:
        """The cache spec of `kind` ("terms" or "tokens") for `split`: the stored tensors' names, the backbone (every
        `BackboneInfo` field, weights id or digest included) and its precision, the data (`split.fingerprint()`),
        the loading (`Loading.fingerprint()`) and `extra` (terms: temperature, prompts and the text features'
        digest; tokens come before the attention and the text, so those stay out of their key)."""
        stored = [f.name for f in fields(Terms if kind == "terms" else Tokens)]
        return {"kind": kind, "stored": stored, "backbone": self.backbone.info.as_dict(),
                "precision": self.backbone.precision, "data": split.fingerprint(), "inputs": self.loading.fingerprint(),
                **extra}

    def terms(self, split: Encodable, text: torch.Tensor, prompts: str, desc: str) -> Terms:
        """CALIP terms of `split` for the class `text` features `[K, D]` (described by `prompts`)."""
        spec = self.spec("terms", split, temperature=self.temperature, prompts=prompts, text=digest_tensor(text))
        return self.cache.get_or_compute(spec, lambda: extract_terms(
            self.backbone, split.batches(self.loading), text, self.temperature, len(split), desc), Terms, desc)

    def tokens(self, split: Encodable, desc: str) -> Tokens:
        """Global and spatial tokens of `split`."""
        return self.cache.get_or_compute(self.spec("tokens", split), lambda: extract_tokens(
            self.backbone, split.batches(self.loading), len(split), desc), Tokens, desc)


def default_workers() -> int:
    """Image-loading worker processes by default: min(4, CPUs)."""
    return min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class EncodeConfig:
    """Encoding settings: batch size, image-loading workers, CALIP's attention temperature, unreadable images
    skipped or not, and the feature cache (`cache_dir` None = `default_cache_dir()`; `use_cache` False = none;
    `announce_cache` prints the size of each entry written)."""

    batch_size: int = 64
    workers: int = field(default_factory=default_workers)
    temperature: float = CALIP_TEMPERATURE
    cache_dir: str | None = None
    use_cache: bool = True
    announce_cache: bool = False
    skip_bad_files: bool = False

    def __post_init__(self) -> None:
        check_at_least(self.batch_size, 1, "--batch-size")
        check_at_least(self.workers, 0, "--workers")
        if not self.temperature > 0:
            raise CalipError(f"--temperature must be > 0, got {self.temperature}")

    def encoder(self, backbone: CLIPBackbone, projector: Any | None = None) -> Encoder:
        """An `Encoder` for `backbone` (point clouds projected by `projector`)."""
        cache = FeatureCache((self.cache_dir or default_cache_dir()) if self.use_cache else None, self.announce_cache)
        loading = Loading(transform=backbone.transform, projector=projector, batch_size=self.batch_size,
                          workers=self.workers, device=backbone.device, image_size=backbone.image_size,
                          skip_bad_files=self.skip_bad_files)
        return Encoder(backbone, loading, self.temperature, cache)
