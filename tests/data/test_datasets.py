"""Per-task datasets: split by molecule, the .npz interface, manifests, config errors, and the Snakemake stage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from eqdyn.config import ConfigError, validate_config
from eqdyn.data.common import SKIP_REASONS, DataConfigError, check_data_config
from eqdyn.data.conformers import process_molecules
from eqdyn.data.datasets import (
    SPLITS,
    TASKS,
    SplitTooSmall,
    build,
    check_splits,
    content_sha256,
    skipped_summary,
    split_molecules,
)
from eqdyn.data.labels import label_shard
from eqdyn.testing import copy_workflow, snakemake_executable

REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout these tests run in

SMILES = ["CCO", "CC(=O)O", "c1ccccc1", "CCN", "OCCO", "CC#N", "C1CC1", "CCCC", "CC(C)O", "NC=O", "COC", "FC(F)F"]


@pytest.fixture(scope="module")
def shards(default_data_config: dict[str, Any]) -> tuple[dict, pd.DataFrame, list, list]:
    config = json.loads(json.dumps(default_data_config))
    config["voxel"].update(grid_size=13, resolution_angstrom=0.5)  # radius limit 2.25 Å: some molecules drop out
    molecules = pd.DataFrame({"molecule_id": range(len(SMILES)), "smiles": SMILES})
    conformer_shards, label_shards = [], []
    for shard in range(2):
        part = molecules[molecules["molecule_id"] % 2 == shard]
        conformers = process_molecules(part, config, progress_every=None).arrays()
        conformer_shards.append(conformers)
        label_shards.append(label_shard(conformers, config, progress_every=10**9)[0])
    return config, molecules, conformer_shards, label_shards


def test_split_is_by_molecule_and_shared_by_tasks(shards: tuple) -> None:
    config, molecules, conformer_shards, label_shards = shards
    datasets, _ = build(config, molecules, conformer_shards, label_shards)
    seen: dict[str, set[int]] = {}
    for name in SPLITS:
        ids = set(datasets["flow_matching"][name]["molecule_id"].tolist())
        assert ids == set(datasets["force_field"][name]["molecule_id"].tolist())
        assert set(datasets["voxel_denoising"][name]["molecule_id"].tolist()) <= ids
        seen[name] = ids
    assert not seen["train"] & seen["val"] and not seen["train"] & seen["test"] and not seen["val"] & seen["test"]
    assert seen["train"] | seen["val"] | seen["test"] == set(range(len(SMILES)))
    assert [len(seen[name]) for name in SPLITS] == [10, 1, 1]  # round(0.8 * 12), round(0.1 * 12), rest


def test_npz_interface(shards: tuple) -> None:
    config, molecules, conformer_shards, label_shards = shards
    datasets, extras = build(config, molecules, conformer_shards, label_shards)
    for task in TASKS:
        for name in SPLITS:
            arrays = datasets[task][name]
            m, n = arrays["mask"].shape
            assert arrays["positions"].dtype == np.float32 and arrays["positions"].shape == (m, n, 3)
            assert arrays["atomic_numbers"].dtype == np.int64 and arrays["mask"].dtype == bool
            assert np.array_equal(arrays["mask"], arrays["atomic_numbers"] > 0)
            assert arrays["bonds"].dtype == np.int64 and arrays["bonds"].shape[2] == 3
            for key in ("molecule_id", "conformer_id", "example_id"):
                assert arrays[key].dtype == np.int64 and arrays[key].shape == (m,)
            real = arrays["bonds"][..., 0] >= 0
            assert np.all(arrays["bonds"][~real] == -1)
            assert np.all(arrays["bonds"][real][:, 0] < arrays["bonds"][real][:, 1])
            assert set(np.unique(arrays["bonds"][real][:, 2])) <= {1, 2, 3, 4}
            centroid = (arrays["positions"] * arrays["mask"][..., None]).sum(1) / arrays["mask"].sum(1)[:, None]
            assert np.abs(centroid).max(initial=0) < 1e-5
            assert np.all(arrays["positions"][~arrays["mask"]] == 0)
            assert np.all(np.diff(arrays["example_id"]) > 0)
            assert np.array_equal(arrays["example_id"] // 1_000_000, arrays["molecule_id"])
        # Butane with hydrogens (14 atoms) is the largest molecule; it is too big for the voxel grid here.
        assert extras[task]["n_max"] == (12 if task == "voxel_denoising" else 14)
    ff = datasets["force_field"]["train"]
    assert ff["energy"].dtype == np.float64 and ff["energy_reference"].dtype == np.float64
    assert ff["forces"].dtype == np.float32 and np.all(ff["forces"][~ff["mask"]] == 0)
    assert np.all(ff["example_id"] % 1000 >= 1)  # perturbed geometries are 1..G
    assert np.all(datasets["flow_matching"]["train"]["example_id"] % 1000 == 0)
    # Force field positions are the label shard's geometries (centred), forces unchanged by centring.
    assert np.all(ff["energy"] > ff["energy_reference"])


def test_voxel_dataset_keeps_only_molecules_inside_the_inscribed_ball(shards: tuple) -> None:
    config, molecules, conformer_shards, label_shards = shards
    datasets, extras = build(config, molecules, conformer_shards, label_shards)
    fit = extras["voxel_denoising"]["fit"]
    limit = 13 * 0.5 / 2 - 2 * config["voxel"]["atom_sigma_angstrom"]
    assert fit["max_radius_angstrom"] == pytest.approx(limit)
    kept = set()
    for name in SPLITS:
        arrays = datasets["voxel_denoising"][name]
        radius = np.where(arrays["mask"], np.linalg.norm(arrays["positions"], axis=-1), 0).max(1)
        assert np.all(radius <= limit + 1e-5)
        kept |= set(arrays["molecule_id"].tolist())
    flow = np.concatenate([datasets["flow_matching"][name]["molecule_id"] for name in SPLITS])
    assert 0 < fit["molecules_dropped"] == len(set(flow.tolist()) - kept)


def test_content_hash_is_deterministic_and_sensitive(shards: tuple) -> None:
    config, molecules, conformer_shards, label_shards = shards
    first, _ = build(config, molecules, conformer_shards, label_shards)
    second, _ = build(config, molecules, conformer_shards, label_shards)
    arrays = first["force_field"]["train"]
    assert content_sha256(arrays) == content_sha256(second["force_field"]["train"])
    changed = dict(arrays, energy=arrays["energy"] + 1e-9)
    assert content_sha256(changed) != content_sha256(arrays)


def test_split_sizes_follow_the_fractions() -> None:
    split = split_molecules(np.arange(100), {"train": 0.5, "val": 0.25, "test": 0.25}, seed=0)
    assert [len(split[name]) for name in SPLITS] == [50, 25, 25]
    assert len(np.unique(np.concatenate(list(split.values())))) == 100


def constructed_datasets(counts: dict[str, dict[str, int]]) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Per task and split, ``counts`` molecules with one example each (only molecule_id matters to the check)."""
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for task, per_split in counts.items():
        start = 0
        out[task] = {}
        for name in SPLITS:
            out[task][name] = {"molecule_id": np.arange(start, start + per_split[name])}
            start += per_split[name]
    return out


def constructed_summary(attempted: int, skipped: dict[str, int], duplicates: int = 0) -> dict[str, Any]:
    by_reason = {reason: skipped.get(reason, 0) for reason in SKIP_REASONS}
    kept = attempted - sum(by_reason.values())
    return {
        "total_attempted": attempted,
        "total_kept": kept,
        "skipped_by_reason": by_reason,
        "duplicates_removed": duplicates,
    }


def test_split_check_names_task_split_counts_and_the_real_cause(data_config: dict[str, Any]) -> None:
    ok = {"train": 18, "val": 2, "test": 3}
    summary = constructed_summary(400, {"disallowed_element": 300, "too_large": 77})
    skipped = pd.DataFrame(
        {"reason": ["disallowed_element"] * 2 + ["too_large"], "detail": ["Br", "I,S", "31 heavy atoms > 9"]}
    )
    fit = {"molecules_dropped": 22, "max_radius_angstrom": 4.8}
    datasets = constructed_datasets({"flow_matching": ok, "voxel_denoising": {"train": 1, "val": 0, "test": 0}})
    with pytest.raises(SplitTooSmall) as error:
        check_splits(datasets, data_config, summary, skipped, fit)
    message = str(error.value)
    assert "voxel_denoising: the test split has 0 examples, at least 2 needed" in message
    assert "voxel_denoising: the val split has 0 examples" in message
    assert "train 1 molecules/1 examples, val 0 molecules/0 examples, test 0 molecules/0 examples" in message
    assert "flow_matching" not in message  # its splits are fine
    assert "300 disallowed_element (Br, I, S: add them to data.elements" in message
    assert "77 too_large (> data.max_heavy_atoms = 9, up to 31 heavy atoms: raise it)" in message
    assert "22 outside the voxel ball (radius 4.8 Å" in message
    assert "the filters above removed most molecules" in message
    assert "few molecules were lost: raise data.max_molecules" not in message  # the cause is the filters

    # Few losses: now more molecules are the remedy.
    few_lost = constructed_summary(5, {"parse_failed": 1})
    small = constructed_datasets({"flow_matching": {"train": 3, "val": 1, "test": 0}})
    with pytest.raises(SplitTooSmall, match=r"few molecules were lost: raise data\.max_molecules") as error:
        check_splits(small, data_config, few_lost, skipped.iloc[:0], None)
    assert "flow_matching: the test split has 0 examples" in str(error.value)


def test_split_check_passes_big_enough_splits_and_respects_the_settings(data_config: dict[str, Any]) -> None:
    summary = constructed_summary(30, {})
    no_skips = pd.DataFrame({"reason": [], "detail": []})
    check_splits(
        constructed_datasets({"force_field": {"train": 20, "val": 1, "test": 2}}), data_config, summary, no_skips, None
    )
    without_val = constructed_datasets({"force_field": {"train": 20, "val": 0, "test": 2}})
    with pytest.raises(SplitTooSmall, match="the val split has 0 examples"):
        check_splits(without_val, data_config, summary, no_skips, None)
    data_config["split"].update(train=0.9, val=0.0, test=0.1)
    check_splits(without_val, data_config, summary, no_skips, None)  # no val split asked for
    data_config["min_test_examples"] = 3
    with pytest.raises(SplitTooSmall, match=r"test split has 2 examples, at least 3 needed \(data\.min_test"):
        check_splits(without_val, data_config, summary, no_skips, None)
    with pytest.raises(SplitTooSmall, match="the train split has 0 molecules"):
        check_splits(
            constructed_datasets({"force_field": {"train": 0, "val": 0, "test": 5}}),
            data_config,
            summary,
            no_skips,
            None,
        )


def test_drug_like_molecules_emptied_by_the_voxel_filter_stop_the_data_stage(
    tmp_path: Path,
    data_stage: Callable[[dict[str, Any], Path], Path],
    study_data_config: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """Issue case 1: WEHI drug-like molecules, up to 30 heavy atoms, S and Cl allowed, the test study's voxel grid."""
    config = study_data_config(
        {"source": "wehi", "max_heavy_atoms": 30, "elements": ["H", "C", "N", "O", "F", "S", "Cl"]}
    )
    results = tmp_path / "results"
    with pytest.raises(SystemExit) as error:
        data_stage(config, results)
    message = str(error.value)
    assert "voxel_denoising: the test split has 0 examples" in message
    assert "outside the voxel ball" in message and "disallowed_element" in message
    assert "raise data.voxel.grid_size" in message and "the filters above removed most molecules" in message
    # The summary survives: written before the check, and kept in the log folder (Snakemake keeps logs of failed jobs).
    kept_copy = json.loads((results / "logs" / "data" / "skipped_summary.json").read_text())
    assert kept_copy["total_attempted"] == 24 and kept_copy["skipped_by_reason"]["disallowed_element"] > 0
    assert not (results / "datasets" / "voxel_denoising" / "test.npz").exists()  # nothing half-written


def test_skipped_bookkeeping_must_add_up() -> None:
    shard = {
        "molecules_attempted": np.int64(5),
        "conformers_not_converged": np.int64(0),
        "conformers_not_embedded": np.int64(1),
    }
    skipped = pd.DataFrame({"molecule_id": [1], "smiles": ["X"], "reason": ["parse_failed"], "detail": [""]})
    summary = skipped_summary([shard], skipped, kept=4, molecules=5)
    assert summary["skipped_by_reason"]["parse_failed"] == 1 and summary["total_kept"] == 4
    with pytest.raises(RuntimeError, match="does not add up"):
        skipped_summary([shard], skipped, kept=3, molecules=5)


def test_wrong_data_key_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"data: Additional properties .*'max_molecule' was unexpected"):
        validate_config({"data": {"max_molecule": 10}})
    with pytest.raises(ConfigError, match=r"data\.force_field\.perturbation_angstrom"):
        validate_config({"data": {"force_field": {"perturbation_angstrom": -1}}})
    resolved = validate_config({"data": {"split": {"train": 0.5}}})
    with pytest.raises(DataConfigError, match=r"data\.split"):
        check_data_config({"seed": 0, **resolved["data"]})


@pytest.mark.slow
@pytest.mark.parametrize("source", ["qm9", "smiles_file"])
def test_data_stage_end_to_end_with_snakemake(tmp_path: Path, source: str) -> None:
    copy_workflow(tmp_path)  # so the run neither clobbers nor locks the repository's working directory
    command = [snakemake_executable(), "data_datasets", "--cores", "2", "--configfile", "config/test.yaml"]
    attempted = 24
    if source == "smiles_file":  # the test study on the SMILES file shipped in tests/
        (tmp_path / "tests" / "data").mkdir(parents=True)
        shutil.copy(REPO_ROOT / "tests" / "data" / "molecules.smi", tmp_path / "tests" / "data")
        override = {"data": {"source": {"smiles_file": "tests/data/molecules.smi"}, "max_molecules": 100}}
        (tmp_path / "mine.yaml").write_text(json.dumps(override))
        command.append("mine.yaml")
        attempted = 33
    environment = {**os.environ, "PYTHONPATH": str(tmp_path / "src")}  # jobs must import the copy's code
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = tmp_path / "results" / "test"
    summary = json.loads((results / "data" / "skipped_summary.json").read_text())
    assert summary["total_attempted"] == attempted
    assert summary["total_kept"] + summary["total_skipped"] == attempted
    assert summary["duplicates_removed"] == (1 if source == "smiles_file" else 0)
    for task in TASKS:
        manifest = json.loads((results / "datasets" / task / "manifest.json").read_text())
        for name in SPLITS:
            path = results / "datasets" / task / f"{name}.npz"
            with np.load(path) as handle:
                assert handle["mask"].shape[0] == manifest["counts"][name]["examples"]
            assert manifest["files"][name]["file_sha256"]
    provenance = json.loads((results / "datasets" / "provenance.json").read_text())
    assert {"git_commit", "config", "packages_sha256", "upstream"} <= set(provenance)
    assert "acquire.json" in provenance["upstream"]
