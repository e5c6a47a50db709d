"""Parts of the grid trained and stopped each on its own held-out cost (a global grid's hemispheres).

On one grid, one hemisphere can over-fit while the other still learns: on the global twin the Arctic's
held-out cost is lowest at epoch 8 and rises from there, while the Antarctic's falls until epoch 19
(docs/training-defaults.md, "Each hemisphere stopped on its own"). Stopping the whole run at the
Arctic's minimum leaves the Antarctic untrained; running on over-fits the Arctic.

So each region's held-out cost is watched like the whole's (:class:`RegionStops`): when it has not
fallen below its own lowest for ``patience`` epochs, the region's state rows (SIC map, grid and
observation properties: :meth:`~empirical_seaice.model.operator.HybridNetwork.region_rows`) go back to
their values at that lowest epoch and are held there
(:meth:`~empirical_seaice.training.deferred_adam.DeferredAdam.hold`), while the rest of the state and
the shared network train on, the held region's observations still among them. The network then fits
the held state, rather than the state following the network into over-fitting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Region:
    """A part of the grid with its own held-out cost.

    Attributes
    ----------
    valid : int64 array
        Its held-out observations (indices into the run's observations).
    points : int64 array or None
        Its grid points; None: its cost is booked, its state never held.
    obs : int64 array or None
        Every observation on its grid points (the rows of the observation properties).
    """

    valid: np.ndarray
    points: np.ndarray | None = None
    obs: np.ndarray | None = None


class RegionStops:
    """Each region's lowest held-out cost so far, a copy of its state rows at that epoch, and whether it is
    held (module docstring).

    Parameters
    ----------
    tables : mapping of str to list of (parameter, rows)
        Each region's rows of each state table (``network.region_rows``).
    patience : int
        Epochs without a lower held-out cost before the region is held (the run's early-stopping patience).
    """

    def __init__(self, tables: Mapping[str, list[tuple[torch.Tensor, torch.Tensor]]], patience: int) -> None:
        self.tables = dict(tables)
        self.patience = int(patience)
        self.best: dict[str, float] = {}
        self.best_epoch: dict[str, int] = {}
        self.saved: dict[str, list[torch.Tensor]] = {}
        """Each region's state rows at its lowest epoch, table by table (copied into at each lower cost)."""

    @torch.no_grad()
    def update(self, epoch: int, costs: Mapping[str, float], held: Mapping[str, int]) -> list[str]:
        """After epoch ``epoch``'s validation (every row current): book each region's cost ``costs``,
        copy the rows of a region at a new lowest, and return the regions not yet ``held`` whose cost
        has not fallen below their lowest for ``patience`` epochs."""
        due = []
        for name, cost in costs.items():
            if name not in self.tables or name in held:
                continue
            if cost < self.best.get(name, float("inf")):
                self.best[name], self.best_epoch[name] = cost, epoch
                saved = self.saved.get(name)
                tables = self.tables[name]
                if saved is None:
                    self.saved[name] = [p.detach().index_select(0, rows) for p, rows in tables]
                else:
                    for (p, rows), out in zip(tables, saved, strict=True):
                        torch.index_select(p.detach(), 0, rows, out=out)
            elif epoch - self.best_epoch[name] >= self.patience:
                due.append(name)
        return due

    @torch.no_grad()
    def restore(self, name: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Put region ``name``'s state rows back to their values at its lowest epoch; returns its tables'
        rows (to hold). The copy is dropped: a held region's rows do not move again."""
        tables = self.tables[name]
        for (p, rows), values in zip(tables, self.saved.pop(name), strict=True):
            p.index_copy_(0, rows, values)
        return tables

    def to_state(self) -> dict[str, Any]:
        """For a checkpoint: the lowest costs, their epochs, the copies and the rows they are of (table by
        table: a sharded run's resume on another number of ranks moves them to their new ranks)."""
        rows = {name: [r for _, r in self.tables[name]] for name in self.saved}
        return {"best": dict(self.best), "best_epoch": dict(self.best_epoch), "saved": dict(self.saved), "rows": rows}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`to_state`."""
        self.best = dict(state["best"])
        self.best_epoch = {k: int(v) for k, v in state["best_epoch"].items()}
        self.saved = {k: list(v) for k, v in state["saved"].items()}


__all__ = ["Region", "RegionStops"]
