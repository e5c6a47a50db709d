"""The state of the held-out observations, fitted after an early-stopped training.

With ``--validation-fraction`` the held-out observations never enter the
training: the state rows that only they read keep their initial values —
the observation-space state ``Q`` of every held-out observation (zero), and
the SIC and grid state of the grid points and days seen only by held-out
observations (the background and zero). Their outputs would then be the
untrained model's: on a small data set a tenth of the observed cells, whose
emissivities (v1: the linear model at ``P = 0``; v2: at ``Q = 0``) can sit
far from the trained ones, under the v2 anchor floor or above 1.

:func:`fit_held_out_state` fits exactly those rows once the kept epoch is
restored: the emissivity model, wind correction and biases fixed (the
retrieval's :class:`~empirical_seaice.run.retrieve.FrozenModel`), the same
cost over the held-out observations only, and afterwards every row that a
training observation reads is put back, so the trained cells and the
network are the kept epoch's to the bit; only the held-out observations' own
rows change.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from empirical_seaice.config import CostConfig, ModelConfig, TrainingConfig
from empirical_seaice.cost.sampling import RowCounts, build_row_counts
from empirical_seaice.model.operator import HybridNetwork
from empirical_seaice.model.tensors import ObservationTensors
from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.run.factory import Built, build_network, build_trainer, normalise_as_whole_run
from empirical_seaice.run.retrieve import FrozenModel
from empirical_seaice.training.distributed import ShardPlan
from empirical_seaice.training.runtime import make_generator

log = logging.getLogger(__name__)

_COPY_ROWS = 1 << 18
"""Observations per range when the held-out observations are copied out of the cache."""


def held_out_only_rows(
    obs: Observations,
    nlag: int,
    train_index: np.ndarray,
    valid_index: np.ndarray,
    train_read: tuple[np.ndarray, np.ndarray] | None = None,
    valid: RowCounts | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the SIC-map rows and grid-property rows that held-out observations read and no
    training observation does. ``train_read``: the rows the training observations read, as the training's
    build gave them (:attr:`~empirical_seaice.run.factory.Built.rows_read`); ``valid``: the held-out
    observations' row counts; None = count them here."""
    if valid is None:
        valid = build_row_counts(obs, nlag, obs.ngrid, obs.nstep, index=valid_index)
    if train_read is None:
        train = build_row_counts(obs, nlag, obs.ngrid, obs.nstep, index=train_index)
        sic_read, grid_read = train.sic > 0, train.grid > 0
    else:
        sizes = (valid.sic.size, valid.grid.size)
        sic_read, grid_read = (np.unpackbits(b, count=n).view(bool) for b, n in zip(train_read, sizes, strict=True))
    return ~sic_read & (valid.sic > 0), ~grid_read & (valid.grid > 0)


def fit_held_out_state(
    network: HybridNetwork,
    obs: Observations,
    background: BackgroundMaps,
    model: ModelConfig,
    cost: CostConfig,
    training: TrainingConfig,
    train_index: np.ndarray,
    valid_index: np.ndarray,
    nepochs: int,
    data: ObservationTensors | None = None,
    train_read: tuple[np.ndarray, np.ndarray] | None = None,
    beside: Callable[[], bool] | None = None,
) -> dict[str, np.ndarray]:
    """Fit the state rows read only by the held-out observations of ``network`` (over every observation
    of ``obs``); returns the rows it set, per table (``"sic"``, ``"grid"``, ``"obs"``).

    ``nepochs`` passes over the held-out observations with the training's batch size and step
    (``training`` resolved), the ``deferred-adam`` scheme, the sampled whole-map priors counted
    over the held-out observations and a generator of its own (seeded with the training seed, so
    a sharded run fits the same: :func:`fit_held_out_shard`). The network's dense parameters and every
    row a training observation reads are unchanged on return. ``data``: the observation tensors of the
    whole ``obs`` to read (shared, read only); None = pack the held-out observations alone (a tenth of
    the table at the default fraction: the run frees the training's table before the fit). Both give
    the same fit to the bit: the batches are the same observations in the same order. ``train_read``:
    the rows the training observations read (the training's :attr:`Built.rows_read
    <empirical_seaice.run.factory.Built.rows_read>`); None = count the training observations again.
    The held-out observations are counted once, for the rows only they read and the fit's priors.
    ``beside``: whether another thread of the run is computing beside the fit (the final pass's
    ``tbobs``, :class:`~empirical_seaice.run.streamed.AheadOfFinalPass`); while it says so, the fit's
    steps take one thread fewer (at least one; ``Trainer.step_threads``: the same fit).
    """
    device = next(network.parameters()).device
    # which rows only the held-out observations read: counted before the refit's network and slab exist
    valid = build_row_counts(obs, model.nlag, obs.ngrid, obs.nstep, index=valid_index)
    only = held_out_only_rows(obs, model.nlag, train_index, valid_index, train_read, valid)
    own_table = data is None  # the table's rows are the held-out observations, in order
    if own_table:
        data = _held_out_tensors(obs, np.sort(valid_index), device)
    assert data is not None
    return _fit(
        network,
        obs,
        background,
        model,
        cost,
        training,
        nepochs,
        data=data,
        counts=valid,
        only=only,
        obs_rows=np.asarray(valid_index),
        # own table (valid_index sorted): the rows of valid_index, in its order (the same batches)
        order=table_order(valid_index) if own_table else valid_index,
        generator=make_generator(training.seed),
        step_threads=None if beside is None else functools.partial(_threads_beside, beside, torch.get_num_threads()),
    )


def fit_held_out_shard(
    network: HybridNetwork,
    held: Observations,
    rows: np.ndarray,
    background: BackgroundMaps,
    model: ModelConfig,
    cost: CostConfig,
    training: TrainingConfig,
    nepochs: int,
    *,
    train_read: tuple[np.ndarray, np.ndarray],
    sharding: ShardPlan,
    order: np.ndarray,
    generator: torch.Generator,
    nvalid: int,
    shared_priors: bool,
    stop: Callable[[], str | None] | None = None,
) -> dict[str, np.ndarray]:
    """A rank's share of a sharded run's held-out fit (:func:`fit_held_out_state` on every rank at once, each
    over its own rows; :func:`empirical_seaice.run.sharded.fit_held_out_sharded`): returns the rows it set
    in ``network``, the rank's network over its shard, per table.

    ``held``: the rank's held-out observations (its grid points' local numbering, as its network's), which
    are the rows ``rows`` (ascending) of its network's observation table; ``background``: its grid points';
    ``train_read``: the rows the rank's training observations read (its build's :attr:`Built.rows_read
    <empirical_seaice.run.factory.Built.rows_read>`). ``sharding``: the batches
    (:class:`~empirical_seaice.training.distributed.ShardPlan`: its ``global_to_local`` from the run's table of
    held-out observations to ``held``'s rows, or each rank's own with ``ntrain_local``); ``order``: the
    trainer's order of that table (the single process's: ``valid_index`` as positions in it); ``generator``:
    the batches' (the training seed's, as a single process's; a rank's own over its own table); ``nvalid``:
    the run's held-out observations (``J_b / nobs``); ``shared_priors``: whether this rank counts the priors on
    the shared parameters (one rank). The model is fixed, so the ranks share nothing but each step's global
    batch size and each epoch's cost: with the single process's batches every rank's rows are fitted as a
    single process fits them, to the bit. ``stop``: the run's requested stop (a signal), which the ranks agree
    on after every :data:`~empirical_seaice.training.trainer.FROZEN_STOP_STEPS`-th step: every rank raises the
    same :class:`~empirical_seaice.errors.RunInterrupted` there, ``network`` unchanged.
    """
    device = next(network.parameters()).device
    valid = build_row_counts(held, model.nlag, held.ngrid, held.nstep)
    only = held_out_only_rows(held, model.nlag, np.zeros(0, np.int64), np.zeros(0, np.int64), train_read, valid)
    data = ObservationTensors(held, device)
    data.obs_rows = torch.as_tensor(rows, dtype=torch.long, device=data.device)
    warm = sharding.all_sum(torch.tensor([valid.n_warm_rows], dtype=torch.int64, device=sharding.device))

    def as_whole_run(built: Built) -> Built:
        return normalise_as_whole_run(built, nobs_train=nvalid, n_warm_rows=int(warm), shared_priors=shared_priors)

    return _fit(
        network,
        held,
        background,
        model,
        cost,
        training,
        nepochs,
        data=data,
        counts=valid,
        only=only,
        obs_rows=rows,
        order=order,
        generator=generator,
        normalise=as_whole_run,
        sharding=sharding,
        stop=stop,
    )


def _fit(
    network: HybridNetwork,
    obs: Observations,
    background: BackgroundMaps,
    model: ModelConfig,
    cost: CostConfig,
    training: TrainingConfig,
    nepochs: int,
    *,
    data: ObservationTensors,
    counts: RowCounts,
    only: tuple[np.ndarray, np.ndarray],
    obs_rows: np.ndarray,
    order: np.ndarray,
    generator: torch.Generator,
    normalise: Callable[[Built], Built] | None = None,
    sharding: ShardPlan | None = None,
    step_threads: Callable[[], int] | None = None,
    stop: Callable[[], str | None] | None = None,
) -> dict[str, np.ndarray]:
    """The held-out fit of :func:`fit_held_out_state` and :func:`fit_held_out_shard`: the refit network over
    ``obs`` (its observation table as ``network``'s, which its state is loaded from) reading ``data``, its priors
    counted over the held-out observations (``counts``) and normalised by ``normalise``; ``nepochs`` passes
    in the order ``order`` of ``data``'s rows; then the rows ``only`` (SIC map, grid properties) and
    ``obs_rows`` (observation properties) copied into ``network``; a ``stop`` (:class:`Trainer
    <empirical_seaice.training.trainer.Trainer>`'s) raises before they are, ``network`` unchanged."""
    device = next(network.parameters()).device
    sic_only, grid_only = only
    refit = build_network(
        obs,
        background,
        model,
        replace(cost, sic_smoothness_error=None, sic_smoothness_time_error=None),  # a whole-map prior
        optimizer="deferred-adam",
        generator=make_generator(training.seed),
        device=device,
        prior_mode="sampled",
        data=data,
        row_counts=counts,
        nobs=network.nobs,
    )
    del counts  # the network keeps the weights it needs: not under the fit
    if normalise is not None:
        refit = normalise(refit)
    refit.network.load_state_dict(network.state_dict())
    cfg = replace(
        training,
        nepochs=int(nepochs),
        optimizer="deferred-adam",
        map_priors="sampled",
        validation_fraction=0.0,
        early_stopping=False,
        batch_order="shuffled",
    )
    trainer = build_trainer(
        FrozenModel(refit.network),
        refit,
        cfg,
        train_index=order,
        generator=generator,
        progress=False,
        sharding=sharding,
        step_threads=step_threads,
        stop=stop,
        fit_name="the held-out fit",
    )
    trainer.fit()
    del trainer  # its optimiser slab, before the rows are copied back
    own, new = network.state, refit.network.state
    changed: dict[str, np.ndarray] = {}
    with torch.no_grad():
        pairs = [("sic", own.sic_map, new.sic_map, np.flatnonzero(sic_only))]
        if own.props_grid is not None and new.props_grid is not None:
            pairs.append(("grid", own.props_grid, new.props_grid, np.flatnonzero(grid_only)))
        if own.props_obs is not None and new.props_obs is not None:
            held = np.zeros(own.props_obs.weight.shape[0], dtype=bool)  # (a mask: no sort, no hash table)
            held[obs_rows] = True
            pairs.append(("obs", own.props_obs, new.props_obs, np.flatnonzero(held)))
        for name, dst, src, take in pairs:
            at = torch.from_numpy(take).to(device)
            dst.weight.index_copy_(0, at, src.weight.index_select(0, at).to(dst.weight.dtype))
            changed[name] = take
    log.info(
        "held-out state: %d epochs over %d held-out observations; rows fitted: %s",
        nepochs,
        len(obs_rows),
        ", ".join(f"{k} {v.size}" for k, v in changed.items()),
    )
    return changed


def _held_out_tensors(obs: Observations, rows: np.ndarray, device) -> ObservationTensors:
    """The observations ``rows`` (increasing) packed alone: table row ``k`` is observation ``rows[k]``
    (its ``iobs``). Copied range by range of the (memory-mapped) observations, whose pages are
    dropped after each range: a copy in the order of a random ``valid_index`` would touch every page
    of the cache at once."""
    if rows.size > 1 and not bool(np.all(np.diff(rows) > 0)):  # distinct: each its own property row
        raise ValueError("_held_out_tensors: the rows must be increasing")
    fields: dict[str, Any] = {
        name: np.empty((rows.size, *arr.shape[1:]), arr.dtype) for name, arr in obs.arrays().items()
    }
    for r0 in range(0, obs.nobs, _COPY_ROWS):
        lo, hi = np.searchsorted(rows, [r0, r0 + _COPY_ROWS])
        for name, arr in obs.arrays().items():
            fields[name][lo:hi] = arr[rows[lo:hi]]
        obs.release(slice(r0, r0 + _COPY_ROWS))
    data = ObservationTensors(replace(obs, **fields), device)
    data.obs_rows = torch.as_tensor(rows, dtype=torch.long, device=data.device)
    return data


def table_order(index: np.ndarray) -> np.ndarray:
    """The rows of the observations ``index`` (distinct) in their table sorted by observation number, in
    ``index``'s order: the trainer's order of a held-out fit's own table, which draws the batches a table
    in ``index``'s order would give."""
    return np.argsort(np.argsort(index, kind="stable"), kind="stable")


def _threads_beside(beside: Callable[[], bool], threads: int) -> int:
    """The fit's step threads: ``threads``, one fewer (at least one) while ``beside()``."""
    return max(1, threads - 1) if beside() else threads


def held_out_epochs(history, early_stopping: bool) -> int:
    """The passes of the held-out fit: as many as the kept model trained (the best epoch with early
    stopping, else every epoch run)."""
    if early_stopping and history.best_epoch is not None:
        return int(history.best_epoch) + 1
    return int(history.nepochs)


__all__ = ["fit_held_out_shard", "fit_held_out_state", "held_out_epochs", "held_out_only_rows", "table_order"]
