"""Force labels: MMFF94 forces are minus the gradient of the MMFF94 energy; perturbations; xtb guard."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from eqdyn.data.conformers import process_molecules
from eqdyn.data.labels import label_shard, mmff_labeler, xtb_labeler


def test_forces_equal_minus_finite_difference_gradient() -> None:
    mol = Chem.AddHs(Chem.MolFromSmiles("OC(=O)c1ccccc1N"))
    AllChem.EmbedMolecule(mol, randomSeed=7)
    positions = mol.GetConformer().GetPositions() + np.random.default_rng(0).normal(0, 0.05, (mol.GetNumAtoms(), 3))
    evaluate = mmff_labeler(mol)
    energy, forces = evaluate(positions)
    step = 1e-5
    numeric = np.zeros_like(positions)
    for atom in range(len(positions)):
        for axis in range(3):
            plus, minus = positions.copy(), positions.copy()
            plus[atom, axis] += step
            minus[atom, axis] -= step
            numeric[atom, axis] = -(evaluate(plus)[0] - evaluate(minus)[0]) / (2 * step)
    assert np.isfinite(energy)
    np.testing.assert_allclose(forces, numeric, rtol=1e-5, atol=1e-4 * np.abs(forces).max())
    # The labeller's energy is a function of the positions only, not of the conformer it was built on.
    assert evaluate(positions)[0] == energy


def test_label_shard_perturbs_minima_and_reports_reference(data_config: dict[str, Any]) -> None:
    data_config["conformers_per_molecule"] = 2
    data_config["force_field"]["geometries_per_conformer"] = 3
    data_config["force_field"]["perturbation_angstrom"] = 0.05
    molecules = pd.DataFrame({"molecule_id": [4, 9], "smiles": ["CCCO", "CC(=O)N"]})
    conformers = process_molecules(molecules, data_config, progress_every=None).arrays()
    labels, skipped = label_shard(conformers, data_config, progress_every=10**9)
    assert skipped == []
    assert len(labels["energy"]) == 2 * 2 * 3
    assert sorted(set(labels["geometry_id"].tolist())) == [1, 2, 3]
    # Forces at the MMFF minima vanish; perturbed geometries lie above their own minimum and the reference.
    assert np.abs(labels["minimum_forces"]).max() < 0.05
    assert np.all(labels["energy"] > labels["conformer_minimum_energy"])
    assert np.all(labels["energy_reference"] <= labels["conformer_minimum_energy"] + 1e-9)
    for molecule_id in (4, 9):
        rows = conformers["molecule_id"] == molecule_id
        assert np.allclose(
            labels["energy_reference"][labels["molecule_id"] == molecule_id],
            conformers["mmff_energy"][rows].min(),
            atol=1e-6,
        )
    # Displacements from the minimum have the configured standard deviation.
    minima = {
        (m, c): p
        for m, c, p in zip(conformers["molecule_id"], conformers["conformer_id"], conformers["positions"], strict=True)
    }
    displacement = np.concatenate(
        [
            (p - minima[(m, c)])[mask]
            for m, c, p, mask in zip(
                labels["molecule_id"], labels["conformer_id"], labels["positions"], labels["mask"], strict=True
            )
        ]
    )
    assert abs(displacement.std() - 0.05) < 0.006
    again, _ = label_shard(conformers, data_config, progress_every=10**9)
    np.testing.assert_array_equal(again["forces"], labels["forces"])


@pytest.mark.skipif(importlib.util.find_spec("tblite") is not None, reason="tblite is installed")
def test_xtb_without_tblite_says_how_to_install_it() -> None:
    with pytest.raises(SystemExit, match="pip install tblite"):
        xtb_labeler(Chem.AddHs(Chem.MolFromSmiles("O")))


@pytest.mark.skipif(importlib.util.find_spec("tblite") is None, reason="optional: pip install tblite")
def test_xtb_forces_are_minus_the_gradient_in_kcal_per_mol_per_angstrom() -> None:
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    positions = mol.GetConformer().GetPositions() + np.random.default_rng(0).normal(0, 0.03, (9, 3))
    evaluate = xtb_labeler(mol)
    energy, forces = evaluate(positions)
    assert -7200 < energy < -7100  # GFN2-xTB ethanol is about -11.39 Hartree
    step = 1e-4
    for atom, axis in [(0, 0), (2, 1), (8, 2)]:
        plus, minus = positions.copy(), positions.copy()
        plus[atom, axis] += step
        minus[atom, axis] -= step
        numeric = -(evaluate(plus)[0] - evaluate(minus)[0]) / (2 * step)
        assert numeric == pytest.approx(forces[atom, axis], abs=0.02)
