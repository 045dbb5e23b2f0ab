"""Shared look of every figure: paper sizes, fonts, the Okabe-Ito colour-blind palette, one colour per model family,
the training-step axis and saving as PDF + PNG."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter, ScalarFormatter

from eqdyn.io import atomic_path

ONE_COLUMN = 3.3  # inches
TWO_COLUMN = 6.8

# Okabe & Ito (2008), distinguishable under the common colour-vision deficiencies.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
}

# One colour per model family, the same in every figure: the augmented (non-equivariant) model of each task is blue,
# its exactly equivariant counterpart vermillion, a second equivariant variant purple.
FAMILY_COLOURS = {
    "transformer": OKABE_ITO["blue"],
    "relative_transformer": OKABE_ITO["sky_blue"],
    "unet3d": OKABE_ITO["blue"],
    "egnn": OKABE_ITO["vermillion"],
    "painn": OKABE_ITO["vermillion"],
    "octahedral_unet": OKABE_ITO["vermillion"],
    "egnn_e3": OKABE_ITO["purple"],
    "twirled_unet3d": OKABE_ITO["purple"],
}
_OTHER_FAMILIES = [OKABE_ITO[name] for name in ("green", "orange", "black")]

# The decomposition's three losses.
QUANTITY_COLOURS = {"total": OKABE_ITO["black"], "mean": OKABE_ITO["blue"], "equiv": OKABE_ITO["orange"]}
QUANTITY_LABELS = {"total": r"$L_\mathrm{total}$", "mean": r"$L_\mathrm{mean}$", "equiv": r"$L_\mathrm{equiv}$"}
# Sweep values within one panel (the base run is black).
SWEEP_COLOURS = [OKABE_ITO[name] for name in ("vermillion", "green", "purple", "sky_blue", "orange", "blue")]

TASK_TITLES = {
    "flow_matching": "Flow matching",
    "force_field": "Force field",
    "voxel_denoising": "Voxel denoising",
}
THRESHOLD_PERCENT = 2.0
PAPER_STEP_WINDOW = (1_000, 10_000)


def apply_style() -> None:
    """Seaborn's paper context with readable 8 pt text, vector-friendly fonts and no top/right spines."""
    sns.set_theme(context="paper", style="ticks", palette=list(OKABE_ITO.values()))
    plt.rcParams.update(
        {
            "font.size": 8,
            "axes.titlesize": 8.5,
            "axes.labelsize": 8,
            "xtick.labelsize": 7,
            "ytick.labelsize": 7,
            "legend.fontsize": 7,
            "legend.frameon": False,
            "lines.linewidth": 1.2,
            "lines.markersize": 3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "pdf.fonttype": 42,
            "ps.fonttype": 42,
            "savefig.bbox": "tight",
            "savefig.pad_inches": 0.03,
            "figure.dpi": 100,
        }
    )


def family_colour(family: str) -> str:
    if family in FAMILY_COLOURS:
        return FAMILY_COLOURS[family]
    return _OTHER_FAMILIES[sum(map(ord, family)) % len(_OTHER_FAMILIES)]


def task_title(task: str) -> str:
    return TASK_TITLES.get(task, task.replace("_", " ").capitalize())


def figure(ncols: int, nrows: int = 1, width: float | None = None, panel_height: float = 1.9, **kwargs) -> tuple:
    """A grid of panels, one column wide for a single panel, two columns wide otherwise."""
    apply_style()
    width = width or (ONE_COLUMN if ncols == 1 else TWO_COLUMN)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width, panel_height * nrows + 0.35), squeeze=False, layout="constrained", **kwargs
    )
    return fig, axes


def step_axis(ax: Axes, max_step: float, extend_to_window: bool = False) -> None:
    """Training steps on a log axis that keeps step 0 (initialisation): symmetric-log, linear below step 1."""
    ax.set_xscale("symlog", linthresh=1.0, linscale=0.35)
    right = float(max_step)
    if extend_to_window and max_step >= 100:
        right = max(right, PAPER_STEP_WINDOW[1])
    right = max(right, 1.0) * 1.35
    ax.set_xlim(0, right)
    decades = [0] + [10**i for i in range(int(np.floor(np.log10(right))) + 1)]
    ax.xaxis.set_major_locator(FixedLocator(decades))
    minor = [m * 10**i for i in range(int(np.floor(np.log10(right))) + 1) for m in range(2, 10)]
    ax.xaxis.set_minor_locator(FixedLocator([m for m in minor if m <= right]))
    ax.xaxis.set_minor_formatter(NullFormatter())
    crowded = len(decades) > 4  # on a narrow panel "0" and "1" collide: keep the tick, drop the "1"
    ax.set_xticklabels([_step_label(d) if not (crowded and d == 1) else "" for d in decades])
    ax.set_xlabel("training step")


def _step_label(step: int) -> str:
    if step == 0:
        return "0"
    exponent = round(float(np.log10(step)))
    return "1" if exponent == 0 else ("10" if exponent == 1 else f"$10^{exponent}$")


def mark_paper_window(ax: Axes, label: bool = True) -> None:
    """Shade the paper's 1k-10k step window."""
    ax.axvspan(*PAPER_STEP_WINDOW, color="0.9", zorder=0, lw=0, label="paper: 1k–10k steps" if label else None)


def mark_threshold(ax: Axes, label: bool = True) -> None:
    """The paper's 2% line."""
    ax.axhline(THRESHOLD_PERCENT, color="0.35", ls=":", lw=1.0, zorder=1, label="2%" if label else None)


def band(ax: Axes, x, low, high, colour: str, alpha: float = 0.22, log_floor: float | None = None) -> None:
    """A shaded uncertainty band; on a log axis its lower edge is clipped to ``log_floor`` (never below zero)."""
    low = np.asarray(low, dtype=float)
    high = np.asarray(high, dtype=float)
    if log_floor is not None:
        low = np.maximum(low, log_floor)
        high = np.maximum(high, log_floor)
    ok = np.isfinite(low) & np.isfinite(high)
    if ok.any():
        ax.fill_between(np.asarray(x, dtype=float)[ok], low[ok], high[ok], color=colour, alpha=alpha, lw=0)


def positive_floor(values: Iterable[float], fraction: float = 0.2) -> float:
    """A floor for a log axis: a fraction of the smallest positive value shown."""
    values = np.asarray([v for v in values if np.isfinite(v) and v > 0], dtype=float)
    return float(values.min() * fraction) if len(values) else 1e-12


def output_paths(out: str | Path) -> tuple[Path, Path]:
    """``--out figures/x.png`` (or ``.pdf`` or no suffix) -> (x.png, x.pdf)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".png", ".pdf") else out
    return stem.with_suffix(".png"), stem.with_suffix(".pdf")


def save(fig: Figure, out: str | Path, dpi: int = 220) -> tuple[Path, Path]:
    """Write the figure as PNG and PDF beside each other, atomically and without timestamps."""
    png, pdf = output_paths(out)
    png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
        tmp.chmod(0o644)
    with atomic_path(pdf) as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "Creator": None, "Producer": None})
        tmp.chmod(0o644)
    plt.close(fig)
    return png, pdf


def add_out_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, required=True, help="figure path; both <stem>.png and <stem>.pdf are written"
    )


def empty_panel(ax: Axes, message: str) -> None:
    """A panel that says, in words, why it holds no data."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=7, color="0.3", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def percent_ticks(ax: Axes) -> None:
    """Plain numbers (0.1, 1, 10) on a log percentage axis."""
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def log_limits(ax: Axes, low: float, high: float, min_decades: float = 1.05) -> None:
    """Log y limits spanning at least ``min_decades`` decades (so a major tick is always labelled). Where fewer
    than two decades fall inside, the ticks at 2x and 5x a decade are labelled too, in plain numbers (one label
    alone gives the reader no scale); else no minor labels."""
    low, high = float(low), float(high)
    span = np.log10(high / low)
    if span < min_decades:
        centre = np.sqrt(low * high)
        low, high = centre / 10 ** (min_decades / 2), centre * 10 ** (min_decades / 2)
    ax.set_ylim(low, high)
    decades_inside = np.floor(np.log10(high)) - np.ceil(np.log10(low)) + 1
    if decades_inside >= 2:
        ax.yaxis.set_minor_formatter(NullFormatter())
        return
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(_two_and_five_label))


def _two_and_five_label(value: float, _: object = None) -> str:
    """``value`` in plain numbers where it is 2x or 5x a power of ten, else no label."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** np.floor(np.log10(value) + 1e-9)
    return f"{value:g}" if min(abs(mantissa - 2), abs(mantissa - 5)) < 1e-6 else ""


def log_limits_below_legend(
    ax: Axes, low: float, high: float, legend_lines: int, cap: float = np.inf, note_lines: int = 0
) -> None:
    """Log y limits with the data [low, high] in the middle band of the axes: the top kept free for an upper-right
    legend of ``legend_lines`` lines and the bottom for a note of ``note_lines`` lines (each line ~10 % of a panel's
    height at the in-panel font size), so neither covers a point. The top is at most ``cap``, never below the data."""
    low, high = float(low), float(high)

    def share(lines: int) -> float:
        return min(0.1 * lines + 0.05, 0.6) if lines else 0.0

    top_share, bottom_share = share(legend_lines), share(note_lines)
    if top_share + bottom_share > 0.8:  # keep at least a fifth of the height for the data
        scale = 0.8 / (top_share + bottom_share)
        top_share, bottom_share = top_share * scale, bottom_share * scale
    decades = np.log10(max(high / low, 10.0)) / (1 - top_share - bottom_share)  # the axis height, in decades
    top = high * 10 ** (decades * top_share)
    if top > cap and top_share > 0:  # the cap binds: the data take more of the height, the footroom shrinks with it
        top = max(cap, high * 1.5)
        decades = min(decades, np.log10(top / high) / top_share)
    log_limits(ax, low / 10 ** (decades * bottom_share), top)


def add_decomposition_arguments(parser: argparse.ArgumentParser) -> None:
    """--decomposition, --runs and --manifests: the tables every figure drawn from the decomposition reads."""
    parser.add_argument("--decomposition", type=Path, nargs="+", required=True, help="decomposition tables (CSV)")
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="run.json of every run")
    parser.add_argument("--manifests", type=Path, nargs="+", required=True, help="manifest.json of every run")


def decomposition_figure_cli(
    plot: Callable[..., Any], doc: str | None, argv: list[str] | None, baselines: bool = False
) -> int:
    """The command line of the figures drawn from decomposition tables, run.json and manifest.json files; with
    ``baselines`` also ``--baselines`` (the constant-model loss tables), passed to ``plot`` as its third argument."""
    from eqdyn.figures.tables import read_csvs, read_decomposition, read_runs

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_decomposition_arguments(parser)
    if baselines:
        parser.add_argument("--baselines", type=Path, nargs="*", default=None, help="constant-model loss tables")
    add_out_argument(parser)
    args = parser.parse_args(argv)
    tables: list[Any] = [read_decomposition(args.decomposition), read_runs(args.runs, args.manifests)]
    if baselines:
        tables.append(read_csvs(args.baselines) if args.baselines else None)
    save(plot(*tables), args.out)
    return 0


def value_axis(ax: Axes, which: str, values: Iterable[float], min_decades: float = 1.0) -> None:
    """A log scale where the positive values span at least ``min_decades`` decades, else a linear one with a few
    plain ticks: a log axis over a narrow range labels its minor ticks (2.16x10^1, 2.17x10^1, ...) on top of each
    other."""
    finite = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    axis = ax.xaxis if which == "x" else ax.yaxis
    set_scale = ax.set_xscale if which == "x" else ax.set_yscale
    if len(finite) and finite.min() > 0 and np.log10(finite.max() / finite.min()) >= min_decades:
        set_scale("log")
        axis.set_minor_formatter(NullFormatter())
        low, high = np.floor(np.log10(finite.min())), np.ceil(np.log10(finite.max()))
        if np.ceil(np.log10(finite.min())) >= np.floor(np.log10(finite.max())):  # fewer than two labelled decades
            (ax.set_xlim if which == "x" else ax.set_ylim)(10**low, 10**high)
        return
    set_scale("linear")
    axis.set_major_locator(MaxNLocator(nbins=3, min_n_ticks=2))
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_powerlimits((-3, 4))
    axis.set_major_formatter(formatter)
