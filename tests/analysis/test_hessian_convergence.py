"""Convergence flags of the Hessian eigenvalues, against scipy's ARPACK (``eigsh``) on the same HVP operator, and the
per-repeat rows and t intervals of the Hessian table."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hessian_testing import TINY_CASES, tiny_losses, tiny_model
from scipy import stats
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import Tensor

from eqdyn.analysis import FixedBatchLosses, top_eigenvalues
from eqdyn.analysis.hessian_analysis import aggregate, analyse, t_interval
from eqdyn.analysis.lanczos import (
    AGREEMENT_TOLERANCE,
    STREAM_LANCZOS_START,
    checked_eigenvalues,
    probe_vector,
)

# A tiny flow-matching transformer (1,840 parameters) on which the old defaults, 30 Lanczos steps for the top 20,
# put lambda_10 of the L_mean Hessian ~12% too low: the study's failure, at a size a test can afford.
CLUSTERED_CASE = dataclasses.replace(TINY_CASES[0], overrides={"dim": 8, "layers": 1, "heads": 1, "mlp_ratio": 1.0})


@pytest.fixture(scope="module")
def clustered_losses() -> FixedBatchLosses:
    return tiny_losses(CLUSTERED_CASE, tiny_model(CLUSTERED_CASE), num_rotations=4)


def arpack(losses: FixedBatchLosses, loss: str, k: int, which: str) -> np.ndarray:
    """Reference eigenvalues of the same HVP operator by ARPACK: seeded start vector, explicit tolerance."""
    operator = losses.operator(loss)
    linear = LinearOperator(
        (losses.dim, losses.dim), matvec=lambda v: operator(torch.from_numpy(v)).numpy(), dtype=np.float64
    )
    start = np.random.default_rng(0).standard_normal(losses.dim)
    values = eigsh(linear, k=k, which=which, v0=start, tol=1e-8, return_eigenvectors=False)
    return np.sort(values)[::-1]


def test_old_defaults_fail_on_a_real_hvp_operator_and_the_flags_mark_every_wrong_value(clustered_losses) -> None:
    losses = clustered_losses
    reference = arpack(losses, "mean", 20, "LA")
    operator = losses.operator("mean")
    old = top_eigenvalues(operator, losses.dim, k=20, num_steps=30, seed=0)
    error = old.values.numpy() / reference - 1
    assert error[9] < -0.05  # the old defaults underestimate lambda_10: kappa_10 too large
    checked = checked_eigenvalues(operator, losses.dim, k=20, num_steps=30, seed=0)
    assert torch.equal(checked.values, old.values)  # the same primary run, now with flags
    wrong = np.abs(error) > AGREEMENT_TOLERANCE
    flags = checked.converged.numpy()
    assert not flags[wrong].any()  # every value more than 1% off is flagged
    assert not checked.kappa_converged(10)
    assert checked.num_matvecs == 30 + 60


def test_enough_steps_converge_and_agree_with_arpack_at_both_ends(clustered_losses) -> None:
    losses = clustered_losses
    top = arpack(losses, "mean", 10, "LA")
    bottom = arpack(losses, "mean", 1, "SA")
    checked = checked_eigenvalues(losses.operator("mean"), losses.dim, k=10, num_steps=50, seed=0)
    assert checked.converged.all() and checked.kappa_converged(10)
    assert np.allclose(checked.values.numpy(), top, rtol=1e-6, atol=0)
    assert checked.smallest < 0 and checked.smallest_converged  # the Hessian is indefinite
    assert math.isclose(checked.smallest, float(bottom[0]), rel_tol=1e-6)
    assert bool((checked.relative_residuals <= 1e-3).all())


def orthogonal_to_start_hessian(dim: int, seed: int, spectrum: Tensor) -> Tensor:
    """Q diag(spectrum) Q^T whose eigenvector of spectrum[1] is exactly orthogonal to the primary Lanczos start
    vector: that run can never see spectrum[1] and converges onto spectrum[2] in its place, with a tiny residual."""
    start = probe_vector(dim, seed, STREAM_LANCZOS_START, 0)
    gaussian = torch.randn(dim, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    gaussian[:, 0] = start
    q, _ = torch.linalg.qr(gaussian)  # column 0 is along the start vector, the others orthogonal to it
    # a random basis of the complement of column 1 (so no other eigenvector is special to the start vector)
    mixing, _ = torch.linalg.qr(
        torch.randn(dim - 1, dim - 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    )
    others = torch.cat([q[:, :1], q[:, 2:]], dim=1) @ mixing
    eigenvectors = torch.cat([others[:, :1], q[:, 1:2], others[:, 1:]], dim=1)
    return (eigenvectors * spectrum) @ eigenvectors.T


def test_the_check_run_catches_a_converged_ritz_value_of_the_wrong_eigenvalue() -> None:
    dim = 40
    spectrum = torch.cat([torch.tensor([10.0, 9.0, 8.0, 7.0]), torch.linspace(0.0, 1.0, dim - 4)]).double()
    matrix = orthogonal_to_start_hessian(dim, seed=0, spectrum=spectrum)
    checked = checked_eigenvalues(lambda v: matrix @ v, dim, k=3, num_steps=8, seed=0)
    # the primary run reports 10, 8, 7 with residuals that pass: the residual test alone would keep lambda_2 = 8
    assert torch.allclose(checked.values, torch.tensor([10.0, 8.0, 7.0], dtype=torch.float64), atol=1e-8)
    assert bool((checked.relative_residuals <= 1e-3).all())
    # the check run from another start finds 9: lambda_2 and everything below it are flagged
    assert math.isclose(float(checked.check_values[1]), 9.0, rel_tol=1e-8)
    assert checked.converged.tolist() == [True, False, False]
    assert checked.kappa_converged(1) and not checked.kappa_converged(2)


def test_analyse_writes_flags_the_negative_side_and_counts_its_products(clustered_losses) -> None:
    settings = {"top_k": 10, "lanczos_steps": 20, "slq_probes": 2, "slq_steps": 8, "trace_probes": 3}
    rows, quadrature = analyse(clustered_losses, "mean", settings, seed=0)
    by_name = {(row["quantity"], row.get("index", "")): row["value"] for row in rows}
    assert by_name[("num_hvps", "")] == 3 * 20 + 2 * 8 + 3
    assert by_name[("kappa_10_converged", "")] == 0.0  # 20 steps cannot converge the top 10
    assert by_name[("lambda_max_converged", "")] == 1.0
    flags = [by_name[("eigenvalue_converged", i)] for i in range(1, 11)]
    assert set(flags) == {0.0, 1.0} and flags[0] == 1.0
    assert by_name[("lambda_min", "")] < 0 and 0 < by_name[("negative_mass", "")] < 1
    for i in range(1, 11):  # the flags follow from the rows next to them
        value, check = by_name[("eigenvalue", i)], by_name[("eigenvalue_check", i)]
        passes = by_name[("eigenvalue_relative_residual", i)] <= 1e-3 and abs(value - check) <= 0.01 * abs(value)
        assert by_name[("eigenvalue_converged", i)] == float(passes)
    assert quadrature.nodes.shape == (2, 8)


def test_t_interval_uses_t_with_n_minus_one_degrees_of_freedom() -> None:
    mean, stderr, low, high = t_interval(np.array([1.0, 3.0]))
    assert (mean, stderr) == (2.0, 1.0)
    assert math.isclose(high - mean, 12.706204736, rel_tol=1e-8) and math.isclose(mean - low, high - mean)
    five = np.array([1.0, 2.0, 3.0, 4.0, 5.0, float("nan")])  # non-finite values are dropped
    mean, _, _, high = t_interval(five)
    assert mean == 3.0 and math.isclose(high - mean, stats.t.ppf(0.975, 4) * np.std(five[:5], ddof=1) / 5**0.5)
    assert all(math.isnan(x) for x in t_interval(np.array([1.0]))[1:])


def test_aggregate_keeps_every_repeat_and_summarises_with_t_intervals() -> None:
    per_repeat = [
        [
            {"quantity": "kappa_10", "value": k},
            {"quantity": "kappa_10_converged", "value": c},
            {"quantity": "eigenvalue", "index": 1, "value": 5.0 + k},
        ]
        for k, c in ((10.0, 1.0), (14.0, 1.0), (12.0, 0.0))
    ]
    rows = aggregate(per_repeat, "run", 100, "mean")
    repeats = [row for row in rows if row["repeat"] != ""]
    assert [(r["quantity"], r["repeat"], r["value"]) for r in repeats if r["quantity"] == "kappa_10"] == [
        ("kappa_10", 0, 10.0),
        ("kappa_10", 1, 14.0),
        ("kappa_10", 2, 12.0),
    ]
    summary = {(r["quantity"], r["index"]): r for r in rows if r["repeat"] == ""}
    kappa = summary[("kappa_10", "")]
    assert kappa["value"] == 12.0 and kappa["repeats"] == 3 and math.isclose(kappa["stderr"], 2 / 3**0.5)
    assert math.isclose(kappa["ci_high"] - 12.0, stats.t.ppf(0.975, 2) * 2 / 3**0.5)
    flag = summary[("kappa_10_converged", "")]
    assert math.isclose(flag["value"], 2 / 3) and flag["ci_low"] == "" and flag["ci_high"] == ""
    assert summary[("eigenvalue", 1)]["value"] == 17.0
