"""Compressed chunks of an output variable written straight into its netCDF-4 (HDF5) file.

The netCDF library compresses a variable's chunks one at a time, with zlib, on the thread that
writes them: about 75 MB/s of the per-observation float32 files on one core (benchmarks/results.md),
so that compressing the five ``(iobs, channel)`` files of a year's run cost more CPU than the
forward passes that computed them. Here each chunk is byte-shuffled (HDF5's ``shuffle`` filter) and
deflated with ISA-L (``isal``: about 450 MB/s on the same core, a standard zlib stream of the same
size) on worker threads, and written as it is into the file (HDF5's direct chunk write, through
``h5py``). The file is the one the netCDF library would write: the same variables, filters (shuffle,
then deflate), chunks and values; any netCDF or HDF5 reader decodes it. One difference: whole chunks
of rows written with a mask (:meth:`ChunkWriter.write`'s ``keep``; the streamed passes' blocks) into a
variable chunked one column at a time store no chunk for a column none of whose rows is kept (NaN
alone, the fill value), where the library stores one of NaN: HDF5 reads a chunk never written as the
fill value, so the values are the same.

:func:`usable` says whether a file's variables can be written so (``isal`` and ``h5py`` importable,
each variable chunked over its first dimension only, or 2-D and one column a chunk, with shuffle and
deflate and no other filter; a block of rows of such a variable is cut into its columns' chunks by the
worker that compresses it);
where not, the caller writes them through the netCDF library
(:func:`empirical_seaice.io.output_writer.streamed_dataset`). :func:`set_threads` sets the number of
worker threads (the run's ``--threads``); :func:`on_this_thread` makes a thread's writers compress on
that thread alone.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# isal and h5py are dependencies of the package; the netCDF library compresses instead (slower, the
# same file) as a fallback where they cannot be imported. Imported at the first use (h5py takes about
# 0.1 s to import): ``AVAILABLE`` (a module attribute computed then) says whether they could be.
h5py: Any = None
isal_zlib: Any = None
_imported: bool | None = None


def _import() -> bool:
    """Import isal and h5py once; where that fails, one notice naming the missing package."""
    global h5py, isal_zlib, _imported
    if _imported is None:
        try:
            import h5py as _h5py
            from isal import isal_zlib as _isal_zlib
        except ImportError as exc:
            _imported = False
            log.warning(
                "the output files are compressed by the netCDF library's zlib (about 6 times the CPU): "
                "%s cannot be imported (%s); pip install isal h5py",
                exc.name or "isal or h5py",
                exc,
            )
        else:
            h5py, isal_zlib, _imported = _h5py, _isal_zlib, True
    return _imported


def _available() -> bool:
    """``AVAILABLE``, as set on the module (tests switch it off) or else as imported."""
    return bool(globals()["AVAILABLE"]) if "AVAILABLE" in globals() else _import()


def __getattr__(name: str) -> Any:
    if name == "AVAILABLE":  # not imported before it is asked for
        return _import()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _shuffle_py(src, out):  # pragma: no cover - compiled below
    """HDF5's shuffle filter: byte ``j`` of every element, then byte ``j + 1``, ... (``src``: (n, size)
    bytes of n elements; ``out``: n * size bytes)."""
    n, size = src.shape
    for j in range(size):
        for i in range(n):
            out[j * n + i] = src[i, j]


def _shuffle4_py(src, out):  # pragma: no cover - compiled below
    """:func:`_shuffle_py` of 4-byte elements (``src``: uint32, little-endian), in a loop the compiler
    vectorises: the four byte planes as four arrays. Indexed ``out[j * n + i]`` the loop stays scalar:
    0.27 ms against 0.043-0.048 ms for a 1 MiB chunk of float32 in the CPU's cache, 92-96 ms against
    30-32 ms for 180 MB of such chunks (benchmarks/results.md, "The 4-byte shuffle")."""
    n = src.shape[0]
    o0, o1, o2, o3 = out[:n], out[n : 2 * n], out[2 * n : 3 * n], out[3 * n : 4 * n]
    for i in range(n):
        x = src[i]
        o0[i] = np.uint8(x & 0xFF)
        o1[i] = np.uint8((x >> 8) & 0xFF)
        o2[i] = np.uint8((x >> 16) & 0xFF)
        o3[i] = np.uint8(x >> 24)


def _shuffle4_masked_py(src, keep, nan, out):  # pragma: no cover - compiled below
    """:func:`_shuffle4_py` of ``src[i]`` where ``keep[i]``, else of ``nan`` (the bits of a float32
    NaN): ``numpy.where(keep, values, NaN)`` shuffled, in one pass without the masked copy."""
    n = src.shape[0]
    for i in range(n):
        x = src[i] if keep[i] else nan
        out[i] = x & 0xFF
        out[n + i] = (x >> 8) & 0xFF
        out[2 * n + i] = (x >> 16) & 0xFF
        out[3 * n + i] = (x >> 24) & 0xFF


def _shuffle4_columns_py(src, keep, masked, nan, cols, out):  # pragma: no cover - compiled below
    """:func:`_shuffle4_masked_py` (``masked``; else :func:`_shuffle4_py`) of each column ``cols[k]`` of
    ``src`` ((n, ncol) uint32) into ``out[k]`` (len(cols), 4 n) uint8: the chunks ``(n, 1)`` of a block of
    rows, one a column, each in the order of HDF5's shuffle filter. The rows are read in order, four
    at a time (a block of rows, about 1 MiB, is in the CPU's cache; column by column, a read with a
    stride of one row, was slower), and each byte plane of a column gets the four rows' bytes as one
    32-bit word (n a multiple of 4; else a byte at a time): 0.35-0.43 ms against 0.71-0.72 ms a byte at
    a time for a chunk of 15,420 rows of 17 channels alone; in the ``benchmark`` twin's final pass 0.15
    against 0.20-0.22 CPU-s for ``tbsim`` and ``tbzero`` together; still more than
    :func:`_shuffle4_masked` of the same rows, which the faster deflate of the columns more than makes
    up (:func:`empirical_seaice.io.cf.by_channel`)."""
    n, ncol = src.shape[0], cols.size
    if n % 4 == 0:
        words = out.view(np.uint32)  # (ncol, n): byte plane p of column k is words [p n / 4, (p + 1) n / 4)
        q = n // 4
        for i4 in range(q):
            i = 4 * i4
            for k in range(ncol):
                j = cols[k]
                x0, x1, x2, x3 = src[i, j], src[i + 1, j], src[i + 2, j], src[i + 3, j]
                if masked:
                    x0 = x0 if keep[i, j] else nan
                    x1 = x1 if keep[i + 1, j] else nan
                    x2 = x2 if keep[i + 2, j] else nan
                    x3 = x3 if keep[i + 3, j] else nan
                # little-endian words: row i's byte first
                words[k, i4] = (x0 & 0xFF) | ((x1 & 0xFF) << 8) | ((x2 & 0xFF) << 16) | ((x3 & 0xFF) << 24)
                words[k, q + i4] = ((x0 >> 8) & 0xFF) | (x1 & 0xFF00) | ((x2 & 0xFF00) << 8) | ((x3 & 0xFF00) << 16)
                words[k, 2 * q + i4] = (
                    ((x0 >> 16) & 0xFF) | ((x1 >> 8) & 0xFF00) | (x2 & 0xFF0000) | ((x3 & 0xFF0000) << 8)
                )
                words[k, 3 * q + i4] = (x0 >> 24) | ((x1 >> 16) & 0xFF00) | ((x2 >> 8) & 0xFF0000) | (x3 & 0xFF000000)
        return
    for i in range(n):
        for k in range(ncol):
            j = cols[k]
            x = src[i, j]
            if masked and not keep[i, j]:
                x = nan
            out[k, i] = np.uint8(x & 0xFF)
            out[k, n + i] = np.uint8((x >> 8) & 0xFF)
            out[k, 2 * n + i] = np.uint8((x >> 16) & 0xFF)
            out[k, 3 * n + i] = np.uint8(x >> 24)


def _kept_columns_py(keep, out):  # pragma: no cover - compiled below
    """``out[j] = keep[:, j].any()`` of each column of ``keep`` ((n, ncol) uint8): a column's rows are read
    only until its first kept one (at once in a column the block's sensor has, all of them in one it lacks)."""
    n, ncol = keep.shape
    for j in range(ncol):
        out[j] = False
        for i in range(n):
            if keep[i, j]:
                out[j] = True
                break


try:
    from empirical_seaice.compiled import njit

    _shuffle = njit(cache=True, nogil=True)(_shuffle_py)
    _shuffle4 = njit(cache=True, nogil=True)(_shuffle4_py)
    _shuffle4_masked = njit(cache=True, nogil=True)(_shuffle4_masked_py)
    _shuffle4_columns = njit(cache=True, nogil=True)(_shuffle4_columns_py)
    _kept_columns = njit(cache=True, nogil=True)(_kept_columns_py)
except ImportError:  # pragma: no cover - exercised only where numba is absent
    _shuffle = _shuffle4 = _shuffle4_masked = _shuffle4_columns = _kept_columns = None

_NAN32 = np.float32(np.nan).view(np.uint32)


def masked_values(values: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """``values`` as float32 with NaN where ``keep`` is False (the per-observation files' channels
    that a sensor lacks): a new array (``values`` itself when ``keep`` is None)."""
    out = np.asarray(values, dtype=np.float32)
    if keep is not None:
        out = np.where(np.asarray(keep, dtype=bool), out, np.float32(np.nan))
    return out


def shuffled(values: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """The bytes of the C-contiguous array ``values`` as HDF5's shuffle filter orders them (uint8);
    with ``keep`` (bool, the shape of ``values``, float32 values): those of
    :func:`masked_values` ``(values, keep)``, in the same pass."""
    if keep is not None:
        flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        k = np.ascontiguousarray(keep, dtype=bool).reshape(-1)
        if k.size != flat.size:
            raise ValueError(f"mask of {k.size} values for {flat.size} values")
        if _shuffle4_masked is None or not np.little_endian:  # pragma: no cover - without numba
            return shuffled(masked_values(values, keep))
        out = np.empty(flat.size * 4, dtype=np.uint8)
        _shuffle4_masked(flat.view(np.uint32), k.view(np.uint8), _NAN32, out)
        return out
    flat = values.reshape(-1)
    src = flat.view(np.uint8).reshape(-1, values.dtype.itemsize)
    if _shuffle is None or _shuffle4 is None:  # pragma: no cover - without numba
        return np.ascontiguousarray(src.T).reshape(-1)
    out = np.empty(src.size, dtype=np.uint8)
    if values.dtype.itemsize == 4 and np.little_endian:
        _shuffle4(flat.view(np.uint32), out)
    else:
        _shuffle(src, out)
    return out


def shuffled_columns(
    values: np.ndarray, keep: np.ndarray | None = None, columns: np.ndarray | None = None
) -> np.ndarray:
    """The chunks ``(n, 1)`` of the 2-D array ``values`` ((n, ncol)), one a column, each as
    :func:`shuffled` orders it (with ``keep``, the shape of ``values``: masked as there): an (ncol,
    n * itemsize) uint8 array, row ``j`` the bytes of column ``j``; with ``columns`` (column indices),
    those columns' chunks only, row ``k`` the bytes of column ``columns[k]``."""
    n, ncol = values.shape
    if keep is not None and np.shape(keep) != values.shape:
        raise ValueError(f"mask of shape {np.shape(keep)} for values of shape {values.shape}")
    cols = np.arange(ncol, dtype=np.int64) if columns is None else np.asarray(columns, dtype=np.int64)
    if values.dtype == np.float32 and np.little_endian and _shuffle4_columns is not None:
        out = np.empty((cols.size, n * 4), dtype=np.uint8)
        src = values.view(np.uint32)  # any strides (a block's columns are read in the CPU's cache)
        k = np.ascontiguousarray(keep, dtype=bool).view(np.uint8) if keep is not None else np.ones((1, 1), np.uint8)
        _shuffle4_columns(src, k, keep is not None, _NAN32, cols, out)
        return out
    return np.stack(  # pragma: no cover - other types, or without numba
        [
            shuffled(np.ascontiguousarray(values[:, j]), None if keep is None else np.ascontiguousarray(keep[:, j]))
            for j in cols
        ]
    )


def kept_columns(keep: np.ndarray) -> np.ndarray:
    """The indices (int64, ascending) of the columns of the 2-D mask ``keep`` that keep a value."""
    k = np.ascontiguousarray(keep, dtype=bool)
    if k.ndim != 2:
        raise ValueError(f"a 2-D mask expected, got shape {k.shape}")
    if _kept_columns is None:  # pragma: no cover - without numba
        return np.flatnonzero(k.any(axis=0))
    any_kept = np.empty(k.shape[1], dtype=np.bool_)
    _kept_columns(k.view(np.uint8), any_kept)
    return np.flatnonzero(any_kept)


_IN_FLIGHT = 16
"""Chunks queued or being compressed per file at most (about 1 MiB each): the memory a writer holds."""

_threads = 1
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


_here = threading.local()


@contextlib.contextmanager
def on_this_thread() -> Iterator[None]:
    """Within: the chunk writers this thread writes compress on this thread alone, not on the worker
    threads (a background job that should take one core, beside the run's work on the other)."""
    before = getattr(_here, "only", False)
    _here.only = True
    try:
        yield
    finally:
        _here.only = before


def set_threads(n: int) -> int:
    """Compress on ``n`` worker threads (at least one; the caller's thread computes on meanwhile);
    returns the previous number."""
    global _threads
    before, _threads = _threads, max(1, int(n))
    return before


@contextlib.contextmanager
def at_most(n: int) -> Iterator[None]:
    """Within: at most ``n`` worker threads (at least one; fewer than :func:`set_threads` gave where the
    caller keeps other threads of its own busy meanwhile)."""
    before = set_threads(min(_threads, max(1, int(n))))
    try:
        yield
    finally:
        set_threads(before)


def threads() -> int:
    """The number of worker threads (:func:`set_threads`)."""
    return _threads


def _executor() -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != _threads:
            if _pool is not None:
                _pool.shutdown(wait=True)
            _pool = ThreadPoolExecutor(max_workers=_threads, thread_name_prefix="chunk-deflate")
            _pool_size = _threads
        return _pool


def usable(encodings: dict[str, dict[str, Any]], shapes: dict[str, tuple[int, ...]]) -> bool:
    """Whether variables of these netCDF encodings (``zlib``, ``complevel``, ``chunksizes``; shuffle
    on, as :func:`empirical_seaice.io.output_writer.streamed_dataset` defines them) and shapes can be
    written by :class:`ChunkWriter`: compressed, chunked over the first dimension only, or 2-D and
    chunked one column at a time (:func:`empirical_seaice.io.cf.chunks_for` of a variable over channels)."""
    if not _available():
        return False
    for name, enc in encodings.items():
        chunks, shape = enc.get("chunksizes"), shapes[name]
        if not enc.get("zlib") or chunks is None or len(shape) == 0:
            return False
        if tuple(chunks[1:]) != tuple(shape[1:]) and not (len(shape) == 2 and tuple(chunks[1:]) == (1,)):
            return False
    return True


class _Variable:
    """One variable's chunks: rows are written in order; a partial chunk waits for its next rows."""

    def __init__(self, ds):
        self.ds = ds
        # h5py asks the HDF5 library at every access of these: read once (a gridded year writes
        # thousands of chunks)
        self.shape = tuple(int(n) for n in ds.shape)
        self.chunk = tuple(int(c) for c in ds.chunks)
        self.dtype = ds.dtype
        self.rows = self.chunk[0]
        self.nrows = self.shape[0]
        self.next = 0
        self.partial: np.ndarray | None = None  # the rows of the current chunk written so far
        self.fill = ds.fillvalue if self.dtype.kind == "f" else 0
        # a masked value is written as NaN: where that is the fill value, a chunk of masked values alone
        # need not be stored
        self.nan_fill = self.dtype.kind == "f" and bool(np.isnan(self.fill))
        self.by_chunk = False  # written by whole chunks at any offset (:meth:`ChunkWriter.write_chunk`)
        # 2-D, one column a chunk: the rows written (:meth:`ChunkWriter.write`) are cut into their columns' chunks
        self.by_column = len(self.shape) == 2 and self.chunk[1] == 1 and self.shape[1] > 1
        level = int(ds.compression_opts or 1)
        self.level = min(max(level, 0), 3)  # ISA-L's levels: 0-3 (the file keeps the netCDF level)


def _check_rows(name: str, v, start: int, values: np.ndarray, keep: np.ndarray | None) -> None:
    """One-line refusals of rows that are not the next of ``name``, do not fit it, or come with a mask of
    another shape."""
    if start != v.next:
        raise ValueError(f"{name}: rows written out of order (row {start}, expected {v.next})")
    if keep is not None and np.shape(keep) != np.shape(values):
        raise ValueError(f"{name}: a mask of shape {np.shape(keep)} for values of shape {np.shape(values)}")
    if np.shape(values)[1:] != v.shape[1:] or start + len(values) > v.nrows:
        raise ValueError(f"{name}: rows {start}..{start + len(values)} of shape {np.shape(values)} do not fit")


class ChunkWriter:
    """The variables ``names`` of the HDF5 file ``path`` (defined, compressed, nothing written yet),
    written by rows in order (:meth:`write`); :meth:`close` waits for the last chunk and closes the file."""

    def __init__(self, path: Path, names):
        if not _import():
            raise RuntimeError("isal and h5py cannot be imported: the chunk writer is not usable")
        self._file = h5py.File(path, "r+")
        self._lock = threading.Lock()  # one HDF5 call at a time from the worker threads
        self._vars = {}
        for name in names:
            # a variable named as a dimension it does not span is stored under this name (netCDF-4)
            hidden = f"_nc4_non_coord_{name}"
            ds = self._file[hidden if hidden in self._file else name]
            plist = ds.id.get_create_plist()
            filters = [plist.get_filter(k)[0] for k in range(plist.get_nfilters())]
            if filters != [h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_DEFLATE]:
                self._file.close()
                raise ValueError(f"{path.name}: variable {name!r} is not shuffled then deflated ({filters})")
            self._vars[name] = _Variable(ds)
        self._pending: list[tuple[Future, tuple]] = []  # (future, its arguments)
        self._slots = threading.BoundedSemaphore(_IN_FLIGHT)

    def write(self, name: str, start: int, values: np.ndarray, keep: np.ndarray | None = None) -> None:
        """Rows ``start .. start + len(values) - 1`` of ``name`` (the next rows of it: every variable is
        written in order); ``values`` (and ``keep``) must not change afterwards. ``keep`` (bool, the
        shape of ``values``; a float32 variable): write :func:`masked_values` ``(values, keep)``, the
        masking done by the worker threads with the shuffle (whole chunks) instead of here."""
        v = self._vars[name]
        _check_rows(name, v, start, values, keep)
        if keep is not None and not self._by_whole_chunks(v, start, len(values)):
            values, keep = masked_values(values, keep), None  # not whole chunks: masked here
        # cut into columns by the workers (shuffled_columns): any strides, no copy here
        values = np.asarray(values, dtype=v.dtype) if v.by_column else np.ascontiguousarray(values, dtype=v.dtype)
        if keep is not None:
            self._whole_chunks(v, start, values, np.asarray(keep, dtype=bool))
            return
        n, k = len(values), 0
        if v.partial is not None:  # complete the waiting chunk first (chunks begin at multiples of v.rows)
            k = min(n, v.rows - len(v.partial))
            v.partial = np.concatenate([v.partial, values[:k]])
            if len(v.partial) == v.rows or start + k == v.nrows:
                self._submit(v, start // v.rows * v.rows, v.partial)
                v.partial = None
        while n - k >= v.rows:
            self._submit(v, start + k, values[k : k + v.rows])
            k += v.rows
        if k < n:
            rest = values[k:]
            if start + n == v.nrows:  # the last, short chunk of the variable
                self._submit(v, start + k, rest)
            else:
                v.partial = rest.copy()
        v.next = start + n

    def write_chunk(self, name: str, offset: tuple[int, ...], values: np.ndarray) -> None:
        """The whole chunk of ``name`` that starts at index ``offset`` (``values``: the chunk's values,
        of its shape or its number of values), for a variable chunked along other dimensions than the
        first (the gridded product: one step per chunk); not mixed with :meth:`write` on a variable,
        every chunk written once. ``values`` must not change afterwards."""
        v = self._vars[name]
        chunk = v.chunk
        if (
            v.next
            or any(o % c for o, c in zip(offset, chunk, strict=True))
            or any(o + c > n for o, c, n in zip(offset, chunk, v.shape, strict=True))
        ):
            raise ValueError(f"{name}: {offset} is not the start of a whole chunk {chunk} (or rows were written)")
        v.by_chunk = True
        self._queue(v, tuple(offset), np.ascontiguousarray(values, dtype=v.dtype).reshape(chunk))

    @staticmethod
    def _by_whole_chunks(v: _Variable, start: int, n: int) -> bool:
        """Whether rows ``start .. start + n - 1`` of a float32 ``v`` fill whole chunks (the last may
        end the variable), no chunk waiting for rows."""
        return (
            v.dtype == np.float32
            and v.partial is None
            and start % v.rows == 0
            and (n % v.rows == 0 or start + n == v.nrows)
        )

    def _whole_chunks(self, v: _Variable, start: int, values: np.ndarray, keep: np.ndarray) -> None:
        """:meth:`write` of rows that begin a chunk and fill whole chunks (or end the variable), masked
        by ``keep`` (its shape checked by :func:`_check_rows`) on the worker threads."""
        for k in range(0, len(values), v.rows):
            rows, kept = values[k : k + v.rows], keep[k : k + v.rows]
            if len(rows) < v.rows:  # the short last chunk: padded as :meth:`_submit` pads, the padding not kept
                rows = np.concatenate([rows, np.full((v.rows - len(rows),) + rows.shape[1:], v.fill, rows.dtype)])
                kept = np.concatenate([kept, np.zeros((v.rows - len(kept),) + kept.shape[1:], dtype=bool)])
            self._queue(v, (start + k,) + (0,) * (rows.ndim - 1), rows, kept)
        v.next = start + len(values)

    def _submit(self, v: _Variable, row: int, rows: np.ndarray) -> None:
        if len(rows) < v.rows:  # a short last chunk: stored whole, the rows past the end never read
            full = np.full((v.rows,) + rows.shape[1:], v.fill, dtype=rows.dtype)
            full[: len(rows)] = rows
            rows = full
        self._queue(v, (row,) + (0,) * (rows.ndim - 1), rows)

    def _queue(self, v: _Variable, offset: tuple[int, ...], rows: np.ndarray, keep: np.ndarray | None = None) -> None:
        """Deflate and write one whole chunk on a worker thread (on this one when the workers are behind)."""
        self._raise_failed()
        if getattr(_here, "only", False):  # on_this_thread
            self._deflate_and_write(v, offset, rows, keep)
            return
        if not self._slots.acquire(blocking=False):  # the workers are behind: this thread helps
            self._deflate_and_write(v, offset, rows, keep)
            return
        try:
            fut = _executor().submit(self._deflate_and_write, v, offset, rows, keep)
        except BaseException:
            self._slots.release()
            raise
        fut.add_done_callback(lambda _f: self._slots.release())
        self._pending.append((fut, (v, offset, rows, keep)))

    def _deflate_and_write(
        self, v: _Variable, offset: tuple[int, ...], rows: np.ndarray, keep: np.ndarray | None = None
    ) -> None:
        """One chunk (``rows`` of the chunk's shape), or every column's chunk of whole rows of a variable
        chunked one column at a time (``rows`` (chunk rows, ncol): a chunk at ``(offset[0], j)`` each)."""
        if v.by_column and rows.shape[1:] != v.chunk[1:]:
            # a column none of whose rows is kept holds the fill value alone: its chunk is not stored
            # (HDF5 reads a chunk never written as the fill value)
            cols = kept_columns(keep) if keep is not None and v.nan_fill else np.arange(rows.shape[1])
            data = [isal_zlib.compress(c, v.level) for c in shuffled_columns(rows, keep, cols)]
            with self._lock:
                for j, d in zip(cols, data, strict=True):
                    v.ds.id.write_direct_chunk((offset[0], int(j)), d)
            return
        data = isal_zlib.compress(shuffled(rows, keep), v.level)
        with self._lock:
            v.ds.id.write_direct_chunk(offset, data)

    def _raise_failed(self) -> None:
        done = [f for f, _ in self._pending if f.done()]
        self._pending = [p for p in self._pending if not p[0].done()]
        for f in done:
            f.result()  # a failed chunk's error, raised in the caller's thread

    def close(self, abort: bool = False) -> None:
        """Write the waiting chunks (every row must have been written, unless ``abort``) and close;
        every chunk under way is finished (or, not started, dropped when aborting) before any error
        is raised and the file closed."""
        error: BaseException | None = None if abort else self._unwritten_rows()
        stop: BaseException | None = None
        try:
            for f, job in self._pending:
                try:
                    self._finish(f, job, write=not abort and error is None and stop is None)
                except Exception as exc:  # the first failure is raised, after every chunk is done
                    error = error or exc
                except BaseException as exc:  # a signal (RunInterrupted, KeyboardInterrupt): no chunk's failure
                    stop = stop or exc
            self._pending = []
        finally:
            self._file.close()
        if stop is not None:  # raised whatever ``abort`` says, once the chunks under way (at most a few) are done
            raise stop
        if error is not None and not abort:
            raise error

    def _unwritten_rows(self) -> ValueError | None:
        """The error of a variable whose rows were not all written (None when every one was)."""
        for name, v in self._vars.items():
            if v.next != v.nrows and not v.by_chunk:
                return ValueError(f"{name}: {v.next} of {v.nrows} rows written")
        return None

    def _finish(self, f: Future, job: tuple, write: bool) -> None:
        """A waiting chunk at :meth:`close`: not started, written here when ``write`` (else dropped);
        under way or done, waited for (its error raised)."""
        if f.cancel():
            if write:
                self._deflate_and_write(*job)
        else:
            f.result()


__all__ = [  # noqa: F822 - AVAILABLE: __getattr__
    "AVAILABLE",
    "ChunkWriter",
    "at_most",
    "kept_columns",
    "masked_values",
    "on_this_thread",
    "set_threads",
    "shuffled",
    "shuffled_columns",
    "threads",
    "usable",
]
