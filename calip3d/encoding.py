"""The one encoding path: batches of images or projected point clouds -> frozen backbone -> what each caller keeps.

A split (images or point clouds, see `Encodable`) yields `(inputs, labels, indices)` batches; `encode_batches` runs the
backbone on them (all views of all clouds of a batch in one pass) and `collect` reduces each encoded batch to the
tensors a caller keeps, so memory grows only with what is kept:
- `terms_reducer`: CALIP's three terms `[N, K]` (images) or `[N, V, K]` (point clouds, per view) and global features;
- `tokens_reduce`: global `[N, (V,) D]` float32 and spatial `[N, (V,) T, D]` float16 tokens (few-shot training).
`Encoder` adds the on-disk cache (`calip3d.cache.FeatureCache`), keyed on everything that changes the bytes, and the
ranks of a torchrun job (`calip3d.distributed`): each rank encodes its shard of the items in the batches a single
process would use (`Grid`), and rank 0 receives every item's result in dataset order.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, ClassVar, Iterable, Iterator, NamedTuple, Protocol

import numpy as np
import torch

from .attention import calip_terms
from .backbone import CLIPBackbone
from .cache import FeatureCache, default_cache_dir, fingerprint_fields
from .distributed import Progress, Ranks, current
from .errors import CalipError, check_at_least
from .published import CALIP_TEMPERATURE

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # inputs [B, 3, S, S] or [B, V, 3, S, S], labels, indices


class EncodedBatch(NamedTuple):
    """One encoded batch: global `[B, D]` or `[B, V, D]`, spatial `[B, T, D]` or `[B, V, T, D]`, the labels and
    dataset indices `[b]` of its own items, the global features' norms before normalisation `[B]` or `[B, V]`, and the
    own items' `rows` among the B (None: all B, in order; other rows are padding, see `Grid`)."""

    global_feats: torch.Tensor
    spatial_feats: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    global_norms: torch.Tensor | None = None
    rows: torch.Tensor | None = None


@dataclass(frozen=True)
class Loading:
    """How items become backbone inputs: images through `transform` (`workers` loader processes, batches in pinned
    memory with `pin_memory`; with `decode_on_device` the workers only read the files, which are decoded and
    transformed on `device`), point clouds through `projector` on `device`; `image_size` for random augmentations.
    Batches hold `batch_size` items, the first one `offset` fewer (a shard keeps the batches of the whole split)."""

    transform: Callable | None
    projector: Any | None
    batch_size: int
    workers: int
    device: torch.device
    image_size: int
    skip_bad_files: bool = False
    pin_memory: bool = False
    decode_on_device: bool = False
    offset: int = 0

    NOT_IN_KEY: ClassVar[frozenset[str]] = frozenset({"batch_size", "workers", "device", "pin_memory", "offset"})

    def fingerprint(self) -> dict[str, Any]:
        """Every setting but `NOT_IN_KEY` (batching, processes and devices change how, not what, the backbone sees):
        the transform (its repr), the projector (`describe()`), the augmentation size, bad-file skipping, and where
        images are decoded (torchvision on the device's type, with `decode_on_device`)."""
        decode = {"decode_on_device": f"torchvision on {self.device.type}"} if self.decode_on_device else {}
        return {**fingerprint_fields(self, self.NOT_IN_KEY), **decode}

    def batch_rows(self, n: int) -> list[range]:
        """Items `0..n-1` in batches: `batch_size` each, the first one `offset` fewer."""
        first = self.batch_size - self.offset % self.batch_size
        starts = [0, *range(first, n, self.batch_size)]
        return [range(s, e) for s, e in zip(starts, [*starts[1:], n]) if e > s]


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


@dataclass(frozen=True)
class Grid:
    """The batches of a single-process run over the whole split: `size` items each over `total` items (the last batch
    shorter, or padded to `size` with `pad_tail`). A shard starting at item `start` is encoded in those same batches,
    at the same shape and rows, the rows of other ranks' items (and of skipped files) zero-filled: every item meets the
    same arithmetic whatever the number of ranks, so results do not depend on it (kernels can round differently for
    another batch shape)."""

    size: int
    total: int
    start: int = 0
    pad_tail: bool = False

    def place(self, inputs: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The items at dataset `indices` `[b]` with inputs `[b, ...]` -> (the whole-split batch holding them
        `[B, ...]`, the rows of these items in it, None when they fill it in order)."""
        first = int(indices[0]) // self.size * self.size
        length = self.size if self.pad_tail else min(self.size, self.total - first)
        if inputs.shape[0] == length:
            return inputs, None
        rows = (indices - first).to(inputs.device)
        padded = inputs.new_zeros((length, *inputs.shape[1:]))
        padded[rows] = inputs
        return padded, rows


def encode_batches(backbone: CLIPBackbone, batches: Iterable[Batch], grid: Grid) -> Iterator[EncodedBatch]:
    """Run the backbone on each batch (of the items `grid.start + indices`), placed in its batch of `grid`; the V views
    of a point-cloud batch `[B, V, 3, S, S]` go through in one pass and come back as `[B, V, ...]`. Empty batches
    (every file unreadable and skipped) are dropped."""
    for inputs, labels, indices in batches:
        if inputs.shape[0] == 0:
            continue
        indices = torch.as_tensor(indices).long() + grid.start
        inputs, rows = grid.place(inputs.to(backbone.device, non_blocking=True), indices)
        views = inputs.shape[1] if inputs.ndim == 5 else None
        try:
            glob, spatial, norms = backbone.encode_image_norms(inputs.flatten(0, 1) if views else inputs)
        except torch.OutOfMemoryError:
            raise CalipError(f"out of memory on {backbone.device} encoding a batch of {inputs.shape[0]} "
                             f"{'clouds' if views else 'images'}: lower EncodeConfig.batch_size") from None
        if views:
            glob = glob.view(inputs.shape[0], views, -1)
            spatial = spatial.view(inputs.shape[0], views, *spatial.shape[1:])
            norms = norms.view(inputs.shape[0], views)
        yield EncodedBatch(glob, spatial, torch.as_tensor(labels).long(), indices, norms, rows)


Reduce = Callable[[EncodedBatch], dict[str, torch.Tensor]]


class HostCopies:
    """Tensors of successive batches gathered on the CPU. A device tensor is copied without blocking (the copy is
    queued behind the batch's kernels) and waited for one batch later, when the next batch is already queued: the
    device never waits for the host."""

    def __init__(self) -> None:
        self.parts: dict[str, list[torch.Tensor]] = {}
        self.pending: tuple[dict[str, torch.Tensor], Any] | None = None

    def add(self, tensors: dict[str, torch.Tensor]) -> None:
        device = next((t.device for t in tensors.values() if t.device.type != "cpu"), None)
        copies = {key: value.to("cpu", non_blocking=True) for key, value in tensors.items()}
        event = None
        if device is not None:
            event = torch.Event(device=device)
            event.record()
        self._settle()
        self.pending = (copies, event)

    def _settle(self) -> None:
        if self.pending is None:
            return
        copies, event = self.pending
        if event is not None:
            event.synchronize()
        for key, value in copies.items():
            # a copy of pinned staging memory (handed back to the allocator), or of a CPU view that would keep its
            # batch's whole token tensor alive (the global token of `[B, 1+N, D]`)
            owned = event is not None or value.untyped_storage().nbytes() > value.numel() * value.element_size()
            self.parts.setdefault(key, []).append(value.clone() if owned else value)
        self.pending = None

    def result(self) -> dict[str, torch.Tensor] | None:
        """The tensors of all batches concatenated (None when there was no batch)."""
        self._settle()
        return {key: torch.cat(values) for key, values in self.parts.items()} or None


def collect(batches: Iterable[EncodedBatch], reduce: Reduce, progress: Progress) -> dict[str, torch.Tensor] | None:
    """`reduce` every encoded batch (under `torch.inference_mode`; the rows of the batch's own items are kept) and
    concatenate the results, plus `labels` and `indices`, on the CPU; `progress` counts the items. None when there was
    no batch (an empty shard, or every file skipped)."""
    copies = HostCopies()
    with torch.inference_mode():
        for batch in batches:
            kept = reduce(batch)
            if batch.rows is not None:
                kept = {key: value[batch.rows.to(value.device)] for key, value in kept.items()}
            copies.add({**kept, "labels": batch.labels, "indices": batch.indices})
            progress.update(batch.labels.shape[0])
    return copies.result()


def view_terms(glob: torch.Tensor, spatial: torch.Tensor, text: torch.Tensor,
               temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`calip_terms` of images (global `[B, D]`, spatial `[B, T, D]` -> `[B, K]`) or of every view of point clouds
    (`[B, V, D]`, `[B, V, T, D]` -> `[B, V, K]`), all views in one call."""
    if glob.ndim == 2:
        return calip_terms(glob, spatial, text, temperature)
    b, v = glob.shape[:2]
    flat = calip_terms(glob.flatten(0, 1), spatial.flatten(0, 1), text, temperature)
    return tuple(t.view(b, v, -1) for t in flat)  # type: ignore[return-value]


def terms_reducer(text: torch.Tensor, temperature: float) -> Reduce:
    """Reduce a batch to CALIP's terms for the class `text` features `[K, D]` (on the backbone's device) and the global
    features (float32); the spatial tokens are dropped right away."""

    def reduce(batch: EncodedBatch) -> dict[str, torch.Tensor]:
        clip, vg, tb = view_terms(batch.global_feats, batch.spatial_feats, text, temperature)
        return {"clip": clip, "visual_guided": vg, "textual_blended": tb, "global_feats": batch.global_feats.float()}

    return reduce


def tokens_reduce(batch: EncodedBatch) -> dict[str, torch.Tensor]:
    """Reduce a batch to its global (float32) and spatial (float16) tokens and the global features' norms."""
    return {"global_feats": batch.global_feats.float(), "spatial_feats": batch.spatial_feats.half(),
            "global_norms": batch.global_norms.float()}


def point_batches(points: np.ndarray, labels: np.ndarray, loading: Loading) -> Iterator[Batch]:
    """Depth-map views `[B, V, 3, S, S]` of clouds `[N, P, 3]`, batch by batch (`loading.batch_rows`): the clouds go to
    `loading.device` once, and each batch is projected there."""
    if len(labels) == 0:
        return
    clouds = torch.from_numpy(np.ascontiguousarray(points)).to(loading.device)
    for rows in loading.batch_rows(len(labels)):
        batch = slice(rows.start, rows.stop)
        yield loading.projector.images(clouds[batch]), torch.from_numpy(np.asarray(labels[batch])), \
            torch.arange(rows.start, rows.stop)


def digest_tensor(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's float32 values (for cache keys)."""
    return hashlib.sha256(np.ascontiguousarray(tensor.detach().float().cpu().numpy()).tobytes()).hexdigest()


@dataclass
class Encoder:
    """A frozen backbone, how inputs are loaded, CALIP's temperature, a cache and the ranks of the job: the terms or
    tokens of a split, read from the cache when an entry with the same key exists, else encoded and written there.

    In a torchrun job every rank calls the same methods in the same order; each rank encodes its shard
    (`Ranks.shard`), rank 0 gets the whole result and the other ranks None. The cache: rank 0 looks the entry up for
    all; on a miss each rank writes its own shard entry (key: the entry's spec plus its rows, so a rank whose shard
    entry exists reuses it), then rank 0 writes the merged entry under the key a single process uses, and the shard
    entries are removed. `items_per_rank` keeps the items each rank encoded in the last call."""

    backbone: CLIPBackbone
    loading: Loading
    temperature: float
    cache: FeatureCache
    ranks: Ranks = field(default_factory=current)
    items_per_rank: list[int] = field(default_factory=list)

    def spec(self, kind: str, split: Encodable, **extra: Any) -> dict[str, Any]:
        """The cache spec of `kind` ("terms" or "tokens") for `split`: the stored tensors' names, the backbone (every
        `BackboneInfo` field, weights id or digest included) and its precision, the data (`split.fingerprint()`),
        the loading (`Loading.fingerprint()`) and `extra` (terms: temperature, prompts and the text features'
        digest; tokens come before the attention and the text, so those stay out of their key)."""
        stored = [f.name for f in fields(Terms if kind == "terms" else Tokens)]
        compiled = {"compiled": True} if self.backbone.compiled else {}
        return {"kind": kind, "stored": stored, "backbone": self.backbone.info.as_dict(),
                "precision": self.backbone.precision, "data": split.fingerprint(), "inputs": self.loading.fingerprint(),
                **compiled, **extra}

    def terms(self, split: Encodable, text: torch.Tensor, prompts: str, desc: str) -> Terms | None:
        """CALIP terms of `split` for the class `text` features `[K, D]` (described by `prompts`); None on ranks
        other than 0."""
        spec = self.spec("terms", split, temperature=self.temperature, prompts=prompts, text=digest_tensor(text))
        reduce = terms_reducer(text.to(self.backbone.device), self.temperature)
        return self._cached(spec, split, reduce, Terms, desc)

    def tokens(self, split: Encodable, desc: str) -> Tokens | None:
        """Global and spatial tokens of `split`; None on ranks other than 0."""
        return self._cached(self.spec("tokens", split), split, tokens_reduce, Tokens, desc)

    def map(self, split: Encodable, reduce: Reduce, desc: str) -> dict[str, torch.Tensor] | None:
        """`reduce` of every encoded batch of `split` (not cached): its rows plus `labels` and `indices`, in dataset
        order, on rank 0; None on the other ranks."""
        with Progress(len(split), desc, self.ranks) as progress:
            encoded = self._encode(split, reduce, progress)
        return self._merge(encoded)

    def distribution(self) -> dict[str, Any]:
        """How the last call was spread over the ranks (for provenance)."""
        return self.ranks.describe(self.items_per_rank)

    def _encode(self, split: Encodable, reduce: Reduce, progress: Progress) -> tuple[int, dict[str, torch.Tensor] | None]:
        """(items encoded, `reduce`d results) of this rank's shard of `split`, in the batches of a single process."""
        rows = self.ranks.shard(len(split))
        if not rows:
            return 0, None
        part = split if len(rows) == len(split) else split.subset(rows)
        loading = replace(self.loading, offset=rows.start % self.loading.batch_size)
        # compiled: every batch padded to one shape, so the graph compiles once
        grid = Grid(self.loading.batch_size, len(split), rows.start, pad_tail=self.backbone.compiled)
        return len(rows), collect(encode_batches(self.backbone, part.batches(loading), grid), reduce, progress)

    def _merge(self, encoded: tuple[int, dict[str, torch.Tensor] | None]) -> dict[str, torch.Tensor] | None:
        """Every rank's part on rank 0, in dataset order (None on the other ranks)."""
        gathered = self.ranks.gather(encoded)
        if gathered is None:
            return None
        self.items_per_rank = [count for count, _ in gathered]
        parts = [part for _, part in gathered if part is not None]
        if not parts:
            raise CalipError("no item could be read: every file was unreadable and skipped (EncodeConfig.skip_bad_files)")
        merged = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
        order = merged["indices"].argsort()
        return {key: value[order] for key, value in merged.items()}

    def _cached(self, spec: dict[str, Any], split: Encodable, reduce: Reduce, cls: type, desc: str) -> Any:
        """The cached value of `spec`, else `split` encoded (sharded over the ranks), merged on rank 0 and cached."""
        ranks = self.ranks
        cached = self.cache.load(spec, cls) if ranks.main else None
        status = self.cache.last_status
        if ranks.agree(cached is not None):
            self.items_per_rank = [0] * ranks.world_size
            return cached
        rows = ranks.shard(len(split))
        shard = {**spec, "rows": [rows.start, rows.stop]} if ranks.world_size > 1 and rows else None
        resumed = self.cache.load(shard, cls) if shard else None
        with Progress(len(split), desc, ranks) as progress:
            if resumed is not None:  # this rank's shard survived an interrupted run
                progress.update(len(rows))
                encoded = 0, resumed.tensors()
            else:
                encoded = self._encode(split, reduce, progress)
                if shard and encoded[1] is not None:
                    self.cache.save(shard, cls.from_tensors(encoded[1]), f"{desc}, rank {ranks.rank}'s shard")
        merged = self._merge(encoded)
        value = cls.from_tensors(merged) if merged is not None else None
        if value is not None:
            self.cache.save(spec, value, desc)
        if ranks.world_size > 1:
            ranks.barrier()  # the merged entry is written: the shard entries can go
            if shard:
                self.cache.remove(shard)
        self.cache.last_status = status
        return value


def default_workers(device: torch.device, local_ranks: int = 1) -> int:
    """Image-loading worker processes by default. CPU: min(4, cores), as decoding shares the cores with the encoder.
    Accelerator: this process's share of the cores (`local_ranks` processes per machine) but one, at most 16, to keep
    the device busy."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if device.type == "cpu":
        return min(4, cores)
    return max(1, min(16, cores // max(1, local_ranks) - 1))


@dataclass(frozen=True)
class EncodeConfig:
    """Encoding settings: batch size, image-loading workers (None: `default_workers`), decoding and transforming
    images on the device (`decode_on_device`), unreadable images skipped or not, and the feature cache (`cache_dir`
    None = `default_cache_dir()`; `use_cache` False = none; `announce_cache` prints the size of each entry
    written)."""

    batch_size: int = 64
    workers: int | None = None
    cache_dir: str | None = None
    use_cache: bool = True
    announce_cache: bool = False
    skip_bad_files: bool = False
    decode_on_device: bool = False

    def __post_init__(self) -> None:
        check_at_least(self.batch_size, 1, "EncodeConfig.batch_size")
        check_at_least(self.workers, 0, "EncodeConfig.workers")

    def encoder(self, backbone: CLIPBackbone, projector: Any | None = None,
                temperature: float = CALIP_TEMPERATURE) -> Encoder:
        """An `Encoder` for `backbone` (point clouds projected by `projector`; CALIP's terms at `temperature`, see
        `CalipConfig`) on the ranks of the current session."""
        ranks = current()
        cache = FeatureCache((self.cache_dir or default_cache_dir()) if self.use_cache else None, self.announce_cache)
        device = backbone.device
        workers = default_workers(device, ranks.local_world_size) if self.workers is None else self.workers
        loading = Loading(transform=backbone.transform, projector=projector, batch_size=self.batch_size,
                          workers=workers, device=device, image_size=backbone.image_size,
                          skip_bad_files=self.skip_bad_files, pin_memory=device.type != "cpu",
                          decode_on_device=self.decode_on_device)
        return Encoder(backbone, loading, temperature, cache, ranks)
