"""The benchmark CLI runs every family on a tiny synthetic batch and prints its table and per-task ratios."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eqdyn.models import MODEL_FAMILIES
from eqdyn.models.benchmark import main


def test_benchmark_prints_a_row_per_family_and_a_ratio_per_equivariant_family(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "rows.json"
    arguments = "--batch 2 --atoms 4 --voxel-batch 1 --voxel-size 4 --ladder xs --warmup 0 --steps 1"
    main([*arguments.split(), "--output", str(output)])
    printed = capsys.readouterr().out
    rows = json.loads(output.read_text())
    assert {(r["task"], r["family"]) for r in rows} == {(t, f) for t, f, _ in MODEL_FAMILIES}
    assert any(r["family"] == "transformer" and r["size"] == "xs" for r in rows)
    assert all(r["ms_per_step"] > 0 and r["parameters"] > 0 for r in rows)
    for task, family, equivariance in MODEL_FAMILIES:
        assert f"| {task} | {family} |" in printed
        if equivariance != "none":
            assert f"| {task} | {family} ({equivariance}) |" in printed
