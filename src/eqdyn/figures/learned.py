"""Which checkpoints of a run count as learned: the rule the claims judge by, and how the figures mark the others.

Its own module so that an edit to the claims' other rules redraws the claims alone, and an edit to this rule
redraws the claims and the figures that mark it (``equiv_percent``, ``robustness``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from eqdyn.figures.tables import series

# A checkpoint counts for the 2% rule only if its held-out L_total is at most this fraction of the loss of the task's
# best constant model (eqdyn.analysis.baseline_loss): a run on a trivial predictor's plateau sits at ~1.0 of it and
# has a tiny L_equiv share that says nothing about learned equivariance. The trained runs of the decisive study read
# 0.16-0.48 at step 10,000, the plateau runs 0.97-1.0: the verdicts do not move between 0.5 and 0.9.
LEARNED_FRACTION = 0.75
# Without a constant-model table (an older study): below this fraction of the run's own step-0 L_total, a weaker rule
# (the step-0 loss reflects the initial output scale), named in the reading.
LEARNED_FRACTION_OF_STEP0 = 0.5
NOT_LEARNED = "not learned"  # the words the figures label such checkpoints and runs with


def learned_steps(table: pd.DataFrame, run: str, constant_loss: float | None = None) -> set[int]:
    """Checkpoints at which the run has learned: held-out L_total ≤ LEARNED_FRACTION x the task's constant-model
    loss, or without one, below LEARNED_FRACTION_OF_STEP0 of the run's step-0 value.

    On a constant predictor's plateau, or at step 0 where L_total is large, any L_equiv is a small share of L_total:
    a percentage read there says nothing about learned equivariance. Without either reference no checkpoint counts."""
    total = series(table, run, "total")
    if constant_loss is not None and np.isfinite(constant_loss):
        return {int(s) for s in total.loc[total["value"] <= LEARNED_FRACTION * constant_loss, "step"]}
    initial = total.loc[total["step"] == 0, "value"]
    if initial.empty or not np.isfinite(initial.iloc[0]):
        return set()
    return {int(s) for s in total.loc[total["value"] < LEARNED_FRACTION_OF_STEP0 * float(initial.iloc[0]), "step"]}


def mark_not_learned(ax: Axes, steps: Iterable[float], values: Iterable[float], colour: str, size: float) -> None:
    """Open markers over a curve's checkpoints that are not learned (drawn on top of its filled ones)."""
    ax.plot(list(steps), list(values), ls="none", marker="o", ms=size, mfc="white", mec=colour, mew=0.6)


def not_learned_key(has_constant_model: bool) -> Line2D:
    """The legend key of the open markers, naming the reference the rule used."""
    reference = (
        rf"$L_\mathrm{{total}}$ > {LEARNED_FRACTION:g}x the constant model's"
        if has_constant_model
        else rf"$L_\mathrm{{total}}$ not below {LEARNED_FRACTION_OF_STEP0:g}x step 0's"
    )
    return Line2D([], [], ls="none", marker="o", ms=3.0, mfc="white", mec="0.2", label=f"{NOT_LEARNED} ({reference})")
