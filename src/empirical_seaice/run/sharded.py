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
   points and observations: its state tables hold only its rows, the whole-map
   priors act on them only, and the normalisations (``nobs``, warm-ice rows,
   the global batch) are the global ones.
5. **Train** with :class:`~empirical_seaice.training.trainer.Trainer` and a
   :class:`~empirical_seaice.training.distributed.ShardPlan`; checkpoints are
   one file per rank (its state rows and their Adam moments, the shared
   parameters and their Adam state, the books, the generator) plus the
   partition.
6. **Assemble**: rank 0 gathers every rank's state rows into a whole-map
   network and writes the same files as a single-process run (``model_TAG.pt``
   also holds the partition). The simulations for the diagnostics
   (``tbsim_initial``, ``tbsim``, ``tbzero``, ``ice_emis``) are computed by
   every rank on its shard and gathered, in observation order, on rank 0.

Memory: a rank holds its shard (observations, state rows and their Adam
moments); rank 0 also the whole state once for the outputs, and every rank
one int64 per observation of the run for the global batch order.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import outputs as out
from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.products import diagnostics as diag
from empirical_seaice.run.finish import final_diagnostics, run_summary, summary_table, write_state_files
from empirical_seaice.run.model_file import before_state, configs_to_dict, write_trained
from empirical_seaice.run.partition import PARTITION_NAME, Partition, Shard, partition_grid
from empirical_seaice.training import distributed as tdist

log = logging.getLogger(__name__)

_SAMPLE = 4096  # evenly spaced observations whose values enter the data digest


@dataclass
class RankContext:
    """This process in the sharded run: launch environment, device, rank, world size."""

    env: tdist.LaunchEnvironment
    device: torch.device

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def world_size(self) -> int:
        return self.env.world_size

    @property
    def root(self) -> bool:
        return self.env.rank == 0


# ------------------------------------------------------------------ agreement
def code_digest() -> bytes:
    """Digest of the package's source files, the package and torch versions (the 'code version')."""
    import empirical_seaice

    root = Path(empirical_seaice.__file__).parent
    h = []
    for path in sorted(root.rglob("*.py")):
        h.append((str(path.relative_to(root)), tdist.digest(path.read_bytes())))
    version = getattr(empirical_seaice, "__version__", "")
    return tdist.digest(version, torch.__version__, h)


def data_digest(obs: Observations, background: BackgroundMaps) -> bytes:
    """Digest of the data's shape, period, channels and values at evenly spaced observations."""
    pick = np.linspace(0, max(obs.nobs - 1, 0), min(obs.nobs, _SAMPLE)).astype(np.int64)
    values = [np.asarray(getattr(obs, name))[pick].tobytes() for name in ("igrid", "istep", "tb_obs_k", "julian_day")]
    gpick = np.linspace(0, background.ngrid - 1, min(background.ngrid, _SAMPLE)).astype(np.int64)
    return tdist.digest(
        obs.nobs,
        obs.ngrid,
        obs.nstep,
        obs.jd_origin,
        obs.stepstart,
        tuple(obs.basis.channel_names),
        tuple(obs.basis.sensor_names),
        values,
        np.asarray(background.sic)[gpick].tobytes(),
    )


# ------------------------------------------------------------------ collectives over numpy rows
def gather_rows(ctx: RankContext, rows: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Gather ``(rows, values)`` of every rank on rank 0 (concatenated in rank order); None elsewhere.

    ``rows`` int64 (n,), ``values`` float32 (n, k); ``n`` may differ between ranks
    (padded to the largest for the collective).
    """
    values = np.ascontiguousarray(values, dtype=np.float32).reshape(len(rows), -1)
    n = torch.tensor([len(rows)], dtype=torch.int64, device=ctx.device)
    sizes = [torch.zeros_like(n) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, n)
    counts = [int(s) for s in sizes]
    nmax = max(counts)
    r = torch.full((nmax,), -1, dtype=torch.int64, device=ctx.device)
    r[: len(rows)] = torch.from_numpy(np.asarray(rows, dtype=np.int64))
    v = torch.zeros((nmax, values.shape[1]), dtype=torch.float32, device=ctx.device)
    v[: len(rows)] = torch.from_numpy(values)
    r_all = [torch.empty_like(r) for _ in range(ctx.world_size)] if ctx.root else None
    v_all = [torch.empty_like(v) for _ in range(ctx.world_size)] if ctx.root else None
    dist.gather(r, r_all, dst=0)
    dist.gather(v, v_all, dst=0)
    if not ctx.root:
        return None
    assert r_all is not None and v_all is not None
    rows_out = np.concatenate([t[:c].cpu().numpy() for t, c in zip(r_all, counts, strict=True)])
    values_out = np.concatenate([t[:c].cpu().numpy() for t, c in zip(v_all, counts, strict=True)])
    return rows_out, values_out


def simulate_sharded(
    ctx: RankContext, network, data, shard: Shard, *, zero_sic: bool = False
) -> diag.Simulation | None:
    """Every rank simulates its observations; rank 0 gets the whole run's
    :class:`~empirical_seaice.products.diagnostics.Simulation` in global observation order (None elsewhere)."""
    sim = diag.simulate(network, data, len(shard.obs), zero_sic=zero_sic)
    names = [f.name for f in dataclasses.fields(sim) if getattr(sim, f.name) is not None]
    parts = [np.asarray(getattr(sim, n), dtype=np.float32).reshape(len(shard.obs), -1) for n in names]
    got = gather_rows(ctx, shard.obs, np.concatenate(parts, axis=1))
    if got is None:
        return None
    rows, values = got
    full = np.empty((shard.nobs, values.shape[1]), dtype=np.float32)
    full[rows] = values
    fields, col = {}, 0
    for name, part in zip(names, parts, strict=True):
        block = full[:, col : col + part.shape[1]]
        fields[name] = np.ascontiguousarray(block if getattr(sim, name).ndim == 2 else block[:, 0])
        col += part.shape[1]
    return diag.Simulation(**fields)


@torch.no_grad()
def assemble_state(ctx: RankContext, local, shard: Shard, full) -> None:
    """Copy every rank's state rows into rank 0's whole-map network ``full`` (None on other ranks),
    and the shared parameters of rank 0's ``local`` network into it."""
    st = local.state
    tables = [(st.sic_map, shard.table_rows(st.ncol))]
    if st.props_grid is not None:
        tables.append((st.props_grid, shard.table_rows(st.nstep)))
    if st.props_obs is not None:
        tables.append((st.props_obs, shard.obs))
    targets = []
    if full is not None:
        fs = full.state
        targets = [fs.sic_map, *([fs.props_grid] if fs.props_grid is not None else [])]
        targets += [fs.props_obs] if fs.props_obs is not None else []
    for k, (table, rows) in enumerate(tables):
        got = gather_rows(ctx, rows, table.weight.detach().float().cpu().numpy())
        if got is not None:
            w = targets[k].weight
            idx = torch.from_numpy(got[0]).to(w.device)
            w.index_copy_(0, idx, torch.from_numpy(got[1]).to(w))
    if full is not None:
        for dst, src in zip(full.dense_parameters(), local.dense_parameters(), strict=True):
            dst.copy_(src.detach())


def fit_held_out_sharded(
    ctx: RankContext, full, local, shard: Shard, obs: Observations, background, local_valid, cfg, history
) -> None:
    """The single process's held-out fit (:mod:`empirical_seaice.run.held_out`) on rank 0's assembled
    whole-map network ``full``, its rows then copied into every rank's own tables (``local``).
    ``local_valid``: the rank's held-out observations (local rows; None without a hold-out)."""
    from empirical_seaice.run.held_out import fit_held_out_state, held_out_epochs

    if local_valid is None or history.nepochs == 0:
        return
    parts: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(parts, shard.obs[np.asarray(local_valid, dtype=np.int64)])
    valid = np.sort(np.concatenate(parts))

    def fit() -> dict[str, tuple[np.ndarray, np.ndarray]]:
        train = np.setdiff1d(np.arange(obs.nobs, dtype=np.int64), valid)
        epochs = held_out_epochs(history, cfg.early_stopping)
        rows = fit_held_out_state(full, obs, background, full.model_config, full.cost_config, cfg, train, valid, epochs)
        tables = {"sic": full.state.sic_map, "grid": full.state.props_grid, "obs": full.state.props_obs}
        return {k: (r, tables[k].weight.detach().cpu().numpy()[r]) for k, r in rows.items()}

    fitted = from_root(ctx, fit)
    st = local.state
    tables = {
        "sic": (st.sic_map, shard.table_rows(st.ncol), shard.ngrid * st.ncol),
        "grid": (st.props_grid, shard.table_rows(st.nstep), shard.ngrid * st.nstep),
        "obs": (st.props_obs, shard.obs, shard.nobs),
    }
    with torch.no_grad():
        for name, (rows, values) in fitted.items():
            table, mine, nglobal = tables[name]
            to_local = np.full(nglobal, -1, dtype=np.int64)
            to_local[mine] = np.arange(mine.size)
            loc = to_local[rows]
            keep = loc >= 0
            w = table.weight
            w.index_copy_(0, torch.from_numpy(loc[keep]).to(w.device), torch.from_numpy(values[keep]).to(w))


# ------------------------------------------------------------------ partition
def from_root(ctx: RankContext, make):
    """``make()`` on rank 0, its result broadcast to every rank (``broadcast_object_list``); a
    :class:`SeaIceError` on rank 0 is raised on every rank, so that all stop with its one line."""
    box: list[Any] = [None]
    if ctx.root:
        try:
            box[0] = ("ok", make())
        except SeaIceError as exc:
            box[0] = ("error", str(exc))
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise SeaIceError(value)
    return value


def load_or_make_partition(
    ctx: RankContext, obs: Observations, ckpt_dir: Path, resume: bool, nlag: int, optimizer: str
) -> Partition:
    """Rank 0 makes the partition (or reloads it with ``--resume``) and saves it in the checkpoint
    directory; every rank receives it. A resume with another number of ranks re-cuts the per-rank
    checkpoints for a new partition first (:mod:`empirical_seaice.run.reshard`)."""
    path = ckpt_dir / PARTITION_NAME

    def make() -> tuple[dict, dict | None]:
        if resume and path.is_file():
            old = Partition.load(path)
            if old.owner.size != obs.ngrid:
                raise SeaIceError(f"--resume: the partition {path} is for another grid; train without --resume")
            if old.world_size == ctx.world_size:
                return old.to_state(), None
            if optimizer != "deferred-adam":
                raise SeaIceError(
                    f"--resume: the checkpoints were written by {old.world_size} ranks; only --optimizer deferred-adam "
                    f"resumes on another number of ranks (launch {old.world_size} processes)"
                )
            new = partition_grid(np.bincount(np.asarray(obs.igrid), minlength=obs.ngrid), ctx.world_size)
            return new.to_state(), old.to_state()
        new = partition_grid(np.bincount(np.asarray(obs.igrid), minlength=obs.ngrid), ctx.world_size)
        new.save(path)
        return new.to_state(), None

    new_state, old_state = from_root(ctx, make)
    part = Partition.from_state(new_state)
    if old_state is not None:
        _reshard(ctx, obs, ckpt_dir, Partition.from_state(old_state), part, nlag)
    if ctx.root:
        log.info("partition: %s observations per rank (imbalance %.4f)", part.nobs.tolist(), part.imbalance)
    return part


def _reshard(ctx: RankContext, obs: Observations, ckpt_dir: Path, old: Partition, new: Partition, nlag: int) -> None:
    """Every rank writes its checkpoint for the new partition from all the old ranks' checkpoints; then
    rank 0 saves the new partition and removes the old files."""
    from empirical_seaice.run.reshard import reshard_checkpoint

    def name(rank: int, world: int) -> Path:
        return ckpt_dir / f"checkpoint-rank{rank:05d}-of-{world:05d}.pt"

    olds = []
    for k in range(old.world_size):
        try:
            olds.append(torch.load(name(k, old.world_size), map_location="cpu", weights_only=True))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a user problem
            raise SeaIceError(f"--resume: cannot read {name(k, old.world_size)}: {exc}") from None
    igrid = np.asarray(obs.igrid)
    shards = [Shard.of_rank(old, igrid, k) for k in range(old.world_size)]
    mine = reshard_checkpoint(olds, shards, Shard.of_rank(new, igrid, ctx.rank), obs.nstep + nlag, obs.nstep)
    del olds
    target = name(ctx.rank, ctx.world_size)
    tmp = target.with_name(target.name + ".tmp")
    torch.save(mine, tmp)
    tmp.replace(target)
    dist.barrier()
    if ctx.root:
        new.save(ckpt_dir / PARTITION_NAME)
        for k in range(old.world_size):
            name(k, old.world_size).unlink(missing_ok=True)
        log.info("resume: checkpoints of %d ranks re-cut for %d", old.world_size, ctx.world_size)
    dist.barrier()


def read_once(ctx: RankContext, data_cfg, nlag: int, cache_dir: Path) -> tuple[Observations, BackgroundMaps]:
    """Rank 0 reads the data and writes the cache; the others wait, then open the cache.
    A reading error on rank 0 stops every rank with its message."""
    from empirical_seaice.io import read_training_data

    def write_cache() -> None:
        read_training_data(data_cfg, nlag, cache_dir=cache_dir)

    from_root(ctx, write_cache)
    return read_training_data(data_cfg, nlag, cache_dir=cache_dir)


# ------------------------------------------------------------------ the run
def run_sharded(
    ctx: RankContext,
    data_cfg,
    model_cfg,
    cost_cfg,
    train_cfg,
    output: Path,
    tag: str,
    preset_name: str,
    basis,
    ckpt_dir: Path,
    trainonly: bool,
    resume: bool,
    progress: bool,
    products: Any = None,
    order: str = "global",
    run_set: Any = None,
    stage: Path | None = None,
):
    """The sharded training run of this rank (see the module docstring); returns the
    :class:`~empirical_seaice.run.train.RunResult` (complete on rank 0; on the other ranks
    without files, diagnostics or summary)."""
    from empirical_seaice.run import train as single
    from empirical_seaice.training.runtime import make_generator, split_observations
    from empirical_seaice.training.trainer import Trainer

    if train_cfg.optimizer == "dense-adam" or train_cfg.prior_mode == "full":
        raise SeaIceError(
            "--distributed: not with --optimizer dense-adam or --map-priors full (they step every row of the "
            "whole map, the --exact-reference scheme); use deferred-adam with sampled priors"
        )
    if train_cfg.batch_order != "shuffled":
        raise SeaIceError(f"--batch-order {train_cfg.batch_order}: not with --distributed; use shuffled")
    from empirical_seaice.training.runtime import RunProgress

    result = single.RunResult(output=output, tag=tag)
    stage = output if stage is None else stage  # written by rank 0 only, which has the staging directory
    t_run = time.perf_counter()
    display = RunProgress(progress and ctx.root)  # one display, rank 0's
    display.stage("reading data")
    obs, background = read_once(ctx, data_cfg, model_cfg.nlag, output / "cache")
    train_cfg = train_cfg.resolved(obs.nobs)  # the automatic batch size and learning rate, as a single process
    configs = configs_to_dict(data_cfg, model_cfg, cost_cfg, train_cfg, preset_name)
    tdist.check_agreement(
        {
            "data": data_digest(obs, background),
            "configuration": tdist.digest(
                json.dumps(configs, sort_keys=True), tag, trainonly, resume, order, repr(products)
            ),
            "code version": code_digest(),
        },
        ctx.device,
    )
    partition = load_or_make_partition(ctx, obs, ckpt_dir, resume, model_cfg.nlag, train_cfg.optimizer)
    shard = Shard.of_rank(partition, obs.igrid, ctx.rank)
    generator = make_generator(train_cfg.seed)
    init_generator = generator  # the network's initial weights: the same draws on every rank
    if order == "global":  # the single-process run's split and batches
        train_index, valid_index = split_observations(obs.nobs, train_cfg.validation_fraction, generator)
        local_train, local_valid = shard.local_index(train_index), shard.local_index(valid_index)
        plan = tdist.ShardPlan(ctx.device, train_cfg.reproducible, global_to_local=shard.global_to_local_obs)
        nobs_train = int(train_index.size)
    else:  # each rank splits and shuffles its own observations with its own generator
        generator = make_generator(train_cfg.seed * 1_000_003 + ctx.rank + 1)
        local_train, local_valid = split_observations(len(shard.obs), train_cfg.validation_fraction, generator)
        train_index = local_train
        plan = tdist.ShardPlan(ctx.device, train_cfg.reproducible, ntrain_local=len(local_train))
        assert plan.ntrain is not None  # order "local": every rank's count
        nobs_train = int(plan.ntrain.sum())
    network, data = _rank_network(
        ctx, obs, background, shard, local_train, nobs_train, model_cfg, cost_cfg, basis, init_generator
    )
    full = _whole_map_network(ctx, obs, background, nobs_train, model_cfg, cost_cfg, basis, network)
    if not trainonly:
        display.stage("initial diagnostics")
        sim0 = simulate_sharded(ctx, network, data, shard)
        if ctx.root:
            assert sim0 is not None
            result.cost_before = diag.full_cost(full, obs, sim0, nobs_train)
            result.departures_before = diag.departure_stats(obs, sim0.tb)
            result.files.append(
                out.write_tb(out.output_path(stage, "tbsim_initial", tag), sim0.tb, basis, "tbsim_initial", obs.mask)
            )
        del sim0

    trainer = Trainer(
        network,
        data,
        train_cfg,
        train_index,
        local_valid,
        nobs_train,
        checkpoint_dir=ckpt_dir,
        progress=display,
        generator=generator,
        sharding=plan,
        checkpoint_minutes=0,  # epoch-end checkpoints only: a time-triggered one would differ between ranks
    )
    t1 = time.perf_counter()
    result.history = history = trainer.fit(resume=resume)
    result.train_seconds = time.perf_counter() - t1
    display.stage("saving the model")
    assemble_state(ctx, network, shard, full)
    fit_held_out_sharded(ctx, full, network, shard, obs, background, local_valid, train_cfg, history)
    if ctx.root:
        before = before_state(result)
        extra = {"partition": partition.to_state()}
        result.files += write_trained(stage, tag, configs, full, history, obs, nobs_train, before, model_cfg, extra)
        result.files += write_state_files(full, obs, background, stage, tag, data_cfg.steps_per_day)
    truth = summary = None
    if not trainonly:
        display.stage("diagnostics")
        sim = simulate_sharded(ctx, network, data, shard)
        zero = simulate_sharded(ctx, network, data, shard, zero_sic=True)
        if ctx.root:
            truth = _final_outputs(full, obs, background, data_cfg, stage, tag, nobs_train, result, sim, zero)
            result.summary = summary_table(result, preset_name, obs, history, False, train_cfg)
            summary = run_summary(result, preset_name, data_cfg, obs, history, False, time.perf_counter() - t_run)
    if ctx.root:
        _products_and_summary(
            products, full, obs, background, stage, tag, preset_name, data_cfg, truth, history, result, summary,
            display, t_run,
        )  # fmt: skip
        display.stage("publishing")
        result.manifest = run_set.publish(configs, status="complete")
        result.files = [
            output / Path(f).relative_to(stage) if Path(f).is_relative_to(stage) else f for f in result.files
        ]
    display.stage("done")
    display.close()
    dist.barrier()  # every rank returns once rank 0 has written the outputs
    return result


def _rank_network(
    ctx: RankContext, obs, background, shard: Shard, local_train, nobs_train: int, model_cfg, cost_cfg, basis, generator
):
    """This rank's network over its grid points and observations (state tables of its rows only; the
    sampled whole-map priors over its training rows) and its observations packed on its device."""
    from empirical_seaice.cost.sampling import build_row_counts
    from empirical_seaice.model.operator import HybridNetwork, ObservationTensors

    local_obs = shard.observations(obs)
    counts = build_row_counts(local_obs, model_cfg.nlag, local_obs.ngrid, local_obs.nstep, index=local_train)
    network = HybridNetwork(
        model_cfg,
        cost_cfg,
        basis,
        shard.background(background),
        local_obs.nobs,
        row_counts=counts,
        sparse=True,
        prior_mode="sampled",
        generator=generator,
    )
    # the run's global normalisations: nobs of J_b / nobs, the observed rows of the warm-ice mean
    network.counts_nobs = nobs_train
    warm = torch.tensor([counts.n_warm_rows], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(warm)
    network.n_warm_rows = max(int(warm), 1)
    network.shared_prior_share = 1.0 if ctx.root else 0.0  # the bias prior counted once
    return network.to(ctx.device), ObservationTensors(local_obs, ctx.device)


def _whole_map_network(ctx: RankContext, obs, background, nobs_train: int, model_cfg, cost_cfg, basis, network):
    """Rank 0: a network over the whole map (the full cost's priors, the assembled outputs); None elsewhere."""
    if not ctx.root:
        return None
    from empirical_seaice.model.operator import HybridNetwork

    full = HybridNetwork(model_cfg, cost_cfg, basis, background, obs.nobs, row_counts=None, prior_mode="full")
    full.counts_nobs = nobs_train  # the nobs of the full cost's J_b / nobs
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


def _final_outputs(full, obs, background, data_cfg, output, tag, nobs_train, result, sim, zero):
    """Rank 0: ``tbobs``, ``tbsim``, ``ice_emis``, ``tbzero``, the cost after and the truth scores."""
    truth = final_diagnostics(
        full, None, obs, background, Path(data_cfg.data), output, tag, nobs_train, result, sim=sim
    )
    result.files.append(out.write_tb(out.output_path(output, "tbzero", tag), zero.tb, obs.basis, "tbzero", obs.mask))
    return truth


__all__ = ["RankContext", "run_sharded", "simulate_sharded", "assemble_state", "gather_rows", "code_digest"]
