"""Helpers of the model tests: a float64 padded batch mixing molecule sizes, padding, relative errors."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from eqdyn.symmetry.rotations import haar_rotations

ELEMENTS = torch.tensor([1, 6, 7, 8, 9, 16, 17])


@dataclass(frozen=True)
class PaddedMolecules:
    positions: Tensor  # [B, N, 3]
    atomic_numbers: Tensor  # [B, N]
    mask: Tensor  # [B, N]
    bond_orders: Tensor  # [B, N, N]
    t: Tensor  # [B]

    def inputs(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.positions, self.atomic_numbers, self.mask, self.bond_orders

    def rotated(self, rotations: Tensor) -> PaddedMolecules:
        return replace(self, positions=self.positions @ rotations.transpose(-1, -2))


def make_batch(sizes: list[int], max_atoms: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> PaddedMolecules:
    """Random centred molecules of the given sizes, padded to ``max_atoms``; padding slots hold garbage positions."""
    generator = torch.Generator().manual_seed(seed)
    batch = len(sizes)
    mask = torch.arange(max_atoms)[None, :] < torch.tensor(sizes)[:, None]
    positions = 1.5 * torch.randn(batch, max_atoms, 3, generator=generator, dtype=dtype)
    real = mask[..., None].to(dtype)
    centre = (positions * real).sum(1, keepdim=True) / real.sum(1, keepdim=True)
    positions = torch.where(mask[..., None], positions - centre, 7.0 * torch.ones_like(positions))
    atomic_numbers = ELEMENTS[torch.randint(len(ELEMENTS), (batch, max_atoms), generator=generator)] * mask
    bonds = torch.randint(0, 5, (batch, max_atoms, max_atoms), generator=generator)
    bonds = torch.triu(bonds, diagonal=1)
    bonds = (bonds + bonds.transpose(1, 2)) * (mask[:, :, None] & mask[:, None, :])
    t = torch.rand(batch, generator=generator, dtype=dtype)
    return PaddedMolecules(positions, atomic_numbers, mask, bonds, t)


def pad_batch(batch: PaddedMolecules, extra: int, seed: int = 1) -> PaddedMolecules:
    """The same molecules with ``extra`` more padding slots holding random garbage positions and zero bonds."""
    generator = torch.Generator().manual_seed(seed)
    b, n = batch.mask.shape
    garbage = 3.0 * torch.randn(b, extra, 3, generator=generator, dtype=batch.positions.dtype)
    bonds = torch.zeros(b, n + extra, n + extra, dtype=batch.bond_orders.dtype)
    bonds[:, :n, :n] = batch.bond_orders
    return PaddedMolecules(
        positions=torch.cat([batch.positions, garbage], dim=1),
        atomic_numbers=torch.cat([batch.atomic_numbers, torch.zeros(b, extra, dtype=torch.long)], dim=1),
        mask=torch.cat([batch.mask, torch.zeros(b, extra, dtype=torch.bool)], dim=1),
        bond_orders=bonds,
        t=batch.t,
    )


def relative_error(actual: Tensor, expected: Tensor) -> float:
    return float((actual - expected).detach().norm() / expected.detach().norm())


def mixed_batch() -> PaddedMolecules:
    """Four molecules of 7, 4, 5 and 1 atoms padded to 7: padding present, and a single-atom edge case."""
    return make_batch([7, 4, 5, 1], max_atoms=7)


def random_rotations(count: int, seed: int = 123) -> Tensor:
    return haar_rotations(count, generator=torch.Generator().manual_seed(seed))
