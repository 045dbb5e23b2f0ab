"""Data-parallel training (torchrun, gloo on CPU) gives the run that one process gives on the same data.

Tolerances: the two layouts differ only in floating-point summation order (a gradient all-reduce of shard means
instead of one mean). Under SGD, after 30 steps in float32 every logged loss agrees to a relative 1e-5 and every
weight to an absolute 1e-5. Under Adam the logged losses agree to a relative 1e-4, but weights are not compared:
Adam divides each update by the root of its second moment, so rounding noise in a near-zero gradient component
becomes an update of order the learning rate (measured: 9e-4 after 30 steps at lr 3e-3). A layout that changed the
data, the rotations or the noise misses these tolerances by orders of magnitude (checked below by another seed).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import make_run, synthetic_dataset

import eqdyn
from eqdyn.training.distributed import ProcessGroup
from eqdyn.training.train import run_training

STEPS = 30
SGD = {"optimizer": "sgd", "learning_rate": 0.05}
TOLERANCES = {"sgd": (1e-5, 1e-5), "adam": (1e-4, None)}  # (loss rtol, weight atol)
HANG_SECONDS = 300  # a launch takes ~10 s on 2 cores; far longer is a hang, diagnosed below


def read_losses(run_dir: Path) -> np.ndarray:
    with open(run_dir / "metrics.csv") as handle:
        return np.array([float(row["train_loss"]) for row in csv.DictReader(handle)])


def last_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return torch.load(run_dir / manifest["checkpoints"][-1]["file"], weights_only=False)["weights"]


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (Linux /proc), children first."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    children = [child for child, parent in parents.items() if parent == pid]
    return [grandchild for child in children for grandchild in descendants(child)] + children


def signal_all(pids: list[int], signum: int, pause: float = 0.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
        time.sleep(pause)  # one process's stacks at a time, not interleaved


def torchrun(arguments: list[str], processes: int, hang_seconds: float = HANG_SECONDS) -> tuple[int, str]:
    """Launch ``torchrun --standalone`` with ``arguments`` (a module or script and its arguments); the exit status
    and the launch's output (every process's)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(eqdyn.__file__).resolve().parents[1]),
        "OMP_NUM_THREADS": "1",
        "PYTHONFAULTHANDLER": "1",
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    process = subprocess.Popen(
        [*command, *arguments],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=hang_seconds)
    except subprocess.TimeoutExpired:
        # A hang: SIGABRT makes every process of the launch (ranks and agent, faulthandler on) print each thread's
        # Python stack before it dies, so the failure says where it hung. The ranks run in sessions of their own.
        launched = [*descendants(process.pid), process.pid]
        signal_all(launched, signal.SIGABRT, pause=1.0)
        try:
            output, _ = process.communicate(timeout=30)
        finally:
            signal_all(launched, signal.SIGKILL)
        pytest.fail(f"torchrun did not end within {hang_seconds} s; the stacks at the hang:\n{output[-12000:]}")
    return process.returncode, output


def train_with_torchrun(run: dict, train: Path, root: Path, processes: int) -> Path:
    run_path = root / f"{run['name']}.json"
    run_path.write_text(json.dumps(run))
    out = root / run["name"]
    paths = [
        "--run",
        str(run_path),
        "--train",
        str(train),
        "--out",
        str(out),
        "--state",
        str(root / "state" / run["name"]),
    ]
    returncode, output = torchrun(["-m", "--", "eqdyn.training.train", *paths], processes)
    assert returncode == 0, output[-6000:]
    return out


def train_in_process(run: dict, train: Path, root: Path) -> Path:
    run_path = root / f"{run['name']}.json"
    run_path.write_text(json.dumps(run))
    out = root / run["name"]
    assert run_training(run_path, train, out, root / "state" / run["name"])
    return out


@pytest.mark.parametrize(
    ("task", "family", "optimizer"),
    [
        ("flow_matching", "transformer", "sgd"),
        ("voxel_denoising", "unet3d", "sgd"),
        ("flow_matching", "transformer", "adam"),
    ],
)
def test_two_gloo_processes_match_one_process(tmp_path: Path, task: str, family: str, optimizer: str) -> None:
    train = synthetic_dataset(tmp_path / "train.npz")
    settings = {"log_every": 5, **(SGD if optimizer == "sgd" else {})}
    single = train_in_process({**make_run(task, family, STEPS, **settings), "name": "single"}, train, tmp_path)
    run = {**make_run(task, family, STEPS, processes=2, **settings), "name": "parallel"}
    parallel = train_with_torchrun(run, train, tmp_path, processes=2)

    loss_rtol, weight_atol = TOLERANCES[optimizer]
    single_losses, parallel_losses = read_losses(single), read_losses(parallel)
    assert len(single_losses) == STEPS // 5
    np.testing.assert_allclose(parallel_losses, single_losses, rtol=loss_rtol)
    if weight_atol is not None:
        single_weights, parallel_weights = last_weights(single), last_weights(parallel)
        for name, value in single_weights.items():
            torch.testing.assert_close(parallel_weights[name], value, atol=weight_atol, rtol=0)

    # the tolerance is tight enough to see a change of data: another seed misses it by far
    other = {**make_run(task, family, STEPS, seed=1, **settings), "name": "other"}
    assert np.abs(read_losses(train_in_process(other, train, tmp_path)) / single_losses - 1).max() > 100 * loss_rtol


def test_launch_must_match_the_runs_process_count(tmp_path: Path) -> None:
    train = synthetic_dataset(tmp_path / "train.npz")
    run = {**make_run("flow_matching", "transformer", 4, processes=2), "name": "mismatch"}
    run_path = tmp_path / "run.json"
    run_path.write_text(json.dumps(run))
    with pytest.raises(RuntimeError, match=r"training.processes = 2 but 1 process"):
        run_training(run_path, train, tmp_path / "out", tmp_path / "state")


def test_shards_split_the_global_batch_evenly() -> None:
    groups = [ProcessGroup(rank, 4, rank) for rank in range(4)]
    assert [group.shard(32) for group in groups] == [(0, 8), (8, 16), (16, 24), (24, 32)]
    with pytest.raises(ValueError, match=r"training.batch_size = 30 does not split evenly over training.processes = 4"):
        groups[0].shard(30)
    assert ProcessGroup().shard(30) == (0, 30) and ProcessGroup().is_main


def test_a_diverging_data_parallel_run_ends_on_every_rank(tmp_path: Path) -> None:
    """Every rank sees the same (all-reduced) loss and weights check, so all stop together: exit 0, no hang."""
    train = synthetic_dataset(tmp_path / "train.npz")
    settings = {"optimizer": "sgd", "learning_rate": 1e30, "grad_clip": None}
    run = {**make_run("flow_matching", "transformer", 20, processes=2, **settings), "name": "diverging"}
    out = train_with_torchrun(run, train, tmp_path, processes=2)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "diverged" and manifest["diverged_at_step"] == 2
    assert [entry["step"] for entry in manifest["checkpoints"]] == [0]
    assert not (tmp_path / "state" / "diverging").exists()


def test_a_rank_that_hangs_in_teardown_ends_with_its_stacks(tmp_path: Path) -> None:
    """A teardown that never returns (here: a destroy_process_group that sleeps) ends after the watchdog's time
    with status 1 and every thread's stack, instead of holding the job forever."""
    script = tmp_path / "hanging_teardown.py"
    script.write_text(
        "import time\n"
        "import torch\n"
        "import torch.distributed as dist\n"
        "from eqdyn.training import distributed\n"
        "distributed.TEARDOWN_SECONDS = 2.0\n"
        "dist.destroy_process_group = lambda *args, **kwargs: time.sleep(600)\n"
        "group = distributed.ProcessGroup.from_environment()\n"
        "group.start(torch.device('cpu'))\n"
        "group.stop()\n"
    )
    started = time.monotonic()
    returncode, output = torchrun([str(script)], processes=2, hang_seconds=120)
    assert returncode != 0 and time.monotonic() - started < 90, output[-3000:]
    assert "Timeout (0:00:02)!" in output and "in stop" in output, output[-3000:]
