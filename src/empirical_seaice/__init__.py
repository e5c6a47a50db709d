"""Empirical-state training of a sea ice emissivity model and sea ice state.

Implements the method of A.J. Geer, "Simultaneous inference of sea ice state
and surface emissivity model using machine learning and data assimilation",
JAMES 2024, doi:10.1029/2023MS004080 (v1 = ECMWF IFS 49r1, v2 = IFS 50r1).
"""

__version__ = "0.1.0"

OPENMP_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "20000"}
"""The OpenMP settings the command line sets where the user has not (read once, when OpenMP starts:
before torch or a numba parallel loop runs). An idle OpenMP thread spins for ``GOMP_SPINCOUNT``
rounds (libgomp; tens to a few hundred microseconds) before it sleeps, instead of spinning for
long (OpenMP's default: a second torch thread then competed with the work on a loaded 2-core
machine, 5-10x slower) or sleeping at once (``PASSIVE`` alone: each of the fused step's three
parallel regions then waits for a sleeping thread to wake, and two threads at batch 1024 were no
faster than one). On the 2-core development machine, the fused step at batch 1024 on two threads:
1.2-1.6 M obs/s sleeping at once, 2.1-2.2 M with 10,000-30,000 rounds; 3,000 and 100,000 were
slower (benchmarks/results.md)."""
