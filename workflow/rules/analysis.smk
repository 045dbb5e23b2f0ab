# Analyses over checkpoints. Each writes a tidy CSV (a row per run x step x quantity) that figure rules read.


rule decompose_checkpoints:
    input:
        run=f"{RESULTS}/runs/{{run}}/run.json",
        manifest=f"{RESULTS}/runs/{{run}}/manifest.json",
        split=lambda wc: f"{RESULTS}/datasets/{RUNS[wc.run]['task']}/test.npz",
        rotations=lambda wc: f"{RESULTS}/evaluation/{RUNS[wc.run]['task']}/rotations.npz",
        code=[module_file("analysis.checkpoint_decomposition"), module_file("decomposition")],
    output:
        f"{RESULTS}/analysis/decomposition/{{run}}.csv",
    log:
        f"{RESULTS}/logs/analysis/decomposition/{{run}}.log",
    threads: 1
    shell:
        "{PYTHON} -m eqdyn.analysis.checkpoint_decomposition --run {input.run} --manifest {input.manifest}"
        " --split {input.split} --rotations {input.rotations} --out {output} --threads {threads} > {log} 2>&1"


ALL_TARGETS += [f"{RESULTS}/analysis/decomposition/{name}.csv" for name in RUNS]


rule efficiency_benchmark:
    input:
        runs=[f"{RESULTS}/runs/{name}/run.json" for name in RUNS],
        train=[f"{RESULTS}/datasets/{task}/train.npz" for task in TASK_NAMES],
        code=[module_file("analysis.efficiency"), *TRAINING_CODE],
    output:
        f"{RESULTS}/analysis/efficiency.csv",
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
        code=[
            module_file("analysis.gradients"),
            module_file("analysis.hessian"),
            module_file("analysis.parameter_symmetry"),
        ],
    output:
        f"{RESULTS}/analysis/gradients/{{run}}.csv",
    log:
        f"{RESULTS}/logs/analysis/gradients/{{run}}.log",
    threads: 1
    shell:
        "{PYTHON} -m eqdyn.analysis.gradients --run {input.run} --manifest {input.manifest} --split {input.split}"
        " --rotations {input.rotations} --out {output} --threads {threads} > {log} 2>&1"


ALL_TARGETS += [f"{RESULTS}/analysis/gradients/{name}.csv" for name in RUNS]
