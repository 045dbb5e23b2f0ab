"""Study configuration: YAML validated against ``workflow/schemas/config.schema.yaml`` with defaults filled in.

Snakemake validates the same schema (``snakemake.utils.validate``) before any job starts; package CLIs call
:func:`load_config` so that a module run by hand sees exactly the same resolved values.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from eqdyn.data.user_molecules import source_problem  # standard library only

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config file that does not match the schema; the message names the file and the key."""


def _extend_with_default(validator_class: type[jsonschema.protocols.Validator]) -> Any:
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: Mapping[str, Any], instance: Any, schema: Any) -> Any:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultFillingValidator = _extend_with_default(jsonschema.Draft202012Validator)


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle)


def validate_config(config: dict[str, Any], source: str = "<config>", schema: dict[str, Any] | None = None) -> dict:
    """Fill defaults into a copy of ``config`` and validate it; raise :class:`ConfigError` naming the key."""
    resolved = copy.deepcopy(config)
    validator = _DefaultFillingValidator(schema if schema is not None else load_schema())
    errors = sorted(validator.iter_errors(resolved), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for error in errors:
            key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
            # anyOf/oneOf say only "not valid under any of the given schemas": add why each alternative failed.
            reasons = sorted({sub.message for sub in error.context or []})
            lines.append(f"  {key}: {error.message}" + (f" ({'; '.join(reasons)})" if reasons else ""))
        raise ConfigError(f"{source}: invalid configuration\n" + "\n".join(lines))
    # Checks the schema cannot express, that must fail before any job (or download) starts.
    problem = source_problem(resolved.get("data", {}).get("source"))
    if problem:
        raise ConfigError(f"{source}: invalid configuration\n  data.source: {problem}")
    return resolved


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML config, merge ``overrides`` (nested dicts) into it, validate and fill defaults."""
    with open(path) as handle:
        try:
            raw = yaml.safe_load(handle) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if overrides:
        raw = deep_merge(raw, overrides)
    return validate_config(raw, source=str(path))


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
