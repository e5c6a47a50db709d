"""training/epochs.py: an epoch's order (shuffled or reference blocks) and its start (fresh or resumed)."""

from __future__ import annotations

import numpy as np
import torch

from empirical_seaice.training.epochs import epoch_order, epoch_start
from empirical_seaice.training.runtime import even_bounds, make_generator

CPU = torch.device("cpu")


def test_shuffled_order_is_a_permutation_in_even_batches():
    index = torch.arange(100, 110)
    perm, bounds = epoch_order(index, 4, "shuffled", make_generator(0), CPU)
    assert sorted(perm.tolist()) == list(range(100, 110)) and perm.tolist() != list(range(100, 110))
    assert np.array_equal(bounds, even_bounds(10, 4))


def test_reference_blocks_keep_file_order_within_blocks_and_shuffle_the_blocks():
    index = torch.arange(10)
    order, bounds = epoch_order(index, 4, "reference-blocks", make_generator(1), CPU)
    blocks = [order[bounds[b] : bounds[b + 1]].tolist() for b in range(len(bounds) - 1)]
    assert sorted(blocks) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # contiguous, the last one shorter
    orders = set()
    for seed in range(8):
        o, _ = epoch_order(index, 4, "reference-blocks", make_generator(seed), CPU)
        orders.add(tuple(o.tolist()))
    assert len(orders) > 1  # the block order is shuffled


def test_epoch_start_fresh_and_resumed():
    index = torch.arange(10)
    fresh = epoch_start(None, index, 4, "shuffled", make_generator(0), CPU)
    assert [len(b) for b in fresh.batches] == list(np.diff(fresh.bounds)) and fresh.first == 0
    assert torch.equal(torch.cat(fresh.batches), fresh.perm)
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    position = {
        "batch": 2, "perm": fresh.perm, "bounds": torch.as_tensor(fresh.bounds), "names": ["obs", "total"],
        "values": values, "wall": 1.5, "cpu": 1.0,
    }  # fmt: skip
    resumed = epoch_start(position, index, 4, "shuffled", make_generator(5), CPU)  # the generator is not used
    assert torch.equal(resumed.perm, fresh.perm) and np.array_equal(resumed.bounds, fresh.bounds)
    assert resumed.first == 2 and resumed.names == ("obs", "total") and (resumed.wall, resumed.cpu) == (1.5, 1.0)
    assert resumed.values.shape == (len(fresh.batches), 2) and torch.equal(resumed.values[:2], values)
    assert not resumed.values[2:].any()
