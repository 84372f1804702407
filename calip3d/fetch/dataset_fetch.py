"""Fetching a dataset into the data root: download, verify, extract into a temporary folder under the root, run the
dataset's layout check there, and only then move the dataset's folder into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import requests

from calip3d import __version__
from calip3d.datasets.registry import folder_path, get_dataset
from calip3d.errors import CalipError

from .catalog import LayoutCheck, default_layout_check, layout_problem, resolve_dataset
from .download import Downloaded, download_file
from .env import OFFLINE_ENV, check_mirror, data_root, mirrors_from_env, offline
from .install import install_file
from .manifest import FileRecord, Manifest
from .sources import RELEASES, Dataset
from .transfer import Log, log_stderr

try:
    import fcntl
except ImportError:  # Windows: no lock between processes fetching the same dataset
    fcntl = None

DOWNLOADS = ".calip3d-downloads"  # under the root: partial and not yet installed downloads, and lock files
TMP_PREFIX = ".calip3d-tmp-"  # under the root: where a dataset is assembled and checked before it is moved in


@dataclass
class FetchReport:
    """What `fetch_dataset` did: `fetched` False means the dataset was already usable and nothing was downloaded."""

    dataset: str  # registry key
    root: Path
    folder: Path
    fetched: bool
    files: list[FileRecord] = field(default_factory=list)


def fetch_dataset(name: str, root: str | os.PathLike | None = None, mirrors: Sequence[str] | None = None,
                  layout_check: LayoutCheck | None = None, fmt: str | None = None, progress: bool = True,
                  log: Log = log_stderr) -> FetchReport:
    """Make dataset `name` (as `eval` takes it, with point-cloud format `fmt`) usable under `root`.

    Nothing is downloaded when `layout_check(root)` already passes. Otherwise each file is downloaded (mirrors
    first, then the registry's sources), verified, extracted into a temporary folder under the root, and the
    dataset's folder is moved into place only when `layout_check` passes on that temporary copy. `root` None =
    `default_data_root()`; `mirrors` None = `$CALIP3D_MIRROR`; `layout_check` None = `default_layout_check`.
    Raises `CalipError` for a manual-only dataset (with what to get, from where and where to put it), when
    `$CALIP3D_OFFLINE` is set, when every source of a file fails, or when the result is unusable.
    """
    entry = resolve_dataset(name, fmt)
    root = data_root(root)
    mirrors = mirrors_from_env() if mirrors is None else [check_mirror(url) for url in mirrors]
    check = layout_check or default_layout_check(entry)
    problem = layout_problem(check, root)
    if problem is None:
        return FetchReport(entry.key, root, root / entry.folder, fetched=False)
    if entry.access == "manual" or (entry.access == "mirror" and not mirrors):
        raise CalipError(manual_message(entry, root, problem))
    if offline():
        raise CalipError(f"{problem}\n{entry.key} is missing and {OFFLINE_ENV}=1 turns downloads off")
    downloads = root / DOWNLOADS
    try:
        downloads.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CalipError(f"cannot create {downloads} under the data root: {err}") from None
    with _locked(downloads / f"{entry.key}.lock", entry.key, log):
        problem = layout_problem(check, root)  # another process may have fetched it meanwhile
        if problem is None:
            return FetchReport(entry.key, root, root / entry.folder, fetched=False)
        target = root / entry.folder
        if os.path.lexists(target):
            raise CalipError(f"{problem}\n{target} exists but is not a usable {entry.key}; calip3d does not overwrite "
                             f"it: complete it by hand, or move it away and fetch {entry.key} again")
        manifest = Manifest(root)
        with requests.Session() as session:
            session.headers["User-Agent"] = f"calip3d/{__version__}"
            done = [download_file(file, downloads, mirrors, manifest, session, progress, log) for file in entry.files]
        _install(entry, root, done, check)
        records = [item.record for item in done]
        manifest.record_install(entry.key, entry.folder, records)
        for item in done:
            item.remove()
    for record in records:
        if record.checksum is None:
            log(f"{record.name}: sha256 {record.sha256} recorded in {manifest.path}")
    log(f"{entry.key}: ready in {target}")
    return FetchReport(entry.key, root, target, fetched=True, files=records)


def ensure_dataset(name: str, root: str | os.PathLike | None = None, download: bool = True,
                   mirrors: Sequence[str] | None = None, layout_check: LayoutCheck | None = None,
                   fmt: str | None = None, progress: bool = True, log: Log = log_stderr,
                   no_download_reason: str = "--no-download") -> FetchReport:
    """What `eval`, `fewshot` and `tune-views` call first: nothing when the dataset is usable, else `fetch_dataset`.

    With `download=False` or `$CALIP3D_OFFLINE` set, a missing dataset raises the layout check's `CalipError` (the
    expected layout), followed by why downloads are off (`no_download_reason` when `download` is False, e.g.
    "several ranks under torchrun") and the `calip3d fetch` command that gets it. A folder dataset (`folder:PATH`) is
    never fetched: nothing is done (its loader reports what is wrong with it).
    """
    folder = None if name in RELEASES else folder_path(name)
    if folder is not None:
        return FetchReport(name, data_root(root), Path(folder), fetched=False)
    entry = resolve_dataset(name, fmt)
    root = data_root(root)
    asked = None if name in RELEASES else [get_dataset(name).name]  # a loader name: not its release's siblings
    check = layout_check or default_layout_check(entry, asked)
    problem = layout_problem(check, root)
    if problem is None:
        return FetchReport(entry.key, root, root / entry.folder, fetched=False)
    if fmt is None and layout_check is None:  # the loaders also read another release when only that one is there
        for other in _other_formats(name, entry):
            if layout_problem(default_layout_check(other), root) is None:
                return FetchReport(other.key, root, root / other.folder, fetched=False)
    if entry.access == "manual" or (entry.access == "mirror" and not (mirrors_from_env() if mirrors is None
                                                                      else mirrors)):
        raise CalipError(manual_message(entry, root, problem))
    if not download or offline():
        reason = no_download_reason if not download else f"{OFFLINE_ENV}=1"
        command = f"calip3d fetch {name}" + (f" --format {fmt}" if fmt else "") + f" --root {root}"
        raise CalipError(f"{problem}\n{name} is missing and automatic download is off ({reason}); get it with: "
                         f"{command}")
    return fetch_dataset(name, root, mirrors, check, fmt, progress, log)


def _other_formats(name: str, entry: Dataset) -> list[Dataset]:
    """The registry entries of `name`'s other point-cloud formats (ModelNet40: the resampled release)."""
    formats = get_dataset(name).formats
    return [resolve_dataset(name, f) for f in formats if f != entry.fmt]


def manual_message(entry: Dataset, root: Path, problem: CalipError) -> str:
    """What to get, from where and where to put it, for a dataset calip3d does not download itself."""
    return (f"{entry.title} is not under the data root {root}, and calip3d cannot download it: "
            f"{entry.instructions.replace('{root}', str(root))}\n{problem}")


@contextmanager
def _locked(path: Path, key: str, log: Log) -> Iterator[None]:
    """Hold an exclusive lock on `path` (released if the process dies), waiting for another process that holds it."""
    with open(path, "a") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log(f"waiting for another calip3d process that is fetching {key} (lock {path})")
                fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _install(entry: Dataset, root: Path, done: Sequence[Downloaded], check: LayoutCheck) -> None:
    """Assemble the dataset in a temporary folder under `root`, check it, and move its folder into place.

    On a refused archive or a failed check the downloads are deleted (they are unusable) and nothing is moved.
    """
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=root))
    try:
        staging = tmp / "root"
        try:
            for item in done:
                install_file(item.path, item.file, staging, tmp / "unpacked")
            problem = layout_problem(check, staging)
            if problem is not None:
                raise CalipError(f"{entry.key}: the downloaded files do not make a usable dataset, so nothing was "
                                 f"put in place:\n{problem}")
        except CalipError:
            for item in done:
                item.remove()
            raise
        target = root / entry.folder
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / entry.folder, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
