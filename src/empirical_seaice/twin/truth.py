"""The twin's nature run: daily truth fields and their intra-day values.

Every field is a deterministic function of the grid, the time and a few
random draws made once from the run's generator (the modes of smooth random
fields, :class:`SmoothField`), plus per-day noise from a generator seeded by
``(seed, day)`` so that the truth of any day can be recomputed on its own
(the background needs days outside the period).

What is modelled (per hemisphere, see :class:`HemisphereClimate`):

* **SIC**: an ice "potential" ``phi = (r / R(t)) (1 + a cos(lon - lon_warm)) + b F(x, y, t)``
  with ``r`` the distance from the pole, ``R(t)`` an extent radius with a
  seasonal cycle (Arctic maximum mid-March, minimum mid-September; Antarctic
  shifted by six months), ``F`` a slowly moving smooth field (the ice edge
  moves). Ice where ``phi < 1``; concentration ramps from 0 at the edge to
  pack ice over a marginal ice zone of width ``w`` in ``phi``; the pack has
  leads (more in summer) and small daily noise.
* **Multi-year fraction**: high in the central (Arctic: Canadian side) pack,
  zero where the ice is new since the last minimum.
* **Snow depth** grows from freeze-up to spring and melts in early summer,
  thicker on multi-year ice; **snow correlation length** (0.05-0.13 mm)
  grows with the season's age and on multi-year ice.
* **Air temperature**: cold polar air over the pack in winter (~243 K), near
  0 C in summer, warm maritime air over open water; a diurnal cycle whose
  amplitude follows the sun. **Ice surface temperature** ``min(T_air - 1.5, 273.15)``.
  **Snow wetness** (liquid water volume fraction, 0-0.03) from
  ``T_air`` around 271.5-273.5 K: it changes within the day (day-time thaw,
  night-time refreeze), so it is evaluated per observation at its time.
* **Water temperature** ``>= 271.35 K``, at freezing near the ice.
* **Skin temperature** (what a weather model gives): the tile average
  ``T_s = C T_ice + (1 - C) T_water``.
* **Weather**: 10 m wind, cloud fraction, water vapour (Clausius–Clapeyron-like
  in ``T_air``) and cloud liquid water path of the cloudy column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from empirical_seaice.twin.grid import PolarGrid
from empirical_seaice.twin.ocean import T_FREEZE_SEAWATER_K

T_MELT_K = 273.15
WETNESS_MAX = 0.03
"""Largest snow liquid water volume fraction of the twin (the SMRT table's upper node)."""

DAY_TIMES = (0.0, 0.25, 0.5, 0.75)
"""Fractions of a day at which intra-day fields are averaged to daily means."""


@dataclass(frozen=True)
class SmoothField:
    """A smooth random field ``F(x, y, t) = sum_m a cos(k_m . x - w_m t + p_m)``, unit variance.

    Attributes: wavevectors ``kx, ky`` (rad/km), angular frequencies ``omega``
    (rad/day), phases (rad). Amplitude ``sqrt(2 / nmodes)`` so ``var F = 1``.
    """

    kx: np.ndarray
    ky: np.ndarray
    omega: np.ndarray
    phase: np.ndarray

    @classmethod
    def draw(
        cls, rng: np.random.Generator, nmodes: int, wavelength_km: tuple[float, float], period_days: tuple[float, float]
    ) -> SmoothField:
        """Draw the modes: log-uniform wavelengths and periods, random directions and phases."""
        lam = np.exp(rng.uniform(np.log(wavelength_km[0]), np.log(wavelength_km[1]), nmodes))
        direction = rng.uniform(0.0, 2 * np.pi, nmodes)
        period = np.exp(rng.uniform(np.log(period_days[0]), np.log(period_days[1]), nmodes))
        sign = rng.choice([-1.0, 1.0], nmodes)
        phase = rng.uniform(0.0, 2 * np.pi, nmodes)
        k = 2 * np.pi / lam
        return cls(k * np.cos(direction), k * np.sin(direction), sign * 2 * np.pi / period, phase)

    def __call__(self, x_km, y_km, t_days) -> np.ndarray:
        x = np.asarray(x_km, dtype=np.float64)[..., None]
        y = np.asarray(y_km, dtype=np.float64)[..., None]
        t = np.asarray(t_days, dtype=np.float64)[..., None]
        arg = self.kx * x + self.ky * y - self.omega * t + self.phase
        return np.sqrt(2.0 / self.kx.size) * np.cos(arg).sum(axis=-1)


@dataclass(frozen=True)
class HemisphereClimate:
    """Climate constants of one hemisphere.

    r_edge_min_km, r_edge_max_km: extent radius R at the minimum / maximum (km from the pole).
    doy_max: day of year of the extent maximum.
    lon_warm_deg, warm_asymmetry: longitude of the warm (less ice) sector and strength a.
    myi_centre_km: (x, y) of the multi-year ice centre; myi_scale: multiplier of the MYI fraction.
    t_polar_winter_k, t_polar_summer_k: pack-ice air temperature at the coldest / warmest time.
    doy_coldest: day of year of the coldest pack air.
    t_warm_winter_k, t_warm_summer_k: open-ocean air temperature far from the ice.
    """

    r_edge_min_km: float
    r_edge_max_km: float
    doy_max: float
    lon_warm_deg: float
    warm_asymmetry: float
    myi_centre_km: tuple[float, float]
    myi_scale: float
    t_polar_winter_k: float
    t_polar_summer_k: float
    doy_coldest: float
    t_warm_winter_k: float
    t_warm_summer_k: float


CLIMATES = {
    "north": HemisphereClimate(
        r_edge_min_km=1300.0,
        r_edge_max_km=2850.0,
        doy_max=72.0,
        lon_warm_deg=20.0,
        warm_asymmetry=0.3,
        myi_centre_km=(-450.0, 250.0),
        myi_scale=1.0,
        t_polar_winter_k=243.0,
        t_polar_summer_k=273.0,
        doy_coldest=35.0,
        t_warm_winter_k=276.0,
        t_warm_summer_k=284.0,
    ),
    "south": HemisphereClimate(
        r_edge_min_km=2350.0,
        r_edge_max_km=3250.0,
        doy_max=72.0 + 182.6,
        lon_warm_deg=150.0,
        warm_asymmetry=0.08,
        myi_centre_km=(-1200.0, 1300.0),
        myi_scale=0.4,
        t_polar_winter_k=250.0,
        t_polar_summer_k=272.0,
        doy_coldest=35.0 + 182.6,
        t_warm_winter_k=275.0,
        t_warm_summer_k=280.0,
    ),
}

JD_2000 = 2451544.5
"""Julian day of 2000-01-01 00 UTC."""


def day_of_year(julian_day) -> np.ndarray:
    """Fractional day of year (0 = 1 January 00 UTC), mean-year approximation (days)."""
    return np.mod(np.asarray(julian_day, dtype=np.float64) - JD_2000, 365.2425)


def _season(doy, doy_peak):
    """``cos(2 pi (doy - doy_peak) / 365.25)``: +1 at the peak, -1 half a year later."""
    return np.cos(2 * np.pi * (np.asarray(doy) - doy_peak) / 365.25)


class TruthModel:
    """The nature run on a grid.

    Parameters
    ----------
    grid : the twin's grid.
    rng : the run's generator (draws the field modes, once).
    seed : the run's seed (seeds the per-day noise).
    jd_ref : Julian day that ``t = 0`` of the moving fields refers to.
    """

    def __init__(self, grid: PolarGrid, rng: np.random.Generator, seed: int, jd_ref: float):
        self.grid = grid
        self.climate = CLIMATES[grid.hemisphere]
        self.seed = int(seed)
        self.jd_ref = float(jd_ref)
        draw = SmoothField.draw
        self.f_edge = draw(rng, 12, (600.0, 3000.0), (20.0, 90.0))
        self.f_leads = draw(rng, 10, (300.0, 1500.0), (5.0, 30.0))
        self.f_myi = draw(rng, 8, (800.0, 3000.0), (60.0, 300.0))
        self.f_snow = draw(rng, 10, (400.0, 2000.0), (40.0, 200.0))
        self.f_corr = draw(rng, 8, (500.0, 2500.0), (60.0, 300.0))
        self.f_tair = draw(rng, 10, (800.0, 4000.0), (20.0, 90.0))
        self.f_tsyn = draw(rng, 10, (800.0, 3000.0), (3.0, 10.0))
        self.f_wet = draw(rng, 8, (300.0, 1500.0), (5.0, 20.0))
        self.f_wind = draw(rng, 12, (500.0, 2500.0), (2.0, 6.0))
        self.f_cloud = draw(rng, 12, (400.0, 2000.0), (1.5, 5.0))
        self.f_lwp = draw(rng, 8, (300.0, 1500.0), (1.0, 4.0))
        self.f_wv = draw(rng, 8, (800.0, 3000.0), (2.0, 8.0))
        self.f_bg = draw(rng, 10, (500.0, 2500.0), (30.0, 120.0))
        self.salinity_psu = 33.0 if grid.hemisphere == "north" else 34.0
        self._phase_cache: dict[int, np.ndarray] = {}

    def _f(self, field: SmoothField, g, t_days) -> np.ndarray:
        """``field`` at grid points ``g`` and times ``t_days`` (days since jd_ref), via cached
        per-point phases ``k . x + p`` (ngrid, nmodes); equal to ``field(x[g], y[g], t)``."""
        key = id(field)
        if key not in self._phase_cache:
            self._phase_cache[key] = (
                np.outer(self.grid.x_km, field.kx) + np.outer(self.grid.y_km, field.ky) + field.phase
            )
        arg = self._phase_cache[key][g] - field.omega * np.asarray(t_days, dtype=np.float64)[..., None]
        return np.sqrt(2.0 / field.kx.size) * np.cos(arg).sum(axis=-1)

    # ------------------------------------------------------------------ geometry and season
    def _t(self, julian_day):
        return np.asarray(julian_day, dtype=np.float64) - self.jd_ref

    def extent_radius_km(self, julian_day) -> np.ndarray:
        """Extent radius R(t) (km): R_min + (R_max - R_min) (1 + cos(2 pi (doy - doy_max)/365.25)) / 2."""
        c = self.climate
        s = _season(day_of_year(julian_day), c.doy_max)
        return c.r_edge_min_km + (c.r_edge_max_km - c.r_edge_min_km) * 0.5 * (1.0 + s)

    def _phi(self, g, julian_day, radius_km):
        grid = self.grid
        lon = np.deg2rad(grid.lon[g] - self.climate.lon_warm_deg)
        shape = 1.0 + self.climate.warm_asymmetry * np.cos(lon)
        r = grid.r_km[g]
        return (r / radius_km) * shape + 0.10 * self._f(self.f_edge, g, self._t(julian_day))

    def potential(self, g, julian_day) -> np.ndarray:
        """Ice potential phi (ice where phi < 1) at grid points g and time(s) julian_day."""
        return self._phi(g, julian_day, self.extent_radius_km(julian_day))

    def summer_fraction(self, julian_day) -> np.ndarray:
        """0 in the coldest season, 1 in the warmest: (1 - cos(2 pi (doy - doy_coldest)/365.25)) / 2."""
        return 0.5 * (1.0 - _season(day_of_year(julian_day), self.climate.doy_coldest))

    # ------------------------------------------------------------------ daily fields
    def sic(self, julian_day: float, day_index: int) -> np.ndarray:
        """True SIC of the day centred on ``julian_day`` at every grid point (ngrid,), in [0, 1].

        ``C = clip((1 - phi) / w, 0, 1) (1 - leads) + noise`` where there is ice;
        w = 0.07 (winter) to 0.12 (summer); leads 0.01-0.07 (winter) to
        0.06-0.25 (summer); noise N(0, 0.015) from the day's own generator.
        """
        g = np.arange(self.grid.ngrid)
        summer = self.summer_fraction(julian_day)
        phi = self.potential(g, julian_day)
        width = 0.07 + 0.05 * summer
        edge = np.clip((1.0 - phi) / width, 0.0, 1.0)
        lead_field = np.clip(0.5 + 0.35 * self._f(self.f_leads, g, self._t(julian_day)), 0.0, 1.0)
        leads = (0.01 + 0.05 * summer) + (0.06 + 0.14 * summer) * lead_field
        day_rng = np.random.default_rng([self.seed, 101, day_index + 100000])
        noise = day_rng.normal(0.0, 0.015, self.grid.ngrid)
        c = edge * (1.0 - leads) + noise * (edge > 0)
        return np.clip(c, 0.0, 1.0)

    def myi_fraction(self, julian_day) -> np.ndarray:
        """Multi-year fraction of the ice (ngrid,) in [0, 1]."""
        grid, c = self.grid, self.climate
        t = self._t(julian_day)
        d = np.hypot(grid.x_km - c.myi_centre_km[0], grid.y_km - c.myi_centre_km[1])
        raw = 1.15 - d / 1500.0 + 0.25 * self._f(self.f_myi, slice(None), t)
        g = np.arange(grid.ngrid)
        # ice that survived the last minimum: phi at the minimum extent radius < 1
        survived = np.clip((1.0 - self._phi(g, julian_day, c.r_edge_min_km)) / 0.15, 0.0, 1.0)
        return np.clip(raw, 0.0, 1.0) * survived * c.myi_scale

    def snow_season(self, julian_day) -> np.ndarray:
        """Accumulated-snow factor: 0 after the summer melt, rising to 1 in spring, melting in early summer."""
        doy = np.mod(day_of_year(julian_day) - (self.climate.doy_max - 72.0), 365.2425)
        # Arctic calendar: accumulate 250 -> 130 (next year), melt 130 -> 200, bare 200 -> 250
        acc_len = 365.2425 - 250.0 + 130.0
        grow = np.where(doy >= 250.0, (doy - 250.0) / acc_len, (doy + 365.2425 - 250.0) / acc_len)
        melt = 1.0 - (doy - 130.0) / 70.0
        return np.where(
            (doy >= 130.0) & (doy < 200.0), melt, np.where((doy >= 200.0) & (doy < 250.0), 0.0, np.clip(grow, 0.0, 1.0))
        )

    def snow_depth_m(self, julian_day, myi) -> np.ndarray:
        """Snow depth on the ice (m): ``(0.03 + 0.27 s(t)) (1 + 0.3 F) + 0.08 MYI``, 0.02-0.5 m."""
        s = self.snow_season(julian_day)
        f = self._f(self.f_snow, slice(None), self._t(julian_day))
        return np.clip((0.03 + 0.27 * s) * (1.0 + 0.3 * f) + 0.08 * myi, 0.02, 0.5)

    def corr_length_mm(self, julian_day, myi) -> np.ndarray:
        """Snow exponential correlation length (mm): ``0.055 + 0.012 (1 + F) + 0.02 s(t) + 0.025 MYI``, 0.05-0.13.

        Small grains on first-year ice (~0.08 mm: 89 GHz V emissivity ~0.9), coarser
        (depth hoar) on old snow and multi-year ice; above ~90 GHz the SMRT
        emissivity is very sensitive to it, so it stays within published ranges.
        """
        s = self.snow_season(julian_day)
        f = self._f(self.f_corr, slice(None), self._t(julian_day))
        return np.clip(0.055 + 0.012 * (1.0 + f) + 0.02 * s + 0.025 * myi, 0.05, 0.13)

    # ------------------------------------------------------------------ temperatures and weather
    def t_air_k(self, g, julian_day) -> np.ndarray:
        """Near-surface air temperature (K) at points g and times julian_day (same shape), with diurnal cycle.

        ``T = (1 - m) T_polar(t) + m T_warm(t) + 3 F + 2.5 F_syn + A cos(2 pi (h_local - 14 h)/24)``,
        ``m = clip((phi - 0.85) / 0.8, 0, 1)``, diurnal amplitude ``A = 0.5 + 3 summer``.
        """
        grid, c = self.grid, self.climate
        jd = np.asarray(julian_day, dtype=np.float64)
        summer = self.summer_fraction(jd)
        t_polar = c.t_polar_winter_k + (c.t_polar_summer_k - c.t_polar_winter_k) * summer
        t_warm = c.t_warm_winter_k + (c.t_warm_summer_k - c.t_warm_winter_k) * summer
        m = np.clip((self.potential(g, jd) - 0.85) / 0.8, 0.0, 1.0)
        t = self._t(jd)
        hour_local = np.mod((jd + 0.5) * 24.0 + grid.lon[g] / 15.0, 24.0)
        diurnal = (0.5 + 3.0 * summer) * np.cos(2 * np.pi * (hour_local - 14.0) / 24.0)
        return (
            (1 - m) * t_polar
            + m * t_warm
            + 3.0 * self._f(self.f_tair, g, t)
            + 2.5 * self._f(self.f_tsyn, g, t)
            + diurnal
        )

    @staticmethod
    def t_ice_k(t_air_k) -> np.ndarray:
        """Snow/ice surface temperature (K): ``min(T_air - 1.5, 273.15)``."""
        return np.minimum(np.asarray(t_air_k) - 1.5, T_MELT_K)

    def wetness(self, g, julian_day, t_air_k) -> np.ndarray:
        """Snow liquid water volume fraction: ``0.03 clip((T_air - 271.5)/2, 0, 1) (0.7 + 0.3 F)``."""
        f = np.clip(0.7 + 0.3 * self._f(self.f_wet, g, self._t(julian_day)), 0.2, 1.0)
        return WETNESS_MAX * np.clip((np.asarray(t_air_k) - 271.5) / 2.0, 0.0, 1.0) * f

    def t_water_k(self, g, julian_day) -> np.ndarray:
        """Sea surface temperature (K): freezing near the ice, warmer away: >= 271.35 K."""
        c = self.climate
        summer = self.summer_fraction(julian_day)
        t_warm = c.t_warm_winter_k + (c.t_warm_summer_k - c.t_warm_winter_k) * summer
        m = np.clip((self.potential(g, julian_day) - 1.0) / 1.0, 0.0, 1.0)
        return T_FREEZE_SEAWATER_K + m * np.maximum(t_warm - T_FREEZE_SEAWATER_K, 0.0)

    def weather(self, g, julian_day, t_air_k, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Wind (m/s), cloud fraction, TCWV (kg m-2) and cloudy-column LWP (kg m-2) per observation."""
        t = self._t(julian_day)
        n = np.shape(g)
        open_sea = np.clip((self.potential(g, julian_day) - 1.0) / 0.5, 0.0, 1.0)
        wind = np.clip(6.5 + 1.5 * open_sea + 3.0 * self._f(self.f_wind, g, t) + rng.normal(0.0, 0.8, n), 0.0, 30.0)
        cloud = np.clip(0.5 + 0.15 * open_sea + 0.35 * self._f(self.f_cloud, g, t) + rng.normal(0.0, 0.08, n), 0.0, 1.0)
        ta = np.asarray(t_air_k)
        tcwv = np.clip((0.75 + 0.2 * self._f(self.f_wv, g, t)) * 10.0 * np.exp(0.07 * (ta - 273.0)), 0.3, 40.0)
        lwp = np.clip(
            (0.03 + 0.15 * np.clip((ta - 235.0) / 45.0, 0.0, 1.0)) * (0.6 + 0.4 * self._f(self.f_lwp, g, t)), 0.005, 0.5
        )
        return {"wind_ms": wind, "cloud_fraction": cloud, "tcwv_kgm2": tcwv, "lwp_kgm2": lwp}

    # ------------------------------------------------------------------ one day on the grid
    def daily(self, julian_day_centre: float, day_index: int) -> dict[str, np.ndarray]:
        """Every daily truth field on the grid (ngrid,) for the day centred on ``julian_day_centre``.

        Intra-day quantities (air/ice temperature, wetness, skin temperature)
        are means over the four times of :data:`DAY_TIMES` around the centre.
        """
        g = np.arange(self.grid.ngrid)
        jd = julian_day_centre
        sic = self.sic(jd, day_index)
        myi = self.myi_fraction(jd)
        t_airs = [self.t_air_k(g, np.full(g.shape, jd - 0.5 + f + 0.125)) for f in DAY_TIMES]
        t_air = np.mean(t_airs, axis=0)
        t_ice = np.mean([self.t_ice_k(a) for a in t_airs], axis=0)
        wet = np.where(sic > 0, np.mean([self.wetness(g, jd, a) for a in t_airs], axis=0), 0.0)
        t_water = self.t_water_k(g, np.full(g.shape, jd))
        return {
            "sic": sic,
            "myi_fraction": myi,
            "snow_depth_m": self.snow_depth_m(jd, myi),
            "corr_length_mm": self.corr_length_mm(jd, myi),
            "t_air_k": t_air,
            "t_ice_k": t_ice,
            "wetness": wet,
            "t_water_k": t_water,
            "t_skin_k": sic * t_ice + (1.0 - sic) * t_water,
        }
