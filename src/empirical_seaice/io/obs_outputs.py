"""The per-observation output files (dimension ``iobs``), whole or streamed block by block.

``tbobs_TAG.nc`` (observed ``tb`` with each observation's lon, lat, time,
sensor, grid point, step), ``tbsim_initial_TAG.nc``, ``tbsim_TAG.nc``,
``tbzero_TAG.nc`` (simulated ``tb``), ``ice_emis_TAG.nc`` and
``properties_obs_TAG.nc`` (docs/outputs.md). Channels absent for an
observation's sensor are NaN (:func:`masked`).

Each ``(iobs, channel)`` file has two writers that give the same file: the
``write_*`` function takes the whole array; the ``open_*`` context manager
(:func:`empirical_seaice.io.output_writer.streamed_dataset`) takes it block by
block (``StreamedFile.write(name, start, block)``), so that a run's
diagnostics never hold a ``(nobs, nchan)`` array whole.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import xarray as xr

from empirical_seaice.io import cf
from empirical_seaice.io.chunk_writer import masked_values
from empirical_seaice.io.output_writer import (
    StreamedFile,
    _channel_coords,
    _direct_variables,
    _lonlat,
    _sensor_coords,
    _var,
    placeholder,
    streamed_dataset,
    write_dataset,
)
from empirical_seaice.observations import Observations
from empirical_seaice.sensors import ChannelBasis

TB_LONG_NAMES = {
    "tbobs": "observed brightness temperature",
    "tbsim_initial": "simulated brightness temperature before training",
    "tbsim": "simulated brightness temperature after training",
    "tbzero": "simulated brightness temperature with sea ice concentration set to zero",
}

_ORDER_COMMENT = "observations in the order of tbobs_TAG.nc (its lon, lat, time locate them)"


masked = masked_values
"""``values`` as float32 with NaN where ``mask`` is False (channels the sensor lacks): the chunk
writer's :func:`~empirical_seaice.io.chunk_writer.masked_values` under its older name. A streamed
writer takes the mask instead (``StreamedFile.write(name, start, values, mask)``): the compressing
threads apply it with the shuffle, without this copy."""


def write_properties_obs(path: Path, props: np.ndarray) -> Path:
    """``properties_obs_TAG.nc``: observation empirical state ``properties`` (iobs, prop)."""
    props = np.asarray(props, dtype=np.float32)
    ds = xr.Dataset(
        {"properties": _var(("iobs", "prop"), props, "1", "observation empirical state Q[i, k]")},
        attrs={"title": "observation-space empirical state per observation", "comment": _ORDER_COMMENT},
    )
    return write_dataset(ds, path)


def _tb_dataset(tb: np.ndarray, basis: ChannelBasis, kind: str) -> xr.Dataset:
    return xr.Dataset(
        {"tb": _var(("iobs", "channel"), tb, "K", TB_LONG_NAMES[kind], **cf.STANDARD["tb"])},
        coords=_channel_coords(basis),
        attrs={"title": TB_LONG_NAMES[kind], "comment": _ORDER_COMMENT},
    )


def write_tb(path: Path, tb: np.ndarray, basis: ChannelBasis, kind: str, mask: np.ndarray | None = None) -> Path:
    """``tbsim_initial_TAG.nc`` / ``tbsim_TAG.nc`` / ``tbzero_TAG.nc``: ``tb`` (iobs, channel).

    ``kind`` is the file stem (``tbsim_initial``, ``tbsim``, ``tbzero``);
    channels absent for an observation's sensor (``mask`` False) are NaN.
    """
    return write_dataset(_tb_dataset(masked_values(tb, mask), basis, kind), path)


@contextlib.contextmanager
def open_tb(path: Path, nobs: int, basis: ChannelBasis, kind: str, sync: bool = True) -> Iterator[StreamedFile]:
    """:func:`write_tb`'s file, ``tb`` written block by block (already :func:`masked`); ``sync``: as
    :func:`~empirical_seaice.io.output_writer.streamed_dataset`'s (False for a held file)."""
    ds = _tb_dataset(placeholder((nobs, basis.nchan), np.float32), basis, kind)
    with streamed_dataset(ds, path, ["tb"], sync=sync) as f:
        yield f


def _tbobs_dataset(obs: Observations, tb: np.ndarray, lon=None, lat=None) -> xr.Dataset:
    basis = obs.basis
    lon = obs.lon if lon is None else lon
    lat = obs.lat if lat is None else lat
    igrid = np.asarray(obs.igrid)
    per_obs_lon = np.asarray(lon, dtype=np.float32)[igrid] if lon is not None else None
    per_obs_lat = np.asarray(lat, dtype=np.float32)[igrid] if lat is not None else None
    jd = np.asarray(obs.julian_day, dtype=np.float64)
    sensor_attrs = {
        "units": "1",
        "long_name": "sensor index",
        "flag_values": np.arange(basis.nsensor, dtype=np.int16),
        "flag_meanings": " ".join(basis.sensor_names),
    }
    return xr.Dataset(
        {
            "tb": _var(("iobs", "channel"), tb, "K", TB_LONG_NAMES["tbobs"], **cf.STANDARD["tb"]),
            "julian_day": _var(("iobs",), jd, "days", "Julian day of the observation"),
            # the fork's names (isensor, igrid, istep): not the names of the dimensions sensor, grid, step
            "isensor": xr.Variable(("iobs",), np.asarray(obs.isensor, dtype=np.int16), attrs=sensor_attrs),
            "igrid": _var(("iobs",), np.asarray(obs.igrid, dtype=np.int32), "1", "grid point index (0-based)"),
            "istep": _var(
                ("iobs",), np.asarray(obs.istep, dtype=np.int32), "1", "time step within the selected period (0-based)"
            ),
            "obs_index": _var(
                ("iobs",),
                np.asarray(obs.obs_index, dtype=np.int64),
                "1",
                "index of the observation in its sensor's files",
            ),
        },
        coords={
            **_channel_coords(basis),
            **_sensor_coords(basis),
            **_lonlat(per_obs_lon, per_obs_lat, obs.nobs, "observation's grid point", dim="iobs"),
            "time": xr.Variable(("iobs",), cf.julian_day_to_time(jd), attrs=cf.time_attrs("time of the observation")),
        },
        attrs={
            "title": "observed brightness temperatures of the run in the unified channel basis",
            "jd_origin": float(obs.jd_origin),
            "stepstart": int(obs.stepstart),
        },
    )


def write_tbobs(path: Path, obs: Observations, lon=None, lat=None) -> Path:
    """``tbobs_TAG.nc``: observed ``tb`` (iobs, channel) in the unified basis, with per-observation
    lon, lat, time, julian_day, isensor, igrid, istep and the channel names/frequencies."""
    return write_dataset(_tbobs_dataset(obs, masked_values(obs.tb_obs_k, obs.mask), lon, lat), path)


@contextlib.contextmanager
def open_tbobs(path: Path, obs: Observations, lon=None, lat=None, sync: bool = True) -> Iterator[StreamedFile]:
    """:func:`write_tbobs`'s file, ``tb`` written block by block (``obs.tb_obs_k`` with its mask:
    ``write("tb", start, tb, mask)`` with in-memory copies of the block's rows, not views of the
    memory-mapped cache, whose pages would then stay resident while the compressing threads hold them);
    ``sync`` as :func:`open_tb`'s."""
    ds = _tbobs_dataset(obs, placeholder((obs.nobs, obs.nchan), np.float32), lon, lat)
    per_obs = [n for n in _direct_variables(ds) if ds[n].dims == ("iobs",)]  # compressed beside the blocks
    with streamed_dataset(ds, path, ["tb"], written=per_obs, sync=sync) as f:
        yield f


def _ice_emis_dataset(emis: np.ndarray, basis: ChannelBasis) -> xr.Dataset:
    return xr.Dataset(
        {"ice_emis": _var(("iobs", "channel"), emis, "1", "sea ice surface emissivity", **cf.STANDARD["ice_emis"])},
        coords=_channel_coords(basis),
        attrs={
            "title": "sea ice surface emissivity of each observation from the trained model",
            "comment": _ORDER_COMMENT,
        },
    )


def write_ice_emis(path: Path, emis: np.ndarray, basis: ChannelBasis, mask: np.ndarray | None = None) -> Path:
    """``ice_emis_TAG.nc``: ``ice_emis`` (iobs, channel), NaN where the channel is absent."""
    return write_dataset(_ice_emis_dataset(masked_values(emis, mask), basis), path)


@contextlib.contextmanager
def open_ice_emis(path: Path, nobs: int, basis: ChannelBasis, sync: bool = True) -> Iterator[StreamedFile]:
    """:func:`write_ice_emis`'s file, ``ice_emis`` written block by block (already :func:`masked`);
    ``sync`` as :func:`open_tb`'s."""
    ds = _ice_emis_dataset(placeholder((nobs, basis.nchan), np.float32), basis)
    with streamed_dataset(ds, path, ["ice_emis"], sync=sync) as f:
        yield f


__all__ = [
    "TB_LONG_NAMES",
    "masked",
    "write_properties_obs",
    "write_tb",
    "open_tb",
    "write_tbobs",
    "open_tbobs",
    "write_ice_emis",
    "open_ice_emis",
]
