# Analyses over checkpoints. Each writes a tidy CSV (a row per run x step x quantity) that figure rules read.


rule decompose_checkpoints:
    input:
        run=f"{RESULTS}/runs/{{run}}/run.json",
        manifest=f"{RESULTS}/runs/{{run}}/manifest.json",
        split=lambda wc: f"{RESULTS}/datasets/{RUNS[wc.run]['task']}/test.npz",
        rotations=lambda wc: f"{RESULTS}/evaluation/{RUNS[wc.run]['task']}/rotations.npz",
        code=code_inputs("eqdyn.analysis.checkpoint_decomposition"),
    output:
        table=f"{RESULTS}/analysis/decomposition/{{run}}.csv",
        # per-example losses (L_total, twirled loss per k): runs of one task compared example by example
        examples=f"{RESULTS}/analysis/decomposition/{{run}}_examples.csv.gz",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/decomposition/{{run}}.tsv",
    log:
        f"{RESULTS}/logs/analysis/decomposition/{{run}}.log",
    params:
        evaluations_per_batch=lambda wc: config["evaluation"]["evaluations_per_batch"][RUNS[wc.run]["task"]],
    threads: 1
    # the analyses run on CUDA when there is one (--device auto): counted, so --resources gpu=1 serialises them
    resources:
        gpu=1,
    shell:
        "{PYTHON} -m eqdyn.analysis.checkpoint_decomposition --run {input.run} --manifest {input.manifest}"
        " --split {input.split} --rotations {input.rotations} --out {output.table} --examples-out {output.examples}"
        " --threads {threads} --evaluations-per-batch {params.evaluations_per_batch} > {log} 2>&1"


ALL_TARGETS += [f"{RESULTS}/analysis/decomposition/{name}.csv" for name in RUNS]


# The best constant model's held-out loss per task, on the decomposition's examples: the claims count a checkpoint
# as learned only well below it (a run on a trivial predictor's plateau has a tiny L_equiv share that means nothing).
rule baseline_loss:
    input:
        split=f"{RESULTS}/datasets/{{task}}/test.npz",
        settings=f"{RESULTS}/evaluation/{{task}}/task.json",
        rotations=f"{RESULTS}/evaluation/{{task}}/rotations.npz",
        code=code_inputs("eqdyn.analysis.baseline_loss"),
    output:
        f"{RESULTS}/analysis/baseline/{{task}}.csv",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/baseline/{{task}}.tsv",
    log:
        f"{RESULTS}/logs/analysis/baseline/{{task}}.log",
    wildcard_constraints:
        task="|".join(TASK_NAMES),
    shell:
        "{PYTHON} -m eqdyn.analysis.baseline_loss --task {wildcards.task} --task-settings {input.settings}"
        " --split {input.split} --rotations {input.rotations} --out {output} > {log} 2>&1"


ALL_TARGETS += [f"{RESULTS}/analysis/baseline/{task}.csv" for task in TASK_NAMES]


rule efficiency_benchmark:
    input:
        runs=[f"{RESULTS}/runs/{name}/run.json" for name in RUNS],
        train=[f"{RESULTS}/datasets/{task}/train.npz" for task in TASK_NAMES],
        code=code_inputs("eqdyn.analysis.efficiency"),
    output:
        f"{RESULTS}/analysis/efficiency.csv",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/efficiency.tsv",
    log:
        f"{RESULTS}/logs/analysis/efficiency.log",
    # every core: the benchmark runs alone, so its clock is not shared with training jobs
    threads: workflow.cores
    resources:
        gpu=1,
    shell:
        "{PYTHON} -m eqdyn.analysis.efficiency --runs {input.runs} --datasets {RESULTS}/datasets"
        " --out {output} > {log} 2>&1"


ALL_TARGETS.append(f"{RESULTS}/analysis/efficiency.csv")


rule gradient_analysis:
    input:
        run=f"{RESULTS}/runs/{{run}}/run.json",
        manifest=f"{RESULTS}/runs/{{run}}/manifest.json",
        split=lambda wc: f"{RESULTS}/datasets/{RUNS[wc.run]['task']}/test.npz",
        rotations=lambda wc: f"{RESULTS}/evaluation/{RUNS[wc.run]['task']}/rotations.npz",
        code=code_inputs("eqdyn.analysis.gradients"),
    output:
        f"{RESULTS}/analysis/gradients/{{run}}.csv",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/gradients/{{run}}.tsv",
    log:
        f"{RESULTS}/logs/analysis/gradients/{{run}}.log",
    params:
        batch_size=config["gradients"]["batch_size"],
    threads: 1
    # the analyses run on CUDA when there is one (--device auto): counted, so --resources gpu=1 serialises them
    resources:
        gpu=1,
    shell:
        "{PYTHON} -m eqdyn.analysis.gradients --run {input.run} --manifest {input.manifest} --split {input.split}"
        " --rotations {input.rotations} --out {output} --batch-size {params.batch_size} --threads {threads}"
        " > {log} 2>&1"


GRADIENT_RUNS = [name for name, run in RUNS.items() if run["task"] in config["gradients"]["tasks"]]
ALL_TARGETS += [f"{RESULTS}/analysis/gradients/{name}.csv" for name in GRADIENT_RUNS]


HESSIAN = config["hessian"]
for _name in HESSIAN["runs"] + HESSIAN["stability_runs"]:
    if _name not in RUNS:
        raise WorkflowError(f"hessian: {_name!r} is not a run of this study (runs: {sorted(RUNS)})")
HESSIAN_SETTINGS = write_if_changed(
    f"{RESULTS}/analysis/hessian/settings.json",
    {**{k: v for k, v in HESSIAN.items() if k not in ("runs", "stability_runs", "seed")},
     "seed": HESSIAN["seed"] if HESSIAN["seed"] is not None else config["seed"]},
)


HESSIAN_INPUTS = dict(
    run=f"{RESULTS}/runs/{{run}}/run.json",
    manifest=f"{RESULTS}/runs/{{run}}/manifest.json",
    split=lambda wc: f"{RESULTS}/datasets/{RUNS[wc.run]['task']}/test.npz",
    settings=HESSIAN_SETTINGS,
    code=code_inputs("eqdyn.analysis.hessian_analysis"),
)
HESSIAN_COMMAND = (
    "{PYTHON} -m eqdyn.analysis.hessian_analysis --run {input.run} --manifest {input.manifest}"
    " --split {input.split} --settings {input.settings} --threads {threads}"
)


rule hessian_analysis:
    input:
        **HESSIAN_INPUTS,
    output:
        table=f"{RESULTS}/analysis/hessian/{{run}}.csv",
        density=f"{RESULTS}/analysis/hessian/{{run}}_density.csv",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/hessian/{{run}}.tsv",
    log:
        f"{RESULTS}/logs/analysis/hessian/{{run}}.log",
    threads: 1
    resources:
        gpu=1,
    shell:
        HESSIAN_COMMAND + " --out {output.table} --density-out {output.density} > {log} 2>&1"


# The last chosen checkpoint again, at the configured B and K and with both doubled.
rule hessian_stability:
    input:
        **HESSIAN_INPUTS,
    output:
        f"{RESULTS}/analysis/hessian_stability/{{run}}.csv",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/hessian_stability/{{run}}.tsv",
    log:
        f"{RESULTS}/logs/analysis/hessian_stability/{{run}}.log",
    threads: 1
    resources:
        gpu=1,
    shell:
        HESSIAN_COMMAND + " --stability-out {output} > {log} 2>&1"


ALL_TARGETS += [f"{RESULTS}/analysis/hessian/{name}.csv" for name in HESSIAN["runs"]]
ALL_TARGETS += [f"{RESULTS}/analysis/hessian_stability/{name}.csv" for name in HESSIAN["stability_runs"]]


PERFORMANCE = config["performance"]


rule performance_table:
    input:
        code=code_inputs("eqdyn.benchmarks.performance"),
    output:
        md=f"{RESULTS}/analysis/performance.md",
        csv=f"{RESULTS}/analysis/performance.csv",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/performance.tsv",
    log:
        f"{RESULTS}/logs/analysis/performance.log",
    # every core and the GPU: its ratios are only fair when nothing runs beside it
    threads: workflow.cores
    resources:
        gpu=1,
    params:
        device=PERFORMANCE["device"],
        flags=" ".join(["--bf16"] * PERFORMANCE["bf16"] + ["--compile"] * PERFORMANCE["compile"]),
        sizes=" ".join(PERFORMANCE["sizes"]),
        repeats=PERFORMANCE["repeats"],
    shell:
        "{PYTHON} -m eqdyn.benchmarks.performance --device {params.device} {params.flags} --sizes {params.sizes}"
        " --repeats {params.repeats} --threads {threads} --out {output.md} --csv {output.csv} > {log} 2>&1"


# Bundles of tables (no checkpoints, no datasets) for moving a study between machines, e.g. from the GPU machine
# that keeps nothing between uses: one per task (its runs and their analyses) and one for the efficiency benchmark.
# Not part of `all`. `snakemake results/<study>/export/<group>` trains and analyses what the bundle needs.
def export_files(group):
    # Each job's benchmark file travels with its tables: Snakemake counts it as an output, so a job whose benchmark
    # file were missing would rerun (and retrain); the files also carry the per-rule times of the study.
    bench = f"{RESULTS}/benchmarks"
    if group == "benchmarks":
        performance = [f"{RESULTS}/analysis/performance.{ext}" for ext in ("md", "csv")] * PERFORMANCE["enabled"]
        performance += [f"{bench}/analysis/performance.tsv"] * PERFORMANCE["enabled"]
        return [f"{RESULTS}/analysis/efficiency.csv", f"{bench}/analysis/efficiency.tsv", *performance]
    runs = [name for name, run in RUNS.items() if run["task"] == group]
    # the stage configs written at parse time travel too: unpacked with their old times, they are not rewritten
    # (same content), so they do not look newer than the tables made from them
    files = [DATA_CONFIG, f"{RESULTS}/evaluation/{group}/task.json", HESSIAN_SETTINGS]
    files += [f"{RESULTS}/analysis/baseline/{group}.csv", f"{bench}/analysis/baseline/{group}.tsv"]
    for name in runs:
        files += [f"{RESULTS}/runs/{name}/{file}" for file in ("run.json", "manifest.json", "metrics.csv")]
        files += [f"{RESULTS}/analysis/decomposition/{name}.csv",
                  f"{RESULTS}/analysis/decomposition/{name}_examples.csv.gz"]
        files += [f"{bench}/train/{name}.tsv", f"{bench}/analysis/decomposition/{name}.tsv"]
        if name in GRADIENT_RUNS:
            files += [f"{RESULTS}/analysis/gradients/{name}.csv", f"{bench}/analysis/gradients/{name}.tsv"]
        if name in HESSIAN["runs"]:
            files += [f"{RESULTS}/analysis/hessian/{name}.csv", f"{RESULTS}/analysis/hessian/{name}_density.csv"]
            files.append(f"{bench}/analysis/hessian/{name}.tsv")
        if name in HESSIAN["stability_runs"]:
            files += [f"{RESULTS}/analysis/hessian_stability/{name}.csv", f"{bench}/analysis/hessian_stability/{name}.tsv"]
    return files


rule export_tables:
    input:
        files=lambda wc: export_files(wc.group),
        # the dataset manifest (sizes, skipped molecules) travels as provenance: see eqdyn.export
        provenance=lambda wc: [] if wc.group == "benchmarks" else [f"{RESULTS}/datasets/{wc.group}/manifest.json"],
        code=code_inputs("eqdyn.export"),
    output:
        directory(f"{RESULTS}/export/{{group}}"),
    benchmark:
        f"{RESULTS}/benchmarks/export/{{group}}.tsv",
    log:
        f"{RESULTS}/logs/export/{{group}}.log",
    wildcard_constraints:
        group="|".join([*TASK_NAMES, "benchmarks"]),
    shell:
        "{PYTHON} -m eqdyn.export pack --root {RESULTS} --out {output} --files {input.files}"
        " --provenance {input.provenance}"
        " --note 'study {STUDY}, group {wildcards.group}' > {log} 2>&1"
