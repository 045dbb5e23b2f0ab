"""Which checkpoints of a run count as learned: the rule the claims judge by and the robustness figure marks.

Its own module so that an edit to the claims' other rules redraws the claims alone, and an edit to this rule
redraws both the claims and the figure that draws it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from eqdyn.figures.tables import series

# A checkpoint counts for the 2% rule only if its held-out L_total is at most this fraction of the loss of the task's
# best constant model (eqdyn.analysis.baseline_loss): a run on a trivial predictor's plateau sits at ~1.0 of it and
# has a tiny L_equiv share that says nothing about learned equivariance. The trained runs of the decisive study read
# 0.16-0.48 at step 10,000, the plateau runs 0.97-1.0: the verdicts do not move between 0.5 and 0.9.
LEARNED_FRACTION = 0.75
# Without a constant-model table (an older study): below this fraction of the run's own step-0 L_total, a weaker rule
# (the step-0 loss reflects the initial output scale), named in the reading.
LEARNED_FRACTION_OF_STEP0 = 0.5


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
