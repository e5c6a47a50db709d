"""The typed contract between the trainer and what it trains.

The trainer knows nothing about sea ice: it minimises the cost a network
reports for a batch of observations, over the parameters the network hands
it. These two protocols are everything it may rely on;
:class:`~empirical_seaice.model.operator.HybridNetwork` and the retrieval's
:class:`~empirical_seaice.run.retrieve.FrozenModel` fulfil them, and mypy
checks that they do wherever one is handed to the
:class:`~empirical_seaice.training.trainer.Trainer`. The trainer also checks
at run time (:func:`check_network`), so that a network missing a member
fails at once instead of silently taking another optimiser path.

Every member is required. In particular :meth:`TrainableNetwork.state_rows`
tells which rows of the state tables a batch reads, so that
:class:`~empirical_seaice.training.deferred_adam.DeferredAdam` catches them up
*before* the forward pass (the scheme then equals dense Adam): training,
retrieval and benchmarks take the same optimiser path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

OBS_TERM = "obs"
"""Name of the observation term in the network's cost terms (what held-out validation reports)."""


@runtime_checkable
class BatchSource(Protocol):
    """Observations on one device, batched by index (e.g. ``ObservationTensors``)."""

    device: torch.device

    def batch(self, index: Tensor) -> Any:
        """The observations ``index`` (int64 tensor on :attr:`device`) as one batch."""
        ...


@runtime_checkable
class TrainableNetwork(Protocol):
    """What the trainer trains: a forward pass, the per-step cost, and its parameters.

    ``network(batch, state_values=...) -> out``: the forward pass; ``state_values``
    (one tensor per entry of :meth:`state_rows`, shaped ``rows.shape + (ncol,)``) are
    the caught-up rows to compute with, or None to read the tables themselves.
    """

    sparse: bool
    """Whether the state tables produce sparse gradients (optimisers ``sparse``, ``lazy``)."""
    reads_state_values: bool
    """Whether the forward pass computes with rows handed to it (``state_values``)."""
    training: bool

    def __call__(self, batch: Any, *, state_values: list[Tensor] | None = None) -> dict[str, Tensor]: ...

    def cost_terms(
        self, batch: Any, out: dict[str, Tensor], nobs_total: int, batch_total: int | None = None
    ) -> dict[str, Tensor]:
        """The per-step estimate of each term of the cost (0-d tensors); ``"obs"`` is the mean J_o,i
        (over ``batch_total`` observations when given: a sharded run's global batch)."""
        ...

    def total_cost(self, terms: dict[str, Tensor]) -> Tensor:
        """What is minimised: the sum of the terms (a term may enter without gradient)."""
        ...

    def full_prior_terms(self, nobs_total: int | None = None) -> dict[str, Tensor]:
        """The whole-map priors, exact (for evaluation)."""
        ...

    def state_rows(self, batch: Any) -> list[tuple[Tensor, Tensor]]:
        """``[(table, rows)]``: the rows of each state table the batch reads (int64, may repeat)."""
        ...

    def sparse_parameters(self) -> list[torch.nn.Parameter]:
        """The state tables (row tables; sparse gradients when :attr:`sparse`)."""
        ...

    def dense_parameters(self) -> list[torch.nn.Parameter]:
        """The other trained parameters (may be empty, e.g. a frozen model)."""
        ...

    # the torch.nn.Module members the trainer uses
    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> Any: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...


_MEMBERS = (
    "sparse",
    "reads_state_values",
    "cost_terms",
    "total_cost",
    "full_prior_terms",
    "state_rows",
    "sparse_parameters",
    "dense_parameters",
)


def check_network(network: object) -> TrainableNetwork:
    """``network`` if it has every member of :class:`TrainableNetwork`.

    Raises
    ------
    TypeError
        A member is missing (a programming error, not a user error): the message names it.
    """
    missing = [name for name in _MEMBERS if not hasattr(network, name)]
    if missing or not callable(network):
        raise TypeError(
            f"{type(network).__name__} does not fulfil the trainer's TrainableNetwork contract: "
            f"missing {', '.join(missing) or '__call__'}"
        )
    assert isinstance(network, TrainableNetwork)
    return network


__all__ = ["TrainableNetwork", "BatchSource", "check_network", "OBS_TERM"]
