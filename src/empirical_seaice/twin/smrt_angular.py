"""The small angular table of the twin for the cross-track sounders, which see the ice at 0-65 deg:
the change of the emissivity with the incidence angle, ``e(theta) - e(53 deg)``, of 12 SMRT columns
(both ice types; snow 0, 0.10, 0.40 m; dry and 0.03 wet; correlation length 0.10 mm, 260 K) at 0, 20,
35, 45, 53, 60, 65 deg, shipped as ``twin/data/smrt_ice_emissivity_angular.nc``. Regenerate with::

    python -m empirical_seaice.twin.smrt_table --angular \\
        --output src/empirical_seaice/twin/data/smrt_ice_emissivity_angular.nc

The column and the two-sky emissivity are those of :mod:`.smrt_column`; the twin reads the table
with :mod:`empirical_seaice.twin.ice_emissivity`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from empirical_seaice.twin.smrt_column import (
    FREQUENCY_GHZ,
    ICE_TYPES,
    INCIDENCE_DEG,
    build_column,
    make_smrt_model,
    setup_description,
    two_sky_emissivity,
)

ANGULAR_SNOW_DEPTH_M = np.array([0.0, 0.10, 0.40])
ANGULAR_WETNESS = np.array([0.0, 0.03])
ANGULAR_INCIDENCE_DEG = np.array([0.0, 20.0, 35.0, 45.0, 53.0, 60.0, 65.0])
ANGULAR_CORR_LENGTH_MM = 0.10
ANGULAR_T_SURFACE_K = 260.0
ANGULAR_TABLE_FILENAME = "smrt_ice_emissivity_angular.nc"


def angular_emissivity(medium, model=None) -> np.ndarray:
    """Emissivity (nfreq, nangle, 2) of a medium at :data:`ANGULAR_INCIDENCE_DEG` (two-run Kirchhoff)."""
    from smrt import sensor_list

    model = make_smrt_model() if model is None else model
    sensor = sensor_list.passive(FREQUENCY_GHZ * 1e9, list(ANGULAR_INCIDENCE_DEG))
    e = two_sky_emissivity(medium, sensor, model, (len(FREQUENCY_GHZ), len(ANGULAR_INCIDENCE_DEG)))
    return np.clip(e, 0.0, 1.0)


def generate_angular_table(progress: bool = True) -> dict:
    """Run SMRT for the angular anomaly table.

    Axes: ice type, :data:`ANGULAR_SNOW_DEPTH_M`, :data:`ANGULAR_WETNESS`,
    frequency, :data:`ANGULAR_INCIDENCE_DEG`, polarisation; snow correlation
    length 0.10 mm and surface temperature 260 K (dry states). Values:
    ``e(theta) - e(53 deg)``. Wet bare ice is the melting-point bare column, as in the main table.
    """
    i53 = int(np.flatnonzero(ANGULAR_INCIDENCE_DEG == INCIDENCE_DEG)[0])
    shape = (len(ICE_TYPES), len(ANGULAR_SNOW_DEPTH_M), len(ANGULAR_WETNESS), len(FREQUENCY_GHZ))
    table = np.full((*shape, len(ANGULAR_INCIDENCE_DEG), 2), np.nan)
    t0 = time.perf_counter()
    n = 0
    for it, ice_type in enumerate(ICE_TYPES):
        for isd, depth in enumerate(ANGULAR_SNOW_DEPTH_M):
            for iw, wet in enumerate(ANGULAR_WETNESS):
                medium = build_column(ice_type, float(depth), ANGULAR_CORR_LENGTH_MM, ANGULAR_T_SURFACE_K, float(wet))
                e = angular_emissivity(medium)
                table[it, isd, iw] = e - e[:, i53 : i53 + 1, :]
                n += 1
                if progress:
                    print(
                        f"[{n}] {ice_type} snow={depth:.2f} m wet={wet:.2f} ({time.perf_counter() - t0:.0f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
    return {"anomaly": table, "runtime_s": time.perf_counter() - t0, "n_runs": n}


def write_angular_table(result: dict, path: str | Path) -> None:
    """Write the angular anomaly table (``anomaly`` with its axes) to NetCDF."""
    import netCDF4

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.title = "SMRT sea ice emissivity: change with incidence angle, for the twin's cross-track sounders"
        nc.generator = "python -m empirical_seaice.twin.smrt_table --angular"
        nc.setup = setup_description().replace("incidence 53 deg", "incidences 0-65 deg")
        nc.corr_length_mm = ANGULAR_CORR_LENGTH_MM
        nc.t_surface_k = ANGULAR_T_SURFACE_K
        nc.n_smrt_columns = int(result["n_runs"])
        nc.generation_time_s = float(round(result["runtime_s"], 1))
        nc.Conventions = "CF-1.8"
        axes = [
            ("ice_type", np.arange(len(ICE_TYPES), dtype="f8"), "1", "ice type: 0 first-year, 1 multi-year"),
            ("snow_depth", ANGULAR_SNOW_DEPTH_M, "m", "snow depth"),
            ("wetness", ANGULAR_WETNESS, "1", "snow liquid water volume fraction"),
            ("frequency", FREQUENCY_GHZ, "GHz", "frequency"),
            ("incidence", ANGULAR_INCIDENCE_DEG, "degree", "incidence (local zenith) angle"),
            ("polarization", np.arange(2, dtype="i4"), "1", "polarization: 0 V, 1 H"),
        ]
        for name, values, units, long_name in axes:
            nc.createDimension(name, len(values))
            var = nc.createVariable(name, "i4" if name == "polarization" else "f8", (name,))
            var[:] = values
            var.units = units
            var.long_name = long_name
        var = nc.createVariable("anomaly", "f4", tuple(a[0] for a in axes), zlib=True, complevel=4)
        var[:] = result["anomaly"].astype("f4")
        var.units = "1"
        var.long_name = "sea ice emissivity at the incidence minus that at 53 deg"


__all__ = [
    "ANGULAR_SNOW_DEPTH_M",
    "ANGULAR_WETNESS",
    "ANGULAR_INCIDENCE_DEG",
    "ANGULAR_CORR_LENGTH_MM",
    "ANGULAR_T_SURFACE_K",
    "ANGULAR_TABLE_FILENAME",
    "angular_emissivity",
    "generate_angular_table",
    "write_angular_table",
]
