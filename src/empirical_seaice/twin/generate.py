"""Generate a synthetic twin: truth, simulated observations (layout C), backgrounds.

:func:`generate_twin` is the one entry point (the ``seaice-twin`` command
calls it). It streams: for each day it computes the daily truth on the grid,
samples every sensor, evaluates the truth at each observation (time-dependent
temperature and snow wetness), computes the true ice emissivity (SMRT table),
the true and the modelled ocean emissivity, the clear and cloudy atmosphere,
simulates the TBs with :func:`empirical_seaice.model.physics.simulate_tb` in
float64 (the same equations the network uses), adds the true biases and
Gaussian noise, and appends to the files. Only the daily (ngrid, ndays)
truth maps are kept in memory.

SIC seen by an observation: the daily truth ``C[g(i), t(i)]`` of the
observation's 21 UTC window (no lag mixing, no intra-day change).

Output layout (under ``output``, written to ``output.partial`` and renamed
at the end so a half-written twin never looks complete):

- ``<sensor>/field_twin_<FIELD>.nc``: layout C (see :mod:`.writer`);
- ``ifs_seaice_initials_twin.nc``: ``SEAICE`` (ngrid, ndays + 1), background SIC
  (31-day running mean of the truth plus a smooth error, set to 0 below 0.1;
  column 0 is the day before the period);
- ``ifs_tsfc_twin_dailyx.nc``: ``TSFC`` (ngrid, ndays) daily-mean skin temperature, ``LON``, ``LAT``;
- ``truth/truth_state.nc``: ``SIC`` and the physical properties (ngrid, ndays),
  ``LON``, ``LAT``, ``X``, ``Y``, ``JULIAN_DAY`` (window centre of each step);
- ``truth/<sensor>/truth_<FIELD>.nc``: per observation (same rows as the
  sensor's files) ``EMIS_ICE``, ``EMIS_OCEAN``, ``TB_NOISEFREE`` (nobs, nchan)
  and ``SIC``, ``T_ICE``, ``T_AIR``, ``WETNESS``, ``TCWV``, ``LWP`` (nobs);
- ``truth/biases.nc``: ``BIAS_ICE_<sensor>``, ``BIAS_OCEAN_<sensor>`` (channels of the sensor);
- ``truth/config.json``: the configuration.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.sensors import POL_H, POL_V, load_catalogue
from empirical_seaice.twin.atmosphere import AngleAtmosphereTable, AtmosphereTable
from empirical_seaice.twin.grid import make_grid
from empirical_seaice.twin.ocean import T_FREEZE_SEAWATER_K, ocean_emissivity_model, ocean_emissivity_true
from empirical_seaice.twin.presets import TwinConfig
from empirical_seaice.twin.sampling import local_zenith_deg, sample_day, sampling_for
from empirical_seaice.twin.truth import TruthModel
from empirical_seaice.twin.writer import FieldSetWriter, layout_c_fields, write_grid_file

log = logging.getLogger(__name__)

FILE_PREFIX = "field_twin_"
TRUTH_PREFIX = "truth_"
SEAICE_FILE = "ifs_seaice_initials_twin.nc"
TSFC_FILE = "ifs_tsfc_twin_dailyx.nc"
TRUTH_DIR = "truth"
BACKGROUND_WINDOW_DAYS = 31

TRUTH_PER_OBS = {
    "EMIS_ICE": ("f4", "1", "true sea ice emissivity (SMRT table)", True),
    "EMIS_OCEAN": ("f4", "1", "true ocean emissivity (Fresnel + roughness + foam)", True),
    "TB_NOISEFREE": ("f4", "K", "simulated brightness temperature before noise (with bias)", True),
    "SIC": ("f4", "1", "true sea ice concentration seen by the observation", False),
    "T_ICE": ("f4", "K", "true snow/ice surface temperature at the observation time", False),
    "T_AIR": ("f4", "K", "true near-surface air temperature at the observation time", False),
    "WETNESS": ("f4", "1", "true snow liquid water volume fraction at the observation time", False),
    "TCWV": ("f4", "kg m-2", "total column water vapour", False),
    "LWP": ("f4", "kg m-2", "liquid water path of the cloudy column", False),
}

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


def julian_day_0utc(date: str) -> float:
    """Astronomical Julian day of ``date`` (YYYY-MM-DD) at 00 UTC."""
    d = _dt.date.fromisoformat(date)
    return 2451544.5 + (d - _dt.date(2000, 1, 1)).days


@dataclass
class TwinSummary:
    """What a twin run wrote."""

    output: Path
    ngrid: int
    nstep: int
    nobs: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def __str__(self) -> str:
        rows = [f"twin written to {self.output}: {self.ngrid} grid points, {self.nstep} days, {self.seconds:.1f} s"]
        rows += [f"  {s:10s} {n:10d} observations" for s, n in self.nobs.items()]
        rows.append(f"  {'total':10s} {sum(self.nobs.values()):10d} observations")
        return "\n".join(rows)


def true_biases(rng: np.random.Generator, sensor_names, catalogue=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """True per-channel TB biases (K), near each sensor's background within its uncertainty.

    ``b = b_bg + N(0, min(sigma_bg, s))`` with s = 1.5 K (ice) and 1.0 K (ocean);
    a sensor whose background error is <= 0.01 K (GMI, the anchor) gets exactly its background.
    """
    out = {}
    catalogue = catalogue or load_catalogue()
    for name in sensor_names:
        s = catalogue.sensors[name]
        n = len(s.file_channels)
        if s.bias_error_k <= 0.01:
            out[name] = (np.full(n, s.bias_ice_k), np.full(n, s.bias_ocean_k))
        else:
            out[name] = (
                s.bias_ice_k + rng.normal(0.0, min(s.bias_error_k, 1.5), n),
                s.bias_ocean_k + rng.normal(0.0, min(s.bias_error_k, 1.0), n),
            )
    return out


def _ice_table():
    """The shipped SMRT ice emissivity table (helper module :mod:`.ice_emissivity`)."""
    from empirical_seaice.twin.ice_emissivity import load_ice_table

    return load_ice_table()


def _store_realism_maps(extra_maps, fields, day, ndays) -> None:
    """Put one day's realism truth maps (name -> (values, units, long_name)) into ``extra_maps``."""
    for name, (values, units, long_name) in fields.items():
        if name not in extra_maps:
            extra_maps[name] = (np.zeros((values.size, ndays), np.float32), units, long_name)
        extra_maps[name][0][:, day] = values


def _make_realism(config: TwinConfig, truth, catalogue):
    """The run's :class:`~empirical_seaice.twin.realism.Realism`, or None for the ideal twin."""
    if not config.active_effects:
        return None
    from empirical_seaice.twin.realism import Realism

    return Realism(config.active_effects, truth, config.seed, config.sensors, catalogue)


def _ice_model(config: TwinConfig):
    """The ice emissivity function ``f(freq, pol, myi, snow, corr, t_ice, wet)`` of ``config.ice_model``."""
    if config.ice_model == "literature":
        from empirical_seaice.twin.ice_literature import literature_ice_emissivity

        return literature_ice_emissivity
    from empirical_seaice.twin.ice_emissivity import ice_emissivity

    table = _ice_table()
    return lambda *args: ice_emissivity(table, *args)


def _simulate(sic, emis_ice, t_skin, emis_ocean, tau, td, tu, tau_c, td_c, tu_c, cloud, b_ice, b_ocean):
    """TB' by :func:`empirical_seaice.model.physics.simulate_tb` in float64 (numpy in, numpy out)."""
    import torch

    from empirical_seaice.model.physics import simulate_tb

    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small element-wise work: thread start-up costs more than it saves
    try:
        with torch.no_grad():
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
    finally:
        torch.set_num_threads(threads)
    return tb.numpy()


def generate_twin(config: TwinConfig, output: Path, overwrite: bool = False) -> TwinSummary:
    """Generate the twin described by ``config`` into directory ``output``.

    Raises
    ------
    SeaIceError
        ``output`` exists and is not empty (and ``overwrite`` is False), or
        is a file.
    """
    t_start = time.perf_counter()
    output = Path(output)
    if output.exists():
        if not output.is_dir():
            raise SeaIceError(f"--output: {output} exists and is not a directory")
        if any(output.iterdir()) and not overwrite:
            raise SeaIceError(
                f"--output: directory {output} exists and is not empty; choose another or pass --overwrite"
            )
    partial = output.with_name(output.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)

    try:
        summary = _generate(config, output, partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    summary.seconds = time.perf_counter() - t_start
    log.info("%s", summary)
    return summary


def _generate(config: TwinConfig, output: Path, partial: Path) -> TwinSummary:
    rng = np.random.default_rng(config.seed)
    grid = make_grid(config.hemisphere, config.resolution_km, config.lat_limit_deg)
    jd0 = julian_day_0utc(config.start_date) - 0.5  # integer: noon of the day before; window 0 starts at jd0 + 0.375
    truth = TruthModel(grid, rng, config.seed, jd_ref=jd0)
    ice_model = _ice_model(config)
    catalogue = load_catalogue(config.sensor_catalogue)
    biases = true_biases(rng, config.sensors, catalogue)
    realism = _make_realism(config, truth, catalogue)
    global_attrs = {
        "title": "empirical_seaice synthetic twin",
        "source": "empirical_seaice.twin",
        "twin_preset": config.name,
        "twin_seed": config.seed,
        "twin_realism": ",".join(config.active_effects) or "ideal",
        "twin_ice_model": config.ice_model,
        "Conventions": "CF-1.8",
    }

    per_sensor: dict[str, dict[str, Any]] = {}
    for s_name in config.sensors:
        sensor = catalogue.sensors[s_name]
        chans = sensor.file_channels  # every channel of the files, surface-blind ones too
        info = [sensor.channel_info[c] for c in chans]
        freqs = np.array([c.freq_ghz for c in info])
        pols = np.array([c.pol for c in info])
        inc = np.array([c.incidence_deg for c in info])
        sigma = np.array([c.obs_error_k for c in info])
        angular = None
        if sensor.cross_track:  # every passband; the angle per observation
            from empirical_seaice.twin.ice_emissivity import load_angular_table

            atm: AngleAtmosphereTable | AtmosphereTable = AngleAtmosphereTable.build(
                chans, freqs, [c.passbands_ghz for c in info]
            )
            angular = load_angular_table() if config.ice_view_angle else None
        else:  # imagers: 183 +/- d channels as the two sidebands of their network frequency (as ever)
            atm = AtmosphereTable.build(chans, freqs, inc)
        per_sensor[s_name] = dict(
            sensor=sensor,
            sampling=sampling_for(sensor),
            freqs=freqs,
            pols=pols,
            inc=inc,
            sigma=sigma,
            atm=atm,
            angular=angular,
            data=FieldSetWriter(
                partial / s_name, FILE_PREFIX, layout_c_fields(), chans, {**global_attrs, "sensor": s_name}
            ),
            truth=FieldSetWriter(
                partial / TRUTH_DIR / s_name, TRUTH_PREFIX, TRUTH_PER_OBS, chans, {**global_attrs, "sensor": s_name}
            ),
            nobs=0,
        )

    daily_maps = {k: np.empty((grid.ngrid, config.days), dtype=np.float32) for k in TRUTH_DAILY}
    extra_maps: dict[str, tuple[np.ndarray, str, str]] = {}
    try:
        for d in range(config.days):
            window_start = jd0 + 0.375 + d
            daily = truth.daily(window_start + 0.5, d)
            for k in TRUTH_DAILY:
                daily_maps[k][:, d] = daily[k]
            if realism is not None:
                _store_realism_maps(extra_maps, realism.daily_fields(window_start + 0.5, daily), d, config.days)
            for s_name, ps in per_sensor.items():
                rows = _observe(
                    truth,
                    daily,
                    ps,
                    biases[s_name],
                    grid,
                    ps["sampling"],
                    window_start,
                    d,
                    config,
                    ice_model,
                    rng,
                    realism,
                )
                if d == 0 and (rows[0]["JULIAN_DAY"].size == 0 or rows[0]["JULIAN_DAY"][0] >= jd0 + 1.0):
                    raise RuntimeError(
                        f"twin: {s_name} has no observation before noon of day 0; the step origin would shift"
                    )
                ps["data"].append(rows[0])
                ps["truth"].append(rows[1])
                ps["nobs"] += rows[0]["JULIAN_DAY"].size
            log.info("twin day %d/%d done", d + 1, config.days)
    finally:
        for ps in per_sensor.values():
            ps["data"].close()
            ps["truth"].close()

    _write_backgrounds(partial, truth, grid, config, jd0, daily_maps, global_attrs)
    _write_truth(partial, grid, config, jd0, daily_maps, biases, global_attrs, extra_maps)
    if output.exists():
        shutil.rmtree(output)
    partial.rename(output)
    return TwinSummary(output, grid.ngrid, config.days, {s: ps["nobs"] for s, ps in per_sensor.items()})


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


def _observe(truth, daily, ps, bias, grid, sampling, window_start, day, config, ice_model, rng, realism=None):
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


def _write_backgrounds(out, truth, grid, config, jd0, daily_maps, global_attrs):
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
                background_sic(truth, jd0, nd),
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


def _write_truth(out, grid, config, jd0, daily_maps, biases, global_attrs, extra_maps=None):
    tdir = out / TRUTH_DIR
    tdir.mkdir(exist_ok=True)
    variables = {
        "LON": (("grid",), grid.lon.astype(np.float32), "degrees_east", "longitude"),
        "LAT": (("grid",), grid.lat.astype(np.float32), "degrees_north", "latitude"),
        "X": (("grid",), grid.x_km.astype(np.float32), "km", "EASE-Grid 2.0 x coordinate"),
        "Y": (("grid",), grid.y_km.astype(np.float32), "km", "EASE-Grid 2.0 y coordinate"),
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
