"""Open-water filter of the trained SIC: the classic weather filter as a product step.

Over open water, clouds, water vapour, wind and precipitation raise the TBs
in ways a forward model with imperfect weather-model inputs cannot fully
explain, and part of the misfit goes into false low concentrations. The
operational SIC products remove it with the NASA Team gradient-ratio filter
(Gloersen and Cavalieri 1986, JGR 91, 3913-3919; Cavalieri et al. 1995; the
OSI SAF and NSIDC products apply such a filter). This module applies it to
the trained map:

``C_f = 0 where (GR(37V/19V) > 0.05 or GR(22V/19V) > 0.045) and C < 0.3, else C``

with the gradient ratios of the daily-mean observed TBs of each grid point
and day (any sensor that has the channels flagging it is enough; 22V is
23.8 or 22.235 GHz, whichever the sensor has). Only concentrations below
0.3 (the range of the v2 false-ice prior) are removed: a cell the filter
flags but the method finds well inside the ice (a storm over the pack) is
kept.

Measured on the realistic twin (benchmarks/science.md): SIC RMSE north
freeze-up 0.0761 -> 0.0637, summer 0.0912 -> 0.0846, south 0.0953 ->
0.0791, AMSR2-only v1 0.0897 -> 0.0837 (threshold 0.3 chosen on the
freeze-up case). Written as ``seaice_filtered_TAG.nc`` (:func:`write_filtered_sic`: variable
``seaice`` (time, grid), the columns of ``seaice_TAG.nc`` as its times, lag days first, time the first
dimension and a coordinate variable as CDO reads a field); off with ``--no-open-water-filter``.

In a run the classic algorithms' pass gives the flags of the sensors it grids from its own daily
means (:func:`~.classic.classic_sic_maps` ``open_water``, the same arithmetic compiled), and
:func:`open_water_mask` grids only the others.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np

from empirical_seaice.products.classic import grid_daily_mean_tb
from empirical_seaice.products.sic_algorithms import NT_GR2219_MAX, NT_GR3719_MAX, gradient_ratio

MAX_FILTERED_SIC = 0.3
"""Concentrations below this are set to 0 where the filter flags open water."""


def open_water_flags(tb19v_k, tb37v_k, tb22v_k=None) -> np.ndarray:
    """``GR(37V/19V) > 0.05`` or ``GR(22V/19V) > 0.045`` (TBs in K; NaN gives False)."""
    with np.errstate(invalid="ignore"):
        wet = gradient_ratio(tb37v_k, tb19v_k) > NT_GR3719_MAX
        if tb22v_k is not None:
            wet = wet | (gradient_ratio(tb22v_k, tb19v_k) > NT_GR2219_MAX)
    return np.asarray(wet)


def open_water_mask(obs, known: np.ndarray | None = None, done: Collection[int] = ()) -> np.ndarray:
    """(ngrid, nstep) bool: the daily-mean TBs of some sensor flag open water (:func:`open_water_flags`).
    ``known``: the flags of the sensors ``done`` already (the classic algorithms' gridding gives them,
    :func:`~.classic.classic_sic_maps` ``open_water``): only the other sensors are gridded here."""
    names = obs.basis.channel_index
    mask = np.zeros((obs.ngrid, obs.nstep), dtype=bool) if known is None else np.array(known, dtype=bool)
    for s in range(len(obs.basis.sensor_names)):
        if s in done:
            continue
        present = obs.basis.present[s]
        if not all(c in names and present[names[c]] for c in ("19v", "37v")):
            continue
        extra = ("24v",) if "24v" in names and present[names["24v"]] else ()
        tb = grid_daily_mean_tb(obs, ("19v", "37v") + extra, s)
        mask |= open_water_flags(tb[..., 0], tb[..., 1], tb[..., 2] if extra else None)
    return mask


def filter_sic(sic: np.ndarray, mask: np.ndarray, max_sic: float = MAX_FILTERED_SIC) -> np.ndarray:
    """The SIC product of ``sic``: values below ``max_sic`` set to 0 where ``mask`` (same shapes), then every
    value within [0, 1]. The trained state is bounded by a soft penalty only (``sic_range``: -0.01 to 1.01
    on the demo twin, -0.06 to 1.05 for v1), which a sea ice area fraction product must not pass on: its
    users sum areas and draw the ice edge at 0 (the classic algorithms' maps are clipped too). The trained
    state itself, ``seaice_TAG.nc``, keeps its values."""
    sic = np.asarray(sic)
    return np.clip(np.where(mask & (sic < max_sic), np.zeros_like(sic), sic), 0.0, 1.0)


FILTER_NAME = (
    f"NASA Team gradient-ratio open-water filter (Gloersen and Cavalieri 1986; Cavalieri et al. 1995): "
    f"SIC below {MAX_FILTERED_SIC:g} set to 0 where the day's mean observed TBs of a sensor give "
    f"GR(37V/19V) > {NT_GR3719_MAX:g} or GR(22V/19V) > {NT_GR2219_MAX:g}"
)
"""The global attribute ``open_water_filter`` of ``seaice_filtered_TAG.nc``: the filter applied."""


def write_filtered_sic(
    path: Path,
    sic: np.ndarray,
    julian_day: np.ndarray,
    lon=None,
    lat=None,
    nlag: int = 0,
    step_days: float = 1.0,
    flags: np.ndarray | None = None,
) -> Path:
    """``seaice_filtered_TAG.nc``: the filtered SIC ``seaice`` (time, grid), time the first dimension and
    ``time(time)`` its coordinate variable (CDO reads it as a field; ``seaice_TAG.nc`` keeps the
    reference's (grid, lagstep)), and the filter's flags ``open_water_flag`` (time, grid; byte, CF flag
    values 0 and 1), so that the filter can be applied again to another SIC map of the run (an ensemble
    member's ``seaice_TAG.nc``: :func:`filter_sic`).

    Parameters
    ----------
    sic : float (ngrid, nstep + nlag), :func:`filter_sic` of the trained map; the first ``nlag`` columns
        are the lag days (not filtered: no observation of the period falls on them), the first times.
    julian_day : float64 (nstep + nlag,), centre of each column's window.
    lon, lat : (ngrid,) degrees, or None (written as NaN).
    step_days : length of a step (days), for ``time_bnds``.
    flags : bool (ngrid, nstep + nlag), the mask :func:`filter_sic` was given (False in the lag days),
        or None (no ``open_water_flag``).
    """
    import xarray as xr

    from empirical_seaice.io import cf
    from empirical_seaice.io.output_writer import _lonlat, _step_times, _var, time_major, write_dataset

    ngrid = np.shape(sic)[0]
    times = _step_times("time", julian_day, step_days)
    lag = f"; times 0..{nlag - 1} are the lag days before the period, not filtered" if nlag else ""
    ds = xr.Dataset(
        {
            "seaice": _var(
                ("time", "grid"),
                time_major(sic),
                "1",
                "sea ice concentration with the open-water filter",
                comment=(
                    f"the trained SIC of seaice_TAG.nc with the {FILTER_NAME}{lag}; then every value within [0, 1] "
                    "(the trained state of seaice_TAG.nc is bounded by a soft penalty only)"
                ),
                **cf.STANDARD["sic"],
            ),
            "julian_day": times.pop("julian_day"),
            **({} if flags is None else {"open_water_flag": _flag_variable(flags)}),
        },
        coords={**_lonlat(lon, lat, ngrid), **times},
        attrs={
            "title": "sea ice concentration trained by the empirical state method, with the open-water filter",
            "open_water_filter": FILTER_NAME,
            "nlag": nlag,
        },
    )
    if flags is not None:
        ds["seaice"].attrs["ancillary_variables"] = "open_water_flag"
    return write_dataset(ds, Path(path))


def _flag_variable(flags: np.ndarray):
    """``open_water_flag`` (time, grid) of the (grid, time) mask ``flags``: 1 where the filter's test
    flags open water, else 0 (CF ``flag_values`` and ``flag_meanings``; bytes, no fill)."""
    import xarray as xr

    from empirical_seaice.io.output_writer import time_major

    return xr.Variable(
        ("time", "grid"),
        time_major(flags, dtype=np.int8),
        attrs={
            "units": "1",
            "long_name": "open-water flag of the filter",
            "flag_values": np.array([0, 1], dtype=np.int8),
            "flag_meanings": "not_flagged open_water",
            "comment": (
                f"1 where the day's mean observed TBs of a sensor pass the open-water test of the {FILTER_NAME}; "
                "0 elsewhere, also where the cell has no observation that day and in the lag days. The filtered "
                f"SIC is the trained SIC set to 0 where flagged and below {MAX_FILTERED_SIC:g}, then clipped to [0, 1]"
            ),
        },
    )
