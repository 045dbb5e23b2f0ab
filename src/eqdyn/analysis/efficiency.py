"""Seconds per training step of every run, measured alone: ``python -m eqdyn.analysis.efficiency``.

Training jobs share cores with each other, so their own wall-clock is not a fair clock. This benchmark runs as one
Snakemake job holding every core (nothing else runs beside it) and times, for each run, the same training step the
trainer executes (batch draw, augmentation, example, forward, backward, optimizer step; no evaluation or checkpoint
I/O) with the run's own batch size and thread count. Core-hours to reach step s are then
s * seconds_per_step * threads / 3600 on a CPU; on a GPU, s * seconds_per_step / 3600 GPU-hours.

It also times inference, the cost of test-time twirling: one forward pass of the model in eval mode, without
gradients, on a batch of the run's batch size (examples made as in training, with the training precision), divided
by the batch size: ``forward_seconds_per_example``. Inference core-seconds for n examples averaged over k rotations
are k * n * forward_seconds_per_example * threads on a CPU (no threads factor on a GPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch

from eqdyn.io import write_csv
from eqdyn.models import count_parameters
from eqdyn.tasks.base import GeneratorNoise
from eqdyn.training.train import Trainer, device_name, select_device

logger = logging.getLogger(__name__)

COLUMNS = (
    "run",
    "task",
    "model",
    "size",
    "equivariance",
    "parameters",
    "batch_size",
    "seconds_per_step",
    "seconds_per_step_stderr",
    "threads",
    "device",
    "forward_seconds_per_example",
    "forward_seconds_per_example_stderr",
)


def seconds_per_step(trainer: Trainer, warmup: int, steps: int) -> tuple[float, float]:
    """Median and standard error (from the interquartile range) of the time of one training step."""
    times = []
    for index in range(warmup + steps):
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = trainer.training_loss()
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return _median_and_stderr(times)


def _median_and_stderr(times: list[float]) -> tuple[float, float]:
    quartiles = statistics.quantiles(times, n=4)
    return statistics.median(times), (quartiles[2] - quartiles[0]) / 1.349 / len(times) ** 0.5


def forward_seconds_per_example(trainer: Trainer, warmup: int, repeats: int) -> tuple[float, float]:
    """Median and standard error of one eval-mode forward pass without gradients, per example of the batch."""
    batch_size = trainer.settings.batch_size
    picks = torch.randint(len(trainer.rows), (batch_size,), generator=trainer.generator)
    molecules = trainer.dataset.batch(trainer.rows[picks.numpy()]).to(trainer.device, torch.float32)
    example = trainer.task.make_example(molecules, GeneratorNoise(trainer.device_generator))
    use_bf16 = trainer.settings.precision == "bf16" and trainer.device.type == "cuda"
    trainer.model.eval()
    times = []
    try:
        for index in range(warmup + repeats):
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.no_grad(), torch.autocast(trainer.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                trainer.task.predict(trainer.model, example.inputs)
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            if index >= warmup:
                times.append((time.perf_counter() - start) / batch_size)
    finally:
        trainer.model.train()
    return _median_and_stderr(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="run.json files")
    parser.add_argument("--datasets", type=Path, required=True, help="the study's datasets directory")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args(argv)
    rows = []
    for run_path in args.runs:
        run = json.loads(run_path.read_text())
        threads = run["training"]["threads"]
        torch.set_num_threads(threads)
        device = select_device(run["training"]["device"])
        with tempfile.TemporaryDirectory() as state_dir:
            trainer = Trainer(run, args.datasets / run["task"] / "train.npz", Path(state_dir), device)
            median, stderr = seconds_per_step(trainer, args.warmup, args.steps)
            forward, forward_stderr = forward_seconds_per_example(trainer, args.warmup, args.steps)
        rows.append(
            {
                "run": run["name"],
                "task": run["task"],
                "model": run["model"]["family"],
                "size": run["model"]["size"],
                "equivariance": getattr(trainer.model, "equivariance", "unknown"),
                "parameters": count_parameters(trainer.model),
                "batch_size": run["training"]["batch_size"],
                "seconds_per_step": median,
                "seconds_per_step_stderr": stderr,
                "threads": threads,
                "device": device_name(device),
                "forward_seconds_per_example": forward,
                "forward_seconds_per_example_stderr": forward_stderr,
            }
        )
        logger.info(
            "%-55s %8.1f ms/step (+- %.1f), %.3g ms/example forward",
            run["name"],
            1e3 * median,
            1e3 * stderr,
            1e3 * forward,
        )
    write_csv(args.out, rows, COLUMNS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
