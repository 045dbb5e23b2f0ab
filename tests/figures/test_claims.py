"""Each verdict rule of the claims table on synthetic tables built to land in each branch."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest
from figures_testing import (
    SyntheticRun,
    SyntheticStudy,
    default_runs,
    write_efficiency,
    write_gradients,
    write_hessian,
    write_study,
)

from eqdyn.figures import claims
from eqdyn.figures.tables import read_csvs, read_decomposition, read_runs


def build(study: SyntheticStudy, **tables_) -> dict[str, claims.Claim]:
    result = claims.build_claims(read_decomposition(study.decomposition_files()),
                                 read_runs(study.run_files(), study.manifest_files()), **tables_)  # fmt: skip
    return {claim.id: claim for claim in result}


def make(tmp_path: Path, runs=None, steps=None, **kwargs) -> SyntheticStudy:
    study = SyntheticStudy(tmp_path, runs or default_runs(**kwargs))
    if steps is not None:
        study.steps = steps
    return write_study(study)


# ---------------------------------------------------------------------------------------------- 2% and sweeps


def test_two_percent_reproduced_when_every_upper_bound_is_below(tmp_path: Path) -> None:
    result = build(make(tmp_path, final_percent=1.0))
    for cid in ("equiv_2_percent", "robust_size", "robust_dataset", "robust_optimizer"):
        assert result[cid].verdict == claims.REPRODUCED, (cid, result[cid].measured)
    # the value is read at step 10k, not at the last step (20k)
    assert "at step 10000" in result["equiv_2_percent"].measured


def test_two_percent_not_reproduced_when_a_lower_bound_is_above(tmp_path: Path) -> None:
    runs = default_runs(final_percent=1.0)
    runs[0].final_percent = 4.0  # flow_matching-transformer stays at ~5% at step 10k
    result = build(make(tmp_path, runs=runs))
    assert result["equiv_2_percent"].verdict == claims.NOT_REPRODUCED
    assert result["robust_size"].verdict == claims.NOT_REPRODUCED  # the base run is in every sweep's set
    assert result["equiv_2_percent"].ci_low > 2


def test_two_percent_inconclusive_when_an_interval_straddles(tmp_path: Path) -> None:
    # ~2.2% at step 10k with a 30% relative SE: the interval contains 2
    result = build(make(tmp_path, final_percent=1.7, percent_se_fraction=0.3))
    assert result["equiv_2_percent"].verdict == claims.INCONCLUSIVE
    assert result["equiv_2_percent"].ci_low < 2 < result["equiv_2_percent"].ci_high


def test_two_percent_not_tested_at_this_scale_when_runs_stop_early(tmp_path: Path) -> None:
    result = build(make(tmp_path, steps=[0, 1, 3, 10, 30, 100, 300, 1000, 3000], final_percent=0.5))
    claim = result["equiv_2_percent"]
    assert claim.verdict == claims.NOT_AT_SCALE
    assert "at step 3000" in claim.measured and "upper bound ≤ 2% first at step" in claim.measured


def test_not_at_scale_still_fails_a_run_that_reached_10k_above_the_line(tmp_path: Path) -> None:
    readings = [claims.PercentReading("a", True, 10000, 5.0, 4.0, 6.0, 10000, 5.0, 0.5, None),
                claims.PercentReading("b", False, 3000, 1.0, 0.9, 1.1, 3000, 1.0, 0.05, 300)]  # fmt: skip
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


# ----------------------------------------------------------------------------------------------------- Hessian


@pytest.mark.parametrize(
    ("ratio", "se_fraction", "with_stderr", "direction", "magnitude"),
    [
        (1000.0, 0.1, True, claims.REPRODUCED, "direction reproduced, magnitude"),
        (0.2, 0.1, True, claims.NOT_REPRODUCED, claims.NOT_REPRODUCED),
        (1.1, 0.3, True, claims.INCONCLUSIVE, claims.INCONCLUSIVE),
        (1000.0, 0.1, False, claims.INCONCLUSIVE, claims.INCONCLUSIVE),  # no standard errors: no interval
    ],
)
def test_hessian_verdicts(tmp_path: Path, ratio, se_fraction, with_stderr, direction, magnitude) -> None:
    study = make(tmp_path)
    table, _ = write_hessian(study, "force_field-transformer", kappa_ratio=ratio, kappa_se_fraction=se_fraction,
                             with_stderr=with_stderr)  # fmt: skip
    result = build(study, hessian=read_csvs([table]))
    assert result["hessian_direction"].verdict == direction
    assert result["hessian_1000x"].verdict.startswith(magnitude)
    if direction == claims.REPRODUCED:
        assert "1,000x" in result["hessian_1000x"].verdict
        assert result["hessian_1000x"].ci_low < 1000 < result["hessian_1000x"].ci_high


def test_hessian_not_tested_without_table_or_force_field_run(tmp_path: Path) -> None:
    study = make(tmp_path)
    result = build(study)
    assert result["hessian_direction"].verdict == claims.NOT_TESTED
    assert result["hessian_1000x"].verdict == claims.NOT_TESTED
    table, _ = write_hessian(study, "flow_matching-transformer", kappa_ratio=50)
    result = build(study, hessian=read_csvs([table]))
    assert result["hessian_direction"].verdict == claims.REPRODUCED
    assert result["hessian_1000x"].verdict == claims.NOT_TESTED


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
    path = write_efficiency(study, {"force_field-transformer": 0.01, "force_field-painn": 0.01,
                                    "flow_matching-transformer": 0.01, "flow_matching-egnn": 0.01})  # fmt: skip
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


# ---------------------------------------------------------------------------------------- gradients, twirling


@pytest.mark.parametrize(
    ("relation", "verdict"),
    [(1.0, claims.REPRODUCED), (-1.0, claims.NOT_REPRODUCED), (0.0, claims.INCONCLUSIVE)],
)
def test_gradient_relation_verdicts(tmp_path: Path, relation: float, verdict: str) -> None:
    study = make(tmp_path)
    path = write_gradients(study, "force_field-transformer", relation=relation)
    result = build(study, gradients=read_csvs([path]))
    assert result["gradient_parameter_relation"].verdict == verdict, result["gradient_parameter_relation"].measured


def test_gradient_relation_not_tested_without_the_norm(tmp_path: Path) -> None:
    study = make(tmp_path)
    path = write_gradients(study, "force_field-transformer", with_norm=False)
    assert build(study, gradients=read_csvs([path]))["gradient_parameter_relation"].verdict == claims.NOT_TESTED
    assert build(study)["gradient_parameter_relation"].verdict == claims.NOT_TESTED


def _perturb_twirled(study: SyntheticStudy, run: str, k: int, shift_se: float, drop_se: bool = False) -> None:
    path = study.decomposition(next(r for r in study.runs if r.name == run))
    table = pd.read_csv(path)
    last = table["step"].max()
    row = (table["quantity"] == "twirled_loss") & (table["k"] == k) & (table["step"] == last)
    table.loc[row, "value"] += shift_se * table.loc[row, "stderr"]
    if drop_se:
        table.loc[row, "stderr"] = float("nan")
    table.to_csv(path, index=False)


def test_twirling_verdicts(tmp_path: Path) -> None:
    study = make(tmp_path)
    assert build(study)["test_time_twirling"].verdict == claims.REPRODUCED
    _perturb_twirled(study, "force_field-transformer", k=2, shift_se=10.0)  # 10 SE off: 10/sqrt(2) > 3
    assert build(study)["test_time_twirling"].verdict == claims.NOT_REPRODUCED
    _perturb_twirled(study, "force_field-transformer", k=2, shift_se=0.0, drop_se=True)
    assert build(study)["test_time_twirling"].verdict == claims.INCONCLUSIVE


def test_twirling_ignores_the_identities_at_k_1_and_k_K(tmp_path: Path) -> None:
    study = make(tmp_path)
    _perturb_twirled(study, "force_field-transformer", k=8, shift_se=100.0)  # k = K is not a test
    assert build(study)["test_time_twirling"].verdict == claims.REPRODUCED
    voxel_only = make(tmp_path / "voxel", runs=[SyntheticRun("voxel_denoising-unet3d", "voxel_denoising",
                                                             "unet3d", "none")])  # fmt: skip
    assert build(voxel_only)["test_time_twirling"].verdict == claims.NOT_TESTED


# ------------------------------------------------------------------------------------------------------ outputs


def test_cli_writes_markdown_and_csv_with_provenance(tmp_path: Path) -> None:
    study = make(tmp_path)
    out_md, out_csv = tmp_path / "results" / "claims.md", tmp_path / "figures" / "claims.csv"
    args = ["--decomposition", *map(str, study.decomposition_files()), "--runs", *map(str, study.run_files()),
            "--manifests", *map(str, study.manifest_files()), "--study", "synthetic",
            "--configfiles", "config/config.yaml", "--out-md", str(out_md), "--out-csv", str(out_csv)]  # fmt: skip
    assert claims.main(args) == 0
    with open(out_csv) as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows][:2] == ["equiv_2_percent", "robust_size"]
    assert {row["provenance"] for row in rows} <= {"[A]", "[S]", "[A]/[S]"}
    assert all(row["study"] == "synthetic" and row["config"] == "config/config.yaml" for row in rows)
    assert all(row["verdict"] for row in rows) and all(row["rule"] for row in rows)
    text = out_md.read_text()
    assert "| equiv_2_percent | [A] |" in text and "## Rules" in text
