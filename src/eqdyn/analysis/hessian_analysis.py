"""Hessian conditioning of L_mean and L_equiv at chosen checkpoints: ``python -m eqdyn.analysis.hessian_analysis``.

For each chosen checkpoint and each repeat r (a different batch of held-out examples and fresh rotations, so the
spread over repeats is the uncertainty over resampled batches and rotations), on a fixed batch of B examples with
K Haar rotations each (the voxel task: the 24 cube rotations in each example's frame), model in eval mode, float32,
math attention, no autocast:

- the top-k eigenvalues of H_mean and H_equiv (Lanczos), kappa_10 / kappa_100 = lambda_1 / lambda_k (where k <= the
  eigenvalues computed), sharpness lambda_max / L, trace per parameter (Hutchinson);
- the spectral density by stochastic Lanczos quadrature.

With ``--stability-out`` the last chosen checkpoint is analysed at the configured B and K and with both doubled:
conditioning numbers that change when the batch or the number of rotations doubles would be artefacts of the
estimator's rank (at most about B * K * outputs), not properties of the loss.

Outputs (tidy CSV): run, step, loss, quantity, index, value, stderr, repeats; and a density table run, step, loss,
eigenvalue, density (the average over repeats of Gaussian-broadened SLQ quadratures).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eqdyn.analysis.cli import add_run_arguments, open_run
from eqdyn.analysis.conditioning import conditioning_rows
from eqdyn.analysis.hessian import FixedBatchLosses
from eqdyn.analysis.lanczos import broadened_density, hutchinson_trace, stochastic_lanczos_quadrature, top_eigenvalues
from eqdyn.decomposition import make_evaluation_example, make_evaluation_rotations
from eqdyn.io import write_csv
from eqdyn.molecules import MoleculeDataset
from eqdyn.tasks import Task
from eqdyn.training.train import load_checkpoint

COLUMNS = ("run", "step", "loss", "quantity", "index", "value", "stderr", "repeats")
DENSITY_COLUMNS = ("run", "step", "loss", "eigenvalue", "density")
LOSSES = ("mean", "equiv")
DENSITY_GRID_POINTS = 300


def chosen_steps(available: list[int], fractions: list[float], total: int) -> list[int]:
    """For each fraction of training, the first checkpoint at or after fraction * total steps (at least step 1)."""
    steps = []
    for fraction in fractions:
        target = max(1, round(fraction * total))
        candidates = [step for step in available if step >= target]
        steps.append(min(candidates) if candidates else max(available))
    return sorted(set(steps))


def fixed_batch(
    task: Task, dataset: MoleculeDataset, repeat: int, batch_size: int, num_rotations: int, seed: int
) -> tuple[Any, torch.Tensor, bool]:
    """Repeat r's batch: examples r*B..(r+1)*B-1 of a seeded permutation of the split, rotations keyed by seed + r."""
    order = np.random.default_rng(seed).permutation(len(dataset))
    rows = order[(repeat * batch_size) % len(dataset) :][:batch_size]
    if len(rows) < batch_size:
        rows = np.concatenate([rows, order[: batch_size - len(rows)]])
    molecules = dataset.batch(rows).to(dtype=torch.float32)
    evaluation = make_evaluation_rotations(task, molecules.example_id.numpy(), seed + 1000 * (repeat + 1),
                                           num_rotations)  # fmt: skip
    example, rotations = make_evaluation_example(task, molecules, evaluation, seed + repeat)
    return example, rotations.to(torch.float32), evaluation.enumerated


def analyse(losses: FixedBatchLosses, loss: str, settings: dict[str, Any], seed: int) -> tuple[list[dict], Any]:
    operator = losses.operator(loss)
    k = min(settings["top_k"], losses.dim)
    top = top_eigenvalues(operator, losses.dim, k, settings["lanczos_steps"], seed, losses.dtype, losses.device)
    trace = hutchinson_trace(operator, losses.dim, settings["trace_probes"], seed, dtype=losses.dtype,
                             device=losses.device)  # fmt: skip
    quadrature = stochastic_lanczos_quadrature(operator, losses.dim, settings["slq_probes"], settings["slq_steps"],
                                               seed, dtype=losses.dtype, device=losses.device)  # fmt: skip
    rows = conditioning_rows(top.values, losses.value(loss), losses.dim, trace)
    rows += [{"quantity": "eigenvalue", "index": i + 1, "value": float(v)} for i, v in enumerate(top.values)]
    rows.append({"quantity": "max_ritz_residual", "value": float(top.residuals.max())})
    return rows, quadrature


def aggregate(per_repeat: list[list[dict]], run: str, step: int, loss: str) -> list[dict]:
    """Mean and standard error over repeats of every (quantity, index)."""
    grouped: dict[tuple[str, Any], list[float]] = {}
    for rows in per_repeat:
        for row in rows:
            grouped.setdefault((row["quantity"], row.get("index", "")), []).append(float(row["value"]))
    out = []
    for (quantity, index), values in grouped.items():
        array = np.array(values)
        finite = array[np.isfinite(array)]
        value = float(finite.mean()) if len(finite) else float("nan")
        stderr = float(finite.std(ddof=1) / np.sqrt(len(finite))) if len(finite) > 1 else ""
        out.append({"run": run, "step": step, "loss": loss, "quantity": quantity, "index": index, "value": value,
                    "stderr": stderr, "repeats": len(finite)})  # fmt: skip
    return out


def analyse_checkpoint(
    task: Task, model: torch.nn.Module, dataset: MoleculeDataset, settings: dict[str, Any], batch_size: int,
    num_rotations: int, run: str, step: int,
) -> tuple[list[dict], list[dict]]:  # fmt: skip
    rows, density_rows = [], []
    per_loss: dict[str, list[list[dict]]] = {loss: [] for loss in LOSSES}
    quadratures: dict[str, list[Any]] = {loss: [] for loss in LOSSES}
    for repeat in range(settings["repeats"]):
        example, rotations, enumerated = fixed_batch(task, dataset, repeat, batch_size, num_rotations,
                                                     settings["seed"])  # fmt: skip
        device = next(model.parameters()).device
        losses = FixedBatchLosses(task, model, example.to(device), rotations.to(device), enumerated)
        for loss in LOSSES:
            loss_rows, quadrature = analyse(losses, loss, settings, settings["seed"] + repeat)
            per_loss[loss].append(loss_rows)
            quadratures[loss].append(quadrature)
    for loss in LOSSES:
        rows += aggregate(per_loss[loss], run, step, loss)
        nodes = torch.cat([q.nodes[q.weights > 0] for q in quadratures[loss]])
        low, high = float(nodes.min()), float(nodes.max())
        span = max(high - low, 1e-12)
        grid = torch.linspace(low - 0.05 * span, high + 0.05 * span, DENSITY_GRID_POINTS, dtype=torch.float64)
        density = torch.stack([broadened_density(q, grid, sigma=span / 100) for q in quadratures[loss]]).mean(0)
        density_rows += [{"run": run, "step": step, "loss": loss, "eigenvalue": float(x), "density": float(d)}
                         for x, d in zip(grid, density, strict=True)]  # fmt: skip
    return rows, density_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--split", type=Path, required=True, help="held-out split the batches are drawn from")
    parser.add_argument("--settings", type=Path, required=True, help="JSON: the config's hessian section")
    parser.add_argument("--out", type=Path, default=None, help="conditioning table (with --density-out)")
    parser.add_argument("--density-out", type=Path, default=None)
    parser.add_argument("--stability-out", type=Path, default=None, help="the B and K doubling check")
    args = parser.parse_args(argv)
    run, manifest, task, device = open_run(args)
    settings = json.loads(args.settings.read_text())
    dataset = MoleculeDataset.load(args.split)
    files = {entry["step"]: entry["file"] for entry in manifest["checkpoints"]}
    steps = chosen_steps(sorted(files), settings["checkpoint_fractions"], run["training"]["steps"])
    if (args.out is None) != (args.density_out is None) or (args.out is None and args.stability_out is None):
        parser.error("give --out with --density-out, and/or --stability-out")
    rows, density_rows, stability_rows = [], [], []
    for step in steps if args.out is not None else []:
        model = load_checkpoint(run, args.manifest.parent / files[step], device)
        step_rows, step_density = analyse_checkpoint(task, model, dataset, settings, settings["num_examples"],
                                                     settings["num_rotations"], run["name"], step)  # fmt: skip
        rows += step_rows
        density_rows += step_density
        kappa = {r["loss"]: r["value"] for r in step_rows if r["quantity"] == "kappa_10"}
        print(f"step {step}: kappa_10 mean {kappa.get('mean', float('nan')):.4g}, "
              f"equiv {kappa.get('equiv', float('nan')):.4g}", flush=True)  # fmt: skip
    if args.stability_out is not None:
        step = steps[-1]
        model = load_checkpoint(run, args.manifest.parent / files[step], device)
        for batch, rotations in ((settings["num_examples"], settings["num_rotations"]),
                                 (2 * settings["num_examples"], 2 * settings["num_rotations"])):  # fmt: skip
            design_rows, _ = analyse_checkpoint(task, model, dataset, settings, batch, rotations, run["name"], step)
            stability_rows += [{**r, "batch": batch, "rotations": rotations} for r in design_rows]
        write_csv(args.stability_out, stability_rows, (*COLUMNS, "batch", "rotations"))
    if args.out is not None:
        write_csv(args.out, rows, COLUMNS)
        write_csv(args.density_out, density_rows, DENSITY_COLUMNS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
