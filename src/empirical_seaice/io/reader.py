"""Read the training data of a run into one columnar :class:`Observations`.

The flow of :func:`read_training_data`:

1. locate the files (:mod:`.layouts`); with a cache directory, return the
   cached arrays if their key (input files and a checksum of their content,
   DataConfig, nlag) matches, without opening any NetCDF file (:mod:`.cache`);
2. read ``JULIAN_DAY`` of every sensor (Julian days, else an error naming the
   convention); step index by the 21 UTC rule;
3. check the background shapes; define the time axis from the bulk of the data
   (or ``--start-date``) and choose the period ``[stepstart, stepstart + nsteps)``
   (:mod:`.period`: stray timestamps counted per sensor);
4. read the per-observation fields; keep an observation when every one of
   them is valid and its step is in the period;
5. read the per-channel fields block by block straight into preallocated
   float32 ``(nobs, nchan)`` arrays in the unified basis;
6. zero every masked value; write the cache.

Validity (:mod:`.validity`). A value is *missing* if NaN/inf, masked by the file's
``_FillValue``, ``|x| > 1e10`` or a conventional fill (-999, -9999, ...). A
value is *out of range* if outside the physical range of docs/data-format.md. Missing or
out-of-range per-channel values clear that channel's mask; missing or
out-of-range per-observation values drop the observation (``ZENITH`` is
optional for conical sensors and becomes NaN instead; a cross-track sensor
needs it, and its channels are mixed by the scan angle derived from it).
Surface-blind channels of a sensor (catalogue) are read past: only the
sensor's used channels reach the basis. A field with more than half its values
missing or out of range is an error naming the file and the variable (for
per-channel fields: over the rows from the first to the last selected
observation, the only rows read).

Period (:mod:`.period`). ``nsteps`` defaults to every step from ``stepstart`` up
to the last step that has an observation, capped at the background period
(columns of the skin-temperature map); observations after the background
period are then dropped (logged). An explicit ``nsteps`` beyond either is an
error. A requested sensor left without a valid observation in the period, or
with more than 1% duplicated observations, is an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.config import DataConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import cache as _cache
from empirical_seaice.io._netcdf import (
    Layout2D,
    as_float,
    get_variable,
    open_dataset,
    read_rows,
    row_blocks,
)
from empirical_seaice.io.background import background_shape, read_background
from empirical_seaice.io.layouts import DataFiles, SensorFiles, find_data_files
from empirical_seaice.io.period import SENSOR_LOSS_FRACTION, check_convention, select_period
from empirical_seaice.io.validity import MOSTLY, FieldStats, classify
from empirical_seaice.observations import BackgroundMaps, Observations, step_index
from empirical_seaice.sensors import ChannelBasis, build_channel_basis, load_catalogue

log = logging.getLogger(__name__)

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
class _SensorRead:
    """Per-sensor state between the passes."""

    files: SensorFiles
    nobs_file: int = 0
    julian_day: np.ndarray = field(default_factory=lambda: np.zeros(0))
    keep: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # indices into the file's rows
    outside: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # timestamps outside the period
    per_obs: dict[str, np.ndarray] = field(default_factory=dict)
    zenith_deg: np.ndarray | None = None  # optional: None when the file has no ZENITH


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
        _read_julian_day(r)
    bg_shape = background_shape(files.seaice_background, files.tsfc_background, nlag)
    jd_origin, nstep_data, nsteps, outside = select_period(
        [r.julian_day for r in reads],
        [r.files.path("JULIAN_DAY") for r in reads],
        [r.files.sensor.name for r in reads],
        config,
        bg_shape.nstep_total,
    )
    for r, out_r in zip(reads, outside, strict=True):
        r.outside = out_r
    background = read_background(
        files.seaice_background, files.tsfc_background, bg_shape, config.stepstart, nsteps, nlag
    )
    ngrid = bg_shape.ngrid
    _apply_grid_file(background, files.grid)
    grid_names = _grid_variables(files.sensors)

    # Pass 1b: per-observation fields decide which observations are kept.
    for r, gname in zip(reads, grid_names, strict=True):
        _select_observations(r, config, jd_origin, nsteps, bg_shape.nstep_total, gname, ngrid, files)
    nobs = sum(r.keep.size for r in reads)
    if nobs == 0:
        raise SeaIceError(
            f"--stepstart {config.stepstart} --nsteps {nsteps}: no valid observation in the selected period "
            f"(sensors {' '.join(config.sensors)}, data {config.data})"
        )
    for r in reads:
        _check_sensor_kept(r, config, nsteps)
    out, offsets = _assemble_per_obs(reads, nobs, config.stepstart)

    # Pass 2: per-channel fields, block by block, into the unified basis.
    mask = _read_per_channel(reads, offsets, basis, nobs, out)
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
        basis.nchan,
        nsteps,
        ngrid,
    )
    return obs, background


def _read_julian_day(r: _SensorRead) -> None:
    """Pass 1a for one sensor: ``JULIAN_DAY`` of every observation of its file."""
    jd, path = _read_1d(r.files, "JULIAN_DAY", None, np.float64)
    assert jd is not None  # not optional
    r.julian_day = jd
    r.nobs_file = jd.shape[0]
    if r.nobs_file == 0:
        raise SeaIceError(
            f"{path}: sensor {r.files.sensor.name} has no observation (0 rows); "
            "remove it from --sensors or give its data"
        )
    check_convention(jd, path, r.files.sensor.name)
    finite = np.isfinite(jd)
    if r.nobs_file and (~finite).sum() > MOSTLY * r.nobs_file:
        raise SeaIceError(
            f"{path}: variable JULIAN_DAY mostly missing (NaN/fill): "
            f"{100 * (~finite).sum() / r.nobs_file:.0f}% of values"
        )


def _select_observations(
    r: _SensorRead,
    config: DataConfig,
    jd_origin: float,
    nsteps: int,
    nstep_total_bg: int,
    gname: str,
    ngrid: int,
    files: DataFiles,
) -> None:
    """Pass 1b for one sensor: read the per-observation fields and keep the observations in the
    period whose fields are all valid (``r.keep``); ``r.per_obs`` then holds only those."""
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
    late = int((ok & (istep_int >= nstep_total_bg)).sum())
    if late and config.nsteps is None:
        log.warning("sensor %s: %d observations after the background period dropped", sf.sensor.name, late)
    keep = in_period
    r.per_obs["istep"] = istep_int
    grid, gmiss = _read_grid_index(sf, gname, n, ngrid, files.seaice_background.name)
    keep &= ~gmiss
    r.per_obs["igrid"] = grid
    for name in PER_OBS_MAP:
        values, path = _read_1d(sf, name, n)
        assert values is not None  # not optional
        missing, out = classify(values, name)
        stats = FieldStats()
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
        missing, out = classify(zen, "ZENITH")
        if cross:  # the angle enters the physics: an observation without it is dropped
            stats = FieldStats()
            stats.add(zen, missing, out)
            stats.check(zpath, "ZENITH")
            keep &= ~(missing | out)
        zen[missing | out] = np.nan
    r.zenith_deg = zen
    r.keep = np.flatnonzero(keep)
    # Hold only the kept observations from here on (a short period of a long file keeps little).
    for name, arr in r.per_obs.items():
        r.per_obs[name] = arr[r.keep]
    if r.zenith_deg is not None:
        r.zenith_deg = r.zenith_deg[r.keep]
    r.julian_day = r.julian_day[r.keep]
    dropped = n - r.keep.size - int((~in_period).sum())
    log.info(
        "sensor %s: %d observations in file, %d in the period, %d dropped for invalid per-observation fields",
        sf.sensor.name,
        n,
        int(in_period.sum()),
        max(dropped, 0),
    )


def _read_grid_index(sf: SensorFiles, gname: str, n: int, ngrid: int, background_name: str):
    """The grid index of each observation (int32, -1 where missing) and the missing mask.

    Raises
    ------
    SeaIceError
        Mostly missing, non-integer, or beyond the background's grid.
    """
    grid, gpath = _read_1d(sf, gname, n, np.float64)
    assert grid is not None  # not optional
    gmiss = np.isnan(grid) | (grid < 0)
    if n and gmiss.sum() > MOSTLY * n:
        raise SeaIceError(f"{gpath}: variable {gname} mostly missing (NaN/fill/negative): {100 * gmiss.sum() / n:.0f}%")
    if (grid[~gmiss] != np.round(grid[~gmiss])).any():
        raise SeaIceError(f"{gpath}: variable {gname} holds non-integer grid indices")
    if (~gmiss).any() and grid[~gmiss].max() >= ngrid:
        raise SeaIceError(
            f"{gpath}: variable {gname} has grid index up to {int(grid[~gmiss].max())}, but the background "
            f"{background_name} has ngrid={ngrid} grid points (indices 0..{ngrid - 1})"
        )
    return np.where(gmiss, -1, grid).astype(np.int32), gmiss


def _assemble_per_obs(reads: list[_SensorRead], nobs: int, stepstart: int) -> tuple[dict[str, Any], list[int]]:
    """The per-observation arrays of all sensors, concatenated (final content only: no temporaries
    beyond nobs; the array fields of :class:`Observations`), and each sensor's first row."""
    out: dict[str, np.ndarray] = {
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


def _read_per_channel(
    reads: list[_SensorRead], offsets: list[int], basis: ChannelBasis, nobs: int, out: dict[str, np.ndarray]
) -> np.ndarray:
    """Read every per-channel field into ``out`` ((nobs, nchan) float32, unified basis); returns the mask.

    Every masked value is zeroed: a channel masked by one field is zeroed in all. Channels a sensor
    lacks were never written (0); only rows with an invalid value need that pass.
    """
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
    rows = np.flatnonzero(dirty)
    for a, b in row_blocks(rows.size):
        idx = rows[a:b]
        bad = ~mask[idx]
        for key in PER_CHANNEL_MAP.values():
            sub = out[key][idx]
            sub[bad] = 0.0
            out[key][idx] = sub
    return mask


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
    stats = FieldStats()
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
            missing, out = classify(values, name)
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
        mapped = _cache.load(Path(cache_dir), key, config.sensor_catalogue)  # the memory maps, not a second copy
        if mapped is not None:
            obs, background = mapped
    obs.source_digest = digest
    return obs, background


__all__ = ["read_training_data"]
