"""Equivariance, non-equivariance, padding and chirality of the flow-matching and force-field models (float64)."""

from __future__ import annotations

import pytest
import torch
from models_testing import PaddedMolecules, mixed_batch, pad_batch, random_rotations, relative_error
from torch import Tensor, nn

from eqdyn.models import MODEL_FAMILIES, build_model
from eqdyn.tasks import build_task
from eqdyn.testing import assert_equivariant

POINT_CLOUD_FAMILIES = [(task, family) for task, family, _ in MODEL_FAMILIES if task != "voxel_denoising"]
EQUIVARIANT = [(t, f) for t, f, eq in MODEL_FAMILIES if t != "voxel_denoising" and eq != "none"]
NON_EQUIVARIANT = [(t, f) for t, f, eq in MODEL_FAMILIES if t != "voxel_denoising" and eq == "none"]
MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))


def build(task: str, family: str) -> nn.Module:
    torch.manual_seed(0)
    overrides = {"attention": "math"} if family == "transformer" else {}
    return build_model(task, family, "xs", **overrides).double().eval()


def vector_output(model: nn.Module, task: str, batch: PaddedMolecules) -> Tensor:
    """The per-atom vector output: velocity (flow matching) or forces (force field)."""
    if task == "flow_matching":
        return model(*batch.inputs(), batch.t)
    return model(*batch.inputs())["forces"]


@pytest.mark.parametrize(("task", "family"), EQUIVARIANT)
def test_equivariant_models_commute_with_haar_rotations(task: str, family: str) -> None:
    """Every output part (force field: the invariant energy and the forces) at float64 default tolerances."""
    errors = assert_equivariant(build_task(task), build(task, family))
    assert max(errors.values()) < 1e-9


@pytest.mark.parametrize(("task", "family"), EQUIVARIANT)
def test_equivariant_models_pass_in_float32_too(task: str, family: str) -> None:
    torch.manual_seed(0)
    overrides = {"attention": "math"} if family == "transformer" else {}
    model = build_model(task, family, "xs", **overrides).float().eval()
    assert_equivariant(build_task(task), model)  # the float32 defaults: round-off of ~1e-7 passes


@pytest.mark.parametrize(("task", "family"), NON_EQUIVARIANT)
def test_unconstrained_models_are_not_equivariant_at_initialisation(task: str, family: str) -> None:
    with pytest.raises(AssertionError, match="not equivariant under rotation"):
        assert_equivariant(build_task(task), build(task, family))


@pytest.mark.parametrize(("task", "family"), POINT_CLOUD_FAMILIES)
def test_padding_is_inert(task: str, family: str) -> None:
    model, batch = build(task, family), mixed_batch()
    padded = pad_batch(batch, extra=3)
    n = batch.mask.shape[1]
    plain_vectors, padded_vectors = vector_output(model, task, batch), vector_output(model, task, padded)
    assert torch.equal(plain_vectors[~batch.mask], torch.zeros_like(plain_vectors[~batch.mask]))
    assert torch.equal(padded_vectors[~padded.mask], torch.zeros_like(padded_vectors[~padded.mask]))
    assert (padded_vectors[:, :n] - plain_vectors).abs().max() < 1e-10
    if task == "force_field":
        assert (model(*padded.inputs())["energy"] - model(*batch.inputs())["energy"]).abs().max() < 1e-10


@pytest.mark.parametrize(("task", "family"), POINT_CLOUD_FAMILIES)
def test_output_does_not_depend_on_molecules_sharing_the_batch(task: str, family: str) -> None:
    model, batch = build(task, family), mixed_batch()
    alone = PaddedMolecules(*(x[1:2] for x in (*batch.inputs(), batch.t)))
    assert (vector_output(model, task, batch)[1:2] - vector_output(model, task, alone)).abs().max() < 1e-10


def test_chiral_egnn_tells_a_molecule_from_its_mirror_image() -> None:
    model, batch = build("flow_matching", "egnn"), mixed_batch()
    mirrored_then_model = vector_output(model, "flow_matching", batch.rotated(MIRROR))
    model_then_mirrored = vector_output(model, "flow_matching", batch) @ MIRROR
    assert relative_error(mirrored_then_model, model_then_mirrored) >= 1e-2
    with pytest.raises(AssertionError, match="not equivariant under reflection"):
        assert_equivariant(build_task("flow_matching"), model, parity=True)


@pytest.mark.parametrize(("task", "family"), [("flow_matching", "egnn_e3"), ("force_field", "painn")])
def test_e3_models_are_also_reflection_equivariant(task: str, family: str) -> None:
    errors = assert_equivariant(build_task(task), build(task, family), parity=True)
    assert any(name.endswith("/reflection") for name in errors)


def test_flow_models_depend_on_time_and_bonds() -> None:
    batch = mixed_batch()
    for family in ("transformer", "egnn"):
        model = build("flow_matching", family)
        base = model(*batch.inputs(), batch.t)
        assert relative_error(model(*batch.inputs(), 1.0 - batch.t), base) > 1e-3
        unbonded = torch.zeros_like(batch.bond_orders)
        assert relative_error(model(batch.positions, batch.atomic_numbers, batch.mask, unbonded, batch.t), base) > 1e-3


def test_egnn_with_a_distance_cutoff_stays_equivariant_and_ignores_far_pairs() -> None:
    torch.manual_seed(0)
    model = build_model("flow_matching", "egnn", "xs", cutoff=2.5).double().eval()
    batch = mixed_batch()
    rotations = random_rotations(len(batch.mask))
    expected = model(*batch.inputs(), batch.t) @ rotations.transpose(-1, -2)
    assert relative_error(model(*batch.rotated(rotations).inputs(), batch.t), expected) < 1e-9
    # two atoms further apart than the cutoff, without a bond, do not see each other: each moves as if alone
    far = PaddedMolecules(
        positions=torch.tensor([[[-2.0, 0.0, 0.0], [2.0, 0.0, 0.0]]], dtype=torch.float64),
        atomic_numbers=torch.tensor([[6, 8]]),
        mask=torch.ones(1, 2, dtype=torch.bool),
        bond_orders=torch.zeros(1, 2, 2, dtype=torch.long),
        t=torch.tensor([0.5], dtype=torch.float64),
    )
    assert model(*far.inputs(), far.t).abs().max() == 0
