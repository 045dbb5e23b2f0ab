"""Lanczos, SLQ and Hutchinson on symmetric matrices with a known spectrum (float64)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from eqdyn.analysis import (
    SpectralQuadrature,
    broadened_density,
    hutchinson_trace,
    lanczos,
    probe_vector,
    stochastic_lanczos_quadrature,
    top_eigenvalues,
)

DIM = 60
# distinct top eigenvalues, a bulk, a negative part and a null space of dimension 20 (like L_equiv's)
SPECTRUM = torch.cat(
    [
        torch.tensor([50.0, 20.0, 10.0, 7.0, 5.0]),
        torch.linspace(0.1, 2.0, 25, dtype=torch.float64),
        torch.tensor([-0.5, -1.0, -3.0]),
        torch.zeros(7),
        torch.zeros(20),
    ]
).to(torch.float64)


def quadratic_hessian(spectrum: Tensor, seed: int = 0) -> Tensor:
    """Q diag(spectrum) Q^T with a random orthogonal Q: the Hessian of 0.5 x^T H x has this spectrum."""
    gaussian = torch.randn(
        len(spectrum), len(spectrum), generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r))
    return (q * spectrum) @ q.T


def counted(matrix: Tensor) -> tuple[list[int], object]:
    calls = [0]

    def matvec(vector: Tensor) -> Tensor:
        calls[0] += 1
        return matrix @ vector

    return calls, matvec


def test_lanczos_basis_represents_the_operator_and_top_eigenvalues_converge() -> None:
    matrix = quadratic_hessian(SPECTRUM)
    calls, matvec = counted(matrix)
    top = top_eigenvalues(matvec, DIM, k=5, num_steps=30, seed=1)
    assert calls[0] == top.num_matvecs == 30
    assert torch.allclose(top.values, SPECTRUM[:5], rtol=0, atol=1e-9)
    assert (top.residuals < 1e-6).all()
    # a Ritz value lies within its residual of an eigenvalue, whatever its convergence
    rough = top_eigenvalues(matvec, DIM, k=5, num_steps=8, seed=1)
    distance = (rough.values[:, None] - SPECTRUM[None, :]).abs().min(dim=1).values
    assert (distance <= rough.residuals + 1e-10).all()
    assert rough.residuals.max() > 1e-6  # 8 steps are not enough: the bound is not vacuous


def test_lanczos_with_as_many_steps_as_the_dimension_recovers_every_eigenvalue_with_multiplicity() -> None:
    matrix = quadratic_hessian(SPECTRUM)
    top = top_eigenvalues(lambda v: matrix @ v, DIM, k=DIM, num_steps=DIM, seed=2)
    # the 27 zeros have one Krylov direction from the start vector; restarts find the rest
    assert torch.allclose(top.values, torch.sort(SPECTRUM, descending=True).values, rtol=0, atol=1e-9)
    assert top.num_matvecs == DIM


def test_lanczos_without_restart_stops_when_the_krylov_space_is_exhausted() -> None:
    matrix = quadratic_hessian(torch.tensor([3.0, 3.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64))
    start = probe_vector(6, seed=0, stream=0, index=0)
    result = lanczos(lambda v: matrix @ v, start, num_steps=6)
    assert result.exhausted and result.num_steps == 3  # three distinct eigenvalues
    assert torch.allclose(
        torch.sort(result.ritz()[0]).values, torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64), atol=1e-12
    )


def test_the_zero_operator_gives_zero_eigenvalues_and_a_point_mass_at_zero() -> None:
    top = top_eigenvalues(torch.zeros_like, 30, k=10, num_steps=15)
    assert torch.equal(top.values, torch.zeros(10, dtype=torch.float64)) and torch.equal(top.residuals, top.values)
    quadrature = stochastic_lanczos_quadrature(torch.zeros_like, 30, num_probes=3, num_steps=10)
    assert quadrature.num_matvecs == 3  # each probe stops after one product
    assert torch.allclose(quadrature.weights.sum(dim=1), torch.ones(3, dtype=torch.float64))
    assert quadrature.moment(2) == (0.0, 0.0)


def exact_moment(matrix: Tensor, power: int) -> float:
    return float(torch.trace(torch.linalg.matrix_power(matrix, power))) / len(matrix)


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_slq_moments_are_exact_per_probe_and_unbiased_over_probes(distribution: str) -> None:
    matrix = quadratic_hessian(SPECTRUM)
    quadrature = stochastic_lanczos_quadrature(
        lambda v: matrix @ v, DIM, num_probes=40, num_steps=4, seed=3, distribution=distribution
    )
    for power in (1, 2):
        # m Lanczos steps integrate polynomials of degree <= 2m - 1 exactly: q^T H^p q for each probe q
        probes = torch.stack(
            [probe_vector(DIM, 3, 2, int(i), distribution) for i in quadrature.probe_index]  # type: ignore[arg-type]
        )
        probes = probes / probes.norm(dim=1, keepdim=True)
        direct = ((probes @ torch.linalg.matrix_power(matrix, power)) * probes).sum(dim=1)
        assert torch.allclose(quadrature.probe_moments(power), direct, rtol=1e-10, atol=1e-10)
        estimate, stderr = quadrature.moment(power)
        assert abs(estimate - exact_moment(matrix, power)) < 4 * stderr


def test_slq_with_as_many_steps_as_the_dimension_is_an_exact_quadrature() -> None:
    matrix = quadratic_hessian(SPECTRUM)
    quadrature = stochastic_lanczos_quadrature(lambda v: matrix @ v, DIM, num_probes=2, num_steps=DIM, seed=4)
    probes = torch.stack([probe_vector(DIM, 4, 2, i) for i in range(2)]) / math.sqrt(DIM)
    for power in (1, 2, 5, 9):
        direct = ((probes @ torch.linalg.matrix_power(matrix, power)) * probes).sum(dim=1)
        assert torch.allclose(quadrature.probe_moments(power), direct, rtol=1e-8, atol=0)
    # the nodes carrying weight are eigenvalues, and the null space's mass sits at zero
    weighted = quadrature.nodes[quadrature.weights > 1e-12]
    assert (weighted[:, None] - SPECTRUM[None, :]).abs().min(dim=1).values.max() < 1e-8


def test_broadened_density_integrates_to_one_and_puts_the_null_space_mass_at_zero() -> None:
    matrix = quadratic_hessian(SPECTRUM)
    quadrature = stochastic_lanczos_quadrature(lambda v: matrix @ v, DIM, num_probes=20, num_steps=DIM, seed=5)
    grid = torch.linspace(-10.0, 60.0, 35001, dtype=torch.float64)
    density = broadened_density(quadrature, grid, sigma=0.02)
    assert abs(float(torch.trapezoid(density, grid)) - 1.0) < 1e-6
    near_zero = grid.abs() <= 0.04  # 2 sigma; the nearest other eigenvalue, 0.1, is 3 sigma beyond the window
    null_mass = float(torch.trapezoid(density * near_zero, grid)) / 0.9545  # a Gaussian's mass within 2 sigma
    per_probe = (quadrature.weights * (quadrature.nodes.abs() < 1e-8)).sum(dim=1)
    expected, stderr = 27 / DIM, float(per_probe.std() / math.sqrt(len(per_probe)))
    assert abs(float(per_probe.mean()) - expected) < 4 * stderr
    assert abs(null_mass - float(per_probe.mean())) < 0.02


def test_probes_are_seeded_and_chunks_concatenate_to_the_full_run() -> None:
    matrix = quadratic_hessian(SPECTRUM)
    full = stochastic_lanczos_quadrature(lambda v: matrix @ v, DIM, num_probes=5, num_steps=10, seed=6)
    parts = [
        stochastic_lanczos_quadrature(lambda v: matrix @ v, DIM, num_probes=2, num_steps=10, seed=6),
        stochastic_lanczos_quadrature(lambda v: matrix @ v, DIM, num_probes=3, num_steps=10, seed=6, first_probe=2),
    ]
    joined = SpectralQuadrature.concatenate(parts)
    assert torch.equal(joined.nodes, full.nodes) and torch.equal(joined.weights, full.weights)
    assert torch.equal(joined.probe_index, torch.arange(5)) and joined.num_matvecs == full.num_matvecs == 50
    other = stochastic_lanczos_quadrature(lambda v: matrix @ v, DIM, num_probes=5, num_steps=10, seed=7)
    assert not torch.equal(other.nodes, full.nodes)
    # probes in lockstep through a batched operator: the same runs
    batched = stochastic_lanczos_quadrature(
        lambda block: block @ matrix, DIM, num_probes=5, num_steps=10, seed=6, probe_batch=3
    )
    assert torch.allclose(batched.nodes, full.nodes, rtol=0, atol=1e-10) and batched.num_matvecs == 50
    assert torch.allclose(batched.weights, full.weights, rtol=0, atol=1e-10)
    # float32 probes are the float64 ones rounded: results do not depend on the operator's dtype stream
    assert torch.equal(
        probe_vector(DIM, 6, 2, 0, "gaussian", torch.float32), probe_vector(DIM, 6, 2, 0, "gaussian").float()
    )


def test_hutchinson_trace_is_within_a_few_standard_errors_and_matches_its_variance_formula() -> None:
    matrix = quadratic_hessian(SPECTRUM)
    calls, matvec = counted(matrix)
    estimate = hutchinson_trace(matvec, DIM, num_probes=200, seed=8)
    assert calls[0] == estimate.num_matvecs == 200
    batched = hutchinson_trace(lambda block: block @ matrix, DIM, num_probes=200, seed=8, probe_batch=64)
    assert torch.allclose(batched.samples, estimate.samples, rtol=1e-12, atol=1e-12)
    exact = float(torch.trace(matrix))
    assert abs(estimate.value - exact) < 4 * estimate.stderr
    # Rademacher: Var(v^T H v) = 2 (||H||_F^2 - sum_i H_ii^2)
    predicted = math.sqrt(2 * float(matrix.pow(2).sum() - torch.diagonal(matrix).pow(2).sum()) / 200)
    assert 0.7 < estimate.stderr / predicted < 1.3


def test_mass_below_a_negative_threshold_estimates_the_share_of_negative_eigenvalues() -> None:
    matrix = quadratic_hessian(SPECTRUM)  # 3 of 60 eigenvalues are negative, the nearest at -0.5
    quadrature = stochastic_lanczos_quadrature(lambda v: matrix @ v, DIM, num_probes=40, num_steps=DIM, seed=9)
    per_probe = quadrature.probe_mass_below(-1e-3 * 50.0)
    stderr = float(per_probe.std() / math.sqrt(len(per_probe)))
    assert abs(float(per_probe.mean()) - 3 / DIM) < 4 * stderr and stderr > 0
    # the threshold excludes the null space's mass at zero: at +1e-3 it would add the 27 zeros
    with_zeros = float(quadrature.probe_mass_below(1e-3 * 50.0).mean())
    assert abs(with_zeros - 30 / DIM) < 4 * float(quadrature.probe_mass_below(1e-3 * 50.0).std() / math.sqrt(40))
    positive = stochastic_lanczos_quadrature(lambda v: matrix @ v + 3.5 * v, DIM, num_probes=5, num_steps=DIM, seed=9)
    assert float(positive.probe_mass_below(-1e-3).max()) < 1e-10  # shifted positive definite: no negative mass
