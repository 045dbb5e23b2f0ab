"""The figure and claims rules inside the whole workflow (config/test.yaml), in a scratch copy of the repository."""

from __future__ import annotations

import csv
import os
import re
import subprocess
from pathlib import Path

import pytest

from eqdyn.testing import copy_workflow, snakemake_executable


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The copy's own package runs (not the editable install of the repository), so editing it is what is tested.
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}
    command = [snakemake_executable(), "--cores", "2", "--configfile", "config/test.yaml", *args]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=1500, env=env)


def planned_jobs(workdir: Path) -> dict[str, int]:
    run = snakemake(workdir, "-n")
    assert run.returncode == 0, run.stderr[-3000:]
    text = run.stdout + run.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:")[1].split("\n\n")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.M)}


@pytest.mark.slow
def test_test_study_draws_its_figures_and_one_edit_redraws_one_figure(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path)
    run = snakemake(workdir)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    figures = workdir / "figures" / "test"
    for name in ("equiv_percent", "loss_decomposition", "robustness", "twirling"):
        for suffix in ("png", "pdf"):
            assert (figures / f"{name}.{suffix}").stat().st_size > 2_000, name
    assert not list((workdir / "figures").glob("*.png")), "the test study must not write the default figures"
    with open(figures / "claims.csv") as handle:
        verdicts = {row["id"]: row["verdict"] for row in csv.DictReader(handle)}
    assert verdicts["equiv_2_percent"] == "not tested at this scale"  # 30 steps
    assert (workdir / "results" / "test" / "claims.md").exists()

    assert planned_jobs(workdir) == {}
    module = workdir / "src" / "eqdyn" / "figures" / "twirling.py"
    module.write_text(module.read_text() + "\n")
    assert planned_jobs(workdir) == {"figure_twirling": 1, "all": 1}
    assert snakemake(workdir).returncode == 0
    claims = workdir / "src" / "eqdyn" / "figures" / "claims.py"
    claims.write_text(claims.read_text() + "\n")
    assert planned_jobs(workdir) == {"claims": 1, "all": 1}
