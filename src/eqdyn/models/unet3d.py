"""3D U-Net for voxel denoising (VoxMol style): residual conv blocks with GroupNorm and SiLU, 2x2x2 average pooling
down, nearest-neighbour upsampling up, skip connections by concatenation.

Maps a noisy density ``[B, C, L, L, L]`` to a prediction of the clean one, same shape; ``L`` must be divisible by
``2 ** levels``. Not equivariant: its 3x3x3 kernels are unconstrained. The convolution class is a constructor
argument so that :mod:`eqdyn.models.octahedral_unet` reuses this exact architecture with cube-invariant kernels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eqdyn.models.common import second_order_wanted

ConvFactory = Callable[[int, int, int], nn.Module]  # (in_channels, out_channels, kernel_size) -> module


def cpu_layout(tensor: Tensor) -> Tensor:
    """Channels-last on the CPU, where oneDNN's 3D convolutions with few channels train ~1.3x faster that way;
    unchanged elsewhere (cuDNN picks its own layout) and for second derivatives (:func:`second_order_paths`), whose
    double backward runs slower in that layout and whose forward-mode AD refuses it."""
    if tensor.device.type != "cpu" or second_order_wanted():
        return tensor
    return tensor.contiguous(memory_format=torch.channels_last_3d)


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` (same parameters, same checkpoints) whose kernel takes the input's CPU layout."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, cpu_layout(self.weight), self.bias)


def plain_conv3d(in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
    return Conv3d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


def group_count(channels: int, max_groups: int = 8) -> int:
    """The largest divisor of ``channels`` not above ``max_groups``: GroupNorm needs groups to divide channels."""
    return max(g for g in range(1, max_groups + 1) if channels % g == 0)


class ResidualBlock3d(nn.Module):
    """GN -> SiLU -> conv3 -> GN -> SiLU -> conv3, plus a 1x1 projection of the input when widths differ."""

    def __init__(self, in_channels: int, out_channels: int, conv: ConvFactory) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(group_count(in_channels), in_channels),
            nn.SiLU(),
            conv(in_channels, out_channels, 3),
            nn.GroupNorm(group_count(out_channels), out_channels),
            nn.SiLU(),
            conv(out_channels, out_channels, 3),
        )
        self.skip = nn.Identity() if in_channels == out_channels else Conv3d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


class UNet3D(nn.Module):
    """``widths[i]`` channels at resolution ``L / 2**i``; ``levels = len(widths) - 1`` poolings."""

    equivariance = "none"

    def __init__(self, channels: int, widths: Sequence[int], conv: ConvFactory = plain_conv3d) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"a U-Net needs at least two widths (one pooling), got {list(widths)}")
        self.levels = len(widths) - 1
        self.input_conv = conv(channels, widths[0], 3)
        self.down_blocks = nn.ModuleList(
            ResidualBlock3d(widths[max(i - 1, 0)], widths[i], conv) for i in range(self.levels)
        )
        self.middle_block = ResidualBlock3d(widths[self.levels - 1], widths[self.levels], conv)
        self.up_blocks = nn.ModuleList(
            ResidualBlock3d(widths[i + 1] + widths[i], widths[i], conv) for i in range(self.levels)
        )
        self.output = nn.Sequential(
            nn.GroupNorm(group_count(widths[0]), widths[0]), nn.SiLU(), Conv3d(widths[0], channels, 1)
        )

    def forward(self, grid: Tensor) -> Tensor:
        size = grid.shape[-1]
        if grid.dim() != 5 or grid.shape[-3:] != (size, size, size) or size % 2**self.levels:
            raise ValueError(f"expected [B, C, L, L, L] with L divisible by {2**self.levels}, got {tuple(grid.shape)}")
        x = self.input_conv(cpu_layout(grid))  # the output is handed back in the caller's standard layout
        skips = []
        for block in self.down_blocks:
            x = block(x)
            skips.append(x)
            # 2x2x2 blocks of an even grid centred at the origin map onto each other under cube rotations
            x = F.avg_pool3d(x, 2)
        x = self.middle_block(x)
        for block, skip in zip(reversed(self.up_blocks), reversed(skips), strict=True):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(torch.cat([x, skip], dim=1))
        return self.output(x).contiguous()


def default_conv_bound(fan_in: int) -> float:
    """PyTorch's default conv/linear init bound, kaiming_uniform(a=sqrt(5)): 1 / sqrt(fan_in)."""
    return 1.0 / math.sqrt(fan_in)
