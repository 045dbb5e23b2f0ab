"""The public equivariance utilities separate equivariant from non-equivariant maps, with tolerances per dtype."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eqdyn.symmetry.rotations import haar_rotations
from eqdyn.tasks import FlowMatchingTask, KeyedNoise, VoxelDenoisingTask
from eqdyn.tasks.base import Example
from eqdyn.testing import EQUIVARIANCE_TOLERANCES, assert_equivariant, equivariance_error, random_molecules
from test_decomposition import CartesianVelocity, OctahedralTwirl, PairwiseVelocity


def test_equivariance_error_is_zero_for_equivariant_and_large_for_cartesian_maps() -> None:
    task = FlowMatchingTask()
    example = task.make_example(random_molecules(5, seed=3), KeyedNoise(0))
    rotations = haar_rotations(5, torch.Generator().manual_seed(0))
    assert equivariance_error(task, PairwiseVelocity(), example, rotations) < 1e-24
    assert equivariance_error(task, CartesianVelocity(), example, rotations) > 1e-2


class SlightlyCartesian(nn.Module):
    """An equivariant map plus ``epsilon`` times a non-equivariant one: its equivariance error scales with epsilon."""

    def __init__(self, epsilon: float, dtype: torch.dtype) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.scale = nn.Parameter(torch.ones((), dtype=dtype))

    def forward(self, positions, atomic_numbers, mask, bond_orders, t) -> torch.Tensor:
        exact = PairwiseVelocity()(positions, atomic_numbers, mask, bond_orders, t)
        return self.scale * exact + self.epsilon * positions.roll(1, dims=-1) * mask.unsqueeze(-1)


class Chiral(nn.Module):
    """v_i = sum_j (x_i x x_j): rotation-equivariant (a pseudovector), not reflection-equivariant."""

    def forward(self, positions, atomic_numbers, mask, bond_orders, t) -> torch.Tensor:
        total = (positions * mask.unsqueeze(-1)).sum(1, keepdim=True)
        return torch.linalg.cross(positions, total.expand_as(positions)) * mask.unsqueeze(-1)


class Zero(nn.Module):
    def forward(self, positions, atomic_numbers, mask, bond_orders, t) -> torch.Tensor:
        return torch.zeros_like(positions)


def test_assert_equivariant_passes_equivariant_and_fails_cartesian_maps() -> None:
    task = FlowMatchingTask()
    errors = assert_equivariant(task, PairwiseVelocity(), dtype=torch.float64)
    assert errors["velocity"] < 1e-12
    with pytest.raises(AssertionError, match="velocity: not equivariant under rotation"):
        assert_equivariant(task, CartesianVelocity())


def test_assert_equivariant_tolerances_follow_the_dtype() -> None:
    """An error of ~1e-6 of the output's scale is round-off for float32 but a failure for float64."""
    task = FlowMatchingTask()
    assert assert_equivariant(task, SlightlyCartesian(1e-6, torch.float32))["velocity"] > 1e-8
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(task, SlightlyCartesian(1e-6, torch.float64))
    assert_equivariant(task, SlightlyCartesian(1e-6, torch.float64), rtol=1e-4)  # explicit tolerances win
    with pytest.raises(AssertionError):
        assert_equivariant(task, SlightlyCartesian(1e-2, torch.float32))
    assert set(EQUIVARIANCE_TOLERANCES) >= {torch.float32, torch.float64}
    assert EQUIVARIANCE_TOLERANCES[torch.float32][0] > EQUIVARIANCE_TOLERANCES[torch.float64][0]


def test_assert_equivariant_parity_and_vacuous_outputs() -> None:
    task = FlowMatchingTask()
    assert_equivariant(task, Chiral())  # rotations only: passes
    with pytest.raises(AssertionError, match="not equivariant under reflection"):
        assert_equivariant(task, Chiral(), parity=True)
    assert "velocity/reflection" in assert_equivariant(task, PairwiseVelocity(), parity=True)
    with pytest.raises(AssertionError, match="zero everywhere"):
        assert_equivariant(task, Zero(), dtype=torch.float64)


def test_assert_equivariant_uses_cube_rotations_for_voxel_grids() -> None:
    task = VoxelDenoisingTask(elements=(1, 6), grid_size=6)
    grids = torch.randn(3, 2, 6, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    example = Example({"grid": grids}, {"grid": grids}, torch.arange(3))
    conv = nn.Conv3d(2, 2, 3, padding=1).double()
    assert_equivariant(task, OctahedralTwirl(conv), example=example)
    with pytest.raises(AssertionError, match="grid: not equivariant"):
        assert_equivariant(task, conv, example=example)
