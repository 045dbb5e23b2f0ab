"""The Hessian rows of the claims table (smoothness and conditioning per task, the summary, the 1000x magnitude),
each rule made to fail on constructed per-repeat tables in the format of :mod:`eqdyn.analysis.hessian_analysis`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from eqdyn.figures import claims
from eqdyn.figures.tables import RunInfo

FORCE = "force_field-transformer"
FLOW = "flow_matching-transformer"
STEPS = (300, 3000)
# per-repeat batch difficulty: both losses of a repeat share it (same batch and rotations), so it cancels in the
# paired ratio while spreading each loss's values over an order of magnitude
BATCH_SCALE = (1.0, 3.0, 0.5, 2.0, 1.5)


def run_info(name: str, task: str) -> RunInfo:
    return RunInfo(
        name=name,
        task=task,
        base_run=name,
        family="transformer",
        size="s",
        seed=0,
        optimizer="adam",
        sweep_factor=None,
        sweep_value=None,
        equivariance="none",
        parameters=200_000,
        train_molecules=100,
    )


RUNS = {FORCE: run_info(FORCE, "force_field"), FLOW: run_info(FLOW, "flow_matching")}


def hessian_rows(
    run: str,
    kappa_ratio: float | Sequence[float] = 50.0,
    lambda_ratio: float | Sequence[float] = 5.0,
    repeats: int = 5,
    steps: Sequence[int] = STEPS,
    converged: dict[tuple[str, str, int], float] | None = None,
    with_kappa_100: bool = False,
    step_ratios: dict[int, float] | None = None,
) -> list[dict]:
    """Per-repeat rows and summaries: L_mean's value = ratio_r x L_equiv's, both times the repeat's batch scale.
    ``converged`` overrides flags, keyed (loss, quantity, repeat); ``step_ratios`` overrides kappa_ratio per step."""
    rows = []
    for step in steps:
        for repeat in range(repeats):
            scale = BATCH_SCALE[repeat % len(BATCH_SCALE)]
            kr = (step_ratios or {}).get(step, kappa_ratio)
            kr = kr[repeat] if isinstance(kr, Sequence) else kr
            lr = lambda_ratio[repeat] if isinstance(lambda_ratio, Sequence) else lambda_ratio
            for loss, kappa, lam, value in (
                ("mean", 20.0 * kr * scale, 100.0 * lr * scale, 1.0),
                ("equiv", 20.0 * scale, 100.0 * scale, 0.01),
            ):
                quantities = {
                    "kappa_10": kappa,
                    "lambda_max": lam,
                    "sharpness": lam / value,
                    "lambda_min": -lam / 4,
                    "kappa_10_converged": 1.0,
                    "lambda_max_converged": 1.0,
                    "lambda_min_converged": 1.0,
                }
                if with_kappa_100:
                    quantities |= {"kappa_100": 3 * kappa, "kappa_100_converged": 1.0}
                for quantity, number in quantities.items():
                    number = (converged or {}).get((loss, quantity, repeat), number)
                    rows.append(
                        {
                            "run": run,
                            "step": step,
                            "loss": loss,
                            "quantity": quantity,
                            "index": "",
                            "repeat": repeat,
                            "value": number,
                            "stderr": "",
                            "repeats": "",
                        }
                    )
    frame = pd.DataFrame(rows)
    summary = frame.groupby(["run", "step", "loss", "quantity"], as_index=False)["value"].mean()
    summary["repeat"], summary["index"], summary["repeats"] = np.nan, "", repeats
    summary["stderr"] = 0.0
    return rows + summary.to_dict("records")


def table(*parts: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame([row for part in parts for row in part])
    frame["repeat"] = pd.to_numeric(frame["repeat"].replace("", np.nan))
    return frame


def verdicts(hessian: pd.DataFrame | None) -> dict[str, claims.Claim]:
    return {claim.id: claim for claim in claims.hessian_claims(hessian, RUNS)}


def test_rows_per_definition_and_task_all_reproduced_with_the_magnitude() -> None:
    result = verdicts(table(hessian_rows(FORCE, with_kappa_100=True), hessian_rows(FLOW)))
    expected = {
        "hessian_direction",
        "hessian_1000x",
        "hessian_smoothness_force_field",
        "hessian_smoothness_flow_matching",
        "hessian_conditioning_kappa10_force_field",
        "hessian_conditioning_kappa10_flow_matching",
        "hessian_conditioning_kappa100_force_field",
    }
    assert set(result) == expected  # kappa_100 only where it was computed
    for cid in expected - {"hessian_1000x"}:
        assert result[cid].verdict == claims.REPRODUCED, (cid, result[cid].measured)
    magnitude = result["hessian_1000x"]
    assert magnitude.verdict.startswith("direction reproduced, magnitude kappa_10 50x")
    assert "excludes the paper's ~1,000x" in magnitude.verdict and "kappa_100 50x" in magnitude.verdict
    assert f"{FORCE} kappa_100 L_mean/L_equiv step 300: 50x" in magnitude.measured
    near = verdicts(table(hessian_rows(FORCE, kappa_ratio=(800.0, 1200.0, 900.0, 1100.0, 1000.0))))["hessian_1000x"]
    assert near.verdict.startswith("direction reproduced, magnitude kappa_10 990x [")
    assert "contains the paper's ~1,000x" in near.verdict
    # the paired ratio is exact here: the batch scale cancels, so the interval has zero width
    assert math.isclose(result["hessian_conditioning_kappa10_flow_matching"].value, 50.0)
    assert "step 300" in result["hessian_smoothness_force_field"].measured  # every checkpoint is listed
    assert "(not judged)" in result["hessian_smoothness_force_field"].measured


def test_a_run_read_where_it_has_not_learned_is_not_judged() -> None:
    hessian = table(hessian_rows(FORCE), hessian_rows(FLOW, kappa_ratio=0.2, lambda_ratio=0.3))
    learned_everywhere = {FORCE: set(STEPS), FLOW: set(STEPS)}
    result = {c.id: c for c in claims.hessian_claims(hessian, RUNS, learned_everywhere)}
    assert result["hessian_smoothness_force_field"].verdict == claims.REPRODUCED
    # the force-field run sits on a trivial predictor's plateau at its last Hessian checkpoint: its landscape says
    # nothing about the claim, so its rows are inconclusive, whatever the ratio
    plateau = {FORCE: {STEPS[0]}, FLOW: set(STEPS)}
    result = {c.id: c for c in claims.hessian_claims(hessian, RUNS, plateau)}
    for cid in ("hessian_smoothness_force_field", "hessian_conditioning_kappa10_force_field", "hessian_1000x"):
        assert result[cid].verdict == f"{claims.INCONCLUSIVE} (not learned)", cid
    assert f"step {STEPS[-1]}: (not learned, not judged) 50x" in result["hessian_1000x"].measured
    # a learned run whose interval lies below 1 still refutes
    assert result["hessian_smoothness_flow_matching"].verdict == claims.NOT_REPRODUCED
    assert result["hessian_direction"].verdict == claims.NOT_REPRODUCED
    # a run not learned at the read step never refutes either
    reversed_plateau = {FORCE: set(STEPS), FLOW: {STEPS[0]}}
    result = {c.id: c for c in claims.hessian_claims(hessian, RUNS, reversed_plateau)}
    assert result["hessian_smoothness_flow_matching"].verdict == f"{claims.INCONCLUSIVE} (not learned)"
    assert result["hessian_smoothness_force_field"].verdict == claims.REPRODUCED
    assert result["hessian_direction"].verdict == claims.INCONCLUSIVE  # one task reproduced, one undecided


def test_the_other_direction_is_not_reproduced() -> None:
    result = verdicts(table(hessian_rows(FORCE, kappa_ratio=0.2, lambda_ratio=0.3)))
    for cid in (
        "hessian_direction",
        "hessian_smoothness_force_field",
        "hessian_conditioning_kappa10_force_field",
        "hessian_1000x",
    ):
        assert result[cid].verdict == claims.NOT_REPRODUCED, cid
    assert result["hessian_1000x"].ci_high < 1


def test_an_unconverged_kappa_is_inconclusive_never_silently_kept() -> None:
    flags = {("mean", "kappa_10_converged", 3): 0.0}  # one repeat of one loss
    result = verdicts(table(hessian_rows(FORCE, converged=flags)))
    assert result["hessian_conditioning_kappa10_force_field"].verdict == claims.NOT_CONVERGED
    assert result["hessian_conditioning_kappa10_force_field"].value is None
    assert result["hessian_smoothness_force_field"].verdict == claims.REPRODUCED  # lambda_max converged
    assert result["hessian_direction"].verdict == claims.NOT_CONVERGED
    assert result["hessian_1000x"].verdict == claims.NOT_CONVERGED
    # an unconverged lambda_max makes the smoothness row inconclusive in the same way
    result = verdicts(table(hessian_rows(FORCE, converged={("equiv", "lambda_max_converged", 0): 0.0})))
    assert result["hessian_smoothness_force_field"].verdict == claims.NOT_CONVERGED


def test_a_table_without_per_repeat_rows_or_flags_is_inconclusive() -> None:
    frame = table(hessian_rows(FORCE))
    summary_only = frame[frame["repeat"].isna()].drop(columns="repeat")
    result = verdicts(summary_only)
    assert result["hessian_conditioning_kappa10_force_field"].verdict == claims.NOT_CONVERGED
    no_flags = frame[~frame["quantity"].str.endswith("_converged")]
    assert verdicts(no_flags)["hessian_smoothness_force_field"].verdict == claims.NOT_CONVERGED


def test_mixed_when_smoothness_and_conditioning_disagree() -> None:
    # flow matching: L_equiv's lambda_max is above L_mean's while its kappa_10 is smaller
    result = verdicts(table(hessian_rows(FORCE), hessian_rows(FLOW, lambda_ratio=0.5)))
    assert result["hessian_smoothness_flow_matching"].verdict == claims.NOT_REPRODUCED
    assert result["hessian_conditioning_kappa10_flow_matching"].verdict == claims.REPRODUCED
    assert result["hessian_direction"].verdict == claims.MIXED
    assert "hessian_smoothness_flow_matching: not reproduced" in result["hessian_direction"].measured


def test_smoothness_is_judged_on_lambda_max_not_on_lambda_max_over_loss() -> None:
    # lambda_max(L_mean) < lambda_max(L_equiv), but L_equiv is 100x smaller, so lambda_max / L favours L_equiv
    result = verdicts(table(hessian_rows(FORCE, lambda_ratio=0.5)))
    row = result["hessian_smoothness_force_field"]
    assert row.verdict == claims.NOT_REPRODUCED and math.isclose(row.value, 0.5)
    assert "lambda_max/L ratio 0.005x (not judged)" in row.measured


def test_two_repeats_give_a_wide_t_interval_where_1_96_would_not() -> None:
    ratios = (3.0, 1.5)
    result = verdicts(table(hessian_rows(FORCE, kappa_ratio=ratios, repeats=2)))
    row = result["hessian_conditioning_kappa10_force_field"]
    assert row.verdict == claims.INCONCLUSIVE and row.ci_low < 1 < row.ci_high
    logs = np.log(ratios)
    se = logs.std(ddof=1) / np.sqrt(2)
    assert logs.mean() - 1.96 * se > 0  # a normal interval would have claimed the direction
    assert math.isclose(np.log(row.ci_high) - np.log(row.value), stats.t.ppf(0.975, 1) * se)
    # the same spread over five repeats: decided
    five = verdicts(table(hessian_rows(FORCE, kappa_ratio=(3.0, 1.5, 3.0, 1.5, 2.2))))
    assert five["hessian_conditioning_kappa10_force_field"].verdict == claims.REPRODUCED


def test_the_interval_is_paired_over_repeats() -> None:
    # the batch scale varies 6x across repeats but cancels within each repeat: an unpaired comparison of the two
    # losses' means would straddle 1 at ratio 1.3, the paired one does not
    ratios = (1.3, 1.31, 1.29, 1.3, 1.3)
    frame = table(hessian_rows(FORCE, kappa_ratio=ratios))
    row = verdicts(frame)["hessian_conditioning_kappa10_force_field"]
    assert row.verdict == claims.REPRODUCED and 1.28 < row.ci_low < row.ci_high < 1.32
    per_repeat = frame[frame["repeat"].notna() & (frame["quantity"] == "kappa_10") & (frame["step"] == 3000)]
    mean, equiv = (per_repeat.loc[per_repeat["loss"] == loss, "value"].to_numpy() for loss in ("mean", "equiv"))
    unpaired = stats.ttest_ind(np.log(mean), np.log(equiv))
    assert unpaired.pvalue > 0.05


def test_an_undefined_kappa_is_inconclusive() -> None:
    frame = table(hessian_rows(FORCE))
    frame.loc[(frame["quantity"] == "kappa_10") & (frame["loss"] == "equiv") & (frame["repeat"] == 1), "value"] = np.nan
    assert verdicts(frame)["hessian_conditioning_kappa10_force_field"].verdict == claims.INCONCLUSIVE


def test_the_verdict_is_read_at_the_last_checkpoint_and_earlier_ones_are_shown() -> None:
    result = verdicts(table(hessian_rows(FORCE, step_ratios={300: 0.5, 3000: 20.0})))
    row = result["hessian_conditioning_kappa10_force_field"]
    assert row.verdict == claims.REPRODUCED and "step 300: 0.5x" in row.measured and "step 3000: 20x" in row.measured


def test_not_tested_without_a_table_or_a_force_field_run() -> None:
    result = verdicts(None)
    assert result["hessian_direction"].verdict == claims.NOT_TESTED == result["hessian_1000x"].verdict
    result = verdicts(table(hessian_rows(FLOW)))
    assert result["hessian_direction"].verdict == claims.REPRODUCED
    assert result["hessian_1000x"].verdict == claims.NOT_TESTED


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([claims.REPRODUCED, claims.REPRODUCED], claims.REPRODUCED),
        ([claims.NOT_REPRODUCED, claims.NOT_REPRODUCED], claims.NOT_REPRODUCED),
        ([claims.REPRODUCED, claims.NOT_REPRODUCED, claims.NOT_CONVERGED], claims.MIXED),
        ([claims.NOT_REPRODUCED, claims.INCONCLUSIVE], claims.NOT_REPRODUCED),
        ([claims.REPRODUCED, claims.NOT_CONVERGED], claims.NOT_CONVERGED),
        ([claims.REPRODUCED, claims.INCONCLUSIVE], claims.INCONCLUSIVE),
        ([claims.NOT_TESTED], claims.NOT_TESTED),
    ],
)
def test_direction_summary(rows: list[str], expected: str) -> None:
    assert claims.direction_verdict(rows) == expected
