"""Thread counts set for a while and put back: torch's intra-op pool and numba's OpenMP loops.

The one home of the save, set and restore that the passes need where a part of them wants another
count than the run's (``--threads``): the packing's compiled loop on the run's count, the final
pass's packing and forward pass on one thread while other threads compress, small element-wise work
on one thread. Each restores the count it found, also when the block raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op operations on ``n`` threads inside the block, the count before it after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def numba_threads(n: int) -> Iterator[None]:
    """numba's parallel loops on ``n`` threads (at most numba's maximum) inside the block, the count
    before it after; nothing without numba."""
    try:
        import numba
    except ImportError:  # pragma: no cover - without numba there are no compiled loops
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    try:
        yield
    finally:
        numba.set_num_threads(before)


def parallel_layer_shared() -> bool:
    """Whether numba's parallel loops may run on two threads at once: its threading layer is OpenMP or
    TBB (its own "workqueue" layer is not thread-safe); False before any parallel loop has run (the
    layer is chosen then) or without numba."""
    try:
        import numba

        return numba.threading_layer() in ("omp", "tbb")
    except (ImportError, ValueError):  # ValueError: no layer chosen yet
        return False


__all__ = ["numba_threads", "parallel_layer_shared", "torch_threads"]
