"""Conservative forces, and Hessian-vector products (forward-over-reverse with torch.func) through the models."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from models_testing import PaddedMolecules, mixed_batch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

from eqdyn.models import MODEL_FAMILIES, build_model

Params = dict[str, Tensor]


def tiny_painn() -> nn.Module:
    torch.manual_seed(0)
    return build_model("force_field", "painn", "xs", features=8).double().eval()


def test_forces_are_minus_the_finite_difference_gradient_of_the_energy() -> None:
    model, batch = tiny_painn(), mixed_batch()
    forces = model(*batch.inputs())["forces"].detach()
    step = 1e-5
    for molecule, atom, axis in [(0, 0, 0), (0, 6, 2), (1, 3, 1), (2, 2, 0)]:
        shift = torch.zeros_like(batch.positions)
        shift[molecule, atom, axis] = step
        with torch.no_grad():
            up = model(batch.positions + shift, *batch.inputs()[1:])["energy"][molecule]
            down = model(batch.positions - shift, *batch.inputs()[1:])["energy"][molecule]
        finite_difference = -(up - down) / (2 * step)
        assert abs(float(finite_difference - forces[molecule, atom, axis])) < 1e-7 * (1 + abs(float(finite_difference)))


def test_forces_are_available_under_no_grad_and_train_through_the_force_loss() -> None:
    model, batch = tiny_painn(), mixed_batch()
    with torch.no_grad():
        forces_without_grad = model(*batch.inputs())["forces"]
    output = model(*batch.inputs())
    assert torch.allclose(forces_without_grad, output["forces"].detach())
    (output["forces"] ** 2).sum().backward()
    gradients = [p.grad for p in model.parameters() if p.grad is not None]
    assert gradients and all(torch.isfinite(g).all() for g in gradients)
    assert sum(float(g.abs().sum()) for g in gradients) > 0


def hvp_and_finite_difference(loss: Callable[[Params], Tensor], params: Params, seed: int) -> tuple[Params, Params]:
    """H v by torch.func.jvp of torch.func.grad, and by central differences of the gradient along v."""
    generator = torch.Generator().manual_seed(seed)
    direction = {name: torch.randn(p.shape, generator=generator, dtype=p.dtype) for name, p in params.items()}
    _, hvp = jvp(grad(loss), (params,), (direction,))
    step = 1e-5
    up = grad(loss)({name: p + step * direction[name] for name, p in params.items()})
    down = grad(loss)({name: p - step * direction[name] for name, p in params.items()})
    return hvp, {name: (up[name] - down[name]) / (2 * step) for name in params}


def assert_close_params(actual: Params, expected: Params, tolerance: float) -> None:
    flat_actual = torch.cat([actual[name].flatten() for name in expected])
    flat_expected = torch.cat([expected[name].flatten() for name in expected])
    assert flat_expected.norm() > 0
    assert float((flat_actual - flat_expected).norm() / flat_expected.norm()) < tolerance


def detached_params(model: nn.Module) -> Params:
    return {name: p.detach() for name, p in model.named_parameters()}


def test_hvp_of_a_force_matching_loss_matches_finite_differences() -> None:
    model, batch = tiny_painn(), mixed_batch()
    generator = torch.Generator().manual_seed(5)
    target_forces = torch.randn(batch.positions.shape, generator=generator, dtype=torch.float64) * batch.mask[..., None]
    target_energy = torch.randn(batch.mask.shape[0], generator=generator, dtype=torch.float64)

    def loss(params: Params) -> Tensor:
        output = functional_call(model, params, batch.inputs())
        # squared errors by hand: F.mse_loss breaks forward-over-reverse (see docs/maths.md)
        return ((output["forces"] - target_forces) ** 2).sum() + 0.1 * ((output["energy"] - target_energy) ** 2).sum()

    hvp, finite_difference = hvp_and_finite_difference(loss, detached_params(model), seed=7)
    assert_close_params(hvp, finite_difference, 1e-6)


def transformer_velocity_loss(model: nn.Module, batch: PaddedMolecules) -> Callable[[Params], Tensor]:
    target = torch.randn(batch.positions.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def loss(params: Params) -> Tensor:
        velocity = functional_call(model, params, (*batch.inputs(), batch.t))
        return ((velocity - target * batch.mask[..., None]) ** 2).sum()

    return loss


def tiny_flow_transformer(attention: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model("flow_matching", "transformer", "xs", dim=8, layers=2, heads=2, attention=attention).double()


def test_transformer_hvp_with_explicit_attention_matches_finite_differences() -> None:
    model, batch = tiny_flow_transformer("math"), mixed_batch()
    hvp, finite_difference = hvp_and_finite_difference(
        transformer_velocity_loss(model, batch), detached_params(model), 9
    )
    assert_close_params(hvp, finite_difference, 1e-6)


def test_transformer_hvp_with_sdpa_runs_under_the_math_backend_and_agrees() -> None:
    explicit, batch = tiny_flow_transformer("math"), mixed_batch()
    fused = tiny_flow_transformer("sdpa")
    assert torch.allclose(fused(*batch.inputs(), batch.t), explicit(*batch.inputs(), batch.t), atol=1e-12)
    params = detached_params(explicit)
    direction = {name: torch.ones_like(p) for name, p in params.items()}
    _, hvp_explicit = jvp(grad(transformer_velocity_loss(explicit, batch)), (params,), (direction,))
    with sdpa_kernel(SDPBackend.MATH):
        _, hvp_fused = jvp(grad(transformer_velocity_loss(fused, batch)), (params,), (direction,))
    assert_close_params(hvp_fused, hvp_explicit, 1e-12)


@pytest.mark.parametrize(("task", "family"), [(t, f) for t, f, _ in MODEL_FAMILIES if t != "voxel_denoising"])
def test_outputs_and_gradients_are_finite_for_an_all_padding_molecule(task: str, family: str) -> None:
    batch = mixed_batch()
    mask = batch.mask.clone()
    mask[3] = False
    inputs = (batch.positions, batch.atomic_numbers * mask, mask, batch.bond_orders)
    torch.manual_seed(0)
    model = build_model(task, family, "xs").double()
    output = model(*inputs, batch.t) if task == "flow_matching" else model(*inputs)
    vectors = output if task == "flow_matching" else output["forces"]
    assert torch.isfinite(vectors).all() and torch.equal(vectors[3], torch.zeros_like(vectors[3]))
    vectors.pow(2).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
