"""The known physics of the observation operator (docs/method.md, "The forward model").

Pure tensor functions: no state, no I/O, no branching on tensor values,
differentiable, broadcastable over any batch shape. Units are in the argument
names (``_k`` kelvin, ``_ms`` m/s) or stated in the docstring; emissivities,
transmittances, fractions and SIC are dimensionless.

The synthetic twin uses the same functions (in float64) to simulate its
observations from the truth, so the twin and the network share one set of
equations.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def lag_weighted_sic(sic_lags: Tensor, lag_weights: Tensor) -> Tensor:
    """SIC seen by an observation: the lag-weighted mean of the SIC map.

    ``c_i = sum_{l=0..nlag} alpha_l C[g_i, t_i + nlag - l]``   (docs/method.md step 1)

    Parameters
    ----------
    sic_lags : the SIC map values ``C[g_i, t_i + nlag - l]``, l = 0..nlag, (..., nlag + 1).
    lag_weights : ``alpha_l`` (nlag + 1,), summing to 1 in the presets (0.6, 0.4).

    Returns
    -------
    (...,) the SIC ``c_i``.
    """
    return sic_lags @ lag_weights


def normalised_temperature(t_skin_k: Tensor, t_ref_k: float = 273.0, t_scale_k: float = 30.0) -> Tensor:
    """Normalised skin temperature input of the emissivity model.

    ``x_T = max(t_ref - T_s, 0) / t_scale``   (docs/method.md step 2)

    Parameters
    ----------
    t_skin_k : skin temperature T_s (K).
    t_ref_k : reference temperature (K), 273 in the reference.
    t_scale_k : scale (K), 30 in the reference.
    """
    return torch.clamp(t_ref_k - t_skin_k, min=0.0) / t_scale_k


def ocean_emissivity(emis_water: Tensor, wind_ms: Tensor, wind_coef: Tensor) -> Tensor:
    """Ocean emissivity with the trainable wind correction.

    ``e_o[c] = e_w[c] + w_c * u``   (docs/method.md step 4)

    Parameters
    ----------
    emis_water : ocean emissivity e_w from the weather model, (..., nchan).
    wind_ms : 10 m wind speed u (m/s), (...,) broadcast against channels.
    wind_coef : wind correction w_c (per m/s), (nchan,).
    """
    return emis_water + wind_coef * wind_ms.unsqueeze(-1)


def ocean_temperature(t_skin_k: Tensor, floor_k: float | None) -> Tensor:
    """Ocean surface temperature T_o (K).

    ``T_o = max(T_s, floor)`` (v2, floor 271.35 K = freezing point of sea
    water); ``T_o = T_s`` when ``floor_k`` is None (v1). docs/method.md step 5.
    """
    if floor_k is None:
        return t_skin_k
    return torch.clamp(t_skin_k, min=floor_k)


def surface_mix(
    sic: Tensor, emis_ice: Tensor, t_ice_k: Tensor, emis_ocean: Tensor, t_ocean_k: Tensor
) -> tuple[Tensor, Tensor]:
    """Mix ice and ocean surface emission by the sea ice concentration.

    ``S = c e_ice T_i + (1 - c) e_o T_o``   (surface emission, K)
    ``e_mix = c e_ice + (1 - c) e_o``       (docs/method.md step 6)

    Parameters
    ----------
    sic : sea ice concentration c seen by the observation, (...,).
    emis_ice, emis_ocean : ice and ocean emissivity, (..., nchan).
    t_ice_k, t_ocean_k : ice and ocean surface temperature (K), (...,).

    Returns
    -------
    source_k : S (K), (..., nchan).
    emis_mix : e_mix, (..., nchan).
    """
    c = sic.unsqueeze(-1)
    source_k = c * emis_ice * t_ice_k.unsqueeze(-1) + (1.0 - c) * emis_ocean * t_ocean_k.unsqueeze(-1)
    emis_mix = c * emis_ice + (1.0 - c) * emis_ocean
    return source_k, emis_mix


def specular_rt(source_k: Tensor, emis_mix: Tensor, tau: Tensor, t_down_k: Tensor, t_up_k: Tensor) -> Tensor:
    """Top-of-atmosphere TB over a specular surface.

    ``TB = S tau + (1 - e_mix) tau T_down + T_up``   (K; docs/method.md step 7)

    Parameters
    ----------
    source_k : surface emission S (K).
    emis_mix : surface emissivity e_mix.
    tau : surface-to-space transmittance.
    t_down_k : downwelling TB at the surface (K).
    t_up_k : upwelling TB at the top of the atmosphere (K).
    """
    return source_k * tau + (1.0 - emis_mix) * tau * t_down_k + t_up_k


def all_sky(tb_clear_k: Tensor, tb_cloudy_k: Tensor, cloud_fraction: Tensor) -> Tensor:
    """Cloud-fraction mix of clear and cloudy TBs.

    ``TB = f_cld TB_cld + (1 - f_cld) TB_clr``   (K; docs/method.md step 8)

    ``cloud_fraction`` has shape (...,) and broadcasts over channels.
    """
    f = cloud_fraction.unsqueeze(-1)
    return f * tb_cloudy_k + (1.0 - f) * tb_clear_k


def bias_correction(tb_k: Tensor, sic: Tensor, bias_ice_k: Tensor, bias_ocean_k: Tensor) -> Tensor:
    """SIC-weighted TB bias correction.

    ``TB' = TB + c b_ice + (1 - c) b_ocean``   (K; docs/method.md step 9)

    Parameters
    ----------
    tb_k : all-sky TB (K), (..., nchan).
    sic : SIC c seen by the observation, (...,).
    bias_ice_k, bias_ocean_k : biases of the observation's sensor (K), (..., nchan).
    """
    c = sic.unsqueeze(-1)
    return tb_k + c * bias_ice_k + (1.0 - c) * bias_ocean_k


def simulate_tb(
    *,
    sic: Tensor,
    emis_ice: Tensor,
    t_skin_k: Tensor,
    emis_ocean: Tensor,
    ocean_t_floor_k: float | None,
    tau: Tensor,
    t_down_k: Tensor,
    t_up_k: Tensor,
    tau_cld: Tensor,
    t_down_cld_k: Tensor,
    t_up_cld_k: Tensor,
    cloud_fraction: Tensor,
    bias_ice_k: Tensor,
    bias_ocean_k: Tensor,
) -> Tensor:
    """The whole physical chain, docs/method.md steps 5-9: surface mix, clear and
    cloudy specular RT, all-sky mix and bias correction.

    ``T_i = T_s``; ``T_o = max(T_s, floor)``; ``S, e_mix`` from
    :func:`surface_mix`; ``TB_clr``/``TB_cld`` from :func:`specular_rt`;
    :func:`all_sky`; :func:`bias_correction`. Shapes: per-observation
    quantities (...,), per-channel quantities (..., nchan). Returns TB' (K).
    """
    t_ocean_k = ocean_temperature(t_skin_k, ocean_t_floor_k)
    source_k, emis_mix = surface_mix(sic, emis_ice, t_skin_k, emis_ocean, t_ocean_k)
    tb_clear = specular_rt(source_k, emis_mix, tau, t_down_k, t_up_k)
    tb_cloudy = specular_rt(source_k, emis_mix, tau_cld, t_down_cld_k, t_up_cld_k)
    return bias_correction(all_sky(tb_clear, tb_cloudy, cloud_fraction), sic, bias_ice_k, bias_ocean_k)


def effective_atmosphere(
    *,
    tau: Tensor,
    t_down_k: Tensor,
    t_up_k: Tensor,
    tau_cld: Tensor,
    t_down_cld_k: Tensor,
    t_up_cld_k: Tensor,
    cloud_fraction: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """The all-sky atmosphere as one effective specular atmosphere: ``tau*``, ``D*`` (K), ``K`` (K).

    The all-sky mix of the clear and cloudy specular RT equations is linear in
    the atmospheric terms, so with ``f`` the cloud fraction

    ``tau* = (1 - f) tau + f tau_cld``,
    ``D* = (1 - f) tau T_down + f tau_cld T_down_cld``,
    ``K = D* + (1 - f) T_up + f T_up_cld``,

    and ``TB = f TB_cld + (1 - f) TB_clr = S tau* - e_mix D* + K``.
    Shapes: ``cloud_fraction`` (...,), the others (..., nchan). Data only (no
    trainable input): the reader stores these three instead of the six clear and
    cloudy terms, in float32 as this function rounds them
    (:func:`empirical_seaice.all_sky.all_sky_fields`, tested bit for bit).
    """
    f = cloud_fraction.unsqueeze(-1)
    tau_eff = torch.lerp(tau, tau_cld, f)
    down_eff = torch.lerp(tau * t_down_k, tau_cld * t_down_cld_k, f)
    const = down_eff + torch.lerp(t_up_k, t_up_cld_k, f)
    return tau_eff, down_eff, const


def surface_atmosphere_terms(
    *, t_skin_k: Tensor, ocean_t_floor_k: float | None, tau_eff: Tensor, down_eff_k: Tensor
) -> tuple[Tensor, Tensor]:
    """``A_i = T_s tau* - D*`` and ``A_o = max(T_s, floor) tau* - D*`` (K).

    With them ``S tau* - e_mix D* = c e_ice A_i + (1 - c) e_o A_o`` (docs/method.md
    steps 5-8; ``tau*``, ``D*`` from :func:`effective_atmosphere`).
    ``t_skin_k`` (...,), the others (..., nchan).
    """
    a_ice = torch.addcmul(-down_eff_k, t_skin_k.unsqueeze(-1), tau_eff)
    a_ocean = torch.addcmul(-down_eff_k, ocean_temperature(t_skin_k, ocean_t_floor_k).unsqueeze(-1), tau_eff)
    return a_ice, a_ocean


def simulate_tb_mixed(
    *,
    sic: Tensor,
    emis_ice: Tensor,
    emis_ocean: Tensor,
    a_ice_k: Tensor,
    a_ocean_k: Tensor,
    const_k: Tensor,
    bias_ice_k: Tensor,
    bias_ocean_k: Tensor,
) -> Tensor:
    """TB' of :func:`simulate_tb` (K) from the terms of :func:`effective_atmosphere` and
    :func:`surface_atmosphere_terms`, as one SIC mix.

    ``TB_i = e_ice A_i + K + b_ice``, ``TB_o = e_o A_o + K + b_ocean`` (the
    all-sky, bias-corrected TB over pure ice and pure ocean, K), and

    ``TB' = c TB_i + (1 - c) TB_o``  (``torch.lerp``),

    which equals :func:`simulate_tb` (tested to 1e-11 K in float64).
    Shapes: ``sic`` (...,), the others (..., nchan).
    """
    tb_ice = torch.addcmul(const_k + bias_ice_k, emis_ice, a_ice_k)
    tb_ocean = torch.addcmul(const_k + bias_ocean_k, emis_ocean, a_ocean_k)
    return torch.lerp(tb_ocean, tb_ice, sic.unsqueeze(-1))


EARTH_RADIUS_KM = 6371.0
"""Mean Earth radius R (km) of the scan-angle geometry."""


def scan_angle_cos2(zenith_deg: Tensor, altitude_km: Tensor, earth_radius_km: float = EARTH_RADIUS_KM) -> Tensor:
    """``cos^2 a`` of a cross-track sounder's scan angle ``a`` from the local zenith angle.

    The data give the satellite zenith angle ``theta`` at the footprint
    (``ZENITH``, degrees: the angle between the local vertical and the line
    of sight). The polarisation of a cross-track scanner turns with the scan
    (nadir) angle ``a`` at the satellite, the angle between the line of sight
    and the satellite's nadir. In the triangle Earth centre - footprint -
    satellite (law of sines), with ``R`` the Earth radius and ``h`` the orbit
    altitude (km):

    ``sin a = R sin(theta) / (R + h)``,   ``cos^2 a = 1 - (R sin(theta) / (R + h))^2``.

    ``a < theta`` away from nadir (at ATMS's edge, theta = 64.9 deg, a = 52.7 deg
    for h = 824 km). Shapes broadcast; dimensionless result in [0, 1].
    """
    s = earth_radius_km * torch.sin(torch.deg2rad(zenith_deg)) / (earth_radius_km + altitude_km)
    return 1.0 - s * s


def polarisation_weight_v(pol: Tensor, cos2_scan: Tensor) -> Tensor:
    """Weight ``w_V`` of ``e_V`` in a channel's emissivity ``e = w_V e_V + (1 - w_V) e_H``.

    ``w_V = 1`` (V, code 0), ``0`` (H, code 1), ``cos^2 a`` (QV, code 2),
    ``sin^2 a = 1 - cos^2 a`` (QH, code 3), ``a`` the scan angle at the satellite
    (:func:`scan_angle_cos2`).

    This is the quasi-polarisation of cross-track sounders (AMSU-A, MHS,
    ATMS): the instrument's fixed polarisation vector is V at nadir and turns
    by the scan angle, so QV = ``cos^2 a e_V + sin^2 a e_H`` and QH =
    ``sin^2 a e_V + cos^2 a e_H`` (CRTM's QV/QH polarisation types; the angle
    is the nadir angle at the satellite, as in ARTS/atmlab's AMSU-A
    polarisation response and the cross-track extension of the reference v2
    code, which takes it from the scan position). At nadir QV = V and QH = H;
    at ``a = 90 deg`` they would swap. ``e_V``, ``e_H`` are the
    surface emissivities; this mixing adds no angle dependence of their own.

    Parameters
    ----------
    pol : int tensor (nchan,) of polarisation codes 0..3.
    cos2_scan : (...,) per-observation ``cos^2 a`` (ignored for V and H).

    Returns
    -------
    (..., nchan) weights in [0, 1].
    """
    c2 = cos2_scan.unsqueeze(-1)
    fixed = (pol == 0).to(c2.dtype)  # V: 1, H: 0
    return torch.where(pol == 2, c2, torch.where(pol == 3, 1.0 - c2, fixed.expand_as(c2 + fixed)))


def mix_polarisations(emis_v: Tensor, emis_h: Tensor, weight_v: Tensor) -> Tensor:
    """A channel's emissivity from the V and H emissivities: ``e = w_V e_V + (1 - w_V) e_H``.

    ``torch.lerp(e_H, e_V, w_V)``: exactly ``e_V`` at ``w_V = 1`` and ``e_H`` at
    ``w_V = 0``, so pure V and H channels are unchanged to the bit. Shapes
    broadcast; weights from :func:`polarisation_weight_v`.
    """
    return torch.lerp(emis_h, emis_v, weight_v)
