"""The learning-rate sweep scores each trial by its late training loss and marks divergence as infinite."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from test_train import make_run, synthetic_dataset

from eqdyn.training.lr_sweep import GRIDS, main, score_learning_rate


def test_scores_are_finite_for_sane_rates_and_infinite_for_divergent_ones(tmp_path: Path) -> None:
    train = synthetic_dataset(tmp_path / "train.npz")
    run = make_run("flow_matching", "transformer", steps=20, grad_clip=None)
    sane = score_learning_rate(run, train, "adam", 1e-3, steps=20)
    assert math.isfinite(sane) and sane > 0
    assert score_learning_rate(run, train, "sgd", 1e30, steps=20) == math.inf


def test_the_cli_sweeps_only_the_optimizers_it_is_given(tmp_path: Path) -> None:
    train = synthetic_dataset(tmp_path / "train.npz")
    run_path = tmp_path / "run.json"
    run_path.write_text(json.dumps({**make_run("flow_matching", "transformer", steps=20), "name": "sweep"}))
    out = tmp_path / "sweep.csv"
    assert (
        main(["--run", str(run_path), "--train", str(train), "--out", str(out), "--steps", "10", "--optimizers", "sgd"])
        == 0
    )
    with open(out) as handle:
        rows = list(csv.DictReader(handle))
    assert {row["optimizer"] for row in rows} == {"sgd"}
    assert [float(row["learning_rate"]) for row in rows] == list(GRIDS["sgd"])
