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
