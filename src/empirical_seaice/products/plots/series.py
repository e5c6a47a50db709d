"""Line plots against time: the daily sea ice extent and area, and the cost terms per epoch or batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.products.plots.style import OPEN_WATER_SIC, new_figure, save_figure


def extent_area(
    sic: np.ndarray, cell_area_km2: float | np.ndarray, threshold: float = OPEN_WATER_SIC
) -> tuple[np.ndarray, np.ndarray]:
    """Daily sea ice extent and area (10^6 km^2) of SIC maps (ngrid, nstep).

    extent = sum of the cell areas where SIC >= threshold (0.15);
    area = sum of SIC x cell area over the same cells. Missing cells (NaN) count as no ice.
    ``cell_area_km2``: each grid point's cell area (ngrid,) (km^2), or one for every cell.
    """
    s = np.asarray(sic, dtype=np.float64)
    a = np.broadcast_to(np.asarray(cell_area_km2, dtype=np.float64), s.shape[:1])[:, None]
    ice = np.isfinite(s) & (s >= threshold)
    extent = np.where(ice, a, 0.0).sum(axis=0) / 1e6
    area = np.where(ice, s * a, 0.0).sum(axis=0) / 1e6
    return extent, area


HEMISPHERE_NAMES = {"north": "Northern Hemisphere", "south": "Southern Hemisphere"}
"""The panels' row titles of each part of the grid (:func:`empirical_seaice.io.grid_cells.hemispheres`)."""


def plot_time_series(
    path: Path,
    dates: Sequence[str],
    series: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    *,
    title: str = "",
    notes: Mapping[str, Mapping[str, str]] | None = None,
) -> Path:
    """Daily sea ice extent and area (10^6 km^2), one line per source; a row of two panels per hemisphere.

    series : part -> label -> (extent (nstep,), area (nstep,)), the part "north" or "south" (each
    hemisphere's ice on its own: the two summed would mix a maximum with a minimum), or "" for a grid
    of one hemisphere, whose row then has no title of its own.
    notes : part -> label -> text appended to its legend entry (e.g. coverage).
    """
    import matplotlib.dates as mdates

    if not any(series.values()):
        raise SeaIceError("plot_time_series: no series to draw")
    t = np.array(dates, dtype="datetime64[D]")
    fig = new_figure(8.0, 4.2 * len(series))
    styles = {"trained": ("C0", "-", "o"), "background": ("C1", "--", "s"), "truth": ("k", "-", None)}
    panels = ((0, "sea ice extent (10$^6$ km$^2$)"), (1, "sea ice area (10$^6$ km$^2$)"))
    for row, (part, lines) in enumerate(series.items()):
        for col, (k, ylabel) in enumerate(panels):
            ax = fig.add_subplot(len(series), 2, 2 * row + col + 1)
            for j, (label, vals) in enumerate(lines.items()):
                y = np.asarray(vals[k], dtype=np.float64)
                if y.shape != t.shape:
                    raise SeaIceError(f"plot_time_series: {label!r} has {y.shape[0]} values, expected {t.size}")
                c, ls, m = styles.get(label.split()[0], (f"C{j + 2}", ":", "^"))
                note = (notes or {}).get(part, {}).get(label, "")
                ax.plot(t, y, color=c, ls=ls, marker=m, ms=3, lw=1.4, label=label + (f" ({note})" if note else ""))
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, int(np.ceil(t.size / 7)))))
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
            ax.tick_params(labelsize=8)
            ax.set_xlabel("date (UTC day of the 21 UTC window's end)", fontsize=8)
            if part:
                ax.set_title(HEMISPHERE_NAMES.get(part, part), fontsize=9)
            if col == 0:
                ax.legend(fontsize=7)
    fig.suptitle(title or "daily sea ice extent and area (SIC >= 0.15)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_loss_curves(path: Path, losses: Mapping[str, np.ndarray], *, xlabel: str = "epoch", title: str = "") -> Path:
    """Cost terms (J / nobs) against epoch or batch, log scale where all positive.

    ``total`` is what the optimiser minimised plus the monitored terms: its legend says
    when it includes the monitor-only (zero-gradient) ``warm_ice`` term.
    """
    curves = {k: np.asarray(v, dtype=np.float64) for k, v in losses.items() if np.size(v)}
    if not curves:
        raise SeaIceError("plot_loss_curves: no loss values to draw")
    fig = new_figure(9.0, 4.5)
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
    return save_figure(fig, path)


__all__ = ["HEMISPHERE_NAMES", "extent_area", "plot_time_series", "plot_loss_curves"]
