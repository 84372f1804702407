"""The layout of a folder dataset (`folder:PATH`), read from file names alone: split folders or the flat layout, the
kind of its files, its class folders and their names, and every file per split. `calip3d.datasets.registry` builds
the `DatasetInfo` from it and `calip3d.datasets.folder` reads the splits; see that module for the rules."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import Any, Sequence

from calip3d.errors import CalipError

IMAGES, POINTS = "images", "points"  # the kinds, as `calip3d.datasets.registry` names them
FOLDER_PREFIX = "folder:"  # --dataset folder:PATH
FOLDER_SPLITS = ("train", "val", "test")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CLOUD_EXTS = (".ply", ".pcd", ".xyz", ".pts", ".txt", ".npy", ".npz", ".off", ".obj", ".stl")
CLASSNAMES_FILE = "classnames.txt"
_LAYOUT = ("PATH/<class>/<file> (a test split only) or PATH/<split>/<class>/<file> with splits among train, val, "
           "test")


@dataclass(frozen=True)
class FolderFile:
    """One file of a folder dataset: its path relative to the folder (`/`-separated), its label, size and mtime."""

    relpath: str
    label: int
    size: int = 0
    mtime_ns: int = 0

    def stat(self, root: str) -> "FolderFile":
        try:
            info = os.stat(os.path.join(root, self.relpath))
        except OSError as err:
            raise CalipError(f"cannot read {os.path.join(root, self.relpath)}: {err.strerror or err}") from None
        return replace(self, size=int(info.st_size), mtime_ns=int(info.st_mtime_ns))

    def key(self) -> list[Any]:
        return [self.relpath, self.size, self.mtime_ns]


@dataclass(frozen=True)
class FolderScan:
    """What a folder holds: its layout ("splits" or "flat"), kind, class folders (sorted; label order) and names, and
    per split its files in label order, then path order (`FolderFile`s without size and mtime: see `FolderFile.stat`).
    `ignored` are files of other kinds (or outside the class folders)."""

    root: str
    layout: str
    kind: str
    class_folders: tuple[str, ...]
    classnames: tuple[str, ...]
    classnames_file: str | None
    files: dict[str, tuple[FolderFile, ...]]
    ignored: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return FOLDER_PREFIX + self.root

    def split_dir(self, split: str) -> str:
        return self.root if self.layout == "flat" else os.path.join(self.root, split)


def _visible(entries: Sequence[os.DirEntry]) -> list[os.DirEntry]:
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _listdir(path: str) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as entries:
            return _visible(list(entries))
    except OSError as err:
        raise CalipError(f"cannot list the folder {path}: {err.strerror or err}") from None


def _class_files(root: str, class_dir: str, visited: list[str]) -> list[str]:
    """Every visible file under `class_dir` (sub-folders included), as paths relative to `root`, sorted; the folders
    walked are added to `visited`."""
    found = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        visited.append(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")
                  for f in filenames if not f.startswith(".")]
    return sorted(found)


def _kind_of(relpath: str) -> str | None:
    suffix = os.path.splitext(relpath)[1].lower()
    return IMAGES if suffix in IMAGE_EXTS else POINTS if suffix in CLOUD_EXTS else None


def _read_classnames_file(path: str, folders: Sequence[str]) -> dict[str, str]:
    """`{folder: class name}` from lines `<folder> <class name>`; every class folder must be listed."""
    names: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise CalipError(f"cannot read {path}: {err}") from None
    for lineno, line in enumerate(lines, 1):
        parts = line.strip().split(None, 1)
        if not parts:
            continue
        if len(parts) != 2 or parts[0] in names:
            raise CalipError(f"{path}:{lineno}: expected a new '<folder> <class name>' line, got {line!r}")
        names[parts[0]] = parts[1].strip()
    missing = [f for f in folders if f not in names]
    if missing:
        raise CalipError(f"{path} names no class for the folder(s) {', '.join(missing[:10])}"
                         f"{' ...' if len(missing) > 10 else ''}: add a line '<folder> <class name>' for each")
    return names


def folder_classname(folder: str) -> str:
    """A class name from its folder name: `_` and `-` become spaces (`night_stand` -> "night stand")."""
    return folder.replace("_", " ").replace("-", " ").strip()


def _stamps(paths: Sequence[str]) -> tuple[tuple[str, int], ...]:
    """(path, modification time in ns, or -1 where it is gone) of each path."""
    def mtime(path: str) -> int:
        try:
            return os.stat(path).st_mtime_ns
        except OSError:
            return -1
    return tuple((path, mtime(path)) for path in paths)


def scan_folder(path: str) -> FolderScan:
    """The layout, kind, classes and files of the folder dataset at `path` (file names only: nothing is opened).

    A run asks for its folder's layout many times (lookup, each split, prompts, provenance): the scan is kept and
    reused while no folder of the tree and no classnames file has changed (a file added, removed or renamed changes
    its folder's modification time). A tree modified within `_RECENT_NS` before its scan is scanned again every time,
    since modification times tick coarsely.

    Raises `CalipError` for a missing folder, split folders mixed with other folders, a split without class folders,
    a class folder without a file of the folder's kind, both images and point clouds, or neither."""
    root = os.path.abspath(os.path.expanduser(path))
    kept = _SCANS.get(root)
    if kept is not None and _stamps([p for p, _ in kept[0]]) == kept[0]:
        return kept[1]
    visited: list[str] = []
    started = time.time_ns()
    scan = _scan(root, visited)
    stamps = _stamps([*visited, os.path.join(root, CLASSNAMES_FILE)])
    if max(t for _, t in stamps) < started - _RECENT_NS:
        _SCANS[root] = (stamps, scan)
    return scan


_RECENT_NS = 2 * 10 ** 9
_SCANS: dict[str, tuple[tuple[tuple[str, int], ...], FolderScan]] = {}  # root -> (stamps of its tree, its scan)


def _scan(root: str, visited: list[str]) -> FolderScan:
    """`scan_folder` of the absolute `root`, reading the folders; those it lists are added to `visited`."""
    if not os.path.isdir(root):
        raise CalipError(f"folder dataset {root}: no such folder (expected {_LAYOUT})")
    visited.append(root)
    top = _listdir(root)
    dirs = [e.name for e in top if e.is_dir()]
    splits = [s for s in FOLDER_SPLITS if s in dirs]
    if splits and len(splits) != len(dirs):
        others = [d for d in dirs if d not in FOLDER_SPLITS]
        raise CalipError(f"{root} has split folders ({', '.join(splits)}) and other folders ({', '.join(others[:5])}"
                         f"{' ...' if len(others) > 5 else ''}): with splits, every folder under it is a split "
                         f"(train, val, test) holding class folders (expected {_LAYOUT})")
    layout = "splits" if splits else "flat"
    split_dirs = {s: os.path.join(root, s) for s in splits} if splits else {"test": root}
    ignored: list[str] = []  # files in split and class folders that are not of the folder's kind
    classes: dict[str, dict[str, list[str]]] = {}  # split -> class folder -> relpaths
    for split, split_dir in split_dirs.items():
        if split_dir != root:
            visited.append(split_dir)
        entries = _listdir(split_dir) if split_dir != root else top
        folders = [e.name for e in entries if e.is_dir()]
        if split_dir != root:
            ignored += [os.path.relpath(e.path, root) for e in entries if not e.is_dir()]
        if not folders:
            raise CalipError(f"empty split: {split_dir} has no class folders (expected {_LAYOUT})")
        classes[split] = {c: _class_files(root, os.path.join(split_dir, c), visited) for c in folders}
    every = [rel for per_class in classes.values() for files in per_class.values() for rel in files]
    by_kind = {kind: [rel for rel in every if _kind_of(rel) == kind] for kind in (IMAGES, POINTS)}
    if by_kind[IMAGES] and by_kind[POINTS]:
        raise CalipError(f"{root} mixes images ({len(by_kind[IMAGES])}, e.g. {by_kind[IMAGES][0]}) and point clouds "
                         f"({len(by_kind[POINTS])}, e.g. {by_kind[POINTS][0]}): a folder dataset holds one kind")
    kind = IMAGES if by_kind[IMAGES] else POINTS
    if not by_kind[kind]:
        raise CalipError(f"{root} holds no image ({' '.join(IMAGE_EXTS)}) or point-cloud "
                         f"({' '.join(CLOUD_EXTS)}) files (expected {_LAYOUT})")
    ignored += [rel for rel in every if _kind_of(rel) != kind]
    for split, per_class in classes.items():
        for folder, files in per_class.items():
            if not any(_kind_of(rel) == kind for rel in files):
                what = "image" if kind == IMAGES else "point-cloud"
                raise CalipError(f"class folder {os.path.join(split_dirs[split], folder)} holds no {what} file")
    class_folders = tuple(sorted({c for per_class in classes.values() for c in per_class}))
    names_path = os.path.join(root, CLASSNAMES_FILE)
    if os.path.isfile(names_path):
        given = _read_classnames_file(names_path, class_folders)
        classnames = tuple(given[c] for c in class_folders)
    else:
        names_path, classnames = None, tuple(folder_classname(c) for c in class_folders)
    seen: dict[str, str] = {}
    for folder, cname in zip(class_folders, classnames):
        if not cname:
            raise CalipError(f"class folder {folder!r} of {root} gives an empty class name")
        if cname in seen:
            raise CalipError(f"class folders {seen[cname]!r} and {folder!r} of {root} both give the class name "
                             f"{cname!r}" + ("" if names_path else f" (name them in {CLASSNAMES_FILE})"))
        seen[cname] = folder
    label = {c: i for i, c in enumerate(class_folders)}
    files = {split: tuple(FolderFile(rel, label[c]) for c in sorted(per_class, key=label.get)
                          for rel in per_class[c] if _kind_of(rel) == kind)
             for split, per_class in classes.items()}
    return FolderScan(root, layout, kind, class_folders, classnames, names_path, files, tuple(ignored))
