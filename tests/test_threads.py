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


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("membership", "files", "expected"),
    [
        # cgroup v2, the process's own cgroup (a systemd slice or a batch job's)
        ("0::/user.slice/job7\n", {"user.slice/job7/cpu.max": "150000 100000\n"}, 1.5),
        ("0::/user.slice/job7\n", {"user.slice/job7/cpu.max": "max 100000\n"}, None),
        # v2 inside a container: its cgroup at the root of the namespace
        ("0::/\n", {"cpu.max": "200000 100000\n"}, 2.0),
        # v1: the cpu controller's directory (docker --cpus 3)
        (
            "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n",
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000\n",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            3.0,
        ),
        ("1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ("0::/\n", {}, None),  # no cgroup file system
    ],
)
def test_cgroup_cpu_quota_v1_and_v2(tmp_path, membership, files, expected):
    from empirical_seaice.threads import cgroup_cpu_quota

    for rel, text in files.items():
        _write(tmp_path / rel, text)
    assert cgroup_cpu_quota(tmp_path, membership) == expected


@pytest.mark.parametrize(("quota", "expected"), [(None, 8), (2.5, 2), (0.5, 1), (64.0, 8)])
def test_available_cpus_is_the_affinity_at_most_the_quota(monkeypatch, quota, expected):
    import os

    from empirical_seaice import threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: quota)
    assert threads.available_cpus() == expected
    assert threads.auto_threads() == expected
    assert threads.auto_threads(processes=3) == max(1, expected // 3)
