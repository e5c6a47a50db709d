"""The SMRT snow/ice column of the twin's emissivity tables and its emissivity by two sky runs.

One node of a table is one column (:func:`build_column`) run through SMRT
(:func:`make_smrt_model`) under two skies (:func:`kirchhoff_emissivity`), with an
explicit failure policy (:func:`node_emissivity`). The tables themselves are made by
:mod:`.smrt_table` (the main table) and :mod:`.smrt_angular` (the change with the
incidence angle); both use the ice types, frequencies and polarisations defined here.
SMRT (Picard et al. 2018, doi:10.5194/gmd-11-2763-2018) is imported lazily (optional
``smrt`` extra).

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

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: The column types, frequencies and polarisations of the tables. Changing them requires
#: regenerating the shipped files.
ICE_TYPES = ("firstyear", "multiyear")
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
    media: dict[str, Any]
    if ice_type == "firstyear":  # brine inclusions of the first-year ice's correlation length
        media = dict(corr_length=list(ice.size_m), brine_inclusion_shape="spheres")
    else:  # sticky air bubbles in multi-year ice
        media = dict(radius=list(ice.size_m), stickiness=MYI_STICKINESS, porosity=list(ice.porosity))
    column = make_ice_column(
        ice_type,
        list(ice.thickness_m),
        list(t_ice),
        ice.microstructure,
        salinity=salinity,
        add_water_substrate=True,
        **media,
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

    options: dict[str, Any] = {"rayleigh_jeans_approximation": True}
    if retry:
        options.update(n_max_stream=64, diagonalization_method="eig")
    return make_model("iba", "dort", rtsolver_options=options)


def two_sky_emissivity(medium, sensor, model, shape: tuple[int, ...]) -> np.ndarray:
    """Emissivity ``e = 1 - (TB_2 - TB_1) / (T_sky2 - T_sky1)`` (``shape`` + (2,), V and H) of a medium
    seen by an SMRT ``sensor`` under the isotropic skies of :data:`T_SKY_K` (0 K and 100 K): the
    two-run Kirchhoff method of the module docstring."""
    from smrt import make_atmosphere

    tbs = []
    for t_sky in T_SKY_K:
        atmos = make_atmosphere("simple_isotropic_atmosphere", tb_down=t_sky, tb_up=0.0, transmittance=1.0)
        res = model.run(sensor, atmos + medium, parallel_computation=False)
        tb_v = np.atleast_1d(np.asarray(res.TbV(), dtype=float)).reshape(shape)
        tb_h = np.atleast_1d(np.asarray(res.TbH(), dtype=float)).reshape(shape)
        tbs.append(np.stack([tb_v, tb_h], axis=-1))
    reflectivity = (tbs[1] - tbs[0]) / (T_SKY_K[1] - T_SKY_K[0])
    return 1.0 - reflectivity


def kirchhoff_emissivity(medium, frequency_ghz, model=None) -> np.ndarray:
    """Emissivity of a medium by the two-run Kirchhoff method at :data:`INCIDENCE_DEG`.

    Runs the medium under isotropic skies of ``T_SKY_K`` (0 K and 100 K) and
    returns ``e = 1 - (TB_2 - TB_1) / (T_sky2 - T_sky1)`` (:func:`two_sky_emissivity`).

    Parameters
    ----------
    medium : SMRT snowpack/ice column with a substrate.
    frequency_ghz : array of frequencies, GHz.
    model : SMRT model (default :func:`make_smrt_model`).

    Returns
    -------
    np.ndarray, shape (nfreq, 2): emissivity (V, H), 1.
    """
    from smrt import sensor_list

    model = make_smrt_model() if model is None else model
    freq_hz = np.atleast_1d(np.asarray(frequency_ghz, dtype=float)) * 1e9
    sensor = sensor_list.passive(freq_hz, INCIDENCE_DEG)
    return two_sky_emissivity(medium, sensor, model, (len(freq_hz),))


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


__all__ = [
    "ICE_TYPES",
    "FREQUENCY_GHZ",
    "POLARIZATIONS",
    "INCIDENCE_DEG",
    "T_SKY_K",
    "IceLayers",
    "FIRST_YEAR",
    "MULTI_YEAR",
    "column_temperatures",
    "build_column",
    "make_smrt_model",
    "two_sky_emissivity",
    "kirchhoff_emissivity",
    "node_emissivity",
    "setup_description",
]
