"""The compressed chunks written on worker threads (io/chunk_writer.py) give the file the netCDF
library writes: dimensions, variables, attributes, filters, chunks and values, whole or streamed in
blocks that do not fill whole chunks; and the chunks are really written so (not the library's)."""

from __future__ import annotations

import numpy as np
import pytest

from empirical_seaice.io import cf, chunk_writer
from empirical_seaice.io import outputs as o
from empirical_seaice.io.obs_outputs import masked

from .fakes import make_obs
from .test_streamed_outputs import _same

pytestmark = pytest.mark.skipif(not chunk_writer.AVAILABLE, reason="isal or h5py not installed")

NOBS = 40_000  # (40000, 14) float32: two whole compression chunks of 18,724 rows and a short one


@pytest.fixture(scope="module")
def case():
    obs = make_obs(nobs=NOBS, sensors=("amsr2", "gmi"), ngrid=50, nstep=7)
    rng = np.random.default_rng(3)
    tb = rng.normal(240.0, 20.0, (obs.nobs, obs.nchan)).astype(np.float32)
    return obs, tb


def _library_files(obs, tb, folder, monkeypatch):
    """The files as the netCDF library writes them (the chunk writer switched off)."""
    with monkeypatch.context() as m:
        m.setattr(chunk_writer, "AVAILABLE", False)
        folder.mkdir()
        o.write_tb(folder / "tbsim_t.nc", tb, obs.basis, "tbsim", obs.mask)
        o.write_tbobs(folder / "tbobs_t.nc", obs)
        o.write_properties_obs(folder / "properties_obs_t.nc", tb[:, :2])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("block", [7_000, 18_724, NOBS])
def test_streamed_chunks_equal_the_library_file(case, tmp_path, monkeypatch, block, threads):
    obs, tb = case
    _library_files(obs, tb, tmp_path / "lib", monkeypatch)
    calls = []
    real = chunk_writer.ChunkWriter._deflate_and_write
    monkeypatch.setattr(chunk_writer.ChunkWriter, "_deflate_and_write", lambda s, *a: calls.append(1) or real(s, *a))
    monkeypatch.setattr(chunk_writer, "_threads", threads)
    fast = tmp_path / "fast"
    fast.mkdir()
    with (
        o.open_tb(fast / "tbsim_t.nc", obs.nobs, obs.basis, "tbsim") as f_tb,
        o.open_tbobs(fast / "tbobs_t.nc", obs) as f_obs,
    ):
        for start in range(0, obs.nobs, block):
            sl = slice(start, start + block)
            f_tb.write("tb", start, masked(tb[sl], obs.mask[sl]))
            f_obs.write("tb", start, masked(obs.tb_obs_k[sl], obs.mask[sl]))
    o.write_properties_obs(fast / "properties_obs_t.nc", tb[:, :2])  # write_dataset: whole arrays
    # tb of both files (3 chunks each), tbobs' 8 per-observation variables and the properties (1 each)
    assert cf.chunks_for((NOBS, obs.nchan), 4)[0] == 18_724
    assert len(calls) == 3 + 3 + 8 + 1
    for name in ("tbsim_t.nc", "tbobs_t.nc", "properties_obs_t.nc"):
        _same(tmp_path / "lib" / name, fast / name)


def test_rows_out_of_order_or_missing_are_refused(case, tmp_path):
    obs, tb = case
    with (
        pytest.raises(ValueError, match="out of order"),
        o.open_tb(tmp_path / "a.nc", obs.nobs, obs.basis, "tbsim") as f,
    ):
        f.write("tb", 0, tb[:100])
        f.write("tb", 200, tb[200:300])
    with (
        pytest.raises(ValueError, match="100 of 40000 rows"),
        o.open_tb(tmp_path / "b.nc", NOBS, obs.basis, "tbsim") as f,
    ):
        f.write("tb", 0, tb[:100])
    assert list(tmp_path.iterdir()) == []  # no half file under a final name


def test_a_failed_chunk_is_raised(case, tmp_path, monkeypatch):
    obs, tb = case

    def fail(*a):
        raise RuntimeError("chunk failed")

    monkeypatch.setattr(chunk_writer.ChunkWriter, "_deflate_and_write", fail)
    with pytest.raises(RuntimeError, match="chunk failed"), o.open_tb(tmp_path / "c.nc", NOBS, obs.basis, "tbsim") as f:
        f.write("tb", 0, tb)
    assert list(tmp_path.iterdir()) == []
