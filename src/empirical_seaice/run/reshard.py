"""Resume a sharded run with another number of ranks: the per-rank checkpoints re-cut for a new partition.

A rank's checkpoint holds the shared parameters with their Adam state, the
books and the generator (the same on every rank), and its own state rows:
the three tables of :class:`~empirical_seaice.model.state.EmpiricalState`,
which live in the slab of :class:`~empirical_seaice.training.deferred_adam.DeferredAdam`
as rows ``[w | m | v | last step | padding]``, one table after the other.
A state row carries everything Adam knows about it, and every rank's step
counter is the same, so re-sharding is moving slab rows: each table's rows of
every old rank are put at their global rows, and the new rank takes its own
(:func:`reshard_checkpoint`). The early-stopping copy of the best epoch's
state, when there is one, is moved the same way.

Memory: a rank assembles each whole table once while it re-cuts (the state
of the whole run, one table at a time); it happens once, at the resume.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from empirical_seaice.run.partition import Shard

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


def reshard_checkpoint(old: Sequence[dict], old_shards: Sequence[Shard], new_shard: Shard, ncol: int, nstep: int):
    """The trainer checkpoint of ``new_shard`` from the checkpoints ``old`` of the shards ``old_shards``.

    ``ncol`` = nstep + nlag (SIC-map columns), ``nstep`` the steps of the period.
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
    return ckpt


__all__ = ["TABLES", "reshard_checkpoint"]
