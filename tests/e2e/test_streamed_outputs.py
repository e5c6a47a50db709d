"""The streamed writers of the per-observation files (io/obs_outputs.py, io/output_writer.py) give the
file the whole-array writers give: dimensions, variables, attributes, encoding and values."""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest

from empirical_seaice.io import cf
from empirical_seaice.io import outputs as o
from empirical_seaice.io.obs_outputs import masked
from empirical_seaice.io.output_writer import HeldOutputs, block_rows

from .fakes import make_obs


def _describe(path):
    """Everything of a NetCDF file but the order of its variables and its creation date."""
    with netCDF4.Dataset(path) as nc:
        glob = {k: nc.getncattr(k) for k in nc.ncattrs() if k not in ("date_created", "history")}
        dims = {k: len(v) for k, v in nc.dimensions.items()}
        out = {}
        for name, v in nc.variables.items():
            v.set_auto_mask(False)
            attrs = {a: np.asarray(v.getncattr(a)).tolist() for a in v.ncattrs() if a != "_FillValue"}
            fill = v.getncattr("_FillValue") if "_FillValue" in v.ncattrs() else None
            out[name] = (str(v.dtype), v.dimensions, v.filters(), v.chunking(), attrs, fill is None, v[...])
    return glob, dims, out


def _same(a, b):
    ga, da, va = _describe(a)
    gb, db, vb = _describe(b)
    assert ga == gb and da == db and set(va) == set(vb)
    for name in va:
        *meta_a, values_a = va[name]
        *meta_b, values_b = vb[name]
        assert meta_a == meta_b, name
        np.testing.assert_array_equal(values_a, values_b)  # NaN where NaN, bit for bit elsewhere


@pytest.mark.parametrize("block", [5, 7, 64])
def test_streamed_files_equal_the_whole_array_files(tmp_path, block):
    obs = make_obs(nobs=23, sensors=("amsr2", "gmi"), ngrid=4, nstep=3)
    rng = np.random.default_rng(1)
    tb = rng.uniform(100, 280, (obs.nobs, obs.nchan)).astype(np.float32)
    emis = rng.uniform(0.5, 1.0, (obs.nobs, obs.nchan)).astype(np.float32)
    whole, streamed = tmp_path / "whole", tmp_path / "streamed"
    whole.mkdir(), streamed.mkdir()
    o.write_tb(whole / "tbsim_t.nc", tb, obs.basis, "tbsim", obs.mask)
    o.write_ice_emis(whole / "ice_emis_t.nc", emis, obs.basis, obs.mask)
    o.write_tbobs(whole / "tbobs_t.nc", obs)
    with (
        o.open_tb(streamed / "tbsim_t.nc", obs.nobs, obs.basis, "tbsim") as f_tb,
        o.open_ice_emis(streamed / "ice_emis_t.nc", obs.nobs, obs.basis) as f_emis,
        o.open_tbobs(streamed / "tbobs_t.nc", obs) as f_obs,
    ):
        assert not (streamed / "tbsim_t.nc").exists()  # the final name only once complete
        for start in range(0, obs.nobs, block):
            sl = slice(start, start + block)
            f_tb.write("tb", start, masked(tb[sl], obs.mask[sl]))
            f_emis.write("ice_emis", start, masked(emis[sl], obs.mask[sl]))
            f_obs.write("tb", start, masked(obs.tb_obs_k[sl], obs.mask[sl]))
    for name in ("tbsim_t.nc", "ice_emis_t.nc", "tbobs_t.nc"):
        _same(whole / name, streamed / name)
    assert sorted(p.name for p in streamed.iterdir()) == ["ice_emis_t.nc", "tbobs_t.nc", "tbsim_t.nc"]


def test_a_failed_stream_leaves_no_file(tmp_path):
    obs = make_obs(nobs=8)
    with pytest.raises(RuntimeError), o.open_tb(tmp_path / "tbsim_t.nc", obs.nobs, obs.basis, "tbsim") as f:
        f.write("tb", 0, np.zeros((4, obs.nchan), np.float32))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_held_files_are_promoted_or_discarded(tmp_path):
    obs = make_obs(nobs=8)
    held = HeldOutputs(tmp_path)
    final = tmp_path / "tbsim_t.nc"
    o.write_tb(held.path(final), np.ones((obs.nobs, obs.nchan), np.float32), obs.basis, "tbsim")
    o.write_tb(held.path(tmp_path / "tbzero_t.nc"), np.ones((obs.nobs, obs.nchan), np.float32), obs.basis, "tbzero")
    assert held.holds(final) and not final.exists()
    assert held.promote(final) == final and final.is_file() and not held.holds(final)
    held.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tbsim_t.nc"]


def test_a_held_file_is_synced_when_promoted_not_when_written(tmp_path, monkeypatch):
    from empirical_seaice.io.transaction import atomic

    synced, started = [], []
    real_fsync = atomic._fsync_file
    monkeypatch.setattr(atomic, "_fsync_file", lambda p: (synced.append(p.parent.name), real_fsync(p)))
    monkeypatch.setattr(atomic, "start_write_out", lambda p: started.append(p.parent.name))
    obs = make_obs(nobs=8)
    held = HeldOutputs(tmp_path)
    final = tmp_path / "tbsim_t.nc"
    with o.open_tb(held.path(final), obs.nobs, obs.basis, "tbsim", sync=False) as f:
        f.write("tb", 0, np.ones((obs.nobs, obs.nchan), np.float32))
    assert (synced, started) == ([], [".held"])
    held.promote(final)
    assert (synced, started) == ([tmp_path.name], [".held"])
    with netCDF4.Dataset(final) as nc:
        assert float(nc["tb"][...].sum()) == obs.nobs * obs.nchan


def test_blocks_fill_whole_compression_chunks():
    """A block fills whole chunks of whole rows (1 MiB: 15,420 rows of 17 channels) and whole chunks of one
    channel (about 256 KiB: four of those row chunks, 61,680 rows), the final pass's blocks (about 65,536
    rows) one of the latter."""
    rows = block_rows(10_000_000, 17)
    chunk = 1048576 // (17 * 4)
    column = cf.chunks_for((10_000_000, 17), 4, by_column=True)[0]
    assert (chunk, column) == (15_420, 61_680)
    assert rows % column == 0 and abs(rows - (1 << 18)) < column
    assert block_rows(10_000_000, 17, target=1 << 16) == column
    assert block_rows(10, 17) >= 10  # a small variable: one block
    assert cf.chunks_for((10, 17), 4, by_column=True) == (10, 1)
