"""The per-channel pass of the reader: TBs and the radiative-transfer inputs of each channel, read
block by block straight into preallocated float32 ``(nobs, nchan)`` arrays in the unified channel
basis; invalid values clear the channel's mask and are zeroed in every field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io._netcdf import Layout2D, as_float, get_variable, open_dataset, read_rows, row_blocks
from empirical_seaice.io.layouts import SensorFiles
from empirical_seaice.io.sensor_read import SensorRead, var_path
from empirical_seaice.io.validity import FieldStats, classify
from empirical_seaice.sensors import ChannelBasis

PER_CHANNEL_MAP = {
    "OBSVALUE": "tb_obs_k",
    "EMIS_WATER": "emis_water",
    "TAUSFC": "tau",
    "TDOWN": "t_down_k",
    "TUP": "t_up_k",
    "TAUSFC_CLD": "tau_cld",
    "TDOWN_CLD": "t_down_cld_k",
    "TUP_CLD": "t_up_cld_k",
}
"""Per-channel variables of the files -> (nobs, nchan) fields of
:class:`~empirical_seaice.observations.Observations`."""


def _channel_layout(var, path: Path, name: str, nobs: int, sf: SensorFiles) -> Layout2D:
    sensor = sf.sensor
    nused, nlead = len(sensor.file_channels), len(sensor.leading_unused)
    allowed = {nused: 0}
    if nlead:
        allowed[nused + nlead] = nlead
    shape = tuple(var.shape)
    want = f"({nobs}, {nused})" + (f" or ({nobs}, {nused + nlead})" if nlead else "")
    if len(shape) != 2:
        raise SeaIceError(f"{path}: variable {name} expected shape {want} (observation, channel), got {shape}")
    if shape[0] == nobs and shape[1] in allowed:
        return Layout2D(False, shape[1], allowed[shape[1]])
    if shape[1] == nobs and shape[0] in allowed and shape[0] != nobs:
        return Layout2D(True, shape[0], allowed[shape[0]])
    if nobs in shape:
        other = shape[1] if shape[0] == nobs else shape[0]
        raise SeaIceError(
            f"{path}: variable {name} has {other} channels, sensor {sensor.name} expects {nused}"
            + (f" or {nused + nlead} (first {nlead} unused)" if nlead else "")
            + f" ({', '.join(sensor.file_channels)}); expected shape {want}, got {shape}"
        )
    raise SeaIceError(f"{path}: variable {name} expected shape {want} (observation, channel), got {shape}")


def read_per_channel(
    reads: list[SensorRead], offsets: list[int], basis: ChannelBasis, nobs: int, out: dict[str, np.ndarray]
) -> np.ndarray:
    """Read every per-channel field into ``out`` ((nobs, nchan) float32, unified basis); returns the mask.

    Every masked value is zeroed: a channel masked by one field is zeroed in all. Channels a sensor
    lacks were never written (0); only rows with an invalid value need that pass.
    """
    nchan = basis.nchan
    mask = np.zeros((nobs, nchan), dtype=bool)
    dirty = np.zeros(nobs, dtype=bool)
    for s, r in enumerate(reads):
        mask[offsets[s] : offsets[s] + r.keep.size, basis.present[s]] = True
    for name, key in PER_CHANNEL_MAP.items():
        arr = np.zeros((nobs, nchan), dtype=np.float32)
        for s, r in enumerate(reads):
            _read_channels(r, name, arr, mask, dirty, offsets[s], basis, s)
        out[key] = arr
    rows = np.flatnonzero(dirty)
    for a, b in row_blocks(rows.size):
        idx = rows[a:b]
        bad = ~mask[idx]
        for key in PER_CHANNEL_MAP.values():
            sub = out[key][idx]
            sub[bad] = 0.0
            out[key][idx] = sub
    return mask


def _runs(cmap: np.ndarray) -> list[tuple[int, int, int]]:
    """Split a channel map into runs of consecutive basis slots: ``(j0, j1, c0)``.

    File channels ``j0..j1-1`` go to basis slots ``c0..c0+j1-j0-1``; slice
    assignment per run is several times faster than one fancy-index scatter.

    >>> _runs(np.array([0, 1, 2, 4, 5, 9, 8]))
    [(0, 3, 0), (3, 5, 4), (5, 6, 9), (6, 7, 8)]
    """
    runs, j0 = [], 0
    for j in range(1, len(cmap) + 1):
        if j == len(cmap) or cmap[j] != cmap[j - 1] + 1:
            runs.append((j0, j, int(cmap[j0])))
            j0 = j
    return runs


def _read_channels(
    r: SensorRead,
    name: str,
    arr: np.ndarray,
    mask: np.ndarray,
    dirty: np.ndarray,
    offset: int,
    basis: ChannelBasis,
    s: int,
) -> None:
    """Read one per-channel variable of one sensor into ``arr`` rows ``offset + keep``.

    Invalid values are written as 0 and clear ``mask``; rows with any invalid
    value are flagged in ``dirty`` (their other fields are zeroed at the end).
    """
    sf, n = r.files, r.nobs_file
    path = var_path(sf, name)
    cmap = basis.sensor_channel_map[s]
    fcols = basis.sensor_file_columns[s]
    every = fcols.size == len(sf.sensor.file_channels)  # no file channel skipped (surface-blind ones are)
    runs = _runs(cmap)
    stats = FieldStats()
    with open_dataset(path) as ds:
        var, _ = get_variable(ds, path, name)
        layout = _channel_layout(var, path, name, n, sf)
        keep = r.keep
        # Only the blocks that hold kept observations are read (and checked).
        blocks = row_blocks(int(keep[-1]) + 1, start=int(keep[0])) if keep.size else ()
        for a, b in blocks:
            values = as_float(read_rows(var, a, b, layout), fills=False)
            if not every:
                values = np.ascontiguousarray(values[:, fcols])
            missing, out = classify(values, name)
            stats.add(values, missing, out)
            lo_k, hi_k = np.searchsorted(keep, [a, b])
            if hi_k == lo_k:
                continue
            bad = missing | out
            if hi_k - lo_k < b - a:  # some rows of the block are not kept
                rows_in_block = keep[lo_k:hi_k] - a
                values, bad = values[rows_in_block], bad[rows_in_block]
            # Kept rows land in a contiguous range of the output.
            d0, d1 = offset + lo_k, offset + hi_k
            anybad = bool(bad.any())
            if anybad:
                values[bad] = 0.0
                mask[d0:d1, cmap] &= ~bad
                dirty[d0:d1] |= bad.any(axis=1)
            for j0, j1, c0 in runs:
                arr[d0:d1, c0 : c0 + j1 - j0] = values[:, j0:j1]
    stats.check(path, name)


__all__ = ["PER_CHANNEL_MAP", "read_per_channel"]
