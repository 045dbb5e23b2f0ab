"""Gaussian atom-density grids (VoxMol style), batched in torch, for on-the-fly voxelisation.

Voxel (i, j, k) has its centre at ((i - (L-1)/2) r, (j - (L-1)/2) r, (k - (L-1)/2) r): the grid is centred on the
origin and symmetric under the 24 cube rotations, so rotating the (centred) molecule by a signed permutation
matrix permutes and flips the grid exactly (what the coset estimator of the voxel task relies on). Channel c holds
sum over atoms of element ``elements[c]`` of exp(-|v - x|^2 / (2 sigma^2)) (unnormalised Gaussians, peak 1).

The Gaussian factorises over the three axes, so each atom costs 3 L exponentials and one outer product; atoms
are processed in chunks to bound memory at about B * chunk * L^2 extra floats.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def grid_coordinates(grid_size: int, resolution: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Voxel-centre coordinates along one axis, [L], symmetric about 0."""
    index = torch.arange(grid_size, dtype=dtype, device=device)
    return (index - (grid_size - 1) / 2) * resolution


def voxelize(
    positions: torch.Tensor,
    atomic_numbers: torch.Tensor,
    mask: torch.Tensor,
    elements: Sequence[int],
    grid_size: int,
    resolution: float,
    sigma: float,
    atom_chunk: int = 8,
) -> torch.Tensor:
    """Densities [B, len(elements), L, L, L] of molecules ``positions`` [B, N, 3] (Å, centred) on an L^3 grid.

    ``atomic_numbers`` [B, N] and ``mask`` [B, N] as in the dataset files; a real atom whose element is not in
    ``elements`` is an error (dropping it silently would corrupt the density).
    """
    if positions.ndim != 3 or positions.shape[-1] != 3:
        raise ValueError(f"positions must be [B, N, 3], got {tuple(positions.shape)}")
    batch, atoms, _ = positions.shape
    dtype, device = positions.dtype, positions.device
    element_table = torch.as_tensor(list(elements), device=device, dtype=atomic_numbers.dtype)
    one_hot = (atomic_numbers[..., None] == element_table) & mask[..., None].bool()  # [B, N, C]
    unknown = mask.bool() & ~one_hot.any(-1)
    if bool(unknown.any()):
        found = sorted({int(z) for z in atomic_numbers[unknown].tolist()})
        raise ValueError(f"atomic numbers {found} have no channel (elements {list(elements)})")
    weights = one_hot.to(dtype)
    axis = grid_coordinates(grid_size, resolution, dtype, device)
    out = torch.zeros(batch, len(element_table), grid_size, grid_size, grid_size, dtype=dtype, device=device)
    inv_two_sigma_sq = 1.0 / (2.0 * sigma * sigma)
    for start in range(0, atoms, atom_chunk):
        chunk = positions[:, start : start + atom_chunk]  # [B, n, 3]
        # Per-axis Gaussian factors [B, n, 3, L]
        factors = torch.exp(-((axis - chunk[..., None]) ** 2) * inv_two_sigma_sq)
        gx, gy, gz = factors.unbind(dim=2)
        out += torch.einsum("bnc,bni,bnj,bnk->bcijk", weights[:, start : start + atom_chunk], gx, gy, gz)
    return out
