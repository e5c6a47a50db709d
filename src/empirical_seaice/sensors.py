"""The sensor catalogue (a data file), sensor definitions and the unified channel basis.

Every sensor the package knows is described in a versioned TOML file shipped
inside the package, ``empirical_seaice/data/sensor_catalogue.toml`` (its
header documents every field and cites the instruments' documentation). A
run may add or override sensors and channels with a file of the same format
(``seaice-training --sensor-catalogue FILE``): :func:`load_catalogue` merges
it over the shipped file, entry by entry, and validates the result; a
mistake is one :class:`~empirical_seaice.errors.SeaIceError` line naming the
file, the sensor or channel and the field.

A *channel* is named by its nominal frequency and polarisation (``10v``,
``183pm7h``, ``23.8qv``) and carries its centre frequency and sidebands, the
frequency fed to the v2 network (two conventions: this project's
``freq_ghz`` and the reference code's ``reference_freq_ghz``), the
polarisation (V, H, or quasi-V / quasi-H for cross-track sounders), the
observation error sigma_c (K) and whether it is *surface-blind* (a sounding
channel that peaks high in the atmosphere; read but not used by default).
A *sensor* lists its channels in the order they appear in its data files,
with per-channel values where they differ from the catalogue's (SSMIS's
19.35 GHz for ``19v``), its TB-bias background (ice, ocean) and the error of
that background, and its scan geometry (conical: incidence angle;
cross-track: largest scan angle and orbit altitude).

A run selects some sensors; their used channels, in catalogue order, form
the **unified channel basis** into which every observation is mapped.
Per-sensor arrays (frequency, presence) are indexed ``[sensor, channel]``
in that basis.

Examples
--------
>>> basis = build_channel_basis(["amsr2", "gmi"])
>>> basis.channel_names[:4]
('10v', '10h', '19v', '19h')
>>> basis.channel_index["89h"]
9
>>> get_sensor("atms").scan, len(get_sensor("atms").file_channels), len(get_sensor("atms").channels)
('cross-track', 22, 13)
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from empirical_seaice.errors import SeaIceError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

POL_V = 0
"""Polarisation code of vertical polarisation (index of e_V in the v2 network output)."""
POL_H = 1
"""Polarisation code of horizontal polarisation (index of e_H in the v2 network output)."""
POL_QV = 2
"""Quasi-vertical (cross-track sounders): ``e = cos^2(a) e_V + sin^2(a) e_H``, a the scan angle."""
POL_QH = 3
"""Quasi-horizontal (cross-track sounders): ``e = sin^2(a) e_V + cos^2(a) e_H``."""
POL_NAMES = ("V", "H", "QV", "QH")
"""Polarisation names by code."""

CATALOGUE_FORMAT_VERSION = 1
"""The catalogue file format this code reads (``format_version``)."""
SHIPPED_CATALOGUE = "sensor_catalogue.toml"
"""File name of the shipped catalogue in the package's ``data`` directory."""


@dataclass(frozen=True)
class Channel:
    """One channel, as the catalogue defines it or as one sensor has it.

    Attributes
    ----------
    name : str
        Catalogue name, e.g. ``"19v"``, ``"183pm3h"``, ``"23.8qv"``.
    freq_ghz : float
        Frequency (GHz) fed to the v2 network in this project's convention
        (``network_ghz`` in the file). For the double-sideband 183.31 +/- d GHz
        channels this is the upper sideband 183.31 + d, so each 183 channel has
        a distinct frequency input (the surface emissivity varies smoothly over
        the +/-7 GHz around the line).
    pol : int
        :data:`POL_V`, :data:`POL_H`, :data:`POL_QV` or :data:`POL_QH`.
    obs_error_k : float
        Observation error sigma_c (K).
    centre_ghz : float
        Centre (local-oscillator) frequency (GHz).
    sidebands_ghz : tuple of float
        Passband offsets from the centre (GHz): () single band; (d,) at
        centre +/- d; (d1, d2) at centre +/- d1 +/- d2.
    reference_freq_ghz : float
        Frequency the reference v2 code feeds its network (GHz).
    surface_blind : bool
        Sounding channel that does not see the surface (not used by default).
    incidence_deg : float
        Earth incidence angle (degrees) of a conical sensor's channel; NaN in
        the catalogue's channel table and for cross-track sensors (the angle
        comes per observation from the data).
    """

    name: str
    freq_ghz: float
    pol: int
    obs_error_k: float
    centre_ghz: float = math.nan
    sidebands_ghz: tuple[float, ...] = ()
    reference_freq_ghz: float = math.nan
    surface_blind: bool = False
    incidence_deg: float = math.nan

    @property
    def passbands_ghz(self) -> tuple[float, ...]:
        """Centre frequencies (GHz) of the channel's passbands (1, 2 or 4)."""
        bands = [self.centre_ghz]
        for d in self.sidebands_ghz:
            bands = [f + s * d for f in bands for s in (-1.0, 1.0)]
        return tuple(bands)


@dataclass(frozen=True)
class Sensor:
    """A microwave sensor and how its data files are laid out.

    Attributes
    ----------
    name : str
        Sensor name, also the data sub-directory name in layout C.
    file_channels : tuple of str
        Every channel of the sensor's data files, in file order.
    channels : tuple of str
        The channels used for training, in file order: ``file_channels``
        without the surface-blind ones (unless ``include_surface_blind``).
    leading_unused : tuple of str
        Channels that some files carry *before* ``file_channels`` and that are
        not used (AMSR2 monthly files hold 6.9/7.3 GHz first: 14 channels in
        all). A file with ``len(leading_unused) + len(file_channels)``
        channels has them dropped by the reader.
    channel_info : mapping of str to Channel
        The channels (``leading_unused`` and ``file_channels``) as this sensor
        has them: catalogue values with the sensor's own frequency and
        incidence.
    bias_ice_k, bias_ocean_k : float
        Background TB bias (K) over ice and over ocean (b_ice, b_ocean).
    bias_error_k : float
        Error (K) of the bias background in the v2 bias prior.
    scan : str
        ``"conical"`` or ``"cross-track"``.
    incidence_deg : float
        Earth incidence angle of a conical scan (degrees); NaN for cross-track.
    max_scan_angle_deg : float
        Largest scan (nadir) angle of a cross-track scan (degrees); NaN for conical.
    nfov : int
        Fields of view per scan line (cross-track; 0 if not given).
    altitude_km : float
        Nominal orbit altitude (km).
    include_surface_blind : bool
        Whether the surface-blind channels are used.
    long_name, source : str
        Description and the documentation the facts come from.
    """

    name: str
    file_channels: tuple[str, ...]
    channels: tuple[str, ...]
    channel_info: Mapping[str, Channel]
    bias_ice_k: float
    bias_ocean_k: float
    bias_error_k: float
    scan: str = "conical"
    incidence_deg: float = math.nan
    max_scan_angle_deg: float = math.nan
    nfov: int = 0
    altitude_km: float = math.nan
    leading_unused: tuple[str, ...] = ()
    include_surface_blind: bool = False
    long_name: str = ""
    source: str = ""

    @property
    def cross_track(self) -> bool:
        return self.scan == "cross-track"

    def freq_ghz(self, channel: str) -> float:
        """Network-input frequency (GHz, this project's convention) of ``channel`` on this sensor."""
        return self.channel_info[channel].freq_ghz

    def incidence(self, channel: str) -> float:
        """Earth incidence angle (degrees) of ``channel`` on this (conical) sensor; NaN for cross-track."""
        return self.channel_info[channel].incidence_deg


# ------------------------------------------------------------------ validation

_CHANNEL_FIELDS = {
    "centre_ghz": "required",
    "pol": "required",
    "obs_error_k": "required",
    "sidebands_ghz": "optional",
    "network_ghz": "optional",
    "reference_network_ghz": "optional",
    "surface_blind": "optional",
}
_SENSOR_FIELDS = {
    "scan": "required",
    "channels": "required",
    "bias_ice_k": "required",
    "bias_ocean_k": "required",
    "bias_error_k": "required",
    "incidence_deg": "conical",
    "max_scan_angle_deg": "cross-track",
    "altitude_km": "cross-track",
    "nfov": "optional",
    "leading_unused": "optional",
    "include_surface_blind": "optional",
    "long_name": "optional",
    "source": "optional",
    "channel": "optional",
}
_OVERRIDE_FIELDS = ("centre_ghz", "sidebands_ghz", "network_ghz", "reference_network_ghz", "incidence_deg")


class _Checker:
    """One-line errors ``<file>: <what> <name>: <field>: <problem>`` for one catalogue entry."""

    def __init__(self, origin: str, what: str, name: str) -> None:
        self.prefix = f"{origin}: {what} {name!r}"

    def fail(self, key: str, problem: str) -> SeaIceError:
        return SeaIceError(f"{self.prefix}: {key}: {problem}")

    def number(self, entry: Mapping, key: str, lo: float | None = None, hi: float | None = None) -> float:
        v = entry[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.fail(key, f"expected a number, got {v!r}")
        if lo is not None and not v > lo:
            raise self.fail(key, f"must be > {lo:g}, got {v!r}")
        if hi is not None and not v <= hi:
            raise self.fail(key, f"must be <= {hi:g}, got {v!r}")
        return float(v)

    def flag(self, entry: Mapping, key: str) -> bool:
        v = entry[key]
        if not isinstance(v, bool):
            raise self.fail(key, f"expected true or false, got {v!r}")
        return v

    def text(self, entry: Mapping, key: str) -> str:
        v = entry[key]
        if not isinstance(v, str):
            raise self.fail(key, f"expected a string, got {v!r}")
        return v

    def names(self, entry: Mapping, key: str, allow_empty: bool = True) -> tuple[str, ...]:
        v = entry[key]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.fail(key, f"expected a list of channel names, got {v!r}")
        if not v and not allow_empty:
            raise self.fail(key, "expected at least one channel")
        seen = set()
        for x in v:
            if x in seen:
                raise self.fail(key, f"channel {x!r} is listed twice")
            seen.add(x)
        return tuple(v)

    def sidebands(self, entry: Mapping, key: str) -> tuple[float, ...]:
        v = entry[key]
        ok = isinstance(v, list) and len(v) <= 2
        ok = ok and all(not isinstance(x, bool) and isinstance(x, (int, float)) and x > 0 for x in v)
        if not ok:
            raise self.fail(key, f"expected a list of 0, 1 or 2 positive offsets (GHz), got {v!r}")
        return tuple(float(x) for x in v)

    def fields(self, entry: Any, allowed: Sequence[str], required: Sequence[str]) -> None:
        if not isinstance(entry, dict):
            raise SeaIceError(f"{self.prefix}: expected a table of fields, got {entry!r}")
        for key in entry:
            if key not in allowed:
                raise self.fail(key, f"unknown field; known fields: {', '.join(allowed)}")
        for key in required:
            if key not in entry:
                raise self.fail(key, "missing (required)")


def _pol_code(chk: _Checker, entry: Mapping) -> int:
    v = entry["pol"]
    if v not in POL_NAMES:
        raise chk.fail("pol", f"expected one of {', '.join(POL_NAMES)}, got {v!r}")
    return POL_NAMES.index(v)


def _parse_channel(name: str, entry: Any, origin: str) -> Channel:
    chk = _Checker(origin, "channel", name)
    chk.fields(entry, tuple(_CHANNEL_FIELDS), [k for k, v in _CHANNEL_FIELDS.items() if v == "required"])
    centre = chk.number(entry, "centre_ghz", 0.0)
    network = chk.number(entry, "network_ghz", 0.0) if "network_ghz" in entry else centre
    reference = chk.number(entry, "reference_network_ghz", 0.0) if "reference_network_ghz" in entry else network
    return Channel(
        name=name,
        freq_ghz=network,
        pol=_pol_code(chk, entry),
        obs_error_k=chk.number(entry, "obs_error_k", 0.0),
        centre_ghz=centre,
        sidebands_ghz=chk.sidebands(entry, "sidebands_ghz") if "sidebands_ghz" in entry else (),
        reference_freq_ghz=reference,
        surface_blind=chk.flag(entry, "surface_blind") if "surface_blind" in entry else False,
    )


def _sensor_channel(origin: str, sensor: str, base: Channel, override: Any, incidence: float) -> Channel:
    """A catalogue channel as one sensor has it (its ``[sensors.S.channel."NAME"]`` values applied).

    A sensor that gives its own ``centre_ghz`` feeds the network that frequency
    in both conventions unless it also gives ``network_ghz`` /
    ``reference_network_ghz``.
    """
    if override is None:
        return Channel(**{**base.__dict__, "incidence_deg": incidence})
    sub = _Checker(origin, f"sensor {sensor!r} channel", base.name)
    sub.fields(override, _OVERRIDE_FIELDS, ())
    values = dict(base.__dict__)
    if "centre_ghz" in override:
        values["centre_ghz"] = values["freq_ghz"] = values["reference_freq_ghz"] = sub.number(
            override, "centre_ghz", 0.0
        )
    if "network_ghz" in override:
        values["freq_ghz"] = sub.number(override, "network_ghz", 0.0)
    if "reference_network_ghz" in override:
        values["reference_freq_ghz"] = sub.number(override, "reference_network_ghz", 0.0)
    if "sidebands_ghz" in override:
        values["sidebands_ghz"] = sub.sidebands(override, "sidebands_ghz")
    values["incidence_deg"] = incidence
    if "incidence_deg" in override:
        if not math.isfinite(incidence):
            raise sub.fail("incidence_deg", "a cross-track sensor takes its angle from the data (ZENITH)")
        values["incidence_deg"] = sub.number(override, "incidence_deg", 0.0, 90.0)
    return Channel(**values)


def _parse_sensor(name: str, entry: Any, channels: Mapping[str, Channel], origin: str) -> Sensor:
    chk = _Checker(origin, "sensor", name)
    scan = entry.get("scan") if isinstance(entry, dict) else None
    if scan not in ("conical", "cross-track") and isinstance(entry, dict) and "scan" in entry:
        raise chk.fail("scan", f"expected 'conical' or 'cross-track', got {scan!r}")
    required = [k for k, v in _SENSOR_FIELDS.items() if v in ("required", scan)]
    allowed = [k for k, v in _SENSOR_FIELDS.items() if v in ("required", "optional", scan)]
    if scan == "conical":
        allowed.append("altitude_km")
    chk.fields(entry, allowed, required)
    file_channels = chk.names(entry, "channels", allow_empty=False)
    leading = chk.names(entry, "leading_unused") if "leading_unused" in entry else ()
    for key, names in (("channels", file_channels), ("leading_unused", leading)):
        for c in names:
            if c not in channels:
                raise chk.fail(key, f"channel {c!r} is not defined in [channels]; define it or fix the name")
    both = set(file_channels) & set(leading)
    if both:
        raise chk.fail("leading_unused", f"channel {sorted(both)[0]!r} is also in channels")
    cross = scan == "cross-track"
    for c in file_channels:
        quasi = channels[c].pol in (POL_QV, POL_QH)
        if quasi != cross:
            kind = "quasi-polarised (QV/QH)" if quasi else "V/H"
            raise chk.fail("channels", f"channel {c!r} is {kind}, which a {scan} sensor cannot have")
    incidence = chk.number(entry, "incidence_deg", 0.0, 90.0) if not cross else math.nan
    overrides = entry.get("channel", {})
    if not isinstance(overrides, dict):
        raise chk.fail("channel", f"expected a table of per-channel values, got {overrides!r}")
    for c in overrides:
        if c not in file_channels and c not in leading:
            raise chk.fail("channel", f"channel {c!r} is not one of this sensor's channels")
    info = {
        c: _sensor_channel(origin, name, channels[c], overrides.get(c), incidence) for c in (*leading, *file_channels)
    }
    include_blind = chk.flag(entry, "include_surface_blind") if "include_surface_blind" in entry else False
    used = tuple(c for c in file_channels if include_blind or not info[c].surface_blind)
    if not used:
        raise chk.fail("channels", "every channel is surface-blind; set include_surface_blind = true to use them")
    nfov = entry.get("nfov", 0)
    if isinstance(nfov, bool) or not isinstance(nfov, int) or nfov < 0:
        raise chk.fail("nfov", f"expected a positive integer, got {nfov!r}")
    return Sensor(
        name=name,
        file_channels=file_channels,
        channels=used,
        channel_info=MappingProxyType(info),
        bias_ice_k=chk.number(entry, "bias_ice_k"),
        bias_ocean_k=chk.number(entry, "bias_ocean_k"),
        bias_error_k=chk.number(entry, "bias_error_k", 0.0),
        scan=scan,
        incidence_deg=incidence,
        max_scan_angle_deg=chk.number(entry, "max_scan_angle_deg", 0.0, 90.0) if cross else math.nan,
        nfov=nfov,
        altitude_km=chk.number(entry, "altitude_km", 0.0) if "altitude_km" in entry else math.nan,
        leading_unused=leading,
        include_surface_blind=include_blind,
        long_name=chk.text(entry, "long_name") if "long_name" in entry else "",
        source=chk.text(entry, "source") if "source" in entry else "",
    )


# ------------------------------------------------------------------ the catalogue


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


def _check_top(raw: Any, origin: str) -> None:
    if not isinstance(raw, dict):
        raise SeaIceError(f"{origin}: expected a table with format_version, [channels] and [sensors]")
    for key in raw:
        if key not in ("format_version", "channels", "sensors"):
            raise SeaIceError(f"{origin}: {key}: unknown top-level entry; known: format_version, channels, sensors")
    version = raw.get("format_version")
    if version != CATALOGUE_FORMAT_VERSION:
        raise SeaIceError(
            f"{origin}: format_version: expected {CATALOGUE_FORMAT_VERSION}, got {version!r} "
            "(add 'format_version = 1' at the top)"
        )
    for key in ("channels", "sensors"):
        if not isinstance(raw.get(key, {}), dict):
            raise SeaIceError(f"{origin}: {key}: expected a table [{key}], got {raw[key]!r}")


def _build(layers: Sequence[tuple[str, Mapping[str, Any]]]) -> SensorCatalogue:
    """Merge catalogue layers (later entries replace earlier ones of the same name) and validate."""
    raw_channels: dict[str, tuple[str, Any]] = {}
    raw_sensors: dict[str, tuple[str, Any]] = {}
    for origin, raw in layers:
        _check_top(raw, origin)
        for name, entry in raw.get("channels", {}).items():
            raw_channels[name] = (origin, entry)
        for name, entry in raw.get("sensors", {}).items():
            raw_sensors[name] = (origin, entry)
    channels = {name: _parse_channel(name, entry, origin) for name, (origin, entry) in raw_channels.items()}
    sensors = {name: _parse_sensor(name, entry, channels, origin) for name, (origin, entry) in raw_sensors.items()}
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


# ------------------------------------------------------------------ the unified basis


@dataclass(frozen=True)
class ChannelBasis:
    """The unified channel basis of a run and the per-sensor maps into it.

    Attributes
    ----------
    sensor_names : tuple of str
        Sensors of the run; ``isensor`` indexes this tuple.
    channel_names : tuple of str
        Channels of the basis in catalogue order (``nchan``).
    channel_index : mapping of str to int
        Position of each channel name in the basis.
    sensor_channel_map : tuple of int arrays
        For sensor ``s``, ``sensor_channel_map[s][j]`` is the basis index of the
        sensor's ``j``-th used channel (``Sensor.channels``).
    sensor_file_columns : tuple of int arrays
        For sensor ``s``, ``sensor_file_columns[s][j]`` is the position of the
        ``j``-th used channel among the sensor's file channels
        (``Sensor.file_channels``): surface-blind channels are skipped.
    present : bool array (nsensor, nchan)
        Whether the sensor has (and uses) the channel.
    freq_ghz : float32 array (nsensor, nchan)
        Network-input frequency (GHz) of each channel on each sensor in this
        project's convention; the catalogue's value where the sensor lacks the channel.
    reference_freq_ghz : float32 array (nsensor, nchan)
        The same in the reference v2 code's convention.
    centre_ghz : float32 array (nsensor, nchan)
        Centre frequency (GHz).
    pol : int8 array (nchan,)
        Polarisation of each basis channel (:data:`POL_V`, :data:`POL_H`,
        :data:`POL_QV`, :data:`POL_QH`).
    obs_error_k : float32 array (nchan,)
        Observation error sigma_c (K).
    incidence_deg : float32 array (nsensor, nchan)
        Incidence angle (degrees) of conical sensors; NaN for cross-track ones.
    cross_track : bool array (nsensor,)
        Whether the sensor scans across track (angle per observation from ZENITH).
    altitude_km : float32 array (nsensor,)
        Orbit altitude (km; NaN where the catalogue gives none).
    bias_ice_bg_k, bias_ocean_bg_k : float32 arrays (nsensor, nchan)
        Bias backgrounds b_ice, b_ocean (K), constant over a sensor's channels.
    bias_error_k : float32 array (nsensor,)
        Error (K) of each sensor's bias background.
    catalogue : SensorCatalogue
        The catalogue the basis was built from.
    """

    sensor_names: tuple[str, ...]
    channel_names: tuple[str, ...]
    channel_index: Mapping[str, int]
    sensor_channel_map: tuple[np.ndarray, ...]
    present: np.ndarray
    freq_ghz: np.ndarray
    pol: np.ndarray
    obs_error_k: np.ndarray
    incidence_deg: np.ndarray
    bias_ice_bg_k: np.ndarray
    bias_ocean_bg_k: np.ndarray
    bias_error_k: np.ndarray
    sensor_file_columns: tuple[np.ndarray, ...] = ()
    reference_freq_ghz: np.ndarray | None = None
    centre_ghz: np.ndarray | None = None
    cross_track: np.ndarray | None = None
    altitude_km: np.ndarray | None = None
    catalogue: SensorCatalogue | None = field(default=None, repr=False, compare=False)

    @property
    def nchan(self) -> int:
        return len(self.channel_names)

    @property
    def nsensor(self) -> int:
        return len(self.sensor_names)

    @property
    def has_quasi_polarisation(self) -> bool:
        """Whether any basis channel is QV or QH (the emissivity needs the scan angle)."""
        return bool(np.isin(self.pol, (POL_QV, POL_QH)).any())

    def sensor(self, isensor: int) -> Sensor:
        return (self.catalogue or default_catalogue()).sensors[self.sensor_names[isensor]]


def build_channel_basis(sensor_names: Sequence[str], catalogue: SensorCatalogue | None = None) -> ChannelBasis:
    """Build the unified channel basis of the given sensors.

    Parameters
    ----------
    sensor_names : sequence of str
        Sensor names of the catalogue, in run order (defines ``isensor``).
    catalogue : SensorCatalogue, optional
        The run's catalogue (:func:`load_catalogue`); None = the shipped one.

    Raises
    ------
    SeaIceError
        An unknown or repeated sensor name, or an empty list.
    """
    cat = catalogue or default_catalogue()
    names = tuple(sensor_names)
    if not names:
        raise SeaIceError("--sensors: no sensor given; known sensors: " + ", ".join(cat.sensors))
    if len(set(names)) != len(names):
        raise SeaIceError(f"--sensors: a sensor is given twice in {' '.join(names)}")
    sensors = [cat.sensor(n) for n in names]
    used = {c for s in sensors for c in s.channels}
    channel_names = tuple(c for c in cat.channels if c in used)
    index = {c: j for j, c in enumerate(channel_names)}
    ns, nc = len(sensors), len(channel_names)
    present = np.zeros((ns, nc), dtype=bool)
    chans = [cat.channels[c] for c in channel_names]
    freq = np.array([[c.freq_ghz for c in chans]] * ns, dtype=np.float32)
    ref = np.array([[c.reference_freq_ghz for c in chans]] * ns, dtype=np.float32)
    centre = np.array([[c.centre_ghz for c in chans]] * ns, dtype=np.float32)
    inc = np.zeros((ns, nc), dtype=np.float32)
    maps, cols = [], []
    for s, sensor in enumerate(sensors):
        m = np.array([index[c] for c in sensor.channels], dtype=np.int64)
        maps.append(m)
        cols.append(np.array([sensor.file_channels.index(c) for c in sensor.channels], dtype=np.int64))
        present[s, m] = True
        inc[s, :] = sensor.incidence_deg
        for c in channel_names:
            info = sensor.channel_info.get(c)
            if info is not None:
                j = index[c]
                freq[s, j], ref[s, j], centre[s, j] = info.freq_ghz, info.reference_freq_ghz, info.centre_ghz
                inc[s, j] = info.incidence_deg
    return ChannelBasis(
        sensor_names=names,
        channel_names=channel_names,
        channel_index=MappingProxyType(index),
        sensor_channel_map=tuple(maps),
        sensor_file_columns=tuple(cols),
        present=present,
        freq_ghz=freq,
        reference_freq_ghz=ref,
        centre_ghz=centre,
        pol=np.array([c.pol for c in chans], dtype=np.int8),
        obs_error_k=np.array([c.obs_error_k for c in chans], dtype=np.float32),
        incidence_deg=inc,
        cross_track=np.array([s.cross_track for s in sensors], dtype=bool),
        altitude_km=np.array([s.altitude_km for s in sensors], dtype=np.float32),
        bias_ice_bg_k=np.array([[s.bias_ice_k] * nc for s in sensors], dtype=np.float32),
        bias_ocean_bg_k=np.array([[s.bias_ocean_k] * nc for s in sensors], dtype=np.float32),
        bias_error_k=np.array([s.bias_error_k for s in sensors], dtype=np.float32),
        catalogue=cat,
    )


# ------------------------------------------------------- network frequency inputs
NETWORK_FREQUENCIES = ("reference", "physical")
"""Conventions for the frequency input of the v2 emissivity network (``ModelConfig.network_frequencies``)."""


def network_frequency_table(basis: ChannelBasis, convention: str = "physical") -> np.ndarray:
    """Frequency (GHz) that the v2 emissivity network is given for each channel on each sensor.

    Both conventions come from the catalogue (``network_ghz`` and ``reference_network_ghz``):

    - ``"physical"``: this project's (``basis.freq_ghz``: upper sideband 183.31 + d for the
      183 GHz channels, 166.0, GMI's 36.64);
    - ``"reference"``: the ECMWF v2 code's table (``basis.reference_freq_ghz``): 166.5, 183.31
      for every 183 +/- d channel, 36.5 for GMI's 37 GHz, SSMIS's own frequencies.

    A channel a sensor lacks gets the catalogue channel's value. Returns float32 (nsensor, nchan).

    Raises
    ------
    SeaIceError
        An unknown convention.
    """
    if convention == "physical":
        return np.asarray(basis.freq_ghz, dtype=np.float32).copy()
    if convention != "reference":
        raise SeaIceError(f"network_frequencies: expected one of {', '.join(NETWORK_FREQUENCIES)}, got {convention!r}")
    return np.asarray(basis.reference_freq_ghz, dtype=np.float32).copy()
