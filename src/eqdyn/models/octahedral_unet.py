"""Voxel denoisers that are EXACTLY equivariant to the 24 rotations of the cube (the octahedral group O), which is
a finite subgroup of SO(3): they are NOT equivariant to other rotations, and a grid cannot even be rotated exactly by
other rotations. Two constructions:

- :class:`OctahedralUNet3D` (family ``octahedral_unet``): the :class:`~eqdyn.models.unet3d.UNet3D` architecture with
  every 3x3x3 kernel tied to be invariant under the cube rotations, one learnable weight per orbit of kernel offsets
  per (input, output) channel pair: 4 orbits (centre, 6 faces, 12 edges, 8 corners). Convolution with an invariant
  kernel commutes with rotating the grid; GroupNorm, SiLU, 1x1 convs, 2x2x2 average pooling and nearest upsampling
  on an even grid centred at the origin commute too. Same FLOPs as the plain U-Net at the same widths, 27/4 fewer
  weights per 3x3x3 conv. Every feature is an octahedral *scalar* field (no oriented channels), so the expressivity
  is limited: each kernel is a radial-like stencil. For 3x3x3 kernels the orbits are also mirror-symmetric, so this
  network is in fact equivariant to the full 48-element group O_h, reflections included.
- :class:`TwirledUNet3D` (family ``twirled_unet3d``): a plain U-Net averaged over the group,
  ``f_bar(x) = (1/24) sum_o o^-1 f(o x)``. Full U-Net expressivity, exactly O-equivariant (not reflections),
  24x the cost of one U-Net pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eqdyn.models.unet3d import UNet3D, cpu_layout, default_conv_bound
from eqdyn.symmetry.actions import rotate_grid_octahedral
from eqdyn.symmetry.rotations import octahedral_group


def kernel_orbits(kernel_size: int) -> Tensor:
    """Orbit id [k, k, k] (long, 0..n_orbits-1) of every kernel offset under the 24 cube rotations."""
    radius = kernel_size // 2
    # explicitly on the CPU: a model built under a `torch.device("meta")` context must still get real orbits
    axis = torch.arange(-radius, radius + 1, device="cpu")
    offsets = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    images = torch.einsum("gij,nj->gni", octahedral_group(device="cpu").round().long(), offsets)  # [24, k^3, 3]
    # canonical representative: the lexicographically smallest image, encoded as one integer
    base = 2 * radius + 1
    codes = ((images[..., 0] + radius) * base + (images[..., 1] + radius)) * base + (images[..., 2] + radius)
    canonical = codes.min(dim=0).values
    orbit_ids = torch.unique(canonical, return_inverse=True)[1]
    return orbit_ids.reshape(kernel_size, kernel_size, kernel_size)


class OctahedralConv3d(nn.Module):
    """3D convolution whose kernel is invariant under the 24 cube rotations: weights [out, in, n_orbits]."""

    orbit_index: Tensor

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel size must be odd (centred on a voxel), got {kernel_size}")
        orbits = kernel_orbits(kernel_size)
        num_orbits = int(orbits.max()) + 1
        bound = default_conv_bound(in_channels * kernel_size**3)  # same scale per tap as nn.Conv3d
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, num_orbits).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound))
        self.register_buffer("orbit_index", orbits.to(self.weight.device), persistent=False)
        self.padding = kernel_size // 2

    def forward(self, x: Tensor) -> Tensor:
        kernel = self.weight[:, :, self.orbit_index]  # [out, in, k, k, k]
        return F.conv3d(x, cpu_layout(kernel), self.bias, padding=self.padding)


class OctahedralUNet3D(UNet3D):
    """U-Net with cube-invariant kernels: exactly equivariant to the 24 cube rotations (and to O_h, see module)."""

    equivariance = "octahedral"

    def __init__(self, channels: int, widths: Sequence[int]) -> None:
        super().__init__(channels, widths, conv=OctahedralConv3d)


class TwirledUNet3D(nn.Module):
    """Plain U-Net averaged over the 24 cube rotations: exactly O-equivariant, 24x the cost."""

    equivariance = "octahedral"
    group: Tensor

    def __init__(self, channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.unet = UNet3D(channels, widths)
        self.register_buffer("group", octahedral_group(device="cpu"), persistent=False)

    def forward(self, grid: Tensor) -> Tensor:
        group = self.group.to(grid.device)  # no-op once the model was moved with .to(device)
        copies = grid.unsqueeze(0).expand(group.shape[0], *grid.shape)  # [24, B, C, L, L, L]
        rotated = rotate_grid_octahedral(copies, group)
        predictions = self.unet(rotated.reshape(-1, *grid.shape[1:])).reshape(copies.shape)
        return rotate_grid_octahedral(predictions, group.transpose(-1, -2)).mean(dim=0)
