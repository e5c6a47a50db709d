"""The reader's threaded per-channel pass and its duplicate check give what the sequential code gives."""

from __future__ import annotations

import numpy as np
import pytest

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import per_channel, read_training_data
from empirical_seaice.io.per_observation import _shared_time_order


def _spoil_gmi(sensor, f):
    if sensor != "amsr2":
        f["TDOWN"][:30] = np.nan  # 75 % of the second sensor's values missing


@pytest.mark.parametrize("threads, part_rows", [(1, 1 << 18), (2, 1 << 18), (2, 1)])
def test_threaded_read_equals_one_thread(dataset, tmp_path, monkeypatch, threads, part_rows):
    """Every array of a three-sensor read, with bad values in some rows, equals the one-thread read
    bit for bit, from the NetCDF files and from the cache the threaded read builds; also with every
    sensor's atmosphere read in two parts (``part_rows`` 1)."""

    def spoil(sensor, f):
        f["OBSVALUE"][3, 1] = np.nan  # a dirty row: its other fields are zeroed
        f["TAUSFC"][7, 0] = -999.0

    ds = dataset("C", sensors=("amsr2", "gmi", "ssmisf17"), nobs=60, edit=spoil)
    monkeypatch.setattr(per_channel, "THREADS", 1)
    want, bg_want = read_training_data(ds.config, 1)
    monkeypatch.setattr(per_channel, "THREADS", threads)
    monkeypatch.setattr(per_channel, "ATMOSPHERE_PART_ROWS", part_rows)
    assert len(per_channel._parts(20)) == (2 if part_rows == 1 else 1)
    for cache_dir in (None, tmp_path / "cache", tmp_path / "cache"):  # fresh, building, hit
        got, bg = read_training_data(ds.config, 1, cache_dir=cache_dir)
        assert got.source_digest == want.source_digest
        for name, arr in want.arrays().items():
            np.testing.assert_array_equal(np.asarray(getattr(got, name)), arr, err_msg=name)
        np.testing.assert_array_equal(np.asarray(bg.sic), bg_want.sic)
    assert (~want.mask[want.isensor == 0]).any()  # the bad values were seen


@pytest.mark.parametrize("part_rows", [1 << 18, 1])
def test_threaded_read_error_is_the_first_pairs_one_line(dataset, monkeypatch, part_rows):
    """Two sensors' TDOWN mostly missing: on two threads the error is still one line naming the first
    sensor's file in the sequential order (gmi before ssmisf17); with the atmosphere read in two parts
    (``part_rows`` 1: the first all missing, the second half) the count is the whole sensor's (75 %)."""
    ds = dataset("C", sensors=("amsr2", "gmi", "ssmisf17"), edit=_spoil_gmi)
    monkeypatch.setattr(per_channel, "THREADS", 2)
    monkeypatch.setattr(per_channel, "ATMOSPHERE_PART_ROWS", part_rows)
    with pytest.raises(SeaIceError) as info:
        read_training_data(ds.config, 1)
    msg = str(info.value)
    assert "\n" not in msg
    assert "variable TDOWN mostly missing" in msg and "75%" in msg
    assert str(ds.root / "gmi") in msg


def test_atmosphere_parts_count_the_rows_between_them(dataset, monkeypatch):
    """The range checks count every row from the first kept observation to the last, also the dropped
    ones where the parts meet: gmi's TDOWN missing in rows 0-20 of 40 (52 %) with rows 18-20 dropped
    (no wind speed) is the same error in two parts as in one (the split falls on that gap)."""

    def spoil(sensor, f):
        if sensor == "gmi":
            f["TDOWN"][:21] = np.nan
            f["WINDSPEED10M"][18:21] = np.nan

    ds = dataset("C", sensors=("amsr2", "gmi"), edit=spoil)
    messages = []
    for part_rows in (1 << 18, 1):
        monkeypatch.setattr(per_channel, "ATMOSPHERE_PART_ROWS", part_rows)
        with pytest.raises(SeaIceError, match="variable TDOWN mostly missing") as info:
            read_training_data(ds.config, 1)
        messages.append(str(info.value))
    assert messages[0] == messages[1] and "52%" in messages[0]


def test_duplicate_check_on_shared_times_counts_as_the_full_sort():
    """Sorting only the observations that share a time with another finds the duplicates (adjacent
    equal rows in (time, grid point) order) a sort of all of them finds."""
    rng = np.random.default_rng(3)
    for trial in range(100):
        n = int(rng.integers(1, 300))
        jd = rng.integers(0, max(2, n // 3), n).astype(float) + 2459000.5
        if trial % 3 == 0:
            jd = np.sort(jd)
        grid = rng.integers(0, 4, n).astype(np.int32)
        fields = [rng.integers(0, 2, n).astype(np.float32) for _ in range(3)]

        shared = _shared_time_order(jd)
        fast = _duplicates(shared[np.lexsort((grid[shared], jd[shared]))], jd, grid, fields) if shared.size else 0
        assert fast == _duplicates(np.lexsort((grid, jd)), jd, grid, fields)
        assert np.all(np.diff(shared) > 0)


def _duplicates(order, jd, grid, fields) -> int:
    """Rows equal to the row before in ``order`` (time, grid point and the fields): the reader's count."""
    same = (jd[order][1:] == jd[order][:-1]) & (grid[order][1:] == grid[order][:-1])
    for v in fields:
        same &= v[order][1:] == v[order][:-1]
    return int(same.sum())


def test_a_signal_during_the_per_channel_read_starts_no_more_items(monkeypatch):
    """Ctrl-C while the per-channel pass's threads read: ``RunInterrupted`` reaches the run at once, and
    the items not started never start (before, every queued item still ran before the process could end,
    writing into a cache the run had already removed)."""
    import os
    import signal
    import threading
    import time

    from empirical_seaice.errors import RunInterrupted
    from empirical_seaice.io.per_channel import _run_in_order
    from empirical_seaice.run import interrupt

    done = []

    def item(k):
        time.sleep(0.2)
        done.append(k)

    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    with interrupt.handle_signals(), pytest.raises(RunInterrupted, match="interrupted by SIGINT"):
        timer.start()
        _run_in_order(item, list(range(24)), threads=2)
    at_signal = len(done)
    time.sleep(1.0)  # anything still queued would run now (five more items a thread)
    # at most the two items under way when the signal came may end after the exception (seen in 3 runs of
    # 6 here: the pool's join, interrupted by the signal, did not wait for them again); no queued item starts
    assert at_signal < 24 and len(done) <= at_signal + 2, (at_signal, done)
