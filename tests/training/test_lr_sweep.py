"""The learning-rate sweep scores each trial by its late training loss and marks divergence as infinite."""

from __future__ import annotations

import math
from pathlib import Path

from test_train import make_run, synthetic_dataset

from eqdyn.training.lr_sweep import score_learning_rate


def test_scores_are_finite_for_sane_rates_and_infinite_for_divergent_ones(tmp_path: Path) -> None:
    train = synthetic_dataset(tmp_path / "train.npz")
    run = make_run("flow_matching", "transformer", steps=20, grad_clip=None)
    sane = score_learning_rate(run, train, "adam", 1e-3, steps=20)
    assert math.isfinite(sane) and sane > 0
    assert score_learning_rate(run, train, "sgd", 1e30, steps=20) == math.inf
