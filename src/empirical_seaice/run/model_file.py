"""The trained model file ``model_TAG.pt``: its schema, in one place.

A PyTorch checkpoint (``torch.save`` of a dict; written atomically by
:func:`empirical_seaice.io.outputs.save_checkpoint`) with the keys

- ``format``: :data:`MODEL_FILE_FORMAT`;
- ``state_dict``: the network's parameters and persistent buffers (the state
  tables with their lag columns, the emissivity model, wind correction and
  biases), contiguous CPU tensors;
- ``configs``: the setup as plain Python (:func:`configs_to_dict`): ``preset``,
  ``data``, ``model``, ``cost``, ``training``, ``catalogue`` (the catalogue entries of the
  run's sensors and channels, as used);
- ``history``: the training history (``TrainingHistory.to_state``) or None;
- ``nobs``, ``ngrid``, ``nstep``: the data the model was trained on;
- ``nobs_train``: the ``nobs`` of the cost normalisation (training observations);
- ``before``: the cost and departures before training (for the summary of a later
  ``--diagsonly``) or None.

``--diagsonly`` and ``--retrieve`` read it back (:func:`read_model_file`). The NetCDF description
of the trained model, ``models_TAG.nc``, is written by :func:`write_models_file`.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empirical_seaice.config import CostConfig, DataConfig, ModelConfig, TrainingConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import outputs as out
from empirical_seaice.sensors import load_catalogue

MODEL_FILE_FORMAT = 1
"""Format number of ``model_TAG.pt`` (not the trainer's epoch checkpoint,
``training.trainer.TRAINER_CHECKPOINT_FORMAT``)."""


def configs_to_dict(
    data: DataConfig, model: ModelConfig, cost: CostConfig, training: TrainingConfig, preset: str
) -> dict[str, Any]:
    """The setup of a run as plain Python (JSON-safe): paths as str, tuples as lists."""

    def plain(cfg: Any) -> dict[str, Any]:
        d = asdict(cfg)
        for k, v in d.items():
            if isinstance(v, Path):
                d[k] = str(v)
            elif isinstance(v, tuple):
                d[k] = list(v)
        return d

    cd = plain(cost)
    cd["bias_bg"] = {k: list(v) for k, v in cost.bias_bg.items()}
    return {
        "preset": preset,
        "data": plain(data),
        "model": plain(model),
        "cost": cd,
        "training": plain(training),
        # the catalogue entries of the run's sensors and channels, as used (README "Sensors")
        "catalogue": load_catalogue(data.sensor_catalogue).to_dict(data.sensors),
    }


def configs_from_dict(d: dict[str, Any]) -> tuple[DataConfig, ModelConfig, CostConfig]:
    """Inverse of :func:`configs_to_dict` for the data, model and cost configuration."""
    dd = dict(d["data"])
    dd["data"] = Path(dd["data"])
    dd["sensors"] = tuple(dd["sensors"])
    for k in ("seaice_background", "tsfc_background", "sensor_catalogue"):
        dd[k] = None if dd.get(k) is None else Path(dd[k])
    md = dict(d["model"])
    md["lag_weights"] = tuple(md["lag_weights"])
    cd = dict(d["cost"])
    # model files written before these fields existed were trained with the min(C, 0.3 - C) false-ice
    # shape and the physical network frequencies (anchor_frequency_ghz defaults to None: the channel anchor)
    cd.setdefault("false_ice_shape", "tent")
    md.setdefault("network_frequencies", "physical")
    cd["anchor_channels"] = tuple(cd["anchor_channels"])
    cd["bias_bg"] = {k: tuple(v) for k, v in cd["bias_bg"].items()}
    return DataConfig(**dd), ModelConfig(**md), CostConfig(**cd)


def model_file_path(output: Path, tag: str) -> Path:
    """``<output>/model_TAG.pt``."""
    return out.output_path(output, out.CHECKPOINT, tag)


def write_model_file(
    path: Path,
    *,
    state_dict: dict[str, Any],
    configs: dict[str, Any],
    history: dict[str, Any] | None,
    nobs: int,
    ngrid: int,
    nstep: int,
    nobs_train: int,
    before: dict[str, Any] | None,
) -> Path:
    """Write ``model_TAG.pt`` with the keys of the module docstring (contiguous CPU tensors)."""
    payload = {
        "format": MODEL_FILE_FORMAT,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in state_dict.items()},
        "configs": configs,
        "history": history,
        "nobs": nobs,
        "ngrid": ngrid,
        "nstep": nstep,
        "nobs_train": nobs_train,
        "before": before,
    }
    return out.save_checkpoint(path, payload)


def read_model_file(output: Path, tag: str, flag: str = "--modeltag") -> dict[str, Any]:
    """Read ``<output>/model_TAG.pt`` and check its format.

    Raises
    ------
    SeaIceError
        Missing, unreadable, or of another format (the message names ``flag``).
    """
    payload = out.load_checkpoint(model_file_path(output, tag), flag)
    if payload.get("format") != MODEL_FILE_FORMAT:
        raise SeaIceError(f"{flag}: checkpoint format {payload.get('format')} is not {MODEL_FILE_FORMAT}")
    return payload


def emissivity_weights(network) -> tuple[dict[str, np.ndarray], str]:
    """The emissivity model's weights in Keras orientation and the name of the input kernel.

    ``torch.nn.Linear`` layer ``L`` (weight (out, in)) becomes ``L_kernel`` (in, out)
    and ``L_bias`` (out,). The input layer is ``hidden`` (v2) or ``output`` (v1).
    """
    weights: dict[str, np.ndarray] = {}
    first = None
    for name, module in network.emissivity.named_children():
        if isinstance(module, torch.nn.Linear):
            first = first or f"{name}_kernel"
            weights[f"{name}_kernel"] = module.weight.detach().cpu().numpy().T.copy()
            weights[f"{name}_bias"] = module.bias.detach().cpu().numpy().copy()
    if first is None:
        raise ValueError("emissivity model has no Linear layer")
    return weights, first


def write_models_file(path: Path, network: Any, history: Any, configs: dict[str, Any], model: ModelConfig) -> Path:
    """``models_TAG.nc``: the emissivity weights in Keras orientation (:func:`emissivity_weights`) and under
    the reference's names, wind correction, TB biases, the loss history and the setup
    (:func:`empirical_seaice.io.outputs.write_models`)."""
    weights, input_layer = emissivity_weights(network)
    epoch_losses = batch_losses = None
    if history is not None and history.epoch_terms:
        epoch_losses = {k: [e[k] for e in history.epoch_terms] for k in history.epoch_terms[0]}
        if history.valid_cost:
            epoch_losses["valid_obs"] = list(history.valid_cost)
        batch_losses = dict(history.batch_terms)
    return out.write_models(
        path,
        weights=weights,
        input_names=model.input_names(),
        input_layer=input_layer,
        basis=network.basis,
        wind_coef=network.wind_coef.detach().cpu().numpy(),
        bias_ice=network.bias_ice_k.detach().cpu().numpy(),
        bias_ocean=network.bias_ocean_k.detach().cpu().numpy(),
        setup=configs,
        epoch_losses=epoch_losses,
        batch_losses=batch_losses,
        model_version=model.version,
    )


__all__ = [
    "MODEL_FILE_FORMAT",
    "configs_to_dict",
    "configs_from_dict",
    "model_file_path",
    "write_model_file",
    "read_model_file",
    "emissivity_weights",
    "write_models_file",
]
