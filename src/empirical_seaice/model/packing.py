"""Packing the observations into the float table of ``ObservationTensors``, compiled.

One pass over the observations, row by row (numba): each input value is read
once, straight from the run's arrays (the memory-mapped ``.npy`` cache in a
normal run), and each packed value written once, with no temporary array of
the observations' size. Per row (columns as in ``ObservationTensors``):

- ``t_skin_k``, ``wind_ms``, ``cloud_fraction``, ``cos2_scan``, ``cos_view`` (:class:`SensorAngles`: the
  sensor's value, looked up by ``isensor`` in the pass, or a cross-track sensor's per row, computed per chunk);
- per channel of the row's own sensor (column ``k``: basis channel ``channel_map[isensor, k]``, 0 past the
  sensor's last; :func:`empirical_seaice.model.tensors.channel_map`) ``tb_obs_k``, ``emis_water`` and the
  effective all-sky atmosphere ``tau_eff``, ``down_eff_k``, ``const_k`` (the reader folded the clear and
  cloudy columns into it: :mod:`empirical_seaice.all_sky`).

The integer table gets ``igrid``, ``istep``, ``isensor`` and the mask of the row's channels as bits
(:func:`mask_words`; bit ``k mod 32`` of word ``k // 32`` for column ``k``), 4 bytes per observation instead
of a float per channel. A mask bit set on a channel the row's sensor lacks is refused (a one-line error:
the row has no column for it).
Non-finite inputs (NaN, inf) count as 0, as in the tensor path. The
float32 table is the tensor path's bit for bit (tested); a float64 table (gradient
checks, the tensor path) gets the same values. Chunks of :data:`CHUNK` rows; after each chunk the resident
pages of memory-mapped inputs are dropped
(:meth:`~empirical_seaice.observations.Observations.release`), so packing
does not hold the cache in memory beside the table. (A streamed pass's block is packed from plain views,
:class:`~empirical_seaice.model.tensors.ObservationBlocks`: the pass drops those pages after the block.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

try:
    from numba import prange

    from empirical_seaice.compiled import njit

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is absent
    HAVE_NUMBA = False

from empirical_seaice.all_sky import finite_value
from empirical_seaice.errors import SeaIceError
from empirical_seaice.observations import Observations
from empirical_seaice.threads import numba_threads

CHUNK = 1 << 18
"""Observations packed per call (bounds the per-observation angle temporaries and the resident cache pages)."""


def _pack_rows(  # noqa: C901, PLR0913 - one array per packed field
    out,
    ints,
    cols,
    isensor,
    igrid,
    istep,
    t_skin,
    wind,
    cloud,
    angle_s,
    cos2,
    cosv,
    tb,
    mask,
    ew,
    tau,
    down,
    const,
    cmap,
    stray,
):
    """Fill ``out[i, :]`` and ``ints[i, :]`` (``igrid``, ``istep``, ``isensor``, then the mask words) for every
    row ``i`` of the inputs (see the module docstring). ``cols``: the first column of t_skin, wind, cloud,
    cos2_scan, cos_view, tb_obs_k, emis_water, tau_eff, down_eff_k, const_k. ``angle_s`` (3, nsensor)
    float64: per sensor its rows' ``cos2_scan`` and ``cos_view``, and whether its rows take theirs from
    ``cos2``, ``cosv`` (per row: a cross-track sensor's) instead (1.0) or not (0.0). ``cmap`` (nsensor,
    width): the basis channel of each channel column of a sensor's rows (``nc``: none, packed as 0).
    ``stray`` (one per chunk of rows): set to the first row of the chunk whose mask has a channel its
    sensor lacks (left as it is where none has).

    A row's mask goes through an array of the pass's own (its ``nc`` channels as 0 or 1, then a 0 for the
    column of channels a sensor lacks), from which each word's bits are gathered without a branch; its
    channel columns are read straight from the inputs, one loop over the sensor's columns for the five
    fields. On one core, a block of 65,536 rows of three sensors (17 channels) in memory took 75-79 ns a row,
    against 98-110 ns with a branch per mask bit and each field's row first copied through an array of its
    own. In the ``benchmark`` twin's final pass, which reads the cache's pages back in as it packs, its 2.73 M
    rows took 0.31-0.35 s against 0.35-0.38 s (benchmarks/results.md, seventeenth round)."""
    n, nc = tb.shape
    width = cmap.shape[1]
    zero = np.float32(0.0)
    nw = ints.shape[1] - 3  # the columns before the mask words: igrid, istep, isensor (tensors.INT_FIELDS)
    c_tb, c_ew, c_tau, c_down, c_k = cols[5], cols[6], cols[7], cols[8], cols[9]
    nchunk = min(n, _NCHUNK)
    for k in prange(nchunk):
        bits = np.zeros(nc + 1, np.int64)  # + one 0 past the basis channels: the column a sensor lacks
        for i in range((n * k) // nchunk, (n * (k + 1)) // nchunk):
            ints[i, 0] = igrid[i]
            ints[i, 1] = istep[i]
            ints[i, 2] = isensor[i]
            s = isensor[i]
            own = cmap[s]
            total = 0
            for c in range(nc):
                b = np.int64(mask[i, c])
                bits[c] = b
                total += b
            kept = 0
            for w in range(nw):
                word = np.int64(0)
                for j in range(32 * w, min(32 * w + 32, width)):
                    b = bits[own[j]]
                    word |= b << (j - 32 * w)
                    kept += b
                ints[i, 3 + w] = word  # truncated to int32: bit 31 is the sign bit
            if kept != total and stray[k] < 0:  # a channel of the mask that the sensor lacks
                stray[k] = i
            rowwise = angle_s[2, s] != 0.0
            f = np.float32(cloud[i]) if np.isfinite(cloud[i]) else zero
            out[i, cols[0]] = t_skin[i] if np.isfinite(t_skin[i]) else zero
            out[i, cols[1]] = wind[i] if np.isfinite(wind[i]) else zero
            out[i, cols[2]] = f
            out[i, cols[3]] = cos2[i] if rowwise else angle_s[0, s]
            out[i, cols[4]] = cosv[i] if rowwise else angle_s[1, s]
            for j in range(width):
                c = own[j]
                if c < nc:
                    out[i, c_tb + j] = finite_value(tb[i, c])
                    out[i, c_ew + j] = finite_value(ew[i, c])
                    out[i, c_tau + j] = finite_value(tau[i, c])
                    out[i, c_down + j] = finite_value(down[i, c])
                    out[i, c_k + j] = finite_value(const[i, c])
                else:  # past the sensor's last channel
                    out[i, c_tb + j] = zero
                    out[i, c_ew + j] = zero
                    out[i, c_tau + j] = zero
                    out[i, c_down + j] = zero
                    out[i, c_k + j] = zero


_NCHUNK = 64
"""Fixed chunks of rows of :func:`_pack_rows` (run in parallel; each with its own channel arrays)."""


if HAVE_NUMBA:
    _pack_rows = njit(cache=True, parallel=True)(_pack_rows)

_COLUMNS = (
    "t_skin_k",
    "wind_ms",
    "cloud_fraction",
    "cos2_scan",
    "cos_view",
    "tb_obs_k",
    "emis_water",
    "tau_eff",
    "down_eff_k",
    "const_k",
)


def mask_words(mask: np.ndarray) -> np.ndarray:
    """A mask (n, ncol) bool as (n, ceil(ncol / 32)) int32 words: column ``c`` is bit ``c mod 32`` of word
    ``c // 32`` (the packed integer table's mask columns, of each row's own channels; the tensor path's
    packing)."""
    m = np.asarray(mask, dtype=bool)
    n, nc = m.shape
    words = np.zeros((n, max(1, -(-nc // 32))), dtype=np.uint32)
    for c in range(nc):
        words[:, c // 32] |= m[:, c].astype(np.uint32) << np.uint32(c % 32)
    return words.view(np.int32)


def stray_channel(obs: Observations, i: int, cmap: np.ndarray) -> SeaIceError:
    """The one-line error for observation ``i``, whose mask has a channel its sensor lacks (``cmap``: the
    sensor's channels): the packed tables hold a sensor's own channels only, so it would be dropped."""
    s = int(obs.isensor[i])
    c = next(c for c in np.flatnonzero(np.asarray(obs.mask[i], dtype=bool)) if c not in cmap[s])
    return SeaIceError(
        f"Observations.mask: observation {i} (sensor {obs.basis.sensor_names[s]}) has channel "
        f"{obs.basis.channel_names[c]}, which the basis says that sensor lacks; build the observations "
        "from the same sensor basis"
    )


@dataclass(frozen=True)
class SensorAngles:
    """The ``cos2_scan`` and ``cos_view`` columns of the packed table, by sensor.

    ``table`` (3, nsensor) float64: per sensor the value of its rows' ``cos2_scan``, of their ``cos_view``,
    and 1.0 where its rows have their own (a cross-track sensor: from each row's zenith angle), else 0.0.
    ``rows(rows)``: the ``cos2_scan`` and ``cos_view`` (float64) of the observations ``rows`` (a slice),
    read for the rows of the sensors marked 1.0; None when no sensor is marked.
    """

    table: np.ndarray
    rows: Callable[[slice], tuple[np.ndarray, np.ndarray]] | None = None


def pack_floats(
    obs: Observations,
    out: np.ndarray,
    ints: np.ndarray,
    slices: Mapping[str, tuple[int, int | None]],
    angles: SensorAngles,
    cmap: np.ndarray,
    chunk: int = CHUNK,
    threads: int = 1,
) -> bool:
    """Pack every observation of ``obs`` into the float32 table ``out`` (nobs, ncol) with the
    columns of ``slices`` (field -> (first column, end or None)) and into the int32 table ``ints``
    (nobs, 3 + ceil(width / 32)): ``igrid``, ``istep``, ``isensor`` (the tensors' ``INT_FIELDS``), then
    the words of the mask of the row's own channels (:func:`mask_words`). ``angles``: the ``cos2_scan`` and
    ``cos_view`` of each sensor's rows (:class:`SensorAngles`); ``cmap``: the basis channel of each channel
    column of a sensor's rows (:func:`empirical_seaice.model.tensors.channel_map`). On ``threads`` threads
    (at most numba's maximum; the run's thread count: numba's OpenMP layer leaves the count of its last
    parallel loop as the process's OpenMP count, which torch's intra-op pool then uses). Returns False (nothing done)
    without numba or for another dtype (the tensor path packs those)."""
    if not HAVE_NUMBA or out.dtype != np.float32:
        return False
    with numba_threads(threads):
        _pack_all(obs, out, ints, slices, angles, np.ascontiguousarray(cmap, dtype=np.int64), chunk)
    return True


def _pack_all(
    obs: Observations,
    out: np.ndarray,
    ints: np.ndarray,
    slices: Mapping[str, tuple[int, int | None]],
    angles: SensorAngles,
    cmap: np.ndarray,
    chunk: int,
) -> None:
    """:func:`pack_floats`' chunks, compiled; a one-line error for a mask channel that a row's sensor lacks."""
    cols = np.array([slices[name][0] for name in _COLUMNS], dtype=np.int64)
    table = np.ascontiguousarray(angles.table, dtype=np.float64)
    stray = np.full(_NCHUNK, -1, dtype=np.int64)
    none = np.zeros(0, dtype=np.float64)
    for start in range(0, obs.nobs, chunk):
        rows = slice(start, min(start + chunk, obs.nobs))
        cos2, cosv = none, none
        if angles.rows is not None:
            cos2, cosv = (np.ascontiguousarray(a, dtype=np.float64) for a in angles.rows(rows))
        _pack_rows(
            out[rows], ints[rows], cols, obs.isensor[rows], obs.igrid[rows], obs.istep[rows], obs.t_skin_k[rows],
            obs.wind_ms[rows], obs.cloud_fraction[rows], table, cos2, cosv, obs.tb_obs_k[rows], obs.mask[rows],
            obs.emis_water[rows], obs.tau_eff[rows], obs.down_eff_k[rows], obs.const_k[rows], cmap, stray,
        )  # fmt: skip
        if (stray >= 0).any():
            raise stray_channel(obs, start + int(stray[stray >= 0].min()), cmap)
        obs.release(rows)


__all__ = ["pack_floats", "mask_words", "stray_channel", "SensorAngles", "CHUNK", "HAVE_NUMBA"]
