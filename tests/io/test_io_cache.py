"""The memory-mapped cache: identical arrays, no NetCDF on a hit, rebuilt when inputs change."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from empirical_seaice.io import cache as cache_mod
from empirical_seaice.io import read_training_data
from empirical_seaice.io.layout_writers import write_backgrounds, write_netcdf

NLAG = 1


def _no_netcdf(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("netCDF4.Dataset opened on a cache hit")

    monkeypatch.setattr(netCDF4, "Dataset", boom)


def _fresh_reads(monkeypatch) -> list[int]:
    """Count the reads of the NetCDF files (a cache miss): a rebuilt cache, like a hit, is returned as
    memory maps, so the arrays' type does not tell them apart."""
    from empirical_seaice.io import reader

    calls: list[int] = []
    orig = reader._read_fresh
    monkeypatch.setattr(reader, "_read_fresh", lambda *a, **k: calls.append(1) or orig(*a, **k))
    return calls


def _assert_same(a, b):
    for name, arr in a.arrays().items():
        np.testing.assert_array_equal(getattr(b, name), arr, err_msg=name)
        assert getattr(b, name).dtype == arr.dtype, name


def test_second_read_comes_from_memmap_without_netcdf(dataset, tmp_path, monkeypatch):
    ds = dataset("C", sensors=("amsr2", "gmi"))
    cdir = tmp_path / "out"
    obs1, bg1 = read_training_data(ds.config, NLAG, cdir)
    manifest = json.loads((cdir / "observations" / "manifest.json").read_text())
    assert manifest["meta"]["nobs"] == 80 and manifest["meta"]["sensors"] == ["amsr2", "gmi"]
    _no_netcdf(monkeypatch)
    obs2, bg2 = read_training_data(ds.config, NLAG, cdir)
    assert isinstance(obs2.tb_obs_k, np.memmap) and isinstance(obs2.julian_day, np.memmap)
    assert isinstance(bg2.sic, np.memmap)
    assert not obs2.tb_obs_k.flags.writeable
    _assert_same(obs1, obs2)
    np.testing.assert_array_equal(bg2.sic, bg1.sic)
    np.testing.assert_array_equal(bg2.t_skin_map_k, bg1.t_skin_map_k)
    np.testing.assert_array_equal(obs2.lon, obs1.lon)
    assert (obs2.ngrid, obs2.nstep, obs2.jd_origin, obs2.stepstart) == (
        obs1.ngrid,
        obs1.nstep,
        obs1.jd_origin,
        obs1.stepstart,
    )
    assert obs2.basis.channel_names == obs1.basis.channel_names
    assert bg2.nlag == NLAG
    # A subset of a memmapped cache is an ordinary array.
    assert obs2.take(np.array([0, 5])).tb_obs_k.shape == (2, obs1.nchan)


@pytest.mark.parametrize("layout", ["A", "B"])
def test_changed_input_file_rebuilds(dataset, tmp_path, layout, monkeypatch):
    ds = dataset(layout)
    fresh = _fresh_reads(monkeypatch)
    cdir = tmp_path / "out"
    obs1, _ = read_training_data(ds.config, NLAG, cdir)
    if layout == "A":
        path = ds.config.data
        fields = dict(ds.fields["amsr2"], OBSVALUE=ds.fields["amsr2"]["OBSVALUE"] + 1.0)
        write_netcdf(path, fields)
        new = fields["OBSVALUE"][:, 4:]
    else:
        path = ds.root / "field_v2_OBSVALUE.nc"
        new = ds.fields["amsr2"]["OBSVALUE"] + 1.0
        write_netcdf(path, {"OBSVALUE": new})
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    obs2, _ = read_training_data(ds.config, NLAG, cdir)
    np.testing.assert_array_equal(obs2.tb_obs_k, new)
    np.testing.assert_array_equal(obs2.tb_obs_k, obs1.tb_obs_k + 1.0)
    assert len(fresh) == 2 and isinstance(obs2.tb_obs_k, np.memmap)  # rebuilt, read back as memory maps


def test_changed_config_or_nlag_rebuilds(dataset, tmp_path, monkeypatch):
    ds = dataset("C")
    fresh = _fresh_reads(monkeypatch)
    # A (ngrid, nstep) SIC file fits any nlag (padded at the start).
    write_backgrounds(ds.root, ds.background["sic"][:, :4], ds.background["t_skin_map_k"])
    cdir = tmp_path / "out"
    read_training_data(ds.config, NLAG, cdir)
    obs, bg = read_training_data(dataclasses.replace(ds.config, stepstart=1), NLAG, cdir)
    assert obs.stepstart == 1 and obs.nstep == 3 and len(fresh) == 2
    obs, bg = read_training_data(dataclasses.replace(ds.config, stepstart=1), 2, cdir)
    assert bg.nlag == 2 and bg.sic.shape == (12, 5) and len(fresh) == 3
    again, _ = read_training_data(dataclasses.replace(ds.config, stepstart=1), 2, cdir)
    assert isinstance(again.tb_obs_k, np.memmap) and len(fresh) == 3


def test_cache_disabled_by_config(dataset, tmp_path):
    ds = dataset("C")
    cdir = tmp_path / "out"
    read_training_data(dataclasses.replace(ds.config, cache=False), NLAG, cdir)
    assert not cdir.exists()


@pytest.mark.parametrize("where", ["array filled in place", "background array saved"])
def test_interrupted_write_leaves_no_half_cache(dataset, tmp_path, monkeypatch, where):
    """Interrupted while the reader fills the cache's arrays in place (the 5th array), or while the
    background maps are saved (on a thread beside the read; the interruption raised from there): the
    old cache stays, nothing of the new one."""
    ds = dataset("C")
    cdir = tmp_path / "out"
    obs_ok, _ = read_training_data(ds.config, NLAG, cdir)  # a good cache exists
    owner, name, nth = (cache_mod.CacheWriter, "zeros", 5) if where.startswith("array") else (np, "save", 2)
    real = getattr(owner, name)
    calls = [0]

    def failing(*a, **k):
        calls[0] += 1
        if calls[0] == nth:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(owner, name, failing)
    with pytest.raises(KeyboardInterrupt):
        read_training_data(dataclasses.replace(ds.config, stepstart=1), NLAG, cdir)
    monkeypatch.setattr(owner, name, real)
    assert calls[0] == nth if owner is not np else calls[0] >= nth  # the maps are saved beside the read
    assert sorted(p.name for p in cdir.iterdir() if p.name != ".lock") == ["observations"]
    # The old cache is intact and still a hit for its own configuration.
    _no_netcdf(monkeypatch)
    obs, _ = read_training_data(ds.config, NLAG, cdir)
    assert isinstance(obs.tb_obs_k, np.memmap)
    _assert_same(obs_ok, obs)


@pytest.mark.parametrize("damage", ["manifest", "array"])
def test_damaged_cache_rebuilds(dataset, tmp_path, damage, monkeypatch):
    ds = dataset("C")
    fresh = _fresh_reads(monkeypatch)
    cdir = tmp_path / "out"
    obs1, _ = read_training_data(ds.config, NLAG, cdir)
    root = cdir / "observations"
    if damage == "manifest":
        (root / "manifest.json").write_text("{not json")
    else:
        (root / "tau_eff.npy").unlink()
    obs2, _ = read_training_data(ds.config, NLAG, cdir)
    assert len(fresh) == 2
    _assert_same(obs1, obs2)
    obs3, _ = read_training_data(ds.config, NLAG, cdir)
    assert isinstance(obs3.tau_eff, np.memmap) and len(fresh) == 2


def test_an_array_changed_in_place_after_the_build_rebuilds_with_a_warning(dataset, tmp_path, monkeypatch, caplog):
    """An edit that keeps the file's size (here the TBs zeroed through a writable map, as another program
    could) is noticed by its modification time: the run reads the files again rather than train on it."""
    ds = dataset("C")
    fresh = _fresh_reads(monkeypatch)
    cdir = tmp_path / "out"
    obs1, _ = read_training_data(ds.config, NLAG, cdir)
    tb1 = np.array(obs1.tb_obs_k)  # obs1 maps the file about to be damaged
    path = cdir / "observations" / "tb_obs_k.npy"
    size = path.stat().st_size
    t0 = path.stat().st_mtime_ns
    m = np.load(path, mmap_mode="r+")
    m[:] = 0
    m.flush()
    del m
    os.utime(path, ns=(t0 + 10**9, t0 + 10**9))  # a clock too coarse to show the write: the test sets it
    assert path.stat().st_size == size
    with caplog.at_level("WARNING"):
        obs2, _ = read_training_data(ds.config, NLAG, cdir)
    assert len(fresh) == 2
    assert "tb_obs_k.npy changed since the cache was built" in caplog.text
    np.testing.assert_array_equal(obs2.tb_obs_k, tb1)
    assert float(np.nanmin(obs2.tb_obs_k)) > 50.0
    obs3, _ = read_training_data(ds.config, NLAG, cdir)
    assert len(fresh) == 2 and isinstance(obs3.tb_obs_k, np.memmap)


def test_cache_key_depends_on_files_config_and_nlag(dataset):
    ds = dataset("B")
    files = sorted(ds.root.glob("*.nc"))
    k = cache_mod.cache_key(files, ds.config, 1)
    assert k == cache_mod.cache_key(files, ds.config, 1) and len(k) == 64
    assert k != cache_mod.cache_key(files, ds.config, 2)
    assert k != cache_mod.cache_key(files[:-1], ds.config, 1)
    assert k != cache_mod.cache_key(files, dataclasses.replace(ds.config, nsteps=2), 1)


def test_checksums_on_threads_equal_one_by_one(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for k, size in enumerate([0, 1, 5000, (1 << 22) + 17, 3 * (1 << 20)]):
        p = tmp_path / f"f{k}.bin"
        p.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        files.append(p)
    one = [cache_mod.file_checksum(p) for p in files]
    assert cache_mod.file_checksums(files, threads=2) == one == cache_mod.file_checksums(files, threads=1)
    import zlib

    assert one[3] == f"{zlib.crc32(files[3].read_bytes()):08x}"  # the chunked CRC is the whole file's


def test_full_disk_while_building_is_one_line_and_leaves_no_temporary(dataset, tmp_path, monkeypatch):
    """The arrays filled in place are allocated on disk first: a full disk is an error there (not a
    SIGBUS on a page of the map), named in one line, and the temporary directory goes."""
    import errno

    from empirical_seaice.errors import SeaIceError

    ds = dataset("C")
    cdir = tmp_path / "out"
    calls = [0]
    real = os.posix_fallocate

    def full(fd, offset, length):
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(SeaIceError, match=r"out: cannot write the data cache \(No space left on device\)"):
        read_training_data(ds.config, NLAG, cdir)
    assert calls[0] == 3
    assert sorted(p.name for p in cdir.iterdir()) == [".lock"]
    monkeypatch.undo()
    obs, _ = read_training_data(ds.config, NLAG, cdir)  # space again: the cache is built
    assert isinstance(obs.tb_obs_k, np.memmap) and (cdir / "observations" / "manifest.json").is_file()


def test_first_read_returns_read_only_maps_or_one_line_error(dataset, tmp_path, monkeypatch):
    """The first read returns the cache's read-only maps, never the writable ones it filled (a write to
    them would change the published cache); a cache that does not read back is a one-line error."""
    from empirical_seaice.errors import SeaIceError

    ds = dataset("C", sensors=("amsr2",))
    obs, bg = read_training_data(ds.config, NLAG, tmp_path / "a")
    assert isinstance(obs.tb_obs_k, np.memmap) and not obs.tb_obs_k.flags.writeable
    assert not bg.sic.flags.writeable
    monkeypatch.setattr(cache_mod, "load", lambda *a, **k: None)
    with pytest.raises(SeaIceError, match="does not read back; delete it and rerun"):
        read_training_data(ds.config, NLAG, tmp_path / "b")


def test_commit_behind_of_a_cache_that_does_not_read_back_is_a_one_line_error(dataset, tmp_path, monkeypatch):
    """The read behind which the cache is committed refuses a cache whose files do not map back, and leaves
    no temporary directory (nothing is committed)."""
    from empirical_seaice.errors import SeaIceError

    ds = dataset("C", sensors=("amsr2",))
    monkeypatch.setattr(cache_mod, "_open_maps", lambda *a, **k: None)
    with pytest.raises(SeaIceError, match="does not read back; delete it and rerun"):
        read_training_data(ds.config, NLAG, tmp_path / "c", commit_behind=True)
    cache_mod.join_commits()
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [".lock"]


def test_an_array_outside_its_reservation_is_refused(tmp_path):
    writer = cache_mod.CacheWriter(tmp_path / "out")
    try:
        writer.reserve([("a", (100, 4), np.dtype(np.float32))], ahead=1)
        with pytest.raises(ValueError, match="not within the reserved"):
            writer.zeros("a", (101, 4), np.float32)
        with pytest.raises(ValueError, match="not within the reserved"):
            writer.zeros("a", (10, 4), np.float64)
        assert writer.zeros("a", (10, 4), np.float32).shape == (10, 4)
    finally:
        writer.abort()


def test_commit_behind_returns_the_maps_and_commits_the_same_cache(dataset, tmp_path, monkeypatch):
    """The cache committed behind the read: the arrays come back at once as read-only maps equal to a
    read without a cache; once joined, the cache is complete (manifest, every array) and the next
    read is a hit that opens no NetCDF file, with the same arrays; the maps returned first still
    read the same values after the rename."""
    ds = dataset("C", sensors=("amsr2", "gmi"))
    plain, plain_bg = read_training_data(dataclasses.replace(ds.config, cache=False), NLAG, tmp_path / "none")
    cdir = tmp_path / "out"
    obs, bg = read_training_data(ds.config, NLAG, cdir, commit_behind=True)
    assert isinstance(obs.tb_obs_k, np.memmap) and not obs.tb_obs_k.flags.writeable
    assert not bg.sic.flags.writeable
    cache_mod.join_commits(cdir)
    root = cdir / "observations"
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["meta"]["nobs"] == plain.nobs == 80
    assert not list(cdir.glob(".observations.*"))
    _assert_same(plain, obs)  # the first maps, read after the rename
    np.testing.assert_array_equal(bg.sic, plain_bg.sic)
    _no_netcdf(monkeypatch)
    again, again_bg = read_training_data(ds.config, NLAG, cdir)
    _assert_same(plain, again)
    np.testing.assert_array_equal(again_bg.t_skin_map_k, plain_bg.t_skin_map_k)
    assert obs.source_digest == again.source_digest == plain.source_digest


def test_pages_go_to_the_disk_during_the_read_only_for_a_commit_the_caller_waits_for(dataset, tmp_path, monkeypatch):
    """A cache committed in the foreground starts writing each per-channel array out once it is complete
    (CacheWriter.finished); one committed behind the run leaves that to the commit's flush, and both
    commit the same arrays."""
    from empirical_seaice.io.per_channel import FIELDS

    ds = dataset("C", sensors=("amsr2", "gmi"))
    started: list[str] = []
    real = cache_mod.CacheWriter.finished
    monkeypatch.setattr(cache_mod.CacheWriter, "finished", lambda self, name: started.append(name) or real(self, name))
    fg, _ = read_training_data(ds.config, NLAG, tmp_path / "fg")
    assert sorted(started) == sorted(FIELDS)
    started.clear()
    behind, _ = read_training_data(ds.config, NLAG, tmp_path / "behind", commit_behind=True)
    cache_mod.join_commits(tmp_path / "behind")
    assert started == []
    assert json.loads((tmp_path / "behind" / "observations" / "manifest.json").read_text())["meta"]["nobs"] == 80
    _assert_same(fg, behind)
    _no_netcdf(monkeypatch)
    _assert_same(fg, read_training_data(ds.config, NLAG, tmp_path / "behind")[0])  # a hit, the same arrays


def test_a_read_waits_for_the_commit_behind_it(dataset, tmp_path, monkeypatch):
    """A second read of the same cache in the process waits for the commit still running behind the
    first (it holds the cache's lock) and then finds it: a hit, not a second build."""
    import threading

    ds = dataset("C")
    fresh = _fresh_reads(monkeypatch)
    started, go = threading.Event(), threading.Event()
    real = os.fdatasync

    def slow(fd):
        started.set()
        go.wait(10)
        return real(fd)

    monkeypatch.setattr(os, "fdatasync", slow)
    cdir = tmp_path / "out"
    first, _ = read_training_data(ds.config, NLAG, cdir, commit_behind=True)
    assert started.wait(10) and not (cdir / "observations").exists()  # the commit is under way
    threading.Timer(0.2, go.set).start()
    second, _ = read_training_data(ds.config, NLAG, cdir)
    assert len(fresh) == 1 and (cdir / "observations" / "manifest.json").is_file()
    _assert_same(first, second)


@pytest.mark.parametrize("old", [False, True])
def test_a_failed_commit_behind_is_a_warning_and_leaves_no_half_cache(dataset, tmp_path, monkeypatch, caplog, old):
    """The disk fails while the cache is committed behind the read: one warning line naming the cache
    directory, no temporary left, the old cache (if any) intact and still a hit; the arrays returned
    stay readable and the next read of the new data builds the cache again."""
    import errno
    import logging

    ds = dataset("C")
    cdir = tmp_path / "out"
    if old:
        obs_old, _ = read_training_data(ds.config, NLAG, cdir)
    config = dataclasses.replace(ds.config, stepstart=1)
    plain, _ = read_training_data(dataclasses.replace(config, cache=False), NLAG, tmp_path / "none")

    def eio(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", eio)
    with caplog.at_level(logging.WARNING, logger="empirical_seaice.io.cache"):
        obs, _ = read_training_data(config, NLAG, cdir, commit_behind=True)
        cache_mod.join_commits(cdir)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"{cdir}: the data cache was not saved (Input/output error); the next run reads the files again"
    ]
    assert sorted(p.name for p in cdir.iterdir() if p.name != ".lock") == (["observations"] if old else [])
    _assert_same(plain, obs)
    monkeypatch.undo()
    if old:
        _no_netcdf(monkeypatch)
        _assert_same(obs_old, read_training_data(ds.config, NLAG, cdir)[0])
        monkeypatch.undo()
    fresh = _fresh_reads(monkeypatch)
    _assert_same(plain, read_training_data(config, NLAG, cdir)[0])
    assert (
        len(fresh) == 1 and json.loads((cdir / "observations" / "manifest.json").read_text())["meta"]["stepstart"] == 1
    )


def test_cache_of_fewer_observations_than_reserved_is_cut_to_them(dataset, tmp_path, monkeypatch):
    """The per-channel arrays are made before the per-observation fields decide which observations
    are kept (as long as the observations in the period); with observations dropped for invalid
    fields, the cache's files are cut to the kept ones: the same arrays as without a cache, files of
    exactly their header and data, read back as a hit."""

    def edit(sensor, fields):
        fields["TSFC"][[3, 17, 30]] = np.nan  # three observations dropped
        fields["WINDSPEED10M"][5] = -999.0

    ds = dataset("C", sensors=("amsr2", "gmi"), edit=edit)
    plain, _ = read_training_data(dataclasses.replace(ds.config, cache=False), NLAG, tmp_path / "none")
    assert plain.nobs == 2 * (40 - 4)
    cdir = tmp_path / "out"
    for commit_behind in (False, True):
        shutil.rmtree(cdir, ignore_errors=True)
        obs, _ = read_training_data(ds.config, NLAG, cdir, commit_behind=commit_behind)
        cache_mod.join_commits(cdir)
        _assert_same(plain, obs)
        root = cdir / "observations"
        for name in ("mask", "tb_obs_k", "const_k"):
            path = root / f"{name}.npy"
            arr = np.load(path, mmap_mode="r")
            assert arr.shape == (plain.nobs, plain.nchan)
            assert path.stat().st_size == arr.offset + arr.nbytes
        _no_netcdf(monkeypatch)
        _assert_same(plain, read_training_data(ds.config, NLAG, cdir)[0])
        monkeypatch.undo()


def test_cut_rows_rewrites_the_header_in_place(tmp_path):
    """``_cut_rows``: the header keeps its length (fewer digits padded), the data of the first rows stays."""
    path = tmp_path / "a.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(1000, 3))
    arr[:] = np.arange(3000, dtype=np.float32).reshape(1000, 3)
    arr.flush()
    offset = arr.offset
    del arr
    cache_mod._cut_rows(path, (7, 3), np.dtype(np.float32))
    back = np.load(path)
    assert back.shape == (7, 3) and back.dtype == np.float32
    np.testing.assert_array_equal(back, np.arange(21, dtype=np.float32).reshape(7, 3))
    assert path.stat().st_size == offset + 7 * 3 * 4


def test_checksum_without_memory_maps_is_the_same(tmp_path, monkeypatch):
    """A file that cannot be mapped (a file system without memory maps) is read in chunks: the same CRC."""
    import mmap
    import zlib

    path = tmp_path / "f.bin"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, (1 << 22) + 5, dtype=np.uint8).tobytes())
    want = f"{zlib.crc32(path.read_bytes()):08x}"
    assert cache_mod.file_checksum(path) == want

    class NoMap:
        def __init__(self, *a, **k):
            raise OSError(19, "No such device")

    monkeypatch.setattr(mmap, "mmap", NoMap)
    assert cache_mod.file_checksum(path) == want


def _mapped_rss_mib(path) -> float:
    """Resident MiB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if "-" in line.split(" ", 1)[0]:
                inside = line.rstrip().endswith(str(path))
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total / 1024


def test_reserved_arrays_beyond_the_first_are_brought_in_and_let_go(tmp_path):
    """``CacheWriter.reserve``: the first ``ahead`` arrays' pages come into memory and stay mapped; the
    others' come in and are let go again (not resident in the process, still in the file), the rows
    ``zeros`` gives out mapped once more (not those beyond, cut off before the commit); the values
    written stay."""
    if cache_mod._madvise is None or not os.path.exists("/proc/self/smaps"):
        pytest.skip("no madvise or smaps here")
    writer = cache_mod.CacheWriter(tmp_path / "out")
    try:
        arrays = [(f"a{k}", (1 << 20, 8), np.dtype(np.float32)) for k in range(3)]  # 32 MiB each
        writer.reserve(arrays, ahead=1)
        writer.wait()
        rss = [_mapped_rss_mib(writer.tmp / f"a{k}.npy") for k in range(3)]
        if rss[0] < 30:
            pytest.skip("the kernel does not populate (MADV_POPULATE_WRITE, Linux 5.14)")
        assert rss[1] < 2 and rss[2] < 2
        kept = 3 << 18  # three quarters of the reserved rows: 24 MiB
        writer.zeros("a1", (kept, 8), np.float32)
        writer.wait()
        assert 22 < _mapped_rss_mib(writer.tmp / "a1.npy") < 26  # the rows given out mapped again, not the rest
        b = writer.mapped["a1"]
        b[:] = 7.0
        writer.trim()
        back = np.load(writer.tmp / "a1.npy")
        assert back.shape == (kept, 8) and (back == 7.0).all()
    finally:
        writer.abort()


def test_join_commits_finds_the_commit_by_either_spelling_of_its_directory(dataset, tmp_path, monkeypatch):
    """A commit started with a relative cache directory is joined by the absolute one (and by all)."""
    import time

    ds = dataset("C")
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (time.sleep(0.05), real(fd))[1])
    monkeypatch.chdir(tmp_path)
    read_training_data(ds.config, NLAG, Path("rel"), commit_behind=True)
    cache_mod.join_commits(tmp_path / "rel")
    assert (tmp_path / "rel" / "observations" / "manifest.json").is_file()
    assert not cache_mod._PENDING


def test_per_observation_arrays_are_reserved_first_and_cut_to_the_rows_kept(dataset, tmp_path, monkeypatch):
    """The per-observation arrays are reserved with the per-channel ones, before them and mapped at once
    (their pages in before the reader writes them); an observation dropped for an invalid field leaves
    them, like the per-channel ones, cut to the rows kept, equal to a read without a cache."""
    from empirical_seaice.io.per_observation import PER_OBS_DTYPES
    from empirical_seaice.io.reader import RESERVE_AHEAD

    def spoil(sensor, f):
        f["TSFC"][5] = np.nan  # dropped: every array has a row fewer than the period

    ds = dataset("C", sensors=("amsr2", "gmi"), edit=spoil)
    reserved: list[tuple[list, int]] = []
    real = cache_mod.CacheWriter.reserve
    monkeypatch.setattr(
        cache_mod.CacheWriter,
        "reserve",
        lambda self, arrays, ahead: reserved.append((list(arrays), ahead)) or real(self, arrays, ahead),
    )
    plain, _ = read_training_data(dataclasses.replace(ds.config, cache=False), NLAG, tmp_path / "none")
    cached, _ = read_training_data(ds.config, NLAG, tmp_path / "c", commit_behind=True)
    cache_mod.join_commits(tmp_path / "c")
    ((arrays, ahead),) = reserved
    assert [(n, dt) for n, _, dt in arrays[: len(PER_OBS_DTYPES)]] == list(PER_OBS_DTYPES.items())
    assert {shape for _, shape, _ in arrays[: len(PER_OBS_DTYPES)]} == {(80,)}  # the period's rows
    assert ahead == len(PER_OBS_DTYPES) + RESERVE_AHEAD
    assert plain.nobs == 78  # a row of each sensor dropped
    _assert_same(plain, cached)
    for name in PER_OBS_DTYPES:
        assert np.load(tmp_path / "c" / "observations" / f"{name}.npy", mmap_mode="r").shape == (78,), name


def _slow_counted_crc(monkeypatch, pages: int, tmp_path, name: str = "big.bin"):
    """A file of ``pages`` checksum windows of one page each, and a CRC that counts its calls and takes 2 ms."""
    import mmap
    import time
    import zlib

    path = tmp_path / name
    path.write_bytes(np.random.default_rng(2).integers(0, 256, pages * mmap.PAGESIZE, dtype=np.uint8).tobytes())
    calls = []

    def crc(data, value=0):
        calls.append(1)
        time.sleep(0.002)
        return zlib.crc32(data, value)

    monkeypatch.setattr(cache_mod, "_WINDOW", mmap.PAGESIZE)
    monkeypatch.setattr(cache_mod, "crc32_function", lambda: crc)
    return path, calls


def test_checksums_beside_a_failed_read_stop_at_once(tmp_path, monkeypatch):
    """A read that fails (a bad file, a signal) does not wait for the checksums of the rest of the files:
    the checksum thread stops at its next window (before, it went through all 256 windows here)."""
    from empirical_seaice.io import reader

    path, calls = _slow_counted_crc(monkeypatch, 256, tmp_path)
    with pytest.raises(RuntimeError, match="the read failed"), reader._checksums_beside([path]) as sums:
        raise RuntimeError("the read failed")
    assert len(calls) < 64, f"{len(calls)} of 256 windows checksummed after the read failed"
    assert isinstance(sums.exception(), cache_mod.ChecksumsStopped)
    calls.clear()
    with reader._checksums_beside([path]) as sums:  # a read that succeeds waits for all of them
        pass
    assert len(calls) == 256 and sums.result() == [cache_mod.file_checksum(path)]


def test_checksums_on_threads_stop_when_one_file_fails(tmp_path, monkeypatch):
    """On two threads, an unreadable file stops the other thread's checksum instead of waiting for it."""
    from empirical_seaice.errors import SeaIceError

    path, calls = _slow_counted_crc(monkeypatch, 256, tmp_path)
    with pytest.raises(SeaIceError, match="missing.bin: cannot read the file"):
        cache_mod.file_checksums([tmp_path / "missing.bin", path], threads=2)
    assert len(calls) < 64, f"{len(calls)} of 256 windows checksummed after the other file failed"


@pytest.mark.parametrize("behind", [False, True])
def test_the_reads_warnings_are_said_again_on_every_hit(dataset, tmp_path, caplog, behind):
    """A warning about the data (here one grid index for every observation) was said by the read that
    built the cache and never again: every later run of the same files was silent. The manifest keeps the
    read's warnings, and each hit says them again, marked as the cache's; a cache of clean data says
    nothing."""

    def constant(sensor, fields):
        fields["IGRID"][:] = 3

    ds = dataset("B", nobs=150, edit=constant)
    cdir = tmp_path / "out"
    with caplog.at_level("INFO", logger="empirical_seaice"):
        obs, _ = read_training_data(ds.config, NLAG, cdir, commit_behind=behind)
        cache_mod.join_commits(cdir)
    first = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("holds one grid index (3) for every observation" in m for m in first), first
    assert obs.read_warnings == tuple(first)  # the run's summary counts them
    manifest = json.loads((cdir / "observations" / "manifest.json").read_text())
    assert manifest["meta"]["warnings"] == first
    caplog.clear()
    with caplog.at_level("INFO", logger="empirical_seaice"):
        obs, _ = read_training_data(ds.config, NLAG, cdir)
    again = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert again == [f"{m} (said when the data cache was built from these files)" for m in first]
    assert obs.read_warnings == tuple(again)
    assert [r.getMessage() for r in caplog.records if r.levelname == "INFO" and "loaded from cache" in r.getMessage()]
    caplog.clear()
    with caplog.at_level("INFO", logger="empirical_seaice"):  # without a cache
        obs, _ = read_training_data(dataclasses.replace(ds.config, cache=False), NLAG, cdir)
    logged = tuple(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert obs.read_warnings == tuple(first) == logged

    clean = dataset("B", nobs=40)  # below every sample's threshold: the read warns about nothing
    caplog.clear()
    with caplog.at_level("INFO", logger="empirical_seaice"):
        read_training_data(clean.config, NLAG, tmp_path / "clean")
        read_training_data(clean.config, NLAG, tmp_path / "clean")
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
