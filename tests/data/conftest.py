"""Fixtures of the data-stage tests: a resolved data config as the pipeline writes it (configs/data.json)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from eqdyn.config import validate_config


@pytest.fixture(scope="session")
def default_data_config() -> dict[str, Any]:
    resolved = validate_config({"data": {}})
    return {"seed": resolved["seed"], **resolved["data"]}


@pytest.fixture
def data_config(default_data_config: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(default_data_config)
