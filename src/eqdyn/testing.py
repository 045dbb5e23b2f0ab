"""Public test utilities: random molecule batches, a synthetic split file, and the equivariance error of any model
under any task.

Use them to check a model of your own before decomposing it (float64 recommended):

    >>> task = FlowMatchingTask()
    >>> example = task.make_example(random_molecules(), KeyedNoise(0))
    >>> equivariance_error(task, model.double(), example, haar_rotations(len(example.example_id)))
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from eqdyn.config import REPO_ROOT
from eqdyn.io import save_npz
from eqdyn.molecules import MoleculeBatch
from eqdyn.tasks.base import Example, Task, sum_parts


def random_molecules(batch: int = 4, atoms: int = 6, seed: int = 0, with_labels: bool = False) -> MoleculeBatch:
    """Random padded molecules in float64 (sizes 3..atoms, the first full), elements 1-9, consecutive atoms bonded."""
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


def synthetic_dataset(path: Path, molecules: int = 6, conformers: int = 2, atoms: int = 5, seed: int = 0) -> Path:
    """A split file (.npz) of small molecules (C and H) as bonded chains, with energies from a pair potential and
    forces = -dE/dx: enough for every task to train and be analysed in tests."""
    rng = np.random.default_rng(seed)
    count = molecules * conformers
    positions = rng.normal(scale=1.0, size=(count, atoms, 3))
    positions[:, -1] = 0.0  # one padded atom in every example
    mask = np.ones((count, atoms), dtype=bool)
    mask[:, -1] = False
    positions -= positions.sum(1, keepdims=True) / mask.sum(1)[:, None, None]
    positions *= mask[..., None]
    numbers = np.where(mask, rng.choice([1, 6], size=(count, atoms)), 0)
    bonds = -np.ones((count, atoms - 1, 3), dtype=np.int64)
    bonds[:, : atoms - 2] = np.stack([np.arange(atoms - 2), np.arange(1, atoms - 1), np.ones(atoms - 2)], -1)
    pos = torch.tensor(positions, requires_grad=True)
    pair = torch.tensor(mask[:, :, None] & mask[:, None, :]) & ~torch.eye(atoms, dtype=torch.bool)
    sq = (pos.unsqueeze(2) - pos.unsqueeze(1)).pow(2).sum(-1) + (~pair).double()
    energy = (10 * torch.exp(-sq) * pair).sum((1, 2)) / 2
    (grad,) = torch.autograd.grad(energy.sum(), pos)
    save_npz(
        path,
        positions=positions.astype(np.float32),
        atomic_numbers=numbers.astype(np.int64),
        mask=mask,
        bonds=bonds,
        molecule_id=np.repeat(np.arange(molecules), conformers),
        conformer_id=np.tile(np.arange(conformers), molecules),
        example_id=np.arange(count) + 100,
        energy=energy.detach().numpy(),
        energy_reference=np.zeros(count),
        forces=(-grad).numpy().astype(np.float32),
    )
    return path


def equivariance_error(task: Task, model: nn.Module, example: Example, rotations: Tensor) -> float:
    """Relative equivariance error sum ||f_g(x) - f(x)||^2 / sum ||f(x)||^2 in the task's loss norm, one rotation
    ``rotations [B, 3, 3]`` per example (Haar for point clouds, cube rotations for voxel grids)."""
    plain = task.predict(model, example.inputs)
    twisted = task.twist(model, example.inputs, rotations)
    diff = {part: twisted[part] - plain[part] for part in task.output_parts}
    numerator = sum_parts(task.squared_norms(diff, example.inputs)).sum()
    denominator = sum_parts(task.squared_norms(plain, example.inputs)).sum()
    return float(numerator / denominator)


def copy_workflow(destination: Path) -> Path:
    """Copy the Snakefile, workflow/, config/ and src/ into ``destination`` so a test can run the workflow there
    without touching (or locking) the repository's own results."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "src"):
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, destination / name)
    return destination


def snakemake_executable() -> str:
    """The snakemake next to this interpreter (a venv not on PATH), else the one on PATH."""
    beside = Path(sys.executable).parent / "snakemake"
    return str(beside) if beside.exists() else (shutil.which("snakemake") or "snakemake")
