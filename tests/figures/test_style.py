"""Axis helpers of the figures: what a reader can read off the tick labels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from eqdyn.figures import style


def visible_labels(low: float, high: float) -> list[str]:
    fig, ax = plt.subplots()
    ax.set_yscale("log")
    ax.plot([1, 2], [low, high])
    style.log_limits(ax, low, high)
    fig.canvas.draw()
    bottom, top = ax.get_ylim()
    ticks = [*ax.yaxis.get_major_ticks(), *ax.yaxis.get_minor_ticks()]
    labels = [t.label1.get_text() for t in ticks if bottom <= t.get_loc() <= top and t.label1.get_text()]
    plt.close(fig)
    return labels


def test_a_log_axis_with_one_decade_inside_labels_2x_and_5x_ticks() -> None:
    labels = visible_labels(0.55, 6.0)  # the flow-matching loss range: only 10^0 is a decade inside
    assert {"1", "2", "5"} <= set(labels) and len(labels) >= 3


def test_a_log_axis_over_decades_labels_the_decades_only() -> None:
    labels = visible_labels(1e-3, 3.0)
    assert len(labels) == 4 and not {"2", "5", "0.2", "0.5"} & set(labels)
