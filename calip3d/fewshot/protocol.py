"""CoOp's few-shot protocol: K train shots per class drawn with a seed, min(K, 4) validation shots per class, saved
to a JSON split file and reused so that a run is reproducible.

Validation shots come from the dataset's val split where it has one (CoOp's 2D datasets except ImageNet), otherwise
from the train split without the train shots (ImageNet, whose CoOp val is its test, and the 3D datasets); never from
the test split.

A class with fewer than K items (`short_classes`): "keep" takes all of them, as CoOp does (Dassl's
`generate_fewshot_dataset` with its default `repeat=False`); "repeat" draws K with replacement, as the copies of
that sampler in Tip-Adapter and PointCLIP do (`repeat=True`). The choice is saved in the split file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import CalipError
from ..results import write_json
from ..sampling import SHORT_CLASSES, sample_per_class

SPLIT_FORMAT = "calip3d.fewshot-split/2"
MAX_VAL_SHOTS = 4  # CoOp: min(K, 4) val shots per class
ALL_SHOTS = "all"  # the whole train split (less the val shots where they come from train): Point-NN's memory


@dataclass
class FewShotSplit:
    """Indices of the drawn shots. `train` index the train split; `val` index the split named by `val_source`.
    `ids` digests identify the items (paths or cloud indices and labels) the indices were drawn from. `short` lists
    the classes with fewer than K train items, handled as `short_classes` says."""

    dataset: str
    shots: int | str  # K, or ALL_SHOTS
    seed: int
    val_shots: int
    val_source: str  # "val" or "train"
    train: list[int]
    val: list[int]
    classnames: list[str]
    train_ids: str
    val_ids: str
    short_classes: str = "keep"
    short: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)  # classes with no train item: only their text features
    format: str = SPLIT_FORMAT


def digest_ids(ids: Sequence[object]) -> str:
    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()


def draw_split(
    dataset: str,
    classnames: Sequence[str],
    train_labels: Sequence[int],
    train_ids: Sequence[object],
    shots: int | str,
    seed: int,
    val_labels: Sequence[int] | None = None,
    val_ids: Sequence[object] | None = None,
    short_classes: str = "keep",
) -> FewShotSplit:
    """Draw K train shots per class and min(K, 4) val shots per class (from val when given, else from train
    without the train shots). `shots` ALL_SHOTS: every train item, and 4 val shots per class (where the dataset has no
    val split: drawn first from train, at most n - 1 of a class's n items, and kept out of the train shots)."""
    if shots == ALL_SHOTS:
        return _draw_all(dataset, classnames, train_labels, train_ids, seed, val_labels, val_ids, short_classes)
    if isinstance(shots, str) or shots < 1:
        raise CalipError(f"shots must be >= 1, got {shots}")
    if short_classes not in SHORT_CLASSES:
        raise CalipError(f"short_classes must be one of {', '.join(SHORT_CLASSES)}, got {short_classes!r}")
    k = len(classnames)
    train = sample_per_class(train_labels, shots, seed, num_classes=k, short_classes=short_classes)
    val_shots = min(shots, MAX_VAL_SHOTS)
    if val_labels is not None:
        val = sample_per_class(val_labels, val_shots, seed, num_classes=k, short_classes=short_classes)
        val_source, val_digest = "val", digest_ids(val_ids or [])
    else:
        val = sample_per_class(train_labels, val_shots, seed, num_classes=k, exclude=set(train.indices),
                               short_classes=short_classes)
        val_source, val_digest = "train", digest_ids(train_ids)
    return FewShotSplit(
        dataset=dataset, shots=shots, seed=seed, val_shots=val_shots, val_source=val_source,
        train=train.indices, val=val.indices, classnames=list(classnames), train_ids=digest_ids(train_ids),
        val_ids=val_digest, short_classes=short_classes, short=[classnames[c] for c in train.short],
        empty=[classnames[c] for c in train.empty],
    )


def _draw_all(dataset: str, classnames: Sequence[str], train_labels: Sequence[int], train_ids: Sequence[object],
              seed: int, val_labels: Sequence[int] | None, val_ids: Sequence[object] | None,
              short_classes: str) -> FewShotSplit:
    k = len(classnames)
    if val_labels is not None:
        val = sample_per_class(val_labels, MAX_VAL_SHOTS, seed, num_classes=k, short_classes=short_classes)
        val_source, val_digest, held = "val", digest_ids(val_ids or []), set()
    else:  # from train: at most n - 1 of a class's n items, so that every class keeps a memory item
        val = sample_per_class(train_labels, MAX_VAL_SHOTS, seed, num_classes=k, short_classes="keep")
        sizes = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=k)
        taken = np.zeros(k, dtype=np.int64)
        kept = []
        for i in val.indices:
            c = int(train_labels[i])
            if taken[c] < sizes[c] - 1:
                kept.append(i)
                taken[c] += 1
        val = replace(val, indices=kept)
        val_source, val_digest, held = "train", digest_ids(train_ids), set(kept)
    train = [i for i in range(len(train_labels)) if i not in held]
    present = {int(train_labels[i]) for i in train}
    return FewShotSplit(
        dataset=dataset, shots=ALL_SHOTS, seed=seed, val_shots=MAX_VAL_SHOTS, val_source=val_source, train=train,
        val=val.indices, classnames=list(classnames), train_ids=digest_ids(train_ids), val_ids=val_digest,
        short_classes=short_classes, empty=[classnames[c] for c in range(k) if c not in present])


def save_split(split: FewShotSplit, path: Path) -> Path:
    return write_json(path, asdict(split))


_MUST_MATCH = ("format", "dataset", "shots", "seed", "classnames", "train_ids", "val_ids", "val_source",
               "short_classes")


def read_split_file(path: Path, expected: FewShotSplit) -> FewShotSplit:
    """Read a saved split; it must have been drawn from the same items with the same shots, seed and short-class
    rule."""
    try:
        data = json.loads(Path(path).read_text())
        split = FewShotSplit(**data)
    except (OSError, json.JSONDecodeError, TypeError) as err:
        raise CalipError(f"cannot read few-shot split file {path} (format {SPLIT_FORMAT}): {err}; delete it or "
                         "choose another FewShotConfig.split_dir") from None
    for name in _MUST_MATCH:
        if getattr(split, name) != getattr(expected, name):
            raise CalipError(
                f"few-shot split file {path} does not match this run ({name} differs: "
                f"{getattr(split, name)!r} in the file); delete it or choose another "
                "FewShotConfig.split_dir"
            )
    return split


def get_split(path: Path, drawn: FewShotSplit) -> tuple[FewShotSplit, bool]:
    """The saved split at `path` when it exists (validated against `drawn`), else `drawn`, saved. Returns
    (split, reused?)."""
    if path.exists():
        return read_split_file(path, drawn), True
    save_split(drawn, path)
    return drawn, False
