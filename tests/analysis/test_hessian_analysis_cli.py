"""``python -m eqdyn.analysis.hessian_analysis`` end to end on a tiny trained run: the table's format (per-repeat rows,
summaries with t intervals, convergence flags, the negative side), and that the claims and the figure read it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from eqdyn.analysis import hessian_analysis
from eqdyn.figures import claims, hessian_spectra
from eqdyn.figures.lint import assert_figure_clean
from eqdyn.figures.tables import read_csvs, read_runs
from eqdyn.testing import synthetic_dataset, tiny_training_settings
from eqdyn.training.runs import checkpoint_steps
from eqdyn.training.train import run_training

REPEATS = 3
SETTINGS = {
    "checkpoint_fractions": [0.5, 1.0],
    "num_examples": 2,
    "num_rotations": 4,
    "top_k": 4,
    "lanczos_steps": 6,
    "slq_probes": 1,
    "slq_steps": 4,
    "trace_probes": 2,
    "repeats": REPEATS,
    "seed": 0,
}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("hessian_cli")
    split = synthetic_dataset(root / "test.npz", molecules=6)
    training = tiny_training_settings(steps=6, batch_size=4)
    name = "force_field-transformer"
    run = {
        "name": name,
        "base_run": name,
        "sweep": None,
        "task": "force_field",
        "task_settings": {"energy_weight": 0.1, "force_weight": 1.0},
        "model": {"family": "transformer", "size": "xs", "overrides": {}},
        "training": training,
        "checkpoint_steps": checkpoint_steps(6, 3),
    }
    run_path = root / "run.json"
    run_path.write_text(json.dumps(run))
    assert run_training(run_path, split, root / "out", root / "state")
    settings = root / "settings.json"
    settings.write_text(json.dumps(SETTINGS))
    table, density = root / "hessian.csv", root / "density.csv"
    assert (
        hessian_analysis.main(
            [
                "--run",
                str(run_path),
                "--manifest",
                str(root / "out" / "manifest.json"),
                "--split",
                str(split),
                "--settings",
                str(settings),
                "--out",
                str(table),
                "--density-out",
                str(density),
            ]
        )
        == 0
    )
    return table, density, run_path


def test_the_table_has_per_repeat_rows_summaries_with_t_intervals_and_flags(analysed) -> None:
    table = pd.read_csv(analysed[0])
    assert tuple(table.columns) == hessian_analysis.COLUMNS
    assert sorted(set(table["step"])) == [3, 6] and set(table["loss"]) == {"mean", "equiv"}
    per_repeat = table[table["repeat"].notna()]
    summary = table[table["repeat"].isna()]
    for quantity in (
        "lambda_max",
        "lambda_min",
        "lambda_max_converged",
        "lambda_min_converged",
        "negative_mass",
        "num_hvps",
        "eigenvalue_converged",
    ):
        assert quantity in set(summary["quantity"]), quantity
    assert "kappa_10" not in set(table["quantity"])  # top_k 4: no kappa_10, never a kappa beyond what was computed
    hvps = per_repeat[per_repeat["quantity"] == "num_hvps"]["value"]
    assert (hvps == 3 * 6 + 4 + 2).all() and len(hvps) == 2 * 2 * REPEATS
    # every summary is the mean of its repeats, with the t(0.975, n - 1) interval
    key = ["step", "loss", "quantity"]
    lam = per_repeat[per_repeat["quantity"] == "lambda_max"].groupby(key)["value"]
    row = summary[summary["quantity"] == "lambda_max"].set_index(key).sort_index()
    assert np.allclose(row["value"], lam.mean().sort_index()) and (row["repeats"] == REPEATS).all()
    half = stats.t.ppf(0.975, REPEATS - 1) * lam.std(ddof=1).sort_index() / math.sqrt(REPEATS)
    assert np.allclose(row["ci_high"] - row["value"], half)
    assert (per_repeat.loc[per_repeat["quantity"] == "lambda_min", "value"] < 0).all()  # indefinite Hessians
    flags = table[table["quantity"].str.endswith("_converged")]
    assert set(flags["value"]) <= set(np.linspace(0, 1, REPEATS + 1)) and flags["ci_low"].isna().all()


def test_claims_and_figure_read_the_table(analysed, tmp_path: Path) -> None:
    table, density, run_path = analysed
    runs = read_runs([run_path])
    result = {c.id: c for c in claims.hessian_claims(read_csvs([table]), runs)}
    assert "hessian_smoothness_force_field" in result and "hessian_conditioning_kappa10_force_field" not in result
    assert result["hessian_smoothness_force_field"].verdict in (
        claims.REPRODUCED,
        claims.NOT_REPRODUCED,
        claims.INCONCLUSIVE,
        claims.NOT_CONVERGED,
    )
    fig = hessian_spectra.plot(read_csvs([table]), read_csvs([density]), runs)
    assert_figure_clean(fig, "hessian_spectra of the analysed tiny run")


def test_a_run_without_checkpoints_gets_header_only_tables(analysed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    # a run that diverged at its first step keeps no checkpoint: the analysis must still write valid tables
    table, _density, _run_path = analysed
    root = table.parent
    manifest = json.loads((root / "out" / "manifest.json").read_text())
    manifest.update(checkpoints=[], status="diverged", steps_trained=0)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    outs = [tmp_path / name for name in ("h.csv", "d.csv", "s.csv")]
    assert (
        hessian_analysis.main(
            [
                "--run",
                str(root / "run.json"),
                "--manifest",
                str(tmp_path / "manifest.json"),
                "--split",
                str(root / "test.npz"),
                "--settings",
                str(root / "settings.json"),
                "--out",
                str(outs[0]),
                "--density-out",
                str(outs[1]),
                "--stability-out",
                str(outs[2]),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    for path in outs:
        assert path.read_text().count("\n") == 1 and pd.read_csv(path).empty
