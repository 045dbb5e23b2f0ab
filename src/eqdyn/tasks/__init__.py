"""The three molecular tasks of the paper, behind one :class:`~eqdyn.tasks.base.Task` interface."""

from __future__ import annotations

from typing import Any

from eqdyn.tasks.base import Example, GeneratorNoise, KeyedNoise, NoiseSource, Output, Task
from eqdyn.tasks.flow_matching import FlowMatchingTask
from eqdyn.tasks.force_field import ForceFieldTask
from eqdyn.tasks.voxel_denoising import VoxelDenoisingTask

TASKS: dict[str, type[Task]] = {
    FlowMatchingTask.name: FlowMatchingTask,
    ForceFieldTask.name: ForceFieldTask,
    VoxelDenoisingTask.name: VoxelDenoisingTask,
}


def build_task(name: str, **settings: Any) -> Task:
    """A task by name with its settings (``prior_sigma``, ``energy_weight``, ``grid_size``, ...)."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name](**settings)


__all__ = [
    "TASKS",
    "Example",
    "FlowMatchingTask",
    "ForceFieldTask",
    "GeneratorNoise",
    "KeyedNoise",
    "NoiseSource",
    "Output",
    "Task",
    "VoxelDenoisingTask",
    "build_task",
]
