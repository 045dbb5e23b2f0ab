"""All performance figures of the project measured in ONE run on one machine, written as a markdown report.

    python -m eqdyn.benchmarks.performance --device cpu --out performance.md --csv performance.csv \\
        --sizes xs s --batch 8 --repeats 2
    python -m eqdyn.benchmarks.performance --device cuda --bf16 --compile --sizes xs s m l xl --out performance.md

Ratios are only meaningful between figures taken in the same run, hence one command for all of them:

1. the flow-matching transformer over a size ladder: parameters, ms per training step (forward, backward, AdamW
   step), examples/s, FLOPs per step counted by ``torch.utils.flop_counter.FlopCounterMode`` over forward and
   backward, achieved TFLOP/s and its fraction of ``--peak-tflops`` (default 800, the bf16 dense matrix product
   measured on the project's H100, with ``--bf16`` on CUDA; otherwise none and the fraction is "n/a");
2. per task, time per training step of the equivariant model over the unconstrained one (interleaved in the same
   timing rounds as the ladder, :func:`eqdyn.models.benchmark.benchmark_runs`);
3. one Hessian-vector product over one gradient per analysed model (:mod:`eqdyn.benchmarks.hvp`, float32, eager);
4. one decomposition pass over K plain forwards (:mod:`eqdyn.benchmarks.decomposition`, float32, eager);
5. data preparation: RDKit conformers per second on 1 process and on ``--data-workers`` processes dealt molecules
   as the pipeline's shards are (:mod:`eqdyn.data.benchmark_conformers`; ``--data-molecules 0`` skips it);
6. the project's speed targets, each with its measured value and whether it is met: HVP at most
   ``HVP_TARGET`` x a gradient by the path "auto" picks, for every analysed model; data preparation at least
   ``DATA_SCALING_TARGET`` x faster on the workers than on one; and, given ``--baseline`` (the CSV of this command
   run at an earlier commit on the same machine), the small transformers of the ladder (under 1M parameters) at
   least ``SMALL_TRANSFORMER_TARGET`` x the baseline's examples/s. The baseline is another run: its ratios carry
   that run's noise too, which the report says.

Timings are medians over repeats after warm-up steps, CUDA-synchronised on GPU. It measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from eqdyn.benchmarks.decomposition import CASES as DECOMPOSITION_CASES
from eqdyn.benchmarks.decomposition import measure_case
from eqdyn.benchmarks.hvp import ANALYSED_MODELS, HvpRow, measure_hvp
from eqdyn.data.benchmark_conformers import ScalingRow, measure_scaling
from eqdyn.models import FAMILY_SPECS, build_model
from eqdyn.models.benchmark import BenchmarkRow, benchmark_runs, synthetic_molecules, training_loss

H100_BF16_MATMUL_TFLOPS = 800.0  # measured bf16 matmul on the lent H100 (shared/GPU.md); datasheet: 989
DEFAULT_SIZES = ("xs", "s", "m", "l")
# The speed targets of the CPU study (issue "The decisive study on two cores")
HVP_TARGET = 3.0  # one HVP at most this many gradients, every analysed model
DATA_SCALING_TARGET = 1.8  # conformer preparation on 2 workers over 1
SMALL_TRANSFORMER_TARGET = 2.0  # examples/s over the baseline's, ladder sizes under SMALL_TRANSFORMER_PARAMETERS
SMALL_TRANSFORMER_PARAMETERS = 1_000_000
# (task, equivariant family, unconstrained family), both at their registry default size
EQUIVARIANCE_PAIRS = (
    ("flow_matching", "egnn", "transformer"),
    ("force_field", "painn", "transformer"),
    ("voxel_denoising", "octahedral_unet", "unet3d"),
)


def _cpu_attention_flops(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_attention_backward_flops(
    grad_out: Any, query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any
) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# FlopCounterMode knows the CUDA attention kernels but not the CPU one, so attention would count as zero on CPU;
# the same formulas as the CUDA kernels' keep CPU and GPU counts identical
_CPU_ATTENTION = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flops,
}


def training_step_flops(task: str, model: nn.Module, data: dict[str, Tensor], bf16: bool = False) -> int:
    """FLOPs of the forward and backward of one training loss, as FlopCounterMode counts them: matrix products,
    convolutions and attention (elementwise work and the AdamW update are not counted). Leaves no gradients."""
    device = next(model.parameters()).device
    with FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION) as counter:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = training_loss(task, model, data)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


@dataclass(frozen=True)
class LadderRow:
    timing: BenchmarkRow
    preset: dict[str, Any]
    flops_per_step: int
    peak_tflops: float | None

    @property
    def achieved_tflops(self) -> float:
        return self.flops_per_step / (self.timing.ms_per_step / 1e3) / 1e12

    @property
    def peak_fraction(self) -> float | None:
        return None if self.peak_tflops is None else self.achieved_tflops / self.peak_tflops


@dataclass(frozen=True)
class DecompositionRow:
    task: str
    family: str
    size: str
    rotations: int
    plain_ms: float
    decomposition_ms: float

    @property
    def ratio(self) -> float:
        return self.decomposition_ms / self.plain_ms


@dataclass
class Report:
    device: str
    torch_version: str
    date: str
    command: str
    settings: list[str]
    peak_tflops: float | None
    ladder: list[LadderRow] = field(default_factory=list)
    pairs: list[tuple[BenchmarkRow, BenchmarkRow]] = field(default_factory=list)
    hvp: list[HvpRow] = field(default_factory=list)
    decomposition: list[DecompositionRow] = field(default_factory=list)
    data: list[ScalingRow] = field(default_factory=list)
    # examples/s of the ladder sizes in the --baseline CSV, and where it came from
    baseline: dict[str, float] = field(default_factory=dict)
    baseline_source: str | None = None


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    met: bool | None  # None: not measured in this run


def hvp_ratio(row: HvpRow) -> float | None:
    """The ratio of the path that "auto" picks (the one the analyses run)."""
    if row.auto_picks == "forward_over_reverse":
        return row.forward_over_reverse_ratio
    if row.auto_picks == "reverse_over_reverse":
        return row.reverse_over_reverse_ratio
    return None


def targets(report: Report) -> list[Target]:
    """Each speed target with what this run measured; a target this run did not measure is met=None."""
    rows = []
    if report.hvp:
        ratios = {f"{row.task}/{row.family}": hvp_ratio(row) for row in report.hvp}
        finite = {name: ratio for name, ratio in ratios.items() if ratio is not None}
        worst = max(finite, key=finite.__getitem__) if finite else None
        over = [name for name, ratio in ratios.items() if ratio is None or ratio > HVP_TARGET]
        measured = "no path ran" if worst is None else f"worst {finite[worst]:.2f}x ({worst})"
        measured += f"; over the target: {', '.join(over)}" if over else ""
        rows.append(Target(f"HVP <= {HVP_TARGET:g}x a gradient, every analysed model", measured, not over))
    else:
        rows.append(Target(f"HVP <= {HVP_TARGET:g}x a gradient, every analysed model", "not measured", None))
    name = f"data preparation >= {DATA_SCALING_TARGET:g}x faster on 2 workers than on 1 (pipeline shards)"
    serial = [row for row in report.data if row.mode == "serial"]
    static = [row for row in report.data if row.mode == "static"]
    if serial and static:
        speedup = static[0].rate / serial[0].rate
        measured = f"{speedup:.2f}x on {static[0].workers} workers"
        rows.append(Target(name, measured, speedup >= DATA_SCALING_TARGET if static[0].workers == 2 else None))
    else:
        rows.append(Target(name, "not measured", None))
    name = f"small transformers (< 1M parameters) >= {SMALL_TRANSFORMER_TARGET:g}x the baseline's examples/s"
    small = [row for row in report.ladder if row.timing.parameters < SMALL_TRANSFORMER_PARAMETERS]
    compared = [row for row in small if row.timing.size in report.baseline]
    if compared:
        speedups = {
            row.timing.size: row.timing.examples_per_second / report.baseline[row.timing.size] for row in compared
        }
        measured = ", ".join(f"{size} {value:.2f}x" for size, value in speedups.items())
        rows.append(Target(name, measured, min(speedups.values()) >= SMALL_TRANSFORMER_TARGET))
    else:
        rows.append(Target(name, "no --baseline with these sizes", None))
    return rows


def read_baseline(path: Path) -> dict[str, float]:
    """examples/s per ladder size from an earlier run's tidy CSV (``--csv``)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "section" not in rows[0]:
        raise SystemExit(f"error: {path}: not a performance CSV (no 'section' column)")
    baseline = {
        row["size"]: float(row["value"])
        for row in rows
        if row["section"] == "ladder" and row["metric"] == "examples_per_second" and row["value"]
    }
    if not baseline:
        raise SystemExit(f"error: {path}: no ladder examples_per_second rows")
    return baseline


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        model = names[0] if names else model
    return f"CPU {model}, {torch.get_num_threads()} torch threads"


def resolve_peak_tflops(peak_tflops: float | None, device: torch.device, bf16: bool) -> float | None:
    """The given peak, else the H100 SXM bf16 dense peak for bf16 on CUDA, else none (no meaningful CPU peak)."""
    if peak_tflops is not None:
        return peak_tflops
    return H100_BF16_MATMUL_TFLOPS if device.type == "cuda" and bf16 else None


def _release_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _progress(message: str, start: float) -> None:
    # stderr, so that stdout stays the markdown report
    print(f"[performance {time.perf_counter() - start:6.1f} s] {message}", file=sys.stderr, flush=True)


def measure(args: argparse.Namespace, command: str) -> Report:
    start = time.perf_counter()
    device = torch.device(args.device)
    peak = resolve_peak_tflops(args.peak_tflops, device, args.bf16)
    ladder_runs = [("flow_matching", "transformer", size) for size in args.sizes]
    pair_runs = [
        (task, family, FAMILY_SPECS[(task, family)].default_size)
        for task, equivariant, plain in EQUIVARIANCE_PAIRS
        for family in (equivariant, plain)
    ]
    runs = list(dict.fromkeys(ladder_runs + pair_runs))  # the default-size transformer is timed once for both
    report = Report(
        device=device_name(device),
        torch_version=torch.__version__,
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        command=command,
        settings=[
            f"training steps: bf16 autocast {'yes' if args.bf16 else 'no'}, torch.compile "
            f"{'yes' if args.compile else 'no'}, fused AdamW on CUDA; {args.batch} molecules x {args.atoms} padded "
            f"atoms, voxel grids {args.voxel_batch} x {args.voxel_channels} x {args.voxel_size}^3; median of "
            f"{args.repeats} steps after {args.warmup} warm-up steps, all models interleaved in the same rounds",
            f"HVP and decomposition: float32, eager, no autocast; median of {args.repeats} after one warm-up; HVP "
            f"{args.hvp_batch} examples x K = {args.rotations}, decomposition {args.decomposition_batch} examples "
            f"x K = {args.rotations}, {args.analysis_atoms} atoms; voxel grids {args.grid_size}^3, batch // 8, the "
            "24 cube rotations",
            "peak: " + ("n/a" if peak is None else f"{peak:g} TFLOP/s"),
        ],
        peak_tflops=peak,
    )
    timings = benchmark_runs(
        runs,
        device,
        batch=args.batch,
        atoms=args.atoms,
        voxel_batch=args.voxel_batch,
        voxel_size=args.voxel_size,
        voxel_channels=args.voxel_channels,
        warmup=args.warmup,
        steps=args.repeats,
        bf16=args.bf16,
        compile_models=args.compile,
    )
    by_run = {(row.task, row.family, row.size): row for row in timings}
    _progress(f"timed training steps of {len(runs)} models", start)
    _release_memory(device)

    # FLOPs on a fresh eager model: compilation changes the kernels, not the arithmetic
    molecules = synthetic_molecules(args.batch, args.atoms, device)
    presets = FAMILY_SPECS[("flow_matching", "transformer")].presets
    for run in ladder_runs:
        torch.manual_seed(0)
        model = build_model(*run).to(device).train()
        flops = training_step_flops("flow_matching", model, molecules, args.bf16)
        report.ladder.append(LadderRow(by_run[run], dict(presets[run[2]]), flops, peak))
        del model
        _release_memory(device)
    for task, equivariant, plain in EQUIVARIANCE_PAIRS:
        size_of = {family: FAMILY_SPECS[(task, family)].default_size for family in (equivariant, plain)}
        report.pairs.append((by_run[(task, equivariant, size_of[equivariant])], by_run[(task, plain, size_of[plain])]))
    _progress("counted FLOPs of the ladder", start)

    hvp_arguments = argparse.Namespace(
        batch=args.hvp_batch,
        atoms=args.analysis_atoms,
        rotations=args.rotations,
        grid_size=args.grid_size,
        repeats=args.repeats,
        loss="mean",
    )
    for task, family in ANALYSED_MODELS:
        report.hvp.append(measure_hvp(task, family, hvp_arguments, device, torch.float32))
        _release_memory(device)
        _progress(f"HVP of {task}/{family}", start)

    for task, family, size, overrides in DECOMPOSITION_CASES:
        plain_seconds, decomposition_seconds = measure_case(
            task,
            family,
            size,
            overrides,
            device=device,
            batch=args.decomposition_batch,
            atoms=args.analysis_atoms,
            rotations=args.rotations,
            repeats=args.repeats,
            grid_size=args.grid_size,
        )
        # voxel grids are decomposed over the 24 cube rotations whatever --rotations says
        rotations = 24 if task == "voxel_denoising" else args.rotations
        report.decomposition.append(
            DecompositionRow(task, family, size, rotations, 1e3 * plain_seconds, 1e3 * decomposition_seconds)
        )
        _release_memory(device)
        _progress(f"decomposition of {task}/{family}", start)

    if args.data_molecules > 0:
        report.data = measure_scaling(args.data_molecules, 2, args.data_workers, args.data_repeats)
        _progress(f"conformers of {args.data_molecules} molecules on 1 and {args.data_workers} workers", start)
    return report


def _number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def format_markdown(report: Report) -> str:
    lines = [
        "# Performance",
        "",
        f"- device: {report.device}",
        f"- torch: {report.torch_version}",
        f"- date: {report.date}",
        f"- command: `{report.command}`",
        *(f"- {setting}" for setting in report.settings),
        "",
        "## 1. Flow-matching transformer size ladder",
        "",
        "FLOPs per step: forward + backward as FlopCounterMode counts them (matrix products and attention over the "
        "padded batch; the AdamW update and elementwise work are not counted). A fused attention kernel's "
        "backward recomputes Q K^T (2.5x its forward, the explicit products 2x): on CPU the learned bond bias "
        "sends attention down the explicit path, so CPU and CUDA counts of one model may differ slightly.",
        "",
        "| size | dim x layers x heads | params | ms/step | examples/s | GFLOP/step | achieved TFLOP/s "
        "| fraction of peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report.ladder:
        shape = f"{row.preset['dim']} x {row.preset['layers']} x {row.preset['heads']}"
        lines.append(
            f"| {row.timing.size} | {shape} | {row.timing.parameters:,} | {row.timing.ms_per_step:.2f} "
            f"| {row.timing.examples_per_second:,.0f} | {row.flops_per_step / 1e9:.4g} "
            f"| {row.achieved_tflops:.3g} | {_number(row.peak_fraction, 3)} |"
        )
    if report.baseline:
        lines += [
            "",
            f"Against the baseline `{report.baseline_source}` (the same command at an earlier commit, a separate run "
            "on this machine: the speed-up carries both runs' noise):",
            "",
            "| size | baseline examples/s | examples/s | speed-up |",
            "|---|---:|---:|---:|",
        ]
        for row in report.ladder:
            before = report.baseline.get(row.timing.size)
            if before is not None:
                after = row.timing.examples_per_second
                lines.append(f"| {row.timing.size} | {before:,.0f} | {after:,.0f} | {after / before:.2f}x |")
    lines += [
        "",
        "## 2. Equivariant / non-equivariant time per training step",
        "",
        "| task | equivariant | size | params | ms/step | non-equivariant | size | params | ms/step | ratio |",
        "|---|---|---|---:|---:|---|---|---:|---:|---:|",
    ]
    for equivariant, plain in report.pairs:
        lines.append(
            f"| {equivariant.task} | {equivariant.family} ({equivariant.equivariance}) | {equivariant.size} "
            f"| {equivariant.parameters:,} | {equivariant.ms_per_step:.2f} | {plain.family} | {plain.size} "
            f"| {plain.parameters:,} | {plain.ms_per_step:.2f} | {equivariant.ms_per_step / plain.ms_per_step:.2f} |"
        )
    lines += [
        "",
        "## 3. Hessian-vector product / gradient cost",
        "",
        "| task | model | params | gradient ms | fwd-over-rev HVP ms | ratio | rev-over-rev HVP ms | ratio "
        "| auto picks |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    failures = []
    for hvp in report.hvp:
        lines.append(
            f"| {hvp.task} | {hvp.family} | {hvp.parameters:,} | {hvp.gradient_ms:.2f} "
            f"| {_number(hvp.forward_over_reverse_ms)} | {_number(hvp.forward_over_reverse_ratio)} "
            f"| {_number(hvp.reverse_over_reverse_ms)} | {_number(hvp.reverse_over_reverse_ratio)} "
            f"| {hvp.auto_picks} |"
        )
        failures += [f"- {hvp.task}/{hvp.family}: {failure}" for failure in hvp.failures]
    if failures:
        lines += ["", "Failed HVP paths:", *failures]
    lines += [
        "",
        "## 4. Decomposition / K plain forwards",
        "",
        "| task | model | size | K | K forwards ms | decomposition ms | ratio |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for decomposition_row in report.decomposition:
        lines.append(
            f"| {decomposition_row.task} | {decomposition_row.family} | {decomposition_row.size} "
            f"| {decomposition_row.rotations} | {decomposition_row.plain_ms:.2f} "
            f"| {decomposition_row.decomposition_ms:.2f} | {decomposition_row.ratio:.2f} |"
        )
    if report.data:
        serial = report.data[0].rate
        lines += [
            "",
            "## 5. Data preparation: RDKit conformers on 1 and on several processes",
            "",
            "QM9 molecules (<= 9 heavy atoms) x 2 conformers, ETKDGv3 + MMFF94 as the pipeline makes them; best of "
            "the repeats. static: molecules dealt round-robin to the processes, as the pipeline's shards are; "
            "dynamic: one molecule at a time.",
            "",
            "| processes | mode | conformers | seconds | conformers/s | speed-up |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for data_row in report.data:
            lines.append(
                f"| {data_row.workers} | {data_row.mode} | {data_row.conformers} | {data_row.seconds:.2f} "
                f"| {data_row.rate:.1f} | {data_row.rate / serial:.2f}x |"
            )
    lines += ["", "## 6. Speed targets", "", "| target | measured | met |", "|---|---|---|"]
    for target in targets(report):
        verdict = "not measured" if target.met is None else ("yes" if target.met else "**no**")
        lines.append(f"| {target.name} | {target.measured} | {verdict} |")
    return "\n".join(lines) + "\n"


def tidy_rows(report: Report) -> list[dict[str, Any]]:
    """One measurement per row: section, task, family, size, metric, value (empty where not available)."""
    rows: list[dict[str, Any]] = []

    def add(section: str, task: str, family: str, size: str, metric: str, value: float | int | None) -> None:
        rows.append(
            {
                "device": report.device,
                "torch": report.torch_version,
                "section": section,
                "task": task,
                "family": family,
                "size": size,
                "metric": metric,
                "value": "" if value is None else value,
            }
        )

    for row in report.ladder:
        t = row.timing
        for metric, value in (
            ("parameters", t.parameters),
            ("examples", t.examples),
            ("ms_per_step", t.ms_per_step),
            ("examples_per_second", t.examples_per_second),
            ("flops_per_step", row.flops_per_step),
            ("achieved_tflops", row.achieved_tflops),
            ("peak_tflops", row.peak_tflops),
            ("peak_fraction", row.peak_fraction),
        ):
            add("ladder", t.task, t.family, t.size, metric, value)
    for equivariant, plain in report.pairs:
        for t in (equivariant, plain):
            add("equivariance_ratio", t.task, t.family, t.size, "parameters", t.parameters)
            add("equivariance_ratio", t.task, t.family, t.size, "ms_per_step", t.ms_per_step)
        ratio = equivariant.ms_per_step / plain.ms_per_step
        add(
            "equivariance_ratio",
            equivariant.task,
            equivariant.family,
            equivariant.size,
            f"ratio_vs_{plain.family}",
            ratio,
        )
    for hvp in report.hvp:
        size = FAMILY_SPECS[(hvp.task, hvp.family)].default_size
        for metric, value in (
            ("parameters", hvp.parameters),
            ("gradient_ms", hvp.gradient_ms),
            ("forward_over_reverse_ms", hvp.forward_over_reverse_ms),
            ("forward_over_reverse_ratio", hvp.forward_over_reverse_ratio),
            ("reverse_over_reverse_ms", hvp.reverse_over_reverse_ms),
            ("reverse_over_reverse_ratio", hvp.reverse_over_reverse_ratio),
        ):
            add("hvp", hvp.task, hvp.family, size, metric, value)
    for decomposition_row in report.decomposition:
        for metric, value in (
            ("rotations", decomposition_row.rotations),
            ("plain_ms", decomposition_row.plain_ms),
            ("decomposition_ms", decomposition_row.decomposition_ms),
            ("ratio", decomposition_row.ratio),
        ):
            add(
                "decomposition", decomposition_row.task, decomposition_row.family, decomposition_row.size, metric, value
            )
    for data_row in report.data:
        for metric, value in (("conformers", data_row.conformers), ("seconds", data_row.seconds)):
            add("data", "conformers", data_row.mode, str(data_row.workers), metric, value)
    return rows


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in the training steps")
    parser.add_argument("--compile", action="store_true", help="torch.compile the trained models")
    parser.add_argument("--out", type=Path, required=True, help="markdown report")
    parser.add_argument("--csv", type=Path, default=None, help="also write the measurements as a tidy CSV")
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=list(DEFAULT_SIZES),
        choices=list(FAMILY_SPECS[("flow_matching", "transformer")].presets),
        help="transformer ladder",
    )
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak for the fraction column")
    parser.add_argument("--batch", type=int, default=None, help="molecules per step (default 512 on CUDA, 64 on CPU)")
    parser.add_argument("--atoms", type=int, default=32, help="padded atoms per molecule")
    parser.add_argument("--voxel-batch", type=int, default=8)
    parser.add_argument("--voxel-size", type=int, default=16, help="grid side L of the training steps")
    parser.add_argument("--voxel-channels", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="warm-up training steps per model")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of every measurement")
    parser.add_argument("--hvp-batch", type=int, default=None, help="examples of the HVP benchmark (CUDA 8, CPU 1)")
    parser.add_argument(
        "--decomposition-batch", type=int, default=None, help="examples of the decomposition benchmark (CUDA 32, CPU 8)"
    )
    parser.add_argument("--rotations", type=int, default=None, help="K of the analyses (CUDA 8, CPU 4; voxels: 24)")
    parser.add_argument("--analysis-atoms", type=int, default=18, help="atoms per molecule of the analyses")
    parser.add_argument("--grid-size", type=int, default=None, help="voxel grid side of the analyses (CUDA 16, CPU 8)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--data-molecules", type=int, default=200, help="molecules of the data-preparation section (0: skip it)"
    )
    parser.add_argument("--data-workers", type=int, default=2, help="processes of the data-preparation section")
    parser.add_argument("--data-repeats", type=int, default=2, help="best of this many data-preparation runs")
    parser.add_argument(
        "--baseline", type=Path, default=None, help="--csv of this command at an earlier commit, same machine"
    )
    args = parser.parse_args(argv)
    # on CUDA the defaults of the hvp and decomposition CLIs; on CPU smaller, or the HVPs alone take minutes
    cuda = args.device.startswith("cuda")
    defaults = {
        "batch": (512, 64),
        "hvp_batch": (8, 1),
        "decomposition_batch": (32, 8),
        "rotations": (8, 4),
        "grid_size": (16, 8),
    }
    for name, (on_cuda, on_cpu) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, on_cuda if cuda else on_cpu)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_arguments(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    baseline = read_baseline(args.baseline) if args.baseline is not None else {}
    report = measure(args, "python -m eqdyn.benchmarks.performance " + shlex.join(argv))
    report.baseline, report.baseline_source = baseline, None if args.baseline is None else str(args.baseline)
    markdown = format_markdown(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown)
    if args.csv is not None:
        rows = tidy_rows(report)
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    print(markdown, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
