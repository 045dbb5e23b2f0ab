"""The EScAIP-like force field: an energy invariant by construction (float64), direct forces that are NOT equivariant
at initialisation, locality and continuity at the cutoff, Hessian-vector products against a dense Hessian, and a
decomposition whose equivariance loss sits in the force part only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_testing import make_batch, mixed_batch, pad_batch, random_rotations, relative_error
from torch import nn

from eqdyn.analysis import FixedBatchLosses
from eqdyn.decomposition import decompose, make_evaluation_example, make_evaluation_rotations
from eqdyn.models import build_model, count_parameters
from eqdyn.models.escaip_like import EScAIPLikeForceField, harmonic_orders, scaled_harmonics
from eqdyn.tasks import build_task
from eqdyn.testing import random_molecules

TINY = {"features": 8, "layers": 1, "heads": 2, "max_order": 2, "num_rbf": 4}


def tiny_escaip(**overrides: object) -> nn.Module:
    torch.manual_seed(0)
    return build_model("force_field", "escaip_like", "xs", **{**TINY, **overrides}).double().eval()


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("force_field", "escaip_like", "xs").double().eval()


def test_presets_grow_over_two_decades_and_the_family_is_not_equivariant() -> None:
    with torch.device("meta"):
        counts = {
            size: count_parameters(build_model("force_field", "escaip_like", size)) for size in ("xs", "s", "m", "l")
        }
    assert 20_000 <= counts["xs"] <= 40_000 and 150_000 <= counts["s"] <= 300_000
    assert 800_000 <= counts["m"] <= 1_500_000 and 5_000_000 <= counts["l"] <= 8_000_000
    assert EScAIPLikeForceField.equivariance == "none"
    with pytest.raises(ValueError, match="divisible"):
        EScAIPLikeForceField(features=10, layers=1, heads=4)


def test_products_of_scaled_harmonics_are_legendre_polynomials_of_the_angle() -> None:
    # the addition theorem the angular logits and the orientational order rest on
    generator = torch.Generator().manual_seed(0)
    a, b = torch.nn.functional.normalize(torch.randn(2, 20, 3, generator=generator, dtype=torch.float64), dim=-1)
    products = scaled_harmonics(a, 4) * scaled_harmonics(b, 4)
    cosines = (a * b).sum(-1).numpy()
    for order in range(5):
        coefficients = np.zeros(order + 1)
        coefficients[order] = 1.0
        per_order = products[:, harmonic_orders(4) == order].sum(-1).numpy()
        assert np.allclose(per_order, np.polynomial.legendre.legval(cosines, coefficients), atol=1e-13, rtol=0)


def test_energy_is_invariant_and_forces_are_not_equivariant_at_initialisation(model: nn.Module) -> None:
    batch = mixed_batch()  # padding, S and Cl, a single-atom molecule
    rotations = random_rotations(4)
    reflections = rotations * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)[:, None]  # det -1
    plain = model(*batch.inputs())
    assert plain["energy"].dtype == torch.float64 and float(plain["forces"].detach().abs().max()) > 1e-6
    for transform in (rotations, reflections):
        moved = model(*batch.rotated(transform).inputs())
        assert relative_error(moved["energy"], plain["energy"]) < 1e-10
        # direct forces: far from equivariant before training, which is what they have to learn
        assert relative_error(moved["forces"], plain["forces"] @ transform.transpose(-1, -2)) > 1e-2
    shifted = model(batch.positions + torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64), *batch.inputs()[1:])
    assert relative_error(shifted["energy"], plain["energy"]) < 1e-12
    assert relative_error(shifted["forces"], plain["forces"]) < 1e-12
    assert torch.equal(plain["forces"][3], torch.zeros(7, 3, dtype=torch.float64))  # one atom: no edges, no force
    padded = pad_batch(batch, extra=3)
    more_padding = model(*padded.inputs())
    assert relative_error(more_padding["energy"], plain["energy"]) < 1e-12
    assert relative_error(more_padding["forces"][:, :7], plain["forces"]) < 1e-12
    assert torch.equal(more_padding["forces"][:, 7:], torch.zeros_like(more_padding["forces"][:, 7:]))


def test_atoms_beyond_the_cutoff_do_not_interact_and_a_pair_crosses_it_continuously() -> None:
    model = tiny_escaip(cutoff=2.0)
    batch = make_batch([3], max_atoms=3)
    compact = 0.2 * batch.positions  # all pairs inside the cutoff
    alone = model(compact, batch.atomic_numbers, batch.mask, batch.bond_orders)
    twice = torch.cat([compact, compact + 50.0], dim=1)  # the same molecule and a copy 50 Å away, as one molecule
    numbers = batch.atomic_numbers.repeat(1, 2)
    together = model(twice, numbers, batch.mask.repeat(1, 2), torch.zeros(1, 6, 6, dtype=torch.long))
    assert relative_error(together["energy"], 2 * alone["energy"]) < 1e-12
    assert relative_error(together["forces"], alone["forces"].repeat(1, 2, 1)) < 1e-12
    # a pair just inside and just outside the cutoff: the energy and forces barely move (no step at the cutoff)
    numbers, mask = torch.tensor([[6, 8]]), torch.ones(1, 2, dtype=torch.bool)
    outputs = [
        model(torch.tensor([[[0.0, 0.0, 0.0], [2.0 + d, 0.0, 0.0]]], dtype=torch.float64), numbers, mask, None)
        for d in (-1e-6, 1e-6, 0.5)
    ]
    far = outputs[2]
    assert abs(float(outputs[0]["energy"] - far["energy"])) < 1e-9 and float(outputs[0]["forces"].abs().max()) < 1e-9
    assert torch.equal(outputs[1]["energy"], far["energy"]) and float(far["forces"].abs().max()) == 0.0
    inside = model(torch.tensor([[[0.0, 0.0, 0.0], [1.5, 0.0, 0.0]]], dtype=torch.float64), numbers, mask, None)
    assert abs(float(inside["energy"] - far["energy"])) > 1e-6  # the pair does interact well inside


def test_training_backpropagates_through_energy_and_forces_in_float32() -> None:
    torch.manual_seed(0)
    model = build_model("force_field", "escaip_like", "xs")
    batch = make_batch([7, 4, 5], max_atoms=7, dtype=torch.float32)
    output = model(*batch.inputs())
    assert output["energy"].dtype == output["forces"].dtype == torch.float32
    (output["energy"].pow(2).mean() + output["forces"].pow(2).mean()).backward()
    gradients = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert all(torch.isfinite(g).all() for g in gradients.values())
    for prefix in ("blocks.1.query", "blocks.0.key", "force_direction", "force_magnitude", "energy_head"):
        assert sum(float(g.abs().sum()) for name, g in gradients.items() if name.startswith(prefix)) > 0, prefix


def _evaluation_batch(model: nn.Module, parameter_names: list[str] | None, hvp_method: str) -> FixedBatchLosses:
    task = build_task("force_field")
    molecules = random_molecules(2, 4, seed=1, with_labels=True)
    evaluation = make_evaluation_rotations(task, molecules.example_id.numpy(), seed=5, num_rotations=4)
    example, rotations = make_evaluation_example(task, molecules, evaluation, noise_seed=7)
    return FixedBatchLosses(task, model, example, rotations, parameter_names=parameter_names, hvp_method=hvp_method)


# a few parameters of the attention, the energy head and the force head: 8 + 8 + 3 + 1 = 20
SMALL_PARAMETERS = [
    "blocks.0.attention_norm.weight",
    "energy_head.0.weight",
    "force_direction.2.bias",
    "force_magnitude.3.bias",
]


@pytest.mark.parametrize("hvp_method", ["forward_over_reverse", "reverse_over_reverse"])
def test_hessian_vector_products_match_the_dense_hessian(hvp_method: str) -> None:
    model = tiny_escaip()
    losses = _evaluation_batch(model, SMALL_PARAMETERS, hvp_method)
    dense = torch.func.jacfwd(torch.func.grad(losses.loss_function("mean")))(losses.parameters)
    assert dense.shape == (losses.dim, losses.dim) and losses.dim == 20
    assert relative_error(dense, dense.T) < 1e-10 and float(dense.abs().max()) > 0
    direction = torch.randn(losses.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert relative_error(losses.hvp("mean", direction), dense @ direction) < 1e-9
    block = torch.randn(3, losses.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert relative_error(losses.hvp("mean", block), block @ dense) < 1e-9
    assert losses.hvp_method == hvp_method and losses.fallback_reason is None
    # not equivariant: L_equiv has curvature of its own
    dense_equiv = torch.func.jacfwd(torch.func.grad(losses.loss_function("equiv")))(losses.parameters)
    assert float(dense_equiv.abs().max()) > 0
    assert relative_error(losses.hvp("equiv", direction), dense_equiv @ direction) < 1e-9


def test_decomposition_puts_the_equivariance_loss_in_the_forces_not_the_energy() -> None:
    task = build_task("force_field")
    molecules = random_molecules(3, 5, seed=2, with_labels=True)
    evaluation = make_evaluation_rotations(task, molecules.example_id.numpy(), seed=3, num_rotations=4)
    example, rotations = make_evaluation_example(task, molecules, evaluation, noise_seed=1)
    result = decompose(task, tiny_escaip(), example, rotations)
    total = float(result.quantity("total").sum())
    energy_equiv, force_equiv = (float(result.quantity("equiv", part).sum()) for part in ("energy", "forces"))
    assert force_equiv / float(result.quantity("total", "forces").sum()) > 1e-3
    assert abs(energy_equiv) < 1e-20 * total + 1e-24
    assert force_equiv > 1e6 * abs(energy_equiv)
