"""Every figure module, through its CLI, on synthetic tables in the analyses' formats: PDF and PNG are written and
non-empty, and the table readers pick the series the figures promise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from figures_testing import (
    SyntheticStudy,
    default_runs,
    write_efficiency,
    write_gradients,
    write_hessian,
    write_study,
)

from eqdyn.figures import (
    efficiency,
    equiv_percent,
    gradients,
    hessian_spectra,
    loss_decomposition,
    robustness,
    style,
    tables,
    twirling,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def study(tmp_path: Path) -> SyntheticStudy:
    return write_study(SyntheticStudy(tmp_path, default_runs()))


def common_args(study: SyntheticStudy) -> list[str]:
    return [
        "--decomposition",
        *map(str, study.decomposition_files()),
        "--runs",
        *map(str, study.run_files()),
        "--manifests",
        *map(str, study.manifest_files()),
    ]


def assert_figure(out: Path) -> None:
    png, pdf = style.output_paths(out)
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2_000


@pytest.mark.parametrize("module", [equiv_percent, loss_decomposition, robustness, twirling])
def test_decomposition_figures(study: SyntheticStudy, tmp_path: Path, module) -> None:
    out = tmp_path / "figures" / f"{module.__name__.rsplit('.', 1)[-1]}.png"
    assert module.main([*common_args(study), "--out", str(out)]) == 0
    assert_figure(out)


def test_loss_figure_marks_each_tasks_constant_model(study: SyntheticStudy, tmp_path: Path) -> None:
    tasks = sorted({run.task for run in study.runs})
    values = {task: 0.5 + index for index, task in enumerate(tasks)}
    baseline = tmp_path / "baseline.csv"
    pd.DataFrame({"task": tasks, "part": "all", "value": [values[t] for t in tasks]}).to_csv(baseline, index=False)
    table = tables.read_decomposition(study.decomposition_files())
    fig = loss_decomposition.plot(
        table, tables.read_runs(study.run_files(), study.manifest_files()), tables.read_csvs([baseline])
    )
    drawn = {
        ax.get_title().split(":")[0]: line.get_ydata()[0]
        for ax in fig.axes
        for line in ax.get_lines()
        if line.get_label() == loss_decomposition.CONSTANT_LABEL
    }
    assert drawn == {style.task_title(task): values[task] for task in tasks}
    assert loss_decomposition.CONSTANT_LABEL in [text.get_text() for text in fig.legends[0].get_texts()]
    out = tmp_path / "loss.png"
    assert loss_decomposition.main([*common_args(study), "--baselines", str(baseline), "--out", str(out)]) == 0
    assert_figure(out)


def test_hessian_figure(study: SyntheticStudy, tmp_path: Path) -> None:
    table, density = write_hessian(study, "force_field-transformer")
    table2, density2 = write_hessian(study, "flow_matching-transformer", kappa_ratio=3, with_stderr=False)
    out = tmp_path / "hessian_spectra.png"
    args = [
        "--hessian",
        str(table),
        str(table2),
        "--density",
        str(density),
        str(density2),
        "--runs",
        *map(str, study.run_files()),
        "--out",
        str(out),
    ]
    assert hessian_spectra.main(args) == 0
    assert_figure(out)


def test_efficiency_figure(study: SyntheticStudy, tmp_path: Path) -> None:
    path = write_efficiency(
        study,
        {
            "force_field-transformer": 0.01,
            "force_field-painn": 0.2,
            "flow_matching-transformer": 0.01,
            "flow_matching-egnn": 0.05,
        },
    )
    out = tmp_path / "efficiency.pdf"  # either suffix: both files are written
    assert efficiency.main(["--efficiency", str(path), *common_args(study), "--out", str(out)]) == 0
    assert_figure(out)


def test_efficiency_refuses_to_mix_cpu_and_gpu_hours() -> None:
    assert efficiency.compute_unit(pd.Series(["cpu", "cpu"])) == "core-hours"
    assert efficiency.compute_unit(pd.Series(["NVIDIA H100 80GB HBM3"])) == "GPU-hours"
    with pytest.raises(ValueError, match="mixes CPU and GPU"):
        efficiency.compute_unit(pd.Series(["cpu", "NVIDIA H100 80GB HBM3"]))


def test_core_hours_follow_steps_seconds_and_threads(study: SyntheticStudy) -> None:
    path = write_efficiency(study, {"force_field-transformer": 0.5})
    table = pd.read_csv(path)
    assert efficiency.hours(table, "force_field-transformer", np.array([3600]))[0] == pytest.approx(0.5 * 2)


@pytest.mark.parametrize("with_norm", [True, False])
def test_gradient_figure(study: SyntheticStudy, tmp_path: Path, with_norm: bool) -> None:
    paths = [
        write_gradients(study, "force_field-transformer", with_norm=with_norm),
        write_gradients(study, "force_field-painn", with_norm=False),
    ]
    out = tmp_path / "gradients.png"
    assert gradients.main(["--gradients", *map(str, paths), *common_args(study), "--out", str(out)]) == 0
    assert_figure(out)


def test_decomposition_reader_takes_part_all_or_the_only_part(study: SyntheticStudy) -> None:
    table = tables.read_decomposition(study.decomposition_files())
    # flow matching has one part ("velocity") for the decomposition and "all" for the twirled rows
    flow = table[table["run"] == "flow_matching-transformer"]
    assert set(flow.loc[flow["quantity"] == "total", "part"]) == {"velocity"}
    assert set(flow.loc[flow["quantity"] == "twirled_loss", "part"]) == {"all"}
    extra = pd.read_csv(study.decomposition_files()[2])
    extra["part"] = "forces"
    extra.to_csv(study.results / "forces.csv", index=False)
    both = tables.read_decomposition([study.decomposition_files()[2], study.results / "forces.csv"])
    assert set(both["part"]) == {"all"}


def test_seed_aggregation_band() -> None:
    a = pd.DataFrame({"step": [0, 10], "value": [4.0, 2.0], "stderr": [0.5, 0.5]})
    b = pd.DataFrame({"step": [0, 10], "value": [6.0, 1.0], "stderr": [0.5, 0.5]})
    one = tables.aggregate_seeds([a])
    assert one["high"].tolist() == pytest.approx([4 + tables.Z95 * 0.5, 2 + tables.Z95 * 0.5])
    two = tables.aggregate_seeds([a, b])
    assert two["value"].tolist() == [5.0, 1.5]
    assert two["low"].tolist() == [4.0, 1.0] and two["high"].tolist() == [6.0, 2.0]


def test_output_paths_are_png_and_pdf_beside_each_other(tmp_path: Path) -> None:
    assert style.output_paths(tmp_path / "a.png") == (tmp_path / "a.png", tmp_path / "a.pdf")
    assert style.output_paths(tmp_path / "a") == (tmp_path / "a.png", tmp_path / "a.pdf")


def test_robustness_figure_marks_runs_that_never_learned(tmp_path: Path) -> None:
    """A sweep run on the constant model's plateau (L_total above 0.75x its loss at every checkpoint) is dashed,
    labelled "not learned" and keyed; runs that learned are not, and without such a run there is no key."""
    runs = default_runs()
    plateau = next(r for r in runs if r.name == "force_field-transformer--optimizer-sgd")
    plateau.loss_scale = 10.0  # L_total >= 10 everywhere, against a constant model at 2.0
    study = write_study(SyntheticStudy(tmp_path, runs))
    table = tables.read_decomposition(study.decomposition_files())
    run_info = tables.read_runs(study.run_files(), study.manifest_files())
    baseline = pd.DataFrame({"task": ["flow_matching", "force_field"], "part": "all", "value": [2.0, 2.0]})
    fig = robustness.plot(table, run_info, baseline)
    labels = {
        line.get_label(): line for ax in fig.axes for line in ax.get_lines() if not line.get_label().startswith("_")
    }
    not_learned = [label for label in labels if label.endswith(f"({robustness.NOT_LEARNED})")]
    assert not_learned == ["sgd (not learned)"]
    assert labels["sgd (not learned)"].get_linestyle() == "--"
    assert labels["base: adam"].get_linestyle() == "-"
    keys = [text.get_text() for text in fig.legends[0].get_texts()]
    assert any(key.startswith(robustness.NOT_LEARNED) for key in keys)
    # the figure lint's reading: every key names a drawn curve, nothing clipped
    lint_study = write_study(SyntheticStudy(tmp_path / "learned", default_runs()))
    learned_fig = robustness.plot(
        tables.read_decomposition(lint_study.decomposition_files()),
        tables.read_runs(lint_study.run_files(), lint_study.manifest_files()),
        pd.DataFrame({"task": ["flow_matching", "force_field"], "part": "all", "value": [2.0, 2.0]}),
    )
    assert not any(
        line.get_label().endswith(f"({robustness.NOT_LEARNED})") for ax in learned_fig.axes for line in ax.get_lines()
    )
    out = tmp_path / "robustness.png"
    baseline_file = tmp_path / "baseline.csv"
    baseline.to_csv(baseline_file, index=False)
    assert robustness.main([*common_args(study), "--baselines", str(baseline_file), "--out", str(out)]) == 0
    assert_figure(out)


def test_equiv_percent_figure_marks_a_run_that_never_learned(tmp_path: Path) -> None:
    """An augmented base run on the constant model's plateau in every seed is dashed, labelled "not learned" and
    keyed; with every run learned (after its first checkpoints, which stay open markers) there is no such label."""
    runs = default_runs()
    for run in runs:
        if run.name.startswith("force_field-transformer") and (run.sweep or {}).get("factor") in (None, "seed"):
            run.loss_scale = 10.0  # L_total >= 10 everywhere, against a constant model at 2.0
    study = write_study(SyntheticStudy(tmp_path, runs))
    baseline = pd.DataFrame({"task": ["flow_matching", "force_field"], "part": "all", "value": [2.0, 2.0]})
    fig = equiv_percent.plot(
        tables.read_decomposition(study.decomposition_files()),
        tables.read_runs(study.run_files(), study.manifest_files()),
        baseline,
    )
    drawn = [line for ax in fig.axes for line in ax.get_lines() if not line.get_label().startswith("_")]
    never = [line for line in drawn if equiv_percent.NOT_LEARNED in line.get_label()]
    assert [line.get_label().split(",")[0] for line in never] == ["transformer"]
    assert never[0].get_linestyle() == "--" and never[0] in fig.axes[1].get_lines()  # the force-field panel
    assert all(line.get_linestyle() == "-" for line in drawn if line not in never and line.get_marker() == "o")
    assert any(text.get_text().startswith(equiv_percent.NOT_LEARNED) for text in fig.legends[0].get_texts())
    learned = write_study(SyntheticStudy(tmp_path / "learned", default_runs()))
    learned_fig = equiv_percent.plot(
        tables.read_decomposition(learned.decomposition_files()),
        tables.read_runs(learned.run_files(), learned.manifest_files()),
        baseline,
    )
    assert not any(equiv_percent.NOT_LEARNED in line.get_label() for ax in learned_fig.axes for line in ax.get_lines())
    out = tmp_path / "equiv_percent.png"
    baseline_file = tmp_path / "baseline.csv"
    baseline.to_csv(baseline_file, index=False)
    assert equiv_percent.main([*common_args(study), "--baselines", str(baseline_file), "--out", str(out)]) == 0
    assert_figure(out)
