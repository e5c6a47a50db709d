"""The open-water filter of the trained SIC."""

from __future__ import annotations

import numpy as np

from empirical_seaice.products.open_water_filter import filter_sic, open_water_flags


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
