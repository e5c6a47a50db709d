"""The compiled kernels' helpers: prefetch and huge pages change no result; the vector operations are their loops."""

from __future__ import annotations

import platform
import re
import sys

import numpy as np
import pytest

from empirical_seaice import compiled

pytestmark = pytest.mark.skipif(not compiled.HAVE_NUMBA, reason="numba is not installed")


def test_prefetch_reads_nothing_into_the_result():
    from numba import njit

    @njit
    def gather_sum(table, rows, ahead):
        s = 0.0
        for b in range(rows.shape[0]):
            if b + ahead < rows.shape[0]:
                compiled.prefetch(table, rows[b + ahead], 0)
                compiled.prefetch1(table[:, 0], rows[b + ahead])
            for j in range(table.shape[1]):
                s += table[rows[b], j]
        return s

    rng = np.random.default_rng(1)
    table = rng.standard_normal((5000, 7))
    rows = rng.integers(0, 5000, 300)
    expect = 0.0
    for r in rows:
        for j in range(7):
            expect += table[r, j]
    assert gather_sum(table, rows, 0) == expect
    assert gather_sum(table, rows, 4) == expect


def test_empty_huge_is_an_ordinary_array():
    a = compiled.empty_huge((3 << 20, 2), np.float32)  # 24 MiB: advised on Linux with THP
    assert a.shape == (3 << 20, 2) and a.dtype == np.float32 and a.flags.c_contiguous
    a[:] = 1.5
    assert float(a.sum(dtype=np.float64)) == 1.5 * a.size
    small = compiled.empty_huge(10, np.int32)  # below 4 MiB: not advised, still an array
    assert small.shape == (10,) and not compiled.huge_pages(small)
    # on a 2 MiB boundary (every page can be huge), the small one on a cache line: a slab's 32-byte rows
    # then never straddle two lines (numpy's own large arrays start 16 bytes past a page)
    assert a.ctypes.data % (1 << 21) == 0 and small.ctypes.data % 64 == 0


def test_empty_aligned_starts_on_the_boundary():
    for align in (64, 4096, 1 << 21):
        for shape in ((7, 3), (1000, 8), (1, 1)):
            a = compiled.empty_aligned(shape, np.float32, align)
            assert a.ctypes.data % align == 0 and a.shape == shape and a.flags.c_contiguous and a.flags.writeable
            a[...] = 3.0  # its own memory, the whole of it
            assert float(a.sum()) == 3.0 * a.size


def test_vector_ops_are_their_loops():
    from numba import njit

    @njit
    def ops(pre, fin, a, b, w, hid, u, v, o_axpy, o_gemv, o_sig, o_sums, acc):
        compiled.axpy8(o_axpy, 0, a, b, fin, 8)  # from lane 8 of the input
        compiled.gemv8(o_gemv, 8, np.float32(0.25), w, hid, 0, 8, 3)
        compiled.sigmoid8(pre, 8, o_sig, 0)
        compiled.sigmoid8(pre, 16, o_sig, 8)
        o_sums[0] = compiled.sigmoid_grad8(acc, 4, hid, 8, u, 0, v, 8, fin, 0, a, b)
        o_sums[1] = compiled.sum8(acc, 4)
        o_sums[2] = compiled.sum8(acc, 12)
        o_sums[3] = compiled.sum8(acc, 20)

    rng = np.random.default_rng(2)
    pre = np.zeros(24, np.float32)
    pre[8:] = [0.0, -87.5, 90.0, 1e-3, -1e-3, 3.0, -3.0, 12.0, -12.0, 0.5, -0.5, 40.0, -40.0, 7.25, -2.5, 1.0]
    fin = rng.uniform(0, 2, 16)
    w = rng.standard_normal(3).astype(np.float32)
    hid = rng.uniform(0.01, 0.99, 24).astype(np.float32)
    u, v = rng.standard_normal(8), rng.standard_normal(16)
    a, b = 0.75, -1.5
    o_axpy, o_gemv, o_sig, o_sums = (
        np.zeros(8, np.float32),
        np.zeros(16, np.float32),
        np.zeros(16, np.float32),
        np.zeros(4),
    )
    acc = np.zeros(32)
    acc[4:28] = 0.5  # the lane sums are added to what is there
    ops(pre, fin, a, b, w, hid, u, v, o_axpy, o_gemv, o_sig, o_sums, acc)
    # axpy: a + b x in float64, rounded once to float32
    assert np.array_equal(o_axpy, (a + b * fin[8:]).astype(np.float32))
    # gemv: 0.25 + sum_r w[r] hid[8 r + k] in float32 (within 2 float32 ulps of float64); lanes 0-7 untouched
    expect = 0.25 + (w.astype(np.float64)[:, None] * hid.reshape(3, 8)).sum(axis=0)
    assert np.all(o_gemv[:8] == 0.0)
    np.testing.assert_allclose(o_gemv[8:], expect, rtol=3e-7, atol=3e-7)
    # the sigmoid with Cephes' expf: within 2 float32 ulps of 1 / (1 + exp(-x)); x clamped to [-88, 87]
    x = pre[8:].astype(np.float64)
    exact = 1.0 / (1.0 + np.exp(-np.clip(x, -88.0, 87.0)))
    np.testing.assert_allclose(o_sig, exact, rtol=2.4e-7, atol=1e-37)
    assert o_sig[0] == 0.5 and o_sig[2] == 1.0 and o_sig[1] < 1e-37
    # the backward pass of one sigmoid unit over 8 lanes: the sum of d, the other three lane by lane
    h = hid[8:16].astype(np.float64)
    d = (a * u + b * v[8:]) * h * (1.0 - h)
    np.testing.assert_allclose(acc[4:12], 0.5 + u * h, rtol=1e-15)
    np.testing.assert_allclose(acc[12:20], 0.5 + v[8:] * h, rtol=1e-15)
    np.testing.assert_allclose(acc[20:28], 0.5 + d * fin[:8], rtol=1e-15)
    assert acc[0] == acc[3] == acc[28] == acc[31] == 0.0  # nothing outside the three blocks
    expect4 = [np.sum(d), 4.0 + np.sum(u * h), 4.0 + np.sum(v[8:] * h), 4.0 + np.sum(d * fin[:8])]
    np.testing.assert_allclose(o_sums, expect4, rtol=1e-13, atol=1e-15)


def test_16_lane_vector_ops_are_two_8_lane_ones():
    """axpy16, gemv16, sigmoid16 and sigmoid_grad16 give what two calls of the 8-lane op on the two halves
    give, bit for bit (the fused kernel takes 16 evaluations at a time where it has them)."""
    from numba import njit

    @njit
    def ops16(pre, fin, a, b, w, hid, u, v, o, acc):
        compiled.axpy16(o[0], 0, a, b, fin, 0)
        compiled.gemv16(o[1], 0, np.float32(0.25), w, hid, 0, 16, 3)
        compiled.sigmoid16(pre, 0, o[2], 0)
        return compiled.sigmoid_grad16(acc, 0, hid, 0, u, 0, v, 0, fin, 0, a, b)

    @njit
    def ops8(pre, fin, a, b, w, hid, u, v, o, acc):
        total = 0.0
        for h in (0, 8):
            compiled.axpy8(o[0], h, a, b, fin, h)
            compiled.gemv8(o[1], h, np.float32(0.25), w, hid, h, 16, 3)
            compiled.sigmoid8(pre, h, o[2], h)
            total += compiled.sigmoid_grad8(acc, 0, hid, h, u, h, v, h, fin, h, a, b)
        return total

    rng = np.random.default_rng(4)
    pre = rng.normal(scale=6.0, size=16).astype(np.float32)
    pre[:3] = [0.0, -90.0, 95.0]
    fin, u, v = rng.uniform(0, 2, 16), rng.standard_normal(16), rng.standard_normal(16)
    w = rng.standard_normal(3).astype(np.float32)
    hid = rng.uniform(0.01, 0.99, 48).astype(np.float32)
    results = []
    for ops in (ops16, ops8):
        o = np.zeros((3, 16), np.float32)
        acc = np.full(24, 0.5)
        total = ops(pre, fin, 0.75, -1.5, w, hid, u, v, o, acc)
        results.append((o, acc, total))
    (o16, acc16, t16), (o8, acc8, t8) = results
    assert np.array_equal(o16, o8) and np.array_equal(acc16, acc8) and t16 == t8
    exact = 1.0 / (1.0 + np.exp(-np.clip(pre.astype(np.float64), -88.0, 87.0)))
    np.testing.assert_allclose(o16[2], exact, rtol=2.4e-7, atol=1e-37)
    h = hid[:16].astype(np.float64)
    assert t16 == pytest.approx(np.sum((0.75 * u - 1.5 * v) * h * (1.0 - h)), rel=1e-13)


def test_channels8_is_the_channel_loop():
    """Eight channels of the factored radiative transfer and its gradient as one vector equal the
    scalar loop (float64 except a_i and e_o in float32, as the kernel); the lane sums equal the sums."""
    from numba import njit

    @njit
    def run(row, cols, off, bi, bo, wc, emis, pm, de, g_wc, g_bi, g_bo, acc, ts, to_k, u, c, out):
        compiled.channels8(row, cols, off, bi, bo, wc, emis, pm, de, g_wc, g_bi, g_bo, acc, ts, to_k, u, c)
        out[0] = compiled.sum8(acc, 0)
        out[1] = compiled.sum8(acc, 8)

    rng = np.random.default_rng(3)
    nc, off = 19, 8  # channels 8 .. 15 of 19
    f32 = np.float32
    y, ew, tau, down, kk = (rng.uniform(lo, hi, nc).astype(f32) for lo, hi in
                            ((150, 260), (0.4, 0.7), (0.5, 1.0), (10, 80), (5, 40)))  # fmt: skip
    mask = (rng.uniform(0, 1, nc) > 0.2).astype(f32)
    row = np.concatenate([[f32(1.0)], y, ew, tau, down, kk]).astype(f32)
    cols = np.array([1 + k * nc for k in range(5)], dtype=np.int64)
    bi, bo, wc = (rng.normal(0, s, nc).astype(f32) for s in (2.0, 2.0, 0.01))
    emis, p = rng.uniform(0.6, 1.0, nc), rng.uniform(1e-3, 1e-2, nc)
    de, g_wc, g_bi, g_bo = np.full(nc, 7.0), np.full(nc, 0.5), np.full(nc, 0.25), np.full(nc, -0.5)
    acc = np.zeros(16)
    acc[:] = 1.0
    ts, to_k, u, c = f32(255.5), 271.35, f32(7.25), 0.625
    out = np.zeros(2)
    run(row, cols, off, bi, bo, wc, emis, mask * p, de, g_wc, g_bi, g_bo, acc, ts, to_k, u, c, out)
    k = slice(off, off + 8)
    a_i = (ts * tau[k] - down[k]).astype(np.float64)  # float32 arithmetic
    a_o = to_k * tau[k].astype(np.float64) - down[k]
    e_o = (ew[k] + wc[k] * u).astype(np.float64)
    tb_i = (kk[k] + bi[k]).astype(np.float64) + emis[k] * a_i
    tb_o = (kk[k] + bo[k]).astype(np.float64) + e_o * a_o
    d = tb_o + c * (tb_i - tb_o) - y[k]
    g = d * mask[k] * p[k]
    # a_i and e_o are float32 (with or without a fused multiply-add): TB to ~1e-5 K, d = TB - y to ~1e-6
    np.testing.assert_allclose(de[k], g * c * a_i, rtol=1e-5)
    np.testing.assert_allclose(g_wc[k], 0.5 + g * (1 - c) * a_o * u, rtol=1e-5)
    np.testing.assert_allclose(g_bi[k], 0.25 + g * c, rtol=1e-5)
    np.testing.assert_allclose(g_bo[k], -0.5 + g * (1 - c), rtol=1e-5)
    np.testing.assert_allclose(out, [8.0 + np.sum(d * g), 8.0 + np.sum(g * (tb_i - tb_o))], rtol=1e-5)
    # channels outside the eight untouched
    assert np.all(de[:off] == 7.0) and np.all(de[off + 8 :] == 7.0) and np.all(g_bi[off + 8 :] == 0.25)


def test_the_package_kernels_use_the_stamped_cache():
    from empirical_seaice.model import fused_kernels

    assert compiled.CACHE
    assert type(fused_kernels._chunk._cache._impl._locator).__name__.startswith("Stamped")


def test_a_cached_kernel_recompiles_when_a_helper_in_another_file_changes(tmp_path):
    """numba alone checks a cached kernel against its own file only; the guard keys it by every module
    of the package that uses numba, so editing a helper compiled into the kernel recompiles it."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    pkg = tmp_path / "empirical_seaice"
    shutil.copytree(Path(compiled.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "_probe_helper.py").write_text("import numba\n\n\n@numba.njit\ndef f(x):\n    return x + 1.0\n")
    (pkg / "_probe.py").write_text(
        "from empirical_seaice._probe_helper import f\n"
        "from empirical_seaice.compiled import njit\n\n\n"
        "@njit(cache=True)\ndef g(x):\n    return f(x) * 2.0\n\n\n"
        "print(g(1.0), g.stats.cache_hits.get(g.signatures[0], 0) if g.signatures else 0)\n"
    )
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin", "NUMBA_CACHE_DIR": str(tmp_path / "nc")}

    def run() -> tuple[float, int]:
        out = subprocess.run(
            [sys.executable, "-c", "import empirical_seaice._probe"], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        value, hits = out.stdout.split()
        return float(value), int(hits)

    assert run() == (4.0, 0)  # compiled and cached
    assert run() == (4.0, 1)  # loaded from the cache
    (pkg / "_probe_helper.py").write_text("import numba\n\n\n@numba.njit\ndef f(x):\n    return x + 100.0\n")
    assert run() == (202.0, 0)  # the helper's change recompiles the kernel that calls it


def test_start_numba_loads_numbas_registries_once():
    """In a new process: numba's lowering registries (``numba.np.arraymath`` among them) are not loaded
    until the first kernel, and ``start_numba`` loads them; a second call does nothing."""
    import subprocess
    import sys

    code = (  # the second call with njit counting its calls: none if it returns at once
        "import sys; import empirical_seaice.compiled as c; before = 'numba.np.arraymath' in sys.modules; "
        "c.start_numba(); after = 'numba.np.arraymath' in sys.modules; calls = []; "
        "c.njit = lambda *a, **k: calls.append(1); c.start_numba(); print(before, after, len(calls))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "0"]


def test_populate_behind_keeps_the_values():
    a = compiled.empty_huge((3 << 20, 2), np.float32, populate=True)  # 24 MiB, its pages faulted in behind
    a[:] = 2.5
    b = np.arange(3 << 20, dtype=np.float64)
    thread = compiled.populate_behind(b)  # pages already written: their values stay
    if thread is not None:
        thread.join()
    assert float(a.sum(dtype=np.float64)) == 2.5 * a.size
    np.testing.assert_array_equal(b, np.arange(3 << 20, dtype=np.float64))
    assert compiled.populate_behind(np.zeros(10)) is None  # under 4 MiB: nothing to do


def _resident_mib(a: np.ndarray) -> float:
    """MiB of ``a``'s whole pages resident in memory (``mincore``): the array's own pages, which other
    threads freeing memory at the same time do not change, as they change the process's count."""
    import ctypes
    import mmap

    from empirical_seaice.memory import glibc

    mincore = glibc("mincore", ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    page = mmap.PAGESIZE
    begin = -(-a.ctypes.data // page) * page
    npages = (a.ctypes.data + a.nbytes - begin) // page
    vec = np.zeros(npages, dtype=np.uint8)
    assert mincore(begin, npages * page, vec.ctypes.data) == 0
    return int(np.count_nonzero(vec & 1)) * page / 2**20


def _linux_at_least(major: int, minor: int) -> bool:
    found = re.match(r"(\d+)\.(\d+)", platform.release())
    return sys.platform.startswith("linux") and found is not None and tuple(map(int, found.groups())) >= (major, minor)


@pytest.mark.skipif(not _linux_at_least(5, 14), reason="MADV_POPULATE_WRITE needs Linux 5.14")
def test_populate_behind_brings_the_pages_in_before_any_write():
    import mmap

    # 64 MiB never written: no page of it resident yet. An anonymous map of its own, not np.empty: with
    # the heap's mmap threshold raised (empirical_seaice.memory), malloc may hand out pages touched before
    region = mmap.mmap(-1, 64 << 20)
    fresh = np.frombuffer(region, dtype=np.float64)
    assert _resident_mib(fresh) < 4
    thread = compiled.populate_behind(fresh)
    assert thread is not None
    thread.join()
    assert _resident_mib(fresh) > 63  # faulted in by the thread alone


def test_a_kernel_whose_cache_cannot_be_written_runs_with_a_warning(monkeypatch, caplog):
    """numba failing to serialise a kernel it just compiled (its own RuntimeError) or to write the
    cache file (OSError) costs the cache only: each call returns its result, with one warning per
    compilation naming the kernel and the error."""
    import logging

    def twice(x):
        return 2 * x

    kernel = compiled.njit(cache=True)(twice)
    failures = iter([RuntimeError("no compiled object yet for <Library 'twice'>"), OSError("disk full")])

    def fail(sig, data):
        raise next(failures)

    monkeypatch.setattr(kernel._cache, "_save_overload", fail)
    with caplog.at_level(logging.WARNING, logger="empirical_seaice"):
        assert kernel(21) == 42
        assert kernel(1.5) == 3.0  # a new signature: compiled again, its cache write fails again
    warnings = [r.getMessage() for r in caplog.records if "could not cache" in r.getMessage()]
    assert len(warnings) == 2 and all("twice" in w for w in warnings)
    assert "no compiled object yet" in warnings[0] and "disk full" in warnings[1]
