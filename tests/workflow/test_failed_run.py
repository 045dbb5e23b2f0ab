"""A diverging run is a result, not a crash: the test study with one run that diverges still draws every figure and
its claims, which name the run, and `snakemake figures` afterwards has nothing to retrain."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from eqdyn.testing import copy_workflow, snakemake_executable

DIVERGING = "flow_matching-egnn"


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}
    command = [snakemake_executable(), "--cores", "2", "--configfile", "config/test.yaml", *args]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=1500, env=env)


@pytest.mark.slow
def test_a_diverging_run_does_not_block_the_figures_or_the_claims(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path)
    config_path = workdir / "config" / "test.yaml"
    config = yaml.safe_load(config_path.read_text())
    for entry in config["runs"]["base"]:
        if f"{entry['task']}-{entry['model']}" == DIVERGING:
            entry["training"] = {"learning_rates": {"adam": 1.0e30}}  # Adam steps of ~1e30: non-finite at once
    config["hessian"]["stability_runs"] = []  # not what this test is about; saves a minute
    config_path.write_text(yaml.safe_dump(config))
    run = snakemake(workdir)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    results = workdir / "results" / "test"
    manifest = yaml.safe_load((results / "runs" / DIVERGING / "manifest.json").read_text())
    assert manifest["status"] == "diverged"
    for name in ("equiv_percent", "loss_decomposition", "twirling", "efficiency"):
        assert (workdir / "figures" / "test" / f"{name}.png").stat().st_size > 2_000, name
    with open(workdir / "figures" / "test" / "claims.csv") as handle:
        claims = {row["id"]: row for row in csv.DictReader(handle)}
    # the efficiency and twirling claims compare with the diverged equivariant run: they name it, never "reproduced"
    for cid in ("efficiency_gap", "test_time_twirling"):
        assert f"{DIVERGING} diverged" in claims[cid]["measured"], claims[cid]["measured"]
        assert not claims[cid]["verdict"].startswith("reproduced"), claims[cid]["verdict"]
    # the figures target draws from the tables present: nothing to retrain
    dry = snakemake(workdir, "-n", "figures")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-2000:]

    # a run whose training crashed has no manifest and no tables: the figures and claims come from the tables
    # present, name the run, and nothing trains
    crashed = "force_field-painn"
    for path in [results / "runs" / crashed / "manifest.json", *results.glob(f"analysis/*/{crashed}*")]:
        path.unlink()
    present = ["--config", "figures_from_present_tables=true"]
    dry = snakemake(workdir, "-n", "figures", *present)  # (a flag first: --configfile takes every word up to one)
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = dry.stdout + dry.stderr
    assert "rule train" not in planned and "decompose_checkpoints" not in planned, planned[-3000:]
    run = snakemake(workdir, "-p", "figures", *present)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    with open(workdir / "figures" / "test" / "claims.csv") as handle:
        claims = {row["id"]: row for row in csv.DictReader(handle)}
    assert f"{crashed} not trained" in claims["efficiency_gap"]["measured"], claims["efficiency_gap"]["measured"]
    assert not claims["efficiency_gap"]["verdict"].startswith("reproduced")
