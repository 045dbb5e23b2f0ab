"""Downloads against a local HTTP server (127.0.0.1, ephemeral port) that honours Range requests."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from eqdyn.config import validate_config
from eqdyn.data import acquire, download
from eqdyn.data.download import (
    RECORDED_CHECKSUMS,
    ArchiveError,
    ChecksumMismatch,
    DownloadError,
    RemoteFile,
    extract_or_explain,
    fetch,
    load_registry,
    remote_files,
)

PAYLOAD = bytes(range(256)) * 400  # 100 kB


class Server:
    """Serves ``files`` (path -> bytes); records every request's Range header and response status."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.announced: dict[str, int] = {}  # path -> Content-Length to claim instead of the true one (truncation)
        self.requests: list[tuple[str | None, int]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = server.files.get(self.path)
                range_header = self.headers.get("Range")
                if body is None:
                    server.requests.append((range_header, 404))
                    self.send_error(404)
                    return
                start = 0
                if range_header:
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        server.requests.append((range_header, 416))
                        self.send_error(416)
                        return
                status = 206 if range_header else 200
                server.requests.append((range_header, status))
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(server.announced.get(self.path, len(body)) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    instance = Server()
    yield instance
    instance.close()


def published(url: str, data: bytes, algorithm: str = "sha256") -> RemoteFile:
    digest = hashlib.new(algorithm, data).hexdigest()
    return RemoteFile("data.bin", url, algorithm, digest, "published", "test")


def test_good_checksum_passes(server: Server, tmp_path: Path) -> None:
    server.files["/data.bin"] = PAYLOAD
    path = fetch(published(server.url + "/data.bin", PAYLOAD, "md5"), tmp_path)
    assert path == tmp_path / "data.bin"
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "data.bin.part").exists()


def test_corrupt_download_fails_naming_file_and_hashes_and_is_moved_aside(server: Server, tmp_path: Path) -> None:
    corrupted = bytearray(PAYLOAD)
    corrupted[1234] ^= 0xFF
    server.files["/data.bin"] = bytes(corrupted)
    remote = published(server.url + "/data.bin", PAYLOAD)
    with pytest.raises(ChecksumMismatch) as error:
        fetch(remote, tmp_path)
    message = str(error.value)
    actual = hashlib.sha256(bytes(corrupted)).hexdigest()
    assert "data.bin" in message and remote.checksum in message and actual in message
    assert not (tmp_path / "data.bin").exists() and not (tmp_path / "data.bin.part").exists()
    assert (tmp_path / f"data.bin.corrupt-{actual[:12]}").read_bytes() == bytes(corrupted)


def test_corrupt_cached_file_is_not_reused(server: Server, tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(b"not the payload")
    with pytest.raises(ChecksumMismatch, match=r"data\.bin"):
        fetch(published(server.url + "/data.bin", PAYLOAD), tmp_path)
    assert not (tmp_path / "data.bin").exists()
    assert server.requests == []  # failed on the cached file, before any network access


def test_resume_from_partial_file(server: Server, tmp_path: Path) -> None:
    server.files["/data.bin"] = PAYLOAD
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:40_000])
    path = fetch(published(server.url + "/data.bin", PAYLOAD), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("bytes=40000-", 206)]


def test_complete_partial_file_is_verified_not_refetched(server: Server, tmp_path: Path) -> None:
    server.files["/data.bin"] = PAYLOAD
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    assert fetch(published(server.url + "/data.bin", PAYLOAD), tmp_path).read_bytes() == PAYLOAD
    assert server.requests == [(f"bytes={len(PAYLOAD)}-", 416)]


def test_record_on_first_download_then_verify(server: Server, tmp_path: Path) -> None:
    server.files["/data.bin"] = PAYLOAD
    remote = RemoteFile("data.bin", server.url + "/data.bin", None, None, "record-on-first-download", "none")
    fetch(remote, tmp_path)
    recorded = json.loads((tmp_path / RECORDED_CHECKSUMS).read_text())["data.bin"]
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert recorded["checksum"] == digest and recorded["algorithm"] == "sha256"
    assert recorded["provenance"] == "recorded, not published"

    fetch(remote, tmp_path)  # cached file verified against the recorded digest
    (tmp_path / "data.bin").unlink()
    server.files["/data.bin"] = PAYLOAD[::-1]
    with pytest.raises(ChecksumMismatch, match=f"expected sha256 {digest} \\(recorded, not published\\)"):
        fetch(remote, tmp_path)


def unrecorded(url: str, filename: str = "data.bin", extract: str | None = None) -> RemoteFile:
    return RemoteFile(filename, url, None, None, "record-on-first-download", "none", extract)


def recorded(download_dir: Path) -> dict:
    path = download_dir / RECORDED_CHECKSUMS
    return json.loads(path.read_text()) if path.exists() else {}


def test_a_resumed_part_is_never_recorded_as_the_reference(server: Server, tmp_path: Path) -> None:
    server.files["/data.bin"] = PAYLOAD
    (tmp_path / "data.bin.part").write_bytes(b"corrupted start of an interrupted download")
    fetch(unrecorded(server.url + "/data.bin"), tmp_path)
    assert server.requests == [(None, 200)]  # started over from byte 0 instead of resuming the junk
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert recorded(tmp_path)["data.bin"]["checksum"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert recorded(tmp_path)["data.bin"]["bytes"] == len(PAYLOAD)


def test_a_file_found_in_the_download_folder_is_never_recorded(server: Server, tmp_path: Path) -> None:
    server.files["/data.bin"] = PAYLOAD
    (tmp_path / "data.bin").write_bytes(b"junk placed by hand")
    fetch(unrecorded(server.url + "/data.bin"), tmp_path)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert recorded(tmp_path)["data.bin"]["checksum"] == hashlib.sha256(PAYLOAD).hexdigest()
    (aside,) = tmp_path.glob("data.bin.unverified-*")
    assert aside.read_bytes() == b"junk placed by hand"


def test_an_entry_recorded_by_older_code_is_not_trusted(server: Server, tmp_path: Path) -> None:
    server.files["/data.bin"] = PAYLOAD
    (tmp_path / "data.bin").write_bytes(b"resumed junk")
    legacy = {
        "url": server.url + "/data.bin",
        "algorithm": "sha256",
        "checksum": hashlib.sha256(b"resumed junk").hexdigest(),
        "bytes": 12,
        "provenance": "recorded, not published",
    }
    (tmp_path / RECORDED_CHECKSUMS).write_text(json.dumps({"data.bin": legacy}))
    fetch(unrecorded(server.url + "/data.bin"), tmp_path)
    assert recorded(tmp_path)["data.bin"]["checksum"] == hashlib.sha256(PAYLOAD).hexdigest()


def test_a_short_body_fails_naming_the_url_and_records_nothing(server: Server, tmp_path: Path) -> None:
    server.files["/data.bin"] = PAYLOAD
    server.announced["/data.bin"] = len(PAYLOAD) + 5000  # the connection closes before the announced end
    with pytest.raises(DownloadError, match=f"{server.url}/data.bin.*data.bin") as error:
        fetch(unrecorded(server.url + "/data.bin"), tmp_path)
    assert "rerun to resume" in str(error.value)
    assert recorded(tmp_path) == {} and not (tmp_path / "data.bin").exists()


def test_a_size_different_from_the_published_one_fails(server: Server, tmp_path: Path) -> None:
    server.files["/data.bin"] = PAYLOAD[:-1]
    remote = RemoteFile(
        "data.bin", server.url + "/data.bin", "sha256", "0" * 64, "published", "test", None, len(PAYLOAD)
    )
    with pytest.raises(
        ChecksumMismatch, match=f"size mismatch for data.bin .*{len(PAYLOAD) - 1} bytes.*{len(PAYLOAD)}"
    ):
        fetch(remote, tmp_path)
    assert not (tmp_path / "data.bin").exists() and list(tmp_path.glob("data.bin.corrupt-*"))


def test_a_junk_zip_fails_naming_file_and_url_and_leaves_no_extracting_folder(server: Server, tmp_path: Path) -> None:
    server.files["/qm9.zip"] = b"<html>not a zip: an error page</html>"
    remote = unrecorded(server.url + "/qm9.zip", "qm9.zip", extract="zip")
    archive = fetch(remote, tmp_path)
    with pytest.raises(ArchiveError) as error:
        extract_or_explain(remote, archive, tmp_path)
    message = str(error.value)
    assert "qm9.zip" in message and server.url + "/qm9.zip" in message and "rerun to download it again" in message
    assert not (tmp_path / "qm9.zip.d.extracting").exists() and not (tmp_path / "qm9.zip.d").exists()
    assert not archive.exists() and list(tmp_path.glob("qm9.zip.corrupt-*"))
    assert "qm9.zip" not in recorded(tmp_path)  # the junk's digest is forgotten: a fresh download is recorded anew


def test_offline_is_a_short_message_naming_the_url(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port with nobody listening: connection refused
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/qm9.zip"
    with pytest.raises(DownloadError) as error:
        fetch(unrecorded(url, "qm9.zip"), tmp_path)
    message = str(error.value)
    assert url in message and "qm9.zip" in message and "no network" in message and "\n" not in message
    assert error.value.__cause__ is None and error.value.__suppress_context__  # no chained urllib traceback


def test_http_errors_name_the_url(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=f"HTTP 404 .*data.bin from {server.url}/data.bin"):
        fetch(unrecorded(server.url + "/data.bin"), tmp_path)


@pytest.mark.parametrize("source", ["spice_download", "rmd17_download"])
def test_dft_download_sources_are_accepted_at_validation(source: str) -> None:
    assert validate_config({"data": {"source": source}})["data"]["source"] == source  # parsed since issue 14


def test_registry_pins_urls_and_never_claims_unpublished_hashes() -> None:
    registry = load_registry()
    assert set(registry["sources"]) == {"qm9_download", "geom_drugs_download", "rmd17_download", "spice_download"}
    for source in registry["sources"]:
        for remote in remote_files(source, registry):  # RemoteFile validates the provenance rules
            assert remote.url.startswith("https://")
            assert remote.checksum_source
            if remote.checksum_provenance == "published":
                assert remote.algorithm in ("md5", "sha256") and remote.checksum
                assert len(remote.checksum) == {"md5": 32, "sha256": 64}[remote.algorithm]
                assert "https://" in remote.checksum_source and remote.bytes  # where it is published, and the size
    with pytest.raises(ValueError, match="checksum null"):
        RemoteFile("x", "https://example.org/x", "md5", "0" * 32, "record-on-first-download")


def test_dns_failure_is_a_short_message_naming_the_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", no_dns)
    url = "https://deepchemdata.s3-us-west-1.amazonaws.com/datasets/molnet_publish/qm9.zip"
    with pytest.raises(DownloadError, match=r"cannot download qm9\.zip from .*qm9\.zip .*name resolution.*no network"):
        fetch(unrecorded(url, "qm9.zip"), tmp_path)


def test_the_acquisition_step_ends_with_the_message_not_a_traceback(
    tmp_path: Path, data_config: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(source: str, download_dir: object) -> None:
        raise DownloadError(f"cannot download qm9.zip from https://example.org/qm9.zip ({source}): no network")

    monkeypatch.setattr(download, "fetch_source", offline)
    config_path = tmp_path / "data.json"
    config_path.write_text(json.dumps({**data_config, "source": "qm9_download", "download_dir": str(tmp_path)}))
    out = tmp_path / "molecules.csv"
    with pytest.raises(SystemExit, match=r"^data\.source qm9_download: cannot download qm9\.zip from https://"):
        acquire.main(
            [
                "--config",
                str(config_path),
                "--out",
                str(out),
                "--duplicates",
                str(tmp_path / "d.csv"),
                "--provenance",
                str(tmp_path / "p.json"),
            ]
        )
    assert not out.exists()
