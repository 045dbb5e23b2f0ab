"""Train one run: ``python -m eqdyn.training.train --run run.json --train train.npz --out runs/<name> --state DIR``.

Task- and model-agnostic: augmentation (a fresh Haar rotation per example and step, applied to the molecule before
the example is drawn, so it is exact for every task, voxels included), Adam/AdamW/SGD with warm-up and cosine
schedule, gradient clipping, optional EMA of the weights.

Outputs: ``checkpoints/step_XXXXXXX.pt`` on the run's log-spaced schedule, ``manifest.json`` (step -> file ->
sha256, parameter count, which weights the analyses read, the run's ``status``, bytes of checkpoints) and
``metrics.csv`` (step, training loss, training wall-clock seconds excluding checkpoint I/O, examples/s, device).

Divergence is an outcome, not a crash. The run diverges at step s when the training loss of step s (averaged over
ranks) is NaN or Inf, or when the weights after step s, about to be checkpointed, are not all finite. Training
stops; the checkpoints of weights that gave finite losses are kept (a checkpoint of step s - 1, the weights whose
loss was non-finite, is dropped: it would put NaN into every analysis), the manifest says ``status: "diverged"``
with ``diverged_at_step`` and ``status_reason``, metrics.csv holds the intervals logged before (the unfinished one
included), and the job exits 0 so the analyses run on the checkpoints that exist (none when step 1 diverges). A run
that reaches its last step has ``status: "finished"``. Any other exception fails the job (state kept for resuming).

Data parallel: launched by ``torchrun`` (``training.processes`` > 1), each process trains on its shard of every
global batch and rank 0 writes everything; see :mod:`eqdyn.training.distributed`.

Resumable: state (weights, optimizer, generators, metrics, checkpoints so far) is kept in ``--state/<key>``, outside
the declared outputs, which Snakemake deletes when a job fails or is forced to rerun. The key hashes the run config,
the train split file and the files ``python -m eqdyn.training.train`` runs (its transitive ``eqdyn`` imports, from
:func:`eqdyn.workflow_support.code_inputs`: the same files the ``train`` rule declares as its code input), not the
whole package: a comment in a figure module keeps an interrupted run's progress. State exists only while a
run is incomplete: an interrupted run (killed, failed) resumes from its last saved state when the key matches; a
run that completed (finished or diverged) hard-links its checkpoints into the outputs, marks its state complete
and removes it, so a later ``--forcerun`` (outputs deleted, job rerun on purpose) finds no state and trains from
step 0, and no checkpoint is stored twice. A state of another key, or one marked complete (a crash between the
mark and the removal), is deleted rather than resumed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eqdyn.checkpoints import (  # noqa: F401 (load_checkpoint: re-exported for the trainer's callers)
    build_run_model,
    device_name,
    link_or_copy,
    load_checkpoint,
    save_checkpoint,
    save_torch,
    select_device,
)
from eqdyn.io import atomic_path, sha256_file, sha256_json, write_json
from eqdyn.models import count_parameters
from eqdyn.molecules import MoleculeDataset
from eqdyn.run_config import RunConfig, TrainingSettings, as_run_config
from eqdyn.symmetry.rotations import haar_rotations
from eqdyn.tasks import GeneratorNoise, Task, build_task
from eqdyn.training.distributed import ProcessGroup
from eqdyn.workflow_support.code_inputs import code_inputs

logger = logging.getLogger(__name__)
PACKAGE_DIR = Path(__file__).resolve().parents[1]
TRAINER_MODULE = "eqdyn.training.train"
METRIC_COLUMNS = ("step", "train_loss", "learning_rate", "wall_seconds", "examples_per_second", "device")
# a file in a state directory that says the run completed: such a state is never resumed
COMPLETE_MARKER = "complete"


def code_version(package_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 over the paths and contents of the package files the trainer runs: resumable state from other
    training code is not reused, while an edit elsewhere in the package (a figure, an analysis) keeps it."""
    root, src = package_dir.parent.parent, package_dir.parent.name
    digest = hashlib.sha256()
    for relative in code_inputs(TRAINER_MODULE, root=root, src=src):
        digest.update(relative.encode() + b"\0")
        digest.update((root / relative).read_bytes() + b"\0")
    return digest.hexdigest()


def training_subset(dataset: MoleculeDataset, molecule_ids: np.ndarray, count: int | None, seed: int) -> np.ndarray:
    """Row indices of the examples of ``count`` molecules drawn (seeded) from the train split; all when None."""
    unique = np.unique(molecule_ids)
    if count is not None:
        if count > len(unique):
            raise ValueError(f"num_train_molecules = {count} but the train split has {len(unique)} molecules")
        unique = np.sort(np.random.default_rng(seed).choice(unique, size=count, replace=False))
    return np.flatnonzero(np.isin(molecule_ids, unique))


def learning_rate_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


# The optimizer registry; eqdyn.run_config.OPTIMIZER_NAMES lists its keys without importing torch (a test keeps
# the two equal).
OPTIMIZERS: dict[str, Callable[[Iterable[nn.Parameter], TrainingSettings], torch.optim.Optimizer]] = {
    "adam": lambda params, s: torch.optim.Adam(params, lr=s.learning_rate, weight_decay=s.weight_decay),
    "adamw": lambda params, s: torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=s.weight_decay),
    "sgd": lambda params, s: torch.optim.SGD(
        params, lr=s.learning_rate, momentum=s.momentum, weight_decay=s.weight_decay
    ),
}


def make_optimizer(model: nn.Module, settings: TrainingSettings) -> torch.optim.Optimizer:
    if settings.optimizer not in OPTIMIZERS:
        raise ValueError(f"training.optimizer: {settings.optimizer!r} is not one of {list(OPTIMIZERS)}")
    return OPTIMIZERS[settings.optimizer](model.parameters(), settings)


@dataclass
class TrainingState:
    step: int = 0
    wall_seconds: float = 0.0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    # the logging interval in progress, so a resumed run logs what an uninterrupted one would
    pending_losses: list[float] = field(default_factory=list)
    interval_start: int = 0
    interval_seconds: float = 0.0
    status: str = "running"  # "running" | "finished" | "diverged"
    status_reason: str | None = None
    diverged_at_step: int | None = None


class Trainer:
    """One run: model, optimizer, data, randomness, and the state that makes it resumable."""

    def __init__(
        self,
        run: RunConfig | Mapping[str, Any],
        train_path: Path,
        state_dir: Path,
        device: torch.device,
        group: ProcessGroup | None = None,
    ) -> None:
        self.run = run = as_run_config(run)
        self.settings = run.training
        self.device = device
        self.group = group or ProcessGroup()
        self.shard = self.group.shard(self.settings.batch_size)
        self.task: Task = build_task(run.task, **run.task_settings)
        with np.load(train_path) as data:
            arrays = {key: data[key] for key in data.files}
        self.dataset = MoleculeDataset(arrays, source=str(train_path))
        self.rows = training_subset(
            self.dataset, arrays["molecule_id"], self.settings.num_train_molecules, self.settings.seed
        )
        self.num_molecules = len(np.unique(arrays["molecule_id"][self.rows]))
        torch.manual_seed(self.settings.seed)  # parameter initialisation
        self.model = build_run_model(run.task, run.model)
        self.model.to(device)
        # what the loss calls: the model itself, or its DDP wrapper that averages gradients over ranks
        self.network: nn.Module = self.model
        if self.group.is_distributed:
            self.network = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        if self.settings.compile:
            compiled = torch.compile(self.network)  # compiles on the first step; weights stay self.model's
            assert isinstance(compiled, nn.Module)  # torch.compile of a module is a module (typed only as a callable)
            self.network = compiled
        self.optimizer = make_optimizer(self.model, self.settings)
        self.ema: dict[str, torch.Tensor] | None = None
        if self.settings.ema_decay is not None:
            self.ema = {name: value.detach().clone() for name, value in self.model.state_dict().items()}
        # batch picks on the CPU; rotations and example noise on the training device
        self.generator = torch.Generator(device="cpu").manual_seed(self.settings.seed + 1)
        self.device_generator = torch.Generator(device=device).manual_seed(self.settings.seed + 2)
        self.state = TrainingState()
        # keyed by the run.json content (to_dict round-trips it), as before the run config was typed
        key = sha256_json({"run": run.to_dict(), "data": sha256_file(train_path), "code": code_version()})[:16]
        self.state_dir = state_dir / key
        if state_dir.exists() and self.group.is_main:
            # states of other configs, data or code are stale, and a completed run's state is never resumed
            for stale in state_dir.iterdir():
                if stale.name != key or (stale / COMPLETE_MARKER).exists():
                    shutil.rmtree(stale, ignore_errors=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)

    # -- resumable state ---------------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.pt"

    def save_state(self) -> None:
        if not self.group.is_main:
            return
        save_torch(
            self.state_file,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "ema": self.ema,
                "generator": self.generator.get_state(),
                "device_generator": self.device_generator.get_state(),
                "state": self.state.__dict__,
            },
        )

    def try_resume(self) -> bool:
        if not self.state_file.exists() or (self.state_dir / COMPLETE_MARKER).exists():
            return False
        saved = torch.load(self.state_file, map_location=self.device, weights_only=False)
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.ema = saved["ema"]
        self.generator.set_state(saved["generator"])
        self.device_generator.set_state(saved["device_generator"].cpu())
        self.state = TrainingState(**saved["state"])
        return True

    # -- one step ----------------------------------------------------------------------------------------------
    def training_loss(self) -> torch.Tensor:
        """This process's mean loss over its shard of a fresh global batch (the whole batch in one process)."""
        batch_size = self.settings.batch_size
        picks = torch.randint(len(self.rows), (batch_size,), generator=self.generator)
        molecules = self.dataset.batch(self.rows[picks.numpy()]).to(self.device, torch.float32)
        if self.settings.augment:
            rotations = haar_rotations(batch_size, self.device_generator, torch.float32, str(self.device))
            molecules = molecules.rotate(rotations)
        noise = GeneratorNoise(self.device_generator)
        if self.group.is_distributed:
            start, stop = self.shard
            molecules = molecules.rows(start, stop)
            noise = GeneratorNoise(self.device_generator, (batch_size, start, stop))
        example = self.task.make_example(molecules, noise)
        inputs, target = example.inputs, example.target
        use_bf16 = self.settings.precision == "bf16" and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            prediction = self.task.predict(self.network, inputs)
        prediction = {name: value.float() for name, value in prediction.items()}
        return self.task.loss(prediction, target, inputs).mean()

    def update_ema(self) -> None:
        if self.ema is None:
            return
        decay = self.settings.ema_decay
        assert decay is not None  # self.ema exists only when ema_decay is set
        with torch.no_grad():
            for name, value in self.model.state_dict().items():
                if value.is_floating_point():
                    self.ema[name].mul_(decay).add_(value.detach(), alpha=1 - decay)
                else:
                    self.ema[name].copy_(value)

    def remove_state(self) -> None:
        """After a completed run's outputs are written: mark its state complete, then delete it."""
        if not self.group.is_main:
            return
        (self.state_dir / COMPLETE_MARKER).touch()  # if the removal is cut short, the rest is still never resumed
        shutil.rmtree(self.state_dir)
        with contextlib.suppress(OSError):  # other runs' or the user's files: leave the directory
            self.state_dir.parent.rmdir()

    # -- checkpoints -------------------------------------------------------------------------------------------
    def analysed_weights(self) -> dict[str, torch.Tensor]:
        return self.ema if self.ema is not None else self.model.state_dict()

    def weights_finite(self) -> bool:
        """Whether every floating-point analysed weight is finite, agreed over ranks."""
        weights = self.analysed_weights().values()
        checks = [torch.isfinite(value).all() for value in weights if value.is_floating_point()]
        flag = torch.stack(checks).all().float() if checks else torch.ones((), device=self.device)
        return bool(self.group.mean(flag) == 1.0)  # one device sync

    def write_checkpoint(self, step: int) -> None:
        if not self.group.is_main:
            return
        path = self.state_dir / "checkpoints" / f"step_{step:07d}.pt"
        entry = save_checkpoint(path, step, self.analysed_weights(), self.run.name)
        self.state.checkpoints.append({**entry, "wall_seconds": self.state.wall_seconds})

    def drop_last_checkpoint(self) -> None:
        entry = self.state.checkpoints.pop()
        if self.group.is_main:
            (self.state_dir / "checkpoints" / entry["file"]).unlink(missing_ok=True)

    # -- the loop ----------------------------------------------------------------------------------------------
    def diverge(self, step: int, reason: str) -> None:
        """Stop as diverged at ``step``: log the unfinished interval's finite losses, record the step and reason."""
        state = self.state
        if state.pending_losses:
            examples = (state.step - state.interval_start) * self.settings.batch_size
            seconds = state.interval_seconds
            state.metrics.append(
                {
                    "step": state.step,
                    "train_loss": float(np.mean(state.pending_losses)),
                    "learning_rate": self.settings.learning_rate
                    * learning_rate_factor(
                        state.step - 1, self.settings.steps, self.settings.warmup_steps, self.settings.schedule
                    ),
                    "wall_seconds": state.wall_seconds,
                    "examples_per_second": examples / seconds if seconds > 0 else float("nan"),
                    "device": device_name(self.device),
                }
            )
            state.pending_losses, state.interval_start, state.interval_seconds = [], state.step, 0.0
        state.status, state.status_reason, state.diverged_at_step = "diverged", reason, step
        if self.group.is_main:
            logger.warning("run %s diverged: %s", self.run.name, reason)

    def train(self, stop_at_step: int | None = None) -> bool:
        """Train to the last step or until divergence (``state.status`` says which); return False if stopped early
        at ``stop_at_step`` (fault injection, to test resumption)."""
        total = self.settings.steps
        schedule = set(self.run.checkpoint_steps)
        state = self.state
        if state.status == "diverged":  # resumed from the state a diverged run saved before its outputs
            return True
        if state.step == 0 and not state.checkpoints and 0 in schedule:
            self.write_checkpoint(0)
        self.model.train()
        while self.state.step < total:
            step = self.state.step
            factor = learning_rate_factor(step, total, self.settings.warmup_steps, self.settings.schedule)
            for group in self.optimizer.param_groups:
                group["lr"] = self.settings.learning_rate * factor
            started = time.perf_counter()
            loss = self.training_loss()
            global_loss = self.group.mean(loss.detach())  # every rank takes the same decisions from it
            if not torch.isfinite(global_loss):
                reason = f"training loss is {global_loss.item()} at step {step + 1}"
                if self.state.checkpoints and self.state.checkpoints[-1]["step"] == step:
                    self.drop_last_checkpoint()  # the weights that gave this loss
                    reason += f" (the checkpoint of step {step}, whose weights give that loss, is dropped)"
                self.diverge(step + 1, reason)
                return True
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.settings.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
            self.optimizer.step()
            self.update_ema()
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - started
            state.wall_seconds += elapsed
            state.interval_seconds += elapsed
            state.pending_losses.append(global_loss.item())
            state.step = step = step + 1
            if step % self.settings.log_every == 0 or step == total:
                examples = (step - state.interval_start) * self.settings.batch_size
                seconds = state.interval_seconds
                state.metrics.append(
                    {
                        "step": step,
                        "train_loss": float(np.mean(state.pending_losses)),
                        "learning_rate": self.settings.learning_rate * factor,
                        "wall_seconds": state.wall_seconds,
                        "examples_per_second": examples / seconds if seconds > 0 else float("nan"),
                        "device": device_name(self.device),
                    }
                )
                if self.group.is_main:
                    loss_text = f"{state.metrics[-1]['train_loss']:.5g}"
                    logger.info("step %d/%d loss %s (%.1f s)", step, total, loss_text, state.wall_seconds)
                state.pending_losses, state.interval_start, state.interval_seconds = [], step, 0.0
            if step in schedule:
                if not self.weights_finite():  # a checkpoint of NaN weights would poison every analysis
                    self.diverge(step, f"weights are not finite after step {step} (checkpoint not written)")
                    return True
                self.write_checkpoint(step)
            if step % self.settings.state_every == 0 or step in schedule or step == total:
                self.save_state()
            if stop_at_step is not None and step >= stop_at_step and step < total:
                return False
        state.status = "finished"
        return True

    def export(self, out_dir: Path) -> None:
        """Hard-link (or copy) the checkpoints and write the manifest and metrics into the run's declared outputs."""
        checkpoint_dir = out_dir / "checkpoints"
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        checkpoint_bytes = 0
        for entry in self.state.checkpoints:
            target = checkpoint_dir / entry["file"]
            link_or_copy(self.state_dir / "checkpoints" / entry["file"], target)
            checkpoint_bytes += target.stat().st_size
        with atomic_path(out_dir / "metrics.csv") as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS)
            writer.writeheader()
            writer.writerows(self.state.metrics)
        write_json(
            out_dir / "manifest.json",
            {
                "run": self.run.name,
                "task": self.run.task,
                "model": self.run.model.to_dict(),
                "equivariance": getattr(self.model, "equivariance", "unknown"),
                "parameters": count_parameters(self.model),
                "train_molecules": self.num_molecules,
                "train_examples": len(self.rows),
                "analysed_weights": "ema" if self.ema is not None else "raw",
                "device": device_name(self.device),
                "training_wall_seconds": self.state.wall_seconds,
                "status": self.state.status,
                "status_reason": self.state.status_reason,
                "diverged_at_step": self.state.diverged_at_step,
                "steps_trained": self.state.step,
                "checkpoint_bytes": checkpoint_bytes,
                "checkpoints": [{**entry, "file": f"checkpoints/{entry['file']}"} for entry in self.state.checkpoints],
            },
        )


def run_training(
    run_path: Path, train_path: Path, out_dir: Path, state_dir: Path, stop_at_step: int | None = None
) -> bool:
    """Train (or resume) one run; True when its outputs were written (finished or diverged), False when stopped at
    ``stop_at_step``."""
    run = RunConfig.from_dict(json.loads(Path(run_path).read_text()), source=str(run_path))
    torch.set_num_threads(run.training.threads)
    group = ProcessGroup.from_environment()
    processes = run.training.processes
    if group.world_size != processes:
        raise RuntimeError(
            f"{run_path}: training.processes = {processes} but {group.world_size} process(es) were launched "
            "(launch several with torchrun, as the train rule does)"
        )
    device = group.device(select_device(run.training.device))
    group.start(device)
    try:
        trainer = Trainer(run, Path(train_path), Path(state_dir), device, group)
        group.barrier()  # rank 0 has cleared stale states before anyone resumes
        resumed = trainer.try_resume()
        if group.is_main:
            logger.info(
                "run %s: %s/%s with %s parameters, %d molecules (%d examples), device %s, %d process(es)%s",
                run.name,
                run.model.family,
                run.model.size,
                f"{count_parameters(trainer.model):,}",
                trainer.num_molecules,
                len(trainer.rows),
                device_name(device),
                group.world_size,
                f", resumed at step {trainer.state.step}" if resumed else "",
            )
        finished = trainer.train(stop_at_step=stop_at_step)
        if finished and trainer.state.status == "diverged":
            trainer.save_state()  # a crash while writing the outputs resumes into the same outcome
        if finished and group.is_main:
            trainer.export(Path(out_dir))
            trainer.remove_state()
        group.barrier()
    finally:
        group.stop()
    return finished


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="the run's resolved config (JSON)")
    parser.add_argument("--train", type=Path, required=True, help="training split (.npz)")
    parser.add_argument("--out", type=Path, required=True, help="run directory for checkpoints, manifest, metrics")
    parser.add_argument("--state", type=Path, required=True, help="directory for resumable state (not an output)")
    parser.add_argument(
        "--stop-at-step",
        type=int,
        default=None,
        help="fault injection for tests: save state and stop at this step, as an interruption would",
    )
    args = parser.parse_args(argv)
    # rank-aware: under torchrun only rank 0 logs progress; the others log warnings and errors, tagged by rank
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format="%(message)s" if rank == 0 else f"[rank {rank}] %(message)s",
    )
    finished = run_training(args.run, args.train, args.out, args.state, args.stop_at_step)
    return 0 if finished else 3


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
