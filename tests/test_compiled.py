"""The compiled kernels' helpers: prefetch and huge pages change no result; the vector operations are their loops."""

from __future__ import annotations

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


def test_vector_ops_are_their_loops():
    from numba import njit

    @njit
    def ops(pre, fin, a, b, w, hid, u, v, o_axpy, o_gemv, o_sig, o_sums):
        compiled.axpy16(o_axpy, 0, a, b, fin, 16)  # from lane 16 of the input
        compiled.gemv16(o_gemv, 16, np.float32(0.25), w, hid, 0, 16, 3)
        compiled.sigmoid16(pre, 16, o_sig, 0)
        compiled.sigmoid_grad16(o_sums, hid, 16, u, 0, v, 16, fin, 0, a, b)

    rng = np.random.default_rng(2)
    pre = np.zeros(32, np.float32)
    pre[16:] = [0.0, -87.5, 90.0, 1e-3, -1e-3, 3.0, -3.0, 12.0, -12.0, 0.5, -0.5, 40.0, -40.0, 7.25, -2.5, 1.0]
    fin = rng.uniform(0, 2, 32)
    w = rng.standard_normal(3).astype(np.float32)
    hid = rng.uniform(0.01, 0.99, 48).astype(np.float32)
    u, v = rng.standard_normal(16), rng.standard_normal(32)
    a, b = 0.75, -1.5
    o_axpy, o_gemv, o_sig, o_sums = (
        np.zeros(16, np.float32),
        np.zeros(32, np.float32),
        np.zeros(16, np.float32),
        np.zeros(4),
    )
    ops(pre, fin, a, b, w, hid, u, v, o_axpy, o_gemv, o_sig, o_sums)
    # axpy: a + b x in float64, rounded once to float32
    assert np.array_equal(o_axpy, (a + b * fin[16:]).astype(np.float32))
    # gemv: 0.25 + sum_r w[r] hid[16 r + k] in float32 (within 2 float32 ulps of float64); lanes 0-15 untouched
    expect = 0.25 + (w.astype(np.float64)[:, None] * hid.reshape(3, 16)).sum(axis=0)
    assert np.all(o_gemv[:16] == 0.0)
    np.testing.assert_allclose(o_gemv[16:], expect, rtol=3e-7, atol=3e-7)
    # the sigmoid with Cephes' expf: within 2 float32 ulps of 1 / (1 + exp(-x)); x clamped to [-88, 87]
    x = pre[16:].astype(np.float64)
    exact = 1.0 / (1.0 + np.exp(-np.clip(x, -88.0, 87.0)))
    np.testing.assert_allclose(o_sig, exact, rtol=2.4e-7, atol=1e-37)
    assert o_sig[0] == 0.5 and o_sig[2] == 1.0 and o_sig[1] < 1e-37
    # the backward pass of one sigmoid unit over 16 lanes: four sums
    h = hid[16:32].astype(np.float64)
    d = (a * u + b * v[16:]) * h * (1.0 - h)
    expect4 = [np.sum(u * h), np.sum(v[16:] * h), np.sum(d), np.sum(d * fin[:16])]
    np.testing.assert_allclose(o_sums, expect4, rtol=1e-13, atol=1e-15)


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
