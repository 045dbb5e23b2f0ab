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
"""

from __future__ import annotations

import argparse
import gzip
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from eqdyn.analysis.cli import add_run_arguments, open_run
from eqdyn.decomposition import (
    Decomposition,
    decompose_predictions,
    make_evaluation_example,
    summarize,
    twirled_losses,
    twirling_expectation,
    twisted_predictions,
)
from eqdyn.evaluation_rotations import load_evaluation_rotations
from eqdyn.io import atomic_open, write_csv
from eqdyn.molecules import MoleculeDataset
from eqdyn.tasks import Example, Task
from eqdyn.training.train import load_checkpoint

COLUMNS = ("run", "step", "part", "t_bin", "quantity", "k", "value", "stderr", "n")
# per-example table: these columns, then twirled_<k> for each k (loss of the k-rotation twirl, part "all")
EXAMPLE_COLUMNS = ("run", "step", "example_id", "total")
T_BIN_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def _concatenate(parts: list[Decomposition]) -> Decomposition:
    def cat(name: str) -> dict[str, torch.Tensor]:
        return {part: torch.cat([getattr(d, name)[part] for d in parts]) for part in getattr(parts[0], name)}

    first = parts[0]
    merged = Decomposition(
        torch.cat([d.example_id for d in parts]), first.num_rotations, first.enumerated,
        cat("total"), cat("mean"), cat("mean_plugin"), cat("equiv"), cat("twirl_sq_norm"),
    )  # fmt: skip
    merged.covariates = {key: torch.cat([d.covariates[key] for d in parts]) for key in first.covariates}
    return merged


def twirling_ks(num_rotations: int) -> list[int]:
    """k = 1, 2, 4, ... up to the number of twirling rotations available."""
    ks, k = [], 1
    while k <= num_rotations:
        ks.append(k)
        k *= 2
    return ks


def evaluate_checkpoint(
    task: Task,
    model: torch.nn.Module,
    batches: list[tuple[Example, torch.Tensor]],
    enumerated: bool,
    twirling: list[torch.Tensor] | None = None,
) -> tuple[Decomposition, dict[int, np.ndarray]]:
    """The decomposition of one model over all evaluation batches, and the twirled losses per k [n] where
    ``twirling`` gives each batch its twirling set (:func:`load_twirling`): Haar rotations [B, M, 3, 3] that go
    through the model separately, or an order [B, 24] of the enumerated cube rotations' predictions.

    The model runs on its own device; the (cheap) estimators run on the CPU copies of its predictions."""
    device = next(model.parameters()).device
    results, twirled = [], {}
    for index, (example, rotations) in enumerate(batches):
        inputs = example.to(device).inputs
        with torch.no_grad():
            predictions = twisted_predictions(task, model, inputs, rotations.to(device))
        predictions = {part: value.detach().cpu() for part, value in predictions.items()}
        result = decompose_predictions(task, predictions, example.target, example.inputs, enumerated,
                                       example.example_id)  # fmt: skip
        result.covariates = dict(example.covariates)
        results.append(result)
        if twirling is None:
            continue
        if enumerated:
            twirl_predictions, order = predictions, twirling[index]
        else:
            with torch.no_grad():
                twirl_predictions = twisted_predictions(task, model, inputs, twirling[index].to(device))
            twirl_predictions, order = {part: v.detach().cpu() for part, v in twirl_predictions.items()}, None
        for k in twirling_ks(next(iter(twirl_predictions.values())).shape[1]):
            losses = twirled_losses(task, twirl_predictions, example.target, example.inputs, k, order).detach()
            twirled.setdefault(k, []).append(losses.double().numpy())
    return _concatenate(results), {k: np.concatenate(v) for k, v in twirled.items()}


def summary_rows(run: str, step: int, decomposition: Decomposition, twirled: dict[int, np.ndarray]) -> list[dict]:
    rows: list[dict[str, Any]] = []
    for row in summarize(decomposition):
        rows.append({"run": run, "step": step, "t_bin": "all", "k": "", **row})
    if "t" in decomposition.covariates:
        t = decomposition.covariates["t"].double()
        for low, high in itertools.pairwise(T_BIN_EDGES):
            in_bin = (t >= low) & (t < high)
            for row in summarize(decomposition, in_bin):
                rows.append({"run": run, "step": step, "t_bin": f"[{low:.1f},{high:.1f})", "k": "", **row})
    mean = decomposition.quantity("mean").double().numpy()
    equiv = decomposition.quantity("equiv").double().numpy()
    n = len(mean)
    for k, losses in twirled.items():
        predicted = twirling_expectation(mean, equiv, k, decomposition.enumerated)
        # the difference is paired per example: its standard error is far smaller than the two added in quadrature
        pairs = (("twirled_loss", losses), ("twirled_loss_predicted", predicted),
                 ("twirled_loss_minus_predicted", losses - predicted))  # fmt: skip
        for quantity, values in pairs:
            stderr = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
            rows.append({"run": run, "step": step, "part": "all", "t_bin": "all", "quantity": quantity, "k": k,
                         "value": float(values.mean()), "stderr": stderr, "n": n})  # fmt: skip
    return rows


def example_rows(run: str, step: int, decomposition: Decomposition, twirled: dict[int, np.ndarray]) -> pd.DataFrame:
    """One row per held-out example: its L_total estimate and its twirled loss per k (all output parts summed)."""
    columns: dict[str, Any] = {"run": run, "step": step,
                               "example_id": decomposition.example_id.cpu().numpy().astype(np.int64),
                               "total": decomposition.quantity("total").double().numpy()}  # fmt: skip
    columns.update({f"twirled_{k}": losses for k, losses in sorted(twirled.items())})
    return pd.DataFrame(columns)


def write_example_table(path: Path, tables: list[pd.DataFrame]) -> None:
    """Gzipped CSV with 7 significant digits (ample for paired differences); no name or time in the gzip header, so
    the same numbers give the same bytes."""
    text = pd.concat(tables, ignore_index=True).to_csv(index=False, float_format="%.7g", lineterminator="\n")
    with atomic_open(path, "wb") as handle, gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0) as zipped:
        zipped.write(text.encode())


def load_twirling(rotations_path: Path, batches: list[tuple[Example, torch.Tensor]], dtype: torch.dtype
                  ) -> list[torch.Tensor] | None:  # fmt: skip
    """Each batch's twirling set, matched by example id, or None when the rotations file has none."""
    evaluation, _ = load_evaluation_rotations(rotations_path)
    source = evaluation.twirl_order if evaluation.enumerated else evaluation.twirl_rotations
    if source is None:
        return None
    position = {int(key): row for row, key in enumerate(evaluation.example_id)}
    out = []
    for example, _ in batches:
        rows = np.array([position[int(key)] for key in example.example_id])
        values = torch.from_numpy(source[rows])
        out.append(values if evaluation.enumerated else values.to(dtype))
    return out


def load_evaluation_batches(
    task: Task,
    split_path: Path,
    rotations_path: Path,
    batch_size: int | None,
    dtype: torch.dtype,
    evaluations_per_batch: int | None = None,
) -> tuple[list[tuple[Example, torch.Tensor]], bool]:
    """The evaluation examples in batches of ``batch_size`` examples, or of as many examples as keep the model
    evaluations per batch (examples x rotations) within ``evaluations_per_batch``. Batching changes no number:
    every example's noise and rotations are keyed by its id."""
    if (batch_size is None) == (evaluations_per_batch is None):
        raise ValueError("give exactly one of batch_size and evaluations_per_batch")
    evaluation, seed = load_evaluation_rotations(rotations_path)
    if batch_size is None:
        batch_size = max(1, evaluations_per_batch // evaluation.rotations.shape[1])
    dataset = MoleculeDataset.load(split_path)
    row_of = {int(key): row for row, key in enumerate(dataset.example_id.tolist())}
    missing = [int(key) for key in evaluation.example_id if int(key) not in row_of]
    if missing:
        raise KeyError(f"{rotations_path}: example ids {missing[:5]} are not in {split_path}")
    rows = np.array([row_of[int(key)] for key in evaluation.example_id])
    batches = []
    for start in range(0, len(rows), batch_size):
        molecules = dataset.batch(rows[start : start + batch_size]).to(dtype=dtype)
        example, rotations = make_evaluation_example(task, molecules, evaluation, seed)
        batches.append((example, rotations.to(dtype)))
    return batches, evaluation.enumerated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--split", type=Path, required=True, help="held-out split (.npz)")
    parser.add_argument("--rotations", type=Path, required=True, help="the task's evaluation rotations (.npz)")
    parser.add_argument("--out", type=Path, required=True, help="tidy CSV")
    parser.add_argument("--examples-out", type=Path, default=None, help="per-example losses (.csv.gz)")
    parser.add_argument(
        "--evaluations-per-batch", type=int, default=512,
        help="model evaluations (examples x rotations) per forward pass; a speed setting only",
    )  # fmt: skip
    args = parser.parse_args(argv)
    run, manifest, task, device = open_run(args)
    batches, enumerated = load_evaluation_batches(
        task, args.split, args.rotations, None, torch.float32, args.evaluations_per_batch
    )
    twirling = load_twirling(args.rotations, batches, torch.float32)
    rows: list[dict[str, Any]] = []
    examples: list[pd.DataFrame] = []
    for entry in manifest["checkpoints"]:
        model = load_checkpoint(run, args.manifest.parent / entry["file"], device)
        decomposition, twirled = evaluate_checkpoint(task, model, batches, enumerated, twirling)
        step_rows = summary_rows(run["name"], entry["step"], decomposition, twirled)
        rows += step_rows
        examples.append(example_rows(run["name"], entry["step"], decomposition, twirled))
        headline = decomposition.parts[-1]  # "all" when there are several parts, else the only one
        percent = next(r for r in step_rows if r["quantity"] == "equiv_percent" and r["part"] == headline
                       and r["t_bin"] == "all")  # fmt: skip
        print(f"step {entry['step']}: L_equiv = {percent['value']:.3g} +- {percent['stderr']:.2g} % of L_total",
              flush=True)  # fmt: skip
    write_csv(args.out, rows, COLUMNS)
    if args.examples_out is not None:
        write_example_table(args.examples_out, examples)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
