"""Each verdict rule of the claims table on synthetic tables built to land in each branch."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from figures_testing import (
    SyntheticRun,
    SyntheticStudy,
    default_runs,
    write_efficiency,
    write_gradients,
    write_study,
)

from eqdyn.figures import claims
from eqdyn.figures.tables import read_csvs, read_decomposition, read_runs


def build(study: SyntheticStudy, **tables_) -> dict[str, claims.Claim]:
    result = claims.build_claims(
        read_decomposition(study.decomposition_files()), read_runs(study.run_files(), study.manifest_files()), **tables_
    )
    return {claim.id: claim for claim in result}


def make(tmp_path: Path, runs=None, steps=None, **kwargs) -> SyntheticStudy:
    study = SyntheticStudy(tmp_path, runs or default_runs(**kwargs))
    if steps is not None:
        study.steps = steps
    return write_study(study)


# ---------------------------------------------------------------------------------------------- 2% and sweeps


def point_cloud_runs(**kwargs) -> list[SyntheticRun]:
    return [r for r in default_runs(**kwargs) if r.task != "voxel_denoising"]


def set_quantity(study: SyntheticStudy, run: str, quantity: str, values: dict[int, float]) -> None:
    """Overwrite one quantity of one run's decomposition table at the given steps."""
    path = study.decomposition(next(r for r in study.runs if r.name == run))
    table = pd.read_csv(path)
    for step, value in values.items():
        table.loc[(table["quantity"] == quantity) & (table["step"] == step), "value"] = value
    table.to_csv(path, index=False)


def test_two_percent_reproduced_when_every_upper_bound_is_below(tmp_path: Path) -> None:
    result = build(make(tmp_path, runs=point_cloud_runs(final_percent=1.0)))
    for cid in (
        "equiv_2_percent",
        "equiv_2_percent_flow_matching",
        "equiv_2_percent_force_field",
        "robust_size",
        "robust_dataset",
        "robust_optimizer",
    ):
        assert result[cid].verdict == claims.REPRODUCED, (cid, result[cid].measured)
    # the value is read at step 10k, not at the last step (20k)
    assert "at step 10000" in result["equiv_2_percent"].measured


def test_voxel_coset_estimate_can_never_reproduce_only_refute(tmp_path: Path) -> None:
    # the voxel estimate is a lower bound on the SO(3) L_equiv: <= 2% there confirms nothing
    result = build(make(tmp_path, final_percent=1.0))
    assert result["equiv_2_percent_voxel_denoising"].verdict == claims.INCONCLUSIVE
    assert "lower bound only" in result["equiv_2_percent"].measured
    assert result["equiv_2_percent"].verdict == claims.INCONCLUSIVE
    assert result["equiv_2_percent_flow_matching"].verdict == claims.REPRODUCED
    runs = default_runs(final_percent=1.0)
    next(r for r in runs if r.task == "voxel_denoising").final_percent = 5.0  # lower bound above 2%
    result = build(make(tmp_path / "above", runs=runs))
    assert result["equiv_2_percent_voxel_denoising"].verdict == claims.NOT_REPRODUCED
    assert result["equiv_2_percent"].verdict == claims.NOT_REPRODUCED


def test_two_percent_not_reproduced_when_a_lower_bound_is_above(tmp_path: Path) -> None:
    runs = point_cloud_runs(final_percent=1.0)
    runs[0].final_percent = 4.0  # flow_matching-transformer stays at ~5% at step 10k
    result = build(make(tmp_path, runs=runs))
    assert result["equiv_2_percent"].verdict == claims.NOT_REPRODUCED
    assert result["robust_size"].verdict == claims.NOT_REPRODUCED  # the base run is in every sweep's set
    assert result["equiv_2_percent"].ci_low > 2
    assert result["equiv_2_percent_force_field"].verdict == claims.REPRODUCED


def test_two_percent_inconclusive_when_an_interval_straddles(tmp_path: Path) -> None:
    # ~2.2% at step 10k with a 30% relative SE: the interval contains 2
    result = build(make(tmp_path, runs=point_cloud_runs(final_percent=1.7, percent_se_fraction=0.3)))
    assert result["equiv_2_percent"].verdict == claims.INCONCLUSIVE
    assert result["equiv_2_percent"].ci_low < 2 < result["equiv_2_percent"].ci_high


def test_two_percent_not_tested_at_this_scale_when_runs_stop_early(tmp_path: Path) -> None:
    result = build(make(tmp_path, steps=[0, 1, 3, 10, 30, 100, 300, 1000, 3000], final_percent=0.5))
    claim = result["equiv_2_percent"]
    assert claim.verdict == claims.NOT_AT_SCALE
    assert "at step 3000" in claim.measured and "upper bound ≤ 2% first at learned step" in claim.measured


def test_two_percent_ignores_checkpoints_where_the_model_has_not_learned(tmp_path: Path) -> None:
    # at step 0 L_total is huge, so L_equiv is a small share of it; a model whose L_total never falls below half
    # its step-0 value has not learned, whatever its percentage
    study = make(tmp_path, runs=point_cloud_runs(final_percent=0.01), steps=[0, 10000])
    for run in study.runs:
        initial = pd.read_csv(study.decomposition(run)).query("quantity == 'total' and step == 0")["value"].iloc[0]
        set_quantity(study, run.name, "total", {10000: 0.9 * initial})
    result = build(study)
    assert result["equiv_2_percent"].verdict == claims.INCONCLUSIVE, result["equiv_2_percent"].measured
    assert "not learned" in result["equiv_2_percent"].measured
    # a learned checkpoint counts; a not-learned one before it is not the "first below" step
    study = make(tmp_path / "learned", runs=point_cloud_runs(final_percent=0.01), steps=[0, 10000])
    result = build(study)
    assert result["equiv_2_percent"].verdict == claims.REPRODUCED
    assert "first at learned step 10000" in result["equiv_2_percent"].measured


def constant_model_tables(study: SyntheticStudy, ratio: float) -> pd.DataFrame:
    """Constant-model losses per task such that every run's L_total at its last step is ``ratio`` x its task's
    (the largest such L_total in the task, so no run of the task sits lower than ``ratio``)."""
    rows = []
    for task in sorted({r.task for r in study.runs}):
        finals = []
        for run in (r for r in study.runs if r.task == task):
            table = pd.read_csv(study.decomposition(run)).query("quantity == 'total' and t_bin == 'all'")
            finals.append(table.loc[table["step"] == table["step"].max(), "value"].max())
        rows.append({"task": task, "part": "all", "quantity": "constant_model_loss", "value": max(finals) / ratio})
    return pd.DataFrame(rows)


def test_two_percent_does_not_count_a_constant_predictor_plateau(tmp_path: Path) -> None:
    # the force-field failure of the decisive study: L_total far below its step-0 value (the step-0 rule counts the
    # run as learned) but at the loss of the best constant model, with a tiny L_equiv share
    study = make(tmp_path, runs=point_cloud_runs(final_percent=0.01), steps=[0, 10000])
    fallback = build(study)["equiv_2_percent"]
    assert fallback.verdict == claims.REPRODUCED  # the step-0 rule lets the plateau through, and says it was used
    assert "learned judged against step 0" in fallback.measured
    plateau = build(study, baselines=constant_model_tables(study, ratio=0.99))["equiv_2_percent"]
    assert plateau.verdict == claims.INCONCLUSIVE, plateau.measured
    assert "not learned: L_total above 0.75x the best constant model's loss" in plateau.measured
    assert "(L_total 0.99x the constant model's)" in plateau.measured
    learned = build(study, baselines=constant_model_tables(study, ratio=0.5))["equiv_2_percent"]
    assert learned.verdict == claims.REPRODUCED
    assert "(L_total 0.50x the constant model's)" in learned.measured and "not learned" not in learned.measured


def test_one_plateau_run_keeps_its_task_from_reading_reproduced(tmp_path: Path) -> None:
    study = make(tmp_path, runs=point_cloud_runs(final_percent=0.01), steps=[0, 10000])
    baselines = constant_model_tables(study, ratio=0.5)
    assert build(study, baselines=baselines)["equiv_2_percent_force_field"].verdict == claims.REPRODUCED
    stuck = next(r for r in study.runs if r.task == "force_field" and r.equivariance == "none")
    constant = float(baselines.loc[baselines["task"] == "force_field", "value"].iloc[0])
    set_quantity(study, stuck.name, "total", {10000: constant})
    claim = build(study, baselines=baselines)["equiv_2_percent_force_field"]
    assert claim.verdict == claims.INCONCLUSIVE, claim.measured
    assert f"{stuck.name}: " in claim.measured and "(L_total 1.00x the constant model's)" in claim.measured


def test_robustness_rows_per_task_tell_a_learned_task_from_a_plateau(tmp_path: Path) -> None:
    study = make(tmp_path, runs=point_cloud_runs(final_percent=0.5), steps=[0, 10000])
    baselines = constant_model_tables(study, ratio=0.5)
    for run in study.runs:  # every force-field run sits on the constant model's loss
        if run.task == "force_field":
            constant = float(baselines.loc[baselines["task"] == "force_field", "value"].iloc[0])
            set_quantity(study, run.name, "total", {10000: constant})
    result = build(study, baselines=baselines)
    for factor in ("size", "dataset", "optimizer"):
        assert result[f"robust_{factor}"].verdict == claims.INCONCLUSIVE
        assert result[f"robust_{factor}_flow_matching"].verdict == claims.REPRODUCED
        assert result[f"robust_{factor}_force_field"].verdict == claims.INCONCLUSIVE
        assert "force_field-transformer" not in result[f"robust_{factor}_flow_matching"].runs
    assert result["robust_size_flow_matching"].measured.startswith("tested 30,000-100,000 parameters")


def test_constant_losses_reads_the_all_row_or_the_only_part() -> None:
    table = pd.DataFrame(
        {
            "task": ["force_field"] * 3 + ["flow_matching"],
            "part": ["energy", "forces", "all", "velocity"],
            "value": [0.1, 0.4, 0.5, 2.8],
        }
    )
    assert claims.constant_losses(table) == {"force_field": 0.5, "flow_matching": 2.8}
    with pytest.raises(ValueError, match="force_field"):
        claims.constant_losses(table[table["part"] != "all"])


def test_a_failed_or_missing_run_makes_the_two_percent_claim_at_best_inconclusive(tmp_path: Path) -> None:
    study = make(tmp_path, runs=point_cloud_runs(final_percent=1.0))
    manifest = study.manifest(study.runs[0])
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "status": "diverged"}))
    result = build(study)
    assert result["equiv_2_percent"].verdict.startswith(claims.INCONCLUSIVE + " (run flow_matching-transformer")
    assert result["equiv_2_percent_force_field"].verdict == claims.REPRODUCED
    # a run of the set with no decomposition table is never silently dropped
    study = make(tmp_path / "missing", runs=point_cloud_runs(final_percent=1.0))
    files = [f for f in study.decomposition_files() if "force_field-transformer--seed-1" not in str(f)]
    result = {
        c.id: c
        for c in claims.build_claims(read_decomposition(files), read_runs(study.run_files(), study.manifest_files()))
    }
    assert result["equiv_2_percent"].verdict.startswith(claims.INCONCLUSIVE)
    assert "force_field-transformer--seed-1: run has no decomposition table" in result["equiv_2_percent"].measured


def test_not_at_scale_still_fails_a_run_that_reached_10k_above_the_line(tmp_path: Path) -> None:
    readings = [
        claims.PercentReading("a", True, 10000, 5.0, 4.0, 6.0, 10000, 5.0, 0.5, None),
        claims.PercentReading("b", False, 3000, 1.0, 0.9, 1.1, 3000, 1.0, 0.05, 300),
    ]
    assert claims.percent_verdict(readings) == claims.NOT_REPRODUCED
    readings[0] = claims.PercentReading("a", True, 10000, 1.0, 0.9, 1.1, 10000, 1.0, 0.05, 100)
    assert claims.percent_verdict(readings) == claims.INCONCLUSIVE  # only some runs reach 10k
    assert claims.percent_verdict([]) == claims.NOT_TESTED


def test_sweep_claims_not_tested_without_that_sweep(tmp_path: Path) -> None:
    runs = [r for r in default_runs() if (r.sweep or {}).get("factor") != "optimizer"]
    result = build(make(tmp_path, runs=runs))
    assert result["robust_optimizer"].verdict == claims.NOT_TESTED
    assert "no optimizer sweep" in result["robust_optimizer"].measured


def test_equivariant_runs_are_not_judged_by_the_two_percent_rule(tmp_path: Path) -> None:
    runs = [SyntheticRun("force_field-painn", "force_field", "painn", "E3")]
    result = build(make(tmp_path, runs=runs))
    assert result["equiv_2_percent"].verdict == claims.NOT_TESTED


# -------------------------------------------------------------------------------------------------- efficiency


def timed_study(tmp_path: Path, painn_scale: float, flow_egnn_scale: float) -> SyntheticStudy:
    runs = default_runs()
    for run in runs:
        if run.name == "force_field-painn":
            run.loss_scale = painn_scale
        if run.name == "flow_matching-egnn":
            run.loss_scale = flow_egnn_scale
    return make(tmp_path, runs=runs)


@pytest.mark.parametrize(
    ("painn_scale", "egnn_scale", "verdict"),
    [
        (2.0, 1.0, claims.REPRODUCED),  # the augmented force field is far better at equal compute
        (0.5, 0.5, claims.NOT_REPRODUCED),  # the equivariant models are better in every task
        (0.5, 1.0, claims.INCONCLUSIVE),  # better in one task, indistinguishable in the other
    ],
)
def test_efficiency_verdicts(tmp_path: Path, painn_scale, egnn_scale, verdict) -> None:
    study = timed_study(tmp_path, painn_scale, egnn_scale)
    # same seconds per step: equal compute = equal step
    path = write_efficiency(
        study,
        {
            "force_field-transformer": 0.01,
            "force_field-painn": 0.01,
            "flow_matching-transformer": 0.01,
            "flow_matching-egnn": 0.01,
        },
    )
    result = build(study, efficiency=read_csvs([path]))
    assert result["efficiency_gap"].verdict == verdict, result["efficiency_gap"].measured
    assert "core-hours" in result["efficiency_gap"].measured


def test_efficiency_compares_at_equal_compute_not_equal_steps(tmp_path: Path) -> None:
    # PaiNN's loss is half the transformer's at every step, but each of its steps costs 1000x more: at the largest
    # compute both reach, the transformer has trained 1000x longer.
    study = timed_study(tmp_path, 0.9, 1.0)
    path = write_efficiency(study, {"force_field-transformer": 0.001, "force_field-painn": 1.0})
    result = build(study, efficiency=read_csvs([path]))
    assert result["efficiency_gap"].verdict == claims.REPRODUCED, result["efficiency_gap"].measured


def test_efficiency_not_tested_without_table(tmp_path: Path) -> None:
    assert build(make(tmp_path))["efficiency_gap"].verdict == claims.NOT_TESTED


# -------------------------------------------------------------------------------------------- parameter relation


def test_parameter_relation_is_not_testable_for_these_architectures(tmp_path: Path) -> None:
    study = make(tmp_path)
    path = write_gradients(study, "force_field-transformer", relation=1.0)
    claim = build(study, gradients=read_csvs([path]))["parameter_quadratic_relation"]
    assert claim.verdict == claims.NOT_TESTABLE and claim.provenance == "[S]"
    assert "ignores coordinates" in claim.measured and "descriptive only" in claim.measured
    assert "flow_matching-transformer (transformer): no linear rotation action" in claim.measured
    runs = [SyntheticRun("force_field-painn", "force_field", "painn", "E3")]
    assert build(make(tmp_path / "eq", runs=runs))["parameter_quadratic_relation"].verdict == claims.NOT_TESTED


def test_spearman_p_value_is_exact_for_few_checkpoints() -> None:
    rho, p = claims.exact_spearman([1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 5.0, 9.0])
    assert rho == pytest.approx(1.0) and p == pytest.approx(2 / 24)  # asymptotic p would be 0
    rho, p = claims.exact_spearman([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 4.0, 3.0, 5.0])
    assert rho == pytest.approx(0.8) and p > 0.1  # exact two-sided p = 0.1333 for n = 5


# ------------------------------------------------------------------------------------------------------ outputs


def test_cli_writes_markdown_and_csv_with_provenance(tmp_path: Path) -> None:
    study = make(tmp_path)
    out_md, out_csv = tmp_path / "results" / "claims.md", tmp_path / "figures" / "claims.csv"
    args = [
        "--decomposition",
        *map(str, study.decomposition_files()),
        "--runs",
        *map(str, study.run_files()),
        "--manifests",
        *map(str, study.manifest_files()),
        "--study",
        "synthetic",
        "--configfiles",
        "config/config.yaml",
        "--out-md",
        str(out_md),
        "--out-csv",
        str(out_csv),
    ]
    assert claims.main(args) == 0
    with open(out_csv) as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows][:2] == ["equiv_2_percent", "equiv_2_percent_flow_matching"]
    assert {row["provenance"] for row in rows} <= {"[A]", "[S]", "[A]/[S]"}
    assert all(row["study"] == "synthetic" and row["config"] == "config/config.yaml" for row in rows)
    assert all(row["verdict"] for row in rows) and all(row["rule"] for row in rows)
    text = out_md.read_text()
    assert "| equiv_2_percent | [A] |" in text and "## Rules" in text


def test_force_field_parts_are_reported_beside_the_reading_but_not_judged(tmp_path: Path) -> None:
    study = make(tmp_path, runs=point_cloud_runs(final_percent=1.0))
    run = next(r for r in study.runs if r.task == "force_field" and r.equivariance == "none" and r.sweep is None)
    path = study.decomposition(run)
    table = pd.read_csv(path)
    percent = table[table["quantity"] == "equiv_percent"]
    energy = percent.assign(part="energy", value=1e-12, stderr=1e-13)  # invariant by construction, as escaip_like
    forces = percent.assign(part="forces", value=50.0, stderr=1.0)  # far above 2%: must not change the verdict
    pd.concat([table, energy, forces]).to_csv(path, index=False)
    from eqdyn.figures.tables import read_decomposition_parts

    parts = read_decomposition_parts(study.decomposition_files())
    assert set(parts["part"]) == {"energy", "forces"}
    result = build(study, parts=parts)
    measured = result["equiv_2_percent_force_field"].measured
    assert f"{run.name} at step 10000: energy 1e-12% [" in measured and "forces 50% [48, 52]" in measured
    assert result["equiv_2_percent_force_field"].verdict == claims.REPRODUCED
    assert "parts" not in result["equiv_2_percent_flow_matching"].measured
    assert claims.describe_parts(None, []) == ""
