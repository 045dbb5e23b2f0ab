"""Time one training step (forward, backward, AdamW step) of every model family on a synthetic batch.

    python -m eqdyn.models.benchmark --device cpu
    python -m eqdyn.models.benchmark --device cuda --bf16 --batch 512 --atoms 32 --voxel-batch 32 --voxel-size 32

Every (task, family) runs at its registry default size, and the flow-matching transformer additionally over a
size ladder. Prints a table (parameters, ms/step, examples/s) and, per task, the time-per-step ratio of each
equivariant family to the unconstrained one measured in the same run. It measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from eqdyn.models import FAMILY_SPECS, build_model, count_parameters, family_spec

SYNTHETIC_ELEMENTS = torch.tensor([1, 6, 7, 8, 9])


@dataclass(frozen=True)
class BenchmarkRow:
    task: str
    family: str
    size: str
    equivariance: str
    parameters: int
    examples: int
    ms_per_step: float
    examples_per_second: float


def synthetic_molecules(batch: int, atoms: int, device: torch.device) -> dict[str, Tensor]:
    """Molecules of atoms/2..atoms atoms (so padding is exercised), a bonded chain, centred Gaussian coordinates."""
    generator = torch.Generator().manual_seed(0)
    sizes = torch.randint(max(atoms // 2, 1), atoms + 1, (batch,), generator=generator)
    mask = torch.arange(atoms)[None, :] < sizes[:, None]
    positions = 1.5 * torch.randn(batch, atoms, 3, generator=generator) * mask[..., None]
    atomic_numbers = SYNTHETIC_ELEMENTS[torch.randint(5, (batch, atoms), generator=generator)] * mask
    chain = torch.diag_embed(torch.ones(atoms - 1, dtype=torch.long), offset=1)
    bonds = (chain + chain.T)[None] * (mask[:, :, None] & mask[:, None, :])
    tensors = {
        "positions": positions,
        "atomic_numbers": atomic_numbers,
        "mask": mask,
        "bond_orders": bonds,
        "t": torch.rand(batch, generator=generator),
        "target": torch.randn(batch, atoms, 3, generator=generator) * mask[..., None],
        "energy": torch.randn(batch, generator=generator),
    }
    return {name: tensor.to(device) for name, tensor in tensors.items()}


def training_loss(task: str, model: nn.Module, data: dict[str, Tensor]) -> Tensor:
    if task == "voxel_denoising":
        return ((model(data["grid"]) - data["clean"]) ** 2).mean()
    inputs = (data["positions"], data["atomic_numbers"], data["mask"], data["bond_orders"])
    if task == "flow_matching":
        return ((model(*inputs, data["t"]) - data["target"]) ** 2).mean()
    output = model(*inputs)
    return ((output["energy"] - data["energy"]) ** 2).mean() + ((output["forces"] - data["target"]) ** 2).mean()


def training_step(task: str, model: nn.Module, data: dict[str, Tensor], bf16: bool) -> Callable[[], None]:
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = training_loss(task, model, data)
        loss.backward()
        optimizer.step()

    return step


def synthetic_voxels(batch: int, channels: int, size: int, device: torch.device) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(1)
    shape = (batch, channels, *(3 * [size]))
    grids = {"grid": torch.randn(shape, generator=generator), "clean": torch.rand(shape, generator=generator)}
    return {name: tensor.to(device) for name, tensor in grids.items()}


def benchmark_runs(
    runs: Sequence[tuple[str, str, str]],
    device: torch.device,
    *,
    batch: int,
    atoms: int,
    voxel_batch: int,
    voxel_size: int,
    voxel_channels: int,
    warmup: int,
    steps: int,
    bf16: bool,
    compile_models: bool = False,
) -> list[BenchmarkRow]:
    """Times the (task, family, size) runs in interleaved rounds (one step of each per round), so that a change of
    machine load during the run affects all models alike and the ratios stay comparable; reports the median step
    time. ``compile_models`` wraps each model in ``torch.compile`` (static shapes) before its warm-up steps."""
    synchronise: Callable[[], None] = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    molecules = synthetic_molecules(batch, atoms, device)
    grids = synthetic_voxels(voxel_batch, voxel_channels, voxel_size, device)
    models, step_functions = [], []
    for task, family, size in runs:
        overrides = {"channels": voxel_channels} if task == "voxel_denoising" else {}
        torch.manual_seed(0)
        model = build_model(task, family, size, **overrides).to(device).train()
        # dynamic=False: the ladder's instances differ only in shapes, which must not turn into symbolic sizes
        trained = torch.compile(model, dynamic=False) if compile_models else model
        assert isinstance(trained, nn.Module)  # torch.compile of a module is a module (typed only as a callable)
        step = training_step(task, trained, grids if task == "voxel_denoising" else molecules, bf16)
        for _ in range(warmup):
            step()
        models.append(model)
        step_functions.append(step)
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(steps):
        for step, record in zip(step_functions, times, strict=True):
            synchronise()
            start = time.perf_counter()
            step()
            synchronise()
            record.append(1000 * (time.perf_counter() - start))
    rows = []
    for (task, family, size), model, record in zip(runs, models, times, strict=True):
        examples = voxel_batch if task == "voxel_denoising" else batch
        milliseconds = statistics.median(record)
        rows.append(
            BenchmarkRow(
                # build_model checked that the model's equivariance is its family's
                task,
                family,
                size,
                family_spec(task, family).equivariance,
                count_parameters(model),
                examples,
                milliseconds,
                1000 * examples / milliseconds,
            )
        )
    return rows


def run_benchmark(args: argparse.Namespace) -> list[BenchmarkRow]:
    """Every (task, family) at its default size plus the transformer ladder, timed by :func:`benchmark_runs`."""
    runs = [(task, family, spec.default_size) for (task, family), spec in FAMILY_SPECS.items()]
    runs += [("flow_matching", "transformer", size) for size in args.ladder if size != "s"]
    runs = [run for run in runs if not args.tasks or run[0] in args.tasks]
    return benchmark_runs(
        runs,
        torch.device(args.device),
        batch=args.batch,
        atoms=args.atoms,
        voxel_batch=args.voxel_batch,
        voxel_size=args.voxel_size,
        voxel_channels=args.voxel_channels,
        warmup=args.warmup,
        steps=args.steps,
        bf16=args.bf16,
    )


def format_table(rows: list[BenchmarkRow]) -> str:
    header = "| task | family | size | equivariance | params | ms/step | examples/s |"
    lines = [header, "|---|---|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r.task} | {r.family} | {r.size} | {r.equivariance} | {r.parameters:,} | {r.ms_per_step:.1f} "
            f"| {r.examples_per_second:,.0f} |"
        )
    return "\n".join(lines)


def format_ratios(rows: list[BenchmarkRow]) -> str:
    """Per task: time per step of each equivariant family over the unconstrained family, both at default size."""
    defaults = [r for r in rows if r.size == FAMILY_SPECS[(r.task, r.family)].default_size]
    lines = ["| task | equivariant family | vs unconstrained | time-per-step ratio |", "|---|---|---|---:|"]
    for baseline in (r for r in defaults if r.equivariance == "none"):
        for other in (r for r in defaults if r.task == baseline.task and r.equivariance != "none"):
            ratio = other.ms_per_step / baseline.ms_per_step
            lines.append(f"| {other.task} | {other.family} ({other.equivariance}) | {baseline.family} | {ratio:.2f}x |")
    return "\n".join(lines)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64, help="molecules per point-cloud batch")
    parser.add_argument("--atoms", type=int, default=20, help="padded atoms per molecule")
    parser.add_argument("--voxel-batch", type=int, default=8)
    parser.add_argument("--voxel-size", type=int, default=16, help="grid side L (divisible by 2^levels)")
    parser.add_argument("--voxel-channels", type=int, default=5)
    parser.add_argument(
        "--ladder", nargs="*", default=None, help="transformer sizes (default: xs s m on CPU, all on GPU)"
    )
    parser.add_argument("--tasks", nargs="*", default=None, help="restrict to these tasks")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--output", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.ladder is None:
        args.ladder = list(FAMILY_SPECS[("flow_matching", "transformer")].presets)
        if not args.device.startswith("cuda"):
            args.ladder = ["xs", "s", "m"]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} bf16={args.bf16} "
        f"molecules={args.batch}x{args.atoms} voxels={args.voxel_batch}x{args.voxel_channels}x{args.voxel_size}^3"
    )
    rows = run_benchmark(args)
    print(format_table(rows))
    print()
    print(format_ratios(rows))
    if args.output is not None:
        args.output.write_text(json.dumps([asdict(r) for r in rows], indent=1))


if __name__ == "__main__":
    main()
