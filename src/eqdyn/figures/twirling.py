"""Figure 7: test-time twirling as a remedy for the efficiency gap, and the check of the twirling code.

    python -m eqdyn.figures.twirling --decomposition results/<study>/analysis/decomposition/*.csv \
        --runs results/<study>/runs/*/run.json --manifests results/<study>/runs/*/manifest.json \
        [--efficiency results/<study>/analysis/efficiency.csv \
         --examples results/<study>/analysis/decomposition/*_examples.csv.gz] --out figures/twirling.png

One column per task. Top: held-out loss at matched training-plus-inference cost against k, the augmented model
averaged over k twirling rotations beside the equivariant model of the same task (each at the checkpoint the
matched-cost rule of :func:`matched_comparisons` picks for that k; bars +- 1.96 SE over examples). Middle: their
per-example (paired) difference, augmented minus equivariant, +- 1.96 paired SE: below zero, twirling wins at that
cost. Bottom: the check of the twirling code at each augmented base run's last checkpoint, the twirled loss on
rotations independent of the estimator's minus its expectation from the estimators (L_mean + L_equiv / k; for the
24 cube rotations drawn without replacement L_mean + L_equiv (24 - k) / (23 k)), in percent of the expectation,
+- 1.96 paired SE. It holds for every model, so it tests code, not the paper.

The numbers (the matched-cost comparison and the code check) come from ``eqdyn.figures.twirling_remedy``, which the
claims table shares.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from eqdyn.figures import style
from eqdyn.figures.tables import Z95, RunInfo, read_csvs, read_decomposition, read_runs
from eqdyn.figures.twirling_remedy import (
    TwirlComparison,
    UnitCheck,
    cost_unit,
    has_inference_timings,
    matched_comparisons,
    read_example_tables,
    unit_checks,
)

AUGMENTED_COLOUR = style.OKABE_ITO["blue"]
EQUIVARIANT_COLOUR = style.OKABE_ITO["vermillion"]


# ------------------------------------------------------------------------------------------------------- figure


def _k_axis(ax, ks: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.xaxis.set_minor_formatter(style.NullFormatter())
    ax.set_xlim(min(ks) / 1.4, max(ks) * 1.4)


# one marker per (augmented, equivariant) pair when a task has several, shared by its curves in both panels
PAIR_MARKERS = ("o", "^", "v", "D", "P", "X")


def _model_name(run: str) -> str:
    """A run's name without its task prefix (force_field-escaip_like -> escaip_like)."""
    return run.split("-", 1)[1] if "-" in run else run


def _plot_remedy(top, middle, comparisons: list[TwirlComparison], unit: str) -> None:
    pairs = list(dict.fromkeys((c.augmented, c.equivariant) for c in comparisons))
    offsets = np.linspace(-0.06, 0.06, len(pairs)) if len(pairs) > 1 else [0.0]
    for index, ((augmented, equivariant), offset) in enumerate(zip(pairs, offsets, strict=True)):
        rows = [c for c in comparisons if (c.augmented, c.equivariant) == (augmented, equivariant)]
        k = np.array([c.k for c in rows], dtype=float) * 2**offset
        marker = PAIR_MARKERS[index % len(PAIR_MARKERS)] if len(pairs) > 1 else "o"
        pair = f"{_model_name(augmented)} − {_model_name(equivariant)}" if len(pairs) > 1 else ""
        top.errorbar(
            k,
            [c.augmented_loss for c in rows],
            yerr=[Z95 * c.augmented_se for c in rows],
            fmt=f"{marker}-",
            color=AUGMENTED_COLOUR,
            ms=3.5,
            capsize=2,
            lw=1.0,
            label="augmented, twirled over $k$",
        )
        top.errorbar(
            k,
            [c.equivariant_loss for c in rows],
            yerr=[Z95 * c.equivariant_se for c in rows],
            fmt=f"{marker if len(pairs) > 1 else 's'}--",
            color=EQUIVARIANT_COLOUR,
            ms=3.2,
            capsize=2,
            lw=1.0,
            label="equivariant",
        )
        wins = np.array([c.outcome == "twirling" for c in rows])
        middle.errorbar(
            k,
            [c.difference for c in rows],
            yerr=[Z95 * c.difference_se for c in rows],
            fmt=marker,
            color="black",
            ms=3.5,
            capsize=2,
            # several pairs: each its own entry, its marker shared with its two curves above
            label=f"{pair} (paired)" if pair else "augmented − equivariant (paired)",
        )
        if wins.any():
            middle.plot(
                k[wins],
                np.array([c.difference for c in rows])[wins],
                "o",
                color=AUGMENTED_COLOUR,
                ms=5.5,
                mfc="none",
                mew=1.2,
                label="twirling lower by > 1.96 SE",
            )
    middle.axhline(0.0, color="0.4", lw=0.8, ls=":")
    ks = sorted({c.k for c in comparisons})
    for ax in (top, middle):
        _k_axis(ax, ks)
    budgets = list(dict.fromkeys(f"{b:.3g}" for b in sorted({c.budget for c in comparisons})))
    span = f"{budgets[0]}–{budgets[-1]}" if len(budgets) > 1 else budgets[0]
    top.set_xlabel(f"$k$ (budget {span} {unit})", fontsize=6.5)
    middle.set_xlabel("test-time rotations $k$")


def check_labels(checks: list[UnitCheck], runs: dict[str, RunInfo]) -> dict[str, str]:
    """The code check's legend label per model family: families drawn in one colour (the augmented models share
    one) share one key that names them all, so that no two keys look alike."""
    families = list(dict.fromkeys(runs[c.run].family for c in checks))
    by_colour: dict[str, list[str]] = {}
    for family in families:
        by_colour.setdefault(style.family_colour(family), []).append(family)
    return {f: f"code check: {', '.join(by_colour[style.family_colour(f)])}" for f in families}


def _plot_unit_checks(ax, checks: list[UnitCheck], runs: dict[str, RunInfo], labels: dict[str, str]) -> None:
    names = list(dict.fromkeys(c.run for c in checks))
    offsets = np.linspace(-0.06, 0.06, len(names)) if len(names) > 1 else [0.0]
    for name, offset in zip(names, offsets, strict=True):
        rows = [c for c in checks if c.run == name and np.isfinite(c.expected) and c.expected != 0]
        if not rows:
            continue
        k = np.array([c.k for c in rows], dtype=float) * 2**offset
        relative = np.array([100 * c.difference / c.expected for c in rows])
        relative_se = np.array([100 * c.difference_se / abs(c.expected) for c in rows])
        run = runs[name]
        ax.errorbar(
            k,
            relative,
            yerr=Z95 * relative_se,
            fmt="D",
            color=style.family_colour(run.family),
            ms=3.0,
            capsize=2,
            label=labels[run.family],
        )
    ax.axhline(0.0, color="0.4", lw=0.8, ls=":")
    _k_axis(ax, sorted({c.k for c in checks}))
    steps = sorted({c.step for c in checks})
    ax.set_xlabel(f"twirling rotations $k$\n(step {', '.join(map(str, steps))})")


def plot(
    table: pd.DataFrame,
    runs: dict[str, RunInfo],
    efficiency: pd.DataFrame | None = None,
    examples: pd.DataFrame | None = None,
):
    checks = unit_checks(table, runs)
    labels = check_labels(checks, runs)
    comparisons: list[TwirlComparison] = []
    unit = ""
    if examples is not None and has_inference_timings(efficiency):
        comparisons, _ = matched_comparisons(examples, efficiency, runs)
        unit = cost_unit(efficiency) if comparisons else ""
    tasks = sorted({c.task for c in checks} | {c.task for c in comparisons})
    if not tasks:
        raise ValueError("no augmented base run has twirling rows, and no matched-cost comparison can be made")
    # the remedy rows only where some task has a matched-cost comparison; the code check row always
    nrows = 3 if comparisons else 1
    fig, axes = style.figure(
        ncols=len(tasks),
        nrows=nrows,
        panel_height=1.75,
        width=style.ONE_COLUMN if len(tasks) == 1 else style.TWO_COLUMN,
    )
    for column, task in enumerate(tasks):
        axes[0][column].set_title(style.task_title(task))
        if comparisons:
            top, middle = axes[0][column], axes[1][column]
            remedy = [c for c in comparisons if c.task == task]
            if remedy:
                _plot_remedy(top, middle, remedy, unit)
            else:
                for ax in (top, middle):
                    _empty(ax, "no timed\nequivariant pair")
        bottom = axes[-1][column]
        task_checks = [c for c in checks if c.task == task]
        if task_checks:
            _plot_unit_checks(bottom, task_checks, runs, labels)
        else:
            _empty(bottom, "no twirling rows")
    if comparisons:
        axes[0][0].set_ylabel("held-out loss at\nmatched cost")
        axes[1][0].set_ylabel("augmented − equivariant")
    axes[-1][0].set_ylabel("measured − expected\n(% of expected)")
    handles: dict[str, object] = {}
    for ax in (ax for row in axes for ax in row):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="outside lower center",
            ncols=2 if nrows == 1 or len(tasks) == 1 else 3,  # one task: a one-column figure
            fontsize=6.0,
            title="bars: ±1.96 SE over the same held-out examples (paired for differences)",
            title_fontsize=6,
        )
    return fig


def _empty(ax, message: str) -> None:
    """An empty panel with a short message on lines of its own (the panel is narrow)."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=6.5, color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    style.add_decomposition_arguments(parser)
    parser.add_argument("--efficiency", type=Path, default=None, help="efficiency table with inference timings")
    parser.add_argument("--examples", type=Path, nargs="*", default=None, help="per-example loss tables (.csv.gz)")
    style.add_out_argument(parser)
    args = parser.parse_args(argv)
    efficiency = read_csvs([args.efficiency]) if args.efficiency else None
    examples = read_example_tables(args.examples) if args.examples else None
    fig = plot(read_decomposition(args.decomposition), read_runs(args.runs, args.manifests), efficiency, examples)
    style.save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
