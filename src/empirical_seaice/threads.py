"""Thread counts set for a while and put back: torch's intra-op pool and numba's OpenMP loops.

The one home of the save, set and restore that the passes need where a part of them wants another
count than the run's (``--threads``): the packing's compiled loop on the run's count, the final
pass's packing and forward pass on one thread while other threads compress, small element-wise work
on one thread. Each restores the count it found, also when the block raises.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

import torch

AUTO_THREADS_MAX = 16
"""The most threads an automatic ``--threads`` takes: the fused step splits a batch into this many fixed
chunks (:data:`empirical_seaice.model.fused_kernels.NCHUNK`), so more threads would have nothing to do."""


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask (what a batch scheduler or ``taskset`` gave it),
    at most its cgroup's CPU quota rounded down (a container's ``--cpus``: :func:`cgroup_cpu_quota`),
    at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity (macOS)
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, math.floor(quota))
    return max(1, cpus)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup"), membership: str | None = None) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (``quota / period``), None where there is none
    (or no cgroup file system: not Linux).

    cgroup v2: ``cpu.max`` (``"200000 100000"``; ``"max 100000"`` = no quota); v1: ``cpu.cfs_quota_us``
    (-1 = none) over ``cpu.cfs_period_us``, in the ``cpu`` controller's directory. Each is looked for in
    the process's own cgroup (``membership``: the text of ``/proc/self/cgroup``, read when None) and then
    at the root of ``root`` (inside a container the cgroup namespace puts the container's own there); the
    first file found counts."""
    if membership is None:
        try:
            membership = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    for file, period_name in _quota_files(root, membership):
        try:
            text = file.read_text().split()
            period = text[1] if period_name is None else (file.parent / period_name).read_text().split()[0]
            quota = text[0]
        except (OSError, IndexError):
            continue
        return _cpus(quota, period)
    return None


def _quota_files(root: Path, membership: str) -> list[tuple[Path, str | None]]:
    """Where :func:`cgroup_cpu_quota` looks, in order: (quota file, its period's file name in the same
    directory, None for v2's ``cpu.max``, which holds both)."""
    files: list[tuple[Path, str | None]] = []
    for line in membership.splitlines():
        hier, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        rel = path.lstrip("/")
        if hier == "0" and controllers == "":  # v2
            files += [(root / rel / "cpu.max", None), (root / "cpu.max", None)]
        elif "cpu" in controllers.split(","):  # v1
            for name in (controllers, "cpu", "cpu,cpuacct"):
                files += [(root / name / rel / "cpu.cfs_quota_us", "cpu.cfs_period_us")]
                files += [(root / name / "cpu.cfs_quota_us", "cpu.cfs_period_us")]
    return files


def _cpus(quota: str, period: str) -> float | None:
    """``quota / period`` (CPUs), None for no quota (``max``, -1) or what is not a positive number."""
    try:
        value = float(quota) / float(period)
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


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
    "cgroup_cpu_quota",
    "numba_threads",
    "parallel_layer_shared",
    "torch_threads",
]
