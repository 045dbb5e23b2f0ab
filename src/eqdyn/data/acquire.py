"""Acquisition: draw ``max_molecules`` molecules from the configured source -> ``data/molecules.csv``.

Columns: ``molecule_id`` (0..M-1), ``source``, ``source_id``, ``smiles``. The subset is the first M entries of a
seeded permutation of the source, so a larger study contains a smaller one with the same seed (nested subsets,
same molecule ids). Conformer shard of a molecule = ``molecule_id % shards``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from eqdyn.data.common import derive_seed, load_data_config, log
from eqdyn.data.sources import read_source
from eqdyn.io import atomic_open
from eqdyn.provenance import write_provenance

MOLECULE_COLUMNS = ("molecule_id", "source", "source_id", "smiles")


def draw_subset(table: pd.DataFrame, source: str, max_molecules: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(derive_seed(seed, "acquire", 0))
    order = rng.permutation(len(table))[:max_molecules]
    chosen = table.iloc[order].reset_index(drop=True)
    return pd.DataFrame(
        {
            "molecule_id": np.arange(len(chosen), dtype=np.int64),
            "source": source,
            "source_id": chosen["source_id"].astype(str),
            "smiles": chosen["smiles"].fillna("").astype(str),
        }
    )[list(MOLECULE_COLUMNS)]


def read_molecules(path: str | Path) -> pd.DataFrame:
    table = pd.read_csv(path, dtype={"source_id": str, "smiles": str}, keep_default_na=False)
    if list(table.columns) != list(MOLECULE_COLUMNS):
        raise ValueError(f"{path}: expected columns {MOLECULE_COLUMNS}, got {tuple(table.columns)}")
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="stage config (results/<study>/configs/data.json)")
    parser.add_argument("--out", required=True, type=Path, help="molecules.csv to write")
    parser.add_argument("--provenance", required=True, type=Path)
    args = parser.parse_args(argv)

    config = load_data_config(args.config)
    started = time.monotonic()
    table = read_source(config["source"], config["download_dir"])
    log(f"source {config['source']}: {len(table)} molecules read in {time.monotonic() - started:.1f} s")
    if config["max_molecules"] > len(table):
        log(f"max_molecules={config['max_molecules']} exceeds the source; taking all {len(table)}")
    molecules = draw_subset(table, config["source"], config["max_molecules"], config["seed"])
    with atomic_open(args.out) as handle:
        molecules.to_csv(handle, index=False, lineterminator="\n")
    write_provenance(args.provenance, {"step": "data.acquire", "data": config})
    log(f"wrote {len(molecules)} molecules to {args.out}")


if __name__ == "__main__":
    main()
