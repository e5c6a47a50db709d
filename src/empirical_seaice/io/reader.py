"""Read the training data of a run into one columnar :class:`Observations`.

The flow of :func:`read_training_data`:

1. locate the files (:mod:`.layouts`); with a cache directory, return the
   cached arrays if their key (input files, sizes, mtimes, DataConfig, nlag)
   matches, without opening any NetCDF file;
2. read ``JULIAN_DAY`` of every sensor; ``jd_origin`` = floor of the smallest
   Julian day over all sensors; step index by the 21 UTC rule;
3. check the background shapes; choose the period
   ``[stepstart, stepstart + nsteps)``;
4. read the per-observation fields; keep an observation when every one of
   them is valid and its step is in the period;
5. read the per-channel fields block by block straight into preallocated
   float32 ``(nobs, nchan)`` arrays in the unified basis;
6. zero every masked value; write the cache.

Validity. A value is *missing* if NaN/inf, masked by the file's
``_FillValue``, ``|x| > 1e10`` or a conventional fill (-999, -9999, ...). A
value is *out of range* if outside FORMAT.md's physical range. Missing or
out-of-range per-channel values clear that channel's mask; missing or
out-of-range per-observation values drop the observation (``ZENITH`` is
optional for conical sensors and becomes NaN instead; a cross-track sensor
needs it, and its channels are mixed by the scan angle derived from it).
Surface-blind channels of a sensor (catalogue) are read past: only the
sensor's used channels reach the basis. A field with more than half its values
missing or out of range is an error naming the file and the variable (for
per-channel fields: over the rows from the first to the last selected
observation, the only rows read).

Period. ``nsteps`` defaults to every step from ``stepstart`` up to the last
step that has an observation, capped at the background period (columns of
the skin-temperature map); observations after the background period are
then dropped (logged). An explicit ``nsteps`` beyond either is an error.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from empirical_seaice.config import DataConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import cache as _cache
from empirical_seaice.io._netcdf import (
    Layout2D,
    as_float,
    get_variable,
    invalid_float,
    open_dataset,
    read_rows,
    row_blocks,
)
from empirical_seaice.io.background import background_shape, read_background
from empirical_seaice.io.layouts import DataFiles, SensorFiles, find_data_files
from empirical_seaice.observations import BackgroundMaps, Observations, step_index
from empirical_seaice.sensors import ChannelBasis, build_channel_basis, load_catalogue

log = logging.getLogger(__name__)

MOSTLY = 0.5
"""A field with more than this fraction of missing or out-of-range values is an error."""

PLAUSIBLE_JD = (2440587.5, 2488069.5)
"""Julian days of 1970-01-01 and 2100-01-01: a sensor whose median JULIAN_DAY is outside uses another
date convention (MJD, days or seconds since an epoch) and is an error naming it."""

OUTLIER_DENSITY = 0.1
"""A run of days separated from the rest by a day without any observation, holding on average less than
this fraction of the observations per day of the largest run, lies outside the data's period (stray
timestamps): its observations are dropped."""

SENSOR_LOSS_FRACTION = 0.01
"""A sensor losing more than this fraction of its observations to timestamps outside the data's
period, or holding more than this fraction of duplicated observations, is an error."""

# FORMAT.md ranges: (low, high, units); a small tolerance absorbs rounding.
RANGES: dict[str, tuple[float, float, str]] = {
    "OBSVALUE": (0.0, 400.0, "K"),
    "EMIS_WATER": (0.0, 1.0, ""),
    "TAUSFC": (0.0, 1.0, ""),
    "TAUSFC_CLD": (0.0, 1.0, ""),
    "TDOWN": (0.0, 400.0, "K"),
    "TDOWN_CLD": (0.0, 400.0, "K"),
    "TUP": (0.0, 400.0, "K"),
    "TUP_CLD": (0.0, 400.0, "K"),
    "TSFC": (180.0, 340.0, "K"),
    "WINDSPEED10M": (0.0, 100.0, "m/s"),
    "CLOUD_FRACTION": (0.0, 1.0, ""),
    "ZENITH": (0.0, 90.0, "degrees"),
}
_TOL = 1e-4

PER_OBS_MAP = {"TSFC": "t_skin_k", "WINDSPEED10M": "wind_ms", "CLOUD_FRACTION": "cloud_fraction"}
PER_CHANNEL_MAP = {
    "OBSVALUE": "tb_obs_k",
    "EMIS_WATER": "emis_water",
    "TAUSFC": "tau",
    "TDOWN": "t_down_k",
    "TUP": "t_up_k",
    "TAUSFC_CLD": "tau_cld",
    "TDOWN_CLD": "t_down_cld_k",
    "TUP_CLD": "t_up_cld_k",
}


@dataclass
class _FieldStats:
    """Running counts of missing and out-of-range values of one field."""

    n: int = 0
    missing: int = 0
    out: int = 0
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, values: np.ndarray, missing: np.ndarray, out: np.ndarray) -> None:
        self.n += values.size
        self.missing += int(missing.sum())
        self.out += int(out.sum())
        if out.any():  # the range found is only reported for out-of-range fields
            self.lo = min(self.lo, float(np.nanmin(values)))
            self.hi = max(self.hi, float(np.nanmax(values)))

    def check(self, path: Path, name: str) -> None:
        if self.n == 0 or self.missing + self.out <= MOSTLY * self.n:
            return
        if self.out >= self.missing:
            lo, hi, units = RANGES[name]
            raise SeaIceError(
                f"{path}: variable {name} mostly out of range [{lo:g}, {hi:g}] {units}: "
                f"{100 * self.out / self.n:.0f}% of values (found {self.lo:g} to {self.hi:g}); wrong units?"
            )
        raise SeaIceError(
            f"{path}: variable {name} mostly missing (NaN/fill): {100 * self.missing / self.n:.0f}% of values"
        )


def _classify(values: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(missing, out_of_range) masks of a C-contiguous float block.

    One fused range test finds every bad value (NaN fails it too); only the
    bad values are then split into missing (NaN/fill) and out of range.
    """
    lo, hi, _ = RANGES[name]
    with np.errstate(invalid="ignore"):
        bad = ~((values >= lo - _TOL) & (values <= hi + _TOL))
    missing = np.zeros(values.shape, dtype=bool)
    if bad.any():
        idx = np.flatnonzero(bad)
        missing.ravel()[idx[invalid_float(values.ravel()[idx])]] = True
        bad &= ~missing
    return missing, bad


@dataclass
class _SensorRead:
    """Per-sensor state between the passes."""

    files: SensorFiles
    nobs_file: int = 0
    julian_day: np.ndarray | None = None
    keep: np.ndarray | None = None  # indices into the file's observations
    outside: np.ndarray | None = None  # timestamps outside the data's period
    per_obs: dict[str, np.ndarray] = field(default_factory=dict)


def _var_path(sf: SensorFiles, name: str, optional: bool = False):
    """The file of variable ``name``; None if optional and its layout-B file is absent."""
    path = sf.path(name)
    if sf.layout == "B" and not path.is_file():
        if optional:
            return None
        raise SeaIceError(
            f"{path}: file not found (variable {name} of sensor {sf.sensor.name}, layout-B prefix {sf.prefix!r})"
        )
    return path


def _read_1d(sf: SensorFiles, name: str, nobs: int | None, dtype=np.float32, optional: bool = False):
    """Read a whole per-observation variable as a float array (NaN where missing).

    Returns ``(values, path)`` or ``(None, path)`` for an absent optional variable.
    """
    path = _var_path(sf, name, optional)
    if path is None:
        return None, sf.path(name)
    with open_dataset(path) as ds:
        if optional and name not in ds.variables:
            return None, path
        var, _ = get_variable(ds, path, name)
        shape = tuple(var.shape)
        if len(shape) != 1 or (nobs is not None and shape[0] != nobs):
            want = f"({nobs},)" if nobs is not None else "(nobs,)"
            raise SeaIceError(f"{path}: variable {name} expected shape {want} (one value per observation), got {shape}")
        out = np.empty(shape[0], dtype=dtype)
        for a, b in row_blocks(shape[0]):
            out[a:b] = as_float(var[a:b], dtype)
    return out, path


def _has_common_igrid(sf: SensorFiles) -> bool:
    if sf.layout == "B":
        return sf.has_file("COMMON_IGRID")
    with open_dataset(sf.location) as ds:
        return "COMMON_IGRID" in ds.variables


def _grid_variables(sensors: tuple[SensorFiles, ...]) -> list[str]:
    """The grid-index variable of each sensor: ``COMMON_IGRID`` when every sensor has it, else ``IGRID``.

    ``IGRID`` alone for every sensor is the v2 reference's own layout: each sensor's
    indices are on the one grid of the background files (checked against its size).
    Some sensors with ``COMMON_IGRID`` and others without is an error: their
    ``IGRID`` may index a sensor-local grid.
    """
    has = [_has_common_igrid(sf) for sf in sensors]
    if all(has):
        return ["COMMON_IGRID"] * len(sensors)
    if not any(has):
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


def _apply_grid_file(background: BackgroundMaps, path: Path | None) -> None:
    """Take ``lon``/``lat`` of the grid description (the v2 reference's grid file) into ``background``.

    Variables ``lon``, ``lat`` (or ``LON``, ``LAT``), one value per grid point of the
    background files. Coordinates already read from the skin-temperature file are kept
    (the sizes must agree).
    """
    if path is None:
        return
    with open_dataset(path) as ds:
        values = {}
        for name in ("lon", "lat"):
            var, vname = get_variable(ds, path, (name, name.upper()))
            arr = as_float(var[:])
            if arr.shape != (background.ngrid,):
                raise SeaIceError(
                    f"{path}: variable {vname} expected shape ({background.ngrid},) (one value per grid point of "
                    f"the background files), got {arr.shape}"
                )
            values[name] = arr
    if background.lon is None:
        background.lon = values["lon"]
    if background.lat is None:
        background.lat = values["lat"]


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


def _date_convention(values: np.ndarray) -> str:
    """A guess of the date convention of JULIAN_DAY values that are not Julian days of 1970-2100."""
    med = float(np.median(values))
    if 40000.0 <= med < 80000.0:
        return "Modified Julian Days (days since 1858-11-17: add 2400000.5)"
    if 2.0e6 <= med < 3.0e6:
        import datetime

        day = datetime.date(2000, 1, 1) + datetime.timedelta(days=math.floor(med + 0.5 - 2451545.0))
        return f"Julian days of the year {day.year} (an epoch offset?)"
    if 0.0 <= med < 40000.0:
        return "days since an epoch (e.g. 1950-01-01 or 1970-01-01)"
    if med > 1.0e8:
        return "seconds since an epoch (e.g. 1970-01-01)"
    return "not Julian days"


def _check_convention(r: _SensorRead) -> None:
    finite = r.julian_day[np.isfinite(r.julian_day)]
    if finite.size == 0:
        return
    med = float(np.median(finite))
    if not PLAUSIBLE_JD[0] <= med <= PLAUSIBLE_JD[1]:
        raise SeaIceError(
            f"{r.files.path('JULIAN_DAY')}: variable JULIAN_DAY of sensor {r.files.sensor.name} looks like "
            f"{_date_convention(finite)} (median {med:.10g}, from {finite.min():.10g} to {finite.max():.10g}), "
            "not Julian days of 1970-2100; convert it to Julian days (2459000.5 = 2020-05-31 00 UTC)"
        )


def _start_origin(start_date: str) -> float:
    """jd_origin of ``--start-date D``: step 0 is the 21 UTC window that ends on day D."""
    import datetime

    d = datetime.date.fromisoformat(start_date)
    return float(d.toordinal() - datetime.date(2000, 1, 1).toordinal() + 2451544)  # JD of D 00 UTC minus 0.5


def _bulk_period(reads: list[_SensorRead], config: DataConfig) -> tuple[float, int, int, int]:
    """(jd_origin, last step, first and last absolute window) of the data's bulk: runs of days separated by a
    day without observations whose density is below :data:`OUTLIER_DENSITY` of the largest run's are outside."""
    n = config.steps_per_day
    jd = np.concatenate([r.julian_day[np.isfinite(r.julian_day)] for r in reads])
    win = np.floor(n * (jd - 0.375)).astype(np.int64)  # absolute window index
    uniq, counts = np.unique(win, return_counts=True)
    starts = np.flatnonzero(np.diff(uniq, prepend=uniq[0] - 2) > 1)
    totals = np.add.reduceat(counts, starts)
    ends = np.append(starts[1:], uniq.size) - 1
    density = totals / (uniq[ends] - uniq[starts] + 1)
    bulk = np.flatnonzero(density >= OUTLIER_DENSITY * density[int(np.argmax(totals))])
    w0, w1 = int(uniq[starts[bulk[0]]]), int(uniq[ends[bulk[-1]]])
    if config.start_date is not None:
        origin = _start_origin(config.start_date)
    else:
        origin = float(math.floor(jd[win >= w0].min()))
    last = int(step_index(np.array([(w1 + 0.5) / n + 0.375]), origin, n)[0])
    return origin, last, w0, w1


def _select_period(reads: list[_SensorRead], config: DataConfig, nstep_total_bg: int) -> tuple[float, int, int]:
    """jd_origin, number of steps with data, and the chosen nsteps; marks each sensor's observations
    outside the data's period (``r.outside``) and checks how many each sensor loses."""
    if not any(np.isfinite(r.julian_day).any() for r in reads):
        raise SeaIceError(f"{reads[0].files.path('JULIAN_DAY')}: variable JULIAN_DAY has no valid value")
    jd_origin, last, w0, w1 = _bulk_period(reads, config)
    for r in reads:
        ok = np.isfinite(r.julian_day)
        win = np.full(r.nobs_file, w0, dtype=np.int64)
        win[ok] = np.floor(config.steps_per_day * (r.julian_day[ok] - 0.375)).astype(np.int64)
        r.outside = ok & ((win < w0) | (win > w1))
        nout = int(r.outside.sum())
        if not nout:
            continue
        bad = r.julian_day[r.outside]
        what = (
            f"sensor {r.files.sensor.name}: {nout} of {int(ok.sum())} observations have a JULIAN_DAY outside the "
            f"data's period (Julian days {jd_origin + 0.375:.2f} to {jd_origin + 1.375 + last:.2f}; "
            f"found {', '.join(f'{v:.6f}' for v in np.unique(bad)[:3])}{', ...' if np.unique(bad).size > 3 else ''})"
        )
        if nout > SENSOR_LOSS_FRACTION * ok.sum():
            raise SeaIceError(
                f"{r.files.path('JULIAN_DAY')}: {what}; fix the timestamps"
                + (" or give --start-date" if config.start_date is None else " or check --start-date")
            )
        else:
            log.warning("%s; dropped", what)
    nstep_data = last + 1
    if nstep_data < 1:
        jd_last = max(np.nanmax(r.julian_day) for r in reads if np.isfinite(r.julian_day).any())
        raise SeaIceError(
            f"--start-date {config.start_date}: after the last observation (Julian day {jd_last:.2f}); "
            "choose an earlier date"
        )
    start = config.stepstart
    if start >= nstep_data:
        raise SeaIceError(
            f"--stepstart {start}: the data has {nstep_data} steps (0..{nstep_data - 1} from Julian day "
            f"{jd_origin:.0f}); choose a smaller --stepstart"
        )
    if config.nsteps is None:
        nsteps = min(nstep_data, nstep_total_bg) - start
        if nsteps < 1:
            raise SeaIceError(
                f"--stepstart {start}: the background files cover only {nstep_total_bg} steps; choose a smaller --stepstart"
            )
    else:
        nsteps = config.nsteps
        if start + nsteps > nstep_data:
            raise SeaIceError(
                f"--nsteps {nsteps}: with --stepstart {start} the period needs steps {start}..{start + nsteps - 1}, "
                f"but the data has steps 0..{nstep_data - 1}; use --nsteps {nstep_data - start} or less"
            )
    return jd_origin, nstep_data, nsteps


def _check_sensor_kept(r: _SensorRead, config: DataConfig, nsteps: int) -> None:
    """A requested sensor with no valid observation in the period, or with many duplicated rows, is an error."""
    path = r.files.path("JULIAN_DAY")
    name = r.files.sensor.name
    if r.keep.size == 0:
        steps = f"{config.stepstart}..{config.stepstart + nsteps - 1}"
        raise SeaIceError(
            f"{path}: sensor {name} has no valid observation in steps {steps} "
            f"({r.nobs_file} rows in its files); remove it from --sensors, or choose a period it covers"
        )
    jd, grid = r.julian_day, r.per_obs["igrid"]
    order = np.lexsort((grid, jd))
    same = (jd[order][1:] == jd[order][:-1]) & (grid[order][1:] == grid[order][:-1])
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


def _read_fresh(files: DataFiles, config: DataConfig, nlag: int) -> tuple[Observations, BackgroundMaps]:
    basis = build_channel_basis(config.sensors, load_catalogue(config.sensor_catalogue))
    reads = [_SensorRead(sf) for sf in files.sensors]

    # Pass 1a: Julian days of every sensor, for the common step origin.
    for r in reads:
        r.julian_day, path = _read_1d(r.files, "JULIAN_DAY", None, np.float64)
        r.nobs_file = r.julian_day.shape[0]
        if r.nobs_file == 0:
            raise SeaIceError(
                f"{path}: sensor {r.files.sensor.name} has no observation (0 rows); "
                "remove it from --sensors or give its data"
            )
        _check_convention(r)
        finite = np.isfinite(r.julian_day)
        if r.nobs_file and (~finite).sum() > MOSTLY * r.nobs_file:
            raise SeaIceError(
                f"{path}: variable JULIAN_DAY mostly missing (NaN/fill): "
                f"{100 * (~finite).sum() / r.nobs_file:.0f}% of values"
            )

    bg_shape = background_shape(files.seaice_background, files.tsfc_background, nlag)
    jd_origin, nstep_data, nsteps = _select_period(reads, config, bg_shape.nstep_total)
    background = read_background(
        files.seaice_background, files.tsfc_background, bg_shape, config.stepstart, nsteps, nlag
    )
    ngrid = bg_shape.ngrid
    _apply_grid_file(background, files.grid)
    grid_names = _grid_variables(files.sensors)

    # Pass 1b: per-observation fields decide which observations are kept.
    for s, r in enumerate(reads):
        sf, n = r.files, r.nobs_file
        ok = np.isfinite(r.julian_day) & ~r.outside
        istep_int = np.full(n, -1, dtype=np.int64)
        istep_int[ok] = step_index(r.julian_day[ok], jd_origin, config.steps_per_day)
        early = int((ok & (istep_int < 0)).sum())
        if early:
            log.warning(
                "sensor %s: %d observations before the first 21 UTC window%s dropped",
                sf.sensor.name,
                early,
                f" of --start-date {config.start_date}" if config.start_date else "",
            )
        in_period = ok & (istep_int >= config.stepstart) & (istep_int < config.stepstart + nsteps)
        late = int((ok & (istep_int >= bg_shape.nstep_total)).sum())
        if late and config.nsteps is None:
            log.warning("sensor %s: %d observations after the background period dropped", sf.sensor.name, late)
        keep = in_period
        r.per_obs["istep"] = istep_int
        gname = grid_names[s]
        grid, gpath = _read_1d(sf, gname, n, np.float64)
        gmiss = np.isnan(grid) | (grid < 0)
        if n and gmiss.sum() > MOSTLY * n:
            raise SeaIceError(
                f"{gpath}: variable {gname} mostly missing (NaN/fill/negative): {100 * gmiss.sum() / n:.0f}%"
            )
        if (grid[~gmiss] != np.round(grid[~gmiss])).any():
            raise SeaIceError(f"{gpath}: variable {gname} holds non-integer grid indices")
        if (~gmiss).any() and grid[~gmiss].max() >= ngrid:
            raise SeaIceError(
                f"{gpath}: variable {gname} has grid index up to {int(grid[~gmiss].max())}, but the background "
                f"{files.seaice_background.name} has ngrid={ngrid} grid points (indices 0..{ngrid - 1})"
            )
        keep &= ~gmiss
        r.per_obs["igrid"] = np.where(gmiss, -1, grid).astype(np.int32)
        del grid
        for name in PER_OBS_MAP:
            values, path = _read_1d(sf, name, n)
            missing, out = _classify(values, name)
            stats = _FieldStats()
            stats.add(values, missing, out)
            stats.check(path, name)
            keep &= ~(missing | out)
            r.per_obs[name] = values
        cross = sf.sensor.cross_track
        zen, zpath = _read_1d(sf, "ZENITH", n, optional=not cross)
        if cross and zen is None:
            raise SeaIceError(
                f"{zpath}: variable ZENITH not found: sensor {sf.sensor.name} scans across track and needs the "
                "satellite zenith angle (degrees) of every observation"
            )
        if zen is not None:
            missing, out = _classify(zen, "ZENITH")
            if cross:  # the angle enters the physics: an observation without it is dropped
                stats = _FieldStats()
                stats.add(zen, missing, out)
                stats.check(zpath, "ZENITH")
                keep &= ~(missing | out)
            zen[missing | out] = np.nan
        r.per_obs["ZENITH"] = zen
        r.keep = np.flatnonzero(keep)
        # Hold only the kept observations from here on (a short period of a
        # long file keeps little).
        for name, arr in r.per_obs.items():
            if arr is not None:
                r.per_obs[name] = arr[r.keep]
        r.julian_day = r.julian_day[r.keep]
        dropped = n - r.keep.size - int((~in_period).sum())
        log.info(
            "sensor %s: %d observations in file, %d in the period, %d dropped for invalid per-observation fields",
            sf.sensor.name,
            n,
            int(in_period.sum()),
            max(dropped, 0),
        )

    nobs = sum(r.keep.size for r in reads)
    if nobs == 0:
        raise SeaIceError(
            f"--stepstart {config.stepstart} --nsteps {nsteps}: no valid observation in the selected period "
            f"(sensors {' '.join(config.sensors)}, data {config.data})"
        )
    for r in reads:
        _check_sensor_kept(r, config, nsteps)

    # Assemble per-observation arrays (final content only; no temporaries beyond nobs).
    out = {
        "igrid": np.empty(nobs, np.int32),
        "istep": np.empty(nobs, np.int32),
        "isensor": np.empty(nobs, np.int16),
        "t_skin_k": np.empty(nobs, np.float32),
        "wind_ms": np.empty(nobs, np.float32),
        "cloud_fraction": np.empty(nobs, np.float32),
        "zenith_deg": np.empty(nobs, np.float32),
        "julian_day": np.empty(nobs, np.float64),
        "obs_index": np.empty(nobs, np.int64),
    }
    offsets = []
    off = 0
    for s, r in enumerate(reads):
        k, sl = r.keep, slice(off, off + r.keep.size)
        offsets.append(off)
        out["igrid"][sl] = r.per_obs["igrid"]
        out["istep"][sl] = r.per_obs["istep"] - config.stepstart
        out["isensor"][sl] = s
        for name, key in PER_OBS_MAP.items():
            out[key][sl] = r.per_obs[name]
        zen = r.per_obs["ZENITH"]
        out["zenith_deg"][sl] = np.nan if zen is None else zen
        out["julian_day"][sl] = r.julian_day
        out["obs_index"][sl] = k
        r.per_obs.clear()
        r.julian_day = None
        off += k.size

    # Pass 2: per-channel fields, block by block, into the unified basis.
    nchan = basis.nchan
    mask = np.zeros((nobs, nchan), dtype=bool)
    dirty = np.zeros(nobs, dtype=bool)
    for s, r in enumerate(reads):
        mask[offsets[s] : offsets[s] + r.keep.size, basis.present[s]] = True
    for name, key in PER_CHANNEL_MAP.items():
        arr = np.zeros((nobs, nchan), dtype=np.float32)
        for s, r in enumerate(reads):
            _read_channels(r, name, arr, mask, dirty, offsets[s], basis, s)
        out[key] = arr

    # Zero every masked value: a channel masked by one field is zeroed in all.
    # Channels a sensor lacks were never written (0); only rows with an
    # invalid value need the pass.
    rows = np.flatnonzero(dirty)
    for a, b in row_blocks(rows.size):
        idx = rows[a:b]
        bad = ~mask[idx]
        for key in PER_CHANNEL_MAP.values():
            sub = out[key][idx]
            sub[bad] = 0.0
            out[key][idx] = sub

    obs = Observations(
        **out,
        mask=mask,
        basis=basis,
        ngrid=ngrid,
        nstep=nsteps,
        jd_origin=jd_origin,
        stepstart=config.stepstart,
        lon=background.lon,
        lat=background.lat,
    )
    log.info(
        "read %d observations (%d sensors, %d channels, %d steps, %d grid points)",
        nobs,
        len(reads),
        nchan,
        nsteps,
        ngrid,
    )
    return obs, background


def _runs(cmap: np.ndarray) -> list[tuple[int, int, int]]:
    """Split a channel map into runs of consecutive basis slots: ``(j0, j1, c0)``.

    File channels ``j0..j1-1`` go to basis slots ``c0..c0+j1-j0-1``; slice
    assignment per run is several times faster than one fancy-index scatter.

    >>> _runs(np.array([0, 1, 2, 4, 5, 9, 8]))
    [(0, 3, 0), (3, 5, 4), (5, 6, 9), (6, 7, 8)]
    """
    runs, j0 = [], 0
    for j in range(1, len(cmap) + 1):
        if j == len(cmap) or cmap[j] != cmap[j - 1] + 1:
            runs.append((j0, j, int(cmap[j0])))
            j0 = j
    return runs


def _read_channels(
    r: _SensorRead,
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
    """
    sf, n = r.files, r.nobs_file
    path = _var_path(sf, name)
    cmap = basis.sensor_channel_map[s]
    fcols = basis.sensor_file_columns[s]
    every = fcols.size == len(sf.sensor.file_channels)  # no file channel skipped (surface-blind ones are)
    runs = _runs(cmap)
    stats = _FieldStats()
    with open_dataset(path) as ds:
        var, _ = get_variable(ds, path, name)
        layout = _channel_layout(var, path, name, n, sf)
        keep = r.keep
        # Only the blocks that hold kept observations are read (and checked).
        blocks = row_blocks(int(keep[-1]) + 1, start=int(keep[0])) if keep.size else ()
        for a, b in blocks:
            values = as_float(read_rows(var, a, b, layout), fills=False)
            if not every:
                values = np.ascontiguousarray(values[:, fcols])
            missing, out = _classify(values, name)
            stats.add(values, missing, out)
            lo_k, hi_k = np.searchsorted(keep, [a, b])
            if hi_k == lo_k:
                continue
            bad = missing | out
            if hi_k - lo_k < b - a:  # some rows of the block are not kept
                rows_in_block = keep[lo_k:hi_k] - a
                values, bad = values[rows_in_block], bad[rows_in_block]
            # Kept rows land in a contiguous range of the output.
            d0, d1 = offset + lo_k, offset + hi_k
            anybad = bool(bad.any())
            if anybad:
                values[bad] = 0.0
                mask[d0:d1, cmap] &= ~bad
                dirty[d0:d1] |= bad.any(axis=1)
            for j0, j1, c0 in runs:
                arr[d0:d1, c0 : c0 + j1 - j0] = values[:, j0:j1]
    stats.check(path, name)


def read_training_data(
    config: DataConfig, nlag: int, cache_dir: Path | None = None
) -> tuple[Observations, BackgroundMaps]:
    """Read, validate and assemble the training data of a run.

    Parameters
    ----------
    config : DataConfig
        Data location (layout A file, layout B or C directory), sensors,
        selected period and background files.
    nlag : int
        Lag columns of the SIC map (``ModelConfig.nlag``).
    cache_dir : Path, optional
        Directory for the memory-mapped cache (used when ``config.cache``).
        The arrays go to ``<cache_dir>/observations/`` as ``.npy`` files with
        a ``manifest.json``; a later call with the same input files (paths,
        sizes, mtimes), DataConfig and nlag loads them with ``mmap_mode="r"``
        without opening NetCDF.

    Returns
    -------
    (Observations, BackgroundMaps)
        Observations in the unified channel basis of ``config.sensors``
        (float32, julian_day float64, masked values 0), contiguous per sensor
        in ``config.sensors`` order; background SIC (ngrid, nsteps + nlag) and
        skin-temperature map (ngrid, nsteps).

    Raises
    ------
    SeaIceError
        Any problem with the input files or the selected period; the message
        names the file, the variable (or the flag) and what was expected.
    """
    if nlag < 0:
        raise SeaIceError(f"nlag: must be >= 0, got {nlag}")
    files = find_data_files(config)
    inputs = files.input_files()
    checksums = [_cache.file_checksum(f) for f in inputs]
    digest = _cache.content_digest(inputs, checksums)
    if not (cache_dir is not None and config.cache):
        obs, background = _read_fresh(files, config, nlag)
        obs.source_digest = digest
        return obs, background
    key = _cache.cache_key(inputs, config, nlag, checksums)
    with _cache.locked(Path(cache_dir)):
        hit = _cache.load(Path(cache_dir), key, config.sensor_catalogue)
        if hit is not None:
            log.info("training data loaded from cache %s", cache_dir)
            hit[0].source_digest = digest
            return hit
        obs, background = _read_fresh(files, config, nlag)
        _cache.save(Path(cache_dir), key, obs, background)
    obs.source_digest = digest
    return obs, background


__all__ = ["read_training_data", "RANGES"]
