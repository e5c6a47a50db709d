"""Compiled kernels of the classic algorithms' maps (:mod:`.classic`): the daily gridding and the
algorithms per cell, in as few passes over memory as the values allow.

The daily mean TB of a (grid point, step) cell is summed in float64, observation by observation in
observation order, and divided by the count (NaN without one): the values of ``numpy.bincount``'s
sums. Two things make the pass fast without changing a value:

- **Only the sensor's rows.** :func:`sensor_rows` finds each sensor's first and last row in one pass
  over ``isensor``; the gridding of a sensor reads the rows between (the run's reader keeps each
  sensor's observations together, so that is the sensor's own rows; for other data, every row).
- **Sums in step blocks.** The sums and counts are kept by blocks of :data:`TILE_STEPS` steps, grid
  point by grid point within a block, the block's steps together (cell ``(t // TILE_STEPS, g,
  t % TILE_STEPS)``, :func:`cell_index`): the run's observations are in time order within a sensor,
  so a day's additions fall into one block (a few MB that stay in the CPU's cache) instead of being
  spread over the whole table as in the grid-major order (a cache and TLB miss per observation).

:func:`.classic.grid_daily_mean_tb` (the open-water filter, the fair algorithms), whose callers want the
grid-major means of a few channels, sums into a grid-major table instead (:func:`cell_sums` ``grid_major``,
the means in place: no second table), still over the sensor's rows only.

:func:`classic_tiles` then applies NASA Team and Bootstrap to each cell's means in the table's
order and writes the maps in the grid-major (grid, step) order of the products: both the reads and
the writes are sequential (a grid point's block of steps is one run of the maps). Its arithmetic is
that of the numpy functions of :mod:`empirical_seaice.products.sic_algorithms`
(:func:`~.sic_algorithms.nasa_team`, :func:`~.sic_algorithms.bootstrap`), operation for operation in
the same order, so the maps are the same bit for bit (a test); the tie points come in as the numbers
those functions compute from them (:func:`nasa_team_table`, :func:`bootstrap_table`). From the same
means it can also flag the cells the open-water filter removes (:func:`_open_water`, the arithmetic of
:func:`~.open_water_filter.open_water_flags`): the filter then needs no gridding of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from empirical_seaice.products.sic_algorithms import (
    BOOTSTRAP_AD_FRACTION,
    NT_GR2219_MAX,
    NT_GR3719_MAX,
    BootstrapTiePoints,
    NasaTeamTiePoints,
    nasa_team_coefficients,
)

TILE_STEPS = 16
"""Steps per block of the sums table (a grid point's block of a float32 map is one 64-byte line)."""

# Columns of the sums that classic_tiles reads (index into its ``col`` argument).
COL_19V, COL_19H, COL_37V, COL_37H, COL_22V = range(5)


def nasa_team_table(tp: NasaTeamTiePoints) -> np.ndarray:
    """(3, 4) float64: the coefficients ``a``, ``b``, ``d`` of :func:`.nasa_team_coefficients`."""
    return np.array(nasa_team_coefficients(tp), dtype=np.float64)


def bootstrap_table(north: BootstrapTiePoints, south: BootstrapTiePoints) -> np.ndarray:
    """(2, 8) float64, a row per hemisphere (north, south): the water point (37V, 37H, 19V, K), the
    slope and the denominator ``offset + slope x_W - y_W`` (as :func:`.bootstrap_plane_sic` computes
    it) of the 37V/37H and of the 37V/19V ice lines."""
    rows = []
    for tp in (north, south):
        (o1, s1), (o2, s2) = tp.line_vh37, tp.line_v1937
        den1 = o1 + s1 * tp.water_37v_k - tp.water_37h_k
        den2 = o2 + s2 * tp.water_37v_k - tp.water_19v_k
        rows.append([tp.water_37v_k, tp.water_37h_k, tp.water_19v_k, s1, den1, s2, den2, 0.0])
    return np.array(rows, dtype=np.float64)


def table_cells(ngrid: int, nstep: int) -> int:
    """Cells of the sums table: the steps rounded up to whole blocks of :data:`TILE_STEPS`."""
    return -(-nstep // TILE_STEPS) * TILE_STEPS * ngrid


def _cell_index_py(g, t, ngrid):  # pragma: no cover - compiled
    """The row of cell (grid point ``g``, step ``t``) in the sums table (module docstring)."""
    return ((t // TILE_STEPS) * ngrid + g) * TILE_STEPS + t % TILE_STEPS


def _sensor_rows_py(isensor, nsensor):  # pragma: no cover - compiled
    """(lo, hi) int64 (nsensor,): sensor ``s``'s rows all lie in ``lo[s]:hi[s]`` (``lo == hi`` when it has none)."""
    lo = np.full(nsensor, isensor.shape[0], np.int64)
    hi = np.zeros(nsensor, np.int64)
    for i in range(isensor.shape[0]):
        s = isensor[i]
        if 0 <= s < nsensor:
            if i < lo[s]:
                lo[s] = i
            hi[s] = i + 1
    for s in range(nsensor):
        if hi[s] == 0:
            lo[s] = 0
    return lo, hi


def _step_chunk_rows_py(isensor, istep, s, lo, hi, span, nchunk):  # pragma: no cover - compiled
    """Whether sensor ``s``'s rows in ``lo:hi`` are in step order (``istep`` never decreasing), and if so
    where each chunk of ``span`` steps starts: ``starts[k]:starts[k + 1]`` holds every row of the sensor
    with a step in ``k * span .. (k + 1) * span - 1`` (int64 (nchunk + 1,); rows of other sensors may lie
    between, :func:`cell_sums` skips them). ``(starts, False)`` at the first step that goes back."""
    starts = np.full(nchunk + 1, hi, np.int64)
    starts[0] = lo
    prev = -1
    k = 0
    for i in range(lo, hi):
        if isensor[i] != s:
            continue
        t = np.int64(istep[i])
        if t < prev:
            return starts, False
        prev = t
        c = min(t // span, nchunk)
        while k < c:
            k += 1
            starts[k] = i
    return starts, True


def _cell_sums_py(isensor, igrid, istep, tb, mask, cols, s, ngrid, total, count, grid_major, t_base):  # pragma: no cov
    """Add the valid TBs of sensor ``s`` (columns ``cols``) of a block to their cell's ``total`` (float64,
    in observation order, as ``numpy.bincount`` sums) and ``count``: rows of :func:`cell_index` of the
    step ``t - t_base`` (``t_base`` the first step of a table that holds a chunk of the steps, a multiple
    of :data:`TILE_STEPS`; 0 for the whole period), or with ``grid_major`` rows ``g * nstep + t``
    (``nstep = total.shape[0] // ngrid``), the layout :func:`.classic.grid_daily_mean_tb` returns."""
    nstep = total.shape[0] // ngrid
    for i in range(isensor.shape[0]):
        if isensor[i] != s:
            continue
        g, t = np.int64(igrid[i]), np.int64(istep[i])
        cell = g * nstep + t if grid_major else _cell_index(g, t - t_base, ngrid)
        for j in range(cols.shape[0]):
            c = cols[j]
            if mask[i, c]:
                total[cell, j] += np.float64(tb[i, c])
                count[cell, j] += 1


def _means_in_place_py(total, count):  # pragma: no cover - compiled
    """``total`` becomes the mean (``total / count``), NaN where ``count`` is 0."""
    for k in range(total.shape[0]):
        for j in range(total.shape[1]):
            total[k, j] = total[k, j] / count[k, j] if count[k, j] > 0 else np.nan


def _mean_py(total, n):  # pragma: no cover - compiled
    """A cell's mean ``total / n`` (NaN when ``n`` is 0)."""
    return total / n if n > 0 else np.nan


def _clip01_py(x):  # pragma: no cover - compiled
    """``numpy.clip(x, 0, 1)``: NaN stays NaN, and -0.0 stays -0.0 as numpy keeps it (it compares
    equal to 0)."""
    if x != x:
        return x
    y = x if x >= 0.0 else 0.0
    return y if y < 1.0 else 1.0


def _open_water_py(v19, v37, v22, has22):  # pragma: no cover - compiled
    """The weather filter's flag of one cell: ``GR(37V/19V) > 0.05``, or (``has22``) ``GR(22V/19V) > 0.045``
    (:func:`.open_water_filter.open_water_flags`' arithmetic: False where a TB is NaN)."""
    wet = (v37 - v19) / (v37 + v19) > NT_GR3719_MAX
    if has22:
        wet = wet or (v22 - v19) / (v22 + v19) > NT_GR2219_MAX
    return wet


def _nasa_team_cell_py(v19, h19, v37, v22, has22, a, b, d):  # pragma: no cover - compiled
    """:func:`.nasa_team`'s filtered total of one cell, in its order of operations (``a``, ``b``, ``d``:
    the rows of :func:`nasa_team_table` as tuples)."""
    pr = (v19 - h19) / (v19 + h19)
    gr = (v37 - v19) / (v37 + v19)
    prgr = pr * gr
    den = ((d[0] * 1.0 + d[1] * pr) + d[2] * gr) + d[3] * prgr
    c_fy = (((a[0] * 1.0 + a[1] * pr) + a[2] * gr) + a[3] * prgr) / den
    c_my = (((b[0] * 1.0 + b[1] * pr) + b[2] * gr) + b[3] * prgr) / den
    c = _clip01(c_fy + c_my)
    if _open_water(v19, v37, v22, has22) and np.isfinite(c):
        return 0.0
    return c


def _bootstrap_cell_py(v37, h37, v19, w):  # pragma: no cover - compiled
    """:func:`.bootstrap` of one cell (``w``: a hemisphere's row of :func:`bootstrap_table` as a tuple)."""
    c_a = ((h37 - w[1]) - w[3] * (v37 - w[0])) / w[4]
    c_b = ((v19 - w[2]) - w[5] * (v37 - w[0])) / w[6]
    return _clip01(c_a if c_a > BOOTSTRAP_AD_FRACTION else c_b)


def _classic_tiles_py(  # noqa: C901 - one pass per cell: the means, the flags, two algorithms, the sensor means
    total, count, ngrid, t_lo, t_hi, t_base, col, nt, has22, bt, north, out_nt, out_bt, sums, counts, s_base, wet
):  # pragma: no cover - compiled
    """NASA Team (``out_nt``, skipped when it has no rows) and Bootstrap (``out_bt``) of one sensor's
    sums table for steps ``t_lo:t_hi`` (whole blocks but the last; the table's first step ``t_base``, as
    in :func:`cell_sums`), written grid-major as float32; each finite value (float64) is added to the
    sensor mean's ``sums[k, g, t - s_base]`` (0.0 otherwise, as numpy's ``where(ok, sic, 0.0)``) and
    counted in ``counts[k, g, t - s_base]`` (k = 0 NASA Team, 1 Bootstrap; ``s_base`` the first step of
    those arrays). Every cell read is left zero (sums and counts): the table is ready for the next chunk
    or sensor without a pass of its own. ``wet`` (bool (grid, step), skipped when it has no rows): set True
    where the cell's means flag open water (:func:`_open_water`, the open-water filter's flags), left as it
    is elsewhere (the sensors' flags or-ed)."""
    do_nt = out_nt.shape[0] > 0
    do_bt = out_bt.shape[0] > 0
    do_wet = wet.shape[0] > 0
    # columns and tie points as scalars and tuples, out of the loop: the cell functions take no array
    # (an array argument costs a reference count per call where numba does not inline the call)
    j19v, j19h, j37v, j37h, j22v = col[COL_19V], col[COL_19H], col[COL_37V], col[COL_37H], col[COL_22V]
    a = (nt[0, 0], nt[0, 1], nt[0, 2], nt[0, 3])
    b = (nt[1, 0], nt[1, 1], nt[1, 2], nt[1, 3])
    d = (nt[2, 0], nt[2, 1], nt[2, 2], nt[2, 3])
    w_north = (bt[0, 0], bt[0, 1], bt[0, 2], bt[0, 3], bt[0, 4], bt[0, 5], bt[0, 6])
    w_south = (bt[1, 0], bt[1, 1], bt[1, 2], bt[1, 3], bt[1, 4], bt[1, 5], bt[1, 6])
    for t0 in range(t_lo, t_hi, TILE_STEPS):
        for g in range(ngrid):
            w = w_north if north[g] else w_south
            for t in range(t0, min(t0 + TILE_STEPS, t_hi)):
                cell = _cell_index(g, t - t_base, ngrid)
                seen = count[cell, j37v] > 0  # else both NaN (37V is in every ratio); no sensor-mean term
                v19 = _mean(total[cell, j19v], count[cell, j19v])
                v37 = _mean(total[cell, j37v], count[cell, j37v])
                h19 = _mean(total[cell, j19h], count[cell, j19h]) if do_nt else np.nan
                v22 = _mean(total[cell, j22v], count[cell, j22v]) if (do_nt or do_wet) and has22 else np.nan
                h37 = _mean(total[cell, j37h], count[cell, j37h]) if do_bt else np.nan
                for j in range(total.shape[1]):  # every channel of the cell, 37V or not
                    total[cell, j] = 0.0
                    count[cell, j] = 0
                if do_wet and _open_water(v19, v37, v22, has22):  # also without 37V: GR(22V/19V) alone
                    wet[g, t] = True
                if not seen:
                    if do_nt:
                        out_nt[g, t] = np.float32(np.nan)
                    if do_bt:
                        out_bt[g, t] = np.float32(np.nan)
                    continue
                if do_nt:
                    c = _nasa_team_cell(v19, h19, v37, v22, has22, a, b, d)
                    out_nt[g, t] = np.float32(c)
                    ok = np.isfinite(c)
                    sums[0, g, t - s_base] += c if ok else 0.0
                    counts[0, g, t - s_base] += ok
                if do_bt:
                    c = _bootstrap_cell(v37, h37, v19, w)
                    out_bt[g, t] = np.float32(c)
                    ok = np.isfinite(c)
                    sums[1, g, t - s_base] += c if ok else 0.0
                    counts[1, g, t - s_base] += ok


def _sensor_mean_py(sums, counts, out):  # pragma: no cover - compiled
    """``out`` (float32) = ``sums / counts``, NaN where the count is 0 (numpy's
    ``where(count > 0, total / maximum(count, 1), nan)``), over ``out``'s shape; the sums and counts
    read are left zero (ready for the next chunk of steps)."""
    for g in range(out.shape[0]):
        for t in range(out.shape[1]):
            n = counts[g, t]
            out[g, t] = np.float32(sums[g, t] / n) if n > 0 else np.float32(np.nan)
            sums[g, t] = 0.0
            counts[g, t] = 0


sensor_rows: Any
step_chunk_rows: Any
cell_sums: Any
means_in_place: Any
classic_tiles: Any
sensor_mean: Any
try:
    from empirical_seaice.compiled import njit

    _opts = {"cache": True, "nogil": True, "error_model": "numpy"}
    _cell_index = njit(**_opts)(_cell_index_py)
    _mean = njit(**_opts)(_mean_py)
    _clip01 = njit(**_opts)(_clip01_py)
    _open_water = njit(**_opts)(_open_water_py)
    _nasa_team_cell = njit(**_opts)(_nasa_team_cell_py)
    _bootstrap_cell = njit(**_opts)(_bootstrap_cell_py)
    sensor_rows = njit(**_opts)(_sensor_rows_py)
    step_chunk_rows = njit(**_opts)(_step_chunk_rows_py)
    cell_sums = njit(**_opts)(_cell_sums_py)
    means_in_place = njit(**_opts)(_means_in_place_py)
    classic_tiles = njit(**_opts)(_classic_tiles_py)
    sensor_mean = njit(**_opts)(_sensor_mean_py)
except ImportError:  # pragma: no cover - exercised only where numba is absent
    _cell_index = _cell_index_py
    _mean, _clip01, _nasa_team_cell, _bootstrap_cell = _mean_py, _clip01_py, _nasa_team_cell_py, _bootstrap_cell_py
    _open_water = _open_water_py
    sensor_rows, step_chunk_rows, cell_sums = _sensor_rows_py, _step_chunk_rows_py, _cell_sums_py
    means_in_place = _means_in_place_py
    classic_tiles, sensor_mean = _classic_tiles_py, _sensor_mean_py


__all__ = [
    "TILE_STEPS",
    "table_cells",
    "nasa_team_table",
    "bootstrap_table",
    "sensor_rows",
    "step_chunk_rows",
    "cell_sums",
    "means_in_place",
    "classic_tiles",
    "sensor_mean",
]
