"""What reads a diverged run's outputs: the figures' run table and the per-checkpoint analyses (issue 13, case 3)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from test_train import make_run, synthetic_dataset

from eqdyn import evaluation_rotations
from eqdyn.analysis import checkpoint_decomposition, gradients
from eqdyn.figures.tables import read_runs
from eqdyn.training.train import Trainer, run_training


@pytest.fixture(scope="module")
def diverged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A run whose very first loss is NaN (so no checkpoint survives), a test split and its evaluation rotations."""
    root = tmp_path_factory.mktemp("diverged")
    train = synthetic_dataset(root / "train.npz")
    split = synthetic_dataset(root / "test.npz", molecules=5)
    run = make_run("flow_matching", "transformer", steps=20)
    (root / "run.json").write_text(json.dumps(run))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "training_loss", lambda self: torch.tensor(float("nan"), requires_grad=True))
        assert run_training(root / "run.json", train, root / "out", root / "state")
    (root / "task.json").write_text(json.dumps(run["task_settings"]))
    evaluation_rotations.main(
        [
            "--task",
            "flow_matching",
            "--task-settings",
            str(root / "task.json"),
            "--split",
            str(split),
            "--num-rotations",
            "4",
            "--seed",
            "3",
            "--out",
            str(root / "rot.npz"),
        ]
    )
    return {"root": root, "split": split, "manifest": root / "out" / "manifest.json"}


def test_a_run_diverging_at_step_1_has_an_empty_checkpoint_folder(diverged: dict[str, Path]) -> None:
    manifest = json.loads(diverged["manifest"].read_text())
    assert manifest["status"] == "diverged" and manifest["diverged_at_step"] == 1 and manifest["checkpoints"] == []
    assert manifest["checkpoint_bytes"] == 0 and manifest["steps_trained"] == 0
    assert (diverged["root"] / "out" / "checkpoints").is_dir()  # the rule's declared output exists
    assert not list((diverged["root"] / "out" / "checkpoints").iterdir())


def test_run_table_reads_the_status_and_old_manifests_as_finished(diverged: dict[str, Path], tmp_path: Path) -> None:
    root = diverged["root"]
    runs = read_runs([root / "run.json"], [diverged["manifest"]])
    (info,) = runs.values()
    assert info.status == "diverged" and not info.finished and info.diverged_at_step == 1
    assert info.status_reason.startswith("training loss is nan at step 1 (the checkpoint of step 0")
    old = {
        key: value
        for key, value in json.loads(diverged["manifest"].read_text()).items()
        if key not in ("status", "status_reason", "diverged_at_step")
    }
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    (info,) = read_runs([root / "run.json"], [tmp_path / "manifest.json"]).values()
    assert info.status == "finished" and info.finished and info.status_reason is None


@pytest.mark.parametrize("analysis", [checkpoint_decomposition, gradients])
def test_analyses_write_a_header_only_table_for_a_run_without_checkpoints(diverged: dict[str, Path], analysis) -> None:
    root, out = diverged["root"], diverged["root"] / f"{analysis.__name__}.csv"
    code = analysis.main(
        [
            "--run",
            str(root / "run.json"),
            "--manifest",
            str(diverged["manifest"]),
            "--device",
            "cpu",
            "--split",
            str(diverged["split"]),
            "--rotations",
            str(root / "rot.npz"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    with open(out) as handle:
        reader = csv.DictReader(handle)
        assert list(reader) == [] and reader.fieldnames and "step" in reader.fieldnames
