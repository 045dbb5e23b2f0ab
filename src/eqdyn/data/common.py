"""Shared pieces of the data stage: the stage config, seeds, molecule preparation, padding and skip bookkeeping.

Every step rebuilds a molecule from its SMILES with :func:`prepare_molecule`, so the atom order (heavy atoms in
SMILES order, then the explicit hydrogens RDKit adds) is identical in every step and every run.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem, rdBase

from eqdyn.io import atomic_open

# Skip reasons, one per molecule. Keep these names stable: they are the keys of skipped_summary.json.
PARSE_FAILED = "parse_failed"
MULTIPLE_FRAGMENTS = "multiple_fragments"
CHARGED = "charged"
RADICAL = "radical"
DISALLOWED_ELEMENT = "disallowed_element"
TOO_LARGE = "too_large"
EMBED_FAILED = "embed_failed"
NO_MMFF_PARAMS = "no_mmff_params"
MMFF_NOT_CONVERGED = "mmff_not_converged"
LABELER_FAILED = "labeler_failed"
SKIP_REASONS = (
    PARSE_FAILED,
    MULTIPLE_FRAGMENTS,
    CHARGED,
    RADICAL,
    DISALLOWED_ELEMENT,
    TOO_LARGE,
    EMBED_FAILED,
    NO_MMFF_PARAMS,
    MMFF_NOT_CONVERGED,
    LABELER_FAILED,
)
SKIPPED_COLUMNS = ("molecule_id", "smiles", "reason", "detail")

# Example ids: molecule_id * MOLECULE_STRIDE + conformer_id * CONFORMER_STRIDE + geometry_id, where geometry 0 is
# the MMFF-minimised conformer and geometries 1..G are its perturbed copies (force-field task).
MOLECULE_STRIDE = 1_000_000
CONFORMER_STRIDE = 1_000
MAX_PER_LEVEL = 999

BOND_ORDER_CODES = {
    Chem.BondType.SINGLE: 1,
    Chem.BondType.DOUBLE: 2,
    Chem.BondType.TRIPLE: 3,
    Chem.BondType.AROMATIC: 4,
}


class DataConfigError(ValueError):
    """A data-stage setting that the schema cannot express (e.g. split fractions that do not sum to 1)."""


def load_data_config(path: str | Path) -> dict[str, Any]:
    """Read the stage config (results/<study>/configs/data.json, already schema-validated) and check the rest."""
    with open(path) as handle:
        config = json.load(handle)
    check_data_config(config)
    return config


def check_data_config(config: dict[str, Any]) -> None:
    split = config["split"]
    total = split["train"] + split["val"] + split["test"]
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise DataConfigError(f"data.split: train + val + test must be 1, got {total:g} ({split})")
    table = Chem.GetPeriodicTable()
    for symbol in config["elements"]:
        try:
            table.GetAtomicNumber(symbol)
        except RuntimeError:
            raise DataConfigError(f"data.elements: unknown element symbol {symbol!r}") from None
    if "H" not in config["elements"]:
        raise DataConfigError("data.elements: must contain H (hydrogens are always explicit)")
    if config["conformers_per_molecule"] > MAX_PER_LEVEL:
        raise DataConfigError(f"data.conformers_per_molecule: at most {MAX_PER_LEVEL} (example-id encoding)")
    if config["force_field"]["geometries_per_conformer"] > MAX_PER_LEVEL:
        raise DataConfigError(f"data.force_field.geometries_per_conformer: at most {MAX_PER_LEVEL}")


def atomic_numbers_of(symbols: Iterable[str]) -> list[int]:
    table = Chem.GetPeriodicTable()
    return [table.GetAtomicNumber(symbol) for symbol in symbols]


def derive_seed(master_seed: int, stage: str, index: int) -> int:
    """A 31-bit seed for (master seed, stage, index): RDKit takes a signed int, numpy takes anything."""
    stage_key = int.from_bytes(stage.encode(), "little") % (2**32)
    state = np.random.SeedSequence([master_seed, stage_key, index]).generate_state(1, dtype=np.uint32)[0]
    return int(state) & 0x7FFFFFFF


def quiet_rdkit() -> None:
    """RDKit prints parse errors to stderr; we record them as skip reasons instead."""
    rdBase.DisableLog("rdApp.*")


@dataclass(frozen=True)
class Skip:
    reason: str
    detail: str = ""


def net_charge(mol: Chem.Mol) -> int:
    return int(Chem.GetFormalCharge(mol))


def radical_electrons(mol: Chem.Mol) -> int:
    return int(sum(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms()))


def canonical_smiles(smiles: str) -> str | None:
    """RDKit's canonical isomeric SMILES, or None if the SMILES does not parse (the duplicate key of a molecule)."""
    mol = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) and smiles else None
    return Chem.MolToSmiles(mol) if mol is not None else None


def prepare_molecule(
    smiles: str,
    allowed_elements: Sequence[str],
    max_heavy_atoms: int,
    keep_charged: bool = False,
    keep_radicals: bool = False,
) -> Chem.Mol | Skip:
    """Parse, filter and add explicit hydrogens; return the molecule or the reason it is skipped."""
    mol = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) and smiles else None
    if mol is None:
        return Skip(PARSE_FAILED, "RDKit could not parse the SMILES")
    fragments = len(Chem.GetMolFrags(mol))
    if fragments > 1:
        return Skip(MULTIPLE_FRAGMENTS, f"{fragments} fragments")
    charge = net_charge(mol)
    if charge and not keep_charged:
        return Skip(CHARGED, f"net formal charge {charge:+d} (data.charged_molecules: skip)")
    unpaired = radical_electrons(mol)
    if unpaired and not keep_radicals:
        return Skip(RADICAL, f"{unpaired} radical electrons (data.radicals: skip)")
    mol = Chem.AddHs(mol)
    disallowed = sorted({atom.GetSymbol() for atom in mol.GetAtoms()} - set(allowed_elements))
    if disallowed:
        return Skip(DISALLOWED_ELEMENT, ",".join(disallowed))
    heavy = mol.GetNumHeavyAtoms()
    if heavy > max_heavy_atoms:
        return Skip(TOO_LARGE, f"{heavy} heavy atoms > {max_heavy_atoms}")
    return mol


def prepare_configured(smiles: str, config: dict[str, Any]) -> Chem.Mol | Skip:
    """:func:`prepare_molecule` with the stage config's filters (every step must use the same ones)."""
    return prepare_molecule(
        smiles,
        config["elements"],
        config["max_heavy_atoms"],
        keep_charged=config.get("charged_molecules", "skip") == "keep",
        keep_radicals=config.get("radicals", "skip") == "keep",
    )


def bond_table(mol: Chem.Mol) -> np.ndarray:
    """Rows (i, j, order) with i < j; order 1, 2, 3 or 4 (aromatic); other bond types are an error."""
    rows = []
    for bond in mol.GetBonds():
        i, j = sorted((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()))
        order = BOND_ORDER_CODES.get(bond.GetBondType())
        if order is None:
            raise ValueError(f"unsupported bond type {bond.GetBondType()} between atoms {i} and {j}")
        rows.append((i, j, order))
    rows.sort()
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def molecule_atomic_numbers(mol: Chem.Mol) -> np.ndarray:
    return np.asarray([atom.GetAtomicNum() for atom in mol.GetAtoms()], dtype=np.int64)


def pad_stack(
    arrays: Sequence[np.ndarray], length: int, fill: float | int, dtype: Any, tail: tuple[int, ...] = ()
) -> np.ndarray:
    """Stack arrays of shape [n_i, *tail] into [len(arrays), length, *tail], filling rows n_i.. with ``fill``."""
    out = np.full((len(arrays), length, *tail), fill, dtype=dtype)
    for row, array in enumerate(arrays):
        out[row, : len(array)] = array
    return out


def example_id(molecule_id: np.ndarray, conformer_id: np.ndarray, geometry_id: np.ndarray | int) -> np.ndarray:
    return (
        np.asarray(molecule_id, dtype=np.int64) * MOLECULE_STRIDE
        + np.asarray(conformer_id, dtype=np.int64) * CONFORMER_STRIDE
        + np.asarray(geometry_id, dtype=np.int64)
    )


def write_skipped_csv(path: str | Path, rows: Sequence[tuple[int, str, str, str]]) -> None:
    with atomic_open(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(SKIPPED_COLUMNS)
        writer.writerows(rows)


def log(message: str) -> None:
    """Progress lines for the rule's log file; flushed so a running job can be followed with tail -f."""
    print(message, flush=True, file=sys.stdout)
