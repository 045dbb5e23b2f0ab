"""The best constant model's held-out loss: hand-computed values on a synthetic split, the fit is the minimum over
constants, and the decomposition's L_total of that constant model equals it (the seam the claims rely on)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from eqdyn import evaluation_rotations
from eqdyn.analysis import baseline_loss
from eqdyn.analysis.checkpoint_decomposition import load_evaluation_batches
from eqdyn.decomposition import decompose_batches
from eqdyn.molecules import MoleculeDataset
from eqdyn.tasks import build_task
from eqdyn.testing import synthetic_dataset

FORCE_FIELD = {"energy_weight": 1.0, "force_weight": 2.0, "target_scale": 4.0}


def evaluation_files(root: Path, task: str, settings: dict, num_rotations: int = 3) -> dict[str, Path]:
    split = synthetic_dataset(root / f"{task}_test.npz", molecules=5)
    (root / f"{task}.json").write_text(json.dumps(settings))
    rotations = root / f"{task}_rotations.npz"
    evaluation_rotations.main(
        [
            "--task",
            task,
            "--task-settings",
            str(root / f"{task}.json"),
            "--split",
            str(split),
            "--num-rotations",
            str(num_rotations),
            "--seed",
            "5",
            "--out",
            str(rotations),
        ]
    )
    return {"split": split, "settings": root / f"{task}.json", "rotations": rotations}


def run_cli(root: Path, task: str, files: dict[str, Path]) -> pd.DataFrame:
    out = root / f"{task}_baseline.csv"
    code = baseline_loss.main(
        [
            "--task",
            task,
            "--task-settings",
            str(files["settings"]),
            "--split",
            str(files["split"]),
            "--rotations",
            str(files["rotations"]),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return pd.read_csv(out).set_index("part")


def test_force_field_constant_model_by_hand(tmp_path: Path) -> None:
    files = evaluation_files(tmp_path, "force_field", FORCE_FIELD)
    table = run_cli(tmp_path, "force_field", files)
    data = MoleculeDataset.load(files["split"])
    scale = FORCE_FIELD["target_scale"]
    energy = data.energy.double().numpy() / scale
    forces = data.forces.double().numpy() / scale
    mask = data.mask.numpy()
    # energy: the best constant is the mean, its loss the (population) variance; forces: 0, the mean square
    assert table.loc["energy", "constant"] == pytest.approx(energy.mean(), rel=1e-9)
    assert table.loc["energy", "value"] == pytest.approx(energy.var(), rel=1e-9)
    per_molecule = (forces**2).sum((1, 2)) / (3 * mask.sum(1))
    assert table.loc["forces", "constant"] == 0.0
    assert table.loc["forces", "value"] == pytest.approx(2.0 * per_molecule.mean(), rel=1e-6)
    assert table.loc["all", "value"] == pytest.approx(energy.var() + 2.0 * per_molecule.mean(), rel=1e-6)
    assert table.loc["all", "stderr"] > 0
    assert set(table["n"]) == {len(energy)}


def test_flow_matching_parts_that_rotate_get_zero(tmp_path: Path) -> None:
    files = evaluation_files(tmp_path, "flow_matching", {"prior_sigma": 1.0})
    table = run_cli(tmp_path, "flow_matching", files)
    assert list(table.index) == ["velocity"]
    assert table.loc["velocity", "constant"] == 0.0
    task = build_task("flow_matching", prior_sigma=1.0)
    batches = load_evaluation_batches(task, files["split"], files["rotations"], 64, torch.float64)
    by_hand = torch.cat(
        [
            task.loss({"velocity": torch.zeros_like(b.example.target["velocity"])}, b.example.target, b.example.inputs)
            for b in batches
        ]
    )
    assert table.loc["velocity", "value"] == pytest.approx(float(by_hand.mean()), rel=1e-12)


def test_fitted_constant_is_the_minimum(tmp_path: Path) -> None:
    files = evaluation_files(tmp_path, "force_field", FORCE_FIELD)
    task = build_task("force_field", **FORCE_FIELD)
    batches = load_evaluation_batches(task, files["split"], files["rotations"], 4, torch.float64)
    constants = baseline_loss.best_constants(task, batches)
    assert baseline_loss.invariant_parts(task, batches) == {"energy"}
    best = float(baseline_loss.part_losses(task, batches, constants)["energy"].mean())
    for shift in (-0.05, 0.05):
        moved = {**constants, "energy": constants["energy"] + shift}
        assert float(baseline_loss.part_losses(task, batches, moved)["energy"].mean()) > best


class ConstantForceField(nn.Module):
    """Ignores its input: energy c, zero forces."""

    def __init__(self, energy: float) -> None:
        super().__init__()
        self.energy = energy
        self.anchor = nn.Parameter(torch.zeros(()))  # the decomposition asks for a parameter's device

    def forward(self, positions: Tensor, *_: Tensor) -> dict[str, Tensor]:
        batch = positions.shape[0]
        return {
            "energy": torch.full((batch,), self.energy, dtype=positions.dtype) + 0 * self.anchor,
            "forces": torch.zeros_like(positions),
        }


def test_decomposition_of_the_constant_model_reads_the_baseline(tmp_path: Path) -> None:
    files = evaluation_files(tmp_path, "force_field", FORCE_FIELD, num_rotations=4)
    table = run_cli(tmp_path, "force_field", files)
    task = build_task("force_field", **FORCE_FIELD)
    batches = load_evaluation_batches(task, files["split"], files["rotations"], 64, torch.float64)
    model = ConstantForceField(float(table.loc["energy", "constant"])).double()
    result = decompose_batches(task, model, batches)
    assert float(result.quantity("total").mean()) == pytest.approx(table.loc["all", "value"], rel=1e-9)
    # a constant model is exactly invariant: its L_equiv vanishes (up to the estimator's rounding)
    assert np.abs(result.quantity("equiv").numpy()).max() < 1e-9
