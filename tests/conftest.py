"""Shared fixtures: small random molecule batches in float64."""

from __future__ import annotations

import pytest
import torch

from eqdyn.molecules import MoleculeBatch


def random_molecules(batch: int = 4, atoms: int = 6, seed: int = 0, with_labels: bool = False) -> MoleculeBatch:
    """Random padded molecules (sizes 3..atoms), a bond between consecutive atoms, float64."""
    gen = torch.Generator().manual_seed(seed)
    sizes = torch.randint(3, atoms + 1, (batch,), generator=gen)
    sizes[0] = atoms
    mask = torch.arange(atoms).unsqueeze(0) < sizes.unsqueeze(1)
    positions = torch.randn(batch, atoms, 3, generator=gen, dtype=torch.float64) * 1.5 * mask.unsqueeze(-1)
    numbers = torch.randint(1, 10, (batch, atoms), generator=gen) * mask
    bonds = torch.zeros(batch, atoms, atoms, dtype=torch.long)
    idx = torch.arange(atoms - 1)
    bonds[:, idx, idx + 1] = 1
    bonds = (bonds + bonds.transpose(1, 2)) * (mask.unsqueeze(1) & mask.unsqueeze(2))
    energy = forces = None
    if with_labels:
        energy = torch.randn(batch, generator=gen, dtype=torch.float64)
        forces = torch.randn(batch, atoms, 3, generator=gen, dtype=torch.float64) * mask.unsqueeze(-1)
    return MoleculeBatch(positions, numbers, mask, bonds, torch.arange(batch) * 10 + 3, energy, forces)


@pytest.fixture
def molecules() -> MoleculeBatch:
    return random_molecules()
