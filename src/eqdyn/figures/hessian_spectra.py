"""Figure 4: Hessian spectra of L_mean and L_equiv, and their curvature and conditioning over training.

    python -m eqdyn.figures.hessian_spectra --hessian results/<study>/analysis/hessian/<run>.csv ... \
        --density results/<study>/analysis/hessian/<run>_density.csv ... --runs results/<study>/runs/*/run.json \
        --out figures/hessian_spectra.png

One row per analysed run. Columns: the spectral density (stochastic Lanczos quadrature) of the Hessian of L_mean,
then of L_equiv, at up to three checkpoints present for both losses (same colours = same step; the legend gives
each step's negative mass, the share of the spectrum below zero); the curvature over training, lambda_max and
|lambda_min| (the Hessians are indefinite); the condition numbers kappa_10 = lambda_1 / lambda_10 and, where
computed, kappa_100. A point whose eigenvalues did not converge in every repeat (Ritz residual and a Lanczos run
twice as long, see :mod:`eqdyn.analysis.hessian_analysis`) is drawn hollow. Bands: 95% t intervals over the
repeats (resampled batches and rotations) where the table has them. Only what is drawn gets a legend entry.
lambda_max / L is in the table, not drawn: it grows without bound as L_equiv goes to 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from eqdyn.figures import style
from eqdyn.figures.tables import RunInfo, read_csvs, read_runs

LOSS_COLOURS = {"mean": style.QUANTITY_COLOURS["mean"], "equiv": style.QUANTITY_COLOURS["equiv"]}
STEP_COLOURS = (style.OKABE_ITO["sky_blue"], style.OKABE_ITO["green"], style.OKABE_ITO["vermillion"])
# (quantity, convergence flag, line style, marker, legend label, sign): the curves of the two right-hand panels
CURVATURE = (
    ("lambda_max", "lambda_max_converged", "-", "o", r"$\lambda_\mathrm{max}$", 1.0),
    ("lambda_min", "lambda_min_converged", ":", "v", r"$|\lambda_\mathrm{min}|$", -1.0),
)
CONDITIONING = (
    ("kappa_10", "kappa_10_converged", "-", "s", r"$\kappa_{10}$", 1.0),
    ("kappa_100", "kappa_100_converged", "--", "D", r"$\kappa_{100}$", 1.0),
)


def summary_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows that summarise the repeats (an empty ``repeat``); every row of a table without per-repeat rows."""
    return table[table["repeat"].isna()] if "repeat" in table else table


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
    """One summary curve: step, value, ci_low, ci_high (nan where absent), converged (the flag's repeat share)."""
    table = summary_rows(table)
    rows = table[(table["run"] == run) & (table["loss"] == loss) & (table["quantity"] == quantity)]
    out = pd.DataFrame({"step": rows["step"].to_numpy(), "value": pd.to_numeric(rows["value"], errors="coerce")})
    for column in ("ci_low", "ci_high"):
        out[column] = pd.to_numeric(rows[column], errors="coerce").to_numpy() if column in rows else np.nan
    return out.sort_values("step").reset_index(drop=True)


def flag_series(table: pd.DataFrame, run: str, loss: str, flag: str) -> dict[int, float]:
    flags = quantity_series(table, run, loss, flag)
    return dict(zip(flags["step"].astype(int), flags["value"], strict=True))


def negative_mass(table: pd.DataFrame, run: str, loss: str, step: int) -> float:
    curve = quantity_series(table, run, loss, "negative_mass")
    at = curve.loc[curve["step"] == step, "value"]
    return float(at.iloc[0]) if len(at) else float("nan")


def plot(table: pd.DataFrame, density: pd.DataFrame, runs: dict[str, RunInfo]):
    names = list(dict.fromkeys(table["run"])) if not table.empty else []
    if not names:
        raise ValueError("the Hessian table has no rows")
    fig, axes = style.figure(ncols=4, nrows=len(names), panel_height=1.75)
    drawn: dict[str, Line2D] = {}  # legend key -> handle, for what was drawn only
    for row, name in enumerate(names):
        run = runs.get(name)
        # the size tells apart two runs of one task (e.g. transformer s and xs)
        title = f"{style.task_title(run.task)}: {run.family} {run.size}" if run else name
        ax_mean, ax_equiv, ax_curvature, ax_kappa = axes[row]
        steps = matched_steps(density, name) if not density.empty else []
        for ax, loss in ((ax_mean, "mean"), (ax_equiv, "equiv")):
            if not steps:
                style.empty_panel(ax, f"no density of {style.QUANTITY_LABELS[loss]} at a step shared by both losses")
                continue
            for index, step in enumerate(steps):
                rows = density[(density["run"] == name) & (density["loss"] == loss) & (density["step"] == step)]
                rows = rows.sort_values("eigenvalue")
                mass = negative_mass(table, name, loss, step)
                label = f"{step}" + (f" ({100 * mass:.0f}%)" if np.isfinite(mass) else "")
                ax.plot(
                    rows["eigenvalue"],
                    rows["density"].clip(lower=1e-12),
                    color=STEP_COLOURS[index],
                    lw=1.0,
                    label=label,
                )
            ax.set_yscale("log")
            low, high = ax.get_ylim()
            style.log_limits_below_legend(ax, low, high, legend_lines=len(steps) + 1)  # + the legend's title
            ax.set_xlabel("Hessian eigenvalue")
            # the run is named once, above its first panel; the second says only which loss
            heading = title if loss == "mean" else ""
            ax.set_title(f"{heading}\nspectral density, " + style.QUANTITY_LABELS[loss], fontsize=7)
            ax.legend(loc="upper right", fontsize=5.5, title="step (mass < 0)", title_fontsize=5.5)
        ax_mean.set_ylabel("density")
        max_step = table.loc[table["run"] == name, "step"].max()
        for ax, curves, label, heading in (
            (ax_curvature, CURVATURE, "eigenvalue, absolute", "curvature"),
            (ax_kappa, CONDITIONING, r"$\kappa_k = \lambda_1/\lambda_k$", "condition numbers"),
        ):
            for loss in ("mean", "equiv"):
                for quantity, flag, ls, marker, key, sign in curves:
                    curve = quantity_series(table, name, loss, quantity)
                    if curve.empty or not np.isfinite(curve["value"]).any():
                        continue
                    flags = flag_series(table, name, loss, flag)
                    converged = np.array([flags.get(int(s), 0.0) >= 1.0 for s in curve["step"]])
                    _curve(ax, curve, sign, LOSS_COLOURS[loss], ls, marker, converged)
                    drawn.setdefault(
                        loss, Line2D([], [], color=LOSS_COLOURS[loss], lw=1.5, label=style.QUANTITY_LABELS[loss])
                    )
                    # the key's marker is filled if any converged point of this quantity is drawn, else hollow
                    if converged.any() or quantity not in drawn:
                        drawn[quantity] = Line2D(
                            [],
                            [],
                            color="0.3",
                            ls=ls,
                            marker=marker,
                            ms=3,
                            label=key,
                            markerfacecolor=None if converged.any() else "none",
                        )
                    if not converged.all():
                        drawn.setdefault(
                            "hollow",
                            Line2D(
                                [],
                                [],
                                color="0.3",
                                ls="none",
                                marker=marker,
                                ms=3,
                                markerfacecolor="none",
                                label="not converged in every repeat",
                            ),
                        )
            shown = [abs(v) for line in ax.get_lines() for v in line.get_ydata() if np.isfinite(v) and v != 0]
            if not shown:
                style.empty_panel(ax, f"no {heading}\nin the table")
                continue
            ax.set_yscale("log")
            style.log_limits(ax, style.positive_floor(shown, 0.5), max(shown) * 2)
            style.step_axis(ax, max_step)
            ax.set_ylabel(label)
            ax.set_title(heading, fontsize=7)
    order = ("mean", "equiv", "lambda_max", "lambda_min", "kappa_10", "kappa_100", "hollow")
    handles = [drawn[key] for key in order if key in drawn]
    if handles:
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=min(len(handles), 7),
            fontsize=6.5,
            title="right: bands are 95% t intervals over repeats (resampled batches and rotations)",
            title_fontsize=6,
        )
    return fig


def _curve(ax, curve: pd.DataFrame, sign: float, colour: str, ls: str, marker: str, converged: np.ndarray) -> None:
    """The curve of sign x value, converged points filled, the others hollow; the t band where the table has it."""
    value = sign * curve["value"].to_numpy(dtype=float)
    steps = curve["step"].to_numpy(dtype=float)
    if not converged.any():  # one artist: the line with hollow markers
        ax.plot(steps, value, color=colour, ls=ls, lw=1.0, marker=marker, ms=3, markerfacecolor="none")
    else:
        ax.plot(steps, value, color=colour, ls=ls, lw=1.0, marker=marker, ms=3, markevery=list(converged))
    if converged.any() and (~converged).any():
        ax.plot(
            steps[~converged], value[~converged], color=colour, ls="none", marker=marker, ms=3, markerfacecolor="none"
        )
    low, high = sign * curve["ci_low"].to_numpy(dtype=float), sign * curve["ci_high"].to_numpy(dtype=float)
    if sign < 0:
        low, high = high, low
    if np.isfinite(low).any() and np.isfinite(high).any():
        positive = value[np.isfinite(value) & (value > 0)]
        floor = float(positive.min()) * 0.3 if len(positive) else None
        style.band(ax, steps, low, high, colour, log_floor=floor)


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
