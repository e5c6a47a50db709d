"""Whole chunks at any offset (the gridded product's steps) written by io/chunk_writer: the values the
netCDF library writes, and one-line refusals of an offset that does not start a whole chunk."""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest

from empirical_seaice.io import chunk_writer
from empirical_seaice.io.chunk_writer import ChunkWriter

pytestmark = pytest.mark.skipif(not chunk_writer.AVAILABLE, reason="isal or h5py not installed")


def _define(path, ng=301, ns=9, nc=5) -> None:
    with netCDF4.Dataset(path, "w") as f:
        for name, n in (("grid", ng), ("step", ns), ("channel", nc)):
            f.createDimension(name, n)
        f.createVariable("e", "f4", ("grid", "step", "channel"), zlib=True, complevel=1, chunksizes=(ng, 1, nc),
                         fill_value=np.nan)  # fmt: skip
        f.createVariable("n", "i4", ("grid", "step"), zlib=True, complevel=1, chunksizes=(ng, 1))


@pytest.mark.parametrize("threads", [1, 2])
def test_whole_chunks_by_step_equal_the_library_write(tmp_path, monkeypatch, threads):
    rng = np.random.default_rng(0)
    e = rng.random((301, 9, 5)).astype(np.float32)
    e[rng.random(e.shape) < 0.1] = np.nan
    n = rng.integers(0, 50, (301, 9)).astype(np.int32)
    library, direct = tmp_path / "library.nc", tmp_path / "direct.nc"
    _define(library)
    with netCDF4.Dataset(library, "a") as f:
        f["e"][:] = e
        f["n"][:] = n
    _define(direct)
    monkeypatch.setattr(chunk_writer, "_threads", threads)
    writer = ChunkWriter(direct, ["e", "n"])
    for t in (3, 0, 8, 1, 2, 4, 5, 6, 7):  # any order
        writer.write_chunk("e", (0, t, 0), e[:, t])
        writer.write_chunk("n", (0, t), n[:, t])
    writer.close()
    with netCDF4.Dataset(library) as a, netCDF4.Dataset(direct) as b:
        for name in ("e", "n"):
            assert a[name].filters() == b[name].filters() and a[name].chunking() == b[name].chunking()
            np.testing.assert_array_equal(b[name][:].filled(np.nan) if name == "e" else b[name][:], a[name][:])
    import h5py

    with h5py.File(direct) as f:  # the chunks are ISA-L's, not the library's: written directly
        assert f["e"].id.get_num_chunks() == 9


def test_write_chunk_refuses_an_offset_inside_a_chunk(tmp_path):
    path = tmp_path / "f.nc"
    _define(path)
    writer = ChunkWriter(path, ["e"])
    with pytest.raises(ValueError, match="not the start of a whole chunk"):
        writer.write_chunk("e", (1, 0, 0), np.zeros((301, 5), np.float32))
    writer.close(abort=True)


def test_masked_shuffle_equals_the_shuffle_of_the_masked_copy():
    rng = np.random.default_rng(1)
    values = rng.normal(240.0, 20.0, (1000, 7)).astype(np.float32)
    keep = rng.random(values.shape) < 0.7
    got = chunk_writer.shuffled(values, keep)
    want = chunk_writer.shuffled(np.where(keep, values, np.float32(np.nan)))
    np.testing.assert_array_equal(got, want)
    assert not keep.all() and np.isnan(chunk_writer.masked_values(values, keep)[~keep]).all()
    with pytest.raises(ValueError, match="mask of 6 values"):
        chunk_writer.shuffled(values, keep[:1, :6])


def _define_tb(path, nobs):
    """A file with ``tb`` (``nobs`` x 6 channels, float32, chunks of 500 rows, NaN fill); returns its path."""
    with netCDF4.Dataset(path, "w") as f:
        f.createDimension("iobs", nobs)
        f.createDimension("channel", 6)
        f.createVariable("tb", "f4", ("iobs", "channel"), zlib=True, complevel=1, chunksizes=(500, 6),
                         fill_value=np.nan)  # fmt: skip
    return path


@pytest.mark.parametrize("blocks", [[1000, 1000, 500], [2500], [700, 1300, 500], [1000, 1499, 1]])
def test_rows_masked_by_the_workers_equal_the_masked_rows(tmp_path, blocks):
    """``write(name, start, values, keep)``: NaN where ``keep`` is False, whether the block fills whole
    chunks (masked by the worker threads with the shuffle), leaves a partial chunk (masked at once), or
    ends with the variable's short last chunk."""
    rng = np.random.default_rng(2)
    tb = rng.normal(240.0, 20.0, (2500, 6)).astype(np.float32)
    keep = rng.random(tb.shape) < 0.8
    path = _define_tb(tmp_path / "f.nc", 2500)
    writer = ChunkWriter(path, ["tb"])
    start = 0
    for n in blocks:
        writer.write("tb", start, tb[start : start + n], keep[start : start + n])
        start += n
    writer.close()
    with netCDF4.Dataset(path) as f:
        got = f["tb"][:].filled(np.nan)
    np.testing.assert_array_equal(got, np.where(keep, tb, np.nan))


def test_a_mask_of_another_shape_is_refused(tmp_path):
    """A mask that is not the values' shape is a one-line error, not a broadcast (the partial-chunk path
    masks with ``np.where``, which would broadcast a row of the mask over the block)."""
    writer = ChunkWriter(_define_tb(tmp_path / "f.nc", 1000), ["tb"])
    try:
        tb = np.ones((300, 6), np.float32)
        with pytest.raises(ValueError, match=r"tb: a mask of shape \(6,\) for values of shape \(300, 6\)"):
            writer.write("tb", 0, tb, np.ones(6, bool))
    finally:
        writer.close(abort=True)


@pytest.mark.parametrize("abort", [False, True])
def test_a_signal_while_close_waits_for_the_chunks_is_raised_once_they_are_done(tmp_path, abort):
    """``close`` waits for the chunks under way; a signal's ``RunInterrupted`` met there is no chunk's
    failure: it is raised once every chunk is done, also when aborting (before, it was kept as a chunk's
    error, so an aborting close dropped it and the run went on as if no one had pressed Ctrl-C)."""
    from concurrent.futures import Future

    from empirical_seaice.errors import RunInterrupted

    path = tmp_path / "f.nc"
    _define(path)
    writer = ChunkWriter(path, ["e"])
    interrupted, failed = Future(), Future()
    interrupted.set_exception(RunInterrupted("interrupted by SIGINT"))
    failed.set_exception(OSError(28, "No space left on device"))  # a chunk's own failure after it
    writer._pending = [(interrupted, ()), (failed, ())]  # two chunks under way (done: cancel() fails)
    with pytest.raises(RunInterrupted, match="interrupted by SIGINT"):  # not the disk's error, nor the rows'
        writer.close(abort=abort)
    assert writer._pending == [] and not writer._file  # every chunk waited for, the file closed
