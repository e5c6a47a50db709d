"""A second sea ice emissivity model for the twin: published mean spectra, not SMRT.

The method must not be tuned to one emissivity model, so the twin can make
its ice emission from this model instead of the SMRT table
(``seaice-twin --ice-model literature``). It has the same arguments as
:func:`empirical_seaice.twin.ice_emissivity.ice_emissivity` (without the
table) and a different physics: mean surface-type spectra measured in the
field and from aircraft, blended by ice type, snow depth and wetness.

Spectra (emissivity at about 50-55 deg incidence, V and H, at the nodes of
:data:`FREQ_NODES_GHZ`): first-year and multi-year ice as the rounded mean
surface-type spectra of Eppler et al. (1992, "Passive microwave signatures
of sea ice", in Carsey (ed.), *Microwave Remote Sensing of Sea Ice*, AGU
Geophys. Monogr. 68, ch. 4) from 6.7 to 90 GHz, continued to 150-183 GHz
with the airborne spectra of Hewison and English (1999, "Airborne retrievals
of snow and ice surface emissivity at millimetre wavelengths", IEEE TGRS 37,
1871-1879) and Mathew et al. (2008, "Surface emissivity of Arctic sea ice at
AMSU window frequencies", JGR 113, D08102). Wet snow: the near-blackbody,
almost flat spectrum of a wet snow pack (Eppler et al. 1992, "wet snow on
first-year ice"). The numbers are approximate (read from published figures
and tables, rounded to 0.01): the point is a shape different from SMRT's,
not a retrieval.

Modulations (all simple, all stated):

- multi-year fraction ``m``: linear blend of the first-year and multi-year spectra;
- snow depth ``d`` (m): volume scattering grows with depth above 37 GHz:
  ``e <- e - 0.08 (d - 0.15) s(f)``, ``s(f) = clip((f - 30) / 60, 0, 1.5)``;
- correlation length ``l`` (mm): coarser grains scatter more,
  ``e <- e - 0.6 (l - 0.09) s(f)``;
- temperature ``T`` (K): colder brine-poor ice emits slightly more at low
  frequency, ``e <- e + 0.0008 (263 - T) (1 - s(f)/1.5)`` (a few 0.01 over the
  season);
- wetness ``w`` (volume fraction): blend toward the wet-snow spectrum with
  weight ``min(w / 0.01, 1)`` (1 % liquid water already masks the ice below).

Example
-------
>>> e = literature_ice_emissivity([18.7, 89.0], "V", 0.0, 0.15, 0.09, 263.0, 0.0)
>>> [round(float(x), 2) for x in e]
[0.95, 0.9]
"""

from __future__ import annotations

import numpy as np

from empirical_seaice.errors import SeaIceError

FREQ_NODES_GHZ = np.array([6.9, 10.7, 18.7, 23.8, 36.5, 50.0, 89.0, 150.0, 183.0])
"""Frequency nodes of the spectra (GHz); interpolation is linear in log-frequency, clamped."""

SPECTRA = {
    # (V, H) per node
    "first_year": (
        (0.96, 0.96, 0.95, 0.95, 0.94, 0.93, 0.90, 0.87, 0.86),
        (0.89, 0.90, 0.91, 0.91, 0.90, 0.89, 0.86, 0.84, 0.83),
    ),
    "multi_year": (
        (0.93, 0.91, 0.87, 0.84, 0.78, 0.74, 0.69, 0.66, 0.65),
        (0.86, 0.84, 0.81, 0.79, 0.74, 0.71, 0.66, 0.64, 0.63),
    ),
    "wet_snow": (
        (0.97, 0.97, 0.97, 0.97, 0.97, 0.96, 0.95, 0.94, 0.94),
        (0.91, 0.92, 0.93, 0.93, 0.93, 0.93, 0.92, 0.92, 0.92),
    ),
}
"""Mean spectra (emissivity) by surface type: (V row, H row) at :data:`FREQ_NODES_GHZ`."""


def literature_spectrum(kind: str, freq: np.ndarray, pol_h: np.ndarray) -> np.ndarray:
    """The mean spectrum of surface type ``kind`` (a key of :data:`SPECTRA`) at ``freq`` (GHz), H where
    ``pol_h`` else V, interpolated linearly in log-frequency between the nodes."""
    v, h = (np.asarray(row, dtype=np.float64) for row in SPECTRA[kind])
    x = np.log(freq)
    nodes = np.log(FREQ_NODES_GHZ)
    return np.where(pol_h, np.interp(x, nodes, h), np.interp(x, nodes, v))


def _pol_is_h(pol) -> np.ndarray:
    a = np.asarray(pol)
    if a.dtype.kind in "UO":
        up = np.char.upper(a.astype(str))
        if np.any(~np.isin(up, ["V", "H"])):
            raise SeaIceError(f"literature_ice_emissivity: pol must be 'V' or 'H' (or 0/1), got {a!r}")
        return up == "H"
    if np.any((a != 0) & (a != 1)):
        raise SeaIceError(f"literature_ice_emissivity: pol must be 0 (V) or 1 (H), got {np.unique(a)[:5]}")
    return a == 1


def scattering_weight(freq_ghz) -> np.ndarray:
    """``s(f) = clip((f - 30 GHz) / 60 GHz, 0, 1.5)``: 0 below 30 GHz, 1 at 90 GHz (dimensionless)."""
    return np.clip((np.asarray(freq_ghz, dtype=np.float64) - 30.0) / 60.0, 0.0, 1.5)


def literature_ice_emissivity(freq_ghz, pol, myi_fraction, snow_depth_m, corr_length_mm, t_ice_k, wetness):
    """Sea ice emissivity from published mean spectra (module docstring), float32 in [0, 1].

    Arguments broadcast (numpy rules) and have the meaning and units of
    :func:`empirical_seaice.twin.ice_emissivity.ice_emissivity`: frequency
    (GHz), polarisation (0/1 or 'V'/'H'), multi-year fraction (1), snow depth
    (m), snow correlation length (mm), snow/ice temperature (K), snow liquid
    water volume fraction (1).
    """
    freq = np.asarray(freq_ghz, dtype=np.float64)
    if np.any(~(freq > 0)):
        raise SeaIceError(f"literature_ice_emissivity: freq_ghz must be > 0, got min {np.min(freq)}")
    pol_h = _pol_is_h(pol)
    m = np.clip(np.asarray(myi_fraction, dtype=np.float64), 0.0, 1.0)
    fy, my, wet = (literature_spectrum(k, freq, pol_h) for k in ("first_year", "multi_year", "wet_snow"))
    s = scattering_weight(freq)
    e = (1.0 - m) * fy + m * my
    e = e - 0.08 * (np.asarray(snow_depth_m, dtype=np.float64) - 0.15) * s
    e = e - 0.6 * (np.asarray(corr_length_mm, dtype=np.float64) - 0.09) * s
    e = e + 0.0008 * (263.0 - np.asarray(t_ice_k, dtype=np.float64)) * (1.0 - s / 1.5)
    w = np.clip(np.asarray(wetness, dtype=np.float64) / 0.01, 0.0, 1.0)
    e = (1.0 - w) * e + w * wet
    return np.clip(e, 0.0, 1.0).astype(np.float32)


ICE_MODELS = ("smrt", "literature")
"""Ice emissivity models the twin can use (``--ice-model``)."""
