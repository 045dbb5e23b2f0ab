"""Figure 1: the share of held-out loss due to equivariance error, 100 L_equiv / L_total, over training, per task.

    python -m eqdyn.figures.equiv_percent --decomposition results/<study>/analysis/decomposition/*.csv \
        --runs results/<study>/runs/*/run.json --manifests results/<study>/runs/*/manifest.json \
        [--baselines results/<study>/analysis/baseline/*.csv] --out figures/equiv_percent.png

One panel per task. Each augmented (non-equivariant) base run is drawn with its seed sweeps: the mean over seeds
with the min-max band when there are two or more seeds, else the run's own 95% band (+- 1.96 SE over examples).
Equivariant base runs are drawn when their percentage is visible on the axis; otherwise the panel states their
largest value (floating-point round-off). The paper's 2% line and its 1k-10k step window are marked.

With ``--baselines`` (the constant-model loss tables), a checkpoint of an augmented run that is not learned by the
claims' rule (:func:`eqdyn.figures.learned.learned_steps`) in every seed drawn is an open marker, and a run learned
at no checkpoint is dashed and labelled so: on a constant predictor's plateau a tiny share is no evidence.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from eqdyn.figures import style
from eqdyn.figures.learned import NOT_LEARNED, learned_steps, mark_not_learned, not_learned_key
from eqdyn.figures.tables import RunInfo, aggregate_seeds, base_runs_by_task, constant_losses, series

QUANTITY = "equiv_percent"
VISIBLE_PERCENT = 1e-3  # an equivariant model's curve is drawn only above this (else it is round-off)


def seed_label(group: list[RunInfo]) -> str:
    """'seed 0 (±1.96 SE)' for one run, 'seeds 0, 1 (mean, min–max)' for several."""
    seeds = ", ".join(str(seed) for seed in sorted(r.seed for r in group))
    if len(group) == 1:
        return f"seed {seeds} (±1.96 SE)"
    return f"seeds {seeds} (mean, min–max)"


def plot_percent_panel(
    ax, table: pd.DataFrame, runs: dict[str, RunInfo], task_runs: list[RunInfo], constant_loss: float | None = None
) -> tuple[float, bool]:
    """Draw one task's curves; returns the largest step drawn and whether a drawn checkpoint is not learned
    (against ``constant_loss``, the task's constant-model loss)."""
    max_step = 1.0
    any_unlearned = False
    notes = []
    shown: list[float] = []
    for base in task_runs:
        colour = style.family_colour(base.family)
        if base.equivariant:
            curve = series(table, base.name, QUANTITY)
            if curve.empty:
                continue
            largest = float(np.nanmax(np.abs(curve["value"])))
            max_step = max(max_step, float(curve["step"].max()))
            if largest < VISIBLE_PERCENT:
                notes.append(f"{base.family} ({base.equivariance}):\n≤ {largest:.0e}% at every step")
                continue
            ax.plot(
                curve["step"],
                curve["value"],
                color=colour,
                ls="--",
                marker="s",
                ms=2.5,
                label=f"{base.family} ({base.equivariance}), seed {base.seed}",
            )
            shown += list(curve["value"])
            continue
        group = [
            r for r in runs.values() if r.name == base.name or (r.base_run == base.name and r.sweep_factor == "seed")
        ]
        curves = [series(table, r.name, QUANTITY) for r in group]
        present = [(r, c) for r, c in zip(group, curves, strict=True) if not c.empty]
        if not present:
            continue
        aggregated = aggregate_seeds([c for _, c in present])
        max_step = max(max_step, float(aggregated["step"].max()))
        shown += list(aggregated["value"]) + list(aggregated["high"])
        learned_in_every_seed = set.intersection(*(learned_steps(table, r.name, constant_loss) for r, _ in present))
        is_learned = aggregated["step"].isin(learned_in_every_seed)
        never = not is_learned.any()
        # "not learned" beside the family: the legend keeps its two lines an entry and its width
        label = f"{base.family}{f', {NOT_LEARNED}' if never else ''},\n{seed_label([r for r, _ in present])}"
        ax.plot(
            aggregated["step"],
            aggregated["value"],
            color=colour,
            ls="--" if never else "-",
            marker="o",
            ms=2.5,
            label=label,
        )
        unlearned = aggregated[~is_learned]
        mark_not_learned(ax, unlearned["step"], unlearned["value"], colour, size=2.5)
        any_unlearned |= not unlearned.empty
        floor = style.positive_floor(aggregated["value"], 0.05)
        style.band(ax, aggregated["step"], aggregated["low"], aggregated["high"], colour, log_floor=floor)
    if notes:
        ax.text(0.03, 0.03, "\n".join(notes), transform=ax.transAxes, fontsize=5.8, color="0.25", va="bottom")
    if shown:
        low = min(style.positive_floor(shown, 0.5), style.THRESHOLD_PERCENT / 3)
        # room above the curves for the in-panel legend (a seed aggregate's label takes two lines) and below them
        # for the note on the equivariant runs
        lines = sum(1 + str(label).count("\n") for label in ax.get_legend_handles_labels()[1])
        note_lines = sum(1 + note.count("\n") for note in notes)
        high = max(max(v for v in shown if np.isfinite(v)), style.THRESHOLD_PERCENT * 3)
        # the cap leaves room for a two-run legend (four lines) over shares up to ~30 % (a share is never above
        # 100 %, so the legend sits where no data can be); at 1e4 it covered a 27 % share (decisive study, force field)
        style.log_limits_below_legend(ax, low, high, legend_lines=lines, cap=1e5, note_lines=note_lines)
    style.percent_ticks(ax)
    return max_step, any_unlearned


def plot(table: pd.DataFrame, runs: dict[str, RunInfo], baselines: pd.DataFrame | None = None):
    by_task = base_runs_by_task(runs)
    constants = constant_losses(baselines)
    any_unlearned = False
    tasks = [task for task in sorted(by_task) if any(series(table, r.name, QUANTITY).size for r in by_task[task])]
    if not tasks:
        raise ValueError("no decomposition rows for any base run")
    fig, axes = style.figure(
        ncols=len(tasks), panel_height=2.2, width=style.ONE_COLUMN if len(tasks) == 1 else style.TWO_COLUMN
    )
    for ax, task in zip(axes[0], tasks, strict=True):
        ax.set_yscale("log")
        style.mark_paper_window(ax, label=False)
        style.mark_threshold(ax, label=False)
        max_step, unlearned = plot_percent_panel(ax, table, runs, by_task[task], constants.get(task))
        any_unlearned |= unlearned
        style.step_axis(ax, max_step, extend_to_window=True)
        ax.set_title(style.task_title(task))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=5.8, handlelength=1.4)

    # under one (one-column) panel the label on one line is taller than the axes
    axes[0][0].set_ylabel(
        r"$100\,L_\mathrm{equiv}/L_\mathrm{total}$" + (" " if len(tasks) > 1 else "\n") + "(% of held-out loss)"
    )
    handles = [
        Line2D([], [], color="0.35", ls=":", lw=1.0, label="2% (paper)"),
        Patch(color="0.9", label="paper: 2% reached within 1k–10k steps"),
    ]
    if any_unlearned:
        handles.append(not_learned_key(bool(constants)))
    # one row under several panels; under a single (one-column) panel, one key a row
    columns = len(handles) if len(tasks) > 1 else 1
    fig.legend(handles=handles, loc="outside lower center", ncols=columns, fontsize=6.5)
    return fig


def main(argv: list[str] | None = None) -> int:
    return style.decomposition_figure_cli(plot, __doc__, argv, baselines=True)


if __name__ == "__main__":
    raise SystemExit(main())
