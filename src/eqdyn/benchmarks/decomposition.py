"""Cost of one decomposition pass relative to K plain forward passes of the same examples.

``python -m eqdyn.benchmarks.decomposition [--device cpu] [--batch 32] [--rotations 8]``

Both sides see the same rotated inputs: the plain side runs K forwards of B examples (one per rotation), the
decomposition runs the B*K rotated copies together, reads them back in the input frame and computes every
estimator. The target is a ratio of at most 1.2. Synthetic molecules of 18 atoms; timings are medians of repeats.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from eqdyn.decomposition import decompose
from eqdyn.models import build_model
from eqdyn.molecules import MoleculeBatch
from eqdyn.symmetry.rotations import haar_rotations, octahedral_group
from eqdyn.tasks import KeyedNoise, Task, build_task


def synthetic_molecules(batch: int, atoms: int, device: torch.device, seed: int = 0) -> MoleculeBatch:
    gen = torch.Generator().manual_seed(seed)
    positions = torch.randn(batch, atoms, 3, generator=gen) * 1.5
    numbers = torch.tensor([1, 6, 7, 8, 9])[torch.randint(0, 5, (batch, atoms), generator=gen)]  # QM9 elements
    bonds = torch.zeros(batch, atoms, atoms, dtype=torch.long)
    idx = torch.arange(atoms - 1)
    bonds[:, idx, idx + 1] = bonds[:, idx + 1, idx] = 1
    mask = torch.ones(batch, atoms, dtype=torch.bool)
    energy, forces = torch.randn(batch, generator=gen), torch.randn(batch, atoms, 3, generator=gen)
    return MoleculeBatch(positions, numbers, mask, bonds, torch.arange(batch), energy, forces).to(device)


def median_seconds(function: Callable[[], object], repeats: int, device: torch.device) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(
    task: Task, model: torch.nn.Module, molecules: MoleculeBatch, num_rotations: int, repeats: int, device: torch.device
) -> tuple[float, float]:
    example = task.make_example(molecules, KeyedNoise(0))
    batch = len(molecules)
    if task.evaluation_design == "haar":
        rotations = haar_rotations(batch * num_rotations, torch.Generator().manual_seed(1))
        rotations = rotations.reshape(batch, num_rotations, 3, 3).to(device)
    else:
        rotations = octahedral_group(device=str(device)).expand(batch, 24, 3, 3)
    k = rotations.shape[1]

    def plain() -> None:
        with torch.no_grad():
            for index in range(k):
                task.predict(model, task.act_on_inputs(example.inputs, rotations[:, index]))

    def decomposition() -> None:
        with torch.no_grad():
            decompose(task, model, example, rotations)

    return median_seconds(plain, repeats, device), median_seconds(decomposition, repeats, device)


# (task, family, size, model overrides) of the decomposition benchmark
CASES: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("flow_matching", "transformer", "s", {}),
    ("flow_matching", "egnn", "s", {}),
    ("force_field", "transformer", "s", {}),
    ("force_field", "painn", "s", {}),
    ("voxel_denoising", "unet3d", "xs", {}),
    ("voxel_denoising", "octahedral_unet", "xs", {}),
)


def measure_case(
    task_name: str,
    family: str,
    size: str,
    overrides: dict[str, Any],
    *,
    device: torch.device,
    batch: int,
    atoms: int,
    rotations: int,
    repeats: int,
    grid_size: int,
) -> tuple[float, float]:
    """Median seconds of K plain forwards and of one decomposition pass for one model (voxel grids: batch // 8)."""
    settings = {"grid_size": grid_size, "resolution": 0.5} if task_name == "voxel_denoising" else {}
    task = build_task(task_name, **settings)
    model = build_model(task_name, family, size, **overrides).to(device).eval()
    examples = batch if task_name != "voxel_denoising" else max(1, batch // 8)
    molecules = synthetic_molecules(examples, atoms, device)
    if task_name == "voxel_denoising":  # keep the molecule inside the grid
        molecules = dataclasses.replace(molecules, positions=0.5 * molecules.positions)
    return measure(task, model, molecules, rotations, repeats, device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--atoms", type=int, default=18)
    parser.add_argument("--rotations", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--grid-size", type=int, default=16)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"device {device}, batch {args.batch}, {args.atoms} atoms, K = {args.rotations} (voxel: 24 cube rotations)")
    print(f"{'task':<16} {'model':<16} {'K forwards ms':>14} {'decomposition ms':>17} {'ratio':>6}")
    for task_name, family, size, overrides in CASES:
        plain, decomposition = measure_case(
            task_name,
            family,
            size,
            overrides,
            device=device,
            batch=args.batch,
            atoms=args.atoms,
            rotations=args.rotations,
            repeats=args.repeats,
            grid_size=args.grid_size,
        )
        print(
            f"{task_name:<16} {family:<16} {1e3 * plain:>14.1f} {1e3 * decomposition:>17.1f} "
            f"{decomposition / plain:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
