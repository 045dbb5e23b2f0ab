"""Conditioning of the fixed-batch Hessians of L_mean and L_equiv, as tidy rows (docs/maths.md, "Hessians and condition
numbers").

Why not lambda_max / lambda_min: L_equiv has a large null space (every direction that keeps the model as
equivariant as it is, and for an exactly equivariant model its Hessian is zero), and on a fixed batch the
Gauss-Newton part of either Hessian has rank at most about B * K * (outputs per example), far below the number of
parameters (the residual term adds small curvature of any rank). So the smallest eigenvalues are zero up to
rounding or sign noise, and any relative cut-off would decide the answer. Reported instead:

- ``kappa_k = lambda_1 / lambda_k`` for fixed k (10 and 100), only when k <= the number of eigenvalues computed;
  nan when lambda_k <= 0 (then the top-k part of the spectrum is not positive and no ratio is meaningful);
- ``sharpness = lambda_max / L``, scale-free (a loss multiplied by c has its Hessian multiplied by c);
- ``trace_per_parameter = tr(H) / n`` (Hutchinson), with its standard error.

:func:`checked_conditioning_rows` adds the convergence flags of :func:`~eqdyn.analysis.lanczos.checked_eigenvalues`
(1.0 = converged, 0.0 = not): per eigenvalue (``eigenvalue_converged``), ``lambda_max_converged``,
``kappa_k_converged`` (lambda_1 .. lambda_k all converged: a kappa_k without it must not be used), and the negative
side of the spectrum, ``lambda_min`` with ``lambda_min_converged`` (these Hessians are indefinite).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from eqdyn.analysis.hessian import FixedBatchLosses
from eqdyn.analysis.lanczos import CheckedEigenvalues, TraceEstimate, hutchinson_trace, top_eigenvalues

Row = dict[str, str | float]
CONDITION_RANKS = (10, 100)


def conditioning_rows(
    eigenvalues: Tensor,
    loss_value: float,
    dim: int,
    trace: TraceEstimate | None = None,
    ranks: Sequence[int] = CONDITION_RANKS,
) -> list[Row]:
    """Rows (quantity, value) from the top eigenvalues (any order), the loss value and optionally a trace estimate."""
    values = torch.sort(eigenvalues.detach().to(torch.float64).cpu(), descending=True).values
    lambda_max = float(values[0])
    rows: list[Row] = [
        {"quantity": "num_parameters", "value": float(dim)},
        {"quantity": "loss", "value": float(loss_value)},
        {"quantity": "lambda_max", "value": lambda_max},
        {"quantity": "sharpness", "value": lambda_max / loss_value if loss_value != 0 else float("nan")},
    ]
    for rank in ranks:
        if rank > len(values):
            continue
        lambda_k = float(values[rank - 1])
        rows.append({"quantity": f"lambda_{rank}", "value": lambda_k})
        rows.append({"quantity": f"kappa_{rank}", "value": lambda_max / lambda_k if lambda_k > 0 else float("nan")})
    if trace is not None:
        rows.append({"quantity": "trace_per_parameter", "value": trace.value / dim})
        rows.append({"quantity": "trace_per_parameter_stderr", "value": trace.stderr / dim})
    return rows


def checked_conditioning_rows(
    checked: CheckedEigenvalues,
    loss_value: float,
    dim: int,
    trace: TraceEstimate | None = None,
    ranks: Sequence[int] = CONDITION_RANKS,
) -> list[Row]:
    """:func:`conditioning_rows` of the checked top eigenvalues plus, as 1.0 / 0.0 flags and their inputs:

    - per eigenvalue i: ``eigenvalue``, ``eigenvalue_check`` (the check run's), ``eigenvalue_relative_residual``
      (||H y - theta y|| / |theta|), ``eigenvalue_converged``;
    - ``lambda_max_converged``; ``kappa_k_converged`` for each reported kappa_k;
    - ``lambda_min`` (the smallest Ritz value), ``lambda_min_check``, ``lambda_min_relative_residual``,
      ``lambda_min_converged``.
    """
    rows = conditioning_rows(checked.values, loss_value, dim, trace, ranks)
    flags = checked.converged
    rows.append({"quantity": "lambda_max_converged", "value": float(flags[0])})
    for rank in ranks:
        if rank <= len(checked.values):
            rows.append({"quantity": f"kappa_{rank}_converged", "value": float(checked.kappa_converged(rank))})
    smallest_scale = abs(checked.smallest) if checked.smallest != 0 else float("nan")
    rows += [
        {"quantity": "lambda_min", "value": checked.smallest},
        {"quantity": "lambda_min_check", "value": checked.smallest_check},
        {"quantity": "lambda_min_relative_residual", "value": checked.smallest_residual / smallest_scale},
        {"quantity": "lambda_min_converged", "value": float(checked.smallest_converged)},
    ]
    relative = checked.relative_residuals
    for i in range(len(checked.values)):
        rows += [
            {"quantity": "eigenvalue", "index": i + 1, "value": float(checked.values[i])},
            {"quantity": "eigenvalue_check", "index": i + 1, "value": float(checked.check_values[i])},
            {"quantity": "eigenvalue_relative_residual", "index": i + 1, "value": float(relative[i])},
            {"quantity": "eigenvalue_converged", "index": i + 1, "value": float(flags[i])},
        ]
    return rows


def hessian_conditioning(
    losses: FixedBatchLosses,
    loss: str,
    top_k: int = 100,
    lanczos_steps: int | None = None,
    trace_probes: int = 32,
    seed: int = 0,
    ranks: Sequence[int] = CONDITION_RANKS,
    probe_batch: int = 1,
) -> list[Row]:
    """The conditioning rows of one loss's Hessian, each tagged with ``loss``, plus the Ritz residuals of lambda_1
    and lambda_k (check them: an unconverged lambda_k makes kappa_k meaningless) and ``num_hvps``, the products
    used (``lanczos_steps``, default ``max(2 top_k, top_k + 20)``, for the eigenvalues; ``trace_probes`` for the
    trace, ``probe_batch`` of them per vmapped product)."""
    operator = losses.operator(loss)
    top = top_eigenvalues(
        operator, losses.dim, min(top_k, losses.dim), lanczos_steps, seed, losses.dtype, losses.device
    )
    trace = hutchinson_trace(
        operator, losses.dim, trace_probes, seed, dtype=losses.dtype, device=losses.device, probe_batch=probe_batch
    )
    rows = conditioning_rows(top.values, losses.value(loss), losses.dim, trace, ranks)
    # ||H y - theta y|| of the Ritz pairs behind lambda_1 and each lambda_k: a kappa_k is only as good as these
    for rank in (1, *ranks):
        if rank <= len(top.values):
            rows.append({"quantity": f"ritz_residual_{rank}", "value": float(top.residuals[rank - 1])})
    rows.append({"quantity": "num_hvps", "value": float(operator.num_hvps)})
    return [{"loss": loss, **row} for row in rows]
