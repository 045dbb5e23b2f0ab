"""NequIP (the nequip package) as a force-field family: symmetry in float64, conservative forces, dtypes, the
containment of nequip's global state, Hessian-vector products against a dense Hessian, and the decomposition."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from models_testing import make_batch, mixed_batch, pad_batch, random_rotations, relative_error
from torch import nn

from eqdyn.analysis import FixedBatchLosses
from eqdyn.decomposition import decompose, make_evaluation_example, make_evaluation_rotations
from eqdyn.models import build_model, count_parameters
from eqdyn.models.nequip_ff import NequIPForceField, _contained_global_state
from eqdyn.tasks import build_task
from eqdyn.testing import random_molecules

TINY = {"layers": 2, "l_max": 1, "features": 4, "radial_width": 4, "type_features": 2}


def tiny_nequip(**overrides: object) -> nn.Module:
    torch.manual_seed(0)
    return build_model("force_field", "nequip", "xs", **{**TINY, **overrides}).double().eval()


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("force_field", "nequip", "xs", layers=2, features=8, radial_width=16).double().eval()


def test_presets_grow_over_two_decades_and_the_family_is_e3() -> None:
    with torch.device("meta"):
        counts = {size: count_parameters(build_model("force_field", "nequip", size)) for size in ("xs", "s", "m", "l")}
    assert 20_000 <= counts["xs"] <= 50_000 and 150_000 <= counts["s"] <= 250_000
    assert 1_000_000 <= counts["m"] <= 2_000_000 and counts["l"] >= 100 * counts["xs"]
    assert NequIPForceField.equivariance == "E3"


def test_energy_is_invariant_and_forces_rotate_in_float64(model: nn.Module) -> None:
    batch = mixed_batch()  # padding, S and Cl, a single-atom molecule
    rotations = random_rotations(4)
    reflections = rotations * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)[:, None]  # det -1
    plain = model(*batch.inputs())
    assert plain["energy"].dtype == torch.float64 and float(plain["forces"].abs().max()) > 1e-6
    for transform in (rotations, reflections):
        moved = model(*batch.rotated(transform).inputs())
        assert relative_error(moved["energy"], plain["energy"]) < 1e-12
        assert relative_error(moved["forces"], plain["forces"] @ transform.transpose(-1, -2)) < 1e-12
    shifted = model(batch.positions + torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64), *batch.inputs()[1:])
    assert relative_error(shifted["energy"], plain["energy"]) < 1e-12
    assert relative_error(shifted["forces"], plain["forces"]) < 1e-12
    padded = pad_batch(batch, extra=3)
    more_padding = model(*padded.inputs())
    assert relative_error(more_padding["energy"], plain["energy"]) < 1e-12
    assert relative_error(more_padding["forces"][:, :7], plain["forces"]) < 1e-12
    assert torch.equal(more_padding["forces"][:, 7:], torch.zeros_like(more_padding["forces"][:, 7:]))


def test_atoms_beyond_the_cutoff_do_not_interact() -> None:
    torch.manual_seed(0)
    model = build_model("force_field", "nequip", "xs", **TINY, cutoff=2.0).double()
    batch = make_batch([3], max_atoms=3)
    compact = 0.2 * batch.positions  # all pairs inside the cutoff
    alone = model(compact, batch.atomic_numbers, batch.mask, batch.bond_orders)
    twice = torch.cat([compact, compact + 50.0], dim=1)  # the same molecule and a copy 50 Å away, as one molecule
    numbers = batch.atomic_numbers.repeat(1, 2)
    together = model(twice, numbers, batch.mask.repeat(1, 2), torch.zeros(1, 6, 6, dtype=torch.long))
    assert relative_error(together["energy"], 2 * alone["energy"]) < 1e-12
    assert relative_error(together["forces"], alone["forces"].repeat(1, 2, 1)) < 1e-12


def test_forces_are_minus_the_finite_difference_gradient_of_the_energy(model: nn.Module) -> None:
    batch = mixed_batch()
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


def test_forces_under_no_grad_and_training_through_the_force_loss(model: nn.Module) -> None:
    batch = mixed_batch()
    with torch.no_grad():
        without_grad = model(*batch.inputs())
    assert not without_grad["forces"].requires_grad
    output = model(*batch.inputs())
    assert torch.allclose(without_grad["forces"], output["forces"].detach(), rtol=0, atol=1e-14)
    model.zero_grad()
    output["forces"].pow(2).sum().backward()  # second order: the force loss differentiates -dE/dx again
    gradients = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert gradients and all(torch.isfinite(g).all() for g in gradients.values())
    assert sum(float(g.abs().sum()) for name, g in gradients.items() if "network" in name) > 0
    model.zero_grad()


def test_float32_for_training_float64_after_double_with_nequips_dtype_markers_moved() -> None:
    torch.manual_seed(0)
    model32 = build_model("force_field", "nequip", "xs", **TINY)
    batch = make_batch([5, 3], max_atoms=5)
    out32 = model32(batch.positions.float(), *batch.inputs()[1:])
    assert out32["energy"].dtype == out32["forces"].dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model32.parameters())
    model64 = model32.double()
    markers = [
        getattr(module, name)
        for module in model64.modules()
        for name in ("_output_dtype", "model_dtype")
        if isinstance(getattr(module, name, None), torch.dtype)
    ]
    assert markers and set(markers) == {torch.float64}
    out64 = model64(*batch.inputs())
    assert out64["forces"].dtype == torch.float64
    assert relative_error(out32["forces"].double(), out64["forces"]) < 1e-5
    assert model64.float()(batch.positions.float(), *batch.inputs()[1:])["forces"].dtype == torch.float32


def test_construction_is_seeded_by_torchs_generator_and_elements_map_to_types() -> None:
    first, again = tiny_nequip(), tiny_nequip()
    torch.manual_seed(1)
    other = build_model("force_field", "nequip", "xs", **TINY).double()
    weights = [dict(m.named_parameters())["network.model.func.type_embed.embed_module.weight"] for m in (first, again)]
    assert torch.equal(*weights)
    assert not torch.equal(weights[0], other.network.model.func.type_embed.embed_module.weight)
    restricted = tiny_nequip(elements=["H", "C", "N", "O", "F"])
    assert restricted.elements == ("H", "C", "N", "O", "F")
    molecules = random_molecules(2, 4, seed=3)
    chno = torch.where(molecules.atomic_numbers > 0, 6, 0)
    assert torch.isfinite(restricted(molecules.positions, chno, molecules.mask, molecules.bond_orders)["energy"]).all()
    sulphur = chno.clone()
    sulphur[0, 0] = 16
    with pytest.raises(ValueError, match=r"\[16\]"):
        restricted(molecules.positions, sulphur, molecules.mask, molecules.bond_orders)
    with pytest.raises(ValueError, match="Xx"):
        tiny_nequip(elements=["H", "Xx"])


def test_the_global_state_guard_undoes_dtype_seed_environment_and_sharing_changes() -> None:
    dtype, sharing = torch.get_default_dtype(), torch.multiprocessing.get_sharing_strategy()
    environment = dict(os.environ)
    torch_state, numpy_state, python_state = torch.get_rng_state(), np.random.get_state(), random.getstate()  # noqa: NPY002
    with _contained_global_state():  # what nequip's set_global_state does, done by hand
        torch.set_default_dtype(torch.float64)
        torch.manual_seed(123), np.random.seed(123), random.seed(123)  # noqa: NPY002
        os.environ["PL_GLOBAL_SEED"] = "123"
        torch.multiprocessing.set_sharing_strategy("file_system" if sharing != "file_system" else "file_descriptor")
        assert torch.get_default_dtype() == torch.float64  # the block did change it
    assert torch.get_default_dtype() == dtype and torch.multiprocessing.get_sharing_strategy() == sharing
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == python_state
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state, strict=True))  # noqa: NPY002
    assert dict(os.environ) == environment


_FRESH_PROCESS = """
import json, os, torch
import nequip.model, nequip.utils.global_state as nequip_state, rdkit.Chem  # imports set RDBASE etc.: not measured
from eqdyn.models import build_model


def measured(change):
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(7)
    state, environment = torch.get_rng_state(), dict(os.environ)
    change()
    return {
        "dtype": str(torch.get_default_dtype()),
        "rng_unchanged": bool(torch.equal(torch.get_rng_state(), state)),
        "environment_unchanged": dict(os.environ) == environment,
    }


ours = measured(lambda: build_model("force_field", "nequip", "xs", layers=1, features=2, radial_width=2, seed=0))
nequip_state._GLOBAL_STATE_INITIALIZED = False  # run nequip's own setup once more, uncontained
raw = measured(nequip_state.set_global_state)
print(json.dumps({"ours": ours, "raw": raw}))
"""


def test_a_fresh_process_keeps_its_default_dtype_seed_and_environment_where_nequip_alone_would_not() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["ours"] == {"dtype": "torch.float32", "rng_unchanged": True, "environment_unchanged": True}
    assert measured["raw"] == {"dtype": "torch.float64", "rng_unchanged": False, "environment_unchanged": False}


def _evaluation_batch(model: nn.Module, parameter_names: list[str] | None, hvp_method: str) -> FixedBatchLosses:
    task = build_task("force_field")
    molecules = random_molecules(2, 4, seed=1, with_labels=True)
    evaluation = make_evaluation_rotations(task, molecules.example_id.numpy(), seed=5, num_rotations=4)
    example, rotations = make_evaluation_example(task, molecules, evaluation, noise_seed=7)
    return FixedBatchLosses(task, model, example, rotations, parameter_names=parameter_names, hvp_method=hvp_method)


def _small_parameter_names(model: nn.Module, budget: int = 16) -> list[str]:
    chosen, total = [], 0
    for name, p in sorted(model.named_parameters(), key=lambda item: item[1].numel()):
        if "embed" in name or total + p.numel() > budget:
            continue
        chosen.append(name)
        total += p.numel()
    return chosen


@pytest.mark.parametrize("hvp_method", ["forward_over_reverse", "reverse_over_reverse"])
def test_hessian_vector_products_match_the_dense_hessian(hvp_method: str) -> None:
    model = tiny_nequip()
    names = _small_parameter_names(model)
    losses = _evaluation_batch(model, names, hvp_method)
    dense = torch.func.jacfwd(torch.func.grad(losses.loss_function("mean")))(losses.parameters)
    assert dense.shape == (losses.dim, losses.dim) and losses.dim >= 8
    assert relative_error(dense, dense.T) < 1e-10 and float(dense.abs().max()) > 0
    direction = torch.randn(losses.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert relative_error(losses.hvp("mean", direction), dense @ direction) < 1e-9
    block = torch.randn(3, losses.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert relative_error(losses.hvp("mean", block), block @ dense) < 1e-9
    assert losses.hvp_method == hvp_method and losses.fallback_reason is None
    # an equivariant model: L_equiv is zero for every parameter value, so is its Hessian
    assert float(losses.hvp("equiv", direction).norm()) < 1e-12 * float((dense @ direction).norm())


def test_both_hvp_paths_agree_on_every_parameter() -> None:
    model = tiny_nequip()
    forward, reverse = (
        _evaluation_batch(model, None, method) for method in ("forward_over_reverse", "reverse_over_reverse")
    )
    direction = torch.randn(forward.dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert relative_error(forward.hvp("total", direction), reverse.hvp("total", direction)) < 1e-10


def _decomposition_equiv_share(model: nn.Module) -> float:
    task = build_task("force_field")
    molecules = random_molecules(3, 5, seed=2, with_labels=True)
    evaluation = make_evaluation_rotations(task, molecules.example_id.numpy(), seed=3, num_rotations=4)
    example, rotations = make_evaluation_example(task, molecules, evaluation, noise_seed=1)
    result = decompose(task, model, example, rotations)
    return float(result.quantity("equiv").sum() / result.quantity("total").sum())


def test_decomposition_gives_zero_equivariance_loss_where_an_unconstrained_model_does_not() -> None:
    assert abs(_decomposition_equiv_share(tiny_nequip())) < 1e-20
    torch.manual_seed(0)
    transformer = build_model("force_field", "transformer", "xs", dim=8, layers=1, heads=1).double().eval()
    assert _decomposition_equiv_share(transformer) > 1e-6
