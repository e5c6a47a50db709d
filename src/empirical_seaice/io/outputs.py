"""Output files of a training run, with the reference names (README, "Outputs").

``TAG`` is the run tag (``--tag``). Every file follows CF-1.10
(:mod:`empirical_seaice.io.cf`: global attributes, ``time`` with a real epoch
beside the reference's ``julian_day``, standard names, fixed-length character
names); every variable carries ``units`` and ``long_name``; masked values are
NaN with ``_FillValue = NaN``; variables of more than
:data:`~empirical_seaice.io.cf.COMPRESS_MIN_BYTES` bytes are zlib-compressed
and chunked. docs/outputs.md lists every variable and attribute. Each file is
written through :func:`empirical_seaice.io.transaction.atomic_path` (temporary
name, fsync, rename), so an interrupted run never leaves a half-written file
under a final name; a run writes them into its staging set, published in one
step (:class:`empirical_seaice.io.transaction.OutputSet`).

==========================  =========================================================
file                         variables (dimensions)
==========================  =========================================================
``seaice_TAG.nc``            ``seaice`` (grid, lagstep); lon, lat (grid); time, time_bnds,
                             julian_day (lagstep)
``models_TAG.nc``            network weights (named inputs), ``wind_coef`` (channel),
                             ``bias_ice``/``bias_ocean`` (sensor, channel), the setup
                             (JSON attributes), losses per epoch / per batch per term;
                             and the ECMWF reference's names (v1: ``ice_coefs``,
                             ``ice_emis``, ``ocean_emis_bias``, ``tb_bias``; v2:
                             ``emis_layer{1,2}_{weights,biases}``, ``ocean_emis_bias``,
                             ``tb_bias``) for the reference's loaders
``properties_grid_TAG.nc``   ``properties`` (grid, step, prop); lon, lat; time, time_bnds, julian_day
``properties_obs_TAG.nc``    ``properties`` (iobs, prop)
``tbobs_TAG.nc``             ``tb`` (iobs, channel) observed, with lon/lat/time/julian_day/
                             sensor/grid/step per observation
``tbsim_initial_TAG.nc``     ``tb`` (iobs, channel) simulated before training
``tbsim_TAG.nc``             ``tb`` (iobs, channel) simulated after training
``tbzero_TAG.nc``            ``tb`` (iobs, channel) simulated with SIC = 0
``ice_emis_TAG.nc``          ``ice_emis`` (iobs, channel)
``model_TAG.pt``             PyTorch checkpoint: state_dict + configuration
==========================  =========================================================

This module names the files, writes the state maps (``seaice``,
``properties_grid``), reads variables back and saves/loads the checkpoint; the
rest is written by :mod:`empirical_seaice.io.obs_outputs` (the per-observation
files, whole or streamed block by block), :mod:`empirical_seaice.io.model_outputs`
(``models_TAG.nc``) and :mod:`empirical_seaice.io.output_writer` (the CF checks,
the encoding, the atomic and the streamed writers), re-exported here.

No torch here except in the checkpoint helpers (imported lazily), so the
readers/writers of NetCDF stay usable without the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from empirical_seaice.errors import SeaIceError, unreadable
from empirical_seaice.io import cf
from empirical_seaice.io.model_outputs import reference_model_variables, setup_json, write_models
from empirical_seaice.io.obs_outputs import (
    TB_LONG_NAMES,
    open_ice_emis,
    open_tb,
    open_tbobs,
    write_ice_emis,
    write_properties_obs,
    write_tb,
    write_tbobs,
)
from empirical_seaice.io.output_writer import (
    HeldOutputs,
    _lonlat,
    _step_times,
    _var,
    block_rows,
    step_julian_day,
    write_dataset,
)
from empirical_seaice.io.transaction import atomic_path

DIAGNOSTIC_FILES = ("tbobs", "tbsim_initial", "tbsim", "tbzero", "ice_emis")
"""Files written by the diagnostics (absent after ``--trainonly``)."""

MODEL_FILES = ("seaice", "models", "properties_grid", "properties_obs")
"""NetCDF files describing the trained model and state."""

CHECKPOINT = "model"
"""Stem of the PyTorch checkpoint ``model_TAG.pt``."""


def output_path(output: Path, stem: str, tag: str) -> Path:
    """``<output>/<stem>_<tag>.nc`` (``.pt`` for the checkpoint)."""
    ext = ".pt" if stem == CHECKPOINT else ".nc"
    return Path(output) / f"{stem}_{tag}{ext}"


def check_tag(tag: str, flag: str = "--tag") -> str:
    """A tag must be usable inside a file name.

    Raises
    ------
    SeaIceError
        Empty, or containing a path separator or whitespace, or longer than :data:`TAG_MAX_BYTES` (it is
        part of every file name, which the file system limits to 255 bytes).
    """
    if not tag or any(ch in tag for ch in "/\\ \t\n") or tag in (".", ".."):
        raise SeaIceError(f"{flag}: expected a file-name-safe tag (no '/', no spaces), got {tag!r}")
    if len(tag.encode()) > TAG_MAX_BYTES:
        raise SeaIceError(
            f"{flag}: at most {TAG_MAX_BYTES} bytes (it is part of every file name), got {len(tag.encode())}: "
            f"{tag[:20]}..."
        )
    return tag


TAG_MAX_BYTES = 100
"""The longest tag: file names hold it beside at most ~40 bytes of their own (``.properties_grid_TAG.nc.tmpPID``,
the run ids under ``.sets/TAG``), within the 255 bytes a file name may have."""


# --------------------------------------------------------------------- writing
def write_seaice(
    path: Path, sic: np.ndarray, julian_day: np.ndarray, lon=None, lat=None, nlag: int = 0, step_days: float = 1.0
) -> Path:
    """``seaice_TAG.nc``: the trained SIC map ``seaice`` (grid, lagstep).

    Parameters
    ----------
    sic : float (ngrid, nstep + nlag); the first ``nlag`` columns are the lag days.
    julian_day : float64 (nstep + nlag,), centre of each column's window.
    lon, lat : (ngrid,) degrees, or None (written as NaN).
    step_days : length of a step (days), for ``time_bnds``.
    """
    sic = np.asarray(sic, dtype=np.float32)
    times = _step_times("lagstep", julian_day, step_days)
    ds = xr.Dataset(
        {
            "seaice": _var(
                ("grid", "lagstep"),
                sic,
                "1",
                "sea ice concentration",
                **({"comment": f"columns 0..{nlag - 1} are the lag days before the period"} if nlag else {}),
                **cf.STANDARD["sic"],
            ),
            "julian_day": times.pop("julian_day"),
        },
        coords={**_lonlat(lon, lat, sic.shape[0]), **times},
        attrs={"title": "sea ice concentration trained by the empirical state method", "nlag": nlag},
    )
    return write_dataset(ds, path)


def write_properties_grid(
    path: Path, props: np.ndarray, julian_day: np.ndarray, lon=None, lat=None, step_days: float = 1.0
) -> Path:
    """``properties_grid_TAG.nc``: grid empirical state ``properties`` (grid, step, prop)."""
    props = np.asarray(props, dtype=np.float32)
    times = _step_times("step", julian_day, step_days)
    ds = xr.Dataset(
        {
            "properties": _var(
                ("grid", "step", "prop"),
                props,
                "1",
                "grid empirical state P[g, t, k]",
                comment="latent sea ice and snow properties learnt by the method; no physical unit",
            ),
            "julian_day": times.pop("julian_day"),
        },
        coords={**_lonlat(lon, lat, props.shape[0]), **times},
        attrs={"title": "grid empirical state (latent sea ice and snow properties) per grid point and step"},
    )
    return write_dataset(ds, path)


# --------------------------------------------------------------------- reading
def read_variable(path: Path, name: str) -> np.ndarray:
    """Read one variable of an output file as a numpy array.

    Raises
    ------
    SeaIceError
        The file is missing, or lacks the variable.
    """
    path = Path(path)
    if not path.is_file():
        raise SeaIceError(f"{path}: file not found")
    with xr.open_dataset(path, engine="netcdf4") as ds:
        if name not in ds.variables:
            raise SeaIceError(f"{path}: no variable {name!r} (has {', '.join(map(str, ds.variables))})")
        return np.asarray(ds[name].values)


# ------------------------------------------------------------------ checkpoint
def save_checkpoint(path: Path, payload: Mapping[str, Any]) -> Path:
    """Save a PyTorch checkpoint atomically (temporary name, then rename)."""
    import torch

    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)
    return path


def load_checkpoint(path: Path, flag: str = "--modeltag") -> dict[str, Any]:
    """Load ``model_TAG.pt``.

    Raises
    ------
    SeaIceError
        The file is missing or not a checkpoint of this project.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise SeaIceError(f"{flag}: no trained model {path} (train first, or give the tag of a trained run)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # unreadable/corrupt file
        raise SeaIceError(f"{path}: not a readable model checkpoint ({unreadable(exc)})") from None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise SeaIceError(f"{path}: not a model checkpoint of seaice-training (no state_dict)")
    return payload


__all__ = [
    "output_path",
    "check_tag",
    "write_dataset",
    "write_seaice",
    "write_properties_grid",
    "write_properties_obs",
    "write_tb",
    "open_tb",
    "write_tbobs",
    "open_tbobs",
    "write_ice_emis",
    "open_ice_emis",
    "write_models",
    "reference_model_variables",
    "read_variable",
    "save_checkpoint",
    "load_checkpoint",
    "step_julian_day",
    "setup_json",
    "HeldOutputs",
    "block_rows",
    "TB_LONG_NAMES",
    "DIAGNOSTIC_FILES",
    "MODEL_FILES",
    "CHECKPOINT",
]
