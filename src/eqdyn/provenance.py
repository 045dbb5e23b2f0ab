"""Provenance of a results directory: git commit, resolved config, hash of installed package versions."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from eqdyn.io import sha256_json, write_json


def git_commit(repo: Path | None = None) -> str:
    """The commit checked out where the workflow runs (``repo``, default the working directory), suffixed ``+dirty``
    when tracked files differ from it; ``unknown`` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def installed_packages() -> dict[str, str]:
    packages = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[name.lower()] = dist.version
    return dict(sorted(packages.items()))


def packages_hash(packages: dict[str, str] | None = None) -> str:
    packages = installed_packages() if packages is None else packages
    text = "\n".join(f"{name}=={version}" for name, version in sorted(packages.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def provenance_record(config: dict[str, Any]) -> dict[str, Any]:
    packages = installed_packages()
    key_versions = {
        name: packages[name] for name in ("torch", "rdkit", "numpy", "snakemake", "e3nn") if name in packages
    }
    return {
        "git_commit": git_commit(),
        "config": config,
        "config_sha256": sha256_json(config),
        "packages_sha256": packages_hash(packages),
        "key_packages": key_versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def write_provenance(path: str | Path, config: dict[str, Any]) -> None:
    write_json(path, provenance_record(config))
