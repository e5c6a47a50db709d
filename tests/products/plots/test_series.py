"""Time series: the daily extent and area by hand; the extent/area and loss-curve PNGs are drawn."""

from __future__ import annotations

import numpy as np
import pytest
from plot_helpers import assert_png

from empirical_seaice.errors import SeaIceError
from empirical_seaice.products.plots import series


def test_extent_and_area_by_hand():
    sic = np.array([[1.0, 0.1], [0.5, np.nan], [0.15, 0.2]])  # 3 cells x 2 days
    extent, area = series.extent_area(sic, cell_area_km2=1e6)  # cells of 10^6 km^2 -> values in cells
    np.testing.assert_allclose(extent, [3.0, 1.0])  # day 0: 1.0, 0.5, 0.15 >= 0.15; day 1: 0.2 only
    np.testing.assert_allclose(area, [1.65, 0.2])


def test_extent_and_area_with_each_cell_own_area_by_hand():
    """The cells' areas of the files (cell_area, one per grid point): day 0 extent 1 + 2 + 3 = 6,
    area 1 x 1.0 + 2 x 0.5 + 3 x 0.15 = 2.45; day 1 the third cell alone, 3 x 0.2 = 0.6."""
    sic = np.array([[1.0, 0.1], [0.5, np.nan], [0.15, 0.2]])
    extent, area = series.extent_area(sic, cell_area_km2=np.array([1e6, 2e6, 3e6]))
    np.testing.assert_allclose(extent, [6.0, 3.0])
    np.testing.assert_allclose(area, [2.45, 0.6])


def test_loss_curves(tmp_path):
    losses = {"obs": np.array([10.0, 5.0, 3.0, 2.5]), "sic_range": np.array([1.0, 0.5, 0.2, 0.1])}
    assert_png(series.plot_loss_curves(tmp_path / "l.png", losses))
    with pytest.raises(SeaIceError, match="no loss"):
        series.plot_loss_curves(tmp_path / "l2.png", {"obs": np.array([])})


def test_loss_curves_note_the_monitored_term(tmp_path):
    losses = {"obs": np.array([3.0, 2.0]), "warm_ice": np.array([0.5, 0.4]), "total": np.array([3.5, 2.4])}
    assert_png(series.plot_loss_curves(tmp_path / "l.png", losses))


def test_time_series(tmp_path):
    dates = ["2021-03-01", "2021-03-02", "2021-03-03"]
    lines = {"trained": (np.array([1.0, 1.1, 1.2]), np.array([0.8, 0.9, 1.0])), "truth": (np.ones(3), np.ones(3))}
    one = assert_png(series.plot_time_series(tmp_path / "t.png", dates, {"": lines}, notes={"": {"truth": "all"}}))
    with pytest.raises(SeaIceError, match="expected 3"):
        series.plot_time_series(tmp_path / "t2.png", dates, {"": {"x": (np.ones(2), np.ones(2))}})
    with pytest.raises(SeaIceError, match="no series"):
        series.plot_time_series(tmp_path / "t3.png", dates, {})
    with pytest.raises(SeaIceError, match="no series"):
        series.plot_time_series(tmp_path / "t4.png", dates, {"north": {}, "south": {}})
    both = assert_png(series.plot_time_series(tmp_path / "t5.png", dates, {"north": lines, "south": lines}))
    assert both.shape[0] > 1.8 * one.shape[0] and both.shape[1] == one.shape[1]  # a row of panels each
