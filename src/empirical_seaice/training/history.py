"""The books of training: per-batch and per-epoch cost terms, and the held-out observation cost.

The term named ``"obs"`` (:data:`OBS_TERM`) is the observation term: the mean
of ``J_o,i`` over the batch; it is what the held-out validation reports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from empirical_seaice.errors import SeaIceError
from empirical_seaice.training.contract import OBS_TERM, BatchSource, TrainableNetwork


@dataclass
class TrainingHistory:
    """What happened during training.

    Attributes
    ----------
    terms : tuple of str
        Names of the cost terms (network order) plus ``"total"``.
    epoch_terms : list of dict
        Per epoch, the observation-weighted mean of each term over its batches
        (float64), i.e. the epoch's estimate of ``J / nobs`` split by term.
    batch_terms : dict of str to float64 array
        Per batch (all epochs concatenated), the value of each term.
    batch_size : int64 array
        Number of observations in each batch.
    valid_cost : list of float
        Per epoch, the held-out observation cost (mean ``J_o,i``); empty
        without validation.
    valid_cost_regions : dict of str to list of float
        Per region of the grid (the hemispheres of a global grid: ``"north"``, ``"south"``), per
        epoch, the held-out cost of that region's held-out observations; empty where the trainer
        was given no regions.
    region_held : dict of str to int
        The regions whose state was held at their own best epoch (:mod:`~empirical_seaice.training.regions`):
        name -> the 0-based epoch after whose validation it was held.
    best_epoch : int or None
        0-based epoch with the lowest held-out cost (None without validation).
    stopped_early : bool
        Whether early stopping ended the run.
    epoch_wall_s : list of float
        Wall time of each epoch's training steps (s).
    epoch_obs_per_s : list of float
        Training observations processed per second in each epoch.
    epoch_cpu_s : list of float
        Process CPU time of each epoch's training steps (s).
    wall_time_s : float
        Total wall time of training, validation included (s).
    obs_per_s : float
        Training observations per second over all epochs (steps only).
    """

    terms: tuple[str, ...] = ()
    epoch_terms: list[dict[str, float]] = field(default_factory=list)
    batch_terms: dict[str, np.ndarray] = field(default_factory=dict)
    batch_size: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    valid_cost: list[float] = field(default_factory=list)
    valid_cost_regions: dict[str, list[float]] = field(default_factory=dict)
    region_held: dict[str, int] = field(default_factory=dict)
    best_epoch: int | None = None
    stopped_early: bool = False
    epoch_wall_s: list[float] = field(default_factory=list)
    epoch_obs_per_s: list[float] = field(default_factory=list)
    epoch_cpu_s: list[float] = field(default_factory=list)
    wall_time_s: float = 0.0
    obs_per_s: float = 0.0

    @property
    def nepochs(self) -> int:
        """Number of completed epochs."""
        return len(self.epoch_terms)

    def _append_epoch(self, names: tuple[str, ...], values: np.ndarray, sizes: np.ndarray) -> dict[str, float]:
        """Add one epoch's per-batch term values (nbatch, nterm) and batch sizes."""
        if not self.terms:
            self.terms = names
        w = sizes.astype(np.float64)
        means = (values * w[:, None]).sum(axis=0) / max(w.sum(), 1.0)
        epoch = {name: float(m) for name, m in zip(names, means, strict=True)}
        self.epoch_terms.append(epoch)
        for j, name in enumerate(names):
            old = self.batch_terms.get(name, np.zeros(0, dtype=np.float64))
            self.batch_terms[name] = np.concatenate([old, values[:, j]])
        self.batch_size = np.concatenate([self.batch_size, sizes.astype(np.int64)])
        return epoch

    def book_epoch(
        self, names: tuple[str, ...], values: np.ndarray, sizes: np.ndarray, wall: float, cpu: float, epoch: int
    ) -> None:
        """Add epoch ``epoch`` (0-based): its per-batch term values (nbatch, nterm; a non-finite one is
        a one-line error naming the terms), batch sizes, wall and CPU time."""
        if not np.isfinite(values).all():
            bad = [nm for nm, ok in zip(names, np.isfinite(values).all(axis=0).tolist(), strict=True) if not ok]
            raise SeaIceError(
                f"training: cost term(s) {', '.join(bad)} became non-finite in epoch {epoch + 1}; "
                "lower --learning-rate or check the input data"
            )
        self._append_epoch(names, values, sizes)
        self.epoch_wall_s.append(wall)
        self.epoch_cpu_s.append(cpu)
        n = int(sizes.sum())
        self.epoch_obs_per_s.append(n / wall if wall > 0 else 0.0)

    def epoch_losses(self) -> dict[str, np.ndarray]:
        """Each cost term per epoch, with the held-out ``valid_obs`` and, on a global grid, each
        hemisphere's ``valid_obs_north``, ``valid_obs_south`` (the model file's ``loss_epoch_*`` and the
        loss curves); empty before the first epoch."""
        if not self.epoch_terms:
            return {}
        losses = {k: np.array([e[k] for e in self.epoch_terms]) for k in self.epoch_terms[0]}
        if self.valid_cost:
            losses["valid_obs"] = np.asarray(self.valid_cost)
        for name, costs in self.valid_cost_regions.items():
            losses[f"valid_obs_{name}"] = np.asarray(costs)
        return losses

    def held_note(self, name: str) -> str | None:
        """Where region ``name``'s state was held (:attr:`region_held`): "state held at epoch B's after
        epoch E (its own early stop)", B its lowest held-out cost up to the hold (1-based); None if never."""
        held = self.region_held.get(name)
        if held is None:
            return None
        costs = self.valid_cost_regions[name]
        best = min(range(held + 1), key=costs.__getitem__)
        return f"state held at epoch {best + 1}'s after epoch {held + 1} (its own early stop)"

    def epoch_line(self, nepochs: int) -> str:
        """The last epoch's terms, held-out cost and speed in one line (the trainer's log)."""
        parts = " ".join(f"{k}={v:.5g}" for k, v in self.epoch_terms[-1].items())
        valid = f" valid_obs={self.valid_cost[-1]:.5g}" if self.valid_cost else ""
        return f"epoch {self.nepochs}/{nepochs}: {parts}{valid} ({self.epoch_obs_per_s[-1]:.0f} obs/s)"

    def to_state(self) -> dict[str, Any]:
        """Plain-python/tensor form for a checkpoint (``torch.load(weights_only=True)``-safe)."""
        state = asdict(self)
        state["terms"] = list(self.terms)
        state["batch_terms"] = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.batch_terms.items()}
        state["batch_size"] = torch.from_numpy(np.ascontiguousarray(self.batch_size))
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TrainingHistory:
        """Inverse of :meth:`to_state` (its tensors read onto the run's device with ``--resume``: on CUDA the
        books failed to convert, and every resumed run on a GPU stopped before training)."""
        state = dict(state)
        state["terms"] = tuple(state["terms"])
        state["batch_terms"] = {k: v.cpu().numpy().astype(np.float64) for k, v in state["batch_terms"].items()}
        state["batch_size"] = state["batch_size"].cpu().numpy().astype(np.int64)
        return cls(**state)


def batch_obs_sum(network: TrainableNetwork, data: BatchSource, bidx: torch.Tensor, nobs_total: int) -> float:
    """``sum_{i in batch} J_o,i`` (float64) of one batch, from the mean obs term."""
    batch = data.batch(bidx)
    out = network(batch)
    terms = network.cost_terms(batch, out, nobs_total)
    return float(terms[OBS_TERM].detach().double()) * int(bidx.numel())


def data_device(data: BatchSource, network: TrainableNetwork) -> torch.device:
    device = getattr(data, "device", None)
    if device is not None:
        return torch.device(device)
    for p in network.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def evaluate_obs_cost(
    network: TrainableNetwork,
    data: BatchSource,
    index: torch.Tensor,
    nobs_total: int,
    batch_size: int,
    device: torch.device | None = None,
) -> float:
    """Mean observation cost ``(1/n) sum_i J_o,i`` over ``index`` (float64 accumulation)."""
    network.eval()
    device = device if device is not None else data_device(data, network)
    total = 0.0
    for start in range(0, index.numel(), batch_size):
        bidx = index[start : start + batch_size].to(device)
        total += batch_obs_sum(network, data, bidx, nobs_total)
    return total / max(index.numel(), 1)
