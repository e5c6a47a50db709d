"""Maps of fields on the grid: one panel per field on the EASE-Grid 2.0 plane, with land, the
coastline, a graticule, the date in the title and a labelled colour bar (:func:`plot_maps`).

The plane, the raster and the land are in :mod:`.grid`; colours and saving in :mod:`.style`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io.grid_cells import EPSG_SOUTH, hemispheres
from empirical_seaice.products.plots.grid import MapGrid, land_raster, map_extent, rasterise
from empirical_seaice.products.plots.style import (
    LAND_COLOUR,
    NO_DATA_COLOUR,
    NO_DATA_EDGE,
    NO_DATA_HATCH,
    OPEN_WATER_SIC,
    WATER_COLOUR,
    colour_map,
    new_figure,
    save_figure,
)


def _graticule(ax, grid: MapGrid, lat_bounds: tuple[float, float]) -> None:
    """Parallels every 10 degrees and meridians every 30 degrees, labelled."""
    import pyproj

    tr = pyproj.Transformer.from_crs(4326, grid.epsg, always_xy=True)
    south = grid.epsg == EPSG_SOUTH
    lat_lo, lat_hi = lat_bounds
    style = dict(color="0.35", lw=0.5, ls=(0, (2, 2)), zorder=4)
    lons = np.linspace(-180.0, 180.0, 361)
    first = 10.0 * np.ceil(min(abs(lat_lo), abs(lat_hi)) / 10.0)
    for a in np.arange(first, 90.0, 10.0):
        lat = -a if south else a
        x, y = tr.transform(lons, np.full_like(lons, lat))
        ax.plot(np.asarray(x) / 1e3, np.asarray(y) / 1e3, **style)
        lx, ly = tr.transform(45.0 if not south else 135.0, lat)
        ax.text(lx / 1e3, ly / 1e3, f"{a:.0f}°{'S' if south else 'N'}", fontsize=6, color="0.25", zorder=5)
    edge = -first if south else first
    lats = np.linspace(edge, -89.0 if south else 89.0, 50)
    for lon in np.arange(-180.0, 180.0, 30.0):
        x, y = tr.transform(np.full_like(lats, lon), lats)
        ax.plot(np.asarray(x) / 1e3, np.asarray(y) / 1e3, **style)
        ex, ey = tr.transform(lon, edge + (3.0 if south else -3.0))
        if lon % 90 == 0:
            label = {0.0: "0°", 90.0: "90°E", -90.0: "90°W", -180.0: "180°"}[lon]
            ax.text(ex / 1e3, ey / 1e3, label, fontsize=6, color="0.25", ha="center", va="center", zorder=5)


def plot_maps(
    path: Path,
    lon: np.ndarray,
    lat: np.ndarray,
    fields: Mapping[str, np.ndarray],
    *,
    title: str = "",
    cmap: Any = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    units: str = "",
    ncols: int | None = None,
    centre_zero: bool = False,
    open_water: np.ndarray | Mapping[str, np.ndarray] | None = None,
    coastlines: bool = True,
) -> Path:
    """Maps of one or more fields on the grid, one panel per field (per field and hemisphere where the
    grid has points in both), one shared colour bar.

    Each grid cell is filled on the EASE-Grid 2.0 plane (no gaps), with land
    and the coastline from the GLOBE mask (``global-land-mask``), a
    graticule, and a labelled colour bar.

    Parameters
    ----------
    path : PNG file to write.
    lon, lat : (ngrid,) degrees.
    fields : panel title -> values (ngrid,); NaN cells are drawn as "no data".
    title : figure title (e.g. with the date).
    cmap : colour map (cmocean or matplotlib name); vmin, vmax: limits (default the 2-98 % range).
    units : colour-bar label (quantity and unit).
    centre_zero : diverging scale symmetric about zero.
    open_water : (ngrid,) bool (or per panel title) cells of open water, drawn in a
        uniform pale blue instead of their value (values there mean nothing).
    coastlines : draw land and coastlines (off only to save time in tests of other parts).

    Raises
    ------
    SeaIceError
        No field, or a field whose length is not ngrid.
    """
    _check_fields(len(lon), fields)
    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    parts = [(hemi, rows) for hemi, _, rows in hemispheres(lat)]
    vmin, vmax = _colour_limits(fields, vmin, vmax, centre_zero)
    ncols = (ncols or (2 if len(fields) == 4 else min(len(fields), 3))) * len(parts)
    fig, cax, axes = _map_figure(len(fields) * len(parts), ncols)
    cm = colour_map(cmap)
    panels = iter(axes)
    drawn = []
    for hemi, rows in parts:
        grid = rasterise(lon[rows], lat[rows])
        pad = 1.0 * grid.spacing_km
        land = land_raster(grid, pad) if coastlines else None
        lat_bounds = (float(np.nanmin(lat[rows])), float(np.nanmax(lat[rows])))
        drawn.append((hemi, grid, pad, land, rows, lat_bounds))
    for name, v in fields.items():
        water = open_water.get(name) if isinstance(open_water, Mapping) else open_water
        for hemi, grid, pad, land, rows, lat_bounds in drawn:
            ax = next(panels)
            part_water = None if water is None else np.asarray(water)[rows]
            values = np.asarray(v, dtype=np.float64)[rows]
            mappable = _draw_values(ax, grid, values, part_water, cm, vmin, vmax)
            if land is not None:
                _draw_land(ax, land)
            _graticule(ax, grid, lat_bounds)
            _frame_panel(ax, grid, pad, f"{name}, {hemi}" if len(parts) > 1 else name)
    cb = fig.colorbar(mappable, cax=cax, extend="both" if centre_zero else "neither")
    cb.set_label(units, fontsize=9)
    cb.ax.tick_params(labelsize=8)
    _legend(fig, land=coastlines, open_water=open_water is not None)
    planes = " and ".join(hemi for hemi, _ in parts)
    fig.suptitle(f"{title}  (EASE-Grid 2.0 {planes})" if title else f"EASE-Grid 2.0 {planes}", fontsize=10)
    return save_figure(fig, path)


def _check_fields(ngrid: int, fields: Mapping[str, np.ndarray]) -> None:
    """At least one field, each of ``ngrid`` values."""
    if not fields:
        raise SeaIceError("plot_maps: no field to draw")
    for name, v in fields.items():
        if np.shape(v) != (ngrid,):
            raise SeaIceError(f"plot_maps: field {name!r} has shape {np.shape(v)}, expected ({ngrid},)")


def _colour_limits(
    fields: Mapping[str, np.ndarray], vmin: float | None, vmax: float | None, centre_zero: bool
) -> tuple[float, float]:
    """The colour-bar limits: those given, else the 2-98 % range of all fields (symmetric about zero
    with ``centre_zero``: the larger given limit, else the 98th percentile of the magnitudes)."""
    allv = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in fields.values()])
    finite = allv[np.isfinite(allv)]
    if centre_zero:
        lim = max(abs(vmin or 0.0), abs(vmax or 0.0)) or (
            float(np.percentile(np.abs(finite), 98)) if finite.size else 1.0
        )
        vmin, vmax = -lim, lim
    if vmin is None:
        vmin = float(np.percentile(finite, 2)) if finite.size else 0.0
    if vmax is None:
        vmax = float(np.percentile(finite, 98)) if finite.size else 1.0
    if vmax <= vmin:
        vmax = vmin + 1e-6
    return vmin, vmax


def _map_figure(n: int, ncols: int | None):
    """A figure of ``n`` square map panels of 3.6 in (two columns for four panels, else up to three)
    and a colour-bar axis on the right. Returns (figure, colour-bar axis, panel axes)."""
    ncols = ncols or (2 if n == 4 else min(n, 3))
    nrows = int(np.ceil(n / ncols))
    panel = 3.6
    width, height = panel * ncols + 1.4, panel * nrows + 0.9
    fig = new_figure(width, height)
    fig.subplots_adjust(
        left=0.02, right=1 - 1.35 / width, bottom=0.45 / height, top=1 - 0.55 / height, wspace=0.06, hspace=0.12
    )
    cax = fig.add_axes((1 - 1.15 / width, 0.15, 0.22 / width, 0.7))
    axes = [fig.add_subplot(nrows, ncols, k + 1) for k in range(n)]
    return fig, cax, axes


def _draw_values(ax, grid: MapGrid, values: np.ndarray, water: np.ndarray | None, cm: Any, vmin: float, vmax: float):
    """One panel's cells on a hatched "no data" background; open-water cells (``water``) in a uniform
    pale blue instead of their value. Returns the value mesh (for the colour bar)."""
    from matplotlib.colors import ListedColormap

    ax.set_facecolor(NO_DATA_COLOUR)
    ax.patch.set_hatch(NO_DATA_HATCH)
    ax.patch.set_edgecolor(NO_DATA_EDGE)
    if water is not None:
        water = np.asarray(water, dtype=bool)
        water_cm = ListedColormap([WATER_COLOUR])
        ax.pcolormesh(grid.x_edges, grid.y_edges, grid.fill(np.where(water, 1.0, np.nan)), cmap=water_cm, zorder=1)
        values = np.where(water, np.nan, values)
    return ax.pcolormesh(
        grid.x_edges, grid.y_edges, grid.fill(values), cmap=cm, vmin=vmin, vmax=vmax, zorder=2, rasterized=True
    )


def _draw_land(ax, land) -> None:
    """Land filled and the coastline drawn from the raster of :func:`.grid.land_raster`."""
    lx, ly, lm = land
    ax.contourf(lx, ly, lm.astype(float), levels=[0.5, 1.5], colors=[LAND_COLOUR], zorder=3)
    ax.contour(lx, ly, lm.astype(float), levels=[0.5], colors="0.2", linewidths=0.5, zorder=3.5)


def _frame_panel(ax, grid: MapGrid, pad: float, name: str) -> None:
    """The polar-cap extent, equal aspect, the panel title and no ticks."""
    ax.set_xlim(*map_extent(grid, pad))
    ax.set_ylim(*map_extent(grid, pad))
    ax.set_aspect("equal", adjustable="box")
    ax.set_title(name, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _legend(fig, *, land: bool, open_water: bool) -> None:
    """The legend of the surfaces drawn: land, open water (when masked) and "no data"."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=LAND_COLOUR, edgecolor="0.2", lw=0.5, label="land")] if land else []
    if open_water:
        handles.append(Patch(facecolor=WATER_COLOUR, label=f"open water (SIC < {OPEN_WATER_SIC:g})"))
    handles.append(Patch(facecolor=NO_DATA_COLOUR, edgecolor=NO_DATA_EDGE, hatch=NO_DATA_HATCH, label="no data"))
    fig.legend(handles=handles, loc="lower right", fontsize=7, frameon=False, ncol=len(handles))


__all__ = ["plot_maps"]
