"""Conformer preparation: filters and failures counted by reason, determinism, geometry."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from rdkit import Chem

from eqdyn.data.common import (
    DISALLOWED_ELEMENT,
    MULTIPLE_FRAGMENTS,
    NO_MMFF_PARAMS,
    PARSE_FAILED,
    TOO_LARGE,
    bond_table,
    derive_seed,
)
from eqdyn.data.conformers import process_molecules


def frame(smiles: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"molecule_id": range(len(smiles)), "smiles": smiles})


def test_bad_molecules_are_skipped_and_counted_by_reason(data_config: dict[str, Any]) -> None:
    data_config["elements"] = ["H", "B", "C", "N", "O", "F"]  # let boron through to reach the MMFF check
    smiles = ["CCO", "C1CC", "not a smiles", "CCCl", "C.O", "CCCCCCCCCC", "B(O)(O)c1ccccc1", "c1ccncc1", ""]
    result = process_molecules(frame(smiles), data_config, progress_every=None)
    reasons = {molecule_id: reason for molecule_id, _, reason, _ in result.skipped}
    assert reasons == {
        1: PARSE_FAILED,
        2: PARSE_FAILED,
        3: DISALLOWED_ELEMENT,
        4: MULTIPLE_FRAGMENTS,
        5: TOO_LARGE,
        6: NO_MMFF_PARAMS,
        8: PARSE_FAILED,
    }
    kept = set(result.rows["molecule_id"])
    assert kept == {0, 7}
    assert result.attempted == len(smiles) == len(kept) + len(result.skipped)  # nothing dropped silently
    assert dict(result.skipped[i][1:3] for i in range(len(result.skipped)))["CCCl"] == DISALLOWED_ELEMENT


def test_conformers_are_deterministic_for_a_fixed_seed(data_config: dict[str, Any]) -> None:
    data_config["conformers_per_molecule"] = 3
    molecules = frame(["CCCCO", "OC(=O)c1ccccc1", "CC(N)C(=O)O"])
    first = process_molecules(molecules, data_config, progress_every=None).arrays()
    second = process_molecules(molecules, data_config, progress_every=None).arrays()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    assert first["positions"].shape[0] == 9
    data_config["seed"] = 1
    other = process_molecules(molecules, data_config, progress_every=None).arrays()
    assert not np.allclose(other["positions"], first["positions"])
    assert derive_seed(0, "conformers", 5) != derive_seed(1, "conformers", 5)
    assert derive_seed(0, "conformers", 5) != derive_seed(0, "labels", 5)


def test_conformer_geometry_and_layout(data_config: dict[str, Any]) -> None:
    arrays = process_molecules(frame(["CCO", "c1ccccc1"]), data_config, progress_every=None).arrays()
    n_atoms = arrays["mask"].sum(1)
    assert n_atoms.tolist() == [9, 9, 12, 12]
    assert arrays["atomic_numbers"][0, :9].tolist() == [6, 6, 8, 1, 1, 1, 1, 1, 1]  # heavy atoms, then H
    assert np.all(arrays["positions"][0, 9:] == 0) and np.all(arrays["atomic_numbers"][0, 9:] == 0)
    # Bonded C-C distance of ethanol near 1.51 Å, aromatic C-C of benzene near 1.39 Å after MMFF94.
    assert abs(np.linalg.norm(arrays["positions"][0, 0] - arrays["positions"][0, 1]) - 1.51) < 0.03
    bonds = arrays["bonds"][2]
    aromatic = bonds[bonds[:, 2] == 4]
    assert len(aromatic) == 6 and np.all(aromatic[:, 0] < aromatic[:, 1])
    distances = np.linalg.norm(arrays["positions"][2, aromatic[:, 0]] - arrays["positions"][2, aromatic[:, 1]], axis=1)
    assert np.allclose(distances, 1.39, atol=0.02)
    assert np.all(arrays["bonds"][0][bonds_real := arrays["bonds"][0][:, 0] >= 0][:, 2] == 1)
    assert bonds_real.sum() == 8
    assert bond_table(Chem.AddHs(Chem.MolFromSmiles("C#N")))[0].tolist() == [0, 1, 3]
