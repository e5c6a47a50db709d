"""Generate the SMRT sea ice emissivity lookup table used by the synthetic twin.

SMRT (the Snow Microwave Radiative Transfer model, Picard et al. 2018,
doi:10.5194/gmd-11-2763-2018) is too slow to call per observation (~0.1 s
per column and frequency) and does not vectorise, so it is run once here over
a grid of snow/ice states and the result is shipped as a small NetCDF file,
``twin/data/smrt_ice_emissivity.nc``. The twin evaluates it at run time with
:mod:`empirical_seaice.twin.ice_emissivity` (numpy only, no SMRT).

Regenerate with::

    python -m empirical_seaice.twin.smrt_table --output src/empirical_seaice/twin/data/smrt_ice_emissivity.nc

(requires the optional ``smrt`` extra). It makes 270 SMRT column runs (each
12 frequencies x 2 skies), sequentially on one core (``OMP_NUM_THREADS=1``,
``parallel_computation=False``): about 1.5-4 s per column, 7-18 minutes in all
depending on the machine's load. The shipped file took 699 s on a shared
2-core machine (it was made with SMRT's default 2-process joblib runner
before the switch to sequential runs; re-running nodes sequentially
reproduces it to 3e-8, and a test checks one node).

The cross-track sounders' angular table is made by the same command with
``--angular`` (:mod:`.smrt_angular`).

Table axes
----------
- ``ice_type``: first-year (0) and multi-year (1) ice.
- ``snow_depth``: 0, 0.04, 0.10, 0.20, 0.40 m.
- ``corr_length``: snow exponential correlation length 0.05, 0.10, 0.15,
  0.20 mm (the range of published IBA-exponential values for Arctic snow on
  sea ice; above ~90 GHz the emissivity is very sensitive to it, ~0.10 mm is
  typical). Irrelevant (values repeated) where snow depth is 0.
- ``t_surface``: snow/ice surface (skin) temperature 235, 250, 260, 267, 271,
  273 K (dry states). This is the temperature the forward model of docs/method.md
  multiplies the emissivity by (``T_i = T_s``).
- ``wetness``: snow liquid water volume fraction 0, 0.01, 0.03. Wet states
  are at the melting point (snow at 273.15 K) whatever ``t_surface``, so
  their values are computed once and repeated along ``t_surface``. Without
  snow, wetness has no effect (values repeated).
- ``frequency``: 6.925, 10.65, 18.7, 23.8, 36.5, 50.3, 89, 118, 150, 166,
  183.31, 190.31 GHz (one node per region; 183.31 +/- 7 GHz sidebands lie
  between the last three nodes; interpolate in log-frequency).
- ``polarization``: V (0), H (1).

A single incidence angle of 53 deg is used for all sensors (AMSR2 55 deg,
GMI 52.8/49.2 deg, SSMIS 53.1 deg); the angular difference is a small
effect next to the spread of snow and ice states.

The snow/ice column, the SMRT set-up and the two-run Kirchhoff emissivity are
documented and built in :mod:`.smrt_column`.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import time
from pathlib import Path

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
if __name__ == "__main__":
    # Single-threaded numerics (shared cores; SMRT gains nothing from threads):
    # set before numpy/scipy/smrt create their thread pools. If the package
    # import already loaded numpy, main() re-executes the interpreter.
    _NUMPY_PRELOADED = "numpy" in __import__("sys").modules and any(os.environ.get(v) != "1" for v in _THREAD_VARS)
    for _var in _THREAD_VARS:
        os.environ[_var] = "1"
else:
    _NUMPY_PRELOADED = False

import numpy as np  # noqa: E402 - the thread variables above must be set before numpy loads

from empirical_seaice.twin.smrt_column import (  # noqa: E402 - after the thread variables, as numpy
    FREQUENCY_GHZ,
    ICE_TYPES,
    INCIDENCE_DEG,
    POLARIZATIONS,
    node_emissivity,
    setup_description,
)

log = logging.getLogger(__name__)

#: The axes of the main table besides ice type, frequency and polarisation (:mod:`.smrt_column`).
#: Changing them requires regenerating the shipped file.
SNOW_DEPTH_M = np.array([0.0, 0.04, 0.10, 0.20, 0.40])
CORR_LENGTH_MM = np.array([0.05, 0.10, 0.15, 0.20])
T_SURFACE_K = np.array([235.0, 250.0, 260.0, 267.0, 271.0, 273.0])
WETNESS = np.array([0.0, 0.01, 0.03])


def _table_jobs() -> list[tuple[int, int, int, int, int]]:
    """The unique SMRT runs ``(ice type, snow depth, corr length, temperature, wetness)`` indices:
    bare ice is corr-length independent; wet states are temperature independent; bare ice is
    wetness independent (it cannot be wet snow: the melting-point column is run once)."""
    jobs = []
    for it in range(len(ICE_TYPES)):
        for isd, depth in enumerate(SNOW_DEPTH_M):
            corrs = [0] if depth == 0 else range(len(CORR_LENGTH_MM))
            wets = [iw for iw, wet in enumerate(WETNESS) if not (wet > 0 and depth == 0 and iw > 1)]
            for ic in corrs:
                for iw in wets:
                    temps = range(len(T_SURFACE_K)) if WETNESS[iw] == 0 else [0]
                    jobs += [(it, isd, ic, itt, iw) for itt in temps]
    return jobs


def generate_table(progress: bool = True) -> dict:
    """Run SMRT over all table nodes.

    Returns
    -------
    dict with ``emissivity`` of shape (ice_type, snow_depth, corr_length,
    t_surface, wetness, frequency, polarization), float64, and the run time (s).
    """
    shape = (
        len(ICE_TYPES),
        len(SNOW_DEPTH_M),
        len(CORR_LENGTH_MM),
        len(T_SURFACE_K),
        len(WETNESS),
        len(FREQUENCY_GHZ),
        len(POLARIZATIONS),
    )
    table = np.full(shape, np.nan)
    jobs = _table_jobs()
    t0 = time.perf_counter()
    for n, (it, isd, ic, itt, iw) in enumerate(jobs):
        e = node_emissivity(
            ICE_TYPES[it],
            float(SNOW_DEPTH_M[isd]),
            float(CORR_LENGTH_MM[ic]),
            float(T_SURFACE_K[itt]),
            float(WETNESS[iw]),
        )
        depth0 = SNOW_DEPTH_M[isd] == 0
        sl_c = slice(None) if depth0 else ic
        sl_t = slice(None) if WETNESS[iw] > 0 else itt
        sl_w = slice(1, None) if (depth0 and WETNESS[iw] > 0) else iw
        table[it, isd, sl_c, sl_t, sl_w] = e
        if progress:
            el = time.perf_counter() - t0
            print(
                f"[{n + 1}/{len(jobs)}] {ICE_TYPES[it]} snow={SNOW_DEPTH_M[isd]:.2f} m "
                f"corr={CORR_LENGTH_MM[ic]:.2f} mm T={T_SURFACE_K[itt]:.0f} K "
                f"wet={WETNESS[iw]:.2f}: 19V={e[2, 0]:.3f} 89V={e[6, 0]:.3f} "
                f"({el:.0f} s, ~{el / (n + 1) * (len(jobs) - n - 1):.0f} s left)",
                file=sys.stderr,
                flush=True,
            )
    if not np.all(np.isfinite(table)):
        raise RuntimeError("table has unfilled nodes: bug in generate_table's job list")
    return {"emissivity": table, "runtime_s": time.perf_counter() - t0, "n_runs": len(jobs)}


def write_table(result: dict, path: str | Path) -> None:
    """Write the table to NetCDF with CF-style attributes.

    Parameters
    ----------
    result : output of :func:`generate_table`.
    path : output file path.
    """
    import netCDF4

    try:
        import smrt

        smrt_version = getattr(smrt, "__version__", None)
    except ImportError:  # pragma: no cover - generation needs smrt anyway
        smrt_version = None
    if smrt_version is None:
        from importlib.metadata import version

        smrt_version = version("smrt")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.title = "SMRT sea ice emissivity lookup table for the synthetic twin"
        nc.source = f"SMRT {smrt_version} (Picard et al. 2018, doi:10.5194/gmd-11-2763-2018), iba + dort"
        nc.smrt_version = str(smrt_version)
        nc.generator = "python -m empirical_seaice.twin.smrt_table"
        nc.setup = setup_description()
        nc.emissivity_method = "two-run Kirchhoff: e = 1 - (TB(T_sky=100 K) - TB(T_sky=0 K)) / 100 K, isotropic sky"
        nc.incidence_angle_deg = INCIDENCE_DEG
        nc.n_smrt_columns = int(result["n_runs"])
        nc.generation_time_s = float(round(result["runtime_s"], 1))
        nc.Conventions = "CF-1.8"

        axes = [
            (
                "ice_type",
                np.arange(len(ICE_TYPES), dtype="f4"),
                "1",
                "ice type: 0 first-year, 1 multi-year (linear mixing by MYI fraction)",
            ),
            ("snow_depth", SNOW_DEPTH_M, "m", "snow depth"),
            ("corr_length", CORR_LENGTH_MM, "mm", "snow exponential correlation length"),
            ("t_surface", T_SURFACE_K, "K", "snow/ice surface (skin) temperature (dry states)"),
            ("wetness", WETNESS, "1", "snow liquid water volume fraction"),
            ("frequency", FREQUENCY_GHZ, "GHz", "frequency"),
            ("polarization", np.arange(2, dtype="i4"), "1", "polarization: 0 V, 1 H"),
        ]
        for name, values, units, long_name in axes:
            nc.createDimension(name, len(values))
            dtype = "i4" if name == "polarization" else "f8"
            var = nc.createVariable(name, dtype, (name,))
            var[:] = values
            var.units = units
            var.long_name = long_name
        nc.variables["ice_type"].flag_meanings = "first_year multi_year"
        nc.variables["polarization"].flag_meanings = "V H"
        var = nc.createVariable("emissivity", "f4", tuple(a[0] for a in axes), zlib=True, complevel=4)
        var[:] = result["emissivity"].astype("f4")
        var.units = "1"
        var.long_name = "sea ice surface emissivity (snow-covered ice column)"
        var.comment = (
            "Wet states are at the melting point: repeated along t_surface. Bare ice (snow_depth 0) is "
            "repeated along corr_length and wetness>0 uses the melting-point bare-ice column."
        )


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m empirical_seaice.twin.smrt_table --output PATH``."""
    parser = argparse.ArgumentParser(description="Regenerate the SMRT sea ice emissivity table.")
    parser.add_argument("--output", required=True, help="output NetCDF path")
    parser.add_argument("--quiet", action="store_true", help="no per-run progress lines")
    parser.add_argument("--angular", action="store_true", help="the small angular table (cross-track sounders)")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("smrt") is None:
        parser.error("the SMRT model is not installed: pip install 'empirical-seaice[smrt]'")
    if _NUMPY_PRELOADED and __name__ == "__main__":
        # numpy's thread pool was created before OMP_NUM_THREADS=1: start afresh
        cmd = [sys.executable, "-m", "empirical_seaice.twin.smrt_table", *sys.argv[1:]]
        os.execv(sys.executable, cmd)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.angular:
        from empirical_seaice.twin.smrt_angular import generate_angular_table, write_angular_table

        result = generate_angular_table(progress=not args.quiet)
        write_angular_table(result, args.output)
        print(f"wrote {args.output}: {result['n_runs']} SMRT columns in {result['runtime_s']:.0f} s", file=sys.stderr)
        return 0
    result = generate_table(progress=not args.quiet)
    write_table(result, args.output)
    print(
        f"wrote {args.output}: {result['n_runs']} SMRT columns in {result['runtime_s']:.0f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
