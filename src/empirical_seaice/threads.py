"""Thread counts set for a while and put back: torch's intra-op pool and numba's OpenMP loops.

The one home of the save, set and restore that the passes need where a part of them wants another
count than the run's (``--threads``): the packing's compiled loop on the run's count, the final
pass's packing and forward pass on one thread while other threads compress, small element-wise work
on one thread. Each restores the count it found, also when the block raises.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

AUTO_THREADS_MAX = 16
"""The most threads an automatic ``--threads`` takes: the fused step splits a batch into this many fixed
chunks (:data:`empirical_seaice.model.fused_kernels.NCHUNK`), so more threads would have nothing to do."""


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: what a batch scheduler or ``taskset`` gave
    it), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity (macOS)
        return max(1, os.cpu_count() or 1)


def auto_threads(processes: int = 1) -> int:
    """The run's thread count when ``--threads`` is not given: :func:`available_cpus` shared by the
    ``processes`` of this machine (a torchrun launch's ``LOCAL_WORLD_SIZE``), at least 1 and at most
    :data:`AUTO_THREADS_MAX`."""
    return max(1, min(available_cpus() // max(1, processes), AUTO_THREADS_MAX))


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


__all__ = [
    "AUTO_THREADS_MAX",
    "auto_threads",
    "available_cpus",
    "numba_threads",
    "parallel_layer_shared",
    "torch_threads",
]
