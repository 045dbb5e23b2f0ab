"""Move a study's tables between machines, verified: ``python -m eqdyn.export pack|unpack``.

The GPU machine keeps nothing between uses, and checkpoints are too large to bring back, so a GPU group trains,
analyses and then packs only its tables (run configs, manifests, metrics, analysis CSVs, data manifests):

    python -m eqdyn.export pack --root results/gpu --out $OUT/flow_matching --files <files under the root>
    python -m eqdyn.export unpack --bundle flow_matching --root results/gpu

``pack`` copies the files under their paths relative to ``--root`` and writes ``index.json`` (sha256 and size of
each, the git commit and time). ``--provenance`` files (e.g. the dataset manifests) go under ``provenance/``
instead: they are outputs of jobs whose other outputs (the datasets) stay behind, and Snakemake would rerun a job
that has some outputs present and an input newer than them. For the same reason the stage configs written when
the workflow is parsed (``configs/data.json``, ``runs/*/run.json``, ...) travel with the tables: unpacked with
their old times and the same content, Snakemake does not rewrite them, and the tables stay up to date.

``unpack`` verifies every file against the index before copying any, so a truncated or edited bundle fails naming
the file, and refuses to overwrite a different file unless ``--force``. Every unpacked file gets the same
modification time, so no table looks older than the configs it was made from.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from eqdyn.io import sha256_file, write_json
from eqdyn.provenance import git_commit

INDEX = "index.json"


class BundleError(RuntimeError):
    """A bundle that does not match its index, or a file that would be overwritten."""


def pack(
    root: Path, files: list[Path], out: Path, note: str = "", provenance: list[Path] | None = None
) -> dict[str, Any]:
    """Copy ``files`` (each under ``root``) into ``out`` keeping their relative paths, and ``provenance`` files
    under ``provenance/``; write and return the index."""
    root = root.resolve()
    entries: list[dict[str, str | int]] = []  # path, sha256, bytes
    for file, prefix in [(f, Path()) for f in files] + [(f, Path("provenance")) for f in provenance or []]:
        path = Path(file).resolve()
        if not path.is_relative_to(root):
            raise BundleError(f"{file}: not under the bundle root {root}")
        if not path.is_file():
            raise BundleError(f"{file}: not a file")
        relative = prefix / path.relative_to(root)
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        entries.append({"path": relative.as_posix(), "sha256": sha256_file(path), "bytes": path.stat().st_size})
    index = {
        "root": str(root.relative_to(Path.cwd())) if root.is_relative_to(Path.cwd()) else str(root),
        "git_commit": git_commit(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "note": note,
        "files": sorted(entries, key=lambda entry: str(entry["path"])),
    }
    write_json(out / INDEX, index)
    return index


def verify(bundle: Path) -> dict[str, Any]:
    """The bundle's index, after checking that every file is present with its recorded hash."""
    index_path = bundle / INDEX
    if not index_path.exists():
        raise BundleError(f"{index_path}: missing (not a bundle made by `python -m eqdyn.export pack`)")
    index = json.loads(index_path.read_text())
    for entry in index["files"]:
        path = bundle / entry["path"]
        if not path.is_file():
            raise BundleError(f"{path}: listed in {index_path} but missing")
        if sha256_file(path) != entry["sha256"]:
            raise BundleError(f"{path}: sha256 differs from {index_path} (truncated or edited)")
    return index


def unpack(bundle: Path, root: Path, force: bool = False) -> list[Path]:
    """Verify the whole bundle, then copy its files under ``root``; returns the paths written."""
    index = verify(bundle)
    targets = [(bundle / entry["path"], root / entry["path"], entry["sha256"]) for entry in index["files"]]
    clashes = [t for _, t, digest in targets if t.exists() and sha256_file(t) != digest]
    if clashes and not force:
        raise BundleError(f"{clashes[0]}: exists with different content ({len(clashes)} file(s)); use --force")
    # One modification time for every unpacked file: transports (cp -r, fetches) do not keep times, and Snakemake
    # would take a run config copied a microsecond after a table for an input newer than its output.
    now = time.time()
    for source, target, _ in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        os.utime(target, (now, now))
    return [target for _, target, _ in targets]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="copy tables into a bundle with an index of hashes")
    packing.add_argument("--root", type=Path, required=True, help="the study's results directory")
    packing.add_argument("--out", type=Path, required=True, help="bundle directory")
    packing.add_argument("--files", type=Path, nargs="+", required=True)
    packing.add_argument("--provenance", type=Path, nargs="*", default=[], help="kept under provenance/")
    packing.add_argument("--note", default="", help="free text kept in the index (device, command)")
    unpacking = commands.add_parser("unpack", help="verify a bundle and copy its files under a results directory")
    unpacking.add_argument("--bundle", type=Path, required=True)
    unpacking.add_argument("--root", type=Path, required=True)
    unpacking.add_argument("--force", action="store_true", help="overwrite files whose content differs")
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            index = pack(args.root, args.files, args.out, args.note, args.provenance)
            print(f"packed {len(index['files'])} files into {args.out}")
        else:
            written = unpack(args.bundle, args.root, args.force)
            print(f"unpacked {len(written)} files from {args.bundle} into {args.root}")
    except BundleError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
