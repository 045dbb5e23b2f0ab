"""Figure 4: Hessian spectra of L_mean and L_equiv, and their conditioning over training.

    python -m eqdyn.figures.hessian_spectra --hessian results/<study>/analysis/hessian/<run>.csv ... \
        --density results/<study>/analysis/hessian/<run>_density.csv ... --runs results/<study>/runs/*/run.json \
        --out figures/hessian_spectra.png

One row per analysed run. Columns: the spectral density (stochastic Lanczos quadrature) of the Hessian of L_mean,
then of L_equiv, at up to three checkpoints present for both losses (same colours = same step); kappa_10 =
lambda_1 / lambda_10 and kappa_100 over training for both losses; the scale-free sharpness lambda_max / L.
Bands: +- 1.96 SE over resampled batches and rotations where the table has it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from eqdyn.figures import style
from eqdyn.figures.tables import Z95, RunInfo, read_csvs, read_runs

LOSS_COLOURS = {"mean": style.QUANTITY_COLOURS["mean"], "equiv": style.QUANTITY_COLOURS["equiv"]}
STEP_COLOURS = (style.OKABE_ITO["sky_blue"], style.OKABE_ITO["green"], style.OKABE_ITO["vermillion"])
KAPPA_STYLES = {"kappa_10": "-", "kappa_100": "--"}


def matched_steps(density: pd.DataFrame, run: str) -> list[int]:
    """Up to three checkpoints (first, log-middle, last) whose densities exist for both L_mean and L_equiv."""
    rows = density[density["run"] == run]
    steps = sorted(set(rows.loc[rows["loss"] == "mean", "step"]) & set(rows.loc[rows["loss"] == "equiv", "step"]))
    if len(steps) <= 3:
        return [int(s) for s in steps]
    positive = [s for s in steps if s > 0] or steps
    middle = min(steps, key=lambda s: abs(np.log1p(s) - 0.5 * (np.log1p(positive[0]) + np.log1p(steps[-1]))))
    return sorted({int(steps[0]), int(middle), int(steps[-1])})


def quantity_series(table: pd.DataFrame, run: str, loss: str, quantity: str) -> pd.DataFrame:
    rows = table[(table["run"] == run) & (table["loss"] == loss) & (table["quantity"] == quantity)]
    return rows[["step", "value", "stderr"]].sort_values("step")


def plot(table: pd.DataFrame, density: pd.DataFrame, runs: dict[str, RunInfo]):
    names = list(dict.fromkeys(table["run"])) if not table.empty else []
    if not names:
        raise ValueError("the Hessian table has no rows")
    fig, axes = style.figure(ncols=4, nrows=len(names), panel_height=1.75)
    for row, name in enumerate(names):
        run = runs.get(name)
        title = f"{style.task_title(run.task)}: {run.family}" if run else name
        ax_mean, ax_equiv, ax_kappa, ax_sharp = axes[row]
        steps = matched_steps(density, name) if not density.empty else []
        for ax, loss in ((ax_mean, "mean"), (ax_equiv, "equiv")):
            if not steps:
                style.empty_panel(ax, f"no density of $L_\\mathrm{{{loss}}}$\nat a step shared by both losses")
                continue
            for index, step in enumerate(steps):
                rows = density[(density["run"] == name) & (density["loss"] == loss) & (density["step"] == step)]
                rows = rows.sort_values("eigenvalue")
                ax.plot(rows["eigenvalue"], rows["density"].clip(lower=1e-12), color=STEP_COLOURS[index],
                        lw=1.0, label=f"step {step}")  # fmt: skip
            ax.set_yscale("log")
            low, high = ax.get_ylim()
            ax.set_ylim(low, high * (high / low) ** 0.35)  # headroom for the legend
            ax.yaxis.set_minor_formatter(style.NullFormatter())
            ax.set_xlabel("Hessian eigenvalue")
            ax.set_title(f"{title}\nspectral density, " + style.QUANTITY_LABELS[loss], fontsize=7)
            ax.legend(loc="upper right", fontsize=5.5)
        ax_mean.set_ylabel("density")
        for loss in ("mean", "equiv"):
            for quantity, ls in KAPPA_STYLES.items():
                curve = quantity_series(table, name, loss, quantity)
                if curve.empty:
                    continue
                _line(ax_kappa, curve, LOSS_COLOURS[loss], ls)
            curve = quantity_series(table, name, loss, "sharpness")
            if not curve.empty:
                _line(ax_sharp, curve, LOSS_COLOURS[loss], "-")
        for ax, label in ((ax_kappa, r"$\kappa_k = \lambda_1/\lambda_k$"), (ax_sharp, r"$\lambda_\mathrm{max}/L$")):
            ax.set_yscale("log")
            # a kappa is NaN where lambda_k <= 0 (no meaningful ratio): nothing to scale the axis by
            shown = [v for line in ax.get_lines() for v in line.get_ydata() if np.isfinite(v)]
            if shown:
                style.log_limits(ax, style.positive_floor(shown, 0.5), max(shown) * 2)
            max_step = table.loc[table["run"] == name, "step"].max()
            style.step_axis(ax, max_step)
            ax.set_ylabel(label)
        ax_kappa.set_title("condition numbers", fontsize=7)
        ax_sharp.set_title("sharpness", fontsize=7)
    handles = [Line2D([], [], color=LOSS_COLOURS["mean"], label=style.QUANTITY_LABELS["mean"]),
               Line2D([], [], color=LOSS_COLOURS["equiv"], label=style.QUANTITY_LABELS["equiv"]),
               Line2D([], [], color="0.3", ls="-", label=r"$\kappa_{10}$"),
               Line2D([], [], color="0.3", ls="--", label=r"$\kappa_{100}$")]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=6.5,
               title="right: bands ±1.96 SE over resampled batches and rotations", title_fontsize=6)  # fmt: skip
    return fig


def _line(ax, curve: pd.DataFrame, colour: str, ls: str) -> None:
    value = curve["value"].to_numpy(dtype=float)
    ax.plot(curve["step"], value, color=colour, ls=ls, marker="o", ms=2)
    se = pd.to_numeric(curve["stderr"], errors="coerce").to_numpy(dtype=float)
    if np.isfinite(se).any():
        style.band(ax, curve["step"], value - Z95 * se, value + Z95 * se, colour, log_floor=np.nanmin(value) * 0.3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hessian", type=Path, nargs="+", required=True, help="Hessian tables <run>.csv")
    parser.add_argument("--density", type=Path, nargs="*", default=[], help="spectral densities <run>_density.csv")
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="run.json of the analysed runs")
    style.add_out_argument(parser)
    args = parser.parse_args(argv)
    fig = plot(read_csvs(args.hessian), read_csvs(args.density), read_runs(args.runs))
    style.save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
