"""cost/neighbours.py: the smoothness prior's neighbour pairs, counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from empirical_seaice.cost.neighbours import grid_neighbours, pairs_csr, smoothness_pairs
from empirical_seaice.errors import SeaIceError


def _square(n=3):
    """An n x n grid of 1 degree at the equator (points g = row * n + column)."""
    lat, lon = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float), indexing="ij")
    return lat.ravel(), lon.ravel()


def test_grid_neighbours_are_the_side_neighbours_of_a_square_grid():
    lat, lon = _square(3)
    a, b, spacing = grid_neighbours(lat, lon)
    # 3 rows x 2 horizontal + 3 columns x 2 vertical = 12 pairs, no diagonals (1.41 spacings)
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == {
        (0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (0, 3), (3, 6), (1, 4), (4, 7), (2, 5), (5, 8),
    }  # fmt: skip
    assert spacing == pytest.approx(111.19, rel=1e-3)  # 1 degree of a great circle, km (chord ~ arc)


def test_smoothness_pairs_rows_and_errors():
    """2 grid points (neighbours), 3 columns: rows g * 3 + col; space pairs on every column, time pairs
    between consecutive columns of each grid point."""
    first, second, inv_var = smoothness_pairs(2, 3, 0.1, 0.2, np.array([0.0, 0.0]), np.array([0.0, 1.0]))
    pairs = list(zip(first.tolist(), second.tolist(), inv_var.round(6).tolist(), strict=True))
    assert pairs == [
        (0, 3, 100.0),
        (1, 4, 100.0),
        (2, 5, 100.0),
        (0, 1, 25.0),
        (1, 2, 25.0),
        (3, 4, 25.0),
        (4, 5, 25.0),
    ]
    t_first, t_second, t_inv = smoothness_pairs(2, 3, None, 0.2)  # time alone needs no geolocation
    assert (t_first.tolist(), t_second.tolist(), t_inv.round(9).tolist()) == ([0, 1, 3, 4], [1, 2, 4, 5], [25.0] * 4)
    with pytest.raises(SeaIceError, match="^--sic-smoothness: the spatial smoothness needs the grid's lon/lat"):
        smoothness_pairs(2, 3, 0.1, None)


def test_smoothness_pairs_from_given_neighbours_and_in_float32():
    """The grid's neighbour pairs found once and given again, and ``inv_var`` written as float32,
    give the same pairs as the k-d tree each time, and ``1 / sigma^2`` rounded once to float32."""
    lat, lon = np.meshgrid(np.arange(3.0), np.arange(4.0), indexing="ij")
    lat, lon = lat.ravel(), lon.ravel()
    once = smoothness_pairs(12, 5, 0.3, 0.7, lat, lon)
    a, b, _ = grid_neighbours(lat, lon)
    again = smoothness_pairs(12, 5, 0.3, 0.7, neighbours=(a, b), dtype=np.float32)
    assert np.array_equal(once[0], again[0]) and np.array_equal(once[1], again[1])
    assert again[2].dtype == np.float32 and np.array_equal(once[2].astype(np.float32), again[2])
    assert once[0].size == 17 * 5 + 12 * 4  # 17 side-neighbour pairs on each of 5 columns, 4 time steps a point
    assert set(np.unique(again[2]).tolist()) == {np.float32(1 / 0.3**2).item(), np.float32(1 / 0.7**2).item()}


def test_pairs_csr_lists_each_pair_from_both_ends():
    indptr, indices, weights = pairs_csr(4, np.array([0, 1, 0]), np.array([1, 2, 3]), np.array([1.0, 2.0, 3.0]))
    rows = {}
    for r in range(4):
        sl = slice(indptr[r], indptr[r + 1])
        rows[r] = list(zip(indices[sl].tolist(), weights[sl].tolist(), strict=True))
    assert rows == {0: [(1, 1.0), (3, 3.0)], 1: [(0, 1.0), (2, 2.0)], 2: [(1, 2.0)], 3: [(0, 3.0)]}
