"""Quantum-chemistry force labels (rMD17, SPICE) in the force-field dataset format, and per-element energy references.

The step ``python -m eqdyn.data.dft_labels`` runs when ``data.source`` is ``rmd17_download`` or ``spice_download``:
it fetches and verifies the download (:mod:`eqdyn.data.download`), reads the molecules that the acquisition drew
(``data/molecules.csv``, matched by ``source_id``), and writes ``data/dft_labels.npz``:

- ``positions`` float32 [M, N, 3] Å (not yet centred), ``atomic_numbers`` int64 [M, N] (0 = padding), ``mask``,
  ``bonds`` int64 [M, E, 3] perceived from the molecule's first geometry (RDKit's DetermineBonds; connectivity with
  order 1 where bond orders cannot be assigned), ``molecule_id``, ``conformer_id`` = the provider's frame index,
- ``energy`` float64 [M] kcal/mol (the provider's total energy), ``forces`` float32 [M, N, 3] kcal/mol/Å,
- ``official_split`` int8 [M]: 0 = the provider's train index, 2 = its test index, -1 = none (SPICE).

Molecules that are charged (always skipped: the models have no charge input), have several fragments, another
element than ``data.elements`` or too many heavy atoms are skipped and counted in ``data/dft_labels.json``.
``energy_reference`` is fitted later, in the datasets step, on the training split only (:func:`fit_element_references`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rdkit import Chem
from rdkit.Chem import rdDetermineBonds

from eqdyn.data.common import MOLECULE_STRIDE, Skip, bond_table, load_data_config, log, pad_stack, prepare_configured
from eqdyn.io import save_npz, write_json

DFT_SOURCES = ("rmd17_download", "spice_download")
# CODATA 2018: 1 Hartree = 627.5094740631 kcal/mol, 1 Bohr = 0.529177210903 Å.
HARTREE_TO_KCAL_PER_MOL = 627.5094740631
BOHR_TO_ANGSTROM = 0.529177210903
ENERGY_UNIT = "kcal/mol"
FORCE_UNIT = "kcal/mol/Å"
TRAIN, TEST, NO_SPLIT = 0, 2, -1
LEVEL_OF_THEORY = {
    "rmd17_download": "PBE/def2-SVP (rMD17, ORCA)",
    "spice_download": "ωB97M-D3BJ/def2-TZVPPD (SPICE)",
}


class MissingReference(ValueError):
    """A held-out example with an element that no training example has: its energy reference cannot be fitted."""


@dataclass(frozen=True)
class DftMolecule:
    """One molecule's labelled geometries, already in Å and kcal/mol."""

    source_id: str
    smiles: str
    atomic_numbers: np.ndarray  # int64 [N]
    positions: np.ndarray  # float64 [C, N, 3] Å
    energy: np.ndarray  # float64 [C] kcal/mol
    forces: np.ndarray  # float64 [C, N, 3] kcal/mol/Å
    frame: np.ndarray  # int64 [C], the provider's index of each geometry
    official_split: np.ndarray  # int8 [C]: TRAIN, TEST or NO_SPLIT

    def __post_init__(self) -> None:
        count, atoms = self.positions.shape[:2]
        if self.positions.shape != (count, atoms, 3) or self.forces.shape != self.positions.shape:
            raise ValueError(f"{self.source_id}: positions {self.positions.shape} and forces {self.forces.shape}")
        per_geometry = (self.energy.shape, self.frame.shape, self.official_split.shape)
        if self.atomic_numbers.shape != (atoms,) or any(shape != (count,) for shape in per_geometry):
            raise ValueError(f"{self.source_id}: inconsistent array shapes")


def element_counts(atomic_numbers: np.ndarray, elements: Sequence[int]) -> np.ndarray:
    """[M, K] counts of each of ``elements`` in each row of a padded [M, N] atomic-number array."""
    return np.stack([(atomic_numbers == z).sum(axis=1) for z in elements], axis=1).astype(np.float64)


def fit_element_references(atomic_numbers: np.ndarray, energy: np.ndarray) -> dict[int, float]:
    """Per-element energies e_z minimising sum (E - sum_z n_z e_z)^2 over the given (training) examples.

    Only the examples passed in enter the fit: pass the training split, never held-out labels. With fewer distinct
    compositions than elements the least-squares solution of smallest norm is taken (the fitted reference of every
    training composition is still its least-squares value).
    """
    elements = sorted(int(z) for z in np.unique(atomic_numbers) if z > 0)
    if not elements:
        raise ValueError("no atoms to fit element references on")
    solution, *_ = np.linalg.lstsq(element_counts(atomic_numbers, elements), energy.astype(np.float64), rcond=None)
    return {z: float(e) for z, e in zip(elements, solution, strict=True)}


def reference_energies(atomic_numbers: np.ndarray, references: dict[int, float]) -> np.ndarray:
    """sum_z n_z e_z per example; an element without a fitted reference is an error (it was not in training)."""
    present = {int(z) for z in np.unique(atomic_numbers) if z > 0}
    missing = sorted(present - set(references))
    if missing:
        raise MissingReference(
            f"elements {missing} have no fitted energy reference: they occur in no molecule of the training split "
            "(remove them from data.elements, or raise data.max_molecules so that training molecules have them)"
        )
    elements = sorted(references)
    return element_counts(atomic_numbers, elements) @ np.asarray([references[z] for z in elements])


def bonds_from_geometry(atomic_numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Bond rows (i, j, order) perceived from one neutral geometry; connectivity only if orders cannot be assigned."""
    table = Chem.GetPeriodicTable()
    lines = [str(len(atomic_numbers)), ""]
    lines += [
        f"{table.GetElementSymbol(int(z))} {x:.6f} {y:.6f} {w:.6f}"
        for z, (x, y, w) in zip(atomic_numbers, positions, strict=True)
    ]
    mol = Chem.MolFromXYZBlock("\n".join(lines) + "\n")
    if mol is None:
        raise ValueError("RDKit could not read the geometry")
    try:
        rdDetermineBonds.DetermineBonds(mol, charge=0)
        Chem.SanitizeMol(mol)
        return bond_table(mol)
    except (ValueError, RuntimeError):
        mol = Chem.MolFromXYZBlock("\n".join(lines) + "\n")
        rdDetermineBonds.DetermineConnectivity(mol)
        rows = sorted(tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds())
        return np.asarray([(i, j, 1) for i, j in rows], dtype=np.int64).reshape(-1, 3)


def screen(smiles: str, config: dict[str, Any]) -> Skip | None:
    """The data stage's molecule filters, with charged molecules always skipped (no charge input in the models)."""
    prepared = prepare_configured(smiles, {**config, "charged_molecules": "skip"})
    return prepared if isinstance(prepared, Skip) else None


def pack(molecules: Sequence[DftMolecule], molecule_ids: Sequence[int]) -> dict[str, np.ndarray]:
    """The dft_labels.npz arrays of ``molecules`` (one row per labelled geometry)."""
    if any(int(m.frame.max(initial=0)) >= MOLECULE_STRIDE for m in molecules):
        raise ValueError(f"a frame index >= {MOLECULE_STRIDE} does not fit the example-id encoding")
    n_max = max((len(m.atomic_numbers) for m in molecules), default=0)
    bonds = [bonds_from_geometry(m.atomic_numbers, m.positions[0]) for m in molecules]
    e_max = max((len(b) for b in bonds), default=0)
    rows: dict[str, list[np.ndarray]] = {key: [] for key in ("positions", "forces", "numbers", "bonds")}
    for molecule, molecule_bonds in zip(molecules, bonds, strict=True):
        count = len(molecule.energy)
        rows["positions"] += list(molecule.positions)
        rows["forces"] += list(molecule.forces)
        rows["numbers"] += [molecule.atomic_numbers] * count
        rows["bonds"] += [molecule_bonds] * count
    positions = pad_stack(rows["positions"], n_max, 0.0, np.float32, (3,))
    atomic_numbers = pad_stack(rows["numbers"], n_max, 0, np.int64)
    return {
        "positions": positions,
        "atomic_numbers": atomic_numbers,
        "mask": atomic_numbers > 0,
        "bonds": pad_stack(rows["bonds"], e_max, -1, np.int64, (3,)),
        "molecule_id": np.concatenate(
            [np.full(len(m.energy), i, np.int64) for m, i in zip(molecules, molecule_ids, strict=True)]
            or [np.zeros(0, np.int64)]
        ),
        "conformer_id": np.concatenate([m.frame for m in molecules] or [np.zeros(0)]).astype(np.int64),
        "energy": np.concatenate([m.energy for m in molecules] or [np.zeros(0)]).astype(np.float64),
        "forces": pad_stack(rows["forces"], n_max, 0.0, np.float32, (3,)),
        "official_split": np.concatenate([m.official_split for m in molecules] or [np.zeros(0)]).astype(np.int8),
    }


def read_dft_source(
    source: str, paths: dict[str, Path], source_ids: Iterable[str], config: dict[str, Any]
) -> tuple[list[DftMolecule], list[tuple[str, str, str]], dict[str, Any]]:
    """(molecules, skipped rows (source_id, reason, detail), extra summary) of a fetched DFT source."""
    if source == "rmd17_download":
        from eqdyn.data.rmd17 import read_rmd17

        return read_rmd17(paths["rmd17.tar.bz2"], source_ids, config)
    if source == "spice_download":
        from eqdyn.data.spice import read_spice

        return read_spice(paths["SPICE-2.0.1.hdf5"], source_ids, config)
    raise ValueError(f"{source!r} is not a DFT source ({', '.join(DFT_SOURCES)})")


def build_dft_labels(
    source: str, paths: dict[str, Path], molecules_table: pd.DataFrame, config: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """dft_labels.npz arrays for the drawn molecules, and the summary (counts by skip reason, units, source)."""
    by_source_id = dict(zip(molecules_table["source_id"].astype(str), molecules_table["molecule_id"], strict=True))
    molecules, skipped, extra = read_dft_source(source, paths, list(by_source_id), config)
    arrays = pack(molecules, [int(by_source_id[m.source_id]) for m in molecules])
    reasons: dict[str, int] = {}
    for _, reason, _ in skipped:
        reasons[reason] = reasons.get(reason, 0) + 1
    summary = {
        "source": source,
        "level_of_theory": LEVEL_OF_THEORY[source],
        "molecules_requested": len(by_source_id),
        "molecules_kept": len(molecules),
        "molecules_skipped_by_reason": reasons,
        "skipped": [{"source_id": s, "reason": r, "detail": d} for s, r, d in skipped],
        "geometries": len(arrays["energy"]),
        "units": {"positions": "Å", "energy": ENERGY_UNIT, "forces": FORCE_UNIT},
        "charged_molecules": "always skipped (the models have no charge input), whatever data.charged_molecules says",
        **extra,
    }
    return arrays, summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--molecules", required=True, type=Path, help="data/molecules.csv of the acquisition")
    parser.add_argument("--out", required=True, type=Path, help="dft_labels.npz to write")
    parser.add_argument("--summary", required=True, type=Path, help="dft_labels.json to write")
    args = parser.parse_args(argv)

    from eqdyn.data.acquire import read_molecules
    from eqdyn.data.download import ArchiveError, ChecksumMismatch, DownloadError, fetch_source

    config = load_data_config(args.config)
    source = config["source"]
    if source not in DFT_SOURCES:
        raise SystemExit(f"data.source {source!r} has no DFT labels (DFT sources: {', '.join(DFT_SOURCES)})")
    started = time.monotonic()
    try:
        paths = fetch_source(source, config["download_dir"])
    except (DownloadError, ChecksumMismatch, ArchiveError) as error:
        raise SystemExit(f"data.source {source}: {error}") from None
    arrays, summary = build_dft_labels(source, paths, read_molecules(args.molecules), config)
    save_npz(args.out, **arrays)
    write_json(args.summary, summary)
    log(
        f"{source}: {summary['molecules_kept']} molecules, {summary['geometries']} geometries labelled; skipped "
        f"{summary['molecules_skipped_by_reason']} ({time.monotonic() - started:.1f} s)"
    )


if __name__ == "__main__":
    main()
