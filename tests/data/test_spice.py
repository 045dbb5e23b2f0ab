"""SPICE: HDF5 groups read with h5py, units converted explicitly, charged molecules skipped and counted."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from dft_fixtures import SPICE_MOLECULES, write_spice_file

from eqdyn.data.dft_labels import BOHR_TO_ANGSTROM, HARTREE_TO_KCAL_PER_MOL, NO_SPLIT
from eqdyn.data.spice import molecule_table, read_spice


@pytest.fixture
def spice_file(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "SPICE-2.0.1.hdf5"
    return path, write_spice_file(path)


def test_conversion_factors_are_codata_2018() -> None:
    assert HARTREE_TO_KCAL_PER_MOL == pytest.approx(627.5094740631, abs=1e-9)
    assert BOHR_TO_ANGSTROM == pytest.approx(0.529177210903, abs=1e-12)


def test_molecule_table_has_unmapped_smiles(spice_file: tuple[Path, dict]) -> None:
    table = molecule_table(spice_file[0])
    assert sorted(table["source_id"]) == sorted(SPICE_MOLECULES)
    assert dict(zip(table["source_id"], table["smiles"], strict=True))["ethanol"] == "CCO"
    assert not any(":" in smiles for smiles in table["smiles"])  # atom maps removed


def test_units_are_converted_and_forces_are_minus_the_gradient(spice_file: tuple[Path, dict], data_config) -> None:
    path, written = spice_file
    molecules, _, extra = read_spice(path, list(SPICE_MOLECULES), data_config)
    by_name = {m.source_id: m for m in molecules}
    ethanol, raw = by_name["ethanol"], written["ethanol"]
    np.testing.assert_allclose(ethanol.positions, raw["bohr"].astype(np.float64) * 0.529177210903, rtol=1e-12)
    np.testing.assert_allclose(ethanol.energy, raw["hartree"] * 627.5094740631, rtol=1e-12)
    expected_forces = -raw["gradient"].astype(np.float64) * 627.5094740631 / 0.529177210903
    np.testing.assert_allclose(ethanol.forces, expected_forces, rtol=1e-12)
    assert (ethanol.official_split == NO_SPLIT).all()
    # A C-H bond is ~1.09 Å after conversion (2.06 Bohr before): the factor is applied the right way round.
    assert 0.9 < np.linalg.norm(ethanol.positions[0, 0] - ethanol.positions[0, 3]) < 1.7
    assert extra["molecules_per_subset"] == {"PubChem": 3}


def test_charged_molecules_are_skipped_and_counted_even_if_the_config_keeps_them(
    spice_file: tuple[Path, dict], data_config: dict
) -> None:
    config = {**data_config, "charged_molecules": "keep"}  # the models have no charge input: DFT labels skip them
    molecules, skipped, _ = read_spice(spice_file[0], list(SPICE_MOLECULES), config)
    assert "acetate" not in {m.source_id for m in molecules}
    assert [(name, reason) for name, reason, _ in skipped] == [("acetate", "charged")]
    assert "-1" in skipped[0][2]


def test_non_finite_labels_are_dropped_and_counted(spice_file: tuple[Path, dict], data_config: dict) -> None:
    molecules, _, extra = read_spice(spice_file[0], ["methylamine"], data_config)
    assert list(molecules[0].frame) == [0, 2]
    assert extra["geometries_dropped_non_finite"] == 1


def test_a_unit_other_than_the_assumed_one_is_an_error(spice_file: tuple[Path, dict], data_config: dict) -> None:
    with h5py.File(spice_file[0], "a") as handle:
        handle["ethanol"]["conformations"].attrs["units"] = "angstrom"
    with pytest.raises(ValueError, match="conformations is in 'angstrom', expected 'bohr'"):
        read_spice(spice_file[0], ["ethanol"], data_config)
