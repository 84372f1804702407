"""The files of a dataset release and how each becomes part of the dataset: plain data, written in the dataset
records (`calip3d.records`) and read by `calip3d.fetch` (which downloads, verifies and installs them)."""

from __future__ import annotations

from dataclasses import dataclass

ACCESS = ("download", "mirror", "manual")


@dataclass(frozen=True)
class Install:
    """How a downloaded file becomes part of the dataset: `target` is its path under the data root.

    A plain file (`archive=False`) is copied to `target`. An archive is extracted, then each of `nested` (archives
    inside it, each relative to the previous extraction) in turn, and `take` (a path inside the last extraction,
    "" = all of it) becomes `target`.
    """

    target: str
    archive: bool = False
    take: str = ""
    nested: tuple[str, ...] = ()


def copy_to(target: str) -> Install:
    """A plain file placed at `target`."""
    return Install(target)


def unpack(take: str, target: str, nested: tuple[str, ...] = ()) -> Install:
    """An archive whose `take` folder (after extracting `nested` archives in turn) becomes `target`."""
    return Install(target, archive=True, take=take, nested=nested)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset release.

    `name` is the release's own file name (also the path tried on a mirror); `urls` are tried in order, then
    Google Drive (`gdrive_id`, through gdown). `size` is an exact byte count or None; `size_hint` an approximate
    size, shown only. `checksum` is "sha256:<hex>" or "md5:<hex>" as published, or None. `alternative` is a
    different file giving the same data, tried when every source of this one fails. `install` is None for files
    that calip3d never installs itself (manual-only datasets).
    """

    name: str
    install: Install | None
    urls: tuple[str, ...] = ()
    gdrive_id: str | None = None
    size: int | None = None
    checksum: str | None = None
    size_hint: str | None = None
    alternative: RemoteFile | None = None

    def choices(self) -> tuple[RemoteFile, ...]:
        """This file, then its alternatives in order."""
        return (self,) + (self.alternative.choices() if self.alternative else ())


@dataclass(frozen=True)
class Release:
    """One release to fetch (`calip3d.fetch.sources.Dataset`): the files that make up `folder` (a folder directly
    under the data root).

    `loaders` are the dataset names the loaders take for this release (all are checked for presence), with
    point-cloud format `fmt`. `access`: "download"; "mirror" (the official host is gone: fetched only from a
    user-given mirror, checked by checksum); "manual" (never downloaded: `instructions` say what to get, from where,
    where to put it). `origin` says where its files come from, as data/README.md's dataset tables show it.
    """

    key: str
    title: str
    folder: str
    files: tuple[RemoteFile, ...]
    loaders: tuple[str, ...]
    fmt: str | None = None
    access: str = "download"
    instructions: str = ""
    origin: str = ""

    def __post_init__(self) -> None:
        if self.access not in ACCESS:
            raise ValueError(f"{self.key}: access must be one of {ACCESS}, got {self.access!r}")
