"""The memory-mapped cache: identical arrays, no NetCDF on a hit, rebuilt when inputs change."""

from __future__ import annotations

import dataclasses
import json
import os

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
    background maps are saved after them: the old cache stays, nothing of the new one."""
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
    assert calls[0] == nth
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
        (root / "tau.npy").unlink()
    obs2, _ = read_training_data(ds.config, NLAG, cdir)
    assert len(fresh) == 2
    _assert_same(obs1, obs2)
    obs3, _ = read_training_data(ds.config, NLAG, cdir)
    assert isinstance(obs3.tau, np.memmap) and len(fresh) == 2


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
