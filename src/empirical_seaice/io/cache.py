"""Memory-mapped cache of the assembled training data.

Layout: ``<cache_dir>/observations/`` holds one ``.npy`` file per array of
:class:`Observations` and :class:`BackgroundMaps` and a ``manifest.json``
with the cache key and the metadata (grid size, period, origin, sensors) and
the warnings of the read that built it, which every hit says again
(:func:`say_warnings`: the data's faults do not go quiet on the second run).
The key is a SHA-256 over the input files (resolved path, size and a
checksum of the content, :func:`file_checksum`), the :class:`DataConfig` and
``nlag``; any difference rebuilds the cache, also an edit that keeps the
file's size and modification time.

The cache is written to a temporary directory beside the final one
(``.observations.tmp-PID-XXXX``) and renamed into place, so an interrupted
run leaves either the old cache or the new one, never half of one. Building
and loading hold an exclusive ``flock`` on ``<cache_dir>/.lock`` (released by
the kernel if the process dies), so runs of several tags sharing the
directory never build it at once; whoever holds the lock first removes the
temporaries interrupted builds left. A fresh read writes its arrays straight into the
temporary directory's memory-mapped ``.npy`` files (:class:`CacheWriter`): the data is written
once and never held in the process's memory. Loading opens no NetCDF file: the arrays
come back as read-only ``numpy.memmap`` views (``np.load(mmap_mode="r")``). A run commits a new
cache behind itself (:func:`commit_behind`: the flush waits for the disk), holding the lock until
the rename, and joins it before it ends (:func:`join_commits`); its pages then go to the disk in that
flush, not while the run reads (:meth:`CacheWriter.finished`).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import mmap
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.config import DataConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io.transaction import LOCK_PREFIX, crc32_function, fault_point, pid_alive
from empirical_seaice.io.transaction.atomic import start_write_out
from empirical_seaice.memory import POPULATE_PIECE, glibc, populate_pages
from empirical_seaice.observations import (
    PER_CHANNEL_FIELDS,
    PER_OBS_FIELDS,
    BackgroundMaps,
    Observations,
    release_pages,
)
from empirical_seaice.sensors import build_channel_basis, load_catalogue

log = logging.getLogger(__name__)

CACHE_SUBDIR = "observations"
MANIFEST = "manifest.json"
CACHE_VERSION = 6
"""The layout of the cached arrays (a cache of another version is rebuilt): 3 since the atmosphere is stored
as its three effective fields (:mod:`empirical_seaice.all_sky`), not the clear and cloudy columns' six; 4
since the manifest records each array file's size and modification time (:func:`_file_stamps`); 5 since it
records the warnings of the read that built it (:func:`say_warnings` says them again on a hit); 6 since the
SIC file's ``LON``/``LAT`` stand in for those the skin-temperature file lacks (a cache of 5 would keep a
grid without them)."""
LOCK = ".lock"
BG_FIELDS = ("sic", "t_skin_map_k", "lon", "lat")
"""The arrays of :class:`BackgroundMaps` in the cache (``bg_<name>.npy``; lon and lat where known)."""
_CHUNK = 1 << 22


class ChecksumsStopped(Exception):
    """:func:`file_checksum` was asked to stop (its ``stop`` event set): its caller failed or was interrupted."""


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise ChecksumsStopped


def file_checksum(path: Path, stop: threading.Event | None = None) -> str:
    """CRC-32 of a file's bytes (hex), over a read-only memory map of the file in 4 MiB pieces (its pages
    mapped in one call, ``MADV_POPULATE_READ``, where the kernel has it): no copy of the bytes, as
    ``read`` into a buffer made (0.19-0.23 against 0.31 CPU-s for the benchmark twin's 1.7 GB in the
    page cache); read in 4 MiB chunks where the file cannot be mapped. The map's pages are brought in
    and let go again :data:`_WINDOW` bytes at a time, so the process holds at most that much of a file.
    A file cut short by another program while it is mapped here ends the process (``SIGBUS``): the
    inputs must not change during a run. Raises :class:`ChecksumsStopped` at the next window or chunk
    once ``stop`` is set (a failed or interrupted read does not wait for the checksums of files that may
    still have to come from the disk).

    CRC-32 rather than a cryptographic hash: the cache needs to notice any
    change of content, not to resist forgery, and CRC-32 runs at
    memory speed (README "Reliability" gives the measured cost).
    """
    crc = 0
    crc32 = crc32_function()
    try:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            try:
                m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
            except (OSError, ValueError):  # a file system without memory maps
                buf = bytearray(_CHUNK)
                view = memoryview(buf)
                while n := f.readinto(buf):
                    _check(stop)
                    crc = crc32(view[:n], crc)
                return f"{crc:08x}"
    except OSError as exc:
        raise SeaIceError(f"{path}: cannot read the file ({exc.strerror})") from None
    if m is None:  # an empty file
        return f"{crc:08x}"
    with m:
        view = memoryview(m)
        try:
            for w in range(0, len(m), _WINDOW):  # a window's pages in, its CRC, its pages out of the process
                _check(stop)
                n = min(_WINDOW, len(m) - w)
                with contextlib.suppress(OSError, ValueError):  # a kernel before 5.14: the pages come at first use
                    m.madvise(_MADV_POPULATE_READ, w, n)
                for a in range(w, w + n, _CHUNK):
                    crc = crc32(view[a : min(a + _CHUNK, w + n)], crc)
                with contextlib.suppress(OSError, ValueError):  # they stay in the page cache
                    m.madvise(mmap.MADV_DONTNEED, w, n)
        finally:
            view.release()
    return f"{crc:08x}"


_WINDOW = 64 << 20
"""Bytes of a file mapped into the process at a time by :func:`file_checksum` (a multiple of the page size)."""


_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux 5.14


def file_checksums(files: Sequence[Path], threads: int = 2, stop: threading.Event | None = None) -> list[str]:
    """:func:`file_checksum` of each file, in order, on ``threads`` threads (reading and CRC-32
    release the GIL: the checksums of a year's 1.6 GB take half the wall time on two cores). Stops
    (:class:`ChecksumsStopped`) once ``stop`` is set; on several threads a signal or error in the
    calling thread stops them too, rather than waiting for every file."""
    if threads <= 1 or len(files) <= 1:
        return [file_checksum(Path(f), stop) for f in files]
    from concurrent.futures import ThreadPoolExecutor

    stop = stop if stop is not None else threading.Event()
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="checksums")
    try:
        return list(pool.map(lambda f: file_checksum(Path(f), stop), files))
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def content_digest(files: Sequence[Path], checksums: Sequence[str]) -> str:
    """Identity of the data's content: file names, sizes and checksums (not their location)."""
    items = sorted([Path(f).name, Path(f).stat().st_size, c] for f, c in zip(files, checksums, strict=True))
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def cache_key(files: Sequence[Path], config: DataConfig, nlag: int, checksums: Sequence[str] | None = None) -> str:
    """SHA-256 key of the input files (path, size, content checksum), the data configuration and ``nlag``."""
    if checksums is None:
        checksums = file_checksums(files)
    items = []
    for f, crc in zip(files, checksums, strict=True):
        st = Path(f).stat()
        items.append([str(Path(f).resolve()), st.st_size, crc])
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()}
    cfg["data"] = str(Path(config.data).resolve())
    blob = json.dumps({"version": CACHE_VERSION, "files": items, "config": cfg, "nlag": nlag}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class CacheLock:
    """The cache's exclusive lock (``flock`` on ``<cache_dir>/.lock``), held until :meth:`release`;
    a commit behind the run (:func:`commit_behind`) takes it over and releases it when done."""

    def __init__(self, fd: int):
        self._fd: int | None = fd
        self.handed_over = False

    def release(self) -> None:
        """Release the lock (closing its descriptor); nothing once released or handed over."""
        if self._fd is not None and not self.handed_over:
            fd, self._fd = self._fd, None
            os.close(fd)

    def take_over(self) -> CacheLock:
        """A lock of the same descriptor for a commit behind the run; this one no longer releases it."""
        assert self._fd is not None and not self.handed_over
        self.handed_over = True
        return CacheLock(self._fd)


@contextlib.contextmanager
def locked(cache_dir: Path) -> Iterator[CacheLock]:
    """Hold the cache's exclusive lock (``flock``; waits for another run's build and for this
    process's commit behind a run, :func:`join_commits`); then remove the temporaries of
    interrupted builds."""
    cache_dir = Path(cache_dir)
    join_commits(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(cache_dir / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as exc:
        raise SeaIceError(
            f"{cache_dir}: cannot create the data cache ({exc.strerror}); choose a writable --output"
        ) from None
    lock = CacheLock(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for stale in cache_dir.glob(f".{CACHE_SUBDIR}.*"):
            log.warning("removing %s, left by an interrupted cache build", stale)
            shutil.rmtree(stale, ignore_errors=True)
        yield lock
    finally:
        lock.release()


def exists(cache_dir: Path) -> bool:
    """True if ``cache_dir`` holds a cache (its manifest), of this data or not."""
    return (Path(cache_dir) / CACHE_SUBDIR / MANIFEST).is_file()


def load(cache_dir: Path, key: str, sensor_catalogue: Path | None = None) -> tuple[Observations, BackgroundMaps] | None:
    """The cached arrays as memmaps if the cache exists and its key matches, else None.

    ``sensor_catalogue``: the run's catalogue file (part of the key), to rebuild the channel basis."""
    root = Path(cache_dir) / CACHE_SUBDIR
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("key") != key or manifest.get("version") != CACHE_VERSION:
        log.info("cache %s is stale; rebuilding", root)
        return None
    changed = _changed_since_built(root, manifest.get("files", {}))
    if changed:
        log.warning("%s changed since the cache was built; rebuilding the cache from the data", root / changed)
        return None
    return _open_maps(root, manifest["meta"], sensor_catalogue)


def say_warnings(cache_dir: Path) -> tuple[str, ...]:
    """Log again the warnings of the read that built the cache of ``cache_dir`` (its manifest's), marked as
    the cache's: a hit of the same files is as wrong as the read was, and is said so on every run. Returns
    the messages said."""
    try:
        meta = json.loads((Path(cache_dir) / CACHE_SUBDIR / MANIFEST).read_text())["meta"]
    except (OSError, ValueError, KeyError):
        return ()
    said = tuple(f"{m} (said when the data cache was built from these files)" for m in meta.get("warnings", []))
    for message in said:
        log.warning("%s", message)
    return said


def _file_stamps(root: Path) -> dict[str, list[int]]:
    """The identity of each array file of the cache directory ``root`` as it is committed: its size and
    modification time (ns). The files are never written again, so a later change (an edit in place that
    keeps the size, a file replaced) shows in one of them, while a copy that keeps the times (``cp -a``,
    ``shutil.copytree``) is the same cache; a ``stat`` each, where a checksum of the ~1.5 GB of the
    benchmark twin's cache would cost as much as the inputs'."""
    stamps = {}
    for path in sorted(root.glob("*.npy")):
        st = path.stat()
        stamps[path.name] = [st.st_size, st.st_mtime_ns]
    return stamps


def _changed_since_built(root: Path, stamps: dict[str, list[int]]) -> str | None:
    """The name of the first array file whose identity (:func:`_file_stamps`) differs from the manifest's
    ``stamps``, else None (a missing file is left to :func:`_open_maps`)."""
    for name, stamp in stamps.items():
        try:
            st = (root / name).stat()
        except OSError:
            continue
        if [st.st_size, st.st_mtime_ns] != stamp:
            return name
    return None


def _open_maps(root: Path, meta: dict, sensor_catalogue: Path | None) -> tuple[Observations, BackgroundMaps] | None:
    """The arrays of the cache directory ``root`` (its manifest's ``meta``) as read-only memmaps, or
    None where one is missing or damaged."""
    try:
        arrays = {name: np.load(root / f"{name}.npy", mmap_mode="r") for name in PER_OBS_FIELDS + PER_CHANNEL_FIELDS}
        bg = {
            name: (np.load(root / f"bg_{name}.npy", mmap_mode="r") if name in meta["bg_fields"] else None)
            for name in BG_FIELDS
        }
    except (OSError, ValueError):
        log.info("cache %s is incomplete; rebuilding", root)
        return None
    basis = build_channel_basis(meta["sensors"], load_catalogue(sensor_catalogue))
    obs = Observations(
        **arrays,
        basis=basis,
        ngrid=meta["ngrid"],
        nstep=meta["nstep"],
        jd_origin=meta["jd_origin"],
        stepstart=meta["stepstart"],
        lon=bg["lon"],
        lat=bg["lat"],
    )
    sic, t_map = bg["sic"], bg["t_skin_map_k"]
    if sic is None or t_map is None:
        log.info("cache %s has no background maps; rebuilding", root)
        return None
    background = BackgroundMaps(sic=sic, t_skin_map_k=t_map, nlag=meta["nlag"], lon=bg["lon"], lat=bg["lat"])
    return obs, background


class CacheWriter:
    """A cache being built: its temporary directory (``.observations.tmp-PID-XXXX`` beside the final
    one) and the arrays the reader fills in place there (:meth:`zeros`: a writable ``.npy`` memory
    map, its disk blocks allocated at once so that a full disk is an error there), so the assembled
    data is written once, with no copy in the process's memory and no second write by :func:`save`.
    :meth:`abort` removes the directory (a failed read)."""

    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{CACHE_SUBDIR}.tmp-{os.getpid()}-", dir=self.cache_dir))
        except OSError as exc:
            raise _write_error(self.cache_dir, exc) from None
        self.mapped: dict[str, np.ndarray] = {}
        self.in_place: list[str] = []  # the arrays filled in place, flushed before the commit
        self._reserved: dict[str, np.ndarray] = {}  # name -> the whole array made by reserve
        self._populated: set[str] = set()  # the arrays whose pages were asked for
        self._saver: Any = None
        self._saving: dict[str, tuple[np.ndarray, Any]] = {}  # name -> (array, its save_behind's future)
        self._populating: list = []
        self._pool: Any = None

    def reserve(self, arrays: Sequence[tuple[str, tuple[int, ...], Any]], ahead: int) -> None:
        """Make the arrays ``(name, shape, dtype)`` now, at most ``shape[0]`` rows long, before the reader
        knows their length; their pages come into memory on the writer's thread (:func:`populate_pages`)
        while it reads on. Mapped pages count in the process's resident memory: those of all but the
        first ``ahead`` arrays are let go again at once (:func:`_prefault`: they stay in the page cache)
        and mapped again, a few ms each, when :meth:`zeros` first gives the array out (the reader
        releases each when it is complete). :meth:`zeros` of such a name returns its first rows; the
        file is cut to them before the cache is committed (:meth:`trim`)."""
        for k, (name, shape, dtype) in enumerate(arrays):
            self._reserved[name] = self._make(name, shape, dtype, populate=k < ahead)
            if k >= ahead:
                self._behind(_prefault, self._reserved[name])

    def zeros(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A zero-filled array ``name`` of the cache, written in place (memory-mapped ``<name>.npy``);
        the first rows of one made by :meth:`reserve`."""
        full = self._reserved.get(name)
        if full is None:
            return self._make(name, shape, dtype, populate=True)
        if full.dtype != np.dtype(dtype) or full.shape[1:] != tuple(shape[1:]) or full.shape[0] < shape[0]:
            raise ValueError(f"{name}: {shape} {np.dtype(dtype)} is not within the reserved {full.shape} {full.dtype}")
        arr = full[: shape[0]]
        if name not in self._populated:
            self._populated.add(name)
            self._behind(populate_pages, arr)  # the rows handed out: those beyond are cut off before the commit
        self.mapped[name] = arr
        return arr

    def _make(self, name: str, shape: tuple[int, ...], dtype, populate: bool) -> np.ndarray:
        path = self.tmp / f"{name}.npy"
        try:
            arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
            _reserve(path)
        except OSError as exc:
            raise _write_error(self.cache_dir, exc) from None
        self.mapped[name] = arr
        self.in_place.append(name)
        if populate:
            self._populated.add(name)
            self._behind(populate_pages, arr)
        return arr

    def _behind(self, fn, arr: np.ndarray) -> None:
        """``fn(arr)`` (:func:`populate_pages`, :func:`_prefault`) on the writer's thread, in order."""
        if arr.nbytes >= _POPULATE_MIN_BYTES and _madvise is not None:
            self._submit(fn, arr)

    def _submit(self, fn, *args) -> None:
        """``fn(*args)`` on the writer's thread (one, started at the first call), after what went before."""
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-pages")
        self._populating.append(self._pool.submit(fn, *args))

    def finished(self, name: str) -> None:
        """Array ``name`` is complete: its pages start going to the disk now (the writer's thread opens the
        file, :func:`~empirical_seaice.io.transaction.atomic.start_write_out` queues its write-out on a
        thread of its own), so that :func:`save`'s flush, which must wait for every page before the cache
        is committed, finds little left to write. The reader calls it
        only for a cache committed in the foreground: behind the run (:func:`commit_behind`) the commit's
        flush writes them all, and the write-out does not take CPU from the read (the benchmark twin on
        2 cores, a busy machine: the read 1.24-1.33 s, 2.0-2.2 CPU-s, against 1.49-2.30 s, 2.3-2.7
        CPU-s with the write-out during it; benchmarks/results.md, seventh round)."""
        arr = self.mapped.get(name)
        if arr is None:
            return
        self._submit(start_write_out, self.tmp / f"{name}.npy")

    def wait(self) -> None:
        """Wait until the pages of every array are in memory (:func:`populate_pages`)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._populating.clear()

    def trim(self) -> None:
        """Cut the file of each array made by :meth:`reserve` to the rows :meth:`zeros` gave out (its header's shape
        rewritten in the same number of bytes, then the file truncated), after the writer's thread is
        done with its pages; nothing where they were all given out."""
        cut = {n: a for n, a in self._reserved.items() if n in self.mapped and self.mapped[n].shape != a.shape}
        if cut:
            self.wait()
        for name, full in cut.items():
            _cut_rows(self.tmp / f"{name}.npy", self.mapped[name].shape, full.dtype)
        self._reserved.clear()

    def holds(self, name: str, arr: np.ndarray) -> bool:
        """True if ``arr`` is this cache's array ``name`` (already in its file)."""
        return self.mapped.get(name) is arr

    def save_behind(self, name: str, arr: np.ndarray) -> None:
        """Write ``arr`` (an array the reader holds in memory and changes no more) as ``<name>.npy`` of the
        cache on a thread of its own while the reader goes on; :func:`save` and :func:`commit_behind`
        wait for it (:meth:`saved`) instead of writing it then."""
        if self._saver is None:
            from concurrent.futures import ThreadPoolExecutor

            self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-save")
        self._saving[name] = (arr, self._saver.submit(np.save, self.tmp / f"{name}.npy", arr))

    def saved(self, name: str, arr: np.ndarray) -> bool:
        """True if ``arr`` went to ``<name>.npy`` by :meth:`save_behind` (its write waited for here, whatever
        array it wrote, so that no other write of the file can overlap it; its error raised)."""
        held = self._saving.get(name)
        if held is None:
            return False
        held[1].result()
        return held[0] is arr

    def saved_all(self) -> None:
        """Every :meth:`save_behind` is done: its thread ends and the arrays it held go."""
        if self._saver is not None:
            self._saver.shutdown(wait=True)
            self._saver = None
        self._saving.clear()

    def abort(self) -> None:
        self.wait()
        self.saved_all()
        self.mapped.clear()
        self._reserved.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


_POPULATE_MIN_BYTES = 1 << 24


_madvise: Any = glibc("madvise", ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


def _prefault(arr: np.ndarray) -> None:
    """:func:`populate_pages`, then the array's pages let go of again (``MADV_DONTNEED``: they stay in the
    file's page cache, written or not, and are not counted in the process's resident memory): what a
    new page costs (its allocation and zeroing, and on this virtual machine the host's fault: 0.03-0.3 s
    for 186 MB) is paid now; mapping them again later takes 4-5 ms. :data:`POPULATE_PIECE` bytes at a
    time, each let go of before the next, so that no more than that is resident at once."""
    rows = max(1, POPULATE_PIECE // max(1, arr.strides[0])) if arr.ndim else 1
    for a in range(0, arr.shape[0] if arr.ndim else 1, rows):
        populate_pages(arr[a : a + rows])
        release_pages(arr, slice(a, a + rows))


def _cut_rows(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Make the ``.npy`` file ``path`` (C order, made with more rows) hold ``shape``: its header written
    again in the same number of bytes (the shape's digits are no more than before; padded with spaces),
    then the file truncated after the data of those rows."""
    fmt = np.lib.format
    with open(path, "r+b") as f:
        version = fmt.read_magic(f)
        (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
        data_start = f.tell()
        field = 2 if version == (1, 0) else 4  # the header length's bytes
        room = data_start - fmt.MAGIC_LEN - field
        d = {"descr": fmt.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
        text = "{" + "".join(f"{k!r}: {v!r}, " for k, v in sorted(d.items())) + "}"
        header = (text + " " * (room - len(text) - 1) + "\n").encode("latin1")
        if len(text) + 1 > room:  # pragma: no cover - a shape never gains digits here
            raise ValueError(f"{path}: the header of {shape} does not fit")
        f.seek(fmt.MAGIC_LEN + field)
        f.write(header)
        f.truncate(data_start + int(np.prod(shape)) * np.dtype(dtype).itemsize)


def _reserve(path: Path) -> None:
    """Allocate the disk blocks of a memory-mapped file now (``posix_fallocate``): a full disk is then
    an ``OSError`` here, not a ``SIGBUS`` when a page of the map is first written."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is None:  # pragma: no cover - not Linux
        return
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        if size:
            try:
                fallocate(f.fileno(), 0, size)
            except OSError as exc:
                if exc.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):  # pragma: no cover - no support
                    return
                raise


def _write_error(cache_dir: Path, exc: OSError) -> SeaIceError:
    return SeaIceError(
        f"{cache_dir}: cannot write the data cache ({exc.strerror}); free space or choose another --output"
    )


def save(
    cache_dir: Path,
    key: str,
    obs: Observations,
    background: BackgroundMaps,
    writer: CacheWriter | None = None,
    warnings: Sequence[str] = (),
) -> Path:
    """Write the cache atomically (temporary directory, then rename); returns its directory.

    ``writer``: the cache whose arrays the reader filled in place (:class:`CacheWriter`); its
    arrays are flushed, the others written. ``warnings``: what the read that filled it warned about,
    said again on every hit (:func:`say_warnings`)."""
    if writer is None:
        writer = CacheWriter(cache_dir)
    try:
        meta = _write_rest(writer, obs, background, warnings)
        _commit(writer, key, meta)
    except BaseException as exc:
        writer.abort()
        if isinstance(exc, OSError):
            raise _write_error(Path(cache_dir), exc) from None
        raise
    return Path(cache_dir) / CACHE_SUBDIR


def _write_rest(
    writer: CacheWriter, obs: Observations, background: BackgroundMaps, warnings: Sequence[str] = ()
) -> dict:
    """Write the arrays the reader did not fill in place (the background maps) into the cache being
    built; returns the manifest's ``meta``."""
    tmp = writer.tmp
    writer.trim()
    for name, arr in obs.arrays().items():
        if not writer.holds(name, arr):
            np.save(tmp / f"{name}.npy", np.asarray(arr))
    bg_fields = []
    for name in BG_FIELDS:
        arr = getattr(background, name)
        if arr is not None:
            if not writer.saved(f"bg_{name}", arr):
                np.save(tmp / f"bg_{name}.npy", np.asarray(arr))
            bg_fields.append(name)
    writer.saved_all()
    return {
        "sensors": list(obs.basis.sensor_names),
        "ngrid": obs.ngrid,
        "nstep": obs.nstep,
        "jd_origin": obs.jd_origin,
        "stepstart": obs.stepstart,
        "nlag": background.nlag,
        "nobs": obs.nobs,
        "bg_fields": bg_fields,
        "warnings": list(warnings),
    }


def _commit(writer: CacheWriter, key: str, meta: dict) -> None:
    """Commit the cache being built: its in-place arrays' pages to the disk (``fdatasync``, as
    ``msync`` of their maps: :meth:`CacheWriter.wait` first, then every dirty page of the file,
    whichever map wrote it), the manifest, then the rename into place (an old cache moved aside
    first, then removed). A kill anywhere leaves the old cache, the complete new one or none."""
    cache_dir, tmp = writer.cache_dir, writer.tmp
    final = cache_dir / CACHE_SUBDIR
    writer.wait()
    for name in writer.in_place:
        fd = os.open(tmp / f"{name}.npy", os.O_RDONLY)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)
    manifest = {"version": CACHE_VERSION, "key": key, "meta": meta, "files": _file_stamps(tmp)}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    fault_point("cache")
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{CACHE_SUBDIR}.old-{os.getpid()}-", dir=cache_dir))
        os.rename(final, old / CACHE_SUBDIR)
    os.rename(tmp, final)
    writer.mapped.clear()
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    log.info("training data cached in %s", final)


def commit_behind(
    lock: CacheLock,
    key: str,
    obs: Observations,
    background: BackgroundMaps,
    writer: CacheWriter,
    sensor_catalogue: Path | None = None,
    warnings: Sequence[str] = (),
) -> tuple[Observations, BackgroundMaps]:
    """:func:`save` with its wait for the disk on a thread of its own: the arrays the reader did not
    fill in place are written here, and the cache's arrays come back at once as read-only memory
    maps of the temporary directory's files (the same files, renamed into place later; never the
    writable maps the reader filled); the thread (``cache-commit``) then commits it (:func:`_commit`:
    the flush of ~1.5 GB on the benchmark twin waits 0.2-0.4 s for the disk) while the run goes on,
    holding the cache's lock (taken over from ``lock``) until it is done. A failure there is a
    one-line warning (the run has its data; the next run reads the files again), and the temporary
    directory goes. :func:`join_commits` waits for it: every read of the cache does, and the run
    before it ends.

    Raises
    ------
    SeaIceError
        The arrays cannot be written or mapped back (the temporary directory goes).
    """
    try:
        meta = _write_rest(writer, obs, background, warnings)
        mapped = _open_maps(writer.tmp, meta, sensor_catalogue)
    except BaseException as exc:
        writer.abort()
        if isinstance(exc, OSError):
            raise _write_error(writer.cache_dir, exc) from None
        raise
    if mapped is None:  # never the writable maps the reader filled: a write to them would change the cache
        writer.abort()
        raise SeaIceError(f"{writer.cache_dir}: the cache just written does not read back; delete it and rerun")
    writer.mapped.clear()  # the pages written are in the files' page cache
    held = lock.take_over()

    def commit() -> None:
        try:
            _commit(writer, key, meta)
        except Exception as exc:  # the run goes on without a cache
            writer.abort()
            why = exc.strerror if isinstance(exc, OSError) else exc
            log.warning(
                "%s: the data cache was not saved (%s); the next run reads the files again", writer.cache_dir, why
            )
        finally:
            held.release()

    thread = threading.Thread(target=commit, name="cache-commit")
    key_dir = Path(os.path.abspath(writer.cache_dir))
    try:
        thread.start()
    except RuntimeError:  # no thread to be had: committed here
        commit()
        return mapped
    with _PENDING_LOCK:  # after its start: a join finds only started threads
        _PENDING.append((key_dir, thread))
    return mapped


_PENDING: list[tuple[Path, threading.Thread]] = []
"""Commits running behind the run (:func:`commit_behind`): (cache directory, thread)."""
_PENDING_LOCK = threading.Lock()


def join_commits(cache_dir: Path | None = None) -> None:
    """Wait for the commits behind the run (:func:`commit_behind`) of ``cache_dir`` (default: all):
    afterwards the cache is committed, or its temporary directory removed and a warning logged."""
    with _PENDING_LOCK:
        waiting = [(d, t) for d, t in _PENDING if cache_dir is None or d == Path(os.path.abspath(cache_dir))]
    for d, t in waiting:
        t.join()
        with _PENDING_LOCK:
            if (d, t) in _PENDING:
                _PENDING.remove((d, t))


class CacheGuard:
    """Remove the data cache again if the run that made this guard created it and no other live run
    of the output directory (holding a tag's lock there) may use it."""

    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)
        self.dir_existed = self.cache_dir.exists()
        self.obs_existed = (self.cache_dir / CACHE_SUBDIR).exists()

    def cleanup(self, output: Path) -> None:
        """Remove the cache this run created, unless another live run holds a lock in ``output`` (after
        this process's commit behind the run, :func:`join_commits`)."""
        join_commits(self.cache_dir)
        if self.obs_existed:
            return
        for lock in Path(output).glob(f"{LOCK_PREFIX}*"):
            pid = _lock_pid(lock)
            if pid is not None and pid != os.getpid() and pid_alive(pid):
                return
        shutil.rmtree(self.cache_dir / CACHE_SUBDIR, ignore_errors=True)
        if not self.dir_existed:
            shutil.rmtree(self.cache_dir, ignore_errors=True)


def _lock_pid(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text()).get("pid"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


__all__ = [
    "say_warnings",
    "CacheGuard",
    "CacheLock",
    "CacheWriter",
    "commit_behind",
    "join_commits",
    "cache_key",
    "file_checksum",
    "file_checksums",
    "ChecksumsStopped",
    "content_digest",
    "locked",
    "exists",
    "load",
    "save",
    "CACHE_SUBDIR",
    "MANIFEST",
]
