"""A plain-text per-sensor summary of the training data (the CLI prints it)."""

from __future__ import annotations

import numpy as np

from empirical_seaice.io._netcdf import row_blocks
from empirical_seaice.observations import BackgroundMaps, Observations, release_pages


def _sensor_rows(isensor: np.ndarray, s: int):
    """Rows of sensor ``s``: a slice when the sensors are contiguous and sorted, else an index array."""
    isensor = np.asarray(isensor)
    if isensor.size and np.all(isensor[1:] >= isensor[:-1]):
        a, b = np.searchsorted(isensor, [s, s + 1])
        return slice(int(a), int(b))
    return np.flatnonzero(isensor == s)


def channel_stats(obs: Observations, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per basis channel: count of valid TBs, min, mean, max (K) over ``rows`` (NaN where none).

    Accumulates in float64 over row blocks so that a memory-mapped cache is
    not read into memory at once (each block's pages are dropped after it).
    """
    nchan = obs.nchan
    count = np.zeros(nchan, np.int64)
    total = np.zeros(nchan, np.float64)
    lo = np.full(nchan, np.inf)
    hi = np.full(nchan, -np.inf)
    if isinstance(rows, slice):
        blocks = [slice(a, b) for a, b in row_blocks(rows.stop - rows.start)]
        blocks = [slice(rows.start + b.start, rows.start + b.stop) for b in blocks]
    else:
        blocks = [rows[a:b] for a, b in row_blocks(len(rows))]
    for blk in blocks:
        tb = np.asarray(obs.tb_obs_k[blk], dtype=np.float64)
        m = np.asarray(obs.mask[blk])
        count += m.sum(axis=0)
        total += np.where(m, tb, 0.0).sum(axis=0)
        if tb.size:
            lo = np.minimum(lo, np.where(m, tb, np.inf).min(axis=0))
            hi = np.maximum(hi, np.where(m, tb, -np.inf).max(axis=0))
        if isinstance(blk, slice):  # the block's pages of a memory-mapped cache: not kept resident
            release_pages(obs.tb_obs_k, blk)
            release_pages(obs.mask, blk)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    lo[count == 0] = np.nan
    hi[count == 0] = np.nan
    return count, lo, mean, hi


def describe(obs: Observations, background: BackgroundMaps | None = None) -> str:
    """Per-sensor summary: observations, channels, steps, grid points, TB min/mean/max per channel.

    Parameters
    ----------
    obs : Observations
        The training data.
    background : BackgroundMaps, optional
        Adds a line on the background SIC and skin-temperature maps.

    Returns
    -------
    str
        A multi-line table, one block per sensor.
    """
    basis = obs.basis
    lines = [
        f"training data: {obs.nobs} observations, {basis.nsensor} sensor(s), {basis.nchan} channels, "
        f"{obs.nstep} steps from step {obs.stepstart} (Julian day origin {obs.jd_origin:.1f}), "
        f"{obs.ngrid} grid points"
    ]
    if background is not None:
        sic = np.asarray(background.sic)
        tmap = np.asarray(background.t_skin_map_k)
        lines.append(
            f"background: SIC mean {sic.mean():.3f} (ngrid {background.ngrid} x {sic.shape[1]} columns, nlag "
            f"{background.nlag}); skin temperature {tmap.min():.1f}..{tmap.max():.1f} K"
        )
    for s, name in enumerate(basis.sensor_names):
        rows = _sensor_rows(obs.isensor, s)
        n = (rows.stop - rows.start) if isinstance(rows, slice) else len(rows)
        chans = np.sort(basis.sensor_channel_map[s])
        nsteps_with = np.count_nonzero(np.bincount(np.asarray(obs.istep[rows]), minlength=1)) if n else 0
        ngrid_with = np.count_nonzero(np.bincount(np.asarray(obs.igrid[rows]), minlength=1)) if n else 0
        lines.append(
            f"sensor {name}: {n} observations, {len(chans)} channels, {nsteps_with} of {obs.nstep} steps, "
            f"{ngrid_with} of {obs.ngrid} grid points"
        )
        count, lo, mean, hi = channel_stats(obs, rows)
        lines.append(f"  {'channel':<9}{'valid':>10}{'TB min':>9}{'mean':>9}{'max':>9}  (K)")
        for c in chans:
            lines.append(f"  {basis.channel_names[c]:<9}{count[c]:>10d}{lo[c]:>9.2f}{mean[c]:>9.2f}{hi[c]:>9.2f}")
    return "\n".join(lines)


__all__ = ["describe", "channel_stats"]
