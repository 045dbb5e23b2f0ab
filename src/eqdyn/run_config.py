"""One training run's configuration, typed: the content of ``runs/<name>/run.json`` as frozen dataclasses.

Standard library only (no torch), so the Snakefile builds and checks every run while it parses: an unknown task,
model family, size or optimizer stops ``snakemake -n`` naming the config key, not the training job. The names are
listed here (:data:`TASK_NAMES`, :data:`MODEL_SIZES`, :data:`OPTIMIZER_NAMES`) because the real registries
(:data:`eqdyn.tasks.TASKS`, :data:`eqdyn.models.FAMILY_SPECS`, :data:`eqdyn.training.train.OPTIMIZERS`) import
torch; ``tests/training/test_run_config.py`` asserts that the two agree, so they cannot drift apart.

:meth:`RunConfig.from_dict` and :meth:`RunConfig.to_dict` convert to and from the run.json layout, key for key
(``to_dict(from_dict(d)) == d`` for every run.json the workflow writes), so manifests, bundles and figure code
that read run.json as JSON are unaffected.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TASK_NAMES: tuple[str, ...] = ("flow_matching", "force_field", "voxel_denoising")

_TRANSFORMER_SIZES = ("xxs", "xs", "s", "ms", "m", "l", "xl")
_LADDER_SIZES = ("xs", "s", "m", "l")
# task -> model family -> size presets, in the registry's order
MODEL_SIZES: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "flow_matching": {"transformer": _TRANSFORMER_SIZES, "egnn": _LADDER_SIZES, "egnn_e3": _LADDER_SIZES},
    "force_field": {
        "transformer": _TRANSFORMER_SIZES,
        "painn": _LADDER_SIZES,
        "nequip": _LADDER_SIZES,
        "escaip_like": _LADDER_SIZES,
        "relative_transformer": _TRANSFORMER_SIZES,
    },
    "voxel_denoising": {"unet3d": _LADDER_SIZES, "octahedral_unet": _LADDER_SIZES, "twirled_unet3d": _LADDER_SIZES},
}
OPTIMIZER_NAMES: tuple[str, ...] = ("adam", "adamw", "sgd")
SWEEP_FACTORS: tuple[str, ...] = ("size", "num_train_molecules", "optimizer", "seed")


class RunConfigError(ValueError):
    """A run configuration that cannot be trained; each line of the message names the key (its config path)."""

    def __init__(self, problems: Iterable[str], source: str = "run config") -> None:
        self.problems = list(problems)
        super().__init__(f"{source}: invalid run configuration\n" + "\n".join(f"  {p}" for p in self.problems))


def choice_problem(value: Any, choices: Iterable[str], path: str, what: str = "") -> str | None:
    """``"<path>: 'x' is not one of [...]"`` when ``value`` is not a choice (the wording of the schema's enums)."""
    options = list(choices)
    if value in options:
        return None
    return f"{path}: {value!r} is not one of {options}" + (f" ({what})" if what else "")


def model_problems(task: Any, family: Any, size: Any, paths: tuple[str, str, str]) -> list[str]:
    """What is wrong with a (task, family, size) triple, against the registries' names; ``paths`` name the three
    keys in the message."""
    task_path, family_path, size_path = paths
    problem = choice_problem(task, TASK_NAMES, task_path)
    if problem:
        return [problem]
    families = MODEL_SIZES[task]
    problem = choice_problem(family, families, family_path, f"model families of {task}")
    if problem:
        return [problem]
    problem = choice_problem(size, families[family], size_path, f"sizes of {task}/{family}")
    return [problem] if problem else []


def _fields_from(cls: type, data: Any, path: str) -> dict[str, Any]:
    """The keyword arguments of dataclass ``cls`` from a mapping: unknown and missing keys raise, naming the path."""
    if not isinstance(data, Mapping):
        raise RunConfigError([f"{path}: expected a mapping, got {type(data).__name__}"])
    fields = {f.name: f for f in dataclasses.fields(cls)}
    problems = [f"{path}.{key}: unknown key (known: {sorted(fields)})" for key in data if key not in fields]
    required = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    problems += [f"{path}.{name}: missing" for name in required if name not in data]
    if problems:
        raise RunConfigError(problems)
    return {key: copy.deepcopy(value) for key, value in data.items()}


@dataclass(frozen=True)
class ModelSpec:
    """Which model: family and size preset of the task's registry, and constructor arguments replacing the preset's
    (``channels`` of the voxel models, from ``data.elements``)."""

    family: str
    size: str
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "model") -> ModelSpec:
        return cls(**_fields_from(cls, data, path))

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "size": self.size, "overrides": copy.deepcopy(dict(self.overrides))}


@dataclass(frozen=True)
class SweepSpec:
    """The one factor a sweep run changes from its base run, and its value."""

    factor: str
    value: Any

    def __post_init__(self) -> None:
        problem = choice_problem(self.factor, SWEEP_FACTORS, "sweep.factor")
        if problem:
            raise RunConfigError([problem])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "sweep") -> SweepSpec:
        return cls(**_fields_from(cls, data, path))

    def to_dict(self) -> dict[str, Any]:
        return {"factor": self.factor, "value": copy.deepcopy(self.value)}


@dataclass(frozen=True)
class TrainingSettings:
    """The resolved ``training`` settings of one run (the config's ``training`` section with the run's overrides and
    sweep applied; ``learning_rate`` picked for the optimizer, ``seed`` the run's). Types and ranges are those of
    the schema's ``training`` section, checked when runs are resolved (:func:`eqdyn.training.runs.resolve_runs`)."""

    steps: int
    batch_size: int
    optimizer: str
    learning_rate: float
    weight_decay: float
    momentum: float
    schedule: str
    warmup_steps: int
    grad_clip: float | None
    ema_decay: float | None
    augment: bool
    num_train_molecules: int | None
    precision: str
    device: str
    threads: int
    log_every: int
    state_every: int
    seed: int
    # absent from run.json files written before these settings existed
    compile: bool = False
    processes: int = 1

    def __post_init__(self) -> None:
        problem = choice_problem(self.optimizer, OPTIMIZER_NAMES, "training.optimizer")
        if problem:
            raise RunConfigError([problem])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "training") -> TrainingSettings:
        return cls(**_fields_from(cls, data, path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunConfig:
    """One training run: its name, the task and model, the training settings and the checkpoint schedule."""

    name: str
    base_run: str
    sweep: SweepSpec | None
    task: str
    task_settings: Mapping[str, Any]
    model: ModelSpec
    training: TrainingSettings
    checkpoint_steps: tuple[int, ...]

    def __post_init__(self) -> None:
        problems = model_problems(self.task, self.model.family, self.model.size, ("task", "model.family", "model.size"))
        if problems:
            raise RunConfigError(problems, source=f"run {self.name}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "run config") -> RunConfig:
        """A run from its run.json content; unknown or missing keys and unknown names raise naming the key."""
        try:
            values = _fields_from(cls, data, "run")
            sweep = values["sweep"]
            return cls(
                name=values["name"],
                base_run=values["base_run"],
                sweep=None if sweep is None else SweepSpec.from_dict(sweep),
                task=values["task"],
                task_settings=values["task_settings"],
                model=ModelSpec.from_dict(values["model"]),
                training=TrainingSettings.from_dict(values["training"]),
                checkpoint_steps=tuple(values["checkpoint_steps"]),
            )
        except RunConfigError as error:
            raise RunConfigError(error.problems, source=source) from None

    def to_dict(self) -> dict[str, Any]:
        """The run.json content (plain JSON types, fresh copies)."""
        return {
            "name": self.name,
            "base_run": self.base_run,
            "sweep": None if self.sweep is None else self.sweep.to_dict(),
            "task": self.task,
            "task_settings": copy.deepcopy(dict(self.task_settings)),
            "model": self.model.to_dict(),
            "training": self.training.to_dict(),
            "checkpoint_steps": list(self.checkpoint_steps),
        }

    def with_training(self, **changes: Any) -> RunConfig:
        """A copy with some training settings changed (checked as on construction)."""
        return dataclasses.replace(self, training=dataclasses.replace(self.training, **changes))


def as_run_config(run: RunConfig | Mapping[str, Any]) -> RunConfig:
    """``run`` itself, or the run a run.json mapping describes."""
    return run if isinstance(run, RunConfig) else RunConfig.from_dict(run)
