"""Emissivity spectra: representative ice states of a run and their V and H emissivity against frequency."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.products.plots.style import new_figure, save_figure

SPECTRUM_FREQ_GHZ = np.linspace(10.0, 190.0, 91)
"""Frequencies (GHz) of the emissivity spectra."""


class EmissivityVH(Protocol):
    """Anything with ``emissivity_vh(t_skin_k, props, freq_ghz) -> (..., 2)`` and ``nprop``
    (e.g. :class:`empirical_seaice.products.export.NumpyEmissivityModel`)."""

    nprop: int

    def emissivity_vh(self, t_skin_k: Any, props: Any, freq_ghz: Any) -> np.ndarray: ...


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
    fig = new_figure(9.5, 4.8)
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
    return save_figure(fig, path)


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


__all__ = ["SPECTRUM_FREQ_GHZ", "EmissivityVH", "plot_spectra", "spectrum_groups", "spectrum_groups_from_masks"]
