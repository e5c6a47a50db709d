"""Whole chunks compressed here and written directly give the file the netCDF library writes."""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest
import xarray as xr

from empirical_seaice.io import chunk_writer, output_writer
from empirical_seaice.io.chunk_writer import ChunkWriter, shuffle_bytes


def _dataset(rng) -> xr.Dataset:
    sic = rng.random((301, 37)).astype(np.float32)
    sic[rng.random(sic.shape) < 0.1] = np.nan
    count = rng.integers(0, 9, sic.shape).astype(np.int32)
    lat = np.linspace(-80, 80, 301).astype(np.float32)
    return xr.Dataset(
        {
            "sic": (("grid", "step"), sic, {"units": "1", "long_name": "sea ice concentration"}),
            "count": (("grid", "step"), count, {"units": "1", "long_name": "n"}),
            "small": (("step",), np.arange(37, dtype=np.float64), {"units": "1", "long_name": "small"}),
        },
        coords={"lat": (("grid",), lat, {"units": "degrees_north", "long_name": "lat"})},
        attrs={"title": "test"},
    )


def _compare(a, b) -> None:
    with netCDF4.Dataset(a) as x, netCDF4.Dataset(b) as y:
        assert list(x.variables) == list(y.variables)  # the same order
        for name in x.variables:
            u, w = x[name], y[name]
            assert u.dtype == w.dtype and u.dimensions == w.dimensions, name
            assert u.chunking() == w.chunking() and u.filters() == w.filters(), name
            assert [(k, str(u.getncattr(k))) for k in u.ncattrs()] == [(k, str(w.getncattr(k))) for k in w.ncattrs()]
            np.testing.assert_array_equal(
                u[:].filled(np.nan) if u.dtype.kind == "f" else u[:],
                w[:].filled(np.nan) if w.dtype.kind == "f" else w[:],
            )


@pytest.mark.parametrize("direct", [True, False])
def test_write_dataset_with_whole_chunks_equals_the_library_write(tmp_path, monkeypatch, direct):
    """Chunks at the ends of the dimensions (301 rows in chunks of the chunking rule), NaN, integers:
    the file read back equals the one written through the netCDF library alone, compressed directly
    (h5py) or, where h5py is missing, through the library by whole chunks."""
    rng = np.random.default_rng(0)
    ds = _dataset(rng)
    monkeypatch.setattr(output_writer, "DIRECT_MIN_BYTES", 1 << 60)
    output_writer.write_dataset(ds, tmp_path / "plain.nc")
    monkeypatch.setattr(output_writer, "DIRECT_MIN_BYTES", 1000)
    monkeypatch.setattr(output_writer.cf, "CHUNK_TARGET_BYTES", 37 * 4 * 50)  # 50 rows per chunk: 7 chunks
    monkeypatch.setattr(output_writer.cf, "COMPRESS_MIN_BYTES", 4096)
    output_writer.write_dataset(ds, tmp_path / "plain50.nc")
    if not direct:
        monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    seen = []
    orig = ChunkWriter.__init__

    def spy(self, *a, **k):
        orig(self, *a, **k)
        seen.append(self.direct)

    monkeypatch.setattr(ChunkWriter, "__init__", spy)
    monkeypatch.setattr(output_writer, "DIRECT_MIN_BYTES", 1000)
    output_writer.write_dataset(ds, tmp_path / "chunks.nc")
    assert seen == [direct]
    _compare(tmp_path / "plain50.nc", tmp_path / "chunks.nc")
    with netCDF4.Dataset(tmp_path / "chunks.nc") as f:
        assert f["sic"].chunking() == [50, 37]
    with xr.open_dataset(tmp_path / "plain.nc") as a, xr.open_dataset(tmp_path / "chunks.nc") as b:
        xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())


def test_unsupported_filters_go_through_the_library(tmp_path):
    """A variable with a filter other than shuffle and deflate (fletcher32 here) is written by the library."""
    path = tmp_path / "f.nc"
    with netCDF4.Dataset(path, "w") as f:
        f.createDimension("x", 10)
        f.createVariable("v", "f4", ("x",), zlib=True, fletcher32=True, chunksizes=(4,))
    values = np.arange(10, dtype=np.float32)
    with ChunkWriter(path, ["v"]) as w:
        assert not w.direct
        w.write_array("v", values)
    with netCDF4.Dataset(path) as f:
        np.testing.assert_array_equal(f["v"][:], values)


def test_put_refuses_a_start_inside_a_chunk(tmp_path):
    path = tmp_path / "f.nc"
    with netCDF4.Dataset(path, "w") as f:
        f.createDimension("x", 10)
        f.createVariable("v", "f4", ("x",), zlib=True, chunksizes=(4,))
    with pytest.raises(ValueError, match="not the start of a chunk"), ChunkWriter(path, ["v"]) as w:
        w.put("v", (2,), np.zeros(4, np.float32))


def test_shuffle_is_hdf5s_byte_order_and_the_deflate_stream_is_zlibs():
    values = np.array([1.0, -2.5, np.nan], dtype="<f4")
    raw = values.view(np.uint8).reshape(3, 4)
    assert shuffle_bytes(values).tolist() == raw.T.reshape(-1).tolist()
    import zlib

    data = memoryview(shuffle_bytes(values)).cast("B")
    assert zlib.decompress(chunk_writer._deflate(1)(data)) == bytes(data)
