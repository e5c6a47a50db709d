"""Ocean surface emissivity of the twin: sea-water permittivity, Fresnel, wind.

Two versions:

* :func:`ocean_emissivity_true` — the twin's nature: flat-sea Fresnel
  reflectivity with the Meissner & Wentz (2004) sea-water permittivity, a
  linear-in-wind roughness increase (larger at H than at V, growing slowly
  with frequency) and whitecap foam (Monahan & O'Muircheartaigh 1980 foam
  fraction, foam emissivity 0.95).
* :func:`ocean_emissivity_model` — the deliberately imperfect model whose
  values are written as ``EMIS_WATER`` (what a weather model's FASTEM would
  provide): the same Fresnel part but 60 % of the roughness slope and no
  foam, so the network's linear wind correction ``e_o = e_w + w_c u`` has a
  real, mostly linear error to learn.

All functions are pure numpy and broadcast over their arguments.
"""

from __future__ import annotations

import numpy as np

T_FREEZE_SEAWATER_K = 271.35
"""Freezing point of sea water (K), the floor of the ocean temperature."""

_ONE_OVER_2PI_EPS0_GHZ = 17.97510
"""1 / (2 pi eps0) in GHz m / S: the conductivity term is sigma * this / f."""


def seawater_permittivity_mw04(freq_ghz, t_k, salinity_psu):
    """Complex relative permittivity of sea water (Meissner & Wentz 2004).

    Double-Debye model with conductivity,
    ``eps = (e0 - e1) / (1 + i f/n1) + (e1 - e2) / (1 + i f/n2) + e2 - i sigma / (2 pi eps0 f)``
    (T. Meissner and F. Wentz, IEEE TGRS 42(9), 1836-1849, 2004,
    doi:10.1109/TGRS.2004.831888; salinity terms as in their 2004 fit).
    Returned with a *positive* imaginary part (loss), ``eps' + i eps''``.

    Parameters
    ----------
    freq_ghz : frequency (GHz), 1 to 400.
    t_k : water temperature (K); clipped to >= -30.16 C as in the original.
    salinity_psu : salinity (psu); 0 gives pure water (also supercooled cloud water).

    Returns
    -------
    complex128 array, broadcast shape of the inputs.
    """
    f = np.asarray(freq_ghz, dtype=np.float64)
    t = np.maximum(np.asarray(t_k, dtype=np.float64) - 273.15, -30.16)
    s = np.asarray(salinity_psu, dtype=np.float64)
    # pure water
    e0 = (3.70886e4 - 8.2168e1 * t) / (4.21854e2 + t)
    e1 = 5.7230 + 2.2379e-2 * t - 7.1237e-4 * t**2
    n1 = (45.0 + t) / (5.0478 - 7.0315e-2 * t + 6.0059e-4 * t**2)
    e2 = 3.6143 + 2.8841e-2 * t
    n2 = (45.0 + t) / (1.3652e-1 + 1.4825e-3 * t + 2.4166e-4 * t**2)
    # conductivity (S/m), Stogryn et al.
    sig35 = 2.903602 + 8.607e-2 * t + 4.738817e-4 * t**2 - 2.991e-6 * t**3 + 4.3047e-9 * t**4
    r15 = s * (37.5109 + 5.45216 * s + 1.4409e-2 * s**2) / (1004.75 + 182.283 * s + s**2)
    alpha0 = (6.9431 + 3.2841 * s - 9.9486e-2 * s**2) / (84.850 + 69.024 * s + s**2)
    alpha1 = 49.843 - 0.2276 * s + 0.198e-2 * s**2
    sigma = sig35 * r15 * (1.0 + (t - 15.0) * alpha0 / (alpha1 + t))
    # salinity dependence of the Debye parameters
    e0s = e0 * np.exp(-3.56417e-3 * s + 4.74868e-6 * s**2 + 1.15574e-5 * s * t)
    n1s = n1 * (1.0 + s * (2.39357e-3 - 3.13530e-5 * t + 2.52477e-7 * t**2))
    e1s = e1 * np.exp(-6.28908e-3 * s + 1.76032e-4 * s**2 - 9.22144e-5 * s * t)
    n2s = n2 * (1.0 + s * (-1.99723e-2 + 1.81176e-4 * t))
    e2s = e2 * (1.0 + s * (-2.04265e-3 + 1.57883e-4 * t))
    eps = (
        (e0s - e1s) / (1.0 + 1j * f / n1s)
        + (e1s - e2s) / (1.0 + 1j * f / n2s)
        + e2s
        - 1j * sigma * _ONE_OVER_2PI_EPS0_GHZ / f
    )
    return np.conj(eps)


def fresnel_reflectivity(eps, incidence_deg):
    """Power reflectivities (r_V, r_H) of a flat interface from air to a medium.

    ``r_H = |(cos t - sqrt(eps - sin^2 t)) / (cos t + sqrt(eps - sin^2 t))|^2``,
    ``r_V = |(eps cos t - sqrt(eps - sin^2 t)) / (eps cos t + sqrt(eps - sin^2 t))|^2``;
    at normal incidence both are ``|(1 - sqrt(eps)) / (1 + sqrt(eps))|^2``.

    Parameters
    ----------
    eps : complex relative permittivity of the medium.
    incidence_deg : incidence angle t (degrees).

    Returns
    -------
    r_v, r_h : float64 arrays.
    """
    cos_t = np.cos(np.deg2rad(incidence_deg))
    root = np.sqrt(eps - (1.0 - cos_t**2))
    r_h = np.abs((cos_t - root) / (cos_t + root)) ** 2
    r_v = np.abs((eps * cos_t - root) / (eps * cos_t + root)) ** 2
    return r_v, r_h


def foam_fraction(wind_ms):
    """Whitecap fraction ``F = 1.95e-5 u^2.55`` (Monahan & O'Muircheartaigh 1980), capped at 1.

    Parameters
    ----------
    wind_ms : 10 m wind speed u (m/s).
    """
    return np.minimum(1.95e-5 * np.maximum(np.asarray(wind_ms, dtype=np.float64), 0.0) ** 2.55, 1.0)


ROUGHNESS_SLOPE = {0: 0.0004, 1: 0.0030}
"""Emissivity increase per m/s of wind at 19 GHz, by polarisation (0=V, 1=H)."""

FOAM_EMISSIVITY = 0.95


def _roughness(freq_ghz, pol, wind_ms, scale):
    slope = np.where(np.asarray(pol) == 1, ROUGHNESS_SLOPE[1], ROUGHNESS_SLOPE[0])
    return (
        scale * slope * (np.asarray(freq_ghz, dtype=np.float64) / 19.0) ** 0.2 * np.asarray(wind_ms, dtype=np.float64)
    )


def flat_sea_emissivity(freq_ghz, pol, incidence_deg, t_water_k, salinity_psu):
    """Specular sea emissivity ``e = 1 - r_p`` (Fresnel with MW04 permittivity).

    Parameters
    ----------
    freq_ghz : frequency (GHz).
    pol : polarisation code, 0 = V, 1 = H.
    incidence_deg : incidence angle (degrees).
    t_water_k : water temperature (K).
    salinity_psu : salinity (psu).
    """
    r_v, r_h = fresnel_reflectivity(seawater_permittivity_mw04(freq_ghz, t_water_k, salinity_psu), incidence_deg)
    return 1.0 - np.where(np.asarray(pol) == 1, r_h, r_v)


def ocean_emissivity_true(freq_ghz, pol, incidence_deg, t_water_k, salinity_psu, wind_ms):
    """The twin's true ocean emissivity.

    ``e_rough = e_flat + a_p (f / 19 GHz)^0.2 u``;  ``e = (1 - F(u)) e_rough + F(u) e_foam``
    with ``a_V = 0.0004``, ``a_H = 0.0030`` per m/s, ``F`` from :func:`foam_fraction`,
    ``e_foam = 0.95``. Capped at 1.

    Parameters as in :func:`flat_sea_emissivity`, plus ``wind_ms`` (m/s).
    """
    e = flat_sea_emissivity(freq_ghz, pol, incidence_deg, t_water_k, salinity_psu)
    e = np.minimum(e + _roughness(freq_ghz, pol, wind_ms, 1.0), 1.0)
    foam = foam_fraction(wind_ms)
    return (1.0 - foam) * e + foam * FOAM_EMISSIVITY


def ocean_emissivity_model(freq_ghz, pol, incidence_deg, t_water_k, salinity_psu, wind_ms):
    """The imperfect ocean emissivity written as ``EMIS_WATER``.

    ``e_w = e_flat + 0.6 a_p (f / 19 GHz)^0.2 u`` — 60 % of the true roughness
    slope and no foam (see :func:`ocean_emissivity_true`).
    """
    e = flat_sea_emissivity(freq_ghz, pol, incidence_deg, t_water_k, salinity_psu)
    return np.minimum(e + _roughness(freq_ghz, pol, wind_ms, 0.6), 1.0)
