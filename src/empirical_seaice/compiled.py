"""The compiled (numba) kernels' memory access and SIMD: LLVM operations that numba does not spell (a
cache prefetch, a few operations on 8-lane vectors) and huge pages for the large tables they read at
random. None of them knows anything about sea ice; the prefetch and the huge pages change no result.

- :func:`prefetch` / :func:`prefetch1` (``llvm.prefetch``): ask the CPU to bring the cache line of
  ``arr[i, j]`` / ``arr[i]`` into its caches while other work runs. The fused step reads its
  packed observations and state rows at random in tables of hundreds of MB; fetching the rows of
  an observation a few observations ahead hides most of the memory latency (measured in
  ``benchmarks/results.md``, "The fused step per core").
- :func:`huge_pages` / :func:`empty_huge`: ask Linux for 2 MiB pages (transparent huge pages,
  ``madvise(MADV_HUGEPAGE)``) for a table before it is first written. A random row of a table of
  hundreds of MB otherwise costs a TLB miss (a page-table walk) on top of the cache miss; with 2 MiB
  pages the TLB covers 512x more memory. Elsewhere (another OS, THP off) they do nothing.
  :func:`empty_huge` also starts the table on a 2 MiB boundary (:func:`empty_aligned`), so that rows of a
  power-of-two size (the optimiser's slab rows) each sit in one cache line.

- :func:`axpy8`, :func:`gemv8`, :func:`sigmoid8`, :func:`sigmoid_grad8`, :func:`channels8`, :func:`sum8`: a few
  operations on 8 consecutive values as one LLVM vector (``<8 x float>`` / ``<8 x double>``: one or two AVX2
  registers, one AVX-512 register), for loops of a fixed small length that LLVM otherwise unrolls into scalar code (it
  cannot prove that the arrays do not overlap). Sums over the 8 lanes are added in a fixed tree order
  (lanes ``k`` and ``k + 4``, then ``k + 2``, ...), so a sum does not depend on the vector width (the
  rounding can still differ between CPUs with and without fused multiply-add). :func:`axpy16`,
  :func:`gemv16`, :func:`sigmoid16`, :func:`sigmoid_grad16`: the same over 16 lanes (one AVX-512 register;
  two AVX2 ones), what two 8-lane calls give, for a kernel that has 16 values at hand (a sensor with 9-15
  network evaluations, the 56 hidden values of 8 evaluations): never more work than the 8-lane calls, even
  where 512-bit operations run as two 256-bit halves (AMD Zen 4). In a kernel compiled with
  ``fastmath`` (the fused one), LLVM divides by a reciprocal estimate refined by one Newton step, 8 lanes
  (``vrcpps``) and 16 lanes (AVX-512's ``vrcp14ps``) alike but not to the same bits: the sigmoid's
  results there differ between the two widths by at most one float32 ulp (both within 3 ulps of the
  exact sigmoid); elsewhere, with an IEEE division, they are the same.

- :func:`njit`: ``numba.njit`` whose on-disk cache (``cache=True``) is keyed by the package's compiled
  code as a whole. numba checks a cached kernel only against the file that defines it (a hash of its
  bytes), not against the functions of other files compiled into it (the intrinsics here, the
  per-observation kernel inside the diagnostics' forward pass): after an edit or an upgrade that
  changes only those, it would load the old kernel. Every kernel's cache stamp therefore also holds
  a BLAKE2b of every module of the package that uses numba (:data:`SOURCE_DIGEST`), so a change to
  any of them recompiles every kernel once. Where this numba offers no way to add it (its cache
  locators are not public API), kernels are compiled without the disk cache, and a notice says so.

- :func:`start_numba`: numba's start-up in the process (its registries, 0.25-0.35 s once), which a run
  does at its start, before it reads the data.

Without numba the intrinsics are absent (``HAVE_NUMBA`` False); callers only use them in compiled code.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import logging
import threading
from pathlib import Path

import numpy as np

from empirical_seaice.memory import glibc, populate_pages

log = logging.getLogger(__name__)

_HUGE = 1 << 21  # 2 MiB
_MADV_HUGEPAGE = 14


def _madvise():
    """glibc's ``madvise(addr, length, advice)`` (:func:`empirical_seaice.memory.glibc`), or None."""
    return glibc("madvise", ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


def huge_pages(a: np.ndarray) -> bool:
    """Ask for transparent huge pages over the 2 MiB-aligned interior of ``a``'s memory (Linux; call
    before the memory is first written, so that its page faults take 2 MiB pages). True where the
    kernel accepted the advice; False elsewhere or for arrays under 4 MiB (nothing to gain)."""
    madvise = _madvise()
    if madvise is None or a.nbytes < 2 * _HUGE:
        return False
    start = (a.ctypes.data + _HUGE - 1) & ~(_HUGE - 1)
    end = (a.ctypes.data + a.nbytes) & ~(_HUGE - 1)
    return end > start and madvise(start, end - start, _MADV_HUGEPAGE) == 0


def empty_aligned(shape, dtype, align: int = 64) -> np.ndarray:
    """``np.empty(shape, dtype)`` starting at a multiple of ``align`` bytes (a power of two): a view of a
    byte buffer ``align`` bytes longer. numpy's own large arrays start 16 bytes past a page (glibc's
    header), so rows of a power-of-two size, e.g. a slab's 32 or 64 bytes, would straddle two cache
    lines (every other one or every one) and cost two misses where one was meant."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    buf = np.empty(nbytes + align, dtype=np.uint8)
    start = -buf.ctypes.data % align
    return buf[start : start + nbytes].view(dtype).reshape(shape)


def empty_huge(shape, dtype, populate: bool = False) -> np.ndarray:
    """``np.empty(shape, dtype)`` whose memory asked for huge pages (:func:`huge_pages`) before any write,
    starting on a 2 MiB boundary (:func:`empty_aligned`; the lead before it is never written, so never
    paged in but for malloc's header; 64 bytes under 4 MiB), so that every page of it can be a huge one
    and no row straddles more cache lines than its size needs; with ``populate``, its pages are brought
    in on a background thread (:func:`populate_behind`)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    a = empty_aligned(shape, dtype, _HUGE if nbytes >= 2 * _HUGE else 64)
    huge_pages(a)
    if populate:
        populate_behind(a)
    return a


def populate_behind(a: np.ndarray) -> threading.Thread | None:
    """Fault in the pages of a new array (``a``'s memory, at least 4 MiB) as if written, on a daemon thread
    (:func:`~empirical_seaice.memory.populate_pages`: piece by piece from its start; no value changes): the
    first touch of its pages (with huge pages, finding and zeroing 2 MiB of memory each, which can mean
    compacting memory) is then paid on another core while the caller fills the array from its start; a
    page the caller writes first is faulted in by that write, as without this. The thread holds ``a``
    until it is done. Returns the thread, or None (not Linux, a small array, no ``madvise``): the pages
    then come at the first writes."""
    if _madvise() is None or a.nbytes < 2 * _HUGE:
        return None
    thread = threading.Thread(target=populate_pages, args=(a,), name="populate-pages", daemon=True)
    thread.start()
    return thread


try:  # optional: without numba the fused step is not used
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is absent
    HAVE_NUMBA = False

_PACKAGE = Path(__file__).resolve().parent


def _source_digest() -> str:
    """BLAKE2b (hex) of the path and bytes of every module of the package that mentions numba."""
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(_PACKAGE.rglob("*.py")):
        data = path.read_bytes()
        if b"numba" in data:
            h.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0" + data)
    return h.hexdigest()


SOURCE_DIGEST = _source_digest()


def _stamped(base: type) -> type:
    """A numba cache locator like ``base`` for the package's own files whose source stamp also holds
    :data:`SOURCE_DIGEST`; it declines files outside the package (the next locator takes them)."""

    class Stamped(base):
        @classmethod
        def from_function(cls, py_func, py_file):
            if not Path(py_file).resolve().is_relative_to(_PACKAGE):
                return None
            return super().from_function(py_func, py_file)

        def get_source_stamp(self):
            return (super().get_source_stamp(), SOURCE_DIGEST)

    Stamped.__name__ = Stamped.__qualname__ = f"Stamped{base.__name__}"
    return Stamped


def _install_cache_guard() -> bool:
    """Put the stamped locators first in numba's list (idempotent); False where that list or the
    locators are missing (another numba) or an environment variable replaces the list."""
    try:
        from numba.core import caching, config
    except ImportError:  # pragma: no cover - exercised only where numba is absent
        return False
    locators = getattr(getattr(caching, "CacheImpl", None), "_locator_classes", None)
    names = ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator")
    bases = [getattr(caching, n, None) for n in names]
    if not isinstance(locators, list) or None in bases or getattr(config, "CACHE_LOCATOR_CLASSES", None):
        log.warning("numba's cache cannot be keyed by the package's code here: kernels compile at every start")
        return False
    if not any(getattr(c, "__name__", "").startswith("Stamped") for c in locators):
        locators[:0] = [_stamped(b) for b in bases if b is not None]
    return True


CACHE = HAVE_NUMBA and _install_cache_guard()


def njit(*args, **kwargs):
    """``numba.njit`` with ``cache=True`` honoured only under the package's cache guard (:data:`CACHE`;
    module docstring), and a failure to write the cache a warning, not an error
    (:func:`guard_cache_save`). Same arguments as ``numba.njit``."""
    import numba

    if kwargs.get("cache"):
        kwargs["cache"] = CACHE
    made = numba.njit(*args, **kwargs)
    if not kwargs.get("cache"):
        return made
    if hasattr(made, "_cache"):  # njit(func, cache=True): the dispatcher
        return guard_cache_save(made)
    return lambda func: guard_cache_save(made(func))  # njit(cache=True)(func)


def guard_cache_save(dispatcher):
    """``dispatcher`` (a numba dispatcher) whose cache writes log a warning instead of raising where numba
    fails to serialise what it just compiled (seen once at a run's first compilation: ``RuntimeError: no
    compiled object yet``) or the cache file cannot be written (``OSError``: a full disk): the kernel is
    compiled and runs; only the next start compiles it again."""
    cache = getattr(dispatcher, "_cache", None)
    save = getattr(cache, "save_overload", None)
    if save is None:
        return dispatcher
    name = getattr(dispatcher, "__name__", "kernel")

    def guarded(sig, data):
        try:
            save(sig, data)
        except (RuntimeError, OSError) as exc:
            log.warning(
                "numba could not cache the compiled %s (%s): it runs, and compiles again at the next start", name, exc
            )

    cache.save_overload = guarded
    return dispatcher


def _start_py(x):  # pragma: no cover - compiled below
    """``x + 1``: a kernel whose first call is numba's start-up alone (:func:`start_numba`)."""
    return x + 1


_started = False


def start_numba() -> None:
    """numba's start-up in this process, now (once; nothing without numba; a failure is left to the
    kernels' own calls, which report it). numba's first compilation or cache load in a process loads its
    typing and lowering registries: 0.25-0.35 s on this project's machine, half of it importing
    scipy.linalg, which numba imports to check for a BLAS. A run calls this at its start, before it reads
    the data (:func:`empirical_seaice.run.train.run`): the reader's first kernel would do it otherwise. On
    a thread beside the reader's first passes, where it was before, it took longer than alone (both hold
    the GIL most of that time): on the ``benchmark`` twin the start-up and the read took 1.51-1.55 s one
    after the other, against 1.61-1.65 s with the start-up beside the read (benchmarks/results.md,
    "Issue 16, sixteenth round")."""
    global _started
    if _started or not HAVE_NUMBA:
        return
    _started = True
    try:
        njit(cache=True, nogil=True)(_start_py)(1)
    except Exception as exc:  # pragma: no cover - numba that cannot compile: the kernels' own calls report it
        log.debug("numba's start-up failed (%s); the first kernel will say why", exc)


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

    _W = 8
    _CONTRACT = ("contract",)

    def _vec_ptr(context, builder, aryty, ary_val, idx, vecty):
        """Pointer to ``<W x T>`` at element ``idx`` of the 1-D array ``ary_val``."""
        ary = context.make_array(aryty)(context, builder, ary_val)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [idx], wraparound=False)
        return builder.bitcast(ptr, vecty.as_pointer())

    def _load(context, builder, aryty, ary_val, idx, elt, n=_W):
        vecty = ir.VectorType(elt, n)
        return builder.load(
            _vec_ptr(context, builder, aryty, ary_val, idx, vecty), align=4 if elt == ir.FloatType() else 8
        )

    def _store(context, builder, aryty, ary_val, idx, value):
        ptr = _vec_ptr(context, builder, aryty, ary_val, idx, value.type)
        builder.store(value, ptr, align=4 if value.type.element == ir.FloatType() else 8)

    def _splat(builder, x, n=_W):
        vecty = ir.VectorType(x.type, n)
        v = builder.insert_element(ir.Constant(vecty, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(
            v, ir.Constant(vecty, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), n), [0] * n)
        )

    def _hsum(builder, v):
        """Sum of the lanes of ``v`` in a fixed tree order: halves added lane by lane until one is left."""
        n = v.type.count
        undef = ir.Constant(v.type, ir.Undefined)
        while n > 1:
            n //= 2
            lo = builder.shuffle_vector(v, undef, ir.Constant(ir.VectorType(ir.IntType(32), n), list(range(n))))
            hi = builder.shuffle_vector(v, undef, ir.Constant(ir.VectorType(ir.IntType(32), n), list(range(n, 2 * n))))
            v = builder.fadd(lo, hi)
            undef = ir.Constant(v.type, ir.Undefined)
        return builder.extract_element(v, ir.Constant(ir.IntType(32), 0))

    def _is_1d(a, dtype):
        return isinstance(a, types.Array) and a.ndim == 1 and a.dtype == dtype and a.layout == "C"

    def _axpy(width):
        """:func:`axpy8` over ``width`` lanes."""

        def axpy(typingctx, out, o, a, b, x, xo):
            if not (_is_1d(out, types.float32) and _is_1d(x, types.float64)):
                return None

            def codegen(context, builder, sig, args):
                out_v, o_v, a_v, b_v, x_v, xo_v = args
                f64 = ir.DoubleType()
                xv = _load(context, builder, sig.args[4], x_v, xo_v, f64, width)
                a_v = context.cast(builder, a_v, sig.args[2], types.float64)
                b_v = context.cast(builder, b_v, sig.args[3], types.float64)
                r = builder.fadd(
                    _splat(builder, a_v, width),
                    builder.fmul(_splat(builder, b_v, width), xv, flags=_CONTRACT),
                    flags=_CONTRACT,
                )
                out_t = ir.VectorType(ir.FloatType(), width)
                _store(context, builder, sig.args[0], out_v, o_v, builder.fptrunc(r, out_t))
                return context.get_dummy_value()

            return types.void(out, o, a, b, x, xo), codegen

        axpy.__name__ = f"axpy{width}"
        return intrinsic(axpy)

    axpy8 = _axpy(8)
    axpy8.__doc__ = """``out[o + k] = a + b x[xo + k]``, k < 8: float64 ``a``, ``b``, ``x``, rounded to float32
        ``out``."""
    axpy16 = _axpy(16)
    axpy16.__doc__ = """:func:`axpy8` over 16 lanes ``k < 16``."""

    def _gemv(width):
        """:func:`gemv8` over ``width`` lanes."""

        def gemv(typingctx, out, o, c, w, src, so, stride, m):
            if not (_is_1d(out, types.float32) and _is_1d(w, types.float32) and _is_1d(src, types.float32)):
                return None

            def codegen(context, builder, sig, args):
                out_v, o_v, c_v, w_v, src_v, so_v, stride_v, m_v = args
                f32 = ir.FloatType()
                c_v = context.cast(builder, c_v, sig.args[2], types.float32)
                acc = cgutils.alloca_once_value(builder, _splat(builder, c_v, width))
                so_v = context.cast(builder, so_v, sig.args[5], types.int64)
                stride_v = context.cast(builder, stride_v, sig.args[6], types.int64)
                m_v = context.cast(builder, m_v, sig.args[7], types.int64)
                warr = context.make_array(sig.args[3])(context, builder, w_v)
                with cgutils.for_range(builder, m_v) as loop:
                    r = loop.index
                    ptr = cgutils.get_item_pointer(context, builder, sig.args[3], warr, [r], wraparound=False)
                    wr = builder.load(ptr)
                    at = builder.add(so_v, builder.mul(r, stride_v))
                    row = _load(context, builder, sig.args[4], src_v, at, f32, width)
                    prod = builder.fmul(_splat(builder, wr, width), row, flags=_CONTRACT)
                    builder.store(builder.fadd(builder.load(acc), prod, flags=_CONTRACT), acc)
                _store(context, builder, sig.args[0], out_v, o_v, builder.load(acc))
                return context.get_dummy_value()

            return types.void(out, o, c, w, src, so, stride, m), codegen

        gemv.__name__ = f"gemv{width}"
        return intrinsic(gemv)

    gemv8 = _gemv(8)
    gemv8.__doc__ = """``out[o + k] = c + sum_r w[r] src[so + r stride + k]`` (r = 0 .. m - 1 in order, k < 8),
        float32."""
    gemv16 = _gemv(16)
    gemv16.__doc__ = """:func:`gemv8` over 16 lanes ``k < 16``."""

    def _fcall(builder, name, vecty, *xs):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vecty, [vecty] * len(xs)), name)
        return builder.call(fn, list(xs))

    def _sigmoid(width):
        """:func:`sigmoid8` over ``width`` lanes (the same operations lane by lane: the same bits)."""

        def sigmoid(typingctx, pre, po, out, oo):
            if not (_is_1d(pre, types.float32) and _is_1d(out, types.float32)):
                return None

            def codegen(context, builder, sig, args):
                pre_v, po_v, out_v, oo_v = args
                f32 = ir.FloatType()
                vf = ir.VectorType(f32, width)
                vi = ir.VectorType(ir.IntType(32), width)

                def k(v):
                    return ir.Constant(vf, [float(np.float32(v))] * width)

                x = builder.fneg(_load(context, builder, sig.args[0], pre_v, po_v, f32, width))
                x = _fcall(
                    builder,
                    f"llvm.minnum.v{width}f32",
                    vf,
                    _fcall(builder, f"llvm.maxnum.v{width}f32", vf, x, k(-87.0)),
                    k(88.0),
                )
                fx = _fcall(
                    builder,
                    f"llvm.floor.v{width}f32",
                    vf,
                    builder.fadd(builder.fmul(x, k(1.44269504088896341)), k(0.5), flags=_CONTRACT),
                )
                r = builder.fsub(x, builder.fmul(fx, k(0.693359375)), flags=_CONTRACT)
                r = builder.fadd(r, builder.fmul(fx, k(2.12194440e-4)), flags=_CONTRACT)
                y = k(1.9875691500e-4)
                for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
                    y = builder.fadd(builder.fmul(y, r, flags=_CONTRACT), k(c), flags=_CONTRACT)
                y = builder.fadd(
                    builder.fadd(builder.fmul(builder.fmul(y, r), r, flags=_CONTRACT), r, flags=_CONTRACT), k(1.0)
                )
                e = builder.shl(
                    builder.add(builder.fptosi(fx, vi), ir.Constant(vi, [127] * width)), ir.Constant(vi, [23] * width)
                )
                den = builder.fadd(k(1.0), builder.fmul(y, builder.bitcast(e, vf), flags=_CONTRACT), flags=_CONTRACT)
                _store(context, builder, sig.args[2], out_v, oo_v, builder.fdiv(k(1.0), den))
                return context.get_dummy_value()

            return types.void(pre, po, out, oo), codegen

        sigmoid.__name__ = f"sigmoid{width}"
        return intrinsic(sigmoid)

    sigmoid8 = _sigmoid(8)
    sigmoid8.__doc__ = """``out[oo + k] = 1 / (1 + exp(-pre[po + k]))``, k < 8, float32, with Cephes' ``expf``
        (``x = k ln 2 + r``, a degree-7 polynomial for ``exp(r)``, ``2^k`` in the exponent bits;
        within 2 float32 ulps of ``exp`` on [-87, 88]) and a division (IEEE; a refined reciprocal estimate in
        a ``fastmath`` kernel: the module docstring)."""
    sigmoid16 = _sigmoid(16)
    sigmoid16.__doc__ = """:func:`sigmoid8` over 16 lanes ``k < 16`` (one AVX-512 register; the same bits but in a
        ``fastmath`` kernel: the module docstring)."""

    def _sigmoid_grad(width):
        """:func:`sigmoid_grad8` over ``width`` lanes (a multiple of 8): the lanes' sums into the same 8 lane
        accumulators, 8 lanes at a time in order; the returned sum: each 8 lanes' tree sum, added in order."""

        def sigmoid_grad(typingctx, acc, ao, h, ho, u, uo, v, vo, x, xo, alpha, beta):
            if not all(_is_1d(a, types.float64) for a in (acc, u, v, x)) or not _is_1d(h, types.float32):
                return None

            def codegen(context, builder, sig, args):
                acc_v, ao_v, h_v, ho_v, u_v, uo_v, v_v, vo_v, x_v, xo_v, al_v, be_v = args
                f64 = ir.DoubleType()
                vd = ir.VectorType(f64, width)
                hv = builder.fpext(_load(context, builder, sig.args[2], h_v, ho_v, ir.FloatType(), width), vd)
                uv = _load(context, builder, sig.args[4], u_v, uo_v, f64, width)
                vv = _load(context, builder, sig.args[6], v_v, vo_v, f64, width)
                xv = _load(context, builder, sig.args[8], x_v, xo_v, f64, width)
                al = _splat(builder, context.cast(builder, al_v, sig.args[10], types.float64), width)
                be = _splat(builder, context.cast(builder, be_v, sig.args[11], types.float64), width)
                one = ir.Constant(vd, [1.0] * width)
                d = builder.fadd(builder.fmul(al, uv, flags=_CONTRACT), builder.fmul(be, vv), flags=_CONTRACT)
                d = builder.fmul(builder.fmul(d, hv), builder.fsub(one, hv))
                ao_v = context.cast(builder, ao_v, sig.args[1], types.int64)
                undef = ir.Constant(vd, ir.Undefined)
                i32 = ir.IntType(32)

                def part(vec, q):  # lanes 8 q .. 8 q + 7
                    idx = ir.Constant(ir.VectorType(i32, _W), list(range(q * _W, (q + 1) * _W)))
                    return vec if width == _W else builder.shuffle_vector(vec, undef, idx)

                total = None
                for q in range(width // _W):
                    for j, vec in enumerate((builder.fmul(uv, hv), builder.fmul(vv, hv), builder.fmul(d, xv))):
                        o = builder.add(ao_v, ir.Constant(ir.IntType(64), j * _W))
                        old = _load(context, builder, sig.args[0], acc_v, o, f64)
                        _store(context, builder, sig.args[0], acc_v, o, builder.fadd(old, part(vec, q)))
                    t = _hsum(builder, part(d, q))
                    total = t if total is None else builder.fadd(total, t)
                return total

            return types.float64(acc, ao, h, ho, u, uo, v, vo, x, xo, alpha, beta), codegen

        sigmoid_grad.__name__ = f"sigmoid_grad{width}"
        return intrinsic(sigmoid_grad)

    sigmoid_grad8 = _sigmoid_grad(8)
    sigmoid_grad8.__doc__ = """The backward pass of one sigmoid unit over 8 lanes: with ``hk = h[ho + k]`` (float32, the
        unit's output), ``uk = u[uo + k]``, ``vk = v[vo + k]`` (the two next-layer gradients), ``xk = x[xo + k]``
        and ``dk = (alpha uk + beta vk) hk (1 - hk)``, returns ``sum_k dk`` (float64, tree order) and adds
        ``uk hk``, ``vk hk``, ``dk xk`` lane by lane into ``acc[ao + k]``, ``acc[ao + 8 + k]``,
        ``acc[ao + 16 + k]`` (float64): sums needed only over many calls, added across lanes once at the end
        (:func:`sum8`) instead of at every call."""
    sigmoid_grad16 = _sigmoid_grad(16)
    sigmoid_grad16.__doc__ = """:func:`sigmoid_grad8` over 16 lanes: lanes 0-7 then 8-15 added into the 8 accumulators,
        the return value the sum of the two halves' tree sums ``t0 + t1`` (two calls of :func:`sigmoid_grad8`
        added to a running sum ``s`` give ``(s + t0) + t1``: the same bits where ``s`` is 0, as in the fused
        kernel up to 31 evaluations)."""

    @intrinsic
    def channels8(typingctx, row, cols, off, bi, bo, wc, emis, pm, de, g_wc, g_bi, g_bo, acc, ts, to_k, u, c):
        """Eight consecutive channels ``ch = off .. off + 7`` of an observation's factored radiative transfer,
        observation term and gradient as one vector (the caller keeps ``off + 8 <= nc`` and does the rest
        one by one), with ``x[ch]`` the column ``row[cols[j] + ch]`` of the packed row (float32; ``cols``:
        the columns of the observed TB ``y``, the water emissivity, ``tau*``, ``D*`` and ``K``, in this
        order)::

            a_i = ts tau - D                      (float32, as the scalar kernel)
            a_o = to_k tau - D                    (float64)
            e_o = e_w + wc u                      (float32)
            TB_i = (K + bi) + e a_i, TB_o = (K + bo) + e_o a_o, TB = TB_o + c (TB_i - TB_o)
            g = (TB - y) pm,  de = g c a_i,  g_wc += g (1 - c) a_o u,  g_bi += g c,  g_bo += g (1 - c)

        and the sums ``(TB - y) g``, ``g (TB_i - TB_o)`` added lane by lane into ``acc[0:8]``, ``acc[8:16]``
        (float64; :func:`sum8` adds the lanes). ``pm``: the observation's weight of each channel (its mask
        times ``2 / (sigma^2 B)``). ``bi``, ``bo``, ``wc``: float32, ``emis``, ``pm``, ``de``, ``g_wc``,
        ``g_bi``, ``g_bo``: float64, all indexed by the channel."""
        f4, f8 = types.float32, types.float64
        if not (_is_1d(row, f4) and _is_1d(cols, types.int64) and all(_is_1d(a, f4) for a in (bi, bo, wc))):
            return None
        if not all(_is_1d(a, f8) for a in (emis, pm, de, g_wc, g_bi, g_bo, acc)):
            return None

        def codegen(context, builder, sig, args):
            (row_v, cols_v, off_v, bi_v, bo_v, wc_v, em_v, p_v, de_v, gwc_v, gbi_v, gbo_v, acc_v) = args[:13]
            at = sig.args
            i64 = ir.IntType(64)
            f32, f64 = ir.FloatType(), ir.DoubleType()
            v8 = ir.VectorType(f64, _W)
            off_v = context.cast(builder, off_v, at[2], types.int64)
            ts_v, tok_v, u_v, c_v = (
                context.cast(builder, args[13], at[13], f4),
                context.cast(builder, args[14], at[14], f8),
                context.cast(builder, args[15], at[15], f4),
                context.cast(builder, args[16], at[16], f8),
            )
            carr = context.make_array(at[1])(context, builder, cols_v)

            def col(j):
                ptr = cgutils.get_item_pointer(context, builder, at[1], carr, [i64(j)], wraparound=False)
                start = builder.add(builder.load(ptr), off_v)
                return _load(context, builder, at[0], row_v, start, f32)

            y, ew, tau, down, kk = (col(j) for j in range(5))

            def ld(k, elt):
                return _load(context, builder, at[k], args[k], off_v, elt)

            def ext(x):
                return builder.fpext(x, v8)

            fl = _CONTRACT
            a_i = ext(builder.fsub(builder.fmul(_splat(builder, ts_v, _W), tau, flags=fl), down, flags=fl))
            a_o = builder.fsub(builder.fmul(_splat(builder, tok_v, _W), ext(tau), flags=fl), ext(down), flags=fl)
            e_o = ext(builder.fadd(ew, builder.fmul(ld(5, f32), _splat(builder, u_v, _W), flags=fl), flags=fl))
            tb_i = builder.fadd(ext(builder.fadd(kk, ld(3, f32))), builder.fmul(ld(6, f64), a_i, flags=fl), flags=fl)
            tb_o = builder.fadd(ext(builder.fadd(kk, ld(4, f32))), builder.fmul(e_o, a_o, flags=fl), flags=fl)
            cv = _splat(builder, c_v, _W)
            one_c = builder.fsub(ir.Constant(v8, [1.0] * _W), cv)
            dtb = builder.fsub(tb_i, tb_o)
            d = builder.fsub(builder.fadd(tb_o, builder.fmul(cv, dtb, flags=fl), flags=fl), ext(y), flags=fl)
            g = builder.fmul(d, ld(7, f64))
            _store(context, builder, at[8], de_v, off_v, builder.fmul(builder.fmul(g, cv), a_i))
            uv = _splat(builder, builder.fpext(u_v, f64), _W)
            for k, add in (
                (9, builder.fmul(builder.fmul(builder.fmul(g, one_c), a_o), uv)),
                (10, builder.fmul(g, cv)),
                (11, builder.fmul(g, one_c)),
            ):
                _store(context, builder, at[k], args[k], off_v, builder.fadd(ld(k, f64), add))
            for j, add in ((0, builder.fmul(d, g)), (1, builder.fmul(g, dtb))):
                o = i64(j * _W)
                old = _load(context, builder, at[12], acc_v, o, f64)
                _store(context, builder, at[12], acc_v, o, builder.fadd(old, add, flags=fl))
            return context.get_dummy_value()

        return types.void(row, cols, off, bi, bo, wc, emis, pm, de, g_wc, g_bi, g_bo, acc, ts, to_k, u, c), codegen

    @intrinsic
    def sum8(typingctx, x, xo):
        """``sum_k x[xo + k]``, k < 8 (float64), in the tree order of the other sums here."""
        if not _is_1d(x, types.float64):
            return None

        def codegen(context, builder, sig, args):
            return _hsum(builder, _load(context, builder, sig.args[0], args[0], args[1], ir.DoubleType()))

        return types.float64(x, xo), codegen


__all__ = [
    "CACHE",
    "HAVE_NUMBA",
    "SOURCE_DIGEST",
    "njit",
    "start_numba",
    "prefetch",
    "prefetch1",
    "axpy8",
    "axpy16",
    "gemv8",
    "gemv16",
    "sigmoid8",
    "sigmoid16",
    "sigmoid_grad8",
    "sigmoid_grad16",
    "channels8",
    "sum8",
]
