"""Example models for ``python -m eqdyn.decompose --model eqdyn.examples.models:build``: a factory called with
the task, as a user's own ``module:callable`` may be."""

from __future__ import annotations

import torch
from torch import nn

from eqdyn.models import build_model
from eqdyn.tasks import Task


def build(task: Task) -> nn.Module:
    """A small, freshly initialised (seeded) unconstrained model of ``task``: the transformer for point clouds, the
    plain 3D U-Net for voxel grids (one input channel per element of the task)."""
    torch.manual_seed(0)
    if task.name == "voxel_denoising":
        return build_model(task.name, "unet3d", "xs", channels=len(task.elements))  # type: ignore[attr-defined]
    return build_model(task.name, "transformer", "xs")
