"""Streaming extraction of CALIP terms through a frozen backbone, and an on-disk cache of the results.

Per batch, the backbone's spatial tokens are turned into the three CALIP terms at once and dropped, so memory grows
only with the `[N, K]` (or `[N, V, K]`) terms and the `[N, D]` (or `[N, V, D]`) global features.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from tqdm.auto import tqdm

from .atomic import atomic_torch_save
from .attention import calip_terms
from .backbone import CLIPBackbone

CACHE_FORMAT = 1


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

    def subset(self, rows: torch.Tensor | list[int]) -> "Terms":
        rows = torch.as_tensor(rows, dtype=torch.long)
        return Terms(**{k: v[rows] for k, v in self.tensors().items()})


def stream_terms(
    backbone: CLIPBackbone,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    text_feats: torch.Tensor,
    temperature: float,
    total: int | None = None,
    desc: str = "encoding",
) -> Terms:
    """Encode `batches` of `(images, labels, indices)` and compute the CALIP terms batch by batch.

    `images` is `[B, 3, S, S]` or `[B, V, 3, S, S]` (views of point clouds, all encoded in one pass).
    """
    text = text_feats.to(backbone.device)
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("clip", "vg", "tb", "glob", "labels", "indices")}
    with torch.inference_mode(), tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True) as bar:
        for images, labels, indices in batches:
            views = images.shape[1] if images.ndim == 5 else None
            flat = images.flatten(0, 1) if views else images
            glob, tokens = backbone.encode_image(flat)
            clip, vg, tb = calip_terms(glob, tokens, text, temperature)
            shape = (images.shape[0], views) if views else (images.shape[0],)
            for key, value in (("clip", clip), ("vg", vg), ("tb", tb), ("glob", glob.float())):
                out[key].append(value.reshape(*shape, value.shape[-1]).cpu())
            out["labels"].append(torch.as_tensor(labels).long().cpu())
            out["indices"].append(torch.as_tensor(indices).long().cpu())
            bar.update(images.shape[0])
    if not out["labels"]:
        raise ValueError("no samples to encode")
    cat = {k: torch.cat(v) for k, v in out.items()}
    return Terms(cat["clip"], cat["vg"], cat["tb"], cat["glob"], cat["labels"], cat["indices"])


def cache_key(spec: dict[str, Any]) -> str:
    """A stable hex key for everything that changes the cached terms."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(name.encode())
        digest.update(str((tuple(t.shape), str(t.dtype))).encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


class TermCache:
    """Cached `Terms` in `cache_dir`, one file per key. Writes are atomic (temp file + rename); an entry whose spec
    or checksum does not match is reported stale/corrupt, deleted and recomputed, never used."""

    def __init__(self, cache_dir: str | Path | None) -> None:
        self.dir = Path(cache_dir) if cache_dir else None
        self.last_status = "disabled" if self.dir is None else "unused"

    def path(self, spec: dict[str, Any]) -> Path | None:
        return None if self.dir is None else self.dir / f"terms-{cache_key(spec)}.pt"

    def load(self, spec: dict[str, Any]) -> Terms | None:
        path = self.path(spec)
        if path is None or not path.exists():
            self.last_status = "disabled" if path is None else "miss"
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            ok = (blob.get("format") == CACHE_FORMAT and blob.get("spec") == json.loads(json.dumps(spec, default=str))
                  and blob.get("digest") == _digest(blob["tensors"]))
        except Exception:  # noqa: BLE001 - any unreadable file is a corrupt entry
            ok = False
        if not ok:
            self.last_status = "stale"
            path.unlink(missing_ok=True)
            return None
        self.last_status = "hit"
        return Terms(**blob["tensors"])

    def save(self, spec: dict[str, Any], terms: Terms) -> Path | None:
        path = self.path(spec)
        if path is None:
            return None
        tensors = {k: v.contiguous() for k, v in terms.tensors().items()}
        blob = {"format": CACHE_FORMAT, "spec": json.loads(json.dumps(spec, default=str)), "tensors": tensors,
                "digest": _digest(tensors)}
        return atomic_torch_save(blob, path)

    def get_or_compute(self, spec: dict[str, Any], compute: Callable[[], Terms]) -> Terms:
        cached = self.load(spec)
        if cached is not None:
            return cached
        status = self.last_status
        terms = compute()
        self.save(spec, terms)
        self.last_status = status
        return terms


def default_cache_dir() -> Path:
    """`$CALIP3D_CACHE`, else `$XDG_CACHE_HOME/calip3d`, else `~/.cache/calip3d`."""
    if os.environ.get("CALIP3D_CACHE"):
        return Path(os.environ["CALIP3D_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "calip3d"


def batched(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
