"""Find the training-data files of a run: layouts A, B and C of docs/data-format.md.

Detection (no NetCDF is opened here, only the file system is looked at):

- ``config.data`` is a file: layout A, one monthly file holding every
  variable, for the single sensor ``config.sensors[0]``.
- ``config.data`` is a directory with a sub-directory named after a sensor
  of the catalogue: layout C, ``<data>/<sensor>/`` holding layout-B files
  for each sensor of ``config.sensors``.
- ``config.data`` is a directory holding ``*JULIAN_DAY.nc``: layout B,
  ``<data>/<prefix><FIELD>.nc``, one variable per file, single sensor.

The background files are found by ``ifs_seaice*.nc`` and ``ifs_tsfc*.nc`` in
the data directory (the monthly file's directory for layout A) unless given
explicitly (``--seaice-background``, ``--tsfc-background``); the optional grid
description (``lon``, ``lat`` per grid point, as the v2 reference reads it) is
``grid.nc`` there or ``--grid-file``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from empirical_seaice.config import DataConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.sensors import Sensor, load_catalogue

PER_OBS_VARIABLES = ("JULIAN_DAY", "TSFC", "WINDSPEED10M", "CLOUD_FRACTION")
"""Per-observation variables every layout must hold (plus IGRID or COMMON_IGRID)."""
OPTIONAL_PER_OBS_VARIABLES = ("ZENITH",)
"""Per-observation variables read when present (``ZENITH``, the local satellite zenith angle in
degrees, is required for cross-track sensors)."""
GRID_VARIABLES = ("COMMON_IGRID", "IGRID")
"""Grid-index variables, in order of preference."""
PER_CHANNEL_VARIABLES = (
    "OBSVALUE",
    "EMIS_WATER",
    "TAUSFC",
    "TDOWN",
    "TUP",
    "TAUSFC_CLD",
    "TDOWN_CLD",
    "TUP_CLD",
)
"""Per-observation-and-channel variables every layout must hold."""

SEAICE_GLOB = "ifs_seaice*.nc"
TSFC_GLOB = "ifs_tsfc*.nc"
GRID_FILE = "grid.nc"
"""Name of the grid description (``lon``, ``lat`` per grid point) looked for beside the backgrounds."""


@dataclass(frozen=True)
class SensorFiles:
    """Where each variable of one sensor lives.

    Attributes
    ----------
    sensor : Sensor
        The sensor.
    layout : str
        ``"A"`` (one file, every variable) or ``"B"`` (one file per variable;
        also each sensor directory of layout C).
    location : Path
        The monthly file (A) or the directory (B).
    prefix : str
        File-name prefix of the layout-B files.
    """

    sensor: Sensor
    layout: str
    location: Path
    prefix: str = ""

    def path(self, variable: str) -> Path:
        """The file that holds ``variable``."""
        if self.layout == "A":
            return self.location
        return self.location / f"{self.prefix}{variable}.nc"

    def has_file(self, variable: str) -> bool:
        """Whether the file of ``variable`` exists (layout A: the one file)."""
        return self.path(variable).is_file()

    def input_files(self) -> list[Path]:
        """Every existing file this sensor's data may be read from (for the cache key)."""
        if self.layout == "A":
            return [self.location]
        return sorted(self.location.glob(f"{self.prefix}*.nc"))


@dataclass(frozen=True)
class DataFiles:
    """The training-data files of a run: per-sensor files and the background files."""

    layout: str
    sensors: tuple[SensorFiles, ...]
    seaice_background: Path
    tsfc_background: Path
    grid: Path | None = None
    sensor_catalogue: Path | None = None

    def input_files(self) -> list[Path]:
        files = [f for s in self.sensors for f in s.input_files()]
        extra = [p for p in (self.grid, self.sensor_catalogue) if p is not None]
        return files + [self.seaice_background, self.tsfc_background] + extra


def _layout_b_prefix(directory: Path, what: str) -> str:
    try:
        entries = os.listdir(directory)  # glob() takes an unreadable directory for an empty one
    except PermissionError:
        raise SeaIceError(f"{directory}: cannot list the directory (permission denied); make it readable") from None
    except OSError:
        entries = []
    hits = sorted(directory / n for n in entries if n.endswith("JULIAN_DAY.nc"))
    if not hits:
        raise SeaIceError(
            f"{directory}: no *JULIAN_DAY.nc file found for {what} (expected layout-B files <prefix><FIELD>.nc)"
        )
    if len(hits) > 1:
        names = ", ".join(h.name for h in hits)
        raise SeaIceError(
            f"{directory}: several *JULIAN_DAY.nc files ({names}); expected one layout-B prefix per directory"
        )
    return hits[0].name[: -len("JULIAN_DAY.nc")]


def _find_background(directory: Path, pattern: str, explicit: Path | None, flag: str, what: str) -> Path:
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise SeaIceError(f"{flag}: {what} file {path} not found")
        return path
    hits = sorted(directory.glob(pattern))
    if not hits:
        raise SeaIceError(
            f"{directory.resolve()}: no {what} file {pattern} found beside the training data; give it with {flag} FILE"
        )
    if len(hits) > 1:
        names = ", ".join(h.name for h in hits)
        raise SeaIceError(f"{directory}: several {what} files match {pattern} ({names}); choose one with {flag} FILE")
    return hits[0]


def _find_grid(directory: Path, explicit: Path | None) -> Path | None:
    """The grid description: ``explicit`` (must exist), else ``grid.nc`` in ``directory`` if there."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise SeaIceError(f"--grid-file: grid description {explicit} not found")
        return Path(explicit)
    return directory / GRID_FILE if (directory / GRID_FILE).is_file() else None


def find_data_files(config: DataConfig) -> DataFiles:
    """Detect the layout of ``config.data`` and locate every input file.

    Raises
    ------
    SeaIceError
        ``--data`` does not exist or is in no known layout; a sensor directory
        is missing (layout C); several sensors with a single-sensor layout;
        a layout-B prefix is ambiguous; a background file is not found.
    """
    data = Path(config.data)
    catalogue = load_catalogue(config.sensor_catalogue)
    sensors = [catalogue.sensor(name) for name in config.sensors]
    if data.is_file():
        if len(sensors) != 1:
            raise SeaIceError(
                f"--data {data}: a single monthly file (layout A) holds one sensor, the run's sensors are "
                f"{' '.join(config.sensors)} (--sensors, or the preset's); give --sensors with the file's "
                "sensor (e.g. --sensors amsr2), or a layout-C directory for several sensors"
            )
        files: tuple[SensorFiles, ...] = (SensorFiles(sensors[0], "A", data),)
        layout, bg_dir = "A", data.parent
    elif data.is_dir():
        subdirs = [name for name in catalogue.sensors if (data / name).is_dir()]
        if subdirs:
            missing = [s.name for s in sensors if not (data / s.name).is_dir()]
            if missing:
                raise SeaIceError(
                    f"--data {data}: sensor directory {', '.join(missing)} not found "
                    f"(layout C; sensor directories present: {', '.join(subdirs)}); to train on those, "
                    f"give --sensors {' '.join(subdirs)}"
                )
            files = tuple(SensorFiles(s, "B", data / s.name, _layout_b_prefix(data / s.name, s.name)) for s in sensors)
            layout = "C"
        elif list(data.glob("*JULIAN_DAY.nc")):
            if len(sensors) != 1:
                raise SeaIceError(
                    f"--data {data}: a layout-B directory holds one sensor, the run's sensors are "
                    f"{' '.join(config.sensors)} (--sensors, or the preset's); give --sensors with its sensor "
                    "(e.g. --sensors amsr2), or put each sensor in <data>/<sensor>/ (layout C)"
                )
            files = (SensorFiles(sensors[0], "B", data, _layout_b_prefix(data, sensors[0].name)),)
            layout = "B"
        else:
            raise SeaIceError(
                f"--data {data}: no training data found (expected a monthly NetCDF file, "
                f"sensor sub-directories {', '.join(config.sensors)}, or *JULIAN_DAY.nc files)"
            )
        bg_dir = data
    else:
        raise SeaIceError(f"--data {data}: no such file or directory")
    seaice = _find_background(bg_dir, SEAICE_GLOB, config.seaice_background, "--seaice-background", "background SIC")
    tsfc = _find_background(bg_dir, TSFC_GLOB, config.tsfc_background, "--tsfc-background", "skin-temperature map")
    return DataFiles(
        layout, files, seaice, tsfc, grid=_find_grid(bg_dir, config.grid_file), sensor_catalogue=config.sensor_catalogue
    )


__all__ = [
    "SensorFiles",
    "DataFiles",
    "find_data_files",
    "PER_OBS_VARIABLES",
    "OPTIONAL_PER_OBS_VARIABLES",
    "GRID_VARIABLES",
    "PER_CHANNEL_VARIABLES",
    "SEAICE_GLOB",
    "TSFC_GLOB",
    "GRID_FILE",
]
