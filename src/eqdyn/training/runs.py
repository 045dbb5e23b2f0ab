"""Fan the study config out into training runs: one base run per (task, model) plus one-factor-at-a-time sweeps.

Pure Python (no torch), so the Snakefile can call it at parse time. Each run becomes one JSON file, the single input
that holds its hyperparameters: editing one run's settings reruns only that run and what depends on it.
"""

from __future__ import annotations

import copy
import math
from typing import Any

# Chemical symbols of the elements a dataset may hold, to turn data.elements into voxel channels.
ATOMIC_NUMBERS = {"H": 1, "B": 5, "C": 6, "N": 7, "O": 8, "F": 9, "P": 15, "S": 16, "Cl": 17, "Br": 35, "I": 53}

# Sweep factors and where each lives in a run config.
SWEEP_FACTORS = ("size", "num_train_molecules", "optimizer", "seed")


def checkpoint_steps(total_steps: int, per_decade: int) -> list[int]:
    """Step 0, log-spaced steps with ``per_decade`` per factor of ten (dense around 1k-10k), and the last step."""
    steps = {0, total_steps}
    decades = math.log10(total_steps) if total_steps > 1 else 0.0
    count = max(1, math.ceil(decades * per_decade))
    for i in range(count + 1):
        steps.add(round(10 ** (decades * i / count)))
    return sorted(step for step in steps if 0 <= step <= total_steps)


def task_settings(config: dict[str, Any], task: str) -> dict[str, Any]:
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


def resolve_runs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """All runs of the study, by name: ``<task>-<model>`` for base runs, ``<base>--<factor>-<value>`` for sweeps."""
    runs: dict[str, dict[str, Any]] = {}
    bases = {}
    for entry in config["runs"]["base"]:
        name = base_name(entry["task"], entry["model"])
        if name in bases:
            raise ValueError(f"runs.base: {name} listed twice")
        bases[name] = entry
        runs[name] = _run_config(config, name, entry, sweep=None)
    for name in config["runs"]["sweep_around"]:
        if name not in bases:
            raise ValueError(f"runs.sweep_around: {name!r} is not a base run (known: {sorted(bases)})")
        for factor in SWEEP_FACTORS:
            for value in config["runs"]["sweeps"][factor]:
                sweep_name = f"{name}--{factor}-{value}"
                run = _run_config(config, sweep_name, bases[name], sweep={"factor": factor, "value": value})
                if _same_settings(run, runs[name]):
                    continue  # the sweep value equals the base value: that run already exists
                runs[sweep_name] = run
    return runs


def _same_settings(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = ("name", "sweep", "base_run")
    return {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}


def _run_config(config: dict[str, Any], name: str, entry: dict[str, Any], sweep: dict[str, Any] | None) -> dict:
    training = copy.deepcopy(config["training"])
    training.update(entry.get("training", {}))
    learning_rates = training.pop("learning_rates")
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
    return {
        "name": name,
        "base_run": base_name(entry["task"], entry["model"]),
        "sweep": sweep,
        "task": entry["task"],
        "task_settings": settings,
        "model": {"family": entry["model"], "size": size, "overrides": overrides},
        "training": training,
        "checkpoint_steps": checkpoint_steps(training["steps"], per_decade),
    }
