"""What every per-checkpoint analysis CLI shares: the run's files, its task, threads and the device it runs on."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from eqdyn.tasks import Task, build_task
from eqdyn.training.train import select_device


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="the run's config (run.json)")
    parser.add_argument("--manifest", type=Path, required=True, help="the run's checkpoint manifest")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the model runs")


def open_run(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], Task, torch.device]:
    """Set the thread count; return the run config, its manifest, its task and the device models go to."""
    torch.set_num_threads(args.threads)
    run = json.loads(args.run.read_text())
    manifest = json.loads(args.manifest.read_text())
    return run, manifest, build_task(run["task"], **run["task_settings"]), select_device(args.device)
