"""Point-cloud classification datasets read from the public release files (no download): ModelNet40,
ModelNet10 and three ScanObjectNN variants, as a `PointSplit` of `[N, num_points, 3]` float32 points and
`[N]` int64 labels.

Routes:
- modelnet40, fmt "h5" (PointCLIP's files): `<data_root>/modelnet40_ply_hdf5_2048/`;
- modelnet40 and modelnet10, fmt "resampled" (PointNet++'s): `<data_root>/modelnet40_normal_resampled/`.
  ModelNet10 is read this way only, from its `modelnet10_{train,test}.txt` lists;
- scanobjectnn-*: the official `h5_files/` under `<data_root>/scanobjectnn/`, under `<data_root>/`, or the
  `main_split*/` folders directly under `<data_root>/scanobjectnn/`. OBJ_ONLY = main_split_nobg/
  *objectdataset.h5, OBJ_BG = main_split/*objectdataset.h5, hardest (PB_T50_RS) =
  main_split/*objectdataset_augmentedrot_scale75.h5.
Each cloud is turned y-up (`to_y_up`), subsampled (`sample_points`), then by default centred at its mean
and scaled to the unit sphere (`normalize_unit_sphere`), for every dataset. ScanObjectNN files are not
normalised; ModelNet40 h5 clouds are re-normalised after subsampling (normalize=False gives PointCLIP's
exact inputs). Formats, expected layouts and ScanObjectNN's file names are the datasets' records'
(`calip3d.records.points`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from calip3d.cache import fingerprint_fields
from calip3d.encoding import Batch, Loading, point_batches
from calip3d.errors import CalipError
from calip3d.cloud_files import check_points, read_text_array
from calip3d.point_preprocessing import (
    SAMPLING_METHODS, UP_AXES, augment_points, normalize_unit_sphere, sample_points, to_y_up,
)
from calip3d.records import dataset_record
from calip3d.records.points import H5_DIR as _H5_DIR
from calip3d.records.points import H5_LAYOUT as _H5_LAYOUT
from calip3d.records.points import RESAMPLED_DIR as _RESAMPLED_DIR
from calip3d.records.points import RESAMPLED_LAYOUT as _RESAMPLED_LAYOUT

from .registry import POINTS, get_dataset

POINT_SPLITS = ("train", "test")
FORMATS = ("h5", "resampled")

_PROGRESS_FILES = 100  # show a progress bar when reading at least this many shape files
_CHUNK = 256  # clouds prepared at once from an h5 array (bounds FPS memory)


@dataclass(frozen=True)
class PointSettings:
    """How clouds are read and prepared: the release (`format`, None = auto), points per cloud, the subsampling
    (`sampling`, `seed`), unit-sphere normalisation and the files' up axis."""

    format: str | None = None
    num_points: int = 1024
    sampling: str = "first"
    seed: int = 0
    normalize: bool = True
    up_axis: str = "y"

    def __post_init__(self) -> None:
        num = self.num_points
        if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
            raise CalipError(f"PointSettings.num_points must be an integer >= 1, got {num!r}")
        if self.sampling not in SAMPLING_METHODS:
            raise CalipError(f"PointSettings.sampling must be one of {', '.join(SAMPLING_METHODS)}, got "
                             f"{self.sampling!r}")
        if self.up_axis not in UP_AXES:
            raise CalipError(f"PointSettings.up_axis must be one of {', '.join(UP_AXES)}, got {self.up_axis!r}")
        for name, kind in (("num_points", int), ("seed", int), ("normalize", bool)):
            object.__setattr__(self, name, kind(getattr(self, name)))

    def as_dict(self) -> dict[str, Any]:
        """The settings as results and cache keys record them (`format` resolved once a split is read)."""
        return asdict(self)

    def load(self, name: str, data_root: Path | str, split: str = "test") -> "PointSplit":
        """`load_point_split` with these settings."""
        return load_point_split(name, data_root, split, fmt=self.format, num_points=self.num_points,
                                sampling=self.sampling, seed=self.seed, normalize=self.normalize, up_axis=self.up_axis)


@dataclass
class PointSplit:
    """One split: `points [N, num_points, 3]` float32 and `labels [N]` int64 into `classnames`.

    `source` names the files read; `settings` (the `PointSettings` used, `format` resolved; `as_dict()` for results)
    belongs in results next to the accuracy. `augment_seed` is set on copies made by `augmented`.
    """

    name: str
    split: str
    classnames: list[str]
    points: np.ndarray
    labels: np.ndarray
    source: str
    settings: PointSettings = field(default_factory=PointSettings)
    augment_seed: int | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def ids(self) -> list[int]:
        """The clouds' identities (their positions in the split), for few-shot split files."""
        return list(range(len(self.labels)))

    def subset(self, indices: Sequence[int] | np.ndarray) -> PointSplit:
        """A new PointSplit of the clouds at `indices` (ints, in that order, or a boolean mask `[N]`)."""
        index = np.asarray(indices) if len(indices) else np.zeros(0, dtype=np.int64)
        what = f"subset of {self.name} {self.split} ({len(self)} clouds)"
        if index.size and index.dtype != bool and not np.issubdtype(index.dtype, np.integer):
            raise CalipError(f"{what}: indices must be integers, not {index.dtype}")
        try:
            points, labels = self.points[index], self.labels[index]
        except IndexError as err:
            raise CalipError(f"{what}: {err}") from None
        return replace(self, points=points, labels=labels, classnames=list(self.classnames))

    def augmented(self, seed: int) -> PointSplit:
        """The clouds scaled and shifted at random as PointCLIP augments them (`augment_points`, drawn with `seed`)."""
        return replace(self, points=augment_points(self.points, seed), augment_seed=int(seed))

    def fingerprint(self) -> dict[str, Any]:
        """Every field (for cache keys): the points' and labels' digests, the `PointSettings` used, the source and
        the augmentation seed (the augmented points are in the digest too)."""
        return {**fingerprint_fields(self, exclude=frozenset({"settings"})), "settings": self.settings.as_dict()}

    def batches(self, loading: Loading) -> Iterator[Batch]:
        """`(views [B, V, 3, S, S], labels [B], indices [B])`, projected by `loading.projector`."""
        return point_batches(self.points, self.labels, loading)


def _missing(what: Path | str, layout: str) -> CalipError:
    return CalipError(f"{what} not found. Expected layout:\n{layout}")


def _read_lines(path: Path, layout: str) -> list[str]:
    if not path.is_file():
        raise _missing(path, layout)
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _read_names(folder: Path, candidates: Sequence[str], layout: str) -> list[str]:
    path = next((folder / c for c in candidates if (folder / c).is_file()), folder / candidates[0])
    return _read_lines(path, layout)


def _read_h5_clouds(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """`data [N, P, 3]` float32 and `label [N]` int64 of a ModelNet / ScanObjectNN h5 file."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            missing = [key for key in ("data", "label") if key not in handle]
            if missing:
                found = ", ".join(handle)
                raise CalipError(f"{path}: no {' or '.join(map(repr, missing))} dataset (it has: {found})")
            data, labels = handle["data"][()], handle["label"][()]
    except OSError as err:
        raise CalipError(f"cannot read {path} as HDF5: {err}") from None
    if data.ndim != 3 or data.shape[2] < 3 or 0 in data.shape:
        raise CalipError(f"{path}: 'data' must have shape [N>0, P>0, >=3], got {tuple(data.shape)}")
    labels = labels.reshape(-1).astype(np.int64)
    if len(labels) != len(data):
        raise CalipError(f"{path}: {len(labels)} labels for {len(data)} clouds")
    points = data[..., :3].astype(np.float32)
    if not np.isfinite(points).all():
        raise CalipError(f"{path}: 'data' holds NaN or infinite coordinates")
    return points, labels


def _modelnet_h5(root: Path, split: str) -> tuple[list[str], np.ndarray, np.ndarray, list[Path]]:
    folder = root / _H5_DIR
    if not folder.is_dir():
        raise _missing(f"ModelNet40 h5 folder {folder}", _H5_LAYOUT)
    classnames = _read_names(folder, ("shape_names.txt", "modelnet40_shape_names.txt"), _H5_LAYOUT)
    listed = folder / f"{split}_files.txt"
    if listed.is_file():
        # Listed paths differ between copies (data/modelnet40_ply_hdf5_2048/..., absolute, Windows):
        # keep the file name and look for it in this folder.
        files = [folder / re.split(r"[\\/]", line)[-1] for line in _read_lines(listed, _H5_LAYOUT)]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise _missing(f"{', '.join(absent)} (listed in {listed}) in {folder}", _H5_LAYOUT)
    else:
        files = sorted(folder.glob(f"ply_data_{split}*.h5"))
    if not files:
        raise _missing(f"{split} files ({listed.name} or ply_data_{split}*.h5) in {folder}", _H5_LAYOUT)
    parts = [_read_h5_clouds(f) for f in files]
    return classnames, np.concatenate([p for p, _ in parts]), np.concatenate([lab for _, lab in parts]), files


def _modelnet_resampled(
    root: Path, name: str, split: str, max_rows: int | None, prepare: Callable[[np.ndarray], np.ndarray]
) -> tuple[list[str], np.ndarray, np.ndarray, Path]:
    """Read and `prepare` each listed shape file (one at a time: bounded memory for 10,000-point files)."""
    folder = root / _RESAMPLED_DIR
    if not folder.is_dir():
        raise _missing(f"ModelNet folder {folder}", _RESAMPLED_LAYOUT)
    # ModelNet40's releases store their label order (shape_names); the registry's list serves --label-set.
    known = None if name == "modelnet40" else get_dataset(name).classnames
    classnames = list(known) if known else _read_names(
        folder, ("modelnet40_shape_names.txt", "shape_names.txt"), _RESAMPLED_LAYOUT
    )
    class_index = {c: i for i, c in enumerate(classnames)}
    listed = folder / f"{name}_{split}.txt"
    ids = _read_lines(listed, _RESAMPLED_LAYOUT)
    if not ids:
        raise CalipError(f"{listed} lists no shapes")
    labels = np.empty(len(ids), dtype=np.int64)
    clouds = []
    bar = tqdm(ids, desc=f"{name} {split}", unit="file", disable=len(ids) < _PROGRESS_FILES)
    for i, shape_id in enumerate(bar):
        cls = shape_id.rsplit("_", 1)[0]  # night_stand_0001 -> night_stand
        if not re.fullmatch(r".+_\d+", shape_id) or cls not in class_index:
            raise CalipError(f"{listed}: line {shape_id!r} is not `<class>_<number>` with a class of {name}")
        path = folder / cls / f"{shape_id}.txt"
        if not path.is_file():
            raise _missing(f"{path} (listed in {listed})", _RESAMPLED_LAYOUT)
        labels[i] = class_index[cls]
        clouds.append(prepare(check_points(read_text_array(path, max_rows, columns=3), path)))
    return classnames, np.stack(clouds), labels, listed


def _scanobjectnn_file(root: Path, name: str, split: str) -> Path:
    layout = dataset_record(name).require("points")
    if layout.h5_file is None:
        raise CalipError(f"{name}: its dataset record (calip3d.records) names no h5 file of ScanObjectNN's")
    folder, stem = layout.h5_file
    relative = Path(folder) / f"{'training' if split == 'train' else 'test'}_{stem}"
    bases = (root / "scanobjectnn" / "h5_files", root / "h5_files", root / "scanobjectnn")
    found = next((base / relative for base in bases if (base / relative).is_file()), None)
    if found is None:
        tried = ", ".join(str(base / relative) for base in bases)
        title = get_dataset(name).title
        raise _missing(f"{title} {split} file (looked for {tried})", layout.layout("h5"))
    return found


def _resolve_format(name: str, fmt: str | None, root: Path) -> str:
    allowed = get_dataset(name).formats
    if fmt is not None and fmt not in FORMATS:
        raise CalipError(f"unknown point-cloud format {fmt!r}; expected one of {', '.join(FORMATS)} or None")
    if fmt is not None and fmt not in allowed:
        hint = " (the modelnet10_*.txt lists of modelnet40_normal_resampled)" * (name == "modelnet10")
        raise CalipError(f"{name} is not available as fmt={fmt!r}; it is read as: {', '.join(allowed)}{hint}")
    if fmt is not None or len(allowed) == 1:
        return fmt or allowed[0]
    if (root / _H5_DIR).is_dir():
        return "h5"
    if (root / _RESAMPLED_DIR).is_dir():
        return "resampled"
    layout = dataset_record(name).require("points")
    others = "".join(f"\nor (fmt={f!r}):\n{layout.layout(f)}" for f in layout.formats[1:])
    raise _missing(f"{name} in {root}", layout.layout(layout.formats[0]) + others)


def load_point_split(
    name: str,
    data_root: Path | str,
    split: str = "test",
    fmt: str | None = None,
    num_points: int = 1024,
    sampling: str = "first",
    seed: int = 0,
    normalize: bool = True,
    up_axis: str = "y",
) -> PointSplit:
    """Load one split of a point-cloud dataset as `[N, num_points, 3]` points and `[N]` labels.

    fmt=None picks "h5" for modelnet40 (PointCLIP's files), or "resampled" when only
    modelnet40_normal_resampled/ exists; modelnet10 is "resampled" only, ScanObjectNN "h5" only. Each
    cloud: `to_y_up(up_axis)` (the files' up axis; all these releases are y-up) -> `sample_points(
    num_points, sampling, seed)` -> `normalize_unit_sphere` if `normalize`. With sampling="first", the
    resampled txt files are parsed only up to their first num_points rows.
    """
    name = get_dataset(name, POINTS).name
    if split not in POINT_SPLITS:
        raise CalipError(f"unknown split {split!r}; expected one of {', '.join(POINT_SPLITS)}")
    asked = PointSettings(fmt, num_points, sampling, seed, normalize, up_axis)  # validates them
    root = Path(data_root)
    if root.exists() and not root.is_dir():  # a root that does not exist yet is empty: the layout error follows
        raise CalipError(f"data root {root} is not a folder")
    settings = replace(asked, format=_resolve_format(name, fmt, root))

    def prepare(points: np.ndarray) -> np.ndarray:  # [..., P, 3] -> [..., num_points, 3]
        points = sample_points(to_y_up(points, up_axis), num_points, sampling, seed)
        return normalize_unit_sphere(points) if normalize else points

    if settings.format == "resampled":
        max_rows = num_points if sampling == "first" else None
        classnames, points, labels, listed = _modelnet_resampled(root, name, split, max_rows, prepare)
        source = f"{listed} ({len(labels)} shape files under {listed.parent})"
    else:
        classnames, points, labels, source = _read_h5_split(root, name, split, prepare, show_fps=sampling == "fps")
    if labels.min() < 0 or labels.max() >= len(classnames):
        raise CalipError(
            f"{source}: labels must lie in [0, {len(classnames)}), found {labels.min()}..{labels.max()}"
        )
    return PointSplit(name=name, split=split, classnames=classnames, labels=labels, source=source,
                      points=np.ascontiguousarray(points, dtype=np.float32), settings=settings)


def _read_h5_split(root: Path, name: str, split: str, prepare: Callable[[np.ndarray], np.ndarray],
                   show_fps: bool) -> tuple[list[str], np.ndarray, np.ndarray, str]:
    """(classnames, prepared points, labels, source) of an h5 release: ModelNet40's files or ScanObjectNN's."""
    if name == "modelnet40":
        classnames, raw, labels, files = _modelnet_h5(root, split)
    else:
        files = [_scanobjectnn_file(root, name, split)]
        raw, labels = _read_h5_clouds(files[0])
        classnames = list(get_dataset(name).classnames or ())
    starts = range(0, len(raw), _CHUNK)
    show = show_fps and len(starts) >= 4  # only FPS takes long (about 5 s per 1000 clouds)
    bar = tqdm(starts, desc=f"{name} {split} fps", unit="chunk", disable=not show)
    points = np.concatenate([prepare(raw[s:s + _CHUNK]) for s in bar])
    return classnames, points, labels, ", ".join(str(f) for f in files)
