"""Write training data in layouts A, B and C and the background files.

Small and plain: used by the tests (fixtures written by the tests
themselves) and by anything that needs a file set the readers accept.
Dimension names are generic (``dim0_<size>``, ``dim1_<size>``) because the
readers go by variable name and shape, as real files require.

Examples
--------
>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> f = example_fields("amsr2", nobs=5, ngrid=3, nstep=2, rng=np.random.default_rng(0))
>>> f["OBSVALUE"].shape
(5, 10)
>>> write_layout_b(d, f).name
'field_v2_JULIAN_DAY.nc'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from empirical_seaice.sensors import get_sensor

DEFAULT_PREFIX = "field_v2_"
SEAICE_FILE = "ifs_seaice_initials_test.nc"
TSFC_FILE = "ifs_tsfc_test_dailyx.nc"
JD_START = 2459000.5
"""Default first Julian day (2020-05-31 00 UTC); floor gives the origin 2459000.0."""


def write_netcdf(path: Path, variables: Mapping[str, np.ndarray], fill_value: float | None = None) -> Path:
    """Write arrays as NetCDF variables with generic dimension names.

    Masked arrays are written with ``_FillValue = fill_value`` (required then).
    """
    import netCDF4

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(str(path), "w") as ds:
        for name, arr in variables.items():
            dims = []
            for axis, size in enumerate(np.shape(arr)):
                dim = f"dim{axis}_{size}"
                if dim not in ds.dimensions:
                    ds.createDimension(dim, size)
                dims.append(dim)
            data = arr
            dtype = np.asarray(np.ma.getdata(arr)).dtype
            kwargs = {}
            if fill_value is not None and np.ma.isMaskedArray(arr):
                kwargs["fill_value"] = np.array(fill_value, dtype=dtype)
            var = ds.createVariable(name, dtype, tuple(dims), **kwargs)
            var[...] = data
    return path


def write_layout_a(path: Path, fields: Mapping[str, np.ndarray], fill_value: float | None = None) -> Path:
    """Layout A: one (monthly) file holding every variable."""
    return write_netcdf(path, fields, fill_value)


def write_layout_b(
    directory: Path, fields: Mapping[str, np.ndarray], prefix: str = DEFAULT_PREFIX, fill_value: float | None = None
) -> Path:
    """Layout B: ``<directory>/<prefix><FIELD>.nc``, one variable per file. Returns the JULIAN_DAY file."""
    directory = Path(directory)
    for name, arr in fields.items():
        write_netcdf(directory / f"{prefix}{name}.nc", {name: arr}, fill_value)
    return directory / f"{prefix}JULIAN_DAY.nc"


def write_layout_c(
    directory: Path, sensor_fields: Mapping[str, Mapping[str, np.ndarray]], prefix: str = DEFAULT_PREFIX
) -> Path:
    """Layout C: ``<directory>/<sensor>/`` holding layout-B files for each sensor."""
    directory = Path(directory)
    for sensor, fields in sensor_fields.items():
        write_layout_b(directory / sensor, fields, prefix)
    return directory


def write_reference_v2(
    directory: Path,
    sensor_fields: Mapping[str, Mapping[str, np.ndarray]],
    sic: np.ndarray,
    t_skin_map_k: np.ndarray,
    lon: np.ndarray,
    lat: np.ndarray,
) -> Path:
    """The v2 reference's training directory, unchanged: ``<directory>/<sensor>/<sensor>_<FIELD>.nc``
    with ``IGRID`` only (no ``COMMON_IGRID``; every sensor indexes the one grid), the grid
    description ``grid.nc`` (``lon``, ``lat`` on dimension ``igrid``), and the background files
    ``ifs_seaice_initials_*.nc`` / ``ifs_tsfc_*_dailyx_*.nc`` with no coordinates in the latter."""
    import netCDF4

    directory = Path(directory)
    for sensor, fields in sensor_fields.items():
        plain = {k: v for k, v in fields.items() if k != "COMMON_IGRID"}
        write_layout_b(directory / sensor, plain, prefix=f"{sensor}_")
    write_backgrounds(
        directory, sic, t_skin_map_k, seaice_file="ifs_seaice_initials_ref.nc", tsfc_file="ifs_tsfc_ref_dailyx_v2.nc"
    )
    with netCDF4.Dataset(str(directory / "grid.nc"), "w") as ds:
        ds.createDimension("igrid", len(lon))
        for name, arr in (("lon", lon), ("lat", lat)):
            ds.createVariable(name, "f4", ("igrid",))[:] = np.asarray(arr, np.float32)
    return directory


def write_backgrounds(
    directory: Path,
    sic: np.ndarray,
    t_skin_map_k: np.ndarray,
    lon: np.ndarray | None = None,
    lat: np.ndarray | None = None,
    sic_variable: str = "SEAICE",
    seaice_file: str = SEAICE_FILE,
    tsfc_file: str = TSFC_FILE,
) -> tuple[Path, Path]:
    """Write the background SIC file and the daily skin-temperature file; returns both paths."""
    directory = Path(directory)
    s = write_netcdf(directory / seaice_file, {sic_variable: np.asarray(sic, np.float32)})
    tvars = {"TSFC": np.asarray(t_skin_map_k, np.float32)}
    if lon is not None:
        tvars["LON"] = np.asarray(lon, np.float32)
    if lat is not None:
        tvars["LAT"] = np.asarray(lat, np.float32)
    t = write_netcdf(directory / tsfc_file, tvars)
    return s, t


def example_fields(
    sensor: str,
    nobs: int,
    ngrid: int,
    nstep: int,
    rng: np.random.Generator,
    jd_start: float = JD_START,
    with_leading: bool = False,
    grid_variable: str = "IGRID",
    zenith: bool = True,
) -> dict[str, np.ndarray]:
    """Plausible random training-data fields of one sensor (every value valid).

    Julian days are uniform in ``[jd_start, jd_start + nstep)`` minus a margin,
    so with the default ``jd_start`` (00 UTC) steps run 0..nstep-1. Channel
    ``j`` of ``OBSVALUE`` is near ``150 + 10 j`` K so channels are told apart.

    Parameters
    ----------
    sensor : str
        Sensor name (sets the channel count).
    nobs, ngrid, nstep : int
        Observations, grid points, steps.
    rng : numpy.random.Generator
        Random source.
    jd_start : float
        First Julian day.
    with_leading : bool
        Add the sensor's leading unused channels first (AMSR2: 14 channels).
    grid_variable : str
        ``"IGRID"`` or ``"COMMON_IGRID"`` (or ``"both"``).
    zenith : bool
        Include ``ZENITH``.
    """
    s = get_sensor(sensor)
    nch = len(s.file_channels) + (len(s.leading_unused) if with_leading else 0)
    f32 = np.float32
    # Keep days clear of 21 UTC boundaries at both ends: start at jd_start,
    # end 0.1 day before the last window closes (jd_start's day + nstep + 0.375).
    last = np.floor(jd_start) + nstep + 0.375 - 0.1
    fields: dict[str, np.ndarray] = {
        "JULIAN_DAY": np.sort(rng.uniform(jd_start, last, nobs)).astype(np.float64),
    }
    grid = rng.integers(0, ngrid, nobs).astype(np.int32)
    if grid_variable in ("IGRID", "both"):
        fields["IGRID"] = grid
    if grid_variable in ("COMMON_IGRID", "both"):
        fields["COMMON_IGRID"] = grid
    fields["TSFC"] = rng.uniform(240.0, 280.0, nobs).astype(f32)
    fields["WINDSPEED10M"] = rng.uniform(0.0, 20.0, nobs).astype(f32)
    fields["CLOUD_FRACTION"] = rng.uniform(0.0, 1.0, nobs).astype(f32)
    if zenith:
        fields["ZENITH"] = rng.uniform(50.0, 56.0, nobs).astype(f32)
    j = np.arange(nch, dtype=f32)
    shape = (nobs, nch)
    fields["OBSVALUE"] = (150.0 + 10.0 * j + rng.uniform(-5.0, 5.0, shape)).astype(f32)
    fields["EMIS_WATER"] = rng.uniform(0.4, 0.7, shape).astype(f32)
    fields["TAUSFC"] = rng.uniform(0.5, 1.0, shape).astype(f32)
    fields["TAUSFC_CLD"] = rng.uniform(0.3, 1.0, shape).astype(f32)
    for name in ("TDOWN", "TUP", "TDOWN_CLD", "TUP_CLD"):
        fields[name] = rng.uniform(5.0, 150.0, shape).astype(f32)
    return fields


def example_backgrounds(ngrid: int, nstep: int, nlag: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Background arrays: ``sic`` (ngrid, nstep + nlag), ``t_skin_map_k`` (ngrid, nstep), ``lon``, ``lat``."""
    return {
        "sic": rng.uniform(0.0, 1.0, (ngrid, nstep + nlag)).astype(np.float32),
        "t_skin_map_k": rng.uniform(240.0, 275.0, (ngrid, nstep)).astype(np.float32),
        "lon": rng.uniform(-180.0, 180.0, ngrid).astype(np.float32),
        "lat": rng.uniform(60.0, 90.0, ngrid).astype(np.float32),
    }


__all__ = [
    "write_netcdf",
    "write_layout_a",
    "write_layout_b",
    "write_layout_c",
    "write_backgrounds",
    "write_reference_v2",
    "example_fields",
    "example_backgrounds",
    "DEFAULT_PREFIX",
    "SEAICE_FILE",
    "TSFC_FILE",
    "JD_START",
]
