"""Verified, resumable downloads of the pinned files listed in ``checksums/registry.json``.

A file is fetched into ``<name>.part`` with HTTP Range requests (an interrupted download resumes where it
stopped), verified, and only then renamed to ``<name>``. Verification uses the provider's published digest when
the registry has one (``checksum_provenance: published``); otherwise the SHA-256 of the first download is recorded
in ``<download_dir>/recorded_checksums.json`` (flagged ``recorded, not published``) and later downloads must match
it. A mismatch raises :class:`ChecksumMismatch` naming the file and both digests, after moving the bad file aside
to ``<name>.corrupt-<digest prefix>`` so that it is never reused.

What is parsed after download (see :mod:`eqdyn.data.sources`): ``qm9_download`` (gdb9.sdf minus the 3054
uncharacterized molecules) and ``geom_drugs_download`` (SMILES of ``summary_drugs.json``). ``rmd17_download`` is
downloaded, verified and extracted; ``spice_download`` is downloaded and verified (HDF5 needs h5py). Neither of the
last two is turned into a molecule table.

CLI: ``python -m eqdyn.data.download --source qm9_download --download-dir results/downloads``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from eqdyn.io import write_json

RECORDED_CHECKSUMS = "recorded_checksums.json"
RECORDED_ALGORITHM = "sha256"
USER_AGENT = "eqdyn-data/0.1 (+urllib)"


class ChecksumMismatch(RuntimeError):
    """A downloaded file whose digest differs from the expected one; the file has been moved aside."""


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    url: str
    algorithm: str | None
    checksum: str | None
    checksum_provenance: str
    checksum_source: str = ""
    extract: str | None = None

    def __post_init__(self) -> None:
        if self.checksum_provenance not in ("published", "record-on-first-download"):
            raise ValueError(f"{self.filename}: unknown checksum_provenance {self.checksum_provenance!r}")
        if self.checksum_provenance == "published" and not (self.checksum and self.algorithm):
            raise ValueError(f"{self.filename}: a published checksum needs both checksum and algorithm")
        if self.checksum_provenance == "record-on-first-download" and self.checksum is not None:
            raise ValueError(f"{self.filename}: record-on-first-download entries must have checksum null")


def load_registry() -> dict[str, Any]:
    text = resources.files("eqdyn.data").joinpath("checksums/registry.json").read_text()
    return json.loads(text)


def remote_files(source: str, registry: dict[str, Any] | None = None) -> list[RemoteFile]:
    registry = load_registry() if registry is None else registry
    try:
        entry = registry["sources"][source]
    except KeyError:
        known = ", ".join(sorted(registry["sources"]))
        raise KeyError(f"no download source {source!r} in the registry (known: {known})") from None
    return [RemoteFile(**spec) for spec in entry["files"]]


def hash_file(path: str | os.PathLike[str], algorithm: str, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _read_recorded(download_dir: Path) -> dict[str, Any]:
    path = download_dir / RECORDED_CHECKSUMS
    if not path.exists():
        return {}
    with open(path) as handle:
        return json.load(handle)


def expected_digest(remote: RemoteFile, download_dir: Path) -> tuple[str, str, str] | None:
    """(algorithm, digest, provenance) to verify against, or None when this is the first download."""
    if remote.checksum is not None and remote.algorithm is not None:
        return remote.algorithm, remote.checksum.lower(), "published"
    recorded = _read_recorded(download_dir).get(remote.filename)
    if recorded is None:
        return None
    if recorded["url"] != remote.url:
        raise ChecksumMismatch(
            f"{download_dir / RECORDED_CHECKSUMS}: {remote.filename} was recorded from {recorded['url']}, "
            f"but the registry now pins {remote.url}; delete the entry (and the file) to re-record"
        )
    return recorded["algorithm"], recorded["checksum"], "recorded, not published"


def _record(remote: RemoteFile, download_dir: Path, digest: str, size: int) -> None:
    recorded = _read_recorded(download_dir)
    recorded[remote.filename] = {
        "url": remote.url,
        "algorithm": RECORDED_ALGORITHM,
        "checksum": digest,
        "bytes": size,
        "provenance": "recorded, not published",
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(download_dir / RECORDED_CHECKSUMS, recorded)


def _verify_or_quarantine(remote: RemoteFile, path: Path, download_dir: Path) -> None:
    """Check ``path`` against the expected digest (or record it); move a mismatching file aside and raise."""
    expected = expected_digest(remote, download_dir)
    if expected is None:
        digest = hash_file(path, RECORDED_ALGORITHM)
        _record(remote, download_dir, digest, path.stat().st_size)
        print(
            f"{remote.filename}: no published checksum; recorded {RECORDED_ALGORITHM} {digest} "
            f"in {download_dir / RECORDED_CHECKSUMS} (recorded, not published)",
            flush=True,
        )
        return
    algorithm, digest, provenance = expected
    actual = hash_file(path, algorithm)
    if actual != digest:
        aside = path.with_name(f"{remote.filename}.corrupt-{actual[:12]}")
        os.replace(path, aside)
        raise ChecksumMismatch(
            f"checksum mismatch for {remote.filename} (from {remote.url}): expected {algorithm} {digest} "
            f"({provenance}), got {actual}; the file was moved aside to {aside}"
        )


def _stream_into_part(url: str, part: Path, timeout: float, chunk_bytes: int) -> None:
    """Append the missing tail of ``url`` to ``part`` (HTTP Range); restart if the server ignores the range."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            return  # nothing left to fetch: the part is complete, verification decides if it is right
        raise
    with response:
        status = response.status
        if offset and status == 206:
            mode = "ab"
            print(f"resuming {url} at byte {offset}", flush=True)
        else:
            mode = "wb"  # 200: a full body, whether or not we asked for a range
        total = response.headers.get("Content-Length")
        written = 0
        started = time.monotonic()
        with open(part, mode) as handle:
            while chunk := response.read(chunk_bytes):
                handle.write(chunk)
                written += len(chunk)
        rate = written / max(time.monotonic() - started, 1e-9) / 1e6
        print(f"fetched {written} bytes of {url} (Content-Length {total}; {rate:.1f} MB/s)", flush=True)


def fetch(remote: RemoteFile, download_dir: str | os.PathLike[str], timeout: float = 60.0) -> Path:
    """Download ``remote`` into ``download_dir`` (resuming a partial download), verify it, return its path."""
    download_dir = Path(download_dir)
    download_dir.mkdir(parents=True, exist_ok=True)
    target = download_dir / remote.filename
    if target.exists():
        _verify_or_quarantine(remote, target, download_dir)
        return target
    part = target.with_name(target.name + ".part")
    _stream_into_part(remote.url, part, timeout=timeout, chunk_bytes=1 << 20)
    _verify_or_quarantine(remote, part, download_dir)
    os.replace(part, target)
    return target


def extract(archive: Path, kind: str, into: Path) -> Path:
    """Unpack ``archive`` (``zip`` or ``tar``) into ``into`` once; a marker keyed by the archive size skips repeats."""
    marker = into / f".extracted-{archive.name}-{archive.stat().st_size}"
    if marker.exists():
        return into
    tmp = into.with_name(into.name + ".extracting")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if kind == "zip":
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(tmp)  # zipfile already refuses absolute paths and '..' members
    elif kind == "tar":
        with tarfile.open(archive) as handle:
            handle.extractall(tmp, filter="data")  # rejects links and paths leaving the folder
    else:
        raise ValueError(f"unknown archive kind {kind!r}")
    if into.exists():
        shutil.rmtree(into)
    os.replace(tmp, into)
    marker.touch()
    return into


def fetch_source(source: str, download_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Fetch and verify every file of a download source; archives marked for extraction are unpacked.

    Returns filename -> path (the extracted folder for extracted archives, else the file).
    """
    download_dir = Path(download_dir)
    paths: dict[str, Path] = {}
    for remote in remote_files(source):
        path = fetch(remote, download_dir)
        if remote.extract:
            path = extract(path, remote.extract, download_dir / f"{remote.filename}.d")
        paths[remote.filename] = path
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="a *_download source of checksums/registry.json")
    parser.add_argument("--download-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    for name, path in fetch_source(args.source, args.download_dir).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
