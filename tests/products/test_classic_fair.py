"""Fair classic algorithms: tie points fitted to the data recover the data's own tie points."""

from __future__ import annotations

import numpy as np
import pytest

from empirical_seaice.products.classic_fair import (
    SSMI_NT_NORTH,
    SSMI_NT_SOUTH,
    _bootstrap_with,
    fit_bootstrap_tie_points,
    fit_nasa_team_tie_points,
    nasa_team_hemisphere_tie_points,
)
from empirical_seaice.products.sic_algorithms import (
    BOOTSTRAP_TIE_POINTS,
    NASA_TEAM_TIE_POINTS,
    NasaTeamTiePoints,
    nasa_team,
)

# an ice that does not look like the published tie points (first-year 19H 10 K lower, MY 37V 8 K higher)
DATA_TP = NasaTeamTiePoints((186.0, 249.0, 228.0), (112.0, 222.0, 196.0), (208.0, 240.0, 200.0), "synthetic")


def _mixture(tp, c_fy, c_my, rng, noise=0.5):
    tb = []
    for tbs in (tp.tb19v_k, tp.tb19h_k, tp.tb37v_k):
        w, f, m = tbs
        tb.append(w + c_fy * (f - w) + c_my * (m - w) + rng.normal(0.0, noise, c_fy.shape))
    return np.stack(tb, axis=-1)


def test_nasa_team_dynamic_tie_points_recover_the_data_tie_points():
    rng = np.random.default_rng(0)
    n = 3000
    total = np.concatenate([np.zeros(n // 3), rng.uniform(0, 1, n // 3), np.ones(n - 2 * (n // 3))])
    share = rng.choice([0.0, 1.0], n, p=[0.7, 0.3])
    c_fy, c_my = total * (1 - share), total * share
    tb = _mixture(DATA_TP, c_fy, c_my, rng)
    published = NASA_TEAM_TIE_POINTS["amsr2"]
    tp = published
    for _ in range(3):
        tp = fit_nasa_team_tie_points(tb, tp)
    for got, want in ((tp.tb19v_k, DATA_TP.tb19v_k), (tp.tb19h_k, DATA_TP.tb19h_k), (tp.tb37v_k, DATA_TP.tb37v_k)):
        np.testing.assert_allclose(got, want, atol=1.5)
    err_pub = nasa_team(tb[:, 0], tb[:, 1], tb[:, 2], published, weather_filter=False).total - total
    err_fit = nasa_team(tb[:, 0], tb[:, 1], tb[:, 2], tp, weather_filter=False).total - total
    assert np.sqrt(np.mean(err_fit**2)) < 0.3 * np.sqrt(np.mean(err_pub**2))


def test_hemisphere_tie_points_shift_by_the_ssmi_difference():
    north = nasa_team_hemisphere_tie_points("amsr2", True)
    south = nasa_team_hemisphere_tie_points("amsr2", False)
    assert north == NASA_TEAM_TIE_POINTS["amsr2"]
    # first-year 19H: 234.73 + (237.8 - 242.8)
    assert south.tb19h_k[1] == pytest.approx(234.73 - 5.0)
    assert south.tb37v_k[2] == pytest.approx(north.tb37v_k[2] + SSMI_NT_SOUTH.tb37v_k[2] - SSMI_NT_NORTH.tb37v_k[2])
    assert nasa_team_hemisphere_tie_points("gmi", True) == NASA_TEAM_TIE_POINTS["amsr2"]


def test_bootstrap_regression_recovers_the_ice_line_and_water_point():
    rng = np.random.default_rng(1)
    first = BOOTSTRAP_TIE_POINTS[("amsr2", "north")]
    # the data's ice: 37H = -60 + 1.15 37V, 19V = 40 + 0.85 37V, 37V in 235..260; water at (200, 125, 178)
    v37_ice = rng.uniform(235.0, 260.0, 800)
    ice = np.stack([v37_ice, -60.0 + 1.15 * v37_ice, 40.0 + 0.85 * v37_ice], axis=1) + rng.normal(0, 0.3, (800, 3))
    water = np.array([200.0, 125.0, 178.0]) + rng.normal(0, 0.5, (600, 3))
    c = rng.uniform(0, 1, 600)[:, None]
    mixed = water + c * (ice[:600] - water)
    tb = np.concatenate([ice, water, mixed])
    tp = fit_bootstrap_tie_points(tb, first)
    # (intercept K, slope): each with its own tolerance (one approx of the pair would let a slope off by 2 pass)
    assert tp.line_vh37[0] == pytest.approx(-60.0, abs=2.0) and tp.line_vh37[1] == pytest.approx(1.15, abs=0.01)
    assert tp.line_v1937[0] == pytest.approx(40.0, abs=2.0) and tp.line_v1937[1] == pytest.approx(0.85, abs=0.01)
    assert (tp.water_37v_k, tp.water_37h_k, tp.water_19v_k) == pytest.approx((200.0, 125.0, 178.0), abs=1.0)
    sic = _bootstrap_with(mixed, tp)
    assert np.sqrt(np.mean((sic - c[:, 0]) ** 2)) < 0.03


def test_bootstrap_weather_filter_zeroes_cloudy_open_water():
    tp = BOOTSTRAP_TIE_POINTS[("amsr2", "north")]
    # warm, moist open water: 37V well above 19V (GR 37/19 = 0.052) reads as ~0.17 ice in the 37V/19V plane
    tb = np.array([[222.0, 150.0, 200.0]])
    assert _bootstrap_with(tb, tp)[0] > 0.1
    assert _bootstrap_with(tb, tp, tb22v_k=np.array([215.0]))[0] == 0.0
