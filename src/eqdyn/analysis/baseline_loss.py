"""The held-out loss of the best constant model of a task: ``python -m eqdyn.analysis.baseline_loss``.

What a trained model's loss is compared with before its L_equiv share means anything. A model that ignores its input
and returns one constant c per output part has, on the decomposition's examples (same ids, keyed noise and frames):

- for a part that a rotation changes (forces, velocities, grids): c = 0. The decomposition reads a model's prediction
  back through rho(g)^-1, and the rotation average of rho(g)^-1 c is 0, so 0 is the constant the twirl makes of any
  other; its loss is the part's mean squared target, whatever the rotations.
- for an invariant part (the energy): the best constant in hindsight, c* = argmin_c of the held-out loss (exact: the
  loss is quadratic in c, so three evaluations at c = -1, 0, 1 fix it). Fitted on the held-out examples themselves,
  so the baseline is as low as any constant can get: a run judged against it is not flattered.

A run sitting on the plateau of a trivial predictor (a force field that predicts zero forces and a constant energy)
has L_total close to this value and an L_equiv share that says nothing about learned equivariance; the claims read
the 2% rule only at checkpoints well below it (:data:`eqdyn.figures.learned.LEARNED_FRACTION`).

Output: one tidy CSV, a row per part (and "all", their sum, where there are several): the constant's loss with its
standard error over examples, n, and the constant (empty for "all").
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eqdyn.analysis.checkpoint_decomposition import load_evaluation_batches
from eqdyn.decomposition import EvaluationBatch
from eqdyn.io import write_csv
from eqdyn.tasks import Task, build_task

logger = logging.getLogger(__name__)
COLUMNS = ("task", "part", "quantity", "value", "stderr", "n", "constant")
QUANTITY = "constant_model_loss"


def invariant_parts(task: Task, batches: list[EvaluationBatch]) -> set[str]:
    """The output parts that every evaluation rotation leaves unchanged on every held-out target."""
    changed: set[str] = set()
    for batch in batches:
        target = batch.example.target
        for k in range(batch.rotations.shape[1]):
            rotated = task.act_on_outputs(target, batch.rotations[:, k])
            changed |= {part for part in task.output_parts if not torch.allclose(rotated[part], target[part])}
    return set(task.output_parts) - changed


def part_losses(task: Task, batches: list[EvaluationBatch], constants: dict[str, float]) -> dict[str, Tensor]:
    """Per-example loss [n] of each part for the model that predicts ``constants[part]`` everywhere."""
    losses: dict[str, list[Tensor]] = {part: [] for part in task.output_parts}
    for batch in batches:
        target = batch.example.target
        diff = {part: torch.full_like(target[part], constants[part]) - target[part] for part in task.output_parts}
        for part, values in task.squared_norms(diff, batch.example.inputs).items():
            losses[part].append(values.double())
    return {part: torch.cat(values) for part, values in losses.items()}


def best_constants(task: Task, batches: list[EvaluationBatch]) -> dict[str, float]:
    """0 for the parts a rotation changes; the loss-minimising constant for the invariant ones."""
    constants = dict.fromkeys(task.output_parts, 0.0)
    for part in invariant_parts(task, batches):
        # the mean loss is a c^2 + b c + d: three evaluations fix it (exact for any squared-norm loss)
        at = {c: float(part_losses(task, batches, {**constants, part: c})[part].mean()) for c in (-1.0, 0.0, 1.0)}
        a = (at[1.0] + at[-1.0]) / 2 - at[0.0]
        b = (at[1.0] - at[-1.0]) / 2
        constants[part] = -b / (2 * a) if a > 0 else 0.0
    return constants


def constant_model_rows(task: Task, batches: list[EvaluationBatch]) -> list[dict[str, Any]]:
    """Tidy rows (:data:`COLUMNS`): the best constant model's held-out loss per part, and "all" for several parts."""
    if not batches:
        raise ValueError("no evaluation examples")
    constants = best_constants(task, batches)
    losses = part_losses(task, batches, constants)
    if len(losses) > 1:
        losses["all"] = sum(losses.values(), torch.zeros_like(next(iter(losses.values()))))
    rows = []
    for part, values in losses.items():
        n = len(values)
        stderr = float(values.std(unbiased=True) / np.sqrt(n)) if n > 1 else float("nan")
        rows.append(
            {
                "task": task.name,
                "part": part,
                "quantity": QUANTITY,
                "value": float(values.mean()),
                "stderr": stderr,
                "n": n,
                "constant": constants.get(part, ""),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="task name")
    parser.add_argument("--task-settings", type=Path, required=True, help="JSON with the task's settings")
    parser.add_argument("--split", type=Path, required=True, help="held-out split (.npz)")
    parser.add_argument("--rotations", type=Path, required=True, help="the task's evaluation rotations (.npz)")
    parser.add_argument("--out", type=Path, required=True, help="tidy CSV")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    task = build_task(args.task, **json.loads(args.task_settings.read_text()))
    # double precision: the constant is fitted from three loss values, and nothing here is a model
    batches = load_evaluation_batches(task, args.split, args.rotations, 64, torch.float64)
    rows = constant_model_rows(task, batches)
    for row in rows:
        logger.info(
            "%s %s: constant-model loss %.4g +- %.2g (n=%d)",
            task.name,
            row["part"],
            row["value"],
            row["stderr"],
            row["n"],
        )
    write_csv(args.out, rows, COLUMNS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
