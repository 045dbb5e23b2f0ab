"""Per-task datasets: split by molecule, the .npz interface, manifests, config errors, and the Snakemake stage."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from eqdyn.config import ConfigError, validate_config
from eqdyn.data.common import DataConfigError, check_data_config
from eqdyn.data.conformers import process_molecules
from eqdyn.data.datasets import SPLITS, TASKS, build, content_sha256, skipped_summary, split_molecules
from eqdyn.data.labels import label_shard
from eqdyn.testing import copy_workflow, snakemake_executable

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


def test_split_needs_molecules_in_every_split() -> None:
    with pytest.raises(DataConfigError, match=r"data\.split\.val"):
        split_molecules(np.arange(3), {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0)
    split = split_molecules(np.arange(100), {"train": 0.5, "val": 0.25, "test": 0.25}, seed=0)
    assert [len(split[name]) for name in SPLITS] == [50, 25, 25]


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
def test_data_stage_end_to_end_with_snakemake(tmp_path: Path) -> None:
    copy_workflow(tmp_path)  # so the run neither clobbers nor locks the repository's working directory
    command = [snakemake_executable(), "data_datasets", "--cores", "2", "--configfile", "config/test.yaml"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = tmp_path / "results" / "test"
    summary = json.loads((results / "data" / "skipped_summary.json").read_text())
    assert summary["total_attempted"] == 24
    assert summary["total_kept"] + summary["total_skipped"] == 24
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
