"""The compiled kernels' memory helpers change no result: prefetch, float bits, huge pages."""

from __future__ import annotations

import numpy as np
import pytest

from empirical_seaice import compiled

pytestmark = pytest.mark.skipif(not compiled.HAVE_NUMBA, reason="numba is not installed")


def test_f32_from_bits_is_the_ieee_bit_pattern():
    from numba import njit

    @njit
    def from_bits(bits, out):
        for k in range(bits.shape[0]):
            out[k] = compiled.f32_from_bits(bits[k])

    rng = np.random.default_rng(0)
    exps = rng.integers(-126, 128, 1000)
    bits = ((exps + 127) << 23).astype(np.int64)  # 2^e, as the sigmoid block builds it
    bits[:3] = [0x3F800000, 0x40490FDB, 0x00000001]  # 1.0, pi, the smallest subnormal
    out = np.empty(bits.shape[0], dtype=np.float32)
    from_bits(bits, out)
    assert np.array_equal(out.view(np.int32), bits.astype(np.int32))
    assert out[0] == 1.0 and out[1] == np.float32(np.pi)
    assert np.array_equal(out[3:], np.ldexp(np.float32(1.0), exps[3:]).astype(np.float32))


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
