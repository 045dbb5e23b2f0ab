"""Figure 3: robustness of the equivariance share across model size, dataset size and optimizer.

    python -m eqdyn.figures.robustness --decomposition results/<study>/analysis/decomposition/*.csv \
        --runs results/<study>/runs/*/run.json --manifests results/<study>/runs/*/manifest.json \
        --out figures/robustness.png

Rows are sweep factors (size, num_train_molecules, optimizer; only those swept), columns the tasks whose base run
was swept. Each panel shows 100 L_equiv / L_total of the base run (black, the reference in every panel) and of each
one-factor sweep around it, with +- 1.96 SE bands over held-out examples. Seed sweeps are in figure 1.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from eqdyn.figures import style
from eqdyn.figures.tables import Z95, RunInfo, human_count, series

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


def draw(ax, table: pd.DataFrame, run: RunInfo, colour: str, label: str, width: float = 1.2):
    """One run's percentage curve with its band; returns its (steps, values)."""
    curve = series(table, run.name, QUANTITY)
    ax.plot(curve["step"], curve["value"], color=colour, lw=width, marker="o", ms=2.0, label=label)
    half = Z95 * curve["stderr"].to_numpy(dtype=float)
    floor = style.positive_floor(curve["value"], 0.05)
    style.band(ax, curve["step"], curve["value"] - half, curve["value"] + half, colour, alpha=0.15, log_floor=floor)
    return list(curve["step"]), list(curve["value"])


def legend_columns_and_lines(entries: int) -> tuple[int, int]:
    """Two columns from three entries on: a short legend needs less headroom above the curves."""
    columns = 2 if entries > 2 else 1
    return columns, -(-entries // columns)


def plot(table: pd.DataFrame, runs: dict[str, RunInfo]):
    swept = sweeps(runs, table)
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
            steps, values = draw(
                ax, table, base, style.OKABE_ITO["black"], f"base: {factor_label(base, factor)}", width=1.5
            )
            for index, run in enumerate(members):
                s, v = draw(
                    ax, table, run, style.SWEEP_COLOURS[index % len(style.SWEEP_COLOURS)], factor_label(run, factor)
                )
                steps += s
                values += v
            style.step_axis(ax, max(steps), extend_to_window=True)
            style.log_limits_below_legend(
                ax,
                min(style.positive_floor(values, 0.5), style.THRESHOLD_PERCENT / 3),
                max(values),
                legend_lines=legend_columns_and_lines(1 + len(members))[1],
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
    fig.legend(
        handles=[
            Line2D([], [], color="0.35", ls=":", lw=1.0, label="2% (paper)"),
            Patch(color="0.9", label="paper: 2% reached within 1k–10k steps"),
        ],
        loc="outside lower center",
        ncols=2,
        fontsize=6.5,
        title="bands: ±1.96 SE over held-out examples",
        title_fontsize=6.5,
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    return style.decomposition_figure_cli(plot, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
