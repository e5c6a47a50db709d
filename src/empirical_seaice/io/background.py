"""Background SIC and daily skin-temperature maps (docs/data-format.md, "Background files").

Shapes (``ngrid`` = length of ``LON`` in the skin-temperature file, or the
rows of the SIC variable when ``LON`` is absent; ``M`` = columns of the
skin-temperature map = steps of the whole background period):

- SIC ``SEAICE`` or ``seaice``: ``(ngrid, M + nlag)`` -> columns
  ``[stepstart, stepstart + nsteps + nlag)``; ``(ngrid, M)`` -> padded at the
  start by repeating the first column ``nlag`` times, then sliced the same
  way; ``(ngrid,)`` -> constant in time.
- Skin temperature ``TSFC`` ``(ngrid, M)`` -> columns
  ``[stepstart, stepstart + nsteps)``; ``LON``, ``LAT`` ``(ngrid,)`` optional.

Grid-first is required: a variable stored ``(step, grid)`` is an error whose
message says it looks transposed (we do not guess, because ``ngrid == M``
would be ambiguous). Isolated missing SIC values become 0 (open water, e.g.
land points); isolated out-of-range SIC values are clipped to [0, 1];
isolated missing or out-of-range skin temperatures are replaced by the mean
of the valid ones; a map mostly invalid or out of range is an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io._netcdf import as_float, get_variable, open_dataset
from empirical_seaice.io.validity import MOSTLY, log_dropped
from empirical_seaice.observations import BackgroundMaps

log = logging.getLogger(__name__)

SIC_VARIABLES = ("SEAICE", "seaice")
SIC_RANGE = (0.0, 1.0)
TSFC_RANGE = (180.0, 340.0)


@dataclass(frozen=True)
class BackgroundShape:
    """Shapes of the background files, read without loading the data.

    Attributes
    ----------
    ngrid : int
        Grid points (length of LON, else rows of the SIC variable).
    nstep_total : int
        Steps of the background period (columns of the skin-temperature map).
    sic_kind : str
        ``"lagged"`` (ngrid, M + nlag), ``"padded"`` (ngrid, M) or ``"constant"`` (ngrid,).
    """

    ngrid: int
    nstep_total: int
    sic_kind: str


def _transposed_hint(shape: tuple[int, ...], ngrid: int | None) -> str:
    if ngrid is not None and len(shape) == 2 and shape[1] == ngrid and shape[0] != ngrid:
        return " (it looks transposed: store it as (grid, step))"
    return ""


def background_shape(seaice_path: Path, tsfc_path: Path, nlag: int) -> BackgroundShape:
    """Check the shapes of the background files and return the grid and period sizes.

    Raises
    ------
    SeaIceError
        A missing variable or a shape that fits none of the rules, naming the
        file, the variable, the expected and the actual shape.
    """
    with open_dataset(tsfc_path) as ds:
        tvar, _ = get_variable(ds, tsfc_path, "TSFC")
        tshape = tuple(tvar.shape)
        lon_n = len(ds.variables["LON"]) if "LON" in ds.variables else None
    with open_dataset(seaice_path) as ds:
        svar, sname = get_variable(ds, seaice_path, SIC_VARIABLES)
        sshape = tuple(svar.shape)
    if len(sshape) not in (1, 2):
        raise SeaIceError(
            f"{seaice_path}: variable {sname} expected shape (ngrid, nstep + nlag), (ngrid, nstep) or (ngrid,), "
            f"got {sshape}"
        )
    # ngrid: the length of LON when the skin-temperature file has it, else the SIC rows.
    ngrid = lon_n if lon_n is not None else sshape[0]
    if sshape[0] != ngrid:
        hint = _transposed_hint(sshape, ngrid)
        if hint:  # the SIC file's grid is its columns: that file is the one to fix
            raise SeaIceError(
                f"{seaice_path}: variable {sname} expected ngrid={ngrid} rows (length of LON in {tsfc_path.name}), "
                f"got shape {sshape}{hint}"
            )
        raise SeaIceError(  # either file may be the wrong one: name both, and what each holds
            f"{seaice_path.name} and {tsfc_path.name} are not on the same grid: {sname} has {sshape[0]} grid points, "
            f"LON of {tsfc_path.name} {ngrid} (TSFC {tshape}); give background files of one grid (in "
            f"{seaice_path.parent})"
        )
    if len(tshape) != 2 or tshape[0] != ngrid:
        hint = _transposed_hint(tshape, ngrid)
        raise SeaIceError(
            f"{tsfc_path}: variable TSFC expected shape (ngrid={ngrid}, nstep) to match {seaice_path.name}, "
            f"got {tshape}{hint}"
        )
    nstep_total = tshape[1]
    if len(sshape) == 1:
        kind = "constant"
    elif sshape[1] == nstep_total + nlag:
        kind = "lagged"
    elif sshape[1] == nstep_total:
        kind = "padded"
    else:
        hint = _transposed_hint(sshape, ngrid)
        raise SeaIceError(
            f"{seaice_path.name} and {tsfc_path.name} do not cover the same days: {sname} has {sshape[1]} columns, "
            f"TSFC {nstep_total} days; expected {nstep_total + nlag} (the days + nlag={nlag}), {nstep_total} or "
            f"one column{hint} (in {seaice_path.parent})"
        )
    return BackgroundShape(ngrid, nstep_total, kind)


def _clean(
    values: np.ndarray, lo: float, hi: float, path: Path, name: str, units: str
) -> tuple[np.ndarray, np.ndarray]:
    """Flag missing and out-of-range values; error if they are most of the field."""
    missing = np.isnan(values)
    with np.errstate(invalid="ignore"):
        out = ~missing & ((values < lo) | (values > hi))
    n = values.size
    if n and (missing.sum() + out.sum()) > MOSTLY * n:
        if out.sum() >= missing.sum():
            finite = values[~missing]
            raise SeaIceError(
                f"{path}: variable {name} mostly out of range [{lo:g}, {hi:g}] {units}: "
                f"{100 * out.sum() / n:.0f}% of values (found {finite.min():g} to {finite.max():g})"
            )
        raise SeaIceError(
            f"{path}: variable {name} mostly missing (NaN/fill): {100 * missing.sum() / n:.0f}% of values"
        )
    return missing, out


def _fill_missing_days(values: np.ndarray, bad: np.ndarray, path: Path, name: str, first_step: int) -> np.ndarray:
    """The steps (columns) of a background map of which more than :data:`MOSTLY` of the grid points are bad
    (``bad``: missing, or out of range) taken whole from the nearest step with values, the earlier on a tie,
    with a warning naming them (before: filled point by point like isolated values, a whole day's SIC set to
    0, open water, or its skin temperature to the map's mean); returns ``bad`` of the steps as they are now
    (the copied steps' isolated bad points). ``first_step``: the step of column 0, for the warning. A map
    mostly bad as a whole is :func:`_clean`'s error."""
    day_bad = bad.mean(axis=0) > MOSTLY
    if not day_bad.any() or day_bad.all():
        return bad
    good = np.flatnonzero(~day_bad)
    filled = np.flatnonzero(day_bad)
    for j in filled:
        k = good[np.argmin(2 * np.abs(good - j) + (good > j))]
        values[:, j] = values[:, k]
        bad[:, j] = bad[:, k]
    steps = ", ".join(str(first_step + j) for j in filled[:5]) + (", ..." if filled.size > 5 else "")
    log.warning(
        "%s: variable %s: %d step(s) (%s) mostly missing or out of range; each taken from the nearest step with "
        "values",
        path, name, filled.size, steps,
    )  # fmt: skip
    return bad


def read_background(
    seaice_path: Path, tsfc_path: Path, shape: BackgroundShape, stepstart: int, nsteps: int, nlag: int
) -> BackgroundMaps:
    """Read the background SIC and skin-temperature maps for the selected period.

    Parameters
    ----------
    seaice_path, tsfc_path : Path
        Background SIC and daily skin-temperature files.
    shape : BackgroundShape
        From :func:`background_shape`.
    stepstart, nsteps : int
        Selected period (steps from the start of the background period).
    nlag : int
        Lag columns of the SIC map.

    Returns
    -------
    BackgroundMaps
        ``sic`` float32 (ngrid, nsteps + nlag), ``t_skin_map_k`` float32
        (ngrid, nsteps), lon/lat float32 (ngrid,) or None.
    """
    stop = stepstart + nsteps
    if stop > shape.nstep_total:
        raise SeaIceError(
            f"{tsfc_path}: variable TSFC covers {shape.nstep_total} steps, the selected period needs "
            f"steps {stepstart}..{stop - 1}; reduce --nsteps/--stepstart or extend the background"
        )
    with open_dataset(seaice_path) as ds:
        svar, sname = get_variable(ds, seaice_path, SIC_VARIABLES)
        if shape.sic_kind == "constant":
            col = as_float(svar[:])
            sic = np.repeat(col[:, None], nsteps + nlag, axis=1)
        elif shape.sic_kind == "lagged":
            sic = as_float(svar[:, stepstart : stop + nlag])
        else:
            cols = np.clip(np.arange(stepstart, stop + nlag) - nlag, 0, None)
            block = as_float(svar[:, cols[0] : cols[-1] + 1])
            sic = np.ascontiguousarray(block[:, cols - cols[0]])
        sic_points = {n: as_float(ds.variables[n][:]).ravel() for n in ("LON", "LAT") if n in ds.variables}
    missing, out = _clean(sic, *SIC_RANGE, seaice_path, sname, "(fraction 0..1)")
    missing = _fill_missing_days(sic, missing, seaice_path, sname, stepstart - nlag)
    if missing.any():
        log_dropped(
            log, int(missing.sum()), sic.size, "%s: %d missing SIC values set to 0", seaice_path, int(missing.sum())
        )
    sic[missing] = 0.0
    np.clip(sic, *SIC_RANGE, out=sic)

    with open_dataset(tsfc_path) as ds:
        tvar, _ = get_variable(ds, tsfc_path, "TSFC")
        tmap = as_float(tvar[:, stepstart:stop])
        lon = as_float(ds.variables["LON"][:]) if "LON" in ds.variables else None
        lat = as_float(ds.variables["LAT"][:]) if "LAT" in ds.variables else None
    missing, out = _clean(tmap, *TSFC_RANGE, tsfc_path, "TSFC", "K")
    bad = _fill_missing_days(tmap, missing | out, tsfc_path, "TSFC", stepstart)
    if bad.any():
        fill = float(tmap[~bad].mean()) if (~bad).any() else 271.35
        log_dropped(
            log, int(bad.sum()), tmap.size,
            "%s: %d of %d skin temperatures missing or out of range, set to their mean %.2f K",
            tsfc_path, int(bad.sum()), tmap.size, fill,
        )  # fmt: skip
        tmap[bad] = fill
    if lat is not None and lat.shape != (shape.ngrid,):
        raise SeaIceError(f"{tsfc_path}: variable LAT expected shape ({shape.ngrid},), got {lat.shape}")
    check_lonlat(lon, lat, tsfc_path)
    check_same_points(sic_points, {"LON": lon, "LAT": lat}, seaice_path, tsfc_path)
    # what the skin-temperature file lacks, the SIC file's (before, the grid points' coordinates went missing
    # from every output when the skin-temperature file had LON alone, or neither)
    if lon is None or lat is None:
        for name, arr in sic_points.items():
            if arr.shape != (shape.ngrid,):
                raise SeaIceError(
                    f"{seaice_path}: variable {name} expected shape ({shape.ngrid},) (one value per grid point of "
                    f"{tsfc_path.name}), got {arr.shape}"
                )
        lon = sic_points.get("LON") if lon is None else lon
        lat = sic_points.get("LAT") if lat is None else lat
        check_lonlat(lon, lat, seaice_path)
    return BackgroundMaps(
        sic=np.ascontiguousarray(sic, dtype=np.float32),
        t_skin_map_k=np.ascontiguousarray(tmap, dtype=np.float32),
        nlag=nlag,
        lon=lon,
        lat=lat,
    )


POINT_TOLERANCE_DEG = 0.05
"""How far (degrees) another file's ``LON``/``LAT`` may be from the skin-temperature file's at a grid point:
coordinates rounded to 0.1 degree pass, a neighbouring point of a 25 km grid (0.2 degree of latitude) does
not. Longitudes within :data:`POLE_MARGIN_DEG` of a pole, where any longitude is nearly the same place, are
not compared."""

POLE_MARGIN_DEG = 0.5
"""Degrees from a pole within which :func:`check_same_points` does not compare longitudes."""


def check_same_points(
    theirs_by_name: dict[str, np.ndarray],
    ours_by_name: dict[str, np.ndarray | None],
    their_path: Path,
    our_path: Path,
) -> None:
    """Where two files give ``LON`` or ``LAT`` (the SIC file or the grid description, and the skin-temperature
    file), they give the same grid points in the same order (longitudes compared modulo 360). The grid is the
    skin-temperature file's; a SIC file or grid description of the same size in another order (another grid,
    or its points sorted otherwise) was used as it came.

    Raises
    ------
    SeaIceError
        Naming both files, the variable, how many points differ and the first of them.
    """
    for name, theirs in theirs_by_name.items():
        ours = ours_by_name.get(name)
        if ours is None:
            continue
        if theirs.shape != ours.shape:
            bad = np.ones(max(theirs.size, ours.size), dtype=bool)
            detail = f"{theirs.size} values against {ours.size}"
        else:
            diff = theirs.astype(np.float64) - ours
            if name == "LON":
                diff = (diff + 180.0) % 360.0 - 180.0
            bad = ~(np.abs(diff) <= POINT_TOLERANCE_DEG)
            lat = ours_by_name.get("LAT")
            if name == "LON" and lat is not None and lat.shape == bad.shape:
                bad &= np.abs(lat) < 90.0 - POLE_MARGIN_DEG
            if not bad.any():
                continue
            i = int(np.flatnonzero(bad)[0])
            detail = f"grid point {i}: {float(theirs[i]):g} against {float(ours[i]):g}"
        raise SeaIceError(
            f"{their_path.name} and {our_path.name} are not on the same grid: their {name} differ at "
            f"{int(bad.sum())} of {bad.size} grid points ({detail}); give background files of one grid, its "
            f"points in one order (in {their_path.parent})"
        )


def check_lonlat(lon: np.ndarray | None, lat: np.ndarray | None, path: Path, names=("LON", "LAT")) -> None:
    """The grid points' coordinates in degrees: every latitude finite within [-90, 90], every longitude
    finite within [-360, 360], and latitudes not all within +-pi/2 (radians: a sea ice grid reaches
    poleward of 40 degrees). Before, any values were taken: a NaN latitude gave the Bootstrap algorithm
    the southern tie points, swapped or radian coordinates went into every output file.

    Raises
    ------
    SeaIceError
        Naming the file, the variable, how many values and one of them.
    """
    for name, values, limit in ((names[0], lon, 360.0), (names[1], lat, 90.0)):
        if values is None:
            continue
        bad = ~np.isfinite(values) | (np.abs(values) > limit)
        if bad.any():
            raise SeaIceError(
                f"{path}: variable {name}: {int(bad.sum())} of {values.size} values missing or outside "
                f"[-{limit:g}, {limit:g}] (e.g. {float(values[bad][0]):g}); give each grid point's "
                f"{'latitude' if name.lower() == 'lat' else 'longitude'} in degrees"
            )
    if lat is not None and lat.size > 1 and float(np.max(np.abs(lat))) <= np.pi / 2:
        raise SeaIceError(
            f"{path}: variable {names[1]}: every value within +-{np.pi / 2:.4f}, radians? give the latitudes "
            "in degrees (a sea ice grid reaches poleward of 40 degrees)"
        )


__all__ = [
    "BackgroundShape",
    "background_shape",
    "read_background",
    "check_lonlat",
    "check_same_points",
    "SIC_VARIABLES",
]
