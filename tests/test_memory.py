"""empirical_seaice.memory: free memory given back between the stages of a run."""

from __future__ import annotations

import ctypes
import gc
import subprocess
import sys
import weakref

import pytest

from empirical_seaice.memory import release_free_memory


class _Node:
    pass


def _glibc() -> bool:
    try:
        return sys.platform == "linux" and hasattr(ctypes.CDLL("libc.so.6"), "malloc_trim")
    except OSError:
        return False


def test_release_collects_cycles_and_asks_the_allocator():
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a reference cycle: freed only by the garbage collector
    ref = weakref.ref(a)
    del a, b
    gc.disable()  # no automatic collection in between: the release must do it
    try:
        asked = release_free_memory()
    finally:
        gc.enable()
    assert ref() is None
    assert asked is _glibc()


def test_startup_objects_frozen_only_while_the_block_runs():
    from empirical_seaice.memory import startup_objects_frozen

    gc.unfreeze()  # Python 3.12 starts with a few hundred objects frozen
    assert gc.get_freeze_count() == 0
    with startup_objects_frozen():
        assert gc.get_freeze_count() > 0  # the objects that existed: out of the collections
        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a cycle of the run's own: still collected
        ref = weakref.ref(a)
        del a, b
        release_free_memory()
        assert ref() is None
    assert gc.get_freeze_count() == 0


def test_objects_frozen_before_the_block_stay_frozen():
    from empirical_seaice.memory import startup_objects_frozen

    def frozen(x) -> bool:  # out of the collector's generations (gc.unfreeze puts it back in the oldest)
        return not any(o is x for o in gc.get_objects(generation=2))

    mine = [object()]  # a container: tracked by the collector
    gc.freeze()  # an application's own frozen objects (or Python 3.12's at its start)
    try:
        assert frozen(mine) and gc.get_freeze_count() > 0
        with startup_objects_frozen():
            assert frozen(mine)
        assert frozen(mine)  # not given back to the collector behind the caller's back
    finally:
        gc.unfreeze()
    assert not frozen(mine)  # (the check can tell)


def test_release_without_collection_leaves_cycles():
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    ref = weakref.ref(a)
    del a, b
    gc.disable()
    try:
        release_free_memory(collect=False)
        assert ref() is not None  # only the allocator was asked
        release_free_memory()
        assert ref() is None
    finally:
        gc.enable()


_THRESHOLDS = """
import ctypes
from empirical_seaice.memory import HEAP_THRESHOLD, MMAP_THRESHOLD, blocks_from_heap, map_large_arrays

FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in FIELDS.split()]

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
libc.mallinfo2.restype = Mallinfo2
size = 4 << 20
out = [map_large_arrays(MMAP_THRESHOLD)]
mapped = libc.mallinfo2().hblkhd
p = libc.malloc(size)
out.append(libc.mallinfo2().hblkhd - mapped)  # a mapping of its own
libc.free(p)
out.append(map_large_arrays(HEAP_THRESHOLD))
mapped = libc.mallinfo2().hblkhd
p = libc.malloc(size)
out.append(libc.mallinfo2().hblkhd - mapped)  # from the heap
libc.free(p)
out.append(libc.mallinfo2().keepcost >= size)  # left at the heap's top
map_large_arrays(MMAP_THRESHOLD)  # a run that trains
libc.malloc_trim(0)  # (else the free top left above serves the next request whatever the threshold)
with blocks_from_heap():  # its initial diagnostics
    mapped = libc.mallinfo2().hblkhd
    p = libc.malloc(size)
    out.append(libc.mallinfo2().hblkhd - mapped)  # from the heap
    libc.free(p)
out.append(libc.mallinfo2().keepcost < size)  # handed back after the pass
mapped = libc.mallinfo2().hblkhd
p = libc.malloc(size)
out.append(libc.mallinfo2().hblkhd - mapped)  # a mapping of its own again (training)
libc.free(p)
print(*out)
"""


def test_map_large_arrays_maps_above_the_threshold_and_keeps_the_heap_top_below_twice_it():
    """In a new process (a long-lived one may serve the request from a free chunk of its heap, whatever
    the threshold): a 4 MiB request is a mapping of its own at the 1 MiB threshold (glibc's mapped bytes
    grow by it) and comes from the heap at the 32 MiB one; freed there, it stays at the heap's top (the
    trim threshold is 64 MiB, not glibc's 128 KiB default, which would hand it back at once). Inside
    ``blocks_from_heap`` from the heap, after it mapped again, the heap's free top handed back."""
    if not _glibc() or not hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2"):
        pytest.skip("glibc 2.33 or later only")
    out = subprocess.run([sys.executable, "-c", _THRESHOLDS], capture_output=True, text=True, check=True)
    took, grew, took_heap, grew_heap, kept, grew_pass, returned, grew_after = out.stdout.split()
    assert (took, took_heap) == ("True", "True")
    assert int(grew) >= 4 << 20 and int(grew_heap) == 0
    assert kept == "True"
    # blocks_from_heap (a training run's initial diagnostics): the heap inside, its free top handed back
    # after, and a mapping of its own again
    assert int(grew_pass) == 0 and returned == "True" and int(grew_after) >= 4 << 20


def _rss_file_kib() -> int:
    """The process's resident file-backed memory (``RssFile``, KiB)."""
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("RssFile:")).split()[1])


@pytest.mark.skipif(sys.platform != "linux", reason="/proc and madvise are Linux's")
def test_pages_of_a_mapped_file_are_released_and_read_again_from_it(tmp_path):
    """A tensor read through a memory map of its file (torch.load(mmap=True)): once read, its pages leave
    the resident set when released (64 MiB of RssFile, within what else moves meanwhile) and reading it
    again gives the same values; a strided view releases the pages it spans; memory outside the file's
    mappings (an ordinary tensor, which the advice would zero) is left alone, its values kept."""
    import numpy as np
    import torch

    from empirical_seaice.memory import copy_rows, file_ranges, release_file_pages

    path = tmp_path / "t.pt"
    torch.save({"a": torch.arange(16 << 20, dtype=torch.float32).reshape(-1, 8)}, path)  # 64 MiB
    a = torch.load(path, mmap=True, weights_only=True)["a"]
    ranges = file_ranges(path)
    assert len(ranges) == 1 and ranges[0][1] - ranges[0][0] >= a.numel() * 4
    total = float(a.sum(dtype=torch.float64))  # every page read: resident
    before = _rss_file_kib()
    assert release_file_pages(a, ranges) >= a.numel() * 4
    assert before - _rss_file_kib() > 48 << 10  # KiB
    assert float(a.sum(dtype=torch.float64)) == total  # read again from the file
    column = a[:, 3]  # a strided view spans the whole tensor
    float(column.sum())
    before = _rss_file_kib()
    assert release_file_pages(column, ranges) >= a.numel() * 4 - 4096 and before - _rss_file_kib() > 48 << 10
    plain = torch.arange(1 << 20, dtype=torch.float32)
    assert release_file_pages(plain, ranges) == 0 and release_file_pages(plain.numpy(), ranges) == 0
    assert torch.equal(plain, torch.arange(1 << 20, dtype=torch.float32))
    assert file_ranges(tmp_path / "none.pt") == [] and release_file_pages(a, []) == 0
    out = torch.empty_like(a)
    copy_rows(out, a, ranges)  # by pieces, each released
    assert torch.equal(out, a) and np.array_equal(out[:, 3].numpy(), column.numpy())
