# Shared set-up: validate the config (defaults filled from the JSON schema), derive paths, and write the
# per-stage config files that rules take as inputs. No torch import here: rules call package modules.
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from eqdyn.config import ConfigError, validate_config  # noqa: E402  (jsonschema + yaml only)

try:
    config.update(validate_config(config, source="snakemake config"))
except ConfigError as error:
    raise WorkflowError(str(error)) from None

STUDY = config["study"]
RESULTS = f"results/{STUDY}"
PKG = "src/eqdyn"
PYTHON = sys.executable  # the interpreter running Snakemake, which has the package and its dependencies
ALL_TARGETS = []


def module_file(module):
    """Source file of a package module, declared as a rule input so that editing the code reruns the rule."""
    return f"{PKG}/{module.replace('.', '/')}.py"


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
