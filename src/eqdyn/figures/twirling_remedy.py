"""Test-time twirling as a remedy, in numbers: the augmented model averaged over k rotations against the equivariant
model of the same task at matched training-plus-inference cost, example by example, and the check of the twirling
code. Shared by the claims table (``eqdyn.figures.claims``) and figure 7 (``eqdyn.figures.twirling``), so that editing
the figure's drawing code redraws only the figure.

Inputs: the per-example tables of the decomposition (``<run>_examples.csv.gz``: run, step, example_id, total,
twirled_<k>), the efficiency table with inference timings (``forward_seconds_per_example``) and the decomposition
tables (rows ``twirled_loss_predicted`` and ``twirled_loss_minus_predicted`` with its paired standard error).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import numpy as np
import pandas as pd

from eqdyn.figures.efficiency import compute_unit
from eqdyn.figures.tables import Z95, RunInfo

TWIRL_KS = (1, 2, 4, 8)  # the k of the remedy comparison
FORWARD_COLUMN = "forward_seconds_per_example"


def read_example_tables(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The per-example loss tables of the decomposition (gzipped CSV: run, step, example_id, total, twirled_<k>)."""
    frames = [pd.read_csv(path) for path in paths]
    frames = [frame for frame in frames if len(frame)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def has_inference_timings(efficiency: pd.DataFrame | None) -> TypeGuard[pd.DataFrame]:
    return efficiency is not None and not efficiency.empty and FORWARD_COLUMN in efficiency.columns


def cost_unit(efficiency: pd.DataFrame) -> str:
    """'core-seconds' (CPU) or 'GPU-seconds'; raises if the table mixes them."""
    return compute_unit(efficiency["device"]).replace("hours", "seconds")


def checkpoint_costs(efficiency: pd.DataFrame, run: str, steps: np.ndarray, k: int, examples: int) -> np.ndarray:
    """Training plus inference cost of each checkpoint: (step * seconds_per_step + k * examples *
    forward_seconds_per_example) * threads on a CPU (core-seconds), without the threads factor on a GPU."""
    matching = efficiency[efficiency["run"] == run]
    if matching.empty:
        raise KeyError(f"run {run} is not in the efficiency table")
    row = matching.iloc[0]
    threads = float(row["threads"]) if str(row["device"]).lower() == "cpu" else 1.0
    training = np.asarray(steps, dtype=float) * float(row["seconds_per_step"])
    return threads * (training + k * examples * float(row[FORWARD_COLUMN]))


def matched_step(steps: np.ndarray, costs: np.ndarray, budget: float) -> int | None:
    """The checkpoint with the largest cost not above ``budget`` (None if every checkpoint costs more)."""
    within = costs <= budget * (1 + 1e-12)
    return int(steps[within][np.argmax(costs[within])]) if within.any() else None


@dataclass
class TwirlComparison:
    """Augmented model twirled over k rotations against an equivariant model of one task, at matched cost."""

    task: str
    augmented: str
    equivariant: str
    k: int
    budget: float
    augmented_step: int
    equivariant_step: int
    augmented_cost: float  # of the checkpoint read; the model whose largest cost is the budget reads its last one
    equivariant_cost: float
    n: int
    augmented_loss: float
    augmented_se: float
    equivariant_loss: float
    equivariant_se: float
    difference: float  # augmented (twirled) - equivariant, mean over the common examples
    difference_se: float  # paired standard error
    narrowing: float  # (difference at k) - (difference at k = 1), per example; < 0: twirling narrows the gap
    narrowing_se: float

    @property
    def outcome(self) -> str:
        """'twirling' (augmented lower by > 1.96 paired SE), 'equivariant' (the reverse) or 'neither'."""
        if self.difference < -Z95 * self.difference_se:
            return "twirling"
        if self.difference > Z95 * self.difference_se:
            return "equivariant"
        return "neither"

    @property
    def narrowing_outcome(self) -> str:
        if self.k == 1:
            return "reference"
        if self.narrowing < -Z95 * self.narrowing_se:
            return "narrows"
        if self.narrowing > Z95 * self.narrowing_se:
            return "widens"
        return "no change"


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    n = len(values)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def _losses(examples: pd.DataFrame, run: str, step: int, column: str) -> pd.Series:
    rows = examples[(examples["run"] == run) & (examples["step"] == step)]
    return rows.set_index("example_id")[column].astype(float)


def matched_comparisons(
    examples: pd.DataFrame, efficiency: pd.DataFrame, runs: dict[str, RunInfo]
) -> tuple[list[TwirlComparison], list[str]]:
    """Every (augmented base run, equivariant base run) pair of a task with per-example tables and timings, for
    each k in TWIRL_KS: the comparisons made, and a note for each k that could not be compared.

    Rule: n = the held-out examples both runs were evaluated on. Cost of a checkpoint at step s:
    train(s) + k * n * forward for the augmented model twirled over k rotations, train(s) + n * forward for the
    equivariant one (:func:`checkpoint_costs`). Budget B_k = min over the two models of their largest checkpoint
    cost; each model is read at its checkpoint with the largest cost <= B_k. Compared: the augmented model's loss
    twirled over k rotations (``twirled_<k>``) against the equivariant model's L_total, example by example."""
    comparisons: list[TwirlComparison] = []
    notes: list[str] = []
    if examples.empty or not has_inference_timings(efficiency):
        return comparisons, notes
    cost_unit(efficiency)  # CPU and GPU timings mixed have no common unit: refuse
    timed = set(efficiency.loc[pd.to_numeric(efficiency[FORWARD_COLUMN], errors="coerce").notna(), "run"])
    evaluated = set(examples["run"])
    base = sorted(
        (r for r in runs.values() if r.is_base and r.name in timed and r.name in evaluated),
        key=lambda r: (r.task, r.name),
    )
    for augmented in (r for r in base if not r.equivariant):
        for equivariant in (r for r in base if r.equivariant and r.task == augmented.task):
            aug_rows = examples[examples["run"] == augmented.name]
            eq_rows = examples[examples["run"] == equivariant.name]
            common = np.intersect1d(aug_rows["example_id"].unique(), eq_rows["example_id"].unique())
            if len(common) < 2:
                notes.append(f"{augmented.task}: {augmented.name} and {equivariant.name} share < 2 examples")
                continue
            n = len(common)
            aug_steps = np.sort(aug_rows["step"].unique())
            eq_steps = np.sort(eq_rows["step"].unique())
            eq_costs = checkpoint_costs(efficiency, equivariant.name, eq_steps, 1, n)
            reference: np.ndarray | None = None
            for k in TWIRL_KS:
                column = f"twirled_{k}"
                if column not in aug_rows or aug_rows[column].isna().all():
                    notes.append(f"{augmented.task} k={k}: {augmented.name} has no twirled loss for k={k}")
                    continue
                aug_costs = checkpoint_costs(efficiency, augmented.name, aug_steps, k, n)
                budget = min(aug_costs.max(), eq_costs.max())
                step_a, step_e = matched_step(aug_steps, aug_costs, budget), matched_step(eq_steps, eq_costs, budget)
                if step_a is None or step_e is None:
                    notes.append(f"{augmented.task} k={k}: no checkpoint of both runs within a common budget")
                    continue
                aug = _losses(examples, augmented.name, step_a, column).reindex(common).to_numpy()
                eq = _losses(examples, equivariant.name, step_e, "total").reindex(common).to_numpy()
                keep = np.isfinite(aug) & np.isfinite(eq)
                difference = np.where(keep, aug - eq, np.nan)
                if k == 1:
                    reference = difference
                narrowing = difference - reference if reference is not None else np.full(n, np.nan)
                mean_a, se_a = _mean_se(aug[keep])
                mean_e, se_e = _mean_se(eq[keep])
                mean_d, se_d = _mean_se(difference[keep])
                both = np.isfinite(narrowing)
                mean_n, se_n = _mean_se(narrowing[both]) if both.sum() > 1 else (float("nan"), float("nan"))
                comparisons.append(
                    TwirlComparison(
                        augmented.task,
                        augmented.name,
                        equivariant.name,
                        k,
                        float(budget),
                        step_a,
                        step_e,
                        float(aug_costs[aug_steps == step_a][0]),
                        float(eq_costs[eq_steps == step_e][0]),
                        int(keep.sum()),
                        mean_a,
                        se_a,
                        mean_e,
                        se_e,
                        mean_d,
                        se_d,
                        mean_n,
                        se_n,
                    )
                )
    return comparisons, notes


@dataclass
class UnitCheck:
    """The twirling code check at one run's last checkpoint: measured - expected, with its paired SE."""

    run: str
    task: str
    step: int
    k: int
    expected: float
    difference: float
    difference_se: float

    @property
    def z(self) -> float:
        return self.difference / self.difference_se if self.difference_se > 0 else float("nan")


def unit_checks(table: pd.DataFrame, runs: dict[str, RunInfo]) -> list[UnitCheck]:
    """Rows twirled_loss_minus_predicted (paired) and twirled_loss_predicted at each augmented base run's last
    checkpoint with twirling rows."""
    out: list[UnitCheck] = []
    if table.empty:
        return out
    for run in sorted((r for r in runs.values() if r.is_base and not r.equivariant), key=lambda r: (r.task, r.name)):
        rows = table[(table["run"] == run.name) & (table["quantity"] == "twirled_loss_minus_predicted")]
        if rows.empty:
            continue
        step = int(rows["step"].max())
        at = rows[rows["step"] == step].set_index("k").sort_index()
        expected = table[
            (table["run"] == run.name) & (table["step"] == step) & (table["quantity"] == "twirled_loss_predicted")
        ].set_index("k")["value"]
        for k, value, stderr in zip(at.index, at["value"], at["stderr"], strict=True):
            out.append(
                UnitCheck(run.name, run.task, step, int(k), float(expected.get(k, np.nan)), float(value), float(stderr))
            )
    return out
