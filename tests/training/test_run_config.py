"""The typed run configuration: its torch-free names agree with the registries, it round-trips run.json, and a
misspelled name or a bad per-run training override stops the runs' resolution (and the dry run) naming its key."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from eqdyn import run_config
from eqdyn.config import deep_merge, load_schema, validate_config
from eqdyn.models import FAMILY_SPECS
from eqdyn.models import TASKS as MODEL_TASKS
from eqdyn.run_config import (
    MODEL_SIZES,
    OPTIMIZER_NAMES,
    TASK_NAMES,
    ModelSpec,
    RunConfig,
    RunConfigError,
    TrainingSettings,
)
from eqdyn.tasks import TASKS
from eqdyn.testing import copy_workflow, snakemake_executable
from eqdyn.training.runs import resolve_runs
from eqdyn.training.train import OPTIMIZERS, make_optimizer

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_JSON_KEYS = {"name", "base_run", "sweep", "task", "task_settings", "model", "training", "checkpoint_steps"}


def study_config(*overlays: str) -> dict[str, Any]:
    """config/config.yaml with the named config files applied on top (as --configfile does), defaults filled."""
    raw = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    for overlay in overlays:
        raw = deep_merge(raw, yaml.safe_load((REPO_ROOT / "config" / overlay).read_text()))
    return validate_config(raw)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return study_config()


# -- the torch-free names are the registries' names ------------------------------------------------------------
def test_names_equal_the_registries_and_the_schema() -> None:
    assert TASK_NAMES == tuple(TASKS) == tuple(MODEL_TASKS)
    registry_sizes: dict[str, dict[str, tuple[str, ...]]] = {}
    for (task, family), spec in FAMILY_SPECS.items():
        registry_sizes.setdefault(task, {})[family] = tuple(spec.presets)
    assert {task: dict(families) for task, families in MODEL_SIZES.items()} == registry_sizes
    assert OPTIMIZER_NAMES == tuple(OPTIMIZERS)
    schema = load_schema()["properties"]
    training = schema["training"]["properties"]
    assert tuple(training["optimizer"]["enum"]) == OPTIMIZER_NAMES
    assert tuple(training["learning_rates"]["properties"]) == OPTIMIZER_NAMES
    assert tuple(schema["runs"]["properties"]["sweeps"]["properties"]["optimizer"]["items"]["enum"]) == OPTIMIZER_NAMES
    assert tuple(schema["runs"]["properties"]["base"]["items"]["properties"]["task"]["enum"]) == TASK_NAMES
    # every per-run override is a key of the training section, whose schema checks it
    overridable = schema["runs"]["properties"]["base"]["items"]["properties"]["training"]["propertyNames"]["enum"]
    assert set(overridable) <= set(training)
    # and every training setting a run carries is a field of TrainingSettings, or derived into one
    derived = {"learning_rates": "learning_rate", "checkpoints_per_decade": None}
    fields = set(TrainingSettings.__dataclass_fields__)
    assert {derived.get(key, key) for key in training} - {None} | {"seed"} == fields


def test_every_optimizer_name_builds_its_optimizer(config: dict[str, Any]) -> None:
    settings = resolve_runs(config)["flow_matching-transformer"].training
    model = torch.nn.Linear(2, 2)
    built = {
        name: make_optimizer(model, dataclasses.replace(settings, optimizer=name, momentum=0.5))
        for name in OPTIMIZER_NAMES
    }
    assert {name: type(optimizer) for name, optimizer in built.items()} == {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "sgd": torch.optim.SGD,
    }
    assert built["sgd"].defaults["momentum"] == 0.5 and built["adam"].defaults["lr"] == settings.learning_rate


# -- run.json round trip ----------------------------------------------------------------------------------------
# every committed study: the default alone, and each other config file applied on top of it
OVERLAYS = [()] + [(path.name,) for path in sorted((REPO_ROOT / "config").glob("*.yaml")) if path.name != "config.yaml"]


@pytest.mark.parametrize("overlays", OVERLAYS)
def test_runs_round_trip_the_run_json_layout(overlays: tuple[str, ...]) -> None:
    runs = resolve_runs(study_config(*overlays))
    assert runs
    for name, run in runs.items():
        assert isinstance(run, RunConfig) and run.name == name
        data = run.to_dict()
        assert set(data) == RUN_JSON_KEYS and set(data["model"]) == {"family", "size", "overrides"}
        text = json.dumps(data, sort_keys=True)
        assert RunConfig.from_dict(json.loads(text)) == run
        assert json.dumps(RunConfig.from_dict(json.loads(text)).to_dict(), sort_keys=True) == text


def test_resolved_values_are_the_configs(config: dict[str, Any]) -> None:
    runs = resolve_runs(config)
    base = runs["flow_matching-transformer"]
    assert base.sweep is None and base.model == ModelSpec("transformer", "s", {})
    assert base.training.steps == config["training"]["steps"] and base.training.seed == config["seed"]
    # a base run's own learning_rates (its sweep's picks) merge into the defaults, and its sweeps inherit them
    rates = {**config["training"]["learning_rates"], **config["runs"]["base"][0]["training"].get("learning_rates", {})}
    assert base.training.learning_rate == rates[base.training.optimizer]
    sgd = runs["flow_matching-transformer--optimizer-sgd"]
    assert sgd.sweep is not None and (sgd.sweep.factor, sgd.sweep.value) == ("optimizer", "sgd")
    assert sgd.training.learning_rate == rates["sgd"]
    voxel = runs["voxel_denoising-unet3d"]
    assert voxel.training.batch_size == 8 and voxel.model.overrides == {"channels": len(config["data"]["elements"])}


def test_run_json_with_a_missing_unknown_or_misspelled_key_is_refused(config: dict[str, Any]) -> None:
    data = resolve_runs(config)["force_field-painn"].to_dict()
    missing = copy.deepcopy(data)
    del missing["training"]["steps"]
    with pytest.raises(RunConfigError, match=r"run.json: invalid run configuration\n  training.steps: missing"):
        RunConfig.from_dict(missing, source="run.json")
    unknown = copy.deepcopy(data)
    unknown["training"]["stpes"] = 10
    with pytest.raises(RunConfigError, match=r"training.stpes: unknown key"):
        RunConfig.from_dict(unknown)
    misspelled = copy.deepcopy(data)
    misspelled["model"]["family"] = "painnn"
    with pytest.raises(RunConfigError, match=r"model.family: 'painnn' is not one of \['transformer', 'painn', 'nequ"):
        RunConfig.from_dict(misspelled)
    optimizer = copy.deepcopy(data)
    optimizer["training"]["optimizer"] = "lbfgs"
    with pytest.raises(RunConfigError, match=r"training.optimizer: 'lbfgs' is not one of"):
        RunConfig.from_dict(optimizer)
    with pytest.raises(RunConfigError, match=r"training.optimizer: 'lbfgs'"):
        resolve_runs(config)["force_field-painn"].with_training(optimizer="lbfgs")


def test_a_run_config_is_immutable(config: dict[str, Any]) -> None:
    run = resolve_runs(config)["flow_matching-transformer"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.training.steps = 5  # type: ignore[misc]
    assert run.with_training(steps=5).training.steps == 5 and run.training.steps == config["training"]["steps"]


# -- resolution checks each key, naming its config path ---------------------------------------------------------
BAD_ENTRIES = [
    (
        {"model": "painnn"},
        "runs.base[3].model: 'painnn' is not one of "
        "['transformer', 'painn', 'nequip', 'escaip_like', 'relative_transformer']",
    ),
    ({"size": "xxl"}, "runs.base[3].size: 'xxl' is not one of ['xs', 's', 'm', 'l'] (sizes of force_field/painn)"),
    ({"task": "denoising"}, "runs.base[3].task: 'denoising' is not one of"),
    ({"training": {"steps": -1}}, "runs.base[3].training.steps: -1 is less than the minimum of 1"),
    ({"training": {"steps": "ten"}}, "runs.base[3].training.steps: 'ten' is not of type 'integer'"),
    ({"training": {"batch_size": 0}}, "runs.base[3].training.batch_size: 0 is less than the minimum of 1"),
    ({"training": {"optimizer": "lbfgs"}}, "runs.base[3].training.optimizer: 'lbfgs' is not one of ['adam', 'adamw'"),
    ({"training": {"ema_decay": 2}}, "runs.base[3].training.ema_decay: 2 is greater than the maximum of 1"),
    ({"training": {"learning_rates": {"adamm": 1}}}, "runs.base[3].training.learning_rates: Additional properties"),
    ({"training": {"learning_rates": {"adam": 0}}}, "runs.base[3].training.learning_rates.adam: 0 is less than or"),
]


@pytest.mark.parametrize(("change", "message"), BAD_ENTRIES)
def test_a_bad_run_entry_stops_resolution_naming_its_key(config: dict[str, Any], change: dict, message: str) -> None:
    assert config["runs"]["base"][3]["model"] == "painn"
    bad = copy.deepcopy(config)
    bad["runs"]["base"][3].update(change)
    with pytest.raises(RunConfigError) as raised:
        resolve_runs(bad, source="my.yaml")
    assert str(raised.value).startswith("my.yaml: invalid run configuration\n")
    assert any(problem.startswith(message) for problem in raised.value.problems), raised.value.problems


def test_sweeps_and_top_level_settings_are_checked_too(config: dict[str, Any]) -> None:
    bad = copy.deepcopy(config)
    bad["training"]["steps"] = 0
    bad["runs"]["sweep_around"] = ["flow_matching-egnn", "flow_matching-transfromer"]
    bad["runs"]["sweeps"] = {"size": ["xl"], "num_train_molecules": [0], "optimizer": ["lbfgs"], "seed": [-1]}
    bad["runs"]["base"].append(dict(bad["runs"]["base"][0]))
    with pytest.raises(RunConfigError) as raised:
        resolve_runs(bad)
    assert raised.value.problems == [
        "training.steps: 0 is less than the minimum of 1",
        f"runs.base[{len(config['runs']['base'])}]: flow_matching-transformer listed twice (also runs.base[0])",
        "runs.sweeps.size[0]: 'xl' is not one of ['xs', 's', 'm', 'l'] (sizes of flow_matching/egnn, swept by "
        "runs.sweep_around[0])",
        "runs.sweep_around[1]: 'flow_matching-transfromer' is not a base run (known: ['flow_matching-egnn', "
        "'flow_matching-transformer', 'force_field-painn', 'force_field-relative_transformer', "
        "'force_field-transformer', 'voxel_denoising-octahedral_unet', 'voxel_denoising-unet3d'])",
        "runs.sweeps.num_train_molecules[0]: 0 is less than the minimum of 1",
        "runs.sweeps.optimizer[0]: 'lbfgs' is not one of ['adam', 'adamw', 'sgd']",
        "runs.sweeps.seed[0]: -1 is less than the minimum of 0",
    ]


def test_the_module_names_no_torch() -> None:
    """The Snakefile imports eqdyn.run_config and eqdyn.training.runs while parsing: neither may pull in torch."""
    code = "import sys, eqdyn.run_config, eqdyn.training.runs; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert run_config.__name__ == "eqdyn.run_config"


# -- the dry run stops, naming each key --------------------------------------------------------------------------
def test_dry_run_stops_on_misspelled_names_and_bad_overrides(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path)
    entries = [
        {"task": "flow_matching", "model": "transformer", "size": "xs", "training": {"steps": -1}},
        {"task": "flow_matching", "model": "egnn", "size": "xs", "training": {"steps": "ten"}},
        {"task": "force_field", "model": "transformer", "size": "xs", "training": {"batch_size": 0}},
        {"task": "force_field", "model": "painnn", "size": "xs"},
        {"task": "voxel_denoising", "model": "unet3d", "size": "xxl", "training": {"optimizer": "lbfgs"}},
    ]
    (workdir / "bad.yaml").write_text(yaml.safe_dump({"runs": {"base": entries, "sweep_around": []}}))
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}
    command = [snakemake_executable(), "--configfile", "config/test.yaml", "bad.yaml", "-n", "--cores", "1"]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300, env=env)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    for line in (
        "runs.base[0].training.steps: -1 is less than the minimum of 1",
        "runs.base[1].training.steps: 'ten' is not of type 'integer'",
        "runs.base[2].training.batch_size: 0 is less than the minimum of 1",
        "runs.base[3].model: 'painnn' is not one of "
        "['transformer', 'painn', 'nequip', 'escaip_like', 'relative_transformer'] (model families of force_field)",
        "runs.base[4].size: 'xxl' is not one of ['xs', 's', 'm', 'l'] (sizes of voxel_denoising/unet3d)",
        "runs.base[4].training.optimizer: 'lbfgs' is not one of ['adam', 'adamw', 'sgd']",
    ):
        assert line in output, output[-3000:]
    assert not (workdir / "results" / "test" / "runs").exists()  # no run.json was written


def test_a_run_may_set_its_own_learning_rate_which_its_sweeps_inherit(config: dict[str, Any]) -> None:
    tuned = copy.deepcopy(config)
    tuned["runs"]["base"][0]["training"] = {"learning_rates": {"adam": 3e-4}}  # the flow-matching transformer
    runs = resolve_runs(tuned)
    assert runs["flow_matching-transformer"].training.learning_rate == 3e-4
    # the optimizer sweep of that run uses the default rate of the optimizer it did not override
    assert (
        runs["flow_matching-transformer--optimizer-sgd"].training.learning_rate
        == config["training"]["learning_rates"]["sgd"]
    )
    # another run keeps its own
    assert runs["force_field-transformer"] == resolve_runs(config)["force_field-transformer"]


def test_a_base_run_may_list_its_own_sweeps_instead_of_the_studys(config: dict[str, Any]) -> None:
    own = copy.deepcopy(config)
    own["runs"]["sweep_around"] = ["flow_matching-transformer", "voxel_denoising-unet3d"]
    own["runs"]["sweeps"] = {"size": ["xs"], "num_train_molecules": [], "optimizer": ["sgd"], "seed": [1, 2]}
    voxel = next(i for i, e in enumerate(own["runs"]["base"]) if e["task"] == "voxel_denoising")
    own["runs"]["base"][voxel]["sweeps"] = {"seed": [1]}
    names = set(resolve_runs(validate_config(own)))
    assert {"flow_matching-transformer--size-xs", "flow_matching-transformer--seed-2"} <= names
    assert {n for n in names if n.startswith("voxel_denoising-unet3d--")} == {"voxel_denoising-unet3d--seed-1"}
    # its lists are checked like the study's, by their own key (here past the schema, as resolve_runs may be)
    own["runs"]["base"][voxel]["sweeps"] = {"size": ["xxl"], "seed": [-1]}
    with pytest.raises(RunConfigError) as raised:
        resolve_runs(own)
    assert f"runs.base[{voxel}].sweeps.size[0]: 'xxl' is not one of" in "\n".join(raised.value.problems)
    assert f"runs.base[{voxel}].sweeps.seed[0]: -1 is less than the minimum of 0" in raised.value.problems
