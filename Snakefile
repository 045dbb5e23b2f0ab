# Reproduction pipeline for "Training Dynamics of Learning 3D-Rotational Equivariance" (arXiv 2512.02303).
#   snakemake --cores all                      everything, default config (config/config.yaml)
#   snakemake --cores all --configfile config/test.yaml    the tiny CI study
# Rules are thin: each runs one module of the `eqdyn` package (src/eqdyn) on explicit files.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/figures.smk"


report: "workflow/report/workflow.rst"


rule all:
    input:
        ALL_TARGETS,
    default_target: True
