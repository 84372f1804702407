"""The on-disk cache of encoded features (CALIP terms, few-shot tokens): one file per key, one integrity check.

An entry holds `{format, spec, tensors, digest}`. It is used only when its format, its full spec (not only the key
derived from it) and the sha256 of its tensors all match; anything else (stale, truncated, foreign) is reported,
deleted and recomputed. Writes are atomic (temporary file + rename), so an interrupted run never leaves a partial
entry behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from .atomic import atomic_torch_save

CACHE_FORMAT = 2


class Cacheable(Protocol):
    """What the cache stores: a value that is a dict of tensors."""

    def tensors(self) -> dict[str, torch.Tensor]: ...

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> Any: ...


T = TypeVar("T", bound=Cacheable)


def plain_spec(spec: dict[str, Any]) -> Any:
    """The spec as stored: a JSON round trip (tuples become lists, other objects their `str`)."""
    return json.loads(json.dumps(spec, sort_keys=True, default=str))


def fingerprint_fields(obj: Any, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A cache-key part generated from a dataclass: every field but `exclude` (so a new field is keyed unless it is
    declared irrelevant). Dataclass values recurse; objects with `describe()` give it; arrays, tensors, lists and
    tuples give the sha256 of their contents; other values stay as they are."""
    return {f.name: _key_value(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name not in exclude}


def _key_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return fingerprint_fields(value)
    if hasattr(value, "describe"):
        return value.describe()
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return "sha256:" + hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
    if isinstance(value, (list, tuple)):
        return "sha256:" + hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
    return value


def cache_key(spec: dict[str, Any]) -> str:
    """A stable hex key for everything that changes the cached tensors."""
    return hashlib.sha256(json.dumps(plain_spec(spec), sort_keys=True).encode()).hexdigest()[:32]


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, shapes, dtypes and bytes of `tensors`."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(name.encode())
        digest.update(str((tuple(t.shape), str(t.dtype))).encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """`$CALIP3D_CACHE`, else `$XDG_CACHE_HOME/calip3d/features`, else `~/.cache/calip3d/features`: a folder of its
    own, beside (never above) the default data root `.../calip3d/data`, so clearing the cache never deletes data."""
    if os.environ.get("CALIP3D_CACHE"):
        return Path(os.environ["CALIP3D_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "calip3d" / "features"


class FeatureCache:
    """Cached values in `folder` (None: disabled), one `<kind>-<key>.pt` file per spec. `last_status` says what the
    last lookup found: disabled, unused, miss, hit or stale. `announce` prints the size of each entry written."""

    def __init__(self, folder: str | Path | None, announce: bool = False) -> None:
        self.dir = Path(folder) if folder else None
        self.announce = announce
        self.last_status = "disabled" if self.dir is None else "unused"

    def path(self, spec: dict[str, Any]) -> Path | None:
        return None if self.dir is None else self.dir / f"{spec.get('kind', 'entry')}-{cache_key(spec)}.pt"

    def load(self, spec: dict[str, Any], cls: type[T]) -> T | None:
        path = self.path(spec)
        if path is None or not path.exists():
            self.last_status = "disabled" if path is None else "miss"
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            ok = (blob.get("format") == CACHE_FORMAT and blob.get("spec") == plain_spec(spec)
                  and blob.get("digest") == tensors_digest(blob["tensors"]))
        except Exception:  # noqa: BLE001 - any unreadable file is a corrupt entry
            ok = False
        if not ok:
            self.last_status = "stale"
            path.unlink(missing_ok=True)
            return None
        self.last_status = "hit"
        return cls.from_tensors(blob["tensors"])

    def save(self, spec: dict[str, Any], value: Cacheable, what: str = "") -> Path | None:
        path = self.path(spec)
        if path is None:
            return None
        tensors = {k: v.contiguous() for k, v in value.tensors().items()}
        if self.announce:
            size = sum(t.element_size() * t.numel() for t in tensors.values()) / 2 ** 20
            print(f"writing {spec.get('kind', 'entry')} of the {what or 'data'} to the cache: {size:.1f} MiB, {path}",
                  file=sys.stderr)
        blob = {"format": CACHE_FORMAT, "spec": plain_spec(spec), "tensors": tensors, "digest": tensors_digest(tensors)}
        return atomic_torch_save(blob, path)

    def remove(self, spec: dict[str, Any]) -> None:
        """Delete the entry of `spec`, if any."""
        path = self.path(spec)
        if path is not None:
            path.unlink(missing_ok=True)
