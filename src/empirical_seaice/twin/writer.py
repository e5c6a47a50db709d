"""NetCDF writing for the twin: appendable one-variable files (layout B/C) and grid files.

Files are NETCDF4 with an unlimited observation dimension (``nobs``) so a
run streams day by day; chunking is explicit (whole channel rows, 4096
observations), no compression, and no time stamps or history attributes, so
the same run gives byte-identical files.
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np

OBS_CHUNK = 4096
CHUNK_CACHE_BYTES = 2 * 1024 * 1024

PER_OBS_VARIABLES = {
    "JULIAN_DAY": ("f8", "days", "astronomical Julian day of the observation"),
    "IGRID": ("i4", "1", "0-based index of the grid point of the observation"),
    "COMMON_IGRID": ("i4", "1", "0-based grid index shared by all sensors"),
    "TSFC": ("f4", "K", "skin temperature (weather model)"),
    "WINDSPEED10M": ("f4", "m s-1", "10 m wind speed"),
    "CLOUD_FRACTION": ("f4", "1", "cloud fraction mixing clear and cloudy TBs"),
    "ZENITH": ("f4", "degree", "satellite zenith angle (earth incidence angle)"),
}
"""Per-observation variables of layout C: dtype, units, long_name."""

PER_CHANNEL_VARIABLES = {
    "OBSVALUE": ("f4", "K", "observed brightness temperature"),
    "EMIS_WATER": ("f4", "1", "ocean surface emissivity (weather-model ocean emissivity model)"),
    "TAUSFC": ("f4", "1", "surface-to-space transmittance, clear sky"),
    "TAUSFC_CLD": ("f4", "1", "surface-to-space transmittance, cloudy column"),
    "TDOWN": ("f4", "K", "downwelling brightness temperature at the surface, clear sky"),
    "TDOWN_CLD": ("f4", "K", "downwelling brightness temperature at the surface, cloudy column"),
    "TUP": ("f4", "K", "upwelling brightness temperature at the top of the atmosphere, clear sky"),
    "TUP_CLD": ("f4", "K", "upwelling brightness temperature at the top of the atmosphere, cloudy column"),
}
"""Per-observation-and-channel variables of layout C: dtype, units, long_name."""


def _set_attrs(var, units: str, long_name: str, **extra) -> None:
    var.setncattr("units", units)
    var.setncattr("long_name", long_name)
    for k, v in extra.items():
        var.setncattr(k, v)


class AppendFile:
    """A one-variable NetCDF file ``<prefix><NAME>.nc`` with an unlimited first dimension.

    Parameters
    ----------
    path : file to create (overwritten).
    name : variable name.
    dtype : numpy dtype string.
    units, long_name : CF attributes.
    nchan : second dimension (channels) or None for a 1-D variable.
    channels : channel names, stored as the attribute ``channels`` (space separated).
    global_attrs : global attributes.
    """

    def __init__(
        self,
        path: Path,
        name: str,
        dtype: str,
        units: str,
        long_name: str,
        nchan: int | None = None,
        channels: tuple[str, ...] = (),
        global_attrs: dict | None = None,
    ):
        self.ds = netCDF4.Dataset(path, "w", format="NETCDF4")
        self.ds.createDimension("nobs", None)
        dims: tuple[str, ...] = ("nobs",)
        chunks: tuple[int, ...] = (OBS_CHUNK,)
        if nchan is not None:
            self.ds.createDimension("nchan", nchan)
            dims += ("nchan",)
            chunks += (nchan,)
        self.var = self.ds.createVariable(name, dtype, dims, chunksizes=chunks)
        # appends touch one or two chunks at a time: a small cache keeps 45 open files from
        # holding the HDF5 default (16 MiB each, filled as the files grow)
        self.var.set_var_chunk_cache(size=CHUNK_CACHE_BYTES, nelems=17, preemption=1.0)
        extra = {"channels": " ".join(channels)} if channels else {}
        _set_attrs(self.var, units, long_name, **extra)
        for k, v in (global_attrs or {}).items():
            self.ds.setncattr(k, v)
        self.n = 0

    def append(self, values: np.ndarray) -> None:
        m = values.shape[0]
        if m:
            self.var[self.n : self.n + m] = values
            self.n += m

    def close(self) -> None:
        self.ds.close()


class FieldSetWriter:
    """A set of :class:`AppendFile` in one directory, appended together.

    ``fields`` maps a variable name to (dtype, units, long_name, per_channel).
    """

    def __init__(self, directory: Path, prefix: str, fields: dict, channels: tuple[str, ...], global_attrs: dict):
        directory.mkdir(parents=True, exist_ok=True)
        self.files = {
            name: AppendFile(
                directory / f"{prefix}{name}.nc",
                name,
                dtype,
                units,
                long_name,
                len(channels) if per_channel else None,
                channels if per_channel else (),
                global_attrs,
            )
            for name, (dtype, units, long_name, per_channel) in fields.items()
        }

    def append(self, arrays: dict[str, np.ndarray]) -> None:
        for name, f in self.files.items():
            f.append(arrays[name])

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def layout_c_fields() -> dict:
    """The layout-C field table for :class:`FieldSetWriter`."""
    out = {k: (*v, False) for k, v in PER_OBS_VARIABLES.items()}
    out.update({k: (*v, True) for k, v in PER_CHANNEL_VARIABLES.items()})
    return out


def write_grid_file(path: Path, variables: dict, dims: dict[str, int], global_attrs: dict) -> None:
    """Write a small NetCDF file at once.

    Parameters
    ----------
    path : file to create.
    variables : name -> (dims tuple, array, units, long_name).
    dims : dimension sizes.
    global_attrs : global attributes.
    """
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        for k, v in dims.items():
            ds.createDimension(k, v)
        for name, (vdims, arr, units, long_name) in variables.items():
            arr = np.asarray(arr)
            var = ds.createVariable(name, arr.dtype, vdims)
            _set_attrs(var, units, long_name)
            var[...] = arr
        for k, v in global_attrs.items():
            ds.setncattr(k, v)
