"""rMD17: the archive layout parsed into DFT molecules, the official splits kept, references fitted on train only."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
from dft_fixtures import FRAMES, TEST_FRAMES, TRAIN_FRAMES, TRUE_REFERENCES, write_rmd17_archive

from eqdyn.data.dft_labels import TEST, TRAIN, MissingReference, fit_element_references, pack, reference_energies
from eqdyn.data.rmd17 import RMD17_SMILES, composition_matches, molecule_table, read_rmd17, read_split, rmd17_root


@pytest.fixture(scope="module")
def rmd17_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("rmd17")
    contents = write_rmd17_archive(folder / "rmd17.tar.bz2")
    with tarfile.open(folder / "rmd17.tar.bz2") as archive:
        archive.extractall(folder / "rmd17.tar.bz2.d", filter="data")
    return folder / "rmd17.tar.bz2.d", contents


@pytest.fixture
def rmd17_config(data_config: dict) -> dict:
    return {**data_config, "max_heavy_atoms": 14}  # azobenzene has 14 heavy atoms, the default is QM9's 9


def test_default_heavy_atom_limit_skips_and_counts_the_large_molecules(rmd17_folder, data_config: dict) -> None:
    molecules, skipped, _ = read_rmd17(rmd17_folder[0], ["ethanol", "aspirin"], data_config)
    assert [m.source_id for m in molecules] == ["ethanol"]
    assert skipped == [("aspirin", "too_large", "13 heavy atoms > 9")]


def test_molecule_table_names_the_ten_molecules(rmd17_folder: tuple[Path, dict]) -> None:
    table = molecule_table(rmd17_folder[0])
    assert list(table["source_id"]) == sorted(RMD17_SMILES)
    for name, smiles in zip(table["source_id"], table["smiles"], strict=True):
        assert composition_matches(smiles, rmd17_folder[1][name]["nuclear_charges"])


def test_official_split_frames_are_read_unconverted(rmd17_folder: tuple[Path, dict], rmd17_config: dict) -> None:
    folder, contents = rmd17_folder
    molecules, skipped, extra = read_rmd17(folder, ["ethanol", "aspirin"], rmd17_config)
    assert not skipped and extra["rmd17_split_index"] == 1
    ethanol = molecules[0]
    assert list(ethanol.frame) == sorted(TRAIN_FRAMES + TEST_FRAMES)
    assert set(ethanol.frame[ethanol.official_split == TRAIN]) == set(TRAIN_FRAMES)
    assert set(ethanol.frame[ethanol.official_split == TEST]) == set(TEST_FRAMES)
    np.testing.assert_array_equal(ethanol.positions, contents["ethanol"]["coords"][ethanol.frame])  # Å already
    np.testing.assert_array_equal(ethanol.energy, contents["ethanol"]["energies"][ethanol.frame])  # kcal/mol
    np.testing.assert_array_equal(ethanol.forces, contents["ethanol"]["forces"][ethanol.frame])  # kcal/mol/Å
    np.testing.assert_array_equal(ethanol.atomic_numbers, contents["ethanol"]["nuclear_charges"])
    swapped, _, _ = read_rmd17(folder, ["ethanol"], {**rmd17_config, "rmd17": {"split_index": 2}})
    assert set(swapped[0].frame[swapped[0].official_split == TRAIN]) == set(TEST_FRAMES)


def test_split_files_must_be_disjoint_and_present(tmp_path: Path) -> None:
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "index_train_01.csv").write_text("1\n2\n3\n")
    (tmp_path / "splits" / "index_test_01.csv").write_text("3\n4\n")
    with pytest.raises(ValueError, match="1 frames are in both train and test"):
        read_split(tmp_path, 1)
    with pytest.raises(FileNotFoundError, match="no official split 3"):
        read_split(tmp_path, 3)


def test_a_wrong_composition_is_an_error(rmd17_folder: tuple[Path, dict], tmp_path: Path, rmd17_config: dict) -> None:
    root = rmd17_root(rmd17_folder[0])
    broken = tmp_path / "rmd17"
    (broken / "npz_data").mkdir(parents=True)
    (broken / "splits").symlink_to(root / "splits")
    arrays = dict(rmd17_folder[1]["ethanol"])
    arrays["nuclear_charges"] = np.where(arrays["nuclear_charges"] == 8, 7, arrays["nuclear_charges"])
    np.savez(broken / "npz_data" / "rmd17_ethanol.npz", **arrays)
    with pytest.raises(ValueError, match="nuclear_charges do not match the composition of ethanol"):
        read_rmd17(tmp_path, ["ethanol"], rmd17_config)


def test_element_references_recover_the_composition_energies(rmd17_folder: tuple[Path, dict], rmd17_config) -> None:
    molecules, _, _ = read_rmd17(rmd17_folder[0], sorted(RMD17_SMILES), rmd17_config)
    arrays = pack(molecules, list(range(len(molecules))))
    assert arrays["positions"].dtype == np.float32 and arrays["energy"].dtype == np.float64
    assert len(arrays["energy"]) == 10 * (len(TRAIN_FRAMES) + len(TEST_FRAMES)) and FRAMES > len(TRAIN_FRAMES)
    train = arrays["official_split"] == TRAIN
    references = fit_element_references(arrays["atomic_numbers"][train], arrays["energy"][train])
    for z, energy in TRUE_REFERENCES.items():
        assert references[z] == pytest.approx(energy, abs=5.0)  # energies = composition + N(0, 2) noise
    residual = arrays["energy"] - reference_energies(arrays["atomic_numbers"], references)
    assert np.abs(residual).max() < 20.0
    # Bonds perceived from the first frame: ethanol (row block 0 is aspirin; find ethanol's) has 8 bonds.
    ethanol = arrays["molecule_id"] == sorted(RMD17_SMILES).index("ethanol")
    assert ((arrays["bonds"][ethanol][0, :, 0] >= 0).sum()) == 8


def test_reference_of_an_element_absent_from_training_is_an_error() -> None:
    numbers = np.array([[6, 1, 1, 0], [8, 1, 1, 0]])
    references = fit_element_references(numbers[:1], np.array([-100.0]))
    with pytest.raises(MissingReference, match=r"elements \[8\] have no fitted energy reference"):
        reference_energies(numbers, references)
