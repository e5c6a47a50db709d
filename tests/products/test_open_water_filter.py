"""The open-water filter of the trained SIC."""

from __future__ import annotations

import numpy as np

from empirical_seaice.products import open_water_filter as owf
from empirical_seaice.products.classic import classic_sic_maps
from empirical_seaice.products.open_water_filter import filter_sic, open_water_flags, open_water_mask


def test_flags_follow_the_gradient_ratios_by_hand():
    # GR(37/19) = (205 - 180) / (205 + 180) = 0.0649 > 0.05: water; pack ice 37V below 19V: not
    assert open_water_flags(180.0, 205.0)
    assert not open_water_flags(250.0, 240.0)
    # GR(37/19) = 0.0408 passes, GR(22/19) = (200 - 180) / 380 = 0.0526 > 0.045 flags
    assert not open_water_flags(180.0, 196.0) and open_water_flags(180.0, 196.0, 200.0)
    assert not open_water_flags(np.nan, 200.0)


def test_filter_removes_only_low_concentrations_where_flagged():
    sic = np.array([[0.1, 0.29, 0.31, 0.9], [0.1, 0.2, 0.5, 0.0]])
    mask = np.array([[True, True, True, True], [False, False, True, True]])
    out = filter_sic(sic, mask)
    np.testing.assert_array_equal(out, [[0.0, 0.0, 0.31, 0.9], [0.1, 0.2, 0.5, 0.0]])


def test_the_product_is_within_0_and_1():
    """The trained state's values beyond [0, 1] (a soft penalty bounds it) are clipped in the product,
    flagged or not (before: -0.0115 to 1.0113 on the demo twin, 404 negative values in the product)."""
    sic = np.array([[-0.02, 1.03, 0.5], [-0.01, 1.2, 0.25]])
    mask = np.array([[False, False, False], [True, True, True]])
    np.testing.assert_array_equal(filter_sic(sic, mask), [[0.0, 1.0, 0.5], [0.0, 1.0, 0.0]])


def test_mask_completes_the_classic_algorithms_flags_with_the_sensors_they_skip(make_obs, monkeypatch):
    """The classic algorithms grid only sensors with tie points (AMSR2 here, not WindSat); the filter takes
    their flags and grids the others itself: the mask is the one it makes alone, cell for cell."""
    rng = np.random.default_rng(5)
    sensors = ("amsr2", "windsat")
    ngrid, nstep, n = 9, 6, 3000
    basis = make_obs(np.zeros((1, 1)), [0], [0], [0], sensors=sensors).basis
    ix = basis.channel_index
    # WindSat's observations in other cells than AMSR2's (grid points 5-8), so its flags are its own
    isensor = rng.integers(0, 2, n)
    igrid = np.where(isensor == 0, rng.integers(0, 5, n), rng.integers(5, ngrid, n))
    istep = rng.integers(0, nstep, n)
    # each cell's gradient ratios about one value (the daily means keep it): some above the thresholds
    gr37, gr22 = rng.uniform(-0.02, 0.09, (ngrid, nstep)), rng.uniform(-0.02, 0.07, (ngrid, nstep))
    tb = np.full((n, basis.nchan), np.nan)
    v19 = rng.uniform(175, 255, n)
    tb[:, ix["19v"]] = v19
    tb[:, ix["19h"]] = v19 - rng.uniform(5, 70, n)
    tb[:, ix["37v"]] = v19 * (1 + gr37[igrid, istep]) / (1 - gr37[igrid, istep]) + rng.normal(0, 1, n)
    tb[:, ix["37h"]] = tb[:, ix["37v"]] - rng.uniform(5, 60, n)
    tb[:, ix["24v"]] = v19 * (1 + gr22[igrid, istep]) / (1 - gr22[igrid, istep]) + rng.normal(0, 1, n)
    tb[rng.random(tb.shape) < 0.1] = np.nan
    obs = make_obs(tb, igrid, istep, isensor, sensors, ngrid, nstep)
    classic = classic_sic_maps(obs, open_water=True)
    assert classic.open_water_sensors == (0,)  # no tie points for WindSat
    alone = open_water_mask(obs)
    assert classic.open_water[5:].sum() == 0 and alone[5:].sum() > 5  # WindSat's cells: flagged by the filter only
    gridded = []
    grid = owf.grid_daily_mean_tb
    monkeypatch.setattr(owf, "grid_daily_mean_tb", lambda o, ch, s: gridded.append(s) or grid(o, ch, s))
    np.testing.assert_array_equal(open_water_mask(obs, classic.open_water, classic.open_water_sensors), alone)
    assert gridded == [1]  # AMSR2's flags taken as they are
    np.testing.assert_array_equal(classic.open_water[:5], alone[:5])
    assert classic_sic_maps(obs).open_water is None  # not asked for: not made
