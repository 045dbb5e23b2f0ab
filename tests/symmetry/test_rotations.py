"""Haar sampling is tested as a distribution, not just as orthogonal matrices (n = 20,000, fixed seed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from eqdyn.symmetry.rotations import (
    axis_rotation,
    coset_frames,
    euler_angle_rotations_nonuniform,
    evaluation_rotations,
    haar_rotations,
    is_octahedral,
    octahedral_group,
    rotation_angle,
)

N = 20_000


def _haar_angle_cdf(theta: np.ndarray) -> np.ndarray:
    # density (1 - cos theta) / pi on [0, pi]
    return (theta - np.sin(theta)) / np.pi


def _second_moment_deviation(rotations: torch.Tensor) -> float:
    """max |E[R_ij R_kl] - delta_ik delta_jl / 3| over all index quadruples."""
    flat = rotations.reshape(-1, 9)
    empirical = flat.T @ flat / flat.shape[0]  # [(i,j), (k,l)]
    eye = torch.eye(3, dtype=rotations.dtype)
    expected = torch.einsum("ik,jl->ijkl", eye, eye).reshape(9, 9) / 3
    return float((empirical - expected).abs().max())


@pytest.fixture(scope="module")
def haar() -> torch.Tensor:
    return haar_rotations(N, torch.Generator().manual_seed(1234))


def test_haar_rotations_are_proper_rotations(haar: torch.Tensor) -> None:
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(haar @ haar.transpose(-1, -2), eye.expand_as(haar), atol=1e-12)
    assert torch.allclose(torch.det(haar), torch.ones(N, dtype=torch.float64), atol=1e-12)


def test_haar_rotation_angle_has_density_one_minus_cos(haar: torch.Tensor) -> None:
    angles = rotation_angle(haar).numpy()
    assert stats.kstest(angles, _haar_angle_cdf).pvalue > 1e-3


def test_haar_second_moments(haar: torch.Tensor) -> None:
    # Each entry's standard error is about 0.3 / sqrt(N) = 0.002; allow 7 of them.
    assert _second_moment_deviation(haar) < 0.015


def test_uniform_euler_angles_are_not_haar() -> None:
    rotations = euler_angle_rotations_nonuniform(N, torch.Generator().manual_seed(1))
    assert torch.allclose(torch.det(rotations), torch.ones(N, dtype=torch.float64), atol=1e-12)
    assert stats.kstest(rotation_angle(rotations).numpy(), _haar_angle_cdf).pvalue < 1e-6
    assert _second_moment_deviation(rotations) > 0.1


def test_rotations_about_one_axis_are_not_haar() -> None:
    angles = torch.rand(N, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2 * torch.pi
    rotations = axis_rotation(angles, 2)
    assert stats.kstest(rotation_angle(rotations).numpy(), _haar_angle_cdf).pvalue < 1e-6
    assert _second_moment_deviation(rotations) > 0.1


def test_octahedral_group_is_a_group_of_24_rotations() -> None:
    group = octahedral_group()
    assert group.shape == (24, 3, 3)
    assert torch.equal(group[0], torch.eye(3, dtype=torch.float64))
    assert bool(is_octahedral(group).all())
    keys = {tuple(g.flatten().tolist()) for g in group}
    assert len(keys) == 24
    for a in group:
        assert tuple(a.T.flatten().tolist()) in keys  # inverses
        for b in group:
            assert tuple((a @ b).flatten().tolist()) in keys  # closure
    assert not bool(is_octahedral(haar_rotations(5, torch.Generator().manual_seed(0))).any())


def test_evaluation_rotations_are_keyed_by_seed_example_and_index() -> None:
    ids = np.array([7, 3, 11])
    four = evaluation_rotations(seed=5, example_ids=ids, num_rotations=4)
    eight = evaluation_rotations(seed=5, example_ids=ids[::-1], num_rotations=8)
    # rotation k of example e depends on (seed, e, k) only: not on K nor on the order of examples
    assert np.array_equal(four, eight[::-1, :4])
    assert not np.allclose(four[0], four[1])  # different examples get different rotations
    assert not np.allclose(four, evaluation_rotations(seed=6, example_ids=ids, num_rotations=4))
    frames = coset_frames(seed=5, example_ids=ids)
    assert frames.shape == (3, 3, 3)
    assert not np.allclose(frames[0], four[0, 0])  # a separate stream from the evaluation rotations
    assert np.allclose(np.linalg.det(frames), 1.0)
