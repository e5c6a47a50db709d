"""The grid's cells (io/grid_cells.py): corners and areas, checked by hand on a lattice and against
pyproj's geodesic polygon area on WGS84 (an independent computation: it signs the area positive for
anticlockwise corners, so it checks their order too), on the twin's grids, a jittered grid and a grid
with both hemispheres."""

from __future__ import annotations

import logging

import numpy as np
import pyproj
import pytest

from empirical_seaice.io import grid_cells as gc
from empirical_seaice.twin.grid import make_grid

GEOD = pyproj.Geod(ellps="WGS84")


def _geodesic_areas(cells: gc.GridCells) -> np.ndarray:
    """Signed geodesic area (m²) of each cell's corners (positive: anticlockwise)."""
    return np.array(
        [GEOD.polygon_area_perimeter(lo, la)[0] for lo, la in zip(cells.lon_bounds, cells.lat_bounds, strict=True)]
    )


def _lattice(epsg: int, x0_m: float, y0_m: float, spacing_m: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Longitudes and latitudes of an n x n lattice of the EASE-Grid 2.0 plane from (x0, y0)."""
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    x, y = x0_m + spacing_m * i.ravel(), y0_m + spacing_m * j.ravel()
    lon, lat = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True).transform(x, y)
    return np.asarray(lon), np.asarray(lat)


@pytest.mark.parametrize("epsg, y0", [(gc.EPSG_NORTH, -2_000_000.0), (gc.EPSG_SOUTH, 1_500_000.0)])
def test_a_lattice_has_square_cells_of_side_the_spacing_by_hand(epsg, y0):
    """3 x 3 points 50 km apart: every cell, the edge's included, is the square of corners (x ± 25 km,
    y ± 25 km), area 50 km x 50 km = 2.5e9 m² (the projection is equal-area)."""
    lon, lat = _lattice(epsg, 300_000.0, y0, 50_000.0, 3)
    cells = gc.grid_cells(lon, lat)
    assert cells is not None and cells.nvertex == 4
    np.testing.assert_allclose(cells.area_m2, 2.5e9, rtol=1e-9)
    x, y = gc.ease2_xy(epsg, lon, lat)
    cx, cy = gc.ease2_xy(epsg, cells.lon_bounds, cells.lat_bounds)
    np.testing.assert_allclose(np.abs(cx - x[:, None]), 25_000.0, atol=1e-3)  # metres, 1 mm
    np.testing.assert_allclose(np.abs(cy - y[:, None]), 25_000.0, atol=1e-3)
    np.testing.assert_allclose(_geodesic_areas(cells), 2.5e9, rtol=1e-5)  # anticlockwise, and the same area


@pytest.mark.parametrize("hemisphere", ["north", "south"])
def test_the_twin_grid_cells_are_its_squares_on_the_ellipsoid(hemisphere):
    """Every cell of the twin's 100 km grid (coast and domain edge included) has the area spacing²
    = 1e10 m², and its corners enclose that area on WGS84, anticlockwise."""
    grid = make_grid(hemisphere, resolution_km=100.0, lat_limit_deg=60.0)
    cells = gc.grid_cells(grid.lon.astype(np.float32), grid.lat.astype(np.float32))
    assert cells is not None and cells.nvertex == 4
    np.testing.assert_allclose(cells.area_m2, grid.cell_area_km2 * 1e6, rtol=1e-5)  # float32 coordinates: ~1 m
    geodesic = _geodesic_areas(cells)
    assert (geodesic > 0).all()
    np.testing.assert_allclose(geodesic, cells.area_m2, rtol=2e-4)  # geodesic edges, not the plane's lines


def test_the_tessellation_gives_the_twin_lattice_its_squares_too(monkeypatch):
    """The shortcut for the plane's square lattice (squares without a tessellation) against the general
    path (the lattice tests off: a first tessellation, closing points, Voronoi cells): the same areas
    and corners, to 1e-5 and 1 m (the rounding of the float32 coordinates)."""
    grid = make_grid("north", resolution_km=100.0, lat_limit_deg=60.0)
    lon, lat = grid.lon.astype(np.float32), grid.lat.astype(np.float32)
    square = gc._grid_cells(lon.astype(np.float64), lat.astype(np.float64))
    monkeypatch.setattr(gc, "LATTICE_TOLERANCE", 0.0)
    voronoi = gc._grid_cells(lon.astype(np.float64), lat.astype(np.float64))
    assert square is not None and voronoi is not None and voronoi.nvertex == 4
    np.testing.assert_allclose(voronoi.area_m2, square.area_m2, rtol=1e-5)
    for cells in (square, voronoi):  # the corners in the plane (a corner at the pole has any longitude)
        x, y = gc.ease2_xy(gc.EPSG_NORTH, cells.lon_bounds, cells.lat_bounds)
        order = np.lexsort((np.round(y, -1), np.round(x, -1)), axis=1)
        cells_xy = np.stack([np.take_along_axis(x, order, 1), np.take_along_axis(y, order, 1)])
        if cells is square:
            want = cells_xy
    np.testing.assert_allclose(cells_xy, want, atol=1.0)  # metres: the float32 coordinates are rounded to ~1 m


def test_a_hexagonal_lattice_has_hexagons():
    """Points on a triangular lattice of side s (every nearest neighbour at s, but not the plane's square
    lattice): the inner cells are regular hexagons, of area (√3 / 2) s² by hand."""
    s, n = 30_000.0, 10
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    x = 200_000.0 + s * (i + 0.5 * (j % 2)).ravel()
    y = -2_500_000.0 + s * np.sqrt(3.0) / 2.0 * j.ravel()
    lon, lat = pyproj.Transformer.from_crs(gc.EPSG_NORTH, 4326, always_xy=True).transform(x, y)
    cells = gc.grid_cells(np.asarray(lon), np.asarray(lat))
    assert cells is not None and cells.nvertex >= 6
    inner = ((i > 0) & (i < n - 1) & (j > 0) & (j < n - 1)).ravel()
    np.testing.assert_allclose(cells.area_m2[inner], np.sqrt(3.0) / 2.0 * s * s, rtol=1e-6)
    corners = np.array([len(np.unique(np.round(b, 9))) for b in cells.lon_bounds[inner]])
    assert (corners == 6).all()
    assert (_geodesic_areas(cells) > 0).all()


def test_an_irregular_grid_is_tiled_by_cells_that_hold_their_point(caplog):
    """A lattice jittered by up to 0.3 spacing: each point lies in its own cell and in no other, the
    cells have positive area, and the inner cells add up to the inner points' share of the plane."""
    from matplotlib.path import Path as Polygon

    rng = np.random.default_rng(7)
    n, s = 12, 40_000.0
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    x = -500_000.0 + s * (i.ravel() + rng.uniform(-0.3, 0.3, n * n))
    y = -1_800_000.0 + s * (j.ravel() + rng.uniform(-0.3, 0.3, n * n))
    lon, lat = pyproj.Transformer.from_crs(gc.EPSG_NORTH, 4326, always_xy=True).transform(x, y)
    cells = gc.grid_cells(np.asarray(lon), np.asarray(lat))
    assert cells is not None and cells.nvertex > 4
    cx, cy = gc.ease2_xy(gc.EPSG_NORTH, cells.lon_bounds, cells.lat_bounds)
    for k in range(n * n):
        inside = Polygon(np.column_stack([cx[k], cy[k]])).contains_points(np.column_stack([x, y]))
        assert np.flatnonzero(inside).tolist() == [k]
    assert (cells.area_m2 > 0.1 * s * s).all()
    inner = ((i > 0) & (i < n - 1) & (j > 0) & (j < n - 1)).ravel()
    # the inner cells tile the inner region: about (n - 2)² spacings², up to the jitter of its rim
    assert cells.area_m2[inner].sum() == pytest.approx((n - 2) ** 2 * s * s, rel=0.03)
    assert (_geodesic_areas(cells) > 0).all()


def test_a_grid_with_both_hemispheres_has_each_hemisphere_cells():
    north = make_grid("north", resolution_km=200.0, lat_limit_deg=65.0)
    south = make_grid("south", resolution_km=200.0, lat_limit_deg=65.0)
    lon = np.concatenate([north.lon, south.lon])
    lat = np.concatenate([north.lat, south.lat])
    both = gc.grid_cells(lon, lat)
    alone = gc.grid_cells(south.lon, south.lat)
    assert both is not None and alone is not None
    np.testing.assert_array_equal(both.area_m2[north.ngrid :], alone.area_m2)
    np.testing.assert_array_equal(both.lat_bounds[north.ngrid :], alone.lat_bounds[:, : both.nvertex])
    np.testing.assert_allclose(both.area_m2, 4e10, rtol=1e-5)


def test_hemispheres_by_hand():
    """North (latitude >= 0, the equator included) on EPSG:6931, south on 6932, north first; an empty
    hemisphere is left out."""
    parts = gc.hemispheres(np.array([70.0, -65.0, 80.0, -75.0, 0.0]))
    assert [(name, epsg) for name, epsg, _ in parts] == [("north", 6931), ("south", 6932)]
    assert parts[0][2].tolist() == [0, 2, 4] and parts[1][2].tolist() == [1, 3]
    assert [name for name, _, _ in gc.hemispheres([-60.0, -70.0])] == ["south"]
    masks = gc.global_hemispheres(np.array([70.0, -65.0, 80.0, -75.0, 0.0]))  # the same split, as masks
    assert [name for name, _ in masks] == ["north", "south"]
    assert masks[0][1].tolist() == [True, False, True, False, True] and (masks[1][1] == ~masks[0][1]).all()
    assert gc.global_hemispheres([60.0, 70.0]) == [] and gc.global_hemispheres(None) == []  # not a global grid


def test_cells_are_computed_once_per_grid():
    lon, lat = _lattice(gc.EPSG_NORTH, 0.0, -1_000_000.0, 25_000.0, 4)
    assert gc.grid_cells(lon, lat) is gc.grid_cells(lon.copy(), lat.copy())


@pytest.mark.parametrize(
    "lon, lat, why",
    [
        ([10.0, np.nan, 12.0], [70.0, 71.0, 72.0], "not all known"),
        ([10.0, 11.0], [70.0, -70.0], "single point"),
        ([10.0, 10.0, 11.0], [70.0, 70.0, 71.0], "coincident points"),
    ],
)
def test_no_cells_where_they_cannot_be_drawn(lon, lat, why, caplog):
    """No cells (the files then have lon and lat only), and the log says why."""
    with caplog.at_level(logging.INFO, logger=gc.__name__):
        assert gc.grid_cells(np.array(lon), np.array(lat)) is None
    assert why in caplog.text


def test_the_zone_area_factor_gives_the_wgs84_surface_by_hand():
    """q(0) = 0 and 2π a² q(90°) is the WGS84 ellipsoid's surface, 510,065,621.724 km² (its published
    value); on a sphere (e → 0) q = 2 sin φ."""
    assert gc.zone_area_factor(0.0) == pytest.approx(0.0, abs=1e-15)
    assert 2 * np.pi * gc.WGS84_A**2 * gc.zone_area_factor(90.0) == pytest.approx(5.10065621724e14, rel=1e-11)
    assert float(gc.zone_area_factor(-30.0)) == pytest.approx(-float(gc.zone_area_factor(30.0)))


def _densified_box_area(west: float, east: float, south: float, north: float) -> float:
    """pyproj's geodesic area of the box, its latitude edges sampled at 400 points (about their circles)."""
    xs = np.linspace(west, east, 400)
    return GEOD.polygon_area_perimeter(
        np.concatenate([xs, xs[::-1]]), np.concatenate([np.full(400, south), np.full(400, north)])
    )[0]


def test_a_longitude_latitude_grid_has_its_boxes():
    """A 0.5° grid poleward of 60°N with 30 % of its points dropped (land): each cell is its box, of
    pyproj's area (latitude edges densified) to 1e-8, anticlockwise; the whole grid covers the zone
    60-90°N. The tessellation in the plane gave these cells 0.36 of their area (closing points between
    the rows)."""
    lats, lons = np.arange(60.25, 90.0, 0.5), np.arange(-179.75, 180.0, 0.5)
    lon, lat = (a.ravel() for a in np.meshgrid(lons, lats))
    keep = np.random.default_rng(3).random(len(lon)) > 0.3
    cells = gc.grid_cells(lon[keep], lat[keep])
    assert cells is not None and cells.nvertex == 4
    assert cells.method.startswith("the grid point's box in its latitude row")  # the files' cell_area comment
    np.testing.assert_allclose(cells.lon_bounds[:, 1] - cells.lon_bounds[:, 0], 0.5)
    np.testing.assert_allclose(cells.lat_bounds[:, 2] - cells.lat_bounds[:, 0], 0.5)  # the last row: to the pole
    by_row = {la: _densified_box_area(0.0, 0.5, la - 0.25, la + 0.25) for la in lats}
    np.testing.assert_allclose(cells.area_m2, [by_row[la] for la in lat[keep]], rtol=1e-8)
    assert (_geodesic_areas(cells) > 0).all()
    whole = gc.grid_cells(lon, lat)
    zone = np.pi * gc.WGS84_A**2 * (gc.zone_area_factor(90.0) - gc.zone_area_factor(60.0))
    assert whole is not None and whole.area_m2.sum() == pytest.approx(zone, rel=1e-12)


def test_a_reduced_gaussian_like_grid_has_boxes_a_row_wide():
    """Rows of 20 + 4 i points from the pole (octahedral-like), both hemispheres, a row with one point
    left: each cell is 360 / (points of its row) wide, and the full rows tile their zones."""
    lat_rows = 89.0 - 2.0 * np.arange(12)
    lon, lat = [], []
    for i, la in enumerate(lat_rows):
        n = 20 + 4 * i
        for sign in (1.0, -1.0):
            lon.append(np.arange(n) * 360.0 / n - 180.0)
            lat.append(np.full(n, sign * la))
    lon.append(np.array([33.0]))
    lat.append(np.array([65.0]))  # one point, its own row: the step of the nearest row
    cells = gc.grid_cells(np.concatenate(lon), np.concatenate(lat))
    assert cells is not None
    widths = cells.lon_bounds[:, 1] - cells.lon_bounds[:, 0]
    want = np.concatenate([np.full(len(x), 360.0 / len(x)) for x in lon[:-1]] + [[360.0 / (20 + 4 * 11)]])
    np.testing.assert_allclose(widths, want)
    full = cells.area_m2[:-1].sum()
    band = np.pi * gc.WGS84_A**2 * (gc.zone_area_factor(90.0) - gc.zone_area_factor(lat_rows[-1] - 1.0))
    assert full == pytest.approx(2 * band, rel=1e-12)  # north and south
    assert (_geodesic_areas(cells) > 0).all()


def test_no_cells_for_a_grid_too_uneven_for_the_tessellation(caplog):
    """A 1° longitude-latitude grid poleward of 70°N whose longitudes are off by up to 0.1 of a step
    (not rows: no boxes): points 111 km apart across its rows and 1-38 km along them; every point is at
    the edge for the tessellation, whose closing points would fall between the rows, so no cells (the
    tessellation gave such a grid's cells 0.36 of their area) and the log says why."""
    lats, lons = np.arange(70.5, 90.0, 1.0), np.arange(-179.5, 180.0, 1.0)
    lon, lat = (a.ravel() for a in np.meshgrid(lons, lats))
    lon = lon + np.random.default_rng(1).uniform(-0.1, 0.1, len(lon))
    with caplog.at_level(logging.INFO, logger=gc.__name__):
        assert gc.grid_cells(lon, lat) is None
    assert "100 % of the grid's points are at its edge" in caplog.text


def _uneven_grid_and_boxes():
    """The grid of the test above (longitudes off by up to 0.1 of a step) and its 1° boxes, each about
    the point's place before the shift, anticlockwise."""
    lats, lons = np.arange(70.5, 90.0, 1.0), np.arange(-179.5, 180.0, 1.0)
    lon0, lat = (a.ravel() for a in np.meshgrid(lons, lats))
    lon = lon0 + np.random.default_rng(1).uniform(-0.1, 0.1, len(lon0))
    west, east, south, north = lon0 - 0.5, lon0 + 0.5, lat - 0.5, lat + 0.5
    return lon, lat, np.stack([west, east, east, west], axis=1), np.stack([south, south, north, north], axis=1)


def test_a_grid_gets_the_cells_its_description_declares():
    """The grid too uneven for a tessellation, with its boxes declared: taken as they are, each box's
    area that of its corners' polygon in the EASE-Grid 2.0 plane (straight edges: to 1e-4 of the box
    between its parallels, whose arcs bow out of the chords by under 0.1 km); grid_cells gives them for
    these coordinates until the declaration is withdrawn, then none again."""
    lon, lat, lon_b, lat_b = _uneven_grid_and_boxes()
    cells = gc.declared_cells(lon, lat, lon_b, lat_b, None)
    assert cells.method.endswith(
        "its area that of its corners' polygon in the EASE-Grid 2.0 plane of its hemisphere (equal-area)"
    )
    np.testing.assert_array_equal(cells.lon_bounds, lon_b)
    np.testing.assert_array_equal(cells.lat_bounds, lat_b)
    by_row = {la: _densified_box_area(0.0, 1.0, la - 0.5, la + 0.5) for la in np.unique(lat)}
    np.testing.assert_allclose(cells.area_m2, [by_row[la] for la in lat], rtol=1e-4)
    try:
        gc.declare(lon, lat, cells)
        assert gc.grid_cells(lon, lat) is cells
        assert gc.grid_cells(lon.astype(np.float32), lat.astype(np.float32)) is None  # other coordinates
    finally:
        gc.declare(lon, lat, None)
    assert gc.grid_cells(lon, lat) is None
    given = gc.declared_cells(lon, lat, lon_b, lat_b, 1.01 * cells.area_m2)  # the file's areas are kept
    np.testing.assert_array_equal(given.area_m2, 1.01 * cells.area_m2)


def test_declared_cells_are_put_anticlockwise_their_repeats_last_by_hand():
    """A cell listed clockwise, its last corner repeated, (0, 60) (0, 61) (1, 61) (1, 60) (1, 60), is read
    backwards with the repeat kept last: (1, 60) (1, 61) (0, 61) (0, 60) (0, 60) (east, north, west,
    south: anticlockwise seen from above); an anticlockwise one is kept as given."""
    lon_b = np.array([[0.0, 0.0, 1.0, 1.0, 1.0], [2.0, 3.0, 3.0, 2.0, 2.0]])
    lat_b = np.array([[60.0, 61.0, 61.0, 60.0, 60.0], [60.0, 60.0, 61.0, 61.0, 61.0]])
    cells = gc.declared_cells(np.array([0.5, 2.5]), np.array([60.5, 60.5]), lon_b, lat_b, None)
    np.testing.assert_array_equal(cells.lon_bounds, [[1.0, 1.0, 0.0, 0.0, 0.0], lon_b[1]])
    np.testing.assert_array_equal(cells.lat_bounds, [[60.0, 61.0, 61.0, 60.0, 60.0], lat_b[1]])
    assert cells.area_m2[0] == pytest.approx(cells.area_m2[1], rel=1e-12)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda b, a: (b[0] + 1.0, b[1], a), "outside their cells"),  # another grid's cells (a step east)
        (lambda b, a: (b[0][::-1], b[1][::-1], a), "outside their cells"),  # the points in another order
        (lambda b, a: (b[0], b[1], a / 1e6), "times the area of their corners: give them in m²"),  # km²
        (lambda b, a: (b[0].T, b[1].T, a), "expected the corners as"),
        (lambda b, a: (b[0][:, :2], b[1][:, :2], a), "3 or more"),
        (lambda b, a: (b[0], np.where(b[1] > 89.9, 91.0, b[1]), a), "outside \\[-90, 90\\]"),
        (lambda b, a: (b[0], b[1], -a), "positive values"),
    ],
)
def test_declared_cells_that_do_not_fit_the_grid_are_refused(change, message):
    lon, lat, lon_b, lat_b = _uneven_grid_and_boxes()
    area = gc.declared_cells(lon, lat, lon_b, lat_b, None).area_m2
    with pytest.raises(ValueError, match=message):
        gc.declared_cells(lon, lat, *change((lon_b, lat_b), area))
