# Figures and the claims table. One rule per figure; each runs one module of eqdyn.figures on explicit tables and
# declares that module (and the shared style/table code) as inputs, so editing one figure's code reruns only it.
# Outputs: figures/ for the default study, figures/<study>/ for any other (the test study never overwrites them).
# Figures 4-6 read tables of the Hessian, gradient and efficiency analyses: their rules exist in every workflow, but
# their targets join `all` only when the rule making their input table is part of the workflow.
import os

FIGURES = "figures" if STUDY == "default" else f"figures/{STUDY}"
RUN_FILES = [f"{RESULTS}/runs/{name}/run.json" for name in RUNS]
MANIFESTS = [f"{RESULTS}/runs/{name}/manifest.json" for name in RUNS]
DECOMPOSITIONS = [f"{RESULTS}/analysis/decomposition/{name}.csv" for name in RUNS]


def _config_files():
    """The config files in the order they were applied: the Snakefile's, then those given with --configfile."""
    given = [str(f) for f in workflow.config_settings.configfiles]
    files = [str(f) for f in workflow.configfiles if str(f) not in given] + given
    return [os.path.relpath(f, workflow.basedir) if os.path.isabs(f) else f for f in files]


def _unfinished_runs():
    """Runs whose manifest says training did not finish (e.g. diverged): captions name them. Read when the workflow is
    parsed, which for `snakemake --report` is after the runs; a run without a manifest yet counts as not trained."""
    notes = []
    for name in sorted(RUNS):
        path = Path(RESULTS, "runs", name, "manifest.json")
        if not path.exists():
            continue
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError:  # being written or broken: the figure jobs that read it will say so
            continue
        if manifest.get("status", "finished") != "finished":
            notes.append(f"{name} ({manifest['status']}: {manifest.get('status_reason') or 'no reason recorded'})")
    return "Runs that did not finish, drawn up to their last checkpoint: " + "; ".join(notes) + "." if notes else ""


# Captions name the runs that did not finish. Through the config, not params: a param would change once the runs
# exist and so retrigger every figure job; the config is read by captions only when the report is built.
config["unfinished_runs_note"] = _unfinished_runs()

# What the captions state (Snakemake renders them as Jinja templates with snakemake.params and snakemake.config).
CAPTION_PARAMS = dict(
    study=STUDY,
    configfiles=" + ".join(_config_files()),
    runs=", ".join(sorted(RUNS)),
    seeds=", ".join(
        f"{name}: {run['training']['seed']}" for name, run in sorted(RUNS.items())
    ),
    checkpoints=", ".join(str(s) for s in sorted({s for run in RUNS.values() for s in run["checkpoint_steps"]})),
    num_rotations=config["evaluation"]["num_rotations"],
    twirl_rotations=config["evaluation"]["twirl_rotations"],
)


def _analysis_tables(kind):
    """Tables of one analysis that the workflow targets (in ALL_TARGETS), e.g. results/<study>/analysis/hessian/*.csv."""
    prefix = f"{RESULTS}/analysis/{kind}/"
    return [t for t in ALL_TARGETS if str(t).startswith(prefix) and str(t).endswith(".csv")
            and not str(t).endswith("_density.csv")]


# (`hasattr(rules, name)` raises a WorkflowError in Snakemake 9 rather than returning False: ask the rule list.)
_RULE_NAMES = {rule.name for rule in workflow.rules}
HAS_HESSIAN = "hessian_analysis" in _RULE_NAMES
HAS_GRADIENTS = "gradient_analysis" in _RULE_NAMES
HAS_EFFICIENCY = "efficiency_benchmark" in _RULE_NAMES
HESSIAN_TABLES = _analysis_tables("hessian") if HAS_HESSIAN else []
GRADIENT_TABLES = _analysis_tables("gradients") if HAS_GRADIENTS else []
EFFICIENCY_TABLE = f"{RESULTS}/analysis/efficiency.csv"
BASELINES = [f"{RESULTS}/analysis/baseline/{task}.csv" for task in TASK_NAMES]


if config["figures_from_present_tables"] in (True, "true"):
    # only what exists now, so the figure and claims jobs pull in no training or analysis job
    MANIFESTS, DECOMPOSITIONS, HESSIAN_TABLES, GRADIENT_TABLES, BASELINES = (
        [f for f in files if os.path.exists(f)]
        for files in (MANIFESTS, DECOMPOSITIONS, HESSIAN_TABLES, GRADIENT_TABLES, BASELINES)
    )
    HAS_EFFICIENCY = HAS_EFFICIENCY and os.path.exists(EFFICIENCY_TABLE)


def _bundles(folder):
    """A bundle folder (eqdyn.export: index.json beside the tables), or a folder of them, sorted by name."""
    if os.path.exists(os.path.join(folder, "index.json")):
        return [folder]
    bundles = sorted(
        os.path.join(folder, name) for name in os.listdir(folder) if os.path.exists(os.path.join(folder, name, "index.json"))
    ) if os.path.isdir(folder) else []
    if not bundles:
        raise WorkflowError(f"figures_from={folder}: no export bundle there (a folder with index.json, or of them)")
    return bundles


def _in_bundles(path, bundles):
    """Where ``path`` (under RESULTS) lies in the first bundle that holds it, or None."""
    relative = os.path.relpath(path, RESULTS)
    return next((os.path.join(b, relative) for b in bundles if os.path.exists(os.path.join(b, relative))), None)


if config["figures_from"]:
    # The committed tables themselves, read where they lie in the bundles: no rule makes those paths, so Snakemake
    # links no training or analysis job to them (tables unpacked into results/ would pull in the data stage, since
    # their datasets are not there). A run without tables keeps its parse-time run.json: the claims name it.
    _BUNDLES = _bundles(config["figures_from"])
    RUN_FILES = [_in_bundles(f, _BUNDLES) or f for f in RUN_FILES]
    MANIFESTS, DECOMPOSITIONS, HESSIAN_TABLES, GRADIENT_TABLES, BASELINES = (
        [found for found in (_in_bundles(f, _BUNDLES) for f in files) if found]
        for files in (MANIFESTS, DECOMPOSITIONS, HESSIAN_TABLES, GRADIENT_TABLES, BASELINES)
    )
    EFFICIENCY_TABLE = _in_bundles(EFFICIENCY_TABLE, _BUNDLES) or EFFICIENCY_TABLE
    HAS_EFFICIENCY = HAS_EFFICIENCY and EFFICIENCY_TABLE != f"{RESULTS}/analysis/efficiency.csv"
EXAMPLES = [t.replace(".csv", "_examples.csv.gz") for t in DECOMPOSITIONS]
FROM_DECOMPOSITION = dict(decomposition=DECOMPOSITIONS, runs=RUN_FILES, manifests=MANIFESTS)

# One rule per figure, from this table: figure name -> its tables, each passed to `python -m eqdyn.figures.<name>`
# as --<input name> <files> (an empty list is left out). Caption: workflow/report/<name>.rst.
FIGURE_INPUTS = {
    "equiv_percent": {**FROM_DECOMPOSITION, "baselines": BASELINES},
    "loss_decomposition": {**FROM_DECOMPOSITION, "baselines": BASELINES},
    "robustness": {**FROM_DECOMPOSITION, "baselines": BASELINES},
    # per-example losses of every run (the decomposition's second output) and the inference timings
    "twirling": {**FROM_DECOMPOSITION, "examples": EXAMPLES,
                 "efficiency": [EFFICIENCY_TABLE] if HAS_EFFICIENCY else []},
    "hessian_spectra": {"hessian": HESSIAN_TABLES, "density": [t.replace(".csv", "_density.csv") for t in HESSIAN_TABLES],
                        "runs": RUN_FILES},
    "efficiency": {"efficiency": [EFFICIENCY_TABLE], **FROM_DECOMPOSITION},
    "gradients": {"gradients": GRADIENT_TABLES, **FROM_DECOMPOSITION},
}


def figure_arguments(wildcards, input):
    """--<name> <files> for every table input of a figure rule (not its code), leaving out empty lists."""
    words = []
    for name, files in input.items():
        files = [files] if isinstance(files, str) else list(files)
        if name != "code" and files:
            words += [f"--{name}", *files]
    return " ".join(words)


for _figure, _inputs in FIGURE_INPUTS.items():

    rule:
        name:
            f"figure_{_figure}"
        input:
            **_inputs,
            code=code_inputs(f"eqdyn.figures.{_figure}"),
        output:
            png=report(f"{FIGURES}/{_figure}.png", caption=f"../report/{_figure}.rst", category="Figures"),
            pdf=f"{FIGURES}/{_figure}.pdf",
        benchmark:
            f"{RESULTS}/benchmarks/figures/{_figure}.tsv",
        log:
            f"{RESULTS}/logs/figures/{_figure}.log",
        params:
            module=f"eqdyn.figures.{_figure}",
            tables=figure_arguments,
            **CAPTION_PARAMS,
        shell:
            "{PYTHON} -m {params.module} {params.tables} --out {output.png} > {log} 2>&1"


rule claims:
    input:
        decomposition=DECOMPOSITIONS,
        runs=RUN_FILES,
        manifests=MANIFESTS,
        hessian=HESSIAN_TABLES,
        gradients=GRADIENT_TABLES,
        efficiency=[EFFICIENCY_TABLE] if HAS_EFFICIENCY else [],
        examples=EXAMPLES,
        baselines=BASELINES,
        code=code_inputs("eqdyn.figures.claims"),
    output:
        md=report(f"{RESULTS}/claims.md", caption="../report/claims.rst", category="Claims"),
        csv=f"{FIGURES}/claims.csv",
    benchmark:
        f"{RESULTS}/benchmarks/figures/claims.tsv",
    log:
        f"{RESULTS}/logs/figures/claims.log",
    params:
        optional=lambda wildcards, input: " ".join(
            [f"--hessian {' '.join(input.hessian)}"] * bool(input.hessian)
            + [f"--gradients {' '.join(input.gradients)}"] * bool(input.gradients)
            + [f"--efficiency {input.efficiency}"] * bool(input.efficiency)
            + [f"--examples {' '.join(input.examples)}"] * bool(input.examples)
            + [f"--baselines {' '.join(input.baselines)}"] * bool(input.baselines)
        ),
        **CAPTION_PARAMS,
    shell:
        "{PYTHON} -m eqdyn.figures.claims --decomposition {input.decomposition} --runs {input.runs}"
        " --manifests {input.manifests} {params.optional} --study {params.study}"
        " --configfiles {params.configfiles:q} --out-md {output.md} --out-csv {output.csv} > {log} 2>&1"


# Figures 3 and 7 need something to draw: a size, dataset-size or optimizer sweep; a twirling set in the evaluation
# rotations (evaluation.twirl_rotations > 0; the voxel task's is an order of its 24 cube rotations).
HAS_SWEEPS = any((run["sweep"] or {}).get("factor") in ("size", "num_train_molecules", "optimizer") for run in RUNS.values())
HAS_TWIRLING = config["evaluation"]["twirl_rotations"] > 0 and bool(RUNS)  # every task has a twirling set
ALL_TARGETS += [f"{FIGURES}/{name}.{ext}" for name in ("equiv_percent", "loss_decomposition") for ext in ("png", "pdf")]
ALL_TARGETS += [f"{RESULTS}/claims.md", f"{FIGURES}/claims.csv"]
for _name, _present in (
    ("robustness", HAS_SWEEPS),
    ("twirling", HAS_TWIRLING),
    ("hessian_spectra", bool(HESSIAN_TABLES)),
    ("gradients", bool(GRADIENT_TABLES)),
    ("efficiency", HAS_EFFICIENCY),
):
    if _present:
        ALL_TARGETS += [f"{FIGURES}/{_name}.png", f"{FIGURES}/{_name}.pdf"]


rule performance_report:
    input:
        (_in_bundles(f"{RESULTS}/analysis/performance.md", _BUNDLES) if config["figures_from"] else None)
        or f"{RESULTS}/analysis/performance.md",
    output:
        f"{FIGURES}/performance.md",
    benchmark:
        f"{RESULTS}/benchmarks/figures/performance.tsv",
    log:
        f"{RESULTS}/logs/figures/performance.log",
    shell:
        "cp {input} {output} 2> {log}"


if config["performance"]["enabled"]:
    ALL_TARGETS.append(f"{FIGURES}/performance.md")


# Only the figures and the claims table, from tables that exist: `snakemake figures`. Snakemake does not rerun the
# jobs upstream of a table that is present, so a study whose tables were brought back from another machine
# (`python -m eqdyn.export unpack`, without checkpoints or datasets) gets its figures here without retraining.
rule figures:
    input:
        [t for t in ALL_TARGETS if str(t).startswith(f"{FIGURES}/") or str(t) == f"{RESULTS}/claims.md"],
