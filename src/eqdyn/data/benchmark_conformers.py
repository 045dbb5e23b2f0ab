"""Benchmark of conformer preparation (ETKDGv3 + MMFF94): conformers per second on 1 and on k worker processes.

Uses a fixed set of QM9 molecules (the first ``--molecules`` of the seed-0 acquisition permutation, <= 9 heavy
atoms) and the pipeline's code path (:func:`eqdyn.data.conformers.process_molecules`). Two ways to use k cores:
``static`` deals molecules round-robin to k processes, as the pipeline's shards do (a slow molecule, e.g. one
that fails to embed after many attempts, holds up its shard); ``dynamic`` hands out one molecule at a time.
Prints a table; not a test. Usage: ``python -m eqdyn.data.benchmark_conformers --molecules 60 --workers 2``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from dataclasses import dataclass

import pandas as pd

from eqdyn.data.acquire import draw_subset
from eqdyn.data.conformers import process_molecules
from eqdyn.data.sources import read_embedded

BASE_CONFIG = {"seed": 0, "elements": ["H", "C", "N", "O", "F"], "max_heavy_atoms": 9}


def _run(args: tuple[pd.DataFrame, dict]) -> int:
    molecules, config = args
    return len(process_molecules(molecules, config, progress_every=None).rows["energy"])


def timed(molecules: pd.DataFrame, config: dict, workers: int, mode: str) -> tuple[float, int]:
    """Wall time and number of conformers made with ``workers`` processes."""
    if workers == 1:
        parts = [(molecules, config)]
    elif mode == "static":
        parts = [(molecules.iloc[w::workers], config) for w in range(workers)]
    else:
        parts = [(molecules.iloc[[i]], config) for i in range(len(molecules))]
    started = time.perf_counter()
    if workers == 1:
        made = _run(parts[0])
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            made = sum(pool.imap_unordered(_run, parts, chunksize=1))
    return time.perf_counter() - started, made


@dataclass(frozen=True)
class ScalingRow:
    workers: int
    mode: str
    conformers: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.conformers / self.seconds


def measure_scaling(molecules: int, conformers: int, workers: int, repeats: int) -> list[ScalingRow]:
    """Serial, static (the pipeline's shards) and dynamic on ``workers`` processes: best wall time of ``repeats``."""
    table = draw_subset(read_embedded("qm9"), "qm9", molecules, seed=0).molecules
    config = {**BASE_CONFIG, "conformers_per_molecule": conformers}
    _run((table.iloc[:5], config))  # warm-up: imports and RDKit initialisation
    rows = []
    for count, mode in [(1, "serial"), (workers, "static"), (workers, "dynamic")]:
        best, made = min(timed(table, config, count, mode) for _ in range(repeats))
        rows.append(ScalingRow(count, mode, made, best))
    if len({row.conformers for row in rows}) != 1:
        raise RuntimeError(f"settings made different numbers of conformers: {rows}")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", type=int, default=60)
    parser.add_argument("--conformers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per setting")
    args = parser.parse_args(argv)

    rows = measure_scaling(args.molecules, args.conformers, args.workers, args.repeats)
    base = rows[0].rate
    print(
        f"conformer benchmark: {args.molecules} QM9 molecules x {args.conformers} conformers, best of "
        f"{args.repeats}; {os.cpu_count()} CPUs visible"
    )
    header = ("workers", "mode", "conformers", "seconds", "conf/s", "conf/s/core", "speed-up")
    print("".join(f"{title:>12}" for title in header))
    for row in rows:
        values = (
            row.workers,
            row.mode,
            row.conformers,
            f"{row.seconds:.2f}",
            f"{row.rate:.1f}",
            f"{row.rate / row.workers:.1f}",
            f"{row.rate / base:.2f}",
        )
        print("".join(f"{value:>12}" for value in values))
    print(f"mean ms per conformer on one core: {1000 / base:.1f}")


if __name__ == "__main__":
    main()
