"""The process's memory between the stages of a run: give back what is free.

A run's stages allocate and free arrays of up to tens of MB (blocks of a streamed pass,
row counts, the temporaries of building a network). The C allocator (glibc ``malloc``) keeps
freed memory below its mapping threshold (which it raises itself up to 32 MB once such an
array is freed) in its heap, resident and counted in the process's memory, and reuses it
only for requests that fit. :func:`release_free_memory` collects Python's unreachable
cycles (the trainer and its optimiser slab, a network's buffers) and then asks the allocator
to return every free page to the system (``malloc_trim(0)``). It changes no value; a run
calls it where a stage ends, so that the next stage's peak does not stack on the previous
one's freed memory. On the ``benchmark`` twin it gave back 160-330 MiB per stage end
(benchmarks/results.md, "Memory of a run").

:func:`map_large_arrays` fixes glibc's mapping threshold (and its trim threshold at twice that,
glibc's own rule): from a run's start to the end of training (its peak) at :data:`MMAP_THRESHOLD`,
instead of letting glibc raise it as large blocks are freed, so that an array of a MiB or more
built with the packed table is always its own mapping, returned to the system when it is freed,
and never a hole in the heap between two live blocks (on the ``benchmark`` twin 64 MiB off the
training stage, docs/scaling.md); during the initial diagnostics and after training at glibc's
ceiling (:data:`HEAP_THRESHOLD`; :func:`blocks_from_heap` for the initial diagnostics), so that the
passes' blocks of tens of MB are reused from the heap instead of mapped (and their pages faulted in)
anew each time, as glibc would do once its threshold has grown.

:func:`populate_pages` brings a new array's pages in before its writes need them (the cache's files on the
reader's background thread, the packed table on :func:`empirical_seaice.compiled.populate_behind`'s).

Without glibc (another C library or OS) only the garbage collection is done.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import mmap
import os
import sys
from collections.abc import Iterator
from typing import Any

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20
"""Bytes from which a ``malloc`` request is a mapping of its own while a run trains (:func:`map_large_arrays`)."""
HEAP_THRESHOLD = 32 << 20
"""glibc's largest automatic threshold (64-bit): below it a request comes from the heap (the other stages)."""


@functools.cache
def glibc(name: str, *argtypes: Any) -> Any:
    """glibc's function ``name`` (returning int, taking ``argtypes``), or None (not Linux, not glibc);
    looked up once: the package's one place that loads the C library (``malloc_trim``, ``mallopt``,
    ``madvise``, ``sync_file_range``)."""
    if sys.platform != "linux":  # pragma: no cover - not Linux
        return None
    try:
        fn = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None
    fn.argtypes = list(argtypes)
    fn.restype = ctypes.c_int
    return fn


def release_free_memory(collect: bool = True) -> bool:
    """Collect unreachable Python objects, then return the allocator's free pages to the system.
    True where the allocator was asked (glibc), False where only the collection ran.
    ``collect=False``: only return the free pages (where what was freed was arrays, not reference
    cycles: a full collection traverses every object of the process, 0.2-0.3 s in a run)."""
    if collect:
        gc.collect()
    trim = glibc("malloc_trim", ctypes.c_size_t)
    if trim is None:  # pragma: no cover - not glibc
        return False
    trim(0)
    return True


def map_large_arrays(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mapping threshold at ``threshold`` bytes (``mallopt(M_MMAP_THRESHOLD)``; glibc
    otherwise raises it up to 32 MB as large blocks are freed, after which they come from the heap),
    and its trim threshold at twice that (``M_TRIM_THRESHOLD``: what glibc's own rule sets when it
    raises the first; left at its 128 KiB default, every free of a few hundred KiB at the heap's top
    would hand the pages back and the next request fault them in again).
    Changes no value. True where glibc took it, False elsewhere."""
    mallopt = glibc("mallopt", ctypes.c_int, ctypes.c_int)
    if mallopt is None:  # pragma: no cover - not glibc
        return False
    return mallopt(_M_MMAP_THRESHOLD, int(threshold)) == 1 and mallopt(_M_TRIM_THRESHOLD, 2 * int(threshold)) == 1


@contextlib.contextmanager
def blocks_from_heap() -> Iterator[None]:
    """Inside: a pass's blocks reused from the heap (:func:`map_large_arrays` at :data:`HEAP_THRESHOLD`); after:
    the training's threshold (:data:`MMAP_THRESHOLD`) and the blocks' freed pages returned to the system.
    The initial diagnostics of a run that trains, between its build and its training (both at
    :data:`MMAP_THRESHOLD`)."""
    map_large_arrays(HEAP_THRESHOLD)
    try:
        yield
    finally:
        map_large_arrays()
        release_free_memory(collect=False)  # the pass's blocks (arrays, no cycles)


_MADV_POPULATE_WRITE = 23  # Linux 5.14
POPULATE_PIECE = 1 << 22
"""Bytes faulted in per ``madvise`` call of :func:`populate_pages` (4 MiB)."""


def populate_pages(a: Any) -> bool:
    """Fault in the pages of ``a``'s memory (an array, anonymous or a writable file mapping) as if written,
    on this thread, :data:`POPULATE_PIECE` bytes a call of ``madvise(MADV_POPULATE_WRITE)`` from its start
    (Linux 5.14; no value changes): the pages come in the order a writer going through the array from its
    start needs them, and the kernel holds the process's memory-map lock (for reading) over one call's range
    only, so that another thread's ``mmap`` and ``munmap`` (large numpy temporaries) wait for one piece, not
    for the whole array (one call for a whole array of the cache held the reader 0.2-0.3 s where new pages
    are slow to come). For the cache's arrays about a third of the kernel time of a fault at each first
    write (0.15-0.25 against 0.56-0.78 s for 0.74 GB). False where there is no ``madvise`` or the kernel
    refuses it (``EINVAL`` before 5.14): the first writes then fault the pages in, as without this."""
    madvise = glibc("madvise", ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    if madvise is None:  # pragma: no cover - not glibc
        return False
    page = mmap.PAGESIZE
    begin, end = a.ctypes.data // page * page, a.ctypes.data + a.nbytes
    for lo in range(begin, end, POPULATE_PIECE):
        if madvise(lo, min(end, lo + POPULATE_PIECE) - lo, _MADV_POPULATE_WRITE) != 0:
            return False
    return True


@contextlib.contextmanager
def startup_objects_frozen() -> Iterator[None]:
    """Leave the objects that exist now (modules, classes, functions: about 230,000 once torch,
    xarray and netCDF4 are imported) out of the garbage collector's passes while the block runs
    (``gc.freeze``), and give them back to it afterwards (``gc.unfreeze``). A full collection then
    traverses only the run's own objects: 0.10 instead of 0.26 CPU-s on the ``benchmark`` twin, at
    each of a run's :func:`release_free_memory` calls. Changes no value. Nothing is collected before
    freezing: unreachable cycles that exist now (a previous run's in the same process, say) are
    frozen with the rest and freed only by a collection after the block ends. Objects frozen before the
    block (Python 3.12 starts with a few hundred; an application may freeze its own) stay frozen, and
    so do the block's: ``gc.unfreeze`` cannot give back some of them without the others."""
    before = gc.get_freeze_count()
    gc.freeze()
    try:
        yield
    finally:
        if before == 0:
            gc.unfreeze()


_MADV_DONTNEED = 4
RELEASE_PIECE = 16 << 20
"""Bytes of a memory-mapped source copied or read between two releases of its pages (:func:`copy_rows`)."""


def file_ranges(path: Any) -> list[tuple[int, int]]:
    """The address ranges ``[lo, hi)`` where this process maps the file ``path`` (``/proc/self/maps``;
    empty where there is none, or no ``/proc``)."""
    try:
        target = os.path.realpath(path)
        with open("/proc/self/maps") as maps:
            lines = maps.read().splitlines()
    except OSError:  # pragma: no cover - not Linux
        return []
    ranges = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == target:
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((lo, hi))
    return ranges


def release_file_pages(a: Any, ranges: list[tuple[int, int]]) -> int:
    """``madvise(MADV_DONTNEED)`` on the whole pages of the memory that ``a`` spans (a numpy array or a
    torch tensor, a strided view too: from its first element to its last) that lie inside ``ranges``,
    a file's read-only or shared mappings (:func:`file_ranges`; not a private copy-on-write one, whose
    changes the advice would drop): they leave the process's resident set and, read again, come back
    from the file (a shared map's written pages from the page cache). Memory outside them (an array in ordinary
    memory, which the advice would zero) is left alone. Returns the bytes released (0 where there is
    no ``madvise``)."""
    madvise = glibc("madvise", ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    if madvise is None or not ranges or 0 in a.shape:
        return 0
    if hasattr(a, "untyped_storage"):  # a torch tensor (strides in elements)
        item = a.element_size()
        start, steps = a.data_ptr(), [(n - 1) * st * item for n, st in zip(a.shape, a.stride(), strict=True)]
    else:
        item = a.itemsize
        start, steps = (
            a.__array_interface__["data"][0],
            [(n - 1) * st for n, st in zip(a.shape, a.strides, strict=True)],
        )
    start += sum(x for x in steps if x < 0)
    nbytes = sum(abs(x) for x in steps) + item
    page = mmap.PAGESIZE
    released = 0
    for lo, hi in ranges:
        a_lo, a_hi = max(lo, start // page * page), min(hi, -(-(start + nbytes) // page) * page)
        if a_hi > a_lo and madvise(a_lo, a_hi - a_lo, _MADV_DONTNEED) == 0:
            released += a_hi - a_lo
    return released


def copy_rows(dst: Any, src: Any, ranges: list[tuple[int, int]] | None = None) -> None:
    """``dst.copy_(src)`` of two torch tensors of the same shape, in pieces of rows of about
    :data:`RELEASE_PIECE` bytes, releasing the pages of each piece of ``src`` that lie in ``ranges``
    (:func:`release_file_pages`) once copied: a source mapped from a file then never has more than a
    piece resident. Without ``ranges``, one copy."""
    if not ranges or src.device.type != "cpu" or src.dim() == 0 or src.shape[0] == 0:
        dst.copy_(src)
        return
    row = max(1, src[0].numel() * src.element_size())
    step = max(1, RELEASE_PIECE // row)
    for a in range(0, src.shape[0], step):
        piece = src[a : a + step]
        dst[a : a + step].copy_(piece)
        release_file_pages(piece, ranges)


__all__ = [
    "copy_rows",
    "file_ranges",
    "release_file_pages",
    "RELEASE_PIECE",
    "populate_pages",
    "POPULATE_PIECE",
    "release_free_memory",
    "startup_objects_frozen",
    "blocks_from_heap",
    "map_large_arrays",
    "MMAP_THRESHOLD",
    "HEAP_THRESHOLD",
]
