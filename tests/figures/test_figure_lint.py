"""The figure lint (eqdyn.figures.lint): each check fails on a figure built with that defect, passes a clean one;
every figure module, drawn from the synthetic study's tables and from a committed bundle of a real study's tables,
has no defect."""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from figures_testing import (
    SyntheticStudy,
    default_runs,
    write_efficiency,
    write_gradients,
    write_gradients_narrow_norm,
    write_hessian,
    write_study,
)
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from eqdyn.figures import lint, style

REPO = Path(__file__).resolve().parents[2]
# The tables of a real study, copied from results/<study>/ without the checkpoints (runs/*/run.json, manifest.json,
# analysis/...): figures/tables/ itself, or one study per subfolder of it. EQDYN_FIGURE_TABLES adds folders.
BUNDLE = REPO / "figures" / "tables"
OPTIONAL_FIGURES = ("robustness", "twirling")  # drawn only when the study has sweeps / twirled rows


def kinds(defects: list[lint.FigureDefect]) -> list[str]:
    return [d.kind for d in defects]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def small_figure(ncols: int = 1):
    style.apply_style()
    fig, axes = plt.subplots(1, ncols, figsize=(3.3, 2.2), layout="constrained", squeeze=False)
    return fig, axes[0]


# --- each check on a figure made with its defect -------------------------------------------------------------------


def test_clean_figure_has_no_defect() -> None:
    fig, (ax,) = small_figure()
    ax.plot([1, 2, 3], [1, 4, 9], color=style.OKABE_ITO["blue"], marker="o", label=r"$L_\mathrm{mean}$ (\$ spent)")
    ax.plot([1, 2, 3], [2, 3, 4], color=style.OKABE_ITO["orange"], ls="--", label=r"$\nabla L$")
    ax.axvspan(1.5, 2.0, color="0.9", lw=0)
    ax.set_title("a title")
    ax.set_xlabel(r"$\|\theta_\perp\|^2$")
    ax.legend(loc="upper left", fontsize=6)
    fig.legend(
        handles=[Line2D([], [], color="0.3", ls="--", label="dashed: any colour"), Patch(color="0.9", label="window")],
        loc="outside lower center",
        ncols=2,
    )
    assert lint.lint_figure(fig) == []
    lint.assert_figure_clean(fig)


def test_overlapping_tick_labels_are_found() -> None:
    fig, (ax,) = small_figure()
    ax.plot(range(20), range(20))
    ax.set_xticks(range(20), [f"label {i}" for i in range(20)])
    defects = lint.lint_figure(fig)
    assert kinds(defects) == ["tick_overlap"]
    assert "x-axis" in defects[0].where


def test_a_log_axis_over_a_narrow_range_overlaps_and_value_axis_fixes_it() -> None:
    """The defect of the gradients figure: a log axis over 21.6-22.4 labels every minor tick."""
    values = np.linspace(21.6, 22.4, 12)
    fig, (ax,) = small_figure()
    ax.scatter(values, np.geomspace(1, 0.01, 12))
    ax.set_xscale("log")
    assert "tick_overlap" in kinds(lint.lint_figure(fig))
    fig, (ax,) = small_figure()
    ax.scatter(values, np.geomspace(1, 0.01, 12))
    style.value_axis(ax, "x", values)
    style.value_axis(ax, "y", np.geomspace(1, 0.01, 12))
    assert lint.lint_figure(fig) == []
    assert ax.get_xscale() == "linear" and ax.get_yscale() == "log"


@pytest.mark.parametrize(
    "text",
    [
        r"ratio ≤ 1e-13 (round-off):\n$L_\mathrm{mean}$",
        r"\alpha without dollars",
        r"$L$ and \n outside",
        "odd $ sign \\n",
    ],
)
def test_a_backslash_outside_math_is_found(text: str) -> None:
    fig, (ax,) = small_figure()
    ax.plot([0, 1], [0, 1])
    ax.set_title(text, fontsize=6)
    assert "escape" in kinds(lint.lint_figure(fig))


def test_backslash_outside_math() -> None:
    assert lint.backslash_outside_math(r"$\mathrm{a}\n$") is None  # inside math: a mathtext command
    assert lint.backslash_outside_math(r"costs \$5") is None
    assert lint.backslash_outside_math("two\nlines") is None  # a real newline
    assert lint.backslash_outside_math(r"a:\n$b$") == r"\n"
    assert lint.backslash_outside_math(r"$a$ \% $b$") == r"\%"
    assert lint.backslash_outside_math(r"one $ \alpha") == r"\a"  # one dollar: not mathtext


def test_a_legend_entry_without_data_is_found() -> None:
    fig, (ax,) = small_figure()
    ax.plot([0, 1], [0, 1], label="drawn")
    ax.plot([], [], label="nothing drawn")
    ax.legend()
    defects = lint.lint_figure(fig)
    assert kinds(defects) == ["empty_legend_entry"]
    assert "nothing drawn" in defects[0].detail


def test_a_style_key_with_no_line_of_that_style_is_found() -> None:
    """The defect of the Hessian figure: a kappa_100 (dashed) key where only kappa_10 (solid) is drawn."""
    fig, axes = small_figure(2)
    for ax in axes:
        ax.plot([1, 2], [1, 2], color=style.OKABE_ITO["blue"])
    fig.legend(
        handles=[
            Line2D([], [], color="0.3", ls="-", label=r"$\kappa_{10}$"),
            Line2D([], [], color="0.3", ls="--", label=r"$\kappa_{100}$"),
        ],
        loc="outside lower center",
        ncols=2,
    )
    defects = lint.lint_figure(fig)
    assert kinds(defects) == ["empty_legend_entry"]
    assert "kappa_{100}" in defects[0].detail


def test_a_coloured_key_must_match_a_colour_drawn() -> None:
    fig, (ax,) = small_figure()
    ax.plot([1, 2], [1, 2], color=style.OKABE_ITO["blue"])
    ax.axvspan(1.2, 1.4, color="0.9")
    fig.legend(
        handles=[
            Line2D([], [], color=style.OKABE_ITO["vermillion"], label="not drawn"),
            Patch(color="0.5", label="no such band"),
        ],
        loc="outside lower center",
        ncols=2,
    )
    assert kinds(lint.lint_figure(fig)) == ["empty_legend_entry", "empty_legend_entry"]


def test_text_past_the_canvas_is_found() -> None:
    fig, (ax,) = small_figure()
    ax.plot([0, 1], [0, 1])
    fig.text(0.9, 0.5, "a note that does not fit in the figure")
    assert "outside_canvas" in kinds(lint.lint_figure(fig))


def test_overlapping_annotations_are_found() -> None:
    fig, (ax,) = small_figure()
    ax.plot([0, 1], [0, 0])
    ax.text(0.1, 0.6, "first note", transform=ax.transAxes)
    ax.text(0.15, 0.62, "second note", transform=ax.transAxes)
    assert kinds(lint.lint_figure(fig)) == ["text_overlap"]


def test_titles_running_into_each_other_are_found() -> None:
    """The defect of the gradients figure: a run's name over every narrow panel; constrained layout makes room for a
    title's height, not its width."""
    fig, axes = small_figure(3)
    for ax in axes:
        ax.plot([0, 1], [0, 1])
        ax.set_title("Flow matching: transformer")
    assert "text_overlap" in kinds(lint.lint_figure(fig))


def test_a_note_past_its_axes_is_found() -> None:
    fig, axes = small_figure(2)
    for ax in axes:
        ax.plot([0, 1], [0, 0])
    axes[0].text(0.5, 0.8, "a note far too long for its panel", transform=axes[0].transAxes)
    assert "axes_text_spill" in kinds(lint.lint_figure(fig))


def test_a_note_over_the_data_is_found() -> None:
    fig, (ax,) = small_figure()
    ax.plot([0, 0.5, 1], [0, 0.5, 1], marker="o")
    ax.text(0.5, 0.5, "note", transform=ax.transAxes, ha="center", va="center")
    assert kinds(lint.lint_figure(fig)) == ["text_over_data"]


def test_assert_figure_clean_lists_the_defects() -> None:
    fig, (ax,) = small_figure()
    ax.plot([], [], label="empty")
    ax.legend()
    ax.set_title(r"a\nb")
    with pytest.raises(lint.FigureLintError, match=r"made up: 2 figure defect\(s\)") as raised:
        lint.assert_figure_clean(fig, "made up")
    assert sorted(kinds(raised.value.defects)) == ["empty_legend_entry", "escape"]


# --- every figure module on the synthetic study --------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_study(tmp_path_factory) -> Path:
    """The figure tests' synthetic study with every analysis table: decomposition, Hessian, gradients (one run with
    the default study's narrow range of ||theta_perp||^2), efficiency."""
    study = write_study(SyntheticStudy(tmp_path_factory.mktemp("lint"), default_runs()))
    write_hessian(study, "force_field-transformer")
    write_hessian(study, "flow_matching-transformer", kappa_ratio=3, with_stderr=False)
    write_gradients_narrow_norm(study, "flow_matching-transformer")
    write_gradients(study, "force_field-transformer")
    write_gradients(study, "force_field-painn", with_norm=False)
    write_efficiency(
        study,
        {
            "force_field-transformer": 0.01,
            "force_field-painn": 0.2,
            "flow_matching-transformer": 0.01,
            "flow_matching-egnn": 0.05,
        },
    )
    return study.results


def assert_no_defects(defects: list[lint.FigureDefect], context: str) -> None:
    if defects:
        raise lint.FigureLintError(defects, context)


def lint_figure_module(module: str, argv: list[str]) -> list[lint.FigureDefect]:
    try:
        return lint.lint_module(module, argv)
    except ValueError as error:
        if module in OPTIONAL_FIGURES:
            pytest.skip(f"{module} draws nothing from these tables: {error}")
        raise


@pytest.mark.parametrize("module", lint.FIGURE_MODULES)
def test_figure_of_the_synthetic_study_has_no_defect(synthetic_study: Path, tmp_path: Path, module: str) -> None:
    arguments = lint.study_figure_arguments(synthetic_study, tmp_path)
    assert set(arguments) == set(lint.FIGURE_MODULES)
    defects = lint_figure_module(module, arguments[module])
    assert_no_defects(defects, module)


def test_hessian_figure_without_kappa_100_has_no_defect(synthetic_study: Path, tmp_path: Path) -> None:
    """As in the default study, whose Lanczos top_k (20) gives no kappa_100."""
    study = tmp_path / "study"
    shutil.copytree(synthetic_study, study)
    for table in (study / "analysis" / "hessian").glob("*.csv"):
        if table.name.endswith("_density.csv"):
            continue
        with open(table, newline="") as handle:
            reader = csv.DictReader(handle)
            columns, rows = reader.fieldnames, [row for row in reader if row["quantity"] != "kappa_100"]
        with open(table, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    defects = lint.lint_module("hessian_spectra", lint.study_figure_arguments(study, tmp_path)["hessian_spectra"])
    assert_no_defects(defects, "hessian_spectra")


def test_gradient_figure_of_one_run_without_a_parameter_norm_has_no_defect(tmp_path: Path) -> None:
    """Three columns and one row: the colour bar sits under a single panel."""
    study = write_study(SyntheticStudy(tmp_path, default_runs()))
    write_gradients(study, "force_field-transformer", with_norm=False)
    arguments = lint.study_figure_arguments(study.results, tmp_path / "figures")["gradients"]
    assert_no_defects(lint.lint_module("gradients", arguments), "gradients")


def test_cli_fails_on_a_defective_figure(synthetic_study: Path, tmp_path: Path, monkeypatch) -> None:
    """``python -m eqdyn.figures.lint <module> <its arguments>`` and ``... --study DIR`` exit 0 for a clean figure
    and 1 for a defective one."""
    from eqdyn.figures import loss_decomposition

    module_argv = lint.study_figure_arguments(synthetic_study, tmp_path)["loss_decomposition"]
    study_argv = [
        "--study",
        str(synthetic_study),
        "--out-dir",
        str(tmp_path / "figures"),
        "--modules",
        "loss_decomposition",
    ]
    assert lint.main(["loss_decomposition", *module_argv]) == 0
    assert lint.main(study_argv) == 0
    original = loss_decomposition.plot

    def with_literal_newline(table, runs, baselines=None):
        fig = original(table, runs, baselines)
        fig.axes[0].set_title(r"two\nlines")
        return fig

    monkeypatch.setattr(loss_decomposition, "plot", with_literal_newline)
    assert lint.main(["loss_decomposition", *module_argv]) == 1
    assert lint.main(study_argv) == 1


# --- every figure module on a committed bundle of a real study's tables --------------------------------------------


def is_bundle_folder(path: Path) -> bool:
    """A study made group by group: a folder of export bundles (figures/tables/decisive/<group>/), looked for
    one level below a root (the root itself, figures/tables/, holds bundles of different studies)."""
    return path.is_dir() and not (path / "runs").is_dir() and any((p / "runs").is_dir() for p in path.iterdir())


def bundle_studies() -> list[Path]:
    roots = [Path(p) for p in os.environ.get("EQDYN_FIGURE_TABLES", "").split(os.pathsep) if p] + [BUNDLE]
    studies = []
    for root in roots:
        if (root / "runs").is_dir():
            studies.append(root)
        elif root.is_dir():
            studies += sorted(p for p in root.iterdir() if (p / "runs").is_dir() or is_bundle_folder(p))
    return studies


def copy_study(study: Path, destination: Path) -> Path:
    """A copy of a study's tables; a folder of bundles is merged into one results-like tree."""
    if (study / "runs").is_dir():
        shutil.copytree(study, destination)
    else:
        for bundle in sorted(p for p in study.iterdir() if (p / "index.json").exists()):
            shutil.copytree(bundle, destination, dirs_exist_ok=True)
    return destination


def bundle_cases() -> list:
    cases = []
    for study in bundle_studies():
        with tempfile.TemporaryDirectory() as scratch:  # only the file names matter here
            modules = lint.study_figure_arguments(copy_study(study, Path(scratch) / "tables"), Path("unused"))
        cases += [pytest.param(study, module, id=f"{study.name}-{module}") for module in modules]
    if not cases:
        reason = (
            f"no bundle of a study's tables at {BUNDLE.relative_to(REPO)}/ (a copy of results/<study>/ "
            "without checkpoints) or in EQDYN_FIGURE_TABLES"
        )
        cases.append(pytest.param(None, None, id="no-bundle", marks=pytest.mark.skip(reason=reason)))
    return cases


@pytest.mark.parametrize(("study", "module"), bundle_cases())
def test_figure_of_a_bundled_study_has_no_defect(study: Path, module: str, tmp_path: Path) -> None:
    copy = copy_study(study, tmp_path / "tables")  # drawn from a copy, never beside the committed tables
    defects = lint_figure_module(module, lint.study_figure_arguments(copy, tmp_path / "figures")[module])
    assert_no_defects(defects, f"{study.name}: {module}")


def test_a_marker_key_needs_a_marker_drawn() -> None:
    """A line whose ``markevery`` picks no point draws no marker: a key with that marker stands for nothing."""
    fig, (ax,) = small_figure()
    ax.plot([1, 2, 3], [1, 2, 3], ls="-", marker="s", markevery=[False, False, False])
    fig.legend(handles=[Line2D([], [], color="0.3", ls="-", marker="s", label="converged")], loc="outside lower center")
    assert kinds(lint.lint_figure(fig)) == ["empty_legend_entry"]
    ax.lines[0].set_markevery([True, False, False])
    assert lint.lint_figure(fig) == []
