"""The catalogue file format: parsing and validating its entries into :class:`Channel` and :class:`Sensor`.

The format (``format_version = 1``) is documented in the header of the shipped
``empirical_seaice/data/sensor_catalogue.toml`` and in docs/sensors.md: a table
``[channels."NAME"]`` per channel and ``[sensors.NAME]`` per sensor (with optional
per-channel values ``[sensors.NAME.channel."CH"]``). A mistake is one
:class:`~empirical_seaice.errors.SeaIceError` line ``<file>: <what> <name>: <field>: <problem>``
naming the file, the sensor or channel and the field. Merging files and looking sensors up:
:mod:`empirical_seaice.sensors.catalogue`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, cast

from empirical_seaice.errors import SeaIceError
from empirical_seaice.sensors.definitions import POL_NAMES, POL_QH, POL_QV, Channel, Sensor

CATALOGUE_FORMAT_VERSION = 1
"""The catalogue file format this code reads (``format_version``)."""

CHANNEL_FIELDS = {
    "centre_ghz": "required",
    "pol": "required",
    "obs_error_k": "required",
    "noise_k": "optional",
    "sidebands_ghz": "optional",
    "network_ghz": "optional",
    "reference_network_ghz": "optional",
    "surface_blind": "optional",
}
SENSOR_FIELDS = {
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
MIN_OBS_ERROR_K = 0.01
"""The smallest observation error sigma_c (K) of a channel: the shipped catalogue's are 1-30 K; the cost
divides by sigma_c^2, so one of 1e-30 K overflows float32 at the first departure."""
OVERRIDE_FIELDS = ("centre_ghz", "sidebands_ghz", "network_ghz", "reference_network_ghz", "incidence_deg")


class _Checker:
    """One-line errors ``<file>: <what> <name>: <field>: <problem>`` for one catalogue entry."""

    def __init__(self, origin: str, what: str, name: str) -> None:
        self.origin = origin
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


def parse_channel(name: str, entry: Any, origin: str) -> Channel:
    """The ``[channels."NAME"]`` entry ``entry`` of the file ``origin``, validated."""
    chk = _Checker(origin, "channel", name)
    chk.fields(entry, tuple(CHANNEL_FIELDS), [k for k, v in CHANNEL_FIELDS.items() if v == "required"])
    centre = chk.number(entry, "centre_ghz", 0.0)
    network = chk.number(entry, "network_ghz", 0.0) if "network_ghz" in entry else centre
    reference = chk.number(entry, "reference_network_ghz", 0.0) if "reference_network_ghz" in entry else network
    obs_error = chk.number(entry, "obs_error_k", 0.0)
    if obs_error < MIN_OBS_ERROR_K:  # 1e-30 passed the check, then the cost overflowed in the first epoch
        raise chk.fail(
            "obs_error_k", f"must be at least {MIN_OBS_ERROR_K:g} K (noise and model error, 1-30 K), got {obs_error!r}"
        )
    return Channel(
        name=name,
        freq_ghz=network,
        pol=_pol_code(chk, entry),
        obs_error_k=obs_error,
        noise_k=chk.number(entry, "noise_k", 0.0) if "noise_k" in entry else obs_error,
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
    sub.fields(override, OVERRIDE_FIELDS, ())
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


def parse_sensor(name: str, entry: Any, channels: Mapping[str, Channel], origin: str) -> Sensor:
    """The ``[sensors.NAME]`` entry ``entry`` of the file ``origin``, validated against the parsed
    ``channels``; each step below checks one group of fields, in this order."""
    chk = _Checker(origin, "sensor", name)
    scan = _scan_and_fields(chk, entry)
    file_channels, leading = _channel_lists(chk, entry, channels)
    _check_polarisations(chk, scan, file_channels, channels)
    cross = scan == "cross-track"
    incidence = chk.number(entry, "incidence_deg", 0.0, 90.0) if not cross else math.nan
    info = _channel_info(chk, name, entry, channels, (*leading, *file_channels), incidence)
    include_blind = chk.flag(entry, "include_surface_blind") if "include_surface_blind" in entry else False
    used = _used_channels(chk, file_channels, info, include_blind)
    nfov = _nfov(chk, entry)
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


def _scan_and_fields(chk: _Checker, entry: Any) -> str:
    """The scan (``conical`` or ``cross-track``), which decides the required and allowed fields; then
    the fields: the entry is a table, every field is known, every required one is there."""
    scan = entry.get("scan") if isinstance(entry, dict) else None
    if scan not in ("conical", "cross-track") and isinstance(entry, dict):
        if "scan" not in entry:  # (the conical or cross-track fields given were called unknown)
            raise chk.fail("scan", "missing: 'conical' or 'cross-track', which decides the entry's other fields")
        raise chk.fail("scan", f"expected 'conical' or 'cross-track', got {scan!r}")
    required = [k for k, v in SENSOR_FIELDS.items() if v in ("required", scan)]
    allowed = [k for k, v in SENSOR_FIELDS.items() if v in ("required", "optional", scan)]
    if scan == "conical":
        allowed.append("altitude_km")
    chk.fields(entry, allowed, required)
    return cast(str, scan)  # required, hence present, and checked above


def _channel_lists(chk: _Checker, entry: Mapping, channels: Mapping[str, Channel]) -> tuple[tuple[str, ...], ...]:
    """``channels`` (the file's channels, at least one) and ``leading_unused``: lists of distinct
    names, each defined in ``[channels]``, no channel in both."""
    file_channels = chk.names(entry, "channels", allow_empty=False)
    leading = chk.names(entry, "leading_unused") if "leading_unused" in entry else ()
    for key, names in (("channels", file_channels), ("leading_unused", leading)):
        for c in names:
            if c not in channels:
                raise chk.fail(key, f"channel {c!r} is not defined in [channels]; define it or fix the name")
    both = set(file_channels) & set(leading)
    if both:
        raise chk.fail("leading_unused", f"channel {sorted(both)[0]!r} is also in channels")
    return file_channels, leading


def _check_polarisations(chk: _Checker, scan: str, file_channels: Sequence[str], channels: Mapping[str, Channel]):
    """Quasi-polarised (QV/QH) channels on a cross-track sensor only, V/H on a conical one only."""
    for c in file_channels:
        quasi = channels[c].pol in (POL_QV, POL_QH)
        if quasi != (scan == "cross-track"):
            kind = "quasi-polarised (QV/QH)" if quasi else "V/H"
            raise chk.fail("channels", f"channel {c!r} is {kind}, which a {scan} sensor cannot have")


def _channel_info(
    chk: _Checker, sensor: str, entry: Mapping, channels: Mapping[str, Channel], names: Sequence[str], incidence: float
) -> dict[str, Channel]:
    """The sensor's channels ``names`` as it has them: the catalogue's, with the values of its
    ``[sensors.S.channel."NAME"]`` tables (each naming one of its channels) and its incidence."""
    overrides = entry.get("channel", {})
    if not isinstance(overrides, dict):
        raise chk.fail("channel", f"expected a table of per-channel values, got {overrides!r}")
    for c in overrides:
        if c not in names:
            raise chk.fail("channel", f"channel {c!r} is not one of this sensor's channels")
    return {c: _sensor_channel(chk.origin, sensor, channels[c], overrides.get(c), incidence) for c in names}


def _used_channels(
    chk: _Checker, file_channels: Sequence[str], info: Mapping[str, Channel], include_blind: bool
) -> tuple[str, ...]:
    """The channels used for training: the file's, less the surface-blind ones unless included; at least one."""
    used = tuple(c for c in file_channels if include_blind or not info[c].surface_blind)
    if not used:
        raise chk.fail("channels", "every channel is surface-blind; set include_surface_blind = true to use them")
    return used


def _nfov(chk: _Checker, entry: Mapping) -> int:
    """``nfov``: fields of view per scan line, an integer >= 0 (0: not given)."""
    nfov = entry.get("nfov", 0)
    if isinstance(nfov, bool) or not isinstance(nfov, int) or nfov < 0:
        raise chk.fail("nfov", f"expected a positive integer, got {nfov!r}")
    return nfov


def check_top(raw: Any, origin: str) -> None:
    """The top level of a catalogue file: ``format_version`` and the tables ``[channels]``, ``[sensors]``."""
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


__all__ = [
    "CATALOGUE_FORMAT_VERSION",
    "CHANNEL_FIELDS",
    "SENSOR_FIELDS",
    "OVERRIDE_FIELDS",
    "parse_channel",
    "parse_sensor",
    "check_top",
]
