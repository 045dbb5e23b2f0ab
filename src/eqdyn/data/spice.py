"""SPICE (Eastman et al. 2023) HDF5: one group per molecule, read with h5py.

Per group: ``atomic_numbers`` [N], ``conformations`` [C, N, 3] Bohr, ``dft_total_energy`` [C] Hartree,
``dft_total_gradient`` [C, N, 3] Hartree/Bohr, ``smiles`` (one atom-mapped SMILES whose map numbers give the atom
order of the arrays), ``subset`` (the SPICE subset name). Converted here: positions Bohr -> Å, energies Hartree ->
kcal/mol, forces = -gradient, Hartree/Bohr -> kcal/mol/Å (CODATA 2018 factors in :mod:`eqdyn.data.dft_labels`).
A dataset's ``units`` attribute, where present, must say the unit assumed. Geometries with a non-finite energy or
gradient are dropped and counted. The formal charge comes from the SMILES: charged molecules are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rdkit import Chem

from eqdyn.data.common import PARSE_FAILED
from eqdyn.data.dft_labels import BOHR_TO_ANGSTROM, HARTREE_TO_KCAL_PER_MOL, NO_SPLIT, DftMolecule, screen

FIELDS = ("atomic_numbers", "conformations", "dft_total_energy", "dft_total_gradient", "smiles")
EXPECTED_UNITS = {"conformations": "bohr", "dft_total_energy": "hartree", "dft_total_gradient": "hartree/bohr"}


def _text(value: Any) -> str:
    value = value[0] if isinstance(value, np.ndarray) and value.shape else value
    return value.decode() if isinstance(value, bytes) else str(value)


def unmapped_smiles(mapped: str) -> str:
    """Canonical SMILES without atom maps or explicit hydrogens (the molecule table's SMILES), or '' if unreadable."""
    mol = Chem.MolFromSmiles(mapped)
    if mol is None:
        return ""
    for atom in mol.GetAtoms():
        atom.SetAtomMapNum(0)
    return Chem.MolToSmiles(Chem.RemoveHs(mol))


def molecule_table(path: str | Path) -> pd.DataFrame:
    """source_id (group name) and unmapped SMILES of every molecule group, in file order."""
    import h5py

    rows = []
    with h5py.File(path, "r") as handle:
        for name, group in handle.items():
            rows.append((name, unmapped_smiles(_text(group["smiles"][()]))))
    return pd.DataFrame(rows, columns=["source_id", "smiles"])


def _check_units(group: Any, name: str) -> None:
    for field, unit in EXPECTED_UNITS.items():
        stated = group[field].attrs.get("units")
        if stated is not None and _text(stated).lower() != unit:
            raise ValueError(f"SPICE group {name}: {field} is in {_text(stated)!r}, expected {unit!r}")


def read_spice(
    path: str | Path, source_ids: Iterable[str], config: dict[str, Any]
) -> tuple[list[DftMolecule], list[tuple[str, str, str]], dict[str, Any]]:
    import h5py

    molecules, skipped = [], []
    dropped_geometries = 0
    subsets: dict[str, int] = {}
    with h5py.File(path, "r") as handle:
        for name in source_ids:
            group = handle[name]
            missing = [field for field in FIELDS if field not in group]
            if missing:
                raise ValueError(f"{path}: SPICE group {name} lacks {missing}")
            mapped = _text(group["smiles"][()])
            smiles = unmapped_smiles(mapped)
            skip = screen(smiles, config) if smiles else None
            if not smiles:
                skipped.append((name, PARSE_FAILED, "RDKit could not parse the mapped SMILES"))
                continue
            if skip is not None:
                skipped.append((name, skip.reason, skip.detail))
                continue
            _check_units(group, name)
            numbers = group["atomic_numbers"][()].astype(np.int64)
            bohr = group["conformations"][()].astype(np.float64)
            hartree = group["dft_total_energy"][()].astype(np.float64)
            gradient = group["dft_total_gradient"][()].astype(np.float64)
            finite = np.isfinite(hartree) & np.isfinite(gradient).all(axis=(1, 2)) & np.isfinite(bohr).all(axis=(1, 2))
            dropped_geometries += int((~finite).sum())
            if not finite.any():
                skipped.append((name, "no_finite_labels", f"{len(hartree)} geometries, none with finite labels"))
                continue
            frames = np.flatnonzero(finite).astype(np.int64)
            subset = _text(group["subset"][()]) if "subset" in group else ""
            subsets[subset] = subsets.get(subset, 0) + 1
            molecules.append(
                DftMolecule(
                    source_id=name,
                    smiles=smiles,
                    atomic_numbers=numbers,
                    positions=bohr[frames] * BOHR_TO_ANGSTROM,
                    energy=hartree[frames] * HARTREE_TO_KCAL_PER_MOL,
                    forces=-gradient[frames] * (HARTREE_TO_KCAL_PER_MOL / BOHR_TO_ANGSTROM),
                    frame=frames,
                    official_split=np.full(len(frames), NO_SPLIT, np.int8),
                )
            )
    extra = {
        "unit_conversion": {
            "positions": f"Bohr * {BOHR_TO_ANGSTROM} -> Å",
            "energy": f"Hartree * {HARTREE_TO_KCAL_PER_MOL} -> kcal/mol",
            "forces": f"-dft_total_gradient * {HARTREE_TO_KCAL_PER_MOL} / {BOHR_TO_ANGSTROM} -> kcal/mol/Å",
        },
        "geometries_dropped_non_finite": dropped_geometries,
        "molecules_per_subset": subsets,
        "split": "by molecule (the data stage's seeded molecule split, the same for every task)",
    }
    return molecules, skipped, extra
