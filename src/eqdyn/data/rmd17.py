"""Revised MD17 (Christensen & von Lilienfeld 2020): ten small molecules, 100,000 PBE/def2-SVP frames each.

Layout of the extracted rmd17.tar.bz2: ``rmd17/npz_data/rmd17_<name>.npz`` with ``nuclear_charges`` [N],
``coords`` [F, N, 3] Å, ``energies`` [F] kcal/mol, ``forces`` [F, N, 3] kcal/mol/Å (plus ``old_indices``,
``old_energies``, ``old_forces`` from the original MD17), and ``rmd17/splits/index_{train,test}_0<k>.csv`` (k = 1..5):
one frame index per line, the official train/test frames, applied to every molecule. rMD17 has no SMILES: each
file's molecule is named by its file name (:data:`RMD17_SMILES`), and the SMILES's composition (with hydrogens) is
checked against ``nuclear_charges``. The units are already kcal/mol and Å, so nothing is converted.

Only the frames of the chosen official split (``data.rmd17.split_index``) are read: its train frames keep
``official_split`` 0 and its test frames 2; the validation split is drawn later from the train frames.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rdkit import Chem

from eqdyn.data.dft_labels import TEST, TRAIN, DftMolecule, screen

# The ten molecules, by file name (rmd17_<name>.npz). Malonaldehyde is the enol (MD17 samples its proton transfer).
RMD17_SMILES = {
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "azobenzene": "c1ccc(/N=N/c2ccccc2)cc1",
    "benzene": "c1ccccc1",
    "ethanol": "CCO",
    "malonaldehyde": "O=CC=CO",
    "naphthalene": "c1ccc2ccccc2c1",
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
    "salicylic": "O=C(O)c1ccccc1O",
    "toluene": "Cc1ccccc1",
    "uracil": "O=c1cc[nH]c(=O)[nH]1",
}
NPZ_FIELDS = ("nuclear_charges", "coords", "energies", "forces")


def rmd17_root(folder: str | Path) -> Path:
    """The folder holding ``npz_data`` and ``splits`` inside an extracted archive."""
    found = sorted(Path(folder).rglob("npz_data"))
    if not found or not (found[0].parent / "splits").is_dir():
        raise FileNotFoundError(f"{folder}: no rmd17/npz_data and rmd17/splits folders in the rMD17 archive")
    return found[0].parent


def molecule_table(folder: str | Path) -> pd.DataFrame:
    """source_id (molecule name) and SMILES of every rmd17_<name>.npz in the archive."""
    root = rmd17_root(folder)
    names = sorted(path.stem.removeprefix("rmd17_") for path in (root / "npz_data").glob("rmd17_*.npz"))
    unknown = [name for name in names if name not in RMD17_SMILES]
    if unknown:
        raise ValueError(f"{root / 'npz_data'}: unknown rMD17 molecules {unknown} (known: {sorted(RMD17_SMILES)})")
    return pd.DataFrame({"source_id": names, "smiles": [RMD17_SMILES[name] for name in names]})


def read_split(root: Path, split_index: int) -> tuple[np.ndarray, np.ndarray]:
    """The official train and test frame indices of split ``split_index`` (1..5), checked to be disjoint."""
    indices = []
    for kind in ("train", "test"):
        path = root / "splits" / f"index_{kind}_{split_index:02d}.csv"
        if not path.exists():
            raise FileNotFoundError(f"{path}: the rMD17 archive has no official split {split_index}")
        indices.append(np.loadtxt(path, dtype=np.int64, ndmin=1))
    train, test = indices
    overlap = np.intersect1d(train, test)
    if overlap.size:
        raise ValueError(f"rMD17 split {split_index}: {overlap.size} frames are in both train and test")
    return train, test


def composition_matches(smiles: str, nuclear_charges: np.ndarray) -> bool:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    return Counter(atom.GetAtomicNum() for atom in mol.GetAtoms()) == Counter(int(z) for z in nuclear_charges)


def read_rmd17(
    folder: str | Path, source_ids: Iterable[str], config: dict[str, Any]
) -> tuple[list[DftMolecule], list[tuple[str, str, str]], dict[str, Any]]:
    root = rmd17_root(folder)
    split_index = int(config.get("rmd17", {}).get("split_index", 1))
    train, test = read_split(root, split_index)
    frames = np.concatenate([train, test])
    official = np.concatenate([np.full(len(train), TRAIN, np.int8), np.full(len(test), TEST, np.int8)])
    order = np.argsort(frames, kind="stable")
    frames, official = frames[order], official[order]
    molecules, skipped = [], []
    for name in source_ids:
        smiles = RMD17_SMILES[name]
        skip = screen(smiles, config)
        if skip is not None:
            skipped.append((name, skip.reason, skip.detail))
            continue
        path = root / "npz_data" / f"rmd17_{name}.npz"
        with np.load(path) as handle:
            missing = [field for field in NPZ_FIELDS if field not in handle.files]
            if missing:
                raise ValueError(f"{path}: missing fields {missing} (has {handle.files})")
            numbers = handle["nuclear_charges"].astype(np.int64)
            count = len(handle["energies"])
            if frames.max(initial=-1) >= count:
                raise ValueError(f"{path}: split {split_index} names frame {frames.max()}, the file has {count}")
            coords, energies, forces = (handle[key][frames] for key in ("coords", "energies", "forces"))
        if not composition_matches(smiles, numbers):
            raise ValueError(f"{path}: nuclear_charges do not match the composition of {name} ({smiles})")
        molecules.append(
            DftMolecule(
                source_id=name,
                smiles=smiles,
                atomic_numbers=numbers,
                positions=coords.astype(np.float64),
                energy=energies.reshape(-1).astype(np.float64),
                forces=forces.astype(np.float64),
                frame=frames.copy(),
                official_split=official.copy(),
            )
        )
    extra = {
        "rmd17_split_index": split_index,
        "official_split": (
            f"splits/index_train_{split_index:02d}.csv ({len(train)} frames) and index_test_{split_index:02d}.csv "
            f"({len(test)} frames) of every molecule; the force-field split is by frame, not by molecule"
        ),
        "unit_conversion": "none (rMD17 is stored in Å, kcal/mol and kcal/mol/Å)",
    }
    return molecules, skipped, extra
