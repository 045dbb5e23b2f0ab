"""``python -m eqdyn.decompose``: the README's example runs as written, models come from module:callable with or
without the task, weights from a state_dict or a checkpoint, data from a split file or the shipped example set."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from eqdyn import decompose
from eqdyn.checkpoints import save_checkpoint
from eqdyn.decomposition import SUMMARY_COLUMNS
from eqdyn.examples import EXAMPLE_TASKS, example_split
from eqdyn.examples.models import build
from eqdyn.molecules import MoleculeDataset
from eqdyn.tasks import KeyedNoise, build_task
from eqdyn.testing import synthetic_dataset

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(marker: str, language: str) -> str:
    """The first fenced ``language`` block after the HTML comment that starts with ``marker``."""
    text = README.read_text()
    match = re.search(rf"<!-- {re.escape(marker)}.*?-->\s*```{language}\n(.*?)```", text, flags=re.DOTALL)
    assert match, f"README.md has no {language} block after <!-- {marker} ... -->"
    return match.group(1)


def test_the_readme_command_runs_as_written(tmp_path: Path) -> None:
    command = shlex.split(readme_block("decompose-example", "bash").strip())
    assert command[:3] == ["python", "-m", "eqdyn.decompose"], command
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, *command[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / command[command.index("--out") + 1]
    table = pd.read_csv(out)
    assert tuple(table.columns) == SUMMARY_COLUMNS
    assert "equiv_percent" in done.stdout and "equiv_percent" in set(table["quantity"])
    assert table["n"].max() == len(MoleculeDataset.load(example_split("flow_matching")))


def test_the_readme_python_block_runs(capsys: pytest.CaptureFixture[str]) -> None:
    namespace = {"my_model": build(build_task("flow_matching"))}
    exec(readme_block("decompose-python", "python"), namespace)
    assert "velocity" in capsys.readouterr().out
    summary = namespace["result"].summary()
    assert list(summary.columns) == list(SUMMARY_COLUMNS) and "equiv_percent" in set(summary["quantity"])


@pytest.mark.parametrize("task", EXAMPLE_TASKS)
def test_the_example_set_is_a_valid_split_of_each_task(task: str) -> None:
    dataset = MoleculeDataset.load(example_split(task))
    assert 20 <= len(dataset) <= 100
    numbers = set(dataset.atomic_numbers.unique().tolist()) - {0}
    assert numbers <= {1, 6, 7, 8, 9} and 1 in numbers  # QM9's elements, explicit hydrogens
    task_object = build_task(task)
    example = task_object.make_example(dataset.batch(range(4)), KeyedNoise(0))
    assert len(example.example_id) == 4
    total = sum(example_split(name).stat().st_size for name in EXAMPLE_TASKS)
    assert total < 200_000


def run_cli(tmp_path: Path, name: str, *extra: str) -> pd.DataFrame:
    out = tmp_path / f"{name}.csv"
    argv = [
        "--task",
        "flow_matching",
        "--data",
        "example",
        "--max-examples",
        "4",
        "--rotations",
        "4",
        "--threads",
        "1",
        "--out",
        str(out),
        *extra,
    ]
    assert decompose.main(argv) == 0
    return pd.read_csv(out)


def test_weights_from_a_state_dict_or_a_checkpoint_give_the_same_table(tmp_path: Path) -> None:
    model = build(build_task("flow_matching"))
    torch.manual_seed(5)
    for parameter in model.parameters():  # weights unlike the factory's fresh ones
        parameter.data.normal_(0, 0.1)
    torch.save(model.state_dict(), tmp_path / "state_dict.pt")
    save_checkpoint(tmp_path / "checkpoint.pt", 7, model.state_dict(), "mine")
    spec = ["--model", "eqdyn.examples.models:build"]
    fresh = run_cli(tmp_path, "fresh", *spec)
    plain = run_cli(tmp_path, "plain", *spec, "--checkpoint", str(tmp_path / "state_dict.pt"))
    ours = run_cli(tmp_path, "ours", *spec, "--checkpoint", str(tmp_path / "checkpoint.pt"))
    pd.testing.assert_frame_equal(plain, ours)
    assert not fresh["value"].equals(plain["value"])  # the weights were loaded


def test_models_from_factories_with_or_without_the_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "user_models.py").write_text(
        "from eqdyn.examples.models import build as build_for\n"
        "from eqdyn.tasks import build_task\n"
        "def no_arguments():\n    return build_for(build_task('flow_matching'))\n"
        "def not_a_module(task):\n    return 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with_task = run_cli(tmp_path, "with_task", "--model", "eqdyn.examples.models:build")
    without = run_cli(tmp_path, "without", "--model", "user_models:no_arguments")
    pd.testing.assert_frame_equal(with_task, without)  # same seeded model either way
    with pytest.raises(TypeError, match=r"not a torch\.nn\.Module"):
        run_cli(tmp_path, "bad", "--model", "user_models:not_a_module")
    with pytest.raises(ValueError, match="module:callable"):
        run_cli(tmp_path, "bad", "--model", "user_models")
    with pytest.raises(ValueError, match="no attribute"):
        run_cli(tmp_path, "bad", "--model", "user_models:missing")


def test_a_split_file_and_twirling(tmp_path: Path) -> None:
    split = synthetic_dataset(tmp_path / "test.npz", molecules=3)
    out = tmp_path / "table.csv"
    assert (
        decompose.main(
            [
                "--task",
                "force_field",
                "--model",
                "eqdyn.examples.models:build",
                "--data",
                str(split),
                "--rotations",
                "3",
                "--twirl-rotations",
                "2",
                "--out",
                str(out),
                "--examples-out",
                str(tmp_path / "examples.csv"),
                "--threads",
                "1",
            ]
        )
        == 0
    )
    table = pd.read_csv(out)
    assert {"energy", "forces", "all"} == set(table["part"])
    assert sorted(table["k"].dropna().astype(int).unique()) == [1, 2]
    examples = pd.read_csv(tmp_path / "examples.csv")
    assert list(examples.columns) == ["example_id", "total", "twirled_1", "twirled_2"] and len(examples) == 6
