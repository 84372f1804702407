"""Getting one registry file: from each mirror, then the registry's URLs in order, then Google Drive; then from the
sources of its alternatives. Each complete download is verified before it is accepted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

import requests

from calip3d.errors import CalipError

from .manifest import FileRecord, Manifest
from .sources import RemoteFile
from .transfer import RETRIES, TIMEOUT, Log, SourceFailed, fetch_url, log_stderr
from .verify import verify_download

DRIVE_URL = "https://drive.google.com/uc?id={}"


@dataclass(frozen=True)
class Downloaded:
    """A verified download: `file` is the registry file it is (the one asked for, or one of its alternatives)."""

    file: RemoteFile
    path: Path
    record: FileRecord

    def remove(self) -> None:
        """Delete the download (once installed, or when it proved unusable)."""
        self.path.unlink(missing_ok=True)
        _source_note(self.path).unlink(missing_ok=True)


def source_urls(file: RemoteFile, mirrors: Sequence[str] = ()) -> list[str]:
    """Where `file` is looked for, in order: `<mirror>/<file name>` for each mirror, the registry's URLs, Drive."""
    urls = [f"{mirror}/{quote(file.name)}" for mirror in mirrors] + list(file.urls)
    return urls + ([DRIVE_URL.format(file.gdrive_id)] if file.gdrive_id else [])


def download_file(file: RemoteFile, folder: Path, mirrors: Sequence[str], manifest: Manifest,
                  session: requests.Session, progress: bool = True, log: Log = log_stderr) -> Downloaded:
    """Download `file` (or else one of its alternatives) into `folder` and verify it.

    A complete copy already in `folder` (from an earlier run that stopped later) is verified and reused. Each
    source that fails is reported in one line through `log` and the next is tried; when all fail, `CalipError`
    lists every URL tried and why.
    """
    failures: list[str] = []
    for choice in file.choices():
        dest = folder / choice.name
        note = _source_note(dest)
        if dest.is_file():
            url = note.read_text().strip() if note.is_file() else ""
            try:
                return Downloaded(choice, dest, verify_download(dest, choice, url, manifest, log))
            except CalipError as err:
                log(f"{err}; downloading it again")
        for url in source_urls(choice, mirrors):
            try:
                if choice.gdrive_id and url == DRIVE_URL.format(choice.gdrive_id):
                    _from_drive(choice.gdrive_id, dest, progress)
                else:
                    fetch_url(url, dest, session, choice.size, progress, log)
                record = verify_download(dest, choice, url, manifest, log)
            except (SourceFailed, CalipError) as err:
                failures.append(f"  {url}: {err}")
                log(f"{choice.name}: {url} failed: {err}")
                continue
            except OSError as err:  # the network errors are SourceFailed: this is the local disk
                raise CalipError(f"cannot write {choice.name} into {folder}: {err}") from None
            note.write_text(url + "\n")
            return Downloaded(choice, dest, record)
    names = " or ".join(choice.name for choice in file.choices())
    raise CalipError(
        f"could not download {names} from any source:\n" + "\n".join(failures or ["  (no source is known)"])
        + f"\nGive a mirror holding {names} (`calip3d fetch --mirror URL` or CALIP3D_MIRROR), or try again later: "
        f"partial downloads in {folder} are continued."
    )


def _source_note(dest: Path) -> Path:
    """Where the URL a download came from is kept until it is installed."""
    return dest.with_name(dest.name + ".url")


def _from_drive(file_id: str, dest: Path, progress: bool) -> None:
    """Google Drive (confirmation pages of large files, quotas) is gdown's job; it resumes its own partial file.
    (Imported here: only a Drive download needs it.)"""
    import gdown

    try:
        gdown.download(id=file_id, output=str(dest), quiet=not progress, resume=True, retries=RETRIES,
                       timeout=TIMEOUT)
    except (gdown.exceptions.DownloadError, requests.RequestException, OSError) as err:
        raise SourceFailed(f"Google Drive via gdown: {err}") from None
