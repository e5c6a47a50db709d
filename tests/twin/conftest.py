"""Session fixtures: tiny twins generated once per test session (reusable by other test packages).

``tiny_twin``: the ``tiny`` preset (noise at the catalogue errors), output directory.
``tiny_twin_noisefree``: the ``tiny`` preset with ``noise_scale=0`` and 3 days.
"""

from __future__ import annotations

import pytest

from empirical_seaice.twin import generate_twin, get_twin_preset


@pytest.fixture(scope="session")
def tiny_twin(tmp_path_factory):
    out = tmp_path_factory.mktemp("twin") / "tiny"
    generate_twin(get_twin_preset("tiny"), out)
    return out


@pytest.fixture(scope="session")
def tiny_twin_noisefree(tmp_path_factory):
    out = tmp_path_factory.mktemp("twin") / "tiny_noisefree"
    generate_twin(get_twin_preset("tiny", noise_scale=0.0, days=3), out)
    return out
