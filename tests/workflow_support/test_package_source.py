"""Jobs run the workflow's own src/: the check, and the dry run stopping when another checkout is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eqdyn.workflow_support import PackageSourceError, check_package_source, package_origin

REPO = Path(__file__).resolve().parents[2]


def environment(pythonpath: Path | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def other_checkout(root: Path) -> Path:
    """A second copy of the package: what an editable install of another checkout puts on the path."""
    (root / "src" / "eqdyn").mkdir(parents=True)
    (root / "src" / "eqdyn" / "__init__.py").write_text("")
    return root / "src"


def test_the_own_source_passes(tmp_path: Path) -> None:
    origin = check_package_source(sys.executable, REPO / "src", env=environment(REPO / "src"), cwd=tmp_path)
    assert origin == REPO / "src" / "eqdyn" / "__init__.py"


def test_another_checkout_is_refused_naming_both(tmp_path: Path) -> None:
    other = other_checkout(tmp_path / "other")
    assert package_origin(sys.executable, env=environment(other), cwd=tmp_path) == other / "eqdyn" / "__init__.py"
    with pytest.raises(PackageSourceError, match="outside this workflow") as error:
        check_package_source(sys.executable, REPO / "src", env=environment(other), cwd=tmp_path)
    assert str(other) in str(error.value) and str(REPO / "src") in str(error.value)
    assert "pip install -e" in str(error.value)


def test_a_package_the_interpreter_cannot_import_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PackageSourceError, match="cannot import 'eqdyn_not_installed'"):
        check_package_source(sys.executable, REPO / "src", package="eqdyn_not_installed", cwd=tmp_path)


def test_dry_run_stops_when_the_jobs_would_import_another_checkout(tmp_path: Path) -> None:
    workdir = tmp_path / "copy"
    workdir.mkdir()
    for name in ("Snakefile", "workflow", "config", "src"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, workdir / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, workdir / name)
    snakemake = str(Path(sys.executable).parent / "snakemake")
    command = [snakemake, "-n", "--configfile", "config/test.yaml"]
    # the copy's own source on the path: the jobs run the copy's code
    run = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=environment(workdir / "src"))
    assert run.returncode == 0, run.stderr[-3000:]
    # another checkout first on the path (as an editable install of it would be): parsing stops, saying why
    other = other_checkout(tmp_path / "other")
    run = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=environment(other))
    assert run.returncode != 0
    assert "outside this workflow" in run.stdout + run.stderr and str(other) in run.stdout + run.stderr
    # nothing on the path: the environment's install (here the editable install of the repository, not the copy)
    run = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=environment(None))
    assert run.returncode != 0
    assert "outside this workflow" in run.stdout + run.stderr or "cannot import" in run.stdout + run.stderr
