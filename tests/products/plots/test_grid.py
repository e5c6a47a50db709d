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


def test_a_point_without_coordinates_is_left_off_the_raster():
    """A longitude unknown (NaN): no cells for the files (grid_cells gives none), and the map's raster
    keeps the 150 km spacing of the other points, each drawn once (the spacing's k-d tree refused NaN)."""
    lon, lat = polar_grid()
    lon = lon.copy()
    lon[3] = np.nan
    g = grid.rasterise(lon, lat)
    assert g.spacing_km == pytest.approx(150.0, rel=1e-6)
    assert sorted(g.index[g.index >= 0].tolist()) == [i for i in range(lon.size) if i != 3]
    assert grid.grid_spacing_km(np.zeros(5), np.zeros(5)) == 100.0  # all at one place: no spacing to measure


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


def test_rasterise_leaves_no_stripes_between_the_rows_of_a_longitude_latitude_grid():
    """A 0.5° grid poleward of 60°N: points 55 km apart across its rows, 0.2-28 km along them. With the
    cells' reach (their boxes) every raster cell inside the grid takes a point; with 0.75 of the nearest
    distance (15 km) 68 % of them had none, stripes between the rows."""
    lon, lat = (a.ravel() for a in np.meshgrid(np.arange(-179.75, 180.0, 0.5), np.arange(60.25, 90.0, 0.5)))
    g = grid.rasterise(lon, lat)
    assert g.spacing_km == pytest.approx(28.4, abs=0.1)  # the square root of the median box area
    x, y, _ = grid.projected_xy(lon, lat)
    xc, yc = (0.5 * (e[1:] + e[:-1]) for e in (g.x_edges, g.y_edges))
    r = np.hypot(*np.meshgrid(xc, yc))
    inside = r < np.hypot(x, y).max() - 2 * g.spacing_km
    assert inside.sum() > 30_000 and (g.index[inside] >= 0).all()
    # near the pole a raster cell holds many of a row's points, one of them drawn: most points still are
    assert len(np.unique(g.index[inside])) > 0.5 * lon.size
