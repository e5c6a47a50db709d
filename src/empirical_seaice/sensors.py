"""Channel catalogue, sensor definitions and the unified channel basis.

A *channel* is named by its nominal frequency and polarisation (``10v``,
``183pm7h``) and carries the nominal frequency (GHz), the polarisation and the
observation error sigma_c (K) of the cost (docs/method.md). A *sensor* lists its channels in
the order they appear in its data files, with per-channel frequency overrides
(e.g. SSMIS's 19.35 GHz for ``19v``), its TB-bias background (ice, ocean) and
the error of that background, and its scan geometry.

A run selects some sensors; their channels, in catalogue order, form the
**unified channel basis** into which every observation is mapped. Per-sensor
arrays (frequency, polarisation, presence) are indexed ``[sensor, channel]``
in that basis.

Examples
--------
>>> basis = build_channel_basis(["amsr2", "gmi"])
>>> basis.channel_names[:4]
('10v', '10h', '19v', '19h')
>>> basis.channel_index["89h"]
9
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from empirical_seaice.errors import SeaIceError

POL_V = 0
"""Polarisation code of vertical polarisation (index of e_V in the v2 network output)."""
POL_H = 1
"""Polarisation code of horizontal polarisation (index of e_H in the v2 network output)."""


@dataclass(frozen=True)
class Channel:
    """One channel of the catalogue.

    Attributes
    ----------
    name : str
        Catalogue name, e.g. ``"19v"`` or ``"183pm3h"``.
    freq_ghz : float
        Nominal frequency (GHz). For the double-sideband 183.31 +/- d GHz
        channels this is the upper sideband 183.31 + d, so each 183 channel has
        a distinct frequency input to the v2 emissivity network (the surface
        emissivity varies smoothly over the +/-7 GHz around the line).
    pol : int
        :data:`POL_V` or :data:`POL_H`.
    obs_error_k : float
        Observation error sigma_c (K) of the observation term (docs/method.md).
    """

    name: str
    freq_ghz: float
    pol: int
    obs_error_k: float


def _ch(name: str, freq: float, err: float) -> Channel:
    return Channel(name, freq, POL_V if name.endswith("v") else POL_H, err)


# Catalogue order defines the order of the unified basis. Observation errors
# from Geer 2024 and the v2 configuration. The 1.4, 6.9 and
# 7.3 GHz channels are not trained on in the reference configurations; their
# errors (4 K V, 6 K H) are placeholders of the same size as 10 GHz.
CATALOGUE: Mapping[str, Channel] = MappingProxyType(
    {
        c.name: c
        for c in [
            _ch("1.4v", 1.41, 4.0),
            _ch("1.4h", 1.41, 6.0),
            _ch("6.9v", 6.925, 4.0),
            _ch("6.9h", 6.925, 6.0),
            _ch("7.3v", 7.3, 4.0),
            _ch("7.3h", 7.3, 6.0),
            _ch("10v", 10.65, 2.5),
            _ch("10h", 10.65, 4.0),
            _ch("19v", 18.7, 2.5),
            _ch("19h", 18.7, 4.5),
            _ch("24v", 23.8, 2.5),
            _ch("24h", 23.8, 5.0),
            _ch("37v", 36.5, 4.0),
            _ch("37h", 36.5, 7.0),
            _ch("50v", 50.3, 5.0),
            _ch("50h", 50.3, 5.0),
            _ch("53v", 52.8, 2.0),
            _ch("53h", 52.8, 2.0),
            _ch("89v", 89.0, 4.5),
            _ch("89h", 89.0, 10.0),
            _ch("166v", 166.0, 12.0),
            _ch("166h", 166.0, 12.0),
            _ch("183pm7v", 190.31, 12.0),
            _ch("183pm7h", 190.31, 8.0),
            _ch("183pm3v", 186.31, 8.0),
            _ch("183pm3h", 186.31, 4.0),
            _ch("183pm1v", 184.31, 4.0),
            _ch("183pm1h", 184.31, 2.0),
        ]
    }
)


@dataclass(frozen=True)
class Sensor:
    """A microwave imager and how its data files are laid out.

    Attributes
    ----------
    name : str
        Sensor name, also the data sub-directory name in layout C.
    channels : tuple of str
        Channel names in file order (the channels used for training).
    leading_unused : tuple of str
        Channels that some files carry *before* ``channels`` and that are not
        used (AMSR2 monthly files hold 6.9/7.3 GHz first: 14 channels in all).
        A file with ``len(leading_unused) + len(channels)`` channels has them
        dropped by the reader.
    freq_override_ghz : mapping of str to float
        Actual frequency (GHz) where it differs from the catalogue's nominal.
    bias_ice_k, bias_ocean_k : float
        Background TB bias (K) over ice and over ocean (b_ice, b_ocean).
    bias_error_k : float
        Error (K) of the bias background in the v2 bias prior.
    incidence_deg : float
        Earth incidence angle of the conical scan (degrees).
    incidence_override_deg : mapping of str to float
        Per-channel incidence where it differs (GMI's high-frequency feedhorn).
    """

    name: str
    channels: tuple[str, ...]
    bias_ice_k: float
    bias_ocean_k: float
    bias_error_k: float
    incidence_deg: float
    leading_unused: tuple[str, ...] = ()
    freq_override_ghz: Mapping[str, float] = field(default_factory=dict)
    incidence_override_deg: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in (*self.channels, *self.leading_unused, *self.freq_override_ghz):
            if name not in CATALOGUE:
                raise ValueError(f"sensor {self.name}: channel {name!r} is not in the catalogue")

    def freq_ghz(self, channel: str) -> float:
        """Actual frequency (GHz) of ``channel`` on this sensor."""
        return self.freq_override_ghz.get(channel, CATALOGUE[channel].freq_ghz)

    def incidence(self, channel: str) -> float:
        """Earth incidence angle (degrees) of ``channel`` on this sensor."""
        return self.incidence_override_deg.get(channel, self.incidence_deg)


SENSORS: Mapping[str, Sensor] = MappingProxyType(
    {
        "amsr2": Sensor(
            name="amsr2",
            channels=("10v", "10h", "19v", "19h", "24v", "24h", "37v", "37h", "89v", "89h"),
            leading_unused=("6.9v", "6.9h", "7.3v", "7.3h"),
            bias_ice_k=5.0,
            bias_ocean_k=2.5,
            bias_error_k=0.5,
            incidence_deg=55.0,
        ),
        "gmi": Sensor(
            name="gmi",
            # File order of the reference: note 183+/-3 before 183+/-7.
            channels=(
                "10v",
                "10h",
                "19v",
                "19h",
                "24v",
                "37v",
                "37h",
                "89v",
                "89h",
                "166v",
                "166h",
                "183pm3v",
                "183pm7v",
            ),
            freq_override_ghz={"37v": 36.64, "37h": 36.64},
            bias_ice_k=0.0,
            bias_ocean_k=0.0,
            bias_error_k=0.001,  # GMI is the calibration anchor
            incidence_deg=52.8,
            incidence_override_deg={"166v": 49.2, "166h": 49.2, "183pm3v": 49.2, "183pm7v": 49.2},
        ),
        "ssmisf17": Sensor(
            name="ssmisf17",
            channels=(
                "19v",
                "19h",
                "24v",
                "37v",
                "37h",
                "89v",
                "89h",
                "166h",
                "183pm7h",
                "183pm3h",
                "183pm1h",
            ),
            freq_override_ghz={
                "19v": 19.35,
                "19h": 19.35,
                "24v": 22.235,
                "37v": 37.0,
                "37h": 37.0,
                "89v": 91.655,
                "89h": 91.655,
                "166h": 150.0,
            },
            bias_ice_k=0.0,
            bias_ocean_k=0.0,
            bias_error_k=4.0,
            incidence_deg=53.1,
        ),
    }
)


def get_sensor(name: str) -> Sensor:
    """Look up a sensor by name; an unknown name lists the known ones."""
    try:
        return SENSORS[name]
    except KeyError:
        raise SeaIceError(f"--sensors: unknown sensor {name!r}; known sensors: {', '.join(SENSORS)}") from None


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
        sensor's ``j``-th file channel.
    present : bool array (nsensor, nchan)
        Whether the sensor has the channel.
    freq_ghz : float32 array (nsensor, nchan)
        Actual frequency (GHz) of each channel on each sensor; the catalogue's
        nominal value where the sensor lacks the channel.
    pol : int8 array (nchan,)
        Polarisation of each basis channel (:data:`POL_V` / :data:`POL_H`).
    obs_error_k : float32 array (nchan,)
        Observation error sigma_c (K).
    incidence_deg : float32 array (nsensor, nchan)
        Incidence angle (degrees).
    bias_ice_bg_k, bias_ocean_bg_k : float32 arrays (nsensor, nchan)
        Bias backgrounds b_ice, b_ocean (K), constant over a sensor's channels.
    bias_error_k : float32 array (nsensor,)
        Error (K) of each sensor's bias background.
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

    @property
    def nchan(self) -> int:
        return len(self.channel_names)

    @property
    def nsensor(self) -> int:
        return len(self.sensor_names)

    def sensor(self, isensor: int) -> Sensor:
        return SENSORS[self.sensor_names[isensor]]


def build_channel_basis(sensor_names: Sequence[str]) -> ChannelBasis:
    """Build the unified channel basis of the given sensors.

    Parameters
    ----------
    sensor_names : sequence of str
        Sensor names from :data:`SENSORS`, in run order (defines ``isensor``).

    Raises
    ------
    SeaIceError
        An unknown or repeated sensor name, or an empty list.
    """
    names = tuple(sensor_names)
    if not names:
        raise SeaIceError("--sensors: no sensor given; known sensors: " + ", ".join(SENSORS))
    if len(set(names)) != len(names):
        raise SeaIceError(f"--sensors: a sensor is given twice in {' '.join(names)}")
    sensors = [get_sensor(n) for n in names]
    used = {c for s in sensors for c in s.channels}
    channel_names = tuple(c for c in CATALOGUE if c in used)
    index = {c: j for j, c in enumerate(channel_names)}
    ns, nc = len(sensors), len(channel_names)
    present = np.zeros((ns, nc), dtype=bool)
    freq = np.array([[CATALOGUE[c].freq_ghz for c in channel_names]] * ns, dtype=np.float32)
    inc = np.zeros((ns, nc), dtype=np.float32)
    maps = []
    for s, sensor in enumerate(sensors):
        m = np.array([index[c] for c in sensor.channels], dtype=np.int64)
        maps.append(m)
        present[s, m] = True
        for c in channel_names:
            freq[s, index[c]] = sensor.freq_ghz(c)
            inc[s, index[c]] = sensor.incidence(c)
    return ChannelBasis(
        sensor_names=names,
        channel_names=channel_names,
        channel_index=MappingProxyType(index),
        sensor_channel_map=tuple(maps),
        present=present,
        freq_ghz=freq,
        pol=np.array([CATALOGUE[c].pol for c in channel_names], dtype=np.int8),
        obs_error_k=np.array([CATALOGUE[c].obs_error_k for c in channel_names], dtype=np.float32),
        incidence_deg=inc,
        bias_ice_bg_k=np.array([[s.bias_ice_k] * nc for s in sensors], dtype=np.float32),
        bias_ocean_bg_k=np.array([[s.bias_ocean_k] * nc for s in sensors], dtype=np.float32),
        bias_error_k=np.array([s.bias_error_k for s in sensors], dtype=np.float32),
    )


# ------------------------------------------------------- network frequency inputs
NETWORK_FREQUENCIES = ("reference", "physical")
"""Conventions for the frequency input of the v2 emissivity network (``ModelConfig.network_frequencies``)."""

REFERENCE_NOMINAL_FREQ_GHZ: Mapping[str, float] = MappingProxyType(
    {
        "1.4v": 1.4135,
        "1.4h": 1.4135,
        "6.9v": 6.925,
        "6.9h": 6.925,
        "7.3v": 7.3,
        "7.3h": 7.3,
        "10v": 10.65,
        "10h": 10.65,
        "19v": 18.7,
        "19h": 18.7,
        "24v": 23.8,
        "24h": 23.8,
        "37v": 36.5,
        "37h": 36.5,
        "50v": 50.3,
        "50h": 50.3,
        "53v": 52.8,
        "53h": 52.8,
        "89v": 89.0,
        "89h": 89.0,
        "166v": 166.5,
        "166h": 166.5,
        "183pm7v": 183.31,
        "183pm7h": 183.31,
        "183pm3v": 183.31,
        "183pm3h": 183.31,
        "183pm1v": 183.31,
        "183pm1h": 183.31,
    }
)
"""The ECMWF v2 code's network frequency of each channel (GHz): 166.5 for 166 GHz and the line
centre 183.31 for every 183.31 +/- d channel."""

REFERENCE_SENSOR_FREQ_GHZ: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "ssmisf17": MappingProxyType(
            {
                "19v": 19.35,
                "19h": 19.35,
                "24v": 22.235,
                "37v": 37.0,
                "37h": 37.0,
                "89v": 91.655,
                "89h": 91.655,
                "166h": 150.0,
                "183pm7h": 183.31,
                "183pm3h": 183.31,
                "183pm1h": 183.31,
            }
        ),
    }
)
"""The ECMWF v2 code's per-sensor frequency overrides (only SSMIS has any; GMI's 37 GHz stays 36.5)."""


def network_frequency_table(basis: ChannelBasis, convention: str = "physical") -> np.ndarray:
    """Frequency (GHz) that the v2 emissivity network is given for each channel on each sensor.

    - ``"physical"``: the channel's actual frequency on the sensor (``basis.freq_ghz``: upper
      sideband 183.31 + d for the 183 GHz channels, 166.0, GMI's 36.64);
    - ``"reference"``: the ECMWF v2 code's table (:data:`REFERENCE_NOMINAL_FREQ_GHZ` with the
      overrides of :data:`REFERENCE_SENSOR_FREQ_GHZ` on the channels the sensor has), i.e.
      166.5, 183.31 for every 183 +/- d channel and 36.5 for GMI's 37 GHz.

    A channel a sensor lacks gets the convention's nominal value. Returns float32 (nsensor, nchan).

    Raises
    ------
    SeaIceError
        An unknown convention.
    """
    if convention == "physical":
        return np.asarray(basis.freq_ghz, dtype=np.float32).copy()
    if convention != "reference":
        raise SeaIceError(f"network_frequencies: expected one of {', '.join(NETWORK_FREQUENCIES)}, got {convention!r}")
    table = np.array([[REFERENCE_NOMINAL_FREQ_GHZ[c] for c in basis.channel_names]] * basis.nsensor, dtype=np.float32)
    for s, name in enumerate(basis.sensor_names):
        for c, f in REFERENCE_SENSOR_FREQ_GHZ.get(name, {}).items():
            j = basis.channel_index.get(c)
            if j is not None and basis.present[s, j]:
                table[s, j] = f
    return table
