"""Classic sea ice concentration algorithms for comparison: NASA Team and Bootstrap.

Both are computed from the same observed TBs as the trained model (19 and
37 GHz), gridded as a daily mean per grid point, step and sensor, with
published tie points. They are what users compare against: the summary
scores them against the truth beside the trained SIC when truth exists.

NASA Team (Cavalieri et al. 1984, J. Geophys. Res. 89(D4), 5355-5369;
NSIDC tie points for AMSR2 and SSMIS F17)
    Polarisation and gradient ratios

    ``PR = (T19V - T19H) / (T19V + T19H)``,  ``GR = (T37V - T19V) / (T37V + T19V)``

    and with TB a linear mixture of open water (W), first-year (F) and
    multi-year (M) ice, ``T = T_W + C_F (T_F - T_W) + C_M (T_M - T_W)``, the two
    ratio equations are linear in (C_F, C_M). Their solution is the standard
    form

    ``C_FY = (a0 + a1 PR + a2 GR + a3 PR GR) / D``,
    ``C_MY = (b0 + b1 PR + b2 GR + b3 PR GR) / D``,
    ``D = d0 + d1 PR + d2 GR + d3 PR GR``,  ``C_T = C_FY + C_MY``,

    with the coefficients computed from the nine tie points by
    :func:`nasa_team_coefficients`. Weather filter (standard): C_T = 0 where
    GR(37V/19V) > 0.05 or, when 22/24 GHz V is given, GR(22V/19V) > 0.045.

Bootstrap (Comiso 1986, J. Geophys. Res. 91(C1), 975-994; Comiso et al.
1997, Remote Sens. Environ. 60, 357-384)
    In a plane of two TBs (x, y), open water is a point W = (x_W, y_W) and
    100 % ice is the line ``y = offset + slope x``. The concentration of an
    observation T is ``|WT| / |WI|``, I the intersection of the ray W->T with
    the ice line, which reduces to the linear expression

    ``C = ((y - y_W) - slope (x - x_W)) / (offset + slope x_W - y_W)``.

    Two planes: (37V, 37H) for consolidated ice and (37V, 19V) otherwise; the
    switch is the "AD line" parallel to the ice line at 92 % of the distance
    from W (NSIDC's Goddard code), i.e. the 37V/37H concentration is used
    where it exceeds 0.92. Tie points and ice lines: NSIDC's Python port of
    the Goddard Bootstrap code (github.com/nsidc/pm_icecon,
    ``pm_icecon/bt/params/amsr2.py`` from Goddard's ``ret_parameters_amsru2.f``
    for AMSR2, ``pm_icecon/bt/params/nsidc0001.py`` from
    ``ret_parameters_cdr.f`` for SSMIS F17). Not reproduced from the
    operational code: the daily regression of the ice line on the day's
    consolidated-ice points, the daily water tie point, the "radial"
    adjustment near the ice tie point and the spatial land-spillover filters
    (they need a full polar grid and a day's swath statistics).

GMI has no published tie points of its own; its 19/37 GHz channels are close
to AMSR2's in frequency and incidence, so AMSR2's tie points are used
(:data:`TIE_POINT_SENSOR`). NASA Team tie points are the given (Arctic) set
in both hemispheres; Bootstrap has separate north/south sets, chosen by the
latitude of each grid point.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.observations import Observations

log = logging.getLogger(__name__)

ALGORITHMS = ("nasa_team", "bootstrap")
"""Names of the classic algorithms (also the output variable names)."""

BOOTSTRAP_AD_FRACTION = 0.92
"""Position of the AD line between W and the ice line (Goddard code, ``perc``)."""

NT_GR3719_MAX = 0.05
"""NASA Team weather filter: open water where GR(37V/19V) exceeds this."""
NT_GR2219_MAX = 0.045
"""NASA Team weather filter: open water where GR(22V/19V) exceeds this."""


@dataclass(frozen=True)
class NasaTeamTiePoints:
    """NASA Team tie points (K), each as (open water, first-year, multi-year).

    Attributes
    ----------
    tb19v_k, tb19h_k, tb37v_k : tuple of 3 float
        TB of open water, first-year and multi-year ice at 19V, 19H, 37V (K).
    source : str
        Where the values come from.
    """

    tb19v_k: tuple[float, float, float]
    tb19h_k: tuple[float, float, float]
    tb37v_k: tuple[float, float, float]
    source: str = ""


NASA_TEAM_TIE_POINTS: Mapping[str, NasaTeamTiePoints] = {
    "amsr2": NasaTeamTiePoints(
        tb19v_k=(190.55, 253.07, 225.80),
        tb19h_k=(109.60, 234.73, 196.75),
        tb37v_k=(211.20, 244.16, 193.78),
        source="NSIDC NASA Team tie points, AMSR2",
    ),
    "ssmisf17": NasaTeamTiePoints(
        tb19v_k=(184.9, 248.4, 220.7),
        tb19h_k=(113.4, 232.0, 196.0),
        tb37v_k=(207.1, 242.3, 188.5),
        source="NSIDC NASA Team tie points, SSMIS F17",
    ),
}
"""NASA Team tie points by sensor (see the module docstring)."""


@dataclass(frozen=True)
class BootstrapTiePoints:
    """Bootstrap tie points (K) of one sensor and hemisphere.

    Attributes
    ----------
    water_37v_k, water_37h_k, water_19v_k : float
        Open-water tie point W (K).
    ice_37v_k, ice_37h_k, ice_19v_k : float
        Nominal ice tie point (K); informative (used by the omitted radial
        adjustment of the operational code).
    line_vh37 : (offset K, slope)
        Ice line of the 37V/37H plane: ``T37H = offset + slope T37V``.
    line_v1937 : (offset K, slope)
        Ice line of the 37V/19V plane: ``T19V = offset + slope T37V``.
    source : str
        Where the values come from.
    """

    water_37v_k: float
    water_37h_k: float
    water_19v_k: float
    ice_37v_k: float
    ice_37h_k: float
    ice_19v_k: float
    line_vh37: tuple[float, float]
    line_v1937: tuple[float, float]
    source: str = ""


_PM_ICECON = "github.com/nsidc/pm_icecon"
BOOTSTRAP_TIE_POINTS: Mapping[tuple[str, str], BootstrapTiePoints] = {
    ("amsr2", "north"): BootstrapTiePoints(
        207.2,
        131.9,
        182.4,
        256.3,
        241.2,
        258.9,
        (-71.99, 1.20),
        (48.26, 0.8048),
        source=f"{_PM_ICECON} bt/params/amsr2.py (Goddard ret_parameters_amsru2.f), north",
    ),
    ("amsr2", "south"): BootstrapTiePoints(
        207.6,
        131.9,
        182.7,
        259.4,
        247.3,
        261.6,
        (-90.62, 1.2759),
        (62.89, 0.7618),
        source=f"{_PM_ICECON} bt/params/amsr2.py (Goddard ret_parameters_amsru2.f), south",
    ),
    ("ssmisf17", "north"): BootstrapTiePoints(
        201.916,
        132.815,
        178.771,
        255.670,
        241.713,
        258.341,
        (-73.5471, 1.21104),
        (47.0061, 0.809335),
        source=f"{_PM_ICECON} bt/params/nsidc0001.py (Goddard ret_parameters_cdr.f), north",
    ),
    ("ssmisf17", "south"): BootstrapTiePoints(
        201.990,
        133.943,
        178.358,
        259.122,
        248.284,
        261.654,
        (-90.9384, 1.28239),
        (61.7438, 0.767205),
        source=f"{_PM_ICECON} bt/params/nsidc0001.py (Goddard ret_parameters_cdr.f), south",
    ),
}
"""Bootstrap tie points by (sensor, hemisphere) (see the module docstring)."""

TIE_POINT_SENSOR: Mapping[str, str] = {"amsr2": "amsr2", "ssmisf17": "ssmisf17", "gmi": "amsr2"}
"""Whose tie points each sensor uses (GMI: AMSR2's, an approximation)."""


# ---------------------------------------------------------------------------
# NASA Team
# ---------------------------------------------------------------------------


def polarization_ratio(tb_v_k: np.ndarray, tb_h_k: np.ndarray) -> np.ndarray:
    """``PR = (T_V - T_H) / (T_V + T_H)`` (dimensionless; TBs in K)."""
    tb_v_k = np.asarray(tb_v_k, dtype=np.float64)
    tb_h_k = np.asarray(tb_h_k, dtype=np.float64)
    return (tb_v_k - tb_h_k) / (tb_v_k + tb_h_k)


def gradient_ratio(tb_high_k: np.ndarray, tb_low_k: np.ndarray) -> np.ndarray:
    """``GR = (T_high - T_low) / (T_high + T_low)`` (dimensionless; TBs in K)."""
    tb_high_k = np.asarray(tb_high_k, dtype=np.float64)
    tb_low_k = np.asarray(tb_low_k, dtype=np.float64)
    return (tb_high_k - tb_low_k) / (tb_high_k + tb_low_k)


def nasa_team_coefficients(tp: NasaTeamTiePoints) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients (a, b, d) of the NASA Team ratio formulas from tie points.

    With sums and differences of the tie-point TBs of surface type X (W, F, M)
    ``S_X = T19V + T19H``, ``D_X = T19V - T19H``, ``G_X = T37V + T19V``,
    ``E_X = T37V - T19V`` and increments relative to water
    ``s_X = S_X - S_W`` (likewise d, g, e) for X = F, M, the linear mixing
    equations ``PR (S_W + C_F s_F + C_M s_M) = D_W + C_F d_F + C_M d_M`` and
    ``GR (G_W + C_F g_F + C_M g_M) = E_W + C_F e_F + C_M e_M`` solved by
    Cramer's rule give, over the basis ``[1, PR, GR, PR GR]``:

    - ``d = [d_F e_M - d_M e_F, s_M e_F - s_F e_M, d_M g_F - d_F g_M, s_F g_M - s_M g_F]``
    - ``a = [d_M E_W - D_W e_M, S_W e_M - s_M E_W, D_W g_M - d_M G_W, s_M G_W - S_W g_M]``
    - ``b = [D_W e_F - d_F E_W, s_F E_W - S_W e_F, d_F G_W - D_W g_F, S_W g_F - s_F G_W]``

    Returns
    -------
    a, b, d : float64 arrays of 4
        ``C_FY = a.[1,PR,GR,PR GR] / d.[...]``, ``C_MY = b.[...] / d.[...]``.
    """
    v19 = np.asarray(tp.tb19v_k, dtype=np.float64)
    h19 = np.asarray(tp.tb19h_k, dtype=np.float64)
    v37 = np.asarray(tp.tb37v_k, dtype=np.float64)
    S, D, G, E = v19 + h19, v19 - h19, v37 + v19, v37 - v19
    SW, DW, GW, EW = S[0], D[0], G[0], E[0]
    sF, sM = S[1] - SW, S[2] - SW
    dF, dM = D[1] - DW, D[2] - DW
    gF, gM = G[1] - GW, G[2] - GW
    eF, eM = E[1] - EW, E[2] - EW
    d = np.array([dF * eM - dM * eF, sM * eF - sF * eM, dM * gF - dF * gM, sF * gM - sM * gF])
    a = np.array([dM * EW - DW * eM, SW * eM - sM * EW, DW * gM - dM * GW, sM * GW - SW * gM])
    b = np.array([DW * eF - dF * EW, sF * EW - SW * eF, dF * GW - DW * gF, SW * gF - sF * GW])
    return a, b, d


@dataclass(frozen=True)
class NasaTeamSIC:
    """NASA Team concentrations (fractions 0..1, float64, NaN where no data).

    total is clipped to [0, 1] and set to 0 by the weather filter;
    first_year and multi_year are the unclipped solutions of the mixing equations.
    """

    total: np.ndarray
    first_year: np.ndarray
    multi_year: np.ndarray


def nasa_team(
    tb19v_k: np.ndarray,
    tb19h_k: np.ndarray,
    tb37v_k: np.ndarray,
    tie_points: NasaTeamTiePoints,
    *,
    tb22v_k: np.ndarray | None = None,
    weather_filter: bool = True,
) -> NasaTeamSIC:
    """NASA Team sea ice concentration (Cavalieri et al. 1984).

    ``C_FY``, ``C_MY`` from the ratio formulas of :func:`nasa_team_coefficients`;
    ``C_T = clip(C_FY + C_MY, 0, 1)``; with ``weather_filter`` C_T = 0 where
    ``GR(37V/19V) > 0.05`` or (if ``tb22v_k`` is given) ``GR(22V/19V) > 0.045``.

    Parameters
    ----------
    tb19v_k, tb19h_k, tb37v_k : array
        Observed TB (K) at 19V, 19H, 37V, any (broadcastable) shape; NaN = missing.
    tie_points : NasaTeamTiePoints
    tb22v_k : array, optional
        TB (K) at 22 (or 23.8) GHz V for the second weather-filter ratio.
    weather_filter : bool
        Apply the standard gradient-ratio weather filter.

    Examples
    --------
    >>> tp = NASA_TEAM_TIE_POINTS["amsr2"]
    >>> float(nasa_team(253.07, 234.73, 244.16, tp).total)   # pure first-year ice
    1.0
    """
    pr = polarization_ratio(tb19v_k, tb19h_k)
    gr = gradient_ratio(tb37v_k, tb19v_k)
    a, b, d = nasa_team_coefficients(tie_points)
    basis = (np.ones_like(pr), pr, gr, pr * gr)
    den = sum(d[j] * basis[j] for j in range(4))
    c_fy = sum(a[j] * basis[j] for j in range(4)) / den
    c_my = sum(b[j] * basis[j] for j in range(4)) / den
    total = np.clip(c_fy + c_my, 0.0, 1.0)
    if weather_filter:
        wet = gr > NT_GR3719_MAX
        if tb22v_k is not None:
            wet = wet | (gradient_ratio(tb22v_k, tb19v_k) > NT_GR2219_MAX)
        total = np.where(wet & np.isfinite(total), 0.0, total)
    return NasaTeamSIC(total=total, first_year=c_fy, multi_year=c_my)


# ---------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------


def bootstrap_plane_sic(
    x_k: np.ndarray, y_k: np.ndarray, water_x_k: float, water_y_k: float, line: tuple[float, float]
) -> np.ndarray:
    """Bootstrap concentration in one TB plane, unclipped.

    ``C = |WT| / |WI| = ((y - y_W) - slope (x - x_W)) / (offset + slope x_W - y_W)``

    with W the water point, T = (x, y) the observation and I the intersection
    of the ray W->T with the ice line ``y = offset + slope x``. Negative where
    T lies on the far side of W from the ice line; above 1 beyond the line.

    Parameters
    ----------
    x_k, y_k : array
        TB (K) on the plane's axes.
    water_x_k, water_y_k : float
        Open-water tie point (K).
    line : (offset K, slope)
        Ice line.

    Examples
    --------
    >>> float(bootstrap_plane_sic(0.5, 0.25, 0.0, 0.0, (1.0, 0.0)))
    0.25
    """
    offset, slope = line
    x = np.asarray(x_k, dtype=np.float64)
    y = np.asarray(y_k, dtype=np.float64)
    return ((y - water_y_k) - slope * (x - water_x_k)) / (offset + slope * water_x_k - water_y_k)


def bootstrap(
    tb37v_k: np.ndarray,
    tb37h_k: np.ndarray,
    tb19v_k: np.ndarray,
    tie_points: BootstrapTiePoints,
    *,
    max_sic: float = 1.0,
) -> np.ndarray:
    """Bootstrap sea ice concentration (Comiso 1986), fraction 0..max_sic.

    ``C_A`` in the (37V, 37H) plane and ``C_B`` in the (37V, 19V) plane by
    :func:`bootstrap_plane_sic`; ``C = C_A`` where ``C_A > 0.92`` (above the
    AD line), else ``C_B``; clipped to ``[0, max_sic]``. NaN where an input
    is NaN.

    Parameters
    ----------
    tb37v_k, tb37h_k, tb19v_k : array
        Observed TB (K), broadcastable shapes.
    tie_points : BootstrapTiePoints
    max_sic : float
        Upper clip of the concentration (fraction).
    """
    tp = tie_points
    c_a = bootstrap_plane_sic(tb37v_k, tb37h_k, tp.water_37v_k, tp.water_37h_k, tp.line_vh37)
    c_b = bootstrap_plane_sic(tb37v_k, tb19v_k, tp.water_37v_k, tp.water_19v_k, tp.line_v1937)
    c = np.where(c_a > BOOTSTRAP_AD_FRACTION, c_a, c_b)
    return np.clip(c, 0.0, max_sic)


# ---------------------------------------------------------------------------
# Daily gridding and maps
# ---------------------------------------------------------------------------


def grid_daily_mean_tb(obs: Observations, channels: Sequence[str], isensor: int) -> np.ndarray:
    """Daily mean observed TB per grid point and step, for one sensor.

    ``TB[g, t, c] = mean over {i : g(i) = g, t(i) = t, s(i) = isensor, mask_ic} of y_ic``

    Parameters
    ----------
    obs : Observations
        Observations in the unified basis.
    channels : sequence of str
        Channel names of the basis (e.g. ``("19v", "19h", "37v")``).
    isensor : int
        Sensor index into ``obs.basis.sensor_names``.

    Returns
    -------
    float64 array (ngrid, nstep, len(channels)); NaN where no valid observation.

    Raises
    ------
    SeaIceError
        A channel the run's channel basis does not have.
    """
    missing = [c for c in channels if c not in obs.basis.channel_index]
    if missing:
        raise SeaIceError(
            f"classic SIC: channel(s) {', '.join(missing)} not in the run's channels "
            f"({', '.join(obs.basis.channel_names)})"
        )
    ncell = obs.ngrid * obs.nstep
    sel = np.asarray(obs.isensor) == isensor
    cell = np.asarray(obs.igrid, dtype=np.int64)[sel] * obs.nstep + np.asarray(obs.istep, dtype=np.int64)[sel]
    out = np.full((ncell, len(channels)), np.nan)
    for j, name in enumerate(channels):
        c = obs.basis.channel_index[name]
        m = np.asarray(obs.mask[:, c])[sel]
        tb = np.asarray(obs.tb_obs_k[:, c], dtype=np.float64)[sel]
        total = np.bincount(cell[m], weights=tb[m], minlength=ncell)
        count = np.bincount(cell[m], minlength=ncell)
        has = count > 0
        out[has, j] = total[has] / count[has]
    return out.reshape(obs.ngrid, obs.nstep, len(channels))


def grid_hemisphere(lat: np.ndarray | None, ngrid: int) -> np.ndarray:
    """Boolean (ngrid,): True for the northern hemisphere (lat >= 0; all north if lat is None)."""
    if lat is None:
        return np.ones(ngrid, dtype=bool)
    return np.asarray(lat) >= 0.0


@dataclass
class ClassicSIC:
    """Classic-algorithm SIC maps (fraction, float32, NaN where no data).

    Attributes
    ----------
    maps : dict of str to array (ngrid, nstep)
        ``"nasa_team"`` and ``"bootstrap"``: the mean over the sensors that
        have a value at that grid point and step.
    per_sensor : dict of (algorithm, sensor) to array (ngrid, nstep)
    sources : dict of str to str
        Tie-point source per (algorithm/sensor) key, for the file attributes.
    """

    maps: dict[str, np.ndarray]
    per_sensor: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)


def classic_sic_maps(obs: Observations, algorithms: Sequence[str] = ALGORITHMS) -> ClassicSIC:
    """NASA Team and Bootstrap SIC on the run's grid, per day, from the observed TBs.

    For each sensor with (own or substitute, :data:`TIE_POINT_SENSOR`) tie
    points and the channels 19V, 19H, 37V (NASA Team) or 19V, 37V, 37H
    (Bootstrap), the observed TBs are averaged per grid point and step
    (:func:`grid_daily_mean_tb`) and the algorithm applied to the means;
    the sensors' maps are then averaged where they have values.

    Raises
    ------
    SeaIceError
        An unknown algorithm name, or no sensor of the run has the channels
        and tie points of a requested algorithm.
    """
    unknown = [a for a in algorithms if a not in ALGORITHMS]
    if unknown:
        raise SeaIceError(f"classic SIC: unknown algorithm {unknown[0]!r}; known: {', '.join(ALGORITHMS)}")
    names = obs.basis.channel_index
    north = grid_hemisphere(obs.lat, obs.ngrid)[:, None]
    result = ClassicSIC(maps={})
    for alg in algorithms:
        need = ("19v", "19h", "37v") if alg == "nasa_team" else ("37v", "37h", "19v")
        stack = []
        for s, sname in enumerate(obs.basis.sensor_names):
            tp_name = TIE_POINT_SENSOR.get(sname)
            present = obs.basis.present[s]
            if tp_name is None or not all(c in names and present[names[c]] for c in need):
                log.info("classic SIC %s: sensor %s skipped (no tie points or channels)", alg, sname)
                continue
            if tp_name != sname:
                log.info("classic SIC %s: sensor %s uses %s tie points", alg, sname, tp_name)
            if alg == "nasa_team":
                extra = ("24v",) if "24v" in names and present[names["24v"]] else ()
                tb = grid_daily_mean_tb(obs, need + extra, s)
                tp = NASA_TEAM_TIE_POINTS[tp_name]
                sic = nasa_team(tb[..., 0], tb[..., 1], tb[..., 2], tp, tb22v_k=tb[..., 3] if extra else None).total
                result.sources[f"nasa_team/{sname}"] = tp.source
            else:
                tb = grid_daily_mean_tb(obs, need, s)
                tpn, tps = BOOTSTRAP_TIE_POINTS[(tp_name, "north")], BOOTSTRAP_TIE_POINTS[(tp_name, "south")]
                sic = np.where(
                    north,
                    bootstrap(tb[..., 0], tb[..., 1], tb[..., 2], tpn),
                    bootstrap(tb[..., 0], tb[..., 1], tb[..., 2], tps),
                )
                result.sources[f"bootstrap/{sname}"] = f"{tpn.source}; {tps.source}"
            result.per_sensor[(alg, sname)] = sic.astype(np.float32)
            stack.append(sic)
        if not stack:
            raise SeaIceError(
                f"classic SIC {alg}: no sensor of the run ({', '.join(obs.basis.sensor_names)}) "
                f"has the channels {', '.join(need)} and tie points"
            )
        with np.errstate(invalid="ignore"):
            arr = np.stack(stack)
            count = np.sum(np.isfinite(arr), axis=0)
            mean = np.where(count > 0, np.nansum(arr, axis=0) / np.maximum(count, 1), np.nan)
        result.maps[alg] = mean.astype(np.float32)
    return result


def sic_rmse(sic: np.ndarray, truth: np.ndarray) -> float:
    """RMSE of a SIC map versus the truth over the points where both are finite."""
    sic = np.asarray(sic, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    ok = np.isfinite(sic) & np.isfinite(truth)
    if not ok.any():
        return float("nan")
    return float(np.sqrt(np.mean((sic[ok] - truth[ok]) ** 2)))


def write_classic_sic(path: Path, classic: ClassicSIC, obs: Observations, steps_per_day: int = 1) -> Path:
    """Write ``classic_sic_TAG.nc``: one (grid, step) variable per algorithm
    (sensor mean) and per algorithm and sensor (``nasa_team_amsr2``, ...),
    with lon/lat, the steps' ``time`` and ``time_bnds`` (CF, days since
    1970-01-01) and ``julian_day``, and the tie-point sources as attributes."""
    import xarray as xr

    from empirical_seaice.io import cf
    from empirical_seaice.io.outputs import step_julian_day, write_dataset

    def sic_attrs(long_name: str, **extra) -> dict:
        return {"units": "1", "long_name": long_name, **cf.STANDARD["sic"], **extra}

    data_vars = {}
    for alg, arr in classic.maps.items():
        data_vars[alg] = (
            ("grid", "step"),
            np.asarray(arr, np.float32),
            sic_attrs(f"sea ice concentration, {alg.replace('_', ' ')} algorithm, mean over sensors"),
        )
    for (alg, sname), arr in classic.per_sensor.items():
        data_vars[f"{alg}_{sname}"] = (
            ("grid", "step"),
            np.asarray(arr, np.float32),
            sic_attrs(
                f"sea ice concentration, {alg.replace('_', ' ')} algorithm, {sname}",
                tie_points=classic.sources.get(f"{alg}/{sname}", ""),
            ),
        )
    jd = step_julian_day(obs.jd_origin, obs.stepstart, obs.nstep, 0, steps_per_day)
    t = cf.julian_day_to_time(jd)
    half = 0.5 / steps_per_day
    data_vars["julian_day"] = (
        ("step",),
        jd,
        {"units": "days", "long_name": "Julian day at the centre of the step's 21 UTC window"},
    )
    coords = {
        "time": (("step",), t, cf.time_attrs("centre of the step's 21 UTC window", bounds="time_bnds")),
        "time_bnds": (("step", "nv"), np.stack([t - half, t + half], axis=1)),
    }
    if obs.lon is not None and obs.lat is not None:
        coords["lon"] = (("grid",), np.asarray(obs.lon, np.float32), cf.lonlat_attrs("lon"))
        coords["lat"] = (("grid",), np.asarray(obs.lat, np.float32), cf.lonlat_attrs("lat"))
    ds = xr.Dataset(
        data_vars,
        coords=coords,
        attrs={
            "title": "classic sea ice concentration algorithms on the run's grid (daily means of observed TB)",
            "references": "Cavalieri et al. 1984 doi:10.1029/JD089iD04p05355; Comiso 1986 doi:10.1029/JC091iC01p00975; "
            + cf.REFERENCES,
            "stepstart": int(obs.stepstart),
            "jd_origin": float(obs.jd_origin),
        },
    )
    return write_dataset(ds, Path(path))


__all__ = [
    "ALGORITHMS",
    "NasaTeamTiePoints",
    "NASA_TEAM_TIE_POINTS",
    "BootstrapTiePoints",
    "BOOTSTRAP_TIE_POINTS",
    "TIE_POINT_SENSOR",
    "polarization_ratio",
    "gradient_ratio",
    "nasa_team_coefficients",
    "NasaTeamSIC",
    "nasa_team",
    "bootstrap_plane_sic",
    "bootstrap",
    "grid_daily_mean_tb",
    "grid_hemisphere",
    "ClassicSIC",
    "classic_sic_maps",
    "sic_rmse",
    "write_classic_sic",
]
