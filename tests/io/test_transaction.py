"""io.transaction: the atomic-write helper, the output set and its manifest, the lock (no training here)."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import time

import pytest

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import transaction as txn


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_atomic_path_replaces_only_on_success(tmp_path):
    path = tmp_path / "a.txt"
    with txn.atomic_path(path) as tmp:
        assert tmp.name == f".a.txt.tmp{os.getpid()}"
        tmp.write_text("one")
    assert path.read_text() == "one"
    with pytest.raises(ValueError), txn.atomic_path(path) as tmp:
        tmp.write_text("two, half")
        raise ValueError("writer bug")  # a bug stays a bug (not a one-line user error)
    assert path.read_text() == "one" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    with pytest.raises(SeaIceError, match=r"a.txt: cannot write the file \(the disk is full\); free space"):
        with txn.atomic_path(path) as tmp:
            tmp.write_text("three")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert path.read_text() == "one" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_a_failed_write_in_a_staging_set_names_the_output_it_was_to_become(tmp_path):
    # the user's --output and the file's name first (before: only the hidden staging path, OUT/.sets/TAG/RUN/...)
    stage = tmp_path / "out" / txn.SETS_DIR / "t" / "run-1"
    for path in (stage / "tbzero_t.nc", stage / ".held" / "tbzero_t.nc"):
        err = str(txn.write_error(path, OSError(errno.ENOSPC, "No space left on device")))
        assert err.startswith(f"{tmp_path / 'out' / 'tbzero_t.nc'} (staged in {stage}): cannot write the file (the")
    assert str(txn.write_error(stage, OSError(errno.EROFS, "read-only"))).startswith(f"{stage}: cannot write")
    assert str(txn.write_error(tmp_path / "a.nc", OSError(errno.ENOSPC, "full"))).startswith(f"{tmp_path / 'a.nc'}: ")


def test_atomic_path_without_sync_starts_the_write_out_and_does_not_wait(tmp_path, monkeypatch):
    from empirical_seaice.io.transaction import atomic

    calls = []
    monkeypatch.setattr(atomic, "_fsync_file", lambda p: calls.append(("fsync", p.name)))
    real_start = atomic.start_write_out
    monkeypatch.setattr(atomic, "start_write_out", lambda p: (calls.append(("start", p.name)), real_start(p)))
    tmp_name = f".a.bin.tmp{os.getpid()}"
    for sync, expected in ((True, "fsync"), (False, "start")):
        calls.clear()
        with txn.atomic_path(tmp_path / "a.bin", sync=sync) as tmp:
            tmp.write_bytes(b"x" * 100_000)
        assert calls == [(expected, tmp_name)]  # the temporary file, before its rename
        assert (tmp_path / "a.bin").read_bytes() == b"x" * 100_000
    real_start(tmp_path / "missing.bin")  # nothing to write out: no error (the later fsync reports one)
    if atomic._sync_file_range is not None and os.path.isdir("/proc/self/fd"):  # Linux
        fd = os.open(tmp_path / "a.bin", os.O_RDONLY)
        try:
            assert atomic._sync_file_range(fd, 0, 0, atomic._SYNC_FILE_RANGE_WRITE) == 0  # the call succeeds
        finally:
            os.close(fd)
        atomic._write_out_pool.submit(lambda: None).result()  # the write-outs queued above done (their files
        open_fds = len(os.listdir("/proc/self/fd"))  # closed): a file still open there would be counted here
        for _ in range(5):  # queued on the background thread, which closes the file
            real_start(tmp_path / "a.bin")
        atomic._write_out_pool.submit(lambda: None).result()  # the thread has done the five
        assert len(os.listdir("/proc/self/fd")) == open_fds


def test_output_set_publishes_in_one_step_with_a_manifest(tmp_path):
    out = tmp_path / "out"
    s1 = txn.OutputSet(out, "t", argv=["x"])
    stage = s1.begin()
    (stage / "seaice_t.nc").write_text("v1")
    (stage / "old_only_t.nc").write_text("v1")
    assert not (out / "seaice_t.nc").exists()  # nothing visible before the switch
    m1 = s1.publish({"a": 1})
    s1.release()
    assert (out / "seaice_t.nc").read_text() == "v1" and (out / "seaice_t.nc").is_symlink()
    assert set(m1["files"]) == {"seaice_t.nc", "old_only_t.nc"} and txn.verify_set(out, "t") == []
    assert m1["config_hash"] == txn.config_hash({"a": 1}) and m1["status"] == "complete"
    s2 = txn.OutputSet(out, "t")
    stage2 = s2.begin()
    (stage2 / "seaice_t.nc").write_text("v2")
    assert (out / "seaice_t.nc").read_text() == "v1"  # still the old set while the new one is built
    s2.publish()
    s2.release()
    assert (out / "seaice_t.nc").read_text() == "v2"
    assert not (out / "old_only_t.nc").exists() and not os.path.lexists(out / "old_only_t.nc")
    assert sorted(p.name for p in (out / ".sets" / "t").iterdir()) == sorted(["current", s2.run_id])
    (out / ".sets" / "t" / s2.run_id / "seaice_t.nc").write_text("tampered")
    assert txn.verify_set(out, "t") == ["seaice_t.nc: checksum differs"]


@pytest.mark.parametrize("inherit", [False, True])
def test_a_copy_made_with_its_links_followed_is_an_output_directory_again(tmp_path, caplog, inherit):
    """``cp -rL`` (what the docs advise for copying an output directory) turns ``.sets/t/current`` into a
    directory and every published name into a plain file. A run into the copy removed the copy's set
    directories and then failed to switch ``current`` (IsADirectoryError), every time; now the copied
    ``current`` is adopted as the published set, and the next set replaces it (or, inheriting, adds to it)."""
    out, copy = tmp_path / "out", tmp_path / "copy"
    s1 = txn.OutputSet(out, "t")
    stage = s1.begin()
    (stage / "seaice_t.nc").write_text("v1")
    (stage / "old_only_t.nc").write_text("v1")
    s1.publish()
    s1.release()
    subprocess.run(["cp", "-rL", str(out), str(copy)], check=True)
    assert (copy / ".sets" / "t" / "current").is_dir() and not (copy / ".sets" / "t" / "current").is_symlink()
    assert txn.current_set(copy, "t") is None  # not a link: no published set, as the run saw it
    s2 = txn.OutputSet(copy, "t", inherit=inherit)
    (s2.begin() / "seaice_ensemble_t.nc").write_text("v2")
    assert "is a directory (a copy made with its links followed): kept as the published set" in caplog.text
    files = set(s2.publish()["files"])
    s2.release()
    assert (copy / "seaice_ensemble_t.nc").read_text() == "v2" and (copy / ".sets" / "t" / "current").is_symlink()
    assert ({"seaice_t.nc", "old_only_t.nc"} <= files) == inherit  # the adopted set's files, inherited
    assert (copy / "seaice_t.nc").read_text() == "v1"  # the copy's own file (inherited, or left as it was)
    assert sorted(p.name for p in (copy / ".sets" / "t").iterdir()) == sorted(["current", s2.run_id])
    assert txn.verify_set(copy, "t") == []
    s3 = txn.OutputSet(copy, "t")  # and a plain set after it, as in any output directory
    (s3.begin() / "seaice_t.nc").write_text("v3")
    s3.publish()
    s3.release()
    assert (copy / "seaice_t.nc").read_text() == "v3" and (copy / "seaice_t.nc").is_symlink()
    assert not os.path.lexists(copy / "seaice_ensemble_t.nc")
    assert (out / "seaice_t.nc").read_text() == "v1"  # the original untouched


@pytest.mark.parametrize("inherit_dirs", [False, True])
def test_an_inheriting_set_adds_to_the_published_one(tmp_path, inherit_dirs):
    """``inherit`` starts from the published files (``--diagsonly``); ``inherit_dirs`` also from its
    directories (``--ensemble`` adds its file to the whole set, plots included)."""
    out = tmp_path / "out"
    s1 = txn.OutputSet(out, "t")
    stage = s1.begin()
    (stage / "seaice_t.nc").write_text("v1")
    (stage / "plots_t").mkdir()
    (stage / "plots_t" / "index.html").write_text("report")
    s1.publish()
    s1.release()
    s2 = txn.OutputSet(out, "t", inherit=True, inherit_dirs=inherit_dirs)
    (s2.begin() / "seaice_ensemble_t.nc").write_text("ens")
    files = set(s2.publish()["files"])
    s2.release()
    assert {"seaice_t.nc", "seaice_ensemble_t.nc"} <= files and txn.verify_set(out, "t") == []
    assert (out / "seaice_t.nc").read_text() == "v1" and (out / "seaice_ensemble_t.nc").read_text() == "ens"
    assert ("plots_t/index.html" in files) == inherit_dirs == (out / "plots_t" / "index.html").is_file()


def test_a_publish_failing_before_the_switch_leaves_no_dangling_name(tmp_path, monkeypatch):
    """The links of a new set's new names are placed before the switch (they dangle until it): a failure
    in between, then abort(), leaves the published set's names only (before: the new names' links
    stayed, dangling)."""
    from empirical_seaice.io.transaction import output_set

    out = tmp_path / "out"
    s1 = txn.OutputSet(out, "t")
    (s1.begin() / "seaice_t.nc").write_text("v1")
    s1.publish()
    s1.release()
    s2 = txn.OutputSet(out, "t", inherit=True)
    (s2.begin() / "seaice_ensemble_t.nc").write_text("ens")

    def disk_full(name):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(output_set, "fault_point", disk_full)
    with pytest.raises(SeaIceError, match="disk is full"):
        s2.publish()
    assert os.path.islink(out / "seaice_ensemble_t.nc")  # placed, dangling until the switch that never came
    s2.abort()
    s2.release()
    assert sorted(p.name for p in out.iterdir()) == [".sets", "manifest_t.json", "seaice_t.nc"]
    assert (out / "seaice_t.nc").read_text() == "v1" and txn.verify_set(out, "t") == []


def test_aborted_set_leaves_nothing_and_an_empty_new_directory_goes(tmp_path):
    out = tmp_path / "out"
    s = txn.OutputSet(out, "t")
    (s.begin() / "x_t.nc").write_text("x")
    s.abort()
    s.release()
    assert not out.exists()


def test_lock_refuses_a_live_run_and_takes_over_a_dead_one(tmp_path, caplog):
    a = txn.OutputLock(tmp_path, "t")
    a.acquire(["first"])
    with pytest.raises(SeaIceError, match=rf"--tag t: another run \(pid {os.getpid()} on {socket.gethostname()}"):
        txn.OutputLock(tmp_path, "t").acquire()
    assert txn.OutputLock(tmp_path, "u").acquire() is None  # another tag: its own lock
    a.release()
    host = socket.gethostname()
    a.path.write_text(json.dumps({"pid": _dead_pid(), "host": host, "start": None, "time": "t"}))
    b = txn.OutputLock(tmp_path, "t")
    with caplog.at_level("WARNING"):
        b.acquire()
    assert "stale lock" in caplog.text and json.loads(b.path.read_text())["pid"] == os.getpid()
    b.release()
    # a live pid that started at another time is a reused pid: stale too
    a.path.write_text(json.dumps({"pid": os.getpid(), "host": host, "start": "1", "time": "t"}))
    txn.OutputLock(tmp_path, "t").acquire()
    a.path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "start": None, "time": "t"}))
    with pytest.raises(SeaIceError, match=r"pid 1 on elsewhere.*\(if that run is gone, remove .*\.lock_t\)"):
        txn.OutputLock(tmp_path, "t").acquire()


def test_a_stale_lock_is_broken_only_while_it_is_still_the_stale_one(tmp_path):
    """Two runs find the same stale lock; the first removes it and takes the lock; the second, acting
    on what it read before, must not remove the first's lock (it did: both then held it, in 14 of 20
    trials of two processes racing over a stale lock)."""
    host = socket.gethostname()
    stale = {"pid": _dead_pid(), "host": host, "start": None, "time": "t"}
    first, second = txn.OutputLock(tmp_path, "t"), txn.OutputLock(tmp_path, "t")
    first.path.write_text(json.dumps(stale))
    first.acquire(["first"])  # the stale lock broken, the lock taken
    assert second._break(stale) is False  # the second run's break of what it saw: nothing removed
    assert json.loads(first.path.read_text())["argv"] == ["first"]
    with pytest.raises(SeaIceError, match="another run"):
        second.acquire(["second"])
    first.release()
    # an unreadable lock is removed only once it has been so for a minute
    first.path.write_text("{half a lock")
    assert second._break(None) is False and first.path.exists()
    os.utime(first.path, (time.time() - 120, time.time() - 120))
    assert second._break(None) is True and not first.path.exists()


def test_stale_temporaries_of_dead_processes_only(tmp_path):
    dead = tmp_path / f".x.nc.tmp{_dead_pid()}"
    live = tmp_path / f".y.nc.tmp{os.getpid()}"
    other = tmp_path / ".z.nc.tmp"
    for p in (dead, live, other):
        p.write_text("")
    assert txn.remove_stale_temporaries(tmp_path) == [dead]
    assert live.exists() and other.exists()
