"""The partition of grid points over ranks, and a rank's shard of the observations and background.

Every observation reads only its own grid point's state rows, so a partition
of the *grid points* is a partition of the state and of the observations. The
ranks' work per step is proportional to their observations, not to their grid
points (the pack ice is seen by several sensors a day, open water and the ice
edge far less), so the partition balances the observation count:
:func:`partition_grid` cuts the grid, in index order, into ``W`` contiguous
runs of (nearly) equal observation count. Contiguous runs of an EASE grid are
latitude bands, so a shard's rows are contiguous in the state tables and its
observations come from a band of the memory-mapped cache. The balance is
exact to within the largest observation count of one grid point.

The partition is computed once (by rank 0, from the observations of the whole
period) and saved: in the checkpoint directory (``partition.pt``, reloaded by
``--resume``) and in ``model_TAG.pt``.

:class:`Shard` holds the index maps between a rank's local rows and the global
ones (grid points, observations, and the rows of the three state tables) and
builds the rank's :class:`~empirical_seaice.observations.Observations` (read
from the cache's memory maps: only the shard's rows are touched) and
:class:`~empirical_seaice.observations.BackgroundMaps`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from empirical_seaice.errors import SeaIceError
from empirical_seaice.observations import BackgroundMaps, Observations

PARTITION_NAME = "partition.pt"
"""File name of the saved partition in the checkpoint directory."""


@dataclass(frozen=True)
class Partition:
    """Owner rank of each grid point.

    owner : int32 (ngrid,), the rank that owns each grid point.
    world_size : number of ranks.
    nobs : int64 (world_size,), observations per rank (all observations of the period).
    """

    owner: np.ndarray
    world_size: int
    nobs: np.ndarray

    @property
    def imbalance(self) -> float:
        """Largest rank's observations over the mean (1 = perfectly balanced)."""
        return float(self.nobs.max() / max(self.nobs.mean(), 1e-12))

    def to_state(self) -> dict:
        """Tensors and integers (``torch.load(weights_only=True)``-safe)."""
        return {
            "owner": torch.from_numpy(self.owner.astype(np.int32)),
            "world_size": int(self.world_size),
            "nobs": torch.from_numpy(self.nobs.astype(np.int64)),
        }

    @classmethod
    def from_state(cls, state: dict) -> Partition:
        """Inverse of :meth:`to_state`."""
        return cls(
            owner=state["owner"].numpy().astype(np.int32),
            world_size=int(state["world_size"]),
            nobs=state["nobs"].numpy().astype(np.int64),
        )

    def save(self, path: Path) -> Path:
        """Write atomically (temporary name, then rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.to_state(), tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> Partition:
        """Read a saved partition; a file that is not one is a one-line error."""
        try:
            return cls.from_state(torch.load(path, weights_only=True))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a user problem
            raise SeaIceError(f"--resume: cannot read the partition {path}: {exc}") from None


def partition_grid(nobs_per_grid: np.ndarray, world_size: int) -> Partition:
    """Contiguous runs of grid points with (nearly) equal observation counts.

    Grid point ``g`` goes to the rank whose share ``[r N / W, (r + 1) N / W)``
    of the cumulative count ``N`` holds the midpoint of ``g``'s own
    observations, ``cum(g) - n(g) / 2``; each rank's count then differs from
    ``N / W`` by at most the largest ``n(g)``. Grid points without
    observations go with their neighbours.

    Raises
    ------
    SeaIceError
        Fewer grid points with observations than ranks (a rank would own none).
    """
    n = np.asarray(nobs_per_grid, dtype=np.int64)
    total = int(n.sum())
    if world_size < 1:
        raise ValueError("partition_grid: world_size must be >= 1")
    seen = int(np.count_nonzero(n))
    if seen < world_size:
        raise SeaIceError(
            f"--distributed: {world_size} ranks but only {seen} grid point(s) with observations; "
            "start fewer processes (--nproc-per-node / --nnodes)"
        )
    data = np.flatnonzero(n)
    mid = np.cumsum(n[data]) - 0.5 * n[data]
    # first grid point (among those with data) of each rank: the first midpoint at or after r N / W
    first = np.searchsorted(mid, np.arange(world_size) * (total / world_size), side="left")
    first[0] = 0
    for r in range(1, world_size):  # at least one grid point with data per rank
        first[r] = max(first[r], first[r - 1] + 1)
    for r in range(world_size - 1, 0, -1):
        first[r] = min(first[r], data.size - (world_size - r), first[r + 1] - 1 if r + 1 < world_size else data.size)
    starts = data[first]
    starts[0] = 0
    owner = (np.searchsorted(starts, np.arange(n.size), side="right") - 1).astype(np.int32)
    per_rank = np.bincount(owner, weights=n, minlength=world_size).astype(np.int64)
    return Partition(owner=owner, world_size=world_size, nobs=per_rank)


@dataclass
class Shard:
    """One rank's grid points and observations, with the maps between local and global rows.

    grid : int64 (ngrid_local,), the rank's grid points (global ids, ascending); local grid
        point ``k`` is ``grid[k]``.
    obs : int64 (nobs_local,), the rank's observations (global ids, ascending); local
        observation ``j`` is ``obs[j]``.
    ngrid, nobs : global counts.
    """

    grid: np.ndarray
    obs: np.ndarray
    ngrid: int
    nobs: int

    @classmethod
    def of_rank(cls, partition: Partition, igrid: np.ndarray, rank: int) -> Shard:
        """The shard of ``rank``: its grid points and the observations on them (``igrid``: the
        global grid point of every observation; read once, 4 bytes per observation)."""
        mine = partition.owner == rank
        grid = np.flatnonzero(mine).astype(np.int64)
        n = int(np.asarray(igrid).shape[0])
        chunk = 1 << 24  # bounds the temporaries for billions of observations
        obs = np.concatenate(
            [np.flatnonzero(mine[np.asarray(igrid[a : a + chunk])]) + a for a in range(0, n, chunk)]
            or [np.zeros(0, dtype=np.int64)]
        ).astype(np.int64)
        return cls(grid=grid, obs=obs, ngrid=int(partition.owner.size), nobs=n)

    @property
    def global_to_local_obs(self) -> np.ndarray:
        """int64 (nobs,): local row of every global observation, -1 where another rank owns it."""
        m = np.full(self.nobs, -1, dtype=np.int64)
        m[self.obs] = np.arange(self.obs.size)
        return m

    def local_index(self, global_index: np.ndarray | None) -> np.ndarray | None:
        """The local rows of the rank's observations among ``global_index`` (in their order)."""
        if global_index is None:
            return None
        local = self.global_to_local_obs[np.asarray(global_index, dtype=np.int64)]
        return local[local >= 0]

    def table_rows(self, ncol: int) -> np.ndarray:
        """Global rows of a per-grid-point table of ``ncol`` rows per grid point (``g * ncol + c``),
        in local row order (int64)."""
        return (self.grid[:, None] * ncol + np.arange(ncol)).reshape(-1)

    def observations(self, obs: Observations, rows: np.ndarray | None = None) -> Observations:
        """The rank's observations (a copy of its rows only; ``igrid`` renumbered to local grid points);
        ``rows``: of them only these local rows (ascending; None = all)."""
        local = obs.take(self.obs if rows is None else self.obs[np.asarray(rows, dtype=np.int64)])
        remap = np.full(self.ngrid, -1, dtype=np.int64)
        remap[self.grid] = np.arange(self.grid.size)
        igrid = remap[np.asarray(local.igrid)].astype(np.asarray(obs.igrid).dtype)
        lon = None if obs.lon is None else np.asarray(obs.lon)[self.grid]
        lat = None if obs.lat is None else np.asarray(obs.lat)[self.grid]
        return replace(local, igrid=igrid, ngrid=int(self.grid.size), lon=lon, lat=lat)

    def background(self, background: BackgroundMaps) -> BackgroundMaps:
        """The background maps of the rank's grid points."""

        def rows(a):
            return None if a is None else np.ascontiguousarray(np.asarray(a)[self.grid])

        return BackgroundMaps(
            sic=rows(background.sic),
            t_skin_map_k=rows(background.t_skin_map_k),
            nlag=background.nlag,
            lon=rows(background.lon),
            lat=rows(background.lat),
        )


__all__ = ["PARTITION_NAME", "Partition", "Shard", "partition_grid"]
