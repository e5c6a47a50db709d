"""Helpers of the fused kernels equal the numpy code they replace, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from empirical_seaice.model import fused_kernels

pytestmark = pytest.mark.skipif(not fused_kernels.HAVE_NUMBA, reason="numba is not installed")


@pytest.mark.parametrize("n", [1, 7, 8, 9, 17, 51, 128, 129, 300, 1000])
def test_numpy_sum_adds_in_numpys_order(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        x = rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 6, n)  # magnitudes where the order shows
        assert fused_kernels._numpy_sum(x) == x.sum()
    x = np.array([1e16, 1.0, -1e16, 1.0] * 4 + [3.0])  # 17 values: 8 running sums, then the rest
    assert fused_kernels._numpy_sum(x) == x.sum()


@pytest.mark.parametrize("shape", [(3, 17), (1, 7), (4, 40)])
def test_bias_prior_equals_the_numpy_expressions(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(20):
        bi, bo, bg_i, bg_o = ((rng.standard_normal(shape) * 5).astype(np.float32) for _ in range(4))
        inv_var = 1.0 / (rng.uniform(0.001, 3.0, (shape[0], 1)).astype(np.float32).astype(np.float64) ** 2)
        g_bi, g_bo = rng.standard_normal(shape), rng.standard_normal(shape)
        nobs = 123_457
        ri, ro = bi - bg_i, bo - bg_o  # float32, as the program's numpy code computed them
        bias = (float((ri * ri * inv_var).sum()) + float((ro * ro * inv_var).sum())) / nobs
        out_i, out_o = np.empty(shape), np.empty(shape)
        got = fused_kernels._bias_prior(bi, bo, bg_i, bg_o, inv_var, float(nobs), g_bi, g_bo, out_i, out_o)
        assert got == bias
        assert np.array_equal(out_i, g_bi + ri * inv_var * (2.0 / nobs))
        assert np.array_equal(out_o, g_bo + ro * inv_var * (2.0 / nobs))
