"""Download one URL into a file, continuing a partial download with HTTP Range requests.

Written by hand rather than with `pooch.retrieve`: pooch downloads each URL from scratch into a temporary file, so
it cannot continue a transfer cut by a lost connection, a crash or Ctrl-C. Here the bytes go to a partial file of
their own per source URL, with a JSON file beside it recording the URL, the full size and the server's validator
(ETag/Last-Modified); the next attempt on that URL, in this run or a later one, asks only for the missing bytes
(`Range`, with `If-Range`) and starts afresh when the server answers 200 instead of 206. Bytes from two sources are
never mixed: for a file with no published checksum nothing would catch sources that differ. A body shorter than its
Content-Length counts as cut. A cut transfer is retried on the same URL a few times with a short back-off; anything
else fails the source at once (`SourceFailed`), leaving its partial file for the next run.
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import requests
import urllib3
from tqdm import tqdm

RETRIES = 3  # further attempts on the same URL after a cut transfer
BACKOFF_S = 1.0  # the k-th retry waits BACKOFF_S * 2**(k-1) seconds
TIMEOUT = (15, 60)  # seconds to connect, and between bytes
CHUNK = 1 << 20
_NETWORK_ERRORS = (urllib3.exceptions.HTTPError, requests.RequestException, ConnectionError, TimeoutError)

Log = Callable[[str], None]


def log_stderr(message: str) -> None:
    """The default report of a download's progress messages: one line on stderr."""
    print(message, file=sys.stderr)


class SourceFailed(Exception):
    """This URL cannot deliver the file; the message says why, and the next source is tried."""


class _Cut(Exception):
    """A transient failure (connection cut, server busy): retried on the same URL."""


class _Restart(_Cut):
    """The partial file cannot be continued: it is dropped and the download retried from the start."""


@dataclass
class _PartInfo:
    url: str
    total: int
    validator: str | None


def part_path(dest: Path, url: str) -> Path:
    """Where the bytes of `dest` from `url` go while they arrive (each source has its own partial file)."""
    return dest.with_name(f"{dest.name}.{hashlib.sha1(url.encode()).hexdigest()[:10]}.part")


def _info_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def fetch_url(url: str, dest: Path, session: requests.Session, size: int | None = None, progress: bool = True,
              log: Log = log_stderr) -> None:
    """Download `url` to `dest`, continuing the partial file of an earlier attempt on `url`; `size` = the exact byte
    count expected. Once `dest` is complete, the partial files of other sources of it are deleted.

    Raises `SourceFailed` when this URL cannot deliver the file; the partial file stays for the next attempt.
    """
    for attempt in range(RETRIES + 1):
        try:
            _attempt(url, dest, session, size, progress, log)
            return
        except _Cut as err:
            if attempt == RETRIES:
                raise SourceFailed(f"{err}; gave up after {RETRIES + 1} attempts (the partial file is kept)") from None
            delay = BACKOFF_S * 2 ** attempt
            log(f"{url}: {err}; retrying in {delay:g} s")
            time.sleep(delay)


def _attempt(url: str, dest: Path, session: requests.Session, size: int | None, progress: bool, log: Log) -> None:
    part = part_path(dest, url)
    info_file = _info_path(part)
    info = _read_info(info_file) if part.is_file() else None
    have = part.stat().st_size if info else 0
    if info is None or have > info.total:
        part.unlink(missing_ok=True)
        info, have = None, 0
    if info is None or have < info.total:
        headers = {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
            if info.validator:
                headers["If-Range"] = info.validator
        try:
            response = session.get(url, headers=headers, stream=True, timeout=TIMEOUT)
        except requests.RequestException as err:
            raise SourceFailed(_reason(err)) from None
        with response:
            try:
                start, total = _check_response(response, url, dest.name, have, info, size, log)
            except _Restart:
                part.unlink(missing_ok=True)
                raise
            if total is None:
                info_file.unlink(missing_ok=True)
            else:
                info_file.write_text(json.dumps(asdict(_PartInfo(url, total, _validator(response)))))
            _receive(response, part, dest.name, start, total, progress)
    part.replace(dest)
    for leftover in dest.parent.glob(f"{glob.escape(dest.name)}.*.part*"):
        leftover.unlink()


def _read_info(path: Path) -> _PartInfo | None:
    try:
        return _PartInfo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _validator(response: requests.Response) -> str | None:
    """A validator usable in If-Range: a strong ETag, else Last-Modified."""
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return response.headers.get("Last-Modified")


def _check_response(response: requests.Response, url: str, name: str, have: int, info: _PartInfo | None,
                    size: int | None, log: Log) -> tuple[int, int | None]:
    """(offset the body starts at, full size or None), or raise for a status that gives no usable body."""
    status = f"HTTP {response.status_code} {response.reason or ''}".strip()
    if response.status_code in (408, 429) or response.status_code >= 500:
        raise _Cut(status)
    if response.status_code == 416 and have:
        raise _Restart(f"{status} for the missing bytes; starting {name} afresh")
    if response.status_code not in (200, 206):
        raise SourceFailed(status)
    if response.status_code == 206:
        match = re.fullmatch(r"bytes (\d+)-\d+/(\d+)", response.headers.get("Content-Range", ""))
        if not have or info is None or match is None:
            raise SourceFailed(f"{status} without a usable Content-Range for a request of the whole file")
        start, total = int(match[1]), int(match[2])
        if (start, total) != (have, info.total):
            raise _Restart(f"Content-Range {response.headers['Content-Range']} does not continue the partial "
                           f"file ({have:,} of {info.total:,} bytes); starting {name} afresh")
    else:
        if have:
            log(f"{url}: the server ignored the Range request; downloading {name} afresh")
        start = 0
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    if size is not None and total is not None and total != size:
        raise SourceFailed(f"the server announces {total:,} bytes, the registry expects {size:,}")
    return start, size if total is None else total


def _receive(response: requests.Response, part: Path, name: str, start: int, total: int | None,
             progress: bool) -> None:
    """Append the body to `part` (from scratch when `start` is 0); a short body raises `_Cut`."""
    written = start
    with open(part, "ab" if start else "wb") as out, tqdm(
        total=total, initial=start, desc=name, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
        disable=not progress,
    ) as bar:
        try:
            for chunk in response.raw.stream(CHUNK, decode_content=False):
                out.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
        except _NETWORK_ERRORS as err:
            raise _Cut(f"transfer cut at byte {written:,}{_of(total)} ({_short(err)})") from None
    if total is not None and written < total:
        raise _Cut(f"transfer cut at byte {written:,}{_of(total)}")
    if total is not None and written > total:
        part.unlink()
        raise SourceFailed(f"the server sent {written:,} bytes, more than the {total:,} announced")


def _of(total: int | None) -> str:
    return "" if total is None else f" of {total:,}"


def _short(err: BaseException) -> str:
    """The innermost useful text of a requests/urllib3 error, without object reprs."""
    inner = err.args[0] if err.args and isinstance(err.args[0], BaseException) else err
    inner = getattr(inner, "reason", inner) or inner
    return re.sub(r"<[^>]*>: ", "", str(inner)) or type(err).__name__


def _reason(err: requests.RequestException) -> str:
    """One line saying why a request got no response at all."""
    if isinstance(err, requests.exceptions.SSLError):
        what = "TLS/certificate error"
    elif isinstance(err, requests.exceptions.Timeout):
        what = "connection timed out"
    elif isinstance(err, requests.ConnectionError):
        what = "connection failed"
    else:
        what = "request failed"
    return f"{what} ({_short(err)})"
