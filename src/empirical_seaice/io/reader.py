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
   float32 ``(nobs, nchan)`` arrays in the unified basis (netCDF-4 variables
   from their HDF5 chunks, :mod:`.direct_read`, else through the netCDF library);
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

The passes live in :mod:`.per_observation` (steps 2 to 4) and :mod:`.per_channel` (steps 5 and 6),
one sensor's reading state in :mod:`.sensor_read`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from empirical_seaice.config import DataConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import cache as _cache
from empirical_seaice.io._netcdf import as_float, check_input_file, get_variable, open_dataset
from empirical_seaice.io.background import background_shape, check_lonlat, check_same_points, read_background
from empirical_seaice.io.grid_cells import GridCells, declare, declared_cells
from empirical_seaice.io.layouts import DataFiles, find_data_files
from empirical_seaice.io.per_channel import channel_arrays, read_per_channel
from empirical_seaice.io.per_observation import (
    assemble_per_obs,
    check_file_sensor,
    check_sensor_kept,
    check_skin_pairing,
    grid_variables,
    numpy_zeros,
    per_obs_arrays,
    place_in_period,
    read_julian_day,
    select_observations,
)
from empirical_seaice.io.period import select_period
from empirical_seaice.io.sensor_read import SensorRead
from empirical_seaice.logs import warnings_said
from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.sensors import build_channel_basis, load_catalogue

log = logging.getLogger(__name__)


def _apply_grid_file(background: BackgroundMaps, path: Path | None, tsfc_path: Path) -> None:
    """Take ``lon``/``lat`` of the grid description (the v2 reference's grid file) into ``background``.

    Variables ``lon``, ``lat`` (or ``LON``, ``LAT``), one value per grid point of the
    background files. Coordinates already read from the skin-temperature file are kept: the
    sizes must agree, and so must the points (:func:`~empirical_seaice.io.background.check_same_points`).
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
    check_lonlat(values["lon"], values["lat"], path, ("lon", "lat"))
    check_same_points(
        {"LON": values["lon"], "LAT": values["lat"]}, {"LON": background.lon, "LAT": background.lat}, path, tsfc_path
    )
    if background.lon is None:
        background.lon = values["lon"]
    if background.lat is None:
        background.lat = values["lat"]


def check_both_coordinates(background: BackgroundMaps, tsfc_path: Path, seaice_path: Path) -> None:
    """The grid points' longitudes and latitudes come as a pair (from the skin-temperature file, the SIC
    file or the grid description) or not at all: one without the other would leave the outputs without
    coordinates and cells, and a global grid without its hemispheres.

    Raises
    ------
    SeaIceError
        Naming the background files, the coordinate missing and the fix.
    """
    if (background.lon is None) == (background.lat is None):
        return
    have, lack = ("LON", "LAT") if background.lat is None else ("LAT", "LON")
    raise SeaIceError(
        f"{tsfc_path}, {seaice_path}: variable {have} without {lack}; the grid points need both: add {lack} "
        "to the skin-temperature file, or give a grid description with lon and lat (--grid-file)"
    )


CELL_AREA_UNITS = {"m2": 1.0, "m^2": 1.0, "m**2": 1.0, "m 2": 1.0, "km2": 1e6, "km^2": 1e6, "km**2": 1e6, "km 2": 1e6}
"""Units of a grid description's ``cell_area`` taken, and their factor to m²."""


def read_declared_cells(path: Path | None, background: BackgroundMaps) -> GridCells | None:
    """The cells the grid description gives, if it has them: CF cell bounds (``lon_bnds``, ``lat_bnds``
    (grid points, vertices), degrees, or those the ``bounds`` attributes of ``lon`` and ``lat`` name) and,
    optionally, the cell measure ``cell_area`` (the variable of that name or ``standard_name``; m² or
    km²), checked by :func:`~empirical_seaice.io.grid_cells.declared_cells` against the run's coordinates.
    None without bounds (``cell_area`` alone is left: the outputs need the corners too, and it is
    logged); then the outputs' cells are drawn from the coordinates.

    Raises
    ------
    SeaIceError
        Bounds or areas that do not fit the grid points, naming the file, the variables and the fix.
    """
    if path is None or background.lon is None or background.lat is None:
        return None
    with open_dataset(path) as ds:
        names = []
        for coord in ("lon", "lat"):
            var, _ = get_variable(ds, path, (coord, coord.upper()))
            names.append(getattr(var, "bounds", f"{coord}_bnds"))
        area_names = [
            k for k, v in ds.variables.items() if k == "cell_area" or getattr(v, "standard_name", "") == "cell_area"
        ]
        if not all(n in ds.variables for n in names):
            if area_names:
                log.info("%s: %s without the cells' corners (%s) is not used", path, area_names[0], ", ".join(names))
            return None
        lon_b, lat_b = (as_float(ds.variables[n][:], np.float64) for n in names)
        area = None
        if area_names:
            var = ds.variables[area_names[0]]
            units = str(getattr(var, "units", "m2")).strip()
            if units not in CELL_AREA_UNITS:
                raise SeaIceError(
                    f"{path}: variable {area_names[0]}: units {units!r} not known; give the cells' areas in m2 or km2"
                )
            area = as_float(var[:], np.float64, fills=False) * CELL_AREA_UNITS[units]  # m²: over 1e10
    what = f"{path}: variables {names[0]}, {names[1]}" + (f", {area_names[0]}" if area is not None else "")
    ngrid = len(background.lon)
    if lon_b.ndim == 2 and lon_b.shape[1] == ngrid and lon_b.shape[0] != ngrid:
        raise SeaIceError(
            f"{what}: the corners are (vertices, grid points) {lon_b.shape}; write them (grid points, vertices)"
        )
    try:
        cells = declared_cells(background.lon, background.lat, lon_b, lat_b, area)
    except ValueError as err:
        raise SeaIceError(f"{what}: {err}") from None
    log.info("the outputs' grid cells are those of %s (%d corners a cell)", path, cells.nvertex)
    return cells


RESERVE_AHEAD = 3
"""The cache's per-channel arrays (:func:`~empirical_seaice.io.per_channel.channel_arrays`: the mask, then
the fields) that stay mapped once their pages are in (:meth:`~empirical_seaice.io.cache.CacheWriter.reserve`):
the mask and the 2 fields the pass starts with (0.4 GB on the benchmark twin, as before the early
reservation); the others' pages come in too while the per-observation fields are read, and are let go
again until the pass reaches them. Mapped pages count in the process's resident memory: all of them
mapped at once took the read's peak to 2.1 GiB. The per-observation arrays
(:func:`~empirical_seaice.io.per_observation.per_obs_arrays`, 0.1 GB) are reserved before them and stay
mapped: the pages of those of 16 MiB or more (the cache writer's threshold for bringing pages in;
``julian_day`` and ``obs_index`` on the benchmark twin) come in first, on the writer's thread,
before the reader writes them (:func:`assemble_per_obs`), instead of a page fault at each first write on
the reader's thread; the smaller ones fault in as before."""


def _read_fresh(
    files: DataFiles,
    config: DataConfig,
    nlag: int,
    writer: _cache.CacheWriter | None = None,
    write_early: bool = True,
) -> tuple[Observations, BackgroundMaps]:
    """Read the NetCDF files; with ``writer``, the arrays are written in place into the cache being built,
    and with ``write_early`` each per-channel array starts going to the disk once it is complete
    (:meth:`~empirical_seaice.io.cache.CacheWriter.finished`): for a commit the caller waits for."""
    zeros = writer.zeros if writer is not None else numpy_zeros
    catalogue = load_catalogue(config.sensor_catalogue)
    basis = build_channel_basis(config.sensors, catalogue)
    reads = [SensorRead(sf) for sf in files.sensors]

    # Pass 1a: Julian days of every sensor, for the common step origin.
    for r in reads:
        check_file_sensor(r.files, list(catalogue.sensors))
        read_julian_day(r)
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
        place_in_period(r, config, jd_origin, nsteps, bg_shape.nstep_total)
    if writer is not None:  # the cache's arrays, at most this long; the first come into memory meanwhile
        bound = sum(int(r.in_period.sum()) for r in reads)
        per_obs = per_obs_arrays(bound)
        writer.reserve(per_obs + channel_arrays(bound, basis.nchan), len(per_obs) + RESERVE_AHEAD)
    background = read_background(
        files.seaice_background, files.tsfc_background, bg_shape, config.stepstart, nsteps, nlag
    )
    ngrid = bg_shape.ngrid
    _apply_grid_file(background, files.grid, files.tsfc_background)
    check_both_coordinates(background, files.tsfc_background, files.seaice_background)
    if writer is not None:  # the background maps go to the cache while the observations are read
        for name in _cache.BG_FIELDS:
            arr = getattr(background, name)
            if arr is not None:
                writer.save_behind(f"bg_{name}", arr)
    grid_names = grid_variables(files.sensors)

    # Pass 1b: per-observation fields decide which observations are kept.
    for r, gname in zip(reads, grid_names, strict=True):
        select_observations(r, config, gname, ngrid, files)
    nobs = sum(r.keep.size for r in reads)
    if nobs == 0:
        raise SeaIceError(
            f"--stepstart {config.stepstart} --nsteps {nsteps}: no valid observation in the selected period "
            f"(sensors {' '.join(config.sensors)}, data {config.data})"
        )
    for r, gname in zip(reads, grid_names, strict=True):
        check_sensor_kept(r, config, nsteps)
        check_skin_pairing(r, gname, background.t_skin_map_k, config.stepstart, files.tsfc_background)
    out, offsets = assemble_per_obs(reads, nobs, config.stepstart, zeros)

    # Pass 2: per-channel fields, block by block, into the unified basis.
    finished = writer.finished if writer is not None and write_early else None
    mask = read_per_channel(reads, offsets, basis, nobs, out, zeros, finished=finished)
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


def read_training_data(
    config: DataConfig, nlag: int, cache_dir: Path | None = None, commit_behind: bool = False
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
    commit_behind : bool
        A cache built here is committed on a thread behind the caller
        (:func:`~empirical_seaice.io.cache.commit_behind`: its flush waits for the
        disk, and writes every page: none is written out during the read) instead of before
        returning; the caller joins it
        (:func:`~empirical_seaice.io.cache.join_commits`) before it ends. The arrays
        returned are the same read-only maps.

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
    obs, background = _read_or_load(files, config, nlag, cache_dir, commit_behind)
    declare(background.lon, background.lat, read_declared_cells(files.grid, background))
    return obs, background


def _read_or_load(
    files: DataFiles, config: DataConfig, nlag: int, cache_dir: Path | None, commit_behind: bool
) -> tuple[Observations, BackgroundMaps]:
    inputs = files.input_files()
    for path in inputs:  # before their checksums: a named pipe would block them for ever
        check_input_file(path)
    threads = min(2, os.cpu_count() or 1)
    if not (cache_dir is not None and config.cache):
        with _checksums_beside(inputs) as checksums, warnings_said("empirical_seaice.io") as said:
            obs, background = _read_fresh(files, config, nlag)
        obs.source_digest = _cache.content_digest(inputs, checksums.result())
        obs.read_warnings = tuple(said)
        return obs, background
    with _cache.locked(Path(cache_dir)) as lock:
        if _cache.exists(Path(cache_dir)):  # the checksums decide whether it is this data's
            sums = _cache.file_checksums(inputs, threads=threads)
            key = _cache.cache_key(inputs, config, nlag, sums)
            hit = _cache.load(Path(cache_dir), key, config.sensor_catalogue)
            if hit is not None:
                log.info("training data loaded from cache %s", cache_dir)
                hit[0].read_warnings = _cache.say_warnings(Path(cache_dir))
                hit[0].source_digest = _cache.content_digest(inputs, sums)
                return hit
        writer = _cache.CacheWriter(Path(cache_dir))
        try:
            # no cache yet: the files are read meanwhile, and what the read warns about is kept for the cache;
            # a commit behind the run writes the pages out there, not while the read needs both cores
            with _checksums_beside(inputs) as checksums, warnings_said("empirical_seaice.io") as said:
                obs, background = _read_fresh(files, config, nlag, writer, write_early=not commit_behind)
            sums = checksums.result()
        except BaseException:
            writer.abort()
            raise
        key = _cache.cache_key(inputs, config, nlag, sums)
        if commit_behind:  # read-only maps of the files being committed
            obs, background = _cache.commit_behind(
                lock, key, obs, background, writer, config.sensor_catalogue, warnings=said
            )
        else:
            _cache.save(Path(cache_dir), key, obs, background, writer, warnings=said)
            mapped = _cache.load(Path(cache_dir), key, config.sensor_catalogue)  # the memory maps, not a second copy
            if mapped is None:  # never the writable maps the reader filled: a write to them would change the cache
                raise SeaIceError(f"{cache_dir}: the cache just written does not read back; delete it and rerun")
            obs, background = mapped  # read-only maps
    obs.source_digest = _cache.content_digest(inputs, sums)
    obs.read_warnings = tuple(said)
    return obs, background


@contextlib.contextmanager
def _checksums_beside(inputs: list[Path]) -> Iterator[Future]:
    """The input files' checksums (:func:`~empirical_seaice.io.cache.file_checksums`) on one thread
    beside the reading of the files (its one-thread passes leave a core free; the files are read
    from the page cache once more, not from the disk); the block ends when they are done, or, where
    the block raises (a bad file, a signal), as soon as the checksum thread sees that it is to stop."""
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="checksums") as pool:
        try:
            yield pool.submit(_cache.file_checksums, inputs, 1, stop)
        except BaseException:
            stop.set()
            raise


__all__ = ["read_training_data", "read_declared_cells", "CELL_AREA_UNITS"]
