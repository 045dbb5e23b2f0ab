"""The claims table: each quantitative claim of the paper, this study's measurement and a verdict computed from the
analysis tables by fixed rules (never typed in).

    python -m eqdyn.figures.claims --decomposition results/<study>/analysis/decomposition/*.csv \
        --runs results/<study>/runs/*/run.json --manifests results/<study>/runs/*/manifest.json \
        [--hessian results/<study>/analysis/hessian/<run>.csv ...] [--gradients ...csv] [--efficiency ...csv] \
        --study default --configfiles config/config.yaml \
        --out-md results/<study>/claims.md --out-csv figures/claims.csv

Verdicts: "reproduced", "not reproduced", "inconclusive" (with the reason in brackets where one applies: a failed
run, a lower-bound estimate, an unlearned checkpoint), "not tested", "not tested at this scale" (the runs stop before
the step the claim is about) and "not testable for this architecture"; the 1000x claim's verdict also states the
magnitude measured. The rules are in :data:`RULES` and in the README. A table that is not given makes its claims
"not tested". A claim whose run set includes a run that did not finish is at best inconclusive.
"""

from __future__ import annotations

import argparse
import csv
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from eqdyn.figures.learned import LEARNED_FRACTION, LEARNED_FRACTION_OF_STEP0, learned_steps
from eqdyn.figures.style import add_decomposition_arguments
from eqdyn.figures.tables import (
    Z95,
    RunInfo,
    constant_losses,
    read_csvs,
    read_decomposition,
    read_decomposition_parts,
    read_runs,
    series,
)
from eqdyn.figures.twirling_remedy import read_example_tables
from eqdyn.io import atomic_open

LOG = logging.getLogger(__name__)

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_TESTED = "not tested"
NOT_AT_SCALE = "not tested at this scale"
NOT_TESTABLE = "not testable for this architecture"
FINISHED = "finished"  # a run's manifest status when training completed

THRESHOLD = 2.0  # percent
CLAIM_STEP = 10_000
PAPER_KAPPA_RATIO = 1000.0
TWIRL_TOLERANCE_SE = 3.0
SPEARMAN_ALPHA = 0.05

COLUMNS = (
    "id",
    "provenance",
    "claim",
    "measured",
    "value",
    "ci_low",
    "ci_high",
    "verdict",
    "rule",
    "runs",
    "study",
    "config",
)

RULES = {
    "equiv_2_percent": (
        "For every augmented (non-equivariant) base run and its seed sweeps, per run: the checkpoints that count are "
        "the learned ones, where held-out L_total ≤ 0.75 x the held-out loss of the task's best constant model "
        "(zero for the output parts a rotation changes, the best constant for invariant ones, on the same "
        "examples; without that table: L_total < 0.5 x its step-0 value, said in the reading); read "
        "100 L_equiv/L_total at the last "
        "learned checkpoint at or before step 10,000 with its 95% interval (value ± 1.96 SE over held-out examples). "
        "A run's verdict: not tested at this scale if it stops before step 10,000; inconclusive (not learned) if no "
        "checkpoint up to 10,000 is learned; not reproduced if the lower bound is > 2%; reproduced if the upper bound "
        "is ≤ 2%, except for a task whose estimate is a lower bound on the SO(3) L_equiv (the voxel coset "
        "estimator), which gives inconclusive (lower bound only); inconclusive otherwise. Over the run set: not "
        "reproduced if any run is; else inconclusive (run X failed) if a run diverged, failed or has no table; not "
        "tested at this scale if every run is; reproduced if every run is; inconclusive otherwise. Per-task rows "
        "apply the same rule to one task's runs."
    ),
    "robust_size": "The 2% rule above, applied to the base runs swept over model size and their size sweeps.",
    "robust_dataset": "The 2% rule above, applied to the base runs swept over num_train_molecules and those sweeps.",
    "robust_optimizer": "The 2% rule above, applied to the base runs swept over the optimizer and those sweeps.",
    "hessian_direction": (
        "Summary of the rows hessian_smoothness_<task> and hessian_conditioning_kappa10_<task> (and _kappa100_ "
        "where computed). Reproduced: every row is reproduced. Not reproduced: some row is not reproduced and none "
        "is reproduced. Mixed: some rows are reproduced and others not reproduced (the rows say which). "
        "Inconclusive (not converged): some row is and no row decides. Inconclusive: otherwise. Not tested: no "
        "Hessian table."
    ),
    "hessian_smoothness": (
        "Per run of the task in the Hessian table and per analysed checkpoint: for each repeat r (its own held-out "
        "batch and rotations, shared by both losses) d_r = log(lambda_max(L_mean)_r / lambda_max(L_equiv)_r), "
        "lambda_max = the largest Hessian eigenvalue, used only if it converged for both losses in every repeat "
        "(Ritz residual ≤ 1e-3·|lambda| and within 1% of a Lanczos run twice as long from another start vector). "
        "Ratio exp(mean d), 95% interval exp(mean d ± t(0.975, n−1)·sd(d)/√n) over the n repeats. Every "
        "checkpoint is listed; the verdict is read at each run's last one. Reproduced: every run's interval lies "
        "above 1. Not reproduced: some interval lies below 1. Inconclusive (not converged): some run lacks "
        "converged values in a repeat (or per-repeat rows). Inconclusive: otherwise (an interval contains 1, one "
        "repeat, lambda_max ≤ 0). A run read at a checkpoint that is not learned by the 2% rule's criterion (L_total "
        "above 0.75 x the best constant model's loss) gives inconclusive (not learned) unless another run's interval "
        "lies below 1: the landscape around a trivial predictor is not the one the claim is about. The ratio of "
        "lambda_max/L is listed, not judged: it grows without bound as L_equiv → 0 while L_mean keeps a noise floor."
    ),
    "hessian_conditioning": (
        "The rule of hessian_smoothness applied to kappa_k = lambda_1/lambda_k (k = 10; 100 where top_k ≥ 100), "
        "used only if lambda_1 … lambda_k all converged for both losses in every repeat; a kappa_k with "
        "lambda_k ≤ 0 (undefined) gives inconclusive."
    ),
    "hessian_1000x": (
        "The conditioning readings (kappa_10, and kappa_100 where computed) of the force-field runs at their last "
        "checkpoint, by the rule of hessian_conditioning. Direction reproduced, magnitude X [low, high]: every "
        "interval lies above 1; X is the paired ratio with its 95% t interval, and the verdict says whether that "
        "interval contains the paper's ~1000x. Not reproduced: some interval lies below 1. Inconclusive (not "
        "converged) and inconclusive as in hessian_conditioning. Not tested: no force-field run in the Hessian "
        "table."
    ),
    "efficiency_gap": (
        "Per task, the augmented and the equivariant base run are compared at the largest compute both reach "
        "(core-hours = step × seconds_per_step × threads / 3600 on CPU, GPU-hours = step × seconds_per_step / 3600 "
        "on GPU), held-out L_total interpolated linearly in log(compute) between checkpoints. The gap holds in a "
        "task when the augmented loss is lower by more than 1.96 × the two SEs in quadrature. Reproduced: it holds "
        "in at least one task ('may reach lower loss'). Not reproduced: the equivariant loss is lower by that margin "
        "in every task. Inconclusive: otherwise. Not tested: no efficiency table."
    ),
    "parameter_quadratic_relation": (
        "Hypothesis that would be tested: L_equiv(theta) ≈ c ||theta_perp||^2, where theta = theta_E + theta_perp "
        "splits the parameters into the subspace fixed by the rotation action on parameters and the rest, with theta_E "
        "itself a working equivariant model. Not testable for this architecture: for every augmented model here "
        "either no linear rotation action on its parameters is implemented (message passing has none; a U-Net has "
        "one for the 24 cube rotations, rotating its kernels, not built here) or, "
        "for the transformer, theta_E zeroes the coordinate embedding and vector heads (E_g[R] = 0), so theta_E is "
        "the degenerate model that ignores coordinates and ||theta_perp||^2 is the norm of those weights, which "
        "grows in any run that learns to use coordinates. A local test near theta_E (L_equiv(theta_E + s "
        "theta_perp) against s) is quadratic in s for any smooth model, so it is no test either. The Spearman "
        "correlation over checkpoints (exact or permutation p) is reported as a description only. Not tested: no "
        "augmented base run."
    ),
    "test_time_twirling": (
        "Per task, every augmented base run against every equivariant base run, both evaluated on the same held-out "
        "examples, for k = 1, 2, 4, 8. n = the examples both were evaluated on. Cost of a checkpoint at step s "
        "(core-seconds on CPU, GPU-seconds on GPU): (s × seconds_per_step + k × n × forward_seconds_per_example) "
        "× threads for the augmented model averaged over k twirling rotations, the same with k = 1 for the "
        "equivariant model (no threads factor on GPU; both from the efficiency benchmark). Budget B_k = the smaller "
        "of the two models' largest checkpoint costs; each model is read at its checkpoint with the largest cost "
        "≤ B_k. Per example: d = twirled loss of the augmented model (k twirling Haar rotations, independent of "
        "the decomposition's; voxels: k of the 24 cube rotations without replacement in the example's frame) − "
        "L_total of the equivariant model; mean d ± its paired SE. Twirling wins at k when "
        "mean d < −1.96 SE, the equivariant model when mean d > 1.96 SE. Reproduced: twirling wins for some k ≥ 2 "
        "(the k are named; k = 1, the un-twirled augmented model, is the baseline: its winning is the efficiency "
        "gap, not a remedy). Not reproduced: every pair was compared at each of k = 1, 2, 4, 8 and the equivariant "
        "model wins at each. Inconclusive: otherwise. Not tested: no augmented/equivariant pair of a task with "
        "per-example tables and inference timings. Value: the largest equivariant − twirled augmented loss over "
        "pairs and k, with its 95% interval (± 1.96 paired SE). Also reported, not judged: whether twirling "
        "narrows the gap, the per-example (d at k) − (d at k = 1), ± 1.96 paired SE."
    ),
}


@dataclass
class Claim:
    id: str
    provenance: str
    claim: str
    measured: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    verdict: str
    rule: str
    runs: str
    study: str = ""
    config: str = ""


# ----------------------------------------------------------------------------------------------------------- 2%


@dataclass
class PercentReading:
    run: str
    reached: bool  # the run trained to at least CLAIM_STEP
    step: int  # checkpoint read: the last learned checkpoint at or before CLAIM_STEP (else the last one at or before)
    value: float
    low: float
    high: float
    last_step: int
    last_value: float
    last_se: float
    first_below: int | None  # first learned checkpoint whose upper bound is <= THRESHOLD
    stays_below: int | None = None  # first learned checkpoint from which every upper bound is <= THRESHOLD
    learned: bool = True  # the read checkpoint is learned (see learned_steps)
    # L_total at the read checkpoint over the task's constant-model loss (nan without a baseline table)
    of_constant: float = float("nan")
    lower_bound_only: bool = False  # the task's estimate is a lower bound on the SO(3) L_equiv (coset design)
    status: str = FINISHED  # the run's training outcome (manifest status)

    @property
    def verdict(self) -> str:
        """This run's own verdict under the 2% rule."""
        if self.status != FINISHED:
            return f"{INCONCLUSIVE} (run {self.status})"
        if not self.reached:
            return NOT_AT_SCALE
        if not self.learned:
            return f"{INCONCLUSIVE} (not learned by step {self.step})"
        if self.low > THRESHOLD:
            return NOT_REPRODUCED
        if self.high <= THRESHOLD:
            return f"{INCONCLUSIVE} (lower bound only)" if self.lower_bound_only else REPRODUCED
        return INCONCLUSIVE


def run_status(run: RunInfo) -> str:
    """The run's training outcome: "finished", or e.g. "diverged" / "not trained" (the run has no manifest)."""
    return str(getattr(run, "status", FINISHED))


def lower_bound_only(task: str) -> bool:
    """Whether a task's L_equiv estimate is a lower bound on the SO(3) value (the octahedral coset estimator)."""
    from eqdyn.tasks import TASKS  # the task knows its evaluation design

    return task in TASKS and TASKS[task].evaluation_design == "octahedral_coset"


def percent_reading(table: pd.DataFrame, run: RunInfo, constant_loss: float | None = None) -> PercentReading | None:
    """The run's 2% reading; ``constant_loss``: its task's constant-model loss (None: the step-0 rule)."""
    curve = series(table, run.name, "equiv_percent")
    if curve.empty:
        return None
    high = curve["value"] + Z95 * curve["stderr"]
    low = curve["value"] - Z95 * curve["stderr"]
    learned = curve["step"].isin(learned_steps(table, run.name, constant_loss))
    last_step = int(curve["step"].max())
    trained_to = max([last_step, *run.checkpoint_steps])
    window = curve["step"] <= CLAIM_STEP
    at = curve[window & learned].index[-1] if (window & learned).any() else curve[window].index[-1]
    below = curve.loc[learned & (high <= THRESHOLD), "step"]
    above = curve.loc[learned & ~(high <= THRESHOLD), "step"]
    counted = curve.loc[learned, "step"]
    after = counted[counted > above.max()] if len(above) else counted
    last = curve.index[-1]
    return PercentReading(
        run=run.name,
        reached=trained_to >= CLAIM_STEP,
        step=int(curve.loc[at, "step"]),
        value=float(curve.loc[at, "value"]),
        low=float(low[at]),
        high=float(high[at]),
        last_step=last_step,
        last_value=float(curve.loc[last, "value"]),
        last_se=float(curve.loc[last, "stderr"]),
        first_below=int(below.iloc[0]) if len(below) else None,
        stays_below=int(after.iloc[0]) if len(after) else None,
        learned=bool(learned[at]),
        of_constant=_of_constant(table, run.name, int(curve.loc[at, "step"]), constant_loss),
        lower_bound_only=lower_bound_only(run.task),
        status=run_status(run),
    )


def _of_constant(table: pd.DataFrame, run: str, step: int, constant_loss: float | None) -> float:
    """L_total at ``step`` over the constant-model loss (nan without one)."""
    if constant_loss is None or not np.isfinite(constant_loss) or constant_loss <= 0:
        return float("nan")
    total = series(table, run, "total")
    values = total.loc[total["step"] == step, "value"]
    return float(values.iloc[0]) / constant_loss if len(values) else float("nan")


def missing_reading(run: RunInfo) -> PercentReading:
    """A run of the claim's run set without a decomposition table: it can only make the verdict inconclusive."""
    status = run_status(run) if run_status(run) != FINISHED else "has no decomposition table"
    nan = float("nan")
    return PercentReading(
        run=run.name,
        reached=False,
        step=0,
        value=nan,
        low=nan,
        high=nan,
        last_step=0,
        last_value=nan,
        last_se=nan,
        first_below=None,
        learned=False,
        lower_bound_only=lower_bound_only(run.task),
        status=status,
    )


def percent_verdict(readings: Sequence[PercentReading]) -> str:
    """The 2% rule (RULES['equiv_2_percent']) over a run set, from each run's own verdict."""
    if not readings:
        return NOT_TESTED
    verdicts = [r.verdict for r in readings]
    if NOT_REPRODUCED in verdicts:
        return NOT_REPRODUCED
    failed = [r.run for r in readings if r.status != FINISHED]
    if failed:
        return f"{INCONCLUSIVE} (run {', '.join(failed)} failed)"
    if all(v == NOT_AT_SCALE for v in verdicts):
        return NOT_AT_SCALE
    if all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    return INCONCLUSIVE


def describe_percent(readings: Sequence[PercentReading]) -> str:
    parts = []
    for r in readings:
        if r.status != FINISHED:
            parts.append(f"{r.run}: run {r.status}")
            continue
        text = f"{r.run}: {r.value:.3g}% [{r.low:.3g}, {r.high:.3g}] at step {r.step}"
        if np.isfinite(r.of_constant):
            text += f" (L_total {r.of_constant:.2f}x the constant model's)"
        if not r.learned:
            text += (
                f" (not learned: L_total above {LEARNED_FRACTION:g}x the best constant model's loss at every "
                "checkpoint up to here)"
                if np.isfinite(r.of_constant)
                else " (not learned: L_total not below half its step-0 value at any checkpoint up to here)"
            )
        if r.lower_bound_only:
            text += " (coset estimate: a lower bound on the SO(3) share)"
        if r.step != r.last_step:
            text += f"; {r.last_value:.3g} ± {r.last_se:.2g}% at last step {r.last_step}"
        if r.first_below is None:
            text += "; upper bound never ≤ 2% at a learned checkpoint"
        else:
            text += f"; upper bound ≤ 2% first at learned step {r.first_below}"
            if r.stays_below is not None and r.stays_below != r.first_below:
                text += f", at every learned checkpoint from step {r.stays_below}"
            elif r.stays_below is None:
                text += ", but above 2% again at the last checkpoint"
        if not r.reached:
            text += f" (trained to step {r.last_step} < {CLAIM_STEP})"
        parts.append(f"{text} → {r.verdict}")
    fallback = [r.run for r in readings if r.status == FINISHED and np.isfinite(r.value) and np.isnan(r.of_constant)]
    if fallback:
        parts.append(
            f"learned judged against step 0 (L_total below {LEARNED_FRACTION_OF_STEP0:g}x its step-0 value: no "
            f"constant-model table) for {', '.join(fallback)}"
        )
    return " | ".join(parts)


def percent_claim(
    cid: str, provenance: str, statement: str, readings: list[PercentReading], rule: str | None = None
) -> Claim:
    judged = [r for r in readings if np.isfinite(r.high)]
    worst = max(judged, key=lambda r: r.high) if judged else None
    return Claim(
        id=cid,
        provenance=provenance,
        claim=statement,
        measured=describe_percent(readings) if readings else "no augmented run with a decomposition table",
        value=worst.value if worst else None,
        ci_low=worst.low if worst else None,
        ci_high=worst.high if worst else None,
        verdict=percent_verdict(readings),
        rule=rule or RULES[cid],
        runs=" ".join(r.run for r in readings),
    )


def main_runs(runs: dict[str, RunInfo]) -> list[RunInfo]:
    """Augmented base runs and their seed sweeps."""
    bases = {r.name for r in runs.values() if r.is_base and not r.equivariant}
    return [
        r
        for r in runs.values()
        if r.name in bases or (r.sweep_factor == "seed" and r.base_run in bases and not r.equivariant)
    ]


def sweep_runs(runs: dict[str, RunInfo], factor: str) -> list[RunInfo]:
    """The runs of one sweep factor and the base runs they sweep around."""
    members = [r for r in runs.values() if r.sweep_factor == factor and not r.equivariant]
    bases = {r.base_run for r in members}
    return [runs[name] for name in sorted(bases) if name in runs] + members


def describe_parts(parts: pd.DataFrame | None, readings: Sequence[PercentReading]) -> str:
    """Each output part's share (e.g. energy and forces of a force field) at the step each run is read, with the
    95% interval; reported, not judged (the rule reads the whole loss). Empty when no run has parts."""
    if parts is None or parts.empty:
        return ""
    texts = []
    for reading in readings:
        rows = parts[
            (parts["run"] == reading.run) & (parts["step"] == reading.step) & (parts["quantity"] == "equiv_percent")
        ]
        if rows.empty or not np.isfinite(reading.value):
            continue
        shares = ", ".join(
            f"{part} {value:.3g}% [{value - Z95 * se:.3g}, {value + Z95 * se:.3g}]"
            for part, value, se in zip(
                rows["part"], rows["value"].astype(float), rows["stderr"].astype(float), strict=True
            )
        )
        texts.append(f"{reading.run} at step {reading.step}: {shares}")
    return "parts (100 L_equiv / L_total of each part, not judged): " + "; ".join(texts) if texts else ""


def readings_for(
    table: pd.DataFrame, chosen: list[RunInfo], constants: dict[str, float] | None = None
) -> list[PercentReading]:
    """A reading per chosen run; a run without a table is kept as a missing reading, never dropped. ``constants``:
    task -> constant-model loss (:func:`constant_losses`); a task without one is read by the step-0 rule."""
    constants = constants or {}
    return [percent_reading(table, run, constants.get(run.task)) or missing_reading(run) for run in chosen]


# ------------------------------------------------------------------------------------------------------ Hessian


MIXED = "mixed"
NOT_CONVERGED = f"{INCONCLUSIVE} (not converged)"
HESSIAN_LOSSES = ("mean", "equiv")
# (claim-id part, quantity compared): one row per definition and task
HESSIAN_DEFINITIONS = (
    ("smoothness", "lambda_max"),
    ("conditioning_kappa10", "kappa_10"),
    ("conditioning_kappa100", "kappa_100"),
)


@dataclass
class KappaRatio:
    """One run's paired comparison of a Hessian quantity (lambda_max or kappa_k) of L_mean and L_equiv at one step:
    ratio = exp(mean_r log(q_mean,r / q_equiv,r)) over repeats r, with its 95% t interval (n - 1 dof). ``status`` is
    "above" / "below" (the interval excludes 1 on that side), "straddles", or why there is no verdict."""

    run: str
    kappa: str  # the quantity compared: lambda_max, kappa_10 or kappa_100
    step: int
    ratio: float
    low: float
    high: float
    repeats: int = 0
    status: str = "straddles"
    sharpness_ratio: float = float("nan")  # lambda_max / L of L_mean over that of L_equiv (reported, not judged)


def _per_repeat(rows: pd.DataFrame, loss: str, quantity: str) -> pd.Series:
    """One loss's per-repeat values of a quantity, indexed by repeat (empty for a table without per-repeat rows)."""
    if "repeat" not in rows:
        return pd.Series(dtype=float)
    chosen = rows[(rows["loss"] == loss) & (rows["quantity"] == quantity) & rows["repeat"].notna()]
    return pd.Series(
        pd.to_numeric(chosen["value"], errors="coerce").to_numpy(), index=chosen["repeat"].astype(int).to_numpy()
    )


def paired_ratio(rows: pd.DataFrame, run: str, step: int, quantity: str) -> KappaRatio:
    """RULES['hessian_smoothness'] / ['hessian_conditioning'] at one run and step: the paired t interval of the
    per-repeat log ratio, from converged values only."""
    at = rows[rows["step"] == step]
    flag = "lambda_max_converged" if quantity == "lambda_max" else f"{quantity}_converged"
    mean, equiv = _per_repeat(at, "mean", quantity), _per_repeat(at, "equiv", quantity)
    repeats = sorted(set(mean.index) & set(equiv.index))
    nan = float("nan")
    reading = KappaRatio(run, quantity, step, nan, nan, nan, len(repeats))
    sharp_m, sharp_e = _per_repeat(at, "mean", "sharpness"), _per_repeat(at, "equiv", "sharpness")
    if len(set(sharp_m.index) & set(sharp_e.index)):
        common = sorted(set(sharp_m.index) & set(sharp_e.index))
        with np.errstate(all="ignore"):
            reading.sharpness_ratio = float(np.exp(np.mean(np.log(sharp_m[common] / sharp_e[common]))))
    if not repeats:
        reading.status = "no per-repeat values"
        return reading
    flags = [_per_repeat(at, loss, flag).reindex(repeats) for loss in HESSIAN_LOSSES]
    if any(f.isna().any() or (f < 1).any() for f in flags):
        reading.status = "not converged"
        return reading
    m, e = mean[repeats].to_numpy(dtype=float), equiv[repeats].to_numpy(dtype=float)
    if not (np.isfinite(m).all() and np.isfinite(e).all() and (m > 0).all() and (e > 0).all()):
        reading.status = "not positive"
        return reading
    logs = np.log(m / e)
    reading.ratio = float(np.exp(logs.mean()))
    if len(logs) < 2:
        reading.status = "one repeat"
        return reading
    half = float(stats.t.ppf(0.975, len(logs) - 1)) * float(logs.std(ddof=1)) / np.sqrt(len(logs))
    reading.low, reading.high = float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))
    reading.status = "above" if reading.low > 1 else ("below" if reading.high < 1 else "straddles")
    return reading


NOT_LEARNED = "not learned"


def kappa_ratios(
    hessian: pd.DataFrame,
    quantity: str = "kappa_10",
    last_only: bool = True,
    learned: dict[str, set[int]] | None = None,
) -> list[KappaRatio]:
    """Per run with the quantity for both losses: the paired reading at its last step (or at every step).
    ``learned``: run -> its learned checkpoints (the 2% rule's criterion); a reading at another step keeps its
    numbers but has status "not learned" and is not judged. None: every step counts."""
    out = []
    for run, rows in hessian.groupby("run", sort=False):
        have = rows[rows["quantity"] == quantity]
        steps = sorted(set(have.loc[have["loss"] == "mean", "step"]) & set(have.loc[have["loss"] == "equiv", "step"]))
        for step in steps[-1:] if last_only else steps:
            reading = paired_ratio(rows, str(run), int(step), quantity)
            if learned is not None and int(step) not in learned.get(str(run), set()):
                reading.status = NOT_LEARNED
            out.append(reading)
    return out


def ratio_verdict(ratios: Sequence[KappaRatio]) -> str:
    """Over the runs' readings at their last step: not reproduced if an interval lies below 1; reproduced if every
    interval lies above 1; inconclusive (not converged) if a reading lacks converged values; inconclusive otherwise
    (an interval contains 1, fewer than two repeats, a value <= 0)."""
    if not ratios:
        return NOT_TESTED
    if any(r.status == "below" for r in ratios):
        return NOT_REPRODUCED
    if any(r.status == NOT_LEARNED for r in ratios):  # a landscape around a trivial predictor is not the claim's
        return f"{INCONCLUSIVE} ({NOT_LEARNED})"
    if all(r.status == "above" for r in ratios):
        return REPRODUCED
    if any(r.status in ("not converged", "no per-repeat values") for r in ratios):
        return NOT_CONVERGED
    return INCONCLUSIVE


def _magnitude(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _describe(r: KappaRatio) -> str:
    text = f"step {r.step}: "
    if r.status == NOT_LEARNED:
        text += "(not learned, not judged) "
    if np.isfinite(r.low):
        text += f"{r.ratio:.3g}x [{r.low:.3g}, {r.high:.3g}] ({r.repeats} repeats)"
    elif np.isfinite(r.ratio):
        text += f"{r.ratio:.3g}x, {r.status}"
    else:
        text += r.status
    if r.kappa == "lambda_max" and np.isfinite(r.sharpness_ratio):
        text += f", lambda_max/L ratio {r.sharpness_ratio:.3g}x (not judged)"
    return text


def describe_ratios(ratios: Sequence[KappaRatio]) -> str:
    """Per run and quantity, every step's reading, e.g. "run kappa_10 L_mean/L_equiv step 300: 5.2x [4.1, 6.6]
    (5 repeats); step 3000: ..."."""
    groups: dict[tuple[str, str], list[KappaRatio]] = {}
    for r in ratios:
        groups.setdefault((r.run, r.kappa), []).append(r)
    return " | ".join(
        f"{run} {quantity} L_mean/L_equiv " + "; ".join(_describe(r) for r in rows)
        for (run, quantity), rows in groups.items()
    )


def _worst(ratios: Sequence[KappaRatio]) -> KappaRatio | None:
    return min(ratios, key=lambda r: r.low if np.isfinite(r.low) else -np.inf) if ratios else None


def _reading_claim(
    cid: str,
    provenance: str,
    statement: str,
    rule: str,
    every: list[KappaRatio],
    last: list[KappaRatio],
    verdict: str | None = None,
) -> Claim:
    worst = _worst(last)
    ratio, low, high = (_finite(worst.ratio), _finite(worst.low), _finite(worst.high)) if worst else (None,) * 3
    return Claim(
        cid,
        provenance,
        statement,
        describe_ratios(every) or "no rows for both losses",
        ratio,
        low,
        high,
        verdict or ratio_verdict(last),
        rule,
        " ".join(dict.fromkeys(r.run for r in last)),
    )


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def direction_verdict(verdicts: Sequence[str]) -> str:
    """The summary over the (definition x task) rows: reproduced / not reproduced if every row says so; mixed if
    some rows are reproduced and others not reproduced; inconclusive (not converged) if a row is and no row
    decides the direction; inconclusive otherwise."""
    tested = [v for v in verdicts if v != NOT_TESTED]
    if not tested:
        return NOT_TESTED
    if all(v == REPRODUCED for v in tested):
        return REPRODUCED
    if all(v == NOT_REPRODUCED for v in tested):
        return NOT_REPRODUCED
    if REPRODUCED in tested and NOT_REPRODUCED in tested:
        return MIXED
    if NOT_REPRODUCED in tested:  # a row contradicts the claim and none confirms it
        return NOT_REPRODUCED
    if NOT_CONVERGED in tested:
        return NOT_CONVERGED
    return INCONCLUSIVE


def hessian_claims(
    hessian: pd.DataFrame | None, runs: dict[str, RunInfo], learned: dict[str, set[int]] | None = None
) -> list[Claim]:
    """The summary row hessian_direction, one row per (definition x task) (smoothness on lambda_max, conditioning
    on kappa_10 and, where computed, kappa_100), and hessian_1000x (force field). ``learned``: run -> its learned
    checkpoints; a run read at another checkpoint makes its rows inconclusive (not learned). None: not checked.

    Separate rows, never an average (docs/maths.md, "Hessians and condition numbers"): on dense Hessians of small models
    the direction of kappa_10(L_mean)/kappa_10(L_equiv) flips with model size, and smoothness and conditioning can
    disagree; a row per definition and task, every checkpoint listed, lets the table show it, and the summary says
    "mixed" when decided rows disagree."""
    statement_a = "The loss landscape of L_equiv is smoother and better conditioned than that of L_mean."
    statement_s = "About 1000x lower Hessian condition number for L_equiv than for L_mean in force-field prediction."
    if hessian is None or hessian.empty:
        return [
            Claim(
                "hessian_direction",
                "[A]",
                statement_a,
                "no Hessian table",
                None,
                None,
                None,
                NOT_TESTED,
                RULES["hessian_direction"],
                "",
            ),
            Claim(
                "hessian_1000x",
                "[S]",
                statement_s,
                "no Hessian table",
                None,
                None,
                None,
                NOT_TESTED,
                RULES["hessian_1000x"],
                "",
            ),
        ]
    task_of = {name: runs[name].task if name in runs else "unknown" for name in dict.fromkeys(hessian["run"])}
    rows: list[Claim] = []
    for task in sorted(set(task_of.values())):
        table = hessian[hessian["run"].map(task_of) == task]
        for part, quantity in HESSIAN_DEFINITIONS:
            if not (table["quantity"] == quantity).any():
                continue
            every = kappa_ratios(table, quantity, last_only=False, learned=learned)
            last = kappa_ratios(table, quantity, learned=learned)
            if part == "smoothness":
                statement = f"L_equiv's loss landscape is smoother (smaller lambda_max) than L_mean's ({task})."
                rule = RULES["hessian_smoothness"]
            else:
                statement = f"L_equiv's Hessian is better conditioned ({quantity}) than L_mean's ({task})."
                rule = RULES["hessian_conditioning"]
            rows.append(_reading_claim(f"hessian_{part}_{task}", "[A]", statement, rule, every, last))
    verdict = direction_verdict([c.verdict for c in rows])
    summary = " | ".join(f"{c.id}: {c.verdict}" for c in rows) or "no lambda_max or kappa rows"
    # the inf is never taken (claims without ci_low are filtered out); it only makes the key a float for mypy
    worst = min(
        (c for c in rows if c.ci_low is not None), key=lambda c: np.inf if c.ci_low is None else c.ci_low, default=None
    )
    claims = [
        Claim(
            "hessian_direction",
            "[A]",
            statement_a,
            summary,
            worst.value if worst else None,
            worst.ci_low if worst else None,
            worst.ci_high if worst else None,
            verdict,
            RULES["hessian_direction"],
            " ".join(dict.fromkeys(task_of)),
        )
    ]
    claims += rows
    force_table = hessian[hessian["run"].map(task_of) == "force_field"]
    every, last = [], []
    for quantity in ("kappa_10", "kappa_100"):
        if (force_table["quantity"] == quantity).any():
            every += kappa_ratios(force_table, quantity, last_only=False, learned=learned)
            last += kappa_ratios(force_table, quantity, learned=learned)
    verdict = ratio_verdict(last)
    if verdict == REPRODUCED:
        magnitudes = "; ".join(
            f"{r.kappa} {_magnitude(r.ratio)}x [{_magnitude(r.low)}, {_magnitude(r.high)}], which "
            f"{'contains' if r.low <= PAPER_KAPPA_RATIO <= r.high else 'excludes'} the paper's "
            f"~{PAPER_KAPPA_RATIO:,.0f}x"
            for r in last
        )
        verdict = f"direction reproduced, magnitude {magnitudes}"
    claim = _reading_claim("hessian_1000x", "[S]", statement_s, RULES["hessian_1000x"], every, last, verdict)
    if not last:
        claim.measured, claim.verdict = "no force-field run in the Hessian table", NOT_TESTED
    claims.append(claim)
    return claims


# --------------------------------------------------------------------------------------------------- efficiency


def _interpolate(hours: np.ndarray, values: np.ndarray, at: float) -> float:
    return float(np.interp(np.log(at), np.log(hours), values))


def efficiency_claim(efficiency: pd.DataFrame | None, table: pd.DataFrame, runs: dict[str, RunInfo]) -> Claim:
    statement = "Per GPU-hour, non-equivariant models may reach lower test loss than equivariant ones."
    if efficiency is None or efficiency.empty:
        return Claim(
            "efficiency_gap",
            "[A]",
            statement,
            "no efficiency table",
            None,
            None,
            None,
            NOT_TESTED,
            RULES["efficiency_gap"],
            "",
        )
    from eqdyn.figures.efficiency import compute_unit, loss_vs_hours

    unit = compute_unit(efficiency["device"])
    timed = set(efficiency["run"])
    outcomes, texts, used, best = [], [], [], None
    tasks = sorted({r.task for r in runs.values()})
    for task in tasks:
        base = [
            r
            for r in runs.values()
            if r.task == task and r.is_base and r.name in timed and not series(table, r.name, "total").empty
        ]
        augmented = [r for r in base if not r.equivariant]
        equivariant = [r for r in base if r.equivariant]
        for a in augmented:
            for e in equivariant:
                ca, ce = loss_vs_hours(efficiency, table, a.name), loss_vs_hours(efficiency, table, e.name)
                if ca.empty or ce.empty:
                    continue
                budget = min(ca["hours"].max(), ce["hours"].max())
                if budget < max(ca["hours"].min(), ce["hours"].min()):
                    texts.append(f"{task}: no common compute range")
                    outcomes.append("none")
                    continue
                la = _interpolate(ca["hours"].to_numpy(), ca["value"].to_numpy(), budget)
                le = _interpolate(ce["hours"].to_numpy(), ce["value"].to_numpy(), budget)
                sa = _interpolate(ca["hours"].to_numpy(), ca["stderr"].to_numpy(), budget)
                se_ = _interpolate(ce["hours"].to_numpy(), ce["stderr"].to_numpy(), budget)
                margin = Z95 * np.sqrt(sa**2 + se_**2)
                difference = le - la  # > 0: the augmented model is better
                outcome = "gap" if difference > margin else ("reverse" if -difference > margin else "none")
                outcomes.append(outcome)
                used += [a.name, e.name]
                texts.append(
                    f"{task} at {budget:.3g} {unit}: {a.family} {la:.4g} ± {sa:.2g} vs {e.family} "
                    f"{le:.4g} ± {se_:.2g} (equivariant − augmented = {difference:.3g} ± {margin:.2g})"
                )
                if best is None or difference > best[0]:
                    best = (difference, difference - margin, difference + margin)
    if not outcomes:
        verdict = NOT_TESTED
    elif "gap" in outcomes:
        verdict = REPRODUCED
    elif all(o == "reverse" for o in outcomes):
        verdict = NOT_REPRODUCED
    else:
        verdict = INCONCLUSIVE
    return Claim(
        "efficiency_gap",
        "[A]",
        statement,
        " | ".join(texts) or "no augmented/equivariant pair timed",
        best[0] if best else None,
        best[1] if best else None,
        best[2] if best else None,
        verdict,
        RULES["efficiency_gap"],
        " ".join(dict.fromkeys(used)),
    )


# ----------------------------------------------------------------------------------------- gradients, twirling


def exact_spearman(x: ArrayLike, y: ArrayLike, resamples: int = 20_000) -> tuple[float, float]:
    """Spearman rho and its two-sided permutation p-value: exact (every pairing enumerated) when n! <= resamples,
    else Monte Carlo with a fixed seed. The asymptotic p of ``spearmanr`` is wrong for a handful of checkpoints
    (4 checkpoints in perfect order: asymptotic p = 0, exact p = 2/24 = 0.083)."""
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    rx = (rx - rx.mean()) / np.linalg.norm(rx - rx.mean())

    def rho(ranks: np.ndarray, axis: int = -1) -> np.ndarray:  # Pearson correlation of ranks (ties: mid-ranks)
        centred = ranks - ranks.mean(axis=axis, keepdims=True)
        return (centred @ rx) / np.linalg.norm(centred, axis=axis)

    result = stats.permutation_test(
        (ry,), rho, permutation_type="pairings", vectorized=True, n_resamples=resamples, rng=0
    )
    return float(result.statistic), float(result.pvalue)


def gradient_claim(gradients: pd.DataFrame | None, table: pd.DataFrame, runs: dict[str, RunInfo]) -> Claim:
    statement = (
        "A quadratic relationship between the equivariance error and the non-equivariant part of the parameters "
        "in a decomposed parameter space."
    )
    augmented = sorted((r for r in runs.values() if r.is_base and not r.equivariant), key=lambda r: r.name)
    if not augmented:
        return Claim(
            "parameter_quadratic_relation",
            "[S]",
            statement,
            "no augmented base run",
            None,
            None,
            None,
            NOT_TESTED,
            RULES["parameter_quadratic_relation"],
            "",
        )
    norms = (
        gradients[gradients["quantity"] == "nonequivariant_parameter_sq_norm"]
        if gradients is not None and not gradients.empty
        else pd.DataFrame(columns=["run", "step", "value"])
    )
    texts = []
    for run in augmented:
        norm = norms[norms["run"] == run.name]
        if norm.empty:
            texts.append(
                f"{run.name} ({run.family}): no linear rotation action on its parameters in this pipeline, "
                "so no decomposed parameter space"
            )
            continue
        text = (
            f"{run.name} ({run.family}): theta_E (the rotation-fixed parameters) zeroes the coordinate embedding "
            "and vector heads, i.e. the model that ignores coordinates, so ||theta_perp||^2 grows with any use of "
            "coordinates"
        )
        joined = norm[["step", "value"]].merge(series(table, run.name, "equiv"), on="step", suffixes=("_norm", "_eq"))
        joined = joined[joined["step"] > 0]
        if len(joined) >= 3 and joined["value_norm"].nunique() > 1 and joined["value_eq"].nunique() > 1:
            rho, p = exact_spearman(joined["value_norm"], joined["value_eq"])
            text += (
                f"; descriptive only: Spearman rho(||theta_perp||^2, L_equiv) = {rho:.3g} over {len(joined)} "
                f"checkpoints, permutation p = {p:.2g}"
            )
        texts.append(text)
    return Claim(
        "parameter_quadratic_relation",
        "[S]",
        statement,
        " | ".join(texts),
        None,
        None,
        None,
        NOT_TESTABLE,
        RULES["parameter_quadratic_relation"],
        " ".join(r.name for r in augmented),
    )


def twirling_claim(
    table: pd.DataFrame,
    runs: dict[str, RunInfo],
    efficiency: pd.DataFrame | None = None,
    examples: pd.DataFrame | None = None,
) -> Claim:
    """RULES['test_time_twirling']: the twirled augmented model against the equivariant one at matched cost."""
    from eqdyn.figures.twirling_remedy import TWIRL_KS, cost_unit, has_inference_timings, matched_comparisons

    statement = (
        "Test-time twirling as a remedy: averaging an augmented model's predictions over k rotations narrows the "
        "efficiency gap to equivariant models."
    )

    def untested(reason: str) -> Claim:
        return Claim(
            "test_time_twirling",
            "[S]",
            statement,
            reason,
            None,
            None,
            None,
            NOT_TESTED,
            RULES["test_time_twirling"],
            "",
        )

    if efficiency is None or not has_inference_timings(efficiency):
        return untested("no efficiency table with inference timings (forward_seconds_per_example)")
    if examples is None or examples.empty:
        return untested("no per-example loss tables")
    try:
        unit = cost_unit(efficiency)
    except ValueError as error:  # CPU and GPU timings mixed: no common cost unit
        return untested(str(error))
    comparisons, notes = matched_comparisons(examples, efficiency, runs)
    if not comparisons:
        return untested(" | ".join(notes) or "no augmented/equivariant base pair of a task with per-example tables")
    texts = []
    # k = 1 is the un-twirled augmented model: its winning is the efficiency gap, not a remedy
    wins = [c for c in comparisons if c.outcome == "twirling" and c.k > 1]
    for c in comparisons:
        text = (
            f"{c.task} k={c.k}, budget {c.budget:.3g} {unit}: {c.augmented} step {c.augmented_step} "
            f"({c.augmented_cost:.3g}) {c.augmented_loss:.4g} vs {c.equivariant} step {c.equivariant_step} "
            f"({c.equivariant_cost:.3g}) {c.equivariant_loss:.4g} "
            f"(augmented − equivariant {c.difference:.3g} ± {Z95 * c.difference_se:.2g}, n={c.n}: {c.outcome}"
        )
        if c.k > 1:
            text += f"; against k=1 {c.narrowing:.3g} ± {Z95 * c.narrowing_se:.2g}: {c.narrowing_outcome}"
        texts.append(text + ")")
    pairs = {(c.augmented, c.equivariant) for c in comparisons}
    complete = all(
        {c.k for c in comparisons if (c.augmented, c.equivariant) == pair} >= set(TWIRL_KS) for pair in pairs
    )
    if wins:
        verdict = REPRODUCED
        lead = "twirling lower at " + ", ".join(f"{c.task} k={c.k}" for c in wins)
    elif complete and all(c.outcome == "equivariant" for c in comparisons):
        verdict, lead = NOT_REPRODUCED, "equivariant lower at every k"
    else:
        verdict, lead = INCONCLUSIVE, "no k where twirling is lower by > 1.96 paired SE"
    best = max(comparisons, key=lambda c: -c.difference)  # equivariant − augmented, largest = best for twirling
    return Claim(
        "test_time_twirling",
        "[S]",
        statement,
        " | ".join([lead, *texts, *notes]),
        -best.difference,
        -best.difference - Z95 * best.difference_se,
        -best.difference + Z95 * best.difference_se,
        verdict,
        RULES["test_time_twirling"],
        " ".join(dict.fromkeys(n for c in comparisons for n in (c.augmented, c.equivariant))),
    )


TWIRLING_CHECK_RULE = (
    "Code check, not a claim (it holds for every model): at each augmented base run's last checkpoint, for each k, "
    "the loss of the model averaged over k twirling rotations (independent of the decomposition's rotations; "
    "for voxels k of the 24 cube rotations without replacement) minus its expectation from the estimators "
    "(L_mean + L_equiv/k; voxels L_mean + L_equiv (24 − k)/(23 k)), per example, with its paired SE. "
    "Passed: every |mean| ≤ 3 paired SE. Failed: otherwise."
)


def twirling_unit_check(table: pd.DataFrame, runs: dict[str, RunInfo]) -> Claim:
    """A descriptive row (TWIRLING_CHECK_RULE): the twirling code against its exact expectation."""
    from eqdyn.figures.twirling_remedy import unit_checks

    checks = unit_checks(table, runs)
    statement = "Check of the twirling code: E[loss averaged over k rotations] = L_mean + L_equiv / k."
    if not checks:
        return Claim(
            "twirling_code_check",
            "code",
            statement,
            "no twirling rows",
            None,
            None,
            None,
            NOT_TESTED,
            TWIRLING_CHECK_RULE,
            "",
        )
    zs = [abs(c.z) for c in checks]
    verdict = "passed" if all(np.isfinite(z) and z <= TWIRL_TOLERANCE_SE for z in zs) else "failed"
    texts = [
        f"{c.run} step {c.step} k={c.k}: {c.difference:.3g} ± {c.difference_se:.2g} ({c.z:.2f} paired SE)"
        for c in checks
    ]
    worst = max(zs, key=lambda z: z if np.isfinite(z) else np.inf)
    return Claim(
        "twirling_code_check",
        "code",
        statement,
        " | ".join(texts),
        worst,
        None,
        None,
        verdict,
        TWIRLING_CHECK_RULE,
        " ".join(dict.fromkeys(c.run for c in checks)),
    )


# ------------------------------------------------------------------------------------------------------- table


def build_claims(
    table: pd.DataFrame,
    runs: dict[str, RunInfo],
    hessian: pd.DataFrame | None = None,
    gradients: pd.DataFrame | None = None,
    efficiency: pd.DataFrame | None = None,
    examples: pd.DataFrame | None = None,
    parts: pd.DataFrame | None = None,
    baselines: pd.DataFrame | None = None,
) -> list[Claim]:
    """Every claim with its measurement and computed verdict (``examples``: the per-example loss tables; ``parts``:
    the decomposition rows of each output part, reported beside the 2% readings of the tasks that have them;
    ``baselines``: the constant-model loss tables, against which a checkpoint counts as learned)."""
    constants = constant_losses(baselines)
    statement = (
        "Non-equivariant models trained with rotation augmentation bring L_equiv to ≤ 2% of held-out loss "
        "within 1k-10k training steps."
    )
    augmented = main_runs(runs)
    claims = [percent_claim("equiv_2_percent", "[A]", statement, readings_for(table, augmented, constants))]
    for task in sorted({r.task for r in augmented}):
        task_readings = readings_for(table, [r for r in augmented if r.task == task], constants)
        claim = percent_claim(
            f"equiv_2_percent_{task}",
            "[A]",
            f"{statement} ({task})",
            task_readings,
            rule="The rule of equiv_2_percent, over this task's augmented base runs and their seed sweeps.",
        )
        part_text = describe_parts(parts, task_readings)
        claim.measured += f" | {part_text}" if part_text else ""
        claims.append(claim)
    for cid, provenance, factor, statement in (
        ("robust_size", "[A]/[S]", "size", "...robust to model size ([S] 1M-400M parameters)."),
        ("robust_dataset", "[A]/[S]", "num_train_molecules", "...robust to dataset size ([S] 500-1M samples)."),
        ("robust_optimizer", "[S]", "optimizer", "...robust to the optimizer."),
    ):
        chosen = sweep_runs(runs, factor)
        claim = percent_claim(cid, provenance, statement, readings_for(table, chosen, constants))
        if factor in ("size", "num_train_molecules") and chosen:
            claim.measured = f"{_scope(chosen, factor)}; {claim.measured}"
        if not chosen:
            claim.measured = f"no {factor} sweep in this study"
        claims.append(claim)
        tasks = sorted({r.task for r in chosen})
        for task in tasks if len(tasks) > 1 else []:  # one task: the row above is that task's
            in_task = [r for r in chosen if r.task == task]
            task_claim = percent_claim(
                f"{cid}_{task}",
                provenance,
                f"{statement} ({task})",
                readings_for(table, in_task, constants),
                rule=f"The rule of {cid}, over this task's runs.",
            )
            if factor in ("size", "num_train_molecules"):
                task_claim.measured = f"{_scope(in_task, factor)}; {task_claim.measured}"
            claims.append(task_claim)
    bases = [name for name, run in runs.items() if run.is_base]
    hessian_runs = [] if hessian is None or hessian.empty else list(dict.fromkeys(hessian["run"]))
    # the Hessian rows read a run only where it has learned, by the 2% rule's criterion
    learned = {
        name: learned_steps(table, name, constants.get(runs[name].task)) for name in hessian_runs if name in runs
    }
    claims += [mark_failed(c, runs, hessian_runs) for c in hessian_claims(hessian, runs, learned)]
    claims.append(mark_failed(efficiency_claim(efficiency, table, runs), runs, bases))
    claims.append(gradient_claim(gradients, table, runs))
    claims.append(mark_failed(twirling_claim(table, runs, efficiency, examples), runs, bases))
    return claims


def mark_failed(claim: Claim, runs: dict[str, RunInfo], candidates: Sequence[str]) -> Claim:
    """A claim whose run set includes a run that did not finish is at best inconclusive: dropping a run must never
    turn a verdict into "reproduced". The run set is the claim's candidates and the runs it used."""
    names = dict.fromkeys([*candidates, *claim.runs.split()])
    failed = [name for name in names if name in runs and run_status(runs[name]) != FINISHED]
    if failed:
        notes = ", ".join(f"{name} {run_status(runs[name])}" for name in failed)
        claim.measured = f"runs that did not finish: {notes}; {claim.measured}"
        if claim.verdict.startswith((REPRODUCED, "direction reproduced")):
            claim.verdict = f"{INCONCLUSIVE} (run {', '.join(failed)} failed)"
    return claim


def _scope(chosen: list[RunInfo], factor: str) -> str:
    if factor == "size":
        values = [r.parameters for r in chosen if r.parameters]
        return f"tested {min(values):,}-{max(values):,} parameters" if values else "parameter counts unknown"
    values = [r.train_molecules for r in chosen if r.train_molecules]
    return f"tested {min(values):,}-{max(values):,} training molecules" if values else "dataset sizes unknown"


def _format(value: float | None) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.6g}"


def write_outputs(claims: list[Claim], out_md: Path, out_csv: Path, study: str, configs: Sequence[str]) -> None:
    config = " ".join(configs)
    for claim in claims:
        claim.study, claim.config = study, config
    with atomic_open(out_csv) as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for claim in claims:
            row = asdict(claim)
            writer.writerow({**row, **{k: _format(row[k]) for k in ("value", "ci_low", "ci_high")}})
    lines = [
        f"# Claims of arXiv 2512.02303 checked by study `{study}`",
        "",
        f"Config: `{config}`. Verdicts are computed from the analysis tables by the rules below; "
        "[A] = the paper's abstract, [S] = a published one-page summary (not the paper itself).",
        "",
        "| id | source | claim | verdict | measured |",
        "|---|---|---|---|---|",
    ]
    for c in claims:
        lines.append(f"| {c.id} | {c.provenance} | {c.claim} | **{c.verdict}** | {_md(c.measured)} |")
    lines += ["", "## Rules", ""] + [f"- **{c.id}**: {c.rule}" for c in claims] + [""]
    with atomic_open(out_md) as handle:
        handle.write("\n".join(lines))


def _md(text: str) -> str:
    return text.replace("|", "<br>").replace("\n", " ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_decomposition_arguments(parser)
    parser.add_argument("--hessian", type=Path, nargs="*", default=None, help="Hessian tables (absent: not tested)")
    parser.add_argument("--gradients", type=Path, nargs="*", default=None, help="gradient tables")
    parser.add_argument("--efficiency", type=Path, default=None, help="efficiency table")
    parser.add_argument("--examples", type=Path, nargs="*", default=None, help="per-example loss tables (.csv.gz)")
    parser.add_argument(
        "--baselines", type=Path, nargs="*", default=None, help="constant-model loss tables (absent: step-0 rule)"
    )
    parser.add_argument("--study", required=True, help="study name (config key `study`)")
    parser.add_argument("--configfiles", nargs="+", required=True, help="config file(s) of the study")
    parser.add_argument("--out-md", type=Path, required=True)
    parser.add_argument("--out-csv", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    claims = build_claims(
        read_decomposition(args.decomposition),
        read_runs(args.runs, args.manifests),
        hessian=read_csvs(args.hessian) if args.hessian else None,
        gradients=read_csvs(args.gradients) if args.gradients else None,
        efficiency=read_csvs([args.efficiency]) if args.efficiency else None,
        examples=read_example_tables(args.examples) if args.examples else None,
        parts=read_decomposition_parts(args.decomposition),
        baselines=read_csvs(args.baselines) if args.baselines else None,
    )
    write_outputs(claims, args.out_md, args.out_csv, args.study, args.configfiles)
    for claim in claims:
        LOG.info("%s: %s", claim.id, claim.verdict)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
