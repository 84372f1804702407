"""Class-balanced, seeded sampling of K items per class (CoOp's few-shot protocol and the tuning sets)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SHORT_CLASSES = ("keep", "repeat")


@dataclass
class PerClassSample:
    """Indices drawn per class. `short` lists the classes with fewer than K items: with `short_classes="keep"` they
    contribute all their items (CoOp: Dassl's `generate_fewshot_dataset(repeat=False)`), with "repeat" K items drawn
    with replacement (the copies of that sampler in Tip-Adapter and PointCLIP, `repeat=True`). `empty` lists classes
    with no item at all."""

    indices: list[int]
    shots: int
    seed: int
    short_classes: str = "keep"
    short: list[int] = field(default_factory=list)
    empty: list[int] = field(default_factory=list)


def sample_per_class(
    labels: np.ndarray | list[int],
    shots: int,
    seed: int,
    num_classes: int | None = None,
    exclude: set[int] | None = None,
    short_classes: str = "repeat",
) -> PerClassSample:
    """Draw `shots` indices per class with `numpy.random.default_rng(seed)`, classes in label order; a class with
    fewer items keeps them all ("keep") or is drawn with replacement ("repeat").

    Items in `exclude` are never drawn (e.g. validation shots never overlap train shots). Deterministic: the same
    labels, shots and seed give the same indices on every machine. The few-shot protocol passes its
    `--short-classes` (default "keep", CoOp's); the zero-shot tuning sets use the default "repeat".
    """
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    if short_classes not in SHORT_CLASSES:
        raise ValueError(f"short_classes must be one of {SHORT_CLASSES}, got {short_classes!r}")
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = int(labels.max()) + 1 if num_classes is None and labels.size else int(num_classes or 0)
    rng = np.random.default_rng(seed)
    exclude = exclude or set()
    picked: list[int] = []
    short: list[int] = []
    empty: list[int] = []
    for cls in range(num_classes):
        pool = np.array([i for i in np.flatnonzero(labels == cls) if int(i) not in exclude], dtype=np.int64)
        if pool.size == 0:
            empty.append(cls)
            continue
        if pool.size < shots:
            short.append(cls)
            chosen = rng.choice(pool, size=shots, replace=True) if short_classes == "repeat" else rng.permutation(pool)
        else:
            chosen = rng.choice(pool, size=shots, replace=False)
        picked.extend(int(i) for i in chosen)
    return PerClassSample(indices=picked, shots=shots, seed=seed, short_classes=short_classes, short=short,
                          empty=empty)
