"""The partition of a sharded run across resumes: made once, reloaded, or re-cut for another number of ranks.

:func:`load_or_make_partition`: rank 0 makes the partition (or reloads it with ``--resume``)
and every rank receives it; a resume with another number of ranks first re-cuts the per-rank
checkpoints for a new partition (:func:`reshard_checkpoint`, written by every rank for itself).

A rank's checkpoint holds the shared parameters with their Adam state, the
books and the generator (the same on every rank), and its own state rows:
the three tables of :class:`~empirical_seaice.model.state.EmpiricalState`,
which live in the slab of :class:`~empirical_seaice.training.deferred_adam.DeferredAdam`
as rows ``[w | m | v | last step | padding]``, one table after the other.
A state row carries everything Adam knows about it, and every rank's step
counter is the same, so re-sharding is moving slab rows: each table's rows of
every old rank are put at their global rows, and the new rank takes its own
(:func:`reshard_checkpoint`). The early-stopping copy of the best epoch's
state, when there is one, is moved the same way, and so are the copies of each
region's best rows (:func:`recut_regions`: a global grid's hemispheres stopped
on their own).

Memory: a rank assembles each whole table once while it re-cuts (the state
of the whole run, one table at a time); it happens once, at the resume.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from empirical_seaice.errors import SeaIceError
from empirical_seaice.observations import Observations
from empirical_seaice.run.partition import PARTITION_NAME, Partition, Shard, partition_grid
from empirical_seaice.run.ranks import RankContext, from_root
from empirical_seaice.training.checkpoint import sealed, without_crc32

log = logging.getLogger(__name__)

TABLES = ("state.sic_map.weight", "state.props_grid.weight", "state.props_obs.weight")
"""The network's state tables, in the order of ``sparse_parameters()`` (absent ones skipped)."""


def _rows(shard: Shard, key: str, ncol: int, nstep: int) -> np.ndarray:
    """Global rows of the table ``key`` that ``shard`` owns, in its local row order."""
    if key == TABLES[0]:
        return shard.table_rows(ncol)
    if key == TABLES[1]:
        return shard.table_rows(nstep)
    return shard.obs


def _nglobal(shard: Shard, key: str, ncol: int, nstep: int) -> int:
    return shard.ngrid * (ncol if key == TABLES[0] else nstep) if key != TABLES[2] else shard.nobs


def _recut(parts: Sequence[torch.Tensor], old: Sequence[Shard], new: Shard, key: str, ncol: int, nstep: int):
    """The rows of ``new`` of one table, from every old shard's rows ``parts[k]`` (2-D, local order)."""
    width = parts[0].shape[1]
    whole = torch.zeros((_nglobal(new, key, ncol, nstep), width), dtype=parts[0].dtype)
    for part, shard in zip(parts, old, strict=True):
        whole[torch.from_numpy(_rows(shard, key, ncol, nstep))] = part
    return whole[torch.from_numpy(_rows(new, key, ncol, nstep))].contiguous()


def reshard_checkpoint(
    old: Sequence[dict], old_shards: Sequence[Shard], new_shard: Shard, ncol: int, nstep: int, *, books: bool
):
    """The trainer checkpoint of ``new_shard`` from the checkpoints ``old`` of the shards ``old_shards``.

    ``ncol`` = nstep + nlag (SIC-map columns), ``nstep`` the steps of the period. Written within an epoch
    (``position``: the run's permutation, the same on every rank, since only ``--shard-order global``
    resumes on another number of ranks), each rank's cost terms of the epoch's steps so far are its own
    share, summed over the ranks at the epoch's end: the new rank with ``books`` (rank 0) takes the old
    ranks' sum, the others zeros, so that the epoch's books add up to the same.
    """
    ckpt = copy.copy(old[0])  # the shared parameters, books, generator and epoch: the same on every rank
    network = dict(old[0]["network"])
    keys = [k for k in TABLES if k in network]
    opt = old[0]["optimizers"][0]
    widths = [network[k].shape[1] for k in keys]
    c = max(widths)
    pieces = []
    for i, key in enumerate(keys):
        parts = []
        for o in old:
            st = o["optimizers"][0]["state"][i]
            parts.append(st["slab"][st["offset"] : st["offset"] + o["network"][key].shape[0]])
        pieces.append(_recut(parts, old_shards, new_shard, key, ncol, nstep))
    slab = torch.cat(pieces)
    state, offset = {}, 0
    for i, (key, piece, n) in enumerate(zip(keys, pieces, widths, strict=True)):
        rows = slice(offset, offset + piece.shape[0])
        state[i] = {
            "step": opt["state"][i]["step"],
            "offset": offset,
            "slab": slab,
            "exp_avg": slab[rows, c : c + n],
            "exp_avg_sq": slab[rows, 2 * c : 2 * c + n],
            "last_step": slab[rows, 3 * c],
        }
        network[key] = slab[rows, :n]
        offset += piece.shape[0]
    ckpt["network"] = network
    ckpt["optimizers"] = [{"state": state, "param_groups": opt["param_groups"]}, *old[0]["optimizers"][1:]]
    if old[0].get("best_state") is not None:
        best = dict(old[0]["best_state"])
        for key in keys:
            best[key] = _recut([o["best_state"][key] for o in old], old_shards, new_shard, key, ncol, nstep)
        ckpt["best_state"] = best
    if old[0].get("position") is not None:
        values = torch.stack([o["position"]["values"] for o in old]).sum(dim=0)
        ckpt["position"] = {**old[0]["position"], "values": values if books else torch.zeros_like(values)}
    if old[0].get("regions") is not None:
        ckpt["regions"] = recut_regions([o["regions"] for o in old], old_shards, new_shard, keys, ncol, nstep)
    return ckpt


def recut_regions(old: Sequence[dict], old_shards: Sequence[Shard], new_shard: Shard, keys, ncol: int, nstep: int):
    """The state of each region's own early stop (:meth:`RegionStops.to_state
    <empirical_seaice.training.regions.RegionStops.to_state>`) for ``new_shard``, from the old shards':
    the copies of a region's rows at its best epoch (table by table, ``keys``), each old rank's at their
    global rows; the new rank takes the region's rows it owns, in its local order (ascending, as
    ``network.region_rows`` lists them). The costs and epochs are the same on every rank."""
    state = dict(old[0], saved={}, rows={})
    for name in old[0]["saved"]:
        saved, rows = [], []
        for i, key in enumerate(keys):
            width = old[0]["saved"][name][i].shape[1]
            whole = torch.zeros((_nglobal(new_shard, key, ncol, nstep), width), dtype=old[0]["saved"][name][i].dtype)
            member = torch.zeros(whole.shape[0], dtype=torch.bool)
            for o, shard in zip(old, old_shards, strict=True):
                at = torch.from_numpy(_rows(shard, key, ncol, nstep))[o["rows"][name][i]]
                whole[at] = o["saved"][name][i]
                member[at] = True
            mine = torch.from_numpy(_rows(new_shard, key, ncol, nstep))
            local = torch.nonzero(member[mine])[:, 0]
            saved.append(whole[mine[local]].contiguous())
            rows.append(local)
        state["saved"][name], state["rows"][name] = saved, rows
    return state


def load_or_make_partition(
    ctx: RankContext, obs: Observations, ckpt_dir: Path, resume: bool, nlag: int, optimizer: str
) -> Partition:
    """Rank 0 makes the partition (or reloads it with ``--resume``); every rank receives it. A resume with
    another number of ranks re-cuts the per-rank checkpoints for a new partition first
    (:mod:`empirical_seaice.run.reshard`) and saves it. A new partition is saved by the run once its flags
    have passed their checks (:func:`~empirical_seaice.run.sharded.run_sharded`: a run refused after this
    left its partition beside an earlier run's checkpoints, which no longer resumed)."""
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
    new_shard = Shard.of_rank(new, igrid, ctx.rank)
    mine = reshard_checkpoint(olds, shards, new_shard, obs.nstep + nlag, obs.nstep, books=ctx.root)
    del olds
    target = name(ctx.rank, ctx.world_size)
    tmp = target.with_name(target.name + ".tmp")
    with without_crc32():
        torch.save(sealed(mine), tmp)
    tmp.replace(target)
    dist.barrier()
    if ctx.root:
        new.save(ckpt_dir / PARTITION_NAME)
        for k in range(old.world_size):
            name(k, old.world_size).unlink(missing_ok=True)
        log.info("resume: checkpoints of %d ranks re-cut for %d", old.world_size, ctx.world_size)
    dist.barrier()


__all__ = ["load_or_make_partition", "TABLES", "reshard_checkpoint", "recut_regions"]
