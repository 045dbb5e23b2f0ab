# Training: one job per run. Runs are fanned out from config by eqdyn.training.runs (pure Python); each run's
# resolved hyperparameters are a JSON file that is the job's input, so editing one run reruns only that run.
import re

from eqdyn.run_config import RunConfigError
from eqdyn.training.runs import resolve_runs, task_settings

# Typed and checked here, at parse time: an unknown task, model, size or optimizer, or a bad per-run training
# override, stops the dry run naming its config key (runs.base[3].model: ...).
try:
    RUN_CONFIGS = resolve_runs(config, source="snakemake config")
except RunConfigError as error:
    raise WorkflowError(str(error)) from None
RUNS = {_name: _run.to_dict() for _name, _run in RUN_CONFIGS.items()}  # the run.json contents
for _name, _run in RUNS.items():
    write_if_changed(f"{RESULTS}/runs/{_name}/run.json", _run)

TASK_NAMES = sorted({run["task"] for run in RUNS.values()})
EVALUATION_SEED = config["evaluation"]["seed"] if config["evaluation"]["seed"] is not None else config["seed"]
for _task in TASK_NAMES:
    write_if_changed(f"{RESULTS}/evaluation/{_task}/task.json", task_settings(config, _task))

# what a training job runs: the trainer and the package modules it imports (models, tasks, ...), transitively
TRAINING_CODE = code_inputs("eqdyn.training.train")


wildcard_constraints:
    run="|".join(re.escape(name) for name in RUNS) or "NO_RUNS",
    task="|".join(TASK_NAMES) or "NO_TASKS",


rule train:
    input:
        run=f"{RESULTS}/runs/{{run}}/run.json",
        train=lambda wc: f"{RESULTS}/datasets/{RUNS[wc.run]['task']}/train.npz",
        code=TRAINING_CODE,
    output:
        manifest=f"{RESULTS}/runs/{{run}}/manifest.json",
        metrics=f"{RESULTS}/runs/{{run}}/metrics.csv",
        checkpoints=directory(f"{RESULTS}/runs/{{run}}/checkpoints"),
    benchmark:
        f"{RESULTS}/benchmarks/train/{{run}}.tsv",
    log:
        f"{RESULTS}/logs/train/{{run}}.log",
    threads: lambda wc: RUNS[wc.run]["training"]["threads"] * RUNS[wc.run]["training"]["processes"]
    resources:
        gpu=lambda wc: RUNS[wc.run]["training"]["processes"],
    params:
        # several processes: torchrun (torch.distributed.run) with this interpreter, one process per GPU; the "--"
        # keeps torchrun's parser from taking the trainer's --run for an abbreviation of its own --run-path
        launcher=lambda wc: (
            f"{PYTHON} -m torch.distributed.run --standalone"
            f" --nproc_per_node {RUNS[wc.run]['training']['processes']} -m --"
            if RUNS[wc.run]["training"]["processes"] > 1
            else f"{PYTHON} -m"
        ),
    shell:
        "{params.launcher} eqdyn.training.train --run {input.run} --train {input.train}"
        " --out {RESULTS}/runs/{wildcards.run} --state {RESULTS}/.state/{wildcards.run} > {log} 2>&1"


rule evaluation_rotations:
    input:
        split=f"{RESULTS}/datasets/{{task}}/test.npz",
        settings=f"{RESULTS}/evaluation/{{task}}/task.json",
        code=code_inputs("eqdyn.evaluation_rotations"),
    output:
        f"{RESULTS}/evaluation/{{task}}/rotations.npz",
    benchmark:
        f"{RESULTS}/benchmarks/evaluation_rotations/{{task}}.tsv",
    log:
        f"{RESULTS}/logs/evaluation_rotations/{{task}}.log",
    params:
        num_rotations=config["evaluation"]["num_rotations"],
        twirl_rotations=config["evaluation"]["twirl_rotations"],
        max_examples=(
            f"--max-examples {config['evaluation']['max_examples']}"
            if config["evaluation"]["max_examples"] is not None
            else ""
        ),
        seed=EVALUATION_SEED,
    shell:
        "{PYTHON} -m eqdyn.evaluation_rotations --task {wildcards.task} --task-settings {input.settings}"
        " --split {input.split} --num-rotations {params.num_rotations} --twirl-rotations {params.twirl_rotations}"
        " {params.max_examples} --seed {params.seed} --out {output} > {log} 2>&1"


ALL_TARGETS += [f"{RESULTS}/runs/{name}/manifest.json" for name in RUNS]
ALL_TARGETS += [f"{RESULTS}/evaluation/{task}/rotations.npz" for task in TASK_NAMES]


# Not part of `all`: the sweep behind the config's learning rates. Run it with
#   snakemake --cores all results/<study>/lr_sweep/<task>-<model>.csv
rule lr_sweep:
    input:
        run=f"{RESULTS}/runs/{{run}}/run.json",
        train=lambda wc: f"{RESULTS}/datasets/{RUNS[wc.run]['task']}/train.npz",
        code=code_inputs("eqdyn.training.lr_sweep"),
    output:
        f"{RESULTS}/lr_sweep/{{run}}.csv",
    benchmark:
        f"{RESULTS}/benchmarks/lr_sweep/{{run}}.tsv",
    log:
        f"{RESULTS}/logs/lr_sweep/{{run}}.log",
    threads: 1
    resources:
        gpu=1,
    params:
        # the optimizers the study trains this run with: its own, and those of the runs swept around it
        optimizers=lambda wc: " ".join(sorted(
            {run["training"]["optimizer"] for run in RUNS.values() if wc.run in (run["name"], run["base_run"])}
        )),
    shell:
        "{PYTHON} -m eqdyn.training.lr_sweep --run {input.run} --train {input.train} --out {output}"
        " --optimizers {params.optimizers} > {log} 2>&1"
