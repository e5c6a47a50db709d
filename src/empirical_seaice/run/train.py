"""One run of ``seaice-training``: read -> build -> initial diagnostics -> train -> save -> diagnostics.

:func:`run` is the library entry point behind the CLI. Order of work:

1. **Validate** the flags and files that can be checked without reading
   (tag names, mode flags, the data path and background files, sensor names,
   the device, with ``--diagsonly`` the trained model ``model_MODELTAG.pt``,
   with ``--resume`` the epoch checkpoint). Nothing is created before this.
   Then the run takes the tag's lock and opens its output set
   (:class:`~empirical_seaice.io.transaction.OutputSet`): every file below is
   written into the staging directory and published in one step at the end.
2. **Read** the training data (memory-mapped cache in ``<output>/cache/``)
   and build the :class:`~empirical_seaice.model.operator.HybridNetwork`;
   with ``--resume``, check the checkpoint's identity first. A user-caused
   error here or later removes only what this run created (its staging set,
   its lock, a cache or output directory it created).
3. Unless ``--trainonly``/``--diagsonly``: simulate every observation before
   training (``tbsim_initial``, kept in memory) and evaluate the full cost ``J``.
4. **Train** (:class:`~empirical_seaice.training.trainer.Trainer`, checkpoints
   in ``<output>/checkpoints_TAG/``; SIGINT/SIGTERM stop at a step boundary),
   run the **health checks** (:mod:`empirical_seaice.run.health`; a failure writes
   nothing unless ``force_outputs``) and **save** the model: the PyTorch
   checkpoint ``model_TAG.pt`` (state_dict + configuration, what
   ``--diagsonly`` reloads) and ``models_TAG.nc``, ``seaice_TAG.nc``,
   ``properties_grid_TAG.nc``, ``properties_obs_TAG.nc``. With
   ``--diagsonly`` the network is loaded from ``model_MODELTAG.pt`` instead.
5. Unless ``--trainonly``: final diagnostics ``tbobs``, ``tbsim``,
   ``tbzero``, ``ice_emis``; the cost after; with a twin truth in
   ``<data>/truth`` the truth scores; the summary table (returned, printed by
   the CLI); the user products; then the set is published with its manifest.
   A failure after training publishes what was written (``partial``: the
   trained model is kept) unless the disk refused a write.

``--diagsonly`` uses the setup stored in the checkpoint (model and cost
configuration, sensors, period and background files), so the diagnostics are
those of the trained run: the same float32 forward pass over the same
parameters gives bit-identical ``tbsim``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empirical_seaice.config import CostConfig, DataConfig, ModelConfig, Preset, TrainingConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import outputs as out
from empirical_seaice.io import transaction as txn
from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.products import diagnostics as diag
from empirical_seaice.sensors import build_channel_basis, load_catalogue

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
"""Format number of ``model_TAG.pt``."""


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
    health : the health checks after training (run.health.HealthReport; None with ``--diagsonly``).
    manifest : the manifest of the published output set.
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
    health: Any = None
    manifest: dict[str, Any] | None = None


# ------------------------------------------------------------------ config I/O
def _configs_to_dict(
    data: DataConfig, model: ModelConfig, cost: CostConfig, training: TrainingConfig, preset: str
) -> dict[str, Any]:
    def plain(cfg):
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


def _configs_from_dict(d: dict[str, Any]) -> tuple[DataConfig, ModelConfig, CostConfig]:
    dd = dict(d["data"])
    dd["data"] = Path(dd["data"])
    dd["sensors"] = tuple(dd["sensors"])
    for k in ("seaice_background", "tsfc_background", "grid_file", "sensor_catalogue"):
        dd[k] = None if dd.get(k) is None else Path(dd[k])
    md = dict(d["model"])
    md["lag_weights"] = tuple(md["lag_weights"])
    cd = dict(d["cost"])
    # checkpoints written before these fields existed were trained with the min(C, 0.3 - C) false-ice
    # shape, the physical network frequencies and no angle input (anchor_frequency_ghz defaults to None:
    # the channel anchor)
    cd.setdefault("false_ice_shape", "tent")
    md.setdefault("network_frequencies", "physical")
    md.setdefault("angle_input", False)
    cd["anchor_channels"] = tuple(cd["anchor_channels"])
    cd["bias_bg"] = {k: tuple(v) for k, v in cd["bias_bg"].items()}
    return DataConfig(**dd), ModelConfig(**md), CostConfig(**cd)


# ------------------------------------------------------------------ helpers
def _input_names(model: ModelConfig) -> list[str]:
    names = ["x_T"] + [f"P{k}" for k in range(model.nprop_grid)] + [f"Q{k}" for k in range(model.nprop_obs)]
    if model.version == "v2":
        if model.angle_input:
            names.append("cos_theta")
        scale = model.freq_scale_ghz
        names.append(f"f/{int(scale) if float(scale).is_integer() else scale}")
    return names


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


def _prepare_output(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise SeaIceError(f"--output: {output} exists and is not a directory")


def final_diagnostics(
    network,
    data,
    obs: Observations,
    background: BackgroundMaps,
    data_dir: Path,
    output: Path,
    tag: str,
    nobs_total: int,
    result,
    sim: diag.Simulation | None = None,
):
    """Simulate every observation with the trained model and state; write ``tbobs``, ``tbsim`` and
    ``ice_emis``; fill ``result.cost_after``, ``.departures_after``, ``.files`` and, when ``data_dir``
    holds a twin truth, ``.truth``. Returns the truth (None without one, or when it cannot be read:
    a warning). ``sim``: the simulation after training when already done. Shared by training runs and
    retrievals."""
    from empirical_seaice.io.truth import read_truth

    basis = obs.basis
    p = lambda stem: out.output_path(output, stem, tag)  # noqa: E731
    if sim is None:
        sim = diag.simulate(network, data, obs.nobs)
    result.cost_after = _full_cost(network, obs, sim, nobs_total)
    result.departures_after = diag.departure_stats(obs, sim.tb)
    result.files.append(out.write_tbobs(p("tbobs"), obs, background.lon, background.lat))
    result.files.append(out.write_tb(p("tbsim"), sim.tb, basis, "tbsim", obs.mask))
    result.files.append(out.write_ice_emis(p("ice_emis"), sim.emis_ice, basis, obs.mask))
    try:
        truth = read_truth(data_dir, obs)
    except SeaIceError as exc:  # a truth/ folder that is not our twin's: score nothing, keep the run
        log.warning("no truth scores: %s", exc)
        truth = None
    if truth is not None:
        result.truth = diag.truth_scores(
            obs,
            background,
            network.state.sic_array(),
            sim.emis_ice,
            truth,
            network.bias_ice_k.detach().cpu().numpy(),
            network.bias_ocean_k.detach().cpu().numpy(),
        )
    return truth


def _full_cost(network, obs: Observations, sim: diag.Simulation, nobs_total: int) -> dict[str, float]:
    """J by term (float64): J_o, whole-map priors, anchor over all observations, bias prior."""
    terms = diag.full_cost(network, obs, sim.tb, nobs_total)
    total = terms.pop("total")
    cc = network.cost_config
    if cc.anchor == "mean":
        e0 = float(network.emissivity.e0[network.anchor_channel].detach().double())
        terms["anchor"] = ((e0 - cc.anchor_value) / cc.anchor_error) ** 2
    else:
        e = sim.emis_anchor.astype(np.float64)
        terms["anchor"] = float((np.maximum(cc.anchor_value - e, 0.0) ** 2).sum() / cc.anchor_error**2)
    terms["bias"] = float(network.bias_prior().detach().double())
    terms["total"] = total + terms["anchor"] + terms["bias"]
    return terms


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
    distributed: bool = False,
    shard_order: str = "global",
    force_outputs: bool = False,
    checkpoint_minutes: float | None = None,
    argv: Any = None,
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
    distributed : bool
        Train sharded over the processes of a ``torchrun`` launch
        (:mod:`empirical_seaice.run.sharded`); also on when the launch
        environment says more than one process.
    shard_order : str
        Batch order of a sharded run: "global" (the single-process run's
        batches, shared out) or "local" (each rank shuffles its own
        observations); see :class:`~empirical_seaice.training.distributed.ShardPlan`.
    force_outputs : bool
        Write the outputs even when the health checks after training fail (marked as failed).
    checkpoint_minutes : float, optional
        Interval of the within-epoch checkpoints (default
        :data:`~empirical_seaice.training.trainer.CHECKPOINT_MINUTES`; 0 = epoch ends only).
    argv : the command line, recorded in the lock file and the manifest.

    Raises
    ------
    SeaIceError
        Any user-caused problem (flags, files, data); nothing is left behind in
        an output directory this run created.
    """
    from empirical_seaice.training.runtime import resolve_device

    output = Path(output)
    model_cfg = preset.model if isinstance(preset, Preset) else preset
    preset_name = preset.name if isinstance(preset, Preset) else model_cfg.version

    # ---- 1. validate, create nothing
    out.check_tag(tag)
    if diagsonly and trainonly:
        raise SeaIceError("--diagsonly and --trainonly: give at most one of them")
    if modeltag is not None and not diagsonly:
        raise SeaIceError("--modeltag: only used with --diagsonly (training writes the model under --tag)")
    if resume and diagsonly:
        raise SeaIceError("--resume: only used when training, not with --diagsonly")
    modeltag = out.check_tag(modeltag, "--modeltag") if modeltag is not None else tag
    _prepare_output(output)
    ckpt = None
    if diagsonly:
        ckpt = out.load_checkpoint(out.output_path(output, out.CHECKPOINT, modeltag))
        saved_data, model_cfg, cost_cfg = _configs_from_dict(ckpt["configs"])
        preset_name = ckpt["configs"]["preset"]
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
    if not Path(data_cfg.data).exists():
        raise SeaIceError(f"--data: {data_cfg.data} does not exist (give the training-data directory or file)")
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
    ckpt_dir = output / f"checkpoints_{tag}"
    ctx = _rank_context(distributed, device, diagsonly)
    if ctx is not None:
        return _run_sharded(
            ctx, argv, data_cfg, model_cfg, cost_cfg, train_cfg, output, tag, preset_name, basis, ckpt_dir, trainonly,
            resume, progress, products, shard_order,
        )  # fmt: skip
    if resume:
        from empirical_seaice.training.trainer import CHECKPOINT_NAME

        if not (ckpt_dir / CHECKPOINT_NAME).is_file():
            raise SeaIceError(
                f"--resume: no epoch checkpoint {ckpt_dir / CHECKPOINT_NAME}; train without --resume first"
            )

    run_set = txn.OutputSet(output, tag, argv=argv, inherit=diagsonly and modeltag == tag)
    cache = _CacheGuard(output / "cache")
    stage = run_set.begin()
    try:
        result = _run(
            data_cfg,
            model_cfg,
            cost_cfg,
            train_cfg,
            output,
            tag,
            preset_name,
            basis,
            device,
            ckpt,
            ckpt_dir,
            diagsonly,
            trainonly,
            resume,
            progress,
            products,
            stage,
            run_set,
            force_outputs,
            checkpoint_minutes,
        )
    except BaseException:
        run_set.abort()
        if not run_set.published:
            cache.cleanup(output)
        raise
    finally:
        run_set.release()
    return result


class _CacheGuard:
    """Remove the data cache again if this run created it and no other run of the directory uses it."""

    def __init__(self, cache_dir: Path):
        from empirical_seaice.io.cache import CACHE_SUBDIR

        self.cache_dir = cache_dir
        self.dir_existed = cache_dir.exists()
        self.obs_existed = (cache_dir / CACHE_SUBDIR).exists()

    def cleanup(self, output: Path) -> None:
        from empirical_seaice.io.cache import CACHE_SUBDIR

        if self.obs_existed:
            return
        for lock in output.glob(f"{txn.LOCK_PREFIX}*"):  # another live run of this directory may use the cache
            pid = _lock_pid(lock)
            if pid is not None and pid != os.getpid() and txn.pid_alive(pid):
                return
        shutil.rmtree(self.cache_dir / CACHE_SUBDIR, ignore_errors=True)
        if not self.dir_existed:
            shutil.rmtree(self.cache_dir, ignore_errors=True)


def _lock_pid(path: Path) -> int | None:
    import json

    try:
        return int(json.loads(path.read_text()).get("pid"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _identity(obs: Observations, model_cfg, cost_cfg, train_cfg) -> dict[str, Any]:
    """What a ``--resume`` checkpoint must match: data content, period, model, cost, training options."""
    plain = _configs_to_dict(DataConfig(data=Path(".")), model_cfg, cost_cfg, train_cfg, "")
    return {
        "data": obs.source_digest,
        "period": [float(obs.jd_origin), int(obs.stepstart), int(obs.nstep)],
        "nobs": int(obs.nobs),
        "sensors": list(obs.basis.sensor_names),
        "model": txn.config_hash(plain["model"]),
        "cost": txn.config_hash(plain["cost"]),
        "learning_rate": float(train_cfg.learning_rate),
        "seed": int(train_cfg.seed),
        "validation_fraction": float(train_cfg.validation_fraction),
    }


def _rank_context(distributed: bool, device: torch.device, diagsonly: bool):
    """The :class:`~empirical_seaice.run.sharded.RankContext` of a sharded run (the process group
    joined), or None for a single process."""
    from empirical_seaice.training import distributed as tdist

    env = tdist.launch_environment()
    if env is None:
        if distributed:
            raise SeaIceError(
                "--distributed: not started by torchrun (RANK and WORLD_SIZE unset); launch with "
                "torchrun --nproc-per-node N -m empirical_seaice.cli ... (README 'Training on several processes')"
            )
        return None
    if not distributed and env.world_size == 1:
        return None
    if diagsonly:
        raise SeaIceError("--diagsonly: runs in one process; start it without torchrun and --distributed")
    from empirical_seaice.run.sharded import RankContext

    rank_device = tdist.rank_device(device, env)
    tdist.init_process_group(env, rank_device)
    return RankContext(env=env, device=rank_device)


def _run_sharded(ctx, argv, *args):
    """:func:`~empirical_seaice.run.sharded.run_sharded`. Rank 0 holds the output set (lock, staging
    directory, publication) as a single-process run does; every rank leaves the process group."""
    from empirical_seaice.run.sharded import run_sharded
    from empirical_seaice.training import distributed as tdist

    output, tag = args[4], args[5]
    run_set = cache = None
    try:
        if ctx.root:
            run_set = txn.OutputSet(output, tag, argv=argv)
            cache = _CacheGuard(output / "cache")
        stage = run_set.begin() if run_set is not None else None
        return run_sharded(ctx, *args, run_set=run_set, stage=stage)
    except BaseException:
        if run_set is not None:
            run_set.abort()
            if not run_set.published and cache is not None:
                cache.cleanup(output)
        raise
    finally:
        if run_set is not None:
            run_set.release()
        tdist.destroy_process_group()


def _run(
    data_cfg,
    model_cfg,
    cost_cfg,
    train_cfg,
    output,
    tag,
    preset_name,
    basis,
    device,
    ckpt,
    ckpt_dir,
    diagsonly,
    trainonly,
    resume,
    progress,
    products,
    stage,
    run_set,
    force_outputs,
    checkpoint_minutes,
):
    from empirical_seaice.training.runtime import RunProgress

    display = RunProgress(progress)
    try:
        return _run_stages(
            data_cfg,
            model_cfg,
            cost_cfg,
            train_cfg,
            output,
            tag,
            preset_name,
            basis,
            device,
            ckpt,
            ckpt_dir,
            diagsonly,
            trainonly,
            resume,
            display,
            products,
            stage,
            run_set,
            force_outputs,
            checkpoint_minutes,
        )
    finally:
        display.close()


def _run_stages(
    data_cfg,
    model_cfg,
    cost_cfg,
    train_cfg,
    output,
    tag,
    preset_name,
    basis,
    device,
    ckpt,
    ckpt_dir,
    diagsonly,
    trainonly,
    resume,
    display,
    products,
    stage,
    run_set,
    force_outputs,
    checkpoint_minutes,
):
    from empirical_seaice.io import read_training_data
    from empirical_seaice.model.operator import HybridNetwork, ObservationTensors, build_row_counts
    from empirical_seaice.run import interrupt
    from empirical_seaice.run.health import HealthError, check_health, failure_attributes
    from empirical_seaice.training.history import TrainingHistory
    from empirical_seaice.training.runtime import make_generator, split_observations
    from empirical_seaice.training.trainer import CHECKPOINT_MINUTES, CHECKPOINT_NAME, Trainer

    result = RunResult(output=output, tag=tag)
    t_run = time.perf_counter()
    # ---- 2. read and build
    display.stage("reading data")
    t0 = time.perf_counter()
    obs, background = read_training_data(data_cfg, model_cfg.nlag, cache_dir=output / "cache")
    if tuple(obs.basis.channel_names) != tuple(basis.channel_names):  # pragma: no cover - reader contract
        raise ValueError("reader returned a different channel basis")
    log.info(
        "read %d observations, %d grid points, %d steps in %.1f s",
        obs.nobs,
        obs.ngrid,
        obs.nstep,
        time.perf_counter() - t0,
    )
    try:
        from empirical_seaice.io import describe

        log.info("training data:\n%s", describe(obs, background))
    except ImportError:  # pragma: no cover - describe is optional
        pass

    train_cfg = train_cfg.resolved(obs.nobs)  # the automatic batch size and learning rate, from the data size
    identity = _identity(obs, model_cfg, cost_cfg, train_cfg)
    if resume:  # refuse another run's checkpoint before any work
        state = Trainer.read_checkpoint(ckpt_dir / CHECKPOINT_NAME)
        Trainer.check_identity(ckpt_dir / CHECKPOINT_NAME, state.get("identity"), identity)
        del state
    display.stage("packing observations")
    generator = make_generator(train_cfg.seed)
    train_index, valid_index = split_observations(obs.nobs, train_cfg.validation_fraction, generator)
    nobs_train = int(train_index.size)
    counts = build_row_counts(obs, model_cfg.nlag, obs.ngrid, obs.nstep, index=train_index)
    log.info(
        "training: %d epochs, batch %d, learning rate %.3g, %s, %s whole-map priors, %s batches",
        train_cfg.nepochs,
        train_cfg.batch_size,
        train_cfg.learning_rate,
        train_cfg.optimizer,
        train_cfg.prior_mode,
        train_cfg.batch_order,
    )
    network = HybridNetwork(
        model_cfg,
        cost_cfg,
        basis,
        background,
        obs.nobs,
        row_counts=counts,
        sparse=train_cfg.optimizer != "dense-adam",  # dense Adam: dense tables (the reference's way)
        prior_mode=train_cfg.prior_mode,
        generator=generator,
    )
    if ckpt is not None:
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise SeaIceError(f"--modeltag: checkpoint format {ckpt.get('format')} is not {CHECKPOINT_FORMAT}")
        try:
            network.load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:
            first = str(exc).splitlines()[1:2] or [str(exc)]
            raise SeaIceError(
                f"--modeltag: the trained model does not fit this data ({first[0].strip()}); "
                "use the data, sensors and period it was trained on"
            ) from None
        nobs_train = int(ckpt.get("nobs_train", nobs_train))
    network.to(device)
    data = ObservationTensors(obs, device)

    # ---- 3. initial diagnostics (in memory: nothing is written before the health checks)
    sim0 = None
    if not trainonly and not diagsonly:
        display.stage("initial diagnostics")
        sim0 = diag.simulate(network, data, obs.nobs)
        result.cost_before = _full_cost(network, obs, sim0, nobs_train)
        result.departures_before = diag.departure_stats(obs, sim0.tb)

    # ---- 4. train, check, save
    history = None
    sim = None
    marks = None
    status = "complete"
    if not diagsonly:
        trainer = Trainer(
            network,
            data,
            train_cfg,
            train_index,
            valid_index,
            nobs_train,
            checkpoint_dir=ckpt_dir,
            progress=display,
            generator=generator,
            checkpoint_minutes=CHECKPOINT_MINUTES if checkpoint_minutes is None else checkpoint_minutes,
            identity=identity,
            stop=interrupt.requested,
        )
        t1 = time.perf_counter()
        with interrupt.training():
            history = trainer.fit(resume=resume)
        result.train_seconds = time.perf_counter() - t1
        result.history = history
        display.stage("health checks")
        sim = diag.simulate(network, data, obs.nobs)
        report = check_health(
            network.state.sic_array(),
            network.state.grid_properties_array(),
            network.state.obs_properties_array(),
            sim.emis_ice,
            sim.tb,
            np.asarray(obs.mask),
            sim.sic,
            list(basis.channel_names),
            result.cost_before,
            _full_cost(network, obs, sim, nobs_train),
        )
        result.health = report
        if not report.ok:
            if not force_outputs:
                raise HealthError(
                    f"{report.message()}; no outputs written, the checkpoint {ckpt_dir / CHECKPOINT_NAME} is kept "
                    "for inspection (lower --learning-rate, or --force-outputs to write the outputs marked as failed)"
                )
            log.warning(
                "%s; writing the outputs anyway (--force-outputs), marked health_check = failed", report.message()
            )
            marks = failure_attributes(report)
            status = "health-check-failed"
    with txn.health_marks(marks):
        if sim0 is not None:
            result.files.append(
                out.write_tb(out.output_path(stage, "tbsim_initial", tag), sim0.tb, basis, "tbsim_initial", obs.mask)
            )
            del sim0
        if not diagsonly:
            display.stage("saving the model")
            result.files += _save_model(
                network,
                history,
                obs,
                background,
                data_cfg,
                model_cfg,
                cost_cfg,
                train_cfg,
                preset_name,
                stage,
                tag,
                nobs_train,
                _before_state(result),
            )
        else:
            if ckpt.get("history") is not None:
                history = TrainingHistory.from_state(ckpt["history"])
                result.history = history
            before = ckpt.get("before")
            if before:  # the "before training" numbers of the trained run, for the summary
                result.cost_before = dict(before["cost"])
                result.departures_before = diag.DepartureStats(
                    count=np.asarray(before["count"]), mean=np.asarray(before["mean"]), std=np.asarray(before["std"])
                )
        configs = _configs_to_dict(data_cfg, model_cfg, cost_cfg, train_cfg, preset_name)
        ctx = _Stages(display, t_run, stage, output, tag, preset_name, data_cfg, basis, trainonly, diagsonly, train_cfg)
        try:
            _diagnostics_and_products(network, data, obs, background, nobs_train, result, sim, history, products, ctx)
        except Exception as exc:
            if diagsonly:
                raise
            if isinstance(exc, txn.OutputWriteError):  # no room to publish: the old set stays
                raise SeaIceError(
                    f"{exc} -- the trained state is kept in {ckpt_dir / CHECKPOINT_NAME}: rerun the same "
                    "command with --resume to write the outputs without training again"
                ) from None
            # the trained model is hours of work: publish it, say how to redo only what failed
            with interrupt.deferred():
                run_set.publish(configs, status="partial", message=str(exc))
            what = str(exc) if isinstance(exc, SeaIceError) else f"{type(exc).__name__}: {exc}"
            raise SeaIceError(
                f"{what} -- the trained model is kept ({output}/model_{tag}.pt, {output}/seaice_{tag}.nc, ...): "
                f"write the diagnostics and products again with --diagsonly --tag {tag}"
            ) from (None if isinstance(exc, SeaIceError) else exc)
        display.stage("publishing")
        with interrupt.deferred():
            result.manifest = run_set.publish(
                configs, status=status, message="" if marks is None else marks["health_check_failures"]
            )
        interrupt.raise_pending()
    result.files = [output / Path(f).relative_to(stage) if Path(f).is_relative_to(stage) else f for f in result.files]
    display.stage("done")
    return result


@dataclass
class _Stages:
    """What steps 5-7 of a run need besides the model and the data."""

    display: Any
    t_run: float
    stage: Path
    output: Path
    tag: str
    preset_name: str
    data_cfg: Any
    basis: Any
    trainonly: bool
    diagsonly: bool
    train_cfg: TrainingConfig


def _diagnostics_and_products(network, data, obs, background, nobs_train, result, sim, history, products, ctx):
    """Steps 5-7 of a run, into the staging set: final diagnostics and the summary, the user products
    and the report, the summary files."""
    stage, output, tag = ctx.stage, ctx.output, ctx.tag
    truth = None
    if not ctx.trainonly:
        ctx.display.stage("diagnostics")
        truth = final_diagnostics(
            network, data, obs, background, Path(ctx.data_cfg.data), stage, tag, nobs_train, result, sim=sim
        )
        p = lambda name: out.output_path(stage, name, tag)  # noqa: E731
        zero = diag.simulate(network, data, obs.nobs, zero_sic=True)
        result.files.append(out.write_tb(p("tbzero"), zero.tb, ctx.basis, "tbzero", obs.mask))
        del zero
        result.summary = _summary(
            ctx.preset_name, ctx.basis, obs, history, result, tag, ctx.diagsonly, output, ctx.train_cfg
        )
    summary = None
    if not ctx.trainonly:
        summary = run_summary(
            result, ctx.preset_name, ctx.data_cfg, obs, history, ctx.diagsonly, time.perf_counter() - ctx.t_run
        )
    # ---- 6. user products (export, gridded emissivity, classic SIC, plots and the report)
    if products is not None:
        from empirical_seaice.products.write import write_products

        ctx.display.stage("products")
        files, lines = write_products(
            products,
            network=network,
            obs=obs,
            background=background,
            output=stage,
            tag=tag,
            preset_name=ctx.preset_name,
            data_cfg=ctx.data_cfg,
            truth=None if ctx.trainonly else truth,
            history=history,
            report=summary,
            report_text=result.summary,
            progress=ctx.display,
        )
        result.files += files
        if lines:
            lines = [ln.replace(str(stage), str(output)) for ln in lines]
            result.summary = "\n".join([result.summary, *(f"  {ln}" for ln in lines)]) if result.summary else ""
    # ---- 7. the summary beside the outputs: summary_TAG.txt and summary_TAG.json
    if summary is not None:
        from empirical_seaice.products.report import write_summary_files

        summary["run"]["wall_seconds"] = round(time.perf_counter() - ctx.t_run, 2)
        result.summary_data = summary
        result.files += write_summary_files(stage, tag, result.summary, summary)


def _summary(preset_name, basis, obs, history, result, tag, diagsonly, output, train_cfg) -> str:
    """The summary table printed after a run."""
    return diag.format_summary(
        diag.RunDiagnostics(
            title=_title(
                preset_name,
                basis,
                obs,
                history,
                result,
                tag,
                diagsonly,
                _schedule(train_cfg),
                train_cfg.early_stopping,
            ),
            cost_before=result.cost_before,
            cost_after=result.cost_after,
            departures_before=result.departures_before,
            departures_after=result.departures_after,
            truth=result.truth,
            notes=(f"outputs: {output}/*_{tag}.nc",),
            kept_epoch=_kept_epoch(history, train_cfg.early_stopping),
        ),
        basis,
    )


def run_summary(result: RunResult, preset_name, data_cfg, obs, history, diagsonly: bool, wall_s: float) -> dict:
    """The run's summary as data (:func:`empirical_seaice.products.report.summary_dict`)."""
    from empirical_seaice.io.cf import code_version, now_iso
    from empirical_seaice.products.report import summary_dict
    from empirical_seaice.products.write import provenance_of

    prov = provenance_of(result.tag, preset_name, data_cfg, obs)
    facts = {
        "tag": result.tag,
        "mode": "diagnostics of a trained model" if diagsonly else "training",
        "preset": preset_name,
        "sensors": list(obs.basis.sensor_names),
        "period_start": prov.period_start,
        "period_end": prov.period_end,
        "stepstart": int(obs.stepstart),
        "nsteps": int(obs.nstep),
        "nobs": int(obs.nobs),
        "ngrid": int(obs.ngrid),
        "epochs": int(history.nepochs) if history is not None else None,
        "train_seconds": round(result.train_seconds, 2) if not diagsonly else None,
        "obs_per_s": round(float(history.obs_per_s)) if history is not None and not diagsonly else None,
        "wall_seconds": round(wall_s, 2),
        "data": str(data_cfg.data),
        "output": str(result.output),
        "code_version": code_version(),
        "date_created": now_iso(),
    }
    return summary_dict(
        facts=facts,
        channel_names=list(obs.basis.channel_names),
        sensor_names=list(obs.basis.sensor_names),
        cost_before=result.cost_before,
        cost_after=result.cost_after,
        departures_before=result.departures_before,
        departures_after=result.departures_after,
        truth=result.truth,
    )


def _title(preset_name, basis, obs, history, result, tag, diagsonly, schedule: str = "", early_stopping=False) -> str:
    what = "diagnostics of the trained model" if diagsonly else "training"
    line = (
        f"seaice-training {what} '{tag}': model {preset_name}, sensors {' '.join(basis.sensor_names)}\n"
        f"  {obs.nobs} observations, {obs.ngrid} grid points x {obs.nstep} steps"
    )
    if history is not None and not diagsonly:
        line += f"; {history.nepochs} epochs in {result.train_seconds:.1f} s ({history.obs_per_s:,.0f} obs/s)"
        if schedule:
            line += f"\n  {schedule}"
        if history.valid_cost:
            line += (
                f"\n  held-out observation cost per obs: {history.valid_cost[0]:.4g} -> {history.valid_cost[-1]:.4g}"
            )
        kept = _kept_epoch(history, early_stopping)
        if kept is not None:
            best = history.valid_cost[kept - 1]
            train_j = history.epoch_terms[kept - 1]["total"]
            line += (
                f"\n  early stopping kept epoch {kept} of {history.nepochs}, the lowest held-out cost ({best:.4g} per"
                f" obs; training cost J/nobs {train_j:.4g}): column 'epoch {kept}' below is the cost of that model"
            )
    return line


def _kept_epoch(history, early_stopping: bool = True) -> int | None:
    """With early stopping: the epoch (1-based) whose parameters the trainer kept (the trainer
    restores the best epoch's parameters at the end, stopped early or not); else None."""
    stopped = history is not None and (history.stopped_early or early_stopping)
    if not stopped or history.best_epoch is None:
        return None
    return history.best_epoch + 1


def _schedule(cfg: TrainingConfig) -> str:
    """One line naming the training settings in effect."""
    return (
        f"batch {cfg.batch_size}, learning rate {cfg.learning_rate:.3g}, {cfg.optimizer}, "
        f"{cfg.prior_mode} whole-map priors, {cfg.batch_order} batches"
    )


def _before_state(result: RunResult) -> dict[str, Any] | None:
    """The cost and departures before training, kept in model_TAG.pt for a later --diagsonly summary."""
    if result.cost_before is None or result.departures_before is None:
        return None
    d = result.departures_before
    return {"cost": dict(result.cost_before), "count": d.count.tolist(), "mean": d.mean.tolist(), "std": d.std.tolist()}


def _save_model(
    network,
    history,
    obs: Observations,
    background: BackgroundMaps,
    data_cfg,
    model_cfg,
    cost_cfg,
    train_cfg,
    preset_name,
    output: Path,
    tag: str,
    nobs_train: int,
    before: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> list[Path]:
    """Write model_TAG.pt, models_TAG.nc, seaice_TAG.nc and the two properties files
    (``extra``: further entries of model_TAG.pt, e.g. the partition of a sharded run)."""
    configs = _configs_to_dict(data_cfg, model_cfg, cost_cfg, train_cfg, preset_name)
    # contiguous copies: the state tables are views into the optimiser's slab (weights + moments)
    state_dict = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    files = [
        out.save_checkpoint(
            out.output_path(output, out.CHECKPOINT, tag),
            {
                "format": CHECKPOINT_FORMAT,
                "state_dict": state_dict,
                "configs": configs,
                "history": history.to_state() if history is not None else None,
                "nobs": obs.nobs,
                "ngrid": obs.ngrid,
                "nstep": obs.nstep,
                "nobs_train": nobs_train,
                "before": before,
                **(extra or {}),
            },
        )
    ]
    p = lambda stem: out.output_path(output, stem, tag)  # noqa: E731
    st = network.state
    jd = out.step_julian_day(obs.jd_origin, obs.stepstart, obs.nstep, st.nlag, data_cfg.steps_per_day)
    files.append(
        out.write_seaice(
            p("seaice"),
            st.sic_array(),
            jd,
            background.lon,
            background.lat,
            nlag=st.nlag,
            step_days=1.0 / data_cfg.steps_per_day,
        )
    )
    files.append(
        out.write_properties_grid(
            p("properties_grid"),
            st.grid_properties_array(),
            jd[st.nlag :],
            background.lon,
            background.lat,
            step_days=1.0 / data_cfg.steps_per_day,
        )
    )
    files.append(out.write_properties_obs(p("properties_obs"), st.obs_properties_array()))
    weights, input_layer = emissivity_weights(network)
    epoch_losses = batch_losses = None
    if history is not None and history.epoch_terms:
        epoch_losses = {k: [e[k] for e in history.epoch_terms] for k in history.epoch_terms[0]}
        if history.valid_cost:
            epoch_losses["valid_obs"] = list(history.valid_cost)
        batch_losses = dict(history.batch_terms)
    files.append(
        out.write_models(
            p("models"),
            weights=weights,
            input_names=_input_names(model_cfg),
            input_layer=input_layer,
            basis=network.basis,
            wind_coef=network.wind_coef.detach().cpu().numpy(),
            bias_ice=network.bias_ice_k.detach().cpu().numpy(),
            bias_ocean=network.bias_ocean_k.detach().cpu().numpy(),
            setup=configs,
            epoch_losses=epoch_losses,
            batch_losses=batch_losses,
            model_version=model_cfg.version,
        )
    )
    return files


__all__ = ["run", "RunResult", "emissivity_weights", "CHECKPOINT_FORMAT"]
