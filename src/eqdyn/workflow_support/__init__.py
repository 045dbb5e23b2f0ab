"""Helpers the Snakefile imports at parse time: standard library only (no torch, numpy or pandas), so that parsing
the workflow stays fast and needs none of the jobs' heavy dependencies."""

from eqdyn.workflow_support.code_inputs import PackageSourceError, check_package_source, code_inputs, package_origin

__all__ = ["PackageSourceError", "check_package_source", "code_inputs", "package_origin"]
