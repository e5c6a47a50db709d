"""Classic sea ice concentration products for comparison: NASA Team and Bootstrap maps of a run.

Both algorithms (:mod:`empirical_seaice.products.sic_algorithms`: tie points and
formulas) are computed from the same observed TBs as the trained model (19 and
37 GHz), gridded as a daily mean per grid point, step and sensor. They are
what users compare against: the summary scores them against the truth beside
the trained SIC when truth exists.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import chunk_writer
from empirical_seaice.observations import Observations
from empirical_seaice.products import classic_kernels as kernels
from empirical_seaice.products.sic_algorithms import (
    ALGORITHMS,
    BOOTSTRAP_TIE_POINTS,
    NASA_TEAM_TIE_POINTS,
    TIE_POINT_SENSOR,
)

log = logging.getLogger(__name__)
# ---------------------------------------------------------------------------
# Daily gridding and maps
# ---------------------------------------------------------------------------


def grid_daily_mean_tb(obs: Observations, channels: Sequence[str], isensor: int) -> np.ndarray:
    """Daily mean observed TB per grid point and step, for one sensor.

    ``TB[g, t, c] = mean over {i : g(i) = g, t(i) = t, s(i) = isensor, mask_ic} of y_ic``

    summed in float64 in observation order (the values of ``numpy.bincount``'s sums) into a grid-major
    table that becomes the means in place, reading only the rows between the sensor's first and last
    (:mod:`.classic_kernels`; :func:`classic_sic_maps` grids its channels in step blocks instead).

    Parameters
    ----------
    obs : Observations
        Observations in the unified basis.
    channels : sequence of str
        Channel names of the basis (e.g. ``("19v", "19h", "37v")``).
    isensor : int
        Sensor index into ``obs.basis.sensor_names``.

    Returns
    -------
    float64 array (ngrid, nstep, len(channels)); NaN where no valid observation.

    Raises
    ------
    SeaIceError
        A channel the run's channel basis does not have.
    """
    cols = _channel_columns(obs, channels)
    ncell = obs.ngrid * obs.nstep
    total = np.zeros((ncell, len(cols)))
    count = np.zeros((ncell, len(cols)), dtype=np.int32)
    lo, hi = kernels.sensor_rows(np.asarray(obs.isensor), len(obs.basis.sensor_names))
    _daily_sums(obs, cols, isensor, int(lo[isensor]), int(hi[isensor]), total, count, grid_major=True)
    kernels.means_in_place(total, count)
    return total.reshape(obs.ngrid, obs.nstep, len(cols))


def _channel_columns(obs: Observations, channels: Sequence[str]) -> np.ndarray:
    """The basis columns of ``channels`` (int64); SeaIceError naming a channel the basis lacks."""
    missing = [c for c in channels if c not in obs.basis.channel_index]
    if missing:
        raise SeaIceError(
            f"classic SIC: channel(s) {', '.join(missing)} not in the run's channels "
            f"({', '.join(obs.basis.channel_names)})"
        )
    return np.array([obs.basis.channel_index[name] for name in channels], dtype=np.int64)


def _sums_table(obs: Observations, ncol: int, nstep: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Zeroed sums (float64) and counts (int32) of :mod:`.classic_kernels`' table, (cells, ncol), for
    ``nstep`` steps (None: the whole period)."""
    ncell = kernels.table_cells(obs.ngrid, obs.nstep if nstep is None else nstep)
    return np.zeros((ncell, ncol)), np.zeros((ncell, ncol), dtype=np.int32)


def _daily_sums(
    obs: Observations,
    cols: np.ndarray,
    isensor: int,
    lo: int,
    hi: int,
    total: np.ndarray,
    count: np.ndarray,
    grid_major: bool = False,
    t_base: int = 0,
) -> None:
    """Add sensor ``isensor``'s valid TBs of columns ``cols`` in rows ``lo:hi`` to ``total`` and ``count``,
    block by block in observation order (:func:`.classic_kernels.cell_sums`: the step-block table whose
    first step is ``t_base``, or with ``grid_major`` the grid-major one)."""
    for start in range(lo, hi, _BLOCK):
        rows = slice(start, min(start + _BLOCK, hi))
        kernels.cell_sums(
            np.asarray(obs.isensor[rows]), np.asarray(obs.igrid[rows]), np.asarray(obs.istep[rows]),
            np.asarray(obs.tb_obs_k[rows]), np.asarray(obs.mask[rows]), cols, isensor, obs.ngrid, total, count,
            grid_major, t_base,
        )  # fmt: skip
        obs.release(rows)


_BLOCK = 1 << 18
"""Observations read at a time by :func:`grid_daily_mean_tb`."""
CHUNK_STEPS = 4 * kernels.TILE_STEPS
"""Steps of a chunk of :func:`classic_sic_maps`' sums table where a sensor's rows are in step order: its
sums and counts (``ngrid x CHUNK_STEPS`` cells, 43 MB on the ``benchmark`` twin's grid), and the sensor
means' float64 sums, hold one chunk of steps (every sensor's in turn) instead of the whole period (0.25 and
0.08 GB there): less memory to fault in and to read back, and no pass to zero it between the sensors."""


def grid_hemisphere(lat: np.ndarray | None, ngrid: int) -> np.ndarray:
    """Boolean (ngrid,): True for the northern hemisphere (lat >= 0; all north if lat is None)."""
    if lat is None:
        return np.ones(ngrid, dtype=bool)
    return np.asarray(lat) >= 0.0


@dataclass
class ClassicSIC:
    """Classic-algorithm SIC maps (fraction, float32, NaN where no data).

    Attributes
    ----------
    maps : dict of str to array (ngrid, nstep)
        ``"nasa_team"`` and ``"bootstrap"``: the mean over the sensors that
        have a value at that grid point and step.
    per_sensor : dict of (algorithm, sensor) to array (ngrid, nstep)
    sources : dict of str to str
        Tie-point source per (algorithm/sensor) key, for the file attributes.
    open_water : bool array (ngrid, nstep) or None
        With ``open_water=True``: the open-water filter's flags
        (:func:`~.open_water_filter.open_water_mask`) of the sensors gridded here, or-ed.
    open_water_sensors : tuple of int
        The sensors whose flags :attr:`open_water` holds (every sensor gridded here).
    """

    maps: dict[str, np.ndarray]
    per_sensor: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    open_water: np.ndarray | None = None
    open_water_sensors: tuple[int, ...] = ()


def classic_sic_maps(obs: Observations, algorithms: Sequence[str] = ALGORITHMS, open_water: bool = False) -> ClassicSIC:
    """NASA Team and Bootstrap SIC on the run's grid, per day, from the observed TBs.

    For each sensor with (own or substitute, :data:`TIE_POINT_SENSOR`) tie
    points and the channels 19V, 19H, 37V (NASA Team) or 19V, 37V, 37H
    (Bootstrap), the observed TBs are averaged per grid point and step
    (the means of :func:`grid_daily_mean_tb`, one pass over the sensor's rows for all five channels
    19V, 19H, 37V, 37H, 24V) and the algorithm applied to the means
    (:func:`.classic_kernels.classic_tiles`: the numpy functions' values);
    the sensors' maps are then averaged where they have values. Where a sensor's rows are in step
    order (the run's reader keeps them so), its steps are gridded and mapped chunk by chunk of
    :data:`CHUNK_STEPS` in one small table; otherwise in a table of the whole period (the same values).
    With ``open_water``, the same means also give the open-water filter's flags of these sensors
    (:attr:`ClassicSIC.open_water`; on the ``benchmark`` twin the filter's own gridding took 0.8-2.0 s).

    Raises
    ------
    SeaIceError
        An unknown algorithm name, or no sensor of the run has the channels
        and tie points of a requested algorithm.
    """
    unknown = [a for a in algorithms if a not in ALGORITHMS]
    if unknown:
        raise SeaIceError(f"classic SIC: unknown algorithm {unknown[0]!r}; known: {', '.join(ALGORITHMS)}")
    result = ClassicSIC(maps={})
    grid = _SensorGrid(obs, open_water)
    names = obs.basis.sensor_names
    doing = {s: [alg for alg in algorithms if _usable(obs, s, alg)] for s in range(len(names))}
    for alg in algorithms:
        if not any(alg in algs for algs in doing.values()):
            raise SeaIceError(
                f"classic SIC {alg}: no sensor of the run ({', '.join(names)}) "
                f"has the channels {', '.join(_NEED[alg])} and tie points"
            )
    plans = {s: grid.plan(s, algs, result.sources) for s, algs in doing.items() if algs}
    chunks = {s: grid.chunk_rows(s) for s in plans}
    if all(in_order for _, in_order in chunks.values()):  # chunk by chunk of steps, every sensor in each
        result.maps = grid.by_chunks(plans, {s: starts for s, (starts, _) in chunks.items()}, algorithms)
    else:  # sensor by sensor over the whole period
        for s, plan in plans.items():
            grid.whole_period(s, plan)
        result.maps = {alg: grid.sensor_mean(alg) for alg in algorithms}
    for alg in algorithms:
        result.per_sensor.update({(alg, names[s]): plan[0][alg] for s, plan in plans.items() if alg in plan[0]})
    result.sources = {k: result.sources[k] for alg in algorithms for k in result.sources if k.startswith(alg + "/")}
    if open_water:
        result.open_water, result.open_water_sensors = grid.wet, tuple(plans)
    return result


_NEED = {"nasa_team": ("19v", "19h", "37v"), "bootstrap": ("37v", "37h", "19v")}
"""The channels each algorithm reads."""
_ROLES = ("19v", "19h", "37v", "37h", "24v")
"""The channels gridded for the classic algorithms, in the order of :mod:`.classic_kernels`' ``COL_*``."""


def _usable(obs: Observations, s: int, alg: str) -> bool:
    """Whether sensor ``s`` has tie points and the channels of ``alg`` (logged either way)."""
    sname = obs.basis.sensor_names[s]
    tp_name = TIE_POINT_SENSOR.get(sname)
    names, present = obs.basis.channel_index, obs.basis.present[s]
    if tp_name is None or not all(c in names and present[names[c]] for c in _NEED[alg]):
        log.info("classic SIC %s: sensor %s skipped (no tie points or channels)", alg, sname)
        return False
    if tp_name != sname:
        log.info("classic SIC %s: sensor %s uses %s tie points", alg, sname, tp_name)
    return True


class _SensorGrid:
    """The classic maps of a run's sensors: the sums table of the five channels (one table, reused),
    the per-sensor maps and the float64 sums and counts of the sensor means (``[0]`` NASA Team,
    ``[1]`` Bootstrap; summed in sensor order). Where every sensor's rows are in step order
    (:meth:`by_chunks`) the table, the sums and the counts hold a chunk of :data:`CHUNK_STEPS` steps,
    each sensor's in turn; otherwise (:meth:`whole_period`) the whole period, one sensor at a time.
    With ``open_water``, :attr:`wet` gathers the sensors' open-water flags (the kernel's ``wet``)."""

    def __init__(self, obs: Observations, open_water: bool = False):
        self.obs = obs
        shape = (obs.ngrid, obs.nstep) if open_water else (0, 0)
        self.wet = np.zeros(shape, dtype=np.bool_)
        names = obs.basis.channel_index
        self.wanted = [c for c in _ROLES if c in names]
        self.cols = _channel_columns(obs, self.wanted)
        self.col = np.array([self.wanted.index(c) if c in names else -1 for c in _ROLES], dtype=np.int64)
        self.north = grid_hemisphere(obs.lat, obs.ngrid)
        self.lo, self.hi = kernels.sensor_rows(np.asarray(obs.isensor), len(obs.basis.sensor_names))
        self.nchunk = -(-obs.nstep // CHUNK_STEPS)
        self.table: tuple[np.ndarray, np.ndarray] | None = None
        self.sums: np.ndarray | None = None
        self.counts: np.ndarray | None = None

    def plan(self, s: int, algorithms: Sequence[str], sources: dict[str, str]) -> tuple[dict[str, np.ndarray], tuple]:
        """Sensor ``s``'s float32 maps of ``algorithms`` (unfilled) and the arguments of
        :func:`.classic_kernels.classic_tiles` that are its own (columns, tie points, hemispheres,
        maps); the tie points' sources into ``sources``."""
        obs = self.obs
        sname = obs.basis.sensor_names[s]
        tp_name = TIE_POINT_SENSOR[sname]
        tpn, tps = BOOTSTRAP_TIE_POINTS[(tp_name, "north")], BOOTSTRAP_TIE_POINTS[(tp_name, "south")]
        if "nasa_team" in algorithms:
            sources[f"nasa_team/{sname}"] = NASA_TEAM_TIE_POINTS[tp_name].source
        if "bootstrap" in algorithms:
            sources[f"bootstrap/{sname}"] = f"{tpn.source}; {tps.source}"
        names = obs.basis.channel_index
        has22 = "24v" in names and bool(obs.basis.present[s][names["24v"]])
        out = {alg: np.empty((obs.ngrid, obs.nstep), dtype=np.float32) for alg in algorithms}
        none = np.empty((0, 0), dtype=np.float32)
        args = (
            self.col, kernels.nasa_team_table(NASA_TEAM_TIE_POINTS[tp_name]), has22,
            kernels.bootstrap_table(tpn, tps), self.north, out.get("nasa_team", none), out.get("bootstrap", none),
        )  # fmt: skip
        return out, args

    def chunk_rows(self, s: int) -> tuple[np.ndarray, bool]:
        """Whether sensor ``s``'s rows are in step order, and where each chunk of steps starts among them
        (:func:`.classic_kernels.step_chunk_rows`)."""
        obs = self.obs
        return kernels.step_chunk_rows(
            np.asarray(obs.isensor), np.asarray(obs.istep), s, int(self.lo[s]), int(self.hi[s]), CHUNK_STEPS,
            self.nchunk,
        )  # fmt: skip

    def by_chunks(self, plans: dict, starts: dict[int, np.ndarray], algorithms: Sequence[str]) -> dict[str, np.ndarray]:
        """Every sensor's maps (``plans``) chunk by chunk of steps (``starts``: each sensor's chunk rows):
        in each chunk the sensors in turn (sums, then the algorithms on the run's threads, which leave the
        table zero), then the chunk's sensor means; returns the float32 sensor means of ``algorithms``."""
        obs = self.obs
        table = _sums_table(obs, len(self.cols), CHUNK_STEPS)
        sums = np.zeros((2, obs.ngrid, CHUNK_STEPS))
        counts = np.zeros((2, obs.ngrid, CHUNK_STEPS), dtype=np.int16)
        means = {alg: np.empty((obs.ngrid, obs.nstep), dtype=np.float32) for alg in algorithms}
        for k in range(self.nchunk):
            t0, t1 = k * CHUNK_STEPS, min((k + 1) * CHUNK_STEPS, obs.nstep)
            for s, (_, args) in plans.items():
                _daily_sums(obs, self.cols, s, int(starts[s][k]), int(starts[s][k + 1]), *table, t_base=t0)
                _on_threads(functools.partial(self._tiles, table, args, sums, counts, t0), t0, t1)
            for alg, mean in means.items():  # the sums and counts read are left zero for the next chunk
                i = 0 if alg == "nasa_team" else 1
                kernels.sensor_mean(sums[i], counts[i], mean[:, t0:t1])
        return means

    def whole_period(self, s: int, plan: tuple) -> None:
        """Sensor ``s``'s maps (``plan``) over the whole period in one table, added to the sensor means."""
        obs = self.obs
        if self.table is None or self.sums is None or self.counts is None:
            self.table = _sums_table(obs, len(self.cols))
            self.sums = np.zeros((2, obs.ngrid, obs.nstep))
            self.counts = np.zeros((2, obs.ngrid, obs.nstep), dtype=np.int16)
        table, args, sums, counts = self.table, plan[1], self.sums, self.counts
        _daily_sums(obs, self.cols, s, int(self.lo[s]), int(self.hi[s]), *table)
        _on_threads(functools.partial(self._tiles, table, args, sums, counts, 0), 0, obs.nstep)

    def _tiles(
        self, table: tuple, args: tuple, sums: np.ndarray, counts: np.ndarray, base: int, a: int, b: int
    ) -> None:
        """:func:`.classic_kernels.classic_tiles` of steps ``a:b`` of a sensor's table (its first step and that of
        ``sums`` and ``counts``: ``base``; ``args``: the sensor's own arguments, :meth:`plan`)."""
        kernels.classic_tiles(*table, self.obs.ngrid, a, b, base, *args, sums, counts, base, self.wet)

    def sensor_mean(self, alg: str) -> np.ndarray:
        """The float32 sensor mean of ``alg`` over the whole period (NaN where no sensor has a value)."""
        assert self.sums is not None and self.counts is not None
        k = 0 if alg == "nasa_team" else 1
        mean = np.empty((self.obs.ngrid, self.obs.nstep), dtype=np.float32)
        kernels.sensor_mean(self.sums[k], self.counts[k], mean)
        return mean


def _on_threads(fn, t_lo: int, t_hi: int) -> None:
    """``fn(t0, t1)`` over the steps ``t_lo:t_hi`` (``t_lo`` a multiple of the tile) split into one run of
    whole tiles per thread of the run (:func:`.chunk_writer.threads`; the compiled kernel releases the
    GIL, and each step's values are those of a run on one thread)."""
    nthread = min(chunk_writer.threads(), -(-(t_hi - t_lo) // kernels.TILE_STEPS))
    if nthread <= 1:
        fn(t_lo, t_hi)
        return
    per = -(-(t_hi - t_lo) // (nthread * kernels.TILE_STEPS)) * kernels.TILE_STEPS
    with ThreadPoolExecutor(max_workers=nthread, thread_name_prefix="classic-tiles") as pool:
        list(pool.map(lambda t0: fn(t0, min(t0 + per, t_hi)), range(t_lo, t_hi, per)))


def sic_rmse(sic: np.ndarray, truth: np.ndarray) -> float:
    """RMSE of a SIC map versus the truth over the points where both are finite."""
    sic = np.asarray(sic, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    ok = np.isfinite(sic) & np.isfinite(truth)
    if not ok.any():
        return float("nan")
    return float(np.sqrt(np.mean((sic[ok] - truth[ok]) ** 2)))


def write_classic_sic(path: Path, classic: ClassicSIC, obs: Observations, steps_per_day: int = 1) -> Path:
    """Write ``classic_sic_TAG.nc``: one (time, grid) variable per algorithm
    (sensor mean) and per algorithm and sensor (``nasa_team_amsr2``, ...),
    with lon/lat, the steps' ``time`` (the coordinate variable of the dimension ``time``, first: what
    CDO reads) and ``time_bnds`` (CF, days since 1970-01-01) and ``julian_day``, and the tie-point
    sources as attributes. The (grid, step) maps are transposed as they are written."""
    import xarray as xr

    from empirical_seaice.io import cf
    from empirical_seaice.io.output_writer import _lonlat, time_major
    from empirical_seaice.io.outputs import step_julian_day, write_dataset

    def sic_attrs(long_name: str, **extra) -> dict:
        return {"units": "1", "long_name": long_name, **cf.STANDARD["sic"], **extra}

    data_vars: dict[str, tuple[Any, ...]] = {}
    for alg, arr in classic.maps.items():
        data_vars[alg] = (
            ("time", "grid"),
            time_major(arr),
            sic_attrs(f"sea ice concentration, {alg.replace('_', ' ')} algorithm, mean over sensors"),
        )
    for (alg, sname), arr in classic.per_sensor.items():
        data_vars[f"{alg}_{sname}"] = (
            ("time", "grid"),
            time_major(arr),
            sic_attrs(
                f"sea ice concentration, {alg.replace('_', ' ')} algorithm, {sname}",
                tie_points=classic.sources.get(f"{alg}/{sname}", ""),
            ),
        )
    jd = step_julian_day(obs.jd_origin, obs.stepstart, obs.nstep, 0, steps_per_day)
    t = cf.julian_day_to_time(jd)
    half = 0.5 / steps_per_day
    data_vars["julian_day"] = (
        ("time",),
        jd,
        {"units": "days", "long_name": "Julian day at the centre of the step's 21 UTC window"},
    )
    coords: dict[str, Any] = {
        "time": (("time",), t, cf.time_attrs("centre of the step's 21 UTC window", bounds="time_bnds")),
        "time_bnds": (("time", "nv"), np.stack([t - half, t + half], axis=1)),
    }
    if obs.lon is not None and obs.lat is not None:
        coords.update(_lonlat(obs.lon, obs.lat, len(obs.lon)))
    ds = xr.Dataset(
        data_vars,
        coords=coords,
        attrs={
            "title": "classic sea ice concentration algorithms on the run's grid (daily means of observed TB)",
            "references": "Cavalieri et al. 1984 doi:10.1029/JD089iD04p05355; Comiso 1986 doi:10.1029/JC091iC01p00975; "
            + cf.REFERENCES,
            "stepstart": int(obs.stepstart),
            "jd_origin": float(obs.jd_origin),
        },
    )
    return write_dataset(ds, Path(path))


__all__ = [
    "grid_daily_mean_tb",
    "grid_hemisphere",
    "ClassicSIC",
    "classic_sic_maps",
    "sic_rmse",
    "write_classic_sic",
]
