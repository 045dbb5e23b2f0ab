# Data stage: acquire molecules -> conformers (per shard) -> force labels (per shard) -> per-task datasets.
# Each rule runs one module of eqdyn.data and declares that module's source files as inputs, so editing the code
# reruns exactly the rules that use it. No torch import here.
DATA_SHARDS = list(range(config["data"]["shards"]))
DATA_TASKS = ["flow_matching", "force_field", "voxel_denoising"]
DATA_SPLITS = ["train", "val", "test"]
# A user's own molecule file is an input of the acquisition, so that editing it redraws the molecules.
DATA_SMILES_FILE = [config["data"]["source"]["smiles_file"]] if isinstance(config["data"]["source"], dict) else []
# DFT sources bring their own force labels (data/dft_labels.npz); GEOM its own conformers (data/geom_conformers.npz).
DATA_DFT_SOURCE = config["data"]["source"] in ("rmd17_download", "spice_download")
DATA_GEOM_SOURCE = config["data"]["source"] == "geom_drugs_download"
DATA_DFT_LABELS = [f"{RESULTS}/data/dft_labels.npz"] if DATA_DFT_SOURCE else []
DATA_GEOM_CONFORMERS = [f"{RESULTS}/data/geom_conformers.npz"] if DATA_GEOM_SOURCE else []


rule data_acquire:
    input:
        config=DATA_CONFIG,
        code=code_inputs("eqdyn.data.acquire"),
        registry=f"{PKG}/data/checksums/registry.json",
        smiles_file=DATA_SMILES_FILE,
    output:
        molecules=f"{RESULTS}/data/molecules.csv",
        duplicates=f"{RESULTS}/data/duplicates.csv",
        provenance=f"{RESULTS}/data/provenance/acquire.json",
    benchmark:
        f"{RESULTS}/benchmarks/data/acquire.tsv",
    log:
        f"{RESULTS}/logs/data/acquire.log",
    threads: 1
    shell:
        "{PYTHON} -m eqdyn.data.acquire --config {input.config} --out {output.molecules}"
        " --duplicates {output.duplicates} --provenance {output.provenance} > {log} 2>&1"


rule data_conformers:
    input:
        config=DATA_CONFIG,
        code=code_inputs("eqdyn.data.conformers"),
        molecules=rules.data_acquire.output.molecules,
    output:
        npz=f"{RESULTS}/data/shards/conformers_{{shard}}.npz",
        skipped=f"{RESULTS}/data/shards/skipped_conformers_{{shard}}.csv",
        provenance=f"{RESULTS}/data/provenance/conformers_{{shard}}.json",
    benchmark:
        f"{RESULTS}/benchmarks/data/conformers_{{shard}}.tsv",
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
        code=code_inputs("eqdyn.data.labels"),
        conformers=rules.data_conformers.output.npz,
    output:
        npz=f"{RESULTS}/data/shards/labels_{{shard}}.npz",
        skipped=f"{RESULTS}/data/shards/skipped_labels_{{shard}}.csv",
        provenance=f"{RESULTS}/data/provenance/labels_{{shard}}.json",
    benchmark:
        f"{RESULTS}/benchmarks/data/labels_{{shard}}.tsv",
    log:
        f"{RESULTS}/logs/data/labels_{{shard}}.log",
    wildcard_constraints:
        shard=r"\d+",
    threads: 1
    shell:
        "{PYTHON} -m eqdyn.data.labels --config {input.config} --conformers {input.conformers}"
        " --out {output.npz} --skipped {output.skipped} --provenance {output.provenance} > {log} 2>&1"


if DATA_DFT_SOURCE:

    rule data_dft_labels:
        input:
            config=DATA_CONFIG,
            code=code_inputs("eqdyn.data.dft_labels"),
            registry=f"{PKG}/data/checksums/registry.json",
            molecules=rules.data_acquire.output.molecules,
        output:
            npz=DATA_DFT_LABELS[0],
            summary=f"{RESULTS}/data/dft_labels.json",
        benchmark:
            f"{RESULTS}/benchmarks/data/dft_labels.tsv",
        log:
            f"{RESULTS}/logs/data/dft_labels.log",
        threads: 1
        shell:
            "{PYTHON} -m eqdyn.data.dft_labels --config {input.config} --molecules {input.molecules}"
            " --out {output.npz} --summary {output.summary} > {log} 2>&1"


if DATA_GEOM_SOURCE:

    rule data_geom_conformers:
        input:
            config=DATA_CONFIG,
            code=code_inputs("eqdyn.data.geom_conformers"),
            registry=f"{PKG}/data/checksums/registry.json",
            molecules=rules.data_acquire.output.molecules,
        output:
            npz=DATA_GEOM_CONFORMERS[0],
            summary=f"{RESULTS}/data/geom_conformers.json",
        benchmark:
            f"{RESULTS}/benchmarks/data/geom_conformers.tsv",
        log:
            f"{RESULTS}/logs/data/geom_conformers.log",
        threads: 1
        shell:
            "{PYTHON} -m eqdyn.data.geom_conformers --config {input.config} --molecules {input.molecules}"
            " --out {output.npz} --summary {output.summary} > {log} 2>&1"


rule data_datasets:
    input:
        config=DATA_CONFIG,
        code=code_inputs("eqdyn.data.datasets"),
        molecules=rules.data_acquire.output.molecules,
        duplicates=rules.data_acquire.output.duplicates,
        conformers=expand(rules.data_conformers.output.npz, shard=DATA_SHARDS),
        labels=expand(rules.data_labels.output.npz, shard=DATA_SHARDS),
        dft_labels=DATA_DFT_LABELS,
        geom_conformers=DATA_GEOM_CONFORMERS,
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
    benchmark:
        f"{RESULTS}/benchmarks/data/datasets.tsv",
    log:
        # Logs survive a failed job (outputs do not): the skip summary that explains a too-small split is kept here.
        main=f"{RESULTS}/logs/data/datasets.log",
        summary=f"{RESULTS}/logs/data/skipped_summary.json",
    threads: 1
    shell:
        "{PYTHON} -m eqdyn.data.datasets --config {input.config} --molecules {input.molecules}"
        " --duplicates {input.duplicates} --conformers {input.conformers} --labels {input.labels}"
        " --dft-labels {input.dft_labels} --geom-conformers {input.geom_conformers}"
        " --skipped {input.skipped} --upstream-provenance {input.provenance}"
        " --out-dir {RESULTS}/datasets --data-dir {RESULTS}/data --summary-log {log.summary} > {log.main} 2>&1"


ALL_TARGETS.extend(rules.data_datasets.output)
