"""Decompose the held-out loss of every checkpoint of a run: ``python -m eqdyn.analysis.checkpoint_decomposition``.

For each checkpoint: L_total, L_mean (unbiased), the plug-in L_mean, L_equiv, the percentage 100 L_equiv / L_total,
the relative equivariance error, with standard errors over examples, per output part (and their sum); for flow
matching also per bin of the flow time t.

Test-time twirling, where the rotations file holds a twirling set (independent of the estimator's rotations): the
loss of the model averaged over k = 1, 2, 4, ... twirling rotations (Haar design: M keyed Haar rotations cut into
M // k groups; coset design: a keyed order of the 24 cube rotations cut into 24 // k groups, i.e. k drawn without
replacement), beside its expectation from the estimators (L_mean + L_equiv / k, or L_mean + L_equiv (24 - k) / (23 k)
for the cube rotations) and their per-example difference with its paired standard error: a check of the code that
holds for every model.

Every checkpoint of every run uses the same examples, example noise and rotations (the task's evaluation file), so
curves are compared with common random numbers. Output: one tidy CSV, a row per (step, part, t bin, quantity, k);
with ``--examples-out`` also the per-example losses (gzipped CSV, columns :data:`EXAMPLE_COLUMNS` + twirled_<k>), so
that runs of one task can be compared example by example.

Each checkpoint goes through the public :func:`eqdyn.decomposition.decompose` (via
:func:`~eqdyn.decomposition.decompose_batches`), the function users call; this module only adds the run's files.
"""

from __future__ import annotations

import argparse
import gzip
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from eqdyn.analysis.cli import add_run_arguments, open_run
from eqdyn.checkpoints import load_checkpoint, manifest_checkpoints
from eqdyn.decomposition import (
    T_BIN_EDGES,  # noqa: F401 (re-exported: the bins of the t_bin column)
    Decomposition,
    EvaluationBatch,
    decompose_batches,
    evaluation_batches,
    twirling_ks,  # noqa: F401 (re-exported)
)
from eqdyn.evaluation_rotations import load_evaluation_rotations
from eqdyn.io import atomic_open, write_csv
from eqdyn.molecules import MoleculeDataset
from eqdyn.tasks import Task

logger = logging.getLogger(__name__)
COLUMNS = ("run", "step", "part", "t_bin", "quantity", "k", "value", "stderr", "n")
# per-example table: these columns, then twirled_<k> for each k (loss of the k-rotation twirl, part "all")
EXAMPLE_COLUMNS = ("run", "step", "example_id", "total")


def summary_rows(run: str, step: int, decomposition: Decomposition) -> list[dict[str, Any]]:
    """The decomposition's :meth:`~eqdyn.decomposition.Decomposition.summary_rows`, labelled with run and step."""
    return [{"run": run, "step": step, **row} for row in decomposition.summary_rows()]


def example_rows(run: str, step: int, decomposition: Decomposition) -> pd.DataFrame:
    """One row per held-out example: its L_total estimate and its twirled loss per k (all output parts summed)."""
    table = decomposition.examples()
    table.insert(0, "step", step)
    table.insert(0, "run", run)
    return table


def write_example_table(path: Path, tables: list[pd.DataFrame]) -> None:
    """Gzipped CSV with 7 significant digits (ample for paired differences); no name or time in the gzip header, so
    the same numbers give the same bytes."""
    text = pd.concat(tables, ignore_index=True).to_csv(index=False, float_format="%.7g", lineterminator="\n")
    with atomic_open(path, "wb") as handle, gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0) as zipped:
        zipped.write(text.encode())


def load_evaluation_batches(
    task: Task,
    split_path: Path,
    rotations_path: Path,
    batch_size: int | None,
    dtype: torch.dtype,
    evaluations_per_batch: int | None = None,
) -> list[EvaluationBatch]:
    """The evaluation examples of a rotations file (:mod:`eqdyn.evaluation_rotations`) in ``split_path``, with their
    rotations and twirling sets, batched by :func:`eqdyn.decomposition.evaluation_batches`."""
    evaluation, seed = load_evaluation_rotations(rotations_path)
    dataset = MoleculeDataset.load(split_path)
    try:
        return evaluation_batches(task, dataset, evaluation, seed, batch_size, evaluations_per_batch, dtype)
    except (KeyError, ValueError) as error:
        raise type(error)(f"{rotations_path}: {error.args[0]}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--split", type=Path, required=True, help="held-out split (.npz)")
    parser.add_argument("--rotations", type=Path, required=True, help="the task's evaluation rotations (.npz)")
    parser.add_argument("--out", type=Path, required=True, help="tidy CSV")
    parser.add_argument("--examples-out", type=Path, default=None, help="per-example losses (.csv.gz)")
    parser.add_argument(
        "--evaluations-per-batch",
        type=int,
        default=512,
        help="model evaluations (examples x rotations) per forward pass; a speed setting only",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run, _, task, device = open_run(args)
    batches = load_evaluation_batches(task, args.split, args.rotations, None, torch.float32, args.evaluations_per_batch)
    rows: list[dict[str, Any]] = []
    examples: list[pd.DataFrame] = []
    for entry in manifest_checkpoints(args.manifest):
        model = load_checkpoint(run, entry.path, device)
        decomposition = decompose_batches(task, model, batches)  # the public decomposition, on the model's device
        step_rows = summary_rows(run.name, entry.step, decomposition)
        rows += step_rows
        examples.append(example_rows(run.name, entry.step, decomposition))
        headline = decomposition.parts[-1]  # "all" when there are several parts, else the only one
        percent = next(
            r for r in step_rows if r["quantity"] == "equiv_percent" and r["part"] == headline and r["t_bin"] == "all"
        )
        logger.info("step %d: L_equiv = %.3g +- %.2g %% of L_total", entry.step, percent["value"], percent["stderr"])
    write_csv(args.out, rows, COLUMNS)
    if args.examples_out is not None:
        write_example_table(args.examples_out, examples)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
