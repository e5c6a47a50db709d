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

from dataclasses import dataclass

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
    from global_land_mask import globe  # 0.9 GB once loaded: only when a grid is built

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
    ocean = globe.is_ocean(lat[keep], lon[keep])
    keep = keep[ocean]
    return PolarGrid(hemisphere, float(resolution_km), x[keep], y[keep], lon[keep], lat[keep])
