"""Classic sea ice concentration products for comparison: NASA Team and Bootstrap maps of a run.

Both algorithms (:mod:`empirical_seaice.products.sic_algorithms`: tie points and
formulas) are computed from the same observed TBs as the trained model (19 and
37 GHz), gridded as a daily mean per grid point, step and sensor. They are
what users compare against: the summary scores them against the truth beside
the trained SIC when truth exists.
"""

from __future__ import annotations

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
from empirical_seaice.products.sic_algorithms import (
    ALGORITHMS,
    BOOTSTRAP_TIE_POINTS,
    NASA_TEAM_TIE_POINTS,
    TIE_POINT_SENSOR,
    bootstrap,
    nasa_team,
)

log = logging.getLogger(__name__)
# ---------------------------------------------------------------------------
# Daily gridding and maps
# ---------------------------------------------------------------------------


def grid_daily_mean_tb(obs: Observations, channels: Sequence[str], isensor: int) -> np.ndarray:
    """Daily mean observed TB per grid point and step, for one sensor.

    ``TB[g, t, c] = mean over {i : g(i) = g, t(i) = t, s(i) = isensor, mask_ic} of y_ic``

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
    missing = [c for c in channels if c not in obs.basis.channel_index]
    if missing:
        raise SeaIceError(
            f"classic SIC: channel(s) {', '.join(missing)} not in the run's channels "
            f"({', '.join(obs.basis.channel_names)})"
        )
    ncell = obs.ngrid * obs.nstep
    cols = np.array([obs.basis.channel_index[name] for name in channels], dtype=np.int64)
    total = np.zeros((ncell, len(channels)))
    count = np.zeros((ncell, len(channels)), dtype=np.int32)
    for start in range(0, obs.nobs, _BLOCK):  # the sensor's rows, block by block, in observation order
        rows = slice(start, start + _BLOCK)
        _cell_sums(
            np.asarray(obs.isensor[rows]), np.asarray(obs.igrid[rows]), np.asarray(obs.istep[rows]),
            np.asarray(obs.tb_obs_k[rows]), np.asarray(obs.mask[rows]), cols, isensor, obs.nstep, total, count,
        )  # fmt: skip
        obs.release(rows)
    _means(total, count)
    return total.reshape(obs.ngrid, obs.nstep, len(channels))


def _cell_sums_py(isensor, igrid, istep, tb, mask, cols, s, nstep, total, count):  # pragma: no cover - compiled
    """Add the valid TBs of sensor ``s`` (columns ``cols``) of a block to their cell's ``total``
    (float64, in observation order, as ``numpy.bincount`` sums) and ``count``."""
    for i in range(isensor.shape[0]):
        if isensor[i] != s:
            continue
        cell = np.int64(igrid[i]) * nstep + np.int64(istep[i])
        for j in range(cols.shape[0]):
            c = cols[j]
            if mask[i, c]:
                total[cell, j] += np.float64(tb[i, c])
                count[cell, j] += 1


def _means_py(total, count):  # pragma: no cover - compiled
    """``total`` becomes the mean (``total / count``), NaN where ``count`` is 0."""
    for k in range(total.shape[0]):
        for j in range(total.shape[1]):
            total[k, j] = total[k, j] / count[k, j] if count[k, j] > 0 else np.nan


_cell_sums: Any
_means: Any
try:
    from empirical_seaice.compiled import njit

    _cell_sums = njit(cache=True, nogil=True)(_cell_sums_py)
    _means = njit(cache=True, nogil=True)(_means_py)
except ImportError:  # pragma: no cover - exercised only where numba is absent
    _cell_sums, _means = _cell_sums_py, _means_py


_BLOCK = 1 << 18
"""Observations read at a time by :func:`grid_daily_mean_tb`."""


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
    """

    maps: dict[str, np.ndarray]
    per_sensor: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)


def classic_sic_maps(obs: Observations, algorithms: Sequence[str] = ALGORITHMS) -> ClassicSIC:
    """NASA Team and Bootstrap SIC on the run's grid, per day, from the observed TBs.

    For each sensor with (own or substitute, :data:`TIE_POINT_SENSOR`) tie
    points and the channels 19V, 19H, 37V (NASA Team) or 19V, 37V, 37H
    (Bootstrap), the observed TBs are averaged per grid point and step
    (:func:`grid_daily_mean_tb`) and the algorithm applied to the means;
    the sensors' maps are then averaged where they have values.

    Raises
    ------
    SeaIceError
        An unknown algorithm name, or no sensor of the run has the channels
        and tie points of a requested algorithm.
    """
    unknown = [a for a in algorithms if a not in ALGORITHMS]
    if unknown:
        raise SeaIceError(f"classic SIC: unknown algorithm {unknown[0]!r}; known: {', '.join(ALGORITHMS)}")
    names = obs.basis.channel_index
    north = grid_hemisphere(obs.lat, obs.ngrid)[:, None]
    result = ClassicSIC(maps={})
    wanted = [c for c in ("19v", "19h", "37v", "37h", "24v") if c in names]
    need = {alg: ("19v", "19h", "37v") if alg == "nasa_team" else ("37v", "37h", "19v") for alg in algorithms}
    maps: dict[str, list[tuple[str, np.ndarray]]] = {alg: [] for alg in algorithms}
    total = {alg: np.zeros((obs.ngrid, obs.nstep)) for alg in algorithms}
    count = {alg: np.zeros((obs.ngrid, obs.nstep), dtype=np.int64) for alg in algorithms}
    for s, sname in enumerate(obs.basis.sensor_names):  # one pass over the observations per sensor
        means = None
        for alg in algorithms:
            tp_name = TIE_POINT_SENSOR.get(sname)
            present = obs.basis.present[s]
            if tp_name is None or not all(c in names and present[names[c]] for c in need[alg]):
                log.info("classic SIC %s: sensor %s skipped (no tie points or channels)", alg, sname)
                continue
            if tp_name != sname:
                log.info("classic SIC %s: sensor %s uses %s tie points", alg, sname, tp_name)
            if means is None:
                means = grid_daily_mean_tb(obs, wanted, s)
            sic = _classic_sic(alg, sname, tp_name, means, wanted, need[alg], present, names, north, result)
            maps[alg].append((sname, sic.astype(np.float32)))
            ok = np.isfinite(sic)  # the mean over the sensors, summed in sensor order (np.nansum's order)
            total[alg] += np.where(ok, sic, 0.0)
            count[alg] += ok
    for alg in algorithms:
        if not maps[alg]:
            raise SeaIceError(
                f"classic SIC {alg}: no sensor of the run ({', '.join(obs.basis.sensor_names)}) "
                f"has the channels {', '.join(need[alg])} and tie points"
            )
        result.per_sensor.update({(alg, sname): sic for sname, sic in maps[alg]})
        with np.errstate(invalid="ignore"):
            mean = np.where(count[alg] > 0, total[alg] / np.maximum(count[alg], 1), np.nan)
        result.maps[alg] = mean.astype(np.float32)
    result.sources = {k: result.sources[k] for alg in algorithms for k in result.sources if k.startswith(alg + "/")}
    return result


def _classic_sic(alg, sname, tp_name, means, wanted, need, present, names, north, result) -> np.ndarray:
    """One algorithm's SIC (ngrid, nstep) float64 from one sensor's daily mean TBs ``means`` (of the
    channels ``wanted``), a block of grid points at a time (the algorithms' temporaries stay small);
    records the tie points' source in ``result.sources``."""
    cols = [wanted.index(c) for c in need]
    tb22 = wanted.index("24v") if alg == "nasa_team" and "24v" in names and present[names["24v"]] else None
    out = np.empty(means.shape[:2])
    if alg == "nasa_team":
        tp = NASA_TEAM_TIE_POINTS[tp_name]
        result.sources[f"nasa_team/{sname}"] = tp.source
    else:
        tpn, tps = BOOTSTRAP_TIE_POINTS[(tp_name, "north")], BOOTSTRAP_TIE_POINTS[(tp_name, "south")]
        result.sources[f"bootstrap/{sname}"] = f"{tpn.source}; {tps.source}"

    def block(g0: int) -> None:
        g = slice(g0, g0 + _GRID_BLOCK)
        tb = means[g][..., cols]
        if alg == "nasa_team":
            extra = means[g][..., tb22] if tb22 is not None else None
            out[g] = nasa_team(tb[..., 0], tb[..., 1], tb[..., 2], tp, tb22v_k=extra).total
        else:
            out[g] = np.where(
                north[g],
                bootstrap(tb[..., 0], tb[..., 1], tb[..., 2], tpn),
                bootstrap(tb[..., 0], tb[..., 1], tb[..., 2], tps),
            )

    # the blocks on the run's threads (numpy releases the GIL in its loops); each block's values as alone
    with ThreadPoolExecutor(max_workers=chunk_writer.threads(), thread_name_prefix="classic-blocks") as pool:
        list(pool.map(block, range(0, means.shape[0], _GRID_BLOCK)))
    return out


_GRID_BLOCK = 512
"""Grid points per block of the classic algorithms."""


def sic_rmse(sic: np.ndarray, truth: np.ndarray) -> float:
    """RMSE of a SIC map versus the truth over the points where both are finite."""
    sic = np.asarray(sic, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    ok = np.isfinite(sic) & np.isfinite(truth)
    if not ok.any():
        return float("nan")
    return float(np.sqrt(np.mean((sic[ok] - truth[ok]) ** 2)))


def write_classic_sic(path: Path, classic: ClassicSIC, obs: Observations, steps_per_day: int = 1) -> Path:
    """Write ``classic_sic_TAG.nc``: one (grid, step) variable per algorithm
    (sensor mean) and per algorithm and sensor (``nasa_team_amsr2``, ...),
    with lon/lat, the steps' ``time`` and ``time_bnds`` (CF, days since
    1970-01-01) and ``julian_day``, and the tie-point sources as attributes."""
    import xarray as xr

    from empirical_seaice.io import cf
    from empirical_seaice.io.outputs import step_julian_day, write_dataset

    def sic_attrs(long_name: str, **extra) -> dict:
        return {"units": "1", "long_name": long_name, **cf.STANDARD["sic"], **extra}

    data_vars: dict[str, tuple[Any, ...]] = {}
    for alg, arr in classic.maps.items():
        data_vars[alg] = (
            ("grid", "step"),
            np.asarray(arr, np.float32),
            sic_attrs(f"sea ice concentration, {alg.replace('_', ' ')} algorithm, mean over sensors"),
        )
    for (alg, sname), arr in classic.per_sensor.items():
        data_vars[f"{alg}_{sname}"] = (
            ("grid", "step"),
            np.asarray(arr, np.float32),
            sic_attrs(
                f"sea ice concentration, {alg.replace('_', ' ')} algorithm, {sname}",
                tie_points=classic.sources.get(f"{alg}/{sname}", ""),
            ),
        )
    jd = step_julian_day(obs.jd_origin, obs.stepstart, obs.nstep, 0, steps_per_day)
    t = cf.julian_day_to_time(jd)
    half = 0.5 / steps_per_day
    data_vars["julian_day"] = (
        ("step",),
        jd,
        {"units": "days", "long_name": "Julian day at the centre of the step's 21 UTC window"},
    )
    coords = {
        "time": (("step",), t, cf.time_attrs("centre of the step's 21 UTC window", bounds="time_bnds")),
        "time_bnds": (("step", "nv"), np.stack([t - half, t + half], axis=1)),
    }
    if obs.lon is not None and obs.lat is not None:
        coords["lon"] = (("grid",), np.asarray(obs.lon, np.float32), cf.lonlat_attrs("lon"))
        coords["lat"] = (("grid",), np.asarray(obs.lat, np.float32), cf.lonlat_attrs("lat"))
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
