"""Low-level NetCDF access for the readers: open, find variables, read blocks.

Everything that touches :mod:`netCDF4` for the training-data readers goes
through here, so that errors carry the file and variable name and so that
fill values are handled in one place. Values are read in row blocks so a
field never needs more than one block of temporary copies.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.errors import SeaIceError

BLOCK_ROWS = 1 << 20
"""Observations read per block (a block of 14 float32 channels is ~60 MB)."""

FILL_ABS = 1.0e10
"""Values with a magnitude above this are fill values (e.g. 9.96921e36)."""

FILL_VALUES = (-999.0, -9999.0, -99999.0, -32767.0, -32768.0)
"""Conventional fill values treated as missing even without a ``_FillValue`` attribute."""


def _netcdf4():
    # Imported lazily so that tests can monkeypatch netCDF4.Dataset and so
    # that a cached run never touches the library.
    import netCDF4

    return netCDF4


def check_input_file(path: Path) -> None:
    """``path`` is a file to read: a regular file or a link to one. A named pipe, a device or a socket
    would block the read, or the checksums the cache takes first, for ever (before: a run on a named pipe
    in place of a data file hung).

    Raises
    ------
    SeaIceError
        One line naming ``path`` and what it is instead: missing, a broken link, a directory, a special file.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            raise SeaIceError(f"{path}: a broken link (to {os.readlink(path)}); link it to the file") from None
        raise SeaIceError(f"{path}: file not found") from None
    except OSError as exc:
        raise SeaIceError(f"{path}: cannot read the file ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise SeaIceError(f"{path}: a directory, not a file")
    if not stat.S_ISREG(mode):
        raise SeaIceError(f"{path}: not a regular file (a named pipe, device or socket); give the file itself")


def open_netcdf(path: Path) -> Any:
    """Open a NetCDF file for reading (the caller closes it); failures become :class:`SeaIceError`."""
    path = Path(path)
    check_input_file(path)
    try:
        return _netcdf4().Dataset(str(path), "r")
    except OSError as exc:
        raise SeaIceError(f"{path}: cannot read as NetCDF ({exc})") from None


@contextmanager
def open_dataset(path: Path) -> Iterator[Any]:
    """Open a NetCDF file for reading (:func:`open_netcdf`), closed at the end of the block."""
    ds = open_netcdf(path)
    try:
        yield ds
    finally:
        ds.close()


def variable_names(ds) -> list[str]:
    """Names of the variables of a dataset (root group)."""
    return list(ds.variables)


def get_variable(ds, path: Path, names: tuple[str, ...] | str):
    """The first variable of ``names`` present in ``ds``, else SeaIceError; one that holds text, not
    numbers, is a SeaIceError too (it gave a traceback where a value was no number, and numbers written as
    text were taken).

    Returns ``(variable, name)``.
    """
    if isinstance(names, str):
        names = (names,)
    for name in names:
        if name in ds.variables:
            var = ds.variables[name]
            if var.dtype is str or np.dtype(var.dtype).kind in "OSU":
                raise SeaIceError(f"{path}: variable {name} holds text ({var.dtype}); expected numbers")
            return var, name
    have = ", ".join(variable_names(ds)) or "none"
    want = " or ".join(names)
    raise SeaIceError(f"{path}: variable {want} not found (variables in file: {have})")


def invalid_float(values: np.ndarray) -> np.ndarray:
    """Boolean mask of missing values: NaN/inf, |x| > 1e10, or a conventional fill value."""
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(values) <= FILL_ABS)  # NaN, inf and huge fills
        low = values <= max(FILL_VALUES)
    if low.any():
        bad |= low & np.isin(values, FILL_VALUES)
    return bad


def as_float(raw, dtype=np.float32, fills: bool = True) -> np.ndarray:
    """A block read from netCDF4 as a C-contiguous float array; masked values -> NaN.

    With ``fills`` (default) the conventional fill values of
    :func:`invalid_float` become NaN too; without, they are left for the
    caller's range check. The buffer of ``raw`` (a fresh array returned by
    netCDF4) is reused when it already has the right dtype and layout.
    """
    data = raw.data if np.ma.isMaskedArray(raw) else raw
    out = np.ascontiguousarray(data, dtype=dtype)
    if np.ma.isMaskedArray(raw) and raw.mask is not np.ma.nomask and raw.mask.any():
        out[np.ascontiguousarray(raw.mask)] = np.nan
    if fills:
        out[invalid_float(out)] = np.nan
    return out


@dataclass(frozen=True)
class Layout2D:
    """How a per-observation-and-channel variable lies in its file.

    Attributes
    ----------
    transposed : bool
        True if stored as (channel, nobs) instead of (nobs, channel).
    nchan_file : int
        Channels in the file.
    offset : int
        Leading channels to drop (AMSR2's 6.9/7.3 GHz).
    """

    transposed: bool
    nchan_file: int
    offset: int


def read_rows(var, start: int, stop: int, layout: Layout2D | None = None):
    """Rows ``[start, stop)`` of a 1-D or 2-D variable, as stored (masked array)."""
    if layout is None:
        return var[start:stop]
    if layout.transposed:
        return var[layout.offset :, start:stop].T
    return var[start:stop, layout.offset :]


def row_blocks(n: int, block: int | None = None, start: int = 0) -> Iterator[tuple[int, int]]:
    """``(a, b)`` pairs covering ``range(start, n)`` in blocks of ``block`` (default :data:`BLOCK_ROWS`)."""
    block = block or BLOCK_ROWS
    for a in range(start, n, block):
        yield a, min(n, a + block)
