"""``seaice_ensemble_TAG.nc``: the ensemble mean SIC and its spread per grid point and day.

Written by an ensemble of data assimilations (``seaice-training --ensemble N``,
:mod:`empirical_seaice.run.ensemble`). Variables (time, grid): the times of ``seaice_TAG.nc``'s
columns (the first ``nlag`` the lag days), time first and the coordinate variable ``time(time)``, as
CDO reads a field (``seaice_TAG.nc`` keeps the reference's (grid, lagstep)):

- ``seaice_mean``: the members' mean SIC, ``standard_name = sea_ice_area_fraction``,
  ``ancillary_variables = "seaice_spread"``;
- ``seaice_spread``: the stated uncertainty, ``standard_name = sea_ice_area_fraction standard_error``
  (the CF standard-name modifier): the members' standard deviation (``ddof = 1``) times the
  inflation factor (global attribute ``spread_inflation``; 1 without inflation);
- ``seaice_spread_raw`` (only when inflated): the members' standard deviation itself.

Global attributes: ``ensemble_size``, ``member_seeds``, ``sic_product`` (which SIC the members
contribute: ``seaice`` or ``seaice_filtered``), ``obs_perturbation``, ``sic_perturbation_std``,
``spread_inflation`` and ``inflation_method``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from empirical_seaice.io import cf
from empirical_seaice.io.output_writer import _lonlat, _step_times, _var, time_major, write_dataset

STEM = "seaice_ensemble"
"""File stem: ``seaice_ensemble_TAG.nc``."""


def ensemble_statistics(members: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (``ddof = 1``) over the members, float64 of one member's shape.

    ``mean = (1/N) sum_k C_k``, ``spread = sqrt(sum_k (C_k - mean)^2 / (N - 1))``.
    """
    stack = np.stack([np.asarray(m, dtype=np.float64) for m in members])
    if stack.shape[0] < 2:
        raise ValueError("an ensemble needs at least two members")
    return stack.mean(axis=0), stack.std(axis=0, ddof=1)


SPREAD_BOUND_NOTE = (
    "a value above 0.5, the largest standard deviation a fraction within [0, 1] can have (the inflated "
    "spread can pass it where the members disagree most), says that the data do not tell the concentration there"
)
"""The ``comment`` of ``seaice_spread``: how to read a value above 0.5 (the inflation multiplies the members'
spread, which is not bounded by the fraction's range)."""


def write_ensemble(
    path: Path,
    mean: np.ndarray,
    spread: np.ndarray,
    julian_day: np.ndarray,
    lon=None,
    lat=None,
    *,
    nlag: int = 0,
    step_days: float = 1.0,
    inflation: float = 1.0,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``seaice_ensemble_TAG.nc`` (module docstring).

    Parameters
    ----------
    mean, spread : float (ngrid, nstep + nlag), the members' mean and standard deviation (written
        transposed, (time, grid)).
    julian_day : float64 (nstep + nlag,), centre of each column's window.
    lon, lat : (ngrid,) degrees, or None.
    inflation : the factor of the stated spread (``seaice_spread = inflation x spread``).
    attrs : further global attributes (the ensemble's description).
    """
    ngrid = np.shape(mean)[0]
    mean = time_major(mean)
    raw = time_major(spread)
    times = _step_times("time", julian_day, step_days)
    lag = {"comment": f"times 0..{nlag - 1} are the lag days before the period"} if nlag else {}
    data = {
        "seaice_mean": _var(
            ("time", "grid"),
            mean,
            "1",
            "ensemble mean sea ice concentration",
            ancillary_variables="seaice_spread",
            **lag,
            **cf.STANDARD["sic"],
        ),
        "seaice_spread": _var(
            ("time", "grid"),
            (raw * np.float32(inflation)).astype(np.float32),
            "1",
            "uncertainty of the sea ice concentration: ensemble standard deviation"
            + (" x spread_inflation" if inflation != 1.0 else ""),
            standard_name="sea_ice_area_fraction standard_error",
            comment="; ".join([*lag.values(), SPREAD_BOUND_NOTE]),
        ),
    }
    if inflation != 1.0:
        data["seaice_spread_raw"] = _var(
            ("time", "grid"), raw, "1", "ensemble standard deviation of the sea ice concentration (not inflated)"
        )
    data["julian_day"] = times.pop("julian_day")
    ds = xr.Dataset(
        data,
        coords={**_lonlat(lon, lat, ngrid), **times},
        attrs={
            "title": "ensemble mean sea ice concentration and its uncertainty (ensemble of data assimilations)",
            "nlag": nlag,
            "spread_inflation": float(inflation),
            **dict(attrs or {}),
        },
    )
    return write_dataset(ds, path)


__all__ = ["STEM", "ensemble_statistics", "write_ensemble"]
