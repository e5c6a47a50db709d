"""Observations as tensors on a device: the :class:`Batch` of one step and :class:`ObservationTensors`.

What the observation operator (:class:`~empirical_seaice.model.operator.HybridNetwork`) reads:
every observation packed once on the training device (the per-observation fields, the
channels, and the all-sky atmosphere folded into one effective specular atmosphere by
:func:`empirical_seaice.model.physics.effective_atmosphere`, data only), and minibatches
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
from empirical_seaice.model.packing import SensorAngles, mask_words, pack_floats
from empirical_seaice.observations import Observations

PER_OBS_FLOAT_FIELDS = ("t_skin_k", "wind_ms", "cloud_fraction", "cos2_scan", "cos_view")
"""Per-observation float fields carried by a :class:`Batch`, in packing order."""
PACKED_CHANNEL_FIELDS = ("tb_obs_k", "emis_water", "tau_eff", "down_eff_k", "const_k")
"""Per-channel float fields of the packed float table, in packing order (the mask is in the integers)."""
ATMOSPHERE_FIELDS = ("tau", "t_down_k", "t_up_k", "tau_cld", "t_down_cld_k", "t_up_cld_k")
"""The Observations' clear and cloudy atmosphere, packed as (``tau_eff``, ``down_eff_k``, ``const_k``)."""
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

    Floats are packed into one (nobs, 5 + 5 nchan) tensor: the per-observation
    fields, then ``tb_obs_k``, ``emis_water`` and the
    effective all-sky atmosphere ``tau_eff``, ``down_eff_k``, ``const_k``
    computed here once from the six clear and cloudy terms
    (:func:`physics.effective_atmosphere`; data only, so a step does not
    redo it, and a row is a third shorter). Non-finite values (NaN, inf) are
    replaced by 0 first so masked channels cannot turn the cost into NaN.
    Integers go into one (nobs, 3 + ceil(nchan / 32)) int32 tensor: ``INT_FIELDS``, then the
    channel mask as bits (:data:`MASK_COLUMN`); a row's ``iobs`` is its index. 4 (5 + 5 nchan)
    + 16 bytes per observation up to 32 channels (376 at 17 channels; 460 with the mask as
    floats and int64 integers). :meth:`batch` is two ``index_select`` calls and the mask's unpacking.

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
        if into is None:
            into = self.tables(n, nc, dtype)
        # the first n rows of tables of at least n rows (new ones, ObservationBlocks' buffers, build_network's)
        floats, ints_np = torch.from_numpy(into[0][:n]).to(dtype), into[1][:n]
        self._slices: dict[str, tuple[int, int | None]] = {}

        def finite(name: str, rows: slice) -> torch.Tensor:
            arr = np.asarray(getattr(obs, name)[rows], dtype=np_dtype)
            return torch.from_numpy(np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0))

        col = 0
        for name in PER_OBS_FLOAT_FIELDS:
            self._slices[name] = (col, None)
            col += 1
        for name in PACKED_CHANNEL_FIELDS:
            self._slices[name] = (col, col + nc)
            col += nc
        threads = torch.get_num_threads()
        compiled = pack_floats(obs, floats.numpy(), ints_np, self._slices, _sensor_angles(obs), threads=threads)
        torch.set_num_threads(threads)  # the run's count, whatever numba's OpenMP loop left behind
        for start in range(0, 0 if compiled else n, self._CHUNK):
            rows = slice(start, min(start + self._CHUNK, n))
            block = floats[rows]
            for name in PER_OBS_FLOAT_FIELDS[:-2]:
                block[:, self._slices[name][0]] = finite(name, rows)
            block[:, self._slices["cos2_scan"][0]] = _cos2_scan(obs, rows, np_dtype)
            block[:, self._slices["cos_view"][0]] = _cos_view(obs, rows)
            for name in ("tb_obs_k", "emis_water"):
                a, b = self._slices[name]
                block[:, a:b] = finite(name, rows)
            ints_np[rows, MASK_COLUMN:] = mask_words(obs.mask[rows])
            atmosphere = physics.effective_atmosphere(
                **{name: finite(name, rows) for name in ATMOSPHERE_FIELDS},
                cloud_fraction=finite("cloud_fraction", rows),
            )
            for name, value in zip(("tau_eff", "down_eff_k", "const_k"), atmosphere, strict=True):
                a, b = self._slices[name]
                block[:, a:b] = value
        for k, name in enumerate(() if compiled else INT_FIELDS):  # int32: grid points, steps and sensors < 2**31
            ints_np[:, k] = getattr(obs, name)
        ints = torch.from_numpy(ints_np)
        self._bit = torch.arange(nc, dtype=torch.int32, device=self.device)
        self.floats = floats.to(self.device)
        self.ints = ints.to(self.device)

    @staticmethod
    def tables(n: int, nchan: int, dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, np.ndarray]:
        """New, unfilled float and integer tables for ``n`` observations of ``nchan`` channels (the ``into``
        of the constructor). Read at random by the training step: in 2 MiB pages (one TLB entry per
        2 MiB, not per 4 KiB), their pages brought in on a background thread from now on
        (:func:`~empirical_seaice.compiled.populate_behind`: the first touch of the float table's
        pages is paid beside the packing, or beside whatever the caller does before it)."""
        ncol = len(PER_OBS_FLOAT_FIELDS) + len(PACKED_CHANNEL_FIELDS) * nchan
        nint = MASK_COLUMN + max(1, -(-nchan // 32))
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
        words = i[:, MASK_COLUMN + torch.div(self._bit, 32, rounding_mode="floor")]  # (B, nchan)
        fields["mask"] = words.bitwise_right_shift(self._bit % 32).bitwise_and_(1).to(f.dtype)
        for name, (a, b) in self._slices.items():
            fields[name] = f[:, a] if b is None else f[:, a:b]
        return Batch(**fields)

    def all(self) -> Batch:
        """Every observation as one batch."""
        return self.batch(torch.arange(self.nobs, device=self.device))


class ObservationBlocks:
    """The observations packed one block at a time, for a forward pass that visits them in order
    (the final diagnostics): :meth:`block` packs rows ``start .. stop - 1`` into an
    :class:`ObservationTensors` (``row0 = start``), so a pass holds one block's table instead of the
    whole one (376 bytes per observation at 17 channels). The packed values are the whole table's
    (the same packing, row by row). Every block is packed into the same buffers: a block is valid
    until the next :meth:`block` call, which overwrites its tables."""

    def __init__(self, obs: Observations, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.obs, self.device, self.dtype = obs, torch.device(device), dtype
        self.nobs = obs.nobs
        self._buffers: tuple[np.ndarray, np.ndarray] | None = None  # the largest block's tables, reused

    def __len__(self) -> int:
        return self.nobs

    def block(self, start: int, stop: int) -> ObservationTensors:
        """Observations ``start .. stop - 1`` packed (row ``r`` is observation ``start + r``)."""
        rows = slice(start, stop)
        views: dict[str, Any] = {name: arr[rows] for name, arr in self.obs.arrays().items()}  # no copy
        view = replace(self.obs, **views)
        buf = self._buffers
        if self.device.type != "cpu" or (buf is not None and buf[0].shape[0] < stop - start):
            buf = None
        part = ObservationTensors(view, self.device, self.dtype, into=buf)
        if self.device.type == "cpu" and buf is None:
            self._buffers = (part.floats.numpy(), part.ints.numpy())
        part.row0 = start
        return part


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
    "ATMOSPHERE_FIELDS",
    "INT_FIELDS",
    "MASK_COLUMN",
]
