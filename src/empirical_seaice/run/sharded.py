"""One training run sharded over processes (``seaice-training --distributed`` under ``torchrun``).

The same command on every rank; what each does (the step itself is in
:mod:`empirical_seaice.training.distributed`):

1. **Join** the process group (``gloo`` on CPU, ``nccl`` on CUDA, one GPU per
   process: ``cuda:LOCAL_RANK``).
2. **Read** the data: rank 0 reads it and writes the memory-mapped cache in
   ``<output>/cache/`` while the others wait at a barrier; then every rank
   opens the cache (memory maps: nothing is read until used).
3. **Agree**: one all-gather of three digests (data, configuration, code
   version); any difference stops every rank with one line.
4. **Partition** the grid by observation count
   (:func:`~empirical_seaice.run.partition.partition_grid`; computed once by
   rank 0, saved in ``checkpoints_TAG/partition.pt``, reloaded on
   ``--resume``, broadcast). Each rank copies its shard's rows out of the
   memory maps and builds its own
   :class:`~empirical_seaice.model.operator.HybridNetwork` over its grid
   points and observations with the run's factory
   (:mod:`empirical_seaice.run.factory`): its state tables hold only its rows,
   the whole-map priors act on them only, and the normalisations (``nobs``,
   warm-ice rows, the global batch) are the global ones.
5. **Train** with the factory's :class:`~empirical_seaice.training.trainer.Trainer` and a
   :class:`~empirical_seaice.training.distributed.ShardPlan`; checkpoints are
   one file per rank (its state rows and their Adam moments, the shared
   parameters and their Adam state, the books, the generator, within an
   epoch its position) plus the partition. A signal to any rank, and
   ``--checkpoint-minutes`` on rank 0's clock, stop every rank or write every
   rank's checkpoint after the same step (the requests travel with the step's
   gradient sum: :meth:`~empirical_seaice.training.distributed.ShardPlan.ask`).
6. **Fit the held-out state**: every rank fits the rows of its own held-out
   observations (:func:`fit_held_out_sharded`; with the global order the
   single process's fit, to the bit). **Assemble**: rank 0 gathers every
   rank's state rows into a whole-map network.
7. **Check and write**: rank 0 runs a single process's streamed passes
   (:mod:`empirical_seaice.run.streamed`: the initial one before training,
   ``tbsim_initial``; the final one, ``tbobs``, ``tbsim``, ``ice_emis``,
   ``tbzero``, the cost after and the health checks' figures) over the
   ranks' simulations, gathered block by block in observation order
   (:func:`~empirical_seaice.run.ranks.sharded_pass`: each rank simulates its
   part of each block), then the health checks (:mod:`empirical_seaice.run.health`)
   on the assembled model; it writes the same files as a single-process run
   (``model_TAG.pt`` also holds the partition) and publishes them, each inside
   :func:`~empirical_seaice.run.ranks.from_root`: a failure stops every rank
   with rank 0's one line (after training, with the trained model published
   as ``partial``).

Memory: a rank holds its shard (its observations packed, its state rows and
their Adam moments) and, in a pass, one block of the run's observations;
rank 0 also the whole state once for the outputs, and every rank one int64
per observation of the run for the global batch order.

The process group's helpers (rank context, agreement, collectives over numpy rows) are in
:mod:`empirical_seaice.run.ranks`; the partition across resumes in :mod:`empirical_seaice.run.reshard`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from empirical_seaice.compiled import start_numba
from empirical_seaice.errors import RunInterrupted, SeaIceError, relayed
from empirical_seaice.io import outputs as out
from empirical_seaice.io import transaction as txn
from empirical_seaice.io.cache import CacheGuard
from empirical_seaice.logs import warnings_said
from empirical_seaice.memory import HEAP_THRESHOLD, blocks_from_heap, map_large_arrays, release_free_memory
from empirical_seaice.observations import Observations
from empirical_seaice.run import interrupt
from empirical_seaice.run.factory import (
    Built,
    build_network,
    build_trainer,
    build_whole_map_network,
    normalise_as_whole_run,
)
from empirical_seaice.run.finish import publish_final_pass, run_summary, summary_table, write_state_files
from empirical_seaice.run.health import check_trained, health_gate
from empirical_seaice.run.model_file import before_state, configs_to_dict, run_identity, write_trained
from empirical_seaice.run.partition import PARTITION_NAME, Shard
from empirical_seaice.run.ranks import (
    RankContext,
    assemble_state,
    code_digest,
    data_digest,
    from_root,
    local_blocks,
    read_once,
    sharded_pass,
    stop_if_any_asked,
)
from empirical_seaice.run.reshard import load_or_make_partition
from empirical_seaice.run.streamed import final_pass, initial_pass
from empirical_seaice.training import distributed as tdist
from empirical_seaice.training.checkpoint import (
    CHECKPOINT_NAME,
    RANK_CHECKPOINTS,
    check_identity,
    checkpoint_identity,
    other_mode_checkpoints,
)
from empirical_seaice.training.runtime import make_generator


def fit_held_out_sharded(
    ctx: RankContext,
    built: Built,
    shard: Shard,
    obs: Observations,
    background,
    valid_index: np.ndarray | None,
    local_valid: np.ndarray | None,
    cfg,
    history,
    display,
) -> None:
    """The single process's held-out fit (:mod:`empirical_seaice.run.held_out`), each rank fitting the rows of
    its own held-out observations in its own network (``built``'s) at the same time: the model is fixed, so
    a row's fit needs only the observations that read it, which are the rank's. The batches follow the
    training's order: ``--shard-order global`` (``valid_index``, the run's held-out observations) the
    single process's, each rank taking its part of each batch (the fit equals a single process's to the
    bit); ``--shard-order local`` (``valid_index`` None) each rank's own held-out observations shuffled by
    its own generator and spread over the steps (memory of the rank's shard only). ``local_valid``: this
    rank's held-out observations (local rows; None without a hold-out). A signal stops every rank after the
    same step, within :data:`~empirical_seaice.training.trainer.FROZEN_STOP_STEPS` steps of the fit (the ranks
    agree on it there: a fit's steps send nothing to carry it), with no row of the fit kept; one after the fit's
    last agreement stops them at its end. ``display``: the run's progress display, where the fit is a stage of
    its own."""
    from empirical_seaice.run.held_out import fit_held_out_shard, held_out_epochs, table_order

    if local_valid is None or history.nepochs == 0:
        return
    display.stage("fitting the held-out state")
    if valid_index is not None:  # the single process's table of held-out observations, by number
        table = np.sort(valid_index)
        at = np.searchsorted(shard.obs, table)
        mine = at < shard.obs.size
        mine[mine] = shard.obs[at[mine]] == table[mine]
        rows = at[mine]  # this rank's held-out observations (local rows, ascending)
        global_to_local = np.full(table.size, -1, dtype=np.int64)
        global_to_local[mine] = np.arange(rows.size)
        sharding = tdist.ShardPlan(ctx.device, cfg.reproducible, global_to_local=global_to_local)
        order, generator = table_order(valid_index), make_generator(cfg.seed)
        del at, mine
    else:  # each rank's own (at least one: split_observations), as its training
        rows = np.sort(local_valid)
        sharding = tdist.ShardPlan(ctx.device, cfg.reproducible, ntrain_local=rows.size)
        order, generator = table_order(local_valid), _local_generator(ctx, cfg)
    held = shard.observations(obs, rows)
    obs.release()
    assert built.rows_read is not None
    with interrupt.deferred():
        fit_held_out_shard(
            built.network,
            held,
            rows,
            shard.background(background),
            built.network.model_config,
            built.network.cost_config,
            cfg,
            held_out_epochs(history, cfg.early_stopping),
            train_read=built.rows_read,
            sharding=sharding,
            order=order,
            generator=generator,
            nvalid=sharding.ntrain_total(torch.from_numpy(order)),
            shared_priors=ctx.root,
            stop=interrupt.requested,  # held back here (deferred): the ranks stop after the same step
        )
    del held
    release_free_memory()  # the fit's table, network and slab: not under the health checks
    stop_if_any_asked(ctx)


def _local_generator(ctx: RankContext, cfg) -> torch.Generator:
    """The generator of a rank's own order (``--shard-order local``): its split and batches, and its held-out
    fit's batches (a generator of its own, drawn from the start again)."""
    return make_generator(cfg.seed * 1_000_003 + ctx.rank + 1)


# ------------------------------------------------------------------ the run
def _sharded_schemes(train_cfg):
    """The training configuration of a sharded run: the whole-map schemes refused, ``--map-priors
    auto`` taking the sampled priors (the full ones run in the single-process fused step only)."""
    if train_cfg.optimizer == "dense-adam" or train_cfg.prior_mode == "full":
        raise SeaIceError(
            "--distributed: not with --optimizer dense-adam or --map-priors full (they step every row of the "
            "whole map, the --exact-reference scheme); use deferred-adam with sampled priors"
        )
    if train_cfg.batch_order != "shuffled":
        raise SeaIceError(f"--batch-order {train_cfg.batch_order}: not with --distributed; use shuffled")
    if train_cfg.prior_mode == "auto":
        train_cfg = dataclasses.replace(train_cfg, map_priors="sampled")
    return train_cfg


SHARDED_PRIORS_NOTE = "sampled whole-map priors (--map-priors auto: the full ones run in one process only)"
"""The summary's schedule line of a sharded run with ``--map-priors auto`` (a single process's says which the
run took and why: :func:`~empirical_seaice.training.schemes.whole_map_scheme`)."""


def run_sharded(ctx: RankContext, plan, order: str = "global", run_set: Any = None):
    """The sharded training run of this rank (see the module docstring) for the CLI's run plan ``plan``
    (:class:`~empirical_seaice.run.plan.RunPlan`: its staging directory ``plan.stage`` is rank 0's); returns
    the :class:`~empirical_seaice.run.train.RunResult` (complete on rank 0; on the other ranks without
    files, diagnostics or summary). ``run_set``: rank 0's output set, published at the end."""
    from empirical_seaice.training.runtime import RunProgress

    display = RunProgress(plan.progress and ctx.root)  # one display, rank 0's
    try:
        # rank 0's warnings kept for the summary, as a single process's (the other ranks' are on their stderr),
        # after those logged before the run (plan.said: the flags', the output directory's)
        with warnings_said(before=plan.said) as plan.said:
            return _run_sharded(ctx, plan, display, order, run_set)
    finally:
        display.close()


def _run_sharded(ctx: RankContext, plan, display, order: str, run_set):
    """:func:`run_sharded` with its progress display ``display``."""
    from empirical_seaice.run import train as single
    from empirical_seaice.training.runtime import split_observations

    data_cfg, model_cfg, cost_cfg, tag, stage = plan.data_cfg, plan.model_cfg, plan.cost_cfg, plan.tag, plan.stage
    asked = train_cfg = _sharded_schemes(plan.train_cfg)  # asked: its batch None where it follows the data
    result = single.RunResult(output=plan.output, tag=tag)
    result.sharded = f"sharded over {ctx.world_size} processes (--shard-order {order})"
    if plan.train_cfg.prior_mode == "auto":
        result.map_priors_note = SHARDED_PRIORS_NOTE
    t_run = time.perf_counter()
    start_numba()  # the process's numba start-up, before the read (as a single process's run)
    display.stage("reading data")
    obs, background = read_once(ctx, data_cfg, model_cfg.nlag, plan.output / "cache")
    result.data_warnings = len(obs.read_warnings)
    train_cfg = train_cfg.resolved(obs.nobs)  # the automatic batch size and learning rate, as a single process
    configs = configs_to_dict(data_cfg, model_cfg, cost_cfg, train_cfg, plan.preset_name)
    tdist.check_agreement(
        {
            "data": data_digest(obs, background),
            "configuration": tdist.digest(
                json.dumps(configs, sort_keys=True),
                tag,
                plan.trainonly,
                plan.resume,
                order,
                repr(plan.products),
                plan.force_outputs,
            ),
            "code version": code_digest(),
        },
        ctx.device,
    )
    # the batches' order too: "local" splits and shuffles each rank's observations, so on another number of ranks
    # its held-out set differs (a resume with another order or count trained on, its early stopping misled)
    identity = {
        **run_identity(obs, model_cfg, cost_cfg, train_cfg),
        "shard_order": order if order == "global" else f"{order} on {ctx.world_size} ranks",
    }
    if plan.resume:  # the ranks agree (above); another run's checkpoints refused before any is re-cut or read
        from_root(ctx, functools.partial(check_rank_checkpoints, plan.ckpt_dir, identity))
    partition = load_or_make_partition(ctx, obs, plan.ckpt_dir, plan.resume, model_cfg.nlag, train_cfg.optimizer)
    shard = Shard.of_rank(partition, obs.igrid, ctx.rank)
    generator = make_generator(train_cfg.seed)
    init_generator = generator  # the network's initial weights: the same draws on every rank
    if order == "global":  # the single-process run's split and batches
        train_index, valid_index = split_observations(obs.nobs, train_cfg.validation_fraction, generator)
        local_train, local_valid = shard.local_index(train_index), shard.local_index(valid_index)
        sharding = tdist.ShardPlan(ctx.device, train_cfg.reproducible, global_to_local=shard.global_to_local_obs)
        nobs_train = int(train_index.size)
    else:  # each rank splits and shuffles its own observations with its own generator
        generator = _local_generator(ctx, train_cfg)
        local_train, local_valid = split_observations(len(shard.obs), train_cfg.validation_fraction, generator)
        valid_index = None  # (the held-out fit gathers every rank's)
        train_index = local_train
        sharding = tdist.ShardPlan(ctx.device, train_cfg.reproducible, ntrain_local=len(local_train))
        assert sharding.ntrain is not None  # order "local": every rank's count
        nobs_train = int(sharding.ntrain.sum())
    # a batch asked for holds at most the training observations (of every rank), as in a single process
    try:
        dataclasses.replace(train_cfg, batch_size=asked.batch_size).check_batch(nobs_train)
    except SeaIceError as exc:  # (the run's count: the same refusal on every rank)
        raise relayed(exc, ctx.rank) from None
    if not plan.resume:  # training from the start, the flags checked: the tag's earlier checkpoints go, ours begin
        from_root(ctx, functools.partial(_start_checkpoints, plan.ckpt_dir, partition))
    built = _rank_network(
        ctx, obs, background, shard, local_train, nobs_train, model_cfg, cost_cfg, train_cfg, init_generator
    )
    network, data = built.network, built.data
    # the shard is copied and packed: the cache's pages this rank read for it (the whole cache, in the copy's
    # gathers) stay in the page cache, not in its memory (1.2 GiB a rank on the benchmark twin)
    obs.release()
    release_free_memory()  # the temporaries of the build (the shard's copy, row counts, neighbour pairs)
    full = _whole_map_network(ctx, obs, background, nobs_train, model_cfg, cost_cfg, network)
    held = out.HeldOutputs(stage) if ctx.root else None  # rank 0's files before the health checks
    simulated = local_blocks(network, data, shard)  # this rank's part of each block of the streamed passes
    if not plan.trainonly:
        display.stage("initial diagnostics")
        before = functools.partial(_initial_pass, full, obs, nobs_train, held, plan.path("tbsim_initial"), result)
        with blocks_from_heap():  # as a single process's (before: rank 0's blocks faulted in anew, 1.1 s system CPU)
            sharded_pass(ctx, shard, simulated, obs.nchan, before)

    trainer = build_trainer(
        network,
        built,
        train_cfg,
        train_index=train_index,
        valid_index=local_valid,
        checkpoint_dir=plan.ckpt_dir,
        progress=display,
        generator=generator,
        sharding=sharding,
        checkpoint_minutes=plan.checkpoint_minutes,  # rank 0's clock: every rank's after the same step (ShardPlan.ask)
        valid_regions=single.held_out_regions(obs, background, local_valid, shard),
        identity=identity,
        stop=interrupt.requested,  # after a step every rank agrees on (ShardPlan.ask), or at an epoch's end
    )
    t1 = time.perf_counter()
    with interrupt.training():  # a signal waits for a step every rank stops after (each with its checkpoint)
        result.history = history = trainer.fit(resume=plan.resume)
        if history.nepochs > train_cfg.nepochs:  # resumed with fewer epochs than trained: record the truth
            train_cfg = dataclasses.replace(train_cfg, nepochs=history.nepochs)
            configs = configs_to_dict(data_cfg, model_cfg, cost_cfg, train_cfg, plan.preset_name)
        plan.trained = True  # a signal held back by the last checkpoint's write is raised next, with the advice
        stop_if_any_asked(ctx)  # on any rank: every rank stops, not one alone
    result.train_seconds = time.perf_counter() - t1
    map_large_arrays(HEAP_THRESHOLD)  # the passes' blocks reused from the heap again (empirical_seaice.memory)
    fit_held_out_sharded(ctx, built, shard, obs, background, valid_index, local_valid, train_cfg, history, display)
    assemble_state(ctx, network, shard, full)  # the trained and the fitted rows
    # the health checks, before any file is an output: a failure stops every rank with rank 0's line
    display.stage("health checks")
    passed: dict[str, Any] = {}  # rank 0: the final pass and the truth (kept here, not sent to every rank)
    checked = functools.partial(_final_pass_and_health, plan, full, obs, background, nobs_train, held, result, passed)
    marks = sharded_pass(ctx, shard, simulated, obs.nchan, checked)
    # the last collective: rank 0 writes and publishes while the others wait for its outcome (a failure
    # there stops them with its line, instead of a lost peer's traceback in their next collective)
    run = (full, obs, background, partition, history, nobs_train, configs, train_cfg)
    write = functools.partial(_write_outputs, plan, run, passed, marks, held, result, run_set, display, t_run)
    from_root(ctx, write, published=f"{plan.output}/*_{plan.tag}.nc")
    display.stage("done")
    return result


def _write_outputs(plan, run, passed, marks, held, result, run_set, display, t_run: float) -> None:
    """Rank 0, after the health checks: the trained model and state, the diagnostics (``passed``: the final
    pass, its held files and the truth: :func:`_final_pass_and_health`), the products and the summary, into the
    staging set (marked where ``--force-outputs`` overrode a failed check: ``marks``), then published. A
    failure after the model is written publishes it (``partial``) and says how to redo the rest, as a
    single process's run does (:func:`~empirical_seaice.run.train.run`)."""
    from empirical_seaice.run import train as single

    full, obs, background, partition, history, nobs_train, configs, train_cfg = run
    stage, tag, data_cfg = plan.stage, plan.tag, plan.data_cfg
    with txn.health_marks(marks):
        if held.holds(plan.path("tbsim_initial")):
            result.files.append(held.promote(plan.path("tbsim_initial")))
        display.stage("saving the model")
        before = before_state(result)
        extra = {"partition": partition.to_state()}
        model_cfg = plan.model_cfg
        result.files += write_trained(stage, tag, configs, full, history, obs, nobs_train, before, model_cfg, extra)
        result.files += write_state_files(full, obs, background, stage, tag, data_cfg.steps_per_day)
        try:
            truth = summary = None
            if not plan.trainonly:
                display.stage("diagnostics")
                truth = passed["truth"]
                publish_final_pass(full, obs, background, truth, result, passed["final"], held)
                result.summary = summary_table(
                    result, plan.preset_name, obs, history, False, train_cfg, plan.cost_cfg, plan.said
                )
                summary = run_summary(
                    result, plan.preset_name, data_cfg, obs, history, False, time.perf_counter() - t_run,
                    said=plan.said,
                )  # fmt: skip
            _products_and_summary(
                plan.products, full, obs, background, stage, tag, plan.preset_name, data_cfg, truth, history, result,
                summary, display, t_run,
            )  # fmt: skip
        except Exception as exc:
            single.failed_after_training(plan, run_set, configs, exc)
        display.stage("publishing")
        held.discard()
        with interrupt.deferred():  # a signal waits for the switch: the set published whole, or the old one kept
            result.manifest = run_set.publish(
                configs,
                status="complete" if marks is None else "health-check-failed",
                message="" if marks is None else marks["health_check_failures"],
            )
        interrupt.raise_pending(published=f"{plan.output}/*_{plan.tag}.nc")
    result.files = [
        plan.output / Path(f).relative_to(stage) if Path(f).is_relative_to(stage) else f for f in result.files
    ]


def _initial_pass(full, obs, nobs_total: int, held, path: Path, result, source) -> None:
    """Rank 0, before training: the streamed initial pass (:func:`~empirical_seaice.run.streamed.initial_pass`)
    of the whole-map network ``full`` over the ranks' simulations (``source``), ``tbsim_initial`` held; its
    cost, departures and open-water warnings into ``result``, as a single process's run."""
    before = initial_pass(full, None, obs, nobs_total, held, path, source=source)
    result.cost_before, result.departures_before = before.cost, before.departures
    result.data_warnings += len(before.warned)


def _final_pass_and_health(plan, full, obs, background, nobs_train: int, held, result, passed: dict, source):
    """Rank 0, after training: the streamed final pass (:func:`~empirical_seaice.run.streamed.final_pass`) of
    the assembled whole-map network ``full`` over the ranks' simulations (``source``; its files held, none
    with ``--trainonly``), kept in ``passed`` with the twin's truth; then the cost after and the health
    checks (:mod:`empirical_seaice.run.health`), as a single process's run checks: the marks of
    ``--force-outputs`` when they failed and it is given (None when they passed), else the one-line
    :class:`~empirical_seaice.run.health.HealthError` (the ranks' checkpoints are kept)."""
    from empirical_seaice.run.finish import run_truth

    truth = None if plan.trainonly else run_truth(Path(plan.data_cfg.data), obs)
    paths = None if plan.trainonly else {k: plan.path(k) for k in ("tbobs", "tbsim", "ice_emis", "tbzero")}
    lonlat = (background.lon, background.lat)
    final = final_pass(full, None, obs, nobs_train, held, paths, truth, lonlat, state_figures=True, source=source)
    if truth is not None and final.emis_errors is not None:  # summed by the pass: the scores need no more
        truth.emis_ice = None  # (nobs, nchan): not held through the products
    passed.update(final=final, truth=truth)
    result.cost_after = final.cost
    result.health, marks = health_gate(
        check_trained(full, obs, final.checks, result.cost_before, final.cost), plan.force_outputs, plan.ckpt_dir
    )
    return marks


def _rank_network(
    ctx: RankContext,
    obs,
    background,
    shard: Shard,
    local_train,
    nobs_train: int,
    model_cfg,
    cost_cfg,
    train_cfg,
    generator,
) -> Built:
    """This rank's network over its grid points and observations (state tables of its rows only; the
    sampled whole-map priors over its training rows) and its observations packed on its device, built by
    the run's factory and normalised as the whole run (the run's ``nobs``, the observed rows of the
    warm-ice mean summed over the ranks, the bias prior counted once, on rank 0)."""
    built = build_network(
        shard.observations(obs),
        shard.background(background),
        model_cfg,
        cost_cfg,
        optimizer=train_cfg.optimizer,
        prior_mode=train_cfg.prior_mode,
        generator=generator,
        device=ctx.device,
        counted=local_train,
    )
    warm = torch.tensor([built.n_warm_rows], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(warm)
    return normalise_as_whole_run(built, nobs_train=nobs_train, n_warm_rows=int(warm), shared_priors=ctx.root)


def _whole_map_network(ctx: RankContext, obs, background, nobs_train: int, model_cfg, cost_cfg, network):
    """Rank 0: a network over the whole map (the full cost's priors, the assembled outputs) with the
    shared parameters of this rank's ``network``; None elsewhere."""
    if not ctx.root:
        return None
    full = build_whole_map_network(model_cfg, cost_cfg, obs.basis, background, obs.nobs, nobs_train=nobs_train)
    with torch.no_grad():
        for dst, src in zip(full.dense_parameters(), network.dense_parameters(), strict=True):
            dst.copy_(src.detach().to(dst.device))
    return full


def _products_and_summary(
    products, full, obs, background, output, tag, preset_name, data_cfg, truth, history, result, summary, display, t_run
) -> None:
    """Rank 0: the user products of the run from the assembled network, then ``summary_TAG.txt`` and
    ``summary_TAG.json``, as a single-process run writes them."""
    if products is not None:
        from empirical_seaice.products.write import write_products

        display.stage("products")
        files, lines = write_products(
            products,
            network=full,
            obs=obs,
            background=background,
            output=output,
            tag=tag,
            preset_name=preset_name,
            data_cfg=data_cfg,
            truth=truth,
            history=history,
            report=summary,
            report_text=result.summary,
            progress=display,
        )
        result.files += files
        if lines and result.summary:
            lines = [ln.replace(str(output), str(result.output)) for ln in lines]
            result.summary = "\n".join([result.summary, *(f"  {ln}" for ln in lines)])
    if summary is not None:
        from empirical_seaice.products.report import write_summary_files

        summary["run"]["wall_seconds"] = round(time.perf_counter() - t_run, 2)
        result.summary_data = summary
        result.files += write_summary_files(output, tag, result.summary, summary)


def find_rank_checkpoints(ckpt_dir: Path) -> list[Path]:
    """The ranks' checkpoints in ``ckpt_dir`` that ``--resume`` carries on from (any number of ranks; their
    ``partition.pt`` beside them), or the one-line error that there are none, naming a single process's
    ``checkpoint.pt`` where that is what the directory holds."""
    found = sorted(ckpt_dir.glob(RANK_CHECKPOINTS))
    if found and (ckpt_dir / PARTITION_NAME).is_file():
        return found
    if other_mode_checkpoints(ckpt_dir, sharded=True):
        raise SeaIceError(
            f"--resume: the checkpoint in {ckpt_dir} is a single process's ({CHECKPOINT_NAME}): resume it without "
            "--distributed, or train without --resume"
        )
    raise SeaIceError(f"--resume: no sharded checkpoints in {ckpt_dir}; train without --resume first")


def _start_checkpoints(ckpt_dir: Path, partition) -> None:
    """Rank 0, training from the start: the ranks' checkpoints of an earlier run of this tag (of any number of
    ranks) and a single process's ``checkpoint.pt`` removed, which a later ``--resume`` would otherwise take;
    then this run's partition saved."""
    for stale in [*ckpt_dir.glob(RANK_CHECKPOINTS), *other_mode_checkpoints(ckpt_dir, sharded=True)]:
        stale.unlink(missing_ok=True)
    partition.save(ckpt_dir / PARTITION_NAME)


def check_rank_checkpoints(ckpt_dir: Path, identity: dict[str, Any]) -> None:
    """Refuse ``--resume`` from ranks' checkpoints written for other data, model, period or training options
    (:func:`~empirical_seaice.training.checkpoint.check_identity`), before any is read whole or re-cut for
    another number of ranks (on rank 0, which reads every rank's file, inside :func:`from_root`: one line)."""
    for path in find_rank_checkpoints(ckpt_dir):
        check_identity(path, checkpoint_identity(path), identity)


def run_sharded_set(ctx, argv, plan, shard_order: str):
    """:func:`run_sharded` for the CLI's run plan (:class:`~empirical_seaice.run.plan.RunPlan`). Rank 0
    holds the output set (lock, staging directory, publication) as a single-process run does; every
    rank leaves the process group."""
    run_set = cache = None
    plan.sharded = True
    try:
        if plan.resume:  # before the data are read (rank 0 looks, every rank stops with its line)
            from_root(ctx, functools.partial(find_rank_checkpoints, plan.ckpt_dir))
        made: list[Any] = []

        def begin() -> None:  # rank 0's output set: its lock taken (another run's refused) and staging begun
            made.append(txn.OutputSet(plan.output, plan.tag, argv=argv))
            made.append(CacheGuard(plan.output / "cache"))
            plan.stage = made[0].begin()

        try:  # inside from_root: a refusal stops every rank with its line (a lost peer's traceback before)
            # what an interrupted run or a copied directory left, for the summary
            with warnings_said(before=plan.said) as plan.said:
                from_root(ctx, begin)
        finally:
            run_set, cache = (made + [None, None])[:2]
        return run_sharded(ctx, plan, shard_order, run_set=run_set)
    except BaseException as exc:
        if run_set is not None:
            run_set.abort()
            if not run_set.published and cache is not None:
                cache.cleanup(plan.output)
        # the advice to --resume where training ended and nothing was published (rank 0's outcome on every rank)
        if (
            isinstance(exc, RunInterrupted)
            and plan.trained
            and not exc.published
            and not (run_set and run_set.published)
        ):
            from empirical_seaice.run.train import _resume_hint

            said = RunInterrupted(f"{exc}; {_resume_hint(plan)}", exit_code=exc.exit_code)
            said.relayed = exc.relayed
            raise said from None
        raise
    finally:
        if run_set is not None:
            run_set.release()
        tdist.destroy_process_group()


__all__ = ["run_sharded", "run_sharded_set"]
