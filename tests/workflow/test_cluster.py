"""Beyond one machine: the SLURM profile plans the test study, and a run with training.processes = 2 is trained by
the train rule through torchrun (gloo on this CPU)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from eqdyn.export import main as export_main
from eqdyn.testing import copy_workflow, snakemake_executable


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}
    command = [snakemake_executable(), "--configfile", "config/test.yaml", *args]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=900, env=env)


def planned_resources(text: str) -> dict[str, list[str]]:
    """Rule -> the 'resources:' line of each job of a dry run."""
    jobs: dict[str, list[str]] = {}
    for block in re.split(r"\n\s*\n", text):
        rule = re.search(r"^(?:local)?rule (\w+):", block, flags=re.M)
        resources = re.search(r"^\s+resources: (.*)$", block, flags=re.M)
        if rule and resources:
            jobs.setdefault(rule.group(1), []).append(resources.group(1))
    return jobs


def test_slurm_profile_plans_gpu_jobs_on_the_gpu_partition(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path)
    run = snakemake(workdir, "--profile", "workflow/profiles/slurm", "--dry-run")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    jobs = planned_resources(run.stdout + run.stderr)
    for rule in ("train", "decompose_checkpoints", "hessian_analysis"):
        assert jobs[rule] and all("slurm_partition=gpu" in line and "gpu=1" in line for line in jobs[rule]), rule
    for rule in ("data_conformers", "figure_equiv_percent"):
        assert all("slurm_partition=cpu" in line and "gpu=" not in line for line in jobs[rule]), rule


@pytest.mark.slow
def test_train_rule_launches_torchrun_for_several_processes(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path)
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    config["runs"]["base"][0]["training"] = {"processes": 2}  # flow_matching-transformer only
    (workdir / "config" / "test.yaml").write_text(yaml.safe_dump(config))
    target = "results/test/runs/flow_matching-transformer/manifest.json"

    plan = snakemake(workdir, "--cores", "2", "--dry-run", "--printshellcmds", target)
    assert plan.returncode == 0, plan.stderr[-3000:]
    train_job = next(b for b in re.split(r"\n\s*\n", plan.stdout) if "rule train:" in b)
    assert "gpu=2" in train_job and "torch.distributed.run --standalone --nproc_per_node 2 -m --" in train_job

    run = snakemake(workdir, "--cores", "2", target)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    manifest = json.loads((workdir / target).read_text())
    assert manifest["checkpoints"][-1]["step"] == config["training"]["steps"]
    log = (workdir / "results/test/logs/train/flow_matching-transformer.log").read_text()
    assert "2 process(es)" in log


def test_gpu_study_plans_every_run_and_bundle(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path)
    groups = [f"results/gpu/export/{g}" for g in ("flow_matching", "force_field", "voxel_denoising", "benchmarks")]
    run = subprocess.run(
        [snakemake_executable(), "--cores", "2", "--configfile", "config/gpu.yaml", "--dry-run", *groups],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(workdir / "src")},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    stats = run.stdout.split("Job stats:")[1].split("\n\n")[0]
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, flags=re.M)}
    assert jobs["train"] == 20 and jobs["decompose_checkpoints"] == 20 and jobs["export_tables"] == 4
    assert jobs["hessian_analysis"] == 2 and jobs["hessian_stability"] == 1 and jobs["performance_table"] == 1


@pytest.mark.slow
def test_gpu_group_script_on_cpu_with_a_scaled_down_config(tmp_path: Path) -> None:
    """The GPU group driver end to end on this CPU: config/gpu.yaml's flow-matching runs, scaled down."""
    workdir = copy_workflow(tmp_path / "work")
    override = Path(__file__).with_name("gpu_scaled_down.yaml")
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OUT": str(out),
        "GPU_CONFIGS": f"config/gpu.yaml {override}",
        "GPU_SLOTS": "2",
        "PATH": f"{Path(snakemake_executable()).parent}:{os.environ['PATH']}",
    }
    run = subprocess.run(
        ["bash", "workflow/scripts/gpu_group.sh", "flow_matching"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    bundle = out / "flow_matching" / "bundle"
    index = json.loads((bundle / "index.json").read_text())
    paths = {entry["path"] for entry in index["files"]}
    assert "analysis/decomposition/flow_matching-transformer--size-l.csv" in paths
    assert "analysis/hessian/flow_matching-transformer.csv" in paths
    assert not any("checkpoints" in path for path in paths)
    assert "snakemake exit 0" in (out / "flow_matching" / "wall.txt").read_text()

    # Back "here": the unpacked tables are up to date without checkpoints or datasets, so `snakemake figures`
    # would draw from them instead of retraining.
    here = copy_workflow(tmp_path / "here")
    assert export_main(["unpack", "--bundle", str(bundle), "--root", str(here / "results" / "gpu")]) == 0
    tables = [f"results/gpu/{path}" for path in sorted(paths) if path.startswith("analysis/") and path.endswith(".csv")]
    plan = subprocess.run(
        [snakemake_executable(), "--cores", "1", "--configfile", "config/gpu.yaml", str(override), "-n", *tables],
        cwd=here,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(here / "src")},
    )
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "Nothing to be done" in plan.stdout + plan.stderr
