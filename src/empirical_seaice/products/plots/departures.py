"""Departures (observed minus simulated TB) per channel, before and after training: histograms,
and the mean and standard deviation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.products.plots.style import new_figure, save_figure


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
    fig = new_figure(2.6 * ncols, 2.1 * nrows + 0.6)
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
    return save_figure(fig, path)


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
    fig = new_figure(max(6.0, 0.5 * nch + 2), 5.0)
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
    return save_figure(fig, path)


__all__ = ["departure_stats", "plot_departure_histograms", "plot_departure_stats"]
