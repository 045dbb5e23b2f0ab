"""The package stands alone: a non-editable install, outside the repository, imports nothing from the checkout and
runs the README's decomposition command on the shipped example set (schema and examples are package data)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_non_editable_install_runs_the_decomposition_cli(tmp_path: Path) -> None:
    site, source = tmp_path / "site", tmp_path / "source"
    # build from a copy, so the build leaves nothing in the checkout
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target"]
    build = subprocess.run([*pip, str(site), str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    # run from a folder outside the checkout, with the installed copy first on the path
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = "import eqdyn, eqdyn.config as c; print(eqdyn.__file__, c.SCHEMA_PATH)"
    where = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert where.returncode == 0, where.stderr
    package, schema = where.stdout.split()
    assert Path(package).is_relative_to(site) and Path(schema).is_file() and Path(schema).is_relative_to(site)
    help_run = subprocess.run(
        [sys.executable, "-m", "eqdyn.decompose", "--help"], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert help_run.returncode == 0 and "--checkpoint" in help_run.stdout
    out = tmp_path / "decomposition.csv"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "eqdyn.decompose",
            "--task",
            "flow_matching",
            "--model",
            "eqdyn.examples.models:build",
            "--data",
            "example",
            "--rotations",
            "4",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    table = pd.read_csv(out)
    assert {"equiv", "mean", "total"} <= set(table["quantity"])
