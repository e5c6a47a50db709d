"""The classic sea ice concentration algorithms: NASA Team and Bootstrap (tie points and formulas).

Pure numpy functions of TBs (K) with the published tie points; the daily
gridding, the maps of a run and their file are in
:mod:`empirical_seaice.products.classic`.

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

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

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
]
