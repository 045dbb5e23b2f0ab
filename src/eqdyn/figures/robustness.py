"""Figure 3: robustness of the equivariance share across model size, dataset size and optimizer.

    python -m eqdyn.figures.robustness --decomposition results/<study>/analysis/decomposition/*.csv \
        --runs results/<study>/runs/*/run.json --manifests results/<study>/runs/*/manifest.json \
        [--baselines results/<study>/analysis/baseline/*.csv] --out figures/robustness.png

Rows are sweep factors (size, num_train_molecules, optimizer; only those swept), columns the tasks whose base run
was swept. Each panel shows 100 L_equiv / L_total of the base run (black, the reference in every panel) and of each
one-factor sweep around it, with +- 1.96 SE bands over held-out examples. Seed sweeps are in figure 1.

Checkpoints that are not learned by the claims' rule (:func:`eqdyn.figures.learned.learned_steps`: held-out L_total
above 0.75x the task's best constant model's loss from ``--baselines``, else not below a fraction of step 0's) are
drawn as open markers, and a run with no learned checkpoint is dashed and labelled "not learned": on a constant
predictor's plateau any L_equiv is a small share of L_total, and a reader should not take it for the claim holding.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from eqdyn.figures import style
from eqdyn.figures.learned import NOT_LEARNED, learned_steps, mark_not_learned, not_learned_key
from eqdyn.figures.tables import (
    Z95,
    RunInfo,
    constant_losses,
    human_count,
    series,
)

FACTORS = ("size", "num_train_molecules", "optimizer")
FACTOR_TITLES = {"size": "model size", "num_train_molecules": "dataset size", "optimizer": "optimizer"}
QUANTITY = "equiv_percent"


def factor_label(run: RunInfo, factor: str) -> str:
    """The run's value of a factor, in words (with parameter / molecule counts where known)."""
    if factor == "size":
        return f"size {run.size} ({human_count(run.parameters)} params)"
    if factor == "num_train_molecules":
        count = run.train_molecules if run.train_molecules is not None else run.num_train_molecules
        return f"{count if count is not None else 'all'} train molecules"
    return run.optimizer


def sweeps(runs: dict[str, RunInfo], table: pd.DataFrame) -> dict[tuple[str, str], list[RunInfo]]:
    """(factor, base run) -> sweep runs that have decomposition rows."""
    out: dict[tuple[str, str], list[RunInfo]] = {}
    for run in runs.values():
        if run.sweep_factor in FACTORS and run.base_run in runs and not series(table, run.name, QUANTITY).empty:
            out.setdefault((run.sweep_factor, run.base_run), []).append(run)
    return out


def draw(
    ax, table: pd.DataFrame, run: RunInfo, colour: str, label: str, constant_loss: float | None, width: float = 1.2
):
    """One run's percentage curve with its band, open markers at its checkpoints not learned by the claims' rule
    (against ``constant_loss``, the task's constant-model loss); returns its (steps, values) and whether any drawn
    checkpoint is not learned."""
    curve = series(table, run.name, QUANTITY)
    is_learned = curve["step"].isin(learned_steps(table, run.name, constant_loss))
    never = not is_learned.any()
    ax.plot(
        curve["step"],
        curve["value"],
        color=colour,
        lw=width,
        ls="--" if never else "-",
        marker="o",
        ms=2.0,
        label=f"{label} ({NOT_LEARNED})" if never else label,
    )
    unlearned = curve[~is_learned]
    mark_not_learned(ax, unlearned["step"], unlearned["value"], colour, size=2.0)
    half = Z95 * curve["stderr"].to_numpy(dtype=float)
    floor = style.positive_floor(curve["value"], 0.05)
    style.band(ax, curve["step"], curve["value"] - half, curve["value"] + half, colour, alpha=0.15, log_floor=floor)
    return list(curve["step"]), list(curve["value"]), not unlearned.empty


def legend_columns_and_lines(entries: int) -> tuple[int, int]:
    """Two columns from three entries on: a short legend needs less headroom above the curves."""
    columns = 2 if entries > 2 else 1
    return columns, -(-entries // columns)


def plot(table: pd.DataFrame, runs: dict[str, RunInfo], baselines: pd.DataFrame | None = None):
    swept = sweeps(runs, table)
    constants = constant_losses(baselines)
    any_unlearned = False
    if not swept:
        raise ValueError("no size, dataset-size or optimizer sweep has decomposition rows")
    factors = [f for f in FACTORS if any(key[0] == f for key in swept)]
    bases = sorted({key[1] for key in swept}, key=lambda name: (runs[name].task, name))
    fig, axes = style.figure(
        ncols=len(bases),
        nrows=len(factors),
        panel_height=1.85,
        width=style.ONE_COLUMN if len(bases) == 1 else style.TWO_COLUMN,
    )
    for row, factor in enumerate(factors):
        for column, base_name in enumerate(bases):
            ax = axes[row][column]
            base = runs[base_name]
            members = sorted(swept.get((factor, base_name), []), key=lambda r: str(r.sweep_value))
            if not members:
                style.empty_panel(ax, f"no {FACTOR_TITLES[factor]} sweep\naround {base_name}")
                continue
            ax.set_yscale("log")
            style.mark_paper_window(ax, label=False)
            style.mark_threshold(ax, label=False)
            steps, values, unlearned = draw(
                ax,
                table,
                base,
                style.OKABE_ITO["black"],
                f"base: {factor_label(base, factor)}",
                constants.get(base.task),
                width=1.5,
            )
            any_unlearned |= unlearned
            for index, run in enumerate(members):
                s, v, unlearned = draw(
                    ax,
                    table,
                    run,
                    style.SWEEP_COLOURS[index % len(style.SWEEP_COLOURS)],
                    factor_label(run, factor),
                    constants.get(run.task),
                )
                steps += s
                values += v
                any_unlearned |= unlearned
            style.step_axis(ax, max(steps), extend_to_window=True)
            style.log_limits_below_legend(
                ax,
                min(style.positive_floor(values, 0.5), style.THRESHOLD_PERCENT / 3),
                max(values),
                # one line more than the legend has: in a single row of panels a line is more than a tenth of the height
                legend_lines=legend_columns_and_lines(1 + len(members))[1] + 1,
                cap=1000.0,
            )
            style.percent_ticks(ax)
            columns = legend_columns_and_lines(1 + len(members))[0]
            ax.legend(loc="upper right", fontsize=5.8, handlelength=1.4, ncols=columns, columnspacing=1.0)
            if row == 0:
                ax.set_title(f"{style.task_title(base.task)}: {base.family}")
            if column == 0:
                ax.set_ylabel(f"{FACTOR_TITLES[factor]}\n" + r"$100\,L_\mathrm{equiv}/L_\mathrm{total}$ (%)")
            if row < len(factors) - 1:
                ax.set_xlabel("")
    handles = [
        Line2D([], [], color="0.35", ls=":", lw=1.0, label="2% (paper)"),
        Patch(color="0.9", label="paper: 2% reached within 1k–10k steps"),
    ]
    if any_unlearned:
        handles.append(not_learned_key(bool(constants)))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=len(handles),
        fontsize=6.5,
        title="bands: ±1.96 SE over held-out examples",
        title_fontsize=6.5,
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    return style.decomposition_figure_cli(plot, __doc__, argv, baselines=True)


if __name__ == "__main__":
    raise SystemExit(main())
