"""Every job of the test study, run for real, loads and reads only files among its rule's derived code inputs.

Each job's interpreter gets a ``sitecustomize`` that records, at exit, the module it ran (``python -m``), every
``eqdyn`` module in ``sys.modules`` and every file under ``src/`` it opened that is not Python source. Slow: it runs
the whole test study (minutes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from eqdyn.workflow_support import code_inputs

REPO = Path(__file__).resolve().parents[2]

SITECUSTOMIZE = textwrap.dedent(
    """
    import atexit, json, os, sys

    _src = os.path.realpath(os.environ["EQDYN_AUDIT_SRC"])
    _opened = set()


    def _hook(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes)):
            path = os.path.realpath(os.fsdecode(args[0]))
            if path.startswith(_src + os.sep) and not path.endswith((".py", ".pyc")):
                _opened.add(path)


    def _report():
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        name = getattr(spec, "name", None) or ""
        if not name.startswith("eqdyn."):
            return
        loaded = {os.path.realpath(m.__file__) for key, m in list(sys.modules.items())
                  if (key == "eqdyn" or key.startswith("eqdyn.")) and getattr(m, "__file__", None)}
        loaded.add(os.path.realpath(main.__file__))
        record = {"module": name, "argv": sys.argv, "loaded": sorted(loaded), "data": sorted(_opened)}
        path = os.path.join(os.environ["EQDYN_AUDIT_DIR"], f"{os.getpid()}.json")
        with open(path, "w") as handle:
            json.dump(record, handle)


    sys.addaudithook(_hook)
    atexit.register(_report)
    """
)


@pytest.mark.slow
def test_every_job_of_the_test_study_runs_only_its_declared_code(tmp_path: Path) -> None:
    workdir = tmp_path / "study"
    workdir.mkdir()
    for name in ("Snakefile", "workflow", "config", "src"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, workdir / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, workdir / name)
    hook, audit = tmp_path / "hook", tmp_path / "audit"
    hook.mkdir()
    audit.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {
        **os.environ,
        "PYTHONPATH": f"{workdir / 'src'}{os.pathsep}{hook}",
        "EQDYN_AUDIT_DIR": str(audit),
        "EQDYN_AUDIT_SRC": str(workdir / "src"),
        "OMP_NUM_THREADS": "1",
    }
    snakemake = str(Path(sys.executable).parent / "snakemake")
    run = subprocess.run(
        [snakemake, "--cores", "2", "--keep-going", "--configfile", "config/test.yaml"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
        timeout=3000,
    )
    records = [json.loads(path.read_text()) for path in audit.glob("*.json")]
    missing = {}
    for record in records:
        declared = {os.path.realpath(workdir / path) for path in code_inputs(record["module"], root=workdir)}
        undeclared = sorted((set(record["loaded"]) | set(record["data"])) - declared)
        if undeclared:
            missing[record["module"]] = [os.path.relpath(path, os.path.realpath(workdir)) for path in undeclared]
    assert not missing, f"loaded or read by a job but not among its rule's derived code inputs: {missing}"
    failed_logs = re.findall(r"^\s+log: (\S+) \(check log file", run.stdout + run.stderr, flags=re.M)
    details = "".join(f"\n== {log}\n" + (workdir / log).read_text()[-2000:] for log in failed_logs)
    assert run.returncode == 0, run.stderr[-3000:] + details
    ran = {record["module"] for record in records}
    assert {
        "eqdyn.data.acquire",
        "eqdyn.training.train",
        "eqdyn.analysis.checkpoint_decomposition",
        "eqdyn.figures.claims",
    } <= ran
