"""Hessian-vector products of the decomposition's losses and their spectra, on tiny instances of every analysed
architecture (transformer for flow matching and forces, egnn, PaiNN, U-Net, octahedral U-Net), all through the same
:class:`~eqdyn.analysis.FixedBatchLosses` code, in float64.

The dense reference Hessian is ``torch.func.jacfwd(torch.func.grad(loss))`` (see :func:`hessian_testing.dense_hessian`
for why not ``torch.func.hessian``), itself checked against independent reverse-over-reverse products.
"""

from __future__ import annotations

import pytest
import torch
from hessian_testing import (
    TINY_CASES,
    TinyCase,
    dense_hessian,
    quadratic_form_stderr,
    relative_error,
    small_parameter_names,
    tiny_losses,
    tiny_model,
)
from torch import Tensor, nn

from eqdyn.analysis import (
    FixedBatchLosses,
    hutchinson_trace,
    hvp_reverse_over_reverse,
    probe_vector,
    stochastic_lanczos_quadrature,
    top_eigenvalues,
)
from eqdyn.symmetry.rotations import haar_rotations
from eqdyn.tasks import FlowMatchingTask, KeyedNoise
from eqdyn.tasks.base import Example
from eqdyn.testing import random_molecules

CASE_IDS = [case.id for case in TINY_CASES]


def random_direction(dim: int, seed: int) -> Tensor:
    return torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def finite_difference_hvp(losses: FixedBatchLosses, loss: str, direction: Tensor, step: float = 1e-5) -> Tensor:
    gradient = torch.func.grad(losses.loss_function(loss))
    up, down = gradient(losses.parameters + step * direction), gradient(losses.parameters - step * direction)
    return (up - down) / (2 * step)


@pytest.mark.parametrize("case", TINY_CASES, ids=CASE_IDS)
def test_hvps_match_finite_differences_and_reverse_over_reverse_and_add_up(case: TinyCase) -> None:
    auto = tiny_losses(case)  # every trainable parameter, embedding tables included
    assert auto.hvp_method == "reverse_over_reverse"  # "auto" on the CPU: the cheaper path there
    losses = FixedBatchLosses(auto.task, auto.model, auto.example, auto.rotations, hvp_method="forward_over_reverse")
    direction = random_direction(losses.dim, seed=1)
    products = {name: losses.hvp(name, direction) for name in ("total", "mean", "plugin", "equiv")}
    assert losses.hvp_method == "forward_over_reverse" and losses.fallback_reason is None
    checked = ["mean"] if case.equivariant else ["mean", "equiv"]
    for name in checked:
        assert relative_error(products[name], finite_difference_hvp(losses, name, direction)) < 1e-5
        reverse = hvp_reverse_over_reverse(losses.loss_function(name), losses.parameters, direction)
        assert relative_error(products[name], reverse) < 1e-10
    scale = float(products["total"].abs().max())
    # H_total = H_mean + H_equiv, and H_mean = H_plugin - c H_equiv (c = 1/K sampled, 0 enumerated)
    assert float((products["total"] - products["mean"] - products["equiv"]).abs().max()) <= 1e-12 * max(scale, 1.0)
    by_linearity = losses.hvp_mean_by_linearity(direction)
    assert float((by_linearity["mean"] - products["mean"]).abs().max()) <= 1e-12 * max(scale, 1.0)
    assert losses.equiv_weight_in_mean == (0.0 if case.task == "voxel_denoising" else 0.25)
    if case.equivariant:  # L_equiv vanishes for every parameter value, so does its Hessian
        assert float(products["equiv"].norm()) < 1e-12 * float(products["mean"].norm())
    else:
        assert float(products["equiv"].norm()) > 1e-3 * float(products["mean"].norm())


@pytest.mark.parametrize("case", TINY_CASES, ids=CASE_IDS)
def test_spectral_tools_through_the_hvps_match_the_dense_hessian(case: TinyCase) -> None:
    model = tiny_model(case)
    losses = tiny_losses(case, model, parameter_names=small_parameter_names(model))
    loss = "mean" if case.equivariant else "equiv"  # the equivariant models' L_equiv Hessian is zero
    dense = dense_hessian(losses, loss)
    direction = random_direction(losses.dim, seed=2)
    reverse = hvp_reverse_over_reverse(losses.loss_function(loss), losses.parameters, direction)
    assert relative_error(dense @ direction, reverse) < 1e-10  # the reference is right
    exact = torch.linalg.eigvalsh(dense).flip(0)
    n = losses.dim
    operator = losses.operator(loss)

    top = top_eigenvalues(operator, n, k=5, num_steps=14, seed=3)
    assert operator.num_hvps == top.num_matvecs == 14
    assert (top.values <= exact[:5] + 1e-12 * float(exact[0])).all()  # Ritz values interlace from below
    assert float((top.values - exact[:5]).abs().max()) < 1e-7 * float(exact[0])

    # m = n steps: the quadrature of each probe's spectral measure is exact, every moment of it (2 probes in
    # lockstep through vmapped HVPs)
    full = stochastic_lanczos_quadrature(operator, n, num_probes=2, num_steps=n, seed=4, probe_batch=2)
    probes = torch.stack([probe_vector(n, 4, 2, index) for index in range(2)]) / n**0.5
    for power in (1, 2, 3, 4):
        direct = ((probes @ torch.linalg.matrix_power(dense, power)) * probes).sum(dim=1)
        error = float((full.probe_moments(power) - direct).abs().max())
        assert error < 1e-8 * float(exact.abs().max()) ** power

    # few steps (2 integrate degree <= 3 exactly), several probes: tr(H^p) / n for p = 1, 2 within a few of the
    # estimator's exact standard errors (the sample ones are unreliable for spiky spectra and 12 probes)
    # vmapped probes amortise the point-cloud models' launch overhead; vmapping conv3d over weight tangents is slower
    batch = 1 if case.task == "voxel_denoising" else 12
    quadrature = stochastic_lanczos_quadrature(operator, n, num_probes=12, num_steps=2, seed=5, probe_batch=batch)
    for power in (1, 2):
        matrix = torch.linalg.matrix_power(dense, power)
        estimate, _ = quadrature.moment(power)
        assert abs(estimate - float(torch.trace(matrix)) / n) < 4 * quadratic_form_stderr(matrix, 12)

    trace = hutchinson_trace(operator, n, num_probes=12, seed=6, probe_batch=batch)
    assert abs(trace.value - float(torch.trace(dense))) < 4 * n * quadratic_form_stderr(dense, 12)
    assert operator.num_hvps == 14 + full.num_matvecs + quadrature.num_matvecs + 12


def test_voxel_losses_use_the_enumerated_design_and_mean_is_the_plugin() -> None:
    losses = tiny_losses(TINY_CASES[4])
    assert losses.enumerated and losses.num_rotations == 24
    values = losses.losses()
    assert float(values["mean"]) == float(values["plugin"])
    assert abs(float(values["total"] - values["mean"] - values["equiv"])) < 1e-14


def test_transformer_hvp_is_the_same_with_fused_and_explicit_attention() -> None:
    case = TINY_CASES[0]
    fused = tiny_losses(case, tiny_model(case, attention="sdpa"))
    explicit = tiny_losses(case, tiny_model(case, attention="math"))
    direction = random_direction(fused.dim, seed=7)
    assert relative_error(fused.hvp("equiv", direction), explicit.hvp("equiv", direction)) < 1e-12


def test_both_hvp_paths_agree_on_painn_whose_forces_come_from_torch_func_grad() -> None:
    case = TINY_CASES[3]
    forward = tiny_losses(case)
    reverse = FixedBatchLosses(
        forward.task, tiny_model(case), forward.example, forward.rotations, hvp_method="reverse_over_reverse"
    )
    direction = random_direction(forward.dim, seed=8)
    assert relative_error(reverse.hvp("mean", direction), forward.hvp("mean", direction)) < 1e-10
    assert relative_error(reverse.gradient("mean"), forward.gradient("mean")) < 1e-12
    assert reverse.hvp_method == "reverse_over_reverse"


class AutogradPairVelocity(nn.Module):
    """A velocity field v = -d/dx of a parametrised pair energy, computed the classic way inside forward
    (requires_grad_ + torch.autograd.grad with create_graph=True): torch.func transforms refuse it."""

    def __init__(self) -> None:
        super().__init__()
        self.amplitude = nn.Parameter(torch.tensor([0.7, -0.4], dtype=torch.float64))
        self.width = nn.Parameter(torch.tensor([0.5, 1.3], dtype=torch.float64))
        self.drift = nn.Parameter(torch.tensor([0.2, -0.1, 0.3], dtype=torch.float64))  # breaks equivariance

    def forward(
        self, positions: Tensor, atomic_numbers: Tensor, mask: Tensor, bond_orders: Tensor, t: Tensor
    ) -> Tensor:
        positions = positions.detach().requires_grad_(True)
        diff = positions[:, :, None] - positions[:, None, :]
        squared = diff.pow(2).sum(-1)[..., None]
        pair = (mask[:, :, None] & mask[:, None, :]).to(positions.dtype)[..., None]
        energy = (pair * self.amplitude * torch.exp(-self.width * squared)).sum()
        (gradient,) = torch.autograd.grad(energy, positions, create_graph=True)
        return (-gradient + self.drift * (1 + t[:, None, None])) * mask[..., None].to(positions.dtype)


def autograd_model_losses(method: str) -> FixedBatchLosses:
    task = FlowMatchingTask()
    example: Example = task.make_example(random_molecules(3, 5, seed=2), KeyedNoise(3))
    rotations = haar_rotations(3 * 4, torch.Generator().manual_seed(4)).reshape(3, 4, 3, 3)
    model = AutogradPairVelocity().eval()
    return FixedBatchLosses(task, model, example, rotations, hvp_method=method)  # type: ignore[arg-type]


def test_auto_falls_back_to_reverse_over_reverse_for_a_forward_that_calls_autograd_grad() -> None:
    forced = autograd_model_losses("forward_over_reverse")
    direction = random_direction(forced.dim, seed=9)
    with pytest.raises(RuntimeError, match="requires_grad_"):
        forced.hvp("mean", direction)
    auto = autograd_model_losses("auto")
    assert auto.hvp_method == "reverse_over_reverse" and auto.fallback_reason is None  # the CPU's choice
    auto.hvp_method = "auto"  # what "auto" is off the CPU: forward-over-reverse first, then the fallback
    product = auto.hvp("equiv", direction)
    assert auto.hvp_method == "reverse_over_reverse" and "requires_grad_" in (auto.fallback_reason or "")
    step = 1e-5  # finite differences of the reverse-mode gradient
    up = auto.gradient("equiv", auto.parameters + step * direction)
    down = auto.gradient("equiv", auto.parameters - step * direction)
    assert relative_error(product, (up - down) / (2 * step)) < 1e-6
    assert float(product.norm()) > 0 and auto.value("equiv") > 0
    block = auto.hvp("equiv", torch.stack([direction, -2 * direction]))  # one gradient graph, two products
    assert relative_error(block, torch.stack([product, -2 * product])) < 1e-12
