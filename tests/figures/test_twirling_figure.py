"""Figure 7 (test-time twirling) from constructed tables: written through its CLI, and free of the defects a reader
would see (overlapping text, stray backslashes, legend entries without a curve)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from figures_testing import SyntheticStudy, default_runs, write_efficiency, write_study

from eqdyn.figures import lint, style, twirling, twirling_remedy
from eqdyn.figures.tables import read_decomposition, read_runs

PAIRS = {
    "flow_matching-transformer": "flow_matching-egnn",
    "force_field-transformer": "force_field-painn",
    "voxel_denoising-unet3d": "voxel_denoising-octahedral_unet",
}


@pytest.fixture
def study(tmp_path: Path) -> SyntheticStudy:
    study = SyntheticStudy(tmp_path, default_runs())
    study.steps = [0, 10, 100, 1000, 3000]
    return write_study(study)


def add_check_rows(study: SyntheticStudy) -> list[Path]:
    """The decomposition tables with twirled_loss_minus_predicted rows (and twirling rows for the voxel runs)."""
    paths = []
    rng = np.random.default_rng(1)
    for run in study.runs:
        table = pd.read_csv(study.decomposition(run))
        predicted = table[table["quantity"] == "twirled_loss_predicted"]
        if run.task == "voxel_denoising" and run.equivariance == "none":
            total = table.loc[table["quantity"] == "total"].set_index("step")["value"]
            predicted = pd.DataFrame(
                [
                    {
                        "run": run.name,
                        "step": s,
                        "part": "all",
                        "t_bin": "all",
                        "quantity": "twirled_loss_predicted",
                        "k": k,
                        "value": v * (1 + 0.1 / k),
                        "stderr": 0.01,
                        "n": 64,
                    }
                    for s, v in total.items()
                    for k in (1, 2, 4, 8, 16)
                ]
            )
            table = pd.concat([table, predicted], ignore_index=True)
        check = predicted.assign(
            quantity="twirled_loss_minus_predicted",
            value=rng.normal(0, 1e-3, len(predicted)) * predicted["value"],
            stderr=1e-3 * predicted["value"],
        )
        path = study.results / "checked" / f"{run.name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.concat([table, check], ignore_index=True).to_csv(path, index=False)
        paths.append(path)
    return paths


def write_examples(study: SyntheticStudy, n: int = 50) -> list[Path]:
    rng = np.random.default_rng(2)
    ids = np.arange(n)
    difficulty = rng.normal(0, 0.3, n)
    paths = []
    for augmented, equivariant in PAIRS.items():
        for name, level in ((augmented, 1.0), (equivariant, 1.1)):
            frames = []
            for step in study.steps:
                scale = level * (1 + 3 / (1 + step / 100))
                row = {
                    "run": name,
                    "step": step,
                    "example_id": ids,
                    "total": scale + 0.4 + difficulty + rng.normal(0, 0.02, n),
                }
                if name == augmented:
                    row |= {f"twirled_{k}": scale + 0.4 / k + difficulty + rng.normal(0, 0.02, n) for k in (1, 2, 4, 8)}
                frames.append(pd.DataFrame(row))
            path = study.results / "examples" / f"{name}_examples.csv.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            pd.concat(frames).to_csv(path, index=False)
            paths.append(path)
    return paths


def efficiency_table(study: SyntheticStudy) -> Path:
    seconds = {name: 0.01 for pair in PAIRS.items() for name in pair}
    path = write_efficiency(study, seconds)
    table = pd.read_csv(path)
    table["forward_seconds_per_example"] = 1e-4
    table["forward_seconds_per_example_stderr"] = 1e-6
    table.to_csv(path, index=False)
    return path


def cli_args(study: SyntheticStudy, decomposition: list[Path]) -> list[str]:
    return [
        "--decomposition",
        *map(str, decomposition),
        "--runs",
        *map(str, study.run_files()),
        "--manifests",
        *map(str, study.manifest_files()),
    ]


def test_remedy_and_code_check_figure_is_written_without_defects(study: SyntheticStudy, tmp_path: Path) -> None:
    decomposition = add_check_rows(study)
    out = tmp_path / "twirling.png"
    args = [
        *cli_args(study, decomposition),
        "--efficiency",
        str(efficiency_table(study)),
        "--examples",
        *map(str, write_examples(study)),
        "--out",
        str(out),
    ]
    assert lint.lint_module("twirling", args) == []
    png, pdf = style.output_paths(out)
    assert png.stat().st_size > 5_000 and pdf.stat().st_size > 2_000


def test_figure_without_timings_shows_the_code_check_only(study: SyntheticStudy, tmp_path: Path) -> None:
    decomposition = add_check_rows(study)
    runs = read_runs(study.run_files(), study.manifest_files())
    fig = twirling.plot(read_decomposition(decomposition), runs)
    lint.assert_figure_clean(fig, "twirling without timings")
    assert len(fig.axes) == 3  # one row: the remedy needs timings and per-example tables
    assert lint.lint_module("twirling", [*cli_args(study, decomposition), "--out", str(tmp_path / "t.png")]) == []


def test_a_task_without_a_timed_pair_says_so(study: SyntheticStudy) -> None:
    decomposition = add_check_rows(study)
    runs = read_runs(study.run_files(), study.manifest_files())
    examples = twirling_remedy.read_example_tables(write_examples(study))
    examples = examples[~examples["run"].str.startswith("voxel")]
    fig = twirling.plot(read_decomposition(decomposition), runs, pd.read_csv(efficiency_table(study)), examples)
    lint.assert_figure_clean(fig, "twirling without a voxel pair")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("no timed\nequivariant pair") == 2  # the voxel column's two remedy panels


def test_figure_refuses_tables_with_nothing_to_draw(study: SyntheticStudy) -> None:
    runs = read_runs(study.run_files(), study.manifest_files())
    table = read_decomposition(study.decomposition_files())
    with pytest.raises(ValueError, match="no augmented base run has twirling rows"):
        twirling.plot(table[~table["quantity"].str.startswith("twirled")], runs)


def test_code_check_keys_are_one_per_colour_and_name_every_family(study: SyntheticStudy) -> None:
    # the default runs' augmented transformers and voxel U-Net share the augmented colour: one key names both
    decomposition = add_check_rows(study)
    runs = read_runs(study.run_files(), study.manifest_files())
    fig = twirling.plot(read_decomposition(decomposition), runs)
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    checks = [label for label in labels if label.startswith("code check")]
    colours = [style.family_colour(family) for family in ("transformer", "unet3d")]
    assert colours[0] == colours[1]
    assert checks == ["code check: transformer, unet3d"]
    drawn = {runs[c.run].family for c in twirling_remedy.unit_checks(read_decomposition(decomposition), runs)}
    assert drawn == {"transformer", "unet3d"}
