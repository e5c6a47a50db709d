"""CF-1.10 metadata shared by every NetCDF output (one home for the conventions).

Every output file of a run carries the global attributes of
:func:`global_attributes` (``Conventions``, ``title``, ``institution``,
``source``, ``history``, ``references``, ``date_created``), CF time
coordinates with a real epoch (:func:`time_variables`: ``time`` in days since
1970-01-01 and, for daily fields, ``time_bnds``, beside the reference's
``julian_day``), ``standard_name`` on the quantities the CF standard-name
table names (:data:`STANDARD`) and the geographic coordinates
(:func:`lonlat_attrs`). Names (channels, sensors, inputs) are stored as
fixed-length character arrays (NetCDF ``char``) rather than variable-length
strings, which older tools cannot read (:func:`encoding`). Variables above
:data:`COMPRESS_MIN_BYTES` are zlib-compressed and chunked.

No torch and no xarray at import time.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

CONVENTIONS = "CF-1.10"
INSTITUTION = "empirical-seaice project"
REFERENCES = (
    "Geer, A. J. (2024): Simultaneous inference of sea ice state and surface emissivity model using "
    "machine learning and data assimilation. J. Adv. Model. Earth Syst., 16, e2023MS004080, "
    "doi:10.1029/2023MS004080"
)
DOI = "10.1029/2023MS004080"

UNIX_EPOCH_JD = 2440587.5
"""Julian day of 1970-01-01T00:00:00 UTC (the epoch of ``time``)."""

TIME_UNITS = "days since 1970-01-01 00:00:00"

COMPRESS_MIN_BYTES = 4096
"""Variables of at least this many bytes are zlib-compressed and chunked."""

COMPLEVEL = 1
"""zlib level (with the shuffle filter): on a year's per-observation TBs level 1 makes files 1 %
larger than level 2 for 14 % less compression time (benchmarks/results.md); compressing the
outputs is the largest part of a run's CPU time after training."""

CHUNK_TARGET_BYTES = 1 << 20
"""Approximate size of a chunk (1 MiB): whole trailing dimensions, rows of the first (the TBs per
observation: one channel a chunk, :data:`COLUMN_CHUNK_BYTES`)."""

COLUMN_CHUNK_BYTES = 1 << 18
"""Approximate size of a chunk of one column (:func:`by_channel`; 256 KiB): the rows of as many whole
chunks of the variable's rows (:data:`CHUNK_TARGET_BYTES`) as fit, so a block of the streamed passes fills
both (:func:`empirical_seaice.io.output_writer.block_rows`). On the ``benchmark`` twin (17 channels)
61,680 rows, four times the rows of 60 KiB column chunks (one row chunk's rows): a ``tbsim`` file 82.5
instead of 87.6 MB, written on one core in 0.32-0.36 instead of 0.33-0.38 CPU-s, read in about the same time (whole,
in blocks, one channel; benchmarks/results.md)."""

STANDARD = {
    "sic": {"standard_name": "sea_ice_area_fraction", "cell_methods": "area: mean where sea"},
    "tb": {"standard_name": "toa_brightness_temperature", "units_metadata": "temperature: on_scale"},
    "ice_emis": {"standard_name": "surface_microwave_emissivity", "cell_methods": "area: mean where sea_ice"},
    "t_skin": {"standard_name": "surface_temperature", "units_metadata": "temperature: on_scale"},
    "frequency": {"standard_name": "sensor_band_central_radiation_frequency"},
    "channel_name": {"standard_name": "sensor_band_identifier"},
}
"""CF standard names (table v93, shipped with compliance-checker) of the quantities that have one.
The empirical state, losses and network weights have none."""


def code_version() -> str:
    """Package version, plus the git commit of the source tree when there is one."""
    from empirical_seaice import __version__

    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+g{sha}" if sha else __version__


_VERSION: str | None = None


def _cached_version() -> str:
    global _VERSION
    if _VERSION is None:
        _VERSION = code_version()
    return _VERSION


def now_iso() -> str:
    """The current UTC time, ``YYYY-MM-DDTHH:MM:SSZ``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_COMMAND: str | None = None


def set_command_line(prog: str, argv: Sequence[str]) -> None:
    """Record the command of this run (the CLI calls it with its arguments) for ``history``."""
    global _COMMAND
    _COMMAND = " ".join([prog, *(shlex.quote(str(a)) for a in argv)])


@contextlib.contextmanager
def command_noted(note: str) -> Iterator[None]:
    """Inside: :func:`command_line` followed by ``note`` (an ensemble member's files say in ``history`` which
    member wrote them and that its inputs were perturbed; they read as the plain run's before 2026-12-05)."""
    global _COMMAND
    before = _COMMAND
    _COMMAND = f"{command_line()} {note}"
    try:
        yield
    finally:
        _COMMAND = before


def command_line() -> str:
    """The command of this run, for ``history``: as recorded by :func:`set_command_line`,
    else the process's ``sys.argv``."""
    if _COMMAND is not None:
        return _COMMAND
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return " ".join([prog, *(shlex.quote(a) for a in sys.argv[1:])])


def global_attributes(title: str, **extra: Any) -> dict[str, Any]:
    """The CF / ACDD global attributes of an output file.

    Parameters
    ----------
    title : what the file holds (one line).
    extra : further attributes (e.g. ``comment``, provenance); they override the defaults.
    """
    version = _cached_version()
    created = now_iso()
    attrs: dict[str, Any] = {
        "Conventions": CONVENTIONS,
        "title": title,
        "institution": INSTITUTION,
        "source": f"empirical-seaice {version} (empirical state method, Geer 2024)",
        "history": f"{created} created by empirical-seaice {version}: {command_line()}",
        "references": REFERENCES,
        "doi": DOI,
        "date_created": created,
    }
    attrs.update(extra)
    return attrs


def julian_day_to_time(jd: np.ndarray) -> np.ndarray:
    """Julian day -> days since 1970-01-01 00:00 UTC (float64)."""
    return np.asarray(jd, dtype=np.float64) - UNIX_EPOCH_JD


def time_attrs(long_name: str, bounds: str | None = None) -> dict[str, str]:
    """Attributes of a CF time coordinate in days since 1970-01-01 (standard calendar)."""
    attrs = {
        "units": TIME_UNITS,
        "calendar": "standard",
        "standard_name": "time",
        "long_name": long_name,
        "axis": "T",
    }
    if bounds:
        attrs["bounds"] = bounds
    return attrs


CELL_AREA = "cell_area"
"""The cell measures variable of the files on the grid (m², :mod:`empirical_seaice.io.grid_cells`)."""
CELL_MEASURES = f"area: {CELL_AREA}"
"""``cell_measures`` of every variable on the grid of a file that has :data:`CELL_AREA`."""
CELL_VERTICES = "vertices"
"""The dimension of the grid cells' corners (``lon_bnds``, ``lat_bnds``)."""


def cell_area_attrs(method: str) -> dict[str, str]:
    """CF attributes of :data:`CELL_AREA`; ``method``: what the cells are (``GridCells.method``)."""
    return {
        "units": "m2",
        "standard_name": "cell_area",
        "long_name": "area of the grid point's cell",
        "comment": f"{method}; lon_bnds, lat_bnds: its corners",
    }


def lonlat_attrs(name: str, long_name: str | None = None) -> dict[str, str]:
    """CF attributes of ``lon`` / ``lat``."""
    if name == "lon":
        return {"units": "degrees_east", "standard_name": "longitude", "long_name": long_name or "longitude"}
    return {"units": "degrees_north", "standard_name": "latitude", "long_name": long_name or "latitude"}


def chunks_for(shape: tuple[int, ...], itemsize: int, by_column: bool = False) -> tuple[int, ...]:
    """Chunk shape of about :data:`CHUNK_TARGET_BYTES`: whole trailing dimensions, a block of the first;
    ``by_column`` (a 2-D variable): one column a chunk of about :data:`COLUMN_CHUNK_BYTES`, the rows of
    whole such chunks (:func:`by_channel`)."""
    if not shape:
        return ()
    row = int(np.prod(shape[1:], dtype=np.int64)) * itemsize if len(shape) > 1 else itemsize
    first = max(1, min(shape[0], CHUNK_TARGET_BYTES // max(row, 1)))
    if by_column and len(shape) == 2:
        whole = max(1, COLUMN_CHUNK_BYTES // (first * itemsize))  # row chunks a column chunk spans
        return (min(shape[0], first * whole), 1)
    return (first, *[max(1, s) for s in shape[1:]])


def by_channel(var: Any) -> bool:
    """Whether the variable ``var`` (xarray) is chunked one channel at a time (:func:`chunks_for`): a
    brightness temperature per observation (dimensions ``(iobs, channel)``, :data:`STANDARD` ``tb``).

    Each chunk then holds one channel's TB of a run of observations (a channel the run's sensor lacks: a
    run of NaN) instead of rows of every channel, whose TBs differ by tens of kelvin from one channel to
    the next: on the ``benchmark`` twin's ``tbzero`` 21 % less CPU to shuffle and deflate and a 12 %
    smaller file. The emissivities of a row are alike: chunked by columns, ``ice_emis`` took 28 % more
    CPU for a 14 % larger file, and keeps whole rows (benchmarks/results.md)."""
    dims = tuple(map(str, var.dims))
    return dims == ("iobs", "channel") and var.attrs.get("standard_name") == STANDARD["tb"]["standard_name"]


def encoding(variables: Mapping[Any, Any]) -> dict[Any, dict[str, Any]]:
    """xarray ``to_netcdf`` encoding of the variables of an output dataset.

    Floats: ``_FillValue = NaN`` (none on times, ``julian_day`` and bounds); integers: no fill value;
    strings: fixed-length ``char`` arrays (dimension ``<name>_strlen``); every numeric variable of at
    least :data:`COMPRESS_MIN_BYTES` bytes zlib-compressed in chunks of ~1 MiB (the TBs per observation:
    one channel a chunk of ~256 KiB, :data:`COLUMN_CHUNK_BYTES`; :func:`by_channel`).
    """
    enc: dict[Any, dict[str, Any]] = {}
    no_fill = {str(v.attrs["bounds"]) for v in variables.values() if "bounds" in v.attrs}
    no_fill |= {str(n) for n, v in variables.items() if v.attrs.get("standard_name") == "time" or n == "julian_day"}
    for name, var in variables.items():
        e: dict[str, Any] = {}
        kind = var.dtype.kind
        if kind == "f" and name in no_fill:  # CF: bounds carry no attribute of their own; times are never missing
            e["_FillValue"] = None
        elif kind == "f":
            e["_FillValue"] = np.nan
        elif kind in "iub":
            e["_FillValue"] = None
        elif kind in "OSU":
            e["dtype"] = "S1"
            e["char_dim_name"] = f"{name}_strlen"
            e["_FillValue"] = None
        if kind in "fiub" and var.size * var.dtype.itemsize >= COMPRESS_MIN_BYTES and var.ndim:
            chunks = chunks_for(tuple(var.shape), var.dtype.itemsize, by_channel(var))
            e.update(zlib=True, complevel=COMPLEVEL, chunksizes=chunks)
        enc[str(name)] = e
    return enc


__all__ = [
    "CONVENTIONS",
    "REFERENCES",
    "DOI",
    "STANDARD",
    "UNIX_EPOCH_JD",
    "TIME_UNITS",
    "COMPRESS_MIN_BYTES",
    "code_version",
    "global_attributes",
    "julian_day_to_time",
    "time_attrs",
    "lonlat_attrs",
    "cell_area_attrs",
    "CELL_AREA",
    "CELL_MEASURES",
    "CELL_VERTICES",
    "by_channel",
    "chunks_for",
    "encoding",
]
