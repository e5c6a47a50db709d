"""Atomic files: the one atomic-write helper :func:`atomic_path` (temporary name beside the file,
fsync, rename; removed on failure), one-line errors for a full or read-only disk, the health marks a
forced run puts on every NetCDF file, directories and file checksums.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import threading
import zlib
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from pathlib import Path
from typing import Any, BinaryIO

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io.transaction.faults import fault_point
from empirical_seaice.memory import glibc

_health_attrs: ContextVar[dict[str, str] | None] = ContextVar("seaice_health_attrs", default=None)


def tmp_name(path: Path) -> Path:
    """The temporary name of ``path`` for this process: ``.NAME.tmpPID`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_sync_file_range: Any = glibc("sync_file_range", ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
_SYNC_FILE_RANGE_WRITE = 2
_write_out_pool: ThreadPoolExecutor | None = None
_write_out_lock = threading.Lock()


def start_write_out(path: Path) -> None:
    """Start writing the dirty pages of ``path`` to the disk, and return at once: ``sync_file_range``
    with ``SYNC_FILE_RANGE_WRITE`` (the writes queued, not waited for; nothing made durable here: an
    ``fsync`` later finds little left to write), called on a background thread with the file opened
    here (a rename meanwhile does not matter), because the queueing itself can wait for the disk: 0.02-0.04 s
    for each 87 MB file of the ``benchmark`` twin's final pass. Nothing where the call is not available
    or the file cannot be opened (the later ``fsync`` reports a problem)."""
    global _write_out_pool
    if _sync_file_range is None:  # pragma: no cover - not Linux
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    with _write_out_lock:
        if _write_out_pool is None:
            _write_out_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="write-out")
        pool = _write_out_pool
    try:
        pool.submit(_write_out_fd, fd)
    except RuntimeError:  # the interpreter is shutting down: no write-out (the later fsync does it)
        os.close(fd)


def _write_out_fd(fd: int) -> None:
    """:func:`start_write_out`'s call on the open file ``fd``, which it closes."""
    try:
        _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry to disk (after a rename); ignored where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _disk_problem(path: Path) -> str | None:
    """'full' / 'read-only' / None for the file system holding ``path``'s directory."""
    d = Path(path).parent
    try:
        st = os.statvfs(d)
    except OSError:
        return None
    if st.f_flag & getattr(os, "ST_RDONLY", 1) or not os.access(d, os.W_OK):
        return "read-only"
    if st.f_bavail * st.f_frsize < 1 << 20:
        return "full"
    return None


class OutputWriteError(SeaIceError):
    """An output file could not be written (full or read-only disk, ...); nothing was published."""


SETS_DIR = ".sets"
"""Hidden directory of the output sets: ``<output>/.sets/TAG/<run id>/``
(:class:`~empirical_seaice.io.transaction.output_set.OutputSet`)."""


def _as_output(path: Path) -> str:
    """``path`` as a message names it: a file of a run's staging set (``OUT/.sets/TAG/RUN/[.held/]NAME``) as
    the output it was to become, ``OUT/NAME``, with the staging set after it; any other path as it is."""
    parts = Path(path).parts
    if SETS_DIR not in parts or len(parts) < parts.index(SETS_DIR) + 4:  # not a file inside a staging set
        return str(path)
    at = parts.index(SETS_DIR)
    return f"{Path(*parts[:at]) / Path(path).name} (staged in {Path(*parts[: at + 3])})"


def write_error(path: Path, exc: BaseException) -> SeaIceError:
    """A one-line :class:`SeaIceError` for a failed write of ``path`` (disk full, read-only, ...); a file of a
    staging set named as the output it was to become (:func:`_as_output`)."""
    code = getattr(exc, "errno", None)
    problem = _disk_problem(path)
    if code == errno.ENOSPC or code == errno.EDQUOT or problem == "full":
        why = "the disk is full"
    elif code in (errno.EROFS, errno.EACCES, errno.EPERM) or problem == "read-only":
        why = "the directory is read-only or not writable"
    else:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        why = f"{type(exc).__name__}: {first[:200]}"
    return OutputWriteError(
        f"{_as_output(path)}: cannot write the file ({why}); free space or choose a writable --output "
        "(no output was published or changed)"
    )


def _is_write_failure(path: Path, exc: BaseException) -> bool:
    """An OSError always is; a RuntimeError (netCDF 'HDF error', torch 'enforce fail') when the disk is the cause."""
    if isinstance(exc, OSError):
        return True
    return isinstance(exc, RuntimeError) and _disk_problem(path) is not None


@contextlib.contextmanager
def health_marks(attrs: Mapping[str, str] | None) -> Iterator[None]:
    """While active, :func:`atomic_path` adds ``attrs`` as global attributes to every NetCDF file."""
    token = _health_attrs.set(dict(attrs) if attrs else None)
    try:
        yield
    finally:
        _health_attrs.reset(token)


def _mark_netcdf(path: Path, attrs: Mapping[str, str]) -> None:
    import netCDF4

    with netCDF4.Dataset(path, "a") as ds:
        for k, v in attrs.items():
            ds.setncattr(k, v)


@contextlib.contextmanager
def atomic_path(path: Path, sync: bool = True) -> Iterator[Path]:
    """Write ``path`` atomically: yields a temporary path for the writer, then fsync + rename.

    The temporary file ``.NAME.tmpPID`` lies beside ``path``. If the block
    raises, the temporary file is removed and ``path`` is untouched. An
    :class:`OSError` (or a RuntimeError of a library while the disk is full or
    read-only) becomes a one-line :class:`SeaIceError`.

    ``sync=False``: for a file that is moved again through a synced ``atomic_path`` before it can
    be an output (a held output: :meth:`~empirical_seaice.io.output_writer.HeldOutputs.promote`):
    its write-out is started (:func:`start_write_out`), not waited for, and the later ``fsync``
    finds it written (on the ``benchmark`` twin's final pass no wait, instead of 0.03-0.045 s a file).
    """
    path = Path(path)
    tmp = tmp_name(path)
    try:
        try:
            yield tmp
            marks = _health_attrs.get()
            if marks and path.suffix == ".nc":
                _mark_netcdf(tmp, marks)
            if sync:
                _fsync_file(tmp)
            else:
                start_write_out(tmp)
            fault_point("write")
            os.replace(tmp, path)
            _digest_behind(path)
        except SeaIceError:
            raise
        except Exception as exc:
            if _is_write_failure(path, exc):
                raise write_error(path, exc) from None
            raise
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists():
                tmp.unlink()


def make_dir(path: Path, flag: str = "--output") -> Path:
    """``mkdir -p`` with a one-line error for a read-only or full disk."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SeaIceError(f"{flag}: cannot create directory {path} ({exc.strerror}); choose a writable place") from None
    return Path(path)


DIGEST = "sha256"
"""The manifest's checksum of a file (:func:`file_digest`): SHA-256, which ``sha256sum`` checks and which
x86 and ARM cores compute in hardware (1.37 GB/s on one core of the development machine against BLAKE2b's
0.53: benchmarks/results.md)."""


def file_digest(path: Path | BinaryIO, chunk: int = 1 << 20, algorithm: str = DIGEST) -> str:
    """The hex checksum of a file's bytes, read in chunks (``path``: or a file open for reading, closed here):
    ``algorithm`` ``"sha256"`` (:data:`DIGEST`) or ``"blake2b"`` (128-bit, the manifests written before
    2026-12-02)."""
    h = hashlib.blake2b(digest_size=16) if algorithm == "blake2b" else hashlib.new(algorithm)
    with open(path, "rb") if isinstance(path, (str, os.PathLike)) else path as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_digest_roots: set[Path] = set()
_digests: dict[tuple[int, ...], tuple[Path, Future]] = {}
_digest_lock = threading.Lock()


def crc32_function() -> Any:
    """ISA-L's CRC-32 (``isal``, a dependency; a quarter of zlib's CPU here: 0.29 against 1.03 CPU-s for
    the benchmark twin's 1.6 GB), else zlib's: the same polynomial and the same values."""
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency
        return zlib.crc32
    return isal_zlib.crc32


_digest_pool: ThreadPoolExecutor | None = None


def _identity(path: Path) -> tuple[int, ...]:
    """The file as it is now: device, inode, size, modification time (a rename keeps them; a write does not)."""
    return _stat_identity(os.stat(path))


def _stat_identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _under(path: Path, root: Path) -> bool:
    return root == path.parent or root in path.parents


def digest_written_files(root: Path, on: bool = True) -> None:
    """While ``on``: every file :func:`atomic_path` completes under ``root`` gets its :func:`file_digest`
    computed on a background thread (the run goes on meanwhile), for :func:`written_digest`. Turned
    off, the digests still queued or kept for files under ``root`` are dropped."""
    root = Path(root)
    with _digest_lock:
        if on:
            _digest_roots.add(root)
            return
        _digest_roots.discard(root)
        for key in [k for k, (p, _) in _digests.items() if _under(p, root)]:
            _digests.pop(key)[1].cancel()


def _digest_if_same(path: Path, key: tuple[int, ...]) -> str | None:
    """:func:`file_digest` of ``path`` if it is still the file ``key`` names, else None (also when it
    cannot be read now: :func:`written_digest` then reads it again)."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by file_digest
    except OSError:
        return None
    try:
        same = _stat_identity(os.fstat(f.fileno())) == key
    except OSError:
        same = False
    if not same:
        f.close()
        return None
    try:
        return file_digest(f)
    except OSError:
        return None


def _digest_behind(path: Path) -> None:
    """Queue the background digest of the file ``atomic_path`` has just put at ``path`` (best effort:
    where the file cannot be examined now, nothing is queued and :func:`written_digest` reads it)."""
    global _digest_pool
    with _digest_lock:
        roots = list(_digest_roots)
    if not any(_under(path, r) for r in roots):
        return
    try:
        key = _identity(path)
    except OSError:
        return
    with _digest_lock:
        known = _digests.get(key)
        if known is not None:  # the same file (device, inode, size, mtime), already queued
            if known[0] != path:  # renamed since (a held output promoted): its digest moves with it
                _digests[key] = (path, known[1])
            return
        if _digest_pool is None:
            _digest_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="file-digest")
        _digests[key] = (path, _digest_pool.submit(_digest_if_same, path, key))


def written_digest(path: Path) -> str:
    """:func:`file_digest` of ``path``: the one computed in the background after :func:`atomic_path`
    wrote it, when the file is still the one then hashed at the same place (same path, device, inode,
    size and modification time), else computed now."""
    path = Path(path)
    with _digest_lock:
        known = _digests.pop(_identity(path), None)
    if known is not None and known[0] == path and not known[1].cancelled():
        digest = known[1].result()
        if digest is not None:
            return digest
    return file_digest(path)


__all__ = [
    "crc32_function",
    "tmp_name",
    "fsync_dir",
    "OutputWriteError",
    "write_error",
    "health_marks",
    "atomic_path",
    "start_write_out",
    "make_dir",
    "DIGEST",
    "file_digest",
    "digest_written_files",
    "written_digest",
]
