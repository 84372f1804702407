"""Fixtures of the fetch tests: a local HTTP server with switchable misbehaviour, and release archives built from
the real data in ../shared/data in the releases' own layouts.

Test modules load it with `pytest_plugins = ["fetch_helpers"]` and import its functions; it holds no assertions
(PYTEST_DONT_REWRITE: no assertion rewriting, so importing it before pytest loads it as a plugin is fine)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from calip3d.fetch import transfer
from calip3d.fetch.sources import RELEASES, Dataset, RemoteFile


class FileServer:
    """Serves the files under `root` on 127.0.0.1 (URL path = path under `root`), honouring Range and If-Range.

    Switches: `missing` paths answer 404; `cut[path]` = how many more responses to cut halfway (full Content-Length
    sent, then the connection closed); `ignore_range` paths answer 200 with the whole file. `requests` logs
    (path, Range header) in order.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.missing: set[str] = set()
        self.cut: dict[str, int] = {}
        self.ignore_range: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"files": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{path}"

    def put(self, path: str, data: bytes | Path) -> str:
        """Serve `data` at `path`; returns its URL."""
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data if isinstance(data, bytes) else data.read_bytes())
        return self.url(path)

    def count(self, path: str | None = None) -> int:
        """Requests for `path` (all requests when None)."""
        return sum(1 for p, _ in self.requests if path is None or p == path)

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


class _Handler(BaseHTTPRequestHandler):
    files: FileServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        state = self.files
        path = unquote(urlsplit(self.path).path).lstrip("/")
        asked = self.headers.get("Range")
        with state.lock:
            state.requests.append((path, asked))
            cut = state.cut.get(path, 0) > 0
            if cut:
                state.cut[path] -= 1
        file = state.root / path
        if path in state.missing or not file.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = file.read_bytes()
        etag = f'"{hashlib.sha1(data).hexdigest()}"'
        start, status = 0, 200
        match = re.fullmatch(r"bytes=(\d+)-", asked or "")
        if match and path not in state.ignore_range and self.headers.get("If-Range", etag) == etag:
            start, status = int(match[1]), 206
        if start >= len(data) and status == 206:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if cut:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if cut else body)
        if cut:
            self.wfile.flush()
            self.close_connection = True


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh FileServer serving tmp_path/'www' (downloads switched on: tests run with CALIP3D_OFFLINE=1); retries
    back off for milliseconds only."""
    monkeypatch.delenv("CALIP3D_OFFLINE", raising=False)
    monkeypatch.setattr(transfer, "BACKOFF_S", 0.01)
    files = FileServer(tmp_path / "www")
    files.thread.start()
    yield files
    files.httpd.shutdown()
    files.httpd.server_close()


def sha256(data: bytes | Path) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.read_bytes()).hexdigest()


def served(server: FileServer, file: RemoteFile, data: bytes | Path, folder: str = "a", checksum: bool = True,
           size: bool = False) -> RemoteFile:
    """`file` as served by the test server from /<folder>/<name>: with the sha256 of `data` (or no checksum), its
    exact size if asked, no Drive id and no alternative."""
    url = server.put(f"{folder}/{file.name}", data)
    content = data if isinstance(data, bytes) else data.read_bytes()
    return replace(file, urls=(url,), gdrive_id=None, alternative=None, size=len(content) if size else None,
                   checksum=f"sha256:{sha256(content)}" if checksum else None)


def substitute(monkeypatch: pytest.MonkeyPatch, key: str, *files: RemoteFile, **changes: object) -> Dataset:
    """Replace registry entry `key` by one with `files` (and other `changes`) for this test."""
    entry = replace(RELEASES[key], files=files, **changes)
    monkeypatch.setitem(RELEASES, key, entry)
    return entry


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def folder_members(folder: Path, prefix: str, names: list[str] | None = None) -> dict[str, bytes]:
    """{`prefix`/relative path: bytes} of the files under `folder` (or only `names`, relative paths)."""
    paths = [folder / n for n in names] if names is not None else sorted(p for p in folder.rglob("*") if p.is_file())
    return {f"{prefix}/{p.relative_to(folder).as_posix()}": p.read_bytes() for p in paths}


@pytest.fixture(scope="session")
def h5_release(modelnet_h5_dir: Path) -> dict[str, bytes]:
    """The members of modelnet40_ply_hdf5_2048.zip (the real h5 and txt files under modelnet40_ply_hdf5_2048/)."""
    return folder_members(modelnet_h5_dir, "modelnet40_ply_hdf5_2048")


@pytest.fixture(scope="session")
def h5_zip(h5_release: dict[str, bytes]) -> bytes:
    return zip_bytes(h5_release)


@pytest.fixture(scope="session")
def resampled_tar(modelnet_resampled_dir: Path) -> bytes:
    """modelnet40_normal_resampled as an uncompressed tar (as the Hugging Face '.tar.gz' copy is): the real class
    lists and shape files, the split lists trimmed to the first two shapes each."""
    lists = {}
    for stem in ("modelnet40_train", "modelnet40_test", "modelnet10_train", "modelnet10_test"):
        lines = (modelnet_resampled_dir / f"{stem}.txt").read_text().split()[:2]
        lists[f"{stem}.txt"] = "\n".join(lines) + "\n"
    shapes = sorted({f"{i.rsplit('_', 1)[0]}/{i}.txt" for text in lists.values() for i in text.split()})
    members = folder_members(modelnet_resampled_dir, "modelnet40_normal_resampled",
                             ["modelnet40_shape_names.txt", "modelnet10_shape_names.txt", *shapes])
    members.update({f"modelnet40_normal_resampled/{name}": text.encode() for name, text in lists.items()})
    return tar_bytes(members, mode="w")


@pytest.fixture(scope="session")
def caltech_release(caltech_root: Path) -> tuple[bytes, bytes]:
    """(caltech-101.zip, split_zhou_Caltech101.json): the zip holds caltech-101/101_ObjectCategories.tar.gz with
    the real images of CoOp's split entries for labels 0-2 (two per split and label); the json lists those."""
    real = json.loads((caltech_root / "caltech-101" / "split_zhou_Caltech101.json").read_text())
    split = {name: [entry for label in range(3) for entry in [e for e in entries if e[1] == label][:2]]
             for name, entries in real.items()}
    images = sorted({rel for entries in split.values() for rel, _, _ in entries})
    inner = tar_bytes(folder_members(caltech_root / "caltech-101" / "101_ObjectCategories", "101_ObjectCategories",
                                     images))
    outer = zip_bytes({"caltech-101/101_ObjectCategories.tar.gz": inner,
                       "caltech-101/show_annotation.m": b"% not read by calip3d\n"})
    return outer, json.dumps(split).encode()


def tree(folder: Path) -> list[str]:
    """Every path under `folder`, relative, sorted (to show that nothing was written where it should not be)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
