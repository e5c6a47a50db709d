"""The per-observation pass of the reader: Julian days, grid indices, the skin temperature, wind and
cloud of every observation of a sensor; which observations are kept (in the period, every field
valid); duplicated rows; the per-observation arrays of all sensors concatenated.

Which variable gives the grid index (``COMMON_IGRID`` or ``IGRID``) is decided here for all sensors
at once (:func:`grid_variables`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.config import DataConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io._netcdf import open_dataset
from empirical_seaice.io.layouts import GRID_VARIABLES, DataFiles, SensorFiles
from empirical_seaice.io.period import SENSOR_LOSS_FRACTION, check_convention, check_time_of_day
from empirical_seaice.io.sensor_read import SensorRead, read_1d
from empirical_seaice.io.validity import MOSTLY, FieldStats, classify, log_dropped
from empirical_seaice.observations import step_index

log = logging.getLogger(__name__)

PER_OBS_MAP = {"TSFC": "t_skin_k", "WINDSPEED10M": "wind_ms", "CLOUD_FRACTION": "cloud_fraction"}
"""Per-observation variables of the files -> array fields of :class:`~empirical_seaice.observations.Observations`."""


def _grid_variables_held(sf: SensorFiles) -> set[str]:
    """Which of :data:`~empirical_seaice.io.layouts.GRID_VARIABLES` the sensor's files hold (one look)."""
    if sf.layout == "B":
        return {name for name in GRID_VARIABLES if sf.has_file(name)}
    with open_dataset(sf.location) as ds:
        return {name for name in GRID_VARIABLES if name in ds.variables}


def grid_variables(sensors: tuple[SensorFiles, ...]) -> list[str]:
    """The grid-index variable of each sensor: ``COMMON_IGRID`` when every sensor has it, else ``IGRID``.

    ``IGRID`` alone for every sensor is the v2 reference's own layout: each sensor's
    indices are on the one grid of the background files (checked against its size).
    Some sensors with ``COMMON_IGRID`` and others without is an error: their
    ``IGRID`` may index a sensor-local grid.
    """
    held = [_grid_variables_held(sf) for sf in sensors]
    has = ["COMMON_IGRID" in h for h in held]
    if all(has):
        return ["COMMON_IGRID"] * len(sensors)
    if not any(has):
        for sf, h in zip(sensors, held, strict=True):
            if not h:  # (it said "variable IGRID not found", no word of COMMON_IGRID)
                raise SeaIceError(
                    f"{sf.path('IGRID')}: no grid index for sensor {sf.sensor.name}: give COMMON_IGRID (each "
                    "observation's point of the common grid) or IGRID (its point of the grid of the background files)"
                )
        if len(sensors) > 1:
            log.info("no COMMON_IGRID: every sensor's IGRID indexes the background grid (the v2 reference's layout)")
        return ["IGRID"] * len(sensors)
    with_c = [sf.sensor.name for sf, h in zip(sensors, has, strict=True) if h]
    lacking = next(sf for sf, h in zip(sensors, has, strict=True) if not h)
    raise SeaIceError(
        f"{lacking.path('COMMON_IGRID')}: variable COMMON_IGRID not found for sensor {lacking.sensor.name}, "
        f"while {', '.join(with_c)} have it; give COMMON_IGRID for every sensor, or only IGRID for every "
        "sensor (all indexing the grid of the background files)"
    )


Zeros = Callable[[str, tuple[int, ...], Any], np.ndarray]
"""Makes a zero-filled array of the assembled data: ``zeros(field name, shape, dtype)``."""


def numpy_zeros(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """:data:`Zeros` in memory (``numpy.zeros``)."""
    return np.zeros(shape, dtype=dtype)


def check_sensor_kept(r: SensorRead, config: DataConfig, nsteps: int) -> None:
    """A requested sensor with no valid observation in the period, or with many duplicated rows, is an error."""
    path = r.files.path("JULIAN_DAY")
    name = r.files.sensor.name
    if r.keep.size == 0:
        steps = f"{config.stepstart}..{config.stepstart + nsteps - 1}"
        raise SeaIceError(
            f"{path}: sensor {name} has no valid observation in steps {steps} "
            f"({r.nobs_file} rows in its files); remove it from --sensors, or choose a period it covers"
        )
    shared = _shared_time_order(r.julian_day)
    order = shared[np.lexsort((r.per_obs["igrid"][shared], r.julian_day[shared]))]
    jd, grid = r.julian_day[order], r.per_obs["igrid"][order]
    same = (jd[1:] == jd[:-1]) & (grid[1:] == grid[:-1])
    for field_name in PER_OBS_MAP:
        if not same.any():
            break
        v = r.per_obs[field_name][order]
        same &= v[1:] == v[:-1]
    ndup = int(same.sum())
    if ndup > SENSOR_LOSS_FRACTION * r.keep.size:
        raise SeaIceError(
            f"{path}: sensor {name} has {ndup} duplicated observations ({100 * ndup / r.keep.size:.0f}% of "
            f"{r.keep.size}: same time, grid point, skin temperature, wind and cloud); remove the repeated rows"
        )
    if ndup:
        log.warning("sensor %s: %d duplicated observations (same time, grid point and weather)", name, ndup)


SKIN_SAMPLE = 1 << 16
"""About how many of a sensor's observations :func:`check_skin_pairing` looks at, evenly spaced."""

SKIN_CHANCE_MIN_K = 5.0
"""The RMS difference (K) at random grid points and days below which the skin-temperature map varies too
little to tell a right pairing from a wrong one (:func:`check_skin_pairing` says nothing)."""

SKIN_RATIO_WARN = 0.5
"""The RMS difference at the observations' own grid points and days, as a share of that at random ones,
above which :func:`check_skin_pairing` warns (0.05-0.19 on five twins, 0.69-1.2 with their grid reversed)."""


def check_skin_pairing(r: SensorRead, gname: str, t_map: np.ndarray, stepstart: int, tsfc_path: Path) -> None:
    """A warning where a sensor's observations are not where their grid index and time put them.

    Each observation carries the weather model's skin temperature at its place and time (``TSFC`` of the
    sensor's files); the skin-temperature map holds its daily mean per grid point. At the grid point and
    day the reader gives an observation the two agree to a few kelvin (RMS at most 2.2 K a sensor on five twins); at
    random grid points and days they differ by 8-18 K. Where the observations' own pairing is not much
    better than chance (:data:`SKIN_RATIO_WARN`, judged only where chance gives :data:`SKIN_CHANCE_MIN_K`
    or more), the grid index does not index the background's grid (another grid of the same size, points
    in another order) or ``JULIAN_DAY`` is not the observations' time: each value plausible, so no other
    check sees it. Looked at on about :data:`SKIN_SAMPLE` observations (a fixed random draw for chance).
    """
    n = r.keep.size
    if n < ONE_POINT_MIN_OBS:
        return
    rows = np.arange(0, n, max(1, n // SKIN_SAMPLE))
    t = np.asarray(r.per_obs["TSFC"][rows], dtype=np.float64)
    grid, step = r.per_obs["igrid"][rows], r.per_obs["istep"][rows] - stepstart
    own = float(np.sqrt(np.mean((t - t_map[grid, step]) ** 2)))
    rng = np.random.default_rng(0)
    chance = float(np.sqrt(np.mean((t - t_map[rng.permutation(grid), rng.permutation(step)]) ** 2)))
    if chance >= SKIN_CHANCE_MIN_K and own > SKIN_RATIO_WARN * chance:
        log.warning(
            "sensor %s: the skin temperatures of its observations (TSFC of its files) differ from %s at their "
            "grid point and day by %.1f K RMS, about as much as at random grid points and days (%.1f K): its %s "
            "may not index that map's grid, or its JULIAN_DAY may not be the observations' times; check them "
            "against %s",
            r.files.sensor.name, tsfc_path.name, own, chance, gname, tsfc_path,
        )  # fmt: skip


def _shared_time_order(jd: np.ndarray) -> np.ndarray:
    """Indices of the observations whose time another observation has too, ascending: only they can be
    duplicated, and sorting them alone by (time, grid point) keeps every group of equal (time, grid
    point) in the order a sort of all of them gives (a stable sort; time-ordered files sort in one pass)."""
    by_time = np.argsort(jd, kind="stable")
    t = jd[by_time]
    shared = np.zeros(jd.size, dtype=bool)
    if jd.size > 1:
        eq = t[1:] == t[:-1]
        shared[1:] |= eq
        shared[:-1] |= eq
    return np.sort(by_time[shared])


def _sensor_key(name: str) -> str:
    """A sensor's name as files may spell it (``"SSMIS F17"``, ``"ssmis_f17"``) reduced to the catalogue's
    (``"ssmisf17"``): lower case, letters and digits only."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def check_file_sensor(sf: SensorFiles, known: Sequence[str]) -> None:
    """Where a sensor's ``JULIAN_DAY`` file names its sensor (a global attribute ``sensor``, as the twin's
    files do) and that name is another sensor of the catalogue, the files are being read as the wrong
    sensor (a directory of layout C under another sensor's name): the other sensor's channels, incidence
    angle and biases. A name the catalogue does not know, or none, is not judged.

    Raises
    ------
    SeaIceError
        Naming the file, what it says and how it is read.
    """
    path = sf.path("JULIAN_DAY")
    if not path.is_file():
        return  # the reader names the missing file
    with open_dataset(path) as ds:
        said = ds.__dict__.get("sensor")
    if not isinstance(said, str) or _sensor_key(said) == _sensor_key(sf.sensor.name):
        return
    other = {_sensor_key(name): name for name in known}.get(_sensor_key(said))
    if other is None:
        return
    where = (
        f"rename the directory {sf.location.name} to {other} and give --sensors {other}"
        if sf.layout == "B" and sf.location.name == sf.sensor.name
        else f"give --sensors {other}"
    )
    raise SeaIceError(
        f"{path}: the file's global attribute sensor = {said!r}, but it is read as sensor {sf.sensor.name} "
        f"(its channels, incidence angle and biases); {where}"
    )


def read_julian_day(r: SensorRead) -> None:
    """Pass 1a for one sensor: ``JULIAN_DAY`` of every observation of its file."""
    jd, path = read_1d(r.files, "JULIAN_DAY", None, np.float64)
    assert jd is not None  # not optional
    r.julian_day = jd
    r.nobs_file = jd.shape[0]
    if r.nobs_file == 0:
        raise SeaIceError(
            f"{path}: sensor {r.files.sensor.name} has no observation (0 rows); "
            "remove it from --sensors or give its data"
        )
    check_convention(jd, path, r.files.sensor.name)
    check_time_of_day(jd, path, r.files.sensor.name)
    finite = np.isfinite(jd)
    if r.nobs_file and (~finite).sum() > MOSTLY * r.nobs_file:
        raise SeaIceError(
            f"{path}: variable JULIAN_DAY mostly missing (NaN/fill): "
            f"{100 * (~finite).sum() / r.nobs_file:.0f}% of values"
        )


def place_in_period(r: SensorRead, config: DataConfig, jd_origin: float, nsteps: int, nstep_total_bg: int) -> None:
    """Pass 1b's first step for one sensor: the step index of every observation (``r.per_obs["istep"]``,
    -1 where its time is missing or outside the data's period) and which fall in the selected steps
    (``r.in_period``); logs those before the first window and after the background period. Their
    count bounds the sensor's kept observations before its per-observation fields are read."""
    sf, n = r.files, r.nobs_file
    ok = np.isfinite(r.julian_day) & ~r.outside
    if ok.all():  # no time missing or outside: every step index computed, with no copy of the days
        istep_int = step_index(r.julian_day, jd_origin, config.steps_per_day)
    else:
        istep_int = np.full(n, -1, dtype=np.int64)
        istep_int[ok] = step_index(r.julian_day[ok], jd_origin, config.steps_per_day)
    early = int((ok & (istep_int < 0)).sum())
    if early:
        log.warning(
            "sensor %s: %d observations before the first 21 UTC window%s dropped",
            sf.sensor.name,
            early,
            f" of --start-date {config.start_date} (column 0 of the background files is taken as that day: "
            "for files that start earlier, give their first day as --start-date and skip days with --stepstart)"
            if config.start_date
            else "",
        )
    r.in_period = ok & (istep_int >= config.stepstart) & (istep_int < config.stepstart + nsteps)
    late = int((ok & (istep_int >= nstep_total_bg)).sum())
    if late and config.nsteps is None:
        log.warning("sensor %s: %d observations after the background period dropped", sf.sensor.name, late)
    r.per_obs["istep"] = istep_int


def select_observations(
    r: SensorRead,
    config: DataConfig,
    gname: str,
    ngrid: int,
    files: DataFiles,
) -> None:
    """Pass 1b for one sensor, after :func:`place_in_period`: read the per-observation fields and keep
    the observations in the period whose fields are all valid (``r.keep``); ``r.per_obs`` then holds
    only those."""
    sf, n = r.files, r.nobs_file
    in_period = r.in_period
    keep = in_period.copy()
    invalid: dict[str, int] = {}  # observations of the period each variable drops (the warning names them)

    def drop(name: str, bad: np.ndarray) -> None:
        nonlocal keep
        if bad.any():
            invalid[name] = int(np.count_nonzero(bad & in_period))
            keep &= ~bad

    grid, gmiss = _read_grid_index(sf, gname, n, ngrid, files.seaice_background.name)
    drop(gname, gmiss)
    r.per_obs["igrid"] = grid
    for name in PER_OBS_MAP:
        values, path = read_1d(sf, name, n)
        assert values is not None  # not optional
        missing, out = classify(values, name)
        stats = FieldStats()
        stats.add(values, missing, out)
        stats.check(path, name)
        drop(name, missing | out)
        r.per_obs[name] = values
    cross = sf.sensor.cross_track
    zen, zpath = read_1d(sf, "ZENITH", n, optional=not cross)
    if cross and zen is None:
        raise SeaIceError(
            f"{zpath}: variable ZENITH not found: sensor {sf.sensor.name} scans across track and needs the "
            "satellite zenith angle (degrees) of every observation"
        )
    if zen is not None:
        _check_degrees(zen, zpath, sf.sensor.name)
        missing, out = classify(zen, "ZENITH")
        if cross:  # the angle enters the physics: an observation without it is dropped
            stats = FieldStats()
            stats.add(zen, missing, out)
            stats.check(zpath, "ZENITH")
            drop("ZENITH", missing | out)
        zen[missing | out] = np.nan
    r.zenith_deg = zen
    r.keep = np.flatnonzero(keep)
    # Hold only the kept observations from here on (a short period of a long file keeps little); with
    # every row kept, the arrays are those already held (no copy)
    if r.keep.size < n:
        for name, arr in r.per_obs.items():
            r.per_obs[name] = arr[r.keep]
        if r.zenith_deg is not None:
            r.zenith_deg = r.zenith_deg[r.keep]
        r.julian_day = r.julian_day[r.keep]
    r.in_period = np.zeros(0, dtype=bool)
    dropped = max(n - r.keep.size - int((~in_period).sum()), 0)
    by_variable = ", ".join(f"{name} {count}" for name, count in invalid.items() if count)
    where = sf.location if sf.layout == "A" else sf.location / f"{sf.prefix}VARIABLE.nc"
    log_dropped(
        log, dropped, int(in_period.sum()),
        "sensor %s: %d observations in file, %d in the period, %d dropped for invalid per-observation fields%s",
        sf.sensor.name, n, int(in_period.sum()), dropped,
        f" (missing or out of range, by variable: {by_variable}; in {where})" if dropped else "",
    )  # fmt: skip


def _check_degrees(zenith: np.ndarray, path: Path, sensor: str) -> None:
    """A ``ZENITH`` with every valid value within pi/2 is in radians: a conical imager views at about 50-55
    degrees, a cross-track sounder's swath reaches 45-65 (taken as degrees they were a view from overhead,
    and the angle's physics and the network's angle input went wrong without a word)."""
    valid = zenith[np.isfinite(zenith) & (zenith >= 0.0)]
    if valid.size > 1 and float(valid.max()) <= np.pi / 2:
        raise SeaIceError(
            f"{path}: variable ZENITH of sensor {sensor}: every value within 0..{np.pi / 2:.4f}, radians? give the "
            "satellite zenith angle in degrees"
        )


def _read_grid_index(sf: SensorFiles, gname: str, n: int, ngrid: int, background_name: str):
    """The grid index of each observation (int32, -1 where missing) and the missing mask; a warning where
    one index is given for every observation (:data:`ONE_POINT_MIN_OBS` or more, on a grid of several points).

    Raises
    ------
    SeaIceError
        Mostly missing, non-integer, or beyond the background's grid.
    """
    grid, gpath = read_1d(sf, gname, n, np.float64)
    assert grid is not None  # not optional
    gmiss = np.isnan(grid) | (grid < 0)
    if n and gmiss.sum() > MOSTLY * n:
        raise SeaIceError(f"{gpath}: variable {gname} mostly missing (NaN/fill/negative): {100 * gmiss.sum() / n:.0f}%")
    valid = grid[~gmiss] if gmiss.any() else grid  # the indices given
    if (valid != np.round(valid)).any():
        raise SeaIceError(f"{gpath}: variable {gname} holds non-integer grid indices")
    if valid.size and valid.max() >= ngrid:
        raise SeaIceError(
            f"{gpath}: variable {gname} has grid index up to {int(valid.max())}, but the background "
            f"{background_name} has ngrid={ngrid} grid points (indices 0..{ngrid - 1})"
        )
    if valid.size >= ONE_POINT_MIN_OBS and ngrid > 1 and valid.min() == valid.max():
        log.warning(
            "%s: variable %s holds one grid index (%d) for every observation of sensor %s (%d): a fill or a "
            "constant, not the observations' grid points; they all train grid point %d",
            gpath, gname, int(valid[0]), sf.sensor.name, valid.size, int(valid[0]),
        )  # fmt: skip
    return np.where(gmiss, -1, grid).astype(np.int32), gmiss


ONE_POINT_MIN_OBS = 100
"""Observations of a sensor from which one grid index for all of them is warned about
(:func:`_read_grid_index`): a fill or a constant, as for ``JULIAN_DAY``."""


PER_OBS_DTYPES: dict[str, Any] = {
    "igrid": np.dtype(np.int32),
    "istep": np.dtype(np.int32),
    "isensor": np.dtype(np.int16),
    "t_skin_k": np.dtype(np.float32),
    "wind_ms": np.dtype(np.float32),
    "cloud_fraction": np.dtype(np.float32),
    "zenith_deg": np.dtype(np.float32),
    "julian_day": np.dtype(np.float64),
    "obs_index": np.dtype(np.int64),
}
"""The per-observation array fields of :class:`~empirical_seaice.observations.Observations` and their types."""


def per_obs_arrays(nobs: int) -> list[tuple[str, tuple[int, ...], Any]]:
    """The arrays :func:`assemble_per_obs` makes, ``(name, shape, dtype)``, ``(nobs,)`` each."""
    return [(name, (nobs,), dtype) for name, dtype in PER_OBS_DTYPES.items()]


def assemble_per_obs(
    reads: list[SensorRead], nobs: int, stepstart: int, zeros: Zeros = numpy_zeros
) -> tuple[dict[str, Any], list[int]]:
    """The per-observation arrays of all sensors, concatenated (final content only: no temporaries
    beyond nobs; the array fields of :class:`Observations`), and each sensor's first row.
    ``zeros(name, shape, dtype)`` makes each array (the data cache's memory maps in a cached run)."""
    out: dict[str, np.ndarray] = {name: zeros(name, shape, dt) for name, shape, dt in per_obs_arrays(nobs)}
    offsets = []
    off = 0
    for s, r in enumerate(reads):
        k, sl = r.keep, slice(off, off + r.keep.size)
        offsets.append(off)
        out["igrid"][sl] = r.per_obs["igrid"]
        out["istep"][sl] = r.per_obs["istep"] - stepstart
        out["isensor"][sl] = s
        for name, key in PER_OBS_MAP.items():
            out[key][sl] = r.per_obs[name]
        out["zenith_deg"][sl] = np.nan if r.zenith_deg is None else r.zenith_deg
        out["julian_day"][sl] = r.julian_day
        out["obs_index"][sl] = k
        r.per_obs.clear()
        r.julian_day, r.zenith_deg = np.zeros(0), None
        off += k.size
    return out, offsets


__all__ = [
    "PER_OBS_MAP",
    "grid_variables",
    "read_julian_day",
    "place_in_period",
    "select_observations",
    "check_sensor_kept",
    "assemble_per_obs",
    "per_obs_arrays",
    "PER_OBS_DTYPES",
    "Zeros",
    "numpy_zeros",
]
