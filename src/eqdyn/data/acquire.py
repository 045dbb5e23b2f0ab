"""Acquisition: draw ``max_molecules`` distinct molecules from the configured source -> ``data/molecules.csv``.

Columns: ``molecule_id`` (0..M-1), ``source``, ``source_id``, ``smiles``. The subset is the first M distinct
molecules of a seeded permutation of the source, so a larger study contains a smaller one with the same seed
(nested subsets, same molecule ids). Distinct means a different canonical SMILES (RDKit; SMILES that do not parse
are compared as written): a later copy of a molecule already drawn is passed over and listed in
``data/duplicates.csv`` (counted in ``skipped_summary.json``), so that no molecule lands in two splits. Conformer
shard of a molecule = ``molecule_id % shards``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from eqdyn.data.common import canonical_smiles, derive_seed, load_data_config, log, quiet_rdkit
from eqdyn.data.download import ArchiveError, ChecksumMismatch, DownloadError
from eqdyn.data.sources import read_source
from eqdyn.data.user_molecules import SmilesFileError, source_label, source_problem
from eqdyn.io import atomic_open, sha256_file
from eqdyn.provenance import write_provenance

MOLECULE_COLUMNS = ("molecule_id", "source", "source_id", "smiles")
DUPLICATE_COLUMNS = ("source_id", "smiles", "canonical_smiles", "duplicate_of_molecule_id", "duplicate_of_source_id")


@dataclass(frozen=True)
class Subset:
    molecules: pd.DataFrame  # MOLECULE_COLUMNS
    duplicates: pd.DataFrame  # DUPLICATE_COLUMNS: the copies passed over while drawing


def draw_subset(table: pd.DataFrame, source: str, max_molecules: int, seed: int) -> Subset:
    """The first ``max_molecules`` distinct molecules of a seeded permutation of ``table``."""
    quiet_rdkit()
    rng = np.random.default_rng(derive_seed(seed, "acquire", 0))
    order = rng.permutation(len(table))
    smiles_column = table["smiles"].fillna("").astype(str).to_numpy()
    ids = table["source_id"].astype(str).to_numpy()
    chosen: list[int] = []
    first_of: dict[str, int] = {}  # duplicate key -> molecule_id
    duplicates = []
    for row in order:
        if len(chosen) == max_molecules:
            break
        smiles = smiles_column[row]
        canonical = canonical_smiles(smiles)
        key = canonical if canonical is not None else f"unparsed:{smiles}"
        if key in first_of:
            original = first_of[key]
            duplicates.append((ids[row], smiles, canonical or "", original, ids[chosen[original]]))
            continue
        first_of[key] = len(chosen)
        chosen.append(int(row))
    molecules = pd.DataFrame(
        {
            "molecule_id": np.arange(len(chosen), dtype=np.int64),
            "source": source,
            "source_id": ids[chosen] if chosen else np.asarray([], dtype=str),
            "smiles": smiles_column[chosen] if chosen else np.asarray([], dtype=str),
        }
    )[list(MOLECULE_COLUMNS)]
    return Subset(molecules, pd.DataFrame(duplicates, columns=list(DUPLICATE_COLUMNS)))


def read_molecules(path: str | Path) -> pd.DataFrame:
    table = pd.read_csv(path, dtype={"source_id": str, "smiles": str}, keep_default_na=False)
    if list(table.columns) != list(MOLECULE_COLUMNS):
        raise ValueError(f"{path}: expected columns {MOLECULE_COLUMNS}, got {tuple(table.columns)}")
    return table


def read_duplicates(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"source_id": str, "smiles": str, "canonical_smiles": str}, keep_default_na=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="stage config (results/<study>/configs/data.json)")
    parser.add_argument("--out", required=True, type=Path, help="molecules.csv to write")
    parser.add_argument("--duplicates", required=True, type=Path, help="duplicates.csv to write")
    parser.add_argument("--provenance", required=True, type=Path)
    args = parser.parse_args(argv)

    config = load_data_config(args.config)
    problem = source_problem(config["source"])  # also checked at config validation; a hand-written config too
    if problem:
        raise SystemExit(f"data.source: {problem}")
    label = source_label(config["source"])
    started = time.monotonic()
    try:
        table = read_source(config["source"], config["download_dir"])
    except (DownloadError, ChecksumMismatch, ArchiveError, SmilesFileError) as error:
        raise SystemExit(f"data.source {label}: {error}") from None  # a message, not a traceback
    log(f"source {label}: {len(table)} molecules read in {time.monotonic() - started:.1f} s")
    subset = draw_subset(table, label, config["max_molecules"], config["seed"])
    if config["max_molecules"] > len(subset.molecules):
        log(
            f"max_molecules={config['max_molecules']} exceeds the distinct molecules drawn; taking all "
            f"{len(subset.molecules)}"
        )
    with atomic_open(args.out) as handle:
        subset.molecules.to_csv(handle, index=False, lineterminator="\n")
    with atomic_open(args.duplicates) as handle:
        subset.duplicates.to_csv(handle, index=False, lineterminator="\n")
    record = {"step": "data.acquire", "data": config}
    if isinstance(config["source"], dict):
        record["smiles_file_sha256"] = sha256_file(config["source"]["smiles_file"])
    write_provenance(args.provenance, record)
    log(f"wrote {len(subset.molecules)} molecules to {args.out}; {len(subset.duplicates)} duplicates passed over")


if __name__ == "__main__":
    main()
