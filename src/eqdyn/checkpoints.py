"""Checkpoints: writing them, the manifest entries that name them, loading them into a model, and choosing the
device a model runs on. The trainer writes checkpoints with these functions and every analysis reads them back
with these functions, so neither imports the other (and no analysis imports the trainer's command-line module).

A checkpoint file is ``torch.save({"step": int, "weights": state_dict, "run": name})``; the run's
``manifest.json`` lists them under ``checkpoints`` as ``{"step", "file", "sha256", "wall_seconds"}`` with ``file``
relative to the manifest. :func:`load_weights` also accepts a bare ``state_dict`` (a model trained elsewhere).
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eqdyn.io import sha256_file, write_bytes
from eqdyn.models import build_model
from eqdyn.run_config import ModelSpec, RunConfig


def select_device(name: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; ``"cuda"`` without a CUDA device is an error, not a silent CPU."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA device is available")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """What the manifests and metrics record as the device: the GPU's name, or ``"cpu"``."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def save_torch(path: Path, obj: Any) -> None:
    """torch.save, atomically and byte-for-byte reproducible (the archive is not named after a temporary file)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())


def save_checkpoint(path: Path, step: int, weights: Mapping[str, torch.Tensor], run_name: str) -> dict[str, Any]:
    """Write one checkpoint; return its manifest entry (``file`` is the file name; the caller places it)."""
    save_torch(path, {"step": step, "weights": dict(weights), "run": run_name})
    return {"step": step, "file": path.name, "sha256": sha256_file(path)}


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file system allows one (no second copy on disk), else a copy."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@dataclass(frozen=True)
class CheckpointEntry:
    """One checkpoint a manifest lists: its training step and its file (resolved against the manifest's folder)."""

    step: int
    path: Path
    sha256: str | None = None


def manifest_checkpoints(manifest_path: str | Path) -> list[CheckpointEntry]:
    """The checkpoints of a run's manifest, in the manifest's (step) order."""
    manifest_path = Path(manifest_path)
    manifest = json.loads(manifest_path.read_text())
    return [
        CheckpointEntry(int(entry["step"]), manifest_path.parent / entry["file"], entry.get("sha256"))
        for entry in manifest["checkpoints"]
    ]


def build_run_model(task: str, model: ModelSpec) -> nn.Module:
    """A freshly initialised model of a run's task and model spec."""
    return build_model(task, model.family, model.size, **model.overrides)


def load_weights(
    model: nn.Module, path: str | Path, device: str | torch.device = "cpu", strict: bool = True
) -> nn.Module:
    """``model`` with the weights of ``path`` (a checkpoint of this package or a bare ``state_dict``), on
    ``device``, in eval mode."""
    device = select_device(device)
    saved = torch.load(path, map_location=device, weights_only=False)
    if isinstance(saved, nn.Module):
        raise TypeError(f"{path}: holds a whole pickled module; save its state_dict() instead")
    if not isinstance(saved, Mapping):
        raise TypeError(f"{path}: expected a state_dict or a checkpoint with 'weights', got {type(saved).__name__}")
    weights = saved["weights"] if "weights" in saved and isinstance(saved["weights"], Mapping) else saved
    model.load_state_dict(weights, strict=strict)
    return model.to(device).eval()


def load_checkpoint(
    run: RunConfig | Mapping[str, Any], path: str | Path, device: str | torch.device = "cpu"
) -> nn.Module:
    """The model of ``run`` with the analysed weights of a checkpoint, in eval mode. ``run`` may be a run.json
    mapping that holds only ``task`` and ``model`` (what the analyses need)."""
    if isinstance(run, RunConfig):
        model = build_run_model(run.task, run.model)
    else:
        model = build_run_model(run["task"], ModelSpec.from_dict(run["model"]))
    return load_weights(model, path, device)
