"""Make the shipped example splits: ``python -m eqdyn.examples.make_examples [--out DIR]``.

A fixed list of QM9-like molecules (SMILES below), one ETKDGv3 conformer each (seeded), minimised with MMFF94 and
centred; the arrays follow :mod:`eqdyn.data.datasets`. flow_matching: the minima. force_field: two copies of each
minimum perturbed by Gaussian noise (0.05 Å), labelled with MMFF94 energies and forces, the minimum's energy as
``energy_reference``. voxel_denoising: the minima that fit, with a margin of 2 atom_sigma, in the ball inscribed in
the task's default grid. Deterministic for a given RDKit version.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDistGeom, rdForceFieldHelpers

from eqdyn.data.labels import mmff_labeler
from eqdyn.io import save_npz
from eqdyn.tasks.voxel_denoising import VoxelDenoisingTask

logger = logging.getLogger(__name__)
SEED = 0
PERTURBATION_ANGSTROM = 0.05
PERTURBED_COPIES = 2
BOND_ORDER = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3, Chem.BondType.AROMATIC: 4}
# QM9-like: at most 9 heavy atoms of C, N, O, F, neutral, closed shell
SMILES = (
    "C",
    "N",
    "O",
    "C#C",
    "C#N",
    "C=O",
    "CC",
    "CO",
    "CF",
    "CC#C",
    "CC#N",
    "CC=O",
    "NC=O",
    "CCC",
    "CCO",
    "COC",
    "C1CC1",
    "C1CO1",
    "CC(C)C",
    "CC(C)O",
    "CCCO",
    "OCCO",
    "CC(=O)O",
    "CC(N)=O",
    "CC(C)=O",
    "CN(C)C",
    "FC(F)F",
    "NCC(=O)O",
    "C1CCOC1",
    "O=C1CCC1",
    "c1ccccc1",
    "c1ccncc1",
    "c1ccoc1",
    "c1cc[nH]c1",
    "Cc1ccccc1",
    "OC1CCCC1",
)


def minimum(smiles: str, seed: int) -> tuple[Chem.Mol, np.ndarray]:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = seed  # type: ignore[assignment]
    if rdDistGeom.EmbedMolecule(mol, params) != 0:
        raise RuntimeError(f"{smiles}: ETKDGv3 found no conformer")
    if rdForceFieldHelpers.MMFFOptimizeMolecule(mol, maxIters=2000) != 0:
        raise RuntimeError(f"{smiles}: MMFF94 did not converge")
    positions = mol.GetConformer().GetPositions()
    return mol, positions - positions.mean(0)


def pad(rows: list[np.ndarray], length: int, fill: float) -> np.ndarray:
    out = np.full((len(rows), length, *rows[0].shape[1:]), fill, dtype=rows[0].dtype)
    for index, row in enumerate(rows):
        out[index, : len(row)] = row
    return out


def arrays(
    molecules: list[tuple[int, Chem.Mol, np.ndarray, int]], labels: list[tuple[float, np.ndarray, float]] | None
) -> dict[str, np.ndarray]:
    """Split arrays of (molecule_id, mol, positions, geometry_id) rows (and their energy, forces, reference)."""
    n_max = max(mol.GetNumAtoms() for _, mol, _, _ in molecules)
    e_max = max(max(mol.GetNumBonds(), 1) for _, mol, _, _ in molecules)
    bonds = [
        np.array(
            [
                (
                    min(b.GetBeginAtomIdx(), b.GetEndAtomIdx()),
                    max(b.GetBeginAtomIdx(), b.GetEndAtomIdx()),
                    BOND_ORDER[b.GetBondType()],
                )
                for b in mol.GetBonds()
            ]
            or np.empty((0, 3)),
            dtype=np.int64,
        )
        for _, mol, _, _ in molecules
    ]
    numbers = [np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64) for _, mol, _, _ in molecules]
    out = {
        "positions": pad([p.astype(np.float32) for _, _, p, _ in molecules], n_max, 0.0),
        "atomic_numbers": pad(numbers, n_max, 0),
        "mask": pad([np.ones(mol.GetNumAtoms(), dtype=bool) for _, mol, _, _ in molecules], n_max, False),
        "bonds": np.stack([np.concatenate([b, -np.ones((e_max - len(b), 3), dtype=np.int64)]) for b in bonds]),
        "molecule_id": np.array([m for m, _, _, _ in molecules], dtype=np.int64),
        "conformer_id": np.zeros(len(molecules), dtype=np.int64),
        "example_id": np.array([m * 1_000_000 + g for m, _, _, g in molecules], dtype=np.int64),
    }
    if labels is not None:
        out["energy"] = np.array([e for e, _, _ in labels])
        out["energy_reference"] = np.array([r for _, _, r in labels])
        out["forces"] = pad([f.astype(np.float32) for _, f, _ in labels], n_max, 0.0)
    return out


def make(out_dir: Path) -> dict[str, Path]:
    rng = np.random.default_rng(SEED)
    minima = [(molecule_id, *minimum(smiles, SEED)) for molecule_id, smiles in enumerate(SMILES)]
    flow = [(m, mol, positions, 0) for m, mol, positions in minima]
    perturbed, labels = [], []
    for m, mol, positions in minima:
        label = mmff_labeler(mol)
        reference, _ = label(positions)
        for geometry in range(1, PERTURBED_COPIES + 1):
            moved = positions + rng.normal(scale=PERTURBATION_ANGSTROM, size=positions.shape)
            moved -= moved.mean(0)
            energy, forces = label(moved)
            perturbed.append((m, mol, moved, geometry))
            labels.append((energy, forces, reference))
    voxel = VoxelDenoisingTask()
    radius = voxel.grid_size * voxel.resolution / 2 - 2 * voxel.atom_sigma
    fitting = [row for row in flow if np.linalg.norm(row[2], axis=1).max() <= radius]
    paths = {}
    for task, rows, task_labels in (
        ("flow_matching", flow, None),
        ("force_field", perturbed, labels),
        ("voxel_denoising", fitting, None),
    ):
        paths[task] = out_dir / f"{task}.npz"
        save_npz(paths[task], **arrays(rows, task_labels))
        logger.info("%s: %d examples of %d molecules -> %s", task, len(rows), len({r[0] for r in rows}), paths[task])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="folder of the <task>.npz files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    make(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
