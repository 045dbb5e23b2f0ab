"""Hessian conditioning of L_mean and L_equiv at chosen checkpoints: ``python -m eqdyn.analysis.hessian_analysis``.

For each chosen checkpoint and each repeat r (a different batch of held-out examples and fresh rotations, so the
spread over repeats is the uncertainty over resampled batches and rotations; both losses of one repeat share its
batch and rotations, so their comparison is paired), on a fixed batch of B examples with K Haar rotations each (the
voxel task: the 24 cube rotations in each example's frame), model in eval mode, float32, math attention, no
autocast:

- the top-k eigenvalues and the smallest eigenvalue of H_mean and H_equiv by Lanczos (``lanczos_steps`` products),
  each checked (:func:`~eqdyn.analysis.lanczos.checked_eigenvalues`) against a run twice as long from another start
  vector: converged = Ritz residual <= 1e-3 |lambda| and agreement within 1%; kappa_10 / kappa_100 =
  lambda_1 / lambda_k (where k <= top_k), converged only if lambda_1 .. lambda_k all are; lambda_max, sharpness
  lambda_max / L, trace per parameter (Hutchinson);
- the spectral density by stochastic Lanczos quadrature, and its negative mass: the quadrature weight on nodes
  below -1e-3 max |node|, the share of the spectrum that is clearly negative (the node that lumps the near-zero
  bulk, null space included, lands on either side of zero and is not counted).

Cost per run, checkpoint, loss and repeat: 3 lanczos_steps + slq_probes * slq_steps + trace_probes products.

With ``--stability-out`` the last chosen checkpoint is analysed at the configured B and K and with both doubled:
conditioning numbers that change when the batch or the number of rotations doubles would be artefacts of the
estimator's rank (at most about B * K * outputs), not properties of the loss.

Conditioning table (tidy CSV), columns run, step, loss, quantity, index, repeat, value, stderr, repeats, ci_low,
ci_high. Rows with a ``repeat`` (0, 1, ...) are one repeat's values (stderr, repeats and the interval empty); rows
with an empty ``repeat`` summarise the repeats: the mean, its standard error, the number of repeats with a finite
value and the 95% t interval mean +- t(0.975, repeats - 1) SE (empty for the 0/1 flags, whose mean is the fraction
of repeats that passed). Quantities (``index`` = the eigenvalue's rank where given):

- ``num_parameters``, ``loss`` (the loss on the batch), ``lambda_max``, ``sharpness`` = lambda_max / loss,
  ``lambda_10`` / ``kappa_10``, ``lambda_100`` / ``kappa_100`` (k <= top_k only), ``trace_per_parameter`` and
  ``trace_per_parameter_stderr`` (over Hutchinson probes);
- convergence: ``eigenvalue`` / ``eigenvalue_check`` / ``eigenvalue_relative_residual`` / ``eigenvalue_converged``
  per rank, ``lambda_max_converged``, ``kappa_10_converged``, ``kappa_100_converged`` (1.0 / 0.0);
- the negative side: ``lambda_min``, ``lambda_min_check``, ``lambda_min_relative_residual``,
  ``lambda_min_converged``, ``negative_mass``;
- ``num_hvps``: the Hessian-vector products of the repeat.

The claims (:func:`eqdyn.figures.claims.hessian_claims`) pair the per-repeat rows of the two losses. Density table:
run, step, loss, eigenvalue, density (the average over repeats of Gaussian-broadened SLQ quadratures).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from eqdyn.analysis.cli import add_run_arguments, open_run
from eqdyn.analysis.conditioning import checked_conditioning_rows
from eqdyn.analysis.hessian import FixedBatchLosses
from eqdyn.analysis.lanczos import (
    broadened_density,
    checked_eigenvalues,
    hutchinson_trace,
    stochastic_lanczos_quadrature,
)
from eqdyn.checkpoints import load_checkpoint
from eqdyn.decomposition import make_evaluation_example, make_evaluation_rotations
from eqdyn.io import write_csv
from eqdyn.molecules import MoleculeDataset
from eqdyn.tasks import Task

LOGGER = logging.getLogger(__name__)
COLUMNS = ("run", "step", "loss", "quantity", "index", "repeat", "value", "stderr", "repeats", "ci_low", "ci_high")
DENSITY_COLUMNS = ("run", "step", "loss", "eigenvalue", "density")
LOSSES = ("mean", "equiv")
DENSITY_GRID_POINTS = 300
# SLQ nodes below -this * max |node| count as negative. A Gauss node that lumps the near-zero bulk (the null space
# and the small curvature around it, hundreds of thousands of eigenvalues) falls on either side of zero by a hair:
# counting it would make the negative mass 0 or ~1 at random
NEGATIVE_NODE_TOLERANCE = 1e-3


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
    evaluation = make_evaluation_rotations(
        task, molecules.example_id.numpy(), seed + 1000 * (repeat + 1), num_rotations
    )
    example, rotations = make_evaluation_example(task, molecules, evaluation, seed + repeat)
    return example, rotations.to(torch.float32), evaluation.enumerated


def analyse(losses: FixedBatchLosses, loss: str, settings: dict[str, Any], seed: int) -> tuple[list[dict], Any]:
    """One loss on one repeat's batch: the rows of the module docstring (no run/step/loss/repeat yet) and its SLQ."""
    operator = losses.operator(loss)
    k = min(settings["top_k"], losses.dim, settings["lanczos_steps"])
    checked = checked_eigenvalues(operator, losses.dim, k, settings["lanczos_steps"], seed, losses.dtype, losses.device)
    trace = hutchinson_trace(
        operator, losses.dim, settings["trace_probes"], seed, dtype=losses.dtype, device=losses.device
    )
    quadrature = stochastic_lanczos_quadrature(
        operator,
        losses.dim,
        settings["slq_probes"],
        settings["slq_steps"],
        seed,
        dtype=losses.dtype,
        device=losses.device,
    )
    rows = checked_conditioning_rows(checked, losses.value(loss), losses.dim, trace)
    scale = float(quadrature.nodes.abs().max())
    negative = quadrature.probe_mass_below(-NEGATIVE_NODE_TOLERANCE * scale)
    rows.append({"quantity": "negative_mass", "value": float(negative.mean())})
    rows.append({"quantity": "num_hvps", "value": float(operator.num_hvps)})
    return rows, quadrature


def t_interval(values: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, standard error and the 95% t interval (t with n - 1 degrees of freedom) of the finite values; nan where
    fewer than two."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return float("nan"), float("nan"), float("nan"), float("nan")
    mean = float(finite.mean())
    if len(finite) < 2:
        return mean, float("nan"), float("nan"), float("nan")
    stderr = float(finite.std(ddof=1) / np.sqrt(len(finite)))
    half = float(stats.t.ppf(0.975, len(finite) - 1)) * stderr
    return mean, stderr, mean - half, mean + half


def _blank(value: float) -> float | str:
    return value if np.isfinite(value) else ""


def aggregate(per_repeat: list[list[dict]], run: str, step: int, loss: str) -> list[dict]:
    """Every repeat's rows (tagged with its ``repeat``), then per (quantity, index) the summary over repeats: mean,
    standard error, finite repeats and the 95% t interval (no interval for the 0/1 flags)."""
    out: list[dict] = []
    grouped: dict[tuple[str, Any], list[float]] = {}
    for repeat, rows in enumerate(per_repeat):
        for row in rows:
            index = row.get("index", "")
            grouped.setdefault((row["quantity"], index), []).append(float(row["value"]))
            out.append(
                {
                    "run": run,
                    "step": step,
                    "loss": loss,
                    "quantity": row["quantity"],
                    "index": index,
                    "repeat": repeat,
                    "value": float(row["value"]),
                    "stderr": "",
                    "repeats": "",
                    "ci_low": "",
                    "ci_high": "",
                }
            )
    for (quantity, index), values in grouped.items():
        array = np.array(values)
        mean, stderr, low, high = t_interval(array)
        flag = quantity.endswith("_converged")
        out.append(
            {
                "run": run,
                "step": step,
                "loss": loss,
                "quantity": quantity,
                "index": index,
                "repeat": "",
                "value": mean,
                "stderr": _blank(stderr),
                "repeats": int(np.isfinite(array).sum()),
                "ci_low": "" if flag else _blank(low),
                "ci_high": "" if flag else _blank(high),
            }
        )
    return out


def analyse_checkpoint(
    task: Task,
    model: torch.nn.Module,
    dataset: MoleculeDataset,
    settings: dict[str, Any],
    batch_size: int,
    num_rotations: int,
    run: str,
    step: int,
) -> tuple[list[dict], list[dict]]:
    rows, density_rows = [], []
    per_loss: dict[str, list[list[dict]]] = {loss: [] for loss in LOSSES}
    quadratures: dict[str, list[Any]] = {loss: [] for loss in LOSSES}
    for repeat in range(settings["repeats"]):
        example, rotations, enumerated = fixed_batch(task, dataset, repeat, batch_size, num_rotations, settings["seed"])
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
        density_rows += [
            {"run": run, "step": step, "loss": loss, "eigenvalue": float(x), "density": float(d)}
            for x, d in zip(grid, density, strict=True)
        ]
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
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run, manifest, task, device = open_run(args)
    settings = json.loads(args.settings.read_text())
    dataset = MoleculeDataset.load(args.split)
    files = {entry["step"]: entry["file"] for entry in manifest["checkpoints"]}
    # fractions of the steps actually trained (a diverged run stops early; one with no checkpoint gets empty tables)
    trained = int(manifest.get("steps_trained", run.training.steps))
    steps = chosen_steps(sorted(files), settings["checkpoint_fractions"], trained) if files else []
    if (args.out is None) != (args.density_out is None) or (args.out is None and args.stability_out is None):
        parser.error("give --out with --density-out, and/or --stability-out")
    rows, density_rows, stability_rows = [], [], []
    for step in steps if args.out is not None else []:
        model = load_checkpoint(run, args.manifest.parent / files[step], device)
        step_rows, step_density = analyse_checkpoint(
            task, model, dataset, settings, settings["num_examples"], settings["num_rotations"], run.name, step
        )
        rows += step_rows
        density_rows += step_density
        summary = {(r["loss"], r["quantity"]): r["value"] for r in step_rows if r["repeat"] == ""}
        for loss in LOSSES:
            LOGGER.info(
                "step %d, L_%s: kappa_10 %.4g (converged in %.0f%% of repeats), lambda_max %.4g, lambda_min %.4g",
                step,
                loss,
                summary.get((loss, "kappa_10"), float("nan")),
                100 * summary.get((loss, "kappa_10_converged"), float("nan")),
                summary.get((loss, "lambda_max"), float("nan")),
                summary.get((loss, "lambda_min"), float("nan")),
            )
    if args.stability_out is not None and steps:
        step = steps[-1]
        model = load_checkpoint(run, args.manifest.parent / files[step], device)
        for batch, rotations in (
            (settings["num_examples"], settings["num_rotations"]),
            (2 * settings["num_examples"], 2 * settings["num_rotations"]),
        ):
            design_rows, _ = analyse_checkpoint(task, model, dataset, settings, batch, rotations, run.name, step)
            stability_rows += [{**r, "batch": batch, "rotations": rotations} for r in design_rows]
    if args.stability_out is not None:
        write_csv(args.stability_out, stability_rows, (*COLUMNS, "batch", "rotations"))
    if args.out is not None:
        write_csv(args.out, rows, COLUMNS)
        write_csv(args.density_out, density_rows, DENSITY_COLUMNS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
