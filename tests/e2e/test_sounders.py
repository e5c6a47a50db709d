"""A cross-track sounder end to end on a small twin (AMSR2 + ATMS), and a user's catalogue file.

The twin: the ``tiny`` preset made smaller and denser (200 km grid north of
65 N, 4 days, half the swath points kept): 346 grid points, about 1,500 AMSR2
and 2,700 ATMS observations. v2 is trained on the first 3 days with AMSR2
alone and with AMSR2 + ATMS (same seed and flags as the other end-to-end
tests); the day left is retrieved with ATMS alone by the AMSR2-only model.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

from empirical_seaice.config import DataConfig, Preset, TrainingConfig, get_preset
from empirical_seaice.run import train as pipeline
from empirical_seaice.run.retrieve import run_retrieval
from empirical_seaice.sensors import build_channel_basis, load_catalogue

from .conftest import TRAIN_FLAGS, run_cli

NTRAIN = 3


def _rms_departure(stats, basis, channels) -> float:
    idx = [basis.channel_index[c] for c in channels]
    n = stats.count[idx].astype(np.float64)
    return float(np.sqrt(np.sum(n * (stats.std[idx] ** 2 + stats.mean[idx] ** 2)) / np.sum(n)))


def _sic_rmse_on_amsr2_cells(output, twin, tag: str) -> float:
    """SIC RMSE of run ``tag`` against the truth on the (grid, step) the AMSR2 observations see."""
    with xr.open_dataset(output / "tbobs_amsr2.nc") as t:
        key = np.unique(t["igrid"].values.astype(np.int64) * 1000 + t["istep"].values)
    g, s = key // 1000, key % 1000
    with xr.open_dataset(twin / "truth" / "truth_state.nc") as ds:
        truth = ds["SIC"].values[g, s].astype(np.float64)
    with xr.open_dataset(output / f"seaice_{tag}.nc") as ds:
        trained = ds["seaice"].values[g, s + 1].astype(np.float64)
    return float(np.sqrt(np.mean((trained - truth) ** 2)))


@pytest.fixture(scope="module")
def sounder_runs(tmp_path_factory) -> SimpleNamespace:
    from empirical_seaice.twin import generate_twin, get_twin_preset

    root = tmp_path_factory.mktemp("sounder")
    twin = root / "twin"
    cfg = get_twin_preset(
        "tiny", sensors=("amsr2", "atms"), resolution_km=200.0, lat_limit_deg=65.0, days=NTRAIN + 1, keep_fraction=0.5
    )
    generate_twin(cfg, twin)
    base = get_preset("v2")
    tc = TrainingConfig(nepochs=10, batch_size=128, learning_rate=1e-2, reproducible=True)
    runs = {}
    for sensors in (("amsr2",), ("amsr2", "atms")):
        preset = Preset("v2", replace(base.model, ice_emis_init=0.9), base.cost, sensors)
        runs[sensors] = pipeline.run(
            DataConfig(data=twin, sensors=sensors, nsteps=NTRAIN),
            preset,
            preset.cost,
            tc,
            output=root / "out",
            tag="_".join(sensors),
            progress=False,
        )
    return SimpleNamespace(twin=twin, output=root / "out", tc=tc, runs=runs)


def test_amsr2_plus_atms_fits_atms_and_keeps_the_sic_score(sounder_runs):
    both = sounder_runs.runs[("amsr2", "atms")]
    b = build_channel_basis(["amsr2", "atms"], load_catalogue())
    atms = b.sensor(1).channels
    before = _rms_departure(both.departures_before, b, atms)
    after = _rms_departure(both.departures_after, b, atms)
    assert after < 0.5 * before, (before, after)  # measured 13.3 -> 5.5 K (5.2 K with sigma_c = noise_k)
    assert both.truth.sic_rmse < 0.6 * both.truth.sic_rmse_background
    # on the cells AMSR2 sees, the SIC score of AMSR2 + ATMS is no worse than AMSR2 alone beyond the
    # seed-to-seed spread of such runs (docs/usage.md, "Sensors"); measured here 0.0492 alone, 0.0405 with ATMS
    # (0.0449 with the ATMS sigma_c = noise_k)
    out, twin = sounder_runs.output, sounder_runs.twin
    alone = _sic_rmse_on_amsr2_cells(out, twin, "amsr2")
    with_atms = _sic_rmse_on_amsr2_cells(out, twin, "amsr2_atms")
    assert with_atms < alone + 0.01, (alone, with_atms)


def test_the_twin_adds_noise_k_and_the_trained_cost_uses_obs_error_k(sounder_runs):
    """The catalogue's two errors of an ATMS channel: the twin's noise is ``noise_k`` (as before the field
    existed), the cost's sigma_c is ``obs_error_k`` = 3 ``noise_k`` (docs/sensors.md)."""
    from empirical_seaice.io import read_training_data
    from empirical_seaice.io.truth import read_truth

    twin = sounder_runs.twin
    obs, _ = read_training_data(DataConfig(data=twin, sensors=("atms",), nsteps=NTRAIN, cache=False), nlag=1)
    truth = read_truth(twin, obs)
    b = obs.basis
    noise = np.where(obs.mask, obs.tb_obs_k - truth.tb_noisefree, np.nan)
    assert np.all(b.obs_error_k == 3 * b.noise_k)
    np.testing.assert_allclose(np.nanstd(noise, axis=0), b.noise_k, rtol=0.1)  # ~2,000 observations a channel
    assert np.all(np.abs(np.nanmean(noise, axis=0)) < 0.2 * b.noise_k)
    # the trained run: sigma_c in its files and in its cost J_o = sum_c sum_i (d_ic / sigma_c)^2
    run = sounder_runs.runs[("amsr2", "atms")]
    both = build_channel_basis(["amsr2", "atms"], load_catalogue())
    with xr.open_dataset(sounder_runs.output / "tbobs_amsr2_atms.nc") as ds:
        np.testing.assert_array_equal(ds["obs_error"].values, both.obs_error_k)
    d = run.departures_after
    sum_sq = d.count * (d.mean**2 + d.std**2)
    jo = lambda sigma: float(np.sum(sum_sq / np.asarray(sigma, dtype=np.float64) ** 2))
    assert jo(both.obs_error_k) == pytest.approx(run.cost_after["obs"], rel=1e-6)
    assert jo(both.noise_k) > 2 * run.cost_after["obs"]  # what the twin's noise level would have given


def test_imager_model_retrieves_with_the_sounder_alone(sounder_runs):
    r = run_retrieval(
        DataConfig(data=sounder_runs.twin, stepstart=NTRAIN),
        sounder_runs.tc,
        sounder_runs.output,
        "amsr2",
        "ret_atms",
        sensors=("atms",),
        progress=False,
    )
    t = r.truth
    assert r.obs.basis.sensor_names == ("atms",) and r.obs.nstep == 1
    # measured: SIC RMSE background 0.111 -> retrieved with ATMS alone 0.080; ATMS departures 10.5 -> 8.2 K
    assert t.sic_rmse < 0.8 * t.sic_rmse_background, (t.sic_rmse_background, t.sic_rmse)
    chans = r.obs.basis.sensor(0).channels
    assert _rms_departure(r.departures_after, r.obs.basis, chans) < _rms_departure(
        r.departures_before, r.obs.basis, chans
    )


USER_CATALOGUE = """
format_version = 1

[channels]
"118qh" = { centre_ghz = 118.75, sidebands_ghz = [1.2], pol = "QH", obs_error_k = 3.0, surface_blind = true }

[sensors.mwri]
long_name = "an imager added by a user file"
scan = "conical"
incidence_deg = 53.1
altitude_km = 836.0
channels = ["10v", "10h", "19v", "19h", "24v", "24h", "37v", "37h", "89v", "89h"]
bias_ice_k = 0.0
bias_ocean_k = 0.0
bias_error_k = 4.0

[sensors.mws]
long_name = "a sounder added by a user file"
scan = "cross-track"
max_scan_angle_deg = 49.3
altitude_km = 830.0
channels = ["23.8qv", "31.4qv", "89qv", "118qh", "165.5qh", "183pm7qh"]
bias_ice_k = 0.0
bias_ocean_k = 0.0
bias_error_k = 4.0
"""


def test_user_file_adds_sensors_that_train_on_a_twin_written_for_them(tmp_path, capsys):
    from empirical_seaice.twin.cli import main as twin_main

    cat = tmp_path / "my_sensors.toml"
    cat.write_text(USER_CATALOGUE)
    twin = tmp_path / "twin"
    argv = ["--output", twin, "--preset", "tiny", "--days", "3", "--resolution-km", "200"]
    code = twin_main([str(a) for a in [*argv, "--sensors", "mwri", "mws", "--sensor-catalogue", cat]])
    assert code == 0, capsys.readouterr().err
    assert (twin / "mws" / "field_twin_ZENITH.nc").is_file()
    out = tmp_path / "out"
    # at 10 epochs (seed 0) the last step leaves the 23.8 GHz V emissivity of a few of these 1,371
    # observations just under the v2 floor (0.8, sigma 1e-5: anchor term 0 -> 1.7e6, ten times J before);
    # the health check judges the term by the shortfall it stands for (~4e-4 RMS) and lets the run pass
    r = run_cli(
        ["--data", twin, "--output", out, "--tag", "u", "--sensors", "mwri", "mws", "--sensor-catalogue", cat]
        + TRAIN_FLAGS
    )
    assert r.code == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if "SIC vs truth" in ln)
    bg, trained = (float(x) for x in line.split("RMSE background ")[1].split(";")[0].split(" -> trained "))
    assert trained < 0.7 * bg, line
    assert "118qh" not in r.stdout  # surface-blind: read past, not used
    with xr.open_dataset(out / "models_u.nc") as ds:
        saved = ds.attrs["setup_catalogue"]
    assert '"mws"' in saved and '"118qh"' in saved and "my_sensors" not in saved
    # without the file the sensor is unknown: one line naming the flag
    r = run_cli(["--data", twin, "--output", tmp_path / "out2", "--sensors", "mws"])
    assert r.code == 2 and "unknown sensor 'mws'" in r.stderr and "--sensor-catalogue" in r.stderr
