"""Class-balanced, seeded sampling of K items per class (CoOp's few-shot protocol and the tuning sets)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PerClassSample:
    """Indices drawn per class. `with_replacement` lists classes with fewer than K items (drawn with
    replacement, as CoOp does); `empty` lists classes with no item at all."""

    indices: list[int]
    shots: int
    seed: int
    with_replacement: list[int] = field(default_factory=list)
    empty: list[int] = field(default_factory=list)


def sample_per_class(
    labels: np.ndarray | list[int],
    shots: int,
    seed: int,
    num_classes: int | None = None,
    exclude: set[int] | None = None,
) -> PerClassSample:
    """Draw `shots` indices per class with `numpy.random.default_rng(seed)`, classes in label order.

    Items in `exclude` are never drawn (e.g. validation shots never overlap train shots). Deterministic: the same
    labels, shots and seed give the same indices on every machine.
    """
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = int(labels.max()) + 1 if num_classes is None and labels.size else int(num_classes or 0)
    rng = np.random.default_rng(seed)
    exclude = exclude or set()
    picked: list[int] = []
    replaced: list[int] = []
    empty: list[int] = []
    for cls in range(num_classes):
        pool = np.array([i for i in np.flatnonzero(labels == cls) if int(i) not in exclude], dtype=np.int64)
        if pool.size == 0:
            empty.append(cls)
            continue
        if pool.size < shots:
            replaced.append(cls)
            chosen = rng.choice(pool, size=shots, replace=True)
        else:
            chosen = rng.choice(pool, size=shots, replace=False)
        picked.extend(int(i) for i in chosen)
    return PerClassSample(indices=picked, shots=shots, seed=seed, with_replacement=replaced, empty=empty)
