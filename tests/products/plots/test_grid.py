"""The map plane: projection, grid spacing and the raster of grid cells, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
from plot_helpers import polar_grid

from empirical_seaice.products.plots import grid


def test_projection_and_spacing():
    lon, lat = polar_grid()
    x, y, epsg = grid.projected_xy(lon, lat)
    assert epsg == 6931
    assert grid.grid_spacing_km(x, y) == pytest.approx(150.0, rel=1e-6)
    lon_s, lat_s = polar_grid(south=True)
    assert grid.projected_xy(lon_s, lat_s)[2] == 6932
    # The North Pole is the origin of EASE-Grid 2.0 North.
    x0, y0, _ = grid.projected_xy(np.array([0.0, 10.0]), np.array([90.0, 80.0]))
    assert abs(x0[0]) < 1e-6 and abs(y0[0]) < 1e-6


def test_rasterise_fills_every_cell_of_a_regular_grid_once():
    lon, lat = polar_grid(n_side=12, spacing_km=100.0)
    g = grid.rasterise(lon, lat)
    assert g.spacing_km == pytest.approx(100.0) and g.cell_area_km2 == pytest.approx(1e4)
    drawn = g.index[g.index >= 0]
    assert sorted(drawn.tolist()) == list(range(lon.size))  # each point exactly once: no gap, no overlap
    # the raster is the 12 x 12 lattice (the hole in the middle stays empty)
    assert g.index.shape == (12, 12) and (g.index < 0).sum() == 144 - lon.size
    filled = g.fill(np.arange(lon.size, dtype=float))
    assert filled.count() == lon.size
