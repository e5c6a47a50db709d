"""Fair versions of the classic algorithms: tie points that fit the data.

:mod:`.classic` applies NASA Team and Bootstrap with fixed published tie
points. On data whose ice does not look like the ice behind those tie points
(the twin's SMRT or literature ice, a new sensor, a season) that handicaps
them, and "better than the classic algorithms" would overstate a margin.
Operational centres do not run them that way: they adapt the tie points to
the data. This module gives the versions a comparison must beat:

``nasa_team_hemisphere``
    NASA Team with hemisphere-specific tie points: the sensor's (Arctic)
    tie points in the north; in the south the same shifted by the
    south-minus-north difference of the SSM/I tie points of the NSIDC
    NASA Team product (:data:`SSMI_NT_NORTH`, :data:`SSMI_NT_SOUTH`), as no
    Antarctic set is published for every sensor here.
``nasa_team_dynamic``
    NASA Team with tie points fitted to each day's data per hemisphere and
    sensor, as OSI SAF's dynamic tie points (Tonboe et al. 2016, The
    Cryosphere 10, 2275-2290; Lavergne et al. 2019, The Cryosphere 13,
    49-78): a first pass with the hemisphere tie points classifies the day's
    grid cells; the open-water tie point is the median TB of the cells with
    a total below :data:`WATER_SIC_MAX`, the first-year and multi-year tie
    points the median TB of the consolidated cells (total above
    :data:`ICE_SIC_MIN`, or the upper quartile of the class when that is
    lower) with a multi-year share below / above 0.5; a class with fewer
    than :data:`MIN_CELLS` cells keeps its first-pass tie point shifted like
    the others. The fit is repeated :data:`FIT_PASSES` times, each
    pass classifying with the previous pass's tie points.
``bootstrap_regression``
    Bootstrap with the operational daily regressions (Comiso 1986; Comiso et
    al. 2003, IEEE TGRS 41, 243-252): per day, hemisphere and sensor the ice
    lines of the (37V, 37H) and (37V, 19V) planes are the least-squares lines
    through the consolidated-ice points (first-pass 37V/37H concentration
    above :data:`ICE_SIC_MIN`), and the water tie point is the median of the
    cells with a first-pass concentration below :data:`WATER_SIC_MAX`; with
    the NASA Team gradient-ratio weather filter, as NSIDC's Bootstrap.

Everything works on the same daily-mean TBs per grid point, step and sensor
as :func:`.classic.classic_sic_maps` and averages the sensors the same way.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from empirical_seaice.observations import Observations
from empirical_seaice.products.classic import (
    BOOTSTRAP_AD_FRACTION,
    BOOTSTRAP_TIE_POINTS,
    NASA_TEAM_TIE_POINTS,
    NT_GR2219_MAX,
    NT_GR3719_MAX,
    TIE_POINT_SENSOR,
    BootstrapTiePoints,
    NasaTeamTiePoints,
    bootstrap_plane_sic,
    gradient_ratio,
    grid_daily_mean_tb,
    grid_hemisphere,
    nasa_team,
)

FAIR_ALGORITHMS = ("nasa_team_hemisphere", "nasa_team_dynamic", "bootstrap_regression")
"""Names of the fair classic algorithms."""

SSMI_NT_NORTH = NasaTeamTiePoints((177.1, 258.2, 223.2), (100.8, 242.8, 203.9), (201.7, 252.8, 186.3), "SSM/I north")
"""NSIDC NASA Team SSM/I (F13) tie points, Arctic: (water, first-year, multi-year) at 19V, 19H, 37V (K)."""
SSMI_NT_SOUTH = NasaTeamTiePoints((176.6, 249.8, 221.6), (100.3, 237.8, 193.7), (200.5, 243.3, 190.3), "SSM/I south")
"""NSIDC NASA Team SSM/I (F13) tie points, Antarctic ("multi-year" = type B ice)."""

WATER_SIC_MAX = 0.05
"""First-pass concentration below which a cell counts as open water for the fitted tie points."""
ICE_SIC_MIN = 0.95
"""First-pass concentration above which a cell counts as consolidated ice for the fitted tie points."""
MIN_CELLS = 20
"""Fewest cells that define a fitted tie point or ice line."""
ICE_QUANTILE = 0.75
"""The consolidated-ice threshold of the NASA Team fit, per ice class, is lowered to this quantile of the
class's first-pass totals above 0.6 when that is below :data:`ICE_SIC_MIN` (tie points far from the data's
ice give totals below 0.95)."""
FIT_PASSES = 3
"""Passes of the NASA Team tie-point fit (each classifies with the previous pass's tie points)."""


def nasa_team_hemisphere_tie_points(sensor: str, north: bool) -> NasaTeamTiePoints:
    """The sensor's NASA Team tie points for one hemisphere (module docstring)."""
    base = NASA_TEAM_TIE_POINTS[TIE_POINT_SENSOR[sensor]]
    if north:
        return base
    shift = lambda b, n, s: tuple(x + (ys - yn) for x, yn, ys in zip(b, n, s, strict=True))  # noqa: E731
    return NasaTeamTiePoints(
        shift(base.tb19v_k, SSMI_NT_NORTH.tb19v_k, SSMI_NT_SOUTH.tb19v_k),
        shift(base.tb19h_k, SSMI_NT_NORTH.tb19h_k, SSMI_NT_SOUTH.tb19h_k),
        shift(base.tb37v_k, SSMI_NT_NORTH.tb37v_k, SSMI_NT_SOUTH.tb37v_k),
        f"{base.source}, shifted by SSM/I south - north",
    )


def fit_nasa_team_tie_points(tb: np.ndarray, first: NasaTeamTiePoints) -> NasaTeamTiePoints:
    """Tie points fitted to daily-mean TBs ``tb`` (ncell, 3: 19V, 19H, 37V, K) from a first pass with ``first``.

    Open water: median TB of cells with total < :data:`WATER_SIC_MAX`; first-year / multi-year: median TB of
    cells with multi-year share < / >= 0.5 and a total above min(:data:`ICE_SIC_MIN`, the :data:`ICE_QUANTILE`
    quantile of the class's totals above 0.6). A class with fewer than
    :data:`MIN_CELLS` cells keeps ``first``'s value shifted by the mean shift of the fitted classes.
    """
    ok = np.all(np.isfinite(tb), axis=1)
    tb = tb[ok]
    sic = nasa_team(tb[:, 0], tb[:, 1], tb[:, 2], first, weather_filter=False)
    total = sic.first_year + sic.multi_year
    share = sic.multi_year / np.where(np.abs(total) > 1e-6, total, 1e-6)
    classes = [total < WATER_SIC_MAX]
    for kind in (share < 0.5, share >= 0.5):
        cand = kind & (total > 0.6)
        thr = min(ICE_SIC_MIN, float(np.quantile(total[cand], ICE_QUANTILE))) if cand.any() else ICE_SIC_MIN
        classes.append(cand & (total >= thr))
    old = np.array([first.tb19v_k, first.tb19h_k, first.tb37v_k]).T  # (3 classes, 3 channels)
    new = old.copy()
    fitted = []
    for k, sel in enumerate(classes):
        if sel.sum() >= MIN_CELLS:
            new[k] = np.median(tb[sel], axis=0)
            fitted.append(k)
    if fitted:
        shift = np.mean(new[fitted] - old[fitted], axis=0)
        for k in set(range(3)) - set(fitted):
            new[k] = old[k] + shift
    return NasaTeamTiePoints(tuple(new[:, 0]), tuple(new[:, 1]), tuple(new[:, 2]), "fitted to the day's data")


def _fit_line(x: np.ndarray, y: np.ndarray, fallback: tuple[float, float]) -> tuple[float, float]:
    """Least-squares line ``y = offset + slope x`` (offset K, slope); ``fallback`` with fewer than MIN_CELLS points."""
    if x.size < MIN_CELLS or np.ptp(x) < 1.0:
        return fallback
    slope, offset = np.polyfit(x, y, 1)
    return float(offset), float(slope)


def fit_bootstrap_tie_points(tb: np.ndarray, first: BootstrapTiePoints) -> BootstrapTiePoints:
    """Bootstrap ice lines and water point fitted to daily-mean TBs ``tb`` (ncell, 3: 37V, 37H, 19V, K).

    Consolidated ice = first-pass 37V/37H concentration > :data:`ICE_SIC_MIN`; the two ice lines are
    least-squares fits through those points (37H on 37V, 19V on 37V); the water point is the median TB of
    the cells whose first-pass concentration is below :data:`WATER_SIC_MAX`.
    """
    ok = np.all(np.isfinite(tb), axis=1)
    tb = tb[ok]
    c_a = bootstrap_plane_sic(tb[:, 0], tb[:, 1], first.water_37v_k, first.water_37h_k, first.line_vh37)
    c_b = bootstrap_plane_sic(tb[:, 0], tb[:, 2], first.water_37v_k, first.water_19v_k, first.line_v1937)
    c = np.where(c_a > BOOTSTRAP_AD_FRACTION, c_a, c_b)
    ice = c_a > ICE_SIC_MIN
    water = c < WATER_SIC_MAX
    out = replace(
        first,
        line_vh37=_fit_line(tb[ice, 0], tb[ice, 1], first.line_vh37),
        line_v1937=_fit_line(tb[ice, 0], tb[ice, 2], first.line_v1937),
        source="ice lines and water point fitted to the day's data",
    )
    if water.sum() >= MIN_CELLS:
        w = np.median(tb[water], axis=0)
        out = replace(out, water_37v_k=float(w[0]), water_37h_k=float(w[1]), water_19v_k=float(w[2]))
    return out


def _bootstrap_with(tb: np.ndarray, tp: BootstrapTiePoints, tb22v_k: np.ndarray | None = None) -> np.ndarray:
    """Bootstrap SIC of TBs ``tb`` (..., 3: 37V, 37H, 19V, K); with ``tb22v_k`` the NASA Team weather filter too.

    The operational Bootstrap (NSIDC) applies the same gradient-ratio weather filter as NASA Team:
    C = 0 where GR(37V/19V) > 0.05 or GR(22V/19V) > 0.045.
    """
    c_a = bootstrap_plane_sic(tb[..., 0], tb[..., 1], tp.water_37v_k, tp.water_37h_k, tp.line_vh37)
    c_b = bootstrap_plane_sic(tb[..., 0], tb[..., 2], tp.water_37v_k, tp.water_19v_k, tp.line_v1937)
    c = np.clip(np.where(c_a > BOOTSTRAP_AD_FRACTION, c_a, c_b), 0.0, 1.0)
    if tb22v_k is not None:
        wet = (gradient_ratio(tb[..., 0], tb[..., 2]) > NT_GR3719_MAX) | (
            gradient_ratio(tb22v_k, tb[..., 2]) > NT_GR2219_MAX
        )
        c = np.where(wet, 0.0, c)
    return c


def _per_day_hemisphere(tb, north, fn):
    """Apply ``fn(tb_cells (ncell, 3), is_north) -> sic (ncell,)`` per step and hemisphere; (ngrid, nstep)."""
    out = np.full(tb.shape[:2], np.nan)
    for t in range(tb.shape[1]):
        for hemi in (True, False):
            sel = north == hemi
            if sel.any():
                cells = tb[sel, t, :]
                ok = np.all(np.isfinite(cells), axis=1)
                if ok.any():
                    res = np.full(cells.shape[0], np.nan)
                    res[ok] = fn(cells[ok], hemi)
                    out[sel, t] = res
    return out


def fair_classic_maps(obs: Observations) -> dict[str, np.ndarray]:
    """The fair classic SIC maps (ngrid, nstep) of :data:`FAIR_ALGORITHMS`, sensor means (NaN: no data)."""
    names = obs.basis.channel_index
    north = grid_hemisphere(obs.lat, obs.ngrid)
    stacks: dict[str, list[np.ndarray]] = {a: [] for a in FAIR_ALGORITHMS}
    for s, sname in enumerate(obs.basis.sensor_names):
        present = obs.basis.present[s]
        if sname not in TIE_POINT_SENSOR or not all(
            c in names and present[names[c]] for c in ("19v", "19h", "37v", "37h")
        ):
            continue
        extra = ("24v",) if "24v" in names and present[names["24v"]] else ()
        nt = grid_daily_mean_tb(obs, ("19v", "19h", "37v") + extra, s)

        def nt_sic(cells, tp):
            v22 = cells[:, 3] if cells.shape[1] > 3 else None  # the second weather filter, as classic_sic_maps
            return nasa_team(cells[:, 0], cells[:, 1], cells[:, 2], tp, tb22v_k=v22).total

        def hemi_nt(cells, hemi, sname=sname):
            return nt_sic(cells, nasa_team_hemisphere_tie_points(sname, hemi))

        def dyn_nt(cells, hemi, sname=sname):
            tp = nasa_team_hemisphere_tie_points(sname, hemi)
            for _ in range(FIT_PASSES):
                tp = fit_nasa_team_tie_points(cells[:, :3], tp)
            return nt_sic(cells, tp)

        bt = grid_daily_mean_tb(obs, ("37v", "37h", "19v") + extra, s)

        def reg_bt(cells, hemi, sname=sname):
            first = BOOTSTRAP_TIE_POINTS[(TIE_POINT_SENSOR[sname], "north" if hemi else "south")]
            tp = fit_bootstrap_tie_points(cells[:, :3], first)
            return _bootstrap_with(cells[:, :3], tp, cells[:, 3] if cells.shape[1] > 3 else None)

        stacks["nasa_team_hemisphere"].append(_per_day_hemisphere(nt, north, hemi_nt))
        stacks["nasa_team_dynamic"].append(_per_day_hemisphere(nt, north, dyn_nt))
        stacks["bootstrap_regression"].append(_per_day_hemisphere(bt, north, reg_bt))
    out = {}
    for alg, stack in stacks.items():
        if not stack:
            continue
        arr = np.stack(stack)
        count = np.sum(np.isfinite(arr), axis=0)
        with np.errstate(invalid="ignore"):
            out[alg] = np.where(count > 0, np.nansum(arr, axis=0) / np.maximum(count, 1), np.nan).astype(np.float32)
    return out
