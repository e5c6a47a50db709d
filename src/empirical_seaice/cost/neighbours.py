"""The neighbour pairs of the SIC smoothness prior (docs/method.md, "SIC smoothness prior").

Built once per run from the grid's geolocation: :func:`grid_neighbours` finds the pairs of
neighbouring grid points, :func:`smoothness_pairs` turns them, and consecutive days, into pairs of
rows of the flattened SIC map ``C[g, col]`` (row ``g * ncol + col``) with the error of each pair,
the input of :func:`empirical_seaice.cost.terms.smoothness_penalty`; :func:`pairs_csr` lists each
row's neighbours for the compiled whole-map pass.
"""

from __future__ import annotations

import numpy as np

from empirical_seaice.errors import SeaIceError

NEIGHBOUR_DISTANCE_FACTOR = 1.25
"""Two grid points are neighbours when closer than this many times the grid's spacing (the median
distance of a grid point to its nearest other one): the 4 side neighbours on a square grid, not the
diagonals (1.41)."""

EARTH_RADIUS_KM = 6371.0


def _unit_vectors(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    lat, lon = np.radians(np.asarray(lat_deg, np.float64)), np.radians(np.asarray(lon_deg, np.float64))
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)


def grid_neighbours(lat_deg: np.ndarray, lon_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Pairs ``(a, b)`` (int64, ``a < b``) of neighbouring grid points and the grid spacing (km).

    The spacing ``s`` is the median chord distance from a grid point to its nearest other one; the
    pairs are the grid points closer than :data:`NEIGHBOUR_DISTANCE_FACTOR` ``s`` (a k-d tree on unit
    vectors, any grid: regular, polar stereographic or reduced Gaussian).
    """
    from scipy.spatial import cKDTree

    xyz = _unit_vectors(lat_deg, lon_deg)
    if xyz.shape[0] < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0.0
    tree = cKDTree(xyz)
    dist, _ = tree.query(xyz, k=2)
    spacing = float(np.median(dist[:, 1]))
    pairs = tree.query_pairs(NEIGHBOUR_DISTANCE_FACTOR * spacing, output_type="ndarray").astype(np.int64)
    pairs.sort(axis=1)
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    return pairs[:, 0].copy(), pairs[:, 1].copy(), spacing * EARTH_RADIUS_KM


def smoothness_pairs(
    ngrid: int,
    ncol: int,
    space_error: float | None,
    time_error: float | None,
    lat_deg: np.ndarray | None = None,
    lon_deg: np.ndarray | None = None,
    *,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
    dtype: type = np.float64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(first, second, inv_var)`` of the SIC map's neighbour pairs, rows ``g * ncol + col``.

    Space (``space_error`` = ``sigma_s``, None = none): each pair of neighbouring grid points
    (:func:`grid_neighbours`, or the pairs ``neighbours`` it gave before) on every column; time
    (``time_error`` = ``sigma_t``): each grid point on consecutive columns (the lag columns, the days
    before the period, included). ``inv_var`` is ``1 / sigma^2`` of the pair (``dtype``). The space
    pairs need the grid's ``lat_deg``, ``lon_deg`` unless ``neighbours`` is given. Each array is
    written once, in place (tens of millions of pairs on a year's map).
    """
    a = b = None
    if space_error is not None:
        if neighbours is not None:
            a, b = neighbours
        elif lat_deg is None or lon_deg is None:
            raise SeaIceError(
                "--sic-smoothness: the spatial smoothness needs the grid's lon/lat (LON/LAT in the background "
                "SIC file, or --grid-file); give them, or use --sic-smoothness-time alone"
            )
        else:
            a, b, _ = grid_neighbours(lat_deg, lon_deg)
    n_space = 0 if a is None else a.size * ncol
    n_time = ngrid * (ncol - 1) if time_error is not None and ncol > 1 else 0
    first = np.empty(n_space + n_time, np.int64)
    second = np.empty(n_space + n_time, np.int64)
    inv_var: np.ndarray = np.empty(n_space + n_time, dtype)
    cols = np.arange(ncol, dtype=np.int64)
    if a is not None and b is not None:
        np.add((a * ncol)[:, None], cols, out=first[:n_space].reshape(a.size, ncol))
        np.add((b * ncol)[:, None], cols, out=second[:n_space].reshape(a.size, ncol))
        inv_var[:n_space] = 1.0 / space_error**2  # type: ignore[operator]
    if n_time:
        g = np.arange(ngrid, dtype=np.int64)[:, None] * ncol
        np.add(g, cols[:-1], out=first[n_space:].reshape(ngrid, ncol - 1))
        np.add(g, cols[1:], out=second[n_space:].reshape(ngrid, ncol - 1))
        inv_var[n_space:] = 1.0 / time_error**2  # type: ignore[operator]
    return first, second, inv_var


def pairs_csr(
    nrow: int, first: np.ndarray, second: np.ndarray, inv_var: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's neighbours: ``(indptr, indices, weights)`` (CSR, both directions of every pair), so
    that row ``r``'s neighbours are ``indices[indptr[r]:indptr[r + 1]]`` with ``1 / sigma^2`` in
    ``weights``: the row-wise form of :func:`~empirical_seaice.cost.terms.smoothness_grad`."""
    src = np.concatenate([first, second])
    dst = np.concatenate([second, first])
    w = np.concatenate([inv_var, inv_var]).astype(np.float64)
    order = np.lexsort((dst, src))
    indptr = np.zeros(nrow + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=nrow), out=indptr[1:])
    return indptr, dst[order].astype(np.int64), w[order]


__all__ = ["NEIGHBOUR_DISTANCE_FACTOR", "grid_neighbours", "smoothness_pairs", "pairs_csr"]
