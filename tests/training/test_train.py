"""Training: every task and model learns on a tiny set; checkpoints, manifest, metrics; exact resumption."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eqdyn.io import sha256_file
from eqdyn.models import MODEL_FAMILIES
from eqdyn.testing import synthetic_dataset
from eqdyn.training.runs import checkpoint_steps
from eqdyn.training.train import NonFiniteLossError, Trainer, load_checkpoint, run_training

TASK_SETTINGS = {
    "flow_matching": {"prior_sigma": 1.0},
    "force_field": {"energy_weight": 0.1, "force_weight": 1.0},
    "voxel_denoising": {"elements": [1, 6], "grid_size": 8, "resolution": 0.75, "atom_sigma": 0.6, "noise_sigma": 0.5},
}


def make_run(task: str, family: str, steps: int = 40, **training: object) -> dict:
    settings = {
        "steps": steps, "batch_size": 8, "optimizer": "adam", "learning_rate": 3e-3, "weight_decay": 0.0,
        "momentum": 0.9, "schedule": "constant", "warmup_steps": 0, "grad_clip": 10.0, "ema_decay": None,
        "augment": True, "num_train_molecules": None, "precision": "fp32", "device": "cpu", "threads": 1,
        "log_every": 10, "state_every": 10, "seed": 0,
    }  # fmt: skip
    settings.update(training)
    overrides = {"channels": 2} if task == "voxel_denoising" else {}
    return {
        "name": f"{task}-{family}", "base_run": f"{task}-{family}", "sweep": None, "task": task,
        "task_settings": TASK_SETTINGS[task], "model": {"family": family, "size": "xs", "overrides": overrides},
        "training": settings, "checkpoint_steps": checkpoint_steps(steps, 3),
    }  # fmt: skip


@pytest.fixture(scope="module")
def train_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_dataset(tmp_path_factory.mktemp("data") / "train.npz")


def _train(tmp_path: Path, run: dict, train_npz: Path, stop_at_step: int | None = None) -> bool:
    tmp_path.mkdir(parents=True, exist_ok=True)
    run_path = tmp_path / "run.json"
    run_path.write_text(json.dumps(run))
    return run_training(run_path, train_npz, tmp_path / "out", tmp_path / "state", stop_at_step)


@pytest.mark.parametrize(("task", "family"), [(t, f) for t, f, _ in MODEL_FAMILIES if f != "twirled_unet3d"])
def test_every_task_and_model_learns(tmp_path: Path, train_npz: Path, task: str, family: str) -> None:
    run = make_run(task, family, steps=60)
    assert _train(tmp_path, run, train_npz)
    out = tmp_path / "out"
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(row["train_loss"]) for row in rows]
    assert losses[-1] < losses[0], losses
    manifest = json.loads((out / "manifest.json").read_text())
    assert [c["step"] for c in manifest["checkpoints"]] == run["checkpoint_steps"]
    for entry in manifest["checkpoints"]:
        assert sha256_file(out / entry["file"]) == entry["sha256"]
    assert manifest["parameters"] > 0 and float(rows[-1]["examples_per_second"]) > 0
    model = load_checkpoint(run, out / manifest["checkpoints"][-1]["file"])
    assert not model.training


def test_resumed_run_reproduces_the_uninterrupted_run(tmp_path: Path, train_npz: Path) -> None:
    run = make_run("flow_matching", "transformer", steps=30, log_every=5, state_every=5)
    assert _train(tmp_path / "whole", run, train_npz)
    # interrupted after step 17: the last saved state is step 15, so steps 16-17 are replayed
    assert not _train(tmp_path / "split", run, train_npz, stop_at_step=17)
    assert not (tmp_path / "split" / "out" / "manifest.json").exists()
    assert _train(tmp_path / "split", run, train_npz)
    whole = json.loads((tmp_path / "whole" / "out" / "manifest.json").read_text())
    split = json.loads((tmp_path / "split" / "out" / "manifest.json").read_text())
    final = whole["checkpoints"][-1]["file"]
    a = torch.load(tmp_path / "whole" / "out" / final)["weights"]
    b = torch.load(tmp_path / "split" / "out" / final)["weights"]
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert [c["sha256"] for c in whole["checkpoints"]] == [c["sha256"] for c in split["checkpoints"]]
    losses = [[row["train_loss"] for row in csv.DictReader(open(p / "out" / "metrics.csv"))] for p in
              (tmp_path / "whole", tmp_path / "split")]  # fmt: skip
    assert losses[0] == losses[1]


def test_changed_run_config_starts_fresh(tmp_path: Path, train_npz: Path) -> None:
    run = make_run("flow_matching", "transformer", steps=20)
    assert not _train(tmp_path, run, train_npz, stop_at_step=10)
    changed = make_run("flow_matching", "transformer", steps=20, learning_rate=1e-3)
    trainer = Trainer(changed, train_npz, tmp_path / "state", torch.device("cpu"))
    assert not trainer.try_resume()
    assert len(list((tmp_path / "state").iterdir())) == 1  # the stale state was removed


def test_nan_loss_stops_with_the_step(tmp_path: Path, train_npz: Path) -> None:
    run = make_run("flow_matching", "transformer", steps=20, learning_rate=1e30, grad_clip=None, optimizer="sgd")
    with pytest.raises(NonFiniteLossError, match="at step"):
        _train(tmp_path, run, train_npz)


def test_subset_counts_molecules_not_conformers(tmp_path: Path, train_npz: Path) -> None:
    run = make_run("flow_matching", "transformer", num_train_molecules=3)
    trainer = Trainer(run, train_npz, tmp_path / "state", torch.device("cpu"))
    assert trainer.num_molecules == 3 and len(trainer.rows) == 6


@pytest.mark.slow
def test_compiled_training_follows_the_eager_run(train_npz: Path, tmp_path: Path) -> None:
    """training.compile changes how steps run, not what they compute: the logged losses of 10 steps agree with the
    eager run's to a relative 1e-4 (kernel fusion reorders float32 sums), and checkpoints hold plain weight names."""
    losses = {}
    for compiled in (False, True):
        run = make_run("flow_matching", "transformer", steps=10, log_every=2, compile=compiled)
        run_path = tmp_path / f"run_{compiled}.json"
        run_path.write_text(json.dumps(run))
        out = tmp_path / f"out_{compiled}"
        assert run_training(run_path, train_npz, out, tmp_path / f"state_{compiled}")
        with open(out / "metrics.csv") as handle:
            losses[compiled] = np.array([float(row["train_loss"]) for row in csv.DictReader(handle)])
        manifest = json.loads((out / "manifest.json").read_text())
        model = load_checkpoint(run, out / manifest["checkpoints"][-1]["file"])  # loads only with plain names
        assert model is not None
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)
