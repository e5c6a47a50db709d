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
