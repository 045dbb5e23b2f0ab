"""Padded batches of molecules, as stored in the datasets the data stage writes (``datasets/<task>/<split>.npz``).

Arrays (M examples, N_max atoms, E_max bonds): ``positions`` float32 [M, N, 3] (Å, centred), ``atomic_numbers``
int64 [M, N] (0 = padding), ``mask`` bool [M, N], ``bonds`` int64 [M, E, 3] rows (i, j, order) padded with -1,
``example_id`` int64 [M]; force-field sets add ``energy`` and ``energy_reference`` float64 [M] (kcal/mol) and
``forces`` float32 [M, N, 3] (kcal/mol/Å).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from eqdyn.symmetry.actions import rotate_points, rotate_vectors


@dataclass(frozen=True)
class MoleculeBatch:
    """A padded batch of molecules in one frame. Rotating it moves positions and forces; the rest is invariant."""

    positions: Tensor  # [B, N, 3]
    atomic_numbers: Tensor  # [B, N] long, 0 = padding
    mask: Tensor  # [B, N] bool
    bond_orders: Tensor  # [B, N, N] long, 0 = no bond, 4 = aromatic
    example_id: Tensor  # [B] long
    energy: Tensor | None = None  # [B] kcal/mol, relative to the molecule's reference energy
    forces: Tensor | None = None  # [B, N, 3] kcal/mol/Å

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def rotate(self, rotations: Tensor) -> MoleculeBatch:
        """The same molecules in a rotated frame: ``rotations`` [3, 3] or [B, 3, 3]."""
        forces = None if self.forces is None else rotate_vectors(self.forces, rotations)
        return dataclasses.replace(self, positions=rotate_points(self.positions, rotations), forces=forces)

    def rows(self, start: int, stop: int) -> MoleculeBatch:
        """Molecules [start, stop) with the batch's padding kept (a data-parallel shard has the global shapes)."""
        changes = {
            field.name: value[start:stop]
            for field in dataclasses.fields(self)
            if isinstance(value := getattr(self, field.name), Tensor)
        }
        return dataclasses.replace(self, **changes)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> MoleculeBatch:
        """Move every tensor to ``device``; floating tensors also to ``dtype``."""
        changes = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Tensor):
                changes[field.name] = value.to(device=device, dtype=dtype if value.is_floating_point() else None)
        return dataclasses.replace(self, **changes)


class MoleculeDataset:
    """All examples of one split held as padded tensors; :meth:`batch` gathers rows and densifies the bonds."""

    def __init__(self, arrays: dict[str, np.ndarray], source: str = "<arrays>") -> None:
        required = ("positions", "atomic_numbers", "mask", "bonds", "example_id")
        missing = [key for key in required if key not in arrays]
        if missing:
            raise KeyError(f"{source}: missing arrays {missing}")
        self.source = source
        self.positions = torch.from_numpy(np.asarray(arrays["positions"], dtype=np.float32))
        self.atomic_numbers = torch.from_numpy(np.asarray(arrays["atomic_numbers"], dtype=np.int64))
        self.mask = torch.from_numpy(np.asarray(arrays["mask"], dtype=bool))
        self.bonds = torch.from_numpy(np.asarray(arrays["bonds"], dtype=np.int64))
        self.example_id = torch.from_numpy(np.asarray(arrays["example_id"], dtype=np.int64))
        self.energy = self.forces = None
        if "energy" in arrays:
            reference = arrays.get("energy_reference", np.zeros_like(arrays["energy"]))
            self.energy = torch.from_numpy(np.asarray(arrays["energy"] - reference, dtype=np.float64))
            self.forces = torch.from_numpy(np.asarray(arrays["forces"], dtype=np.float32))

    @classmethod
    def load(cls, path: str | Path) -> MoleculeDataset:
        with np.load(path) as data:
            return cls({key: data[key] for key in data.files}, source=str(path))

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def batch(self, indices: Tensor | np.ndarray | list[int] | slice) -> MoleculeBatch:
        if not isinstance(indices, slice):
            indices = torch.as_tensor(indices, dtype=torch.long)
        mask = self.mask[indices]
        num_atoms = int(mask.sum(-1).max()) if mask.numel() else 0  # trim padding shared by the whole batch
        bonds = self.bonds[indices]
        return MoleculeBatch(
            positions=self.positions[indices][:, :num_atoms],
            atomic_numbers=self.atomic_numbers[indices][:, :num_atoms],
            mask=mask[:, :num_atoms],
            bond_orders=dense_bond_orders(bonds, num_atoms),
            example_id=self.example_id[indices],
            energy=None if self.energy is None else self.energy[indices],
            forces=None if self.forces is None else self.forces[indices][:, :num_atoms],
        )


def dense_bond_orders(bonds: Tensor, num_atoms: int) -> Tensor:
    """Symmetric [B, N, N] bond-order matrix from padded (i, j, order) rows [B, E, 3] (padding rows are -1)."""
    batch = bonds.shape[0]
    dense = torch.zeros(batch, num_atoms, num_atoms, dtype=torch.long)
    valid = bonds[..., 2] > 0
    rows = torch.arange(batch).unsqueeze(-1).expand_as(bonds[..., 0])[valid]
    i, j, order = bonds[..., 0][valid], bonds[..., 1][valid], bonds[..., 2][valid]
    dense[rows, i, j] = order
    dense[rows, j, i] = order
    return dense
