# Data stage: acquire molecules -> conformers (per shard) -> force labels (per shard) -> per-task datasets.
# Each rule runs one module of eqdyn.data and declares that module's source files as inputs, so editing the code
# reruns exactly the rules that use it. No torch import here.
DATA_SHARDS = list(range(config["data"]["shards"]))
DATA_TASKS = ["flow_matching", "force_field", "voxel_denoising"]
DATA_SPLITS = ["train", "val", "test"]
DATA_COMMON = [module_file("data.common"), module_file("data.acquire")]


rule data_acquire:
    input:
        config=DATA_CONFIG,
        code=[module_file("data.sources"), module_file("data.download"), *DATA_COMMON],
        registry=f"{PKG}/data/checksums/registry.json",
    output:
        molecules=f"{RESULTS}/data/molecules.csv",
        provenance=f"{RESULTS}/data/provenance/acquire.json",
    log:
        f"{RESULTS}/logs/data/acquire.log",
    threads: 1
    shell:
        "{PYTHON} -m eqdyn.data.acquire --config {input.config} --out {output.molecules}"
        " --provenance {output.provenance} > {log} 2>&1"


rule data_conformers:
    input:
        config=DATA_CONFIG,
        code=[module_file("data.conformers"), *DATA_COMMON],
        molecules=rules.data_acquire.output.molecules,
    output:
        npz=f"{RESULTS}/data/shards/conformers_{{shard}}.npz",
        skipped=f"{RESULTS}/data/shards/skipped_conformers_{{shard}}.csv",
        provenance=f"{RESULTS}/data/provenance/conformers_{{shard}}.json",
    log:
        f"{RESULTS}/logs/data/conformers_{{shard}}.log",
    wildcard_constraints:
        shard=r"\d+",
    threads: 1
    shell:
        "{PYTHON} -m eqdyn.data.conformers --config {input.config} --molecules {input.molecules}"
        " --shard {wildcards.shard} --out {output.npz} --skipped {output.skipped}"
        " --provenance {output.provenance} > {log} 2>&1"


rule data_labels:
    input:
        config=DATA_CONFIG,
        code=[module_file("data.labels"), *DATA_COMMON],
        conformers=rules.data_conformers.output.npz,
    output:
        npz=f"{RESULTS}/data/shards/labels_{{shard}}.npz",
        skipped=f"{RESULTS}/data/shards/skipped_labels_{{shard}}.csv",
        provenance=f"{RESULTS}/data/provenance/labels_{{shard}}.json",
    log:
        f"{RESULTS}/logs/data/labels_{{shard}}.log",
    wildcard_constraints:
        shard=r"\d+",
    threads: 1
    shell:
        "{PYTHON} -m eqdyn.data.labels --config {input.config} --conformers {input.conformers}"
        " --out {output.npz} --skipped {output.skipped} --provenance {output.provenance} > {log} 2>&1"


rule data_datasets:
    input:
        config=DATA_CONFIG,
        code=[module_file("data.datasets"), module_file("data.labels"), *DATA_COMMON],
        molecules=rules.data_acquire.output.molecules,
        conformers=expand(rules.data_conformers.output.npz, shard=DATA_SHARDS),
        labels=expand(rules.data_labels.output.npz, shard=DATA_SHARDS),
        skipped=expand(rules.data_conformers.output.skipped, shard=DATA_SHARDS)
        + expand(rules.data_labels.output.skipped, shard=DATA_SHARDS),
        provenance=[rules.data_acquire.output.provenance]
        + expand(rules.data_conformers.output.provenance, shard=DATA_SHARDS)
        + expand(rules.data_labels.output.provenance, shard=DATA_SHARDS),
    output:
        datasets=expand(f"{RESULTS}/datasets/{{task}}/{{split}}.npz", task=DATA_TASKS, split=DATA_SPLITS),
        manifests=expand(f"{RESULTS}/datasets/{{task}}/manifest.json", task=DATA_TASKS),
        provenance=f"{RESULTS}/datasets/provenance.json",
        data_provenance=f"{RESULTS}/data/provenance/datasets.json",
        skipped=f"{RESULTS}/data/skipped.csv",
        summary=f"{RESULTS}/data/skipped_summary.json",
    log:
        f"{RESULTS}/logs/data/datasets.log",
    threads: 1
    shell:
        "{PYTHON} -m eqdyn.data.datasets --config {input.config} --molecules {input.molecules}"
        " --conformers {input.conformers} --labels {input.labels} --skipped {input.skipped}"
        " --upstream-provenance {input.provenance}"
        " --out-dir {RESULTS}/datasets --data-dir {RESULTS}/data > {log} 2>&1"


ALL_TARGETS.extend(rules.data_datasets.output)
