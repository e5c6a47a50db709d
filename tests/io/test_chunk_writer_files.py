"""The compressed chunks written on worker threads (io/chunk_writer.py) give the file the netCDF
library writes: dimensions, variables, attributes, filters, chunks and values, whole or streamed in
blocks that do not fill whole chunks; and the chunks are really written so (not the library's)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from empirical_seaice.io import cf, chunk_writer
from empirical_seaice.io import outputs as o
from empirical_seaice.io.obs_outputs import masked
from empirical_seaice.io.output_writer import write_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the e2e package's helpers
from e2e.fakes import make_obs  # noqa: E402
from e2e.test_streamed_outputs import _same  # noqa: E402

pytestmark = pytest.mark.skipif(not chunk_writer.AVAILABLE, reason="isal or h5py not installed")
h5py = pytest.importorskip("h5py")

NOBS = 120_000  # (120000, 14) float32: chunks of 18,724 whole rows; one channel a chunk, two chunks of
# 56,172 rows (three of those: cf.COLUMN_CHUNK_BYTES) and a short one


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
@pytest.mark.parametrize("block", [7_000, 18_724, 56_172, NOBS])
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
    # tb of both files (3 chunks each), tbobs' 8 per-observation variables (isensor among them: named
    # "sensor" like the sensor dimension before, it went the netCDF library's way) and the properties
    assert cf.chunks_for((NOBS, obs.nchan), 4)[0] == 18_724
    assert cf.chunks_for((NOBS, obs.nchan), 4, by_column=True)[0] == 56_172
    assert len(calls) == 3 + 3 + 8 + 1
    for name in ("tbsim_t.nc", "tbobs_t.nc", "properties_obs_t.nc"):
        _same(tmp_path / "lib" / name, fast / name)
    # the TBs one channel a chunk (cf.by_channel): 3 rows of chunks of 14 channels, every one written
    with h5py.File(fast / "tbsim_t.nc", "r") as h:
        assert h["tb"].chunks == (56_172, 1) and h["tb"].id.get_num_chunks() == 3 * obs.nchan
        assert all(h["tb"].id.get_chunk_info(k).filter_mask == 0 for k in range(3 * obs.nchan))


def test_tb_is_chunked_by_channel_and_ice_emis_by_rows(case, tmp_path):
    """cf.by_channel: a TB per observation one channel a chunk, the same rows; the emissivities whole rows."""
    obs, tb = case
    o.write_tb(tmp_path / "tbzero_t.nc", tb, obs.basis, "tbzero", obs.mask)
    o.write_ice_emis(tmp_path / "ice_emis_t.nc", tb / 300.0, obs.basis, obs.mask)
    with xr.open_dataset(tmp_path / "tbzero_t.nc") as a, xr.open_dataset(tmp_path / "ice_emis_t.nc") as b:
        assert a["tb"].encoding["chunksizes"] == (56_172, 1)
        assert b["ice_emis"].encoding["chunksizes"] == (18_724, obs.nchan)
        np.testing.assert_array_equal(a["tb"].values, masked(tb, obs.mask))
        np.testing.assert_array_equal(b["ice_emis"].values, masked(tb / 300.0, obs.mask))
    wide = np.concatenate([tb, tb + 1.0], axis=1)  # the final pass's TB and TB with SIC 0: halves of one array
    with o.open_tb(tmp_path / "tbsim_t.nc", obs.nobs, obs.basis, "tbsim") as f:
        for start in range(0, obs.nobs, 56_172):  # whole chunks: masked by the compressing threads
            rows = slice(start, start + 56_172)
            f.write("tb", start, wide[rows, obs.nchan :], obs.mask[rows])
    with xr.open_dataset(tmp_path / "tbsim_t.nc") as a:
        np.testing.assert_array_equal(a["tb"].values, masked(tb + 1.0, obs.mask))
    assert cf.chunks_for((NOBS, 14), 4, by_column=True) == (56_172, 1)
    assert cf.chunks_for((NOBS,), 4, by_column=True) == (NOBS,)  # 1-D: as ever


@pytest.mark.parametrize(
    "shape, chunks, ok",
    [
        ((100, 17), (10, 17), True),  # whole rows
        ((100, 17), (10, 1), True),  # one column a chunk (cf.by_channel)
        ((100, 17), (10, 2), False),  # columns cut otherwise
        ((100, 3, 17), (10, 1, 17), False),  # 3-D cut along a trailing dimension
        ((100,), (10,), True),
    ],
)
def test_usable_takes_whole_rows_or_one_column_a_chunk(shape, chunks, ok):
    assert chunk_writer.usable({"v": {"zlib": True, "chunksizes": chunks}}, {"v": shape}) is ok


def test_shuffled_columns_by_hand():
    """Each column's chunk in HDF5's shuffle order (byte 0 of every value, then byte 1, ...); masked values NaN."""
    words = np.array([[0x04030201, 0x08070605], [0x0C0B0A09, 0x100F0E0D]], dtype=np.uint32)
    values = words.view(np.float32)
    out = chunk_writer.shuffled_columns(values)
    assert out.tolist() == [[1, 9, 2, 10, 3, 11, 4, 12], [5, 13, 6, 14, 7, 15, 8, 16]]
    keep = np.array([[True, True], [False, True]])
    out = chunk_writer.shuffled_columns(values, keep)  # NaN: 0x7FC00000, little-endian 00 00 C0 7F
    assert out.tolist() == [[1, 0, 2, 0, 3, 0xC0, 4, 0x7F], [5, 13, 6, 14, 7, 15, 8, 16]]
    wide = np.concatenate([values, values], axis=1)  # strided columns: the same bytes
    np.testing.assert_array_equal(chunk_writer.shuffled_columns(wide[:, 2:], keep), out)
    for j in range(2):  # the row shuffle of each column alone
        np.testing.assert_array_equal(out[j], chunk_writer.shuffled(np.ascontiguousarray(values[:, j]), keep[:, j]))
    with pytest.raises(ValueError, match="mask of shape"):
        chunk_writer.shuffled_columns(values, keep[:1])


def test_shuffled_columns_four_rows_a_word_by_hand():
    """Four rows (a multiple of 4: each byte plane written as 32-bit words of four rows' bytes): byte 0 of
    rows 0-3, then byte 1, ...; a masked value NaN."""
    words = np.arange(1, 17, dtype=np.uint32).reshape(4, 4)  # bytes 4k+1 .. 4k+4 of value k
    words = (words * 4 - 3) | ((words * 4 - 2) << 8) | ((words * 4 - 1) << 16) | ((words * 4) << 24)
    values = words.view(np.float32)[:, ::2]  # columns 0 and 2: strided rows
    out = chunk_writer.shuffled_columns(values)
    assert out[0].tolist() == [1, 17, 33, 49, 2, 18, 34, 50, 3, 19, 35, 51, 4, 20, 36, 52]
    assert out[1].tolist() == [9, 25, 41, 57, 10, 26, 42, 58, 11, 27, 43, 59, 12, 28, 44, 60]
    keep = np.array([[True, True], [True, True], [False, True], [True, True]])
    out = chunk_writer.shuffled_columns(values, keep)
    assert out[0].tolist() == [1, 17, 0, 49, 2, 18, 0, 50, 3, 19, 0xC0, 51, 4, 20, 0x7F, 52]


@pytest.mark.parametrize("nrow", [4, 12, 15420, 7, 6])
def test_shuffled_columns_equal_each_columns_row_shuffle(nrow):
    """Word by word (rows a multiple of 4) or byte by byte (else): each column's bytes as the row shuffle
    of that column alone gives them, masked or not, from a strided half of a wider block."""
    rng = np.random.default_rng(nrow)
    wide = (rng.random((nrow, 34)) * 300).astype(np.float32)
    values, keep = wide[:, 17:], rng.random((nrow, 17)) > 0.3
    for k in (None, keep):
        out = chunk_writer.shuffled_columns(values, k)
        for j in range(17):
            col = None if k is None else np.ascontiguousarray(k[:, j])
            np.testing.assert_array_equal(out[j], chunk_writer.shuffled(np.ascontiguousarray(values[:, j]), col))


def _gridded(ny: int = 60, nx: int = 50, nt: int = 3) -> xr.Dataset:
    """A gridded file's layout: a (time, y, x) map on 2-D lon/lat coordinates, time with bounds."""
    lon = np.linspace(-180.0, 180.0, ny * nx, dtype=np.float32).reshape(ny, nx)
    lat = np.linspace(50.0, 90.0, ny * nx, dtype=np.float32).reshape(ny, nx)
    t = np.arange(nt) + 10.5
    sic = np.random.default_rng(0).uniform(0.0, 1.0, (nt, ny, nx)).astype(np.float32)
    sic[0, :5] = np.nan
    return xr.Dataset(
        {"sic": (("time", "y", "x"), sic, {"units": "1", "long_name": "sea ice concentration"})},
        coords={
            "lon": (("y", "x"), lon, cf.lonlat_attrs("lon", "longitude")),
            "lat": (("y", "x"), lat, cf.lonlat_attrs("lat", "latitude")),
            "time": ("time", t, {"units": "days since 2020-01-01", "long_name": "time", "bounds": "time_bnds"}),
            "time_bnds": (("time", "nv"), np.stack([t - 0.5, t + 0.5], 1)),
        },
        attrs={"title": "a gridded test file"},
    )


def test_a_gridded_file_equals_the_library_file(tmp_path, monkeypatch):
    calls = []
    real = chunk_writer.ChunkWriter._deflate_and_write
    monkeypatch.setattr(chunk_writer.ChunkWriter, "_deflate_and_write", lambda s, *a: calls.append(1) or real(s, *a))
    with monkeypatch.context() as m:
        m.setattr(chunk_writer, "AVAILABLE", False)
        write_dataset(_gridded(), tmp_path / "lib.nc")
    assert calls == []
    write_dataset(_gridded(), tmp_path / "fast.nc")
    assert len(calls) == 3  # sic, lon, lat: one chunk each
    _same(tmp_path / "lib.nc", tmp_path / "fast.nc")


def test_rows_out_of_order_or_missing_are_refused(case, tmp_path):
    obs, tb = case
    with (
        pytest.raises(ValueError, match="out of order"),
        o.open_tb(tmp_path / "a.nc", obs.nobs, obs.basis, "tbsim") as f,
    ):
        f.write("tb", 0, tb[:100])
        f.write("tb", 200, tb[200:300])
    with (
        pytest.raises(ValueError, match="100 of 120000 rows"),
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


def test_the_pool_follows_the_number_of_threads(monkeypatch):
    monkeypatch.setattr(chunk_writer, "_threads", 1)
    one = chunk_writer._executor()
    assert chunk_writer._executor() is one and chunk_writer._pool_size == 1
    assert chunk_writer.set_threads(2) == 1
    two = chunk_writer._executor()
    assert two is not one and chunk_writer._pool_size == 2
    assert list(two.map(lambda x: x + 1, [1, 2])) == [2, 3]


def test_at_most_lowers_the_workers_for_a_while_and_never_below_one(monkeypatch):
    monkeypatch.setattr(chunk_writer, "_threads", 3)
    with chunk_writer.at_most(2):
        assert chunk_writer.threads() == 2 and chunk_writer._executor()._max_workers == 2
        with chunk_writer.at_most(0):
            assert chunk_writer.threads() == 1
        with chunk_writer.at_most(5):  # never more than before
            assert chunk_writer.threads() == 2
    assert chunk_writer.threads() == 3 and chunk_writer._executor()._max_workers == 3


def test_a_second_interrupt_while_aborting_is_raised(case, tmp_path, monkeypatch):
    """close(abort=True) drops the other failures of the chunks under way, but not a Ctrl-C (nor a
    SystemExit) while it waits for them; the file is closed all the same."""
    obs, tb = case
    writer = None
    real = chunk_writer.ChunkWriter.__init__

    def keep(self, *a, **k):
        nonlocal writer
        writer = self
        real(self, *a, **k)

    monkeypatch.setattr(chunk_writer.ChunkWriter, "__init__", keep)
    monkeypatch.setattr(chunk_writer.ChunkWriter, "_deflate_and_write", lambda *a: None)
    with pytest.raises(KeyboardInterrupt), o.open_tb(tmp_path / "k.nc", NOBS, obs.basis, "tbsim") as f:
        f.write("tb", 0, tb[:60_000])  # one whole chunk of each channel under way
        waiting = writer._pending[0][0]
        monkeypatch.setattr(waiting, "cancel", lambda: False)
        monkeypatch.setattr(waiting, "result", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
        raise RuntimeError("first failure")  # the block fails: close(abort=True)
    assert not writer._file.id.valid
    assert list(tmp_path.iterdir()) == []


def test_without_isal_one_notice_and_the_library_file(case, tmp_path, monkeypatch, caplog):
    """Where isal cannot be imported: one notice naming it and the fix, once; the netCDF library writes."""
    import sys

    obs, tb = case
    monkeypatch.delitem(vars(chunk_writer), "AVAILABLE", raising=False)  # set where a test switched it off
    monkeypatch.setattr(chunk_writer, "_imported", None)
    monkeypatch.setitem(sys.modules, "isal", None)  # import isal raises ImportError
    calls = []
    monkeypatch.setattr(chunk_writer.ChunkWriter, "_deflate_and_write", lambda *a: calls.append(1))
    with caplog.at_level("WARNING", logger=chunk_writer.__name__):
        assert not chunk_writer.AVAILABLE
        o.write_tb(tmp_path / "a.nc", tb[:1000], obs.basis, "tbsim")
        o.write_tb(tmp_path / "b.nc", tb[:1000], obs.basis, "tbsim")
    notices = [r.getMessage() for r in caplog.records if r.name == chunk_writer.__name__]
    assert len(notices) == 1 and "isal cannot be imported" in notices[0] and "pip install isal h5py" in notices[0]
    assert calls == []
    _same(tmp_path / "a.nc", tmp_path / "b.nc")


def test_the_output_writer_imports_no_h5py():
    import subprocess
    import sys

    code = "import sys\nimport empirical_seaice.io.output_writer\nprint('h5py' in sys.modules, 'isal' in sys.modules)\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("block", [7_000, 56_172])
def test_rows_given_with_their_mask_equal_the_library_file(case, tmp_path, monkeypatch, block, direct):
    """``StreamedFile.write(name, start, values, mask)``: the masked rows (NaN where the sensor lacks
    the channel), whether the compressing threads mask them (whole chunks), the writer masks a block
    that does not fill whole chunks, or the netCDF library writes the file (``direct`` False)."""
    obs, tb = case
    _library_files(obs, tb, tmp_path / "lib", monkeypatch)
    monkeypatch.setattr(chunk_writer, "AVAILABLE", direct)
    out = tmp_path / "out"
    out.mkdir()
    with (
        o.open_tb(out / "tbsim_t.nc", obs.nobs, obs.basis, "tbsim") as f_tb,
        o.open_tbobs(out / "tbobs_t.nc", obs) as f_obs,
    ):
        for start in range(0, obs.nobs, block):
            sl = slice(start, start + block)
            f_tb.write("tb", start, tb[sl], obs.mask[sl])
            f_obs.write("tb", start, obs.tb_obs_k[sl], obs.mask[sl])
    for name in ("tbsim_t.nc", "tbobs_t.nc"):
        _same(tmp_path / "lib" / name, out / name)


def test_kept_columns_by_hand():
    keep = np.array([[False, True, False, False], [False, False, False, True], [False, True, False, False]])
    assert chunk_writer.kept_columns(keep).tolist() == [1, 3]
    assert chunk_writer.kept_columns(np.zeros((5, 3), dtype=bool)).tolist() == []
    assert chunk_writer.kept_columns(np.ones((0, 2), dtype=bool)).tolist() == []  # no rows: nothing kept
    assert chunk_writer.kept_columns(keep[:, ::2]).tolist() == []  # strided columns
    with pytest.raises(ValueError, match="2-D mask"):
        chunk_writer.kept_columns(keep[0])


@pytest.mark.parametrize("nrow", [8, 7])
def test_shuffled_columns_of_some_columns_are_those_rows_of_all(nrow):
    rng = np.random.default_rng(nrow)
    values, keep = (rng.random((nrow, 6)) * 300).astype(np.float32), rng.random((nrow, 6)) > 0.4
    for k in (None, keep):
        every = chunk_writer.shuffled_columns(values, k)
        np.testing.assert_array_equal(chunk_writer.shuffled_columns(values, k, np.array([4, 1])), every[[4, 1]])
        assert chunk_writer.shuffled_columns(values, k, np.array([], dtype=np.int64)).shape == (0, 4 * nrow)


def test_a_column_chunk_with_nothing_kept_is_not_stored(case, tmp_path, monkeypatch):
    """A channel with no kept row in a chunk's rows (a sensor's rows without that channel) holds only NaN, the
    variable's fill value: its chunk is not stored, and every reader reads the same values, bit for bit, as
    from the netCDF library's file, which stores it."""
    obs, tb = case
    keep = np.array(obs.mask, dtype=bool)
    keep[:56_172, 3] = False  # channel 3 of the first row of column chunks (56,172 rows)
    keep[:, 5] = False  # channel 5 everywhere: its three chunks
    assert keep[:, 3].any() and obs.mask[:, 5].any()
    with monkeypatch.context() as m:
        m.setattr(chunk_writer, "AVAILABLE", False)
        (tmp_path / "lib").mkdir()
        o.write_tb(tmp_path / "lib" / "tbsim_t.nc", tb, obs.basis, "tbsim", keep)
    (tmp_path / "fast").mkdir()
    with o.open_tb(tmp_path / "fast" / "tbsim_t.nc", obs.nobs, obs.basis, "tbsim") as f:
        for start in range(0, obs.nobs, 56_172):  # whole chunks (the last ends the variable)
            rows = slice(start, start + 56_172)
            f.write("tb", start, tb[rows], keep[rows])
    _same(tmp_path / "lib" / "tbsim_t.nc", tmp_path / "fast" / "tbsim_t.nc")
    bits = []
    for name in ("lib", "fast"):
        with h5py.File(tmp_path / name / "tbsim_t.nc", "r") as h:
            bits.append(h["tb"][()].view(np.uint32))
            stored = {tuple(h["tb"].id.get_chunk_info(k).chunk_offset) for k in range(h["tb"].id.get_num_chunks())}
        assert len(stored) == (3 * obs.nchan if name == "lib" else 3 * obs.nchan - 4)
    assert (0, 3) not in stored and (56_172, 3) in stored and not any(c == 5 for _, c in stored)
    np.testing.assert_array_equal(bits[0], bits[1])
    with xr.open_dataset(tmp_path / "fast" / "tbsim_t.nc") as ds:
        np.testing.assert_array_equal(ds["tb"].values, masked(tb, keep))
        assert np.isnan(ds["tb"].values[:, 5]).all()


def test_a_signal_while_draining_the_netcdf_writes_waits_for_the_one_under_way(monkeypatch):
    """The netCDF library's write-behind thread (where the chunk writer is not used): a signal while
    :func:`drain_writes` waits drops the writes not started but is raised only once the write under
    way is done, since the caller closes the file next (the library is not thread-safe); before, it
    was raised at once, the write still running."""
    import signal
    import time

    from empirical_seaice.io import output_writer

    class SlowVariable:
        def __init__(self):
            self.busy, self.written = False, []

        def __setitem__(self, key, values):
            self.busy = True
            time.sleep(0.3)
            self.written.append(key)
            self.busy = False

    writes = output_writer._WriteBehind(depth=4)
    var = SlowVariable()
    for k in range(4):
        writes.put(var, k, np.zeros(1))

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(KeyboardInterrupt):
            writes.drain()
        busy = var.busy
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert not busy, "the signal was raised while a write was under way"
    assert var.written == [0], "the writes not started should have been dropped"
    writes.put(var, 9, np.zeros(1))  # the writer works on afterwards
    writes.drain()
    assert var.written == [0, 9]
