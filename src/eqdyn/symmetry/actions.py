"""How a rotation acts on the objects of the three tasks.

- points and per-atom vectors (centred coordinates, velocities, forces): ``x -> x R^T`` on rows;
- invariant scalars (energies): unchanged;
- voxel grids ``[..., L, L, L]`` whose axes are (x, y, z) and whose voxel centres are symmetric about the origin,
  ``(rho(R) V)(r) = V(R^T r)``: exact for the 24 cube rotations (a permutation of voxels), and by trilinear
  resampling for any other rotation (interpolation: not orthogonal, it shrinks norms and loses the corners; a
  secondary view only, see docs/maths.md "Voxel grids").

All functions are batched: ``R`` is [3, 3] (one rotation for all) or [B, 3, 3] (one per leading batch entry).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from eqdyn.symmetry.rotations import is_octahedral


def rotate_points(points: Tensor, rotations: Tensor) -> Tensor:
    """Rotate rows ``points [B, N, 3]`` (or [N, 3]) by ``rotations [B, 3, 3]`` (or [3, 3])."""
    return points @ rotations.to(points.dtype).transpose(-1, -2)


def rotate_vectors(vectors: Tensor, rotations: Tensor) -> Tensor:
    """Per-atom vectors transform like centred points (translations were removed by centring)."""
    return rotate_points(vectors, rotations)


def _centred_voxel_coordinates(size: int, device: torch.device) -> Tensor:
    """Integer coordinates 2 i - (L - 1) of every voxel centre, [L^3, 3], in row-major (x, y, z) order."""
    axis = 2 * torch.arange(size, device=device) - (size - 1)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)


def rotate_grid_octahedral(grid: Tensor, rotations: Tensor) -> Tensor:
    """Exact action of cube rotations on grids ``[B, ..., L, L, L]``: a permutation of voxels, nothing interpolated.

    Raises ``ValueError`` for a rotation outside the octahedral group (use :func:`rotate_grid_resampled`).
    """
    size = grid.shape[-1]
    if grid.shape[-3:] != (size, size, size):
        raise ValueError(f"expected a cubic grid [..., L, L, L], got shape {tuple(grid.shape)}")
    if not bool(is_octahedral(rotations.double()).all()):
        raise ValueError("rotate_grid_octahedral needs rotations of the 24-element cube group")
    signed = rotations.double().round().to(torch.long)
    coords = _centred_voxel_coordinates(size, grid.device)  # output voxel u
    source = coords @ signed  # R^T u written on rows: u^T R
    source_index = (source + (size - 1)) // 2
    flat_source = (source_index[..., 0] * size + source_index[..., 1]) * size + source_index[..., 2]
    flat_grid = grid.reshape(*grid.shape[:-3], size**3)
    if flat_source.dim() == 1:
        out = flat_grid[..., flat_source]
    else:
        batch = flat_source.shape[0]
        middle = flat_grid.shape[1:-1]
        index = flat_source.reshape(batch, *([1] * len(middle)), size**3).expand(batch, *middle, size**3)
        out = torch.gather(flat_grid, -1, index)
    return out.reshape(grid.shape)


def rotate_grid_resampled(grid: Tensor, rotations: Tensor) -> Tensor:
    """Any rotation, by trilinear resampling of ``grid [B, C, L, L, L]``; values outside the grid read as zero.

    Not exact: interpolation smooths, is not norm-preserving and loses the cube's corners. For a cube rotation it
    reproduces :func:`rotate_grid_octahedral` to rounding error.
    """
    if grid.dim() != 5:
        raise ValueError(f"expected [B, C, L, L, L], got shape {tuple(grid.shape)}")
    batch, size = grid.shape[0], grid.shape[-1]
    rotations = rotations.to(grid.dtype)
    if rotations.dim() == 2:
        rotations = rotations.expand(batch, 3, 3)
    coords = _centred_voxel_coordinates(size, grid.device).to(grid.dtype) / (size - 1)  # in [-1, 1]
    source = coords.unsqueeze(0) @ rotations  # [B, L^3, 3] in (x, y, z) = tensor dims (D, H, W)
    # grid_sample's last dimension is ordered (W, H, D): reverse the axes.
    sample_at = source.flip(-1).reshape(batch, size, size, size, 3)
    return F.grid_sample(grid, sample_at, mode="bilinear", padding_mode="zeros", align_corners=True)
