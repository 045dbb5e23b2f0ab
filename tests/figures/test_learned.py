"""The learned-checkpoint rule on constructed loss curves: each reference decides, and each can reject."""

from __future__ import annotations

import math

import pandas as pd

from eqdyn.figures.learned import LEARNED_FRACTION, LEARNED_FRACTION_OF_STEP0, learned_steps


def totals(values: dict[int, float], run: str = "r") -> pd.DataFrame:
    return pd.DataFrame(
        [{"run": run, "quantity": "total", "step": s, "value": v, "stderr": 0.0} for s, v in values.items()]
    )


def test_against_the_constant_model_a_checkpoint_at_its_plateau_is_not_learned() -> None:
    constant = 2.0
    table = totals({0: 9.0, 100: constant, 1000: LEARNED_FRACTION * constant, 10000: 0.1})
    assert learned_steps(table, "r", constant) == {1000, 10000}  # the bound itself counts, the plateau does not
    assert learned_steps(totals({0: 9.0, 100: 1.9, 1000: 1.8}), "r", constant) == set()


def test_without_a_constant_model_the_step0_loss_is_the_reference() -> None:
    table = totals({0: 4.0, 100: LEARNED_FRACTION_OF_STEP0 * 4.0, 1000: 1.0})
    assert learned_steps(table, "r") == {1000}  # strictly below the fraction
    assert learned_steps(table, "r", math.nan) == {1000}  # a non-finite constant loss is no reference


def test_without_any_reference_no_checkpoint_counts() -> None:
    assert learned_steps(totals({100: 0.1, 1000: 0.01}), "r") == set()
    assert learned_steps(totals({0: math.inf, 1000: 0.01}), "r") == set()
    assert learned_steps(totals({0: 4.0, 1000: 0.01}), "other") == set()
