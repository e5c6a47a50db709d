"""The partition of grid points over ranks (balanced by observation count) and a rank's shard."""

from __future__ import annotations

import numpy as np
import pytest

from empirical_seaice.errors import SeaIceError
from empirical_seaice.observations import BackgroundMaps
from empirical_seaice.run.partition import Partition, Shard, partition_grid


def test_hand_example():
    # counts 4 0 4 2 2 over 3 ranks: N = 12, shares [0, 4), [4, 8), [8, 12); the midpoints of the
    # points with data are 2, 6, 9, 11; the empty point 1 stays with the run before it
    part = partition_grid(np.array([4, 0, 4, 2, 2]), 3)
    assert part.owner.tolist() == [0, 0, 1, 2, 2]
    assert part.nobs.tolist() == [4, 4, 4]
    assert part.imbalance == 1.0


@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_balanced_by_observations_not_grid_points(world):
    rng = np.random.default_rng(world)
    # a dense pack (many observations per point) and a sparse margin, as at the ice edge
    counts = np.concatenate([rng.poisson(40, 300), rng.poisson(2, 700)]) * (rng.random(1000) < 0.8)
    part = partition_grid(counts, world)
    assert part.nobs.sum() == counts.sum()
    assert np.all(np.diff(part.owner) >= 0)  # contiguous runs
    assert part.nobs.max() - part.nobs.mean() <= counts.max()  # within one grid point's count
    npoints = np.bincount(part.owner, minlength=world)
    if world > 1:  # the ranks of the dense pack own far fewer grid points
        assert npoints[0] < npoints[-1]


def test_every_rank_gets_observations_even_between_dense_points():
    part = partition_grid(np.array([0, 100, 0, 100, 1, 0, 1]), 4)
    assert np.all(part.nobs > 0)
    assert np.all(np.diff(part.owner) >= 0)


def test_too_many_ranks_is_one_line():
    with pytest.raises(SeaIceError, match=r"--distributed: 3 ranks but only 2 grid point\(s\) with observations"):
        partition_grid(np.array([0, 5, 0, 1]), 3)


def test_state_round_trip(tmp_path):
    part = partition_grid(np.array([3, 1, 2, 5]), 2)
    back = Partition.load(part.save(tmp_path / "p.pt"))
    assert back.world_size == 2 and back.owner.tolist() == part.owner.tolist()
    assert back.nobs.tolist() == part.nobs.tolist()


def test_shard_maps_and_background():
    part = Partition(owner=np.array([0, 0, 1, 1, 1], np.int32), world_size=2, nobs=np.array([3, 3]))
    igrid = np.array([2, 0, 4, 1, 2, 0], np.int32)
    shard = Shard.of_rank(part, igrid, 1)
    assert shard.grid.tolist() == [2, 3, 4] and shard.obs.tolist() == [0, 2, 4]
    assert shard.global_to_local_obs.tolist() == [0, -1, 1, -1, 2, -1]
    assert shard.local_index(np.array([4, 1, 0])).tolist() == [2, 0]
    assert shard.table_rows(2).tolist() == [4, 5, 6, 7, 8, 9]  # rows g * 2 + c of grid points 2, 3, 4
    sic = np.arange(10, dtype=np.float32).reshape(5, 2)
    bg = shard.background(BackgroundMaps(sic=sic, t_skin_map_k=sic[:, 1:] + 250, nlag=1))
    assert bg.sic.tolist() == sic[2:].tolist() and bg.ngrid == 3
