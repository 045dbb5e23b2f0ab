"""Figure 5: the efficiency gap, held-out L_total against compute, augmented versus equivariant models per task.

    python -m eqdyn.figures.efficiency --efficiency results/<study>/analysis/efficiency.csv \
        --decomposition results/<study>/analysis/decomposition/*.csv --runs results/<study>/runs/*/run.json \
        --manifests results/<study>/runs/*/manifest.json --out figures/efficiency.png

Compute to reach step s: s * seconds_per_step * threads / 3600 core-hours on a CPU, s * seconds_per_step / 3600
GPU-hours on a GPU, with seconds_per_step measured alone (the efficiency benchmark), not the shared training clock.
One panel per task; base runs only; bands +- 1.96 SE over held-out examples. Step 0 costs nothing and is not drawn.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from eqdyn.figures import style
from eqdyn.figures.tables import Z95, RunInfo, base_runs_by_task, read_csvs, read_decomposition, read_runs, series


def compute_unit(devices: pd.Series) -> str:
    """'core-hours' when every run was timed on a CPU, 'GPU-hours' when every run was timed on a GPU."""
    cpu = devices.astype(str).str.lower().eq("cpu")
    if cpu.all():
        return "core-hours"
    if not cpu.any():
        return "GPU-hours"
    raise ValueError("the efficiency table mixes CPU and GPU timings; core-hours and GPU-hours are not comparable")


def hours(efficiency: pd.DataFrame, run: str, steps: np.ndarray) -> np.ndarray:
    matching = efficiency[efficiency["run"] == run]
    if matching.empty:
        raise KeyError(f"run {run} is not in the efficiency table")
    row = matching.iloc[0]
    threads = float(row["threads"]) if str(row["device"]).lower() == "cpu" else 1.0
    return np.asarray(steps, dtype=float) * float(row["seconds_per_step"]) * threads / 3600.0


def loss_vs_hours(efficiency: pd.DataFrame, table: pd.DataFrame, run: str) -> pd.DataFrame:
    """hours, value, stderr of held-out L_total at every checkpoint after step 0."""
    curve = series(table, run, "total")
    curve = curve[curve["step"] > 0]
    return curve.assign(hours=hours(efficiency, run, curve["step"].to_numpy()))


def plot(efficiency: pd.DataFrame, table: pd.DataFrame, runs: dict[str, RunInfo]):
    unit = compute_unit(efficiency["device"])
    by_task = {
        task: [r for r in task_runs if r.name in set(efficiency["run"]) and not series(table, r.name, "total").empty]
        for task, task_runs in base_runs_by_task(runs).items()
    }
    tasks = [task for task in sorted(by_task) if by_task[task]]
    if not tasks:
        raise ValueError("no base run has both a decomposition table and an efficiency row")
    fig, axes = style.figure(
        ncols=len(tasks), panel_height=2.1, width=style.ONE_COLUMN if len(tasks) == 1 else style.TWO_COLUMN
    )
    for ax, task in zip(axes[0], tasks, strict=True):
        values = []
        for run in by_task[task]:
            curve = loss_vs_hours(efficiency, table, run.name)
            colour = style.family_colour(run.family)
            row = efficiency[efficiency["run"] == run.name].iloc[0]
            label = f"{run.family}, {float(row['seconds_per_step']) * 1e3:.3g} ms/step"
            ax.plot(
                curve["hours"],
                curve["value"],
                color=colour,
                marker="o",
                ms=2.2,
                label=label,
                ls="-" if not run.equivariant else "--",
            )
            half = Z95 * curve["stderr"].to_numpy(dtype=float)
            style.band(
                ax,
                curve["hours"],
                curve["value"] - half,
                curve["value"] + half,
                colour,
                log_floor=style.positive_floor(curve["value"], 0.3),
            )
            values += list(curve["value"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        # headroom for the upper-right legend, one line per run drawn (three in the force field's panel)
        legend_lines = len(ax.get_legend_handles_labels()[1])
        style.log_limits_below_legend(ax, style.positive_floor(values, 0.5), max(values), legend_lines=legend_lines)
        ax.set_xlabel(f"training compute ({unit})")
        ax.set_title(style.task_title(task))
        ax.legend(loc="upper right", fontsize=5.8)
    axes[0][0].set_ylabel(r"held-out $L_\mathrm{total}$")
    fig.legend(
        handles=[
            Line2D([], [], color="0.3", ls="-", label="augmented (non-equivariant)"),
            Line2D([], [], color="0.3", ls="--", label="equivariant"),
        ],
        loc="outside lower center",
        ncols=2,
        fontsize=6.5,
        title="bands: ±1.96 SE over held-out examples",
        title_fontsize=6,
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--efficiency", type=Path, required=True, help="efficiency table (CSV)")
    style.add_decomposition_arguments(parser)
    style.add_out_argument(parser)
    args = parser.parse_args(argv)
    fig = plot(
        read_csvs([args.efficiency]), read_decomposition(args.decomposition), read_runs(args.runs, args.manifests)
    )
    style.save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
