"""Download -> verify -> extract -> parse -> datasets for rMD17, SPICE and GEOM, against a loopback server.

Each provider's file is a small fixture in its exact layout (tests/data/dft_fixtures.py), served on 127.0.0.1;
the registry entry is pointed at it, with the fixture's digest as the published one. The data-stage CLIs run
in-process in rule order, as the Snakemake rules run them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dft_fixtures import (
    SPICE_MOLECULES,
    TEST_FRAMES,
    TRAIN_FRAMES,
    write_geom_archive,
    write_rmd17_archive,
    write_spice_file,
)
from test_download import Server

from eqdyn.config import validate_config
from eqdyn.data import acquire, conformers, datasets, dft_labels, download, geom_conformers, labels
from eqdyn.data.dft_labels import fit_element_references, reference_energies
from eqdyn.data.rmd17 import RMD17_SMILES
from eqdyn.testing import copy_workflow, snakemake_executable

GEOM_SMILES = ["CCO", "CCN", "CC(C)O", "c1ccccc1O", "CC(=O)N", "OCCO", "CC=O", "CCCC", "NCCO", "COC", "CC(=O)O"]


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server()
    yield server
    server.close()


def serve(server: Server, monkeypatch: pytest.MonkeyPatch, source: str, data: bytes, digest: bytes | None = None):
    """Serve ``data`` as the source's file and pin the registry to it (published md5 of ``digest``, else of data)."""
    registry = copy.deepcopy(download.load_registry())
    (entry,) = registry["sources"][source]["files"]
    entry.update(
        url=f"{server.url}/{entry['filename']}",
        algorithm="md5",
        checksum_provenance="published",
        checksum=hashlib.md5(digest if digest is not None else data).hexdigest(),
        bytes=len(data),
    )
    server.files[f"/{entry['filename']}"] = data
    monkeypatch.setattr(download, "load_registry", lambda: registry)


def stage_config(study_data_config: Any, tmp_path: Path, **overrides: Any) -> Path:
    config = study_data_config({"download_dir": str(tmp_path / "downloads"), **overrides})
    path = tmp_path / "results" / "configs" / "data.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return path


def run_stage(config_path: Path, results: Path, extra_step: str | None = None) -> Path:
    """acquire -> conformers/labels per shard -> (dft_labels | geom_conformers) -> datasets, as the rules do."""
    config = json.loads(config_path.read_text())
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
    external: list[str] = []
    if extra_step == "dft":
        dft_labels.main(
            [
                "--config",
                str(config_path),
                "--molecules",
                str(molecules),
                "--out",
                str(data / "dft_labels.npz"),
                "--summary",
                str(data / "dft_labels.json"),
            ]
        )
        external = ["--dft-labels", str(data / "dft_labels.npz")]
    if extra_step == "geom":
        geom_conformers.main(
            [
                "--config",
                str(config_path),
                "--molecules",
                str(molecules),
                "--out",
                str(data / "geom_conformers.npz"),
                "--summary",
                str(data / "geom_conformers.json"),
            ]
        )
        external = ["--geom-conformers", str(data / "geom_conformers.npz")]
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
            *external,
        ]
    )
    return results


def load(results: Path, task: str, split: str) -> dict[str, np.ndarray]:
    with np.load(results / "datasets" / task / f"{split}.npz") as handle:
        return {key: handle[key] for key in handle.files}


@pytest.fixture
def rmd17_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("fixture") / "rmd17.tar.bz2"
    write_rmd17_archive(path)
    return path.read_bytes()


def test_rmd17_end_to_end_keeps_the_official_split(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, study_data_config: Any, rmd17_bytes: bytes
) -> None:
    serve(server, monkeypatch, "rmd17_download", rmd17_bytes)
    # 14 heavy atoms for azobenzene; two conformers so that one test molecule gives flow matching two examples.
    config_path = stage_config(
        study_data_config, tmp_path, source="rmd17_download", max_heavy_atoms=14, conformers_per_molecule=2
    )
    results = run_stage(config_path, tmp_path / "results", extra_step="dft")
    summary = json.loads((results / "data" / "dft_labels.json").read_text())
    assert summary["molecules_kept"] == 10 and summary["molecules_skipped_by_reason"] == {}
    splits = {name: load(results, "force_field", name) for name in ("train", "val", "test")}
    assert sorted(set(splits["test"]["conformer_id"])) == TEST_FRAMES
    assert set(splits["train"]["conformer_id"]) | set(splits["val"]["conformer_id"]) <= set(TRAIN_FRAMES)
    assert len(splits["test"]["energy"]) == 10 * len(TEST_FRAMES)
    assert len(splits["train"]["energy"]) + len(splits["val"]["energy"]) == 10 * len(TRAIN_FRAMES)
    assert len(np.unique(splits["test"]["molecule_id"])) == 10  # every molecule in every split (rMD17's protocol)
    train = splits["train"]
    assert train["positions"].dtype == np.float32 and train["forces"].dtype == np.float32
    centroid = (train["positions"] * train["mask"][..., None]).sum(1) / train["mask"].sum(1, keepdims=True)
    np.testing.assert_allclose(centroid, 0.0, atol=1e-4)
    expected = reference_energies(
        train["atomic_numbers"], fit_element_references(train["atomic_numbers"], train["energy"])
    )
    np.testing.assert_allclose(train["energy_reference"], expected)
    manifest = json.loads((results / "datasets" / "force_field" / "manifest.json").read_text())
    assert manifest["labels"]["labeler"].startswith("PBE/def2-SVP")
    assert set(manifest["labels"]["element_references_kcal_per_mol"]) == {"H", "C", "N", "O"}
    assert manifest["split"]["rmd17_split_index"] == 1
    assert manifest["units"] == {"positions": "Å", "energy": "kcal/mol", "forces": "kcal/mol/Å"}
    # The other tasks keep the shared molecule split.
    flow = {name: set(load(results, "flow_matching", name)["molecule_id"]) for name in ("train", "val", "test")}
    assert not (flow["train"] & flow["test"]) and len(set().union(*flow.values())) == 10


def test_held_out_labels_do_not_move_the_energy_references(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, study_data_config: Any, rmd17_bytes: bytes
) -> None:
    serve(server, monkeypatch, "rmd17_download", rmd17_bytes)
    config_path = stage_config(
        study_data_config, tmp_path, source="rmd17_download", max_heavy_atoms=14, conformers_per_molecule=2
    )
    results = run_stage(config_path, tmp_path / "results", extra_step="dft")
    config = json.loads(config_path.read_text())
    molecules = acquire.read_molecules(results / "data" / "molecules.csv")
    shards = [datasets.load_npz(p) for p in sorted((results / "data" / "shards").glob("conformers_*.npz"))]
    label_shards = [datasets.load_npz(p) for p in sorted((results / "data" / "shards").glob("labels_*.npz"))]
    dft = datasets.load_npz(results / "data" / "dft_labels.npz")

    def build_with(energy: np.ndarray) -> tuple[dict, dict]:
        built, extras = datasets.build(config, molecules, shards, label_shards, dft={**dft, "energy": energy})
        return built["force_field"], extras["force_field"]["labels"]["element_references_kcal_per_mol"]

    base, base_references = build_with(dft["energy"])
    held_out = dft["official_split"] != 0
    leaked, leaked_references = build_with(np.where(held_out, dft["energy"] + 5_000.0, dft["energy"]))
    assert leaked_references == base_references
    np.testing.assert_array_equal(leaked["test"]["energy_reference"], base["test"]["energy_reference"])
    assert not np.array_equal(leaked["test"]["energy"], base["test"]["energy"])
    # Control: the same change on the training frames does move them (the test above could fail).
    _, moved = build_with(np.where(held_out, dft["energy"], dft["energy"] + 5_000.0))
    assert moved != base_references


def test_spice_end_to_end_skips_and_counts_charged(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, study_data_config: Any
) -> None:
    path = tmp_path / "fixture.hdf5"
    write_spice_file(path)
    serve(server, monkeypatch, "spice_download", path.read_bytes())
    config_path = stage_config(study_data_config, tmp_path, source="spice_download")
    config = json.loads(config_path.read_text())
    paths = download.fetch_source("spice_download", config["download_dir"])  # verified against the pinned md5
    table = acquire.read_source("spice_download", config["download_dir"])
    assert sorted(table["source_id"]) == sorted(SPICE_MOLECULES)
    arrays, summary = dft_labels.build_dft_labels(
        "spice_download", paths, table.assign(molecule_id=range(len(table))), config
    )
    assert summary["molecules_skipped_by_reason"] == {"charged": 1} and summary["molecules_kept"] == 3
    assert summary["geometries"] == 3 + 3 + 2  # methylamine's NaN-energy conformation dropped
    assert arrays["energy"].dtype == np.float64 and np.isfinite(arrays["energy"]).all()


def test_a_download_that_does_not_match_its_digest_is_never_parsed(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, study_data_config: Any, rmd17_bytes: bytes
) -> None:
    serve(server, monkeypatch, "rmd17_download", rmd17_bytes, digest=b"what the provider published")
    config_path = stage_config(study_data_config, tmp_path, source="rmd17_download", max_heavy_atoms=14)
    with pytest.raises(SystemExit, match=r"checksum mismatch for rmd17\.tar\.bz2"):
        run_stage(config_path, tmp_path / "results", extra_step="dft")
    assert not (tmp_path / "downloads" / "rmd17.tar.bz2.d").exists()  # never extracted


def test_geom_end_to_end_uses_its_own_conformers(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, study_data_config: Any
) -> None:
    archive = tmp_path / "rdkit_folder.tar.gz"
    write_geom_archive(archive, GEOM_SMILES)
    serve(server, monkeypatch, "geom_drugs_download", archive.read_bytes())
    config_path = stage_config(study_data_config, tmp_path, source="geom_drugs_download", conformers_per_molecule=2)
    results = run_stage(config_path, tmp_path / "results", extra_step="geom")
    summary = json.loads((results / "data" / "geom_conformers.json").read_text())
    assert summary["molecules"] == len(GEOM_SMILES) and summary["molecules_skipped_by_reason"] == {}
    manifest = json.loads((results / "datasets" / "flow_matching" / "manifest.json").read_text())
    assert manifest["conformers"].startswith("GEOM's own conformers")
    test = load(results, "flow_matching", "test")
    assert len(test["molecule_id"]) == 2 * len(np.unique(test["molecule_id"]))


def test_geom_pickles_are_not_unpickled_before_the_archive_is_verified(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, study_data_config: Any
) -> None:
    archive = tmp_path / "rdkit_folder.tar.gz"
    write_geom_archive(archive, GEOM_SMILES[:2], malicious="CCO")
    serve(server, monkeypatch, "geom_drugs_download", archive.read_bytes(), digest=b"another archive")
    calls: list[object] = []
    monkeypatch.setattr(geom_conformers, "restricted_load", lambda handle: calls.append(handle))
    config_path = stage_config(study_data_config, tmp_path, source="geom_drugs_download")
    molecules = tmp_path / "molecules.csv"
    molecules.write_text("molecule_id,source,source_id,smiles\n0,geom_drugs_download,0,CCO\n")
    with pytest.raises(SystemExit, match=r"checksum mismatch for rdkit_folder\.tar\.gz"):
        geom_conformers.main(
            [
                "--config",
                str(config_path),
                "--molecules",
                str(molecules),
                "--out",
                str(tmp_path / "g.npz"),
                "--summary",
                str(tmp_path / "g.json"),
            ]
        )
    assert calls == []
    monkeypatch.undo()  # verified archive, real unpickler: the os.system pickle is refused
    serve(server, monkeypatch, "geom_drugs_download", archive.read_bytes())
    with pytest.raises(pickle.UnpicklingError, match="refused to unpickle global"):
        geom_conformers.main(
            [
                "--config",
                str(config_path),
                "--molecules",
                str(molecules),
                "--out",
                str(tmp_path / "g.npz"),
                "--summary",
                str(tmp_path / "g.json"),
            ]
        )


def test_dft_sources_validate() -> None:
    for source in ("rmd17_download", "spice_download"):
        assert validate_config({"data": {"source": source}})["data"]["source"] == source
    assert set(RMD17_SMILES) == {
        "aspirin",
        "azobenzene",
        "benzene",
        "ethanol",
        "malonaldehyde",
        "naphthalene",
        "paracetamol",
        "salicylic",
        "toluene",
        "uracil",
    }


@pytest.mark.slow
def test_rmd17_data_stage_with_snakemake(server: Server, tmp_path: Path, rmd17_bytes: bytes) -> None:
    """The workflow's own rules (data_dft_labels included) on data.source rmd17_download, served on 127.0.0.1."""
    copy_workflow(tmp_path)
    registry_path = tmp_path / "src" / "eqdyn" / "data" / "checksums" / "registry.json"
    registry = json.loads(registry_path.read_text())
    (entry,) = registry["sources"]["rmd17_download"]["files"]
    digest = hashlib.md5(rmd17_bytes).hexdigest()
    entry.update(url=f"{server.url}/rmd17.tar.bz2", checksum=digest, bytes=len(rmd17_bytes))
    registry_path.write_text(json.dumps(registry))
    server.files["/rmd17.tar.bz2"] = rmd17_bytes
    override = {"data": {"source": "rmd17_download", "max_heavy_atoms": 14, "conformers_per_molecule": 2}}
    (tmp_path / "rmd17.yaml").write_text(json.dumps(override))
    command = [snakemake_executable(), "data_datasets", "--cores", "2", "--configfile", "config/test.yaml"]
    command.append("rmd17.yaml")
    environment = {**os.environ, "PYTHONPATH": str(tmp_path / "src")}
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = tmp_path / "results" / "test"
    assert json.loads((results / "data" / "dft_labels.json").read_text())["molecules_kept"] == 10
    assert sorted(set(load(results, "force_field", "test")["conformer_id"])) == TEST_FRAMES
