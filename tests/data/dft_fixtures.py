"""Small files in the exact layouts of rMD17 (tar.bz2 of npz + split csvs), SPICE (HDF5) and GEOM (rdkit_folder
tar.gz of a summary json and pickles), written by the tests; the numbers are made up, the layouts are the providers'."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem

from eqdyn.data.rmd17 import RMD17_SMILES

# Made-up per-element energies (kcal/mol) that the fixture energies are built from.
TRUE_REFERENCES = {1: -310.0, 6: -23_800.0, 7: -34_300.0, 8: -47_200.0}
FRAMES = 12
TRAIN_FRAMES = [0, 2, 3, 5, 7, 8, 10, 11]
TEST_FRAMES = [1, 4, 6, 9]


def embedded(smiles: str, seed: int = 7) -> Chem.Mol:
    """The molecule with hydrogens and one MMFF-optimised conformer (a geometry that bond perception can read)."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    AllChem.MMFFOptimizeMolecule(mol)
    return mol


def rmd17_molecule(name: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One rmd17_<name>.npz: atoms in a shuffled order (rMD17's order is not RDKit's), float64 frames."""
    mol = embedded(RMD17_SMILES[name])
    order = rng.permutation(mol.GetNumAtoms())
    numbers = np.asarray([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)[order]
    base = mol.GetConformer().GetPositions()[order]
    coords = base[None] + rng.normal(0.0, 0.01, size=(FRAMES, *base.shape))
    composition = sum(TRUE_REFERENCES[int(z)] for z in numbers)
    energies = composition + rng.normal(0.0, 2.0, size=FRAMES)
    forces = rng.normal(0.0, 30.0, size=coords.shape)
    return {
        "nuclear_charges": numbers,
        "coords": coords,
        "energies": energies,
        "forces": forces,
        "old_indices": np.arange(FRAMES, dtype=np.int64) * 7,
        "old_energies": energies + 1.0,
        "old_forces": forces,
    }


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_rmd17_archive(path: Path, names: list[str] | None = None, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """rmd17.tar.bz2 with rmd17/npz_data/rmd17_<name>.npz and rmd17/splits/index_{train,test}_0{1,2}.csv."""
    rng = np.random.default_rng(seed)
    contents = {name: rmd17_molecule(name, rng) for name in (names or sorted(RMD17_SMILES))}
    with tarfile.open(path, "w:bz2") as archive:
        for name, arrays in contents.items():
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            _add_bytes(archive, f"rmd17/npz_data/rmd17_{name}.npz", buffer.getvalue())
        for split, (train, test) in {1: (TRAIN_FRAMES, TEST_FRAMES), 2: (TEST_FRAMES, TRAIN_FRAMES)}.items():
            # Floats written one per line, as in the archive (np.loadtxt reads them).
            _add_bytes(archive, f"rmd17/splits/index_train_0{split}.csv", "".join(f"{i}\n" for i in train).encode())
            _add_bytes(archive, f"rmd17/splits/index_test_0{split}.csv", "".join(f"{i}\n" for i in test).encode())
        _add_bytes(archive, "rmd17/readme.txt", b"revised MD17 (fixture)\n")
    return contents


def mapped_smiles(mol: Chem.Mol) -> str:
    """SPICE's SMILES: explicit hydrogens, atom map = 1 + the atom's index in the arrays."""
    copy = Chem.Mol(mol)
    for atom in copy.GetAtoms():
        atom.SetAtomMapNum(atom.GetIdx() + 1)
    return Chem.MolToSmiles(copy, allHsExplicit=True)


SPICE_MOLECULES = {"ethanol": "CCO", "acetic acid": "CC(=O)O", "acetate": "CC(=O)[O-]", "methylamine": "CN"}


def write_spice_file(path: Path, conformations: int = 3, seed: int = 0) -> dict[str, dict[str, Any]]:
    """A SPICE-layout HDF5: per group atomic_numbers int16, conformations float32 Bohr, dft_total_energy float64
    Hartree, dft_total_gradient float32 Hartree/Bohr, smiles and subset as 1-element string datasets. The
    methylamine group's second conformation has a NaN energy (dropped and counted)."""
    import h5py

    rng = np.random.default_rng(seed)
    written: dict[str, dict[str, Any]] = {}
    with h5py.File(path, "w") as handle:
        for name, smiles in SPICE_MOLECULES.items():
            mol = embedded(smiles)
            angstrom = mol.GetConformer().GetPositions()
            bohr = (angstrom[None] + rng.normal(0, 0.02, (conformations, *angstrom.shape))) / 0.529177210903
            energy = rng.normal(-200.0, 1.0, conformations)
            if name == "methylamine":
                energy[1] = np.nan
            gradient = rng.normal(0.0, 0.02, bohr.shape).astype(np.float32)
            group = handle.create_group(name)
            group.create_dataset("atomic_numbers", data=[a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int16)
            group.create_dataset("conformations", data=bohr.astype(np.float32)).attrs["units"] = "bohr"
            group.create_dataset("dft_total_energy", data=energy).attrs["units"] = "hartree"
            group.create_dataset("dft_total_gradient", data=gradient).attrs["units"] = "hartree/bohr"
            group.create_dataset("formation_energy", data=energy - 1.0).attrs["units"] = "hartree"
            group.create_dataset("smiles", data=[mapped_smiles(mol)], dtype=h5py.string_dtype())
            group.create_dataset("subset", data=["PubChem"], dtype=h5py.string_dtype())
            written[name] = {"bohr": bohr.astype(np.float32), "hartree": energy, "gradient": gradient}
    return written


class Exploit:
    """Unpickles to a call of os.system: what the restricted unpickler must refuse."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        import os

        return os.system, ("echo pwned",)


def write_geom_archive(path: Path, smiles_list: list[str], malicious: str | None = None) -> dict[str, Chem.Mol]:
    """rdkit_folder.tar.gz: rdkit_folder/summary_drugs.json and rdkit_folder/drugs/<n>.pickle per molecule, each a
    dict with 'conformers' [{'rd_mol', 'boltzmannweight', 'geom_id', ...}]; atoms renumbered (GEOM's order is not
    ours), two conformers each, the second of larger weight. ``malicious``: that SMILES's pickle carries os.system."""
    summary, pickles, originals = {}, {}, {}
    for index, smiles in enumerate(smiles_list):
        pickle_path = f"drugs/molecule_{index}.pickle"
        summary[smiles] = {"charge": 0, "pickle_path": pickle_path, "totalconfs": 2, "uniqueconfs": 2}
        conformers = []
        for geom_id, (seed, weight) in enumerate([(3, 0.3), (11, 0.7)]):
            mol = embedded(smiles, seed=seed)
            originals[f"{smiles}|{geom_id}"] = mol
            order = list(reversed(range(mol.GetNumAtoms())))
            conformers.append(
                {
                    "rd_mol": Chem.RenumberAtoms(mol, order),
                    "boltzmannweight": weight,
                    "geom_id": 1000 + geom_id,
                    "set": 1,
                    "totalenergy": -20.0,
                    "degeneracy": 1,
                }
            )
        record: Any = {"conformers": conformers, "smiles": smiles, "charge": 0, "temperature": 298.15}
        if smiles == malicious:
            record = {"conformers": [Exploit()], "smiles": smiles}
        pickles[pickle_path] = pickle.dumps(record)
    with tarfile.open(path, "w:gz") as archive:
        for pickle_path, data in pickles.items():  # pickles before the summary, as a tar of the folder may order them
            _add_bytes(archive, f"rdkit_folder/{pickle_path}", data)
        _add_bytes(archive, "rdkit_folder/summary_drugs.json", json.dumps(summary).encode())
    return originals
