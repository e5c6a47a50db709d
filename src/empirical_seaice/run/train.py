"""One run of ``seaice-training``: read -> build -> initial diagnostics -> train -> save -> diagnostics.

:func:`run` is the library entry point behind the CLI. Order of work:

1. **Validate** the flags and files that can be checked without reading
   (tag names, mode flags, the data path and background files, sensor names,
   the device, with ``--diagsonly`` the trained model ``model_MODELTAG.pt``,
   with ``--resume`` the epoch checkpoint; :mod:`empirical_seaice.run.plan`).
   Nothing is created before this.
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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from empirical_seaice.compiled import start_numba
from empirical_seaice.config import CostConfig, DataConfig, ModelConfig, Preset, TrainingConfig
from empirical_seaice.errors import RunInterrupted, SeaIceError
from empirical_seaice.io import outputs as out
from empirical_seaice.io import transaction as txn
from empirical_seaice.io.cache import CacheGuard, join_commits
from empirical_seaice.logs import warnings_said
from empirical_seaice.memory import (
    HEAP_THRESHOLD,
    MMAP_THRESHOLD,
    blocks_from_heap,
    map_large_arrays,
    release_free_memory,
    startup_objects_frozen,
)
from empirical_seaice.observations import BackgroundMaps, Observations, release_pages
from empirical_seaice.products import diagnostics as diag
from empirical_seaice.run.finish import (
    publish_final_pass,
    run_summary,
    run_truth,
    schedule_line,
    summary_table,
    write_state_files,
)
from empirical_seaice.run.model_file import (
    before_state,
    check_trained_data,
    configs_to_dict,
    load_trained,
    run_identity,
    trained_books,
    trained_products,
    write_trained,
)
from empirical_seaice.run.plan import RunPlan, validate_run, warn_unused_stopping_flags
from empirical_seaice.run.ranks import rank_context
from empirical_seaice.run.streamed import AheadOfFinalPass, final_pass, initial_pass
from empirical_seaice.training.checkpoint import other_mode_checkpoints
from empirical_seaice.training.runtime import RunProgress, own_storage

if TYPE_CHECKING:
    from empirical_seaice.training.regions import Region

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
    map_priors_note : which whole-map priors ``--map-priors auto`` took and why ('' otherwise).
    sharded : how a sharded run (``--distributed``) was sharded, in words ('' for a single process).
    summary : the summary table ('' with ``--trainonly``).
    summary_data : the same as data (``summary_TAG.json``), None with ``--trainonly``.
    health : the health checks after training (run.health.HealthReport; None with ``--diagsonly``).
    data_warnings : the warnings about the input files the run logged: its read's (the data cache's on a
        hit) and the initial diagnostics' (a sensor's departures over open water).
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
    map_priors_note: str = ""
    sharded: str = ""
    summary: str = ""
    summary_data: dict[str, Any] | None = None
    health: Any = None
    data_warnings: int = 0
    manifest: dict[str, Any] | None = None


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
    perturbation: Any = None,
    said_before: Sequence[str] = (),
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
    perturbation : :class:`~empirical_seaice.run.perturb.Perturbation`, optional
        An ensemble member's perturbations of the observations and the background, applied
        after reading (:mod:`empirical_seaice.run.ensemble`); None = the data as read.
    said_before : the warnings the caller logged before the run (the command line's, about its flags:
        ``--threads``, ``--validation-fraction``, those ``--diagsonly`` does not use), listed in the summary
        before the run's own.

    Raises
    ------
    SeaIceError
        Any user-caused problem (flags, files, data); nothing is left behind in
        an output directory this run created.
    """
    with warnings_said() as checked:  # what checking the run logs (--diagsonly's sensors), for its summary
        plan = validate_run(
            data_cfg, preset, cost_cfg, train_cfg, Path(output), tag, modeltag, diagsonly, trainonly, resume, progress
        )
    plan.said = [*said_before, *checked]  # the summary's list of warnings, those before the run first
    # a run that trains: large arrays as mappings of their own up to the end of training (its peak);
    # one that does not, and the process after any run: glibc's ceiling (empirical_seaice.memory)
    map_large_arrays(MMAP_THRESHOLD if plan.model_file is None else HEAP_THRESHOLD)
    try:
        plan.products, plan.force_outputs, plan.checkpoint_minutes = products, force_outputs, checkpoint_minutes
        if plan.model_file is not None:  # --diagsonly: the products as the trained run had them
            plan.products = trained_products(plan.model_file, products)
        plan.perturbation = perturbation
        ctx = rank_context(distributed, plan.device, diagsonly)
        if ctx is not None:
            from empirical_seaice.run.sharded import run_sharded_set

            return run_sharded_set(ctx, argv, plan, shard_order)
        if resume and not plan.checkpoint.is_file():
            if other_mode_checkpoints(plan.ckpt_dir, sharded=False):
                raise SeaIceError(
                    f"--resume: the checkpoints in {plan.ckpt_dir} are a sharded run's (one a rank): resume it under "
                    "torchrun with --distributed, or train without --resume"
                )
            raise SeaIceError(f"--resume: no epoch checkpoint {plan.checkpoint}; train without --resume first")
        run_set = txn.OutputSet(plan.output, tag, argv=argv, inherit=diagsonly and plan.modeltag == tag)
        cache = CacheGuard(plan.output / "cache")
        # what an interrupted run or a copied directory left, for the summary
        with warnings_said(before=plan.said) as plan.said:
            plan.stage = run_set.begin()
        try:
            display = RunProgress(progress)
            try:
                # the collections of release_free_memory: the run's objects only; the run's warnings kept for
                # its summary
                with startup_objects_frozen(), warnings_said(before=plan.said) as plan.said:
                    return _run(plan, run_set, display)
            finally:
                display.close()
        except BaseException as exc:  # remove only what this run created
            run_set.abort()
            if not run_set.published:
                cache.cleanup(plan.output)
            if isinstance(exc, RunInterrupted) and plan.trained and not run_set.published:
                raise RunInterrupted(f"{exc}; {_resume_hint(plan)}", exit_code=exc.exit_code) from None
            if isinstance(exc, txn.OutputWriteError) and plan.trained and not run_set.published:
                # a full disk after training (the final pass's files, the model's, the state's): the
                # checkpoint holds the trained state, as after a failure in the products
                raise SeaIceError(f"{exc} -- {_resume_hint(plan)}") from None
            raise
        finally:
            join_commits(plan.output / "cache")  # the data cache committed behind the run (_read)
            run_set.release()
    finally:
        map_large_arrays(HEAP_THRESHOLD)


def _read(plan: RunPlan, display: RunProgress) -> tuple[Observations, BackgroundMaps]:
    """Step 2a: read the data (through the cache in ``<output>/cache``)."""
    from empirical_seaice.io import describe, read_training_data

    display.stage("reading data")
    t0 = time.perf_counter()
    # a new cache is committed behind the run (its flush waits for the disk), joined before the run ends;
    # in a run that trains (large arrays mapped on their own, run()), the read's temporaries (the
    # per-observation pass's arrays of a few MB) reused from the heap instead of mapped and faulted in
    # anew each, then handed back (empirical_seaice.memory)
    trains = plan.model_file is None
    if trains:
        map_large_arrays(HEAP_THRESHOLD)
    try:
        obs, background = read_training_data(
            plan.data_cfg, plan.model_cfg.nlag, cache_dir=plan.output / "cache", commit_behind=True
        )
    finally:
        if trains:
            map_large_arrays(MMAP_THRESHOLD)
            release_free_memory(collect=False)
    if tuple(obs.basis.channel_names) != tuple(plan.basis.channel_names):  # pragma: no cover - reader contract
        raise ValueError("reader returned a different channel basis")
    log.info(
        "read %d observations, %d grid points, %d steps in %.1f s",
        obs.nobs,
        obs.ngrid,
        obs.nstep,
        time.perf_counter() - t0,
    )
    if log.isEnabledFor(logging.INFO):  # the summary reads every TB: only when it is shown
        log.info("training data:\n%s", describe(obs, background))
    if plan.perturbation is not None:  # an ensemble member (run.perturb)
        obs, background = plan.perturbation.apply(obs, background)
    return obs, background


def _run(plan: RunPlan, run_set: txn.OutputSet, display: RunProgress) -> RunResult:
    from empirical_seaice.model.tensors import ObservationBlocks
    from empirical_seaice.run import interrupt
    from empirical_seaice.run.factory import build_network
    from empirical_seaice.run.health import check_trained, health_gate
    from empirical_seaice.training.checkpoint import check_identity, checkpoint_identity
    from empirical_seaice.training.runtime import make_generator, split_observations

    result = RunResult(output=plan.output, tag=plan.tag)
    t_run = time.perf_counter()
    # ---- 2. read and build
    start_numba()  # the process's numba start-up, before the read's kernels (not beside them: slower)
    obs, background = _read(plan, display)
    result.data_warnings = len(obs.read_warnings)
    asked = plan.train_cfg  # before the automatic values: its batch None where it follows the data
    plan.train_cfg = plan.train_cfg.resolved(obs.nobs)  # the automatic batch size and learning rate, from the data
    warn_unused_stopping_flags(asked, plan.train_cfg, trains=plan.model_file is None)
    identity = run_identity(obs, plan.model_cfg, plan.cost_cfg, plan.train_cfg)
    if plan.model_file is not None:  # --diagsonly: the trained run's data, before any work
        check_trained_data(plan.model_file, obs, plan.modeltag)
    if plan.resume:  # refuse another run's checkpoint before any work
        check_identity(plan.checkpoint, checkpoint_identity(plan.checkpoint), identity)
    display.stage("packing observations")
    log.info("training: %d epochs, %s", plan.train_cfg.nepochs, schedule_line(plan.train_cfg))
    generator = make_generator(plan.train_cfg.seed)
    split = split_observations(obs.nobs, plan.train_cfg.validation_fraction, generator)
    # a batch asked for (--batchsize, --exact-reference's) holds at most the training observations
    replace(plan.train_cfg, batch_size=asked.batch_size).check_batch(split[0].size)
    built = build_network(
        obs,
        background,
        plan.model_cfg,
        plan.cost_cfg,
        optimizer=plan.train_cfg.optimizer,
        generator=generator,
        device=plan.device,
        counted=split[0],
        prior_mode=plan.train_cfg.prior_mode,
        pack=not plan.diagsonly,  # --diagsonly: only the final pass simulates them, a block at a time
    )
    network = built.network
    # the observations the passes simulate: dropped after the last pass that needs them
    data: Any = built.data if built.data is not None else ObservationBlocks(obs, plan.device)
    release_free_memory()  # the temporaries of the build (row counts, neighbour pairs)
    for arr in (background.sic, background.t_skin_map_k):  # the network holds its own copies
        release_pages(arr)
    nobs_train = built.nobs_train
    if plan.model_file is not None:
        load_trained(network, plan.model_file)
        nobs_train = int(plan.model_file.get("nobs_train", nobs_train))

    # ---- 3. initial diagnostics (tbsim_initial held: nothing is an output before the health checks)
    held = out.HeldOutputs(plan.stage)
    if not plan.trainonly and not plan.diagsonly:
        display.stage("initial diagnostics")
        # the pass's blocks reused from the heap instead of mapped anew each (on the benchmark twin 0.5-0.7
        # CPU-s less here and 0.8 s less in training, for a training peak 25 MiB higher: docs/scaling.md)
        with blocks_from_heap():
            before = initial_pass(network, data, obs, nobs_train, held, plan.path("tbsim_initial"))
        result.cost_before, result.departures_before = before.cost, before.departures
        result.data_warnings += len(before.warned)

    # ---- 4. train and check (with --diagsonly: the books of the trained run); the final diagnostics'
    # pass gives the checks their figures and holds its files until they pass
    history = final = truth = marks = None
    if plan.model_file is None:
        regions = held_out_regions(obs, background, split[1])
        history = _train(plan, built, split, generator, identity, display, result, regions)
        # the packed table goes with the trainer's buffers (reference cycles), before the state tables are
        # copied out of the slab: the held-out fit packs its own observations, the final pass one block at
        # a time, the products need the state only
        built.data = data = None
        map_large_arrays(HEAP_THRESHOLD)  # the passes' blocks reused from the heap again (empirical_seaice.memory)
        release_free_memory()
        own_storage(network)  # the state tables were views of the optimiser's slab, which goes now
        release_free_memory()
        final, truth = _held_out_and_final_pass(plan, built, obs, background, split, history, held, display)
        # the final pass's blocks (arrays, no reference cycles: the held-out fit's trainer was collected
        # before the pass); a full collection took 0.02 s of the health checks' stage on the benchmark twin
        release_free_memory(collect=False)
        result.health, marks = health_gate(
            check_trained(network, obs, final.checks, result.cost_before, final.cost),
            plan.force_outputs,
            plan.checkpoint,
        )
    else:
        history = trained_books(plan.model_file, result)
        marks = _trained_marks(plan)
    # ---- 4b.-7. every file into the staging set (marked when --force-outputs overrode a failed check)
    configs = configs_to_dict(plan.data_cfg, plan.model_cfg, plan.cost_cfg, plan.train_cfg, plan.preset_name)
    with txn.health_marks(marks):
        if held.holds(plan.path("tbsim_initial")):
            result.files.append(held.promote(plan.path("tbsim_initial")))
        if not plan.diagsonly:
            display.stage("saving the model")
            result.files += write_trained(
                plan.stage, plan.tag, configs, network, history, obs, nobs_train, before_state(result), plan.model_cfg
            )
            result.files += write_state_files(
                network, obs, background, plan.stage, plan.tag, plan.data_cfg.steps_per_day
            )
        try:
            run = (network, data, obs, background)
            _diagnostics_and_products(plan, run, nobs_train, result, (final, truth, held), history, display, t_run)
        except Exception as exc:
            failed_after_training(plan, run_set, configs, exc)
        display.stage("publishing")
        held.discard()
        with interrupt.deferred():
            result.manifest = run_set.publish(
                configs,
                status="complete" if marks is None else "health-check-failed",
                message="" if marks is None else marks["health_check_failures"],
            )
        interrupt.raise_pending(published=f"{plan.output}/*_{plan.tag}.nc")
    result.files = [
        plan.output / f.relative_to(plan.stage) if f.is_relative_to(plan.stage) else f for f in result.files
    ]
    display.stage("done")
    return result


def _trained_marks(plan: RunPlan) -> dict[str, str] | None:
    """``--diagsonly``: the health marks of the trained model's set where it was written with
    ``--force-outputs`` despite failed checks (its manifest's status), for this run's files and manifest too
    (before: the diagnostics' set was published ``complete``, its new files unmarked, beside the inherited
    files marked failed); None where its checks passed or it has no manifest."""
    from empirical_seaice.run.health import failure_marks

    manifest = txn.read_manifest(plan.output, plan.modeltag) or {}
    if manifest.get("status") != "health-check-failed":
        return None
    return failure_marks(str(manifest.get("message", "")))


def held_out_regions(obs, background, valid_index: np.ndarray | None, shard=None) -> dict[str, Region] | None:
    """Each hemisphere of a grid with both (a global grid; :func:`~empirical_seaice.io.grid_cells.global_hemispheres`):
    name -> its held-out observations, grid points and observations
    (:class:`~empirical_seaice.training.regions.Region`); None on a grid of one hemisphere, without
    coordinates or without held-out observations. ``shard``: a rank's share of a sharded run
    (:class:`~empirical_seaice.run.partition.Shard`), numbered as the rank's network is (its grid
    points and observations in order); ``valid_index`` is then the rank's own."""
    from empirical_seaice.io.grid_cells import global_hemispheres
    from empirical_seaice.training.regions import Region

    parts = global_hemispheres(background.lat) if valid_index is not None else []
    if not parts:
        return None
    valid_index = np.asarray(valid_index, dtype=np.int64)
    igrid = np.asarray(obs.igrid)
    if shard is not None:
        parts = [(name, mask[shard.grid]) for name, mask in parts]
        igrid = np.searchsorted(shard.grid, igrid[shard.obs])
    return {
        name: Region(valid_index[mask[igrid[valid_index]]], np.flatnonzero(mask), np.flatnonzero(mask[igrid]))
        for name, mask in parts
    }


def _train(plan: RunPlan, built, split, generator, identity, display: RunProgress, result: RunResult, regions=None):
    """Step 4: fit the network (SIGINT/SIGTERM stop at a step boundary with a checkpoint); returns the history.
    ``regions``: the held-out observations of each hemisphere of a global grid (:func:`held_out_regions`)."""
    from empirical_seaice.run import interrupt
    from empirical_seaice.run.factory import build_trainer

    display.stage("training: setting up the optimisers")  # not the initial diagnostics' time
    trainer = build_trainer(
        built.network,
        built,
        plan.train_cfg,
        train_index=split[0],
        valid_index=split[1],
        generator=generator,
        checkpoint_dir=plan.ckpt_dir,
        progress=display,
        checkpoint_minutes=plan.checkpoint_minutes,
        identity=identity,
        stop=interrupt.requested,
        valid_regions=regions,
    )
    # the whole-map priors that --map-priors auto took, and why (the summary says it)
    plan.train_cfg = replace(plan.train_cfg, map_priors=trainer.config.map_priors)
    result.map_priors_note = trainer.map_priors_note
    release_free_memory()  # what building the trainer freed: not beside the training's peak
    if not plan.resume:  # a sharded run's checkpoints of this tag: stale once this run writes its own
        for path in other_mode_checkpoints(plan.ckpt_dir, sharded=False):
            path.unlink(missing_ok=True)
    t1 = time.perf_counter()
    with interrupt.training():
        history = trainer.fit(resume=plan.resume)
        if history.nepochs > plan.train_cfg.nepochs:  # resumed with fewer epochs than trained: record the truth
            plan.train_cfg = replace(plan.train_cfg, nepochs=history.nepochs)
        plan.trained = True  # a signal held back by the last checkpoint's write is raised next, with the advice
    result.train_seconds = time.perf_counter() - t1
    result.history = history
    return history


def _held_out_and_final_pass(plan: RunPlan, built, obs, background, split, history, held, display: RunProgress):
    """Step 4a and the checks' pass: the held-out fit (where the run holds observations out) and the
    final pass (:func:`_final_pass`); returns its result and the truth."""
    from empirical_seaice.model.tensors import ObservationBlocks

    ahead = None
    try:
        if split[1] is not None and history.nepochs > 0:
            # tbobs and the truth, which do not depend on the trained model, are written and read on a
            # thread of their own (run.streamed) while the fit computes on the other cores
            ahead = _ahead_of_final_pass(plan, obs, background, held)
            if ahead is not None:  # started once known to the handler below (a signal in start() cancels it)
                ahead.start()
            _fit_held_out(plan, built, obs, background, split, history, display, ahead)
            release_free_memory()
        display.stage("health checks")
        blocks = ObservationBlocks(obs, plan.device)
        return _final_pass(plan, built.network, blocks, obs, background, built.nobs_train, held, ahead)
    except BaseException:  # a failure or an interrupt: the background writer stopped, its file removed
        if ahead is not None:
            ahead.cancel()
        raise


def _fit_held_out(
    plan: RunPlan, built, obs, background, split, history, display: RunProgress, ahead: AheadOfFinalPass | None
) -> None:
    """Step 4a: the state rows only the held-out observations read, fitted with the model fixed
    (:mod:`empirical_seaice.run.held_out`), as many passes as the kept model trained; on one thread fewer
    while ``ahead`` writes ``tbobs`` beside it."""
    from empirical_seaice.run.held_out import fit_held_out_state, held_out_epochs

    display.stage("fitting the held-out state")
    fit_held_out_state(
        built.network,
        obs,
        background,
        plan.model_cfg,
        plan.cost_cfg,
        plan.train_cfg,
        split[0],
        split[1],
        held_out_epochs(history, plan.train_cfg.early_stopping),
        # the training's table is freed: the fit packs the held-out observations alone
        train_read=built.rows_read,  # the rows the training observations read: not counted again
        beside=ahead.running if ahead is not None else None,
    )


def _resume_hint(plan: RunPlan, then: str = ":") -> str:
    """What a run that stops after training says: its last checkpoint has the trained state (a sharded run's:
    one a rank; ``then``: the punctuation before the advice)."""
    kept = f"the checkpoints in {plan.ckpt_dir}" if plan.sharded else plan.checkpoint
    return (
        f"the trained state is kept in {kept}{then} rerun the same command with --resume to write the outputs "
        "without training again"
    )


def failed_after_training(plan: RunPlan, run_set: txn.OutputSet, configs: dict[str, Any], exc: Exception) -> NoReturn:
    """A failure after training: the trained model is hours of work, so publish what was written
    (``partial``) and say how to redo only what failed; raises the one-line error."""
    from empirical_seaice.run import interrupt

    if plan.diagsonly:
        raise exc
    if isinstance(exc, txn.OutputWriteError):  # no room to publish: the old set stays
        raise SeaIceError(f"{exc} -- {_resume_hint(plan)}") from None
    out.HeldOutputs(plan.stage).discard()  # what the health checks never released is no output
    with interrupt.deferred():
        run_set.publish(configs, status="partial", message=str(exc))
    what = str(exc) if isinstance(exc, SeaIceError) else f"{type(exc).__name__}: {exc}"
    raise SeaIceError(
        f"{what} -- the trained model is kept ({plan.output}/model_{plan.tag}.pt, {plan.output}/seaice_{plan.tag}.nc, "
        f"...): write the diagnostics and products again with --diagsonly --tag {plan.tag}"
    ) from (None if isinstance(exc, SeaIceError) else exc)


def _ahead_of_final_pass(plan: RunPlan, obs, background, held: out.HeldOutputs) -> AheadOfFinalPass | None:
    """The final pass's ``tbobs`` and truth for a background thread, not started
    (:class:`~empirical_seaice.run.streamed.AheadOfFinalPass`); None with ``--trainonly`` (no files)."""
    if plan.trainonly:
        return None
    data_dir = Path(plan.data_cfg.data)
    return AheadOfFinalPass(
        held, plan.path("tbobs"), obs, (background.lon, background.lat), lambda: run_truth(data_dir, obs)
    )


def _final_pass(
    plan: RunPlan,
    network,
    data,
    obs,
    background,
    nobs_train: int,
    held: out.HeldOutputs,
    ahead: AheadOfFinalPass | None = None,
):
    """The streamed final pass (:func:`~empirical_seaice.run.streamed.final_pass`), its files held
    (none with ``--trainonly``), and the twin's truth it scores against (None without one). ``ahead``:
    ``tbobs`` and the truth under way on a background thread (waited for here, before the pass)."""
    kinds: tuple[str, ...] = ("tbobs", "tbsim", "ice_emis", "tbzero")
    if ahead is not None:
        try:
            truth = ahead.result()
        except SeaIceError as exc:
            raise SeaIceError(f"{exc}: {_resume_hint(plan, then=';')}") from exc.__cause__
        kinds = kinds[1:]
    else:
        truth = None if plan.trainonly else run_truth(Path(plan.data_cfg.data), obs)
    release_free_memory(collect=False)  # the truth files' read buffers (arrays, no cycles): not under the pass
    paths = None if plan.trainonly else {k: plan.path(k) for k in kinds}
    lonlat = (background.lon, background.lat)
    checked = plan.model_file is None  # the health checks follow (not --diagsonly's pass): their state figures
    final = final_pass(network, data, obs, nobs_train, held, paths, truth, lonlat, state_figures=checked)
    if ahead is not None:
        final.files = {"tbobs": plan.path("tbobs"), **final.files}
    if truth is not None and final.emis_errors is not None:  # summed by the pass: the scores need no more
        truth.emis_ice = None  # (nobs, nchan): not held through the products
    return final, truth


def _diagnostics_and_products(
    plan: RunPlan, run, nobs_train: int, result: RunResult, passed, history, display: RunProgress, t_run: float
) -> None:
    """Steps 5-7, into the staging set: final diagnostics and the summary, the user products and the
    report, the summary files. ``run``: (network, data, obs, background); ``passed``: (the final
    pass or None, its truth, the held files)."""
    network, data, obs, background = run
    final, truth, held = passed
    if not plan.trainonly:
        display.stage("diagnostics")
        if final is None:  # --diagsonly: no health checks, so the pass comes here
            final, truth = _final_pass(plan, network, data, obs, background, nobs_train, held)
        publish_final_pass(network, obs, background, truth, result, final, held)
        result.summary = summary_table(
            result, plan.preset_name, obs, history, plan.diagsonly, plan.train_cfg, plan.cost_cfg, plan.said,
            plan.modeltag,
        )  # fmt: skip
    summary = None
    if not plan.trainonly:
        summary = run_summary(
            result,
            plan.preset_name,
            plan.data_cfg,
            obs,
            history,
            plan.diagsonly,
            time.perf_counter() - t_run,
            mode=f"diagnostics of the trained model '{plan.modeltag}'" if plan.diagsonly else None,
            said=plan.said,
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
        result.files += write_summary_files(plan.stage, plan.tag, result.summary, summary)


def _write_products(
    plan: RunPlan, result: RunResult, network, obs, background, truth, history, summary, display
) -> None:
    from empirical_seaice.products.write import write_products
    from empirical_seaice.run.model_file import trained_provenance

    files, lines = write_products(
        plan.products,
        network=network,
        obs=obs,
        background=background,
        output=plan.stage,
        tag=plan.tag,
        preset_name=plan.preset_name,
        data_cfg=plan.data_cfg,
        truth=None if plan.trainonly else truth,
        history=history,
        report=summary,
        report_text=result.summary,
        progress=display,
        trained=trained_provenance(plan.model_file) if plan.model_file is not None else None,
    )
    result.files += files
    if lines:
        lines = [ln.replace(str(plan.stage), str(plan.output)) for ln in lines]
        result.summary = "\n".join([result.summary, *(f"  {ln}" for ln in lines)]) if result.summary else ""


__all__ = ["run", "RunResult"]
