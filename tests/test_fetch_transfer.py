"""One URL into one file: Range resume after a cut, across runs, and when the server ignores Range or the file changed."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import requests

from calip3d.fetch import transfer
from calip3d.fetch.transfer import SourceFailed, fetch_url, part_path

pytest_plugins = ["fetch_helpers"]  # fixture: server

DATA = os.urandom(300_000)


def get(url: str, dest: Path, size: int | None = None, log: list[str] | None = None) -> None:
    with requests.Session() as session:
        fetch_url(url, dest, session, size=size, progress=False, log=(log if log is not None else []).append)


def interrupted_run(server, tmp_path: Path, match: str | None = None) -> tuple[str, Path]:
    """A first run whose every attempt is cut: it fails and leaves its partial file. Returns (url, destination)."""
    url = server.put("a/data.bin", DATA)
    server.cut["a/data.bin"] = transfer.RETRIES + 1
    dest = tmp_path / "data.bin"
    with pytest.raises(SourceFailed, match=match):
        get(url, dest)
    return url, dest


def test_cut_halfway_is_resumed_with_range(server, tmp_path):
    url = server.put("a/data.bin", DATA)
    server.cut["a/data.bin"] = 1
    log: list[str] = []
    get(url, tmp_path / "data.bin", log=log)
    assert (tmp_path / "data.bin").read_bytes() == DATA
    assert server.requests == [("a/data.bin", None), ("a/data.bin", f"bytes={len(DATA) // 2}-")]
    assert "transfer cut at byte 150,000 of 300,000" in log[0]
    assert sorted(os.listdir(tmp_path)) == ["data.bin", "www"]  # no partial file left


def test_progress_bar_goes_to_stderr(server, tmp_path, capsys):
    url = server.put("a/data.bin", DATA)
    with requests.Session() as session:
        fetch_url(url, tmp_path / "data.bin", session, progress=True, log=print)
    captured = capsys.readouterr()
    assert "data.bin" in captured.err and "100%" in captured.err and captured.out == ""


def test_partial_file_is_kept_and_continued_by_the_next_run(server, tmp_path):
    url, dest = interrupted_run(server, tmp_path, match=f"gave up after {transfer.RETRIES + 1} attempts")
    assert not dest.exists()
    kept = part_path(dest, url).stat().st_size
    assert len(DATA) // 2 <= kept < len(DATA)
    server.requests.clear()
    get(url, dest)  # a later run
    assert dest.read_bytes() == DATA
    assert server.requests == [("a/data.bin", f"bytes={kept}-")]


def test_server_ignoring_range_gives_a_fresh_download(server, tmp_path):
    url = server.put("a/data.bin", DATA)
    server.cut["a/data.bin"] = 1
    server.ignore_range.add("a/data.bin")
    log: list[str] = []
    get(url, tmp_path / "data.bin", log=log)
    assert (tmp_path / "data.bin").read_bytes() == DATA  # not the first half followed by the whole file
    assert server.requests[1][1] == f"bytes={len(DATA) // 2}-"
    assert any("ignored the Range request" in line for line in log)


def test_file_changed_upstream_is_not_spliced(server, tmp_path):
    url, dest = interrupted_run(server, tmp_path)
    new = bytes(reversed(DATA))
    server.put("a/data.bin", new)  # same size, other bytes: If-Range makes the server send all of it
    get(url, dest)
    assert dest.read_bytes() == new


def test_each_source_keeps_its_own_partial_file(server, tmp_path):
    first, second = server.put("a/data.bin", DATA), server.put("b/data.bin", DATA)
    server.cut.update({"a/data.bin": transfer.RETRIES + 1, "b/data.bin": transfer.RETRIES + 2})
    dest = tmp_path / "data.bin"
    for url in (first, second):  # a first run: both sources cut every time
        with pytest.raises(SourceFailed):
            get(url, dest)
    kept = {url: part_path(dest, url).stat().st_size for url in (first, second)}
    server.requests.clear()
    get(first, dest)  # a later run: the first source continues its own bytes, never the second's
    assert server.requests == [("a/data.bin", f"bytes={kept[first]}-")] and dest.read_bytes() == DATA
    assert sorted(os.listdir(tmp_path)) == ["data.bin", "www"]  # the other source's partial file is gone too


def test_complete_partial_file_needs_no_request(server, tmp_path):
    url, dest = interrupted_run(server, tmp_path)
    with open(part_path(dest, url), "ab") as fh:  # as if the last bytes had arrived before a crash
        fh.write(DATA[part_path(dest, url).stat().st_size:])
    server.requests.clear()
    get(url, dest)
    assert dest.read_bytes() == DATA and server.requests == []


def test_http_error_fails_the_source_at_once(server, tmp_path):
    with pytest.raises(SourceFailed, match="HTTP 404"):
        get(server.url("a/none.bin"), tmp_path / "none.bin")
    assert server.count() == 1 and not list(tmp_path.glob("none.bin*"))


def test_announced_size_other_than_the_registry_fails_the_source(server, tmp_path):
    url = server.put("a/data.bin", DATA)
    with pytest.raises(SourceFailed, match="announces 300,000 bytes, the registry expects 300,001"):
        get(url, tmp_path / "data.bin", size=len(DATA) + 1)
    assert not (tmp_path / "data.bin").exists()


def test_refused_connection_fails_the_source(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SourceFailed, match="connection failed"):
        get(f"http://127.0.0.1:{port}/x.bin", tmp_path / "x.bin")
