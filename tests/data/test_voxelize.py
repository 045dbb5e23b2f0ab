"""Voxelisation: exact permutation of the grid under cube rotations, density normalisation, element channels."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from eqdyn.data.voxelize import voxelize

ELEMENTS = [1, 6, 7, 8]


def cube_rotations() -> list[torch.Tensor]:
    """The 24 signed permutation matrices with determinant +1."""
    rotations = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            matrix = torch.zeros(3, 3, dtype=torch.float64)
            for row, (column, sign) in enumerate(zip(perm, signs, strict=True)):
                matrix[row, column] = sign
            if torch.det(matrix) > 0:
                rotations.append(matrix)
    return rotations


def molecule(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    positions = torch.randn(2, 7, 3, generator=gen, dtype=torch.float64)
    numbers = torch.tensor([ELEMENTS[i % 4] for i in range(7)]).repeat(2, 1)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    numbers[1, 5:] = 0
    return positions * mask[..., None], numbers, mask


def rotate_grid(grid: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Density after rotating the molecule: D'(v) = D(R^T v), on integer voxel offsets about the centre."""
    size = grid.shape[-1]
    offsets = torch.arange(size, dtype=torch.float64) * 2 - (size - 1)  # 2 * (i - (L-1)/2), integers
    centres = torch.stack(torch.meshgrid(offsets, offsets, offsets, indexing="ij"), dim=-1)  # [L, L, L, 3]
    source = centres @ rotation  # rows are (R^T v)^T
    index = ((source + (size - 1)) / 2).round().long()
    return grid[..., index[..., 0], index[..., 1], index[..., 2]]


@pytest.mark.parametrize("size", [8, 9])
def test_cube_rotations_permute_the_grid_exactly(size: int) -> None:
    positions, numbers, mask = molecule()
    grid = voxelize(positions, numbers, mask, ELEMENTS, size, 0.4, 0.5)
    rotations = cube_rotations()
    assert len(rotations) == 24
    for rotation in rotations:
        rotated = voxelize(positions @ rotation.T, numbers, mask, ELEMENTS, size, 0.4, 0.5)
        torch.testing.assert_close(rotated, rotate_grid(grid, rotation), rtol=0, atol=1e-12)
    # The same thing with torch.rot90: 90 degrees about z maps (x, y) -> (-y, x).
    quarter = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    rotated = voxelize(positions @ quarter.T, numbers, mask, ELEMENTS, size, 0.4, 0.5)
    torch.testing.assert_close(rotated, torch.rot90(grid, 1, dims=(2, 3)), rtol=0, atol=1e-12)
    assert not torch.allclose(rotated, grid)


def test_total_density_per_channel_matches_gaussian_integral() -> None:
    positions, numbers, mask = molecule(1)
    positions = positions * 0.3  # well inside the grid: the Gaussian tails are not cut off
    sigma, resolution = 0.5, 0.125
    grid = voxelize(positions, numbers, mask, ELEMENTS, 64, resolution, sigma)
    per_atom = (2 * math.pi * sigma**2) ** 1.5 / resolution**3
    for b in range(2):
        for channel, z in enumerate(ELEMENTS):
            count = int(((numbers[b] == z) & mask[b]).sum())
            assert float(grid[b, channel].sum()) == pytest.approx(count * per_atom, rel=1e-5)
    assert grid.shape == (2, 4, 64, 64, 64)


def test_chunking_padding_and_unknown_elements() -> None:
    positions, numbers, mask = molecule(2)
    whole = voxelize(positions, numbers, mask, ELEMENTS, 10, 0.5, 0.6, atom_chunk=100)
    chunked = voxelize(positions, numbers, mask, ELEMENTS, 10, 0.5, 0.6, atom_chunk=2)
    torch.testing.assert_close(whole, chunked, rtol=0, atol=1e-12)
    moved = positions.clone()
    moved[1, 5:] = 3.0  # padding atoms move: nothing changes
    torch.testing.assert_close(voxelize(moved, numbers, mask, ELEMENTS, 10, 0.5, 0.6), whole, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\[9\]"):
        voxelize(positions, numbers.masked_fill(numbers == 8, 9), mask, ELEMENTS, 10, 0.5, 0.6)
