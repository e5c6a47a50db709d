"""Columnar observations in the unified channel basis (numpy only, no torch).

:class:`Observations` is what the readers in :mod:`empirical_seaice.io` produce
and what the network, the trainer and the diagnostics consume. Arrays may be
``numpy.memmap`` views of the cache in the output directory. Per-observation
arrays have shape ``(nobs,)``; per-observation-and-channel arrays have shape
``(nobs, nchan)`` in the basis :attr:`Observations.basis`. Names follow
docs/method.md ("Notation").

:class:`BackgroundMaps` holds the background SIC (the initial value of the
trainable SIC map, with ``nlag`` leading columns for the days before the
period) and the daily skin-temperature map.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from empirical_seaice.all_sky import CLEAR_CLOUDY_FIELDS, all_sky_fields
from empirical_seaice.memory import release_file_pages
from empirical_seaice.sensors import ChannelBasis

WINDOW_OFFSET_DAYS = 0.375
"""Offset (days) of the 21 UTC-21 UTC assimilation window from Julian-day noon."""

PER_OBS_FIELDS = (
    "igrid",
    "istep",
    "isensor",
    "t_skin_k",
    "wind_ms",
    "cloud_fraction",
    "zenith_deg",
    "julian_day",
    "obs_index",
)
PER_CHANNEL_FIELDS = (
    "tb_obs_k",
    "mask",
    "emis_water",
    "tau_eff",
    "down_eff_k",
    "const_k",
)


def step_index(julian_day: np.ndarray, jd_origin: float, n_per_day: int = 1) -> np.ndarray:
    """Time step of each observation by the 21 UTC window rule.

    ``t(i) = floor(n_per_day * (JD_i - jd_origin - 0.375))`` (docs/method.md). Astronomical Julian days
    start at 12 UTC, so the step boundaries fall at 21 UTC.

    Parameters
    ----------
    julian_day : float64 array
        Julian day of each observation (days).
    jd_origin : float
        The period's origin (days): the ``floor`` of the first Julian day of the bulk of the data, or
        the day ``--start-date`` sets (docs/data-format.md, "Time steps and the period").
    n_per_day : int
        Steps per day (1 = daily).

    Returns
    -------
    int64 array of step indices (may be negative for an observation before
    the 21 UTC that follows ``jd_origin``).

    Examples
    --------
    >>> step_index(np.array([2459000.374, 2459000.376, 2459001.376]), 2459000.0)
    array([-1,  0,  1])
    """
    jd = np.asarray(julian_day, dtype=np.float64)
    return np.floor(n_per_day * (jd - jd_origin - WINDOW_OFFSET_DAYS)).astype(np.int64)


@dataclass
class Observations:
    """All observations of a run, columnar, in the unified channel basis.

    Per observation (nobs,)
        igrid (int32): grid point g(i), 0-based.
        istep (int32): time step t(i) within the selected period, 0-based.
        isensor (int16): index into ``basis.sensor_names``.
        t_skin_k (float32): skin temperature T_s (K).
        wind_ms (float32): 10 m wind speed u (m/s).
        cloud_fraction (float32): f_cld (0..1).
        zenith_deg (float32): satellite zenith angle (degrees); NaN if absent.
        julian_day (float64): Julian day (days).
        obs_index (int64): index of the observation in its sensor's files.
    Per observation and channel (nobs, nchan), float32 unless stated
        tb_obs_k: observed TB y (K); 0 where masked.
        mask (bool): channel present on the sensor and value valid.
        emis_water: ocean emissivity e_w.
        tau_eff, down_eff_k, const_k: the all-sky atmosphere as one effective
            specular atmosphere, ``tau*``, ``D*`` (K) and ``K`` (K), made of the
            clear and cloudy columns' transmittance, downwelling TB at the
            surface and upwelling TB at the top of the atmosphere and the cloud
            fraction (:func:`empirical_seaice.all_sky.all_sky_fields`; :meth:`from_columns`
            builds an instance from those); the reader's are 0 where masked.
    Metadata
        basis: the unified channel basis.
        ngrid: number of grid points.
        nstep: number of time steps in the selected period.
        jd_origin: floor of the smallest Julian day of the whole dataset.
        stepstart: first selected step, counted from ``jd_origin``'s window.
        lon, lat (float32, (ngrid,)) or None: grid geolocation (degrees).
        source_digest: checksum of the input files' content (what a resumed run must match).
        read_warnings: the warnings the read of the files logged (on a hit of the data cache, those of the
            read that built it, said again).
    """

    igrid: np.ndarray
    istep: np.ndarray
    isensor: np.ndarray
    t_skin_k: np.ndarray
    wind_ms: np.ndarray
    cloud_fraction: np.ndarray
    zenith_deg: np.ndarray
    julian_day: np.ndarray
    obs_index: np.ndarray
    tb_obs_k: np.ndarray
    mask: np.ndarray
    emis_water: np.ndarray
    tau_eff: np.ndarray
    down_eff_k: np.ndarray
    const_k: np.ndarray
    basis: ChannelBasis
    ngrid: int
    nstep: int
    jd_origin: float
    stepstart: int = 0
    lon: np.ndarray | None = None
    lat: np.ndarray | None = None
    source_digest: str = ""
    read_warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = self.igrid.shape[0]
        for name in PER_OBS_FIELDS:
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise ValueError(f"Observations.{name}: expected shape ({n},), got {arr.shape}")
        for name in PER_CHANNEL_FIELDS:
            arr = getattr(self, name)
            if arr.shape != (n, self.basis.nchan):
                raise ValueError(f"Observations.{name}: expected shape ({n}, {self.basis.nchan}), got {arr.shape}")

    @classmethod
    def from_columns(cls, **fields: Any) -> Observations:
        """An instance from the clear and cloudy columns' terms (``tau``, ``t_down_k``, ``t_up_k``,
        ``tau_cld``, ``t_down_cld_k``, ``t_up_cld_k``; (nobs, nchan) each) in place of the effective
        atmosphere, folded with ``cloud_fraction`` by :func:`~empirical_seaice.all_sky.all_sky_fields`;
        every other keyword as the constructor's."""
        columns = {name: fields.pop(name) for name in CLEAR_CLOUDY_FIELDS}
        folded: dict[str, Any] = all_sky_fields(**columns, cloud_fraction=fields["cloud_fraction"])
        return cls(**fields, **folded)

    @property
    def nobs(self) -> int:
        return int(self.igrid.shape[0])

    @property
    def nchan(self) -> int:
        return self.basis.nchan

    def __len__(self) -> int:
        return self.nobs

    def take(self, index: np.ndarray, piece: int = 1 << 20) -> Observations:
        """A new :class:`Observations` holding the rows ``index`` (a copy; int64, ascending: a sharded run's
        rank's observations), copied ``piece`` rows at a time, the pages of a memory-mapped array each piece
        read then dropped (:func:`release_pages`): the copy holds the rows, the process not the whole file
        (a rank's rows are spread over all of it; on the ``benchmark`` twin the cache's 1.2 GiB stayed
        resident in every rank)."""
        index = np.asarray(index, dtype=np.int64)
        rows: dict[str, Any] = {}
        for name in PER_OBS_FIELDS + PER_CHANNEL_FIELDS:
            arr = getattr(self, name)
            copy = np.empty((index.size, *arr.shape[1:]), dtype=arr.dtype)
            for a in range(0, index.size, piece):
                part = index[a : a + piece]
                copy[a : a + part.size] = arr[part]
                release_pages(arr, slice(int(part.min()), int(part.max()) + 1))
            rows[name] = copy
        return replace(self, **rows)

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-observation and per-channel arrays by name."""
        return {name: getattr(self, name) for name in PER_OBS_FIELDS + PER_CHANNEL_FIELDS}

    def release(self, rows: slice | None = None) -> None:
        """Drop this process's resident pages of the memory-mapped arrays over ``rows`` (None = all).

        A streamed pass over the observations (packing, diagnostics) calls it after each chunk, so
        the pages it read do not stay counted in the process's memory: they stay in the page cache
        and come back on the next access. Arrays in ordinary memory are left alone.
        """
        for arr in self.arrays().values():
            release_pages(arr, rows)


def release_pages(arr: np.ndarray, rows: slice | None = None) -> None:
    """``madvise(MADV_DONTNEED)`` on the whole pages of the rows ``rows`` of ``arr`` when it is a
    ``numpy.memmap`` of a file, read-only or shared (``mode`` "r", "r+" or "w+": a written page
    stays in the file's page cache, dirty until written back, and is read back from there); else
    nothing (an array in ordinary memory, or a copy-on-write map, mode "c", whose changes would be
    lost). See :meth:`Observations.release`; the advice itself is
    :func:`~empirical_seaice.memory.release_file_pages`'s, inside the array's own map."""
    m = getattr(arr, "_mmap", None)
    if m is None or not isinstance(arr, np.memmap):
        return
    if arr.flags.writeable and getattr(arr, "mode", "c") not in ("r+", "w+"):
        return
    if arr.ndim == 0 or not arr.shape[0]:
        return
    base = np.frombuffer(m, dtype=np.uint8, count=1).ctypes.data
    release_file_pages(arr if rows is None else arr[rows], [(base, base + len(m))])


@dataclass
class BackgroundMaps:
    """Background sea ice concentration and daily skin temperature on the grid.

    Attributes
    ----------
    sic : float32 array (ngrid, nstep + nlag)
        Background SIC C_b; column ``l`` < nlag are the days before the period.
        It initialises the trainable SIC map C.
    t_skin_map_k : float32 array (ngrid, nstep)
        Daily skin temperature T_map (K), used by the warm-ice term.
    lon, lat : float32 arrays (ngrid,) or None
        Grid geolocation (degrees).
    nlag : int
        Number of lag columns at the start of ``sic``.
    """

    sic: np.ndarray
    t_skin_map_k: np.ndarray
    nlag: int
    lon: np.ndarray | None = None
    lat: np.ndarray | None = None

    @property
    def ngrid(self) -> int:
        return int(self.sic.shape[0])

    @property
    def nstep(self) -> int:
        return int(self.sic.shape[1] - self.nlag)


__all__ = [
    "Observations",
    "BackgroundMaps",
    "step_index",
    "WINDOW_OFFSET_DAYS",
    "PER_OBS_FIELDS",
    "PER_CHANNEL_FIELDS",
]
