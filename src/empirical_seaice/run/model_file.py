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
- ``nobs``, ``ngrid``, ``nstep``: the data the model was trained on; ``data_digest``: its input files'
  content (:func:`check_trained_data`);
- ``nobs_train``: the ``nobs`` of the cost normalisation (training observations);
- ``before``: the cost and departures before training (for the summary of a later
  ``--diagsonly``) or None;
- ``partition`` (sharded runs only): the grid points of each rank
  (:class:`~empirical_seaice.run.partition.Partition`).

:func:`run_identity` is what the trainer's own checkpoint (``checkpoints_TAG/checkpoint.pt``)
records of the run, so that ``--resume`` refuses a checkpoint of other data, model or options.

``--diagsonly`` and ``--retrieve`` read it back (:func:`read_model_file`; with ``--diagsonly``
:func:`trained_setup`, :func:`load_trained` and :func:`trained_books`). The NetCDF description
of the trained model, ``models_TAG.nc``, is written by :func:`write_models_file`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empirical_seaice.config import CostConfig, DataConfig, ModelConfig, TrainingConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import outputs as out
from empirical_seaice.io.transaction import config_hash
from empirical_seaice.observations import Observations
from empirical_seaice.products import diagnostics as diag
from empirical_seaice.sensors import load_catalogue

log = logging.getLogger(__name__)

MODEL_FILE_FORMAT = 1
"""Format number of ``model_TAG.pt`` (not the trainer's epoch checkpoint,
``training.checkpoint.TRAINER_CHECKPOINT_FORMAT``)."""


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
    for k in ("seaice_background", "tsfc_background", "grid_file", "sensor_catalogue"):
        dd[k] = None if dd.get(k) is None else Path(dd[k])
    md = dict(d["model"])
    md["lag_weights"] = tuple(md["lag_weights"])
    cd = dict(d["cost"])
    # model files written before these fields existed were trained with the min(C, 0.3 - C) false-ice
    # shape and the physical network frequencies (anchor_frequency_ghz defaults to None: the channel anchor)
    cd.setdefault("false_ice_shape", "tent")
    md.setdefault("network_frequencies", "physical")
    md.setdefault("angle_input", False)
    cd["anchor_channels"] = tuple(cd["anchor_channels"])
    cd["bias_bg"] = {k: tuple(v) for k, v in cd["bias_bg"].items()}
    return DataConfig(**dd), ModelConfig(**md), CostConfig(**cd)


def run_identity(obs: Observations, model: ModelConfig, cost: CostConfig, training: TrainingConfig) -> dict[str, Any]:
    """What a ``--resume`` checkpoint must match (stored in the trainer's checkpoint): the data's content,
    the period, the model, the cost and every training option that changes what is trained (not
    ``--nepochs``, nor the threads, the device or the fused step's implementation)
    (:func:`empirical_seaice.training.checkpoint.check_identity`). Before 2026-12-03 the batch order,
    the learning-rate schedule, the priors' scheme, early stopping and ``--reproducible`` were not
    compared: a resume with another value finished the training with it and recorded only it."""
    plain = configs_to_dict(DataConfig(data=Path(".")), model, cost, training, "")
    if plain["cost"]["emis_ceiling_error"] is None:  # added 2026-12-03: off hashes as before it was there
        del plain["cost"]["emis_ceiling_error"]
    return {  # in the order a difference is named: the flags first (another --model reads other files too)
        "model": config_hash(plain["model"]),
        "sensors": list(obs.basis.sensor_names),
        "cost": config_hash(plain["cost"]),
        "data": obs.source_digest,
        "period": [float(obs.jd_origin), int(obs.stepstart), int(obs.nstep)],
        "nobs": int(obs.nobs),
        "batch_size": None if training.batch_size is None else int(training.batch_size),
        "optimizer": training.optimizer,
        "learning_rate": None if training.learning_rate is None else float(training.learning_rate),
        "network_learning_rate": (
            None if training.network_learning_rate is None else float(training.network_learning_rate)
        ),
        "seed": int(training.seed),
        "validation_fraction": float(training.validation_fraction),
        "validation_min_obs": int(training.validation_min_obs),
        "reproducible": bool(training.reproducible),
        "early_stopping": bool(training.early_stopping),
        "patience": int(training.patience),
        "region_stopping": bool(training.region_stopping),
        "lr_decay": float(training.lr_decay),
        "plateau_cuts": int(training.plateau_cuts),
        "plateau_factor": float(training.plateau_factor),
        "map_priors": training.map_priors,
        "batch_order": training.batch_order,
        "adam_epsilon": training.adam_epsilon,
    }


def model_file_path(output: Path, tag: str) -> Path:
    """``<output>/model_TAG.pt``."""
    return out.output_path(output, out.CHECKPOINT, tag)


def check_tag_holds_no_model(output: Path, tag: str, modeltag: str, mode: str, what: str) -> None:
    """``--diagsonly`` or ``--retrieve`` (``mode``) writing under ``--tag`` another trained run's: refused with a
    one-line error, before anything is read or written. Its set would replace that run's, and the run's
    ``model_TAG.pt``, ``models_TAG.nc`` and trained SIC would go without a word. ``what``: the outputs that
    would replace them ("the diagnostics of", "a retrieval with")."""
    own = model_file_path(output, tag)
    if tag != modeltag and (own.is_file() or own.is_symlink()):
        raise SeaIceError(
            f"{mode} --tag {tag}: {own} is a trained model, whose outputs {what} model '{modeltag}' would "
            "replace; choose a --tag that holds no trained model"
        )


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
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model_TAG.pt`` with the keys of the module docstring (contiguous CPU tensors;
    ``extra``: further entries, e.g. the ``partition`` of a sharded run)."""
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
        **(extra or {}),
    }
    return out.save_checkpoint(path, payload)


def write_trained(
    stage: Path,
    tag: str,
    configs: dict[str, Any],
    network: Any,
    history: Any,
    obs: Observations,
    nobs_train: int,
    before: dict[str, Any] | None,
    model: ModelConfig,
    extra: dict[str, Any] | None = None,
) -> list[Path]:
    """Write ``model_TAG.pt`` (:func:`write_model_file`) and ``models_TAG.nc`` (:func:`write_models_file`)
    of a trained network into ``stage``."""
    return [
        write_model_file(
            model_file_path(stage, tag),
            # the state tables are views into the optimiser's slab (weights + moments): copied contiguous
            state_dict=network.state_dict(),
            configs=configs,
            history=history.to_state() if history is not None else None,
            nobs=obs.nobs,
            ngrid=obs.ngrid,
            nstep=obs.nstep,
            nobs_train=nobs_train,
            before=before,
            extra={"data_digest": obs.source_digest, "provenance": _provenance(tag, configs, obs), **(extra or {})},
        ),
        write_models_file(out.output_path(stage, "models", tag), network, history, configs, model),
    ]


def _provenance(tag: str, configs: dict[str, Any], obs: Observations) -> dict[str, Any]:
    """Where the trained model comes from, as the model file keeps it (``provenance``; plain values): the
    :class:`~empirical_seaice.products.export.Provenance` of the training run."""
    import dataclasses
    import types

    from empirical_seaice.products.write import provenance_of

    data = types.SimpleNamespace(**configs.get("data", {}))
    prov = provenance_of(tag, str(configs.get("preset", "")), data, obs)
    return {**dataclasses.asdict(prov), "sensors": list(prov.sensors)}


def trained_provenance(model_file: dict[str, Any]) -> Any:
    """The training run's :class:`~empirical_seaice.products.export.Provenance` kept in a model file (what an
    export from ``--diagsonly`` or ``--retrieve`` says of the model's training: before, that run's own period
    and data), or None in a model file written before 2026-12-04."""
    from empirical_seaice.products.export import Provenance

    kept = model_file.get("provenance")
    if not kept:
        return None
    return Provenance(**{**kept, "sensors": tuple(kept.get("sensors", ()))})


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


def trained_setup(model_file: dict[str, Any], data_cfg: DataConfig) -> tuple[DataConfig, ModelConfig, CostConfig]:
    """``--diagsonly``: the setup stored in the model file; ``--data`` and background files may
    point to a moved copy of the same data."""
    saved_data, model_cfg, cost_cfg = configs_from_dict(model_file["configs"])
    if tuple(data_cfg.sensors) != saved_data.sensors:
        log.warning("--diagsonly: using the trained model's sensors %s", " ".join(saved_data.sensors))
    data_cfg = replace(
        saved_data,
        data=data_cfg.data,
        seaice_background=data_cfg.seaice_background or saved_data.seaice_background,
        tsfc_background=data_cfg.tsfc_background or saved_data.tsfc_background,
        grid_file=data_cfg.grid_file or saved_data.grid_file,
        sensor_catalogue=data_cfg.sensor_catalogue or saved_data.sensor_catalogue,
    )
    return data_cfg, model_cfg, cost_cfg


def trained_products(model_file: dict[str, Any], products: Any) -> Any:
    """``--diagsonly``: the user products (:class:`~empirical_seaice.products.write.ProductOptions` or None)
    as the trained run had them: without the open-water filter for a model trained with ``--exact-reference``
    (the reference has none, and that run wrote no ``seaice_filtered_TAG.nc``), else as asked. A model
    file written before 2026-12-05 does not say and is taken as not the reference's."""
    if products is None or not products.open_water_filter:
        return products
    if model_file["configs"]["training"].get("exact_reference", False):
        return replace(products, open_water_filter=False)
    return products


def check_trained_data(model_file: dict[str, Any], obs: Observations, modeltag: str) -> None:
    """``--diagsonly``: refuse data other than the trained run's (its input files' content, not their
    place: a moved copy is the same data). Its summary joins the trained run's "before" numbers to this
    data's departures: on other data of the same shape the set published was a mix of the two. A model
    file written before 2026-12-03 has no digest and is not checked."""
    saved = model_file.get("data_digest")
    if saved and obs.source_digest and saved != obs.source_digest:
        raise SeaIceError(
            f"--diagsonly: model_{modeltag}.pt was trained on other data (the input files' content differs); "
            f"give the --data of that run, or use --retrieve --modeltag {modeltag} --tag NEWTAG for new data"
        )


def load_trained(network, model_file: dict[str, Any]) -> None:
    """``--diagsonly``: the trained parameters into the network built for the same data."""
    try:
        network.load_state_dict(model_file["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)]
        raise SeaIceError(
            f"--modeltag: the trained model does not fit this data ({first[0].strip()}); "
            "use the data, sensors and period it was trained on"
        ) from None


def before_state(result: Any) -> dict[str, Any] | None:
    """The cost and departures before training, kept in model_TAG.pt for a later --diagsonly summary."""
    if result.cost_before is None or result.departures_before is None:
        return None
    d = result.departures_before
    return {"cost": dict(result.cost_before), "count": d.count.tolist(), "mean": d.mean.tolist(), "std": d.std.tolist()}


def trained_books(model_file: dict[str, Any], result: Any) -> Any:
    """``--diagsonly``: the history and the "before training" numbers of the trained run, for the summary."""
    from empirical_seaice.training.history import TrainingHistory

    history = None
    if model_file.get("history") is not None:
        history = TrainingHistory.from_state(model_file["history"])
        result.history = history
    before = model_file.get("before")
    if before:
        result.cost_before = dict(before["cost"])
        result.departures_before = diag.DepartureStats(
            count=np.asarray(before["count"]), mean=np.asarray(before["mean"]), std=np.asarray(before["std"])
        )
    return history


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
    comments = {}
    if history is not None and history.epoch_terms:
        epoch_losses = history.epoch_losses()
        for name in history.valid_cost_regions:  # a global grid's hemispheres
            note = history.held_note(name)
            if note is not None:  # its own early stop (empirical_seaice.training.regions)
                comments[f"valid_obs_{name}"] = f"the {name}'s {note}"
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
        loss_comments=comments,
        model_version=model.version,
    )


__all__ = [
    "trained_provenance",
    "MODEL_FILE_FORMAT",
    "configs_to_dict",
    "configs_from_dict",
    "run_identity",
    "model_file_path",
    "check_tag_holds_no_model",
    "write_model_file",
    "write_trained",
    "read_model_file",
    "trained_setup",
    "trained_products",
    "check_trained_data",
    "load_trained",
    "before_state",
    "trained_books",
    "emissivity_weights",
    "write_models_file",
]
