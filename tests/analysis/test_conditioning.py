"""Conditioning rows: fixed-rank condition numbers only, scale-free sharpness, through a real tiny model."""

from __future__ import annotations

import math

import torch
from hessian_testing import TINY_CASES, small_parameter_names, tiny_losses, tiny_model

from eqdyn.analysis import TraceEstimate, conditioning_rows, hessian_conditioning


def as_dict(rows: list[dict[str, str | float]]) -> dict[str, float]:
    return {str(row["quantity"]): float(row["value"]) for row in rows}


def test_kappa_k_only_for_computed_ranks_and_never_lambda_max_over_lambda_min() -> None:
    eigenvalues = torch.cat([torch.linspace(40.0, 2.0, 30), torch.zeros(20), torch.tensor([-1e-9])]).double()
    trace = TraceEstimate(value=12.0, stderr=1.5, samples=torch.zeros(2), num_matvecs=2)
    rows = as_dict(conditioning_rows(eigenvalues[torch.randperm(51)], loss_value=8.0, dim=1000, trace=trace))
    assert rows["lambda_max"] == 40.0 and rows["sharpness"] == 5.0
    assert math.isclose(rows["kappa_10"], 40.0 / float(eigenvalues[9]))
    assert "kappa_100" not in rows and "lambda_100" not in rows  # only 51 eigenvalues were computed
    assert rows["trace_per_parameter"] == 0.012 and rows["trace_per_parameter_stderr"] == 0.0015
    # lambda_k <= 0: the top of the spectrum is not positive, no ratio is reported
    assert math.isnan(as_dict(conditioning_rows(eigenvalues, 8.0, 1000, ranks=(40,)))["kappa_40"])


def test_sharpness_and_kappa_are_invariant_to_the_loss_scale_on_a_real_model() -> None:
    case = TINY_CASES[1]  # force-field transformer: energy and force weights scale the loss
    results = []
    for weight in (1.0, 3.0):
        model = tiny_model(case)
        names = small_parameter_names(model, budget=30)  # 28 parameters: lambda_10 is clearly positive
        losses = tiny_losses(case, model, names, energy_weight=weight, force_weight=weight)
        rows = hessian_conditioning(losses, "equiv", top_k=10, trace_probes=3, seed=1, probe_batch=3)
        assert losses.dim < 30  # so the default 30 Lanczos steps are as many as the dimension: exact
        assert all(row["loss"] == "equiv" for row in rows)
        results.append(as_dict(rows))
    small, large = results
    assert small["num_hvps"] == small["num_parameters"] + 3
    assert small["ritz_residual_10"] < 1e-8 * small["lambda_max"]
    assert math.isclose(large["lambda_max"], 3 * small["lambda_max"], rel_tol=1e-9)
    for scale_free in ("sharpness", "kappa_10"):
        assert math.isclose(large[scale_free], small[scale_free], rel_tol=1e-9)
    assert small["kappa_10"] > 1.0 and small["lambda_10"] > 0
