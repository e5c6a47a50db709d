"""One factory for what every run trains: operator + objective + trainer.

Training (:mod:`empirical_seaice.run.train`), retrieval
(:mod:`empirical_seaice.run.retrieve`) and the benchmarks build the hybrid
network, its observation tensors and its trainer here, so that they cannot
be wired differently (row counts of the sampled priors, sparse or dense state
gradients, prior mode, device, cost normalisation):

- :func:`build_network`: the row counts of the counted (training)
  observations, the :class:`~empirical_seaice.model.operator.HybridNetwork`
  (observation operator and per-step cost), the
  :class:`~empirical_seaice.model.operator.ObservationTensors` on the device;
- :func:`build_trainer`: the :class:`~empirical_seaice.training.trainer.Trainer`
  over a network that fulfils the trainer's contract (the network itself, or
  the retrieval's frozen model), normalising ``J_b`` by the counted
  observations.

The optimiser scheme decides the rest: ``"dense-adam"`` (the reference's way) builds
dense state gradients and by default the exact whole-map priors at every step; ``"deferred-adam"``
and ``"sparse-adam"`` build sparse state gradients and the sampled priors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empirical_seaice.config import CostConfig, ModelConfig, TrainingConfig
from empirical_seaice.cost.sampling import build_row_counts
from empirical_seaice.model.operator import HybridNetwork, ObservationTensors
from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.training.contract import TrainableNetwork
from empirical_seaice.training.runtime import RunProgress
from empirical_seaice.training.trainer import CHECKPOINT_MINUTES, Trainer


@dataclass
class Built:
    """What :func:`build_network` returns.

    network : the hybrid network on the device.
    data : every observation packed on the device.
    nobs_train : the counted observations, the ``nobs`` of ``J_b / nobs``.
    """

    network: HybridNetwork
    data: ObservationTensors
    nobs_train: int


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
    """
    counts = build_row_counts(obs, model.nlag, obs.ngrid, obs.nstep, index=counted)
    dense = optimizer in ("dense-adam", "dense")
    network = HybridNetwork(
        model,
        cost,
        obs.basis,
        background,
        obs.nobs,
        row_counts=counts,
        sparse=not dense,
        prior_mode="full" if (prior_mode or ("full" if dense else "sampled")) == "full" else "sampled",
        generator=generator,
    )
    network.to(device)
    return Built(network=network, data=ObservationTensors(obs, device), nobs_train=counts.nobs)


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
) -> Trainer:
    """The trainer of ``network`` (``built.network`` or a wrapper of it) over ``built.data``.

    ``checkpoint_minutes`` (None = :data:`~empirical_seaice.training.trainer.CHECKPOINT_MINUTES`),
    ``identity`` and ``stop`` as for :class:`~empirical_seaice.training.trainer.Trainer`.
    """
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
        checkpoint_minutes=CHECKPOINT_MINUTES if checkpoint_minutes is None else checkpoint_minutes,
        identity=identity,
        stop=stop,
    )


__all__ = ["Built", "build_network", "build_trainer"]
