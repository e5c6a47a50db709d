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

Output layout (under ``output``, written to ``.NAME.partial-PID`` beside it and renamed
at the end so a half-written twin never looks complete; ``--overwrite`` replaces only a twin):

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

One day of one sensor is simulated by :mod:`.observe`; the background and truth
grid files are written by :mod:`.grid_files`.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.sensors import load_catalogue
from empirical_seaice.twin.atmosphere import AngleAtmosphereTable, AtmosphereTable
from empirical_seaice.twin.grid import PolarGrid, make_grid
from empirical_seaice.twin.grid_files import (
    SEAICE_FILE,
    TRUTH_DAILY,
    TRUTH_DIR,
    TSFC_FILE,
    background_sic,
    write_backgrounds,
    write_truth,
)
from empirical_seaice.twin.observe import observe_day
from empirical_seaice.twin.presets import TwinConfig
from empirical_seaice.twin.sampling import sampling_for
from empirical_seaice.twin.truth import TruthModel
from empirical_seaice.twin.writer import FieldSetWriter, layout_c_fields

log = logging.getLogger(__name__)

FILE_PREFIX = "field_twin_"
TRUTH_PREFIX = "truth_"

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


def generate_twin(config: TwinConfig, output: Path, overwrite: bool = False) -> TwinSummary:
    """Generate the twin described by ``config`` into directory ``output``.

    Raises
    ------
    SeaIceError
        ``output`` is the current directory or a file, or exists and is not empty (and ``overwrite`` is
        False, or it holds no twin: ``--overwrite`` replaces a twin, never another directory).
    """
    t_start = time.perf_counter()
    output = Path(output)
    _check_output(output, overwrite)
    partial = _partial_dir(output)

    try:
        summary = _generate(config, output, partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    summary.seconds = time.perf_counter() - t_start
    log.info("%s", summary)
    return summary


def _check_output(output: Path, overwrite: bool) -> None:
    """``output`` may be written: a new or empty directory, or (``overwrite``) a twin's."""
    if output.resolve() == Path.cwd().resolve() or not output.resolve().name:
        raise SeaIceError(f"--output: {output} is the current directory; give a directory to create, e.g. twin")
    if not output.exists():
        return
    if not output.is_dir():
        raise SeaIceError(f"--output: {output} exists and is not a directory")
    if not any(output.iterdir()):
        return
    if not overwrite:
        raise SeaIceError(f"--output: directory {output} exists and is not empty; choose another or pass --overwrite")
    if not (output / TRUTH_DIR / "config.json").is_file():
        raise SeaIceError(
            f"--overwrite: {output} holds no twin ({TRUTH_DIR}/config.json), so it is not emptied; "
            "choose another --output"
        )
    foreign = _not_the_twins(output)
    if foreign:
        listed = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise SeaIceError(
            f"--overwrite: {output} holds what the twin did not write ({listed}), which replacing the twin "
            "would delete; move it out, or choose another --output"
        )


def _not_the_twins(output: Path) -> list[str]:
    """The entries of the twin directory ``output`` that a twin does not write (a training run's outputs, the
    user's notes), which replacing the twin would delete: what is not its sensors' directories of
    ``field_twin_*.nc`` files (the sensors of its ``truth/config.json``), its two background files or
    ``truth/``. Sorted, relative to ``output``."""
    try:
        sensors = set(json.loads((output / TRUTH_DIR / "config.json").read_text()).get("sensors", ()))
    except (OSError, ValueError, AttributeError):  # unreadable: every sensor directory counts as foreign
        sensors = set()
    foreign: list[str] = []
    for p in sorted(output.iterdir()):
        if p.is_symlink() or not (p.is_dir() or p.is_file()):
            foreign.append(p.name)
        elif p.is_dir() and p.name == TRUTH_DIR:
            continue
        elif p.is_file() and p.name in (SEAICE_FILE, TSFC_FILE):
            continue
        elif p.is_dir() and p.name in sensors:
            foreign += [
                f"{p.name}/{q.name}"
                for q in sorted(p.iterdir())
                if q.is_symlink() or not q.is_file() or not (q.name.startswith(FILE_PREFIX) and q.name.endswith(".nc"))
            ]
        else:
            foreign.append(p.name)
    return foreign


def _partial_dir(output: Path) -> Path:
    """The directory the twin is written to before it is renamed ``output``: ``.NAME.partial-PID`` beside
    it (never a directory of the user's: ``NAME.partial`` was removed whatever it held); those of this
    name whose process is gone (killed runs) are removed."""
    from empirical_seaice.io.transaction import pid_alive

    parent = output.resolve().parent
    prefix = f".{output.resolve().name}.partial-"
    for p in parent.glob(f"{prefix}*"):
        pid = p.name.removeprefix(prefix)
        if pid.isdigit() and (int(pid) == os.getpid() or not pid_alive(int(pid))):
            shutil.rmtree(p, ignore_errors=True)
    partial = parent / f"{prefix}{os.getpid()}"
    partial.mkdir(parents=True)
    return partial


SOUTH_SEED_OFFSET = 1_000_003
"""The southern half of a twin of both hemispheres draws from seed ``seed + SOUTH_SEED_OFFSET`` (its
truth, observations and realism effects; the northern half is the northern twin of ``seed``)."""


@dataclass
class _Hemisphere:
    """One hemisphere of a twin: its grid, truth, realism effects, generator and configuration (the
    south of a twin of both: its own seed), and ``offset``, its first point in the twin's grid."""

    config: TwinConfig
    grid: PolarGrid
    truth: TruthModel
    realism: Any
    rng: np.random.Generator
    offset: int


def _hemispheres(
    config: TwinConfig, jd0: float, catalogue
) -> tuple[list[_Hemisphere], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The twin's hemispheres, north first, and the sensors' true biases (one set for both: drawn by the
    first hemisphere's generator, where the one-hemisphere twin draws them)."""
    names = ("north", "south") if config.hemisphere == "both" else (config.hemisphere,)
    parts: list[_Hemisphere] = []
    biases: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    offset = 0
    for i, name in enumerate(names):
        seed = config.seed + (SOUTH_SEED_OFFSET if config.hemisphere == "both" and name == "south" else 0)
        own = replace(config, hemisphere=name, seed=seed)
        rng = np.random.default_rng(seed)
        grid = make_grid(name, config.resolution_km, config.lat_limit_deg)
        truth = TruthModel(grid, rng, seed, jd_ref=jd0)
        if i == 0:
            biases = true_biases(rng, config.sensors, catalogue)
        parts.append(_Hemisphere(own, grid, truth, _make_realism(own, truth, catalogue), rng, offset))
        offset += grid.ngrid
    return parts, biases


def _joined(grids: list[PolarGrid]) -> PolarGrid:
    """The twin's grid: one hemisphere's, or both one after the other (``hemisphere="both"``; ``x_km``,
    ``y_km`` each in its own hemisphere's plane)."""
    if len(grids) == 1:
        return grids[0]
    cat = lambda name: np.concatenate([getattr(g, name) for g in grids])  # noqa: E731
    return PolarGrid("both", grids[0].resolution_km, cat("x_km"), cat("y_km"), cat("lon"), cat("lat"))


def _merged_rows(rows: list[tuple[dict, dict]], parts: list[_Hemisphere]) -> tuple[dict, dict]:
    """One sensor's rows of a day from each hemisphere as one set: grid indices moved to the twin's
    grid, in time order (stable: one hemisphere's are as its own twin has them)."""
    if len(rows) == 1:
        return rows[0]
    data = {k: np.concatenate([r[0][k] for r in rows]) for k in rows[0][0]}
    for key in ("IGRID", "COMMON_IGRID"):
        data[key] = np.concatenate([r[0][key] + p.offset for r, p in zip(rows, parts, strict=True)]).astype(np.int32)
    order = np.argsort(data["JULIAN_DAY"], kind="stable")
    true = {k: np.concatenate([r[1][k] for r in rows])[order] for k in rows[0][1]}
    return {k: v[order] for k, v in data.items()}, true


def _sensor_state(s_name: str, catalogue, config: TwinConfig, partial: Path, global_attrs: dict) -> dict[str, Any]:
    """One sensor's channels, sampling, atmosphere table and writers (its files and its truth's)."""
    sensor = catalogue.sensors[s_name]
    chans = sensor.file_channels  # every channel of the files, surface-blind ones too
    info = [sensor.channel_info[c] for c in chans]
    freqs = np.array([c.freq_ghz for c in info])
    pols = np.array([c.pol for c in info])
    inc = np.array([c.incidence_deg for c in info])
    sigma = np.array([c.noise_k for c in info])  # the instrument's noise, not the cost's sigma_c
    angular = None
    if sensor.cross_track:  # every passband; the angle per observation
        from empirical_seaice.twin.ice_emissivity import load_angular_table

        atm: AngleAtmosphereTable | AtmosphereTable = AngleAtmosphereTable.build(
            chans, freqs, [c.passbands_ghz for c in info]
        )
        angular = load_angular_table() if config.ice_view_angle else None
    else:  # imagers: 183 +/- d channels as the two sidebands of their network frequency (as ever)
        atm = AtmosphereTable.build(chans, freqs, inc)
    return dict(
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


def _generate(config: TwinConfig, output: Path, partial: Path) -> TwinSummary:
    jd0 = julian_day_0utc(config.start_date) - 0.5  # integer: noon of the day before; window 0 starts at jd0 + 0.375
    ice_model = _ice_model(config)
    catalogue = load_catalogue(config.sensor_catalogue)
    parts, biases = _hemispheres(config, jd0, catalogue)
    grid = _joined([p.grid for p in parts])
    global_attrs = {
        "title": "empirical_seaice synthetic twin",
        "source": "empirical_seaice.twin",
        "twin_preset": config.name,
        "twin_seed": config.seed,
        "twin_realism": ",".join(config.active_effects) or "ideal",
        "twin_ice_model": config.ice_model,
        "Conventions": "CF-1.8",
    }

    per_sensor = {name: _sensor_state(name, catalogue, config, partial, global_attrs) for name in config.sensors}

    daily_maps = {k: np.empty((grid.ngrid, config.days), dtype=np.float32) for k in TRUTH_DAILY}
    extra_parts: list[dict[str, tuple[np.ndarray, str, str]]] = [{} for _ in parts]
    try:
        for d in range(config.days):
            window_start = jd0 + 0.375 + d
            days = []
            for part, extra in zip(parts, extra_parts, strict=True):
                daily = part.truth.daily(window_start + 0.5, d)
                for k in TRUTH_DAILY:
                    daily_maps[k][part.offset : part.offset + part.grid.ngrid, d] = daily[k]
                if part.realism is not None:
                    fields = part.realism.daily_fields(window_start + 0.5, daily)
                    _store_realism_maps(extra, fields, d, config.days)
                days.append(daily)
            for s_name, ps in per_sensor.items():
                rows = _merged_rows(
                    [
                        observe_day(
                            part.truth,
                            daily,
                            ps,
                            biases[s_name],
                            part.grid,
                            ps["sampling"],
                            window_start,
                            d,
                            part.config,
                            ice_model,
                            part.rng,
                            part.realism,
                        )
                        for part, daily in zip(parts, days, strict=True)
                    ],
                    parts,
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

    sic_background = np.concatenate([background_sic(p.truth, jd0, config.days) for p in parts])
    extra_maps = {
        name: (np.concatenate([e[name][0] for e in extra_parts]), units, long_name)
        for name, (_, units, long_name) in extra_parts[0].items()
    }
    write_backgrounds(partial, sic_background, grid, config, daily_maps, global_attrs)
    write_truth(partial, grid, config, jd0, daily_maps, biases, global_attrs, extra_maps)
    if output.exists():
        shutil.rmtree(output)
    partial.rename(output)
    return TwinSummary(output, grid.ngrid, config.days, {s: ps["nobs"] for s, ps in per_sensor.items()})
