"""Study configuration validated against the package's schema (``eqdyn/schemas/config.schema.yaml``, package data;
``workflow/schemas/config.schema.yaml`` links to it) with defaults filled in.

The workflow validates its config with :func:`validate_config` when it is parsed, before any job starts; the jobs
read the per-stage JSON files it writes, so a module run by hand on those files sees the same resolved values.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from eqdyn.data.user_molecules import source_problem  # standard library only

SCHEMA_PATH = Path(__file__).with_name("schemas") / "config.schema.yaml"


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
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
            key = path.lstrip(".") or "<top level>"
            # anyOf/oneOf say only "not valid under any of the given schemas": add why each alternative failed.
            reasons = sorted({sub.message for sub in error.context or []})
            lines.append(f"  {key}: {error.message}" + (f" ({'; '.join(reasons)})" if reasons else ""))
        raise ConfigError(f"{source}: invalid configuration\n" + "\n".join(lines))
    # Checks the schema cannot express, that must fail before any job (or download) starts.
    problem = source_problem(resolved.get("data", {}).get("source"))
    if problem:
        raise ConfigError(f"{source}: invalid configuration\n  data.source: {problem}")
    return resolved


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
