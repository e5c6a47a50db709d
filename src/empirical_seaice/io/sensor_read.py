"""One sensor's files as the reader goes through them: the state of a sensor between the reading
passes (:class:`SensorRead`), where each variable lives, and reading a per-observation variable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import direct_read
from empirical_seaice.io._netcdf import as_float, get_variable, invalid_float, open_dataset, row_blocks
from empirical_seaice.io.layouts import SensorFiles


@dataclass
class SensorRead:
    """Per-sensor state between the passes."""

    files: SensorFiles
    nobs_file: int = 0
    julian_day: np.ndarray = field(default_factory=lambda: np.zeros(0))
    keep: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # indices into the file's rows
    outside: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # timestamps outside the period
    in_period: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # in the selected steps
    per_obs: dict[str, np.ndarray] = field(default_factory=dict)
    zenith_deg: np.ndarray | None = None  # optional: None when the file has no ZENITH


def var_path(sf: SensorFiles, name: str, optional: bool = False):
    """The file of variable ``name``; None if optional and its layout-B file is absent."""
    path = sf.path(name)
    if sf.layout == "B" and not path.is_file():
        if optional:
            return None
        raise SeaIceError(
            f"{path}: file not found (variable {name} of sensor {sf.sensor.name}, layout-B prefix {sf.prefix!r})"
        )
    return path


def read_1d(sf: SensorFiles, name: str, nobs: int | None, dtype=np.float32, optional: bool = False):
    """Read a whole per-observation variable as a float array (NaN where missing).

    Returns ``(values, path)`` or ``(None, path)`` for an absent optional variable.
    """
    path = var_path(sf, name, optional)
    if path is None:
        return None, sf.path(name)
    stored = direct_read.stored(path, name, (np.float32, np.float64, np.int32))
    if stored is None or len(stored.shape) != 1 or (nobs is not None and stored.shape[0] != nobs):
        # through the netCDF library: any other storage, and every error of the file
        with open_dataset(path) as ds:
            if optional and name not in ds.variables:
                return None, path
            var, _ = get_variable(ds, path, name)
            shape = tuple(var.shape)
            if len(shape) != 1 or (nobs is not None and shape[0] != nobs):
                want = f"({nobs},)" if nobs is not None else "(nobs,)"
                raise SeaIceError(
                    f"{path}: variable {name} expected shape {want} (one value per observation), got {shape}"
                )
            out = np.empty(shape[0], dtype=dtype)
            for a, b in row_blocks(shape[0]):
                out[a:b] = as_float(var[a:b], dtype)
        return out, path
    # straight from the file's chunks (no netCDF call), to the values of the netCDF path
    out = np.empty(stored.shape[0], dtype=dtype)
    for a, b, values in stored.blocks(0, stored.shape[0]):
        block = out[a:b]
        block[:] = values
        block[values == stored.fill] = np.nan  # as masked by the netCDF library
        block[invalid_float(block)] = np.nan
    return out, path


__all__ = ["SensorRead", "var_path", "read_1d"]
