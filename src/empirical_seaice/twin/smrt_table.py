"""Generate the SMRT sea ice emissivity lookup table used by the synthetic twin.

SMRT (the Snow Microwave Radiative Transfer model, Picard et al. 2018,
doi:10.5194/gmd-11-2763-2018) is too slow to call per observation (~0.1 s
per column and frequency) and does not vectorise, so it is run once here over
a grid of snow/ice states and the result is shipped as a small NetCDF file,
``twin/data/smrt_ice_emissivity.nc``. The twin evaluates it at run time with
:mod:`empirical_seaice.twin.ice_emissivity` (numpy only, no SMRT).

Regenerate with::

    python -m empirical_seaice.twin.smrt_table --output src/empirical_seaice/twin/data/smrt_ice_emissivity.nc

The cross-track sounders see the ice at 0-65 deg. A second, small table,
``twin/data/smrt_ice_emissivity_angular.nc``, holds the change of the
emissivity with the incidence angle, ``e(theta) - e(53 deg)``, for 12 columns
(both ice types; snow 0, 0.10, 0.40 m; dry and 0.03 wet; correlation length
0.10 mm, 260 K) at 0, 20, 35, 45, 53, 60, 65 deg::

    python -m empirical_seaice.twin.smrt_table --angular --output src/empirical_seaice/twin/data/smrt_ice_emissivity_angular.nc

(requires the optional ``smrt`` extra). It makes 270 SMRT column runs (each
12 frequencies x 2 skies), sequentially on one core (``OMP_NUM_THREADS=1``,
``parallel_computation=False``): about 1.5-4 s per column, 7-18 minutes in all
depending on the machine's load. The shipped file took 699 s on a shared
2-core machine (it was made with SMRT's default 2-process joblib runner
before the switch to sequential runs; re-running nodes sequentially
reproduces it to 3e-8, and a test checks one node).

Table axes
----------
- ``ice_type``: first-year (0) and multi-year (1) ice.
- ``snow_depth``: 0, 0.04, 0.10, 0.20, 0.40 m.
- ``corr_length``: snow exponential correlation length 0.05, 0.10, 0.15,
  0.20 mm (the range of published IBA-exponential values for Arctic snow on
  sea ice; above ~90 GHz the emissivity is very sensitive to it, ~0.10 mm is
  typical). Irrelevant (values repeated) where snow depth is 0.
- ``t_surface``: snow/ice surface (skin) temperature 235, 250, 260, 267, 271,
  273 K (dry states). This is the temperature the forward model of PHYSICS.md
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

The column
----------
From top to bottom: an isotropic sky, one snow layer, an ice column and a
semi-infinite sea water substrate. All interfaces are flat (Fresnel).

Snow (``smrt.make_snowpack``): one layer of thickness ``snow_depth``,
density 300 kg m-3, microstructure ``"exponential"`` with the tabulated
``corr_length``, liquid water ``volumetric_liquid_water = wetness``, salinity
0. Permittivity: SMRT default for snow, ``wetice_permittivity_bohren83``
(ice + water inclusions, Bohren & Huffman 1983; ice part
``ice_permittivity_maetzler06``, Maetzler 2006, doi:10.1007/3-540-37422-4)
in air, mixed by the IBA effective-permittivity (Polder-van Santen).

First-year ice (``smrt.make_ice_column("firstyear", ...)``): 1.5 m in four
layers of thickness 0.02, 0.08, 0.40, 1.00 m with salinity 16, 9, 5, 5 PSU
(brine-rich surface, C-shaped profile), no air porosity. Brine pockets are
the scatterers: spherical inclusions (``brine_inclusion_shape="spheres"``),
``"exponential"`` microstructure with correlation length 0.15 mm. Brine
volume ``brine_volume_cox83_lepparanta88`` (Cox & Weeks 1983,
doi:10.3189/S0022143000005418; Lepparanta & Manninen 1988), brine
permittivity ``brine_permittivity_stogryn85`` (Stogryn & Desargant 1985,
doi:10.1109/TAP.1985.1143566), background ``ice_permittivity_maetzler06``.

Multi-year ice (``smrt.make_ice_column("multiyear", ...)``): 3.0 m in four
layers of thickness 0.10, 0.30, 0.60, 2.00 m with salinity 0.5, 1, 2, 3 PSU
and air porosity 0.20, 0.20, 0.05, 0 (a bubbly, desalinated upper layer).
The scatterers are air bubbles in a saline-ice background
(``saline_ice_permittivity_pvs_mixing``: Polder-van Santen mixing of
``ice_permittivity_maetzler06`` and ``brine_permittivity_stogryn85``),
microstructure ``"sticky_hard_spheres"`` with radius 0.6, 1.5, 1.0, 1.0 mm
and stickiness 0.3. Small bubbles at the top and large ones below give the
strong, steady fall of emissivity from 6.9 to 89 GHz seen in MYI
observations. (Without snow, IBA makes bare MYI emissivity rise again above
~100 GHz as the bubbles leave the Rayleigh regime; with any snow cover the
snow dominates there.)

Water substrate: SMRT default for sea ice, flat interface to sea water at
271.35 K and 32 PSU (``seawater_permittivity_klein76``, Klein & Swift 1977,
doi:10.1109/JOE.1977.1145319).

Temperature profile (dry states): steady conduction through snow
(conductivity 0.3 W m-1 K-1) and ice (2.1 W m-1 K-1) between the surface
temperature ``t_surface`` and the ice bottom at 271.35 K. The snow layer
takes the mean of its top and bottom temperatures; each ice layer takes the
linear profile at its mid-depth, capped at 271.15 K (-2 degC: warmer, the
16 PSU surface layer would exceed 40 % brine volume, i.e. slush, beyond the
validity of the brine-volume formula and of IBA at fractional volumes > 0.5).
Wet states: snow at 273.15 K, the whole ice column at the cap, 271.15 K.

Model: ``make_model("iba", "dort")`` (Improved Born Approximation, Maetzler
1998, doi:10.1063/1.367496; Picard et al. 2022, doi:10.5194/tc-16-3861-2022,
and the DORT discrete-ordinate solver) with ``rayleigh_jeans_approximation=
True`` so that brightness temperatures are linear in radiance, as in the
project's forward model.

Emissivity: two-run Kirchhoff method
------------------------------------
The column is run twice under a non-emitting, fully transparent
atmosphere except for a known isotropic downwelling sky brightness,
``T_sky1 = 0 K`` and ``T_sky2 = 100 K`` (``make_atmosphere(
"simple_isotropic_atmosphere", tb_down=T_sky, tb_up=0, transmittance=1)``).
The upwelling brightness is ``TB = TB_emit + r T_sky`` with ``r`` the
(hemispherically integrated, for an isotropic sky) reflectivity, so

    r = (TB_2 - TB_1) / (T_sky2 - T_sky1),    e = 1 - r.

By Kirchhoff's law ``e + r = 1`` for an opaque column (the semi-infinite
water substrate makes it opaque), and this ``e`` is the one for which the
project's specular forward model ``TB = e T_s + (1 - e) T_down`` reproduces
the reflected sky exactly. Unlike ``TB / T``, it is valid for a
non-isothermal column; the emitted part then corresponds to an effective
temperature, not ``T_s``, which the twin deliberately ignores.
"""

from __future__ import annotations

import os

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

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

log = logging.getLogger(__name__)

#: Table axes. Changing them requires regenerating the shipped file.
ICE_TYPES = ("firstyear", "multiyear")
SNOW_DEPTH_M = np.array([0.0, 0.04, 0.10, 0.20, 0.40])
CORR_LENGTH_MM = np.array([0.05, 0.10, 0.15, 0.20])
T_SURFACE_K = np.array([235.0, 250.0, 260.0, 267.0, 271.0, 273.0])
WETNESS = np.array([0.0, 0.01, 0.03])
FREQUENCY_GHZ = np.array([6.925, 10.65, 18.7, 23.8, 36.5, 50.3, 89.0, 118.0, 150.0, 166.0, 183.31, 190.31])
POLARIZATIONS = ("V", "H")
INCIDENCE_DEG = 53.0

#: Two isotropic sky brightness temperatures for the Kirchhoff method (K).
T_SKY_K = (0.0, 100.0)

#: Physical constants of the column set-up.
T_WATER_K = 271.35  # freezing sea water at ~32 PSU (SMRT default substrate)
T_MELT_K = 273.15  # snow melting point
T_ICE_MAX_K = 271.15  # cap on ice layer temperatures (-2 degC)
K_SNOW = 0.3  # snow thermal conductivity, W m-1 K-1 (Sturm et al. 1997)
K_ICE = 2.1  # sea ice thermal conductivity, W m-1 K-1
SNOW_DENSITY = 300.0  # kg m-3


@dataclass(frozen=True)
class IceLayers:
    """Layer set-up of one ice type (top to bottom), SI units.

    Attributes
    ----------
    thickness_m : layer thicknesses, m.
    salinity_psu : bulk salinity per layer, PSU (g/kg).
    porosity : air volume fraction per layer (multi-year only), 1.
    microstructure : SMRT microstructure model name.
    size_m : correlation length (exponential) or sphere radius
        (sticky hard spheres) per layer, m.
    """

    thickness_m: tuple[float, ...]
    salinity_psu: tuple[float, ...]
    porosity: tuple[float, ...]
    microstructure: str
    size_m: tuple[float, ...]


FIRST_YEAR = IceLayers(
    thickness_m=(0.02, 0.08, 0.40, 1.00),
    salinity_psu=(16.0, 9.0, 5.0, 5.0),
    porosity=(0.0, 0.0, 0.0, 0.0),
    microstructure="exponential",
    size_m=(0.15e-3,) * 4,
)
MULTI_YEAR = IceLayers(
    thickness_m=(0.10, 0.30, 0.60, 2.00),
    salinity_psu=(0.5, 1.0, 2.0, 3.0),
    porosity=(0.20, 0.20, 0.05, 0.0),
    microstructure="sticky_hard_spheres",
    size_m=(0.6e-3, 1.5e-3, 1.0e-3, 1.0e-3),
)
MYI_STICKINESS = 0.3


def column_temperatures(ice: IceLayers, snow_depth_m: float, t_surface_k: float, wet: bool) -> tuple[float, np.ndarray]:
    """Snow layer and ice layer temperatures of a column.

    Parameters
    ----------
    ice : the ice layer set-up.
    snow_depth_m : snow depth, m.
    t_surface_k : snow (or bare ice) surface temperature, K. Ignored if ``wet``.
    wet : wet snow: snow at 273.15 K, ice at the cap ``T_ICE_MAX_K``.

    Returns
    -------
    (t_snow_k, t_ice_k) : snow layer temperature (K) and an array of ice layer
        temperatures (K), top to bottom.
    """
    th = np.asarray(ice.thickness_m)
    h_ice = th.sum()
    z_mid = np.cumsum(th) - th / 2
    if wet:
        t_snow = T_MELT_K
        t_top = T_ICE_MAX_K
    else:
        r_snow = snow_depth_m / K_SNOW
        r_ice = h_ice / K_ICE
        t_top = T_WATER_K - (T_WATER_K - t_surface_k) * r_ice / (r_ice + r_snow)
        t_snow = 0.5 * (t_surface_k + t_top)
    t_ice = t_top + (T_WATER_K - t_top) * z_mid / h_ice
    return float(t_snow), np.minimum(t_ice, T_ICE_MAX_K)


def build_column(ice_type: str, snow_depth_m: float, corr_length_mm: float, t_surface_k: float, wetness: float):
    """Build the SMRT medium (snow + ice + water substrate) for one table node.

    Parameters
    ----------
    ice_type : ``"firstyear"`` or ``"multiyear"``.
    snow_depth_m : snow depth, m (0: bare ice).
    corr_length_mm : snow exponential correlation length, mm.
    t_surface_k : surface temperature, K (dry states only).
    wetness : snow liquid water volume fraction, 1 (> 0: wet state at melting point).

    Returns
    -------
    smrt.core.snowpack.Snowpack
    """
    from smrt import PSU, make_ice_column, make_snowpack

    ice = {"firstyear": FIRST_YEAR, "multiyear": MULTI_YEAR}[ice_type]
    wet = wetness > 0
    t_snow, t_ice = column_temperatures(ice, snow_depth_m, t_surface_k, wet)
    salinity = [s * PSU for s in ice.salinity_psu]
    if ice_type == "firstyear":
        column = make_ice_column(
            "firstyear",
            list(ice.thickness_m),
            list(t_ice),
            ice.microstructure,
            salinity=salinity,
            corr_length=list(ice.size_m),
            brine_inclusion_shape="spheres",
            add_water_substrate=True,
        )
    else:
        column = make_ice_column(
            "multiyear",
            list(ice.thickness_m),
            list(t_ice),
            ice.microstructure,
            salinity=salinity,
            radius=list(ice.size_m),
            stickiness=MYI_STICKINESS,
            porosity=list(ice.porosity),
            add_water_substrate=True,
        )
    if snow_depth_m > 0:
        snow = make_snowpack(
            [snow_depth_m],
            "exponential",
            density=SNOW_DENSITY,
            temperature=t_snow,
            corr_length=corr_length_mm * 1e-3,
            volumetric_liquid_water=wetness,
        )
        column = snow + column
    return column


def make_smrt_model(retry: bool = False):
    """The SMRT model: IBA + DORT with the Rayleigh-Jeans approximation.

    Parameters
    ----------
    retry : use the more robust (slower) settings for a second attempt
        (64 streams, plain ``eig`` diagonalisation).
    """
    from smrt import make_model

    options = {"rayleigh_jeans_approximation": True}
    if retry:
        options.update(n_max_stream=64, diagonalization_method="eig")
    return make_model("iba", "dort", rtsolver_options=options)


def kirchhoff_emissivity(medium, frequency_ghz, model=None) -> np.ndarray:
    """Emissivity of a medium by the two-run Kirchhoff method.

    Runs the medium under isotropic skies of ``T_SKY_K`` (0 K and 100 K) and
    returns ``e = 1 - (TB_2 - TB_1) / (T_sky2 - T_sky1)``.

    Parameters
    ----------
    medium : SMRT snowpack/ice column with a substrate.
    frequency_ghz : array of frequencies, GHz.
    model : SMRT model (default :func:`make_smrt_model`).

    Returns
    -------
    np.ndarray, shape (nfreq, 2): emissivity (V, H), 1.
    """
    from smrt import make_atmosphere, sensor_list

    model = make_smrt_model() if model is None else model
    freq_hz = np.atleast_1d(np.asarray(frequency_ghz, dtype=float)) * 1e9
    sensor = sensor_list.passive(freq_hz, INCIDENCE_DEG)
    tbs = []
    for t_sky in T_SKY_K:
        atmos = make_atmosphere("simple_isotropic_atmosphere", tb_down=t_sky, tb_up=0.0, transmittance=1.0)
        res = model.run(sensor, atmos + medium, parallel_computation=False)
        tb_v = np.atleast_1d(np.asarray(res.TbV(), dtype=float)).reshape(len(freq_hz))
        tb_h = np.atleast_1d(np.asarray(res.TbH(), dtype=float)).reshape(len(freq_hz))
        tbs.append(np.stack([tb_v, tb_h], axis=-1))
    reflectivity = (tbs[1] - tbs[0]) / (T_SKY_K[1] - T_SKY_K[0])
    return 1.0 - reflectivity


def node_emissivity(
    ice_type: str,
    snow_depth_m: float,
    corr_length_mm: float,
    t_surface_k: float,
    wetness: float,
    frequency_ghz=FREQUENCY_GHZ,
) -> np.ndarray:
    """Emissivity (nfreq, 2) of one table node, with an explicit failure policy.

    A failed SMRT run or a non-finite / out-of-range result is logged and
    retried once with robust solver settings (:func:`make_smrt_model` with
    ``retry=True``); if that fails too, ``RuntimeError`` is raised so that no
    NaN is ever written to the table.
    """
    desc = f"{ice_type} snow={snow_depth_m} m corr={corr_length_mm} mm T={t_surface_k} K wetness={wetness}"
    medium = build_column(ice_type, snow_depth_m, corr_length_mm, t_surface_k, wetness)
    for retry in (False, True):
        try:
            e = kirchhoff_emissivity(medium, frequency_ghz, make_smrt_model(retry=retry))
        except Exception as exc:  # SMRT raises plain SMRTError/LinAlgError
            log.warning("SMRT failed for %s (retry=%s): %s", desc, retry, exc)
            continue
        if np.all(np.isfinite(e)) and np.all((e >= -1e-6) & (e <= 1 + 1e-6)):
            return np.clip(e, 0.0, 1.0)
        log.warning("SMRT gave non-finite or out-of-range emissivity for %s (retry=%s): %s", desc, retry, e)
    raise RuntimeError(f"SMRT emissivity failed for {desc} even with robust settings")


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
    # unique SMRT runs: bare ice is corr-length independent; wet states are
    # temperature independent; bare ice is wetness independent.
    jobs = []
    for it, ice_type in enumerate(ICE_TYPES):
        for isd, depth in enumerate(SNOW_DEPTH_M):
            corrs = [0] if depth == 0 else range(len(CORR_LENGTH_MM))
            for ic in corrs:
                for iw, wet in enumerate(WETNESS):
                    if wet > 0 and depth == 0:
                        # bare ice cannot be wet snow: use the melting-point column once
                        if iw > 1:
                            continue
                    temps = range(len(T_SURFACE_K)) if wet == 0 else [0]
                    for itt in temps:
                        jobs.append((it, isd, ic, itt, iw))
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


# ---------------------------------------------------------------- the angular table
# A second, small table for cross-track sounders: how the emissivity changes with the
# incidence angle, as the anomaly e(theta) - e(53 deg) of a few representative columns.
ANGULAR_SNOW_DEPTH_M = np.array([0.0, 0.10, 0.40])
ANGULAR_WETNESS = np.array([0.0, 0.03])
ANGULAR_INCIDENCE_DEG = np.array([0.0, 20.0, 35.0, 45.0, 53.0, 60.0, 65.0])
ANGULAR_CORR_LENGTH_MM = 0.10
ANGULAR_T_SURFACE_K = 260.0
ANGULAR_TABLE_FILENAME = "smrt_ice_emissivity_angular.nc"


def angular_emissivity(medium, model=None) -> np.ndarray:
    """Emissivity (nfreq, nangle, 2) of a medium at :data:`ANGULAR_INCIDENCE_DEG` (two-run Kirchhoff)."""
    from smrt import make_atmosphere, sensor_list

    model = make_smrt_model() if model is None else model
    sensor = sensor_list.passive(FREQUENCY_GHZ * 1e9, list(ANGULAR_INCIDENCE_DEG))
    tbs = []
    for t_sky in T_SKY_K:
        atmos = make_atmosphere("simple_isotropic_atmosphere", tb_down=t_sky, tb_up=0.0, transmittance=1.0)
        res = model.run(sensor, atmos + medium, parallel_computation=False)
        shape = (len(FREQUENCY_GHZ), len(ANGULAR_INCIDENCE_DEG))
        tb_v = np.asarray(res.TbV(), dtype=float).reshape(shape)
        tb_h = np.asarray(res.TbH(), dtype=float).reshape(shape)
        tbs.append(np.stack([tb_v, tb_h], axis=-1))
    return np.clip(1.0 - (tbs[1] - tbs[0]) / (T_SKY_K[1] - T_SKY_K[0]), 0.0, 1.0)


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


def setup_description() -> str:
    """One-paragraph description of the column set-up, stored in the file."""
    return (
        "Snow: 1 layer, density 300 kg m-3, exponential microstructure (corr_length axis), "
        "volumetric_liquid_water = wetness, wetice_permittivity_bohren83. "
        "FYI (make_ice_column 'firstyear'): thickness 0.02/0.08/0.40/1.00 m, salinity 16/9/5/5 PSU, "
        "brine spheres, exponential corr_length 0.15 mm, brine_volume_cox83_lepparanta88, "
        "brine_permittivity_stogryn85, ice_permittivity_maetzler06. "
        "MYI (make_ice_column 'multiyear'): thickness 0.10/0.30/0.60/2.00 m, salinity 0.5/1/2/3 PSU, "
        "porosity 0.20/0.20/0.05/0, sticky_hard_spheres radius 0.6/1.5/1.0/1.0 mm stickiness 0.3, "
        "saline_ice_permittivity_pvs_mixing. Substrate: sea water 271.35 K 32 PSU "
        "(seawater_permittivity_klein76), flat interfaces. Temperatures: steady conduction "
        "(k_snow 0.3, k_ice 2.1 W m-1 K-1) from t_surface to 271.35 K at the ice bottom, ice capped "
        "at 271.15 K; wet states: snow 273.15 K, ice 271.15 K. Model: iba + dort, "
        "rayleigh_jeans_approximation=True, incidence 53 deg. Emissivity by the two-run Kirchhoff "
        "method: isotropic skies of 0 K and 100 K, e = 1 - dTB/dT_sky."
    )


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
    if _NUMPY_PRELOADED and __name__ == "__main__":
        # numpy's thread pool was created before OMP_NUM_THREADS=1: start afresh
        cmd = [sys.executable, "-m", "empirical_seaice.twin.smrt_table", *sys.argv[1:]]
        os.execv(sys.executable, cmd)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.angular:
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
