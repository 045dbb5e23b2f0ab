"""The per-checkpoint decomposition CLI: rows per checkpoint, twirling rows, and batching that changes no number."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eqdyn import evaluation_rotations
from eqdyn.analysis import checkpoint_decomposition
from eqdyn.models import build_model
from eqdyn.testing import synthetic_dataset

TASK_SETTINGS = {"prior_sigma": 1.0}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A flow-matching split, its evaluation rotations (K = 4), and a run with two checkpoints of different weights."""
    root = tmp_path_factory.mktemp("decomposition")
    split = synthetic_dataset(root / "test.npz", molecules=5)
    (root / "task.json").write_text(json.dumps(TASK_SETTINGS))
    rotations = root / "rotations.npz"
    evaluation_rotations.main(["--task", "flow_matching", "--task-settings", str(root / "task.json"), "--split",
                               str(split), "--num-rotations", "4", "--seed", "3", "--out", str(rotations)])  # fmt: skip
    run = {"name": "flow-transformer", "task": "flow_matching", "task_settings": TASK_SETTINGS,
           "model": {"family": "transformer", "size": "xs", "overrides": {}}}  # fmt: skip
    (root / "run.json").write_text(json.dumps(run))
    checkpoints = []
    for step, seed in ((0, 0), (10, 1)):
        torch.manual_seed(seed)
        model = build_model("flow_matching", "transformer", "xs")
        torch.save({"step": step, "weights": model.state_dict()}, root / f"step_{step}.pt")
        checkpoints.append({"step": step, "file": f"step_{step}.pt"})
    (root / "manifest.json").write_text(json.dumps({"checkpoints": checkpoints}))
    return {"root": root, "split": split, "rotations": rotations}


def decompose(study: dict[str, Path], name: str, evaluations_per_batch: int) -> list[dict[str, str]]:
    root = study["root"]
    out = root / f"{name}.csv"
    code = checkpoint_decomposition.main([
        "--run", str(root / "run.json"), "--manifest", str(root / "manifest.json"), "--split", str(study["split"]),
        "--rotations", str(study["rotations"]), "--out", str(out), "--device", "cpu",
        "--evaluations-per-batch", str(evaluations_per_batch),
    ])  # fmt: skip
    assert code == 0
    with open(out) as handle:
        return list(csv.DictReader(handle))


def test_rows_per_checkpoint_and_twirling(study: dict[str, Path]) -> None:
    rows = decompose(study, "all_at_once", 512)
    assert {row["step"] for row in rows} == {"0", "10"}
    headline = [r for r in rows if (r["quantity"] == "equiv_percent" and r["t_bin"] == "all" and r["part"] == "all")
                or (r["quantity"] == "equiv_percent" and r["t_bin"] == "all")]  # fmt: skip
    assert len(headline) >= 2 and all(0 < float(r["value"]) < 100 for r in headline)
    ks = {r["k"] for r in rows if r["quantity"] == "twirled_loss"}
    assert ks == {"1", "2", "4"}  # powers of two up to K
    # two different weight draws give different losses: the rows are per checkpoint, not copies
    totals = {r["step"]: float(r["value"]) for r in rows if r["quantity"] == "total" and r["t_bin"] == "all"}
    assert totals["0"] != totals["10"]


def test_batching_changes_no_number(study: dict[str, Path]) -> None:
    """Examples' noise and rotations are keyed by example id, so one example per forward pass (4 evaluations) and
    every example in one pass give the same table, up to float32 summation order."""
    together, one_by_one = decompose(study, "together", 512), decompose(study, "one_by_one", 4)
    assert [(r["step"], r["part"], r["t_bin"], r["quantity"], r["k"]) for r in together] == [
        (r["step"], r["part"], r["t_bin"], r["quantity"], r["k"]) for r in one_by_one
    ]
    values = np.array([float(r["value"]) for r in together])
    np.testing.assert_allclose([float(r["value"]) for r in one_by_one], values, rtol=1e-5, atol=1e-9)
