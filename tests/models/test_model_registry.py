"""The registry: families, presets, symmetry labels, error messages, float32 shapes of every family."""

from __future__ import annotations

import pytest
import torch
from models_testing import make_batch

from eqdyn.models import FAMILY_SPECS, MODEL_FAMILIES, TASKS, build_model, count_parameters


def test_every_task_has_an_unconstrained_and_an_equivariant_family() -> None:
    for task in TASKS:
        symmetries = {eq for t, _, eq in MODEL_FAMILIES if t == task}
        assert "none" in symmetries and symmetries - {"none"}
    assert {eq for _, _, eq in MODEL_FAMILIES} <= {"none", "SO3", "E3", "octahedral"}


@pytest.mark.parametrize(("task", "family", "equivariance"), MODEL_FAMILIES)
def test_presets_span_two_orders_of_magnitude_and_carry_their_symmetry(
    task: str, family: str, equivariance: str
) -> None:
    spec = FAMILY_SPECS[(task, family)]
    with torch.device("meta"):  # count without allocating weights (the largest transformer has 200M)
        counts = {size: count_parameters(build_model(task, family, size)) for size in spec.presets}
    assert list(counts.values()) == sorted(counts.values())
    assert max(counts.values()) >= 100 * min(counts.values())
    assert build_model(task, family, spec.default_size).equivariance == equivariance


def test_transformer_ladder_reaches_the_gpu_scale() -> None:
    with torch.device("meta"):
        largest = count_parameters(build_model("flow_matching", "transformer", "xl"))
    smallest = count_parameters(build_model("flow_matching", "transformer", "xs"))
    assert smallest <= 100_000 and largest >= 50_000_000


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (("denoising", "transformer", "s"), "'denoising'"),
        (("force_field", "egnn", "s"), "'egnn'"),
        (("flow_matching", "transformer", "xxl"), "'xxl'"),
    ],
)
def test_unknown_names_are_rejected_by_name(arguments: tuple[str, str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        build_model(*arguments)


def test_overrides_that_change_the_symmetry_label_are_rejected() -> None:
    with pytest.raises(ValueError, match="symmetry"):
        build_model("flow_matching", "egnn", "xs", chiral=False)
    assert build_model("flow_matching", "egnn_e3", "xs").equivariance == "E3"


@pytest.mark.parametrize(("task", "family", "equivariance"), MODEL_FAMILIES)
def test_float32_forward_shapes(task: str, family: str, equivariance: str) -> None:
    torch.manual_seed(0)
    model = build_model(task, family, "xs")
    if task == "voxel_denoising":
        grids = torch.rand(2, 5, 8, 8, 8)
        assert model(grids).shape == grids.shape
        return
    batch = make_batch([5, 3], max_atoms=5, dtype=torch.float32)
    inputs = (batch.positions, batch.atomic_numbers, batch.mask, batch.bond_orders)
    if task == "flow_matching":
        assert model(*inputs, batch.t).shape == (2, 5, 3)
    else:
        output = model(*inputs)
        assert output["energy"].shape == (2,) and output["forces"].shape == (2, 5, 3)
