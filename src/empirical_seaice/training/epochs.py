"""Where a training epoch starts: the order of the training observations and its batches.

:func:`epoch_order` draws an epoch's order by ``TrainingConfig.batch_order``:
``"shuffled"`` a new permutation of the training observations cut into even batches,
``"reference-blocks"`` the observations in their order (file order, sensor after sensor) cut
into contiguous blocks of the batch size with only the block order shuffled (the v2
reference's Keras ``Sequence``). :func:`epoch_start` turns it, or a checkpoint's saved place
within an epoch, into this process's batches (:class:`EpochStart`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from empirical_seaice.training.runtime import even_bounds


@dataclass
class EpochStart:
    """Where an epoch starts: the order of the training observations (``perm``) and the batch
    bounds in it (``bounds``: batch ``b`` is ``perm[bounds[b]:bounds[b + 1]]``), this process's
    index tensor of each step (``batches``, on the device) and each step's batch size (``sizes``;
    the global batch's in a sharded run); resumed within the epoch, the first step to run
    (``first``), the term names and per-batch values so far (float64 (nbatch, nterm + 1) on the
    device; sized at the first step of a fresh epoch), and the wall and CPU time so far."""

    perm: torch.Tensor
    bounds: np.ndarray
    batches: list[torch.Tensor]
    sizes: np.ndarray
    first: int = 0
    names: tuple[str, ...] = ()
    values: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    wall: float = 0.0
    cpu: float = 0.0


def epoch_order(
    train_index: torch.Tensor, batch_size: int, batch_order: str, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, np.ndarray]:
    """An epoch's order of the training observations (on ``device``) and the batch bounds in it
    (batch ``b`` is ``order[bounds[b]:bounds[b + 1]]``), by ``batch_order``."""
    n, bs = train_index.numel(), batch_size
    if batch_order == "reference-blocks":
        index = train_index.to(device)
        blocks = [index[k * bs : (k + 1) * bs] for k in torch.randperm((n + bs - 1) // bs, generator=generator)]
        sizes = [len(block) for block in blocks]
        return torch.cat(blocks), np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    perm = train_index[torch.randperm(n, generator=generator)].to(device)
    return perm, even_bounds(n, bs)


def epoch_start(
    position: Mapping[str, Any] | None,
    train_index: torch.Tensor,
    batch_size: int,
    batch_order: str,
    generator: torch.Generator,
    device: torch.device,
    sharding: Any = None,
) -> EpochStart:
    """Where an epoch starts. ``position``: a checkpoint's place within this epoch (resumed), or
    None (a fresh epoch: a new :func:`epoch_order`). ``sharding``: this rank's
    :class:`~empirical_seaice.training.distributed.ShardPlan` (its share of each step), or None."""
    bs = batch_size
    if position is not None:  # resumed within this epoch
        perm = position["perm"]
        saved = position.get("bounds")  # absent in checkpoints written before batch orders
        default = even_bounds(train_index.numel(), bs)
        bounds = default if saved is None else torch.as_tensor(saved).cpu().numpy().astype(np.int64)
    else:
        perm, bounds = epoch_order(train_index, bs, batch_order, generator, device)
    if sharding is None:
        on_device = perm.to(device)
        batches = [on_device[bounds[b] : bounds[b + 1]] for b in range(len(bounds) - 1)]
        sizes = np.diff(bounds)
    else:  # this rank's share of each step, and the global batch sizes (they normalise the cost)
        batches, sizes = sharding.epoch_batches(perm.cpu(), bs)
    if position is None:
        return EpochStart(perm, bounds, batches, sizes)
    first = int(position["batch"])
    names = tuple(position["names"])
    values = torch.zeros((len(batches), len(names)), dtype=torch.float64, device=device)
    values[:first] = position["values"].to(device)
    wall, cpu = float(position["wall"]), float(position["cpu"])
    return EpochStart(perm, bounds, batches, sizes, first, names, values, wall, cpu)


__all__ = ["EpochStart", "epoch_order", "epoch_start"]
