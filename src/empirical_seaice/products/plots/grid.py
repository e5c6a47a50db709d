"""The map plane: grid points projected onto EASE-Grid 2.0, placed on a regular raster, and land.

Maps are drawn on the EASE-Grid 2.0 plane (Lambert azimuthal equal-area,
EPSG:6931 north / 6932 south by the hemisphere of the grid, through
:mod:`pyproj`): every grid cell is filled (``pcolormesh`` on a raster one grid
spacing wide, :func:`rasterise`); land and the coastline come from the GLOBE
land mask of the ``global-land-mask`` package, reduced to 1/12 degree and
shipped with this package (:mod:`empirical_seaice.products.coastline`; nothing
is downloaded).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from empirical_seaice.io.grid_cells import EPSG_NORTH, EPSG_SOUTH, ease2_xy, grid_cells, nearest_distance


def projected_xy(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """EASE-Grid 2.0 coordinates (km) of the grid points (Lambert azimuthal equal-area).

    EPSG:6931 (north) when the mean latitude is >= 0, else EPSG:6932 (south).
    The twin's grid is regular in this projection, so its cells map one to one
    onto the raster of :func:`rasterise`.

    Returns
    -------
    x_km, y_km : float64 arrays
    epsg : int
    """
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    epsg = EPSG_NORTH if np.nanmean(lat) >= 0 else EPSG_SOUTH
    x, y = ease2_xy(epsg, lon, lat)
    return x / 1000.0, y / 1000.0, epsg


def grid_spacing_km(x_km: np.ndarray, y_km: np.ndarray) -> float:
    """Median nearest-neighbour distance (km) of the points with finite coordinates (100 km for fewer than
    two, or where most points coincide)."""
    from scipy.spatial import cKDTree

    pts = np.column_stack([x_km, y_km])
    pts = pts[np.isfinite(pts).all(axis=1)]
    spacing = float(np.median(nearest_distance(cKDTree(pts)))) if len(pts) >= 2 else 0.0
    return spacing if spacing > 0 else 100.0


@dataclass
class MapGrid:
    """The grid points on a regular raster of the projected plane.

    x_edges, y_edges : raster cell edges (km); cell (i, j) spans y_edges[i:i+2], x_edges[j:j+2].
    index : (ny, nx) grid point drawn in each raster cell, -1 where none (land, outside).
    spacing_km : raster cell size = the grid spacing.
    epsg : projection.
    """

    x_edges: np.ndarray
    y_edges: np.ndarray
    index: np.ndarray
    spacing_km: float
    epsg: int

    def fill(self, values: np.ndarray) -> np.ma.MaskedArray:
        """Per-grid-point ``values`` (ngrid,) as a masked raster (ny, nx); NaN and empty cells masked."""
        v = np.asarray(values, dtype=np.float64)
        out = np.where(self.index >= 0, v[np.maximum(self.index, 0)], np.nan)
        return np.ma.masked_invalid(out)

    @property
    def cell_area_km2(self) -> float:
        """Area of one cell: the grid is equal-area, each point stands for spacing^2."""
        return self.spacing_km**2


def rasterise(lon: np.ndarray, lat: np.ndarray) -> MapGrid:
    """Place the grid points on a regular raster of cells one grid spacing wide.

    Each raster cell takes the nearest grid point whose cell (the files' cells,
    :func:`empirical_seaice.io.grid_cells.grid_cells`) reaches its centre: the
    spacing is the square root of the cells' median area, a point's reach the
    distance from it to its farthest corner. A regular EASE grid thus maps
    exactly (one point per cell, no gaps), another grid is drawn as a
    nearest-neighbour mosaic, and a longitude-latitude grid near the pole (rows
    far apart, points close along them) has no empty stripes between its rows.
    Where the grid has no cells: the median nearest-neighbour distance and 0.75
    of it.
    """
    from scipy.spatial import cKDTree

    x, y, epsg = projected_xy(lon, lat)
    cells = grid_cells(np.asarray(lon, np.float32), np.asarray(lat, np.float32))
    if cells is not None:
        cx, cy = ease2_xy(epsg, cells.lon_bounds, cells.lat_bounds)
        spacing = float(np.sqrt(np.median(cells.area_m2))) / 1000.0
        reach = np.hypot(cx / 1000.0 - x[:, None], cy / 1000.0 - y[:, None]).max(axis=1)
    else:
        spacing = grid_spacing_km(x, y)
        reach = np.full(len(x), 0.75 * spacing)
    ok = np.isfinite(x) & np.isfinite(y)
    xs, ys = x[ok], y[ok]
    # raster centres aligned on the first point: a regular lattice falls exactly on them
    x0 = xs.min()
    nx = int(np.round((xs.max() - x0) / spacing)) + 1
    ny = int(np.round((ys.max() - ys.min()) / spacing)) + 1
    xc = x0 + spacing * np.arange(nx)
    yc = ys.min() + spacing * np.arange(ny)
    gx, gy = np.meshgrid(xc, yc)
    dist, near = cKDTree(np.column_stack([xs, ys])).query(np.column_stack([gx.ravel(), gy.ravel()]))
    idx = np.flatnonzero(ok)[near]
    idx = np.where(dist <= reach[idx] * (1 + 1e-9), idx, -1).reshape(ny, nx)
    x_edges = np.concatenate([xc - spacing / 2, [xc[-1] + spacing / 2]])
    y_edges = np.concatenate([yc - spacing / 2, [yc[-1] + spacing / 2]])
    return MapGrid(x_edges, y_edges, idx, float(spacing), epsg)


_LAND_CACHE: dict[tuple, np.ndarray] = {}


def map_extent(grid: MapGrid, pad_km: float) -> tuple[float, float]:
    """A square map extent centred on the pole that holds every cell (km): the whole polar cap,
    not only the grid's bounding box (a grid that ends at a coast would cut the land off)."""
    r = max(abs(grid.x_edges[0]), abs(grid.x_edges[-1]), abs(grid.y_edges[0]), abs(grid.y_edges[-1])) + pad_km
    return -r, r


def land_raster(grid: MapGrid, pad_km: float, step_km: float | None = None):
    """Land (True) on a fine raster of the map area, from the GLOBE land mask of the
    ``global-land-mask`` package reduced to 1/12 degree and shipped here
    (:mod:`empirical_seaice.products.coastline`; nothing is downloaded).

    Returns x_centres (km), y_centres (km), land (ny, nx) bool.
    """
    import pyproj

    from empirical_seaice.products.coastline import is_land

    x_lo, x_hi = map_extent(grid, pad_km)
    y_lo, y_hi = x_lo, x_hi
    step = step_km or max(9.0, max(x_hi - x_lo, y_hi - y_lo) / 600.0)
    xc = np.arange(x_lo, x_hi + step, step)
    yc = np.arange(y_lo, y_hi + step, step)
    key = (grid.epsg, round(x_lo), round(x_hi), round(y_lo), round(y_hi), round(step, 3))
    if key not in _LAND_CACHE:
        gx, gy = np.meshgrid(xc, yc)
        tr = pyproj.Transformer.from_crs(grid.epsg, 4326, always_xy=True)
        lon, lat = tr.transform(gx.ravel() * 1e3, gy.ravel() * 1e3)
        lon, lat = np.asarray(lon), np.asarray(lat)
        good = np.isfinite(lon) & np.isfinite(lat)
        land = np.zeros(lon.size, dtype=bool)
        land[good] = is_land(lat[good], lon[good])
        _LAND_CACHE.clear()  # one map area at a time
        _LAND_CACHE[key] = land.reshape(gy.shape)
    return xc, yc, _LAND_CACHE[key]


__all__ = [
    "EPSG_NORTH",
    "EPSG_SOUTH",
    "projected_xy",
    "grid_spacing_km",
    "MapGrid",
    "rasterise",
    "map_extent",
    "land_raster",
]
