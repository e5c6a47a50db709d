"""One sensor's observations of one day in the twin: the surface each observation sees (SIC,
temperatures, the true ice and ocean emissivity), the clear and cloudy atmosphere, the TBs simulated
with :func:`empirical_seaice.model.physics.simulate_tb` in float64 (the same equations the network
uses), the realistic effects (:mod:`.realism`: footprint mixing, precipitation, drifting biases, NWP
errors, emitting layer), noise, and the rows written to the data and truth files
(:func:`observe_day`).

Cross-track sensors see V and H at the local zenith angle, mixed by the scan angle.
"""

from __future__ import annotations

import numpy as np

from empirical_seaice.sensors import POL_H, POL_V
from empirical_seaice.twin.ocean import T_FREEZE_SEAWATER_K, ocean_emissivity_model, ocean_emissivity_true
from empirical_seaice.twin.sampling import local_zenith_deg, sample_day


def _simulate(sic, emis_ice, t_skin, emis_ocean, tau, td, tu, tau_c, td_c, tu_c, cloud, b_ice, b_ocean):
    """TB' by :func:`empirical_seaice.model.physics.simulate_tb` in float64 (numpy in, numpy out)."""
    import torch

    from empirical_seaice.model.physics import simulate_tb
    from empirical_seaice.threads import torch_threads

    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))
    with torch_threads(1), torch.no_grad():  # small element-wise work: thread start-up costs more than it saves
        tb = simulate_tb(
            sic=t(sic),
            emis_ice=t(emis_ice),
            t_skin_k=t(t_skin),
            emis_ocean=t(emis_ocean),
            ocean_t_floor_k=T_FREEZE_SEAWATER_K,
            tau=t(tau),
            t_down_k=t(td),
            t_up_k=t(tu),
            tau_cld=t(tau_c),
            t_down_cld_k=t(td_c),
            t_up_cld_k=t(tu_c),
            cloud_fraction=t(cloud),
            bias_ice_k=t(b_ice),
            bias_ocean_k=t(b_ocean),
        )
    return tb.numpy()


def _surface(truth, daily, ps, g, jd, wind, ice_model, realism, zenith=None):
    """The surface seen at grid points ``g`` and times ``jd``: SIC, temperatures, ice and ocean emissivity.

    Imagers: the channels' own polarisation and incidence. Cross-track sensors (``zenith`` given): V and
    H at the local zenith angle (the 53-deg ice emissivity plus the SMRT angular anomaly; the ocean's
    Fresnel terms), mixed by the scan angle (model.physics). ``realism`` (or None) mixes thin ice and melt
    ponds into the ice emissivity.
    """
    from empirical_seaice.twin.ice_emissivity import ice_emissivity_angle_anomaly

    n = g.size
    sic = daily["sic"][g]
    t_air = truth.t_air_k(g, jd)
    t_ice = truth.t_ice_k(t_air)
    wet = truth.wetness(g, jd, t_air)
    t_water = truth.t_water_k(g, jd)
    freqs, pols, inc = ps["freqs"], ps["pols"], ps["inc"]
    col = lambda a: np.asarray(a)[:, None]  # noqa: E731
    props = (col(daily["myi_fraction"][g]), col(daily["snow_depth_m"][g]), col(daily["corr_length_mm"][g]))

    def ice(p):
        e = ice_model(freqs[None, :], p, *props, col(t_ice), col(wet))
        e = np.broadcast_to(e, (n, freqs.size)).astype(np.float64)
        if realism is not None:
            pol = np.broadcast_to(p, (1, freqs.size))[0]
            angle_deg = inc if zenith is None else col(zenith)
            e = realism.ice_surface(e, g, jd, daily, freqs, pol, angle_deg, t_ice, truth.salinity_psu)
        return e

    def angle(p):
        if ps["angular"] is None:  # TwinConfig.ice_view_angle False: the 53-deg table at every angle
            return 0.0
        a = ice_emissivity_angle_anomaly(ps["angular"], freqs[None, :], p, *props[:2], col(wet), col(zenith))
        return np.broadcast_to(a, (n, freqs.size)).astype(np.float64)

    if zenith is None:
        emis_ice = ice(pols[None, :])
        emis_ocean = ocean_emissivity_true(freqs, pols, inc, col(t_water), truth.salinity_psu, col(wind))
    else:
        w_v = _polarisation_weight_v(pols, zenith, ps["sensor"].altitude_km)
        emis_ice = _mix(ice(POL_V) + angle(POL_V), ice(POL_H) + angle(POL_H), w_v).clip(0.0, 1.0)
        args = (col(zenith), col(t_water), truth.salinity_psu, col(wind))
        emis_ocean = _mix(ocean_emissivity_true(freqs, POL_V, *args), ocean_emissivity_true(freqs, POL_H, *args), w_v)
    return {
        "sic": sic,
        "t_air": t_air,
        "t_ice": t_ice,
        "wet": wet,
        "t_water": t_water,
        "t_skin": sic * t_ice + (1.0 - sic) * t_water,
        "emis_ice": emis_ice,
        "emis_ocean": emis_ocean,
    }


def _water_model(ps, truth, t_water, wind, zenith):
    """The imperfect ocean emissivity written as ``EMIS_WATER`` (n, nchan)."""
    freqs, pols, inc = ps["freqs"], ps["pols"], ps["inc"]
    col = lambda a: np.asarray(a)[:, None]  # noqa: E731
    if zenith is None:
        return ocean_emissivity_model(freqs, pols, inc, col(t_water), truth.salinity_psu, col(wind))
    w_v = _polarisation_weight_v(pols, zenith, ps["sensor"].altitude_km)
    args = (col(zenith), col(t_water), truth.salinity_psu, col(wind))
    return _mix(ocean_emissivity_model(freqs, POL_V, *args), ocean_emissivity_model(freqs, POL_H, *args), w_v)


def _atmosphere(ps, t_air, tcwv, lwp, zenith):
    """(tau, T_down, T_up, tau_cld, T_down_cld, T_up_cld) of the clear and cloudy columns (n, nchan)."""
    extra = () if zenith is None else (zenith,)
    return (*ps["atm"](t_air, tcwv, np.zeros(np.size(t_air)), *extra), *ps["atm"](t_air, tcwv, lwp, *extra))


def _surface_tb(surf, atm, weather, bias, realism, g, daily, freqs):
    """Noise-free TB (n, nchan) of one surface under the observation's atmosphere (+ emitting layer)."""
    tau, td, tu, tau_c, td_c, tu_c = atm
    b_ice, b_ocean = bias
    cloud = weather["cloud_fraction"]
    tb = _simulate(
        surf["sic"],
        surf["emis_ice"],
        surf["t_skin"],
        surf["emis_ocean"],
        tau,
        td,
        tu,
        tau_c,
        td_c,
        tu_c,
        cloud,
        b_ice[None, :],
        b_ocean[None, :],
    )
    if realism is not None and "emitting_layer" in realism:
        tau_eff = (1.0 - cloud[:, None]) * tau + cloud[:, None] * tau_c
        tb = tb + realism.emission_correction(g, daily, surf, freqs, tau_eff)
    return tb


def _footprint_tb(tb, truth, daily, ps, g, jd, weather, atm, bias, ice_model, realism, rng, zenith=None):
    """Mix the TBs of the 3x3 neighbouring cells into each observation by its footprint weights."""
    from empirical_seaice.twin.realism import LAND_EMISSIVITY

    nb, w = realism.footprint(g, ps["sensor"].name, ps["freqs"], rng)
    out = w[:, 4, :] * tb
    pol_h = ps["pols"][None, :] == 1
    for k in (0, 1, 2, 3, 5, 6, 7, 8):
        j = nb[:, k]
        same = j == -2  # outside the domain: the centre cell stands in
        land = j == -1
        gj = np.where(j >= 0, j, g)
        tb_k = _surface_tb(
            _surface(truth, daily, ps, gj, jd, weather["wind_ms"], ice_model, realism, zenith),
            atm,
            weather,
            bias,
            realism,
            gj,
            daily,
            ps["freqs"],
        )
        if land.any():
            n = int(land.sum())
            land_surf = {
                "sic": np.ones(n),
                "emis_ice": np.where(pol_h, LAND_EMISSIVITY[1], LAND_EMISSIVITY[0]) * np.ones((n, 1)),
                "t_skin": truth.t_air_k(g[land], jd[land]),
                "emis_ocean": np.ones((n, ps["freqs"].size)),
            }
            tb_land = _simulate(
                land_surf["sic"],
                land_surf["emis_ice"],
                land_surf["t_skin"],
                land_surf["emis_ocean"],
                *(a[land] for a in atm),
                weather["cloud_fraction"][land],
                bias[0][None, :],
                bias[1][None, :],
            )
            tb_k[land] = tb_land
        tb_k[same] = tb[same]
        out = out + w[:, k, :] * tb_k
    return out


def observe_day(truth, daily, ps, bias, grid, sampling, window_start, day, config, ice_model, rng, realism=None):
    """Simulate one sensor's observations of one day: (layout-C rows, truth rows).

    ``realism`` (a :class:`~empirical_seaice.twin.realism.Realism` or None for the ideal twin) adds
    its effects; they draw from their own generator, so the ideal part is unchanged.
    """
    sensor = ps["sensor"]
    if sensor.cross_track:
        g, jd, offset = sample_day(grid, sampling, window_start, day, config.keep_fraction, rng, with_offset=True)
        zenith = local_zenith_deg(offset, sensor.altitude_km)
    else:
        g, jd = sample_day(grid, sampling, window_start, day, config.keep_fraction, rng)
        zenith = None
    n = g.size
    t_air = truth.t_air_k(g, jd)
    weather = truth.weather(g, jd, t_air, rng)
    wind = weather["wind_ms"]
    freqs = ps["freqs"]
    surf = _surface(truth, daily, ps, g, jd, wind, ice_model, realism, zenith)
    sic, t_skin, emis_ice, emis_ocean = surf["sic"], surf["t_skin"], surf["emis_ice"], surf["emis_ocean"]
    emis_water = _water_model(ps, truth, surf["t_water"], wind, zenith)
    atm = _atmosphere(ps, t_air, weather["tcwv_kgm2"], weather["lwp_kgm2"], zenith)
    tb = _surface_tb(surf, atm, weather, bias, realism, g, daily, freqs)
    given = {"t_air_k": t_air, "t_skin_k": t_skin, **weather}
    if realism is not None:
        rrng = np.random.default_rng([config.seed, 15, day, config.sensors.index(sensor.name)])
        if "footprint" in realism:
            tb = _footprint_tb(tb, truth, daily, ps, g, jd, weather, atm, bias, ice_model, realism, rrng, zenith)
        if "precip_scattering" in realism:
            tb = tb + realism.precip_depression(g, jd, weather, freqs)
        if "drifting_bias" in realism:
            tb = tb + realism.bias_drift(sensor.name, jd, tb)
        if "nwp_errors" in realism:
            given = realism.weather_model(g, jd, t_air, weather, t_skin, sic, rrng)
            emis_water = _water_model(ps, truth, surf["t_water"], given["wind_ms"], zenith)
            atm = _atmosphere(ps, given["t_air_k"], given["tcwv_kgm2"], given["lwp_kgm2"], zenith)
    tau, td, tu, tau_c, td_c, tu_c = atm
    noise = rng.normal(0.0, 1.0, tb.shape) * ps["sigma"][None, :] * config.noise_scale
    f32 = lambda a: np.asarray(a, dtype=np.float32)
    data = {
        "JULIAN_DAY": jd,
        "IGRID": g.astype(np.int32),
        "COMMON_IGRID": g.astype(np.int32),
        "TSFC": f32(given["t_skin_k"]),
        "WINDSPEED10M": f32(given["wind_ms"]),
        "CLOUD_FRACTION": f32(given["cloud_fraction"]),
        "ZENITH": np.full(n, ps["inc"][0], dtype=np.float32) if zenith is None else f32(zenith),
        "OBSVALUE": f32(tb + noise),
        "EMIS_WATER": f32(emis_water),
        "TAUSFC": f32(tau),
        "TAUSFC_CLD": f32(tau_c),
        "TDOWN": f32(td),
        "TDOWN_CLD": f32(td_c),
        "TUP": f32(tu),
        "TUP_CLD": f32(tu_c),
    }
    true = {
        "EMIS_ICE": f32(emis_ice),
        "EMIS_OCEAN": f32(emis_ocean),
        "TB_NOISEFREE": f32(tb),
        "SIC": f32(sic),
        "T_ICE": f32(surf["t_ice"]),
        "T_AIR": f32(t_air),
        "WETNESS": f32(surf["wet"]),
        "TCWV": f32(weather["tcwv_kgm2"]),
        "LWP": f32(weather["lwp_kgm2"]),
    }
    return data, true


def _polarisation_weight_v(pols, zenith_deg, altitude_km) -> np.ndarray:
    """w_V (n, nchan) of :func:`empirical_seaice.model.physics.polarisation_weight_v` in float64."""
    import torch

    from empirical_seaice.model.physics import polarisation_weight_v, scan_angle_cos2

    z = torch.as_tensor(np.asarray(zenith_deg, dtype=np.float64))
    c2 = scan_angle_cos2(z, torch.tensor(float(altitude_km), dtype=torch.float64))
    return polarisation_weight_v(torch.as_tensor(np.asarray(pols, dtype=np.int64)), c2).numpy()


def _mix(e_v, e_h, w_v) -> np.ndarray:
    """``w_V e_V + (1 - w_V) e_H`` (:func:`empirical_seaice.model.physics.mix_polarisations`)."""
    w_v = np.asarray(w_v)
    return w_v * np.asarray(e_v) + (1.0 - w_v) * np.asarray(e_h)


__all__ = ["observe_day"]
