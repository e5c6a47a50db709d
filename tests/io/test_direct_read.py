"""io/direct_read.py: variables read straight from their HDF5 chunks give the netCDF library's values,
and the reader falls back to the netCDF library where the storage does not allow it."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import direct_read, read_training_data
from empirical_seaice.io._netcdf import as_float

NOBS, NCHAN = 1000, 5


def _values(dtype) -> np.ma.MaskedArray:
    rng = np.random.default_rng(1)
    if np.dtype(dtype).kind == "i":
        data = rng.integers(0, 5000, size=(NOBS, NCHAN)).astype(dtype)
    else:
        data = rng.uniform(0.0, 300.0, size=(NOBS, NCHAN)).astype(dtype)
    mask = np.zeros(data.shape, dtype=bool)
    mask[rng.integers(0, NOBS, 40), rng.integers(0, NCHAN, 40)] = True
    return np.ma.masked_array(data, mask)


def _write(path: Path, dims: int = 2, dtype=np.float32, fill=None, **storage) -> np.ndarray:
    """One variable ``V`` ((NOBS, NCHAN), or its first column) written with the netCDF library and
    ``storage`` (chunksizes, zlib, shuffle, fletcher32, endian, format, ...); returns what it holds."""
    fmt = storage.pop("format", "NETCDF4")
    attrs = storage.pop("attrs", {})
    values = _values(dtype)
    if storage.get("endian") == "big":
        dtype = np.dtype(dtype).newbyteorder(">")
        values = values.astype(dtype)
    if dims == 1:
        values = values[:, 0]
        if "chunksizes" in storage:
            storage["chunksizes"] = storage["chunksizes"][:1]
    with netCDF4.Dataset(str(path), "w", format=fmt) as ds:
        ds.createDimension("nobs", NOBS)
        ds.createDimension("nchan", NCHAN)
        var = ds.createVariable("V", dtype, ("nobs", "nchan")[:dims], fill_value=fill, **storage)
        for k, v in attrs.items():
            var.setncattr(k, v)
        var[...] = values
    return values


def _netcdf_rows(path: Path, a: int, b: int, dtype=np.float32) -> np.ndarray:
    with netCDF4.Dataset(str(path)) as ds:
        return as_float(ds["V"][a:b], dtype, fills=False)


def _direct_rows(stored: direct_read.StoredVariable, a: int, b: int, dtype=np.float32) -> np.ndarray:
    """The rows as the readers make them of the blocks: the fill value masked to NaN."""
    parts, at = [], a
    for lo, hi, values in stored.blocks(a, b):
        assert lo == at and hi > lo
        block = np.asarray(values, dtype=dtype).copy()
        block[values == stored.fill] = np.nan
        parts.append(block)
        at = hi
    assert at == b
    return np.concatenate(parts)


@pytest.mark.parametrize(
    "storage",
    [
        {},  # contiguous
        {"chunksizes": (64, NCHAN)},
        {"chunksizes": (64, NCHAN), "zlib": True, "complevel": 4, "shuffle": False},
        {"chunksizes": (64, NCHAN), "zlib": True, "shuffle": True},
        {"chunksizes": (300, NCHAN), "shuffle": True, "zlib": True, "complevel": 1},
    ],
    ids=["contiguous", "chunked", "deflate", "shuffle-deflate", "shuffle-deflate-300"],
)
@pytest.mark.parametrize("fill", [None, -1.5, 9.96921e36])
def test_stored_rows_equal_the_netcdf_library(tmp_path, storage, fill):
    path = tmp_path / "v.nc"
    _write(path, fill=fill, **storage)
    stored = direct_read.locate(path, "V")
    assert isinstance(stored, direct_read.StoredVariable), stored
    assert stored.deflate == bool(storage.get("zlib")) and stored.shuffle == bool(storage.get("shuffle"))
    for a, b in [(0, NOBS), (5, 77), (64, 128), (999, 1000), (130, 900)]:
        want = _netcdf_rows(path, a, b)
        np.testing.assert_array_equal(_direct_rows(stored, a, b), want, err_msg=f"rows {a}:{b}")
    assert np.isnan(_netcdf_rows(path, 0, NOBS)).sum() > 30  # the masked values (fill) were seen as NaN


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.float32])
def test_one_dimensional_variables_of_each_type(tmp_path, dtype):
    path = tmp_path / "v.nc"
    _write(path, dims=1, dtype=dtype, chunksizes=(100, NCHAN), zlib=True, shuffle=True)
    stored = direct_read.locate(path, "V", (np.float32, np.float64, np.int32))
    assert isinstance(stored, direct_read.StoredVariable), stored
    want = _netcdf_rows(path, 0, NOBS, np.float64)
    got = _direct_rows(stored, 0, NOBS, np.float64)
    assert np.isnan(want).sum() > 0  # the masked values (the default fill) were seen
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("storage", "why"),
    [
        ({"chunksizes": (64, NCHAN), "zlib": True, "fletcher32": True}, "filters"),
        ({"endian": "big"}, "type >f4"),
        ({"attrs": {"scale_factor": 0.5}}, "scale_factor"),
        ({"attrs": {"valid_max": 100.0}}, "valid_max"),
        ({"chunksizes": (64, 2)}, "second dimension"),
        ({"format": "NETCDF3_CLASSIC"}, "not an HDF5"),
    ],
    ids=["fletcher32", "big-endian", "scale_factor", "valid_max", "chunks-across-channels", "netcdf3"],
)
def test_unsupported_storage_is_named(tmp_path, storage, why):
    path = tmp_path / "v.nc"
    _write(path, **storage)
    stored = direct_read.locate(path, "V")
    assert isinstance(stored, str) and why in stored


def _recompress(root: Path, sensor: str, **storage) -> None:
    """Rewrite every file of ``sensor`` (layout C) with the storage options (chunked over the first
    dimension only)."""
    for path in sorted((root / sensor).glob("*.nc")):
        with netCDF4.Dataset(str(path)) as src:
            items = [(name, var.dimensions, var[...], var.dtype) for name, var in src.variables.items()]
            dims = {name: len(d) for name, d in src.dimensions.items()}
        with netCDF4.Dataset(str(path), "w") as dst:
            for name, size in dims.items():
                dst.createDimension(name, size)
            for name, vdims, data, dtype in items:
                chunks = (7,) + tuple(dims[d] for d in vdims[1:])
                var = dst.createVariable(name, dtype, vdims, chunksizes=chunks, **storage)
                var[...] = data


@pytest.mark.parametrize("threads", [1, 2])
def test_read_equals_the_netcdf_path_with_compressed_and_fallback_files(dataset, tmp_path, monkeypatch, threads):
    """Three sensors: one stored contiguous (the writers' default), one chunked with shuffle and
    deflate, one with Fletcher-32 (read by the netCDF library); bad values in some rows. Every array
    of the read, and of the cache it builds, equals the netCDF library's read."""
    from empirical_seaice.io import per_channel

    def spoil(sensor, f):
        f["OBSVALUE"][3, 1] = np.nan
        f["TAUSFC"][7, 0] = -999.0
        f["TSFC"][5] = np.nan

    ds = dataset("C", sensors=("amsr2", "gmi", "ssmisf17"), nobs=60, edit=spoil)
    _recompress(ds.root, "gmi", zlib=True, shuffle=True)
    _recompress(ds.root, "ssmisf17", zlib=True, fletcher32=True)
    monkeypatch.setattr(per_channel, "THREADS", threads)
    monkeypatch.setattr(direct_read, "ENABLED", False)
    want, bg_want = read_training_data(ds.config, 1)
    monkeypatch.setattr(direct_read, "ENABLED", True)
    read = []
    real = direct_read.locate
    monkeypatch.setattr(direct_read, "locate", lambda *a, **k: read.append(r := real(*a, **k)) or r)
    for cache_dir in (None, tmp_path / "cache"):
        got, bg = read_training_data(ds.config, 1, cache_dir=cache_dir)
        assert got.source_digest == want.source_digest
        for name, arr in want.arrays().items():
            np.testing.assert_array_equal(np.asarray(getattr(got, name)), arr, err_msg=name)
        np.testing.assert_array_equal(np.asarray(bg.sic), bg_want.sic)
    direct = [r for r in read if not isinstance(r, str)]
    assert {r.path.parent.name for r in direct} == {"amsr2", "gmi"}  # ssmisf17's Fletcher-32: the netCDF path
    assert any(r.deflate and r.shuffle for r in direct) and any(not r.chunked for r in direct)
    assert (~want.mask[want.isensor == 1]).any()  # the bad values were seen


def test_damaged_chunk_is_a_one_line_error_naming_file_and_variable(dataset, monkeypatch):
    ds = dataset("C", sensors=("amsr2",), nobs=60)
    _recompress(ds.root, "amsr2", zlib=True, shuffle=True)
    path = next((ds.root / "amsr2").glob("*TDOWN.nc"))
    stored = direct_read.locate(path, "TDOWN")
    assert isinstance(stored, direct_read.StoredVariable)
    _, offset, size = stored.pieces[1]
    with open(path, "r+b") as f:  # the second chunk's deflate stream overwritten
        f.seek(offset)
        f.write(b"\xff" * size)
    with pytest.raises(SeaIceError) as info:
        read_training_data(ds.config, 1)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and "variable TDOWN" in msg and "row 7" in msg


def test_directly_read_fields_open_no_netcdf_file(dataset, monkeypatch):
    """The per-channel pass opens a file with the netCDF library only for the variables it cannot read
    from their storage (here ssmisf17's, Fletcher-32), and reads the same values."""
    from empirical_seaice.io import per_channel

    ds = dataset("C", sensors=("amsr2", "gmi", "ssmisf17"), nobs=40)
    _recompress(ds.root, "gmi", zlib=True, shuffle=True)
    _recompress(ds.root, "ssmisf17", zlib=True, fletcher32=True)
    monkeypatch.setattr(direct_read, "ENABLED", False)
    want, _ = read_training_data(ds.config, 1)
    monkeypatch.setattr(direct_read, "ENABLED", True)
    opened = []
    real = per_channel.open_netcdf
    monkeypatch.setattr(per_channel, "open_netcdf", lambda path: opened.append(path) or real(path))
    got, _ = read_training_data(ds.config, 1)
    assert opened and {p.parent.name for p in opened} == {"ssmisf17"}
    for name, arr in want.arrays().items():
        np.testing.assert_array_equal(np.asarray(getattr(got, name)), arr, err_msg=name)


def test_chunk_infos_in_one_call_equal_one_call_per_chunk(tmp_path):
    import h5py

    path = tmp_path / "c.nc"
    with netCDF4.Dataset(str(path), "w") as ds:
        ds.createDimension("n", 100)
        ds.createDimension("c", 3)
        var = ds.createVariable("V", "f4", ("n", "c"), chunksizes=(7, 3), zlib=True, shuffle=True)
        var[...] = np.arange(300, dtype=np.float32).reshape(100, 3)
    with h5py.File(str(path), "r") as f:
        ds = f["V"]
        n = ds.id.get_num_chunks()
        got = direct_read._chunk_infos(ds, n)
        assert n == 15 and sorted(got) == sorted(ds.id.get_chunk_info(k) for k in range(n))


def test_a_variable_shorter_than_its_unlimited_dimension_is_read_by_the_netcdf_library(tmp_path):
    """On an unlimited dimension HDF5 stores each variable's own extent, shorter than the netCDF
    dimension when fewer records were written to it: that variable goes through the netCDF library
    (its missing rows are fill values), the full-length one is still read directly."""
    path = tmp_path / "short.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("nobs", None)
        ds.createVariable("FULL", "f4", ("nobs",), zlib=True)[:8] = np.arange(8.0)
        ds.createVariable("SHORT", "f4", ("nobs",), zlib=True)[:5] = np.arange(5.0)
    with netCDF4.Dataset(path) as ds:
        assert ds["SHORT"].shape == (8,)  # the netCDF view: the dimension's length
    full, short = direct_read.locate(path, "FULL"), direct_read.locate(path, "SHORT")
    assert isinstance(full, direct_read.StoredVariable) and full.shape == (8,)
    assert short == "5 rows stored of an unlimited dimension of 8 (the netCDF library fills the rest)"


def test_chunks_stored_as_is_next_to_each_other_are_read_as_one_block(tmp_path, monkeypatch):
    """Unfiltered chunks lying next to each other in the file come as one block (one read), at most
    JOINED_BLOCK_BYTES long; the values are the netCDF library's, for any rows."""
    path = tmp_path / "v.nc"
    _write(path, chunksizes=(64, NCHAN))  # 16 chunks of 64 rows (1,280 bytes each)
    stored = direct_read.locate(path, "V")
    assert isinstance(stored, direct_read.StoredVariable) and not (stored.shuffle or stored.deflate)
    assert len(stored.pieces) == 16
    adjacent = all(b[1] == a[1] + a[2] for a, b in zip(stored.pieces, stored.pieces[1:], strict=False))
    assert adjacent  # how the netCDF library writes a small variable
    assert [(a, b) for a, b, _ in stored.blocks(0, NOBS)] == [(0, NOBS)]
    monkeypatch.setattr(direct_read, "JOINED_BLOCK_BYTES", 3 * 64 * NCHAN * 4)  # three chunks a block
    bounds = [(a, b) for a, b, _ in stored.blocks(100, 900)]  # from the chunk holding row 100 (64..127)
    assert bounds == [(100, 256), (256, 448), (448, 640), (640, 832), (832, 900)]
    for a, b in [(0, NOBS), (100, 900), (999, 1000), (64, 65)]:
        np.testing.assert_array_equal(_direct_rows(stored, a, b), _netcdf_rows(path, a, b), err_msg=f"rows {a}:{b}")


def test_a_file_cut_short_in_a_joined_read_is_a_one_line_error(tmp_path):
    path = tmp_path / "v.nc"
    _write(path, chunksizes=(64, NCHAN))
    stored = direct_read.locate(path, "V")
    assert isinstance(stored, direct_read.StoredVariable)
    row0, offset, size = stored.pieces[-1]
    with open(path, "r+b") as f:  # the last chunk's second half gone
        f.truncate(offset + size // 2)
    with pytest.raises(SeaIceError) as info:
        list(stored.blocks(0, NOBS))
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and "variable V" in msg and f"row {row0}" in msg
    assert "truncated" in msg and f"({size // 2} of {size} bytes)" in msg
