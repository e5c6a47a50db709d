"""The realistic twin: effects that make the synthetic data as hard as real data.

The ideal twin (``seaice-twin --realism ideal``, the tests' default) makes
its TBs with exactly the physics the network has, from the exact weather-model
fields it gives the network, with white noise. Real data are harder. With
``--realism realistic`` every effect of :data:`EFFECTS` is on; ``--effects``
picks a subset. Each effect draws from its own generator (seeded from the
twin seed), so turning effects on or off never changes the ideal part of the
twin, and the ideal twin is byte-identical to what it was before this module.

Effects (name: what, size, source):

``thin_ice``
    New and thin ice (nilas, grey ice) as a fraction ``f_thin`` of the ice
    area: at the advancing ice edge during freeze-up (up to 70 % where the
    extent grows fastest) and in refrozen leads in winter (up to 12 %). Its
    emissivity rises from that of sea water to that of bare first-year ice
    with thickness ``h``: ``e = e_w + (e_fy - e_w) (1 - exp(-h / h0))``,
    ``h0 = 3 cm (19 GHz / f)^0.3 (1 + 0.05 (T - 263 K))`` (warmer, brinier
    ice needs more thickness to become opaque: strongly temperature
    dependent), ``h`` 2-17 cm. The form follows the thickness dependence
    measured by Naoki et al. (2008, JGR 113, C02S16) and used by Martin et
    al. (2004, JGR 109, C10012); ``e_fy`` is the first-year spectrum of
    :mod:`.ice_literature`, ``e_w`` the flat-sea Fresnel emissivity.
``melt_ponds``
    Melt ponds on summer ice, ``f_pond = 0.4 clip((T_air - 272.4 K) / 1.2 K, 0, 1)
    (1 - 0.5 MYI) F`` (Arctic pond fractions of 0.2-0.5 on first-year ice,
    less on multi-year: Polashenski et al. 2012, JGR 117, C01001; Rösel and
    Kaleschke 2012, JGR 117, C05018), emitting as flat fresh water at 273.15 K
    (Fresnel, Meissner-Wentz permittivity at salinity 0): they lower the ice
    emissivity, most in H and at high frequency. Ponded ice counts as ice in
    the true SIC (as in the products' definition), so a method that reads
    ponds as water underestimates SIC in summer, as classic algorithms do.
    Wet and slushy snow is already in the ice models (wetness up to 3 %).
``footprint``
    Representativeness: each observation's antenna footprint (Gaussian,
    the sensor's published 3 dB size per channel: :data:`FOOTPRINT_KM`) is
    centred at a random position inside its grid cell (the nearest-grid-point
    assignment) plus a geolocation error of :data:`GEOLOCATION_ERROR_KM`, and
    sees the 3x3 neighbouring cells with the weights of the footprint integrated
    over each cell. Low frequencies (large footprints) mix most. Neighbours
    that are land emit as land (emissivity :data:`LAND_EMISSIVITY`, at the air
    temperature): the coastal spill-over.
``nwp_errors``
    Imperfect weather-model inputs: the fields given to the network differ
    from the ones the TBs were made with by smooth errors of a short-range
    forecast (:data:`NWP_ERRORS`): water vapour 10 %, cloud liquid a factor
    exp(0.5), cloud fraction 0.15, wind 1.5 m/s, air temperature 1 K; skin
    temperature 0.5 K over water, 2.5 K over ice with a +1.5 K warm bias in
    winter (the warm bias of weather models over winter sea ice: Batrak and
    Müller 2019, Nature Comm. 10, 4170).
``emitting_layer``
    Ice emits from a frequency-dependent depth, not at the skin: the
    effective temperature is ``T_eff = T_ice + w(f) (T_int - T_ice)`` with the
    snow-ice interface temperature of steady conduction through snow
    (k_s = 0.3 W m-1 K-1, depth d) and ice (k_i = 2.1 W m-1 K-1, 1.5 m
    first-year, 3 m multi-year), ``w(f) = exp(-f / 15 GHz)`` (0.63 at 6.9 GHz,
    0.09 at 36.5 GHz, ~0 at 89 GHz), zero in wet snow (Tonboe et al. 2011,
    Tellus A 63, 1028-1037: the 6.9 GHz effective temperature is near the
    snow-ice interface, 37-89 GHz near the snow surface).
``drifting_bias``
    Correlated instrument errors: per sensor and channel a bias that drifts
    slowly in time (``A sin(2 pi t / P + phase)``, A 0.3-1 K, P 20-60 days)
    and depends on the scene temperature (``beta (TB - 240 K)``, beta
    N(0, 0.01) K/K), of the size seen in radiometer intercalibration (Berg et
    al. 2016, JGR 121, 9446-9465). Not applied to a sensor whose bias the
    method fixes (GMI, the anchor).
``precip_scattering``
    A process the network's physics lacks: scattering by precipitating ice
    (snowfall) in cloudy columns, a TB depression
    ``dTB = -40 K (kg m-2)-1 IWP c min((f / 89 GHz)^1.5, 3)`` above 30 GHz,
    ``IWP = 0.6 LWP max(F - 0.8, 0)`` for a smooth storm field F (about a fifth
    of the columns), c the cloud fraction (magnitudes as in Bennartz and
    Bauer 2003, Radio Sci. 38, 8075: a few K at 89 GHz, more at 150-183 GHz).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from empirical_seaice.errors import SeaIceError
from empirical_seaice.twin.ice_literature import literature_spectrum
from empirical_seaice.twin.ocean import T_FREEZE_SEAWATER_K, flat_sea_emissivity
from empirical_seaice.twin.truth import T_MELT_K, SmoothField

EFFECTS = (
    "thin_ice",
    "melt_ponds",
    "footprint",
    "nwp_errors",
    "emitting_layer",
    "drifting_bias",
    "precip_scattering",
)
"""Every effect of the realistic twin, in the order they act."""

REALISM_LEVELS = {"ideal": (), "realistic": EFFECTS}
"""``--realism`` levels and the effects each turns on."""

GEOLOCATION_ERROR_KM = 5.0
"""Standard deviation of the geolocation error (km), per axis."""

FOOTPRINT_KM = {
    # (frequency GHz, mean of the 3 dB footprint axes, km)
    "amsr2": ((6.925, 48.5), (10.65, 33.0), (18.7, 18.0), (23.8, 20.5), (36.5, 9.5), (89.0, 4.0)),
    "gmi": ((10.65, 25.8), (18.7, 14.8), (23.8, 12.1), (36.64, 11.8), (89.0, 5.9), (166.0, 5.8), (183.31, 5.8)),
    "ssmisf17": ((19.35, 56.5), (22.235, 50.0), (37.0, 36.0), (91.655, 14.0), (150.0, 14.0), (183.31, 14.0)),
}
"""Footprint sizes by sensor (JAXA AMSR2, NASA GPM GMI and DMSP SSMIS instrument descriptions:
AMSR2 35x62 km at 6.9 GHz ... 3x5 km at 89 GHz; GMI 19x32 km at 10.65 GHz ... 4.4x7.3 km at
89-183 GHz; SSMIS 45x68 km at 19 GHz ... 13x15 km at 91-183 GHz). Other sensors:
:func:`footprint_fwhm_km` scales 30 km at 19 GHz by (19 / f)^0.7."""

LAND_EMISSIVITY = (0.95, 0.90)
"""(V, H) emissivity of the (snow-covered) land seen by coastal footprints (Prigent et al. 2006, JGR 111, D08109)."""

NWP_ERRORS = {
    "tcwv_rel": 0.10,
    "lwp_log": 0.5,
    "cloud": 0.15,
    "wind_ms": 1.5,
    "t_air_k": 1.0,
    "t_skin_water_k": 0.5,
    "t_skin_ice_k": 2.5,
    "t_skin_ice_winter_bias_k": 1.5,
}
"""Sizes (standard deviations, and the one bias) of the weather-model input errors."""

K_SNOW = 0.30
"""Thermal conductivity of snow (W m-1 K-1)."""
K_ICE = 2.1
"""Thermal conductivity of sea ice (W m-1 K-1)."""
EMITTING_LAYER_SCALE_GHZ = 15.0
"""Frequency scale of the interface weight w(f) = exp(-f / scale)."""
PRECIP_DEPRESSION_K = 40.0
"""89 GHz TB depression per kg m-2 of precipitating ice (K per kg m-2)."""


def effects_from(realism: str, effects=None) -> tuple[str, ...]:
    """The effects to apply: ``effects`` if given (validated), else those of the ``realism`` level."""
    if realism not in REALISM_LEVELS:
        raise SeaIceError(f"--realism: expected one of {', '.join(REALISM_LEVELS)}, got {realism!r}")
    if effects is None:
        return REALISM_LEVELS[realism]
    bad = [e for e in effects if e not in EFFECTS]
    if bad:
        raise SeaIceError(f"--effects: unknown effect {bad[0]!r}; known: {', '.join(EFFECTS)}")
    return tuple(e for e in EFFECTS if e in effects)


# ---------------------------------------------------------------------------- pure physics


def thin_ice_emissivity(freq_ghz, pol_h, incidence_deg, thickness_cm, t_ice_k, salinity_psu):
    """Emissivity of thin (nilas / grey) ice of thickness ``h`` (cm) at temperature ``T`` (K).

    ``e = e_w + (e_fy - e_w) (1 - exp(-h / h0))``, ``h0 = 3 cm (19 GHz / f)^0.3 (1 + 0.05 (T - 263 K))``
    (floored at 0.5 cm), ``e_w`` the flat-sea emissivity at the freezing point, ``e_fy`` the
    first-year spectrum of :mod:`.ice_literature`. Arguments broadcast; returns float64.
    """
    f = np.asarray(freq_ghz, dtype=np.float64)
    pol_h = np.asarray(pol_h, dtype=bool)
    e_w = flat_sea_emissivity(f, pol_h.astype(int), incidence_deg, T_FREEZE_SEAWATER_K, salinity_psu)
    e_fy = literature_spectrum("first_year", f, pol_h)
    h0 = np.maximum(3.0 * (19.0 / f) ** 0.3 * (1.0 + 0.05 * (np.asarray(t_ice_k, dtype=np.float64) - 263.0)), 0.5)
    return e_w + (e_fy - e_w) * (1.0 - np.exp(-np.asarray(thickness_cm, dtype=np.float64) / h0))


def pond_emissivity(freq_ghz, pol_h, incidence_deg):
    """Emissivity of a melt pond: flat fresh water (salinity 0) at 273.15 K, Fresnel (float64)."""
    return flat_sea_emissivity(freq_ghz, np.asarray(pol_h, dtype=bool).astype(int), incidence_deg, T_MELT_K, 0.0)


def interface_temperature_k(t_ice_k, t_water_k, snow_depth_m, ice_thickness_m):
    """Snow-ice interface temperature (K) of steady conduction through snow and ice.

    ``T_int = T_s + (T_w - T_s) (d / k_s) / (d / k_s + h / k_i)`` with the
    snow surface temperature ``T_s``, the water (freezing) temperature ``T_w``,
    snow depth ``d`` (m), ice thickness ``h`` (m), conductivities :data:`K_SNOW`
    and :data:`K_ICE` (W m-1 K-1).
    """
    rs = np.asarray(snow_depth_m, dtype=np.float64) / K_SNOW
    ri = np.asarray(ice_thickness_m, dtype=np.float64) / K_ICE
    ts = np.asarray(t_ice_k, dtype=np.float64)
    return ts + (np.asarray(t_water_k, dtype=np.float64) - ts) * rs / (rs + ri)


def interface_weight(freq_ghz) -> np.ndarray:
    """Weight of the snow-ice interface in the emitting layer: ``w(f) = exp(-f / 15 GHz)``."""
    return np.exp(-np.asarray(freq_ghz, dtype=np.float64) / EMITTING_LAYER_SCALE_GHZ)


def footprint_fwhm_km(sensor: str, freq_ghz) -> np.ndarray:
    """3 dB footprint size (km) of ``sensor`` at ``freq_ghz`` (table :data:`FOOTPRINT_KM`, log-interpolated)."""
    f = np.asarray(freq_ghz, dtype=np.float64)
    if sensor in FOOTPRINT_KM:
        nodes = np.array(FOOTPRINT_KM[sensor])
        return np.interp(np.log(f), np.log(nodes[:, 0]), nodes[:, 1])
    return 30.0 * (19.0 / f) ** 0.7


def footprint_weights_1d(offset_km, sigma_km, cell_km) -> np.ndarray:
    """Weights of cells -1, 0, +1 (last axis) seen by a Gaussian footprint, along one axis.

    ``W_k = Phi(((k + 1/2) R - u) / s) - Phi(((k - 1/2) R - u) / s)`` for the
    footprint centre ``u`` (km, relative to the centre cell's centre), the
    Gaussian standard deviation ``s`` (km) and cell size ``R`` (km),
    normalised to sum 1 over the three cells. Shapes broadcast; returns (..., 3).
    """
    u = np.asarray(offset_km, dtype=np.float64)[..., None]
    s = np.maximum(np.asarray(sigma_km, dtype=np.float64), 1e-6)[..., None]
    k = np.array([-1.0, 0.0, 1.0])
    w = ndtr(((k + 0.5) * cell_km - u) / s) - ndtr(((k - 0.5) * cell_km - u) / s)
    return w / w.sum(axis=-1, keepdims=True)


def precip_depression_k(freq_ghz, iwp_kgm2, cloud_fraction) -> np.ndarray:
    """TB depression (K, <= 0) by precipitating ice: ``-40 IWP c min((f / 89)^1.5, 3)`` for f > 30 GHz."""
    f = np.asarray(freq_ghz, dtype=np.float64)
    shape = np.where(f > 30.0, np.minimum((f / 89.0) ** 1.5, 3.0), 0.0)
    return -PRECIP_DEPRESSION_K * np.asarray(iwp_kgm2)[..., None] * np.asarray(cloud_fraction)[..., None] * shape


# ---------------------------------------------------------------------------- the twin's state


@dataclass
class DriftParams:
    """Drifting, scene-dependent bias of one sensor: per channel amplitude (K), period (days), phase, slope (K/K)."""

    amplitude_k: np.ndarray
    period_days: np.ndarray
    phase: np.ndarray
    slope: np.ndarray

    def __call__(self, t_days, tb_k) -> np.ndarray:
        t = np.asarray(t_days, dtype=np.float64)[:, None]
        return self.amplitude_k * np.sin(2 * np.pi * t / self.period_days + self.phase) + self.slope * (tb_k - 240.0)


class Realism:
    """The realistic effects of one twin run (module docstring).

    Parameters
    ----------
    effects : effects to apply (subset of :data:`EFFECTS`).
    truth : the run's :class:`~empirical_seaice.twin.truth.TruthModel`.
    seed : the twin's seed (the effects' generators derive from it).
    sensors : sensor names of the run (for the drifting biases).
    catalogue : the sensor catalogue of the run (None = the shipped one).
    """

    def __init__(self, effects, truth, seed: int, sensors, catalogue=None):
        from empirical_seaice.sensors import load_catalogue

        catalogue = load_catalogue() if catalogue is None else catalogue
        self.effects = frozenset(effects)
        self.truth = truth
        self.grid = truth.grid
        self.seed = int(seed)
        rng = np.random.default_rng([self.seed, 15])
        draw = SmoothField.draw
        self.f_thin = draw(rng, 8, (300.0, 1500.0), (5.0, 30.0))
        self.f_pond = draw(rng, 8, (200.0, 1000.0), (5.0, 20.0))
        self.f_precip = draw(rng, 10, (300.0, 1200.0), (1.0, 3.0))
        self.f_nwp = {k: draw(rng, 10, (300.0, 1500.0), (0.5, 3.0)) for k in NWP_ERRORS}
        self.drift = {}
        for name in sensors:
            sensor = catalogue.sensors[name]
            n = len(sensor.file_channels)
            params = DriftParams(
                rng.uniform(0.3, 1.0, n),
                rng.uniform(20.0, 60.0, n),
                rng.uniform(0, 2 * np.pi, n),
                rng.normal(0, 0.01, n),
            )
            self.drift[name] = params if sensor.bias_error_k > 0.01 else None
        self._neighbours = self._neighbour_table() if "footprint" in self.effects else None

    def __contains__(self, effect: str) -> bool:
        return effect in self.effects

    def _t(self, jd):
        return np.asarray(jd, dtype=np.float64) - self.truth.jd_ref

    def _field(self, f: SmoothField, g, jd) -> np.ndarray:
        return f(self.grid.x_km[g], self.grid.y_km[g], self._t(jd))

    # ------------------------------------------------------------------ surface fractions
    def thin_fraction(self, g, jd, sic) -> tuple[np.ndarray, np.ndarray]:
        """New/thin-ice fraction of the ice area and its thickness (cm) at points ``g``, time ``jd``.

        ``f_thin = clip(0.7 G E + 0.12 (1 - summer) L, 0, 0.8)`` where there is ice: G the freeze-up rate
        ``clip(dR/dt / 12 km/day, 0, 1)``, E the edge zone ``clip(1 - (1 - phi) / 0.25, 0, 1)``,
        L = ``clip(0.5 + 0.5 F, 0, 1)`` refrozen leads; ``h = 2 + 15 clip(0.5 + 0.4 F, 0, 1)`` cm.
        """
        tr = self.truth
        jd = np.asarray(jd, dtype=np.float64)
        growth = np.clip((tr.extent_radius_km(jd + 0.5) - tr.extent_radius_km(jd - 0.5)) / 12.0, 0.0, 1.0)
        edge = np.clip(1.0 - (1.0 - tr.potential(g, jd)) / 0.25, 0.0, 1.0)
        f = self._field(self.f_thin, g, jd)
        leads = np.clip(0.5 + 0.5 * f, 0.0, 1.0)
        frac = np.clip(0.7 * growth * edge + 0.12 * (1.0 - tr.summer_fraction(jd)) * leads, 0.0, 0.8)
        return np.where(np.asarray(sic) > 0, frac, 0.0), 2.0 + 15.0 * np.clip(0.5 + 0.4 * f, 0.0, 1.0)

    def pond_fraction(self, g, jd, t_air_daily_k, myi) -> np.ndarray:
        """Melt-pond fraction of the ice area: ``0.4 clip((T_air - 272.4) / 1.2, 0, 1) (1 - 0.5 MYI) F``."""
        f = np.clip(0.7 + 0.3 * self._field(self.f_pond, g, jd), 0.3, 1.0)
        warm = np.clip((np.asarray(t_air_daily_k) - 272.4) / 1.2, 0.0, 1.0)
        return 0.4 * warm * (1.0 - 0.5 * np.asarray(myi)) * f

    def daily_fields(self, jd, daily) -> dict[str, tuple[np.ndarray, str, str]]:
        """Daily truth maps of the surface effects: name -> (values (ngrid,), units, long_name)."""
        g = np.arange(self.grid.ngrid)
        out = {}
        if "thin_ice" in self:
            frac, h = self.thin_fraction(g, jd, daily["sic"])
            out["THIN_ICE_FRACTION"] = (frac, "1", "new/thin ice fraction of the ice area")
            out["THIN_ICE_THICKNESS"] = (h, "cm", "thickness of the thin ice")
        if "melt_ponds" in self:
            ponds = np.where(daily["sic"] > 0, self.pond_fraction(g, jd, daily["t_air_k"], daily["myi_fraction"]), 0)
            out["POND_FRACTION"] = (ponds, "1", "melt-pond fraction of the ice area")
        return out

    def ice_surface(self, emis_ice, g, jd, daily, freqs, pols, inc, t_ice_k, salinity_psu) -> np.ndarray:
        """The ice emissivity with thin ice and melt ponds mixed in by area (n, nchan).

        ``inc``: incidence (deg) per channel (nchan,) or per observation (n, 1) (cross-track sensors).
        """
        pol_h = np.asarray(pols)[None, :] == 1
        col = lambda a: np.asarray(a, dtype=np.float64)[:, None]  # noqa: E731
        e = np.asarray(emis_ice, dtype=np.float64)
        inc = np.asarray(inc, dtype=np.float64)
        inc = inc[None, :] if inc.ndim == 1 else inc
        if "thin_ice" in self:
            frac, h = self.thin_fraction(g, jd, daily["sic"][g])
            e_thin = thin_ice_emissivity(freqs[None, :], pol_h, inc, col(h), col(t_ice_k), salinity_psu)
            e = (1.0 - col(frac)) * e + col(frac) * e_thin
        if "melt_ponds" in self:
            ponds = self.pond_fraction(g, jd, daily["t_air_k"][g], daily["myi_fraction"][g])
            e = (1.0 - col(ponds)) * e + col(ponds) * pond_emissivity(freqs[None, :], pol_h, inc)
        return e

    # ------------------------------------------------------------------ emitting layer
    def emission_correction(self, g, daily, surf, freqs, tau_eff) -> np.ndarray:
        """TB change (K) from emission at ``T_eff(f)`` instead of the skin temperature (n, nchan).

        ``dTB = C e_i (T_eff - T_s) tau*`` with ``T_eff = T_ice + w(f) (T_int - T_ice)`` (zero in wet
        snow): the surface emission term of the specular RT is linear in the emitting temperature.
        """
        col = lambda a: np.asarray(a, dtype=np.float64)[:, None]  # noqa: E731
        thick = 1.5 + 1.5 * daily["myi_fraction"][g]
        t_int = interface_temperature_k(surf["t_ice"], T_FREEZE_SEAWATER_K, daily["snow_depth_m"][g], thick)
        dry = 1.0 - np.clip(surf["wet"] / 0.005, 0.0, 1.0)
        w = interface_weight(freqs)[None, :] * col(dry)
        t_eff = col(surf["t_ice"]) + w * col(t_int - surf["t_ice"])
        return col(surf["sic"]) * surf["emis_ice"] * (t_eff - col(surf["t_skin"])) * tau_eff

    # ------------------------------------------------------------------ footprint
    def _neighbour_table(self) -> np.ndarray:
        """(ngrid, 9) index of each cell's 3x3 neighbours (row-major dy, dx): grid index, -1 land, -2 elsewhere."""
        import pyproj

        from empirical_seaice.twin.grid import EASE2_EPSG, is_ocean

        grid = self.grid
        r = grid.resolution_km
        ix = np.floor(grid.x_km / r).astype(np.int64)
        iy = np.floor(grid.y_km / r).astype(np.int64)
        lookup = {(a, b): i for i, (a, b) in enumerate(zip(ix.tolist(), iy.tolist(), strict=True))}
        table = np.empty((grid.ngrid, 9), dtype=np.int64)
        missing = []
        for k, (dy, dx) in enumerate((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)):
            for i in range(grid.ngrid):
                j = lookup.get((ix[i] + dx, iy[i] + dy), -2)
                table[i, k] = j
                if j == -2:
                    missing.append((i, k))
        if missing:
            ii = np.array([m[0] for m in missing])
            kk = np.array([m[1] for m in missing])
            x = (grid.x_km[ii] + (kk % 3 - 1) * r) * 1e3
            y = (grid.y_km[ii] + (kk // 3 - 1) * r) * 1e3
            to_geo = pyproj.Transformer.from_crs(f"EPSG:{EASE2_EPSG[grid.hemisphere]}", "EPSG:4326", always_xy=True)
            lon, lat = to_geo.transform(x, y)
            land = ~is_ocean(np.clip(np.asarray(lat), -90, 90), np.asarray(lon))  # the land mask of the grid's sea
            table[ii[land], kk[land]] = -1
        return table

    def footprint(self, g, sensor: str, freqs, rng) -> tuple[np.ndarray, np.ndarray]:
        """Neighbour indices (n, 9) and footprint weights (n, 9, nchan) of observations at cells ``g``.

        The footprint centre is uniform in the cell plus N(0, :data:`GEOLOCATION_ERROR_KM`) per axis; the
        Gaussian has sigma = FWHM / 2.3548 (:func:`footprint_fwhm_km`); the 2-D weight is the product of
        :func:`footprint_weights_1d` along x and y. Weights sum to 1 over the 9 cells for every channel.
        """
        r = self.grid.resolution_km
        n = np.size(g)
        u = rng.uniform(-0.5 * r, 0.5 * r, (2, n)) + rng.normal(0.0, GEOLOCATION_ERROR_KM, (2, n))
        sigma = footprint_fwhm_km(sensor, freqs) / 2.3548
        wx = footprint_weights_1d(u[0][:, None], sigma[None, :], r)  # (n, nchan, 3)
        wy = footprint_weights_1d(u[1][:, None], sigma[None, :], r)
        w = wy[..., :, None] * wx[..., None, :]  # (n, nchan, 3 dy, 3 dx)
        if self._neighbours is None:
            raise SeaIceError("twin: footprint mixing asked of a Realism built without the 'footprint' effect")
        return self._neighbours[g], np.moveaxis(w.reshape(n, -1, 9), 2, 1)

    # ------------------------------------------------------------------ precipitation, drift, weather-model errors
    def precip_depression(self, g, jd, weather, freqs) -> np.ndarray:
        """TB depression (K) by precipitating ice, (n, nchan) (:func:`precip_depression_k`)."""
        storm = np.maximum(self._field(self.f_precip, g, jd) - 0.8, 0.0)
        iwp = 0.6 * weather["lwp_kgm2"] * storm
        return precip_depression_k(freqs[None, :], iwp, weather["cloud_fraction"])

    def bias_drift(self, sensor: str, jd, tb_k) -> np.ndarray:
        """The drifting, scene-dependent bias (K) of ``sensor`` (n, nchan); zeros for an anchor sensor."""
        p = self.drift.get(sensor)
        if p is None:
            return np.zeros_like(tb_k)
        return p(self._t(jd), tb_k)

    def weather_model(self, g, jd, t_air_k, weather, t_skin_k, sic, rng) -> dict[str, np.ndarray]:
        """The weather-model fields given to the network: truth plus forecast errors (:data:`NWP_ERRORS`)."""
        e = NWP_ERRORS
        f = {k: self._field(fld, g, jd) for k, fld in self.f_nwp.items()}
        n = np.size(g)
        winter = 1.0 - self.truth.summer_fraction(jd)
        dt_skin = (1.0 - sic) * e["t_skin_water_k"] * f["t_skin_water_k"] + sic * (
            e["t_skin_ice_k"] * f["t_skin_ice_k"] + e["t_skin_ice_winter_bias_k"] * winter
        )
        return {
            "t_air_k": t_air_k + e["t_air_k"] * f["t_air_k"],
            "tcwv_kgm2": weather["tcwv_kgm2"] * np.clip(1.0 + e["tcwv_rel"] * f["tcwv_rel"], 0.5, 1.5),
            "lwp_kgm2": weather["lwp_kgm2"] * np.exp(e["lwp_log"] * f["lwp_log"]),
            "cloud_fraction": np.clip(
                weather["cloud_fraction"] + e["cloud"] * f["cloud"] + rng.normal(0, 0.05, n), 0.0, 1.0
            ),
            "wind_ms": np.clip(weather["wind_ms"] + e["wind_ms"] * f["wind_ms"], 0.0, 30.0),
            "t_skin_k": t_skin_k + dt_skin,
        }
