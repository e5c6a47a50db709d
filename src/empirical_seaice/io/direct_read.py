"""A variable's rows read straight from its HDF5 storage, without the netCDF library.

The netCDF library reads a block of a variable through HDF5's chunk cache into a fresh array,
then netCDF4-python builds a masked array of it (a comparison with the fill value over every
value); with one netCDF call at a time (the library is not thread-safe) that was most of the
reader's user time. Here a netCDF-4 (HDF5) file's variable is located once (:func:`locate`:
``h5py``, the byte offset of each chunk, or of the contiguous data) and its rows are then read
on any thread, with no library lock (:meth:`StoredVariable.blocks`): a filtered chunk with ``pread``
from the file, inflated with ISA-L (``isal``, a standard zlib stream) and un-shuffled where HDF5's
filters say so; data stored as is (no filter) with one ``pread`` for the chunks that lie next to
each other in the file (a few Python calls per megabyte instead of a few per chunk).

The values are those of the netCDF path bit for bit, with one difference the caller handles:
a value equal to the variable's fill value (its ``_FillValue``, else the netCDF default fill) is
not masked to NaN here; :attr:`StoredVariable.fill` gives it, and the per-channel pass treats it
as NaN (:func:`empirical_seaice.io.per_channel._scatter_block`).

Where the storage does not allow it, :func:`locate` returns the reason instead and the caller
reads through the netCDF library as before (the same values): not an HDF5 file (netCDF-3), a
type other than native-endian float32, attributes that make netCDF4-python change values
(``scale_factor``, ``add_offset``, ``missing_value``, ``valid_min``, ``valid_max``,
``valid_range``), a 2-D variable chunked across its second dimension, filters other than
shuffle and deflate (Fletcher-32, szip, zstd, ...), a chunk stored with a filter skipped, chunks
never written, or ``h5py``/``isal`` not importable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.errors import SeaIceError

log = logging.getLogger(__name__)

ENABLED = True
"""Read through :func:`locate` where the storage allows it (tests switch it off to compare)."""

NETCDF_DEFAULT_FILLS = {
    np.dtype(np.float32): np.float32(9.969209968386869e36),
    np.dtype(np.float64): np.float64(9.969209968386869e36),
    np.dtype(np.int32): np.int32(-2147483647),
}
"""The netCDF default fill values (``NC_FILL_FLOAT``, ``NC_FILL_DOUBLE``, ``NC_FILL_INT``) of the types
read here, masked by netCDF4-python where a variable has no ``_FillValue``."""

_CHANGING_ATTRS = ("scale_factor", "add_offset", "missing_value", "valid_min", "valid_max", "valid_range", "_Unsigned")
"""Attributes with which netCDF4-python scales or masks values: such a variable is read through it."""

CONTIGUOUS_ROWS = 1 << 14
"""Rows per read of a variable stored contiguously (not chunked)."""

JOINED_BLOCK_BYTES = 1 << 20
"""Most bytes of one read of pieces stored as is (:meth:`StoredVariable.blocks`: pieces next to each
other in the file read together; a piece longer than this alone)."""

_SHUFFLE, _DEFLATE = 2, 1  # HDF5 filter ids (H5Z_FILTER_SHUFFLE, H5Z_FILTER_DEFLATE)


def _modules() -> tuple[Any, Any] | str:
    """(h5py, isal_zlib), or why not."""
    try:
        import h5py
        from isal import isal_zlib
    except ImportError as exc:
        return f"{exc.name or 'h5py or isal'} cannot be imported"
    return h5py, isal_zlib


@dataclass(frozen=True)
class StoredVariable:
    """Where the rows of a variable lie in its file: ``pieces`` (first row, byte offset,
    stored bytes) in row order, each ``rows`` rows long: HDF5 chunks (``chunked``; the last one
    stored whole past the end), stored as is or shuffled (HDF5's byte shuffle of its elements' bytes)
    and/or deflated (zlib); or blocks of contiguous data (the last one short)."""

    path: Path
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    rows: int
    pieces: tuple[tuple[int, int, int], ...]
    chunked: bool
    shuffle: bool
    deflate: bool
    fill: np.generic

    @property
    def ncol(self) -> int:
        return int(self.shape[1]) if len(self.shape) == 2 else 1

    def blocks(self, start: int, stop: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(a, b, values)`` covering rows ``[start, stop)`` in order: ``values`` the rows ``a .. b - 1``
        as stored ((b - a, ncol), or (b - a,) for a 1-D variable), valid until the next block (a reused
        buffer). Pieces stored as is (neither shuffled nor deflated) that lie next to each other in the
        file are read as one block (:meth:`_joined_blocks`); any other piece by piece. Errors name the
        file and the variable."""
        if not (self.shuffle or self.deflate):
            yield from self._joined_blocks(start, stop)
            return
        mods = _modules()
        isal_zlib = mods[1] if self.deflate and not isinstance(mods, str) else None
        itemsize = self.dtype.itemsize
        want = self.rows * self.ncol * itemsize
        raw = np.empty(want, dtype=np.uint8)
        plain = np.empty(want, dtype=np.uint8) if self.shuffle else raw
        first = max(0, start // self.rows)
        fd = self._open()
        try:
            for row0, offset, size in self.pieces[first:]:
                if row0 >= stop:
                    break
                # a chunk holds ``rows`` rows, also the last one; a piece of contiguous data its own rows
                data = self._piece(fd, row0, offset, size, raw, want if self.chunked else size, isal_zlib)
                if self.shuffle:
                    unshuffle(data, plain, itemsize)
                    data = plain
                yield self._rows(data, row0, start, stop)
        finally:
            os.close(fd)

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise SeaIceError(f"{self.path}: cannot read the file ({exc.strerror})") from None

    def _rows(self, data: np.ndarray, row0: int, start: int, stop: int) -> tuple[int, int, np.ndarray]:
        """``(a, b, values)`` of the bytes ``data`` of the rows from ``row0`` on, cut to ``[start, stop)``."""
        values = data.view(self.dtype)
        values = values.reshape(-1, self.ncol) if len(self.shape) == 2 else values
        a, b = max(start, row0), min(stop, row0 + values.shape[0], self.shape[0])
        return a, b, values[a - row0 : b - row0]

    def _joined_blocks(self, start: int, stop: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """:meth:`blocks` of pieces stored as is: the pieces next to each other in the file (HDF5 writes
        most chunks so) read together, one ``pread`` of up to :data:`JOINED_BLOCK_BYTES` into a reused
        buffer (a piece longer than that alone)."""
        width = self.ncol * self.dtype.itemsize
        first = max(0, start // self.rows)
        pieces = [p for p in self.pieces[first:] if p[0] < stop]
        if not pieces:
            return
        size_of = [self.rows * width if self.chunked else size for _, _, size in pieces]
        buf = np.empty(max(JOINED_BLOCK_BYTES, max(size_of)), dtype=np.uint8)
        fd = self._open()
        try:
            k = 0
            while k < len(pieces):
                row0, offset, size = pieces[k]
                if size != size_of[k]:  # a chunk stored as is holds all its rows, also the last one
                    raise SeaIceError(
                        f"{self.path}: variable {self.name}: the chunk at row {row0} holds {size} bytes, "
                        f"expected {size_of[k]}; the file is damaged"
                    )
                nbytes, j = size, k + 1  # the pieces that follow in the file, up to the buffer's size
                while j < len(pieces) and pieces[j][1] == offset + nbytes and nbytes + size_of[j] <= buf.size:
                    if pieces[j][2] != size_of[j]:
                        break  # reported as the first piece of the next read
                    nbytes += size_of[j]
                    j += 1
                n = os.preadv(fd, [buf[:nbytes].data], offset)
                if n != nbytes:  # the file ends in the first piece not read whole
                    cut = next(i for i in range(k, j) if pieces[i][1] + size_of[i] > offset + n)
                    what = "chunk" if self.chunked else "data"
                    raise SeaIceError(
                        f"{self.path}: variable {self.name}: the {what} at row {pieces[cut][0]} is cut short "
                        f"({offset + n - pieces[cut][1]} of {size_of[cut]} bytes); the file is truncated: "
                        "replace it with a complete copy"
                    )
                yield self._rows(buf[:nbytes], row0, start, stop)
                k = j
        finally:
            os.close(fd)

    def _piece(self, fd: int, row0: int, offset: int, size: int, raw: np.ndarray, want: int, isal_zlib) -> np.ndarray:
        """One piece's bytes as stored, inflated (``want`` bytes; ``raw`` is reused where not deflated)."""
        where = f"{self.path}: variable {self.name}: the chunk at row {row0}"
        if self.deflate:
            buf = os.pread(fd, size, offset)
            if len(buf) != size:
                raise SeaIceError(f"{where} is cut short ({len(buf)} of {size} bytes); the file is truncated")
            try:
                data = np.frombuffer(isal_zlib.decompress(buf), dtype=np.uint8)
            except Exception as exc:  # isal's error type
                raise SeaIceError(f"{where} does not inflate ({exc}); the file is damaged") from None
        else:
            n = os.preadv(fd, [raw[:size].data], offset)
            data = raw[:n]
        if data.size != want:
            raise SeaIceError(f"{where} holds {data.size} bytes, expected {want}; the file is damaged")
        return data


def locate(path: Path, name: str, types: tuple = (np.float32,)) -> StoredVariable | str:
    """Where variable ``name`` of the file ``path`` is stored (:class:`StoredVariable`), or a
    sentence saying why it is not read so (the netCDF library reads it then): also a type not in
    ``types`` (native byte order; float32, float64, int32 can be read)."""
    mods = _modules()
    if isinstance(mods, str):
        return mods
    h5py = mods[0]
    try:
        if not h5py.is_hdf5(str(path)):
            return "not an HDF5 (netCDF-4) file"
        with h5py.File(str(path), "r") as f:
            hidden = f"_nc4_non_coord_{name}"
            ds = f.get(hidden) if hidden in f else f.get(name)
            if not isinstance(ds, h5py.Dataset):
                return "not a dataset of the root group"
            return _storage(path, name, ds, tuple(np.dtype(t) for t in types))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        return f"h5py cannot read its storage ({exc})"


def stored(path: Path, name: str, types: tuple = (np.float32,)) -> StoredVariable | None:
    """:func:`locate` where direct reads are on (:data:`ENABLED`), or None: then the netCDF library
    reads the variable, to the same values (why, logged at debug level)."""
    if not ENABLED:
        return None
    found = locate(path, name, types)
    if isinstance(found, str):
        log.debug("%s: variable %s read through the netCDF library: %s", path, name, found)
        return None
    return found


def _filters(ds) -> list[int]:
    """The HDF5 filter ids of dataset ``ds``, in pipeline order."""
    plist = ds.id.get_create_plist()
    return [plist.get_filter(k)[0] for k in range(plist.get_nfilters())]


def _unsupported(ds, types: tuple[np.dtype, ...]) -> str | None:
    """Why the dataset ``ds`` is not read directly (its type, attributes, shape, filters), or None."""
    if ds.dtype not in types or ds.dtype not in NETCDF_DEFAULT_FILLS:  # also the other byte order
        return f"type {ds.dtype.str}, not native {' or '.join(t.name for t in types)}"
    changing = sorted(set(ds.attrs.keys()).intersection(_CHANGING_ATTRS))
    if changing:
        return f"attributes {', '.join(changing)} change its values"
    if len(ds.shape) not in (1, 2) or ds.shape[0] == 0:
        return f"shape {tuple(ds.shape)}"
    filters = _filters(ds)
    if filters not in ([], [_DEFLATE], [_SHUFFLE], [_SHUFFLE, _DEFLATE]):
        return f"HDF5 filters {filters}, not shuffle and deflate"
    if ds.chunks is not None and tuple(ds.chunks[1:]) != tuple(ds.shape[1:]):
        return f"chunks {tuple(ds.chunks)} across the second dimension of {tuple(ds.shape)}"
    if ds.maxshape[0] is None:  # an unlimited dimension: the netCDF length is the longest variable's
        longest = max(
            (d.shape[0] for d in ds.file.values() if getattr(d, "maxshape", (0,))[:1] == (None,) and d.shape),
            default=0,
        )
        if ds.shape[0] < longest:
            return (
                f"{ds.shape[0]} rows stored of an unlimited dimension of {longest} (the netCDF library fills the rest)"
            )
    return None


def _chunk_infos(ds, nchunk: int) -> list:
    """Every chunk's ``StoreInfo`` of dataset ``ds`` (``nchunk`` of them): in one call where h5py and HDF5
    have ``chunk_iter`` (h5py 3.8, HDF5 1.14: a tenth of the time of a call per chunk, which on a busy
    process also waits for the GIL at every call), else one ``get_chunk_info`` call per chunk."""
    if hasattr(ds.id, "chunk_iter"):
        infos: list = []
        try:
            ds.id.chunk_iter(infos.append)
            return infos
        except (RuntimeError, NotImplementedError, AttributeError):  # pragma: no cover - an HDF5 without it
            pass
    return [ds.id.get_chunk_info(k) for k in range(nchunk)]


def _storage(path: Path, name: str, ds, types: tuple[np.dtype, ...]) -> StoredVariable | str:
    why = _unsupported(ds, types)
    if why is not None:
        return why
    dtype = np.dtype(ds.dtype)
    if "_FillValue" in ds.attrs:
        fill = np.asarray(ds.attrs["_FillValue"], dtype=dtype).reshape(-1)[0]
    else:
        fill = NETCDF_DEFAULT_FILLS[dtype]
    shape = tuple(int(n) for n in ds.shape)
    width = dtype.itemsize * (shape[1] if len(shape) == 2 else 1)
    if ds.chunks is None:
        offset = ds.id.get_offset()
        if offset is None or int(ds.id.get_storage_size()) != shape[0] * width:
            return "contiguous data not (wholly) written"
        rows = CONTIGUOUS_ROWS
        pieces = tuple(
            (a, int(offset) + a * width, (min(shape[0], a + rows) - a) * width) for a in range(0, shape[0], rows)
        )
        return StoredVariable(path, name, shape, dtype, rows, pieces, False, False, False, fill)
    rows = int(ds.chunks[0])
    nchunk = -(-shape[0] // rows)
    if ds.id.get_num_chunks() != nchunk:
        return f"{ds.id.get_num_chunks()} of {nchunk} chunks written"
    infos = sorted(_chunk_infos(ds, nchunk))
    if any(info.filter_mask for info in infos):
        return "a chunk stored with a filter skipped"
    if [int(info.chunk_offset[0]) for info in infos] != list(range(0, shape[0], rows)):
        return "chunks not in row order"
    pieces = tuple((int(i.chunk_offset[0]), int(i.byte_offset), int(i.size)) for i in infos)
    filters = _filters(ds)
    return StoredVariable(path, name, shape, dtype, rows, pieces, True, _SHUFFLE in filters, _DEFLATE in filters, fill)


def _unshuffle_py(src, out, size):  # pragma: no cover - compiled below
    """The inverse of HDF5's shuffle filter: element ``i``'s byte ``j`` is ``src[j * n + i]``
    (``n = src.size // size`` elements)."""
    n = src.size // size
    for j in range(size):
        for i in range(n):
            out[i * size + j] = src[j * n + i]


try:
    from empirical_seaice.compiled import njit

    _unshuffle = njit(cache=True, nogil=True)(_unshuffle_py)
except ImportError:  # pragma: no cover - exercised only where numba is absent
    _unshuffle = None


def unshuffle(src: np.ndarray, out: np.ndarray, size: int) -> None:
    """Undo HDF5's byte shuffle of ``size``-byte elements: ``src`` (uint8) into ``out`` (uint8, as long)."""
    if _unshuffle is None:  # pragma: no cover - without numba
        out[:] = src.reshape(size, -1).T.reshape(-1)
        return
    _unshuffle(src, out, size)


__all__ = ["ENABLED", "StoredVariable", "locate", "stored", "unshuffle"]
