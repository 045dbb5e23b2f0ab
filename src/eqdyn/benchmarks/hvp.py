"""Cost of one Hessian-vector product of L_mean relative to one gradient of the same loss on the same fixed batch,
by both HVP paths (forward-over-reverse, the default, and reverse-over-reverse, the fallback).

``python -m eqdyn.benchmarks.hvp [--device cpu] [--batch 8] [--rotations 8] [--dtype float32]``

Every analysed model at its registry default size, through :class:`eqdyn.analysis.FixedBatchLosses` (the code the
Hessian analyses use: B examples x K twisted copies in one pass, math attention, no autocast). The target is a
ratio of at most 4. Synthetic molecules of 18 atoms; voxel grids use the 24 cube rotations and fewer examples.
Timings are medians of repeats; on CUDA the peak memory of each is printed too. Prints, never asserts.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from eqdyn.analysis import FixedBatchLosses, hvp_forward_over_reverse, hvp_reverse_over_reverse
from eqdyn.benchmarks.decomposition import median_seconds, synthetic_molecules
from eqdyn.decomposition import make_evaluation_example, make_evaluation_rotations
from eqdyn.models import build_model, count_parameters, family_spec
from eqdyn.tasks import build_task

ANALYSED_MODELS = (
    ("flow_matching", "transformer"),
    ("flow_matching", "egnn"),
    ("force_field", "transformer"),
    ("force_field", "painn"),
    ("voxel_denoising", "unet3d"),
    ("voxel_denoising", "octahedral_unet"),
)


def fixed_batch_losses(
    task_name: str, family: str, args: argparse.Namespace, device: torch.device, dtype: torch.dtype
) -> FixedBatchLosses:
    voxel = task_name == "voxel_denoising"
    task = build_task(task_name, **({"grid_size": args.grid_size, "resolution": 0.5} if voxel else {}))
    torch.manual_seed(0)
    model = build_model(task_name, family, family_spec(task_name, family).default_size)
    model = model.to(device=device, dtype=dtype).eval()
    batch = max(1, args.batch // 8) if voxel else args.batch
    molecules = synthetic_molecules(batch, args.atoms, torch.device("cpu"))
    if voxel:  # keep the molecule inside the grid
        molecules = dataclasses.replace(molecules, positions=0.5 * molecules.positions)
    evaluation = make_evaluation_rotations(task, molecules.example_id.numpy(), seed=0, num_rotations=args.rotations)
    example, rotations = make_evaluation_example(task, molecules, evaluation, noise_seed=0)
    example = dataclasses.replace(
        example,
        inputs={
            k: v.to(device=device, dtype=dtype if v.is_floating_point() else None) for k, v in example.inputs.items()
        },
        target={k: v.to(device=device, dtype=dtype) for k, v in example.target.items()},
    )
    return FixedBatchLosses(task, model, example, rotations.to(device=device, dtype=dtype))


def peak_megabytes(function: object, device: torch.device) -> float:
    if device.type != "cuda":
        return float("nan")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    function()  # type: ignore[operator]
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


@dataclasses.dataclass(frozen=True)
class HvpRow:
    """One analysed model: median gradient and HVP times (None where that path fails), peak memory on CUDA."""

    task: str
    family: str
    parameters: int
    gradient_ms: float
    forward_over_reverse_ms: float | None
    reverse_over_reverse_ms: float | None
    auto_picks: str
    memory_mb: tuple[float, float, float]  # gradient, forward-over-reverse, reverse-over-reverse (NaN off CUDA)
    failures: tuple[str, ...] = ()

    @property
    def forward_over_reverse_ratio(self) -> float | None:
        return None if self.forward_over_reverse_ms is None else self.forward_over_reverse_ms / self.gradient_ms

    @property
    def reverse_over_reverse_ratio(self) -> float | None:
        return None if self.reverse_over_reverse_ms is None else self.reverse_over_reverse_ms / self.gradient_ms


def measure_hvp(
    task_name: str, family: str, args: argparse.Namespace, device: torch.device, dtype: torch.dtype
) -> HvpRow:
    """Times one gradient and one HVP by each path; ``args`` carries batch, atoms, rotations, grid_size, repeats,
    loss (the options of this module's CLI)."""
    losses = fixed_batch_losses(task_name, family, args, device, dtype)
    direction = torch.randn(losses.dim, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    losses.hvp(args.loss, direction)  # resolves "auto"

    def gradient() -> None:
        losses.gradient(args.loss)

    def forward_over_reverse() -> None:
        hvp_forward_over_reverse(losses.loss_function(args.loss), losses.parameters, direction)

    def reverse_over_reverse() -> None:
        hvp_reverse_over_reverse(losses.loss_function(args.loss), losses.parameters, direction)

    gradient_seconds = median_seconds(gradient, args.repeats, device)
    memory = [peak_megabytes(gradient, device)]
    milliseconds: list[float | None] = []
    failures = []
    for path in (forward_over_reverse, reverse_over_reverse):
        try:
            seconds = median_seconds(path, args.repeats, device)
        except RuntimeError as error:  # e.g. torch.func refusing autograd.grad inside the forward
            milliseconds.append(None)
            memory.append(float("nan"))
            failures.append(f"{path.__name__} fails: {str(error).splitlines()[0]}")
            continue
        milliseconds.append(1e3 * seconds)
        memory.append(peak_megabytes(path, device))
    return HvpRow(
        task_name,
        family,
        count_parameters(losses.model),
        1e3 * gradient_seconds,
        milliseconds[0],
        milliseconds[1],
        losses.hvp_method,
        (memory[0], memory[1], memory[2]),
        tuple(failures),
    )


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--batch", type=int, default=8, help="examples (voxel grids: batch // 8)")
    parser.add_argument(
        "--rotations", type=int, default=8, help="K for point clouds (voxel grids: the 24 cube rotations)"
    )
    parser.add_argument("--atoms", type=int, default=18)
    parser.add_argument("--grid-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loss", default="mean")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    voxel = f"{max(1, args.batch // 8)} grids of {args.grid_size}^3 x 24 cube rotations"
    print(
        f"device {device}, {args.dtype}, batch {args.batch} x K = {args.rotations} ({args.atoms} atoms), voxel: "
        f"{voxel}, loss L_{args.loss}"
    )
    header = (
        f"{'task':<16} {'model':<16} {'params':>9} {'grad ms':>9} {'fwd-rev HVP ms':>15} {'ratio':>6} "
        f"{'rev-rev HVP ms':>15} {'ratio':>6} {'auto picks':<21}"
    )
    if device.type == "cuda":
        header += f" {'grad MB':>8} {'fwd-rev MB':>10} {'rev-rev MB':>10}"
    print(header)
    for task_name, family in ANALYSED_MODELS:
        row = measure_hvp(task_name, family, args, device, dtype)
        for failure in row.failures:
            print(f"# {family}: {failure}")
        line = f"{task_name:<16} {family:<16} {row.parameters:>9,} {row.gradient_ms:>9.1f}"
        for milliseconds in (row.forward_over_reverse_ms, row.reverse_over_reverse_ms):
            if milliseconds is None:
                line += f" {'fails':>15} {'':>6}"
            else:
                line += f" {milliseconds:>15.1f} {milliseconds / row.gradient_ms:>6.2f}"
        line += f" {row.auto_picks:<21}"
        if device.type == "cuda":
            line += f" {row.memory_mb[0]:>8.1f} {row.memory_mb[1]:>10.1f} {row.memory_mb[2]:>10.1f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
