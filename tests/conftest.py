"""Shared fixtures; helpers live in :mod:`eqdyn.testing` (public, so users can test their own models)."""

from __future__ import annotations

import pytest

from eqdyn.molecules import MoleculeBatch
from eqdyn.testing import random_molecules


@pytest.fixture
def molecules() -> MoleculeBatch:
    return random_molecules()
