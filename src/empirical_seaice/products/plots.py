"""Pictures of a run: maps, emissivity spectra, loss curves, departure statistics.

Every function takes plain arrays (not the network), writes one PNG and
returns its path, so each can be tested with synthetic arrays. Figures are
built with :class:`matplotlib.figure.Figure` (Agg canvas; no pyplot global
state, no display needed). Maps are polar stereographic — EPSG:3413
(NSIDC north, 70 N true scale) or EPSG:3031 (south, 71 S) by the hemisphere
of the grid — through :mod:`pyproj`; no coastline or land features are
downloaded: land is simply where there are no grid points. Each grid point
is drawn as a square marker sized to the grid spacing (the median distance
to the nearest neighbour in projected coordinates).

:func:`make_plots` draws the standard set of a run from a :class:`PlotInputs`
and writes ``index.html`` showing them all.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io.transaction import atomic_path

log = logging.getLogger(__name__)

EPSG_NORTH = 3413
"""NSIDC Sea Ice Polar Stereographic North."""
EPSG_SOUTH = 3031
"""Antarctic Polar Stereographic."""

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
    """Polar stereographic coordinates (km) of the grid points.

    EPSG:3413 when the mean latitude is >= 0, else EPSG:3031.

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


def plot_maps(
    path: Path,
    lon: np.ndarray,
    lat: np.ndarray,
    fields: Mapping[str, np.ndarray],
    *,
    title: str = "",
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    units: str = "",
    ncols: int | None = None,
) -> Path:
    """Maps of one or more fields on the grid, one panel per field, one shared colour scale.

    Parameters
    ----------
    path : PNG file to write.
    lon, lat : (ngrid,) degrees.
    fields : panel title -> values (ngrid,); NaN points are not drawn.
    title : figure title.
    cmap, vmin, vmax : colour map and limits (default: the data's 2-98 % range).
    units : colour-bar label.

    Raises
    ------
    SeaIceError
        No field, or a field whose length is not ngrid.
    """
    if not fields:
        raise SeaIceError("plot_maps: no field to draw")
    ngrid = len(lon)
    for name, v in fields.items():
        if np.shape(v) != (ngrid,):
            raise SeaIceError(f"plot_maps: field {name!r} has shape {np.shape(v)}, expected ({ngrid},)")
    x, y, epsg = projected_xy(lon, lat)
    near = nearest_distance_km(x, y)
    spacing = float(np.median(near))
    # Marker side per point: its own grid spacing (an equal-area grid drawn in polar
    # stereographic coordinates has a spacing that varies with latitude), within 0.8-1.3x the median.
    side_km = 1.1 * np.clip(near, 0.8 * spacing, 1.3 * spacing)
    allv = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in fields.values()])
    finite = allv[np.isfinite(allv)]
    if vmin is None:
        vmin = float(np.percentile(finite, 2)) if finite.size else 0.0
    if vmax is None:
        vmax = float(np.percentile(finite, 98)) if finite.size else 1.0
    if vmax <= vmin:
        vmax = vmin + 1e-6
    n = len(fields)
    ncols = ncols or min(n, 3)
    nrows = int(np.ceil(n / ncols))
    panel = 3.6
    fig = _figure(panel * ncols + 0.9, panel * nrows + 0.6)
    pad = spacing
    xlim = (x.min() - pad, x.max() + pad)
    ylim = (y.min() - pad, y.max() + pad)
    # Fix the layout before sizing the markers (their size depends on the axes box).
    fig.subplots_adjust(left=0.02, right=0.86, bottom=0.03, top=0.9, wspace=0.06, hspace=0.12)
    cax = fig.add_axes((0.89, 0.15, 0.025, 0.7))
    mappable = None
    for k, (name, v) in enumerate(fields.items()):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        ax.set_facecolor("0.85")  # land / no data
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_aspect("equal", adjustable="box")
        ax.apply_aspect()
        bbox = ax.get_window_extent()
        x0, x1 = ax.get_xlim()
        pts_per_km = (bbox.width * 72.0 / fig.dpi) / (x1 - x0)
        size = (side_km * pts_per_km) ** 2
        v = np.asarray(v, dtype=np.float64)
        ok = np.isfinite(v)
        mappable = ax.scatter(
            x[ok], y[ok], c=v[ok], s=size[ok], marker="s", linewidths=0, cmap=cmap, vmin=vmin, vmax=vmax
        )
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if mappable is not None:
        cb = fig.colorbar(mappable, cax=cax)
        cb.set_label(units)
    fig.suptitle(f"{title}  (EPSG:{epsg})" if title else f"EPSG:{epsg}", fontsize=10)
    return _save(fig, path)


def plot_spectra(path: Path, freq_ghz: np.ndarray, spectra: Mapping[str, np.ndarray], *, title: str = "") -> Path:
    """Ice emissivity spectra, V (solid) and H (dashed), one colour per label.

    spectra : label -> array (nfreq, 2) of (e_V, e_H).
    """
    if not spectra:
        raise SeaIceError("plot_spectra: no spectrum to draw")
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    colours = [f"C{k}" for k in range(10)]
    for k, (label, vh) in enumerate(spectra.items()):
        vh = np.asarray(vh, dtype=np.float64)
        if vh.shape != (len(freq_ghz), 2):
            raise SeaIceError(f"plot_spectra: {label!r} has shape {vh.shape}, expected ({len(freq_ghz)}, 2)")
        c = colours[k % 10]
        ax.plot(freq_ghz, vh[:, 0], "-", color=c, label=f"{label} V")
        ax.plot(freq_ghz, vh[:, 1], "--", color=c, label=f"{label} H")
    ax.set_xlabel("frequency (GHz)")
    ax.set_ylabel("ice emissivity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title or "sea ice emissivity spectra (V solid, H dashed)", fontsize=10)
    return _save(fig, path)


def plot_loss_curves(path: Path, losses: Mapping[str, np.ndarray], *, xlabel: str = "epoch", title: str = "") -> Path:
    """Cost terms (J / nobs) against epoch or batch, log scale where all positive."""
    curves = {k: np.asarray(v, dtype=np.float64) for k, v in losses.items() if np.size(v)}
    if not curves:
        raise SeaIceError("plot_loss_curves: no loss values to draw")
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    # Log scale (the terms span many decades); zero values (a term that is off
    # or inactive) are left out of the curve.
    for name, v in curves.items():
        v = np.where(v > 0, v, np.nan)
        if np.isfinite(v).any():
            ax.plot(np.arange(1, v.size + 1), v, marker="o" if v.size < 40 else None, ms=3, label=name)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("cost term (J / nobs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
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


def write_index(plot_dir: Path, entries: Sequence[tuple[str, str]], *, title: str = "") -> Path:
    """``index.html`` in ``plot_dir`` showing every (file name, caption) entry."""
    plot_dir = Path(plot_dir)
    parts = [
        "<!DOCTYPE html>",
        "<html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title or 'plots')}</title>",
        "<style>body{font-family:sans-serif;margin:1em} figure{display:inline-block;margin:0.5em;"
        "vertical-align:top} img{max-width:900px}</style></head><body>",
        f"<h1>{html.escape(title or 'plots')}</h1>",
    ]
    for name, caption in entries:
        parts.append(
            f"<figure><a href='{html.escape(name)}'><img src='{html.escape(name)}' alt='{html.escape(caption)}'></a>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    path = plot_dir / "index.html"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts) + "\n")
    return path


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


def spectrum_groups(
    sic: np.ndarray, props: np.ndarray, t_skin_k: np.ndarray, ngroups: int = 3, min_sic: float = 0.8
) -> dict[str, tuple[float, np.ndarray]]:
    """Representative ice states for the spectra: consolidated ice (SIC > min_sic)
    split into ``ngroups`` quantile classes of the first empirical variable P0.

    Returns label -> (median skin temperature K, median grid state (nprop_grid,)).
    The label names the P0 class and its count. Empty when no point has ice.
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
    names = ("low", "middle", "high") if ngroups == 3 else tuple(f"class {k + 1}" for k in range(ngroups))
    for k in range(ngroups):
        sel = which == k
        if sel.any():
            out[f"{names[k]} P0 (n={int(sel.sum())})"] = (float(np.median(tt[sel])), np.median(p[sel], axis=0))
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


def make_plots(plot_dir: Path, inputs: PlotInputs) -> list[Path]:
    """Draw the standard plots of a run into ``plot_dir`` and write ``index.html``.

    Maps for the chosen day: SIC (trained, background, truth, classic), each
    empirical variable, the 10v/37v/89v ice emissivity, SIC minus truth;
    emissivity spectra of representative ice states; loss curves per term;
    departure histograms and statistics before/after training.
    Returns the PNG paths and the index (last).
    """
    plot_dir = Path(plot_dir)
    plot_dir.mkdir(parents=True, exist_ok=True)
    d = inputs
    entries: list[tuple[str, str]] = []
    paths: list[Path] = []
    day = int(d.day)
    suffix = f" (step {day})"

    def add(path: Path, caption: str) -> None:
        paths.append(path)
        entries.append((path.name, caption))

    sic_fields: dict[str, np.ndarray] = {}
    if d.sic is not None:
        sic_fields["trained SIC"] = np.asarray(d.sic)[:, day]
    if d.sic_background is not None:
        sic_fields["background SIC"] = np.asarray(d.sic_background)[:, day]
    if d.sic_truth is not None:
        sic_fields["truth SIC"] = np.asarray(d.sic_truth)[:, day]
    for name, arr in d.sic_classic.items():
        sic_fields[f"{name.replace('_', ' ')} SIC"] = np.asarray(arr)[:, day]
    if sic_fields:
        add(
            plot_maps(
                plot_dir / "map_sic.png",
                d.lon,
                d.lat,
                sic_fields,
                title=f"{d.title} sea ice concentration{suffix}",
                cmap="Blues_r",
                vmin=0.0,
                vmax=1.0,
                units="SIC",
            ),
            "sea ice concentration maps" + suffix,
        )
    if d.sic is not None and d.sic_truth is not None:
        err = {"trained - truth": np.asarray(d.sic)[:, day] - np.asarray(d.sic_truth)[:, day]}
        if d.sic_background is not None:
            err["background - truth"] = np.asarray(d.sic_background)[:, day] - np.asarray(d.sic_truth)[:, day]
        for name, arr in d.sic_classic.items():
            err[f"{name.replace('_', ' ')} - truth"] = np.asarray(arr)[:, day] - np.asarray(d.sic_truth)[:, day]
        add(
            plot_maps(
                plot_dir / "map_sic_error.png",
                d.lon,
                d.lat,
                err,
                title=f"{d.title} SIC error{suffix}",
                cmap="RdBu_r",
                vmin=-0.5,
                vmax=0.5,
                units="SIC difference",
            ),
            "SIC minus truth" + suffix,
        )
    if d.props_grid is not None and np.asarray(d.props_grid).shape[-1] > 0:
        props = np.asarray(d.props_grid)
        for k in range(props.shape[-1]):
            add(
                plot_maps(
                    plot_dir / f"map_prop{k}.png",
                    d.lon,
                    d.lat,
                    {f"P{k}": props[:, day, k]},
                    title=f"{d.title} empirical variable P{k}{suffix}",
                    cmap="viridis",
                    units=f"P{k}",
                ),
                f"grid empirical variable P{k}" + suffix,
            )
    emis = {c: np.asarray(d.emis_grid[c])[:, day] for c in MAP_CHANNELS if c in d.emis_grid}
    if emis:
        add(
            plot_maps(
                plot_dir / "map_ice_emis.png",
                d.lon,
                d.lat,
                emis,
                title=f"{d.title} ice emissivity{suffix}",
                cmap="magma",
                units="ice emissivity",
            ),
            "ice emissivity " + "/".join(emis) + suffix,
        )
    if d.emissivity_model is not None and d.props_grid is not None and d.sic is not None and d.t_skin_map_k is not None:

        def evaluate(groups):
            """Spectra (V, H) of each group's mean state at its mean temperature (Q = 0)."""
            return {
                f"{label}, T={t:.0f} K": d.emissivity_model.emissivity_vh(
                    np.full(SPECTRUM_FREQ_GHZ.size, t), np.concatenate([p, np.zeros(d.nprop_obs)]), SPECTRUM_FREQ_GHZ
                )
                for label, (t, p) in groups.items()
            }

        spectra = evaluate(
            spectrum_groups(
                np.asarray(d.sic)[:, day], np.asarray(d.props_grid)[:, day], np.asarray(d.t_skin_map_k)[:, day]
            )
        )
        if spectra:
            add(
                plot_spectra(
                    plot_dir / "spectra.png",
                    SPECTRUM_FREQ_GHZ,
                    spectra,
                    title=f"{d.title} ice emissivity spectra{suffix}",
                ),
                "emissivity spectra of consolidated ice (SIC > 0.8) in three classes of P0" + suffix,
            )
        if d.spectrum_masks:
            typed = evaluate(
                spectrum_groups_from_masks(
                    {k: np.asarray(m)[:, day] for k, m in d.spectrum_masks.items()},
                    np.asarray(d.sic)[:, day],
                    np.asarray(d.props_grid)[:, day],
                    np.asarray(d.t_skin_map_k)[:, day],
                )
            )
            if typed:
                add(
                    plot_spectra(
                        plot_dir / "spectra_ice_types.png",
                        SPECTRUM_FREQ_GHZ,
                        typed,
                        title=f"{d.title} ice emissivity spectra by ice type{suffix}",
                    ),
                    "emissivity spectra of the trained state by ice type" + suffix,
                )
    if d.losses_epoch:
        add(
            plot_loss_curves(
                plot_dir / "loss_epoch.png", d.losses_epoch, xlabel="epoch", title=f"{d.title} cost terms per epoch"
            ),
            "cost terms per epoch",
        )
    if d.losses_batch:
        add(
            plot_loss_curves(
                plot_dir / "loss_batch.png", d.losses_batch, xlabel="batch", title=f"{d.title} cost terms per batch"
            ),
            "cost terms per batch",
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
            "histograms of observed minus simulated TB before and after training",
        )
        add(
            plot_departure_stats(
                plot_dir / "departures_stats.png",
                d.channel_names,
                d.dep_before,
                d.dep_after,
                title=f"{d.title} departure mean and standard deviation",
            ),
            "mean and standard deviation of observed minus simulated TB per channel",
        )
    paths.append(write_index(plot_dir, entries, title=f"{d.title} plots".strip()))
    return paths


__all__ = [
    "projected_xy",
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
