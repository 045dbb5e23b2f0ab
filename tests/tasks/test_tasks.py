"""Each task: its loss is rotation-invariant, its randomness is reproducible, its examples are well formed."""

from __future__ import annotations

import pytest
import torch

from eqdyn.symmetry.rotations import haar_rotations, octahedral_group
from eqdyn.tasks import FlowMatchingTask, ForceFieldTask, GeneratorNoise, KeyedNoise, VoxelDenoisingTask, build_task
from eqdyn.testing import random_molecules

GEN = torch.Generator().manual_seed(3)


def _random_like(output: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {part: torch.randn(value.shape, generator=GEN, dtype=value.dtype) for part, value in output.items()}


def test_point_cloud_losses_are_rotation_invariant() -> None:
    molecules = random_molecules(5, seed=4, with_labels=True)
    rotations = haar_rotations(5, GEN)
    for task in (FlowMatchingTask(), ForceFieldTask(energy_weight=0.5, force_weight=3.0)):
        example = task.make_example(molecules, KeyedNoise(1))
        prediction = _random_like(example.target)
        before = task.loss(prediction, example.target, example.inputs)
        after = task.loss(
            task.act_on_outputs(prediction, rotations),
            task.act_on_outputs(example.target, rotations),
            task.act_on_inputs(example.inputs, rotations),
        )
        assert torch.allclose(before, after, rtol=1e-12, atol=0), task.name


def test_voxel_loss_is_invariant_under_cube_rotations() -> None:
    task = VoxelDenoisingTask(elements=(1, 6, 8), grid_size=8, resolution=0.5)
    clean = torch.randn(3, 3, 8, 8, 8, generator=GEN, dtype=torch.float64)
    inputs, target = {"grid": clean + 0.1}, {"grid": clean}
    prediction = _random_like(target)
    rotations = octahedral_group()[[2, 11, 20]]
    before = task.loss(prediction, target, inputs)
    after = task.loss(
        task.act_on_outputs(prediction, rotations),
        task.act_on_outputs(target, rotations),
        task.act_on_inputs(inputs, rotations),
    )
    assert torch.allclose(before, after, rtol=1e-12, atol=0)


def test_keyed_noise_depends_on_seed_and_example_id_only() -> None:
    molecules = random_molecules(4, seed=5)
    task = FlowMatchingTask()
    first = task.make_example(molecules, KeyedNoise(9))
    again = task.make_example(molecules, KeyedNoise(9))
    assert all(torch.equal(first.inputs[k], again.inputs[k]) for k in first.inputs)
    # a sub-batch in another order sees the same draws for the same examples
    order = torch.tensor([2, 0])
    sub = task.make_example(
        type(molecules)(
            molecules.positions[order],
            molecules.atomic_numbers[order],
            molecules.mask[order],
            molecules.bond_orders[order],
            molecules.example_id[order],
        ),
        KeyedNoise(9),
    )
    assert torch.equal(sub.inputs["t"], first.inputs["t"][order])
    assert torch.equal(sub.target["velocity"], first.target["velocity"][order])
    other = task.make_example(molecules, KeyedNoise(10))
    assert not torch.equal(other.inputs["t"], first.inputs["t"])


def test_generator_noise_is_reproducible_from_its_seed() -> None:
    molecules = random_molecules(4, seed=6)
    task = FlowMatchingTask()
    a = task.make_example(molecules, GeneratorNoise(torch.Generator().manual_seed(1)))
    b = task.make_example(molecules, GeneratorNoise(torch.Generator().manual_seed(1)))
    assert torch.equal(a.inputs["positions"], b.inputs["positions"])


def test_flow_matching_example_interpolates_centred_prior_and_conformer() -> None:
    molecules = random_molecules(4, seed=7)
    example = FlowMatchingTask(prior_sigma=1.0).make_example(molecules, KeyedNoise(2))
    mask = molecules.mask.unsqueeze(-1).double()
    x_t, t, velocity = example.inputs["positions"], example.inputs["t"], example.target["velocity"]
    assert ((t >= 0) & (t < 1)).all()
    assert torch.allclose((x_t * mask).sum(1), torch.zeros(4, 3, dtype=torch.float64), atol=1e-12)  # centred
    assert torch.equal(x_t * (1 - mask), torch.zeros_like(x_t))  # padding stays zero
    # x1 = x_t + (1 - t) v and x0 = x_t - t v: the conformer (centred) and the prior are recovered
    tt = t.view(-1, 1, 1)
    x1 = x_t + (1 - tt) * velocity
    centroid = (molecules.positions * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True)
    assert torch.allclose(x1, (molecules.positions - centroid) * mask, atol=1e-12)


def test_voxel_example_is_clean_density_plus_noise_of_the_stated_sigma() -> None:
    task = VoxelDenoisingTask(elements=(1, 6, 7, 8, 9), grid_size=16, resolution=0.5, noise_sigma=0.9)
    molecules = random_molecules(3, seed=8)
    molecules = type(molecules)(
        molecules.positions * 0.5,
        molecules.atomic_numbers.clamp(max=9) * 0 + 6,
        molecules.mask,
        molecules.bond_orders,
        molecules.example_id,
    )
    example = task.make_example(molecules, KeyedNoise(3))
    clean, noisy = example.target["grid"], example.inputs["grid"]
    assert clean.shape == (3, 5, 16, 16, 16)
    assert clean[:, 1].sum() > 0 and clean[:, 0].abs().sum() == 0  # carbon channel only
    noise = noisy - clean
    assert abs(float(noise.std()) - 0.9) < 0.01


def test_build_task_rejects_unknown_names() -> None:
    with pytest.raises(KeyError, match="denoising"):
        build_task("denoising")
