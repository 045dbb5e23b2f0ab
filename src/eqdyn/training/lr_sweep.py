"""Learning-rate sweep behind the config's per-optimizer learning rates, so an untuned optimizer does not fake a
robustness failure: ``python -m eqdyn.training.lr_sweep --run run.json --train train.npz --out sweep.csv``.

For each optimizer and each learning rate on a small log grid, the base run is trained for ``--steps`` steps (same
data, seed and schedule) and scored by its mean training loss over the last 20 % of steps. The table is printed
and written; the pick per optimizer is the lowest score. Choosing the config values from it is a person's decision,
recorded in config/config.yaml.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from eqdyn.io import atomic_path
from eqdyn.run_config import RunConfig, as_run_config
from eqdyn.training.train import Trainer, select_device

logger = logging.getLogger(__name__)

# Half-decade grids; Adam's reaches 1e-2 because short sweeps tend to pick the largest stable rate and an edge pick
# would not show where the optimum lies.
GRIDS = {
    "adam": (3e-4, 1e-3, 3e-3, 1e-2),
    "adamw": (3e-4, 1e-3, 3e-3, 1e-2),
    "sgd": (3e-3, 1e-2, 3e-2, 1e-1),
}


def score_learning_rate(
    run: RunConfig | Mapping[str, Any], train_path: Path, optimizer: str, learning_rate: float, steps: int
) -> float:
    base = as_run_config(run)
    # five logging intervals: the last one is the mean training loss over the last 20 % of steps
    trial = dataclasses.replace(
        base.with_training(
            optimizer=optimizer,
            learning_rate=learning_rate,
            steps=steps,
            log_every=max(1, steps // 5),
            state_every=steps + 1,
            warmup_steps=min(base.training.warmup_steps, steps // 10),
        ),
        checkpoint_steps=(),
    )
    with tempfile.TemporaryDirectory() as state_dir:
        trainer = Trainer(trial, train_path, Path(state_dir), select_device(trial.training.device))
        trainer.train()
    if trainer.state.status == "diverged":  # a diverging trial scores as infinitely bad
        logger.warning("%s lr %g: diverged, %s", optimizer, learning_rate, trainer.state.status_reason)
        return float("inf")
    return float(trainer.state.metrics[-1]["train_loss"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="the base run's config (run.json)")
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument(
        "--optimizers", nargs="+", choices=sorted(GRIDS), default=None, help="sweep only these (default: all)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run = RunConfig.from_dict(json.loads(args.run.read_text()), source=str(args.run))
    torch.set_num_threads(run.training.threads)
    grids = {name: grid for name, grid in GRIDS.items() if args.optimizers is None or name in args.optimizers}
    rows = []
    for optimizer, grid in grids.items():
        for learning_rate in grid:
            score = score_learning_rate(run, args.train, optimizer, learning_rate, args.steps)
            rows.append(
                {
                    "run": run.name,
                    "optimizer": optimizer,
                    "learning_rate": learning_rate,
                    "steps": args.steps,
                    "final_train_loss": score,
                }
            )
            logger.info("%-6s lr %-7g final train loss %.5g", optimizer, learning_rate, score)
    for optimizer in grids:
        best = min((r for r in rows if r["optimizer"] == optimizer), key=lambda r: r["final_train_loss"])
        logger.info("best %s: lr %g", optimizer, best["learning_rate"])
    with atomic_path(args.out) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
