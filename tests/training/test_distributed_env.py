"""The torchrun launch environment and the backend choice of a sharded run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from empirical_seaice.errors import SeaIceError
from empirical_seaice.training.distributed import backend_for, digest, launch_environment

TORCHRUN = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "n1",
            "MASTER_PORT": "29500"}  # fmt: skip


def test_no_launcher_is_a_single_process():
    assert launch_environment({}) is None


def test_torchrun_environment():
    env = launch_environment(TORCHRUN)
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (1, 4, 1, 2)


def test_incomplete_environment_names_the_variables():
    with pytest.raises(SeaIceError, match="MASTER_ADDR, MASTER_PORT not set; launch with torchrun"):
        launch_environment({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    with pytest.raises(SeaIceError, match="RANK=4 is outside"):
        launch_environment({**TORCHRUN, "RANK": "4"})


def test_backend_and_digest():
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda", 0)) == "nccl"
    assert digest("a", 1) == digest("a", 1) != digest("a", 2)
    assert len(digest()) == 32


def test_local_order_spreads_each_rank_over_the_epoch():
    from empirical_seaice.training.distributed import local_shares

    share = local_shares(np.array([1000, 1003, 10]), 128)  # N = 2013: 16 steps
    assert share.shape == (3, 16)
    assert share.sum(axis=1).tolist() == [1000, 1003, 10]  # every training observation once
    assert share[0].tolist() == [63] * 8 + [62] * 8  # 1000 = 16 * 62 + 8
    sizes = share.sum(axis=0)
    assert sizes.max() - sizes.min() <= 3 and sizes.sum() == 2013  # global batches of ~N / 16 = 125.8
