"""Gradients and parameters over training: ``python -m eqdyn.analysis.gradients``.

At every checkpoint, on a fixed evaluation batch (the first examples of the task's evaluation set, with their
rotations and noise), with respect to all parameters:

- grad_norm_mean, grad_norm_equiv: ||grad L_mean||, ||grad L_equiv||;
- grad_share_equiv = ||grad L_equiv|| / (||grad L_mean|| + ||grad L_equiv||), the share of the total gradient norm
  carried by the equivariance term; grad_cosine = cos(grad L_mean, grad L_equiv);
- batch_loss_mean, batch_loss_equiv and relative_equivariance_error = L_equiv / ||f_bar||^2 on that batch;
- parameter_distance_from_init = ||theta_t - theta_0||;
- nonequivariant_parameter_sq_norm = ||theta_perp||^2 where the model declares a rotation action on its parameters
  (:mod:`eqdyn.analysis.parameter_symmetry`), to test L_equiv against it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from eqdyn.analysis.checkpoint_decomposition import load_evaluation_batches
from eqdyn.analysis.cli import add_run_arguments, open_run
from eqdyn.analysis.hessian import FixedBatchLosses
from eqdyn.analysis.parameter_symmetry import nonequivariant_sq_norm
from eqdyn.checkpoints import load_checkpoint, manifest_checkpoints
from eqdyn.decomposition import decompose_predictions
from eqdyn.io import write_csv

logger = logging.getLogger(__name__)
COLUMNS = ("run", "step", "quantity", "value", "stderr")


def flat_parameters(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def gradient_rows(losses: FixedBatchLosses) -> dict[str, float]:
    grad_mean, grad_equiv = losses.gradient("mean"), losses.gradient("equiv")
    norm_mean, norm_equiv = float(grad_mean.norm()), float(grad_equiv.norm())
    cosine = float(grad_mean @ grad_equiv / (norm_mean * norm_equiv)) if norm_mean * norm_equiv > 0 else float("nan")
    with torch.no_grad():
        predictions = losses.predictions()
        example = losses.example
        result = decompose_predictions(
            losses.task, predictions, example.target, example.inputs, losses.enumerated, example.example_id
        )
    equiv = float(result.quantity("equiv").mean())
    return {
        "grad_norm_mean": norm_mean,
        "grad_norm_equiv": norm_equiv,
        "grad_share_equiv": norm_equiv / (norm_mean + norm_equiv) if norm_mean + norm_equiv > 0 else float("nan"),
        "grad_cosine": cosine,
        "batch_loss_mean": float(result.quantity("mean").mean()),
        "batch_loss_equiv": equiv,
        "relative_equivariance_error": equiv / float(result.quantity("twirl_sq_norm").mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--rotations", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=32, help="examples in the fixed evaluation batch")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run, _, task, device = open_run(args)
    first = load_evaluation_batches(task, args.split, args.rotations, args.batch_size, torch.float32)[0]
    example, rotations = first.example.to(device), first.rotations.to(device)
    initial = None
    rows = []
    for entry in manifest_checkpoints(args.manifest):
        model = load_checkpoint(run, entry.path, device)
        parameters = flat_parameters(model)
        initial = parameters if initial is None else initial
        # the evaluation design (Haar or enumerated cube rotations) is the task's, as the rotations file's is
        values = gradient_rows(FixedBatchLosses(task, model, example, rotations))
        values["parameter_distance_from_init"] = float((parameters - initial).norm())
        perp = nonequivariant_sq_norm(model)
        if perp is not None:
            values["nonequivariant_parameter_sq_norm"] = perp
        rows += [
            {"run": run.name, "step": entry.step, "quantity": q, "value": v, "stderr": ""} for q, v in values.items()
        ]
        logger.info(
            "step %d: grad share of L_equiv %.3g, cosine %.3g",
            entry.step,
            values["grad_share_equiv"],
            values["grad_cosine"],
        )
    write_csv(args.out, rows, COLUMNS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
