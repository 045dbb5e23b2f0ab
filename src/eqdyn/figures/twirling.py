"""Figure 7: test-time twirling and the bias of the plug-in L_mean.

    python -m eqdyn.figures.twirling --decomposition results/<study>/analysis/decomposition/*.csv \
        --runs results/<study>/runs/*/run.json --manifests results/<study>/runs/*/manifest.json \
        --out figures/twirling.png

One column per augmented (non-equivariant) base run with twirled-loss rows (the sampled-Haar design; the voxel
task enumerates the 24 cube rotations, which are not independent draws, so it has none).

Top: held-out loss of the test-time twirled model with k rotations at the run's last checkpoint, measured
(+- 1.96 SE over examples) beside its exact expectation L_mean + L_equiv / k, and the floor L_mean.
Bottom: the excess of the k-rotation twirled loss over the unbiased L_mean, i.e. the bias of the plug-in estimator
||p_bar - y||^2 with K = k rotations, beside L_equiv / k, at three checkpoints. At k = 1 (= L_total - L_mean) and
at k = K (= plug-in - L_mean) the two agree by construction of the estimators; only 1 < k < K is a test.
The excess has no error bars: its standard error needs the per-example pairing of the twirled loss with L_mean,
which the decomposition table does not carry (the two SEs combined as if independent are far too wide).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from eqdyn.figures import style
from eqdyn.figures.tables import Z95, RunInfo

STEP_COLOURS = (style.OKABE_ITO["sky_blue"], style.OKABE_ITO["green"], style.OKABE_ITO["vermillion"])


def twirl_rows(table: pd.DataFrame, run: str, step: int) -> pd.DataFrame:
    """k, measured, measured_se, predicted, mean, mean_se, equiv at one step."""
    rows = table[(table["run"] == run) & (table["step"] == step) & (table["t_bin"] == "all")]
    measured = rows[rows["quantity"] == "twirled_loss"].set_index("k").sort_index()
    predicted = rows[rows["quantity"] == "twirled_loss_predicted"].set_index("k").sort_index()
    scalar = rows[rows["k"].isna()].set_index("quantity")
    return pd.DataFrame({
        "k": measured.index.astype(int),
        "measured": measured["value"].to_numpy(),
        "measured_se": measured["stderr"].to_numpy(),
        "predicted": predicted.loc[measured.index, "value"].to_numpy(),
        "mean": scalar.loc["mean", "value"],
        "mean_se": scalar.loc["mean", "stderr"],
        "equiv": scalar.loc["equiv", "value"],
    })  # fmt: skip


def twirled_runs(table: pd.DataFrame, runs: dict[str, RunInfo]) -> list[RunInfo]:
    have = set(table.loc[table["quantity"] == "twirled_loss", "run"]) if not table.empty else set()
    return sorted((r for r in runs.values() if r.is_base and not r.equivariant and r.name in have),
                  key=lambda r: (r.task, r.name))  # fmt: skip


def chosen_steps(steps: list[int]) -> list[int]:
    """Up to three checkpoints spread on a log scale: the first after initialisation, one in between, the last."""
    positive = sorted(s for s in steps if s > 0)
    if len(positive) <= 3:
        return positive
    middle = min(positive, key=lambda s: abs(np.log(s) - 0.5 * (np.log(positive[0]) + np.log(positive[-1]))))
    return sorted({positive[0], middle, positive[-1]})


def plot(table: pd.DataFrame, runs: dict[str, RunInfo]):
    chosen = twirled_runs(table, runs)
    if not chosen:
        raise ValueError("no augmented base run has twirled-loss rows (sampled-Haar design)")
    fig, axes = style.figure(ncols=len(chosen), nrows=2, panel_height=1.9,
                             width=style.ONE_COLUMN if len(chosen) == 1 else min(style.TWO_COLUMN,
                                                                                  2.6 * len(chosen)))  # fmt: skip
    for column, run in enumerate(chosen):
        steps = sorted(table.loc[(table["run"] == run.name) & (table["quantity"] == "twirled_loss"), "step"].unique())
        last = int(steps[-1])
        data = twirl_rows(table, run.name, last)
        top, bottom = axes[0][column], axes[1][column]
        top.errorbar(data["k"], data["measured"], yerr=Z95 * data["measured_se"], fmt="o", color="black", ms=3.5,
                     capsize=2, label="measured (±1.96 SE)", zorder=3)  # fmt: skip
        k_grid = np.geomspace(1, data["k"].max(), 50)
        top.plot(k_grid, data["mean"].iloc[0] + data["equiv"].iloc[0] / k_grid, color=style.OKABE_ITO["orange"],
                 label=r"$L_\mathrm{mean} + L_\mathrm{equiv}/k$")  # fmt: skip
        top.axhline(data["mean"].iloc[0], color=style.OKABE_ITO["blue"], ls="--", lw=1.0,
                    label=r"$L_\mathrm{mean}$ ($k\to\infty$)")  # fmt: skip
        top.set_xscale("log", base=2)
        top.set_title(f"{style.task_title(run.task)}: {run.family}\nseed {run.seed}, step {last}", fontsize=7.5)
        top.set_xlabel("rotations averaged at test time, $k$")
        low, high = top.get_ylim()
        top.set_ylim(low, high + 0.55 * (high - low))  # headroom for the legend
        top.legend(loc="upper right", fontsize=5.8)
        for index, step in enumerate(chosen_steps([int(s) for s in steps])):
            data = twirl_rows(table, run.name, step)
            colour = STEP_COLOURS[index % len(STEP_COLOURS)]
            excess = (data["measured"] - data["mean"]).to_numpy()
            k = data["k"].to_numpy()
            identity = (k == 1) | (k == k.max())  # equal to L_equiv / k by construction of the estimators
            tested = ~identity & (excess > 0)
            bottom.plot(k[identity & (excess > 0)], excess[identity & (excess > 0)], "o", mfc="white", mec=colour,
                        ms=3.5, zorder=3)  # fmt: skip
            bottom.plot(k[tested], excess[tested], "o", color=colour, ms=3.5, zorder=4, label=f"step {step}")
            bottom.plot(k_grid, data["equiv"].iloc[0] / k_grid, color=colour, lw=1.0, alpha=0.8)
            if (~identity & (excess <= 0)).any():
                bottom.text(0.03, 0.03, "excess ≤ 0 at some k: not drawn", transform=bottom.transAxes, fontsize=5.5)
        bottom.set_xscale("log", base=2)
        bottom.set_yscale("log")
        bottom.yaxis.set_minor_formatter(style.NullFormatter())
        bottom.set_xlabel("rotations $K = k$")
        low, high = bottom.get_ylim()
        bottom.set_ylim(low, high * (high / low) ** 0.5)  # headroom for the legend
        handles = bottom.get_legend_handles_labels()[0] + [
            Line2D([], [], ls="", marker="o", mfc="white", mec="0.3", ms=3.5, label="$k=1$, $K$: identity"),
            Line2D([], [], color="0.3", lw=1.0, label=r"$L_\mathrm{equiv}/K$"),
        ]
        bottom.legend(handles=handles, loc="upper right", fontsize=5.8, ncols=3, columnspacing=0.8,
                      handletextpad=0.3)  # fmt: skip
        for ax in (top, bottom):
            ax.xaxis.set_major_formatter(style.FuncFormatter(lambda value, _: f"{value:g}"))
    axes[0][0].set_ylabel("held-out loss of the\ntwirled model")
    axes[1][0].set_ylabel("plug-in bias\n" + r"(twirled loss $-\ L_\mathrm{mean}$)")
    return fig


def main(argv: list[str] | None = None) -> int:
    return style.decomposition_figure_cli(plot, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
