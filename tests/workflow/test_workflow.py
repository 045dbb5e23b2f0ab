"""The whole workflow on config/test.yaml, end to end, and the promise that one edit reruns one stage."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from eqdyn.testing import copy_workflow, snakemake_executable


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The copy's own package runs (not the editable install of the repository), so editing it is what is tested.
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}
    command = [snakemake_executable(), "--cores", "2", "--configfile", "config/test.yaml", *args]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=1500, env=env)


def planned_jobs(workdir: Path) -> dict[str, int]:
    """Rule -> job count of a dry run (its 'Job stats' table)."""
    run = snakemake(workdir, "-n")
    assert run.returncode == 0, run.stderr[-3000:]
    text = run.stdout + run.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:")[1].split("\n\n")[0]
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.M)}
    jobs.pop("total", None)
    return jobs


@pytest.fixture(scope="module")
def finished_workflow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("workflow"))
    run = snakemake(workdir)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    return workdir


@pytest.mark.slow
def test_every_run_trains_checkpoints_and_is_decomposed(finished_workflow: Path) -> None:
    results = finished_workflow / "results" / "test"
    config = yaml.safe_load((finished_workflow / "config" / "test.yaml").read_text())
    names = [f"{entry['task']}-{entry['model']}" for entry in config["runs"]["base"]]
    names.append("flow_matching-transformer--optimizer-sgd")
    for name in names:
        manifest = json.loads((results / "runs" / name / "manifest.json").read_text())
        assert all((results / "runs" / name / c["file"]).exists() for c in manifest["checkpoints"])
        with open(results / "runs" / name / "metrics.csv") as handle:
            losses = [float(row["train_loss"]) for row in csv.DictReader(handle)]
        assert losses[-1] < losses[0], (name, losses)
        with open(results / "analysis" / "decomposition" / f"{name}.csv") as handle:
            rows = list(csv.DictReader(handle))
        steps = {int(row["step"]) for row in rows}
        assert steps == {c["step"] for c in manifest["checkpoints"]}
        percent = [float(r["value"]) for r in rows if r["quantity"] == "equiv_percent" and r["t_bin"] == "all"]
        assert all(0 <= p <= 100 for p in percent)


@pytest.mark.slow
def test_test_study_draws_every_figure_and_its_claims(finished_workflow: Path) -> None:
    figures = finished_workflow / "figures" / "test"
    for name in (
        "equiv_percent",
        "loss_decomposition",
        "robustness",
        "twirling",
        "hessian_spectra",
        "efficiency",
        "gradients",
    ):
        for suffix in ("png", "pdf"):
            assert (figures / f"{name}.{suffix}").stat().st_size > 2_000, name
    assert not list((finished_workflow / "figures").glob("*.png")), "the test study must not write default figures"
    with open(figures / "claims.csv") as handle:
        verdicts = {row["id"]: row["verdict"] for row in csv.DictReader(handle)}
    assert verdicts["equiv_2_percent"] == "not tested at this scale"  # 30 steps
    assert (finished_workflow / "results" / "test" / "claims.md").exists()


def readme_workflow_commands() -> list[str]:
    """The commands of the README's "Using the workflow directly" table, as written there."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("## Using the workflow directly")[1].split("\n\n")[2]
    return [m.group(1) for m in re.finditer(r"^\|[^|]+\| `(snakemake[^`]*)`", table, flags=re.M)]


def pack_study_tables(workdir: Path) -> str:
    """The test study's tables (run configs, manifests, analysis tables) as one export bundle under bundles/."""
    from eqdyn.export import pack

    root = workdir / "results" / "test"
    files = sorted(root.glob("runs/*/*.json")) + sorted(p for p in root.glob("analysis/**/*") if p.is_file())
    out = workdir / "bundles" / "test"
    if not out.exists():
        pack(root, files, out, note="test study, for the README's figures_from command")
    return "bundles"


@pytest.mark.slow
def test_the_readmes_workflow_commands_run_on_the_test_study(finished_workflow: Path) -> None:
    commands = readme_workflow_commands()
    assert any("--report" in c for c in commands) and len(commands) >= 6, commands
    env = {**os.environ, "PYTHONPATH": str(finished_workflow / "src")}
    for command in commands:
        words = command.split()
        if "--configfile" not in words:
            words += ["--configfile", "config/test.yaml"]
        if "--forcerun" in words:  # would retrain the study: plan it only
            words.append("-n")
        words = [w.replace("results/default/", "results/test/") for w in words]
        if any(w.startswith("figures_from=") for w in words):  # this study's own tables, packed as a bundle
            words = [
                f"figures_from={pack_study_tables(finished_workflow)}" if w.startswith("figures_from=") else w
                for w in words
            ]
        words[0] = snakemake_executable()
        run = subprocess.run(words, cwd=finished_workflow, capture_output=True, text=True, timeout=900, env=env)
        assert run.returncode == 0, (command, run.stderr[-3000:])
        if "--report" in words:  # captions render without docutils complaints
            assert "WARNING" not in run.stderr and "substitution" not in run.stderr, run.stderr[-3000:]
            assert (finished_workflow / "report.html").stat().st_size > 10_000
    # Figures drawn from bundles are out of date for the study's own tables: a plain run redraws them (and only them),
    # leaving the shared study finished for the tests after this one.
    planned = planned_jobs(finished_workflow)
    assert all(rule in ("claims", "all") or rule.startswith("figure_") for rule in planned), planned
    assert snakemake(finished_workflow).returncode == 0
    assert planned_jobs(finished_workflow) == {}


@pytest.mark.slow
def test_one_edit_reruns_only_what_depends_on_it(finished_workflow: Path) -> None:
    assert planned_jobs(finished_workflow) == {}
    # editing one figure's plotting code redraws that figure only
    for module_name, rule in (("twirling", "figure_twirling"), ("claims", "claims")):
        module = finished_workflow / "src" / "eqdyn" / "figures" / f"{module_name}.py"
        module.write_text(module.read_text() + "\n")
        assert planned_jobs(finished_workflow) == {rule: 1, "all": 1}
        assert snakemake(finished_workflow).returncode == 0
    # editing one run's hyperparameters reruns that run and its analyses, nothing else
    config_path = finished_workflow / "config" / "test.yaml"
    config = yaml.safe_load(config_path.read_text())
    for entry in config["runs"]["base"]:
        if entry["model"] == "egnn":
            entry["training"] = {"batch_size": 6}
    config_path.write_text(yaml.safe_dump(config))
    plan = planned_jobs(finished_workflow)
    assert plan["train"] == 1 and plan["decompose_checkpoints"] == 1 and plan["gradient_analysis"] == 1
    assert not {"data_datasets", "hessian_analysis", "evaluation_rotations"} & set(plan)
    # editing an analysis module reruns that analysis for every run, and no training
    module = finished_workflow / "src" / "eqdyn" / "analysis" / "checkpoint_decomposition.py"
    module.write_text(module.read_text() + "\n")
    plan = planned_jobs(finished_workflow)
    runs = len(list((finished_workflow / "results" / "test" / "runs").iterdir()))
    assert plan["train"] == 1 and plan["decompose_checkpoints"] == runs and "data_datasets" not in plan
