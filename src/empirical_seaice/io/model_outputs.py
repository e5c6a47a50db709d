"""The trained model's file ``models_TAG.nc``: weights, corrections, setup and losses, with the
ECMWF reference's variable names beside the project's (so the reference's own loaders read it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from empirical_seaice.io.output_writer import _channel_coords, _names, _sensor_coords, _var, write_dataset
from empirical_seaice.sensors import ChannelBasis


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
    loss_comments: Mapping[str, str] | None = None,
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
    bias_ice, bias_ocean : (nsensor, nchan) TB biases (K); written NaN where the sensor lacks the channel
        (the reference's ``tb_bias`` keeps the values its loader takes back).
    setup : configuration sections (dataclasses or dicts), stored as JSON attributes
        ``setup_<section>``.
    epoch_losses, batch_losses : term -> values, stored as ``loss_epoch_<term>`` (epoch)
        and ``loss_batch_<term>`` (batch).
    loss_comments : term -> the ``comment`` attribute of its ``loss_epoch_<term>`` (e.g. the epoch at
        which a hemisphere's state was held).
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
            dims: tuple[str, ...] = ("input", f"{safe}_out")
            data[safe] = _var(dims, w, "1", f"emissivity model weight {name}", inputs=inputs)
        else:
            dims = tuple(f"{safe}_dim{k}" for k in range(w.ndim))
            data[safe] = _var(dims, w, "1", f"emissivity model weight {name}")
    data["wind_coef"] = _var(
        ("channel",), np.asarray(wind_coef, dtype=np.float32), "s m-1", "ocean emissivity wind correction w_c"
    )
    absent = ~np.asarray(basis.present, dtype=bool)  # a sensor's channel it lacks: never fitted (NaN)
    for name, bias, what in (("bias_ice", bias_ice, "ice b_ice"), ("bias_ocean", bias_ocean, "ocean b_ocean")):
        data[name] = _var(
            ("sensor", "channel"),
            np.where(absent, np.float32(np.nan), np.asarray(bias, dtype=np.float32)),
            "K",
            f"TB bias over {what} (NaN where the sensor lacks the channel)",
        )
    for prefix, dim, losses in (("loss_epoch", "epoch", epoch_losses), ("loss_batch", "batch", batch_losses)):
        for term, values in (losses or {}).items():
            data[f"{prefix}_{term}"] = _var(
                (dim,), np.asarray(values, dtype=np.float64), "1", f"cost term {term} per {dim} (J / nobs)"
            )
            comment = (loss_comments or {}).get(term) if prefix == "loss_epoch" else None
            if comment:
                data[f"{prefix}_{term}"].attrs["comment"] = comment
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
    f32 = lambda a: np.asarray(a, dtype=np.float32)
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


__all__ = ["write_models", "reference_model_variables", "setup_json"]
