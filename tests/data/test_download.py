"""Downloads against a local HTTP server (127.0.0.1, ephemeral port) that honours Range requests."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from eqdyn.data.download import (
    RECORDED_CHECKSUMS,
    ChecksumMismatch,
    RemoteFile,
    fetch,
    load_registry,
    remote_files,
)

PAYLOAD = bytes(range(256)) * 400  # 100 kB


class Server:
    """Serves ``files`` (path -> bytes); records every request's Range header and response status."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
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
                self.send_header("Content-Length", str(len(body) - start))
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


def test_registry_pins_urls_and_never_claims_unpublished_hashes() -> None:
    registry = load_registry()
    assert set(registry["sources"]) == {"qm9_download", "geom_drugs_download", "rmd17_download", "spice_download"}
    for source in registry["sources"]:
        for remote in remote_files(source, registry):  # RemoteFile validates the provenance rules
            assert remote.url.startswith("https://")
            assert remote.checksum_source
            if remote.checksum_provenance == "published":
                assert remote.algorithm in ("md5", "sha256") and remote.checksum
    with pytest.raises(ValueError, match="checksum null"):
        RemoteFile("x", "https://example.org/x", "md5", "0" * 32, "record-on-first-download")
