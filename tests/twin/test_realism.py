"""The realistic twin's effects, each with a physical check (not scores)."""

from __future__ import annotations

import json

import netCDF4
import numpy as np
import pytest

from empirical_seaice.errors import SeaIceError
from empirical_seaice.twin import generate_twin, get_twin_preset
from empirical_seaice.twin.cli import main as twin_main
from empirical_seaice.twin.grid import make_grid
from empirical_seaice.twin.ice_literature import literature_ice_emissivity
from empirical_seaice.twin.realism import (
    EFFECTS,
    NWP_ERRORS,
    Realism,
    effects_from,
    footprint_fwhm_km,
    footprint_weights_1d,
    interface_temperature_k,
    interface_weight,
    pond_emissivity,
    precip_depression_k,
    thin_ice_emissivity,
)
from empirical_seaice.twin.truth import TruthModel

FREQS = np.array([6.925, 10.65, 18.7, 23.8, 36.5, 89.0])


@pytest.fixture(scope="module")
def realism():
    grid = make_grid("north", 100.0, 60.0)
    truth = TruthModel(grid, np.random.default_rng(3), 3, jd_ref=2459100.0)
    return Realism(EFFECTS, truth, 3, ("amsr2", "gmi"))


# ------------------------------------------------------------------ footprint


def test_footprint_weights_sum_to_one_and_conserve_the_mean():
    rng = np.random.default_rng(0)
    u = rng.uniform(-50.0, 50.0, 200_000)
    sigma = footprint_fwhm_km("amsr2", FREQS) / 2.3548
    w = footprint_weights_1d(u[:, None], sigma[None, :], 100.0)  # (n, nchan, 3)
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, atol=1e-12)
    # a TB field that is linear across the cells (200, 210, 220 K): footprints uniformly placed in the
    # centre cell see on average the centre cell's TB (mixing conserves the mean)
    tb_cells = np.array([200.0, 210.0, 220.0])
    mixed = (w * tb_cells).sum(axis=-1)
    np.testing.assert_allclose(mixed.mean(axis=0), 210.0, atol=0.05)
    # a uniform scene is unchanged for every footprint position
    np.testing.assert_allclose((w * 230.0).sum(axis=-1), 230.0, atol=1e-9)


def test_footprint_mixes_low_frequencies_more(realism):
    g = np.arange(realism.grid.ngrid)
    nb, w = realism.footprint(g, "amsr2", FREQS, np.random.default_rng(1))
    assert nb.shape == (g.size, 9) and w.shape == (g.size, 9, FREQS.size)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    outside = 1.0 - w[:, 4, :].mean(axis=0)  # weight of the neighbours, per channel
    # 6.9 GHz (35x62 km) vs 89 GHz (3x5 km) on a 100 km grid; at 89 GHz the 5 km geolocation error dominates
    assert outside[0] > 0.25 and outside[-1] < 0.1 and outside[0] > 3 * outside[-1]
    assert np.all(np.diff(outside[[0, 1, 2, 4, 5]]) < 0)
    # the centre of the stencil is the cell itself; coasts have land neighbours
    np.testing.assert_array_equal(nb[:, 4], g)
    assert (nb == -1).any()


def test_footprint_land_spill_over_warms_coastal_ocean_tb(tmp_path):
    ideal = tmp_path / "i"
    foot = tmp_path / "f"
    cfg = get_twin_preset("tiny", days=1, noise_scale=0.0)
    generate_twin(cfg, ideal)
    generate_twin(get_twin_preset("tiny", days=1, noise_scale=0.0, effects=("footprint",)), foot)
    tb_i = netCDF4.Dataset(ideal / "amsr2" / "field_twin_OBSVALUE.nc")["OBSVALUE"][:]
    tb_f = netCDF4.Dataset(foot / "amsr2" / "field_twin_OBSVALUE.nc")["OBSVALUE"][:]
    g = netCDF4.Dataset(foot / "amsr2" / "field_twin_IGRID.nc")["IGRID"][:]
    sic = netCDF4.Dataset(foot / "truth" / "amsr2" / "truth_SIC.nc")["SIC"][:]
    r = Realism(("footprint",), TruthModel(make_grid("north", 100.0, 60.0), np.random.default_rng(0), 0, 0.0), 0, ())
    coastal = np.any(r._neighbours[g] == -1, axis=1) & (sic == 0)
    assert coastal.sum() > 20
    # open water next to land: land (e ~ 0.9) is far warmer than sea at 10.65 GHz H (channel 1)
    assert np.mean(tb_f[coastal, 1] - tb_i[coastal, 1]) > 2.0


# ------------------------------------------------------------------ surfaces


def test_melt_pond_lowers_89ghz_emissivity(realism):
    e_pond = pond_emissivity(np.array([89.0, 89.0]), np.array([False, True]), 55.0)
    e_ice = literature_ice_emissivity([89.0, 89.0], [0, 1], 0.0, 0.1, 0.09, 272.0, 0.0)
    assert e_pond[0] < e_ice[0] - 0.03 and e_pond[1] < e_ice[1] - 0.3  # V a little, H a lot
    # a summer day with ponds: the effective ice emissivity drops where ponds are
    jd = 2459100.0 + 0.0  # ~ 2020-09-05 is late summer; force warm air below
    g = np.arange(200)
    daily = {
        "sic": np.ones(realism.grid.ngrid),
        "t_air_k": np.full(realism.grid.ngrid, 274.5),
        "myi_fraction": np.zeros(realism.grid.ngrid),
    }
    ponds = realism.pond_fraction(g, jd, daily["t_air_k"][g], daily["myi_fraction"][g])
    assert ponds.min() > 0.1 and ponds.max() <= 0.4
    base = np.full((g.size, 2), 0.9)
    r = Realism(("melt_ponds",), realism.truth, 3, ())
    e = r.ice_surface(base, g, jd, daily, np.array([89.0, 89.0]), np.array([0, 1]), np.array([55.0, 55.0]), 273, 33)
    expected = (1 - ponds[:, None]) * 0.9 + ponds[:, None] * e_pond[None, :]
    np.testing.assert_allclose(e, expected, rtol=1e-12)
    assert np.all(e < 0.9)


def test_thin_ice_emissivity_grows_with_thickness_and_depends_on_temperature():
    h = np.array([0.1, 2.0, 5.0, 10.0, 50.0])
    e = thin_ice_emissivity(36.5, True, 55.0, h, 263.0, 33.0)
    assert np.all(np.diff(e) > 0)
    e_w = thin_ice_emissivity(36.5, True, 55.0, 0.0, 263.0, 33.0)
    assert e_w < 0.5 and e[-1] > 0.88  # from open water (H ~0.4) to opaque first-year ice
    warm = thin_ice_emissivity(36.5, True, 55.0, 3.0, 271.0, 33.0)
    cold = thin_ice_emissivity(36.5, True, 55.0, 3.0, 253.0, 33.0)
    assert cold - warm > 0.05  # warm brine-rich nilas needs more thickness


def test_thin_ice_appears_at_the_advancing_edge_in_freeze_up(realism):
    g = np.arange(realism.grid.ngrid)
    tr = realism.truth
    # October: extent grows; the edge zone has thin ice, the central pack (phi << 1) only refrozen leads
    jd = 2459130.0
    sic = tr.sic(jd, 0)
    frac, h = realism.thin_fraction(g, jd, sic)
    phi = tr.potential(g, jd)
    edge = (sic > 0) & (phi > 0.9)
    pack = (sic > 0) & (phi < 0.5)
    assert frac[edge].mean() > frac[pack].mean() + 0.1
    assert np.all(frac[sic == 0] == 0) and frac.max() <= 0.8
    assert 2.0 <= h.min() and h.max() <= 17.0


def test_literature_model_shapes():
    f = np.array([6.9, 18.7, 36.5, 89.0])
    fy = literature_ice_emissivity(f, "V", 0.0, 0.15, 0.09, 263.0, 0.0)
    my = literature_ice_emissivity(f, "V", 1.0, 0.15, 0.09, 263.0, 0.0)
    fyh = literature_ice_emissivity(f, "H", 0.0, 0.15, 0.09, 263.0, 0.0)
    wet = literature_ice_emissivity(f, "H", 1.0, 0.15, 0.09, 273.0, 0.02)
    assert np.all(my < fy) and my[-1] < 0.75 and fy[-1] > 0.85  # MYI scatters at high frequency
    assert np.all(fyh < fy)
    assert np.all(wet > 0.9)  # wet snow masks the ice: near-blackbody
    assert np.all(np.diff(my) < 0)
    deep = literature_ice_emissivity(89.0, "V", 0.0, 0.40, 0.09, 263.0, 0.0)
    assert deep < fy[-1]


# ------------------------------------------------------------------ temperatures, weather, biases


def test_emitting_layer_interface_temperature_and_weight():
    # 0.3 m snow on 1.5 m ice at -30 C over -1.8 C water: by hand R_s = 1.0, R_i = 0.714, share 0.583
    t = interface_temperature_k(243.15, 271.35, 0.3, 1.5)
    assert t == pytest.approx(243.15 + 28.2 * (1.0 / (1.0 + 1.5 / 2.1)), rel=1e-12)
    assert 243.15 < t < 271.35
    w = interface_weight(FREQS)
    assert w[0] == pytest.approx(np.exp(-6.925 / 15.0)) and w[-1] < 0.01 and np.all(np.diff(w) < 0)


def test_emitting_layer_warms_low_frequencies_in_winter(realism):
    g = np.arange(5)
    surf = {
        "t_ice": np.full(5, 243.0),
        "t_skin": np.full(5, 243.0),
        "wet": np.array([0.0, 0.0, 0.0, 0.0, 0.02]),
        "sic": np.ones(5),
        "emis_ice": np.full((5, FREQS.size), 0.9),
    }
    daily = {"myi_fraction": np.zeros(realism.grid.ngrid), "snow_depth_m": np.full(realism.grid.ngrid, 0.2)}
    d = realism.emission_correction(g, daily, surf, FREQS, np.ones((5, FREQS.size)))
    assert np.all(d[:4, 0] > 5.0) and np.all(np.abs(d[:4, -1]) < 0.2)  # 6.9 GHz sees the warm interface
    np.testing.assert_allclose(d[4], 0.0, atol=1e-12)  # wet snow emits at its surface


def test_weather_model_errors_have_the_stated_sizes(realism):
    g = np.tile(np.arange(realism.grid.ngrid), 4)
    jd = 2459250.0 + np.repeat(np.arange(4) * 3.0, realism.grid.ngrid)  # February: winter warm bias
    n = g.size
    weather = {
        "tcwv_kgm2": np.full(n, 5.0),
        "lwp_kgm2": np.full(n, 0.1),
        "cloud_fraction": np.full(n, 0.5),
        "wind_ms": np.full(n, 8.0),
    }
    sic = np.ones(n)
    given = realism.weather_model(g, jd, np.full(n, 250.0), weather, np.full(n, 250.0), sic, np.random.default_rng(0))
    rel = given["tcwv_kgm2"] / 5.0 - 1.0
    assert 0.6 * NWP_ERRORS["tcwv_rel"] < rel.std() < 1.4 * NWP_ERRORS["tcwv_rel"]
    assert 0.6 * NWP_ERRORS["wind_ms"] < (given["wind_ms"] - 8.0).std() < 1.4 * NWP_ERRORS["wind_ms"]
    dt = given["t_skin_k"] - 250.0
    assert 0.6 * NWP_ERRORS["t_skin_ice_k"] < dt.std() < 1.4 * NWP_ERRORS["t_skin_ice_k"] and dt.mean() > 0.3
    assert np.all((given["cloud_fraction"] >= 0) & (given["cloud_fraction"] <= 1))


def test_drifting_bias_is_slow_scene_dependent_and_spares_the_anchor(realism):
    t = np.linspace(0.0, 2.0, 50) + 2459100.0
    tb = np.full((50, 10), 240.0)
    d = realism.bias_drift("amsr2", t, tb)
    p = realism.drift["amsr2"]
    assert np.all(np.abs(np.diff(d, axis=0)) < 2 * np.pi * p.amplitude_k / p.period_days * (2.0 / 49) + 1e-9)
    hot = realism.bias_drift("amsr2", t, tb + 30.0)
    np.testing.assert_allclose(hot - d, np.broadcast_to(30.0 * p.slope, d.shape), atol=1e-9)
    np.testing.assert_array_equal(realism.bias_drift("gmi", t, np.full((50, 13), 240.0)), 0.0)


def test_precipitation_scattering_depresses_high_frequencies_only():
    f = np.array([10.65, 18.7, 36.5, 89.0, 183.31])
    d = precip_depression_k(f, np.array([0.1]), np.array([1.0]))[0]
    np.testing.assert_array_equal(d[:2], 0.0)
    assert d[3] == pytest.approx(-4.0) and d[4] < d[3] < d[2] < 0


# ------------------------------------------------------------------ configuration and files


def test_effects_selection_and_errors():
    assert effects_from("ideal") == ()
    assert effects_from("realistic") == EFFECTS
    assert effects_from("ideal", ("nwp_errors", "footprint")) == ("footprint", "nwp_errors")
    with pytest.raises(SeaIceError, match="--effects: unknown effect 'rain'"):
        effects_from("ideal", ("rain",))
    with pytest.raises(SeaIceError, match="--realism"):
        get_twin_preset("tiny", realism="harsh")
    with pytest.raises(SeaIceError, match="--ice-model"):
        get_twin_preset("tiny", ice_model="rttov")
    assert get_twin_preset("science").realism == "realistic"


def test_realistic_twin_files(tmp_path, capsys):
    ideal, real = tmp_path / "ideal", tmp_path / "real"
    assert twin_main(["--output", str(ideal), "--preset", "tiny", "--days", "2"]) == 0
    rc = twin_main(
        [
            "--output",
            str(real),
            "--preset",
            "tiny",
            "--days",
            "2",
            "--realism",
            "realistic",
            "--ice-model",
            "literature",
        ]
    )
    assert rc == 0
    cfg = json.loads((real / "truth" / "config.json").read_text())
    assert cfg["effects"] == list(EFFECTS) and cfg["ice_model"] == "literature"
    with (
        netCDF4.Dataset(real / "truth" / "truth_state.nc") as a,
        netCDF4.Dataset(ideal / "truth" / "truth_state.nc") as b,
    ):
        np.testing.assert_array_equal(a["SIC"][:], b["SIC"][:])  # the effects never touch the nature run
        assert {"THIN_ICE_FRACTION", "THIN_ICE_THICKNESS", "POND_FRACTION"} <= set(a.variables)
    with netCDF4.Dataset(real / "amsr2" / "field_twin_TSFC.nc") as a:
        tsfc_real = a["TSFC"][:]
    with netCDF4.Dataset(real / "truth" / "amsr2" / "truth_T_ICE.nc") as a:
        assert a["T_ICE"][:].shape == tsfc_real.shape
    with netCDF4.Dataset(ideal / "amsr2" / "field_twin_TSFC.nc") as a:
        assert np.abs(tsfc_real - a["TSFC"][:]).mean() > 0.5  # the network gets an imperfect skin temperature
