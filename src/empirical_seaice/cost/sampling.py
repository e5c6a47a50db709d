"""The whole-map SIC priors at the cost of a batch ("sampled" mode): the row counts.

The SIC-map priors (range, background, false ice, warm ice) are sums over map
rows ``r = (g, col)`` of an elementwise penalty ``p(C_r)``. Let
``count(r) = #{(i, l) : g_i * ncol + t_i + nlag - l = r}`` be the number of
(training observation, lag) pairs that touch row ``r``
(:func:`build_row_counts`). For a batch ``B`` the sampled estimate is

``E_B = (1/|B|) sum_{i in B} sum_l p(C[r_il]) / count(r_il)``.

For ``i`` drawn uniformly from the ``nobs`` training observations,
``E[E_B] = (1/nobs) sum_i sum_l p(C[r_il]) / count(r_il)
= (1/nobs) sum_r p(C_r) * count(r) / count(r) = (1/nobs) sum_{r: count(r) > 0} p(C_r)``,
exactly the full prior over the observed rows divided by nobs. Over one
shuffled epoch (every observation once) it is exact, not only in
expectation: ``sum_batches (|B| / nobs) E_B`` equals that value. The gradient
of the estimate is unbiased too, and it touches only the batch's rows, so the
cost per step is O(batch) and sparse optimisers stay sparse.

Rows that no training observation touches are left out: in "sampled" mode
they get no gradient from any term and keep their background. In "full"
mode the priors would still move them (e.g. background trace ice toward 0 or
0.3 by the false-ice prior), which changes no simulated TB; every other row
gets the same prior gradient in expectation in both modes.

The warm-ice term is a *mean* (not /nobs) in the reference. In "full" mode it
is the mean over the whole (ngrid, nstep) map; in "sampled" mode the estimate
above is rescaled by ``nobs / n_warm_rows`` (observed rows with a
temperature, i.e. columns >= nlag), so its expectation is the mean over the
observed rows (equal to the full mean when every row is observed).

"full" mode (the reference's dense scheme) computes the priors over the entire map each step.

The estimate itself is :func:`empirical_seaice.cost.objective.sampled_map_terms`
(weights ``1 / count(r)`` in :class:`empirical_seaice.cost.objective.BatchCost`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.observations import Observations


@dataclass(frozen=True)
class RowCounts:
    """How many training (observation, lag) pairs touch each state row.

    sic : float64 (ngrid * (nstep + nlag),): count(r) for SIC-map row r = g * (nstep + nlag) + col.
    grid : float64 (ngrid * nstep,): observations per grid-property row g * nstep + t.
    nobs : number of observations counted.
    nlag, ngrid, nstep : the state's shape.
    """

    sic: np.ndarray
    grid: np.ndarray
    nobs: int
    nlag: int
    ngrid: int
    nstep: int

    @cached_property
    def n_warm_rows(self) -> int:
        """Observed SIC rows that have a temperature (columns >= nlag); counted once."""
        c = self.sic.reshape(self.ngrid, self.nstep + self.nlag)[:, self.nlag :]
        return int(np.count_nonzero(c))


def _count_rows_py(g, t, index, every, ngrid, nstep, nlag, sic, grid):
    """Count the observations ``index`` (all of them where ``every``) into ``grid[g nstep + t]`` and, through
    the lag window, ``sic[g ncol + t + nlag - lag]`` for ``lag = 0 .. nlag`` (``ncol = nstep + nlag``): whole
    numbers, the counts ``np.bincount`` gives (exact in float64 in any order). One pass over the observations
    (compiled below) into time-major counts (in ``sic``'s memory), so that a day's observations (the data's
    order) land in one step's ngrid counts instead of one SIC row each across the grid-major map; then both
    maps from them. ``sic`` and ``grid`` come in zero. Returns False (nothing counted) where a ``g`` or
    ``t`` is outside ``0 .. ngrid - 1``, ``0 .. nstep - 1``."""
    ncol = nstep + nlag
    per_step = sic[: nstep * ngrid]  # the time-major counts first, in the SIC map's memory (no temporary)
    n = g.size if every else index.size
    for k in range(n):
        i = k if every else index[k]
        gi, ti = g[i], t[i]
        if gi < 0 or gi >= ngrid or ti < 0 or ti >= nstep:
            sic[:] = 0.0
            return False
        per_step[ti * ngrid + gi] += 1.0
    for ti in range(nstep):
        for gi in range(ngrid):
            grid[gi * nstep + ti] = per_step[ti * ngrid + gi]
    sic[:] = 0.0
    for gi in range(ngrid):
        for ti in range(nstep):
            c = grid[gi * nstep + ti]
            for lag in range(nlag + 1):
                sic[gi * ncol + ti + nlag - lag] += c
    return True


def _count_rows_numpy(g, t, index, every, ngrid, nstep, nlag, sic, grid):  # pragma: no cover - without numba
    """:func:`_count_rows_py` with ``np.bincount``, one pass per lag."""
    g, t = (a.astype(np.int64) if every else a[index].astype(np.int64) for a in (g, t))
    if g.size and (g.min() < 0 or g.max() >= ngrid or t.min() < 0 or t.max() >= nstep):
        return False
    base = g * (nstep + nlag) + t + nlag
    for lag in range(nlag + 1):
        sic += np.bincount(base - lag, minlength=sic.size)
    grid += np.bincount(g * nstep + t, minlength=grid.size)
    return True


_count_rows: Any
try:
    from empirical_seaice.compiled import njit

    _count_rows = njit(cache=True, nogil=True)(_count_rows_py)
except ImportError:  # pragma: no cover - exercised only where numba is absent
    _count_rows = _count_rows_numpy


def build_row_counts(
    obs: Observations, nlag: int, ngrid: int, nstep: int, index: np.ndarray | None = None
) -> RowCounts:
    """Count the observations touching each SIC-map row (through the lag window) and grid-property row.

    Parameters
    ----------
    obs : Observations
    nlag, ngrid, nstep : the state's shape.
    index : optional int array of the observations to count (e.g. the training
        subset); None = all.

    Raises
    ------
    SeaIceError
        ``igrid`` or ``istep`` outside the state (0..ngrid-1, 0..nstep-1).
    """
    g, t = (a if a.dtype.kind == "i" else a.astype(np.int64) for a in (np.asarray(obs.igrid), np.asarray(obs.istep)))
    every = index is None
    rows = np.zeros(0, dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= g.size):  # the compiled pass reads them unchecked
        raise SeaIceError(f"row counts: expected observation indices 0..{g.size - 1}, got {rows.min()}..{rows.max()}")
    ncol = nstep + nlag
    sic = np.zeros(ngrid * ncol, dtype=np.float64)
    grid = np.zeros(ngrid * nstep, dtype=np.float64)
    if not _count_rows(g, t, rows, every, ngrid, nstep, nlag, sic, grid):
        if not every:  # the counted observations' range (the message's)
            g, t = g[rows], t[rows]
        if g.min() < 0 or g.max() >= ngrid:
            raise SeaIceError(
                f"Observations.igrid: expected 0 <= igrid < ngrid={ngrid}, got range {g.min()}..{g.max()}"
            )
        raise SeaIceError(f"Observations.istep: expected 0 <= istep < nstep={nstep}, got range {t.min()}..{t.max()}")
    return RowCounts(sic=sic, grid=grid, nobs=int(g.size if every else rows.size), nlag=nlag, ngrid=ngrid, nstep=nstep)


__all__ = ["RowCounts", "build_row_counts"]
