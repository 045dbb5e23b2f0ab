"""Fixtures of the data-stage tests: a resolved data config as the pipeline writes it (configs/data.json), and the
data stage itself, run in-process module by module as the Snakemake rules run it (seconds, not a workflow)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from eqdyn.config import deep_merge, validate_config
from eqdyn.data import acquire, conformers, datasets, labels

REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout these tests run in


@pytest.fixture(scope="session")
def default_data_config() -> dict[str, Any]:
    resolved = validate_config({"data": {}})
    return {"seed": resolved["seed"], **resolved["data"]}


@pytest.fixture
def data_config(default_data_config: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(default_data_config)


def _test_study_config(data_overrides: dict[str, Any]) -> dict[str, Any]:
    """The data stage config of config/test.yaml (merged into config/config.yaml, as Snakemake does) + overrides."""
    raw: dict[str, Any] = {}
    for name in ("config.yaml", "test.yaml"):
        raw = deep_merge(raw, yaml.safe_load((REPO_ROOT / "config" / name).read_text()) or {})
    resolved = validate_config(deep_merge(raw, {"data": data_overrides}), source="config/test.yaml + overrides")
    return {"seed": resolved["seed"], **resolved["data"]}


def run_data_stage(config: dict[str, Any], results: Path) -> Path:
    """Every data-stage CLI in rule order on ``config``; returns ``results`` (laid out like results/<study>)."""
    config_path = results / "configs" / "data.json"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config))
    data, shards = results / "data", results / "data" / "shards"
    molecules, duplicates = data / "molecules.csv", data / "duplicates.csv"
    acquire.main(
        [
            "--config",
            str(config_path),
            "--out",
            str(molecules),
            "--duplicates",
            str(duplicates),
            "--provenance",
            str(data / "provenance" / "acquire.json"),
        ]
    )
    conformer_files, label_files, skipped_files = [], [], []
    for shard in range(config["shards"]):
        conformer_files.append(shards / f"conformers_{shard}.npz")
        label_files.append(shards / f"labels_{shard}.npz")
        skipped_files += [shards / f"skipped_conformers_{shard}.csv", shards / f"skipped_labels_{shard}.csv"]
        conformers.main(
            [
                "--config",
                str(config_path),
                "--molecules",
                str(molecules),
                "--shard",
                str(shard),
                "--out",
                str(conformer_files[-1]),
                "--skipped",
                str(skipped_files[-2]),
                "--provenance",
                str(data / "provenance" / f"conformers_{shard}.json"),
            ]
        )
        labels.main(
            [
                "--config",
                str(config_path),
                "--conformers",
                str(conformer_files[-1]),
                "--out",
                str(label_files[-1]),
                "--skipped",
                str(skipped_files[-1]),
                "--provenance",
                str(data / "provenance" / f"labels_{shard}.json"),
            ]
        )
    datasets.main(
        [
            "--config",
            str(config_path),
            "--molecules",
            str(molecules),
            "--duplicates",
            str(duplicates),
            "--conformers",
            *map(str, conformer_files),
            "--labels",
            *map(str, label_files),
            "--skipped",
            *map(str, skipped_files),
            "--out-dir",
            str(results / "datasets"),
            "--data-dir",
            str(data),
            "--summary-log",
            str(results / "logs" / "data" / "skipped_summary.json"),
        ]
    )
    return results


@pytest.fixture
def data_stage() -> Callable[[dict[str, Any], Path], Path]:
    return run_data_stage


@pytest.fixture
def study_data_config() -> Callable[[dict[str, Any]], dict[str, Any]]:
    return _test_study_config
