"""Training: every task and model learns on a tiny set; checkpoints, manifest, metrics; exact resumption."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from eqdyn.io import sha256_file
from eqdyn.models import MODEL_FAMILIES
from eqdyn.testing import synthetic_dataset, tiny_training_settings
from eqdyn.training.runs import checkpoint_steps
from eqdyn.training.train import (
    COMPLETE_MARKER,
    PACKAGE_DIR,
    Trainer,
    code_version,
    load_checkpoint,
    main,
    run_training,
)

TASK_SETTINGS = {
    "flow_matching": {"prior_sigma": 1.0},
    "force_field": {"energy_weight": 0.1, "force_weight": 1.0},
    "voxel_denoising": {"elements": [1, 6], "grid_size": 8, "resolution": 0.75, "atom_sigma": 0.6, "noise_sigma": 0.5},
}


def make_run(task: str, family: str, steps: int = 40, **training: object) -> dict:
    settings = tiny_training_settings(steps=steps)
    settings.update(training)
    overrides = {"channels": 2} if task == "voxel_denoising" else {}
    return {
        "name": f"{task}-{family}",
        "base_run": f"{task}-{family}",
        "sweep": None,
        "task": task,
        "task_settings": TASK_SETTINGS[task],
        "model": {"family": family, "size": "xs", "overrides": overrides},
        "training": settings,
        "checkpoint_steps": checkpoint_steps(steps, 3),
    }


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
    assert manifest["status"] == "finished" and manifest["diverged_at_step"] is None
    assert manifest["steps_trained"] == run["training"]["steps"]
    model = load_checkpoint(run, out / manifest["checkpoints"][-1]["file"])
    assert not model.training


def test_resumed_run_reproduces_the_uninterrupted_run(tmp_path: Path, train_npz: Path) -> None:
    run = make_run("flow_matching", "transformer", steps=30, log_every=5, state_every=5)
    assert _train(tmp_path / "whole", run, train_npz)
    # interrupted after step 17: the last saved state is step 15, so steps 16-17 are replayed
    assert not _train(tmp_path / "split", run, train_npz, stop_at_step=17)
    assert not (tmp_path / "split" / "out" / "manifest.json").exists()
    assert (tmp_path / "split" / "state").is_dir()  # the interrupted run's state is kept
    assert _train(tmp_path / "split", run, train_npz)
    whole = json.loads((tmp_path / "whole" / "out" / "manifest.json").read_text())
    split = json.loads((tmp_path / "split" / "out" / "manifest.json").read_text())
    final = whole["checkpoints"][-1]["file"]
    a = torch.load(tmp_path / "whole" / "out" / final)["weights"]
    b = torch.load(tmp_path / "split" / "out" / final)["weights"]
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert [c["sha256"] for c in whole["checkpoints"]] == [c["sha256"] for c in split["checkpoints"]]
    losses = [
        [row["train_loss"] for row in csv.DictReader(open(p / "out" / "metrics.csv"))]
        for p in (tmp_path / "whole", tmp_path / "split")
    ]
    assert losses[0] == losses[1]


def test_changed_run_config_starts_fresh(tmp_path: Path, train_npz: Path) -> None:
    run = make_run("flow_matching", "transformer", steps=20)
    assert not _train(tmp_path, run, train_npz, stop_at_step=10)
    changed = make_run("flow_matching", "transformer", steps=20, learning_rate=1e-3)
    trainer = Trainer(changed, train_npz, tmp_path / "state", torch.device("cpu"))
    assert not trainer.try_resume()
    assert len(list((tmp_path / "state").iterdir())) == 1  # the stale state was removed


def read_manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_diverging_run_is_a_recorded_outcome_with_its_checkpoints(tmp_path: Path, train_npz: Path) -> None:
    """Issue 13 case 3: a NaN loss used to raise and fail the job; now the run ends as "diverged", exit code 0."""
    run = make_run("flow_matching", "transformer", steps=20, learning_rate=1e30, grad_clip=None, optimizer="sgd")
    (tmp_path / "run.json").write_text(json.dumps(run))
    out = tmp_path / "out"
    args = ["--run", str(tmp_path / "run.json"), "--train", str(train_npz), "--out", str(out)]
    assert main([*args, "--state", str(tmp_path / "state")]) == 0
    manifest = read_manifest(out)
    # step 1's update blows the weights up (finite), the loss at step 2 is NaN: step 1's checkpoint holds those weights
    assert manifest["status"] == "diverged" and manifest["diverged_at_step"] == 2 and manifest["steps_trained"] == 1
    assert manifest["status_reason"].startswith("training loss is nan at step 2 (the checkpoint of step 1")
    assert [entry["step"] for entry in manifest["checkpoints"]] == [0]
    assert [path.name for path in (out / "checkpoints").iterdir()] == ["step_0000000.pt"]
    for entry in manifest["checkpoints"]:
        assert sha256_file(out / entry["file"]) == entry["sha256"]
    assert manifest["checkpoint_bytes"] == sum(path.stat().st_size for path in (out / "checkpoints").iterdir())
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    # the unfinished logging interval, with its finite losses
    assert [row["step"] for row in rows] == ["1"] and np.isfinite(float(rows[0]["train_loss"]))
    assert not (tmp_path / "state").exists()


def test_non_finite_weights_are_not_checkpointed(tmp_path: Path, train_npz: Path, monkeypatch) -> None:
    """The second criterion: weights gone NaN at a checkpoint step end the run before that checkpoint is written."""
    run = make_run("flow_matching", "transformer", steps=20)
    assert run["checkpoint_steps"] == [0, 1, 2, 4, 9, 20]
    update_ema = Trainer.update_ema

    def poison_after_step_4(self: Trainer) -> None:
        update_ema(self)
        if self.state.step == 3:  # the update of step 4 (the counter moves on after this call)
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))

    monkeypatch.setattr(Trainer, "update_ema", poison_after_step_4)
    assert _train(tmp_path, run, train_npz)
    manifest = read_manifest(tmp_path / "out")
    assert manifest["status"] == "diverged" and manifest["diverged_at_step"] == 4
    assert "weights are not finite after step 4" in manifest["status_reason"]
    assert [entry["step"] for entry in manifest["checkpoints"]] == [0, 1, 2]
    assert sorted(path.name for path in (tmp_path / "out" / "checkpoints").iterdir()) == [
        "step_0000000.pt",
        "step_0000001.pt",
        "step_0000002.pt",
    ]


def test_other_errors_fail_the_job_and_keep_the_state(tmp_path: Path, train_npz: Path, monkeypatch, caplog) -> None:
    run = make_run("flow_matching", "transformer", steps=20)
    training_loss = Trainer.training_loss

    def fail_at_step_13(self: Trainer) -> torch.Tensor:
        if self.state.step == 12:
            raise RuntimeError("out of memory (injected)")
        return training_loss(self)

    monkeypatch.setattr(Trainer, "training_loss", fail_at_step_13)
    with pytest.raises(RuntimeError, match="injected"):
        _train(tmp_path, run, train_npz)
    assert not (tmp_path / "out" / "manifest.json").exists()
    monkeypatch.setattr(Trainer, "training_loss", training_loss)
    caplog.clear()
    caplog.set_level(logging.INFO, logger="eqdyn.training.train")
    assert _train(tmp_path, run, train_npz)
    assert "resumed at step 10" in caplog.text
    assert read_manifest(tmp_path / "out")["status"] == "finished"


def test_diverged_run_cut_short_while_writing_outputs_resumes_into_the_same_outcome(
    tmp_path: Path, train_npz: Path, monkeypatch
) -> None:
    """The first loss is NaN, so step 0's checkpoint is dropped; the resumed run must not write it again."""
    run = make_run("flow_matching", "transformer", steps=20)
    monkeypatch.setattr(Trainer, "training_loss", lambda self: torch.tensor(float("nan"), requires_grad=True))

    def crash(self: Trainer, out_dir: Path) -> None:
        raise OSError("disk full (injected)")

    export = Trainer.export
    monkeypatch.setattr(Trainer, "export", crash)
    with pytest.raises(OSError, match="injected"):
        _train(tmp_path, run, train_npz)
    monkeypatch.setattr(Trainer, "export", export)
    assert _train(tmp_path, run, train_npz)
    manifest = read_manifest(tmp_path / "out")
    assert manifest["status"] == "diverged" and manifest["diverged_at_step"] == 1 and manifest["checkpoints"] == []


def test_completed_run_leaves_no_state_and_a_forced_rerun_trains_from_scratch(
    tmp_path: Path, train_npz: Path, caplog
) -> None:
    """Issue 13 cases 4 and 5: the finished run's state (a second copy of every checkpoint) stayed in .state, and a
    `--forcerun train` (Snakemake deletes the outputs, reruns the job) resumed it instead of training."""
    run = make_run("flow_matching", "transformer", steps=20)
    assert _train(tmp_path, run, train_npz)
    out = tmp_path / "out"
    first = read_manifest(out)
    assert not (tmp_path / "state").exists()
    files = list((out / "checkpoints").iterdir())
    assert all(path.stat().st_nlink == 1 for path in files)  # no other link to the checkpoint bytes remains
    assert first["checkpoint_bytes"] == sum(path.stat().st_size for path in files) > 0

    shutil.rmtree(out)  # what --forcerun does before the job runs
    caplog.clear()
    caplog.set_level(logging.INFO, logger="eqdyn.training.train")
    assert _train(tmp_path, run, train_npz)
    log = caplog.text
    assert "resumed" not in log and "step 10/20" in log  # trained from step 0, not resumed at the end
    assert [c["sha256"] for c in read_manifest(out)["checkpoints"]] == [c["sha256"] for c in first["checkpoints"]]


def test_a_state_marked_complete_is_never_resumed(tmp_path: Path, train_npz: Path) -> None:
    run = make_run("flow_matching", "transformer", steps=20)
    assert not _train(tmp_path, run, train_npz, stop_at_step=10)
    (key_dir,) = (tmp_path / "state").iterdir()
    assert Trainer(run, train_npz, tmp_path / "state", torch.device("cpu")).try_resume()  # interrupted: resumes
    (key_dir / COMPLETE_MARKER).touch()  # as a completed run leaves it if its removal is cut short
    trainer = Trainer(run, train_npz, tmp_path / "state", torch.device("cpu"))
    assert not trainer.try_resume() and not trainer.state_file.exists()


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of the eqdyn source to edit (the real tree is shared)."""
    copy = tmp_path / "src" / "eqdyn"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.mark.parametrize(
    ("edited", "changes_key"),
    [
        ("figures/claims.py", False),  # issue 13 case 4: a figure comment threw an interrupted run's progress away
        ("analysis/hessian_analysis.py", False),
        ("models/transformer.py", True),
        ("tasks/flow_matching.py", True),
        ("data/voxelize.py", True),  # imported inside a function of the voxel task
        ("training/train.py", True),
    ],
)
def test_state_key_follows_the_code_training_imports(package_copy: Path, edited: str, changes_key: bool) -> None:
    before = code_version(package_copy)
    assert before == code_version(PACKAGE_DIR)
    with open(package_copy / edited, "a") as handle:
        handle.write("# an edit\n")
    assert (code_version(package_copy) != before) == changes_key


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
