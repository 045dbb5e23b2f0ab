"""Figure 2: held-out L_total, L_mean and L_equiv over training, per task and base run (log-log).

    python -m eqdyn.figures.loss_decomposition --decomposition results/<study>/analysis/decomposition/*.csv \
        --runs results/<study>/runs/*/run.json --manifests results/<study>/runs/*/manifest.json \
        [--baselines results/<study>/analysis/baseline/*.csv] --out figures/loss_decomposition.png

Columns are tasks, rows the task's base runs (augmented model first). Bands: +- 1.96 standard errors over held-out
examples. L_mean is the unbiased estimator, which can be negative for one example but not on average here; a value
at or below zero (or an exactly equivariant model's round-off L_equiv) cannot be drawn on a log axis and is stated
in the panel instead. With ``--baselines`` a dotted line marks the held-out loss of the task's best constant model
(:mod:`eqdyn.analysis.baseline_loss`): a run whose L_total stays on it has learned nothing, whatever its L_equiv.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from eqdyn.figures import style
from eqdyn.figures.tables import (
    Z95,
    RunInfo,
    base_runs_by_task,
    constant_losses,
    series,
)

QUANTITIES = ("total", "mean", "equiv")
ROUND_OFF_RATIO = 1e-6  # L_equiv below this fraction of L_total at every step: the model is equivariant to round-off


CONSTANT_LABEL = "best constant model"


def plot_losses(ax, table: pd.DataFrame, run: RunInfo, constant_loss: float | None = None) -> float:
    """Draw one run's three losses (and the task's constant-model loss, if given); returns the largest step."""
    max_step = 1.0
    total = series(table, run.name, "total")
    notes = []
    values_drawn: list[float] = []
    equiv = series(table, run.name, "equiv")
    round_off = False
    if not equiv.empty and not total.empty:
        ratio = np.nanmax(np.abs(equiv["value"].to_numpy() / total["value"].to_numpy()))
        round_off = ratio < ROUND_OFF_RATIO
        if round_off:
            # two lines: a raw f-string would print its "\n" as two characters
            notes.append(
                rf"$L_\mathrm{{equiv}}/L_\mathrm{{total}}$ ≤ {ratio:.0e}"
                + "\n"
                + r"(round-off): $L_\mathrm{mean} = L_\mathrm{total}$"
            )
    for quantity in QUANTITIES:
        curve = series(table, run.name, quantity)
        if curve.empty or (round_off and quantity == "equiv"):
            continue
        max_step = max(max_step, float(curve["step"].max()))
        positive = curve["value"] > 0
        if not positive.all():
            notes.append(f"{style.QUANTITY_LABELS[quantity]} ≤ 0 at {int((~positive).sum())} step(s), not drawn")
        curve = curve[positive]
        colour = style.QUANTITY_COLOURS[quantity]
        dashed = quantity == "mean"  # drawn over L_total, which it equals for an equivariant model
        ax.plot(
            curve["step"],
            curve["value"],
            color=colour,
            marker="o",
            ms=2.2,
            ls="--" if dashed else "-",
            label=style.QUANTITY_LABELS[quantity],
            zorder=3 if dashed else 2,
        )
        if round_off and quantity == "mean":
            continue  # its band is L_total's
        half = Z95 * curve["stderr"].to_numpy(dtype=float)
        floor = style.positive_floor(curve["value"], 0.3)
        style.band(ax, curve["step"], curve["value"] - half, curve["value"] + half, colour, log_floor=floor)
        values_drawn += list(curve["value"])
    if constant_loss is not None and np.isfinite(constant_loss) and constant_loss > 0:
        ax.axhline(constant_loss, color="0.45", ls=":", lw=1.0, label=CONSTANT_LABEL, zorder=1)
        values_drawn.append(constant_loss)
    if values_drawn:
        low, high = style.positive_floor(values_drawn, 0.4), max(values_drawn) * 2.5
        if notes:  # the losses fall over training: the notes go top right, above the curves
            high *= (high / low) ** (0.2 * len(notes))
        style.log_limits(ax, low, high)
    if notes:
        ax.text(
            0.97,
            0.97,
            "\n".join(notes),
            transform=ax.transAxes,
            fontsize=5.8,
            color="0.25",
            va="top",
            ha="right",
            linespacing=1.3,
        )
    return max_step


def plot(table: pd.DataFrame, runs: dict[str, RunInfo], baselines: pd.DataFrame | None = None):
    by_task = base_runs_by_task(runs)
    by_task = {
        task: [r for r in task_runs if not series(table, r.name, "total").empty] for task, task_runs in by_task.items()
    }
    tasks = [task for task in sorted(by_task) if by_task[task]]
    if not tasks:
        raise ValueError("no decomposition rows for any base run")
    constants = constant_losses(baselines)
    nrows = max(len(by_task[task]) for task in tasks)
    fig, axes = style.figure(
        ncols=len(tasks),
        nrows=nrows,
        panel_height=1.75,
        width=style.ONE_COLUMN if len(tasks) == 1 else style.TWO_COLUMN,
    )
    for column, task in enumerate(tasks):
        for row in range(nrows):
            ax = axes[row][column]
            if row >= len(by_task[task]):
                ax.set_axis_off()
                continue
            run = by_task[task][row]
            ax.set_yscale("log")
            max_step = plot_losses(ax, table, run, constants.get(task))
            style.step_axis(ax, max_step)
            kind = "augmented" if not run.equivariant else f"{run.equivariance}-equivariant"
            ax.set_title(f"{style.task_title(task)}: {run.family}\n({kind}, seed {run.seed})", fontsize=7.5)
            if column == 0:
                ax.set_ylabel("held-out loss\n(task units, see caption)")
            if row < nrows - 1 and row + 1 < len(by_task[task]):
                ax.set_xlabel("")
    handles, labels = [], []
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=len(labels) if len(tasks) > 1 else min(len(labels), 3),  # one column of panels: no room for 4 keys
        fontsize=7,
        title="bands: ±1.96 SE over held-out examples",
        title_fontsize=6.5,
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    return style.decomposition_figure_cli(plot, __doc__, argv, baselines=True)


if __name__ == "__main__":
    raise SystemExit(main())
