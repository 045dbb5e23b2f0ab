"""Figure 6: gradients and parameters over training.

    python -m eqdyn.figures.gradients --gradients results/<study>/analysis/gradients/<run>.csv ... \
        --decomposition results/<study>/analysis/decomposition/*.csv --runs results/<study>/runs/*/run.json \
        --manifests results/<study>/runs/*/manifest.json --out figures/gradients.png

One row per augmented (non-equivariant) base run in the gradient tables, titled with the run. Columns: the share of
the gradient norm carried by the equivariance term, ||grad L_equiv|| / (||grad L_mean|| + ||grad L_equiv||), and
the cosine between the two gradients, over training; the relative equivariance error against the parameters'
distance from their initialisation (one point per checkpoint, coloured by step); and, where the model declares a
rotation action on its parameters, held-out L_equiv against the squared norm of the non-equivariant component of
the parameters. That last panel is a descriptive trajectory, not a test of the paper's parameter relation: for the
transformer the non-equivariant component is the coordinate embedding and vector-head weights, which grow in any
run that learns to use coordinates (see the claims table). An axis is logarithmic only where its values span a
decade or more.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from eqdyn.figures import style
from eqdyn.figures.tables import Z95, RunInfo, read_csvs, read_decomposition, read_runs, series

NONEQUIVARIANT_NORM = "nonequivariant_parameter_sq_norm"


def gradient_series(table: pd.DataFrame, run: str, quantity: str) -> pd.DataFrame:
    rows = table[(table["run"] == run) & (table["quantity"] == quantity)]
    out = rows[["step", "value", "stderr"]].sort_values("step").reset_index(drop=True)
    out["stderr"] = pd.to_numeric(out["stderr"], errors="coerce")
    return out


def analysed_runs(table: pd.DataFrame, runs: dict[str, RunInfo]) -> list[RunInfo]:
    names = set(table["run"]) if not table.empty else set()
    return sorted(
        (r for r in runs.values() if r.name in names and r.is_base and not r.equivariant),
        key=lambda r: (r.task, r.name),
    )


def _over_steps(ax, curve: pd.DataFrame, colour: str) -> None:
    ax.plot(curve["step"], curve["value"], color=colour, marker="o", ms=2)
    se = curve["stderr"].to_numpy(dtype=float)
    if np.isfinite(se).any():
        style.band(ax, curve["step"], curve["value"] - Z95 * se, curve["value"] + Z95 * se, colour)


def _scatter_by_step(ax, x: pd.Series, y: pd.Series, steps: pd.Series, norm) -> None:
    ax.plot(x, y, color="0.75", lw=0.8, zorder=1)
    ax.scatter(x, y, c=np.log10(steps.clip(lower=1)), cmap="viridis", norm=norm, s=10, zorder=2)


COLUMN_TITLES = (
    "gradient-norm share",
    "gradient alignment",
    "equivariance error\nagainst distance",
    "descriptive trajectory\n(not a test)",
)


def plot(gradients: pd.DataFrame, table: pd.DataFrame, runs: dict[str, RunInfo]):
    chosen = analysed_runs(gradients, runs)
    if not chosen:
        raise ValueError("the gradient tables hold no augmented (non-equivariant) base run")
    has_norm = (gradients["quantity"] == NONEQUIVARIANT_NORM).any()
    ncols = 4 if has_norm else 3
    style.apply_style()
    fig = plt.figure(figsize=(style.TWO_COLUMN, 2.0 * len(chosen) + 0.45), layout="constrained")
    # above each row of panels a heading row of no height whose title names the run: constrained layout makes room
    # for a title's height but not its width, so the run's name over each panel ran into the neighbouring panels
    grid = fig.add_gridspec(2 * len(chosen), ncols, height_ratios=[1e-3, 1] * len(chosen))
    axes_grid = np.array(
        [[fig.add_subplot(grid[2 * row + 1, column]) for column in range(ncols)] for row in range(len(chosen))]
    )
    max_step = max(float(gradients["step"].max()), 10.0)
    norm = mpl.colors.Normalize(vmin=0, vmax=np.log10(max_step))
    for row, run in enumerate(chosen):
        heading = fig.add_subplot(grid[2 * row, :])
        heading.set_axis_off()
        heading.set_title(f"{style.task_title(run.task)}: {run.family} (augmented, seed {run.seed})", fontsize=7.5)
        axes = axes_grid[row]
        for ax, column_title in zip(axes, COLUMN_TITLES, strict=False):
            ax.set_title(column_title, fontsize=6.5, color="0.25")
        colour = style.family_colour(run.family)
        share, cosine = (gradient_series(gradients, run.name, q) for q in ("grad_share_equiv", "grad_cosine"))
        for ax, curve, label, limits in (
            (axes[0], share, r"share of $L_\mathrm{equiv}$", (0, 1)),
            (axes[1], cosine, "cos(∇$L_\\mathrm{mean}$, ∇$L_\\mathrm{equiv}$)", (-1, 1)),
        ):
            if curve.empty:
                style.empty_panel(ax, "not in the gradient table")
                continue
            _over_steps(ax, curve, colour)
            style.step_axis(ax, curve["step"].max())
            ax.set_ylim(*limits)
            ax.set_ylabel(label)
        if not cosine.empty:
            axes[1].axhline(0, color="0.6", lw=0.6, zorder=0)
        ree = gradient_series(gradients, run.name, "relative_equivariance_error")
        distance = gradient_series(gradients, run.name, "parameter_distance_from_init")
        joined = ree.merge(distance, on="step", suffixes=("_ree", "_dist"))
        ax = axes[2]
        if joined.empty:
            style.empty_panel(ax, "relative equivariance error or\nparameter distance missing")
        else:
            _scatter_by_step(ax, joined["value_dist"], joined["value_ree"], joined["step"], norm)
            ax.set_xlabel(r"$\|\theta_t - \theta_0\|$")
            ax.set_ylabel("relative equivariance\nerror")
            style.value_axis(ax, "x", joined["value_dist"])
            style.value_axis(ax, "y", joined["value_ree"])
        if has_norm:
            ax = axes[3]
            sq_norm = gradient_series(gradients, run.name, NONEQUIVARIANT_NORM)
            equiv = series(table, run.name, "equiv")
            joined = sq_norm.merge(equiv, on="step", suffixes=("_norm", "_equiv"))
            if joined.empty:
                style.empty_panel(ax, "no non-equivariant parameter\nnorm for this model")
            else:
                _scatter_by_step(ax, joined["value_norm"], joined["value_equiv"], joined["step"], norm)
                ax.set_xlabel(r"$\|\theta_\perp\|^2$" + "\n(non-equiv. part)")
                ax.set_ylabel(r"held-out $L_\mathrm{equiv}$")
                style.value_axis(ax, "x", joined["value_norm"])
                style.value_axis(ax, "y", joined["value_equiv"])
    colourbar = fig.colorbar(
        mpl.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=axes_grid[-1, 2:], shrink=0.8, location="bottom", aspect=30
    )
    colourbar.set_label(r"checkpoint: $\log_{10}$ training step" + "\n(steps 0 and 1 at 0)", fontsize=6.5)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gradients", type=Path, nargs="+", required=True, help="gradient tables (CSV)")
    style.add_decomposition_arguments(parser)
    style.add_out_argument(parser)
    args = parser.parse_args(argv)
    fig = plot(read_csvs(args.gradients), read_decomposition(args.decomposition), read_runs(args.runs, args.manifests))
    style.save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
