"""Departure plots: the per-channel statistics by hand; the PNGs are drawn, mismatched channels refused."""

from __future__ import annotations

import numpy as np
import pytest
from plot_helpers import assert_png

from empirical_seaice.errors import SeaIceError
from empirical_seaice.products.plots import departures


def test_departure_plots(tmp_path):
    rng = np.random.default_rng(1)
    before = rng.normal(5, 8, (500, 4))
    after = rng.normal(0, 2, (500, 4))
    before[:100, 3] = np.nan
    names = ["19v", "19h", "37v", "37h"]
    assert_png(departures.plot_departure_histograms(tmp_path / "h.png", names, before, after))
    assert_png(departures.plot_departure_stats(tmp_path / "d.png", names, before, after))
    with pytest.raises(SeaIceError, match="expected"):
        departures.plot_departure_histograms(tmp_path / "h2.png", names[:2], before, after)
    with pytest.raises(SeaIceError, match="expected 2 channels"):
        departures.plot_departure_stats(tmp_path / "d2.png", names[:2], before, after)
    # Without the "before" set (diagnostics of a trained model) the plots still come.
    assert_png(departures.plot_departure_stats(tmp_path / "d3.png", names, None, after))


def test_departure_stats_hand_values():
    d = np.array([[1.0, np.nan], [3.0, 4.0], [5.0, np.nan]])
    n, mean, std = departures.departure_stats(d)
    np.testing.assert_array_equal(n, [3, 1])
    np.testing.assert_allclose(mean, [3.0, 4.0])
    np.testing.assert_allclose(std, [np.sqrt(8 / 3), 0.0])
