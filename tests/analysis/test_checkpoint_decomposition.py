"""The per-checkpoint decomposition CLI: rows per checkpoint, twirling rows on independent rotations, the
per-example table, and batching that changes no number."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from eqdyn import decomposition, evaluation_rotations
from eqdyn.analysis import checkpoint_decomposition
from eqdyn.models import build_model
from eqdyn.tasks import build_task
from eqdyn.testing import synthetic_dataset, tiny_training_settings

TASK_SETTINGS = {"prior_sigma": 1.0}
TRAINING = tiny_training_settings(batch_size=4)


def run_config(name: str, task: str, settings: dict, family: str, overrides: dict | None = None) -> dict:
    """A complete run.json (the analyses read it as a typed RunConfig)."""
    return {
        "name": name,
        "base_run": name,
        "sweep": None,
        "task": task,
        "task_settings": settings,
        "model": {"family": family, "size": "xs", "overrides": overrides or {}},
        "training": TRAINING,
        "checkpoint_steps": [0, 10],
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A flow-matching split, its evaluation rotations (K = 4, and 4 twirling rotations), and a run with two
    checkpoints of different weights."""
    root = tmp_path_factory.mktemp("decomposition")
    split = synthetic_dataset(root / "test.npz", molecules=5)
    (root / "task.json").write_text(json.dumps(TASK_SETTINGS))
    rotations = root / "rotations.npz"
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
            "--twirl-rotations",
            "4",
            "--seed",
            "3",
            "--out",
            str(rotations),
        ]
    )
    run = run_config("flow-transformer", "flow_matching", TASK_SETTINGS, "transformer")
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
    code = checkpoint_decomposition.main(
        [
            "--run",
            str(root / "run.json"),
            "--manifest",
            str(root / "manifest.json"),
            "--split",
            str(study["split"]),
            "--rotations",
            str(study["rotations"]),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--evaluations-per-batch",
            str(evaluations_per_batch),
            "--examples-out",
            str(root / f"{name}_examples.csv.gz"),
        ]
    )
    assert code == 0
    with open(out) as handle:
        return list(csv.DictReader(handle))


def test_rows_per_checkpoint_and_twirling(study: dict[str, Path]) -> None:
    rows = decompose(study, "all_at_once", 512)
    assert {row["step"] for row in rows} == {"0", "10"}
    headline = [
        r
        for r in rows
        if (r["quantity"] == "equiv_percent" and r["t_bin"] == "all" and r["part"] == "all")
        or (r["quantity"] == "equiv_percent" and r["t_bin"] == "all")
    ]
    assert len(headline) >= 2 and all(0 < float(r["value"]) < 100 for r in headline)
    ks = {r["k"] for r in rows if r["quantity"] == "twirled_loss"}
    assert ks == {"1", "2", "4"}  # powers of two up to the number of twirling rotations
    # on rotations independent of the estimator's, the twirled loss differs from its expectation at every k,
    # k = 1 and k = K included, but by no more than the paired standard error allows
    for row in (r for r in rows if r["quantity"] == "twirled_loss_minus_predicted"):
        assert float(row["value"]) != 0.0
        assert abs(float(row["value"])) <= 4 * float(row["stderr"]), row
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


def test_per_example_table_matches_the_summary_rows(study: dict[str, Path]) -> None:
    rows = decompose(study, "examples", 512)
    table = pd.read_csv(study["root"] / "examples_examples.csv.gz")
    assert list(table.columns) == [*checkpoint_decomposition.EXAMPLE_COLUMNS, "twirled_1", "twirled_2", "twirled_4"]
    with np.load(study["rotations"]) as data:
        ids = sorted(data["example_id"].tolist())
    for step, at in table.groupby("step"):
        assert sorted(at["example_id"].tolist()) == ids  # every checkpoint on the same examples
        summary = {
            (r["quantity"], r["k"]): float(r["value"])
            for r in rows
            if int(r["step"]) == step and r["t_bin"] == "all" and r["part"] in ("all", "velocity")
        }
        assert at["total"].mean() == pytest.approx(summary[("total", "")], rel=1e-6)
        for k in (1, 2, 4):
            assert at[f"twirled_{k}"].mean() == pytest.approx(summary[("twirled_loss", str(k))], rel=1e-6)


def test_rotations_without_a_twirling_set_give_no_twirling_rows(study: dict[str, Path], tmp_path: Path) -> None:
    plain = tmp_path / "rotations.npz"
    evaluation_rotations.main(
        [
            "--task",
            "flow_matching",
            "--task-settings",
            str(study["root"] / "task.json"),
            "--split",
            str(study["split"]),
            "--num-rotations",
            "4",
            "--seed",
            "3",
            "--out",
            str(plain),
        ]
    )
    with np.load(plain) as without, np.load(study["rotations"]) as with_twirl:
        np.testing.assert_array_equal(without["rotations"], with_twirl["rotations"])  # estimator unchanged
        assert "twirl_rotations" not in without.files and with_twirl["twirl_rotations"].shape[1] == 4
    root = study["root"]
    out = tmp_path / "plain.csv"
    checkpoint_decomposition.main(
        [
            "--run",
            str(root / "run.json"),
            "--manifest",
            str(root / "manifest.json"),
            "--split",
            str(study["split"]),
            "--rotations",
            str(plain),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert not (pd.read_csv(out)["quantity"].str.startswith("twirled")).any()


def test_voxel_twirling_draws_cube_rotations_without_replacement(tmp_path: Path) -> None:
    """Coset design: the twirling set is a keyed order of the 24 cube rotations (no extra forward passes);
    k = 1 averages all 24 single-rotation losses, so it equals L_total exactly; other k agree with
    L_mean + L_equiv (24 - k) / (23 k) within the paired standard error."""
    settings = {"elements": [1, 6], "grid_size": 8, "resolution": 0.75, "atom_sigma": 0.6, "noise_sigma": 0.5}
    split = synthetic_dataset(tmp_path / "test.npz", molecules=4)
    (tmp_path / "task.json").write_text(json.dumps(settings))
    rotations = tmp_path / "rotations.npz"
    evaluation_rotations.main(
        [
            "--task",
            "voxel_denoising",
            "--task-settings",
            str(tmp_path / "task.json"),
            "--split",
            str(split),
            "--num-rotations",
            "4",
            "--twirl-rotations",
            "8",
            "--seed",
            "3",
            "--out",
            str(rotations),
        ]
    )
    with np.load(rotations) as data:
        assert data["twirl_order"].shape == (len(data["example_id"]), 24) and "twirl_rotations" not in data.files
    run = run_config("voxel-unet3d", "voxel_denoising", settings, "unet3d", {"channels": 2})
    (tmp_path / "run.json").write_text(json.dumps(run))
    torch.manual_seed(0)
    model = build_model("voxel_denoising", "unet3d", "xs", channels=2)
    torch.save({"step": 0, "weights": model.state_dict()}, tmp_path / "step_0.pt")
    (tmp_path / "manifest.json").write_text(json.dumps({"checkpoints": [{"step": 0, "file": "step_0.pt"}]}))
    out = tmp_path / "voxel.csv"
    assert (
        checkpoint_decomposition.main(
            [
                "--run",
                str(tmp_path / "run.json"),
                "--manifest",
                str(tmp_path / "manifest.json"),
                "--split",
                str(split),
                "--rotations",
                str(rotations),
                "--out",
                str(out),
                "--device",
                "cpu",
                "--evaluations-per-batch",
                "48",
                "--examples-out",
                str(tmp_path / "voxel_examples.csv.gz"),
            ]
        )
        == 0
    )
    table = pd.read_csv(out)
    difference = table[table["quantity"] == "twirled_loss_minus_predicted"].set_index("k")
    assert sorted(difference.index) == [1, 2, 4, 8, 16]
    assert abs(difference.loc[1, "value"]) < 1e-6 * table.loc[table["quantity"] == "total", "value"].iloc[0]
    for k in (2, 4, 8, 16):
        assert abs(difference.loc[k, "value"]) <= 4 * difference.loc[k, "stderr"], k
    examples = pd.read_csv(tmp_path / "voxel_examples.csv.gz")
    np.testing.assert_allclose(examples["twirled_1"], examples["total"], rtol=1e-5)


def test_the_pipeline_runs_the_public_decompose(study: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch of the pipeline goes through eqdyn.decomposition.decompose, and its table is the user's
    Decomposition.summary() of the same model, row for row."""
    calls = []
    public = decomposition.decompose

    def counting(*args, **kwargs):
        calls.append(args[2].example_id.tolist())
        return public(*args, **kwargs)

    monkeypatch.setattr(decomposition, "decompose", counting)
    decompose(study, "public", 8)
    rows = pd.read_csv(study["root"] / "public.csv")
    with np.load(study["rotations"]) as data:
        ids = sorted(data["example_id"].tolist())
    assert sorted(i for call in calls for i in call) == sorted(ids * 2)  # each example once per checkpoint
    monkeypatch.setattr(decomposition, "decompose", public)
    task = build_task("flow_matching", **TASK_SETTINGS)
    torch.manual_seed(1)
    model = build_model("flow_matching", "transformer", "xs").eval()  # the weights of the step-10 checkpoint
    batches = checkpoint_decomposition.load_evaluation_batches(
        task, study["split"], study["rotations"], 3, torch.float32
    )
    summary = decomposition.decompose_batches(task, model, batches).summary()
    at_step = rows[rows["step"] == 10].reset_index(drop=True)
    assert list(summary.columns) == list(decomposition.SUMMARY_COLUMNS)
    assert list(at_step["quantity"]) == list(summary["quantity"])
    np.testing.assert_allclose(at_step["value"], summary["value"], rtol=1e-5, atol=1e-9)
    assert list(summary["k"].dropna()) == [int(k) for k in at_step["k"].dropna()]


def test_rotations_of_another_design_are_refused(study: dict[str, Path], tmp_path: Path) -> None:
    settings = {"elements": [1, 6], "grid_size": 8, "resolution": 0.75, "atom_sigma": 0.6, "noise_sigma": 0.5}
    (tmp_path / "task.json").write_text(json.dumps(settings))
    voxel_rotations = tmp_path / "rotations.npz"
    evaluation_rotations.main(
        [
            "--task",
            "voxel_denoising",
            "--task-settings",
            str(tmp_path / "task.json"),
            "--split",
            str(study["split"]),
            "--num-rotations",
            "4",
            "--seed",
            "3",
            "--out",
            str(voxel_rotations),
        ]
    )
    task = build_task("flow_matching", **TASK_SETTINGS)
    with pytest.raises(ValueError, match="evaluation design is 'haar'"):
        checkpoint_decomposition.load_evaluation_batches(task, study["split"], voxel_rotations, 4, torch.float32)
