"""The grid files of a twin: the background SIC and skin-temperature files, as a weather model
would give them (the background SIC: a 31-day running mean of the truth plus a smooth error), and the
truth files (daily maps, the true biases, the configuration) under ``truth/``.
"""

from __future__ import annotations

import json

import numpy as np

from empirical_seaice.twin.truth import TruthModel
from empirical_seaice.twin.writer import write_grid_file

SEAICE_FILE = "ifs_seaice_initials_twin.nc"
TSFC_FILE = "ifs_tsfc_twin_dailyx.nc"
TRUTH_DIR = "truth"
BACKGROUND_WINDOW_DAYS = 31

TRUTH_DAILY = {
    "sic": ("SIC", "1", "true sea ice concentration"),
    "myi_fraction": ("MYI_FRACTION", "1", "multi-year fraction of the ice"),
    "snow_depth_m": ("SNOW_DEPTH", "m", "snow depth on the ice"),
    "corr_length_mm": ("CORR_LENGTH", "mm", "snow exponential correlation length"),
    "t_air_k": ("T_AIR", "K", "daily-mean near-surface air temperature"),
    "t_ice_k": ("T_ICE", "K", "daily-mean snow/ice surface temperature"),
    "wetness": ("WETNESS", "1", "daily-mean snow liquid water volume fraction"),
    "t_water_k": ("T_WATER", "K", "sea surface temperature"),
    "t_skin_k": ("T_SKIN", "K", "daily-mean skin temperature (tile average)"),
}
"""Daily truth fields: key of :meth:`TruthModel.daily` -> (variable, units, long_name)."""


def background_sic(truth: TruthModel, jd0: float, days: int) -> np.ndarray:
    """Weather-model-like background SIC (ngrid, days + 1); column 0 is the day before the period.

    ``C_b = clip(mean_31d(C) + (0.03 + 0.5 m (1 - m)) F_bg, 0, 1)``, ``m`` the
    31-day running mean of the truth, ``F_bg`` a smooth unit-variance error
    field; values below 0.1 are set to 0 (a weather model's ice threshold).
    """
    half = BACKGROUND_WINDOW_DAYS // 2
    ds = np.arange(-1 - half, days + half)
    sic = np.stack([truth.sic(jd0 + 0.875 + d, int(d)) for d in ds], axis=1).astype(np.float64)
    csum = np.concatenate([np.zeros((sic.shape[0], 1)), np.cumsum(sic, axis=1)], axis=1)
    w = BACKGROUND_WINDOW_DAYS
    mean = (csum[:, w:] - csum[:, :-w]) / w  # columns: days -1 .. days-1
    grid = truth.grid
    err = np.stack([truth.f_bg(grid.x_km, grid.y_km, jd0 + 0.875 + d - truth.jd_ref) for d in range(-1, days)], axis=1)
    bg = np.clip(mean + (0.03 + 0.5 * mean * (1.0 - mean)) * err, 0.0, 1.0)
    return np.where(bg < 0.1, 0.0, bg).astype(np.float32)


def write_backgrounds(out, sic_background, grid, config, daily_maps, global_attrs):
    """The background files: ``sic_background`` (ngrid, days + 1) (:func:`background_sic`) and the daily
    skin temperature of ``daily_maps``, with the grid's ``LON`` and ``LAT``."""
    ng, nd = grid.ngrid, config.days
    lonlat = {
        "LON": (("grid",), grid.lon.astype(np.float32), "degrees_east", "longitude"),
        "LAT": (("grid",), grid.lat.astype(np.float32), "degrees_north", "latitude"),
    }
    write_grid_file(
        out / SEAICE_FILE,
        {
            "SEAICE": (
                ("grid", "lagstep"),
                sic_background,
                "1",
                "background sea ice concentration (column 0: the day before the period)",
            ),
            **lonlat,
        },
        {"grid": ng, "lagstep": nd + 1},
        global_attrs,
    )
    write_grid_file(
        out / TSFC_FILE,
        {"TSFC": (("grid", "step"), daily_maps["t_skin_k"], "K", "daily-mean skin temperature"), **lonlat},
        {"grid": ng, "step": nd},
        global_attrs,
    )


def write_truth(out, grid, config, jd0, daily_maps, biases, global_attrs, extra_maps=None):
    tdir = out / TRUTH_DIR
    tdir.mkdir(exist_ok=True)
    variables = {
        "LON": (("grid",), grid.lon.astype(np.float32), "degrees_east", "longitude"),
        "LAT": (("grid",), grid.lat.astype(np.float32), "degrees_north", "latitude"),
        "X": (("grid",), grid.x_km.astype(np.float32), "km", "EASE-Grid 2.0 x coordinate (its hemisphere's plane)"),
        "Y": (("grid",), grid.y_km.astype(np.float32), "km", "EASE-Grid 2.0 y coordinate (its hemisphere's plane)"),
        "JULIAN_DAY": (
            ("step",),
            jd0 + 0.875 + np.arange(config.days, dtype=np.float64),
            "days",
            "Julian day of the centre of each step's 21 UTC window",
        ),
    }
    for key, (name, units, long_name) in TRUTH_DAILY.items():
        variables[name] = (("grid", "step"), daily_maps[key], units, long_name)
    for name, (values, units, long_name) in (extra_maps or {}).items():
        variables[name] = (("grid", "step"), values, units, long_name)
    attrs = {**global_attrs, "jd_origin": float(jd0), "config": json.dumps(config.to_dict(), sort_keys=True)}
    write_grid_file(tdir / "truth_state.nc", variables, {"grid": grid.ngrid, "step": config.days}, attrs)
    bias_vars, dims = {}, {}
    for s_name, (b_ice, b_ocean) in biases.items():
        dim = f"nchan_{s_name}"
        dims[dim] = b_ice.size
        bias_vars[f"BIAS_ICE_{s_name}"] = ((dim,), b_ice.astype(np.float32), "K", f"true {s_name} TB bias over ice")
        bias_vars[f"BIAS_OCEAN_{s_name}"] = (
            (dim,),
            b_ocean.astype(np.float32),
            "K",
            f"true {s_name} TB bias over ocean",
        )
    write_grid_file(tdir / "biases.nc", bias_vars, dims, attrs)
    (tdir / "config.json").write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")


__all__ = [
    "SEAICE_FILE",
    "TSFC_FILE",
    "TRUTH_DIR",
    "BACKGROUND_WINDOW_DAYS",
    "TRUTH_DAILY",
    "background_sic",
    "write_backgrounds",
    "write_truth",
]
