"""Whole compressed chunks of a NetCDF-4 file's variables, written directly (HDF5 direct chunk writes).

The netCDF library compresses a chunk on the calling thread with zlib (deflate) and its own copy of
the shuffle filter. For the large gridded outputs (a year of the gridded emissivity: 375 MB of
float32) that compression is most of the product's cost. :class:`ChunkWriter` writes whole
chunks of variables already defined in a closed file (by :mod:`netCDF4`): it applies the
variable's own filters here (shuffle: the bytes of the values grouped by position, as HDF5's
shuffle filter does; deflate: a zlib stream, made by ISA-L's ``isal_zlib`` where installed,
about 5x faster than zlib at level 1 for a 1 % larger file, else by :mod:`zlib` at the variable's
level) on worker threads (both release the GIL), and hands the compressed bytes to HDF5
(``h5py``'s ``write_direct_chunk``) in order on the caller's thread. Any zlib decoder reads the
chunks: the file is the same NetCDF-4 file with the same values; only the compressed bytes differ.

Where ``h5py`` is missing or a variable's filters are other than (shuffle,) deflate, the chunks go
through the netCDF library instead (:func:`empirical_seaice.io.output_writer.write_behind`).
"""

from __future__ import annotations

import itertools
import os
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

_SHUFFLE, _DEFLATE = 2, 1
"""HDF5 filter identifiers."""

ISAL_LEVEL = 2
"""ISA-L's level (0-3) for every deflate chunk: as fast as its level 1 and a smaller file (on the
gridded emissivity 29.0 % of the raw size against zlib level 1's 28.7 %)."""


def _deflate(level: int) -> Callable[[bytes | memoryview], bytes]:
    """A zlib-stream compressor: ISA-L's when installed, else :func:`zlib.compress` at ``level``."""
    try:
        from isal import isal_zlib
    except ImportError:
        return lambda data: zlib.compress(data, level)
    return lambda data: isal_zlib.compress(data, ISAL_LEVEL)


def shuffle_bytes(values: np.ndarray) -> np.ndarray:
    """HDF5's shuffle filter: byte ``j`` of every element, for ``j`` = 0 .. itemsize - 1 in turn (uint8).

    >>> shuffle_bytes(np.array([1, 2], dtype="<u2")).tolist()
    [1, 2, 0, 0]
    """
    flat = np.ascontiguousarray(values).reshape(-1)
    return np.ascontiguousarray(flat.view(np.uint8).reshape(flat.size, flat.dtype.itemsize).T).reshape(-1)


class ChunkWriter:
    """Write whole chunks of the variables ``names`` of the closed NetCDF-4 file ``path`` (module
    docstring). :meth:`put` queues a chunk (compressed on ``threads`` worker threads, written in
    order); :meth:`close` writes what is queued and closes the file (raising a chunk's error);
    :meth:`abort` closes it without writing more. Use as a context manager."""

    def __init__(self, path: Path, names: Sequence[str], threads: int | None = None):
        self.path = Path(path)
        self.threads = max(1, threads if threads is not None else min(2, os.cpu_count() or 1))
        self._pending: deque[tuple[Any, tuple[int, ...], Future]] = deque()
        self._pool: ThreadPoolExecutor | None = None
        self._h5: Any = None
        self._nc: Any = None
        self._vars: dict[str, Any] = {}
        self._pack: dict[str, Callable[[np.ndarray], bytes]] = {}
        try:
            import h5py
        except ImportError:  # h5py is a dependency; kept for an install without it
            h5py = None
        if h5py is not None:
            self._h5 = h5py.File(self.path, "r+")
            for name in names:
                pack = _packer(self._h5[name])
                if pack is None:
                    break
                self._vars[name], self._pack[name] = self._h5[name], pack
            else:
                self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="chunk-deflate")
                return
            self._h5.close()
            self._h5, self._vars, self._pack = None, {}, {}
        import netCDF4

        self._nc = netCDF4.Dataset(self.path, "a")
        self._vars = {name: self._nc[name] for name in names}

    @property
    def direct(self) -> bool:
        """True when the chunks are compressed here and written directly (``h5py``)."""
        return self._h5 is not None

    def put(self, name: str, start: tuple[int, ...], values: np.ndarray) -> None:
        """Queue the chunk of variable ``name`` that starts at index ``start`` (its values, the
        chunk's shape or the same number of values; not changed afterwards)."""
        var = self._vars[name]
        if self._nc is not None:
            from empirical_seaice.io.output_writer import write_behind

            edge = tuple(min(n, size - s) for s, n, size in zip(start, var.chunking(), var.shape, strict=True))
            key = tuple(slice(s, s + n) for s, n in zip(start, edge, strict=True))
            write_behind(var, key, np.ascontiguousarray(values).reshape(edge))
            return
        assert self._pool is not None
        chunk = var.chunks
        if any(s % n for s, n in zip(start, chunk, strict=True)):
            raise ValueError(f"{self.path.name}: {name}: {start} is not the start of a chunk")
        data = np.ascontiguousarray(values, dtype=var.dtype)
        if data.size != int(np.prod(chunk)):  # a chunk at the end of a dimension: padded as HDF5 pads it
            edge = tuple(min(n, size - s) for s, n, size in zip(start, chunk, var.shape, strict=True))
            full = np.full(chunk, _fill(var), dtype=var.dtype)
            full[tuple(slice(0, e) for e in edge)] = data.reshape(edge)
            data = full
        self._pending.append((var, tuple(start), self._pool.submit(self._pack[name], data)))
        while len(self._pending) > 2 * self.threads:
            self._write_one()

    def write_array(self, name: str, values: np.ndarray) -> None:
        """The whole variable ``name`` (``values`` of its shape), chunk by chunk."""
        var = self._vars[name]
        if self._nc is not None:
            from empirical_seaice.io.output_writer import write_behind

            write_behind(var, (Ellipsis,), np.ascontiguousarray(values))
            return
        chunk = var.chunks
        for start in itertools.product(*(range(0, size, n) for size, n in zip(var.shape, chunk, strict=True))):
            key = tuple(slice(s, s + n) for s, n in zip(start, chunk, strict=True))
            self.put(name, start, values[key])

    def _write_one(self) -> None:
        var, start, fut = self._pending.popleft()
        var.id.write_direct_chunk(start, fut.result())

    def close(self) -> None:
        """Write every queued chunk, then close the file."""
        try:
            if self._nc is not None:
                from empirical_seaice.io.output_writer import drain_writes

                drain_writes()
            while self._pending:
                self._write_one()
        finally:
            self.abort()

    def abort(self) -> None:
        """Close the file; chunks still queued are dropped (an error elsewhere is being raised)."""
        if self._pool is not None:
            for _, _, fut in self._pending:
                fut.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None
        self._pending.clear()
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None
        if self._nc is not None:
            import contextlib

            from empirical_seaice.io.output_writer import drain_writes

            with contextlib.suppress(Exception):
                drain_writes()
            self._nc.close()
            self._nc = None

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _fill(dset) -> Any:
    """The fill value HDF5 pads a partial chunk with (0 when the variable has none)."""
    value = dset.fillvalue
    return 0 if value is None else value


def _packer(dset) -> Callable[[np.ndarray], bytes] | None:
    """The function that turns a chunk's values into its stored bytes for the h5py dataset ``dset``:
    its filters, when they are deflate or shuffle + deflate on a chunked little-endian variable; else
    None (the netCDF library writes it)."""
    if dset.chunks is None or dset.dtype.byteorder == ">":
        return None
    dcpl = dset.id.get_create_plist()
    filters = [dcpl.get_filter(i) for i in range(dcpl.get_nfilters())]
    codes = tuple(int(f[0]) for f in filters)
    if codes not in ((_DEFLATE,), (_SHUFFLE, _DEFLATE)):
        return None
    level = int(filters[-1][2][0]) if len(filters[-1][2]) else 4
    deflate = _deflate(level)
    if codes == (_DEFLATE,):
        return lambda values: deflate(values.data.cast("B"))
    return lambda values: deflate(shuffle_bytes(values).data)


__all__ = ["ChunkWriter", "shuffle_bytes", "ISAL_LEVEL"]
