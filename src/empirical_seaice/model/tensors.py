"""Observations as tensors on a device: the :class:`Batch` of one step and :class:`ObservationTensors`.

What the observation operator (:class:`~empirical_seaice.model.operator.HybridNetwork`) reads:
every observation packed once on the training device (the per-observation fields, the
channels, and the all-sky atmosphere as one effective specular atmosphere, data only, as the
observations hold it: :mod:`empirical_seaice.all_sky`), and minibatches
cut from it by index.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from empirical_seaice.compiled import empty_huge
from empirical_seaice.errors import SeaIceError
from empirical_seaice.model import physics
from empirical_seaice.model.packing import SensorAngles, mask_words, pack_floats, stray_channel
from empirical_seaice.observations import Observations

PER_OBS_FLOAT_FIELDS = ("t_skin_k", "wind_ms", "cloud_fraction", "cos2_scan", "cos_view")
"""Per-observation float fields carried by a :class:`Batch`, in packing order."""
PACKED_CHANNEL_FIELDS = ("tb_obs_k", "emis_water", "tau_eff", "down_eff_k", "const_k")
"""Per-channel float fields of the packed float table, in packing order (the mask is in the integers)."""
INT_FIELDS = ("igrid", "istep", "isensor")
"""Integer fields of the packed integer table, in packing order; the channel mask's words follow."""
MASK_COLUMN = len(INT_FIELDS)
"""The first column of the channel mask's int32 words in the packed integer table (channel ``c``:
bit ``c mod 32`` of column ``MASK_COLUMN + c // 32``; :func:`~empirical_seaice.model.packing.mask_words`)."""


@dataclass
class Batch:
    """One minibatch of observations as tensors on one device.

    Integer (B,) int64: ``iobs`` (row in the Observations the tensors were
    built from: the index), ``igrid``, ``istep``, ``isensor``. Float (B,): ``t_skin_k``,
    ``wind_ms``, ``cloud_fraction``, ``cos2_scan`` (the cross-track
    polarisation weight), ``cos_view`` (cosine of the local zenith angle).
    Float (B, nchan): ``tb_obs_k``, ``mask``
    (0/1), ``emis_water``, and the all-sky atmosphere as one effective
    specular atmosphere (:func:`physics.effective_atmosphere`): ``tau_eff``,
    ``down_eff_k``, ``const_k``. Fields may be strided views into one packed
    tensor.
    """

    iobs: Tensor
    igrid: Tensor
    istep: Tensor
    isensor: Tensor
    t_skin_k: Tensor
    wind_ms: Tensor
    cloud_fraction: Tensor
    cos2_scan: Tensor
    cos_view: Tensor
    tb_obs_k: Tensor
    mask: Tensor
    emis_water: Tensor
    tau_eff: Tensor
    down_eff_k: Tensor
    const_k: Tensor

    def __len__(self) -> int:
        return int(self.iobs.shape[0])


class ObservationTensors:
    """All observations packed once on a device, for fast batching.

    Floats are packed into one (nobs, 5 + 5 W) tensor: the per-observation
    fields, then ``tb_obs_k``, ``emis_water`` and the
    effective all-sky atmosphere ``tau_eff``, ``down_eff_k``, ``const_k``
    (the observations' own: the reader folds the six clear and cloudy terms into them,
    :mod:`empirical_seaice.all_sky`), each over the observation's own sensor's channels:
    ``W`` (:attr:`width`) is the most channels any one sensor has, and column ``k`` of a row's
    channel field is basis channel :attr:`channel_map` ``[isensor, k]`` (the sensor's channels in
    basis order; ``nchan`` past the sensor's last, zeros). A sensor's row then carries its own channels
    only, not every channel of the run's sensors: on the ``benchmark`` twin (17 channels, AMSR2 10,
    GMI 13, SSMIS 11) 296 bytes an observation instead of 376, and the more sensors a run combines the
    larger the gain. Non-finite values (NaN, inf) are replaced by 0 first so masked channels cannot
    turn the cost into NaN. Integers go into one (nobs, 3 + ceil(W / 32)) int32 tensor:
    ``INT_FIELDS``, then the mask of the row's channels as bits (:data:`MASK_COLUMN`: bit ``k`` for
    column ``k``); a row's ``iobs`` is its index. 4 (5 + 5 W) + 16 bytes per observation up to 32
    channels a sensor. :meth:`batch` is two ``index_select`` calls, the channels put back in their
    basis columns (one ``scatter`` each) and the mask's unpacking: a :class:`Batch` has every channel
    of the basis, 0 (mask 0) where the sensor lacks it.

    Parameters
    ----------
    obs : Observations
    device : torch device
    dtype : float dtype of the packed floats (float32; float64 for gradchecks).
    """

    _CHUNK = 1 << 20  # observations converted at a time (bounds the temporaries)
    row0 = 0
    """The row of the Observations that is this table's first row (a block of :class:`ObservationBlocks`)."""
    obs_rows: Tensor | None = None
    """Where the table holds chosen observations (the held-out fit's): the row of the Observations of
    each table row (int64), the batches' ``iobs``; None = row ``row0 + r``."""

    def __init__(
        self,
        obs: Observations,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        into: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        n, nc = obs.nobs, obs.nchan
        self.nobs = n
        self.nchan = nc
        self.device = torch.device(device)
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        cmap = channel_map(obs.basis)
        self.width = w = cmap.shape[1]
        self.channel_map = cmap
        """(nsensor, width) int64: the basis channel of each packed channel column of a sensor's rows
        (``nchan`` past the sensor's last channel): :func:`channel_map`."""
        if into is None:
            into = self.tables(n, w, dtype)
        # the first n rows of tables of at least n rows (new ones, ObservationBlocks' buffers, build_network's)
        floats, ints_np = torch.from_numpy(into[0][:n]).to(dtype), into[1][:n]
        self._slices: dict[str, tuple[int, int | None]] = {}
        col = 0
        for name in PER_OBS_FLOAT_FIELDS:
            self._slices[name] = (col, None)
            col += 1
        for name in PACKED_CHANNEL_FIELDS:
            self._slices[name] = (col, col + w)
            col += w
        threads = torch.get_num_threads()
        compiled = pack_floats(obs, floats.numpy(), ints_np, self._slices, _sensor_angles(obs), cmap, threads=threads)
        torch.set_num_threads(threads)  # the run's count, whatever numba's OpenMP loop left behind
        if not compiled:
            self._pack_tensor_path(obs, floats, ints_np, np_dtype)
        ints = torch.from_numpy(ints_np)
        self._bit = torch.arange(w, dtype=torch.int32, device=self.device)
        self._cmap = torch.from_numpy(cmap).to(self.device)
        self.floats = floats.to(self.device)
        self.ints = ints.to(self.device)

    def _pack_tensor_path(self, obs: Observations, floats: Tensor, ints_np: np.ndarray, np_dtype) -> None:
        """The packing without numba (or into float64 tables): the same values, chunk by chunk, with torch."""
        cmap_t = torch.from_numpy(self.channel_map)

        def finite(name: str, rows: slice) -> torch.Tensor:
            arr = np.asarray(getattr(obs, name)[rows], dtype=np_dtype)
            return torch.from_numpy(np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0))

        for start in range(0, self.nobs, self._CHUNK):
            rows = slice(start, min(start + self._CHUNK, self.nobs))
            block = floats[rows]
            # each row's own sensor's channels (its columns of the basis; past its last, a column of zeros)
            cols = cmap_t.index_select(0, torch.from_numpy(np.asarray(obs.isensor[rows], dtype=np.int64)))

            def own(x: torch.Tensor, cols: torch.Tensor = cols) -> torch.Tensor:
                return torch.nn.functional.pad(x, (0, 1)).gather(1, cols)

            _check_sensor_channels(obs, rows, self.channel_map)
            for name in PER_OBS_FLOAT_FIELDS[:-2]:
                block[:, self._slices[name][0]] = finite(name, rows)
            block[:, self._slices["cos2_scan"][0]] = _cos2_scan(obs, rows, np_dtype)
            block[:, self._slices["cos_view"][0]] = _cos_view(obs, rows)
            for name in PACKED_CHANNEL_FIELDS:
                a, b = self._slices[name]
                block[:, a:b] = own(finite(name, rows))
            mask = torch.from_numpy(np.asarray(obs.mask[rows], dtype=bool))
            ints_np[rows, MASK_COLUMN:] = mask_words(own(mask).numpy())
        for k, name in enumerate(INT_FIELDS):  # int32: grid points, steps and sensors < 2**31
            ints_np[:, k] = getattr(obs, name)

    @staticmethod
    def tables(n: int, width: int, dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, np.ndarray]:
        """New, unfilled float and integer tables for ``n`` observations of ``width`` channel columns
        (:func:`channel_map`'s width for the observations' basis; the ``into`` of the constructor).
        Read at random by the training step: in 2 MiB pages (one TLB entry per 2 MiB, not per 4 KiB),
        their pages brought in on a background thread from now on
        (:func:`~empirical_seaice.compiled.populate_behind`: the first touch of the float table's
        pages is paid beside the packing, or beside whatever the caller does before it)."""
        ncol = len(PER_OBS_FLOAT_FIELDS) + len(PACKED_CHANNEL_FIELDS) * width
        nint = MASK_COLUMN + max(1, -(-width // 32))
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        return empty_huge((n, ncol), np_dtype, populate=True), empty_huge((n, nint), np.int32, populate=True)

    def __len__(self) -> int:
        return self.nobs

    def batch(self, index: Tensor) -> Batch:
        """The observations ``index`` (int64 tensor on :attr:`device`) as a :class:`Batch`."""
        f = self.floats.index_select(0, index)
        i = self.ints.index_select(0, index)
        fields: dict[str, Tensor] = {name: i[:, k].long() for k, name in enumerate(INT_FIELDS)}
        if self.obs_rows is not None:
            fields["iobs"] = self.obs_rows.index_select(0, index)
        else:
            fields["iobs"] = index + self.row0 if self.row0 else index
        words = i[:, MASK_COLUMN + torch.div(self._bit, 32, rounding_mode="floor")]  # (B, width)
        cols = self._cmap.index_select(0, fields["isensor"])  # each row's basis channels (nchan: none)
        nb, nc = index.shape[0], self.nchan

        def basis(x: Tensor) -> Tensor:  # (B, width) -> (B, nchan): the channels back in their basis columns
            return torch.zeros((nb, nc + 1), dtype=f.dtype, device=f.device).scatter_(1, cols, x)[:, :nc]

        fields["mask"] = basis(words.bitwise_right_shift(self._bit % 32).bitwise_and_(1).to(f.dtype))
        for name, (a, b) in self._slices.items():
            fields[name] = f[:, a] if b is None else basis(f[:, a:b])
        return Batch(**fields)

    def all(self) -> Batch:
        """Every observation as one batch."""
        return self.batch(torch.arange(self.nobs, device=self.device))


class ObservationBlocks:
    """The observations packed one block at a time, for a forward pass that visits them in order
    (the final diagnostics): :meth:`block` packs rows ``start .. stop - 1`` into an
    :class:`ObservationTensors` (``row0 = start``), so a pass holds one block's table instead of the
    whole one (296 bytes per observation on the ``benchmark`` twin). The packed values are the whole table's
    (the same packing, row by row). Every block is packed into the same buffers: a block is valid
    until the next :meth:`block` call, which overwrites its tables.

    The packing of a block does not drop the cache pages it read (the block's arrays are plain views of
    the memory maps): the pass drops them after the block
    (:meth:`~empirical_seaice.observations.Observations.release`), once its sums and files have read the
    same rows again (the mask, the observed TB, the grid indices). When the packing dropped them too, those
    reads faulted them back in: on the ``benchmark`` twin's final pass 16,300-19,500 page faults against
    10,000-13,900, and 1.33-1.39 s against 1.30-1.33 s (four interleaved pairs; benchmarks/results.md,
    seventeenth round)."""

    def __init__(self, obs: Observations, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.obs, self.device, self.dtype = obs, torch.device(device), dtype
        self.nobs = obs.nobs
        self._buffers: tuple[np.ndarray, np.ndarray] | None = None  # the largest block's tables, reused

    def __len__(self) -> int:
        return self.nobs

    def block(self, start: int, stop: int) -> ObservationTensors:
        """Observations ``start .. stop - 1`` packed (row ``r`` is observation ``start + r``)."""
        rows = slice(start, stop)
        # no copy; plain arrays, not memory maps, so the packing leaves the rows' cache pages to the pass
        views: dict[str, Any] = {name: np.asarray(arr[rows]) for name, arr in self.obs.arrays().items()}
        view = replace(self.obs, **views)
        buf = self._buffers
        if self.device.type != "cpu" or (buf is not None and buf[0].shape[0] < stop - start):
            buf = None
        part = ObservationTensors(view, self.device, self.dtype, into=buf)
        if self.device.type == "cpu" and buf is None:
            self._buffers = (part.floats.numpy(), part.ints.numpy())
        part.row0 = start
        return part


def channel_map(basis) -> np.ndarray:
    """(nsensor, width) int64: the basis channels of each sensor (``basis.present``) in basis order, padded
    with ``nchan``; ``width`` the most channels any sensor has (at least 1). The packed tables' channel
    columns of a sensor's rows (:class:`ObservationTensors`)."""
    present = np.asarray(basis.present, dtype=bool)
    own = [np.flatnonzero(p) for p in present]
    width = max([1] + [len(c) for c in own])
    out = np.full((len(own), width), basis.nchan, dtype=np.int64)
    for s, c in enumerate(own):
        out[s, : len(c)] = c
    return out


def _check_sensor_channels(obs: Observations, rows: slice, cmap: np.ndarray) -> None:
    """:func:`~empirical_seaice.model.packing.stray_channel`'s error where an observation of ``rows`` has a
    channel in its mask that its sensor lacks (the compiled packing checks it as it packs)."""
    present = np.asarray(obs.basis.present, dtype=bool)  # what channel_map is made of
    isensor = np.asarray(obs.isensor[rows], dtype=np.int64)
    stray = (np.asarray(obs.mask[rows], dtype=bool) & ~present[isensor]).any(axis=1)
    if stray.any():
        raise stray_channel(obs, rows.start + int(np.flatnonzero(stray)[0]), cmap)


def _sensor_angles(obs: Observations) -> SensorAngles:
    """The ``cos2_scan`` and ``cos_view`` of each sensor's rows for the compiled packing: a conical sensor's
    are one value each (1 and the cosine of its incidence angle, as :func:`_cos2_scan` and :func:`_cos_view`
    compute them; elementwise, so the same bits), a cross-track sensor's are computed per row, from ``ZENITH``."""
    basis = obs.basis
    s = np.asarray(obs.isensor)
    if s.size and (s.min() < 0 or s.max() >= basis.nsensor):  # the compiled pass looks them up unchecked
        raise SeaIceError(f"Observations.isensor: expected 0..{basis.nsensor - 1}, got {s.min()}..{s.max()}")
    inc = np.array([basis.sensor(s).incidence_deg for s in range(basis.nsensor)], dtype=np.float64)
    cos_view = np.cos(np.radians(inc))
    cross = np.zeros(basis.nsensor, dtype=bool) if basis.cross_track is None else np.asarray(basis.cross_track, bool)
    table = np.stack([np.ones(basis.nsensor), np.where(np.isfinite(cos_view), cos_view, 1.0), cross.astype(np.float64)])
    if not cross.any():
        return SensorAngles(table)
    return SensorAngles(table, lambda rows: (_cos2_scan(obs, rows, np.float64).numpy(), _cos_view(obs, rows).numpy()))


def _cos2_scan(obs: Observations, rows: slice, np_dtype) -> torch.Tensor:
    """``cos^2`` of the scan angle of each observation: from ``ZENITH`` and the orbit altitude
    for cross-track sensors (:func:`physics.scan_angle_cos2`), 1 for conical ones."""
    basis = obs.basis
    isensor = np.asarray(obs.isensor[rows], dtype=np.int64)
    out = torch.ones(isensor.size, dtype=torch.float64)
    if basis.cross_track is None or not basis.cross_track.any():
        return out
    cross = basis.cross_track[isensor]
    zen = torch.from_numpy(np.asarray(obs.zenith_deg[rows], dtype=np.float64)[cross])
    alt = torch.from_numpy(np.asarray(basis.altitude_km, dtype=np.float64)[isensor[cross]])
    out[torch.from_numpy(cross)] = physics.scan_angle_cos2(zen, alt)
    return out


def _cos_view(obs: Observations, rows: slice) -> torch.Tensor:
    """Cosine of each observation's local zenith (view) angle: ``ZENITH`` for cross-track
    sensors, the sensor's incidence angle for conical ones (1 where neither is finite)."""
    basis = obs.basis
    isensor = np.asarray(obs.isensor[rows], dtype=np.int64)
    inc = np.array([basis.sensor(s).incidence_deg for s in range(basis.nsensor)], dtype=np.float64)
    theta = inc[isensor]
    if basis.cross_track is not None and basis.cross_track.any():
        cross = basis.cross_track[isensor]
        theta[cross] = np.asarray(obs.zenith_deg[rows], dtype=np.float64)[cross]
    out = np.cos(np.radians(theta))
    return torch.from_numpy(np.where(np.isfinite(out), out, 1.0))


__all__ = [
    "Batch",
    "ObservationTensors",
    "ObservationBlocks",
    "PER_OBS_FLOAT_FIELDS",
    "PACKED_CHANNEL_FIELDS",
    "INT_FIELDS",
    "MASK_COLUMN",
    "channel_map",
]
