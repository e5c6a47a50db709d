"""threads.py: a thread count set for a block and the one found before put back, also on an error."""

from __future__ import annotations

import pytest
import torch

from empirical_seaice.threads import numba_threads, torch_threads


def test_torch_threads_set_and_restored_also_on_an_error():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="inside"), torch_threads(1):
        raise ValueError("inside")
    assert torch.get_num_threads() == before


def test_numba_threads_capped_and_restored_also_on_an_error():
    numba = pytest.importorskip("numba")
    before = numba.get_num_threads()
    with numba_threads(10**6):  # more than numba has: its maximum
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    with pytest.raises(ValueError, match="inside"), numba_threads(1):
        assert numba.get_num_threads() == 1
        raise ValueError("inside")
    assert numba.get_num_threads() == before
