"""Decompose the held-out loss of every checkpoint of a run: ``python -m eqdyn.analysis.checkpoint_decomposition``.

For each checkpoint: L_total, L_mean (unbiased), the plug-in L_mean, L_equiv, the percentage 100 L_equiv / L_total,
the relative equivariance error, with standard errors over examples, per output part (and their sum); for flow
matching also per bin of the flow time t. Also the loss of the test-time twirled model with k = 1, 2, 4, ...
rotations beside its exact prediction L_mean + L_equiv / k, and their paired difference (Haar design only; the 24
enumerated cube rotations are not independent draws).

Every checkpoint of every run uses the same examples, example noise and rotations (the task's evaluation file), so
curves are compared with common random numbers. Output: one tidy CSV, a row per (step, part, t bin, quantity, k).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eqdyn.analysis.cli import add_run_arguments, open_run
from eqdyn.decomposition import (
    Decomposition,
    decompose_predictions,
    make_evaluation_example,
    summarize,
    twirled_losses,
    twisted_predictions,
)
from eqdyn.evaluation_rotations import load_evaluation_rotations
from eqdyn.io import write_csv
from eqdyn.molecules import MoleculeDataset
from eqdyn.tasks import Example, Task
from eqdyn.training.train import load_checkpoint

COLUMNS = ("run", "step", "part", "t_bin", "quantity", "k", "value", "stderr", "n")
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
    ks, k = [], 1
    while k <= num_rotations:
        ks.append(k)
        k *= 2
    return ks


def evaluate_checkpoint(
    task: Task, model: torch.nn.Module, batches: list[tuple[Example, torch.Tensor]], enumerated: bool
) -> tuple[Decomposition, dict[int, np.ndarray]]:
    """The decomposition of one model over all evaluation batches, and twirled losses per k (Haar design).

    The model runs on its own device; the (cheap) estimators run on the CPU copies of its predictions."""
    device = next(model.parameters()).device
    results, twirled = [], {}
    for example, rotations in batches:
        with torch.no_grad():
            predictions = twisted_predictions(task, model, example.to(device).inputs, rotations.to(device))
        predictions = {part: value.detach().cpu() for part, value in predictions.items()}
        result = decompose_predictions(task, predictions, example.target, example.inputs, enumerated,
                                       example.example_id)  # fmt: skip
        result.covariates = dict(example.covariates)
        results.append(result)
        if not enumerated:
            for k in twirling_ks(rotations.shape[1]):
                losses = twirled_losses(task, predictions, example.target, example.inputs, k).detach()
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
        predicted = mean + equiv / k
        # the difference is paired per example: its standard error is far smaller than the two added in quadrature
        pairs = (("twirled_loss", losses), ("twirled_loss_predicted", predicted),
                 ("twirled_loss_minus_predicted", losses - predicted))  # fmt: skip
        for quantity, values in pairs:
            stderr = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
            rows.append({"run": run, "step": step, "part": "all", "t_bin": "all", "quantity": quantity, "k": k,
                         "value": float(values.mean()), "stderr": stderr, "n": n})  # fmt: skip
    return rows


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
    parser.add_argument(
        "--evaluations-per-batch", type=int, default=512,
        help="model evaluations (examples x rotations) per forward pass; a speed setting only",
    )  # fmt: skip
    args = parser.parse_args(argv)
    run, manifest, task, device = open_run(args)
    batches, enumerated = load_evaluation_batches(
        task, args.split, args.rotations, None, torch.float32, args.evaluations_per_batch
    )
    rows: list[dict[str, Any]] = []
    for entry in manifest["checkpoints"]:
        model = load_checkpoint(run, args.manifest.parent / entry["file"], device)
        decomposition, twirled = evaluate_checkpoint(task, model, batches, enumerated)
        step_rows = summary_rows(run["name"], entry["step"], decomposition, twirled)
        rows += step_rows
        headline = decomposition.parts[-1]  # "all" when there are several parts, else the only one
        percent = next(r for r in step_rows if r["quantity"] == "equiv_percent" and r["part"] == headline
                       and r["t_bin"] == "all")  # fmt: skip
        print(f"step {entry['step']}: L_equiv = {percent['value']:.3g} +- {percent['stderr']:.2g} % of L_total",
              flush=True)  # fmt: skip
    write_csv(args.out, rows, COLUMNS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
