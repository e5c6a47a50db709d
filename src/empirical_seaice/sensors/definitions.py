"""What a sensor and a channel are: :class:`Channel`, :class:`Sensor` and the polarisation codes.

A *channel* is named by its nominal frequency and polarisation (``10v``,
``183pm7h``, ``23.8qv``) and carries its centre frequency and sidebands, the
frequency fed to the v2 network (two conventions: this project's
``freq_ghz`` and the reference code's ``reference_freq_ghz``), the
polarisation (V, H, or quasi-V / quasi-H for cross-track sounders), the
observation error sigma_c (K) of the cost function, the instrument's
radiometric noise (K; what the twin adds, sigma_c unless given) and whether
it is *surface-blind* (a sounding channel that peaks high in the atmosphere;
read but not used by default).
A *sensor* lists its channels in the order they appear in its data files,
with per-channel values where they differ from the catalogue's (SSMIS's
19.35 GHz for ``19v``), its TB-bias background (ice, ocean) and the error of
that background, and its scan geometry (conical: incidence angle;
cross-track: largest scan angle and orbit altitude).

Both are read from the catalogue file by :mod:`empirical_seaice.sensors.parse`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

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
        Observation error sigma_c (K) of the cost function: the instrument
        noise plus representativeness and forward-model error.
    noise_k : float
        Radiometric noise (K) of the instrument: the standard deviation of
        the Gaussian noise the twin adds (times ``TwinConfig.noise_scale``).
        NaN (not given) means ``obs_error_k``.
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
    noise_k: float = math.nan

    def __post_init__(self) -> None:
        if math.isnan(self.noise_k):  # not given: the instrument noise is the observation error
            object.__setattr__(self, "noise_k", self.obs_error_k)

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


__all__ = ["POL_V", "POL_H", "POL_QV", "POL_QH", "POL_NAMES", "Channel", "Sensor"]
