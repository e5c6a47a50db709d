"""The compiled per-block sums of the final diagnostics pass equal their numpy definitions bit for bit:
the health checks' figures (run/health.ObservationChecks) and the truth's ice-emissivity errors
(products/diagnostics.EmisErrorSums)."""

from types import SimpleNamespace

import numpy as np

from empirical_seaice.products.diagnostics import EmisErrorSums
from empirical_seaice.run.health import ObservationChecks


def _block(rng, n, nc):
    emis = rng.uniform(-0.05, 1.03, size=(n, nc)).astype(np.float32)
    tb = rng.uniform(150, 280, size=(n, nc)).astype(np.float32)
    for a in (emis, tb):
        a[rng.random(a.shape) < 0.01] = np.nan
        a[rng.random(a.shape) < 0.005] = np.inf
    mask = rng.random((n, nc)) < 0.8
    sic = rng.uniform(0.0, 1.0, n).astype(np.float32)
    return tb, emis, mask, sic


def test_health_block_equals_numpy():
    rng = np.random.default_rng(7)
    got, want = ObservationChecks(6), ObservationChecks(6)
    for _ in range(4):
        tb, emis, mask, sic = _block(rng, 400, 6)
        got.add(tb, emis, mask, sic)
        want.add_numpy(tb, emis, mask, sic)
    # a block without NaN among its valid ice emissivities sets the extremes
    tb, emis, mask, sic = _block(rng, 50, 6)
    emis = np.nan_to_num(emis, nan=0.5, posinf=1.02)
    got.add(tb, emis, mask, sic)
    want.add_numpy(tb, emis, mask, sic)
    for name in ("nonfinite_tb", "nonfinite_emis", "nice", "emis_max", "emis_min"):
        assert getattr(got, name) == getattr(want, name), name
    np.testing.assert_array_equal(got.bad, want.bad)
    np.testing.assert_array_equal(got.valid, want.valid)
    assert want.nonfinite_emis > 0 and want.bad.sum() > 0 and np.isfinite(want.emis_max)


def test_emis_error_block_equals_numpy_column_sums():
    rng = np.random.default_rng(8)
    ngrid, nstep, n, nc = 30, 9, 3000, 7
    true_sic = rng.uniform(0, 1, (ngrid, nstep)).astype(np.float32)
    true_emis = rng.uniform(0.6, 1.0, (n, nc)).astype(np.float32)
    true_emis[rng.random(true_emis.shape) < 0.05] = np.nan
    emis = rng.uniform(0.6, 1.0, (n, nc)).astype(np.float32)
    obs = SimpleNamespace(
        igrid=rng.integers(0, ngrid, n).astype(np.int32),
        istep=rng.integers(0, nstep, n).astype(np.int32),
        mask=rng.random((n, nc)) < 0.85,
    )
    truth = SimpleNamespace(sic=true_sic, emis_ice=true_emis)
    sums = EmisErrorSums(nc)
    sq, count = np.zeros(nc), np.zeros(nc, dtype=np.int64)
    for start in range(0, n, 1000):
        rows = slice(start, start + 1000)
        sums.add(obs, rows, emis[rows], truth)
        ice = true_sic[obs.igrid[rows], obs.istep[rows]] > 0.5
        sel = ice[:, None] & obs.mask[rows] & np.isfinite(true_emis[rows])
        d = np.where(sel, emis[rows].astype(np.float64) - true_emis[rows].astype(np.float64), 0.0)
        sq += (d * d).sum(axis=0)
        count += sel.sum(axis=0)
    assert count.min() > 100
    np.testing.assert_array_equal(sums.count, count)
    np.testing.assert_array_equal(sums.sq, sq)
