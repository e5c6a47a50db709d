"""Clear and cloudy atmosphere of the twin: transmittance, T_down, T_up per channel.

A layered, non-scattering, plane-parallel atmosphere (40 layers of 0.5 km up
to 20 km) defined by three column variables: the surface air temperature
``T`` (K), the total column water vapour ``W`` (kg m-2) and, for the cloudy
column, the liquid water path ``L`` (kg m-2). Profiles: a surface inversion
in cold conditions then a 6.5 K/km lapse rate (floor 210 K); hydrostatic
pressure (surface 1013 hPa, scale height from the layer temperature); water
vapour density decaying with a 2 km scale height and scaled to ``W``; cloud
liquid spread uniformly between 0.5 and 2 km.

Absorption (Np/km):

* water vapour: the 22.235 and 183.31 GHz lines with Van Vleck–Weisskopf
  shape and 750 GHz cut-off, line parameters of Rosenkranz's list (296 K
  intensities, air and self broadening), plus the Rosenkranz (1998) self and
  foreign continuum (:func:`absorption_h2o`);
* oxygen: the 60 GHz band as one pressure-broadened line plus the
  non-resonant term (Ulaby et al. 1981, eq. 5.24; good below 45 and above
  70 GHz, which holds for every imager channel; the 50-58 GHz channels of
  the sounders get rough opacities from it: the twin stays self-consistent,
  since its data and truth share this atmosphere, but those channels'
  weighting functions are not realistic) (:func:`absorption_o2`);
* cloud liquid: Rayleigh absorption ``k = 6 pi / (lambda rho_w) Im((eps - 1)/(eps + 2))``
  with the pure-water Meissner–Wentz permittivity at the cloud temperature
  (:func:`absorption_cloud`).

Radiative transfer along the slant path ``sec(theta)`` (Rayleigh–Jeans TBs):
``tau = prod_j t_j``; ``T_up = sum_j T_j (1 - t_j) prod_{k above j} t_k``;
``T_down = sum_j T_j (1 - t_j) prod_{k below j} t_k + T_cosmic tau``.
Double-sideband 183.31 +/- d GHz channels average the two sidebands
(``f0 - d`` and ``f0 + d``), never the line centre: ``tau`` and ``T_up``
are sideband means and ``T_down = mean(tau_k T_down_k) / mean(tau)`` so that
the reflected term of the specular RT is exact for the channel.

Running this per observation would be slow, so :class:`AtmosphereTable`
tabulates it once per (sensor, channel) on a (W, T, L) grid and interpolates
(trilinear in log W, T, L).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import RegularGridInterpolator

from empirical_seaice.twin.ocean import seawater_permittivity_mw04

T_COSMIC_K = 2.73
"""Cosmic background brightness temperature (K)."""

F_183_GHZ = 183.31
"""Centre of the 183 GHz water vapour line (GHz)."""

LAYER_DZ_KM = 0.5
N_LAYERS = 40
WV_SCALE_HEIGHT_KM = 2.0
CLOUD_BASE_KM, CLOUD_TOP_KM = 0.5, 2.0

# Water vapour lines (Rosenkranz list): freq GHz, intensity at 296 K, B (temperature exponent
# of the lower-state energy), air-broadened width (GHz/hPa) and its T exponent, self width and exponent.
_H2O_LINES = np.array(
    [
        [22.23508, 0.1335e-13, 2.172, 2.740e-3, 0.76, 13.63e-3, 1.20],
        [183.310087, 0.2319e-11, 0.677, 3.028e-3, 0.55, 15.01e-3, 0.79],
    ]
)


def absorption_h2o(freq_ghz, t_k, p_hpa, rho_gm3):
    """Water vapour absorption coefficient (Np/km), lines at 22.235 and 183.31 GHz + continuum.

    Line sum (Van Vleck–Weisskopf with a 750 GHz cut-off, Rosenkranz 1998 form)
    ``a_l = 0.3183e-4 * 3.335e16 rho * sum_i S_i(T) (f/f_i)^2 [w/((f-f_i)^2+w^2) + w/((f+f_i)^2+w^2) - 2 w/(750^2+w^2)]``,
    ``S_i(T) = S_i (296/T)^2.5 exp(B_i (1 - 296/T))``,
    ``w = w_air p_dry (296/T)^x + w_self e (296/T)^x_s``;
    continuum ``a_c = (5.43e-10 p_dry (300/T)^3 + 1.8e-8 e (300/T)^7.5) e f^2``,
    with ``e = rho T / 217`` (hPa) the vapour pressure.

    Parameters
    ----------
    freq_ghz : frequency (GHz).
    t_k : temperature (K).
    p_hpa : total pressure (hPa).
    rho_gm3 : water vapour density (g m-3).
    """
    f = np.asarray(freq_ghz, dtype=np.float64)[..., None]
    t = np.asarray(t_k, dtype=np.float64)[..., None]
    p = np.asarray(p_hpa, dtype=np.float64)[..., None]
    rho = np.asarray(rho_gm3, dtype=np.float64)[..., None]
    e = rho * t / 217.0
    pdry = p - e
    ti = 296.0 / t
    fl, s0, b, wa, xa, ws, xs = (_H2O_LINES[:, k] for k in range(7))
    width = wa * pdry * ti**xa + ws * e * ti**xs
    strength = s0 * ti**2.5 * np.exp(b * (1.0 - ti))
    base = width / (750.0**2 + width**2)
    shape = np.zeros(np.broadcast_shapes(f.shape, width.shape))
    for df in (f - fl, f + fl):
        shape = shape + np.where(np.abs(df) < 750.0, width / (df**2 + width**2) - base, 0.0)
    lines = 0.3183e-4 * 3.335e16 * rho[..., 0] * np.sum(strength * shape * (f / fl) ** 2, axis=-1)
    ti3 = 300.0 / t[..., 0]
    e0, pd0, f0 = e[..., 0], pdry[..., 0], f[..., 0]
    continuum = (5.43e-10 * pd0 * ti3**3 + 1.8e-8 * e0 * ti3**7.5) * e0 * f0**2
    return lines + continuum


def absorption_o2(freq_ghz, t_k, p_hpa):
    """Oxygen absorption coefficient (Np/km), Ulaby et al. (1981) eq. 5.24.

    ``k = 1.1e-2 f^2 (p/1013) (300/T)^2 g [1/((f - 60)^2 + g^2) + 1/(f^2 + g^2)]`` dB/km,
    ``g = g0 (p/1013) (300/T)^0.85`` GHz with ``g0 = 0.59`` (p > 333 hPa),
    ``0.59 (1 + 3.1e-3 (333 - p))`` (25-333 hPa), 1.18 (p < 25 hPa); divided by
    4.343 to give Np/km.
    """
    f = np.asarray(freq_ghz, dtype=np.float64)
    t = np.asarray(t_k, dtype=np.float64)
    p = np.asarray(p_hpa, dtype=np.float64)
    g0 = np.where(p > 333.0, 0.59, np.where(p > 25.0, 0.59 * (1.0 + 3.1e-3 * (333.0 - p)), 1.18))
    g = g0 * (p / 1013.0) * (300.0 / t) ** 0.85
    db = 1.1e-2 * f**2 * (p / 1013.0) * (300.0 / t) ** 2 * g * (1.0 / ((f - 60.0) ** 2 + g**2) + 1.0 / (f**2 + g**2))
    return db / 4.343


def absorption_cloud(freq_ghz, t_k, lwc_gm3):
    """Cloud liquid water absorption (Np/km), Rayleigh regime.

    ``k = 6 pi / lambda * Im((eps - 1) / (eps + 2)) * LWC / rho_w``, eps the
    pure-water permittivity (Meissner & Wentz 2004, supercooled allowed).

    Parameters
    ----------
    freq_ghz : frequency (GHz).
    t_k : cloud temperature (K).
    lwc_gm3 : liquid water content (g m-3).
    """
    f = np.asarray(freq_ghz, dtype=np.float64)
    eps = seawater_permittivity_mw04(f, t_k, 0.0)
    wavelength_km = 2.99792458e5 / (f * 1e9)  # km
    # LWC (g m-3) / rho_w (1e6 g m-3) = volume fraction
    return 6.0 * np.pi / wavelength_km * np.imag((eps - 1.0) / (eps + 2.0)) * np.asarray(lwc_gm3) * 1e-6


def profiles(t_air_k, tcwv_kgm2, lwp_kgm2):
    """Layer temperature (K), pressure (hPa), vapour density (g m-3), liquid (g m-3).

    Shapes: column inputs (...,) → layers (..., N_LAYERS), layer 0 at the surface.
    """
    t_air = np.asarray(t_air_k, dtype=np.float64)[..., None]
    z = (np.arange(N_LAYERS) + 0.5) * LAYER_DZ_KM
    inversion = np.clip(263.0 - t_air, 0.0, 20.0) * 0.5  # K, only for cold surfaces
    t = t_air + inversion * np.minimum(z, 1.0) - 6.5 * np.maximum(z - 1.0, 0.0)
    t = np.maximum(t, 210.0)
    # hydrostatic: dlnp/dz = -g/(R T); g/R = 9.81/287.05 K/m = 34.17 K/km
    dlnp = 34.17 * LAYER_DZ_KM / t
    lnp = np.log(1013.0) - np.cumsum(dlnp, axis=-1) + 0.5 * dlnp
    p = np.exp(lnp)
    shape_wv = np.exp(-z / WV_SCALE_HEIGHT_KM)
    rho = np.asarray(tcwv_kgm2, dtype=np.float64)[..., None] * 1e3 * shape_wv / (shape_wv.sum() * LAYER_DZ_KM * 1e3)
    in_cloud = ((z > CLOUD_BASE_KM) & (z < CLOUD_TOP_KM)).astype(np.float64)
    lwc = np.asarray(lwp_kgm2, dtype=np.float64)[..., None] * 1e3 * in_cloud / (in_cloud.sum() * LAYER_DZ_KM * 1e3)
    return t, p, rho, lwc


def layer_rt(opacity, t_layer_k, t_cosmic_k=T_COSMIC_K):
    """Transmittance and atmospheric TBs of a stack of layers (Rayleigh–Jeans).

    Parameters
    ----------
    opacity : (..., nlayer) slant optical depth of each layer, layer 0 at the surface.
    t_layer_k : (..., nlayer) layer temperature (K).
    t_cosmic_k : cosmic background (K) added to T_down through the whole column.

    Returns
    -------
    tau : surface-to-space transmittance ``prod_j exp(-d_j)``.
    t_down_k : downwelling TB at the surface (K).
    t_up_k : upwelling TB at the top of the atmosphere (K).
    """
    trans = np.exp(-opacity)
    emit = np.asarray(t_layer_k) * (1.0 - trans)
    below = np.cumprod(np.concatenate([np.ones_like(trans[..., :1]), trans[..., :-1]], axis=-1), axis=-1)
    tau = below[..., -1] * trans[..., -1]
    above = tau[..., None] / np.maximum(below * trans, 1e-300)
    above = np.where(below * trans > 1e-300, above, 0.0)
    t_up = np.sum(emit * above, axis=-1)
    t_down = np.sum(emit * below, axis=-1) + t_cosmic_k * tau
    return tau, t_down, t_up


def sidebands(freq_ghz: float, channel: str) -> tuple[float, ...]:
    """Frequencies (GHz) to average for a channel: both sidebands for 183 +/- d."""
    if channel.startswith("183pm"):
        d = abs(freq_ghz - F_183_GHZ)
        return (F_183_GHZ - d, F_183_GHZ + d)
    return (float(freq_ghz),)


def column_rt(freqs_ghz, incidence_deg, t_air_k, tcwv_kgm2, lwp_kgm2, t_cosmic_k=T_COSMIC_K):
    """tau, T_down, T_up of a channel (sidebands averaged) for columns (...,).

    Parameters
    ----------
    freqs_ghz : tuple of frequencies (GHz) to average (see :func:`sidebands`).
    incidence_deg : slant angle (degrees).
    t_air_k, tcwv_kgm2, lwp_kgm2 : column variables, broadcastable.
    """
    t, p, rho, lwc = profiles(t_air_k, tcwv_kgm2, lwp_kgm2)
    sec = 1.0 / np.cos(np.deg2rad(incidence_deg))
    taus, tds, tus = [], [], []
    for f in freqs_ghz:
        alpha = absorption_h2o(f, t, p, rho) + absorption_o2(f, t, p) + absorption_cloud(f, t, lwc)
        tau, td, tu = layer_rt(alpha * LAYER_DZ_KM * sec, t, t_cosmic_k)
        taus.append(tau)
        tds.append(td)
        tus.append(tu)
    tau = np.mean(taus, axis=0)
    t_down = np.mean([a * b for a, b in zip(taus, tds)], axis=0) / np.maximum(tau, 1e-300)
    t_down = np.where(tau > 1e-300, t_down, np.mean(tds, axis=0))
    return tau, t_down, np.mean(tus, axis=0)


TCWV_AXIS = np.geomspace(0.3, 40.0, 14)
T_AIR_AXIS = np.linspace(225.0, 305.0, 17)
LWP_AXIS = np.array([0.0, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8])


@dataclass(frozen=True)
class AtmosphereTable:
    """tau, T_down, T_up tabulated on (log W, T, L) for a list of channels.

    Build with :meth:`build`; evaluate with :meth:`__call__`.
    """

    channels: tuple[str, ...]
    values: np.ndarray  # (nW, nT, nL, 3, nchan)

    @classmethod
    def build(cls, channels, freqs_ghz, incidence_deg, passbands_ghz=None) -> AtmosphereTable:
        """Tabulate the channels (names, actual frequencies GHz, incidence degrees).

        ``passbands_ghz``: optional per-channel tuples of passband frequencies to
        average (default :func:`sidebands`)."""
        # open grids: the temperature profile depends on T only, vapour on W, liquid on L
        w, t, l = np.ix_(TCWV_AXIS, T_AIR_AXIS, LWP_AXIS)
        out = np.empty((TCWV_AXIS.size, T_AIR_AXIS.size, LWP_AXIS.size, 3, len(channels)))
        for j, (name, f, inc) in enumerate(zip(channels, freqs_ghz, incidence_deg)):
            bands = sidebands(f, name) if passbands_ghz is None else tuple(passbands_ghz[j])
            tau, td, tu = column_rt(bands, inc, t, w, l)
            out[..., 0, j], out[..., 1, j], out[..., 2, j] = tau, td, tu
        return cls(tuple(channels), out)

    def __call__(self, t_air_k, tcwv_kgm2, lwp_kgm2):
        """(tau, t_down_k, t_up_k), each (n, nchan), for columns (n,); inputs clipped to the table."""
        pts = np.stack(
            [
                np.log(np.clip(tcwv_kgm2, TCWV_AXIS[0], TCWV_AXIS[-1])),
                np.clip(t_air_k, T_AIR_AXIS[0], T_AIR_AXIS[-1]),
                np.clip(lwp_kgm2, LWP_AXIS[0], LWP_AXIS[-1]),
            ],
            axis=-1,
        )
        interp = RegularGridInterpolator((np.log(TCWV_AXIS), T_AIR_AXIS, LWP_AXIS), self.values)
        v = interp(pts)
        return v[:, 0, :], v[:, 1, :], v[:, 2, :]


SCAN_ZENITH_NODES_DEG = (0.0, 30.0, 45.0, 55.0, 62.0, 68.0)
"""Zenith angles (degrees) at which :class:`AngleAtmosphereTable` tabulates a cross-track sensor."""


@dataclass(frozen=True)
class AngleAtmosphereTable:
    """:class:`AtmosphereTable` at several zenith angles, for cross-track sensors.

    Evaluated per observation at its own zenith angle, linearly in
    ``sec(theta)`` between the two neighbouring nodes of
    :data:`SCAN_ZENITH_NODES_DEG` (the optical path is linear in ``sec``).
    """

    tables: tuple[AtmosphereTable, ...]
    sec_nodes: np.ndarray

    @classmethod
    def build(cls, channels, freqs_ghz, passbands_ghz) -> AngleAtmosphereTable:
        nodes = np.asarray(SCAN_ZENITH_NODES_DEG)
        tables = tuple(AtmosphereTable.build(channels, freqs_ghz, [z] * len(channels), passbands_ghz) for z in nodes)
        return cls(tables, 1.0 / np.cos(np.deg2rad(nodes)))

    def __call__(self, t_air_k, tcwv_kgm2, lwp_kgm2, zenith_deg):
        """(tau, t_down_k, t_up_k), each (n, nchan), for columns (n,) seen at ``zenith_deg`` (n,)."""
        sec = np.clip(1.0 / np.cos(np.deg2rad(zenith_deg)), self.sec_nodes[0], self.sec_nodes[-1])
        i = np.clip(np.searchsorted(self.sec_nodes, sec) - 1, 0, self.sec_nodes.size - 2)
        w = ((sec - self.sec_nodes[i]) / (self.sec_nodes[i + 1] - self.sec_nodes[i]))[:, None]
        values = [table(t_air_k, tcwv_kgm2, lwp_kgm2) for table in self.tables]
        out = []
        for q in range(3):
            stack = np.stack([v[q] for v in values])  # (nnode, n, nchan)
            rows = np.arange(sec.size)
            out.append((1.0 - w) * stack[i, rows] + w * stack[i + 1, rows])
        return tuple(out)
