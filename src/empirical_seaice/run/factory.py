"""One factory for what every run trains: operator + objective + trainer.

Training (:mod:`empirical_seaice.run.train`), retrieval
(:mod:`empirical_seaice.run.retrieve`) and the benchmarks build the hybrid
network, its observation tensors and its trainer here, so that they cannot
be wired differently (row counts of the sampled priors, sparse or dense state
gradients, prior mode, device, cost normalisation):

- :func:`build_network`: the row counts of the counted (training)
  observations, the :class:`~empirical_seaice.model.operator.HybridNetwork`
  (observation operator and per-step cost), the
  :class:`~empirical_seaice.model.tensors.ObservationTensors` on the device;
- :func:`build_trainer`: the :class:`~empirical_seaice.training.trainer.Trainer`
  over a network that fulfils the trainer's contract (the network itself, or
  the retrieval's frozen model), normalising ``J_b`` by the counted
  observations.

A run sharded over processes (:mod:`empirical_seaice.run.sharded`) builds each rank's
network over its shard with :func:`build_network` too, then normalises it as the whole run
(:func:`normalise_as_whole_run`); rank 0 also builds the network over the whole map that the
ranks' state rows are assembled into (:func:`build_whole_map_network`).

The optimiser scheme decides the rest: ``"dense-adam"`` (the reference's way) builds
dense state gradients and by default the exact whole-map priors at every step; ``"deferred-adam"``
and ``"sparse-adam"`` build sparse state gradients and the sampled priors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empirical_seaice.config import CostConfig, ModelConfig, TrainingConfig
from empirical_seaice.cost.sampling import RowCounts, build_row_counts
from empirical_seaice.model.operator import HybridNetwork
from empirical_seaice.model.tensors import ObservationTensors, channel_map
from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.sensors import ChannelBasis
from empirical_seaice.training.contract import TrainableNetwork
from empirical_seaice.training.distributed import ShardPlan
from empirical_seaice.training.regions import Region
from empirical_seaice.training.runtime import RunProgress
from empirical_seaice.training.trainer import CHECKPOINT_MINUTES, Trainer


@dataclass
class Built:
    """What :func:`build_network` returns.

    network : the hybrid network on the device.
    data : every observation packed on the device (None when built with ``pack=False``).
    nobs_train : the counted observations, the ``nobs`` of ``J_b / nobs``.
    n_warm_rows : the observed SIC rows with a temperature, of the counted observations (the
        warm-ice mean's; the row counts themselves, two float64 values per SIC row, live in the
        network as its sampled priors' weights and are not kept here).
    rows_read : the SIC-map rows and the grid-property rows that a counted observation reads, as
        bits (``numpy.packbits`` of ``count > 0``, 1 MB on the ``benchmark`` twin): what the held-out
        fit asks of the training observations (:func:`empirical_seaice.run.held_out.held_out_only_rows`)
        without counting them again.
    """

    network: HybridNetwork
    data: ObservationTensors | None
    nobs_train: int
    n_warm_rows: int
    rows_read: tuple[np.ndarray, np.ndarray] | None = None


def build_network(
    obs: Observations,
    background: BackgroundMaps,
    model: ModelConfig,
    cost: CostConfig,
    *,
    optimizer: str,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    counted: np.ndarray | None = None,
    prior_mode: str | None = None,
    data: ObservationTensors | None = None,
    pack: bool = True,
    row_counts: RowCounts | None = None,
    nobs: int | None = None,
) -> Built:
    """The hybrid network for ``obs``, its observation tensors and the cost normalisation.

    Parameters
    ----------
    obs, background : the data and its background maps.
    model, cost : the configuration of the network and of the cost.
    optimizer : ``TrainingConfig.optimizer`` (``"dense-adam"``: dense state gradients;
        otherwise sparse gradients; the old names are accepted).
    prior_mode : ``TrainingConfig.prior_mode`` (``"full"``: the exact whole-map priors at every
        step; ``"sampled"``: their batch estimate; ``"auto"``: built sampled, the trainer may switch
        it to full, :func:`~empirical_seaice.training.schemes.whole_map_scheme`); None = full
        with dense-adam, else sampled.
    generator : the run's generator (initial network weights).
    device : where the network and the tensors live.
    counted : the observations whose rows the sampled priors count (the training
        observations); None = all.
    data : the observation tensors of ``obs`` already packed on ``device`` (another network's over
        the same observations: they are read only); None = pack them.
    pack : False: leave ``obs`` unpacked (``Built.data`` None), for a run that only simulates them,
        packing a block at a time (``--diagsonly``: the whole table is most of such a run's memory).
    row_counts : the row counts of ``counted`` (:func:`~empirical_seaice.cost.sampling.build_row_counts`)
        where the caller has them already; None = count them here.
    nobs : the rows of the observation-space state table; None = ``obs.nobs`` (a sharded run's held-out
        fit builds over a rank's held-out observations a table of all its observations' rows).
    """
    # the packed tables first: their pages come in on a background thread while the row counts and the
    # network are built (ObservationTensors.tables)
    width = channel_map(obs.basis).shape[1]
    tables = ObservationTensors.tables(obs.nobs, width) if data is None and pack else None
    counts = row_counts
    if counts is None:
        counts = build_row_counts(obs, model.nlag, obs.ngrid, obs.nstep, index=counted)
    dense = optimizer in ("dense-adam", "dense")
    network = HybridNetwork(
        model,
        cost,
        obs.basis,
        background,
        obs.nobs if nobs is None else nobs,
        row_counts=counts,
        sparse=not dense,
        prior_mode="full" if (prior_mode or ("full" if dense else "sampled")) == "full" else "sampled",
        generator=generator,
    )
    network.to(device)
    if data is None and pack:
        data = ObservationTensors(obs, device, into=tables)
    return Built(
        network=network,
        data=data,
        nobs_train=counts.nobs,
        n_warm_rows=counts.n_warm_rows,
        rows_read=(np.packbits(counts.sic > 0), np.packbits(counts.grid > 0)),
    )


def build_trainer(
    network: TrainableNetwork,
    built: Built,
    config: TrainingConfig,
    *,
    train_index: np.ndarray,
    generator: torch.Generator,
    valid_index: np.ndarray | None = None,
    checkpoint_dir: Path | None = None,
    progress: bool | RunProgress = True,
    checkpoint_minutes: float | None = None,
    identity: Mapping[str, Any] | None = None,
    stop: Callable[[], str | None] | None = None,
    sharding: ShardPlan | None = None,
    step_threads: Callable[[], int] | None = None,
    valid_regions: Mapping[str, Region] | None = None,
    fit_name: str = "the fit",
) -> Trainer:
    """The trainer of ``network`` (``built.network`` or a wrapper of it) over ``built.data``.

    ``checkpoint_minutes`` (None = :data:`~empirical_seaice.training.trainer.CHECKPOINT_MINUTES`),
    ``identity``, ``stop``, ``sharding`` (a rank's share of a sharded run), ``step_threads`` and
    ``valid_regions`` (each region whose own held-out cost the history books, and which stops on its own) and
    ``fit_name`` (what a stop's line calls a fit without checkpoints) as for
    :class:`~empirical_seaice.training.trainer.Trainer`.
    """
    if built.data is None:
        raise ValueError("build_trainer: the network was built without its packed observations (pack=False)")
    return Trainer(
        network,
        built.data,
        config,
        train_index,
        valid_index,
        built.nobs_train,
        checkpoint_dir=checkpoint_dir,
        progress=progress,
        generator=generator,
        sharding=sharding,
        checkpoint_minutes=CHECKPOINT_MINUTES if checkpoint_minutes is None else checkpoint_minutes,
        identity=identity,
        stop=stop,
        step_threads=step_threads,
        valid_regions=valid_regions,
        fit_name=fit_name,
    )


def normalise_as_whole_run(built: Built, *, nobs_train: int, n_warm_rows: int, shared_priors: bool) -> Built:
    """A rank's network of a sharded run (``built`` over its shard) normalised as the whole run's.

    ``nobs_train``: the run's counted observations (the ``nobs`` of ``J_b / nobs``);
    ``n_warm_rows``: the run's observed SIC rows of the warm-ice mean (the sum over the ranks);
    ``shared_priors``: whether this rank counts the priors on the shared parameters alone (bias
    prior, v1 anchor), true on one rank only, so that the sum of the ranks' costs counts them once.
    """
    network = built.network
    network.counts_nobs = nobs_train
    network.n_warm_rows = max(int(n_warm_rows), 1)
    network.shared_prior_share = 1.0 if shared_priors else 0.0
    return replace(built, nobs_train=nobs_train)


def build_whole_map_network(
    model: ModelConfig,
    cost: CostConfig,
    basis: ChannelBasis,
    background: BackgroundMaps,
    nobs: int,
    *,
    nobs_train: int,
) -> HybridNetwork:
    """A network over the whole map with the exact whole-map priors (no row counts, no observation
    tensors): the full cost of a sharded run and the network its ranks' state rows are assembled into
    for the outputs. ``nobs``: the run's observations; ``nobs_train``: the ``nobs`` of its ``J_b / nobs``."""
    full = HybridNetwork(model, cost, basis, background, nobs, row_counts=None, prior_mode="full")
    full.counts_nobs = nobs_train
    return full


__all__ = ["Built", "build_network", "build_trainer", "normalise_as_whole_run", "build_whole_map_network"]
