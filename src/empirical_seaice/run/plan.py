"""Step 1 of a training run: check the flags and files that can be checked without reading, create nothing.

:func:`validate_run` checks the tags and mode flags (:func:`check_mode_flags`), with ``--diagsonly``
reads the trained model file and takes its setup (:func:`empirical_seaice.run.model_file.trained_setup`),
checks the data path, the background files, the sensors and the device, and returns the
:class:`RunPlan` that :func:`empirical_seaice.run.train.run` follows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from empirical_seaice.config import CostConfig, DataConfig, ModelConfig, Preset, TrainingConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import outputs as out
from empirical_seaice.run.model_file import check_tag_holds_no_model, read_model_file, trained_setup
from empirical_seaice.sensors import ChannelBasis, build_channel_basis, load_catalogue
from empirical_seaice.training.checkpoint import CHECKPOINT_NAME, checkpoint_dir

log = logging.getLogger(__name__)


@dataclass
class RunPlan:
    """Everything :func:`~empirical_seaice.run.train.run` validated, for the steps that follow (nothing
    created yet; ``stage``, the staging directory of the run's output set, is set when the set is opened)."""

    data_cfg: DataConfig
    model_cfg: ModelConfig
    cost_cfg: CostConfig
    train_cfg: TrainingConfig
    output: Path
    tag: str
    modeltag: str
    preset_name: str
    basis: ChannelBasis
    device: torch.device
    ckpt_dir: Path
    model_file: dict[str, Any] | None = None  # with --diagsonly: the trained model_MODELTAG.pt
    diagsonly: bool = False
    trainonly: bool = False
    resume: bool = False
    progress: bool = True
    products: Any = None
    force_outputs: bool = False
    checkpoint_minutes: float | None = None
    perturbation: Any = None  # an ensemble member's (run.perturb.Perturbation)
    stage: Path = Path()
    trained: bool = False  # training has ended (its last checkpoint written): --resume writes the outputs
    said: list[str] = field(default_factory=list)  # the warnings the run has logged so far (its summary lists them)
    sharded: bool = False  # a --distributed run's rank (run.sharded): its checkpoints are one a rank

    def path(self, stem: str) -> Path:
        """``<stage>/<stem>_<tag>.nc``: where the run writes its file ``<output>/<stem>_<tag>.nc``."""
        return out.output_path(self.stage, stem, self.tag)

    @property
    def checkpoint(self) -> Path:
        """The trainer's checkpoint ``<output>/checkpoints_TAG/checkpoint.pt``."""
        return self.ckpt_dir / CHECKPOINT_NAME


def validate_run(
    data_cfg: DataConfig,
    preset: Preset | ModelConfig,
    cost_cfg: CostConfig,
    train_cfg: TrainingConfig,
    output: Path,
    tag: str,
    modeltag: str | None,
    diagsonly: bool,
    trainonly: bool,
    resume: bool,
    progress: bool,
) -> RunPlan:
    """Step 1: check the flags and files that can be checked without reading; create nothing."""
    from empirical_seaice.training.runtime import resolve_device

    model_cfg = preset.model if isinstance(preset, Preset) else preset
    preset_name = preset.name if isinstance(preset, Preset) else model_cfg.version
    modeltag = check_mode_flags(tag, modeltag, diagsonly, trainonly, resume)
    if output.exists() and not output.is_dir():
        raise SeaIceError(f"--output: {output} exists and is not a directory")
    model_file = None
    if diagsonly:
        check_tag_holds_no_model(output, tag, modeltag, "--diagsonly", "the diagnostics of")
        model_file = read_model_file(output, modeltag)
        data_cfg, model_cfg, cost_cfg = trained_setup(model_file, data_cfg)
        preset_name = model_file["configs"]["preset"]
    if not Path(data_cfg.data).exists():
        raise SeaIceError(
            f"--data: {data_cfg.data} does not exist (give the training-data directory or file; "
            "seaice-twin --output DIR makes a synthetic one with known truth)"
        )
    for flag, path in (
        ("--seaice-background", data_cfg.seaice_background),
        ("--tsfc-background", data_cfg.tsfc_background),
    ):
        if path is not None and not Path(path).is_file():
            raise SeaIceError(f"{flag}: file {path} not found")
    basis = build_channel_basis(data_cfg.sensors, load_catalogue(data_cfg.sensor_catalogue))
    if model_cfg.angle_input is None:  # resolved once, so the checkpoint and the export say which
        from empirical_seaice.model.emissivity import network_angle_input

        model_cfg = replace(model_cfg, angle_input=model_cfg.version == "v2" and network_angle_input(model_cfg, basis))
    device = resolve_device(train_cfg.device)
    ckpt_dir = checkpoint_dir(output, tag)
    return RunPlan(
        data_cfg=data_cfg,
        model_cfg=model_cfg,
        cost_cfg=cost_cfg,
        train_cfg=train_cfg,
        output=output,
        tag=tag,
        modeltag=modeltag,
        preset_name=preset_name,
        basis=basis,
        device=device,
        ckpt_dir=ckpt_dir,
        model_file=model_file,
        diagsonly=diagsonly,
        trainonly=trainonly,
        resume=resume,
        progress=progress,
    )


def check_mode_flags(tag: str, modeltag: str | None, diagsonly: bool, trainonly: bool, resume: bool) -> str:
    """The tags and the mode flags are consistent; returns the model tag (default ``tag``)."""
    out.check_tag(tag)
    if diagsonly and trainonly:
        raise SeaIceError("--diagsonly and --trainonly: give at most one of them")
    if modeltag is not None and not diagsonly:
        raise SeaIceError("--modeltag: only used with --diagsonly (training writes the model under --tag)")
    if resume and diagsonly:
        raise SeaIceError("--resume: only used when training, not with --diagsonly")
    return out.check_tag(modeltag, "--modeltag") if modeltag is not None else tag


def warn_unused_stopping_flags(asked: TrainingConfig, resolved: TrainingConfig, trains: bool = True) -> None:
    """Warn of ``--patience`` or ``--plateau-cuts`` given (other than the field's default) in a run that
    ``trains`` where the hold-out, and so early stopping, was switched off by the data's size
    (:meth:`TrainingConfig.resolved`: fewer than ``validation_min_obs`` observations); they were dropped
    without a word. (The command line refuses them where the flags switch early stopping off; the data's
    size is known only here.)"""
    if not trains or not resolved.too_few_to_hold_out:
        return
    defaults = TrainingConfig()
    given = [
        f"--{name.replace('_', '-')} {getattr(asked, name)}"
        for name in ("patience", "plateau_cuts")
        if getattr(asked, name) != getattr(defaults, name)
    ]
    if given:
        log.warning(
            "%s: no effect in this run: fewer than %s observations, so no held-out observations and no early "
            "stopping; --validation-fraction 0.1 holds out anyway",
            ", ".join(given),
            f"{resolved.validation_min_obs:,}",
        )


__all__ = ["RunPlan", "validate_run", "check_mode_flags", "warn_unused_stopping_flags"]
