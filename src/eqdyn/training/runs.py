"""Fan the study config out into training runs: one base run per (task, model) plus one-factor-at-a-time sweeps.

No torch, so the Snakefile calls it at parse time. Each run becomes one JSON file, the single input that holds its
hyperparameters: editing one run's settings reruns only that run and what depends on it.

:func:`resolve_runs` checks what the schema cannot: task, model family and size against the registries' names
(:mod:`eqdyn.run_config`), and each run's ``training`` overrides (and sweep values) against the schema's own
``training`` section, so ``steps: -1`` in one run stops the dry run as it does in the top-level section. Every
problem names its config key (``runs.base[3].model: 'painnn' is not one of [...]``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import jsonschema

from eqdyn.config import load_schema
from eqdyn.run_config import (
    MODEL_SIZES,
    SWEEP_FACTORS,
    RunConfig,
    RunConfigError,
    choice_problem,
    model_problems,
)

# Chemical symbols of the elements a dataset may hold, to turn data.elements into voxel channels.
ATOMIC_NUMBERS = {"H": 1, "B": 5, "C": 6, "N": 7, "O": 8, "F": 9, "P": 15, "S": 16, "Cl": 17, "Br": 35, "I": 53}

__all__ = ["ATOMIC_NUMBERS", "SWEEP_FACTORS", "checkpoint_steps", "resolve_runs", "run_problems", "task_settings"]


def checkpoint_steps(total_steps: int, per_decade: int) -> list[int]:
    """Step 0, log-spaced steps with ``per_decade`` per factor of ten (dense around 1k-10k), and the last step."""
    steps = {0, total_steps}
    decades = math.log10(total_steps) if total_steps > 1 else 0.0
    count = max(1, math.ceil(decades * per_decade))
    for i in range(count + 1):
        steps.add(round(10 ** (decades * i / count)))
    return sorted(step for step in steps if 0 <= step <= total_steps)


def task_settings(config: Mapping[str, Any], task: str) -> dict[str, Any]:
    """The constructor settings of a task, from the config sections that define it."""
    if task == "voxel_denoising":
        voxel = config["data"]["voxel"]
        try:
            elements = [ATOMIC_NUMBERS[symbol] for symbol in config["data"]["elements"]]
        except KeyError as error:
            raise KeyError(f"data.elements: no atomic number known for {error.args[0]!r}") from None
        return {
            "elements": elements,
            "grid_size": voxel["grid_size"],
            "resolution": voxel["resolution_angstrom"],
            "atom_sigma": voxel["atom_sigma_angstrom"],
            "noise_sigma": voxel["noise_sigma"],
        }
    return dict(config["tasks"][task])


def base_name(task: str, model: str) -> str:
    return f"{task}-{model}"


def resolve_runs(
    config: Mapping[str, Any], schema: Mapping[str, Any] | None = None, source: str = "config"
) -> dict[str, RunConfig]:
    """All runs of the study, by name: ``<task>-<model>`` for base runs, ``<base>--<factor>-<value>`` for sweeps.

    ``config`` has its defaults filled (:func:`eqdyn.config.validate_config`); ``schema`` is the config schema (the
    package's by default). Raises :class:`~eqdyn.run_config.RunConfigError` listing every problem by config key.
    """
    problems = run_problems(config, load_schema() if schema is None else schema)
    if problems:
        raise RunConfigError(problems, source=source)
    runs: dict[str, RunConfig] = {}
    bases = {}
    for entry in config["runs"]["base"]:
        name = base_name(entry["task"], entry["model"])
        bases[name] = entry
        runs[name] = _run_config(config, name, entry, sweep=None)
    for name in config["runs"]["sweep_around"]:
        sweeps = run_sweeps(config, bases[name])
        for factor in SWEEP_FACTORS:
            for value in sweeps[factor]:
                sweep_name = f"{name}--{factor}-{value}"
                run = _run_config(config, sweep_name, bases[name], sweep={"factor": factor, "value": value})
                if _same_settings(run, runs[name]):
                    continue  # the sweep value equals the base value: that run already exists
                runs[sweep_name] = run
    return runs


def run_problems(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Every reason the runs of ``config`` cannot be trained, each naming its config key; empty when they can."""
    properties = schema["properties"]
    training_schema = properties["training"]["properties"]
    override_schema = properties["runs"]["properties"]["base"]["items"]["properties"]["training"]
    # the keys a run may override, each checked by the top-level training section's schema of that key
    overridable = {key: training_schema[key] for key in override_schema["propertyNames"]["enum"]}
    problems = setting_problems(config["training"], training_schema, "training")
    bases: dict[str, int] = {}
    for index, entry in enumerate(config["runs"]["base"]):
        path = f"runs.base[{index}]"
        task, family = entry.get("task"), entry.get("model")
        model_paths = (f"{path}.task", f"{path}.model", f"{path}.size")
        problems += model_problems(task, family, entry.get("size", "s"), model_paths)
        problems += setting_problems(entry.get("training", {}), overridable, f"{path}.training")
        name = base_name(str(task), str(family))
        if name in bases:
            problems.append(f"{path}: {name} listed twice (also runs.base[{bases[name]}])")
        bases.setdefault(name, index)
    # the study's sweeps, and a base run's own where it lists them
    sweep_lists = [("runs.sweeps", config["runs"]["sweeps"])] + [
        (f"runs.base[{index}].sweeps", entry["sweeps"])
        for index, entry in enumerate(config["runs"]["base"])
        if "sweeps" in entry
    ]
    for index, name in enumerate(config["runs"]["sweep_around"]):
        path = f"runs.sweep_around[{index}]"
        if name not in bases:
            problems.append(f"{path}: {name!r} is not a base run (known: {sorted(bases)})")
            continue
        entry = config["runs"]["base"][bases[name]]
        sweeps_path = f"runs.base[{bases[name]}].sweeps" if "sweeps" in entry else "runs.sweeps"
        sizes = MODEL_SIZES.get(entry["task"], {}).get(entry["model"], ())
        for size_index, size in enumerate(run_sweeps(config, entry)["size"] if sizes else ()):
            what = f"sizes of {entry['task']}/{entry['model']}, swept by {path}"
            problem = choice_problem(size, sizes, f"{sweeps_path}.size[{size_index}]", what)
            problems += [problem] if problem else []
    for sweeps_path, sweeps in sweep_lists:
        for factor in ("num_train_molecules", "optimizer"):  # the sweep factors that are training settings
            for index, value in enumerate(sweeps.get(factor, [])):
                problems += value_problems(value, training_schema[factor], f"{sweeps_path}.{factor}[{index}]")
        for index, value in enumerate(sweeps.get("seed", [])):
            problems += value_problems(value, properties["seed"], f"{sweeps_path}.seed[{index}]")
    return problems


def run_sweeps(config: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The one-factor sweeps around a base run: its own ``sweeps`` when it lists them (replacing the study's
    ``runs.sweeps`` as a whole), else the study's."""
    own = entry.get("sweeps")
    sweeps = config["runs"]["sweeps"] if own is None else own
    return {factor: list(sweeps.get(factor, [])) for factor in SWEEP_FACTORS}


def setting_problems(settings: Any, schemas: Mapping[str, Any], path: str) -> list[str]:
    """Problems of a mapping of settings, each value checked against the schema of its key."""
    if not isinstance(settings, Mapping):
        return [f"{path}: expected a mapping of settings, got {settings!r}"]
    problems = []
    for key, value in settings.items():
        if key not in schemas:
            problems.append(f"{path}.{key}: not a setting that can be set here (known: {sorted(schemas)})")
        else:
            problems += value_problems(value, schemas[key], f"{path}.{key}")
    return problems


def value_problems(value: Any, schema: Mapping[str, Any], path: str) -> list[str]:
    """Problems of one value against its (default-free) JSON schema, worded as the config's validation words them."""
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path))):
        inner = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
        problems.append(f"{path}{inner}: {error.message}")
    return problems


def _same_settings(a: RunConfig, b: RunConfig) -> bool:
    strip = ("name", "sweep", "base_run")
    first, second = a.to_dict(), b.to_dict()
    return {k: v for k, v in first.items() if k not in strip} == {k: v for k, v in second.items() if k not in strip}


def _run_config(
    config: Mapping[str, Any], name: str, entry: Mapping[str, Any], sweep: dict[str, Any] | None
) -> RunConfig:
    training = copy.deepcopy(dict(config["training"]))
    overrides_of_run = dict(entry.get("training", {}))
    # a run's learning_rates merge into the defaults (rates of the optimizers it does not name stay)
    learning_rates = {**training.pop("learning_rates"), **overrides_of_run.pop("learning_rates", {})}
    training.update(overrides_of_run)
    per_decade = training.pop("checkpoints_per_decade")
    size = entry.get("size", "s")
    seed = config["seed"]
    if sweep is not None:
        factor, value = sweep["factor"], sweep["value"]
        if factor == "size":
            size = value
        elif factor == "seed":
            seed = value
        else:
            training[factor] = value
    training["learning_rate"] = learning_rates[training["optimizer"]]
    training["seed"] = seed
    overrides: dict[str, Any] = {}
    settings = task_settings(config, entry["task"])
    if entry["task"] == "voxel_denoising":
        overrides["channels"] = len(settings["elements"])
    return RunConfig.from_dict(
        {
            "name": name,
            "base_run": base_name(entry["task"], entry["model"]),
            "sweep": sweep,
            "task": entry["task"],
            "task_settings": settings,
            "model": {"family": entry["model"], "size": size, "overrides": overrides},
            "training": training,
            "checkpoint_steps": checkpoint_steps(training["steps"], per_decade),
        },
        source=f"run {name}",
    )
