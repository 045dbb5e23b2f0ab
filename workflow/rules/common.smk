# Shared set-up: validate the config (defaults filled from the JSON schema), derive paths, and write the
# per-stage config files that rules take as inputs. No torch import here: rules call package modules.
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from eqdyn.config import ConfigError, validate_config  # noqa: E402  (jsonschema + yaml only)
from eqdyn.workflow_support import PackageSourceError, check_package_source  # noqa: E402  (stdlib only)
from eqdyn.workflow_support import code_inputs as _code_inputs  # noqa: E402

try:
    config.update(validate_config(config, source="snakemake config"))
except ConfigError as error:
    raise WorkflowError(str(error)) from None

STUDY = config["study"]
RESULTS = f"results/{STUDY}"
PKG = "src/eqdyn"
PYTHON = sys.executable  # the interpreter running Snakemake, which has the package and its dependencies
ALL_TARGETS = []


# Jobs are fresh `python -m eqdyn...` processes: they must import this workflow's src/, the code the rules declare
# as inputs, not another install (a non-editable one, or an editable install of another checkout).
try:
    check_package_source(PYTHON, Path(workflow.basedir) / "src", cwd=Path.cwd())
except PackageSourceError as error:
    raise WorkflowError(str(error)) from None


def code_inputs(module):
    """The package files `python -m <module>` runs or reads (its transitive eqdyn imports, the __init__ files on the
    way, the data files it names), derived from the import statements: a rule's `code` input, so that editing any
    of them reruns the rule. See eqdyn.workflow_support.code_inputs."""
    return _code_inputs(module, root=workflow.basedir)


def write_if_changed(path, obj):
    """Write a JSON stage config only when its content changes, so unrelated edits trigger no reruns."""
    path = Path(path)
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(path)


# The data stage's settings, as a file every data rule reads; the master seed travels with it.
DATA_CONFIG = write_if_changed(f"{RESULTS}/configs/data.json", {"seed": config["seed"], **config["data"]})
