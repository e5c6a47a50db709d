"""Common styling of the pictures: figure size and resolution, the colours of land, open water and
"no data", colour maps by name, the open-water threshold, and saving a figure atomically.

Figures are built with :class:`matplotlib.figure.Figure` (Agg canvas; no pyplot global state, no
display needed). Colour maps are cmocean's (``ice`` for SIC, ``balance`` centred on zero for errors,
``thermal`` for emissivity) or matplotlib's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from empirical_seaice.io.transaction import atomic_path

OPEN_WATER_SIC = 0.15
"""SIC below which a cell is open water (masked on emissivity and state maps; the extent threshold)."""

LAND_COLOUR = "#bdb6a8"
WATER_COLOUR = "#c6dbef"
NO_DATA_COLOUR = "white"
NO_DATA_HATCH = "////"
NO_DATA_EDGE = "0.8"

DPI = 100
"""Resolution (dots per inch) of every figure."""


def new_figure(width_in: float, height_in: float):
    """An empty figure of the given size (inches) at :data:`DPI`."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=DPI)


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix, PNG by default) atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format=path.suffix.lstrip(".") or "png")
    return path


def colour_map(cmap: Any) -> Any:
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


__all__ = [
    "OPEN_WATER_SIC",
    "LAND_COLOUR",
    "WATER_COLOUR",
    "NO_DATA_COLOUR",
    "NO_DATA_HATCH",
    "NO_DATA_EDGE",
    "DPI",
    "new_figure",
    "save_figure",
    "colour_map",
]
