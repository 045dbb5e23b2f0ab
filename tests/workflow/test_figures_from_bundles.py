"""`snakemake figures --config figures_from=<bundles>` on a fresh clone: the committed tables are read where they lie,
so only figure and claims jobs are planned (no data stage, training or analysis), and a wrong folder is named."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from eqdyn.testing import copy_workflow, snakemake_executable

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "figures" / "tables" / "decisive" / "flow_matching"


def dry_run(workdir: Path, *config: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [snakemake_executable(), "--cores", "2", "--dry-run", "figures", "--config", *config],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(workdir / "src")},
    )


def job_counts(stdout: str) -> dict[str, int]:
    stats = stdout.split("Job stats:")[1].split("\n\n")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, flags=re.M)}


def test_figures_from_bundles_plans_no_upstream_job(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path / "clone", REPO)
    shutil.copytree(BUNDLE, workdir / "bundles" / "flow_matching")
    run = dry_run(workdir, "figures_from=bundles")
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = job_counts(run.stdout)
    assert set(jobs) - {"total"} <= {"claims", "figures"} | {rule for rule in jobs if rule.startswith("figure_")}
    assert jobs["claims"] == 1
    # the claims read the bundle's tables and run configs; runs of other groups keep their parse-time run.json
    claims = next(
        block for block in re.split(r"\n\s*\n", run.stdout) if re.search(r"^\s*(local)?rule claims:", block, re.M)
    )
    assert "bundles/flow_matching/analysis/decomposition/flow_matching-transformer.csv" in claims
    assert "bundles/flow_matching/runs/flow_matching-transformer/run.json" in claims
    assert "results/default/runs/force_field-transformer/run.json" in claims
    assert "results/default/analysis/decomposition" not in claims


def test_figures_from_a_folder_without_bundles_names_it(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path / "clone", REPO)
    (workdir / "empty").mkdir()
    run = dry_run(workdir, "figures_from=empty")
    assert run.returncode != 0
    assert "figures_from=empty: no export bundle there" in run.stderr + run.stdout
