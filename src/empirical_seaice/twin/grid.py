"""Equal-area polar grid of the synthetic twin (ocean points only).

The grid is the EASE-Grid 2.0 projection (Lambert azimuthal equal-area on
WGS84; EPSG:6931 north, EPSG:6932 south) sampled at a regular spacing in
x/y (km), restricted to points poleward of a latitude limit and over the
ocean according to the ``global_land_mask`` library (GLOBE 1 km land mask,
shipped with the package: nothing is downloaded at run time).

Examples
--------
>>> grid = make_grid("north", resolution_km=100.0, lat_limit_deg=60.0)
>>> grid.ngrid > 1000, float(grid.lat.min()) > 60.0
(True, True)
"""

from __future__ import annotations

import importlib.util
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from empirical_seaice.errors import SeaIceError

EASE2_EPSG = {"north": 6931, "south": 6932}
"""EPSG codes of the EASE-Grid 2.0 polar projections."""

HEMISPHERES = tuple(EASE2_EPSG)

ICE_SHELF_LAT_DEG = 78.0
"""Southern points poleward of this latitude (degrees S) are ice shelves, not sea: dropped."""


@dataclass(frozen=True)
class PolarGrid:
    """Ocean points of an equal-area polar grid.

    Attributes
    ----------
    hemisphere : str
        ``"north"`` or ``"south"``.
    resolution_km : float
        Grid spacing (km); every point represents resolution_km**2 of area.
    x_km, y_km : float64 arrays (ngrid,)
        Projected coordinates (km) of the point centres, pole at (0, 0).
    lon, lat : float64 arrays (ngrid,)
        Geographic coordinates (degrees east, degrees north).
    """

    hemisphere: str
    resolution_km: float
    x_km: np.ndarray
    y_km: np.ndarray
    lon: np.ndarray
    lat: np.ndarray

    @property
    def ngrid(self) -> int:
        return int(self.x_km.shape[0])

    @property
    def r_km(self) -> np.ndarray:
        """Distance from the pole in the projection plane (km)."""
        return np.hypot(self.x_km, self.y_km)

    @property
    def cell_area_km2(self) -> float:
        return float(self.resolution_km) ** 2


def make_grid(hemisphere: str, resolution_km: float, lat_limit_deg: float = 50.0) -> PolarGrid:
    """Build the ocean points of an EASE-2-style grid poleward of ``lat_limit_deg``.

    Parameters
    ----------
    hemisphere : {"north", "south"}
    resolution_km : float
        Grid spacing (km), 10 to 200.
    lat_limit_deg : float
        Absolute latitude (degrees) equatorward limit of the domain, 30 to 85.

    Raises
    ------
    SeaIceError
        Unknown hemisphere or a resolution / latitude limit out of range.
    """
    if hemisphere not in EASE2_EPSG:
        raise SeaIceError(f"--hemisphere: expected one of {', '.join(HEMISPHERES)}, got {hemisphere!r}")
    if not 10.0 <= resolution_km <= 200.0:
        raise SeaIceError(f"resolution_km: expected 10 to 200 km, got {resolution_km}")
    if not 30.0 <= lat_limit_deg <= 85.0:
        raise SeaIceError(f"lat_limit_deg: expected 30 to 85 degrees, got {lat_limit_deg}")
    # Radius of the latitude limit on a sphere of the authalic radius, plus a margin.
    import pyproj

    r_max_km = 2.0 * 6371.0 * np.sin(np.deg2rad(90.0 - lat_limit_deg) / 2.0) + 2 * resolution_km
    n = int(np.ceil(r_max_km / resolution_km))
    centres = (np.arange(-n, n) + 0.5) * resolution_km
    y2, x2 = np.meshgrid(centres[::-1], centres, indexing="ij")  # row-major, north up
    x = x2.ravel()
    y = y2.ravel()
    to_geo = pyproj.Transformer.from_crs(f"EPSG:{EASE2_EPSG[hemisphere]}", "EPSG:4326", always_xy=True)
    lon, lat = to_geo.transform(x * 1e3, y * 1e3)
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    inside = np.abs(lat) > lat_limit_deg if hemisphere == "north" else lat < -lat_limit_deg
    inside &= np.isfinite(lat)
    if hemisphere == "north":
        inside &= lat > 0
    else:
        # The mask counts the Ross and Filchner-Ronne ice shelves as water; no sea ice there.
        inside &= lat > -ICE_SHELF_LAT_DEG
    keep = np.flatnonzero(inside)
    keep = keep[is_ocean(lat[keep], lon[keep])]
    return PolarGrid(hemisphere, float(resolution_km), x[keep], y[keep], lon[keep], lat[keep])


MASK_MEMBER = "mask.npy"
"""The land mask's member in ``global_land_mask``'s file (with ``lat.npy`` and ``lon.npy``, its axes)."""
MASK_ROWS = 1024
"""Rows of the land mask (43,200 bytes each) decompressed at a time by :func:`is_ocean` (44 MB)."""


def _mask_file() -> Path | None:
    """``global_land_mask``'s mask file (``globe_combined_mask_compressed.npz``), found without importing the
    package (whose import loads the whole mask), or None."""
    spec = importlib.util.find_spec("global_land_mask")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "globe_combined_mask_compressed.npz"
    return path if path.is_file() else None


def _node_index(x: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """The mask's row (latitude) or column (longitude) of each ``x`` (degrees), as ``global_land_mask.globe``'s
    ``lat_to_index`` / ``lon_to_index`` compute it: ``x`` clamped to the nodes' range, ``(x - nodes[0]) /
    (nodes[1] - nodes[0])`` truncated to an integer."""
    x = np.clip(np.asarray(x, dtype=np.float64), nodes.min(), nodes.max())
    return ((x - nodes[0]) / (nodes[1] - nodes[0])).astype("int")


def is_ocean(lat, lon) -> np.ndarray:
    """Whether each point (``lat``, ``lon``: degrees, 1-D) is ocean in the GLOBE 1 km land mask of the
    ``global_land_mask`` package: its ``globe.is_ocean(lat, lon)``, the same values, but without loading the
    mask whole. The package's import inflates its 21,600 x 43,200 mask into memory (0.9 GB, 1.7-3.4 s here);
    this reads the compressed file :data:`MASK_ROWS` rows at a time, keeps the points' bits and stops after
    the last row a point needs (north to south: the northern cap is the first third). A seaice-twin of the
    ``demo`` preset peaked at 1.38 GB with the package's import, 0.5 GB without. Where the file is not laid out
    as expected (another version of the package), the package's own function is used. The grid's ocean points
    and the realistic twin's land neighbours (:mod:`empirical_seaice.twin.realism`) come from here."""
    path = _mask_file()
    lat, lon = np.atleast_1d(np.asarray(lat, np.float64)), np.atleast_1d(np.asarray(lon, np.float64))
    if path is not None:
        fmt = np.lib.format
        with zipfile.ZipFile(path) as z, z.open(MASK_MEMBER) as member:
            lat_nodes, lon_nodes = (fmt.read_array(z.open(f"{name}.npy")) for name in ("lat", "lon"))  # the axes
            version = fmt.read_magic(member)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = read_header(member)
            if shape == (lat_nodes.size, lon_nodes.size) and not fortran and dtype == np.dtype(bool):
                return _streamed_bits(member, shape[1], _node_index(lat, lat_nodes), _node_index(lon, lon_nodes))
    from global_land_mask import globe  # pragma: no cover - another layout of the package's file

    return np.asarray(globe.is_ocean(lat, lon), dtype=bool)  # pragma: no cover


def _streamed_bits(member, ncol: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``mask[rows, cols]`` of the C-order boolean mask whose bytes ``member`` (a file) reads from here, one
    :data:`MASK_ROWS` rows at a time, up to the last row asked for."""
    out = np.zeros(rows.size, dtype=bool)
    order = np.argsort(rows, kind="stable")
    ends = np.searchsorted(rows[order], np.arange(MASK_ROWS, int(rows.max(initial=-1)) + MASK_ROWS + 1, MASK_ROWS))
    start = 0
    for k, end in enumerate(ends):
        block = np.frombuffer(member.read(MASK_ROWS * ncol), dtype=bool).reshape(-1, ncol)
        at = order[start:end]
        out[at] = block[rows[at] - k * MASK_ROWS, cols[at]]
        start = end
    return out
