"""Output files of a training run, with the reference names (PHYSICS.md "Outputs").

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

No torch here except in the checkpoint helpers (imported lazily), so the
readers/writers of NetCDF stay usable without the model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import cf
from empirical_seaice.io.transaction import atomic_path
from empirical_seaice.observations import WINDOW_OFFSET_DAYS, Observations
from empirical_seaice.sensors import POL_NAMES, ChannelBasis

DIAGNOSTIC_FILES = ("tbobs", "tbsim_initial", "tbsim", "tbzero", "ice_emis")
"""Files written by the diagnostics (absent after ``--trainonly``)."""

MODEL_FILES = ("seaice", "models", "properties_grid", "properties_obs")
"""NetCDF files describing the trained model and state."""

CHECKPOINT = "model"
"""Stem of the PyTorch checkpoint ``model_TAG.pt``."""

TB_LONG_NAMES = {
    "tbobs": "observed brightness temperature",
    "tbsim_initial": "simulated brightness temperature before training",
    "tbsim": "simulated brightness temperature after training",
    "tbzero": "simulated brightness temperature with sea ice concentration set to zero",
}


def output_path(output: Path, stem: str, tag: str) -> Path:
    """``<output>/<stem>_<tag>.nc`` (``.pt`` for the checkpoint)."""
    ext = ".pt" if stem == CHECKPOINT else ".nc"
    return Path(output) / f"{stem}_{tag}{ext}"


def check_tag(tag: str, flag: str = "--tag") -> str:
    """A tag must be usable inside a file name.

    Raises
    ------
    SeaIceError
        Empty, or containing a path separator or whitespace.
    """
    if not tag or any(ch in tag for ch in "/\\ \t\n") or tag in (".", ".."):
        raise SeaIceError(f"{flag}: expected a file-name-safe tag (no '/', no spaces), got {tag!r}")
    return tag


# --------------------------------------------------------------------- writing
def _check_attrs(ds: xr.Dataset) -> None:
    bounds = {str(v.attrs["bounds"]) for v in ds.variables.values() if "bounds" in v.attrs}
    for name, var in ds.variables.items():
        if var.dtype.kind in "OSU" or name in bounds:  # CF: bounds inherit their variable's attributes
            continue
        for attr in ("units", "long_name"):
            if attr not in var.attrs:
                raise ValueError(f"output variable {name!r} lacks the {attr!r} attribute")


def write_dataset(ds: xr.Dataset, path: Path) -> Path:
    """Write ``ds`` to ``path`` atomically (temporary name, then :func:`os.replace`).

    Every non-string variable except a CF bounds variable must carry ``units``
    and ``long_name``. The CF global attributes (:func:`empirical_seaice.io.cf.global_attributes`)
    are added under the file's own (``ds.attrs`` must hold a ``title``).
    """
    path = Path(path)
    _check_attrs(ds)
    if "title" not in ds.attrs:
        raise ValueError(f"output {path.name} lacks a title")
    # A coordinate that belongs to no data variable (e.g. time_bnds, the (sensor, channel) tables)
    # would be listed in a global "coordinates" attribute, which CF does not define: make it a variable.
    orphans = [
        str(c)
        for c in ds.coords
        if c not in ds.dims and not any(set(ds[c].dims) <= set(v.dims) for v in ds.data_vars.values())
    ]
    ds = ds.reset_coords(orphans) if orphans else ds.copy()
    ds.attrs = cf.global_attributes(**ds.attrs)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=cf.encoding(ds.variables))
    return path


def _var(dims, data, units: str, long_name: str, **attrs) -> xr.Variable:
    return xr.Variable(dims, data, attrs={"units": units, "long_name": long_name, **attrs})


def _names(dim: str, values, long_name: str, **attrs) -> xr.Variable:
    """A name per element of ``dim`` (written as a fixed-length char array)."""
    return xr.Variable((dim,), np.array([str(v) for v in values], dtype=str), attrs={"long_name": long_name, **attrs})


def _channel_coords(basis: ChannelBasis) -> dict[str, xr.Variable]:
    """Channel names (dimension ``channel``), polarisation and observation error."""
    return {
        "channel_name": _names(
            "channel", basis.channel_names, "channel name in the unified channel basis", **cf.STANDARD["channel_name"]
        ),
        "polarisation": _names("channel", [POL_NAMES[p] for p in basis.pol], "polarisation (V, H, QV or QH)"),
        "obs_error": _var(("channel",), basis.obs_error_k.astype(np.float32), "K", "observation error sigma_c"),
    }


def _sensor_coords(basis: ChannelBasis) -> dict[str, xr.Variable]:
    return {
        "sensor_name": _names("sensor", basis.sensor_names, "sensor name"),
        "frequency": _var(
            ("sensor", "channel"),
            basis.freq_ghz.astype(np.float32),
            "GHz",
            "channel frequency on each sensor",
            **cf.STANDARD["frequency"],
        ),
        "channel_present": _var(
            ("sensor", "channel"), basis.present.astype(np.int8), "1", "1 where the sensor has the channel"
        ),
    }


def step_julian_day(jd_origin: float, stepstart: int, nstep: int, nlag: int = 0, steps_per_day: int = 1) -> np.ndarray:
    """Julian day at the centre of each (lag)step's 21 UTC-21 UTC window.

    Column ``col`` is step ``t = col - nlag`` of the selected period, i.e. the
    window starting at ``jd_origin + 0.375 + (stepstart + t) / n_per_day``.
    """
    t = np.arange(-nlag, nstep, dtype=np.float64)
    return jd_origin + WINDOW_OFFSET_DAYS + (stepstart + t + 0.5) / steps_per_day


def _step_times(dim: str, julian_day: np.ndarray, step_days: float) -> dict[str, xr.Variable]:
    """``time`` (days since 1970-01-01, window centre) with ``time_bnds`` (window start and end)
    and the reference's ``julian_day``, along ``dim``."""
    jd = np.asarray(julian_day, dtype=np.float64)
    t = cf.julian_day_to_time(jd)
    half = 0.5 * float(step_days)
    return {
        "time": xr.Variable((dim,), t, attrs=cf.time_attrs("centre of the step's 21 UTC window", bounds="time_bnds")),
        "time_bnds": xr.Variable((dim, "nv"), np.stack([t - half, t + half], axis=1)),
        "julian_day": _var(
            (dim,),
            jd,
            "days",
            "Julian day at the centre of the step's 21 UTC window",
            comment="astronomical Julian day (days since -4712-01-01 12:00 UTC); the same instant as time",
        ),
    }


def _lonlat(lon, lat, ngrid: int, what: str = "grid point", dim: str = "grid") -> dict[str, xr.Variable]:
    out = {}
    for name, arr in (("lon", lon), ("lat", lat)):
        if arr is None:
            arr = np.full(ngrid, np.nan, dtype=np.float32)
        long = ("longitude" if name == "lon" else "latitude") + f" of the {what}"
        out[name] = xr.Variable((dim,), np.asarray(arr, dtype=np.float32), attrs=cf.lonlat_attrs(name, long))
    return out


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
                comment=f"columns 0..{nlag - 1} are the lag days before the period" if nlag else "",
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


def write_properties_obs(path: Path, props: np.ndarray) -> Path:
    """``properties_obs_TAG.nc``: observation empirical state ``properties`` (iobs, prop)."""
    props = np.asarray(props, dtype=np.float32)
    ds = xr.Dataset(
        {"properties": _var(("iobs", "prop"), props, "1", "observation empirical state Q[i, k]")},
        attrs={
            "title": "observation-space empirical state per observation",
            "comment": "observations in the order of tbobs_TAG.nc (its lon, lat, time locate them)",
        },
    )
    return write_dataset(ds, path)


def _masked(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    out = np.asarray(values, dtype=np.float32)
    if mask is not None:
        out = np.where(np.asarray(mask, dtype=bool), out, np.float32(np.nan))
    return out


def write_tb(path: Path, tb: np.ndarray, basis: ChannelBasis, kind: str, mask: np.ndarray | None = None) -> Path:
    """``tbsim_initial_TAG.nc`` / ``tbsim_TAG.nc`` / ``tbzero_TAG.nc``: ``tb`` (iobs, channel).

    ``kind`` is the file stem (``tbsim_initial``, ``tbsim``, ``tbzero``);
    channels absent for an observation's sensor (``mask`` False) are NaN.
    """
    ds = xr.Dataset(
        {"tb": _var(("iobs", "channel"), _masked(tb, mask), "K", TB_LONG_NAMES[kind], **cf.STANDARD["tb"])},
        coords=_channel_coords(basis),
        attrs={
            "title": TB_LONG_NAMES[kind],
            "comment": "observations in the order of tbobs_TAG.nc (its lon, lat, time locate them)",
        },
    )
    return write_dataset(ds, path)


def write_tbobs(path: Path, obs: Observations, lon=None, lat=None) -> Path:
    """``tbobs_TAG.nc``: observed ``tb`` (iobs, channel) in the unified basis, with per-observation
    lon, lat, time, julian_day, sensor, grid, step and the channel names/frequencies."""
    basis = obs.basis
    lon = obs.lon if lon is None else lon
    lat = obs.lat if lat is None else lat
    igrid = np.asarray(obs.igrid)
    nobs = obs.nobs
    per_obs_lon = np.asarray(lon, dtype=np.float32)[igrid] if lon is not None else None
    per_obs_lat = np.asarray(lat, dtype=np.float32)[igrid] if lat is not None else None
    flags = " ".join(basis.sensor_names)
    jd = np.asarray(obs.julian_day, dtype=np.float64)
    ds = xr.Dataset(
        {
            "tb": _var(
                ("iobs", "channel"), _masked(obs.tb_obs_k, obs.mask), "K", TB_LONG_NAMES["tbobs"], **cf.STANDARD["tb"]
            ),
            "julian_day": _var(("iobs",), jd, "days", "Julian day of the observation"),
            "sensor": xr.Variable(
                ("iobs",),
                np.asarray(obs.isensor, dtype=np.int16),
                attrs={
                    "units": "1",
                    "long_name": "sensor index",
                    "flag_values": np.arange(basis.nsensor, dtype=np.int16),
                    "flag_meanings": flags,
                },
            ),
            "grid": _var(("iobs",), np.asarray(obs.igrid, dtype=np.int32), "1", "grid point index (0-based)"),
            "step": _var(
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
            **_lonlat(per_obs_lon, per_obs_lat, nobs, "observation's grid point", dim="iobs"),
            "time": xr.Variable(("iobs",), cf.julian_day_to_time(jd), attrs=cf.time_attrs("time of the observation")),
        },
        attrs={
            "title": "observed brightness temperatures of the training run in the unified channel basis",
            "jd_origin": float(obs.jd_origin),
            "stepstart": int(obs.stepstart),
        },
    )
    return write_dataset(ds, path)


def write_ice_emis(path: Path, emis: np.ndarray, basis: ChannelBasis, mask: np.ndarray | None = None) -> Path:
    """``ice_emis_TAG.nc``: ``ice_emis`` (iobs, channel), NaN where the channel is absent."""
    ds = xr.Dataset(
        {
            "ice_emis": _var(
                ("iobs", "channel"),
                _masked(emis, mask),
                "1",
                "sea ice surface emissivity",
                **cf.STANDARD["ice_emis"],
            )
        },
        coords=_channel_coords(basis),
        attrs={
            "title": "sea ice surface emissivity of each observation from the trained model",
            "comment": "observations in the order of tbobs_TAG.nc (its lon, lat, time locate them)",
        },
    )
    return write_dataset(ds, path)


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return {k: _jsonable(v) for k, v in asdict(obj).items()}
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def setup_json(obj: Any) -> str:
    """A configuration (dataclasses, dicts, paths) as a JSON string."""
    return json.dumps(_jsonable(obj), sort_keys=True)


def write_models(
    path: Path,
    *,
    weights: Mapping[str, np.ndarray],
    input_names: Sequence[str],
    input_layer: str,
    basis: ChannelBasis,
    wind_coef: np.ndarray,
    bias_ice: np.ndarray,
    bias_ocean: np.ndarray,
    setup: Mapping[str, Any],
    epoch_losses: Mapping[str, Sequence[float]] | None = None,
    batch_losses: Mapping[str, Sequence[float]] | None = None,
    model_version: str | None = None,
) -> Path:
    """``models_TAG.nc``: the trained emissivity model, corrections, setup and losses.

    Parameters
    ----------
    weights : name -> array, in the Keras orientation (kernel (in, out), bias (out,)),
        e.g. ``hidden_kernel`` (input, hidden). Each becomes a variable named
        ``emis_<name>``.
    input_names : names of the emissivity-model inputs (``x_T, P0, P1, Q0, f/100``).
    input_layer : the weight (a key of ``weights``) that multiplies the inputs: its
        first dimension is ``input`` and it gets an ``inputs`` attribute listing them.
    wind_coef : (nchan,) ocean-emissivity wind correction w_c (per m/s).
    bias_ice, bias_ocean : (nsensor, nchan) TB biases (K).
    setup : configuration sections (dataclasses or dicts), stored as JSON attributes
        ``setup_<section>``.
    epoch_losses, batch_losses : term -> values, stored as ``loss_epoch_<term>`` (epoch)
        and ``loss_batch_<term>`` (batch).
    model_version : "v1" or "v2": also write the model under the ECMWF reference's names
        (:func:`reference_model_variables`), so the reference's own loaders read the file; None = not.
    """
    inputs = ", ".join(input_names)
    data: dict[str, xr.Variable] = {}
    for name, w in weights.items():
        w = np.asarray(w, dtype=np.float32)
        safe = "emis_" + name.replace(".", "_")
        if name == input_layer:
            if w.ndim != 2 or w.shape[0] != len(input_names):
                raise ValueError(f"{name}: expected ({len(input_names)}, n) for inputs {inputs}, got {w.shape}")
            dims = ("input", f"{safe}_out")
            data[safe] = _var(dims, w, "1", f"emissivity model weight {name}", inputs=inputs)
        else:
            dims = tuple(f"{safe}_dim{k}" for k in range(w.ndim))
            data[safe] = _var(dims, w, "1", f"emissivity model weight {name}")
    data["wind_coef"] = _var(
        ("channel",), np.asarray(wind_coef, dtype=np.float32), "s m-1", "ocean emissivity wind correction w_c"
    )
    data["bias_ice"] = _var(
        ("sensor", "channel"), np.asarray(bias_ice, dtype=np.float32), "K", "TB bias over ice b_ice"
    )
    data["bias_ocean"] = _var(
        ("sensor", "channel"), np.asarray(bias_ocean, dtype=np.float32), "K", "TB bias over ocean b_ocean"
    )
    for prefix, dim, losses in (("loss_epoch", "epoch", epoch_losses), ("loss_batch", "batch", batch_losses)):
        for term, values in (losses or {}).items():
            data[f"{prefix}_{term}"] = _var(
                (dim,), np.asarray(values, dtype=np.float64), "1", f"cost term {term} per {dim} (J / nobs)"
            )
    if model_version is not None:
        data.update(reference_model_variables(model_version, weights, wind_coef, bias_ice, bias_ocean))
    attrs = {f"setup_{k}": setup_json(v) for k, v in setup.items()}
    attrs["emissivity_inputs"] = inputs
    coords = {
        **_channel_coords(basis),
        **_sensor_coords(basis),
        "input_name": _names("input", input_names, "emissivity model input"),
    }
    attrs = {"title": "trained emissivity model, corrections, setup and losses of a training run", **attrs}
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    return write_dataset(ds, path)


def reference_model_variables(
    version: str,
    weights: Mapping[str, np.ndarray],
    wind_coef: np.ndarray,
    bias_ice: np.ndarray,
    bias_ocean: np.ndarray,
) -> dict[str, xr.Variable]:
    """The trained model under the names and dimensions the ECMWF reference code saves and loads.

    v1 (``SeaiceModel.save``/``load`` of the ECMWF repository; one sensor only):
    ``ice_coefs`` (in, channel) the linear layer's kernel, ``ice_emis`` (channel) its bias,
    ``ocean_emis_bias`` (channel) the wind correction w_c, ``tb_bias`` (channel, biases) with
    ``biases`` 0 = ocean, 1 = ice.

    v2 (the fork's ``SeaiceModel.save``/``load``): ``emis_layer1_weights`` (in, width),
    ``emis_layer1_biases`` (width), ``emis_layer2_weights`` (width, out), ``emis_layer2_biases``
    (out), ``ocean_emis_bias`` (channel), ``tb_bias`` (biases, sensors, channel) with ``biases``
    0 = ice, 1 = ocean (the reverse of v1).

    Parameters
    ----------
    version : "v1" or "v2".
    weights : Keras-orientation weights ``output_kernel``/``output_bias`` (v1) and also
        ``hidden_kernel``/``hidden_bias`` (v2), as :func:`write_models` takes them.
    wind_coef : (nchan,); bias_ice, bias_ocean : (nsensor, nchan) K.

    Returns an empty dict for a v1 model of more than one sensor (no reference layout).
    """
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    ice, ocean = f32(bias_ice), f32(bias_ocean)
    ref = {
        "ocean_emis_bias": _var(
            ("channel",), f32(wind_coef), "s m-1", "ocean emissivity wind correction (reference name)"
        )
    }
    if version == "v1":
        if ice.shape[0] != 1:
            return {}
        ref["ice_coefs"] = _var(("in", "channel"), f32(weights["output_kernel"]), "1", "linear ice emissivity kernel")
        ref["ice_emis"] = _var(("channel",), f32(weights["output_bias"]), "1", "linear ice emissivity bias e0")
        ref["tb_bias"] = _var(
            ("channel", "biases"), np.stack([ocean[0], ice[0]], axis=1), "K", "TB bias; biases 0 = ocean, 1 = ice"
        )
        return ref
    ref["emis_layer1_weights"] = _var(("in", "width"), f32(weights["hidden_kernel"]), "1", "hidden layer kernel")
    ref["emis_layer1_biases"] = _var(("width",), f32(weights["hidden_bias"]), "1", "hidden layer bias")
    ref["emis_layer2_weights"] = _var(
        ("width", "out"), f32(weights["output_kernel"]), "1", "output layer kernel (V, H)"
    )
    ref["emis_layer2_biases"] = _var(("out",), f32(weights["output_bias"]), "1", "output layer bias (V, H)")
    ref["tb_bias"] = _var(
        ("biases", "sensors", "channel"), np.stack([ice, ocean]), "K", "TB bias; biases 0 = ice, 1 = ocean"
    )
    return ref


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
        raise SeaIceError(f"{path}: not a readable model checkpoint ({type(exc).__name__})") from None
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
    "write_tbobs",
    "write_ice_emis",
    "write_models",
    "reference_model_variables",
    "read_variable",
    "save_checkpoint",
    "load_checkpoint",
    "step_julian_day",
    "setup_json",
    "DIAGNOSTIC_FILES",
    "MODEL_FILES",
    "CHECKPOINT",
]
