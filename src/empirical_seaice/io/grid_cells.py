"""The cells of the grid: corners and areas of the region each grid point stands for.

The outputs on the grid carry them as CF cell bounds (``lon_bnds``, ``lat_bnds``) and cell measures
(``cell_area``), so that tools which need cells can use the files: CDO's ``gridarea``, its
area-weighted ``fldmean`` and ``fldsum`` and its conservative remapping (``remapcon``), and the sea
ice extent and area from ``cell_area``.

Where the grid description gives its cells (CF bounds and ``cell_area``, read by
:func:`empirical_seaice.io.reader.read_declared_cells`, checked by :func:`declared_cells`), the reader
passes them to :func:`declare` and :func:`grid_cells` returns those. Otherwise they are drawn here.
On a grid of latitude rows (longitude-latitude, Gaussian, reduced Gaussian: :func:`_latitude_row_boxes`)
a grid point's cell is its box between the midpoints to the next points and rows, its area the WGS84
ellipsoid's (:func:`zone_area_factor`). On any other grid it is its **Voronoi cell in the EASE-Grid
2.0 plane** of its hemisphere (Lambert azimuthal equal-area on WGS84, EPSG:6931 north of the equator,
EPSG:6932 south): the part of the plane nearer to it than to any other point of the grid. The
projection is equal-area, so a cell's area (m²) is the area of its polygon in the plane (the shoelace formula
``A = ½ |Σ_i x_i y_{i+1} − x_{i+1} y_i|``), and its corners are the polygon's vertices projected
back to longitude and latitude. At the edge of the grid (the coast, the domain's limit) the cell is
closed at half the grid's spacing ``s``: before the tessellation, points are added wherever a grid
point's neighbour at ``s`` along the eight directions of a square lattice is missing (no grid point
within ``0.75 s``), and their own cells are dropped. On the plane's square lattice (the twin's
grid, EASE-Grid 2.0 data) the cells are thus the squares of side ``s`` about the points, written
without a tessellation. On another lattice (90 % of the points have their nearest neighbour at the
median nearest distance, to 0.1 %) ``s`` is that distance, and every point is tested; otherwise a
first tessellation of the grid's points alone gives ``s`` (the square root of the median area of its
compact cells) and the points at the edge (those whose cell is open or reaches farther than 0.9
``s``), and only those are. A grid regular in EASE-Grid 2.0 thus has square cells of side ``s`` and
area ``s²`` everywhere, its edge included; another grid has the cells of its tessellation, closed at
``s/2`` from its edge.

Corners are listed anticlockwise seen from above (CF); a cell with fewer corners than the file's
``vertices`` dimension repeats its last corner.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

EPSG_NORTH = 6931
"""EASE-Grid 2.0 North (Lambert azimuthal equal-area)."""
EPSG_SOUTH = 6932
"""EASE-Grid 2.0 South."""

GHOST_CLEARANCE = 0.75
"""A closing point is added where no grid point lies within this many spacings."""

EDGE_REACH = 0.9
"""A point whose cell among the grid's points reaches farther than this many spacings is at the edge
(a lattice's inner point reaches 0.71, one beside a missing point 1.0)."""

LATTICE_TOLERANCE = 1e-3
"""A grid on the plane's square lattice (:func:`_square_lattice_side`, to this fraction of a side) has its
squares for cells, without a tessellation. Another grid is a lattice where 90 % of its points have their
nearest neighbour within this fraction of the median nearest distance: its spacing is that distance,
and every point may be at its edge (no first tessellation: a lattice's co-circular points make it
slow)."""

ROW_TOLERANCE = 1e-3
"""A grid's latitude rows are equally spaced in longitude to this fraction of a step
(:func:`_latitude_row_boxes`)."""

MAX_EDGE_FRACTION = 0.5
"""More of a grid's points than this at its edge for the tessellation (:func:`_spacing_and_edge`; on a
grid of 100 points or more, :data:`EDGE_CHECK_MIN_POINTS`) means the grid is too uneven for it (its
closing points would fall between the points): no cells are written. A jittered 30 x 30 lattice has
14 %; a longitude-latitude grid with its longitudes off by up to 0.1 of a step (not rows), 100 %."""
EDGE_CHECK_MIN_POINTS = 100

MERGE_FRACTION = 1e-3
"""Consecutive corners of a cell nearer than this many spacings are one corner (the tessellation of a
regular lattice meets four cells at a corner, which it may split into near-coincident vertices)."""

_SQUARE = np.array([(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)])
"""The corners of a square cell about its point, in half-sides, anticlockwise."""

_DIRECTIONS = np.array([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)], dtype=np.float64)


@dataclass(frozen=True)
class GridCells:
    """The cells of a grid of ``n`` points.

    lon_bounds, lat_bounds : float64 (n, nvertex), degrees: the corners, anticlockwise, the last one
        repeated where a cell has fewer than ``nvertex``.
    area_m2 : float64 (n,), the cell's area (m²).
    method : what a cell is and where its area comes from, in words (the files' ``cell_area`` comment).
    """

    lon_bounds: np.ndarray
    lat_bounds: np.ndarray
    area_m2: np.ndarray
    method: str = (
        "the grid point's Voronoi cell in the EASE-Grid 2.0 plane of its hemisphere (equal-area), closed at half "
        "the grid's spacing at its edge"
    )

    @property
    def nvertex(self) -> int:
        return int(self.lon_bounds.shape[1])


def grid_cells(lon, lat) -> GridCells | None:
    """The cells of the grid points at ``lon``, ``lat`` (degrees, (n,)): those :func:`declare` was given
    for these coordinates (the grid description's own), else drawn here; None, with a logged reason,
    where they cannot be drawn (a coordinate not finite, fewer than two points in a hemisphere,
    coincident points). Drawn once for a grid: a later call with the same coordinates returns the
    same object (the last :data:`_CACHE_SIZE` grids are kept)."""
    key = _grid_key(lon, lat)
    if key in _DECLARED:
        return _DECLARED[key]
    if key not in _CACHE:
        while len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))  # the oldest
        _CACHE[key] = _grid_cells(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    return _CACHE[key]


def declare(lon, lat, cells: GridCells | None) -> None:
    """From now on, the cells of the grid at ``lon``, ``lat`` (the values every writer passes: the run's
    float32 coordinates) are ``cells`` (:func:`declared_cells`, from the grid description), not drawn;
    None forgets what was declared. One grid at a time: a declaration replaces the one before (the
    reader declares the cells of every grid it reads, or None)."""
    _DECLARED.clear()
    if cells is not None:
        _DECLARED[_grid_key(lon, lat)] = cells


def _grid_key(lon, lat) -> bytes:
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    return hashlib.blake2b(lon.tobytes() + lat.tobytes(), digest_size=16).digest()


_CACHE: dict[bytes, GridCells | None] = {}
_CACHE_SIZE = 4
"""Grids whose cells are kept: the run's grid and, for the maps of a global one, each hemisphere's."""
_DECLARED: dict[bytes, GridCells] = {}
"""The grid whose cells its description gives (:func:`declare`)."""

AREA_AGREEMENT = 0.2
"""A grid description's ``cell_area`` is taken where its median ratio to the area of the cells' corners
(their polygon in the EASE-Grid 2.0 plane) is within this of 1: a file in km², or areas of other
cells, are refused."""


def declared_cells(
    lon: np.ndarray, lat: np.ndarray, lon_bounds: np.ndarray, lat_bounds: np.ndarray, area_m2: np.ndarray | None
) -> GridCells:
    """The cells a grid description gives (CF bounds, (n, nvertex) degrees; the cell measure ``cell_area``
    (n,) m², or None), checked and put in the order the outputs promise.

    Each grid point must lie inside its cell: the polygon of its corners in the EASE-Grid 2.0 plane of its
    hemisphere (a crossing-number test); that catches bounds of another grid, another order of the
    points or transposed axes. A cell listed clockwise is read backwards (CF's order is anticlockwise
    seen from above), its repeated last corners kept last. Without ``area_m2`` a cell's area is its
    polygon's in the plane (equal-area: ``½ |Σ x_i y_{i+1} − x_{i+1} y_i|``, the edges straight in
    the plane); with it, its median ratio to that must be within :data:`AREA_AGREEMENT` of 1.

    Raises
    ------
    ValueError
        Saying what is wrong (the caller adds the file and the variables).
    """
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    lon_b = np.asarray(lon_bounds, dtype=np.float64)
    lat_b = np.asarray(lat_bounds, dtype=np.float64)
    n = len(lon)
    if lon_b.ndim != 2 or lon_b.shape != lat_b.shape or lon_b.shape[0] != n or lon_b.shape[1] < 3:
        raise ValueError(f"expected the corners as (grid points, vertices) = ({n}, 3 or more), got {lon_b.shape}")
    if not (np.isfinite(lon_b).all() and np.isfinite(lat_b).all()) or np.abs(lat_b).max() > 90.0:
        raise ValueError("corners missing (NaN) or latitudes outside [-90, 90]")
    twice = np.empty(n)
    inside = np.empty(n, dtype=bool)
    for _, epsg, rows in hemispheres(lat):
        x, y = ease2_xy(epsg, lon_b[rows], lat_b[rows])
        px, py = (v[:, None] for v in ease2_xy(epsg, lon[rows], lat[rows]))
        nx, ny = np.roll(x, -1, axis=1), np.roll(y, -1, axis=1)
        twice[rows] = (x * ny - nx * y).sum(axis=1)
        crosses = (y > py) != (ny > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x + (py - y) * (nx - x) / (ny - y)
        inside[rows] = (crosses & (px < x_at)).sum(axis=1) % 2 == 1
    if not inside.all():
        i = int(np.flatnonzero(~inside)[0])
        raise ValueError(
            f"{int((~inside).sum())} of {n} grid points outside their cells (e.g. point {i} at {lon[i]:g}E "
            f"{lat[i]:g}N); the corners must be those of these points, in their order"
        )
    plane_area = np.abs(twice) / 2
    if area_m2 is None:
        area = plane_area
    else:
        area = np.asarray(area_m2, dtype=np.float64)
        if area.shape != (n,) or not (np.isfinite(area).all() and (area > 0).all()):
            raise ValueError(f"cell areas must be {n} positive values, one per grid point")
        ratio = float(np.median(area / plane_area))
        if abs(ratio - 1) > AREA_AGREEMENT:
            raise ValueError(f"cell areas {ratio:.3g} times the area of their corners: give them in m²")
    nvertex = lon_b.shape[1]
    same = (lon_b[:, 1:] == lon_b[:, :-1]) & (lat_b[:, 1:] == lat_b[:, :-1])
    repeats = np.cumprod(same[:, ::-1], axis=1).sum(axis=1)  # the last corner's repeats at the end
    order = _anticlockwise_order(twice, nvertex - 1 - repeats, nvertex)
    rows = np.arange(n)[:, None]
    method = "the cell of the grid description's CF bounds, its area " + (
        "the description's cell_area"
        if area_m2 is not None
        else "that of its corners' polygon in the EASE-Grid 2.0 plane of its hemisphere (equal-area)"
    )
    return GridCells(lon_bounds=lon_b[rows, order], lat_bounds=lat_b[rows, order], area_m2=area, method=method)


def hemispheres(lat) -> list[tuple[str, int, np.ndarray]]:
    """The grid's points by hemisphere: ("north", EPSG:6931, rows of latitude >= 0) and ("south",
    EPSG:6932, rows of latitude < 0), those with points, north first. Each has its own EASE-Grid 2.0
    plane (cells, map panels) and its own ice (the report's extent and area): one plane for both would
    smear the other pole's ice along the rim, one sum would add a maximum to a minimum."""
    return [(name, epsg, np.flatnonzero(mask)) for name, epsg, mask in _hemisphere_parts(lat) if mask.any()]


def global_hemispheres(lat) -> list[tuple[str, np.ndarray]]:
    """On a grid with points in both hemispheres (a global one), each hemisphere's points as a mask over
    the grid, ("north", latitude >= 0) then ("south", latitude < 0); empty for a grid of one hemisphere
    or without coordinates. What a global grid's summary scores and held-out costs split by."""
    if lat is None:
        return []
    parts = [(name, mask) for name, _, mask in _hemisphere_parts(lat)]
    return parts if all(mask.any() for _, mask in parts) else []


def _hemisphere_parts(lat) -> list[tuple[str, int, np.ndarray]]:
    lat = np.asarray(lat, dtype=np.float64)
    return [("north", EPSG_NORTH, lat >= 0), ("south", EPSG_SOUTH, lat < 0)]


def _grid_cells(lon: np.ndarray, lat: np.ndarray) -> GridCells | None:
    if lon.shape != lat.shape or lon.ndim != 1 or not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        log.info("no grid cells in the outputs: the grid's longitudes and latitudes are not all known")
        return None
    boxes = _latitude_row_boxes(lon, lat)
    if boxes is not None:
        return boxes
    parts = []
    for _, epsg, rows in hemispheres(lat):
        x, y = ease2_xy(epsg, lon[rows], lat[rows])
        polygons = _voronoi_polygons(np.column_stack([x, y]))
        if polygons is None:
            return None
        corners, area = polygons
        clon, clat = _unproject(epsg, corners[..., 0], corners[..., 1])
        parts.append((rows, clon, clat, area))
    nvertex = max(p[1].shape[1] for p in parts)
    lon_b = np.empty((len(lon), nvertex))
    lat_b = np.empty((len(lon), nvertex))
    area = np.empty(len(lon))
    for rows, clon, clat, a in parts:
        pad = np.minimum(np.arange(nvertex), clon.shape[1] - 1)  # the other hemisphere's cells may have more
        lon_b[rows] = clon[:, pad]
        lat_b[rows] = clat[:, pad]
        area[rows] = a
    return GridCells(lon_bounds=lon_b, lat_bounds=lat_b, area_m2=area)


WGS84_A = 6378137.0
"""WGS84 semi-major axis (m)."""
WGS84_E2 = 6.69437999014e-3
"""WGS84 first eccentricity squared, e² = f (2 − f), f = 1 / 298.257223563."""


def zone_area_factor(lat_deg: np.ndarray) -> np.ndarray:
    """q(φ) of the ellipsoid's area between latitudes (Snyder 1987, eq. 3-12), dimensionless:

    q(φ) = (1 − e²) [sin φ / (1 − e² sin² φ) − 1 / (2e) ln((1 − e sin φ) / (1 + e sin φ))],

    so that the area (m²) between latitudes φ1 < φ2 over Δλ radians of longitude is
    A = a² Δλ (q(φ2) − q(φ1)) / 2 (on a sphere, e → 0: q = 2 sin φ, A = a² Δλ (sin φ2 − sin φ1)).
    WGS84: a = :data:`WGS84_A`, e² = :data:`WGS84_E2`."""
    e = np.sqrt(WGS84_E2)
    s = np.sin(np.radians(np.asarray(lat_deg, dtype=np.float64)))
    return (1.0 - WGS84_E2) * (s / (1.0 - WGS84_E2 * s * s) - np.log((1.0 - e * s) / (1.0 + e * s)) / (2.0 * e))


def _latitude_row_boxes(lon: np.ndarray, lat: np.ndarray) -> GridCells | None:
    """The cells of a grid of latitude rows (a regular longitude-latitude grid, a Gaussian or reduced
    Gaussian grid such as the weather model's, or any part of one), or None for another grid.

    A grid of rows: at least three points a row on average, and in every row of two points or more the
    longitudes a whole number of one step apart (to :data:`ROW_TOLERANCE` of a step; the step the
    smallest gap, around the circle too). A point's cell is the box from ``lon − step/2`` to
    ``lon + step/2`` (a row of one point takes the step of the nearest row of two or more) and from
    the midpoint with the row below to the midpoint with the row above (half the median row spacing
    where the next row is more than 1.5 of it away, at the grid's edge; within ±90°); its area the
    ellipsoid's between those latitudes and longitudes (:func:`zone_area_factor`), its corners
    anticlockwise from the south-west one."""
    key = np.round(lat, 6)
    row_lat, row = np.unique(key, return_inverse=True)
    nrow = len(row_lat)
    if nrow < 1 or len(lon) < 3 * nrow:
        return None
    order = np.argsort(row, kind="stable")
    starts = np.searchsorted(row[order], np.arange(nrow))
    ends = np.append(starts[1:], len(order))
    step = np.full(nrow, np.nan)
    for r in range(nrow):
        members = np.sort(np.mod(lon[order[starts[r] : ends[r]]], 360.0))
        if len(members) < 2:
            continue
        gaps = np.append(np.diff(members), members[0] + 360.0 - members[-1])
        smallest = float(gaps.min())
        if smallest <= 1e-6:
            return None
        offset = (members - members[0]) / smallest
        if np.abs(offset - np.round(offset)).max() > ROW_TOLERANCE:
            return None
        step[r] = smallest
    known = np.flatnonzero(np.isfinite(step))
    if len(known) == 0:
        return None
    lone = np.flatnonzero(~np.isfinite(step))
    if len(lone):
        nearest = known[np.abs(row_lat[known][None, :] - row_lat[lone][:, None]).argmin(axis=1)]
        step[lone] = step[nearest]
    spacing = np.diff(row_lat)
    typical = float(np.median(spacing)) if len(spacing) else 1.0
    close = spacing <= 1.5 * typical
    below = np.append(typical, np.where(close, spacing, typical))
    above = np.append(np.where(close, spacing, typical), typical)
    south = np.clip(row_lat - 0.5 * below, -90.0, 90.0)[row]
    north = np.clip(row_lat + 0.5 * above, -90.0, 90.0)[row]
    half = 0.5 * step[row]
    west, east = lon - half, lon + half
    area = WGS84_A**2 * np.radians(2.0 * half) * (zone_area_factor(north) - zone_area_factor(south)) / 2.0
    return GridCells(
        lon_bounds=np.column_stack([west, east, east, west]),
        lat_bounds=np.column_stack([south, south, north, north]),
        area_m2=area,
        method="the grid point's box in its latitude row, between the midpoints to its neighbours and to the rows "
        "beside it, its area on the WGS84 ellipsoid",
    )


def ease2_xy(epsg: int, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EASE-Grid 2.0 coordinates (m) of ``lon``, ``lat`` (degrees)."""
    import pyproj

    x, y = pyproj.Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def _unproject(epsg: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude (degrees) of EASE-Grid 2.0 coordinates ``x``, ``y`` (m), any shape."""
    import pyproj

    lon, lat = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True).transform(x.ravel(), y.ravel())
    return np.asarray(lon).reshape(x.shape), np.asarray(lat).reshape(x.shape)


def nearest_distance(tree) -> np.ndarray:
    """Distance from each point of ``tree`` (a :class:`scipy.spatial.cKDTree` of n >= 2 points) to its
    nearest other point (the tree's units)."""
    d, _ = tree.query(tree.data, k=2)
    return d[:, 1]


@dataclass(frozen=True)
class _Polygons:
    """Polygons stored flat: the corners ``xy`` (m, 2) of polygon ``k`` are rows ``start[k]`` to
    ``start[k] + length[k]``, in order around it (either way)."""

    xy: np.ndarray
    length: np.ndarray

    @classmethod
    def of_regions(cls, vertices: np.ndarray, regions: list[list[int]]) -> _Polygons:
        length = np.fromiter((len(r) for r in regions), dtype=np.int64, count=len(regions))
        index = np.fromiter((v for r in regions for v in r), dtype=np.int64, count=int(length.sum()))
        return cls(vertices[index], length)

    @property
    def start(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.length)[:-1]]).astype(np.int64)

    @property
    def owner(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.length)), self.length)

    def shifted(self, step: int) -> np.ndarray:
        """Row of the corner ``step`` (+1 or -1) places on from each corner, around its polygon."""
        k = np.arange(len(self.xy)) - self.start[self.owner]
        return self.start[self.owner] + (k + step) % self.length[self.owner]

    def twice_signed_area(self) -> np.ndarray:
        """The shoelace sums Σ x_i y_{i+1} − x_{i+1} y_i (positive: anticlockwise), one per polygon."""
        nxt = self.shifted(+1)
        cross = self.xy[:, 0] * self.xy[nxt, 1] - self.xy[nxt, 0] * self.xy[:, 1]
        return np.bincount(self.owner, weights=cross, minlength=len(self.length))

    def reach(self, centres: np.ndarray) -> np.ndarray:
        """The largest distance from each polygon's corners to its ``centres`` row (n, 2)."""
        d = np.hypot(*(self.xy - centres[self.owner]).T)
        out = np.zeros(len(self.length))
        np.maximum.at(out, self.owner, d)
        return out

    def merged(self, tolerance: float) -> _Polygons:
        """The polygons without the corners nearer than ``tolerance`` to the corner before them."""
        keep = np.hypot(*(self.xy - self.xy[self.shifted(-1)]).T) > tolerance
        return _Polygons(self.xy[keep], np.bincount(self.owner[keep], minlength=len(self.length)))

    def padded_anticlockwise(self, twice_area: np.ndarray) -> np.ndarray:
        """The corners (n, nvertex, 2), anticlockwise (a clockwise polygon read backwards), padded with
        the last one."""
        order = _anticlockwise_order(twice_area, self.length - 1, int(self.length.max()))
        return self.xy[self.start[:, None] + order]


def _anticlockwise_order(twice_area: np.ndarray, last: np.ndarray, nvertex: int) -> np.ndarray:
    """(n, nvertex) indices of each polygon's corners read anticlockwise: as they are where its shoelace
    sum ``twice_area`` is positive, backwards where negative (clockwise), from corner 0 to ``last`` (n,),
    then ``last`` repeated to pad."""
    j = np.arange(nvertex)[None, :]
    last = np.asarray(last)[:, None]
    return np.where((twice_area < 0)[:, None], np.maximum(last - j, 0), np.minimum(j, last))


def _closing_points(tree, edge: np.ndarray, spacing: float) -> np.ndarray:
    """The points that close the tessellation at the grid's edge: the eight lattice neighbours at
    ``spacing`` of each ``edge`` point of ``tree`` (the grid's points' cKDTree) where no grid point lies
    within :data:`GHOST_CLEARANCE` spacings, one per quarter-spacing bin."""
    candidates = (tree.data[edge, None, :] + spacing * _DIRECTIONS[None]).reshape(-1, 2)
    d, _ = tree.query(candidates)
    candidates = candidates[d > GHOST_CLEARANCE * spacing]
    _, first = np.unique(np.round(candidates / (0.25 * spacing)).astype(np.int64), axis=0, return_index=True)
    return candidates[np.sort(first)]


def _regions(vor, n: int) -> tuple[list[list[int]], np.ndarray]:
    """The Voronoi regions (vertex indices) of the first ``n`` input points, and which are closed."""
    regions = [vor.regions[r] for r in vor.point_region[:n]]
    return regions, np.array([len(r) >= 3 and -1 not in r for r in regions], dtype=bool)


def _spacing_and_edge(points: np.ndarray, nearest: float) -> tuple[float, np.ndarray]:
    """The grid's spacing ``s`` and which of its ``points`` (n, 2) are at its edge, from their Voronoi
    cells among the grid's points alone. ``s`` is the square root of the median area of the compact
    cells (those reaching at most twice ``nearest``, the median nearest-point distance, from their
    point: a lattice's side, also where the lattice is jittered; with none, ``nearest``). A point
    is at the edge where its cell is open or reaches farther than :data:`EDGE_REACH` ``s`` from it (a
    lattice's inner point reaches 0.71 s)."""
    from scipy.spatial import QhullError, Voronoi

    n = len(points)
    everywhere = np.ones(n, dtype=bool)
    if n < 4:
        return nearest, everywhere
    try:
        vor = Voronoi(points)
    except QhullError:  # e.g. every point on a line
        return nearest, everywhere
    regions, closed = _regions(vor, n)
    cells = _Polygons.of_regions(vor.vertices, [r if ok else [] for r, ok in zip(regions, closed, strict=True)])
    reach = np.where(closed, cells.reach(points), np.inf)
    compact = reach <= 2.0 * nearest
    areas = 0.5 * np.abs(cells.twice_signed_area()[compact])
    spacing = float(np.sqrt(np.median(areas))) if compact.any() else nearest
    return spacing, reach > EDGE_REACH * spacing


def _square_lattice_side(points: np.ndarray) -> float | None:
    """The side ``s`` of the plane's square lattice that the grid's ``points`` (n, 2), n >= 2, lie on, or
    None: every point within :data:`LATTICE_TOLERANCE` ``s`` of a node (the nodes from the smallest
    step between the points' distinct x and between their distinct y, the two alike; ``s`` and the
    origin fitted to them by least squares), no two at one node, and 90 % of them with a neighbour one
    node away (the twin's grid; EASE-Grid 2.0 data). Numpy alone: its cells need no tessellation, nor
    scipy."""
    steps = []
    extent = float(np.ptp(points)) or 1.0
    for axis in (0, 1):
        d = np.diff(np.sort(points[:, axis]))
        d = d[d > 1e-6 * extent]  # the same column or row, to the coordinates' rounding
        if d.size == 0:
            return None
        steps.append(float(d.min()))
    if abs(steps[0] - steps[1]) > 0.01 * min(steps):
        return None
    node = np.round((points - points[0]) / min(steps))
    # The side and the origin by least squares (points = origin + side x node): the smallest step alone
    # carries the coordinates' rounding, which grows with the distance from points[0].
    centred = node - node.mean(axis=0)
    side = float(np.sum(centred * (points - points.mean(axis=0))) / max(np.sum(centred**2), 1.0))
    origin = (points - side * node).mean(axis=0)
    if side <= 0.0 or np.abs(points - origin - side * node).max() > LATTICE_TOLERANCE * side:
        return None
    i, j = node[:, 0].astype(np.int64), node[:, 1].astype(np.int64)
    stride = int(j.max() - j.min()) + 3
    key = (i - i.min()) * stride + (j - j.min() + 1)  # one integer a node, j from 1 to stride - 2
    if len(np.unique(key)) < len(key):
        return None
    near = np.zeros(len(key), dtype=bool)
    for step in (stride, -stride, 1, -1):  # the nodes east, west, north, south
        near |= np.isin(key + step, key)
    return side if near.mean() >= 0.9 else None


def _voronoi_polygons(points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The Voronoi cells of ``points`` (n, 2) in an equal-area plane (m), closed at the grid's edge:
    their corners (n, nvertex, 2), anticlockwise, the last repeated where a cell has fewer, and their
    areas (n,) (m²). None, logged, for fewer than two points or coincident points."""
    n = len(points)
    if n < 2:
        log.info("no grid cells in the outputs: a hemisphere of the grid has a single point")
        return None
    side = _square_lattice_side(points)
    if side is not None:  # the tessellation's cells are known: the squares of side s about the points
        return points[:, None, :] + 0.5 * side * _SQUARE[None], np.full(n, side * side)
    from scipy.spatial import QhullError, Voronoi, cKDTree  # 0.2-0.4 s to import where nothing else has

    tree = cKDTree(points)
    nearest = nearest_distance(tree)
    if nearest.min() <= 0.0:
        log.info("no grid cells in the outputs: the grid has coincident points")
        return None
    typical = float(np.median(nearest))
    lattice = np.mean(np.abs(nearest - typical) <= LATTICE_TOLERANCE * typical) >= 0.9
    if lattice:
        spacing, edge = typical, np.ones(n, dtype=bool)
    else:
        spacing, edge = _spacing_and_edge(points, typical)
        if n >= EDGE_CHECK_MIN_POINTS and edge.mean() > MAX_EDGE_FRACTION:
            log.info(
                "no grid cells in the outputs: %.0f %% of the grid's points are at its edge for the tessellation "
                "(a grid much finer in one direction than in the other, not in latitude rows)",
                100 * edge.mean(),
            )
            return None
    try:
        vor = Voronoi(np.vstack([points, _closing_points(tree, edge, spacing)]))
    except QhullError as exc:
        log.info("no grid cells in the outputs: the tessellation failed (%s)", str(exc).splitlines()[0])
        return None
    regions, closed = _regions(vor, n)
    if not closed.all():
        log.info("no grid cells in the outputs: a grid point's cell is not closed")
        return None
    cells = _Polygons.of_regions(vor.vertices, regions).merged(MERGE_FRACTION * spacing)
    twice = cells.twice_signed_area()
    return cells.padded_anticlockwise(twice), 0.5 * np.abs(twice)


__all__ = [
    "GridCells",
    "grid_cells",
    "declare",
    "declared_cells",
    "hemispheres",
    "global_hemispheres",
    "nearest_distance",
    "ease2_xy",
    "zone_area_factor",
    "EPSG_NORTH",
    "EPSG_SOUTH",
    "WGS84_A",
    "WGS84_E2",
]
