"""empirical_seaice.memory: free memory given back between the stages of a run."""

from __future__ import annotations

import ctypes
import gc
import sys
import weakref

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
