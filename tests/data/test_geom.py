"""GEOM's own conformers: pickles streamed from the archive through the restricted unpickler, mapped to our atoms."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dft_fixtures import Exploit, write_geom_archive
from rdkit import Chem

from eqdyn.data.common import prepare_molecule
from eqdyn.data.geom_conformers import NO_ATOM_MATCH, NOT_IN_GEOM, atom_order, read_geom_conformers
from eqdyn.data.restricted_unpickle import RestrictedUnpickler, restricted_loads

SMILES = ["CCO", "c1ccccc1O", "CC(=O)N"]


class Payload:
    def __init__(self, function: object, argument: object) -> None:
        self.function, self.argument = function, argument

    def __reduce__(self) -> tuple[object, tuple[object]]:
        return self.function, (self.argument,)


@pytest.mark.parametrize(
    ("payload", "name"),
    [
        (Exploit(), f"{os.system.__module__}.system"),
        (Payload(subprocess.getoutput, "id"), "subprocess.getoutput"),
        (Payload(eval, "1"), "builtins.eval"),
        (Payload(getattr, "x"), "builtins.getattr"),
    ],
)
def test_the_restricted_unpickler_refuses_other_globals_naming_them(payload: object, name: str) -> None:
    data = pickle.dumps({"conformers": [payload]})
    with pytest.raises(pickle.UnpicklingError, match=f"refused to unpickle global {name}"):
        restricted_loads(data)
    with pytest.raises(pickle.UnpicklingError):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(np.zeros(2)))).load()  # numpy is not needed, so not admitted


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_the_restricted_unpickler_reads_mols_in_dicts_and_lists(protocol: int) -> None:
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    loaded = restricted_loads(pickle.dumps({"conformers": [{"rd_mol": mol, "w": 0.5}], "t": (1, 2)}, protocol))
    assert Chem.MolToSmiles(loaded["conformers"][0]["rd_mol"]) == Chem.MolToSmiles(mol)


def test_atom_order_maps_renumbered_atoms_back() -> None:
    prepared = prepare_molecule("CC(=O)N", ["H", "C", "N", "O"], 9)
    shuffled = Chem.RenumberAtoms(prepared, list(reversed(range(prepared.GetNumAtoms()))))
    order = atom_order(prepared, shuffled)
    assert order is not None
    assert [shuffled.GetAtomWithIdx(int(i)).GetAtomicNum() for i in order] == [
        a.GetAtomicNum() for a in prepared.GetAtoms()
    ]
    assert atom_order(prepared, Chem.AddHs(Chem.MolFromSmiles("CC(=O)O"))) is None


def test_geom_conformers_in_our_atom_order(tmp_path: Path, data_config: dict) -> None:
    archive = tmp_path / "rdkit_folder.tar.gz"
    originals = write_geom_archive(archive, SMILES[:2])
    molecules = pd.DataFrame({"molecule_id": [0, 1, 2], "smiles": [*SMILES[:2], "CCN"]})
    config = {**data_config, "conformers_per_molecule": 1}
    arrays, skipped = read_geom_conformers(archive, molecules, config)
    assert skipped == [(2, NOT_IN_GEOM, "CCN")]
    assert list(arrays["molecule_id"]) == [0, 1] and list(arrays["boltzmann_weight"]) == [0.7, 0.7]
    for row, smiles in enumerate(SMILES[:2]):
        prepared = prepare_molecule(smiles, config["elements"], config["max_heavy_atoms"])
        count = prepared.GetNumAtoms()
        numbers = [a.GetAtomicNum() for a in prepared.GetAtoms()]
        assert list(arrays["atomic_numbers"][row, :count]) == numbers
        positions = arrays["positions"][row, :count].astype(np.float64)
        # The heaviest-weighted conformer (geom_id 1), same points; bonded atoms are bonded in our order too.
        source = originals[f"{smiles}|1"].GetConformer().GetPositions()
        np.testing.assert_allclose(np.sort(positions, axis=0), np.sort(source, axis=0), atol=1e-5)
        for i, j, _ in arrays["bonds"][row][arrays["bonds"][row, :, 0] >= 0]:
            assert np.linalg.norm(positions[i] - positions[j]) < 1.7
    both, _ = read_geom_conformers(archive, molecules.iloc[:1], {**data_config, "conformers_per_molecule": 2})
    assert list(both["boltzmann_weight"]) == [0.7, 0.3]


def test_a_pickle_carrying_os_system_is_refused(tmp_path: Path, data_config: dict) -> None:
    archive = tmp_path / "rdkit_folder.tar.gz"
    write_geom_archive(archive, SMILES, malicious="CCO")
    molecules = pd.DataFrame({"molecule_id": [0], "smiles": ["CCO"]})
    with pytest.raises(pickle.UnpicklingError, match=r"refused to unpickle global (posix|os|nt)\.system"):
        read_geom_conformers(archive, molecules, data_config)


def test_a_conformer_of_another_molecule_is_skipped_and_counted(tmp_path: Path, data_config: dict) -> None:
    archive = tmp_path / "rdkit_folder.tar.gz"
    write_geom_archive(archive, ["CCO"])
    # A summary pointing CCN at ethanol's pickle: the atoms do not match, so nothing is taken from it.
    with tarfile.open(archive) as handle:
        summary = json.load(handle.extractfile("rdkit_folder/summary_drugs.json"))  # type: ignore[arg-type]
        pickled = handle.extractfile("rdkit_folder/drugs/molecule_0.pickle").read()  # type: ignore[union-attr]
    summary["CCN"] = summary["CCO"]
    with tarfile.open(archive, "w:gz") as handle:
        for name, data in [("drugs/molecule_0.pickle", pickled), ("summary_drugs.json", json.dumps(summary).encode())]:
            info = tarfile.TarInfo(f"rdkit_folder/{name}")
            info.size = len(data)
            handle.addfile(info, io.BytesIO(data))
    arrays, skipped = read_geom_conformers(archive, pd.DataFrame({"molecule_id": [4], "smiles": ["CCN"]}), data_config)
    assert len(arrays["molecule_id"]) == 0
    assert [(m, r) for m, r, _ in skipped] == [(4, NO_ATOM_MATCH)]
