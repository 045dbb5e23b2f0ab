"""Editing a package module reruns exactly the rules whose code inputs hold it, on the test study.

The study's outputs are made without running a job: empty files (``{}`` for JSON) in place of each planned
output, then ``snakemake --touch`` orders their times. Dry runs then say which jobs an edit reruns and why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from eqdyn.workflow_support import code_inputs

REPO = Path(__file__).resolve().parents[2]
STUDY = "results/test"
# `all`, and the rules outside it, so that every rule of the workflow is planned
TARGETS = [
    "all",
    f"{STUDY}/lr_sweep/flow_matching-transformer.csv",
    f"{STUDY}/export/benchmarks",
    f"{STUDY}/analysis/performance.md",
]
# a leaf, a middle module, a figure, and the modules the issue found missing from hand-written lists
EDITS = [
    "symmetry/rotations.py",
    "tasks/base.py",
    "figures/twirling.py",
    "molecules.py",
    "decomposition.py",
    "data/checksums/registry.json",
]


@dataclass(frozen=True)
class Job:
    rule: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    reason: str
    module: str | None  # the package module its shell command runs (`python -m <module>`)


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}  # the copy's own package is the one jobs import
    command = [str(Path(sys.executable).parent / "snakemake"), "--configfile", "config/test.yaml", *args]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600, env=env)


def planned(workdir: Path) -> list[Job]:
    """The jobs of a dry run over TARGETS, with their inputs, outputs, reason and module."""
    run = snakemake(workdir, "-n", "-p", *TARGETS)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    text = run.stdout + run.stderr
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", text):
        rule = re.search(r"^(?:local)?rule (\w+):", block, flags=re.M)
        if not rule:
            continue
        names = ("input", "output", "benchmark", "reason")
        field = {name: re.search(rf"^    {name}: (.*)$", block, flags=re.M) for name in names}
        module = re.search(r" -m (?:-- )?(eqdyn(?:\.\w+)+)", block)
        # a job's benchmark file is one of its outputs to Snakemake (missing, the job reruns)
        outputs = [
            text for name in ("output", "benchmark") if (found := field[name]) for text in found.group(1).split(", ")
        ]
        jobs.append(
            Job(
                rule=rule.group(1),
                inputs=tuple(field["input"].group(1).split(", ")) if field["input"] else (),
                outputs=tuple(outputs),
                reason=field["reason"].group(1) if field["reason"] else "",
                module=module.group(1) if module else None,
            )
        )
    return jobs


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Job]]:
    """A copy of the workflow whose test study is up to date (made of empty files), and its full plan."""
    workdir = tmp_path_factory.mktemp("study")
    for name in ("Snakefile", "workflow", "config", "src"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, workdir / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, workdir / name)
    jobs = planned(workdir)
    assert {job.rule for job in jobs} >= {
        "train",
        "decompose_checkpoints",
        "figure_twirling",
        "lr_sweep",
        "export_tables",
        "performance_table",
    }
    for job in jobs:
        for output in job.outputs:
            path = workdir / output
            if Path(output).suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                # an empty JSON object, not an empty file: the workflow reads some (run manifests) when it is parsed
                path.write_text("{}" if path.suffix == ".json" else "")
            else:  # a directory() output (checkpoints, export bundles)
                path.mkdir(parents=True, exist_ok=True)
    touch = snakemake(workdir, "--cores", "1", "--touch", *TARGETS)
    assert touch.returncode == 0, touch.stdout[-3000:] + touch.stderr[-3000:]
    assert planned(workdir) == [], "the touched study should be up to date"
    return workdir, jobs


def test_every_rule_declares_the_derived_code_inputs_of_the_module_it_runs(study: tuple[Path, list[Job]]) -> None:
    workdir, jobs = study
    for job in jobs:
        declared = {path for path in job.inputs if path.startswith("src/")}
        if job.module is None:
            assert not declared, job.rule
            continue
        assert declared == set(code_inputs(job.module, root=workdir)), job.rule


def test_the_readme_table_of_what_an_edit_reruns(study: tuple[Path, list[Job]]) -> None:
    """The rows of the README's "What an edit reruns" table, from the inputs the jobs declare."""
    _, jobs = study

    def declaring(file: str) -> set[str]:
        return {job.rule for job in jobs if f"src/eqdyn/{file}" in job.inputs}

    figures = {job.rule for job in jobs if job.rule.startswith("figure_")}
    assert declaring("figures/robustness.py") == {"figure_robustness"}
    assert declaring("figures/efficiency.py") == {"figure_efficiency", "figure_twirling", "claims"}
    assert declaring("figures/learned.py") == {"figure_equiv_percent", "figure_robustness", "claims"}
    assert declaring("figures/style.py") == declaring("figures/tables.py") == figures | {"claims"}
    assert declaring("analysis/hessian_analysis.py") == {"hessian_analysis", "hessian_stability"}
    analyses = {"decompose_checkpoints", "gradient_analysis", "hessian_analysis", "efficiency_benchmark"}
    assert declaring("decomposition.py") >= {"evaluation_rotations", *analyses}
    assert not {rule for rule in declaring("decomposition.py") if rule.startswith(("data_", "figure_", "train"))}
    for file in ("symmetry/rotations.py", "tasks/base.py", "molecules.py"):
        assert declaring(file) >= {"train", "evaluation_rotations"}, file
        assert not {rule for rule in declaring(file) if rule.startswith(("data_", "figure_"))}, file
    for file in ("models/transformer.py", "training/train.py"):
        assert "train" in declaring(file) and "evaluation_rotations" not in declaring(file), file
        assert not {rule for rule in declaring(file) if rule.startswith(("data_", "figure_"))}, file
    assert declaring("data/labels.py") == {"data_labels", "data_datasets"}
    assert "data_acquire" in declaring("data/checksums/registry.json")
    # beyond the data rules, only the performance report, whose data-preparation section runs the conformer code
    assert all(rule.startswith("data_") for rule in declaring("data/checksums/registry.json") - {"performance_table"})


def upstream_rules(jobs: list[Job]) -> dict[str, set[str]]:
    """Rule -> the rules whose outputs it reads, directly or not."""
    producer = {output: job.rule for job in jobs for output in job.outputs}
    direct: dict[str, set[str]] = {job.rule: set() for job in jobs}
    for job in jobs:
        direct[job.rule] |= {producer[path] for path in job.inputs if path in producer} - {job.rule}
    closed = {rule: set(ups) for rule, ups in direct.items()}
    for _ in jobs:  # a fixed point: at most as many rounds as jobs
        for ups in closed.values():
            ups |= {grand for up in list(ups) for grand in closed[up]}
    return closed


@pytest.mark.parametrize("edited", EDITS)
def test_an_edit_reruns_exactly_the_rules_whose_code_inputs_hold_it(study: tuple[Path, list[Job]], edited: str) -> None:
    workdir, jobs = study
    path = workdir / "src" / "eqdyn" / edited
    relative = f"src/eqdyn/{edited}"
    expected = {job.rule for job in jobs if job.module and relative in code_inputs(job.module, root=workdir)}
    assert expected, f"no rule depends on {relative}: the sample says nothing"
    upstream = upstream_rules(jobs)
    downstream = {rule for rule, ups in upstream.items() if ups & expected}
    original, times = path.read_bytes(), path.stat()
    try:
        path.write_bytes(original + (b"\n" if path.suffix == ".json" else b"# edited\n"))
        rerun = planned(workdir)
        # the dependent rules rerun, and what reads their outputs; nothing else
        assert {job.rule for job in rerun} == expected | downstream
        # a job reruns for the edit itself exactly where it declares the file; Snakemake names only the upstream
        # reason when both hold, so a job that reads what another rerun job writes must give that one
        written = {output for job in rerun for output in job.outputs}
        for job in rerun:
            if set(job.inputs) & written:
                assert job.reason.startswith("Input files updated by another job:"), job
            else:
                assert job.rule in expected, job
                assert job.reason.startswith("Updated input files:"), job
                assert relative in job.reason.split(": ", 1)[1].split(", "), job
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
