"""Verified, resumable downloads of the pinned files listed in ``checksums/registry.json``.

A file is fetched into ``<name>.part`` with HTTP Range requests, checked against the size the server announces
(Content-Length, or the total of Content-Range when resuming) and the registry's ``bytes`` where known, verified,
and only then renamed to ``<name>``. Verification uses the provider's published digest when the registry has one
(``checksum_provenance: published``). Otherwise the SHA-256 of the first **complete, fresh** download (from byte
0, size equal to Content-Length) is recorded in ``<download_dir>/recorded_checksums.json`` (flagged ``recorded,
not published``) and later downloads must match it. Never recorded as the reference: a resumed ``.part`` (without
a reference digest a partial file is discarded and fetched again from the start) and a file found in the download
folder that no reference digest vouches for (moved aside to ``<name>.unverified-<digest prefix>``, then downloaded
afresh). A mismatch raises :class:`ChecksumMismatch` naming the file, the URL and both digests, after moving the
bad file aside to ``<name>.corrupt-<digest prefix>`` so that it is never reused; a network failure raises
:class:`DownloadError` naming the URL and the file; an archive that does not unpack raises :class:`ArchiveError`
and leaves no ``.extracting`` folder.

What is parsed after download (see :mod:`eqdyn.data.sources`): ``qm9_download`` (gdb9.sdf minus the 3054
uncharacterized molecules) and ``geom_drugs_download`` (SMILES of ``summary_drugs.json``). ``rmd17_download`` is
downloaded, verified and extracted; ``spice_download`` is downloaded and verified (HDF5 needs h5py). Neither of the
last two is turned into a molecule table, so config validation refuses them as a study's ``data.source``.

CLI: ``python -m eqdyn.data.download --source qm9_download --download-dir results/downloads``.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import lzma
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from eqdyn.data.common import log
from eqdyn.io import write_json

RECORDED_CHECKSUMS = "recorded_checksums.json"
RECORDED_ALGORITHM = "sha256"
RECORDED_FROM = "complete fresh download, size = Content-Length"
USER_AGENT = "eqdyn-data/0.1 (+urllib)"


class ChecksumMismatch(RuntimeError):
    """A downloaded file whose digest (or size) differs from the expected one; the file has been moved aside."""


class DownloadError(RuntimeError):
    """A download that could not complete (network, HTTP status, size): the message names the URL and the file."""


class ArchiveError(RuntimeError):
    """A verified download that does not unpack; the message names the file and the URL and says what to do."""


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    url: str
    algorithm: str | None
    checksum: str | None
    checksum_provenance: str
    checksum_source: str = ""
    extract: str | None = None
    bytes: int | None = None  # the provider's published size, where known

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


def _recorded_entry(remote: RemoteFile, download_dir: Path) -> dict[str, Any] | None:
    """The recorded reference of ``remote``; entries not made from a complete fresh download are not trusted."""
    entry = _read_recorded(download_dir).get(remote.filename)
    if entry is None:
        return None
    if entry.get("verified") != RECORDED_FROM:
        log(
            f"{download_dir / RECORDED_CHECKSUMS}: ignoring the {remote.filename} entry, written before digests were "
            "recorded only from complete fresh downloads (it may come from a resumed or pre-existing file)"
        )
        return None
    return entry


def expected_digest(remote: RemoteFile, download_dir: Path) -> tuple[str, str, str] | None:
    """(algorithm, digest, provenance) to verify against, or None when no reference exists yet."""
    if remote.checksum is not None and remote.algorithm is not None:
        return remote.algorithm, remote.checksum.lower(), "published"
    recorded = _recorded_entry(remote, download_dir)
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
        "verified": RECORDED_FROM,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(download_dir / RECORDED_CHECKSUMS, recorded)


def _forget_recorded(remote: RemoteFile, download_dir: Path) -> None:
    recorded = _read_recorded(download_dir)
    if recorded.pop(remote.filename, None) is not None:
        write_json(download_dir / RECORDED_CHECKSUMS, recorded)


def _move_aside(path: Path, label: str, name: str) -> Path:
    """Rename a file that must not be reused to ``<name>.<label>-<sha256 prefix>`` beside it."""
    aside = path.with_name(f"{name}.{label}-{hash_file(path, 'sha256')[:12]}")
    os.replace(path, aside)
    return aside


def _verify_or_quarantine(remote: RemoteFile, path: Path, expected: tuple[str, str, str]) -> None:
    """Check ``path`` against the expected digest; move a mismatching file aside and raise."""
    algorithm, digest, provenance = expected
    actual = hash_file(path, algorithm)
    if actual == digest:
        return
    aside = path.with_name(f"{remote.filename}.corrupt-{actual[:12]}")
    os.replace(path, aside)
    if provenance == "published":
        advice = "rerun to download it again; if a fresh download differs too, the provider's file has changed"
    else:
        advice = (
            "rerun to download it again; if a fresh complete download still differs, the provider has changed the "
            f"file: delete the {remote.filename} entry of {path.parent / RECORDED_CHECKSUMS} and rerun"
        )
    raise ChecksumMismatch(
        f"checksum mismatch for {remote.filename} (from {remote.url}): expected {algorithm} {digest} "
        f"({provenance}), got {actual}; the file was moved aside to {aside}; {advice}"
    )


def _unreachable(url: str, filename: str, error: BaseException) -> DownloadError:
    reason = getattr(error, "reason", error)
    return DownloadError(
        f"cannot download {filename} from {url} ({reason}): no network, or the host is unreachable. Check the "
        "connection and rerun (a partial download resumes), or use an embedded source (data.source: qm9, wehi or "
        "moses) or your own molecules (data.source: {smiles_file: path})"
    )


def _stream_into_part(url: str, part: Path, timeout: float, chunk_bytes: int) -> tuple[int, int | None]:
    """Append the missing tail of ``url`` to ``part`` (HTTP Range; restart if the server ignores the range).

    Returns (HTTP status, the file's full size as the server announced it, or None). Raises :class:`DownloadError`
    naming the URL when the server cannot be reached, refuses, or sends fewer bytes than it announced.
    """
    filename = part.name.removesuffix(".part")
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            return 416, None  # nothing left to fetch: the part is complete, verification decides if it is right
        raise DownloadError(
            f"HTTP {error.code} ({error.reason}) for {filename} from {url}: the pinned URL may have moved or the "
            "host is refusing requests; rerun later, or update the url in src/eqdyn/data/checksums/registry.json"
        ) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise _unreachable(url, filename, error) from None
    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        if offset and status == 206:
            mode = "ab"
            announced = response.headers.get("Content-Range", "").rsplit("/", 1)[-1]
            total = int(announced) if announced.isdigit() else None
            log(f"resuming {url} at byte {offset}")
        else:
            mode, offset = "wb", 0  # 200: a full body, whether or not we asked for a range
            total = int(length) if length is not None and length.isdigit() else None
        written = 0
        started = time.monotonic()
        try:
            with open(part, mode) as handle:
                while chunk := response.read(chunk_bytes):
                    handle.write(chunk)
                    written += len(chunk)
        except (http.client.IncompleteRead, TimeoutError, ConnectionError) as error:
            raise DownloadError(
                f"the connection to {url} broke after {offset + written} bytes of {filename} "
                f"({type(error).__name__}); rerun to resume"
            ) from None
        rate = written / max(time.monotonic() - started, 1e-9) / 1e6
        log(f"fetched {written} bytes of {url} (Content-Length {length}; {rate:.1f} MB/s)")
    size = offset + written
    if total is not None and size != total:
        raise DownloadError(
            f"{url}: got {size} bytes of {filename}, the server announced {total}; the partial file is kept, rerun "
            "to resume"
        )
    return status, total


def fetch(remote: RemoteFile, download_dir: str | os.PathLike[str], timeout: float = 60.0) -> Path:
    """Download ``remote`` into ``download_dir`` (resuming a partial download), verify it, return its path."""
    download_dir = Path(download_dir)
    download_dir.mkdir(parents=True, exist_ok=True)
    target = download_dir / remote.filename
    expected = expected_digest(remote, download_dir)
    if target.exists():
        if expected is not None:
            _verify_or_quarantine(remote, target, expected)
            return target
        # No digest vouches for a file this code did not download: never adopt it as the reference.
        aside = _move_aside(target, "unverified", remote.filename)
        log(f"{target}: no published or recorded checksum vouches for it; moved aside to {aside}, downloading afresh")
    part = target.with_name(target.name + ".part")
    if part.exists() and expected is None:
        # A resumed file cannot become the reference: start over, so that what is recorded is one complete download.
        part.unlink()
        log(f"{part}: discarded (no reference checksum to verify a resumed download against); downloading afresh")
    status, total = _stream_into_part(remote.url, part, timeout=timeout, chunk_bytes=1 << 20)
    size = part.stat().st_size
    if remote.bytes is not None and size != remote.bytes:
        aside = _move_aside(part, "corrupt", remote.filename)
        raise ChecksumMismatch(
            f"size mismatch for {remote.filename} (from {remote.url}): {size} bytes, the provider publishes "
            f"{remote.bytes}; moved aside to {aside}; rerun to download it again"
        )
    if expected is None:
        if status != 200 or total is None:
            part.unlink()
            raise DownloadError(
                f"{remote.url} sent no Content-Length for {remote.filename} (HTTP {status}), so the download cannot "
                "be confirmed complete and its checksum is not recorded; rerun later, or report the URL"
            )
        digest = hash_file(part, RECORDED_ALGORITHM)
        _record(remote, download_dir, digest, size)
        log(
            f"{remote.filename}: no published checksum; recorded {RECORDED_ALGORITHM} {digest} of a complete fresh "
            f"download ({size} bytes = Content-Length) in {download_dir / RECORDED_CHECKSUMS} (recorded, not published)"
        )
    else:
        _verify_or_quarantine(remote, part, expected)
    os.replace(part, target)
    return target


def extract(archive: Path, kind: str, into: Path) -> Path:
    """Unpack ``archive`` (``zip`` or ``tar``) into ``into`` once; a marker keyed by the archive size skips repeats.

    Unpacks into ``<into>.extracting`` first, which is removed again if unpacking fails.
    """
    marker = into / f".extracted-{archive.name}-{archive.stat().st_size}"
    if marker.exists():
        return into
    tmp = into.with_name(into.name + ".extracting")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as handle:
                handle.extractall(tmp)  # zipfile already refuses absolute paths and '..' members
        elif kind == "tar":
            with tarfile.open(archive) as handle:
                handle.extractall(tmp, filter="data")  # rejects links and paths leaving the folder
        else:
            raise ValueError(f"unknown archive kind {kind!r}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if into.exists():
        shutil.rmtree(into)
    os.replace(tmp, into)
    marker.touch()
    return into


def extract_or_explain(remote: RemoteFile, archive: Path, download_dir: Path) -> Path:
    """:func:`extract`, turning an unreadable archive into an :class:`ArchiveError` that says what to do."""
    assert remote.extract is not None
    try:
        return extract(archive, remote.extract, download_dir / f"{remote.filename}.d")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as error:
        problem = f"{archive} (from {remote.url}) does not unpack as a {remote.extract} archive ({error})"
        if remote.checksum_provenance == "published":
            raise ArchiveError(f"{problem}, although it matches the provider's published digest; report it") from None
        aside = _move_aside(archive, "corrupt", remote.filename)
        _forget_recorded(remote, download_dir)
        raise ArchiveError(
            f"{problem}; it was moved aside to {aside} and its recorded checksum forgotten: rerun to download it again"
        ) from None


def fetch_source(source: str, download_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Fetch and verify every file of a download source; archives marked for extraction are unpacked.

    Returns filename -> path (the extracted folder for extracted archives, else the file).
    """
    download_dir = Path(download_dir)
    paths: dict[str, Path] = {}
    for remote in remote_files(source):
        path = fetch(remote, download_dir)
        if remote.extract:
            path = extract_or_explain(remote, path, download_dir)
        paths[remote.filename] = path
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="a *_download source of checksums/registry.json")
    parser.add_argument("--download-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        paths = fetch_source(args.source, args.download_dir)
    except (DownloadError, ChecksumMismatch, ArchiveError) as error:
        raise SystemExit(str(error)) from None  # a message, not a traceback
    for name, path in paths.items():
        log(f"{name}: {path}")


if __name__ == "__main__":
    main()
