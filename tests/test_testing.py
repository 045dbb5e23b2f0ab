"""The public equivariance-error utility separates equivariant from non-equivariant maps."""

from __future__ import annotations

import torch

from eqdyn.symmetry.rotations import haar_rotations
from eqdyn.tasks import FlowMatchingTask, KeyedNoise
from eqdyn.testing import equivariance_error, random_molecules
from test_decomposition import CartesianVelocity, PairwiseVelocity


def test_equivariance_error_is_zero_for_equivariant_and_large_for_cartesian_maps() -> None:
    task = FlowMatchingTask()
    example = task.make_example(random_molecules(5, seed=3), KeyedNoise(0))
    rotations = haar_rotations(5, torch.Generator().manual_seed(0))
    assert equivariance_error(task, PairwiseVelocity(), example, rotations) < 1e-24
    assert equivariance_error(task, CartesianVelocity(), example, rotations) > 1e-2
