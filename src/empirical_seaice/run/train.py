"""One run of ``seaice-training``: read -> build -> initial diagnostics -> train -> save -> diagnostics.

:func:`run` is the library entry point behind the CLI. Order of work:

1. **Validate** the flags and files that can be checked without reading
   (tag names, mode flags, the data path and background files, sensor names,
   the device, with ``--diagsonly`` the trained model ``model_MODELTAG.pt``,
   with ``--resume`` the epoch checkpoint). Nothing is created before this.
2. **Read** the training data (memory-mapped cache in ``<output>/cache/``)
   and build the :class:`~empirical_seaice.model.operator.HybridNetwork`. A
   user-caused error here or later removes the output directory if this run
   created it (or the cache it created in an existing one), so a bad input
   never leaves a half-made output directory behind.
3. Unless ``--trainonly``/``--diagsonly``: simulate every observation before
   training (``tbsim_initial_TAG.nc``) and evaluate the full cost ``J``.
4. **Train** (:class:`~empirical_seaice.training.trainer.Trainer`, epoch checkpoints
   in ``<output>/checkpoints_TAG/``) and **save** the model: the PyTorch
   checkpoint ``model_TAG.pt`` (state_dict + configuration, what
   ``--diagsonly`` reloads) and ``models_TAG.nc``, ``seaice_TAG.nc``,
   ``properties_grid_TAG.nc``, ``properties_obs_TAG.nc``. With
   ``--diagsonly`` the network is loaded from ``model_MODELTAG.pt`` instead.
5. Unless ``--trainonly``: final diagnostics ``tbobs``, ``tbsim``,
   ``tbzero``, ``ice_emis``; the cost after; with a twin truth in
   ``<data>/truth`` the truth scores; the summary table (returned, printed by
   the CLI).

``--diagsonly`` uses the setup stored in the checkpoint (model and cost
configuration, sensors, period and background files), so the diagnostics are
those of the trained run: the same float32 forward pass over the same
parameters gives bit-identical ``tbsim``.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empirical_seaice.config import CostConfig, DataConfig, ModelConfig, Preset, TrainingConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import outputs as out
from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.products import diagnostics as diag
from empirical_seaice.run.finish import final_diagnostics, initial_diagnostics, run_summary, write_state_files
from empirical_seaice.run.model_file import (
    configs_from_dict,
    configs_to_dict,
    read_model_file,
    write_model_file,
    write_models_file,
)
from empirical_seaice.sensors import ChannelBasis, build_channel_basis, load_catalogue
from empirical_seaice.training.runtime import RunProgress

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run produced.

    output : the output directory; files : every file written (final names).
    history : the TrainingHistory (None with ``--diagsonly``).
    cost_before, cost_after : full cost J by term (float64), when computed.
    departures_before, departures_after : per-channel y - H(x) statistics.
    truth : truth scores when the data has a truth.
    train_seconds : wall time of training (s).
    summary : the summary table ('' with ``--trainonly``).
    summary_data : the same as data (``summary_TAG.json``), None with ``--trainonly``.
    """

    output: Path
    tag: str
    files: list[Path] = field(default_factory=list)
    history: Any = None
    cost_before: dict[str, float] | None = None
    cost_after: dict[str, float] | None = None
    departures_before: diag.DepartureStats | None = None
    departures_after: diag.DepartureStats | None = None
    truth: diag.TruthScores | None = None
    train_seconds: float = 0.0
    summary: str = ""
    summary_data: dict[str, Any] | None = None


@dataclass
class _RunPlan:
    """Everything :func:`run` validated, for :func:`_run` (nothing created yet)."""

    data_cfg: DataConfig
    model_cfg: ModelConfig
    cost_cfg: CostConfig
    train_cfg: TrainingConfig
    output: Path
    tag: str
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

    def path(self, stem: str) -> Path:
        """``<output>/<stem>_<tag>.nc``."""
        return out.output_path(self.output, stem, self.tag)


# ------------------------------------------------------------------ helpers
class _OutputGuard:
    """Remove what this run created in the output directory if a user error stops it."""

    def __init__(self, output: Path):
        self.output = output
        self.existed = output.exists()
        self.cache_existed = (output / "cache").exists()

    def cleanup(self) -> None:
        if not self.existed:
            shutil.rmtree(self.output, ignore_errors=True)
        elif not self.cache_existed:
            shutil.rmtree(self.output / "cache", ignore_errors=True)


# ------------------------------------------------------------------ the run
def run(
    data_cfg: DataConfig,
    preset: Preset | ModelConfig,
    cost_cfg: CostConfig,
    train_cfg: TrainingConfig,
    output: Path,
    tag: str = "run",
    modeltag: str | None = None,
    diagsonly: bool = False,
    trainonly: bool = False,
    resume: bool = False,
    progress: bool = True,
    products: Any = None,
) -> RunResult:
    """Run training and/or diagnostics and write the outputs (see the module docstring).

    Parameters
    ----------
    data_cfg : DataConfig
        Training data, sensors, period, background files.
    preset : Preset or ModelConfig
        The model configuration (a preset's ``model`` is used).
    cost_cfg : CostConfig
    train_cfg : TrainingConfig
    output : Path
        Output directory (created if needed).
    tag : str
        Run tag of the output names.
    modeltag : str, optional
        With ``diagsonly``: the tag of the trained model to load (default ``tag``).
    diagsonly, trainonly : bool
        Diagnostics from a trained model only / training only (no diagnostics).
    resume : bool
        Resume training from the epoch checkpoint in ``<output>/checkpoints_TAG``.
    progress : bool
        One progress display for the run on stderr (stages, training ETA).
    products : empirical_seaice.products.write.ProductOptions, optional
        User products written at the end (export, gridded emissivity, classic
        SIC, plots); None = none (see :func:`empirical_seaice.products.write.write_products`).

    Raises
    ------
    SeaIceError
        Any user-caused problem (flags, files, data); nothing is left behind in
        an output directory this run created.
    """
    plan = _validate(
        data_cfg, preset, cost_cfg, train_cfg, Path(output), tag, modeltag, diagsonly, trainonly, resume, progress
    )
    plan.products = products
    guard = _OutputGuard(plan.output)

    display = RunProgress(progress)
    try:
        return _run(plan, display)
    except SeaIceError:
        guard.cleanup()
        raise
    finally:
        display.close()


def _validate(
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
) -> _RunPlan:
    """Step 1: check the flags and files that can be checked without reading; create nothing."""
    from empirical_seaice.training.runtime import resolve_device
    from empirical_seaice.training.trainer import CHECKPOINT_NAME

    model_cfg = preset.model if isinstance(preset, Preset) else preset
    preset_name = preset.name if isinstance(preset, Preset) else model_cfg.version
    modeltag = _check_mode_flags(tag, modeltag, diagsonly, trainonly, resume)
    if output.exists() and not output.is_dir():
        raise SeaIceError(f"--output: {output} exists and is not a directory")
    model_file = None
    if diagsonly:
        model_file = read_model_file(output, modeltag)
        data_cfg, model_cfg, cost_cfg = _trained_setup(model_file, data_cfg)
        preset_name = model_file["configs"]["preset"]
    if not Path(data_cfg.data).exists():
        raise SeaIceError(f"--data: {data_cfg.data} does not exist (give the training-data directory or file)")
    for flag, path in (
        ("--seaice-background", data_cfg.seaice_background),
        ("--tsfc-background", data_cfg.tsfc_background),
    ):
        if path is not None and not Path(path).is_file():
            raise SeaIceError(f"{flag}: file {path} not found")
    basis = build_channel_basis(data_cfg.sensors, load_catalogue(data_cfg.sensor_catalogue))
    device = resolve_device(train_cfg.device)
    ckpt_dir = output / f"checkpoints_{tag}"
    if resume and not (ckpt_dir / CHECKPOINT_NAME).is_file():
        raise SeaIceError(f"--resume: no epoch checkpoint {ckpt_dir / CHECKPOINT_NAME}; train without --resume first")
    return _RunPlan(
        data_cfg=data_cfg,
        model_cfg=model_cfg,
        cost_cfg=cost_cfg,
        train_cfg=train_cfg,
        output=output,
        tag=tag,
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


def _check_mode_flags(tag: str, modeltag: str | None, diagsonly: bool, trainonly: bool, resume: bool) -> str:
    """The tags and the mode flags are consistent; returns the model tag (default ``tag``)."""
    out.check_tag(tag)
    if diagsonly and trainonly:
        raise SeaIceError("--diagsonly and --trainonly: give at most one of them")
    if modeltag is not None and not diagsonly:
        raise SeaIceError("--modeltag: only used with --diagsonly (training writes the model under --tag)")
    if resume and diagsonly:
        raise SeaIceError("--resume: only used when training, not with --diagsonly")
    return out.check_tag(modeltag, "--modeltag") if modeltag is not None else tag


def _trained_setup(model_file: dict[str, Any], data_cfg: DataConfig) -> tuple[DataConfig, ModelConfig, CostConfig]:
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
        sensor_catalogue=data_cfg.sensor_catalogue or saved_data.sensor_catalogue,
    )
    return data_cfg, model_cfg, cost_cfg


def _read(plan: _RunPlan, display: RunProgress) -> tuple[Observations, BackgroundMaps]:
    """Step 2a: read the data (through the cache in ``<output>/cache``)."""
    from empirical_seaice.io import describe, read_training_data

    display.stage("reading data")
    t0 = time.perf_counter()
    obs, background = read_training_data(plan.data_cfg, plan.model_cfg.nlag, cache_dir=plan.output / "cache")
    if tuple(obs.basis.channel_names) != tuple(plan.basis.channel_names):  # pragma: no cover - reader contract
        raise ValueError("reader returned a different channel basis")
    log.info(
        "read %d observations, %d grid points, %d steps in %.1f s",
        obs.nobs,
        obs.ngrid,
        obs.nstep,
        time.perf_counter() - t0,
    )
    log.info("training data:\n%s", describe(obs, background))
    return obs, background


def _load_trained(network, model_file: dict[str, Any]) -> None:
    """``--diagsonly``: the trained parameters into the network built for the same data."""
    try:
        network.load_state_dict(model_file["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)]
        raise SeaIceError(
            f"--modeltag: the trained model does not fit this data ({first[0].strip()}); "
            "use the data, sensors and period it was trained on"
        ) from None


def _run(plan: _RunPlan, display: RunProgress) -> RunResult:
    from empirical_seaice.run.factory import build_network, build_trainer
    from empirical_seaice.training.history import TrainingHistory
    from empirical_seaice.training.runtime import make_generator, split_observations

    result = RunResult(output=plan.output, tag=plan.tag)
    t_run = time.perf_counter()
    # ---- 2. read and build
    obs, background = _read(plan, display)
    display.stage("packing observations")
    generator = make_generator(plan.train_cfg.seed)
    train_index, valid_index = split_observations(obs.nobs, plan.train_cfg.validation_fraction, generator)
    built = build_network(
        obs,
        background,
        plan.model_cfg,
        plan.cost_cfg,
        optimizer=plan.train_cfg.optimizer,
        generator=generator,
        device=plan.device,
        counted=train_index,
    )
    network, data = built.network, built.data
    nobs_train = built.nobs_train
    if plan.model_file is not None:
        _load_trained(network, plan.model_file)
        nobs_train = int(plan.model_file.get("nobs_train", nobs_train))
    plan.output.mkdir(parents=True, exist_ok=True)

    # ---- 3. initial diagnostics
    if not plan.trainonly and not plan.diagsonly:
        display.stage("initial diagnostics")
        result.files.append(initial_diagnostics(network, data, obs, plan.path("tbsim_initial"), nobs_train, result))

    # ---- 4. train and save (or, with --diagsonly, the books of the trained run)
    history = None
    if not plan.diagsonly:
        trainer = build_trainer(
            network,
            built,
            plan.train_cfg,
            train_index=train_index,
            valid_index=valid_index,
            generator=generator,
            checkpoint_dir=plan.ckpt_dir,
            progress=display,
        )
        t1 = time.perf_counter()
        history = trainer.fit(resume=plan.resume)
        result.train_seconds = time.perf_counter() - t1
        result.history = history
        display.stage("saving the model")
        result.files += _save_model(plan, network, history, obs, background, nobs_train, _before_state(result))
    else:
        assert plan.model_file is not None
        history = _trained_books(plan.model_file, result, TrainingHistory)

    # ---- 5. final diagnostics
    truth = None
    if not plan.trainonly:
        display.stage("diagnostics")
        truth = final_diagnostics(
            network, data, obs, background, Path(plan.data_cfg.data), plan.output, plan.tag, nobs_train, result
        )
        zero = diag.simulate(network, data, obs.nobs, zero_sic=True)
        result.files.append(out.write_tb(plan.path("tbzero"), zero.tb, plan.basis, "tbzero", obs.mask))
        del zero
        result.summary = diag.format_summary(
            diag.RunDiagnostics(
                title=_title(plan, obs, history, result),
                cost_before=result.cost_before,
                cost_after=result.cost_after,
                departures_before=result.departures_before,
                departures_after=result.departures_after,
                truth=result.truth,
                notes=(f"outputs: {plan.output}/*_{plan.tag}.nc",),
            ),
            plan.basis,
        )
    summary = None
    if not plan.trainonly:
        summary = run_summary(
            result, plan.preset_name, plan.data_cfg, obs, history, plan.diagsonly, time.perf_counter() - t_run
        )
    # ---- 6. user products (export, gridded emissivity, classic SIC, plots and the report)
    if plan.products is not None:
        display.stage("products")
        _write_products(plan, result, network, obs, background, truth, history, summary, display)
    # ---- 7. the summary beside the outputs: summary_TAG.txt and summary_TAG.json
    if summary is not None:
        from empirical_seaice.products.report import write_summary_files

        summary["run"]["wall_seconds"] = round(time.perf_counter() - t_run, 2)
        result.summary_data = summary
        result.files += write_summary_files(plan.output, plan.tag, result.summary, summary)
    display.stage("done")
    return result


def _trained_books(model_file: dict[str, Any], result: RunResult, history_type) -> Any:
    """``--diagsonly``: the history and the "before training" numbers of the trained run, for the summary."""
    history = None
    if model_file.get("history") is not None:
        history = history_type.from_state(model_file["history"])
        result.history = history
    before = model_file.get("before")
    if before:
        result.cost_before = dict(before["cost"])
        result.departures_before = diag.DepartureStats(
            count=np.asarray(before["count"]), mean=np.asarray(before["mean"]), std=np.asarray(before["std"])
        )
    return history


def _write_products(
    plan: _RunPlan, result: RunResult, network, obs, background, truth, history, summary, display
) -> None:
    from empirical_seaice.products.write import write_products

    files, lines = write_products(
        plan.products,
        network=network,
        obs=obs,
        background=background,
        output=plan.output,
        tag=plan.tag,
        preset_name=plan.preset_name,
        data_cfg=plan.data_cfg,
        truth=None if plan.trainonly else truth,
        history=history,
        report=summary,
        report_text=result.summary,
        progress=display,
    )
    result.files += files
    if lines:
        result.summary = "\n".join([result.summary, *(f"  {ln}" for ln in lines)]) if result.summary else ""


def _title(plan: _RunPlan, obs: Observations, history, result: RunResult) -> str:
    what = "diagnostics of the trained model" if plan.diagsonly else "training"
    line = (
        f"seaice-training {what} '{plan.tag}': model {plan.preset_name}, sensors {' '.join(plan.basis.sensor_names)}\n"
        f"  {obs.nobs} observations, {obs.ngrid} grid points x {obs.nstep} steps"
    )
    if history is not None and not plan.diagsonly:
        line += f"; {history.nepochs} epochs in {result.train_seconds:.1f} s ({history.obs_per_s:,.0f} obs/s)"
        if history.valid_cost:
            line += (
                f"\n  held-out observation cost per obs: {history.valid_cost[0]:.4g} -> {history.valid_cost[-1]:.4g}"
            )
            if history.stopped_early:
                line += f" (early stop, best epoch {history.best_epoch + 1})"
    return line


def _before_state(result: RunResult) -> dict[str, Any] | None:
    """The cost and departures before training, kept in model_TAG.pt for a later --diagsonly summary."""
    if result.cost_before is None or result.departures_before is None:
        return None
    d = result.departures_before
    return {"cost": dict(result.cost_before), "count": d.count.tolist(), "mean": d.mean.tolist(), "std": d.std.tolist()}


def _save_model(
    plan: _RunPlan,
    network,
    history,
    obs: Observations,
    background: BackgroundMaps,
    nobs_train: int,
    before: dict[str, Any] | None = None,
) -> list[Path]:
    """Write model_TAG.pt, models_TAG.nc, seaice_TAG.nc and the two properties files."""
    configs = configs_to_dict(plan.data_cfg, plan.model_cfg, plan.cost_cfg, plan.train_cfg, plan.preset_name)
    files = [
        write_model_file(
            out.output_path(plan.output, out.CHECKPOINT, plan.tag),
            # the state tables are views into the optimiser's slab (weights + moments): copied contiguous
            state_dict=network.state_dict(),
            configs=configs,
            history=history.to_state() if history is not None else None,
            nobs=obs.nobs,
            ngrid=obs.ngrid,
            nstep=obs.nstep,
            nobs_train=nobs_train,
            before=before,
        )
    ]
    files += write_state_files(network, obs, background, plan.output, plan.tag, plan.data_cfg.steps_per_day)
    files.append(write_models_file(plan.path("models"), network, history, configs, plan.model_cfg))
    return files


__all__ = ["run", "RunResult"]
