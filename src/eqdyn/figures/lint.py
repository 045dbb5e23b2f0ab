"""Lint a rendered figure for the defects a reader sees: what a test can check that the eye would otherwise have to.

    python -m eqdyn.figures.lint --study results/<study> [--modules gradients ...]  # each figure it has tables for
    python -m eqdyn.figures.lint <module> <the module's arguments>   # e.g. gradients --gradients ... --out x.png

Checks on the figure as drawn (its own size and dpi, after constrained layout):

- ``tick_overlap``: two visible, non-empty tick labels of one axis (major or minor, inside the view limits) whose
  bounding boxes overlap;
- ``escape``: a backslash outside ``$...$`` in any text (a literal ``\\n`` written into a raw string, a mathtext
  command that lost its dollars); ``\\$`` is allowed;
- ``outside_canvas``: text (tick labels included) that reaches past the figure's edge: cut off on screen, and in
  the saved file (``bbox_inches="tight"``) it makes the figure wider or taller than the paper size it was drawn at;
- ``text_overlap``: two texts that are not tick labels of one axis (titles, axis labels, annotations, suptitle,
  whole legends) overlapping each other, or overlapping a tick label;
- ``axes_text_spill``: a text placed in axes coordinates, or a legend anchored to its axes, reaching past the axes;
- ``text_over_data``: a text or legend inside an axes that covers a data point (a vertex of a line, a scatter
  point) of that axes; segments between vertices and shaded bands are not checked;
- ``empty_legend_entry``: a legend entry with no artist drawn with data that it can stand for: in its axes for an
  axes legend, in any axes for a figure legend. The legend keeps copies of its handles only, so an entry stands for
  an artist when the two look alike: the same line style and marker (and hollow or filled marker) for a line, the
  same fill colour for a patch or band. A grey line handle is a style key ("--" = kappa_100 in every colour) and
  matches any colour; a coloured one must match its colour.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.collections import Collection, LineCollection, PathCollection, PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.transforms import Bbox, BboxBase

from eqdyn.figures import style

logger = logging.getLogger(__name__)

TOLERANCE_PX = 0.5  # overlaps and overhangs smaller than this (at the figure's dpi) are rounding, not defects
COLOUR_TOLERANCE = 0.02  # per RGB channel
FIGURE_MODULES = (
    "equiv_percent",
    "loss_decomposition",
    "robustness",
    "twirling",
    "hessian_spectra",
    "efficiency",
    "gradients",
)


@dataclass(frozen=True)
class FigureDefect:
    """One defect: its kind (see the module docstring), where it is, and what it is."""

    kind: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} in {self.where}: {self.detail}"


class FigureLintError(AssertionError):
    def __init__(self, defects: Sequence[FigureDefect], context: str = "") -> None:
        self.defects = list(defects)
        head = f"{context}: " if context else ""
        super().__init__(head + f"{len(self.defects)} figure defect(s):\n" + "\n".join(f"  - {d}" for d in defects))


def lint_figure(fig: Figure, tolerance_px: float = TOLERANCE_PX) -> list[FigureDefect]:
    """Every defect of the figure as drawn; an empty list for a clean figure."""
    fig.canvas.draw()
    drawn = _DrawnTexts(fig)
    defects = [
        defect
        for axis_name, labels in drawn.tick_labels.items()
        for defect in _tick_overlaps(labels, drawn.renderer, axis_name, tolerance_px)
    ]
    defects += _text_defects(drawn, tolerance_px)
    defects += _overlapping_texts(drawn, tolerance_px)
    for ax in fig.axes:
        defects += _spills_out_of_axes(ax, drawn, tolerance_px)
        defects += _text_over_data(ax, drawn.renderer, drawn.names[id(ax)], tolerance_px)
    defects += _empty_legend_entries(fig, drawn)
    return defects


class _DrawnTexts:
    """The texts of a drawn figure, by role, with the name of the axes each belongs to."""

    def __init__(self, fig: Figure) -> None:
        self.fig = fig
        # Agg-based canvases (every backend these figures are drawn with) have it; FigureCanvasBase's stub does not
        self.renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        self.names = {id(ax): _axes_name(fig, ax) for ax in fig.axes}
        self.owners = {id(t): self.names[id(ax)] for ax in fig.axes for t in ax.findobj(Text)}  # labels lack .axes
        self.tick_labels: dict[str, list[Text]] = {}  # "<axes>, x-axis" -> the tick labels drawn on it
        every_tick_label: set[int] = set()
        for ax in fig.axes:
            for axis_name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
                ticks = axis.get_major_ticks() + axis.get_minor_ticks()
                every_tick_label |= {id(t.label1) for t in ticks} | {id(t.label2) for t in ticks}
                where = f"{self.names[id(ax)]}, {axis_name}-axis"
                self.tick_labels[where] = _drawn_tick_labels(ax, axis)
                self.owners |= {id(label): where for label in self.tick_labels[where]}
        self.ticks = [label for labels in self.tick_labels.values() for label in labels]
        self.legends = _legends(fig)
        self.in_legends = {id(t) for legend in self.legends for t in [*legend.get_texts(), legend.get_title()]}
        self.texts = [t for t in fig.findobj(Text) if id(t) not in every_tick_label and _drawn(t)]  # all but ticks

    def place(self, text: Text) -> str:
        return self.owners.get(id(text), "figure")

    def extent(self, text: Text) -> Bbox:
        return _text_extent(text, self.renderer)


def _text_defects(drawn: _DrawnTexts, tolerance_px: float) -> list[FigureDefect]:
    """Backslashes outside math, and text past the figure's edge, in every text drawn (tick labels included)."""
    defects = []
    canvas = drawn.fig.bbox
    for text in drawn.texts + drawn.ticks:
        offending = backslash_outside_math(text.get_text())
        if offending is not None:
            defects.append(
                FigureDefect(
                    "escape", drawn.place(text), f"backslash outside $...$ at {offending!r} in {text.get_text()!r}"
                )
            )
        box = drawn.extent(text)
        if _overhang(box, canvas) > tolerance_px:
            defects.append(
                FigureDefect(
                    "outside_canvas",
                    drawn.place(text),
                    f"{text.get_text()!r} reaches past the figure edge ({_describe_overhang(box, canvas)})",
                )
            )
    return defects


def _overlapping_texts(drawn: _DrawnTexts, tolerance_px: float) -> list[FigureDefect]:
    """Texts outside legends, and each legend as one box, overlapping each other or any tick label."""
    outside_legends = [t for t in drawn.texts if id(t) not in drawn.in_legends]
    boxes = [(drawn.place(t), repr(t.get_text()), drawn.extent(t)) for t in outside_legends]
    boxes += [
        (_legend_place(legend, drawn.names), "legend", legend.get_window_extent(drawn.renderer))
        for legend in drawn.legends
    ]
    ticks = [(tick, drawn.extent(tick)) for tick in drawn.ticks]
    defects = []
    for i, (where_a, what_a, box_a) in enumerate(boxes):
        for where_b, what_b, box_b in boxes[i + 1 :]:
            if _intersection(box_a, box_b) > tolerance_px:
                defects.append(FigureDefect("text_overlap", where_a, f"{what_a} overlaps {what_b} ({where_b})"))
        for tick, box in ticks:
            if _intersection(box_a, box) > tolerance_px:
                defects.append(
                    FigureDefect(
                        "text_overlap",
                        where_a,
                        f"{what_a} overlaps tick label {tick.get_text()!r} ({drawn.place(tick)})",
                    )
                )
    return defects


def _spills_out_of_axes(ax: Axes, drawn: _DrawnTexts, tolerance_px: float) -> list[FigureDefect]:
    """Texts placed in axes coordinates, and a legend anchored to the axes, that reach past the axes."""
    if not ax.get_visible():
        return []
    defects = []
    for text in ax.texts:
        if _drawn(text) and text.get_transform() is ax.transAxes:
            overhang = _overhang(drawn.extent(text), ax.bbox)
            if overhang > tolerance_px:
                defects.append(
                    FigureDefect(
                        "axes_text_spill",
                        drawn.names[id(ax)],
                        f"{text.get_text()!r} reaches {overhang:.1f} px past the axes",
                    )
                )
    legend = ax.get_legend()
    if legend is not None and legend.get_visible() and legend.get_bbox_to_anchor().bounds == ax.bbox.bounds:
        overhang = _overhang(legend.get_window_extent(drawn.renderer), ax.bbox)
        if overhang > tolerance_px:
            defects.append(
                FigureDefect("axes_text_spill", drawn.names[id(ax)], f"legend reaches {overhang:.1f} px past the axes")
            )
    return defects


def _empty_legend_entries(fig: Figure, drawn: _DrawnTexts) -> list[FigureDefect]:
    """Legend entries that stand for no artist drawn with data: in the legend's axes, or any axes for a figure's."""
    defects = []
    for legend in drawn.legends:
        scope = [legend.axes] if isinstance(legend.parent, Axes) else list(fig.axes)
        where = _legend_place(legend, drawn.names)
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
            if not _drawn(text):
                continue
            if handle is None:
                defects.append(
                    FigureDefect(
                        "empty_legend_entry", where, f"{text.get_text()!r} has no legend handle (unsupported artist)"
                    )
                )
            elif not any(_stands_for(handle, artist) for ax in scope for artist in _data_artists(ax)):
                defects.append(
                    FigureDefect(
                        "empty_legend_entry",
                        where,
                        f"{text.get_text()!r}: no "
                        f"{_handle_description(handle)} with data is drawn in "
                        f"{'its axes' if len(scope) == 1 else 'any axes'}",
                    )
                )
    return defects


def assert_figure_clean(fig: Figure, context: str = "") -> None:
    """Raise :class:`FigureLintError` (an AssertionError) listing every defect of the figure."""
    defects = lint_figure(fig)
    if defects:
        raise FigureLintError(defects, context)


def backslash_outside_math(text: str) -> str | None:
    """The first backslash outside ``$...$`` with what follows it (``"\\\\n"``), or None; ``\\$`` is a dollar sign.

    Matplotlib reads a string as mathtext only when it has an even, non-zero number of unescaped dollars; otherwise
    every backslash in it is printed as it stands."""
    unescaped = [i for i, c in enumerate(text) if c == "$" and (i == 0 or text[i - 1] != "\\")]
    math = len(unescaped) > 0 and len(unescaped) % 2 == 0
    inside = False
    i = 0
    while i < len(text):
        c = text[i]
        if math and c == "$" and i in unescaped:
            inside = not inside
        elif c == "\\" and not inside:
            if i + 1 < len(text) and text[i + 1] == "$":
                i += 2
                continue
            return text[i : i + 2]
        i += 1
    return None


@contextmanager
def linted_saves(strict: bool = False) -> Iterator[list[tuple[Path, list[FigureDefect]]]]:
    """Lint every figure passed to :func:`eqdyn.figures.style.save` inside the block (the figure modules' ``main``
    all save through it); yields the (output path, defects) of each. ``strict`` raises on the first defective one."""
    original = style.save
    seen: list[tuple[Path, list[FigureDefect]]] = []

    def save(fig: Figure, out: str | Path, dpi: int = 220):
        defects = lint_figure(fig)
        seen.append((Path(out), defects))
        if strict and defects:
            raise FigureLintError(defects, str(out))
        return original(fig, out, dpi=dpi)

    style.save = save
    try:
        yield seen
    finally:
        style.save = original


def lint_module(module: str, argv: Sequence[str]) -> list[FigureDefect]:
    """Run ``eqdyn.figures.<module>.main(argv)`` and return the defects of the figure it saves."""
    main = importlib.import_module(f"eqdyn.figures.{module}").main
    with linted_saves() as seen:
        status = main(list(argv))
    if status != 0:
        raise RuntimeError(f"eqdyn.figures.{module} exited with status {status}")
    if len(seen) != 1:
        raise RuntimeError(f"eqdyn.figures.{module} saved {len(seen)} figures, expected one")
    return seen[0][1]


def study_figure_arguments(study: Path, out_dir: Path) -> dict[str, list[str]]:
    """The command line of every figure module whose input tables the study directory holds, as the workflow's
    figure rules pass them.

    ``study`` has the layout of ``results/<study>/`` (a copy without checkpoints will do): ``runs/<run>/run.json``
    and ``manifest.json``; ``analysis/decomposition/<run>.csv`` and ``<run>_examples.csv.gz``;
    ``analysis/hessian/<run>.csv`` and ``<run>_density.csv``; ``analysis/gradients/<run>.csv``;
    ``analysis/efficiency.csv``. The figures are written to ``out_dir/<module>.png``. ``robustness`` and
    ``twirling`` are listed whenever there are decomposition tables; whether they have something to draw is the
    module's to say."""
    study = Path(study)
    runs = sorted(study.glob("runs/*/run.json"))
    manifests = sorted(study.glob("runs/*/manifest.json"))
    decomposition = sorted(study.glob("analysis/decomposition/*.csv"))
    hessian_all = sorted(study.glob("analysis/hessian/*.csv"))
    density = [p for p in hessian_all if p.name.endswith("_density.csv")]
    hessian = [p for p in hessian_all if not p.name.endswith("_density.csv")]
    gradients = sorted(study.glob("analysis/gradients/*.csv"))
    efficiency = study / "analysis" / "efficiency.csv"
    if not runs or not decomposition:
        return {}

    def out(name: str) -> list[str]:
        return ["--out", str(Path(out_dir) / f"{name}.png")]

    common = [
        "--decomposition",
        *map(str, decomposition),
        "--runs",
        *map(str, runs),
        "--manifests",
        *map(str, manifests),
    ]
    arguments = {
        name: [*common, *out(name)] for name in ("equiv_percent", "loss_decomposition", "robustness", "twirling")
    }
    examples = sorted(study.glob("analysis/decomposition/*_examples.csv.gz"))
    if examples:  # as the workflow's twirling rule: per-example losses, and the timings where there are some
        arguments["twirling"][-2:-2] = ["--examples", *map(str, examples)]
    baselines = sorted(study.glob("analysis/baseline/*.csv"))
    if baselines:  # as the workflow's rules: the constant-model line, the checkpoints not learned
        for name in ("equiv_percent", "loss_decomposition", "robustness"):
            arguments[name][-2:-2] = ["--baselines", *map(str, baselines)]
    if examples and efficiency.exists():
        arguments["twirling"][-2:-2] = ["--efficiency", str(efficiency)]
    if hessian:
        arguments["hessian_spectra"] = [
            "--hessian",
            *map(str, hessian),
            "--density",
            *map(str, density),
            "--runs",
            *map(str, runs),
            *out("hessian_spectra"),
        ]
    if efficiency.exists():
        arguments["efficiency"] = ["--efficiency", str(efficiency), *common, *out("efficiency")]
    if gradients:
        arguments["gradients"] = ["--gradients", *map(str, gradients), *common, *out("gradients")]
    return arguments


# --- what is drawn -------------------------------------------------------------------------------------------------


def _drawn(text: Text) -> bool:
    if not text.get_visible() or not text.get_text().strip():
        return False
    ax = text.axes
    if ax is None:
        return True
    if not ax.get_visible():
        return False
    for axis in (ax.xaxis, ax.yaxis):
        if text is axis.label or text is axis.offsetText:
            return ax.axison and axis.get_visible()
    return True


def _drawn_tick_labels(ax: Axes, axis: Axis) -> list[Text]:
    """The tick labels that are drawn: visible, non-empty, at a tick inside the view limits."""
    if not ax.get_visible() or not ax.axison or not axis.get_visible():
        return []
    transform = axis.get_transform()
    low, high = sorted(transform.transform(np.asarray(axis.get_view_interval(), dtype=float)))
    slack = 1e-9 * max(abs(high - low), 1e-300)
    labels = []
    for locs, ticks in (
        (axis.get_majorticklocs(), axis.get_major_ticks),
        (axis.get_minorticklocs(), axis.get_minor_ticks),
    ):
        locs = np.asarray(locs, dtype=float)
        if not len(locs):
            continue
        with np.errstate(all="ignore"):
            positions = transform.transform(locs)
        for position, tick in zip(positions, ticks(len(locs)), strict=True):
            if not np.isfinite(position) or not low - slack <= position <= high + slack or not tick.get_visible():
                continue
            labels += [
                label for label in (tick.label1, tick.label2) if label.get_visible() and label.get_text().strip()
            ]
    return labels


def _legends(fig: Figure) -> list[Legend]:
    legends = [legend for legend in fig.legends if legend.get_visible()]
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None and legend.get_visible() and ax.get_visible():
            legends.append(legend)
    return legends


def _data_artists(ax: Axes) -> Iterator[Artist]:
    """The lines, collections and patches of an axes that are visible and hold at least one finite point."""
    if not ax.get_visible():
        return
    for line in ax.lines:
        xy = np.asarray(line.get_xydata(), dtype=float)
        if line.get_visible() and xy.size and np.isfinite(xy).all(axis=-1).any():
            yield line
    for collection in ax.collections:
        if collection.get_visible() and _collection_has_data(collection):
            yield collection
    for patch in ax.patches:
        if patch.get_visible():
            yield patch


def _text_over_data(ax: Axes, renderer, where: str, tolerance_px: float) -> list[FigureDefect]:
    """Texts and the legend inside an axes that cover a vertex of its lines or a point of its scatters."""
    if not ax.get_visible():
        return []
    covers: list[tuple[str, Bbox]] = [(repr(t.get_text()), _text_extent(t, renderer)) for t in ax.texts if _drawn(t)]
    legend = ax.get_legend()
    if legend is not None and legend.get_visible() and _overhang(legend.get_window_extent(renderer), ax.bbox) < 1:
        covers.append(("legend", legend.get_window_extent(renderer)))
    if not covers:
        return []
    points: list[tuple[Line2D | PathCollection, np.ndarray]] = []
    for artist in _data_artists(ax):
        if isinstance(artist, Line2D):
            xy = np.asarray(artist.get_xydata(), dtype=float)
            points.append((artist, artist.get_transform().transform(xy[np.isfinite(xy).all(axis=1)])))
        elif isinstance(artist, PathCollection):
            xy = np.asarray(artist.get_offsets(), dtype=float)
            points.append((artist, artist.get_offset_transform().transform(xy[np.isfinite(xy).all(axis=1)])))
    defects = []
    for what, box in covers:
        inner = (box.x0 + tolerance_px, box.x1 - tolerance_px, box.y0 + tolerance_px, box.y1 - tolerance_px)
        for artist, xy in points:
            inside = (xy[:, 0] > inner[0]) & (xy[:, 0] < inner[1]) & (xy[:, 1] > inner[2]) & (xy[:, 1] < inner[3])
            if inside.any():
                label = artist.get_label()
                name = f" {label!r}" if isinstance(label, str) and label and not label.startswith("_") else ""
                defects.append(
                    FigureDefect(
                        "text_over_data",
                        where,
                        f"{what} covers {int(inside.sum())} point(s) of a {type(artist).__name__}{name}",
                    )
                )
    return defects


def _collection_has_data(collection: Collection) -> bool:
    if isinstance(collection, PathCollection):
        offsets = np.asarray(collection.get_offsets(), dtype=float)
        return bool(offsets.size) and bool(np.isfinite(offsets).all(axis=-1).any())
    return any(len(np.asarray(path.vertices)) for path in collection.get_paths())


# --- legend handles against drawn artists --------------------------------------------------------------------------


def _stands_for(handle: Artist, artist: Artist) -> bool:
    """Whether a legend's copy of a handle looks like a drawn artist (see the module docstring)."""
    if isinstance(handle, Line2D):
        if not isinstance(artist, Line2D):
            return False
        has_line, has_marker = _has_line(handle), _has_marker(handle)
        if has_line and (not _has_line(artist) or handle.get_linestyle() != artist.get_linestyle()):
            return False
        if has_marker and (
            not _has_marker(artist) or handle.get_marker() != artist.get_marker() or _hollow(handle) != _hollow(artist)
        ):
            return False
        if not has_line and not has_marker:
            return False
        colour = handle.get_color() if has_line else handle.get_markeredgecolor()
        if _achromatic(colour):
            return True
        candidates = [artist.get_color()] + (
            [artist.get_markeredgecolor(), artist.get_markerfacecolor()] if _has_marker(artist) else []
        )
        return any(_same_colour(colour, c) for c in candidates)
    if isinstance(handle, Patch):
        if isinstance(artist, Patch):
            return _same_colour(handle.get_facecolor(), artist.get_facecolor())
        if isinstance(artist, PolyCollection):
            return any(_same_colour(handle.get_facecolor(), c) for c in artist.get_facecolor())
        return False
    if isinstance(handle, (PathCollection, LineCollection)):
        if type(artist) is not type(handle):
            return False
        colours = list(handle.get_facecolor()) + list(handle.get_edgecolor())
        drawn = list(artist.get_facecolor()) + list(artist.get_edgecolor())
        return any(_achromatic(c) for c in colours) or any(_same_colour(a, b) for a in colours for b in drawn)
    return isinstance(artist, type(handle))


def _has_line(line: Line2D) -> bool:
    return line.get_linestyle() not in ("None", "none", "", " ") and line.get_linewidth() > 0


def _has_marker(line: Line2D) -> bool:
    """Whether the line draws a marker at one point or more (``markevery`` can pick none)."""
    if line.get_marker() in ("None", "none", "", " ", None):
        return False
    every = line.get_markevery()
    if isinstance(every, (list, tuple, np.ndarray)) and len(every) and np.asarray(every).dtype == bool:
        return bool(np.any(every))
    return True


def _hollow(line: Line2D) -> bool:
    face = line.get_markerfacecolor()
    return (isinstance(face, str) and face.lower() == "none") or to_rgba(face)[3] == 0 or _same_colour(face, "white")


def _achromatic(colour) -> bool:
    red, green, blue, _ = to_rgba(colour)
    return max(red, green, blue) - min(red, green, blue) <= COLOUR_TOLERANCE


def _same_colour(a, b) -> bool:
    if any(isinstance(c, str) and c.lower() == "none" for c in (a, b)):
        return False
    return bool(np.max(np.abs(np.asarray(to_rgba(a)[:3]) - np.asarray(to_rgba(b)[:3]))) <= COLOUR_TOLERANCE)


def _handle_description(handle: Artist) -> str:
    if isinstance(handle, Line2D):
        parts = []
        if _has_line(handle):
            parts.append(f"line {handle.get_linestyle()!r}")
        if _has_marker(handle):
            parts.append(f"{'hollow ' if _hollow(handle) else ''}marker {handle.get_marker()!r}")
        colour = handle.get_color() if _has_line(handle) else handle.get_markeredgecolor()
        parts.append("of any colour" if _achromatic(colour) else f"in {_hex(colour)}")
        return " ".join(parts)
    if isinstance(handle, Patch):
        return f"patch or band in {_hex(handle.get_facecolor())}"
    return type(handle).__name__


def _hex(colour) -> str:
    from matplotlib.colors import to_hex

    return to_hex(colour)


# --- geometry and names --------------------------------------------------------------------------------------------


def _text_extent(text: Text, renderer) -> Bbox:
    """The drawn extent; a wrapped text is measured as wrapped (as matplotlib draws it)."""
    if text.get_wrap() and hasattr(text, "_get_wrapped_text"):
        unwrapped = text.get_text()
        text.set_text(text._get_wrapped_text())
        try:
            return text.get_window_extent(renderer)
        finally:
            text.set_text(unwrapped)
    return text.get_window_extent(renderer)


def _tick_overlaps(labels: list[Text], renderer, where: str, tolerance_px: float) -> list[FigureDefect]:
    """One defect per axis whose tick labels overlap, naming the first few overlapping pairs."""
    boxes = [(label.get_text(), label.get_window_extent(renderer)) for label in labels]
    pairs = [
        (a, b)
        for i, (a, box_a) in enumerate(boxes)
        for b, box_b in boxes[i + 1 :]
        if _intersection(box_a, box_b) > tolerance_px
    ]
    if not pairs:
        return []
    shown = "; ".join(f"{a!r} and {b!r}" for a, b in pairs[:3])
    more = f" (and {len(pairs) - 3} more pairs)" if len(pairs) > 3 else ""
    return [FigureDefect("tick_overlap", where, f"tick labels overlap: {shown}{more}")]


def _intersection(a: Bbox, b: Bbox) -> float:
    """The smaller side of the two boxes' intersection in pixels (0 when they do not meet)."""
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(0.0, min(width, height))


def _overhang(inner: BboxBase, outer: BboxBase) -> float:
    return max(outer.x0 - inner.x0, inner.x1 - outer.x1, outer.y0 - inner.y0, inner.y1 - outer.y1, 0.0)


def _describe_overhang(inner: BboxBase, outer: BboxBase) -> str:
    sides = {
        "left": outer.x0 - inner.x0,
        "right": inner.x1 - outer.x1,
        "bottom": outer.y0 - inner.y0,
        "top": inner.y1 - outer.y1,
    }
    return ", ".join(f"{side} by {value:.1f} px" for side, value in sides.items() if value > 0)


def _axes_name(fig: Figure, ax: Axes) -> str:
    index = fig.axes.index(ax)
    title = next((t for t in (ax.get_title("center"), ax.get_title("left"), ax.get_title("right")) if t), "")
    if not title and ax.get_label() == "<colorbar>":
        title = "colour bar"
    return f"axes {index}" + (f" ({title.splitlines()[0]!r})" if title else "")


def _legend_place(legend: Legend, names: dict[int, str]) -> str:
    if isinstance(legend.parent, Axes):
        return f"legend of {names.get(id(legend.parent), 'an axes')}"
    return "figure legend"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    handler = logging.StreamHandler()  # this module's report only: fontTools logs every PDF subset at INFO
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    if argv and argv[0] in FIGURE_MODULES:  # the module's own arguments follow, untouched
        jobs = {argv[0]: argv[1:]}
        study = None
    else:
        parser = argparse.ArgumentParser(
            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
        )
        parser.add_argument(
            "--study", type=Path, required=True, help="a results/<study> directory: lint every figure it has tables for"
        )
        parser.add_argument(
            "--out-dir",
            type=Path,
            default=Path("figures-lint"),
            help="where the figures are written (default: ./figures-lint)",
        )
        parser.add_argument(
            "--modules",
            nargs="+",
            choices=FIGURE_MODULES,
            default=list(FIGURE_MODULES),
            help="only these figure modules (default: all)",
        )
        args = parser.parse_args(argv)
        study = args.study
        jobs = {m: a for m, a in study_figure_arguments(study, args.out_dir).items() if m in args.modules}
        if not jobs:
            parser.error(f"{study} has no runs/*/run.json or analysis/decomposition/*.csv")
    failed = 0
    for module, module_argv in jobs.items():
        try:
            defects = lint_module(module, module_argv)
        except ValueError as error:
            if study is None:
                raise
            logger.info("%s: not drawn (%s)", module, error)  # e.g. robustness in a study without sweeps
            continue
        failed += bool(defects)
        logger.info("%s: %s", module, "clean" if not defects else f"{len(defects)} defect(s)")
        for defect in defects:
            logger.info("  - %s", defect)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
