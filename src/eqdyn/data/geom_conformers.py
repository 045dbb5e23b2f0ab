"""GEOM's own conformers (CREST/GFN2-xTB ensembles of rdkit_folder) for the flow-matching task, in our atom order.

``rdkit_folder.tar.gz`` holds ``rdkit_folder/summary_drugs.json`` (SMILES -> {``pickle_path``: ``drugs/<name>.pickle``,
...}) and one pickle per molecule: a dict whose ``conformers`` is a list of dicts with ``rd_mol`` (an RDKit Mol with
hydrogens and one conformer, Å) and ``boltzmannweight``. The archive is verified against its checksum by
:func:`eqdyn.data.download.fetch` before this module reads it, the pickles are streamed out of that verified archive
(never from an unpacked folder that could have changed since) and unpickled only by
:class:`eqdyn.data.restricted_unpickle.RestrictedUnpickler`.

Each GEOM conformer is mapped onto the atom order of :func:`eqdyn.data.common.prepare_molecule` (heavy atoms in
SMILES order, then hydrogens) by a substructure match, so that positions line up with the bonds and atomic numbers
of every other step. Per molecule the ``conformers_per_molecule`` conformers of largest Boltzmann weight are kept.
"""

from __future__ import annotations

import argparse
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rdkit import Chem

from eqdyn.data.common import (
    Skip,
    bond_table,
    load_data_config,
    log,
    molecule_atomic_numbers,
    pad_stack,
    prepare_configured,
    quiet_rdkit,
)
from eqdyn.data.restricted_unpickle import restricted_load
from eqdyn.io import save_npz, write_json

SUMMARY_SUFFIX = "summary_drugs.json"
NOT_IN_GEOM = "not_in_geom_summary"
NO_PICKLE = "geom_pickle_missing"
NO_ATOM_MATCH = "geom_atoms_do_not_match"


def _graph_only(mol: Chem.Mol) -> Chem.Mol:
    """A copy with every bond single, no aromaticity and no charges: matching by element and connectivity only."""
    plain = Chem.RWMol(mol)
    for atom in plain.GetAtoms():
        atom.SetIsAromatic(False)
        atom.SetFormalCharge(0)
        atom.SetNoImplicit(True)
    for bond in plain.GetBonds():
        bond.SetBondType(Chem.BondType.SINGLE)
        bond.SetIsAromatic(False)
    plain.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(plain)
    return plain


def atom_order(prepared: Chem.Mol, geom_mol: Chem.Mol) -> np.ndarray | None:
    """geom atom index of each prepared atom, or None if the two are not the same molecular graph."""
    if prepared.GetNumAtoms() != geom_mol.GetNumAtoms():
        return None
    match = geom_mol.GetSubstructMatch(prepared)
    if not match:  # GEOM may write another resonance form or charge separation of the same graph
        match = _graph_only(geom_mol).GetSubstructMatch(_graph_only(prepared))
    return np.asarray(match, dtype=np.int64) if match else None


def conformers_of(record: dict[str, Any], prepared: Chem.Mol, limit: int) -> tuple[list[np.ndarray], list[float]]:
    """Positions [N, 3] Å in prepared-atom order of the ``limit`` heaviest-weighted conformers, and their weights."""
    entries = sorted(record.get("conformers", []), key=lambda c: -float(c.get("boltzmannweight", 0.0)))
    positions, weights = [], []
    for entry in entries[:limit]:
        geom_mol = entry["rd_mol"]
        order = atom_order(prepared, geom_mol)
        if order is None or geom_mol.GetNumConformers() == 0:
            continue
        positions.append(np.asarray(geom_mol.GetConformer().GetPositions(), dtype=np.float64)[order])
        weights.append(float(entry.get("boltzmannweight", 0.0)))
    return positions, weights


def read_summary(archive: Path) -> dict[str, Any]:
    """summary_drugs.json, streamed out of the archive (the pass stops once it is read)."""
    with tarfile.open(archive, mode="r|*") as stream:
        for member in stream:
            if member.isfile() and member.name.endswith(SUMMARY_SUFFIX):
                handle = stream.extractfile(member)
                assert handle is not None
                return json.load(handle)
    raise FileNotFoundError(f"{archive}: no member ending in {SUMMARY_SUFFIX}")


def read_pickles(archive: Path, wanted: set[str]) -> dict[str, Any]:
    """The records of the ``wanted`` pickle paths (relative to rdkit_folder), through the restricted unpickler."""
    records: dict[str, Any] = {}
    with tarfile.open(archive, mode="r|*") as stream:
        for member in stream:
            relative = member.name.split("rdkit_folder/", 1)[-1]
            if member.isfile() and relative in wanted:
                handle = stream.extractfile(member)
                assert handle is not None
                records[relative] = restricted_load(handle)
                if len(records) == len(wanted):
                    break
    return records


def read_geom_conformers(
    archive: str | Path, molecules: pd.DataFrame, config: dict[str, Any]
) -> tuple[dict[str, np.ndarray], list[tuple[int, str, str]]]:
    """Flow-matching conformer arrays of the drawn molecules from a verified rdkit_folder archive, and skips."""
    quiet_rdkit()
    archive = Path(archive)
    limit = int(config["conformers_per_molecule"])
    summary = read_summary(archive)
    wanted: set[str] = set()
    skipped: list[tuple[int, str, str]] = []
    prepared_by_id: dict[int, Chem.Mol] = {}
    path_by_id: dict[int, str] = {}
    for molecule_id, smiles in zip(molecules["molecule_id"], molecules["smiles"], strict=True):
        prepared = prepare_configured(smiles, config)
        if isinstance(prepared, Skip):
            continue  # counted by the conformer step, which applies the same filters
        entry = summary.get(smiles)
        if entry is None or "pickle_path" not in entry:
            skipped.append((int(molecule_id), NOT_IN_GEOM, smiles))
            continue
        wanted.add(entry["pickle_path"])
        prepared_by_id[int(molecule_id)] = prepared
        path_by_id[int(molecule_id)] = entry["pickle_path"]
    records = read_pickles(archive, wanted) if wanted else {}
    rows: dict[str, list[Any]] = {key: [] for key in ("positions", "numbers", "bonds", "molecule", "conformer", "w")}
    for molecule_id, prepared in prepared_by_id.items():
        record = records.get(path_by_id[molecule_id])
        if record is None:
            skipped.append((molecule_id, NO_PICKLE, path_by_id[molecule_id]))
            continue
        positions, weights = conformers_of(record, prepared, limit)
        if not positions:
            skipped.append((molecule_id, NO_ATOM_MATCH, "no GEOM conformer has the molecule's atoms and bonds"))
            continue
        numbers, bonds = molecule_atomic_numbers(prepared), bond_table(prepared)
        for index, (xyz, weight) in enumerate(zip(positions, weights, strict=True)):
            rows["positions"].append(xyz)
            rows["numbers"].append(numbers)
            rows["bonds"].append(bonds)
            rows["molecule"].append(molecule_id)
            rows["conformer"].append(index)
            rows["w"].append(weight)
    return pack_conformers(rows), skipped


def pack_conformers(rows: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    n_max = max((len(n) for n in rows["numbers"]), default=0)
    e_max = max((len(b) for b in rows["bonds"]), default=0)
    numbers = pad_stack(rows["numbers"], n_max, 0, np.int64)
    return {
        "positions": pad_stack(rows["positions"], n_max, 0.0, np.float32, (3,)),
        "atomic_numbers": numbers,
        "mask": numbers > 0,
        "bonds": pad_stack(rows["bonds"], e_max, -1, np.int64, (3,)),
        "molecule_id": np.asarray(rows["molecule"], dtype=np.int64),
        "conformer_id": np.asarray(rows["conformer"], dtype=np.int64),
        "boltzmann_weight": np.asarray(rows["w"], dtype=np.float64),
    }


def summarise(arrays: dict[str, np.ndarray], skipped: Sequence[tuple[int, str, str]]) -> dict[str, Any]:
    reasons: dict[str, int] = {}
    for _, reason, _ in skipped:
        reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "source": "GEOM rdkit_folder conformers (CREST / GFN2-xTB), not re-embedded",
        "molecules": len(np.unique(arrays["molecule_id"])),
        "conformers": len(arrays["molecule_id"]),
        "molecules_skipped_by_reason": reasons,
        "skipped": [{"molecule_id": m, "reason": r, "detail": d} for m, r, d in skipped],
        "selection": "per molecule, the data.conformers_per_molecule conformers of largest Boltzmann weight",
        "unpickling": "restricted (eqdyn.data.restricted_unpickle), from the checksum-verified archive",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--molecules", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--summary", required=True, type=Path)
    args = parser.parse_args(argv)

    from eqdyn.data.acquire import read_molecules
    from eqdyn.data.download import ArchiveError, ChecksumMismatch, DownloadError, fetch_source

    config = load_data_config(args.config)
    try:
        paths = fetch_source("geom_drugs_download", config["download_dir"])  # verifies the archive's checksum
    except (DownloadError, ChecksumMismatch, ArchiveError) as error:
        raise SystemExit(f"data.source geom_drugs_download: {error}") from None
    arrays, skipped = read_geom_conformers(paths["rdkit_folder.tar.gz"], read_molecules(args.molecules), config)
    save_npz(args.out, **arrays)
    summary = summarise(arrays, skipped)
    write_json(args.summary, summary)
    log(
        f"GEOM conformers: {summary['molecules']} molecules, {summary['conformers']} conformers; skipped "
        f"{summary['molecules_skipped_by_reason']}"
    )


if __name__ == "__main__":
    main()
