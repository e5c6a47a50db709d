"""The command line's OpenMP settings: set before torch starts, the user's own kept."""

from __future__ import annotations

import os
import subprocess
import sys

from empirical_seaice import OPENMP_ENVIRONMENT

_SHOW = "import os, empirical_seaice.cli, torch; print(os.environ['OMP_WAIT_POLICY'], os.environ['GOMP_SPINCOUNT'])"


def _run(env: dict[str, str]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", _SHOW], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_cli_sets_a_short_spin_and_keeps_the_users_settings():
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_ENVIRONMENT}
    assert _run(env) == ["PASSIVE", "20000"]
    assert _run({**env, "GOMP_SPINCOUNT": "0", "OMP_WAIT_POLICY": "ACTIVE"}) == ["ACTIVE", "0"]
