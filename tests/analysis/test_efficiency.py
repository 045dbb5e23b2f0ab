"""The efficiency benchmark: seconds per training step and, for test-time twirling, forward seconds per example."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from eqdyn.analysis import efficiency
from eqdyn.testing import synthetic_dataset, tiny_training_settings
from eqdyn.training.train import Trainer, select_device


def tiny_run(batch_size: int = 8) -> dict:
    settings = tiny_training_settings(batch_size=batch_size, learning_rate=1e-3)
    return {
        "name": "flow_matching-transformer",
        "base_run": "flow_matching-transformer",
        "sweep": None,
        "task": "flow_matching",
        "task_settings": {"prior_sigma": 1.0},
        "model": {"family": "transformer", "size": "xs", "overrides": {}},
        "training": settings,
        "checkpoint_steps": [0, 10],
    }


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    synthetic_dataset(root / "flow_matching" / "train.npz")
    return root


def test_benchmark_writes_training_and_inference_columns(datasets: Path, tmp_path: Path) -> None:
    run_path = tmp_path / "run.json"
    run_path.write_text(json.dumps(tiny_run()))
    out = tmp_path / "efficiency.csv"
    assert (
        efficiency.main(
            ["--runs", str(run_path), "--datasets", str(datasets), "--out", str(out), "--warmup", "1", "--steps", "5"]
        )
        == 0
    )
    with open(out) as handle:
        (row,) = list(csv.DictReader(handle))
    assert tuple(row) == efficiency.COLUMNS
    step, forward = float(row["seconds_per_step"]), float(row["forward_seconds_per_example"])
    assert forward > 0 and float(row["forward_seconds_per_example_stderr"]) >= 0
    # one example's forward pass without gradients costs far less than a training step of 8 examples
    assert forward < step / 2


def test_forward_timing_runs_in_eval_mode_without_gradients(datasets: Path, tmp_path: Path, monkeypatch) -> None:
    trainer = Trainer(tiny_run(), datasets / "flow_matching" / "train.npz", tmp_path / "state", select_device("cpu"))
    seen: list[tuple[bool, bool]] = []
    predict = trainer.task.predict

    def recording_predict(model, inputs):
        seen.append((model.training, torch.is_grad_enabled()))
        return predict(model, inputs)

    monkeypatch.setattr(trainer.task, "predict", recording_predict)
    median, stderr = efficiency.forward_seconds_per_example(trainer, warmup=1, repeats=3)
    assert len(seen) == 4 and all(state == (False, False) for state in seen)
    assert trainer.model.training  # back in training mode afterwards
    assert median > 0 and stderr >= 0
