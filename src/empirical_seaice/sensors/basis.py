"""The unified channel basis of a run (:class:`ChannelBasis`) and the v2 network's frequency inputs.

A run selects some sensors; their used channels, in catalogue order, form
the **unified channel basis** into which every observation is mapped.
Per-sensor arrays (frequency, presence) are indexed ``[sensor, channel]``
in that basis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.sensors.catalogue import SensorCatalogue, default_catalogue
from empirical_seaice.sensors.definitions import POL_QH, POL_QV, Sensor


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
        Observation error sigma_c (K) of the cost function.
    noise_k : float32 array (nchan,)
        Radiometric noise (K) of each channel (the twin's noise; ``obs_error_k``
        where the catalogue gives none).
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
    noise_k: np.ndarray | None = None
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
        noise_k=np.array([c.noise_k for c in chans], dtype=np.float32),
        incidence_deg=inc,
        cross_track=np.array([s.cross_track for s in sensors], dtype=bool),
        altitude_km=np.array([s.altitude_km for s in sensors], dtype=np.float32),
        bias_ice_bg_k=np.array([[s.bias_ice_k] * nc for s in sensors], dtype=np.float32),
        bias_ocean_bg_k=np.array([[s.bias_ocean_k] * nc for s in sensors], dtype=np.float32),
        bias_error_k=np.array([s.bias_error_k for s in sensors], dtype=np.float32),
        catalogue=cat,
    )


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


__all__ = ["ChannelBasis", "build_channel_basis", "NETWORK_FREQUENCIES", "network_frequency_table"]
