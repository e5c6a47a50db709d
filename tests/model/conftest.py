"""Fixtures of the model tests (helpers live in model_fixtures.py)."""

from __future__ import annotations

import pytest
from model_fixtures import make_obs


@pytest.fixture
def tiny_v2():
    return make_obs(("amsr2", "gmi", "ssmisf17"))


@pytest.fixture
def tiny_v1():
    return make_obs(("amsr2",))
