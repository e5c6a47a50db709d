"""The per-channel pass of the reader: TBs and the radiative-transfer inputs of each channel, read
block by block straight into preallocated float32 ``(nobs, nchan)`` arrays in the unified channel
basis; invalid values clear the channel's mask and are zeroed in every field. The clear and cloudy
columns' six variables are read together, block by block, and stored folded into the three fields of
the effective all-sky atmosphere (:mod:`empirical_seaice.all_sky`): what the model uses, half the
bytes. The pass runs on two threads, a (variable, sensor) pair at a time; the atmosphere's pairs, most of
the work, are read in two parts of a sensor's rows each, so that the threads end together.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.all_sky import ALL_SKY_FIELDS, all_sky_rows
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import direct_read
from empirical_seaice.io._netcdf import (
    FILL_ABS,
    FILL_VALUES,
    Layout2D,
    as_float,
    get_variable,
    open_netcdf,
    read_rows,
    row_blocks,
)
from empirical_seaice.io.layouts import SensorFiles
from empirical_seaice.io.per_observation import Zeros, numpy_zeros
from empirical_seaice.io.sensor_read import SensorRead, var_path
from empirical_seaice.io.validity import MOSTLY, NOTABLE, RANGE_TOL, RANGES, FieldStats
from empirical_seaice.observations import release_pages
from empirical_seaice.sensors import ChannelBasis

CHANNEL_VARIABLES = {"OBSVALUE": "tb_obs_k", "EMIS_WATER": "emis_water"}
"""Per-channel variables of the files read as they are -> (nobs, nchan) fields of
:class:`~empirical_seaice.observations.Observations`."""
ATMOSPHERE_VARIABLES = ("TAUSFC", "TDOWN", "TUP", "TAUSFC_CLD", "TDOWN_CLD", "TUP_CLD")
"""The clear and cloudy columns' variables (in the order of :data:`~empirical_seaice.all_sky.CLEAR_CLOUDY_FIELDS`),
read together block by block and folded into the effective atmosphere's fields
(:data:`~empirical_seaice.all_sky.ALL_SKY_FIELDS`, :func:`~empirical_seaice.all_sky.all_sky_rows`)."""
FIELDS = (*CHANNEL_VARIABLES.values(), *ALL_SKY_FIELDS)
"""The (nobs, nchan) float32 fields the pass makes, in the order it fills them."""
_UNITS = (*((var,) for var in CHANNEL_VARIABLES), ATMOSPHERE_VARIABLES)
"""The variables read together, and the fields each unit fills (:data:`_UNIT_FIELDS`)."""
_UNIT_FIELDS = (*((field,) for field in CHANNEL_VARIABLES.values()), ALL_SKY_FIELDS)
log = logging.getLogger(__name__)


def _channel_layout(var, path: Path, name: str, nobs: int, sf: SensorFiles) -> Layout2D:
    sensor = sf.sensor
    nused, nlead = len(sensor.file_channels), len(sensor.leading_unused)
    allowed = {nused: 0}
    if nlead:
        allowed[nused + nlead] = nlead
    shape = tuple(var.shape)
    want = f"({nobs}, {nused})" + (f" or ({nobs}, {nused + nlead})" if nlead else "")
    if len(shape) != 2:
        raise SeaIceError(f"{path}: variable {name} expected shape {want} (observation, channel), got {shape}")
    if shape[0] == shape[1] == nobs and shape[1] in allowed:  # square: the dimensions' names decide
        return _square_layout(var, path, name, nobs, allowed[nobs])
    if shape[0] == nobs and shape[1] in allowed:
        return Layout2D(False, shape[1], allowed[shape[1]])
    if shape[1] == nobs and shape[0] in allowed and shape[0] != nobs:
        return Layout2D(True, shape[0], allowed[shape[0]])
    if nobs in shape:
        other = shape[1] if shape[0] == nobs else shape[0]
        raise SeaIceError(
            f"{path}: variable {name} has {other} channels, sensor {sensor.name} expects {nused}"
            + (f" or {nused + nlead} (first {nlead} unused)" if nlead else "")
            + f" ({', '.join(sensor.file_channels)}); expected shape {want}, got {shape}"
        )
    raise SeaIceError(f"{path}: variable {name} expected shape {want} (observation, channel), got {shape}")


def _square_layout(var, path: Path, name: str, nobs: int, nlead: int) -> Layout2D:
    """The layout of a per-channel variable with as many observations as channels, which its shape cannot
    tell: (channel, observation) where its first dimension's name says channel (``nchan``, ``channel``)
    and its second's does not, else (observation, channel), with a warning where neither name says (before:
    always (observation, channel), a file stored the other way misread without a word)."""
    dims = [d.lower() for d in getattr(var, "dimensions", ()) or ()]
    says = [("chan" in d, "obs" in d) for d in dims]
    if len(says) == 2 and says[0][0] and not says[1][0]:
        return Layout2D(True, nobs, nlead)
    if len(says) != 2 or not (says[1][0] or says[0][1]):
        log.warning(
            "%s: variable %s holds %d observations of %d channels, read as (observation, channel); name its "
            "channel dimension (e.g. nchan) if it is stored (channel, observation)",
            path, name, nobs, nobs,
        )  # fmt: skip
    return Layout2D(False, nobs, nlead)


def channel_arrays(nobs: int, nchan: int) -> list[tuple[str, tuple[int, ...], Any]]:
    """The arrays the pass makes, in the order it fills them: ``(name, shape, dtype)`` of the mask
    (bool) and of each per-channel field (float32), ``(nobs, nchan)`` each."""
    return [("mask", (nobs, nchan), np.dtype(bool))] + [(key, (nobs, nchan), np.dtype(np.float32)) for key in FIELDS]


def read_per_channel(
    reads: list[SensorRead],
    offsets: list[int],
    basis: ChannelBasis,
    nobs: int,
    out: dict[str, np.ndarray],
    zeros: Zeros = numpy_zeros,
    threads: int | None = None,
    finished: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Read every per-channel field into ``out`` ((nobs, nchan) float32, unified basis); returns the mask.

    ``out`` holds the per-observation fields already (the atmosphere's fold reads ``cloud_fraction``).
    Every masked value is zeroed: a channel masked by one variable is zeroed in all fields. Channels a
    sensor lacks were never written (0); only rows with an invalid value need that pass. ``zeros(name,
    shape, dtype)`` makes each array (the data cache's memory maps in a cached run); ``finished(name)``
    is called when field ``name`` is complete (the cache starts writing it to the disk).

    The (unit, sensor) pairs (:data:`_UNITS`: the TBs, the ocean emissivity, the atmosphere's six
    variables) are read on ``threads`` threads (default :data:`THREADS`): the netCDF calls one at a
    time (:data:`NETCDF_LOCK`; the library is not thread-safe), the compiled classification and
    scatter of one block beside the next block's read. Pairs write disjoint rows of a field; the mask
    and the row flags only ever get ``False`` and ``True`` written, so the result does not depend on
    the order. The error raised is the first pair's in the sequential order.
    """
    nchan = basis.nchan
    shapes = {name: (shape, dtype) for name, shape, dtype in channel_arrays(nobs, nchan)}
    mask = zeros("mask", *shapes["mask"])
    dirty = np.zeros(nobs, dtype=bool)
    for s, r in enumerate(reads):
        mask[offsets[s] : offsets[s] + r.keep.size, basis.present[s]] = True
    cloud = out["cloud_fraction"]
    lock = threading.Lock()
    # the atmosphere's pairs, 10-50 times the others' work, in parts of the sensor's kept rows: the two
    # threads then end together instead of one waiting for the other's last sensor
    parts = [_parts(r.keep.size) for r in reads]
    left = [len(reads)] * len(CHANNEL_VARIABLES) + [sum(len(p) for p in parts)]
    held: dict[int, list[list[_Scatter]]] = {s: [] for s in range(len(reads))}  # the parts' counts so far

    def fields(u: int) -> list[np.ndarray]:
        """Unit ``u``'s arrays, made at its first pair, with the next unit's (a cache's pages come in on
        its background thread meanwhile): only the fields being read are in memory."""
        with lock:
            for key in (k for unit in _UNIT_FIELDS[u : u + 2] for k in unit):
                if key not in out:
                    out[key] = zeros(key, *shapes[key])
            return [out[key] for key in _UNIT_FIELDS[u]]

    def task(item: tuple[int, int, SensorRead, tuple[int, int]]) -> None:
        u, s, r, (k0, k1) = item
        arrays = fields(u)
        rows = slice(offsets[s] + k0, offsets[s] + k1)
        scatters: list[_Scatter] = []
        if u < len(CHANNEL_VARIABLES):
            _read_channels(r, _UNITS[u][0], arrays[0], mask, dirty, offsets[s], basis, s)
        else:
            scatters = _read_atmosphere(r, arrays, cloud, mask, dirty, offsets[s], basis, s, (k0, k1))
        for arr in arrays:  # a cache's memory map: its written pages go to the file, not kept resident
            release_pages(arr, rows)
        with lock:
            left[u] -= 1
            last = left[u] == 0
            whole = _add_part(held[s], scatters, len(parts[s]))
        _check_parts(whole)  # once the sensor's every part is read: the range checks over all its rows
        if last and finished is not None:
            with lock:  # the cache writer's queue, as ``zeros`` under the same lock
                for key in _UNIT_FIELDS[u]:
                    finished(key)

    tasks = [(u, s, r, (0, r.keep.size)) for u in range(len(CHANNEL_VARIABLES)) for s, r in enumerate(reads)]
    tasks += [(len(CHANNEL_VARIABLES), s, r, part) for s, r in enumerate(reads) for part in parts[s]]
    _run_in_order(task, tasks, threads)
    _zero_masked(out, mask, dirty)
    warn_sparse_channels(mask, reads, offsets, basis)
    return mask


SAMPLE_ROWS = 1 << 12
"""Observations of a sensor whose mask :func:`warn_sparse_channels` counts at most (evenly spaced): a share
of 0.5 is then known to about 0.01."""


def warn_sparse_channels(mask: np.ndarray, reads: list[SensorRead], offsets: list[int], basis: ChannelBasis) -> None:
    """A warning for each channel of a sensor that is valid in no more than half of its observations
    (missing or out of range in the TBs, the ocean emissivity or the atmosphere): such a channel is
    used only where valid, and a whole one missing was otherwise seen only in the channel table's
    counts; and one for a sensor of which more than :data:`~empirical_seaice.io.validity.NOTABLE` of the
    observations have no valid channel at all (30 % of them passed unnoticed). The shares are counted on
    at most :data:`SAMPLE_ROWS` evenly spaced observations of the sensor (under 1 ms for the benchmark
    twin's three sensors; its whole mask would take 0.06 s)."""
    for s, r in enumerate(reads):
        n = r.keep.size
        if n == 0:
            continue
        step = max(1, n // SAMPLE_ROWS)
        rows = mask[offsets[s] : offsets[s] + n : step]
        none = float((~rows[:, basis.present[s]].any(axis=1)).mean())
        if none > NOTABLE:  # observations that add nothing, though every channel is valid in most of the others
            log.warning(
                "sensor %s: %.0f%% of its %d observations have no valid channel (%s, or the ocean emissivity or "
                "atmosphere beside it, missing or out of range in every channel): they add nothing to the fit",
                r.files.sensor.name, 100 * none, n, var_path(r.files, "OBSVALUE"),
            )  # fmt: skip
        valid = rows[:, basis.present[s]].mean(axis=0)
        for c, share in zip(np.flatnonzero(basis.present[s]), valid, strict=True):
            if share > 1.0 - MOSTLY:
                continue
            how = "valid in none of its" if share == 0.0 else f"missing or out of range in {1.0 - share:.0%} of its"
            log.warning(
                "sensor %s, channel %s: %s %d observations (%s, or the ocean emissivity or atmosphere "
                "beside it); the channel is used only where valid",
                r.files.sensor.name, basis.channel_names[c], how, n, var_path(r.files, "OBSVALUE"),
            )  # fmt: skip


ATMOSPHERE_PART_ROWS = 1 << 18
"""Kept rows of a sensor from which its atmosphere is read in two parts (:func:`read_per_channel`)."""


def _parts(nkeep: int) -> list[tuple[int, int]]:
    """A sensor's atmosphere parts: ranges of its kept rows (indices into ``keep``), two halves of a
    sensor with :data:`ATMOSPHERE_PART_ROWS` or more (and two at least), else one."""
    if nkeep < max(2, ATMOSPHERE_PART_ROWS):
        return [(0, nkeep)]
    return [(0, nkeep // 2), (nkeep // 2, nkeep)]


def _add_part(held: list[list[_Scatter]], scatters: list[_Scatter], nparts: int) -> list[list[_Scatter]]:
    """Hold one atmosphere part's counts (``scatters``: none for another unit) with the sensor's parts read
    so far (``held``); returns them all once the sensor's ``nparts`` are read, else nothing."""
    if not scatters:
        return []
    held.append(scatters)
    return held if len(held) == nparts else []


def _check_parts(parts: list[list[_Scatter]]) -> None:
    """The range checks of a sensor's atmosphere variables over all its parts (their counts added up),
    in the variables' order; nothing for no parts."""
    for k, scatter in enumerate(parts[0] if parts else []):
        scatter.merge(part[k] for part in parts[1:])
        scatter.check()


def _zero_masked(out: dict[str, np.ndarray], mask: np.ndarray, dirty: np.ndarray) -> None:
    """Zero every field's masked channels of the rows flagged in ``dirty`` (a channel masked by one variable)."""
    rows = np.flatnonzero(dirty)
    for a, b in row_blocks(rows.size):
        idx = rows[a:b]
        bad = ~mask[idx]
        for key in FIELDS:
            sub = out[key][idx]
            sub[bad] = 0.0
            out[key][idx] = sub


NETCDF_LOCK = threading.Lock()
"""Held around every netCDF call of the threaded per-channel pass."""

CHANNEL_BLOCK_ROWS = 1 << 16
"""Rows per block of a per-channel read (a few MB: the buffers come back from the allocator's heap
instead of new pages for every block, as 2**20-row blocks of ~60 MB did)."""


THREADS = min(2, os.cpu_count() or 1)
"""Threads of the per-channel pass (two where the machine has two cores: the pass does not scale
further with one netCDF call at a time)."""


def _run_in_order(fn, items: list, threads: int | None) -> None:
    """``fn(item)`` for every item, on ``threads`` threads (default :data:`THREADS`); the first
    item's error in list order is raised, after every item has finished."""
    n = max(1, threads if threads is not None else THREADS)
    if n == 1 or len(items) <= 1:
        for item in items:
            fn(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="read-channels")
    try:
        futures = [pool.submit(fn, item) for item in items]
        pool.shutdown(wait=True)
    except BaseException:  # a signal while the items run: the ones not started never start
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    for fut in futures:
        fut.result()


def _missing_py(v):
    """1 if ``v`` is missing (NaN/inf, ``|x| > 1e10`` or a conventional fill value), else 0: as
    :func:`empirical_seaice.io._netcdf.invalid_float`. An out-of-range value is not missing:

    >>> [_missing_py(v) for v in (250.0, -1.0, float("nan"), float("inf"), 2e10, -999.0, -32768.0)]
    [0, 0, 1, 1, 1, 1, 1]
    """
    if not abs(v) <= FILL_ABS:
        return 1
    for f in FILL_VALUES:
        if v == f:
            return 1
    return 0


def _unfilled_py(v, fill):
    """NaN where ``v`` equals ``fill`` (as the netCDF library masks a variable's fill value), else ``v``."""
    return np.float32(np.nan) if v == fill else v


def _scatter_block_py(values, cols, lo, hi, rows, d0, cmap, arr, mask, dirty, stats, fill):  # pragma: no cover
    """One block of a per-channel field (compiled below): classify every value of ``values[:, cols]``
    (missing: NaN/inf, equal to ``fill`` (the file's fill value where the block was read without the
    netCDF library's masking, else NaN), ``|x| > 1e10`` or a conventional fill; out of range: outside
    ``[lo, hi]``, float32 bounds), add the counts to ``stats`` (n, missing, out, and the block's
    smallest and largest non-NaN value where a value is out of range), and write the kept rows
    ``rows`` (ascending indices into the block) to ``arr`` rows ``d0 ..``, file column ``cols[j]``
    to basis slot ``cmap[j]``: an invalid value is written as 0, clears ``mask`` and flags the row
    in ``dirty``.

    A block whose values are all valid (in ``[lo, hi]``, none equal to ``fill``: nearly every block)
    is only counted and copied, without the classification of each value (one comparison pass,
    vectorised where the block's columns are all used, then the copy); any other goes through
    :func:`_classify_block`. The same results either way."""
    nb, nc, nk = values.shape[0], cols.size, rows.size
    nbad = 0
    if nc and nc == values.shape[1] and cols[0] == 0 and cols[nc - 1] == nc - 1:  # every column, in order
        flat = values.reshape(nb * nc)
        for i in range(nb * nc):
            v = flat[i]
            nbad += (not v >= lo) | (not v <= hi) | (v == fill)
    else:
        for r in range(nb):
            for j in range(nc):
                v = values[r, cols[j]]
                nbad += (not v >= lo) | (not v <= hi) | (v == fill)
    if nbad:
        _classify_block(values, cols, lo, hi, rows, d0, cmap, arr, mask, dirty, stats, fill)
        return
    for k in range(nk):
        r = rows[k]
        o = d0 + k
        for j in range(nc):
            arr[o, cmap[j]] = values[r, cols[j]]
    stats[0] += nb * nc


def _classify_block_py(values, cols, lo, hi, rows, d0, cmap, arr, mask, dirty, stats, fill):  # pragma: no cover
    """:func:`_scatter_block` value by value (compiled below), for a block with an invalid value."""
    nb, nc, nk = values.shape[0], cols.size, rows.size
    nmiss = 0
    nout = 0
    vmin, vmax = np.inf, -np.inf
    k = 0
    for r in range(nb):
        kept = k < nk and rows[k] == r
        o = d0 + k
        rowbad = False
        for j in range(nc):
            v = _unfilled(values[r, cols[j]], fill)
            if v == v:
                vmin = min(vmin, np.float64(v))
                vmax = max(vmax, np.float64(v))
            good = v >= lo and v <= hi
            if not good:
                miss = _missing(v)
                nmiss += miss
                nout += 1 - miss
            if kept:
                c = cmap[j]
                if good:
                    arr[o, c] = v
                else:
                    arr[o, c] = 0.0
                    mask[o, c] = False
                    rowbad = True
        if kept:
            if rowbad:
                dirty[o] = True
            k += 1
    stats[0] += nb * nc
    stats[1] += nmiss
    stats[2] += nout
    if nout:
        stats[3] = min(stats[3], vmin)
        stats[4] = max(stats[4], vmax)


_missing: Any
_unfilled: Any
_classify_block: Any
_scatter_block: Any
try:
    from empirical_seaice.compiled import njit

    _missing = njit(cache=True)(_missing_py)
    _unfilled = njit(cache=True, inline="always")(_unfilled_py)
    _classify_block = njit(cache=True, nogil=True)(_classify_block_py)
    _scatter_block = njit(cache=True, nogil=True)(_scatter_block_py)
except ImportError:  # pragma: no cover - exercised only where numba is absent
    _missing, _unfilled, _classify_block = _missing_py, _unfilled_py, _classify_block_py
    _scatter_block = _scatter_block_py


_NO_FILL = np.float32(np.nan)
"""``fill`` of :func:`_scatter_block` for blocks the netCDF library masked already (NaN equals nothing)."""


def _stored_layout(
    stored: direct_read.StoredVariable | None, path: Path, name: str, nobs: int, sf: SensorFiles
) -> Layout2D | None:
    """The (observation, channel) layout of a variable read straight from its storage, from the shape
    HDF5 stores (the netCDF variable's); None where there is none or it is not that layout (a
    (channel, observation) one, or a shape the netCDF path reports as an error)."""
    if stored is None or (len(stored.shape) == 2 and stored.shape[0] == stored.shape[1]):
        return None  # (square: the netCDF path reads its dimensions' names)
    try:
        layout = _channel_layout(stored, path, name, nobs, sf)
    except SeaIceError:
        return None
    return None if layout.transposed else layout


_Blocks = Generator[tuple[int, int, np.ndarray, int, Any], None, None]
"""The blocks of one variable of one sensor (:func:`_variable_blocks`)."""


def _variable_blocks(r: SensorRead, name: str, start: int, stop: int) -> _Blocks:
    """``(a, b, values, first, fill)`` of one per-channel variable of one sensor over rows ``[start, stop)``
    of its file, in order: ``values`` the rows ``a .. b - 1`` ((b - a, ncol) float32, valid until the next
    block), ``first`` its first used column, ``fill`` the value standing for a missing one (the file's
    fill value where read straight from the storage; NaN through the netCDF library, which masked it).
    Straight from the file's chunks where :func:`~empirical_seaice.io.direct_read.stored` allows it, no
    netCDF call; else through the netCDF library ((channel, observation) layouts, any storage or error
    of the file)."""
    sf, n = r.files, r.nobs_file
    path = var_path(sf, name)
    with NETCDF_LOCK:  # h5py's calls too: an installation may share one HDF5 library between the two
        stored = direct_read.stored(path, name)
    layout = _stored_layout(stored, path, name, n, sf)
    if stored is not None and layout is not None:
        for a, b, values in stored.blocks(start, stop):
            yield a, b, values, layout.offset, stored.fill
        return
    with NETCDF_LOCK:
        ds = open_netcdf(path)
    try:
        with NETCDF_LOCK:
            var, _ = get_variable(ds, path, name)
            layout = _channel_layout(var, path, name, n, sf)
        for a, b in row_blocks(stop, CHANNEL_BLOCK_ROWS, start) if stop > start else ():
            with NETCDF_LOCK:
                raw = read_rows(var, a, b, layout)
            yield a, b, as_float(raw, fills=False), 0, _NO_FILL
    finally:
        with NETCDF_LOCK:
            ds.close()


class _Scatter:
    """One variable of one sensor classified, counted and scattered block by block (:func:`_scatter_block`)
    into rows of an array, with its counts for the range check at the end (:meth:`check`)."""

    def __init__(self, r: SensorRead, name: str, basis: ChannelBasis, s: int):
        self.r, self.name = r, name
        self.cmap = np.ascontiguousarray(basis.sensor_channel_map[s], dtype=np.int64)
        fcols = basis.sensor_file_columns[s]
        self.every = fcols.size == len(r.files.sensor.file_channels)  # no file channel skipped (surface-blind ones are)
        self.fcols = np.asarray(fcols, dtype=np.int64)
        lo, hi, _ = RANGES[name]
        # compared in float32, as classify does
        self.lo, self.hi = np.float32(lo - RANGE_TOL), np.float32(hi + RANGE_TOL)
        self.counts = np.array([0.0, 0.0, 0.0, np.inf, -np.inf])

    def __call__(self, values, first, fill, rows, d0, arr, mask, dirty) -> None:
        """File rows ``rows`` (indices into the block ``values``) to ``arr`` rows ``d0 ..``; ``mask`` and ``dirty``
        are indexed as ``arr``."""
        cols = np.arange(values.shape[1] - first, dtype=np.int64) if self.every else self.fcols
        _scatter_block(values, cols + first, self.lo, self.hi, rows, d0, self.cmap, arr, mask, dirty, self.counts, fill)

    def merge(self, others) -> None:
        """Add the counts of the same variable's other parts (:class:`_Scatter` each) to these."""
        for other in others:
            c, o = self.counts, other.counts
            c[:3] += o[:3]
            c[3], c[4] = min(c[3], o[3]), max(c[4], o[4])

    def check(self) -> None:
        """The one-line error of a variable whose values are missing or out of range too often."""
        c = self.counts
        stats = FieldStats(n=int(c[0]), missing=int(c[1]), out=int(c[2]), lo=c[3], hi=c[4])
        stats.check(var_path(self.r.files, self.name), self.name)


def _kept_rows(keep: np.ndarray, a: int, b: int) -> tuple[np.ndarray, int, int]:
    """The kept observations among file rows ``[a, b)``: their rows in the block (int64, from ``a``), and
    the first and the end of their positions in ``keep`` (their rows of the arrays, less the sensor's offset)."""
    lo_k, hi_k = np.searchsorted(keep, [a, b])
    return np.ascontiguousarray(keep[lo_k:hi_k] - a, dtype=np.int64), int(lo_k), int(hi_k)


def _kept_span(keep: np.ndarray) -> tuple[int, int]:
    """The file rows from the first to the last kept observation: only the blocks that hold kept observations
    are read (and checked)."""
    return (int(keep[0]), int(keep[-1]) + 1) if keep.size else (0, 0)


def _read_channels(
    r: SensorRead,
    name: str,
    arr: np.ndarray,
    mask: np.ndarray,
    dirty: np.ndarray,
    offset: int,
    basis: ChannelBasis,
    s: int,
) -> None:
    """Read one per-channel variable of one sensor into ``arr`` rows ``offset + keep``.

    Invalid values are written as 0 and clear ``mask``; rows with any invalid
    value are flagged in ``dirty`` (their other fields are zeroed at the end).
    Each block is classified, counted and scattered in one compiled pass (:func:`_scatter_block`).
    """
    keep = r.keep
    scatter = _Scatter(r, name, basis, s)
    for a, b, values, first, fill in _variable_blocks(r, name, *_kept_span(keep)):
        rows, lo_k, _ = _kept_rows(keep, a, b)
        scatter(values, first, fill, rows, offset + lo_k, arr, mask, dirty)
    scatter.check()


FOLD_ROWS = 1 << 13
"""Rows of the six atmosphere variables classified and folded at a time (:func:`_read_atmosphere`): 3.3 MB of
scratch for 17 channels; the blocks as stored were up to 65,536 rows (27 MB, which stayed in the heap)."""


class _Follower:
    """The rows of one variable in the blocks of another (the lead): :meth:`rows` gives rows ``[a, b)`` as they
    come from :func:`_variable_blocks`, as they are where the variable's own block is exactly ``[a, b)`` (the
    same chunking: the usual case), else copied together from the blocks that hold them."""

    def __init__(self, blocks: _Blocks):
        self.blocks = blocks
        self.pending: tuple[int, int, np.ndarray, int, Any] | None = None  # a block not used up yet
        self.buf = np.empty((0, 0), dtype=np.float32)

    def _next(self) -> tuple[int, int, np.ndarray, int, Any]:
        if self.pending is not None:
            block, self.pending = self.pending, None
            return block
        return next(self.blocks)

    def rows(self, a: int, b: int) -> tuple[np.ndarray, int, Any]:
        """``(values, first, fill)`` of rows ``[a, b)`` (the rows in order: each call's ``a`` is the last ``b``)."""
        p, q, values, first, fill = self._next()
        if (p, q) == (a, b):
            return values, first, fill
        if self.buf.shape[0] < b - a or self.buf.shape[1] != values.shape[1]:
            self.buf = np.empty((b - a, values.shape[1]), dtype=np.float32)
        out = self.buf[: b - a]
        at = a
        while True:
            n = min(q, b) - at
            out[at - a : at - a + n] = values[at - p : at - p + n]
            at += n
            if q > b:  # the rest of this block is the next call's
                self.pending = (b, q, values[b - p :].copy(), first, fill)
            if at == b:
                return out, first, fill
            p, q, values, _, _ = self._next()  # (one variable's blocks all come one way: the same first, fill)


def _read_atmosphere(
    r: SensorRead,
    arrays: list[np.ndarray],
    cloud: np.ndarray,
    mask: np.ndarray,
    dirty: np.ndarray,
    offset: int,
    basis: ChannelBasis,
    s: int,
    part: tuple[int, int] | None = None,
) -> list[_Scatter]:
    """Read the clear and cloudy columns' six variables of one sensor together, a block of rows at a time,
    and write their effective atmosphere (:func:`~empirical_seaice.all_sky.all_sky_rows`, with the rows'
    ``cloud`` fraction) to ``arrays`` (``tau_eff``, ``down_eff_k``, ``const_k``) rows ``offset + keep``;
    ``part``: only the kept rows ``keep[k0:k1]`` (None: all), the file rows from ``keep[k0]`` to the next
    part's first (the parts' rows tile the span :func:`_read_channels` reads, so the range checks count
    the same rows). Returns each variable's counts for its range check (:meth:`_Scatter.check`, done by
    the caller once every part is read).

    Each variable's block is classified and counted as :func:`_read_channels` does into a block of its own
    (invalid values 0, the mask cleared, the row flagged), then the six are folded. The blocks follow the
    first variable's (:class:`_Follower`), folded :data:`FOLD_ROWS` rows at a time."""
    keep = r.keep
    k0, k1 = (0, keep.size) if part is None else part
    start, stop = _kept_span(keep)
    start, stop = (int(keep[k0]) if k0 > 0 else start), (int(keep[k1]) if k1 < keep.size else stop)
    scatters = [_Scatter(r, name, basis, s) for name in ATMOSPHERE_VARIABLES]
    lead = _variable_blocks(r, ATMOSPHERE_VARIABLES[0], start, stop)
    followers = [_Follower(_variable_blocks(r, name, start, stop)) for name in ATMOSPHERE_VARIABLES[1:]]
    cmap = scatters[0].cmap
    cols = np.ascontiguousarray(cmap[cmap < basis.nchan])
    nvar = len(ATMOSPHERE_VARIABLES)
    scratch = np.zeros((nvar, FOLD_ROWS, basis.nchan), dtype=np.float32)  # the columns the sensor lacks stay 0
    try:
        for a, b, values, first, fill in lead:
            pieces = [(values, first, fill)] + [follower.rows(a, b) for follower in followers]
            for p in range(a, b, FOLD_ROWS):  # a few MB of scratch whatever the storage's blocks
                q = min(b, p + FOLD_ROWS)
                rows, lo_k, hi_k = _kept_rows(keep, p, q)
                d0, nk = offset + lo_k, hi_k - lo_k
                m, dt = mask[d0 : d0 + nk], dirty[d0 : d0 + nk]
                for k, (v, f, fl) in enumerate(pieces):
                    scatters[k](v[p - a : q - a], f, fl, rows, 0, scratch[k], m, dt)
                if nk:
                    all_sky_rows(*(scratch[k, :nk] for k in range(nvar)), cloud[d0 : d0 + nk], cols,
                                 *(arr[d0 : d0 + nk] for arr in arrays))  # fmt: skip
    finally:
        for gen in [lead] + [f.blocks for f in followers]:
            gen.close()  # each generator's file (its netCDF dataset) closed now, also after an error
    return scatters


__all__ = ["ATMOSPHERE_VARIABLES", "CHANNEL_VARIABLES", "FIELDS", "channel_arrays", "read_per_channel"]
