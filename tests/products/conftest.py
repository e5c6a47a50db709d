"""Fixtures of the products tests (helpers live in products_fixtures.py)."""

from __future__ import annotations

import pytest
from products_fixtures import make_observations


@pytest.fixture
def make_obs():
    return make_observations
