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


def dry_run(workdir: Path, *config: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`snakemake --dry-run figures [options] --config <config>` in ``workdir``."""
    return subprocess.run(
        [snakemake_executable(), "--cores", "2", "--dry-run", "figures", *options, "--config", *config],
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


# (config file or None for the default, its committed bundles, the folder under figures/ it draws into)
COMMITTED_STUDIES = (
    (None, "decisive", ""),
    ("config/hessians.yaml", "hessians", "hessians"),
    ("config/field_models.yaml", "field_models", "field_models"),
)


def test_every_committed_figure_is_one_its_study_draws(tmp_path: Path) -> None:
    """No stale file: each figure, PDF and claims table committed under figures/ (per study folder) is an output of
    that study's `figures` target drawn from its bundles, and each such output is committed."""
    for configfile, bundles, folder in COMMITTED_STUDIES:
        workdir = copy_workflow(tmp_path / bundles, REPO)
        shutil.copytree(REPO / "figures" / "tables" / bundles, workdir / "figures" / "tables" / bundles)
        options = ("--forceall", *(("--configfile", configfile) if configfile else ()))
        run = dry_run(workdir, f"figures_from=figures/tables/{bundles}", options=options)
        assert run.returncode == 0, run.stderr[-3000:]
        outputs = {
            path.strip()
            for line in re.findall(r"^\s*output: (.*)$", run.stdout, flags=re.M)
            for path in line.split(",")
        }
        directory = Path("figures") / folder
        drawn = {Path(path).name for path in outputs if Path(path).parent == directory}
        committed = {path.name for path in (REPO / directory).iterdir() if path.suffix in {".png", ".pdf", ".csv"}}
        assert committed == drawn, f"{directory}: committed only {committed - drawn}, drawn only {drawn - committed}"
