"""io/truth: a sensor's per-channel truth rows scattered into the unified channel basis in one compiled
pass equal the numpy definition (NaN where the sensor lacks the channel), for rows in any order."""

from __future__ import annotations

import numpy as np

from empirical_seaice.io import truth


def test_compiled_scatter_equals_numpy():
    rng = np.random.default_rng(5)
    values = rng.uniform(0.5, 1.0, (400, 5)).astype(np.float32)  # the sensor file: 400 rows, 5 channels
    rows = np.sort(rng.choice(1000, 250, replace=False))  # the sensor's observations among 1000
    idx = rng.integers(0, 400, rows.size)  # their rows in the sensor's files
    cols = np.array([7, 0, 3])  # unified columns of the sensor's used channels
    fcols = np.array([4, 1, 2])  # those channels' file columns
    got = np.full((1000, 9), -1.0, dtype=np.float32)  # rows of other sensors stay as they were
    want = got.copy()
    truth._scatter_rows(values, idx, rows, cols, fcols, got)
    truth._scatter_rows_numpy(values, idx, rows, cols, fcols, want)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[rows][:, [1, 2, 4, 5, 6, 8]]).all()
    np.testing.assert_array_equal(got[rows[0], 7], values[idx[0], 4])
    assert (np.delete(got, rows, axis=0) == -1.0).all()
