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


rule figure_equiv_percent:
    input:
        decomposition=DECOMPOSITIONS,
        runs=RUN_FILES,
        manifests=MANIFESTS,
        code=code_inputs("eqdyn.figures.equiv_percent"),
    output:
        png=report(f"{FIGURES}/equiv_percent.png", caption="../report/equiv_percent.rst", category="Figures"),
        pdf=f"{FIGURES}/equiv_percent.pdf",
    log:
        f"{RESULTS}/logs/figures/equiv_percent.log",
    params:
        **CAPTION_PARAMS,
    shell:
        "{PYTHON} -m eqdyn.figures.equiv_percent --decomposition {input.decomposition} --runs {input.runs}"
        " --manifests {input.manifests} --out {output.png} > {log} 2>&1"


rule figure_loss_decomposition:
    input:
        decomposition=DECOMPOSITIONS,
        runs=RUN_FILES,
        manifests=MANIFESTS,
        code=code_inputs("eqdyn.figures.loss_decomposition"),
    output:
        png=report(
            f"{FIGURES}/loss_decomposition.png", caption="../report/loss_decomposition.rst", category="Figures"
        ),
        pdf=f"{FIGURES}/loss_decomposition.pdf",
    log:
        f"{RESULTS}/logs/figures/loss_decomposition.log",
    params:
        **CAPTION_PARAMS,
    shell:
        "{PYTHON} -m eqdyn.figures.loss_decomposition --decomposition {input.decomposition} --runs {input.runs}"
        " --manifests {input.manifests} --out {output.png} > {log} 2>&1"


rule figure_robustness:
    input:
        decomposition=DECOMPOSITIONS,
        runs=RUN_FILES,
        manifests=MANIFESTS,
        code=code_inputs("eqdyn.figures.robustness"),
    output:
        png=report(f"{FIGURES}/robustness.png", caption="../report/robustness.rst", category="Figures"),
        pdf=f"{FIGURES}/robustness.pdf",
    log:
        f"{RESULTS}/logs/figures/robustness.log",
    params:
        **CAPTION_PARAMS,
    shell:
        "{PYTHON} -m eqdyn.figures.robustness --decomposition {input.decomposition} --runs {input.runs}"
        " --manifests {input.manifests} --out {output.png} > {log} 2>&1"


rule figure_twirling:
    input:
        decomposition=DECOMPOSITIONS,
        runs=RUN_FILES,
        manifests=MANIFESTS,
        # per-example losses of every run (the decomposition's second output) and the inference timings
        examples=[t.replace(".csv", "_examples.csv.gz") for t in DECOMPOSITIONS],
        efficiency=[EFFICIENCY_TABLE] if HAS_EFFICIENCY else [],
        code=code_inputs("eqdyn.figures.twirling"),
    output:
        png=report(f"{FIGURES}/twirling.png", caption="../report/twirling.rst", category="Figures"),
        pdf=f"{FIGURES}/twirling.pdf",
    log:
        f"{RESULTS}/logs/figures/twirling.log",
    params:
        timings=lambda wildcards, input: f"--efficiency {input.efficiency}" if input.efficiency else "",
        twirl_rotations=config["evaluation"]["twirl_rotations"],
        **CAPTION_PARAMS,
    shell:
        "{PYTHON} -m eqdyn.figures.twirling --decomposition {input.decomposition} --runs {input.runs}"
        " --manifests {input.manifests} --examples {input.examples} {params.timings} --out {output.png} > {log} 2>&1"


rule figure_hessian_spectra:
    input:
        hessian=HESSIAN_TABLES,
        density=[t.replace(".csv", "_density.csv") for t in HESSIAN_TABLES],
        runs=RUN_FILES,
        code=code_inputs("eqdyn.figures.hessian_spectra"),
    output:
        png=report(f"{FIGURES}/hessian_spectra.png", caption="../report/hessian_spectra.rst", category="Figures"),
        pdf=f"{FIGURES}/hessian_spectra.pdf",
    log:
        f"{RESULTS}/logs/figures/hessian_spectra.log",
    params:
        **CAPTION_PARAMS,
    shell:
        "{PYTHON} -m eqdyn.figures.hessian_spectra --hessian {input.hessian} --density {input.density}"
        " --runs {input.runs} --out {output.png} > {log} 2>&1"


rule figure_efficiency:
    input:
        efficiency=EFFICIENCY_TABLE,
        decomposition=DECOMPOSITIONS,
        runs=RUN_FILES,
        manifests=MANIFESTS,
        code=code_inputs("eqdyn.figures.efficiency"),
    output:
        png=report(f"{FIGURES}/efficiency.png", caption="../report/efficiency.rst", category="Figures"),
        pdf=f"{FIGURES}/efficiency.pdf",
    log:
        f"{RESULTS}/logs/figures/efficiency.log",
    params:
        **CAPTION_PARAMS,
    shell:
        "{PYTHON} -m eqdyn.figures.efficiency --efficiency {input.efficiency} --decomposition {input.decomposition}"
        " --runs {input.runs} --manifests {input.manifests} --out {output.png} > {log} 2>&1"


rule figure_gradients:
    input:
        gradients=GRADIENT_TABLES,
        decomposition=DECOMPOSITIONS,
        runs=RUN_FILES,
        manifests=MANIFESTS,
        code=code_inputs("eqdyn.figures.gradients"),
    output:
        png=report(f"{FIGURES}/gradients.png", caption="../report/gradients.rst", category="Figures"),
        pdf=f"{FIGURES}/gradients.pdf",
    log:
        f"{RESULTS}/logs/figures/gradients.log",
    params:
        **CAPTION_PARAMS,
    shell:
        "{PYTHON} -m eqdyn.figures.gradients --gradients {input.gradients} --decomposition {input.decomposition}"
        " --runs {input.runs} --manifests {input.manifests} --out {output.png} > {log} 2>&1"


rule claims:
    input:
        decomposition=DECOMPOSITIONS,
        runs=RUN_FILES,
        manifests=MANIFESTS,
        hessian=HESSIAN_TABLES,
        gradients=GRADIENT_TABLES,
        efficiency=[EFFICIENCY_TABLE] if HAS_EFFICIENCY else [],
        examples=[t.replace(".csv", "_examples.csv.gz") for t in DECOMPOSITIONS],
        code=code_inputs("eqdyn.figures.claims"),
    output:
        md=report(f"{RESULTS}/claims.md", caption="../report/claims.rst", category="Claims"),
        csv=f"{FIGURES}/claims.csv",
    log:
        f"{RESULTS}/logs/figures/claims.log",
    params:
        optional=lambda wildcards, input: " ".join(
            [f"--hessian {' '.join(input.hessian)}"] * bool(input.hessian)
            + [f"--gradients {' '.join(input.gradients)}"] * bool(input.gradients)
            + [f"--efficiency {input.efficiency}"] * bool(input.efficiency)
            + [f"--examples {' '.join(input.examples)}"] * bool(input.examples)
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
        f"{RESULTS}/analysis/performance.md",
    output:
        f"{FIGURES}/performance.md",
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
