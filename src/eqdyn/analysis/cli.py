"""What every per-checkpoint analysis CLI shares: the run's files, its task, threads and the device it runs on."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from eqdyn.checkpoints import select_device
from eqdyn.run_config import RunConfig
from eqdyn.tasks import Task, build_task


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="the run's config (run.json)")
    parser.add_argument("--manifest", type=Path, required=True, help="the run's checkpoint manifest")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the model runs")


def open_run(args: argparse.Namespace) -> tuple[RunConfig, dict[str, Any], Task, torch.device]:
    """Set the thread count; return the run config (typed, checked as the workflow checks it), its manifest, its
    task and the device models go to."""
    torch.set_num_threads(args.threads)
    run = RunConfig.from_dict(json.loads(args.run.read_text()), source=str(args.run))
    manifest = json.loads(args.manifest.read_text())
    return run, manifest, build_task(run.task, **run.task_settings), select_device(args.device)
