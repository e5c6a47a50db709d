"""The compiled (numba) kernels' memory access: two LLVM operations that numba does not spell (a cache
prefetch, a float32 from its bits) and huge pages for the large tables they read at random. None of
them knows anything about sea ice; none changes a result.

- :func:`prefetch` / :func:`prefetch1` (``llvm.prefetch``): ask the CPU to bring the cache line of
  ``arr[i, j]`` / ``arr[i]`` into its caches while other work runs. The fused step reads its
  packed observations and state rows at random in tables of hundreds of MB; fetching the rows of
  an observation a few observations ahead hides most of the memory latency (measured in
  ``benchmarks/results.md``, "The fused step per core").
- :func:`f32_from_bits`: the float32 whose IEEE-754 bits are the given integer (a register
  ``bitcast``), so that a loop which builds ``2^k`` in the exponent bits stays vectorisable
  (through an array view it does not).

- :func:`huge_pages` / :func:`empty_huge`: ask Linux for 2 MiB pages (transparent huge pages,
  ``madvise(MADV_HUGEPAGE)``) for a table before it is first written. A random row of a table of
  hundreds of MB otherwise costs a TLB miss (a page-table walk) on top of the cache miss; with 2 MiB
  pages the TLB covers 512x more memory. Elsewhere (another OS, THP off) they do nothing.

Without numba the intrinsics are absent (``HAVE_NUMBA`` False); callers only use them in compiled code.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import numpy as np

_HUGE = 1 << 21  # 2 MiB
_MADV_HUGEPAGE = 14
_libc = None


def huge_pages(a: np.ndarray) -> bool:
    """Ask for transparent huge pages over the 2 MiB-aligned interior of ``a``'s memory (Linux; call
    before the memory is first written, so that its page faults take 2 MiB pages). True where the
    kernel accepted the advice; False elsewhere or for arrays under 4 MiB (nothing to gain)."""
    global _libc
    if sys.platform != "linux" or a.nbytes < 2 * _HUGE:
        return False
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        start = (a.ctypes.data + _HUGE - 1) & ~(_HUGE - 1)
        end = (a.ctypes.data + a.nbytes) & ~(_HUGE - 1)
        return end > start and _libc.madvise(start, end - start, _MADV_HUGEPAGE) == 0
    except (OSError, AttributeError):  # pragma: no cover - no libc madvise here
        return False


def empty_huge(shape, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)`` whose memory asked for huge pages (:func:`huge_pages`) before any write."""
    a = np.empty(shape, dtype=dtype)
    huge_pages(a)
    return a


try:  # optional: without numba the fused step is not used
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is absent
    HAVE_NUMBA = False


def _prefetch_codegen(context, builder, signature, args):
    """``llvm.prefetch`` (read, high locality, data cache) of the element ``args[1:]`` of array ``args[0]``."""
    aryty = signature.args[0]
    ary = context.make_array(aryty)(context, builder, args[0])
    ptr = cgutils.get_item_pointer(context, builder, aryty, ary, list(args[1:]), wraparound=False)
    i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
    i32 = ir.IntType(32)
    fnty = ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
    builder.call(fn, [i8p, i32(0), i32(3), i32(1)])
    return context.get_dummy_value()


if HAVE_NUMBA:

    @intrinsic
    def prefetch(typingctx, arr, i, j):
        """Prefetch the cache line of ``arr[i, j]`` (2-D array, non-negative in-range indices)."""
        if not isinstance(arr, types.Array) or arr.ndim != 2:
            return None
        return types.void(arr, i, j), _prefetch_codegen

    @intrinsic
    def prefetch1(typingctx, arr, i):
        """Prefetch the cache line of ``arr[i]`` (1-D array, non-negative in-range index)."""
        if not isinstance(arr, types.Array) or arr.ndim != 1:
            return None
        return types.void(arr, i), _prefetch_codegen

    @intrinsic
    def f32_from_bits(typingctx, bits):
        """The float32 whose IEEE-754 bits are the low 32 bits of the integer ``bits``."""
        if not isinstance(bits, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            v = args[0]
            if v.type.width != 32:
                v = builder.trunc(v, ir.IntType(32))
            return builder.bitcast(v, ir.FloatType())

        return types.float32(bits), codegen


__all__ = ["HAVE_NUMBA", "prefetch", "prefetch1", "f32_from_bits"]
