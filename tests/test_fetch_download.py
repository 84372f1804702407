"""One registry file: mirror order, fallback, one error listing every source, checksums, sizes, the manifest, Drive."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import gdown
import pytest
import requests

from calip3d.errors import CalipError
from calip3d.fetch.download import DRIVE_URL, download_file, source_urls
from calip3d.fetch.manifest import Manifest
from calip3d.fetch.sources import RemoteFile, copy_to
from calip3d.fetch.verify import parse_checksum, verify_download
from fetch_helpers import sha256

pytest_plugins = ["fetch_helpers"]  # fixture: server

DATA = os.urandom(100_000)
FILE = RemoteFile("release.zip", copy_to("x/release.zip"))


def download(file: RemoteFile, folder: Path, mirrors: tuple[str, ...] = (), log: list[str] | None = None):
    with requests.Session() as session:
        return download_file(file, folder, mirrors, Manifest(folder), session, progress=False,
                             log=(log if log is not None else []).append)


def test_mirrors_first_then_registry_urls_in_order(server, tmp_path):
    good = server.put("b/release.zip", DATA)
    file = RemoteFile("release.zip", copy_to("x"), urls=(server.url("a/release.zip"), good),
                      checksum=f"sha256:{sha256(DATA)}", gdrive_id="drive-id")
    mirrors = (server.url("m1"), server.url("m2"))
    assert source_urls(file, mirrors) == [server.url("m1/release.zip"), server.url("m2/release.zip"),
                                          server.url("a/release.zip"), good, DRIVE_URL.format("drive-id")]
    log: list[str] = []
    done = download(file, tmp_path, mirrors, log)
    assert server.paths() == ["m1/release.zip", "m2/release.zip", "a/release.zip", "b/release.zip"]
    assert done.path.read_bytes() == DATA and done.record.url == good and done.record.sha256 == sha256(DATA)
    assert len(log) == 3 and all("HTTP 404" in line for line in log)  # one line per failed source


def test_a_mirror_holding_the_file_is_used_before_the_registry(server, tmp_path):
    server.put("m/release.zip", DATA)
    file = RemoteFile("release.zip", copy_to("x"), urls=(server.url("a/release.zip"),),
                      checksum=f"sha256:{sha256(DATA)}")
    download(file, tmp_path, (server.url("m"),))
    assert server.paths() == ["m/release.zip"]


def test_all_sources_failing_is_one_error_listing_each(server, tmp_path):
    file = RemoteFile("release.zip", copy_to("x"), urls=(server.url("a/release.zip"), "http://127.0.0.1:9/x.zip"))
    with pytest.raises(CalipError) as info:
        download(file, tmp_path, (server.url("m"),))
    text = str(info.value)
    assert text.startswith("could not download release.zip from any source:")
    assert f"  {server.url('m/release.zip')}: HTTP 404" in text
    assert f"  {server.url('a/release.zip')}: HTTP 404" in text
    assert "  http://127.0.0.1:9/x.zip: connection failed" in text
    assert "--mirror" in text


def test_checksum_mismatch_deletes_and_names_file_expected_actual(server, tmp_path):
    expected = "0" * 64
    file = RemoteFile("release.zip", copy_to("x"), urls=(server.put("a/release.zip", DATA),),
                      checksum=f"sha256:{expected}")
    with pytest.raises(CalipError) as info:
        download(file, tmp_path)
    assert f"checksum mismatch for release.zip: expected sha256 {expected}, actual sha256 {sha256(DATA)}" in str(
        info.value)
    assert not (tmp_path / "release.zip").exists()


def test_a_bad_copy_falls_back_to_the_next_source(server, tmp_path):
    bad = server.put("m/release.zip", DATA[:-1] + bytes([DATA[-1] ^ 1]))
    file = RemoteFile("release.zip", copy_to("x"), urls=(server.put("a/release.zip", DATA),),
                      checksum=f"sha256:{sha256(DATA)}")
    done = download(file, tmp_path, (bad.rsplit("/", 1)[0],))
    assert done.record.url.endswith("/a/release.zip") and done.path.read_bytes() == DATA


def test_md5_checksum(server, tmp_path):
    md5 = hashlib.md5(DATA).hexdigest()
    file = RemoteFile("EuroSAT.zip", copy_to("x"), urls=(server.put("a/EuroSAT.zip", DATA),), checksum=f"md5:{md5}")
    done = download(file, tmp_path)
    assert done.record.checksum == f"md5:{md5}" and done.record.sha256 == sha256(DATA)
    with pytest.raises(CalipError, match=f"expected md5 {'f' * 32}, actual md5 {md5}"):
        verify_download(done.path, RemoteFile("EuroSAT.zip", None, checksum=f"md5:{'F' * 32}"), "", Manifest(tmp_path))


def test_byte_count_mismatch(server, tmp_path):
    path = tmp_path / "release.zip"
    path.write_bytes(DATA)
    with pytest.raises(CalipError, match="release.zip has 100,000 bytes, expected 100,001 \\(its published size\\)"):
        verify_download(path, RemoteFile("release.zip", None, size=100_001), "", Manifest(tmp_path))
    assert not path.exists()
    exact = RemoteFile("release.zip", copy_to("x"), urls=(server.put("a/release.zip", DATA),), size=len(DATA))
    assert download(exact, tmp_path).record.size == len(DATA)  # an exact size suffices without a checksum


def test_manifest_sha256_is_shown_then_enforced(server, tmp_path):
    file = RemoteFile("release.zip", copy_to("x"), urls=(server.put("a/release.zip", DATA),))
    log: list[str] = []
    done = download(file, tmp_path, log=log)
    assert log == [f"release.zip: no checksum is published; its sha256 is {sha256(DATA)}"]
    Manifest(tmp_path).record_install("x", "x", [done.record])
    done.remove()
    assert Manifest(tmp_path).file("release.zip") == done.record
    assert download(file, tmp_path).record.sha256 == sha256(DATA)  # same bytes again: accepted
    (tmp_path / "release.zip").unlink()
    server.put("a/release.zip", DATA[::-1])
    with pytest.raises(CalipError) as info:
        download(file, tmp_path)
    text = str(info.value)
    assert f"expected sha256 {sha256(DATA)} (recorded in {tmp_path / '.calip3d-manifest.json'}" in text
    assert f"actual sha256 {sha256(DATA[::-1])}" in text
    assert not (tmp_path / "release.zip").exists()


def test_complete_earlier_download_is_reused_without_a_request(server, tmp_path):
    file = RemoteFile("release.zip", copy_to("x"), urls=(server.put("a/release.zip", DATA),),
                      checksum=f"sha256:{sha256(DATA)}")
    first = download(file, tmp_path)
    again = download(file, tmp_path)
    assert server.count() == 1 and again.record == first.record  # the URL it came from is remembered


def test_alternative_file_after_every_source_of_the_first(server, tmp_path):
    other = RemoteFile("other.tar", copy_to("y"), urls=(server.put("a/other.tar", DATA),))
    file = RemoteFile("release.zip", copy_to("x"), urls=(server.url("a/release.zip"),), alternative=other)
    done = download(file, tmp_path, (server.url("m"),))
    assert server.paths() == ["m/release.zip", "a/release.zip", "m/other.tar", "a/other.tar"]
    assert done.file == other and done.path == tmp_path / "other.tar"


def test_google_drive_goes_through_gdown_after_the_urls(server, tmp_path, monkeypatch):
    calls = []

    def fake_download(id: str, output: str, **kwargs: object) -> str:
        calls.append((id, kwargs["resume"]))
        Path(output).write_bytes(DATA)
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    file = RemoteFile("split.json", copy_to("x"), urls=(server.url("a/split.json"),), gdrive_id="abc")
    done = download(file, tmp_path)
    assert calls == [("abc", True)] and server.paths() == ["a/split.json"]
    assert done.record.url == DRIVE_URL.format("abc")

    def failing(**kwargs: object) -> str:
        raise gdown.exceptions.FileURLRetrievalError("Too many users have viewed or downloaded this file")

    monkeypatch.setattr(gdown, "download", failing)
    with pytest.raises(CalipError, match=re.escape(f"{DRIVE_URL.format('def')}: Google Drive via gdown: Too many")):
        download(RemoteFile("other.json", copy_to("x"), gdrive_id="def"), tmp_path)


@pytest.mark.parametrize("text", ["sha1:abc", "sha256:xyz", "md5:" + "0" * 31, "0" * 64])
def test_malformed_checksums_are_rejected(text):
    with pytest.raises(ValueError):
        parse_checksum(text)
    assert parse_checksum("sha256:" + "AB" * 32) == ("sha256", "ab" * 32)
