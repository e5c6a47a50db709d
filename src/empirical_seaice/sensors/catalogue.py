"""The sensor catalogue of a run: the shipped file, a user's file merged over it, and sensor look-up.

Every sensor the package knows is described in a versioned TOML file shipped
inside the package, ``empirical_seaice/data/sensor_catalogue.toml`` (its
header documents every field and cites the instruments' documentation). A
run may add or override sensors and channels with a file of the same format
(``seaice-training --sensor-catalogue FILE``): :func:`load_catalogue` merges
it over the shipped file, entry by entry, and validates the result
(:mod:`empirical_seaice.sensors.parse`); a mistake is one
:class:`~empirical_seaice.errors.SeaIceError` line naming the file, the
sensor or channel and the field.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from empirical_seaice.errors import SeaIceError
from empirical_seaice.sensors.definitions import Channel, Sensor
from empirical_seaice.sensors.parse import CATALOGUE_FORMAT_VERSION, check_top, parse_channel, parse_sensor

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SHIPPED_CATALOGUE = "sensor_catalogue.toml"
"""File name of the shipped catalogue in the package's ``data`` directory."""


@dataclass(frozen=True)
class SensorCatalogue:
    """Channels and sensors of a run, read from the shipped file and optional user files.

    Attributes
    ----------
    channels : mapping of str to Channel
        Every channel, in catalogue order (the order of the unified basis):
        the shipped file's order, then channels a user file adds.
    sensors : mapping of str to Sensor
        Every sensor, shipped first.
    origins : tuple of str
        The files read, shipped first.
    entries : mapping
        The validated raw entries ``{"channels": {...}, "sensors": {...}}``
        (what :meth:`to_dict` saves).
    """

    channels: Mapping[str, Channel]
    sensors: Mapping[str, Sensor]
    origins: tuple[str, ...]
    entries: Mapping[str, Mapping[str, Any]] = field(repr=False)

    def sensor(self, name: str, flag: str = "--sensors") -> Sensor:
        """Look up a sensor; an unknown name lists the known ones."""
        try:
            return self.sensors[name]
        except KeyError:
            raise SeaIceError(
                f"{flag}: unknown sensor {name!r}; known sensors: {', '.join(self.sensors)} "
                "(add one with --sensor-catalogue FILE)"
            ) from None

    def to_dict(self, sensor_names: Sequence[str] | None = None) -> dict[str, Any]:
        """The catalogue (or the given sensors and their channels) in the file format, as a dict.

        ``catalogue_from_dict(cat.to_dict(names))`` rebuilds those sensors and channels exactly.
        """
        names = list(self.sensors) if sensor_names is None else list(sensor_names)
        used = {c for n in names for c in (*self.sensors[n].leading_unused, *self.sensors[n].file_channels)}
        chans = {c: self.entries["channels"][c] for c in self.channels if sensor_names is None or c in used}
        return {
            "format_version": CATALOGUE_FORMAT_VERSION,
            "channels": chans,
            "sensors": {n: self.entries["sensors"][n] for n in names},
        }

    def to_json(self, sensor_names: Sequence[str] | None = None) -> str:
        """:meth:`to_dict` as one JSON string (saved with the model and the export)."""
        return json.dumps(self.to_dict(sensor_names), sort_keys=False)


def _build(layers: Sequence[tuple[str, Mapping[str, Any]]]) -> SensorCatalogue:
    """Merge catalogue layers (later entries replace earlier ones of the same name) and validate."""
    raw_channels: dict[str, tuple[str, Any]] = {}
    raw_sensors: dict[str, tuple[str, Any]] = {}
    for origin, raw in layers:
        check_top(raw, origin)
        for name, entry in raw.get("channels", {}).items():
            raw_channels[name] = (origin, entry)
        for name, entry in raw.get("sensors", {}).items():
            raw_sensors[name] = (origin, entry)
    channels = {name: parse_channel(name, entry, origin) for name, (origin, entry) in raw_channels.items()}
    sensors = {name: parse_sensor(name, entry, channels, origin) for name, (origin, entry) in raw_sensors.items()}
    return SensorCatalogue(
        channels=MappingProxyType(channels),
        sensors=MappingProxyType(sensors),
        origins=tuple(o for o, _ in layers),
        entries=MappingProxyType(
            {
                "channels": {k: e for k, (_, e) in raw_channels.items()},
                "sensors": {k: e for k, (_, e) in raw_sensors.items()},
            }
        ),
    )


def _read_toml(path: Path, flag: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise SeaIceError(f"{flag}: catalogue file {path} not found") from None
    except OSError as exc:
        raise SeaIceError(f"{flag}: cannot read catalogue file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SeaIceError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # tomllib decodes the file as UTF-8 first
        raise SeaIceError(
            f"{path}: not a UTF-8 text file (byte {exc.start}: {exc.reason}); give a TOML catalogue file ({flag})"
        ) from None


def shipped_catalogue_path() -> Path:
    """Path of the catalogue file shipped inside the package."""
    return Path(str(resources.files("empirical_seaice") / "data" / SHIPPED_CATALOGUE))


@functools.lru_cache(maxsize=8)
def _load_cached(user: str | None, mtime_ns: int) -> SensorCatalogue:
    shipped = shipped_catalogue_path()
    layers = [(str(shipped), _read_toml(shipped, "sensor catalogue"))]
    if user is not None:
        layers.append((user, _read_toml(Path(user), "--sensor-catalogue")))
    return _build(layers)


def load_catalogue(path: str | Path | None = None) -> SensorCatalogue:
    """The shipped catalogue, with the entries of the file ``path`` added or replacing shipped ones.

    Raises
    ------
    SeaIceError
        One line naming the file, the sensor or channel and the field: a file
        not found, invalid TOML, a wrong ``format_version``, an unknown or
        missing field, a value of the wrong type or out of range, an unknown
        polarisation, a sensor channel not defined in ``[channels]`` or given
        twice, a QV/QH channel on a conical sensor (or V/H on a cross-track one).
    """
    if path is None:
        return _load_cached(None, 0)
    p = Path(path)
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        raise SeaIceError(f"--sensor-catalogue: catalogue file {p} not found") from None
    return _load_cached(str(p), mtime)


def catalogue_from_dict(raw: Mapping[str, Any], origin: str) -> SensorCatalogue:
    """The shipped catalogue with the entries of ``raw`` (e.g. a model's saved catalogue) over it."""
    shipped = shipped_catalogue_path()
    return _build([(str(shipped), _read_toml(shipped, "sensor catalogue")), (origin, dict(raw))])


def default_catalogue() -> SensorCatalogue:
    """The shipped catalogue."""
    return load_catalogue(None)


CATALOGUE: Mapping[str, Channel] = default_catalogue().channels
"""The shipped catalogue's channels, in basis order."""
SENSORS: Mapping[str, Sensor] = default_catalogue().sensors
"""The shipped catalogue's sensors."""


def get_sensor(name: str, catalogue: SensorCatalogue | None = None) -> Sensor:
    """Look up a sensor (shipped catalogue by default); an unknown name lists the known ones."""
    return (catalogue or default_catalogue()).sensor(name)


__all__ = [
    "SHIPPED_CATALOGUE",
    "SensorCatalogue",
    "shipped_catalogue_path",
    "load_catalogue",
    "catalogue_from_dict",
    "default_catalogue",
    "CATALOGUE",
    "SENSORS",
    "get_sensor",
]
