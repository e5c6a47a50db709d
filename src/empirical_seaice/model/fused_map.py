"""The exact whole-map SIC priors of one map row, compiled (numba), for the fused "full" step.

The reference applies the whole-map SIC priors over every row of the map at every step
(:func:`empirical_seaice.cost.objective.map_prior_terms`, ``--map-priors full``). The fused
step of that scheme (:mod:`empirical_seaice.training.fused_step`) walks the whole SIC map once
per step; :func:`prior_row` is what it evaluates at each row: the value of each prior and
its derivative with respect to the row's SIC ``C``,

- range: ``r = C - clamp(C, 0, 1)``, ``r^2 / (sigma^2 nobs)``, ``d/dC = 2 r / (sigma^2 nobs)``;
- background (when on): ``r = C - C_b``, the same form;
- false ice (when on): ``r(C)`` of :func:`empirical_seaice.model.fused_kernels._false_ice` (tent or the
  reference's smooth bump), ``d/dC = 2 r r'(C) / (sigma^2 nobs)``;
- warm ice: the reference's ``[C > 0.01] w / (ngrid nstep nobs)`` (no gradient) or the effective
  ``max(C, 0) w / (ngrid nstep nobs)`` (``d/dC = w / (ngrid nstep nobs)`` for ``C >= 0``), with the
  row's warm weight ``w = max(T_map - threshold, 0) factor`` (0 on the lag columns).

With the SIC smoothness prior on, :func:`_smooth_pass` adds, per row ``r`` with neighbours ``N(r)``
(:func:`empirical_seaice.cost.neighbours.pairs_csr`), ``d/dC_r = sum_{j in N(r)} 2 (C_r - C_j) /
(sigma_rj^2 nobs)`` and half of ``sum_{j in N(r)} (C_r - C_j)^2 / (sigma_rj^2 nobs)`` (every pair is
listed from both ends): the ``sic_smoothness`` term :func:`~empirical_seaice.cost.terms.smoothness_penalty`
``/ nobs``.

Summed over the rows these are the terms of :func:`~empirical_seaice.cost.objective.map_prior_terms`
(tested equal, with their gradients, in ``tests/training/test_fused_full.py``).
:func:`map_priors` evaluates them over the whole map (parallel over fixed chunks, summed in
order: the same result for any thread count), for :meth:`FusedProgram.map_priors
<empirical_seaice.model.fused.FusedProgram.map_priors>`.
:func:`map_prior_sums` (the row priors' values only) and :func:`smoothness_sum` (the smoothness
prior's, over the neighbour pairs as :func:`~empirical_seaice.cost.neighbours.smoothness_pairs` lists
them) give the diagnostics' cost the same terms in float64
(:meth:`~empirical_seaice.model.operator.HybridNetwork.full_prior_values`).
"""

from __future__ import annotations

import numpy as np

from empirical_seaice.cost.terms import false_ice_smooth_pieces
from empirical_seaice.model.fused_kernels import HAVE_NUMBA, NCHUNK, _false_ice, warm_weight

if HAVE_NUMBA:
    from numba import prange

    from empirical_seaice.compiled import njit
else:  # pragma: no cover - exercised only where numba is absent
    prange = range  # type: ignore[misc]

MAP_TERMS = ("sic_range", "sic_background", "false_ice", "warm_ice", "sic_smoothness")
"""The terms :func:`map_priors` returns, in order (a switched-off prior returns 0): those of
:func:`prior_row`, then the smoothness prior of :func:`_smooth_pass`."""


def prior_row(c, bgv, ww, flags, scales):
    """Whole-map priors of one row at SIC ``c`` (background ``bgv``, warm weight ``ww``):
    ``(range, background, false ice, warm ice, d(sum of the differentiable ones)/dC)``.

    ``flags`` (int64): background prior on, false-ice prior on, effective warm ice, false-ice
    shape (0 tent, 1 smooth); ``scales`` (float64): ``1 / (sigma^2 nobs)`` of the range,
    background and false-ice priors, ``1 / (ngrid nstep nobs)`` of the warm-ice mean, then the
    smooth bump's peak scaling, lower and upper bend and cap (``false_ice_smooth_pieces``).
    """
    s_range, s_bg, s_false, s_warm = scales[0], scales[1], scales[2], scales[3]
    r = c - min(max(c, 0.0), 1.0)
    t_range = r * r * s_range
    g = 2.0 * r * s_range
    t_bg = 0.0
    if flags[0]:
        r = c - bgv
        t_bg = r * r * s_bg
        g += 2.0 * r * s_bg
    t_false = 0.0
    if flags[1]:
        r, sl = _false_ice(c, flags[3], scales[4], scales[5], scales[6], scales[7])
        t_false = r * r * s_false
        g += 2.0 * r * sl * s_false
    t_warm = 0.0
    if flags[2]:
        t_warm = max(c, 0.0) * ww * s_warm
        if c >= 0.0:
            g += ww * s_warm
    elif c > 0.01:
        t_warm = ww * s_warm
    return t_range, t_bg, t_false, t_warm, g


def _map_pass(values, bg, t_map, wt, wf, flags, scales, grad, sums):
    """:func:`prior_row` over every row: derivatives into ``grad`` (float64, one per row; none where
    ``grad`` is empty: the values only), the terms summed per fixed chunk into ``sums`` (nchunk, 4): the
    same result for any thread count."""
    n = values.shape[0]
    nchunk = sums.shape[0]
    with_grad = grad.shape[0] > 0
    for k in prange(nchunk):
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for r in range((n * k) // nchunk, (n * (k + 1)) // nchunk):
            t0, t1, t2, t3, g = prior_row(
                float(values[r]), np.float64(bg[r]), warm_weight(t_map[r], wt, wf), flags, scales
            )
            s0 += t0
            s1 += t1
            s2 += t2
            s3 += t3
            if with_grad:
                grad[r] = g
        sums[k, 0] = s0
        sums[k, 1] = s1
        sums[k, 2] = s2
        sums[k, 3] = s3


def _smooth_pass(values, indptr, indices, weights, scale, grad, sums):
    """The smoothness prior over every row: ``sum_j 2 w_rj (C_r - C_j) scale`` added to ``grad[r]``,
    ``sum_j w_rj (C_r - C_j)^2 scale / 2`` summed per fixed chunk into ``sums`` (nchunk,)."""
    n = values.shape[0]
    nchunk = sums.shape[0]
    for k in prange(nchunk):
        s = 0.0
        for r in range((n * k) // nchunk, (n * (k + 1)) // nchunk):
            c = float(values[r])
            g = 0.0
            for e in range(indptr[r], indptr[r + 1]):
                d = c - float(values[indices[e]])
                g += weights[e] * d
                s += weights[e] * d * d
            grad[r] += 2.0 * g * scale
        sums[k] = 0.5 * s * scale


def _pairs_pass(values, first, second, inv_var, sums):
    """``sum_k (C_{first_k} - C_{second_k})^2 inv_var_k`` over the pairs ``k`` (each once), float64,
    summed per fixed chunk of pairs into ``sums`` (nchunk,)."""
    n = first.shape[0]
    nchunk = sums.shape[0]
    for k in prange(nchunk):
        s = 0.0
        for e in range((n * k) // nchunk, (n * (k + 1)) // nchunk):
            d = np.float64(values[first[e]]) - np.float64(values[second[e]])
            s += d * d * np.float64(inv_var[e])
        sums[k] = s


if HAVE_NUMBA:
    _pairs_pass = njit(cache=True, parallel=True)(_pairs_pass)
    _false_ice = njit(inline="always")(_false_ice.py_func)  # type: ignore[attr-defined]  # inlined in the loop
    prior_row = njit(cache=True, inline="always")(prior_row)
    _map_pass = njit(cache=True, parallel=True)(_map_pass)
    _smooth_pass = njit(cache=True, parallel=True)(_smooth_pass)


def row_constants(cost, ngrid: int, nstep: int, nobs: float) -> tuple[np.ndarray, np.ndarray]:
    """``(flags, scales)`` of :func:`prior_row` for the priors of ``cost`` (a
    :class:`~empirical_seaice.config.CostConfig`) over a map of ``ngrid`` points and ``nstep`` steps, per
    ``nobs`` observations."""
    lo, hi, h = false_ice_smooth_pieces(cost.false_ice_peak_scaling)
    flags = np.array(
        [
            int(cost.sic_background_prior),
            int(cost.false_ice_prior),
            int(cost.warm_ice == "effective"),
            0 if cost.false_ice_shape == "tent" else 1,
        ],
        dtype=np.int64,
    )
    scales = np.array(
        [
            1.0 / (cost.sic_error**2 * nobs),
            1.0 / (cost.sic_background_error**2 * nobs),
            1.0 / (cost.false_ice_error**2 * nobs),
            1.0 / (ngrid * nstep * nobs),
            cost.false_ice_peak_scaling,
            lo,
            hi,
            h,
        ]
    )
    return flags, scales


def map_constants(program) -> tuple[np.ndarray, np.ndarray]:
    """``(flags, scales)`` of :func:`prior_row` for a :class:`~empirical_seaice.model.fused.FusedProgram`."""
    a = program.arrays
    return row_constants(program.network.cost_config, a["ngrid"], a["nstep"], float(program.nobs_total))


def map_prior_sums(values: np.ndarray, bg: np.ndarray, t_map: np.ndarray, cost, ngrid: int, nstep: int, nobs: float):
    """The values of the row priors of :func:`prior_row` over the whole map (no derivatives), order
    :data:`MAP_TERMS` but the smoothness prior: ``values`` the SIC map (float32, one per row, any
    stride), ``bg`` its background, ``t_map`` each row's skin temperature (K; 0 on the lag columns:
    warm weight 0); the warm-ice term the mean over ``ngrid`` x ``nstep`` rows. Parallel over fixed
    chunks, summed in order: the same float64 values on any number of threads."""
    flags, scales = row_constants(cost, ngrid, nstep, nobs)
    sums = np.zeros((NCHUNK, 4))
    _map_pass(values, bg, t_map, cost.warm_ice_threshold_k, cost.warm_ice_factor, flags, scales, _NO_GRAD, sums)
    return sums.sum(axis=0)


_NO_GRAD = np.zeros(0)


def smoothness_sum(values: np.ndarray, first: np.ndarray, second: np.ndarray, inv_var: np.ndarray) -> float:
    """The smoothness prior's ``J_s`` (:func:`~empirical_seaice.cost.terms.smoothness_penalty`) of the
    map ``values`` over the neighbour pairs ``(first, second, inv_var)`` (each pair once), in float64:
    parallel over fixed chunks of pairs, summed in order (the same value on any number of threads)."""
    sums = np.zeros(NCHUNK)
    _pairs_pass(values, first, second, inv_var, sums)
    return float(sums.sum())


def map_priors(program, values: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """The exact whole-map priors of the SIC map ``values`` (float32, one per row, any stride):
    their derivatives into ``grad`` (float64, same length), their values (order :data:`MAP_TERMS`,
    each ``sum_r p(C_r) / nobs``; the warm-ice mean; then the smoothness prior, 0 when off) returned."""
    flags, scales = map_constants(program)
    sums = np.zeros((NCHUNK, 4))
    a = program.arrays
    _map_pass(values, a["bg"], a["t_map"], program.fp[15], program.fp[16], flags, scales, grad, sums)
    smooth = np.zeros(NCHUNK)
    if "smooth_indptr" in a:
        scale = 1.0 / float(program.nobs_total)
        _smooth_pass(values, a["smooth_indptr"], a["smooth_indices"], a["smooth_weights"], scale, grad, smooth)
    return np.append(sums.sum(axis=0), smooth.sum())


__all__ = ["MAP_TERMS", "prior_row", "row_constants", "map_constants", "map_priors", "map_prior_sums", "smoothness_sum"]
