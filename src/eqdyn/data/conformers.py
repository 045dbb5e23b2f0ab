"""Conformers of one shard: RDKit ETKDGv3 embedding + MMFF94 minimisation, deterministic for a given seed.

Each molecule of the shard (``molecule_id % shards == shard``) is rebuilt from its SMILES with explicit
hydrogens, filtered (elements, heavy atoms), checked for MMFF94 parameters, embedded with
``conformers_per_molecule`` ETKDGv3 conformers (seed from (master seed, molecule_id); one thread, so the result
does not depend on the machine) and each conformer minimised with MMFF94. Conformers whose minimisation does not
converge are dropped (counted); a molecule left with none is skipped. Every skipped molecule is written to the
shard's skipped CSV with its reason: one bad molecule never stops the run and none disappears silently.

Shard file (intermediate, read by :mod:`eqdyn.data.labels` and :mod:`eqdyn.data.datasets`), one row per conformer:
``positions`` float64 [C, N, 3] Å (MMFF minima, not centred), ``atomic_numbers`` int64 [C, N] (0 = padding),
``mask`` bool [C, N], ``bonds`` int64 [C, E, 3] (-1 padding), ``molecule_id``/``conformer_id`` int64 [C],
``mmff_energy`` float64 [C] kcal/mol, ``smiles`` str [C]; scalars ``molecules_attempted``,
``conformers_not_converged``, ``conformers_not_embedded`` (conformers of kept molecules that are missing).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem
from rdkit.Chem import rdDistGeom, rdForceFieldHelpers

from eqdyn.data.acquire import read_molecules
from eqdyn.data.common import (
    EMBED_FAILED,
    MMFF_NOT_CONVERGED,
    NO_MMFF_PARAMS,
    Skip,
    bond_table,
    derive_seed,
    load_data_config,
    log,
    molecule_atomic_numbers,
    pad_stack,
    prepare_configured,
    quiet_rdkit,
    write_skipped_csv,
)
from eqdyn.io import save_npz
from eqdyn.provenance import write_provenance

MMFF_MAX_ITERS = 2000


@dataclass
class Conformers:
    positions: list[np.ndarray]  # each [n_atoms, 3], Å
    energies: list[float]  # MMFF94 energy at the minimum, kcal/mol
    not_converged: int
    not_embedded: int  # ETKDG may return fewer conformers than asked for


def embed_and_minimise(mol: Chem.Mol, count: int, seed: int) -> Conformers | Skip:
    """ETKDGv3 conformers of ``mol`` (with explicit H), each minimised with MMFF94; or the reason it failed."""
    if not rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
        elements = ",".join(sorted({atom.GetSymbol() for atom in mol.GetAtoms()}))
        return Skip(NO_MMFF_PARAMS, f"MMFF94 lacks parameters for an atom type (elements {elements})")
    params = rdDistGeom.ETKDGv3()
    # rdkit's stub declares property setters as (*args), so mypy takes EmbedParameters as their value type.
    params.randomSeed = seed  # type: ignore[assignment]
    params.numThreads = 1  # type: ignore[assignment]
    conformer_ids = list(rdDistGeom.EmbedMultipleConfs(mol, numConfs=count, params=params))
    if not conformer_ids:
        # Standard RDKit fallback for strained systems: start from random coordinates (still seeded).
        params.useRandomCoords = True  # type: ignore[assignment]
        conformer_ids = list(rdDistGeom.EmbedMultipleConfs(mol, numConfs=count, params=params))
    if not conformer_ids:
        return Skip(EMBED_FAILED, "ETKDGv3 produced no conformer (also with random coordinates)")
    results = rdForceFieldHelpers.MMFFOptimizeMoleculeConfs(
        mol, numThreads=1, maxIters=MMFF_MAX_ITERS, mmffVariant="MMFF94"
    )
    conformers = Conformers(positions=[], energies=[], not_converged=0, not_embedded=count - len(conformer_ids))
    for conformer_id, (not_converged, energy) in zip(conformer_ids, results, strict=True):
        if not_converged:
            conformers.not_converged += 1
            continue
        conformers.positions.append(mol.GetConformer(conformer_id).GetPositions().astype(np.float64))
        conformers.energies.append(float(energy))
    if not conformers.positions:
        return Skip(MMFF_NOT_CONVERGED, f"no conformer converged in {MMFF_MAX_ITERS} MMFF iterations")
    return conformers


@dataclass
class ShardResult:
    rows: dict[str, list] = field(
        default_factory=lambda: {
            key: []
            for key in ("positions", "atomic_numbers", "bonds", "molecule_id", "conformer_id", "energy", "smiles")
        }
    )
    skipped: list[tuple[int, str, str, str]] = field(default_factory=list)
    attempted: int = 0
    not_converged: int = 0
    not_embedded: int = 0

    def arrays(self) -> dict[str, np.ndarray]:
        rows = self.rows
        n_max = max((len(z) for z in rows["atomic_numbers"]), default=0)
        e_max = max((len(b) for b in rows["bonds"]), default=0)
        atomic_numbers = pad_stack(rows["atomic_numbers"], n_max, 0, np.int64)
        return {
            "positions": pad_stack(rows["positions"], n_max, 0.0, np.float64, (3,)),
            "atomic_numbers": atomic_numbers,
            "mask": atomic_numbers > 0,
            "bonds": pad_stack(rows["bonds"], e_max, -1, np.int64, (3,)),
            "molecule_id": np.asarray(rows["molecule_id"], dtype=np.int64),
            "conformer_id": np.asarray(rows["conformer_id"], dtype=np.int64),
            "mmff_energy": np.asarray(rows["energy"], dtype=np.float64),
            "smiles": np.asarray(rows["smiles"], dtype=str),
            "molecules_attempted": np.asarray(self.attempted, dtype=np.int64),
            "conformers_not_converged": np.asarray(self.not_converged, dtype=np.int64),
            "conformers_not_embedded": np.asarray(self.not_embedded, dtype=np.int64),
        }


def process_molecules(molecules: pd.DataFrame, config: dict, progress_every: int | None = 25) -> ShardResult:
    """Conformers for every row of ``molecules`` (columns molecule_id, smiles); progress_every=None is silent."""
    quiet_rdkit()
    result = ShardResult()
    started = time.monotonic()
    total = len(molecules)
    for position, (molecule_id, smiles) in enumerate(zip(molecules["molecule_id"], molecules["smiles"], strict=True)):
        molecule_id = int(molecule_id)
        result.attempted += 1
        prepared = prepare_configured(smiles, config)
        outcome: Conformers | Skip
        if isinstance(prepared, Skip):
            outcome = prepared
        else:
            mol = prepared
            seed = derive_seed(config["seed"], "conformers", molecule_id)
            outcome = embed_and_minimise(mol, config["conformers_per_molecule"], seed)
        if isinstance(outcome, Skip):
            result.skipped.append((molecule_id, smiles, outcome.reason, outcome.detail))
        else:
            result.not_converged += outcome.not_converged
            result.not_embedded += outcome.not_embedded
            numbers = molecule_atomic_numbers(mol)
            bonds = bond_table(mol)
            for conformer_id, (positions, energy) in enumerate(zip(outcome.positions, outcome.energies, strict=True)):
                result.rows["positions"].append(positions)
                result.rows["atomic_numbers"].append(numbers)
                result.rows["bonds"].append(bonds)
                result.rows["molecule_id"].append(molecule_id)
                result.rows["conformer_id"].append(conformer_id)
                result.rows["energy"].append(energy)
                result.rows["smiles"].append(smiles)
        done = position + 1
        if progress_every is not None and (done % progress_every == 0 or done == total):
            elapsed = time.monotonic() - started
            log(
                f"{done}/{total} molecules, {len(result.rows['energy'])} conformers, {len(result.skipped)} skipped; "
                f"{done / elapsed:.1f} molecules/s, {len(result.rows['energy']) / elapsed:.1f} conformers/s"
            )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--molecules", required=True, type=Path)
    parser.add_argument("--shard", required=True, type=int)
    parser.add_argument("--out", required=True, type=Path, help="shard .npz")
    parser.add_argument("--skipped", required=True, type=Path, help="shard skipped CSV")
    parser.add_argument("--provenance", required=True, type=Path)
    args = parser.parse_args(argv)

    config = load_data_config(args.config)
    if not 0 <= args.shard < config["shards"]:
        raise SystemExit(f"--shard {args.shard} outside 0..{config['shards'] - 1}")
    molecules = read_molecules(args.molecules)
    shard = molecules[molecules["molecule_id"] % config["shards"] == args.shard]
    log(f"shard {args.shard}/{config['shards']}: {len(shard)} molecules")
    result = process_molecules(shard, config)
    save_npz(args.out, **result.arrays())
    write_skipped_csv(args.skipped, result.skipped)
    write_provenance(args.provenance, {"step": "data.conformers", "shard": args.shard, "data": config})
    log(f"kept {result.attempted - len(result.skipped)} molecules; skipped {len(result.skipped)}")


if __name__ == "__main__":
    main()
