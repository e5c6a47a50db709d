"""Pictures of a run: maps, emissivity spectra, extent/area time series, loss curves, departure statistics.

Every function takes plain arrays (not the network), writes one PNG and
returns its path, so each can be tested with synthetic arrays. Figures are
built with :class:`matplotlib.figure.Figure` (Agg canvas; no pyplot global
state, no display needed). Maps are drawn on the EASE-Grid 2.0 plane
(Lambert azimuthal equal-area, EPSG:6931 north / 6932 south by the
hemisphere of the grid, through :mod:`pyproj`): every grid cell is filled
(``pcolormesh`` on a raster one grid spacing wide, :func:`rasterise`), land
and the coastline come from the GLOBE land mask of the ``global-land-mask``
package, reduced to 1/12 degree and shipped with this package
(:mod:`.coastline`; nothing is downloaded), with a graticule, the
date in the title and a labelled colour bar. Colour maps are cmocean's
(``ice`` for SIC, ``balance`` centred on zero for errors, ``thermal`` for
emissivity); open water (SIC < 0.15) is masked on the emissivity and state maps.

:func:`make_plots` draws the standard set of a run from a :class:`PlotInputs`
and writes the run report ``index.html`` (:mod:`empirical_seaice.products.report`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io.transaction import atomic_path

log = logging.getLogger(__name__)

EPSG_NORTH = 6931
"""EASE-Grid 2.0 North (Lambert azimuthal equal-area)."""
EPSG_SOUTH = 6932
"""EASE-Grid 2.0 South."""

OPEN_WATER_SIC = 0.15
"""SIC below which a cell is open water (masked on emissivity and state maps; the extent threshold)."""

LAND_COLOUR = "#bdb6a8"
WATER_COLOUR = "#c6dbef"
NO_DATA_COLOUR = "white"
NO_DATA_HATCH = "////"
NO_DATA_EDGE = "0.8"

MAP_CHANNELS = ("10v", "37v", "89v")
"""Channels of the ice emissivity maps."""

SPECTRUM_FREQ_GHZ = np.linspace(10.0, 190.0, 91)
"""Frequencies (GHz) of the emissivity spectra."""

DPI = 100


class EmissivityVH(Protocol):
    """Anything with ``emissivity_vh(t_skin_k, props, freq_ghz) -> (..., 2)`` and ``nprop``
    (e.g. :class:`empirical_seaice.products.export.NumpyEmissivityModel`)."""

    nprop: int

    def emissivity_vh(self, t_skin_k: Any, props: Any, freq_ghz: Any) -> np.ndarray: ...


def _figure(width_in: float, height_in: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=DPI)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format=path.suffix.lstrip(".") or "png")
    return path


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
    import pyproj

    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    epsg = EPSG_NORTH if np.nanmean(lat) >= 0 else EPSG_SOUTH
    tr = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
    x, y = tr.transform(lon, lat)
    return np.asarray(x) / 1000.0, np.asarray(y) / 1000.0, epsg


def nearest_distance_km(x_km: np.ndarray, y_km: np.ndarray) -> np.ndarray:
    """Distance (km) from each point to its nearest neighbour (100 km for a single point)."""
    from scipy.spatial import cKDTree

    pts = np.column_stack([x_km, y_km])
    if len(pts) < 2:
        return np.full(len(pts), 100.0)
    d, _ = cKDTree(pts).query(pts, k=2)
    return d[:, 1]


def grid_spacing_km(x_km: np.ndarray, y_km: np.ndarray) -> float:
    """Median nearest-neighbour distance (km) of the points (1 point: 100 km)."""
    return float(np.median(nearest_distance_km(x_km, y_km)))


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

    Each raster cell takes the nearest grid point within 0.75 spacing of its
    centre, so a regular EASE grid maps exactly (one point per cell, no gaps)
    and an irregular grid is drawn as a nearest-neighbour mosaic.
    """
    from scipy.spatial import cKDTree

    x, y, epsg = projected_xy(lon, lat)
    spacing = grid_spacing_km(x, y)
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
    idx = np.where(dist <= 0.75 * spacing, idx, -1).reshape(ny, nx)
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


def _colour_map(cmap: Any) -> Any:
    """A colour map by name (cmocean names ``ice``, ``balance``, ... or matplotlib's) or object."""
    if not isinstance(cmap, str):
        return cmap
    try:
        import warnings

        with warnings.catch_warnings():  # cmocean 4.0 builds its maps with an argument matplotlib 3.11 deprecates
            warnings.simplefilter("ignore", DeprecationWarning)
            import cmocean

        if cmap in cmocean.cm.cmapnames:
            return getattr(cmocean.cm, cmap)
    except ImportError:  # pragma: no cover - cmocean is a dependency
        pass
    import matplotlib

    return matplotlib.colormaps[cmap]


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
    """Maps of one or more fields on the grid, one panel per field, one shared colour bar.

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
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    if not fields:
        raise SeaIceError("plot_maps: no field to draw")
    ngrid = len(lon)
    for name, v in fields.items():
        if np.shape(v) != (ngrid,):
            raise SeaIceError(f"plot_maps: field {name!r} has shape {np.shape(v)}, expected ({ngrid},)")
    grid = rasterise(lon, lat)
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
    n = len(fields)
    ncols = ncols or (2 if n == 4 else min(n, 3))
    nrows = int(np.ceil(n / ncols))
    panel = 3.6
    width, height = panel * ncols + 1.4, panel * nrows + 0.9
    fig = _figure(width, height)
    fig.subplots_adjust(
        left=0.02, right=1 - 1.35 / width, bottom=0.45 / height, top=1 - 0.55 / height, wspace=0.06, hspace=0.12
    )
    cax = fig.add_axes((1 - 1.15 / width, 0.15, 0.22 / width, 0.7))
    pad = 1.0 * grid.spacing_km
    land = land_raster(grid, pad) if coastlines else None
    cm = _colour_map(cmap)
    water_cm = ListedColormap([WATER_COLOUR])
    lat_bounds = (float(np.nanmin(lat)), float(np.nanmax(lat)))
    mappable = None
    for k, (name, v) in enumerate(fields.items()):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        ax.set_facecolor(NO_DATA_COLOUR)
        ax.patch.set_hatch(NO_DATA_HATCH)
        ax.patch.set_edgecolor(NO_DATA_EDGE)
        water = open_water.get(name) if isinstance(open_water, Mapping) else open_water
        values = np.asarray(v, dtype=np.float64)
        if water is not None:
            water = np.asarray(water, dtype=bool)
            ax.pcolormesh(grid.x_edges, grid.y_edges, grid.fill(np.where(water, 1.0, np.nan)), cmap=water_cm, zorder=1)
            values = np.where(water, np.nan, values)
        mappable = ax.pcolormesh(
            grid.x_edges, grid.y_edges, grid.fill(values), cmap=cm, vmin=vmin, vmax=vmax, zorder=2, rasterized=True
        )
        if land is not None:
            lx, ly, lm = land
            ax.contourf(lx, ly, lm.astype(float), levels=[0.5, 1.5], colors=[LAND_COLOUR], zorder=3)
            ax.contour(lx, ly, lm.astype(float), levels=[0.5], colors="0.2", linewidths=0.5, zorder=3.5)
        _graticule(ax, grid, lat_bounds)
        ax.set_xlim(*map_extent(grid, pad))
        ax.set_ylim(*map_extent(grid, pad))
        ax.set_aspect("equal", adjustable="box")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if mappable is not None:
        cb = fig.colorbar(mappable, cax=cax, extend="both" if centre_zero else "neither")
        cb.set_label(units, fontsize=9)
        cb.ax.tick_params(labelsize=8)
    handles = [Patch(facecolor=LAND_COLOUR, edgecolor="0.2", lw=0.5, label="land")] if land is not None else []
    if open_water is not None:
        handles.append(Patch(facecolor=WATER_COLOUR, label=f"open water (SIC < {OPEN_WATER_SIC:g})"))
    handles.append(Patch(facecolor=NO_DATA_COLOUR, edgecolor=NO_DATA_EDGE, hatch=NO_DATA_HATCH, label="no data"))
    fig.legend(handles=handles, loc="lower right", fontsize=7, frameon=False, ncol=len(handles))
    hemi = "north" if grid.epsg == EPSG_NORTH else "south"
    fig.suptitle(f"{title}  (EASE-Grid 2.0 {hemi})" if title else f"EASE-Grid 2.0 {hemi}", fontsize=10)
    return _save(fig, path)


def extent_area(
    sic: np.ndarray, cell_area_km2: float, threshold: float = OPEN_WATER_SIC
) -> tuple[np.ndarray, np.ndarray]:
    """Daily sea ice extent and area (10^6 km^2) of SIC maps (ngrid, nstep).

    extent = sum of the cell areas where SIC >= threshold (0.15);
    area = sum of SIC x cell area over the same cells. Missing cells (NaN) count as no ice.
    """
    s = np.asarray(sic, dtype=np.float64)
    ice = np.isfinite(s) & (s >= threshold)
    extent = ice.sum(axis=0) * cell_area_km2 / 1e6
    area = np.where(ice, s, 0.0).sum(axis=0) * cell_area_km2 / 1e6
    return extent, area


def plot_time_series(
    path: Path,
    dates: Sequence[str],
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    title: str = "",
    notes: Mapping[str, str] | None = None,
) -> Path:
    """Daily sea ice extent and area (10^6 km^2), one line per source, two panels.

    series : label -> (extent (nstep,), area (nstep,)).
    notes : label -> text appended to its legend entry (e.g. coverage).
    """
    import matplotlib.dates as mdates

    if not series:
        raise SeaIceError("plot_time_series: no series to draw")
    t = np.array(dates, dtype="datetime64[D]")
    fig = _figure(8.0, 4.2)
    styles = {"trained": ("C0", "-", "o"), "background": ("C1", "--", "s"), "truth": ("k", "-", None)}
    for row, (k, ylabel) in enumerate(((0, "sea ice extent (10$^6$ km$^2$)"), (1, "sea ice area (10$^6$ km$^2$)"))):
        ax = fig.add_subplot(1, 2, row + 1)
        for j, (label, vals) in enumerate(series.items()):
            y = np.asarray(vals[k], dtype=np.float64)
            if y.shape != t.shape:
                raise SeaIceError(f"plot_time_series: {label!r} has {y.shape[0]} values, expected {t.size}")
            c, ls, m = styles.get(label.split()[0], (f"C{j + 2}", ":", "^"))
            note = (notes or {}).get(label, "")
            ax.plot(t, y, color=c, ls=ls, marker=m, ms=3, lw=1.4, label=label + (f" ({note})" if note else ""))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, int(np.ceil(t.size / 7)))))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
        ax.tick_params(labelsize=8)
        ax.set_xlabel("date (UTC day of the 21 UTC window's end)", fontsize=8)
        if row == 0:
            ax.legend(fontsize=7)
    fig.suptitle(title or "daily sea ice extent and area (SIC >= 0.15)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_spectra(
    path: Path,
    freq_ghz: np.ndarray,
    spectra: Mapping[str, np.ndarray],
    *,
    title: str = "",
    trained_freqs_ghz: Mapping[str, Sequence[float]] | None = None,
) -> Path:
    """Ice emissivity spectra, V (solid) and H (dashed), one colour per label.

    spectra : label -> array (nfreq, 2) of (e_V, e_H).
    trained_freqs_ghz : sensor -> frequencies of the channels trained on, marked on the axis
        (between them the spectrum is an interpolation of the network, e.g. 50-70 GHz).
    """
    if not spectra:
        raise SeaIceError("plot_spectra: no spectrum to draw")
    fig = _figure(9.5, 4.8)
    ax = fig.add_axes((0.08, 0.12, 0.56, 0.76))
    colours = [f"C{k}" for k in range(10)]
    for k, (label, vh) in enumerate(spectra.items()):
        vh = np.asarray(vh, dtype=np.float64)
        if vh.shape != (len(freq_ghz), 2):
            raise SeaIceError(f"plot_spectra: {label!r} has shape {vh.shape}, expected ({len(freq_ghz)}, 2)")
        c = colours[k % 10]
        ax.plot(freq_ghz, vh[:, 0], "-", color=c, label=f"{label}")
        ax.plot(freq_ghz, vh[:, 1], "--", color=c)
    markers = ("v", "^", "s", "D")
    for j, (sensor, freqs) in enumerate((trained_freqs_ghz or {}).items()):
        f = np.asarray(sorted(freqs), dtype=np.float64)
        for x in f:
            ax.axvline(x, color="0.85", lw=0.6, zorder=0)
        ax.plot(
            f,
            np.full(f.size, 0.03 + 0.05 * j),
            ls="none",
            marker=markers[j % len(markers)],
            ms=5,
            color="0.3",
            transform=ax.get_xaxis_transform(),
            label=f"{sensor} channels (trained)",
        )
    ax.set_xlabel("frequency (GHz)")
    ax.set_ylabel("sea ice emissivity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), title="V solid, H dashed", title_fontsize=7)
    ax.set_title(title or "sea ice emissivity spectra", fontsize=10)
    if trained_freqs_ghz:
        ax.text(
            1.02,
            0.0,
            "Markers: frequencies of the channels trained on.\n"
            "Between them the spectrum is the\nnetwork's interpolation.",
            transform=ax.transAxes,
            fontsize=7,
            va="bottom",
            color="0.3",
        )
    return _save(fig, path)


def plot_loss_curves(path: Path, losses: Mapping[str, np.ndarray], *, xlabel: str = "epoch", title: str = "") -> Path:
    """Cost terms (J / nobs) against epoch or batch, log scale where all positive.

    ``total`` is what the optimiser minimised plus the monitored terms: its legend says
    when it includes the monitor-only (zero-gradient) ``warm_ice`` term.
    """
    curves = {k: np.asarray(v, dtype=np.float64) for k, v in losses.items() if np.size(v)}
    if not curves:
        raise SeaIceError("plot_loss_curves: no loss values to draw")
    fig = _figure(9.0, 4.5)
    ax = fig.add_axes((0.08, 0.12, 0.6, 0.78))
    # Log scale (the terms span many decades); zero values (a term that is off
    # or inactive) are left out of the curve.
    warm = "warm_ice" in curves and np.nanmax(curves["warm_ice"]) > 0
    for name, v in curves.items():
        v = np.where(v > 0, v, np.nan)
        label = name
        if name == "total" and warm:
            label = "total (includes the monitored warm_ice)"
        elif name == "warm_ice":
            label = "warm_ice (monitored; no gradient by default)"
        if np.isfinite(v).any():
            ax.plot(
                np.arange(1, v.size + 1),
                v,
                marker="o" if v.size < 40 else None,
                ms=3,
                label=label,
                lw=2.0 if name == "total" else 1.2,
                color="k" if name == "total" else None,
            )
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("cost term (J / nobs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.set_title(title or f"cost terms per {xlabel}", fontsize=10)
    return _save(fig, path)


def departure_stats(departures: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel count, mean and standard deviation (K) of departures (nobs, nchan), NaN ignored."""
    d = np.asarray(departures, dtype=np.float64)
    ok = np.isfinite(d)
    n = ok.sum(axis=0)
    s = np.where(ok, d, 0.0).sum(axis=0)
    mean = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    var = np.where(n > 0, np.where(ok, (d - mean) ** 2, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)
    return n, mean, np.sqrt(var)


def plot_departure_histograms(
    path: Path, channel_names: Sequence[str], before: np.ndarray | None, after: np.ndarray, *, title: str = ""
) -> Path:
    """Per-channel histograms of observed minus simulated TB (K), before and after training.

    before, after : (nobs, nchan) departures, NaN where the channel is absent;
    ``before`` may be None (e.g. diagnostics of an already-trained model).
    """
    after = np.asarray(after, dtype=np.float64)
    before = np.full_like(after, np.nan) if before is None else np.asarray(before, dtype=np.float64)
    nch = len(channel_names)
    if before.shape[1:] != (nch,) or after.shape[1:] != (nch,):
        raise SeaIceError(
            f"plot_departure_histograms: expected (nobs, {nch}) departures, got {before.shape} and {after.shape}"
        )
    ncols = min(nch, 5)
    nrows = int(np.ceil(nch / ncols))
    fig = _figure(2.6 * ncols, 2.1 * nrows + 0.6)
    for c, name in enumerate(channel_names):
        ax = fig.add_subplot(nrows, ncols, c + 1)
        b = before[:, c][np.isfinite(before[:, c])]
        a = after[:, c][np.isfinite(after[:, c])]
        both = np.concatenate([b, a])
        if both.size:
            lo, hi = np.percentile(both, [0.5, 99.5])
            lim = max(abs(lo), abs(hi), 1.0)
            bins = np.linspace(-lim, lim, 41)
            ax.hist(b, bins=bins, histtype="stepfilled", alpha=0.45, color="C1", label="before")
            ax.hist(a, bins=bins, histtype="stepfilled", alpha=0.6, color="C0", label="after")
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
        if c == 0:
            ax.legend(fontsize=6)
    fig.suptitle(title or "observed minus simulated TB (K)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_departure_stats(
    path: Path, channel_names: Sequence[str], before: np.ndarray | None, after: np.ndarray, *, title: str = ""
) -> Path:
    """Per-channel mean and standard deviation of observed minus simulated TB (K), before
    (optional: None) and after."""
    nch = len(channel_names)
    if before is None:
        before = np.full_like(np.asarray(after, dtype=np.float64), np.nan)
    _, mb, sb = departure_stats(before)
    _, ma, sa = departure_stats(after)
    if mb.shape != (nch,) or ma.shape != (nch,):
        raise SeaIceError(f"plot_departure_stats: expected {nch} channels, got {mb.shape[0]} and {ma.shape[0]}")
    fig = _figure(max(6.0, 0.5 * nch + 2), 5.0)
    xs = np.arange(nch)
    for row, (label, vb, va) in enumerate((("mean (K)", mb, ma), ("std. dev. (K)", sb, sa))):
        ax = fig.add_subplot(2, 1, row + 1)
        ax.bar(xs - 0.2, vb, width=0.4, color="C1", label="before training")
        ax.bar(xs + 0.2, va, width=0.4, color="C0", label="after training")
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_ylabel(label)
        ax.set_xticks(xs)
        ax.set_xticklabels(channel_names, fontsize=7, rotation=45 if nch > 12 else 0)
        ax.grid(alpha=0.3, axis="y")
        if row == 0:
            ax.legend(fontsize=7)
    fig.suptitle(title or "observed minus simulated TB per channel", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def write_index(plot_dir: Path, entries: Sequence[tuple[str, str]], *, title: str = "", **report: Any) -> Path:
    """``index.html`` in ``plot_dir``: the run report (:func:`empirical_seaice.products.report.write_report`)
    with every (file name, caption) entry; ``report`` may give ``summary`` and ``summary_text``."""
    from empirical_seaice.products.report import write_report

    return write_report(plot_dir, entries, title=title, **report)


# ---------------------------------------------------------------------------
# The standard set of a run
# ---------------------------------------------------------------------------


@dataclass
class PlotInputs:
    """What :func:`make_plots` draws (arrays; every optional part may be None).

    lon, lat : (ngrid,) degrees.
    day : step index (0-based, within the period) of the maps.
    sic : (ngrid, nstep) trained SIC (without the lag columns).
    sic_background : (ngrid, nstep) background SIC.
    sic_truth : (ngrid, nstep) truth SIC (twin), or None.
    sic_classic : algorithm name -> (ngrid, nstep) SIC (e.g. NASA Team).
    props_grid : (ngrid, nstep, nprop_grid) grid empirical state.
    emis_grid : channel name -> (ngrid, nstep) gridded ice emissivity (10v, 37v, 89v).
    t_skin_map_k : (ngrid, nstep) daily skin temperature, for the spectra.
    emissivity_model : evaluator of the trained model (emissivity_vh), for the spectra.
    nprop_obs : number of observation-space variables (set to 0 in the spectra).
    losses_epoch, losses_batch : term -> values.
    channel_names : the run's channels.
    dep_before, dep_after : (nobs, nchan) observed minus simulated TB before/after training.
    title : run name for the titles.
    spectrum_masks : label -> (ngrid, nstep) bool cell sets (e.g. truth ice types) for a
        second spectra plot ``spectra_ice_types.png``.
    dates : ISO date of each step (titles and the time series); default "step N".
    trained_freqs_ghz : sensor -> trained channel frequencies (marked on the spectra).
    report, report_text : the run's summary (dict) and printed table for ``index.html``.
    """

    lon: np.ndarray
    lat: np.ndarray
    day: int = 0
    sic: np.ndarray | None = None
    sic_background: np.ndarray | None = None
    sic_truth: np.ndarray | None = None
    sic_classic: Mapping[str, np.ndarray] = field(default_factory=dict)
    props_grid: np.ndarray | None = None
    emis_grid: Mapping[str, np.ndarray] = field(default_factory=dict)
    t_skin_map_k: np.ndarray | None = None
    emissivity_model: EmissivityVH | None = None
    nprop_obs: int = 0
    losses_epoch: Mapping[str, np.ndarray] = field(default_factory=dict)
    losses_batch: Mapping[str, np.ndarray] = field(default_factory=dict)
    channel_names: Sequence[str] = ()
    dep_before: np.ndarray | None = None
    dep_after: np.ndarray | None = None
    title: str = ""
    spectrum_masks: Mapping[str, np.ndarray] = field(default_factory=dict)
    dates: Sequence[str] = ()
    trained_freqs_ghz: Mapping[str, Sequence[float]] = field(default_factory=dict)
    report: Mapping[str, Any] | None = None
    report_text: str = ""


def spectrum_groups(
    sic: np.ndarray, props: np.ndarray, t_skin_k: np.ndarray, ngroups: int = 3, min_sic: float = 0.8
) -> dict[str, tuple[float, np.ndarray]]:
    """Representative ice states for the spectra: consolidated ice (SIC > min_sic)
    split into ``ngroups`` quantile classes of the first empirical variable P0.

    Returns label -> (median skin temperature K, median grid state (nprop_grid,)).
    The label names the P0 class with its bounds (the tercile edges of P0 over
    those cells) and its count. Empty when no point has ice.
    """
    sic = np.asarray(sic, dtype=np.float64)
    props = np.asarray(props, dtype=np.float64)
    t = np.asarray(t_skin_k, dtype=np.float64)
    ok = (sic > min_sic) & np.all(np.isfinite(props), axis=-1) & np.isfinite(t)
    if not ok.any() or props.shape[-1] == 0:
        return {}
    p, tt = props[ok], t[ok]
    edges = np.quantile(p[:, 0], np.linspace(0, 1, ngroups + 1))
    which = np.clip(np.searchsorted(edges, p[:, 0], side="right") - 1, 0, ngroups - 1)
    out = {}
    names = ("lowest third", "middle third", "highest third") if ngroups == 3 else None
    for k in range(ngroups):
        sel = which == k
        if sel.any():
            lo, hi = edges[k], edges[k + 1]
            bounds = (
                f"P0 < {hi:.2f}" if k == 0 else f"P0 >= {lo:.2f}" if k == ngroups - 1 else f"{lo:.2f} <= P0 < {hi:.2f}"
            )
            name = names[k] if names else f"class {k + 1}"
            out[f"{name} of P0: {bounds} (n={int(sel.sum())})"] = (float(np.median(tt[sel])), np.median(p[sel], axis=0))
    return out


def spectrum_groups_from_masks(
    masks: Mapping[str, np.ndarray], sic: np.ndarray, props: np.ndarray, t_skin_k: np.ndarray, min_sic: float = 0.8
) -> dict[str, tuple[float, np.ndarray]]:
    """Representative states of named cell sets (e.g. ice types from a truth): for each
    mask (ngrid,), the median skin temperature and grid state over its consolidated-ice
    cells (SIC > min_sic, finite state). Label -> (T K, state (nprop_grid,)); empty sets skipped."""
    sic = np.asarray(sic, dtype=np.float64)
    props = np.asarray(props, dtype=np.float64)
    t = np.asarray(t_skin_k, dtype=np.float64)
    base = (sic > min_sic) & np.all(np.isfinite(props), axis=-1) & np.isfinite(t)
    out = {}
    for label, mask in masks.items():
        sel = base & np.asarray(mask, dtype=bool)
        if sel.any():
            out[f"{label} (n={int(sel.sum())})"] = (float(np.median(t[sel])), np.median(props[sel], axis=0))
    return out


def _day_label(d: PlotInputs, day: int) -> str:
    return d.dates[day] if len(d.dates) > day else f"step {day}"


def _map_plots(d: PlotInputs, plot_dir: Path, add) -> None:
    """SIC, SIC error, empirical state and ice emissivity maps of the chosen day."""
    day = int(d.day)
    when = _day_label(d, day)
    sic_fields: dict[str, np.ndarray] = {}
    if d.sic is not None:
        sic_fields["trained"] = np.asarray(d.sic)[:, day]
    if d.sic_background is not None:
        sic_fields["background"] = np.asarray(d.sic_background)[:, day]
    if d.sic_truth is not None:
        sic_fields["truth"] = np.asarray(d.sic_truth)[:, day]
    for name, arr in d.sic_classic.items():
        sic_fields[name.replace("_", " ")] = np.asarray(arr)[:, day]
    if sic_fields:
        add(
            plot_maps(
                plot_dir / "map_sic.png",
                d.lon,
                d.lat,
                sic_fields,
                title=f"{d.title} sea ice concentration, {when}",
                cmap="ice",
                vmin=0.0,
                vmax=1.0,
                units="sea ice concentration (fraction, 0-1)",
            ),
            f"Sea ice concentration on {when}: trained, background"
            + (", truth" if d.sic_truth is not None else "")
            + ("".join(f", {k.replace('_', ' ')}" for k in d.sic_classic))
            + "; white cells had no data.",
        )
    if d.sic is not None and d.sic_truth is not None:
        truth = np.asarray(d.sic_truth)[:, day]
        err = {"trained - truth": np.asarray(d.sic)[:, day] - truth}
        if d.sic_background is not None:
            err["background - truth"] = np.asarray(d.sic_background)[:, day] - truth
        for name, arr in d.sic_classic.items():
            err[f"{name.replace('_', ' ')} - truth"] = np.asarray(arr)[:, day] - truth
        add(
            plot_maps(
                plot_dir / "map_sic_error.png",
                d.lon,
                d.lat,
                err,
                title=f"{d.title} SIC error, {when}",
                cmap="balance",
                vmin=-0.5,
                vmax=0.5,
                centre_zero=True,
                units="SIC minus truth (fraction)",
            ),
            f"SIC minus the twin's truth on {when} (blue: too little ice, red: too much).",
        )
    water = None if d.sic is None else np.asarray(d.sic)[:, day] < OPEN_WATER_SIC
    if d.props_grid is not None and np.asarray(d.props_grid).shape[-1] > 0:
        props = np.asarray(d.props_grid)
        for k in range(props.shape[-1]):
            add(
                plot_maps(
                    plot_dir / f"map_prop{k}.png",
                    d.lon,
                    d.lat,
                    {f"P{k}": props[:, day, k]},
                    title=f"{d.title} empirical state P{k}, {when}",
                    cmap="viridis",
                    units=f"P{k} (dimensionless latent ice/snow property)",
                    open_water=water,
                ),
                f"Grid empirical state variable P{k} on {when} (open water and unobserved cells masked).",
            )
    emis = {c: np.asarray(d.emis_grid[c])[:, day] for c in MAP_CHANNELS if c in d.emis_grid}
    if emis:
        add(
            plot_maps(
                plot_dir / "map_ice_emis.png",
                d.lon,
                d.lat,
                emis,
                title=f"{d.title} sea ice emissivity, {when}",
                cmap="thermal",
                units="sea ice emissivity (1)",
                open_water=water,
            ),
            f"Sea ice emissivity at {'/'.join(emis)} from the trained model on {when} (open water masked).",
        )


def _spectrum_plots(d: PlotInputs, plot_dir: Path, add) -> None:
    day = int(d.day)
    when = _day_label(d, day)
    if d.emissivity_model is None or d.props_grid is None or d.sic is None or d.t_skin_map_k is None:
        return

    def evaluate(groups):
        """Spectra (V, H) of each group's median state at its median temperature (Q = 0)."""
        return {
            f"{label}, T={t:.0f} K": d.emissivity_model.emissivity_vh(
                np.full(SPECTRUM_FREQ_GHZ.size, t), np.concatenate([p, np.zeros(d.nprop_obs)]), SPECTRUM_FREQ_GHZ
            )
            for label, (t, p) in groups.items()
        }

    sic, props, t = (np.asarray(a)[:, day] for a in (d.sic, d.props_grid, d.t_skin_map_k))
    spectra = evaluate(spectrum_groups(sic, props, t))
    if spectra:
        add(
            plot_spectra(
                plot_dir / "spectra.png",
                SPECTRUM_FREQ_GHZ,
                spectra,
                title=f"{d.title} sea ice emissivity spectra by tercile of P0, {when}",
                trained_freqs_ghz=d.trained_freqs_ghz,
            ),
            f"Emissivity spectra of consolidated ice (SIC > 0.8) on {when}, median state of each tercile of P0; "
            "markers: the trained channels.",
        )
    if d.spectrum_masks:
        typed = evaluate(
            spectrum_groups_from_masks({k: np.asarray(m)[:, day] for k, m in d.spectrum_masks.items()}, sic, props, t)
        )
        if typed:
            add(
                plot_spectra(
                    plot_dir / "spectra_ice_types.png",
                    SPECTRUM_FREQ_GHZ,
                    typed,
                    title=f"{d.title} sea ice emissivity spectra by ice type, {when}",
                    trained_freqs_ghz=d.trained_freqs_ghz,
                ),
                f"Emissivity spectra of the trained state in the twin's first-year and multi-year ice on {when}.",
            )


def _time_series_plot(d: PlotInputs, plot_dir: Path, add) -> None:
    if d.sic is None:
        return
    nstep = np.asarray(d.sic).shape[1]
    dates = list(d.dates) if len(d.dates) == nstep else None
    if dates is None:
        return
    area = rasterise(d.lon, d.lat).cell_area_km2
    series = {"trained": extent_area(d.sic, area)}
    notes = {}
    if d.sic_background is not None:
        series["background"] = extent_area(d.sic_background, area)
    if d.sic_truth is not None:
        series["truth"] = extent_area(d.sic_truth, area)
    for name, arr in d.sic_classic.items():
        label = name.replace("_", " ")
        series[label] = extent_area(arr, area)
        cover = float(np.isfinite(np.asarray(arr, dtype=np.float64)).mean())
        if cover < 0.999:
            notes[label] = f"observed cells only, {100 * cover:.0f} % of cell-days"
    add(
        plot_time_series(
            plot_dir / "timeseries_extent_area.png",
            dates,
            series,
            title=f"{d.title} daily sea ice extent and area (SIC >= {OPEN_WATER_SIC:g}, cells of {area:,.0f} km$^2$)",
            notes=notes,
        ),
        "Daily sea ice extent (area of cells with SIC >= 0.15) and area (SIC-weighted) of each SIC map.",
    )


def make_plots(plot_dir: Path, inputs: PlotInputs) -> list[Path]:
    """Draw the standard plots of a run into ``plot_dir`` and write the report ``index.html``.

    Maps for the chosen day: SIC (trained, background, truth, classic), SIC
    minus truth, each empirical variable and the 10v/37v/89v ice emissivity
    (open water masked); emissivity spectra of representative ice states;
    the daily extent and area; loss curves per term; departure histograms and
    statistics before/after training. Returns the PNG paths and the index (last).
    """
    plot_dir = Path(plot_dir)
    plot_dir.mkdir(parents=True, exist_ok=True)
    d = inputs
    entries: list[tuple[str, str]] = []
    paths: list[Path] = []

    def add(path: Path, caption: str) -> None:
        paths.append(path)
        entries.append((path.name, caption))

    _map_plots(d, plot_dir, add)
    _spectrum_plots(d, plot_dir, add)
    _time_series_plot(d, plot_dir, add)
    if d.losses_epoch:
        add(
            plot_loss_curves(
                plot_dir / "loss_epoch.png", d.losses_epoch, xlabel="epoch", title=f"{d.title} cost terms per epoch"
            ),
            "Cost terms (J / nobs) per epoch; total includes the monitored warm-ice term.",
        )
    if d.losses_batch:
        add(
            plot_loss_curves(
                plot_dir / "loss_batch.png", d.losses_batch, xlabel="batch", title=f"{d.title} cost terms per batch"
            ),
            "Cost terms (J / nobs) per batch.",
        )
    if d.dep_after is not None and len(d.channel_names):
        add(
            plot_departure_histograms(
                plot_dir / "departures_hist.png",
                d.channel_names,
                d.dep_before,
                d.dep_after,
                title=f"{d.title} observed minus simulated TB (K)",
            ),
            "Histograms of observed minus simulated TB per channel, before and after training.",
        )
        add(
            plot_departure_stats(
                plot_dir / "departures_stats.png",
                d.channel_names,
                d.dep_before,
                d.dep_after,
                title=f"{d.title} departure mean and standard deviation",
            ),
            "Mean and standard deviation of observed minus simulated TB per channel, before and after training.",
        )
    paths.append(
        write_index(
            plot_dir,
            entries,
            title=f"{d.title.rstrip(':')} report".strip(),
            summary=d.report,
            summary_text=d.report_text,
        )
    )
    return paths


__all__ = [
    "projected_xy",
    "rasterise",
    "MapGrid",
    "land_raster",
    "map_extent",
    "extent_area",
    "plot_time_series",
    "grid_spacing_km",
    "plot_maps",
    "plot_spectra",
    "plot_loss_curves",
    "departure_stats",
    "plot_departure_histograms",
    "plot_departure_stats",
    "write_index",
    "PlotInputs",
    "spectrum_groups",
    "spectrum_groups_from_masks",
    "make_plots",
    "MAP_CHANNELS",
    "SPECTRUM_FREQ_GHZ",
]
