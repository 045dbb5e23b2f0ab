"""Public test utilities: random molecule batches, a synthetic split file, and the equivariance error of any model
under any task.

Use them to check a model of your own before decomposing it (float64 recommended):

    >>> assert_equivariant(FlowMatchingTask(), model.double())             # raises AssertionError if it is not
    >>> assert_equivariant(FlowMatchingTask(), model.double(), parity=True)  # E(3): reflections too
    >>> task = FlowMatchingTask()
    >>> example = task.make_example(random_molecules(), KeyedNoise(0))
    >>> equivariance_error(task, model.double(), example, haar_rotations(len(example.example_id)))
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from eqdyn.io import save_npz
from eqdyn.molecules import MoleculeBatch
from eqdyn.symmetry.rotations import haar_rotations, octahedral_group
from eqdyn.tasks.base import Example, KeyedNoise, Task, sum_parts

#: (rtol, atol) of :func:`assert_equivariant` per dtype: max |f_g(x) - f(x)| <= atol + rtol * max |f(x)|, per output
#: part. Round-off of an exactly equivariant model is ~1e-15 (float64) or ~1e-7 (float32) of the output's scale;
#: the margins leave room for deep models and sums over atoms.
EQUIVARIANCE_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-9, 1e-12),
    torch.float32: (1e-4, 1e-6),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (5e-2, 1e-2),
}


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
    return float((numerator / denominator).detach())


def _model_dtype(model: nn.Module) -> torch.dtype:
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.get_default_dtype()


def assert_equivariant(
    task: Task,
    model: nn.Module,
    dtype: torch.dtype | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    parity: bool = False,
    example: Example | None = None,
    num_examples: int = 4,
    seed: int = 0,
) -> dict[str, float]:
    """Assert that ``model`` is equivariant under ``task``'s symmetry: f_g(x) = f(x) for one rotation g per example
    (Haar rotations for point clouds; cube rotations other than the identity for voxel grids, the symmetry the
    grid has), and with ``parity`` also for the improper -g (reflection equivariance of E(3) models).

    Per output part the check is max |f_g(x) - f(x)| <= atol + rtol * max |f(x)|, with defaults per ``dtype`` from
    :data:`EQUIVARIANCE_TOLERANCES` (the model's dtype when ``dtype`` is None; the model is not converted: pass a
    model of that dtype). An output that vanishes everywhere fails (it would make the check vacuous). The example
    is ``example`` or ``num_examples`` random padded molecules (:func:`random_molecules`) made into one by the task.
    Returns the relative errors max |f_g(x) - f(x)| / max |f(x)| per "<part>" (and "<part>/reflection")."""
    dtype = dtype or _model_dtype(model)
    if dtype not in EQUIVARIANCE_TOLERANCES:
        raise ValueError(f"no default tolerances for {dtype}; known: {list(EQUIVARIANCE_TOLERANCES)}")
    default_rtol, default_atol = EQUIVARIANCE_TOLERANCES[dtype]
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    if example is None:
        molecules = random_molecules(num_examples, seed=seed, with_labels=True).to(dtype=dtype)
        example = task.make_example(molecules, KeyedNoise(seed))
    batch = len(example.example_id)
    generator = torch.Generator().manual_seed(seed)
    if task.evaluation_design == "octahedral_coset":
        rotations = octahedral_group(dtype=dtype)[torch.randint(1, 24, (batch,), generator=generator)]
    else:
        rotations = haar_rotations(batch, generator, dtype=dtype)
    rotations = rotations.to(next(iter(example.inputs.values())).device)
    plain = {part: value.detach() for part, value in task.predict(model, example.inputs).items()}
    checks = [("rotation", rotations)] + ([("reflection", -rotations)] if parity else [])
    errors: dict[str, float] = {}
    failures = []
    for kind, group_elements in checks:
        twisted = task.twist(model, example.inputs, group_elements)
        for part in task.output_parts:
            scale = float(plain[part].abs().max())
            difference = float((twisted[part].detach() - plain[part]).abs().max())
            name = part if kind == "rotation" else f"{part}/reflection"
            errors[name] = difference / scale if scale > 0 else float("inf")
            if scale == 0:
                failures.append(f"{part}: the output is zero everywhere, so equivariance is not tested")
            elif not difference <= atol + rtol * scale:
                failures.append(
                    f"{part}: not equivariant under {kind}: max |f_g(x) - f(x)| = {difference:.3g} > "
                    f"atol + rtol max |f(x)| = {atol:.1g} + {rtol:.1g} x {scale:.3g}"
                )
    if failures:
        raise AssertionError(f"{type(model).__name__} under {task.name} ({dtype}):\n  " + "\n  ".join(failures))
    return errors


def tiny_training_settings(**overrides: Any) -> dict[str, Any]:
    """Every key of a run's resolved ``training`` section (run.json) for a few CPU steps: constant learning rate,
    no warm-up, fp32, one thread; ``overrides`` replace any of them (e.g. ``steps=6, batch_size=4``)."""
    settings: dict[str, Any] = {
        "steps": 10,
        "batch_size": 8,
        "optimizer": "adam",
        "learning_rate": 3e-3,
        "weight_decay": 0.0,
        "momentum": 0.9,
        "schedule": "constant",
        "warmup_steps": 0,
        "grad_clip": 10.0,
        "ema_decay": None,
        "augment": True,
        "num_train_molecules": None,
        "precision": "fp32",
        "device": "cpu",
        "threads": 1,
        "log_every": 10,
        "state_every": 10,
        "seed": 0,
    }
    unknown = set(overrides) - set(settings)
    if unknown:
        raise KeyError(f"not training settings: {sorted(unknown)}")
    return {**settings, **overrides}


def copy_workflow(destination: Path, checkout: Path | None = None) -> Path:
    """Copy a source checkout's Snakefile, workflow/, config/ and src/ into ``destination`` so a test can run the
    workflow there without touching (or locking) the checkout's own results. ``checkout``: default the working
    directory (pytest runs from the repository root); the installed package never assumes where it was installed."""
    checkout = Path.cwd() if checkout is None else checkout
    if not (checkout / "Snakefile").exists():
        raise FileNotFoundError(f"copy_workflow needs a source checkout with a Snakefile; {checkout} has none")
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "src"):
        source = checkout / name
        if source.is_dir():
            shutil.copytree(
                source, destination / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy(source, destination / name)
    return destination


def snakemake_executable() -> str:
    """The snakemake next to this interpreter (a venv not on PATH), else the one on PATH."""
    beside = Path(sys.executable).parent / "snakemake"
    return str(beside) if beside.exists() else (shutil.which("snakemake") or "snakemake")
