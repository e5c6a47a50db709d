"""The written twin: layout C read back by the project readers, physics consistency, determinism."""

import hashlib
import json
from pathlib import Path

import netCDF4
import numpy as np
import torch

from empirical_seaice.config import DataConfig
from empirical_seaice.io import read_training_data
from empirical_seaice.io.truth import read_truth
from empirical_seaice.model.physics import simulate_tb_mixed, surface_atmosphere_terms
from empirical_seaice.sensors import SENSORS
from empirical_seaice.twin import generate_twin, get_twin_preset
from empirical_seaice.twin.generate import FILE_PREFIX
from empirical_seaice.twin.writer import PER_CHANNEL_VARIABLES, PER_OBS_VARIABLES

SENSOR_NAMES = ("amsr2", "gmi", "ssmisf17")


def _read(out, sensors=SENSOR_NAMES, **kw):
    return read_training_data(DataConfig(data=Path(out), sensors=sensors, cache=False, **kw), nlag=1)


def _recompute(obs, truth):
    """TB' from the truth with the forward-model chain (docs/method.md), in the run's unified basis, through
    the observations' effective atmosphere (the reader's fold of the files' clear and cloudy columns)."""
    t = lambda a: torch.as_tensor(np.nan_to_num(np.asarray(a, dtype=np.float64)))
    s = np.asarray(obs.isensor)
    a_ice, a_ocean = surface_atmosphere_terms(
        t_skin_k=t(obs.t_skin_k), ocean_t_floor_k=271.35, tau_eff=t(obs.tau_eff), down_eff_k=t(obs.down_eff_k)
    )
    return simulate_tb_mixed(
        sic=t(truth.sic_obs),
        emis_ice=t(truth.emis_ice),
        emis_ocean=t(truth.emis_ocean),
        a_ice_k=a_ice,
        a_ocean_k=a_ocean,
        const_k=t(obs.const_k),
        bias_ice_k=t(truth.bias_ice_k[s]),
        bias_ocean_k=t(truth.bias_ocean_k[s]),
    ).numpy()


def test_layout_c_read_back_by_the_project_reader(tiny_twin):
    obs, bg = _read(tiny_twin)
    assert obs.nstep == 6 and bg.nlag == 1
    assert bg.sic.shape == (obs.ngrid, 7) and bg.t_skin_map_k.shape == (obs.ngrid, 6)
    counts = np.bincount(obs.isensor, minlength=3)
    # a few thousand observations per polar orbiter; GMI only sees 60-68N of this domain
    assert 2000 < counts[0] < 6000 and 2000 < counts[2] < 6000 and 200 < counts[1] < 2000
    # every observation's present channels are valid (nothing dropped as out of range)
    np.testing.assert_array_equal(obs.mask, obs.basis.present[obs.isensor])
    assert obs.tb_obs_k[obs.mask].min() > 50.0 and obs.tb_obs_k[obs.mask].max() < 320.0
    for s in range(3):
        assert np.all(np.diff(obs.istep[obs.isensor == s]) >= 0)
        assert set(np.unique(obs.istep[obs.isensor == s])) == set(range(6))


def test_gmi_files_have_no_observation_poleward_of_68(tiny_twin):
    obs, _ = _read(tiny_twin)
    gmi = obs.isensor == 1
    assert np.abs(obs.lat[obs.igrid[gmi]]).max() <= 68.0


def test_files_carry_cf_attributes_and_sensor_channel_order(tiny_twin):
    for name in SENSOR_NAMES:
        for var in list(PER_OBS_VARIABLES) + list(PER_CHANNEL_VARIABLES):
            with netCDF4.Dataset(tiny_twin / name / f"{FILE_PREFIX}{var}.nc") as ds:
                v = ds.variables[var]
                assert v.units and v.long_name
                if var in PER_CHANNEL_VARIABLES:
                    assert v.shape[1] == len(SENSORS[name].channels)
                    assert v.channels.split() == list(SENSORS[name].channels)
    with netCDF4.Dataset(tiny_twin / "ifs_seaice_initials_twin.nc") as ds:
        assert ds.variables["SEAICE"].units == "1"
    with netCDF4.Dataset(tiny_twin / "truth" / "truth_state.nc") as ds:
        assert all(getattr(v, "units", None) is not None for v in ds.variables.values())
        assert json.loads(ds.config)["name"] == "tiny"


def test_noise_free_observations_reproduced_by_the_physics(tiny_twin_noisefree):
    obs, _ = _read(tiny_twin_noisefree)
    truth = read_truth(tiny_twin_noisefree, obs)
    tb = _recompute(obs, truth)
    diff = np.abs(tb - obs.tb_obs_k)[obs.mask]
    assert diff.max() < 1e-3
    # the truth SIC seen by each observation is the daily map of its step
    np.testing.assert_array_equal(truth.sic_obs, truth.sic[obs.igrid, obs.istep])


def test_noisy_departures_match_the_catalogue_noise(tiny_twin):
    obs, _ = _read(tiny_twin)
    truth = read_truth(tiny_twin, obs)
    dep = np.where(obs.mask, obs.tb_obs_k - _recompute(obs, truth), np.nan)
    std = np.nanstd(dep, axis=0)
    np.testing.assert_allclose(std, obs.basis.noise_k, rtol=0.2)
    assert np.all(np.abs(np.nanmean(dep, axis=0)) < 0.25 * obs.basis.noise_k)


def test_ice_signal_and_imperfect_ocean_model(tiny_twin):
    obs, _ = _read(tiny_twin)
    truth = read_truth(tiny_twin, obs)
    c19h = obs.basis.channel_index["19h"]
    sel = obs.mask[:, c19h]
    ice = sel & (truth.sic_obs > 0.9)
    water = sel & (truth.sic_obs == 0.0)
    # 19h: ice is radiometrically much warmer than open water (~240 K vs ~150-190 K)
    assert obs.tb_obs_k[ice, c19h].mean() - obs.tb_obs_k[water, c19h].mean() > 40.0
    # EMIS_WATER misses part of the wind roughening: the error grows with wind
    err = truth.emis_ocean[water, c19h] - obs.emis_water[water, c19h]
    slope = np.polyfit(obs.wind_ms[water], err, 1)[0]
    assert 0.0005 < slope < 0.003


def test_background_is_not_the_truth_but_close(tiny_twin):
    obs, bg = _read(tiny_twin)
    truth = read_truth(tiny_twin, obs)
    b = bg.sic[:, 1:]
    rmse = np.sqrt(np.mean((b - truth.sic) ** 2))
    assert 0.02 < rmse < 0.2
    assert np.corrcoef(b.ravel(), truth.sic.ravel())[0, 1] > 0.9
    # the daily skin-temperature map is the daily-mean truth
    np.testing.assert_allclose(bg.t_skin_map_k, truth.properties["T_SKIN"], atol=1e-4)


def _digest(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def test_same_seed_identical_files_different_seed_different(tmp_path):
    cfg = get_twin_preset("tiny", days=2, sensors=("amsr2",))
    generate_twin(cfg, tmp_path / "a")
    generate_twin(cfg, tmp_path / "b")
    generate_twin(get_twin_preset("tiny", days=2, sensors=("amsr2",), seed=1), tmp_path / "c")
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert len(a) == 15 + 9 + 5 and a == b
    assert a["amsr2/field_twin_OBSVALUE.nc"] != c["amsr2/field_twin_OBSVALUE.nc"]
    assert a["truth/truth_state.nc"] != c["truth/truth_state.nc"]


def test_true_ice_emissivity_in_literature_ranges(tiny_twin):
    obs, _ = _read(tiny_twin)
    truth = read_truth(tiny_twin, obs)
    myi = truth.properties["MYI_FRACTION"][obs.igrid, obs.istep]
    ci = obs.basis.channel_index
    fyi = (truth.sic_obs > 0.5) & (myi < 0.1)
    old = (truth.sic_obs > 0.5) & (myi > 0.8)
    assert fyi.sum() > 200 and old.sum() > 50
    for name in ("10v", "19v", "37v"):
        e = truth.emis_ice[fyi, ci[name]]
        e = e[np.isfinite(e)]
        assert 0.88 < np.median(e) < 0.99  # first-year ice, winter, 10-37 GHz V
    # multi-year ice: lower emissivity than first-year ice, falling more from 10 to 37 GHz
    med = lambda sel, c: np.nanmedian(truth.emis_ice[sel, ci[c]])
    assert med(old, "37v") < med(fyi, "37v") - 0.05
    assert med(old, "10v") - med(old, "37v") > med(fyi, "10v") - med(fyi, "37v") + 0.01


def test_a_twin_of_both_hemispheres_is_the_northern_twin_then_a_southern_one(tmp_path):
    """``hemisphere="both"``: a global grid, the northern grid's points then the southern's. Its northern
    half is the northern twin of the same seed, bit for bit (truth maps, backgrounds, every observation
    and its truth row); its southern observations index the southern points, lie south, come in time
    order with the northern ones, and the physics reproduces them (noise-free) from their truth."""
    kw = dict(days=2, resolution_km=200.0, sensors=("amsr2", "gmi"), noise_scale=0.0)
    generate_twin(get_twin_preset("tiny", **kw), tmp_path / "north")
    generate_twin(get_twin_preset("tiny", hemisphere="both", **kw), tmp_path / "both")
    with netCDF4.Dataset(tmp_path / "north" / "truth" / "truth_state.nc") as n:
        north = {k: np.asarray(n[k][:]) for k in ("SIC", "T_SKIN", "SNOW_DEPTH", "LAT")}
    with netCDF4.Dataset(tmp_path / "both" / "truth" / "truth_state.nc") as b:
        both = {k: np.asarray(b[k][:]) for k in ("SIC", "T_SKIN", "SNOW_DEPTH", "LAT")}
    ng = len(north["LAT"])
    assert len(both["LAT"]) > 1.5 * ng and (both["LAT"][ng:] < -55).all()
    for k in north:
        np.testing.assert_array_equal(both[k][:ng], north[k], err_msg=k)
    for s in ("amsr2", "gmi"):
        fields = {}
        for twin in ("north", "both"):
            with netCDF4.Dataset(tmp_path / twin / s / f"{FILE_PREFIX}IGRID.nc") as g:
                igrid = np.asarray(g["IGRID"][:])
            with netCDF4.Dataset(tmp_path / twin / s / f"{FILE_PREFIX}OBSVALUE.nc") as o:
                tb = np.asarray(o["OBSVALUE"][:])
            with netCDF4.Dataset(tmp_path / twin / s / f"{FILE_PREFIX}JULIAN_DAY.nc") as j:
                jd = np.asarray(j["JULIAN_DAY"][:])
            fields[twin] = igrid, tb, jd
        igrid, tb, jd = fields["both"]
        northern = igrid < ng
        np.testing.assert_array_equal(igrid[northern], fields["north"][0])
        np.testing.assert_array_equal(tb[northern], fields["north"][1])
        assert (~northern).sum() > 100 and (np.diff(jd) >= 0).all()
    obs, background = _read(tmp_path / "both", sensors=("amsr2", "gmi"))
    assert background.ngrid == len(both["LAT"]) and (background.lat[obs.igrid[obs.igrid >= ng]] < 0).all()
    truth = read_truth(tmp_path / "both", obs)
    assert np.abs(_recompute(obs, truth) - obs.tb_obs_k)[obs.mask].max() < 1e-3
    np.testing.assert_array_equal(truth.sic_obs, truth.sic[obs.igrid, obs.istep])
