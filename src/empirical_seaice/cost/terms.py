"""Terms of the cost function J = J_o + J_b (docs/method.md, "The cost function J").

Pure tensor functions. The ``*_penalty`` functions of the SIC map are
*elementwise* (same shape as ``C``) so that the network can sum them over the
whole map ("full" mode) or estimate that sum from the rows a batch touches
("sampled" mode, see :class:`empirical_seaice.cost.objective.BatchCost`). The others return the
summed scalar (or, for the observation term, one value per observation).
All arguments are dimensionless except TBs and errors in K.

Every prior is quadratic in a *residual*: ``p = r^2 / sigma^2``, so
``dp/dx = 2 r (dr/dx) / sigma^2`` (:func:`quadratic_penalty`,
:func:`quadratic_penalty_grad`). Each prior defines its residual ``r`` and,
where it is not 1, its slope ``dr/dx`` (``*_residual``, ``*_slope``); the
``*_penalty`` functions are built from them. How the terms make J:
:mod:`empirical_seaice.cost.objective`; the hand-differentiated training path
that uses the residuals and slopes directly: :mod:`empirical_seaice.cost.fused`.
The tests check each slope against autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor

FALSE_ICE_LOW = 0.0
"""Lower end of the SIC interval penalised by the false-ice prior."""
FALSE_ICE_PEAK = 0.15
"""SIC where the false-ice penalty peaks."""
FALSE_ICE_HIGH = 0.3
"""Upper end of the SIC interval penalised by the false-ice prior."""
WARM_ICE_SIC_THRESHOLD = 0.01
"""SIC above which a grid cell counts as ice in the warm-ice term."""


def observation_cost(tb_obs_k: Tensor, tb_sim_k: Tensor, mask: Tensor, obs_error_k: Tensor) -> Tensor:
    """Observation term of each observation.

    ``J_o,i = sum_c mask_ic ((y_ic - TB'_ic) / sigma_c)^2``

    Parameters
    ----------
    tb_obs_k, tb_sim_k : observed and simulated TB (K), (..., nchan).
    mask : 0/1 (float or bool), (..., nchan); masked channels contribute 0.
    obs_error_k : sigma_c (K), (nchan,).

    Returns
    -------
    (...,) the per-observation cost (dimensionless).
    """
    d = (tb_obs_k - tb_sim_k) / obs_error_k
    return (mask.to(d.dtype) * d * d).sum(-1)


def quadratic_penalty(r: Tensor, sigma: float | Tensor) -> Tensor:
    """``p = r^2 / sigma^2``, elementwise."""
    return r * r / (sigma * sigma)


def quadratic_penalty_grad(r: Tensor, slope: Tensor | float, sigma: float | Tensor) -> Tensor:
    """``dp/dx = 2 r (dr/dx) / sigma^2`` of :func:`quadratic_penalty` (``slope = dr/dx``)."""
    return r * slope * (2.0 / (sigma * sigma))


def sic_range_residual(sic: Tensor) -> Tensor:
    """``r(C) = C - clamp(C, 0, 1)``: the signed distance outside [0, 1] (``dr/dC = 1`` where ``r != 0``)."""
    return sic - torch.clamp(sic, 0.0, 1.0)


def sic_range_penalty(sic: Tensor, sigma: float) -> Tensor:
    """SIC range ("pdf") prior, elementwise.

    ``p(C) = [(max(C, 1) - 1)^2 + max(-C, 0)^2] / sigma^2 = r(C)^2 / sigma^2``
    (:func:`sic_range_residual`): zero on [0, 1].
    """
    return quadratic_penalty(sic_range_residual(sic), sigma)


def sic_background_residual(sic: Tensor, sic_background: Tensor) -> Tensor:
    """``r(C) = C - C_b`` (``dr/dC = 1``)."""
    return sic - sic_background


def sic_background_penalty(sic: Tensor, sic_background: Tensor, sigma: float) -> Tensor:
    """SIC background prior, elementwise: ``p(C) = (C - C_b)^2 / sigma^2``
    (:func:`sic_background_residual`)."""
    return quadratic_penalty(sic_background_residual(sic, sic_background), sigma)


def false_ice_residual(sic: Tensor) -> Tensor:
    """``r(C) = max(0.15 - |C - 0.15|, 0) = min(max(C, 0), max(0.3 - C, 0))``: the distance
    to the nearer end of (0, 0.3), 0 outside."""
    return torch.clamp((sic - FALSE_ICE_PEAK).abs().neg_().add_(FALSE_ICE_PEAK - FALSE_ICE_LOW), min=0.0)


def false_ice_slope(sic: Tensor) -> Tensor:
    """``dr/dC`` of :func:`false_ice_residual` where ``r != 0``: ``-sign(C - 0.15)`` (0 at the peak,
    where autograd's ``minimum`` splits the two one-sided slopes equally)."""
    return (sic - FALSE_ICE_PEAK).sign_().neg_()


def false_ice_penalty(sic: Tensor, sigma: float) -> Tensor:
    """False-ice prior, elementwise: a piecewise-quadratic bump on (0, 0.3).

    ``p(C) = min(C - 0, 0.3 - C)^2 / sigma^2 = r(C)^2 / sigma^2`` for ``0 < C < 0.3``,
    else 0 (:func:`false_ice_residual`).

    Two quadratic pieces, ``C^2`` rising from 0 and ``(0.3 - C)^2`` falling to
    0.3, meeting at the peak ``C = 0.15`` (value ``0.0225 / sigma^2``, 56.25 at
    sigma = 0.02). Continuous everywhere (zero at both ends); its gradient
    pushes SIC below 0.15 toward 0 and SIC above 0.15 toward 0.3 and beyond.
    """
    return quadratic_penalty(false_ice_residual(sic), sigma)


def false_ice_smooth_pieces(peak_scaling: float = 0.2) -> tuple[float, float, float]:
    """Break points and cap of the smooth false-ice bump (dimensionless SIC).

    With ``L = 0``, ``H = 0.3``, half width ``w = (H - L) / 2`` and peak scaling ``s``:
    bend ``b = s w / (1 + s)`` and cap height (times sigma^2) ``h = w b``. Returns
    ``(L + b, H - b, h)``: 0.025, 0.275 and 0.00375 for ``s = 0.2``.
    """
    w = 0.5 * (FALSE_ICE_HIGH - FALSE_ICE_LOW)
    bend = peak_scaling * w / (1.0 + peak_scaling)
    return FALSE_ICE_LOW + bend, FALSE_ICE_HIGH - bend, w * bend


def false_ice_smooth_residual(sic: Tensor, peak_scaling: float = 0.2) -> Tensor:
    """``r(C)`` with ``r^2 / sigma^2`` the smooth false-ice bump (:func:`false_ice_smooth_penalty`):

    ``r = C - L`` on ``(L, L + b]``, ``r = sqrt(h - s (P - C)^2)`` on ``(L + b, H - b)``,
    ``r = H - C`` on ``[H - b, H)``, 0 elsewhere (``L = 0``, ``P = 0.15``, ``H = 0.3``; ``b``, ``h``
    from :func:`false_ice_smooth_pieces`). Dimensionless.
    """
    lo, hi, h = false_ice_smooth_pieces(peak_scaling)
    # clamped at the smallest normal number, not 0: torch.where back-propagates 0 through the
    # unselected branch, and 0 * d sqrt(x)/dx at x = 0 would be NaN
    mid = torch.sqrt(torch.clamp(h - peak_scaling * (FALSE_ICE_PEAK - sic) ** 2, min=torch.finfo(sic.dtype).tiny))
    r = torch.where(sic <= lo, sic - FALSE_ICE_LOW, torch.where(sic < hi, mid, FALSE_ICE_HIGH - sic))
    inside = (sic > FALSE_ICE_LOW) & (sic < FALSE_ICE_HIGH)
    return torch.where(inside, r, torch.zeros_like(r))


def false_ice_smooth_slope(sic: Tensor, peak_scaling: float = 0.2) -> Tensor:
    """``dr/dC`` of :func:`false_ice_smooth_residual`: 1 on the rising flank, ``s (P - C) / r`` on the
    cap, -1 on the falling flank, 0 outside (0, 0.3)."""
    lo, hi, _ = false_ice_smooth_pieces(peak_scaling)
    r = false_ice_smooth_residual(sic, peak_scaling)
    cap = peak_scaling * (FALSE_ICE_PEAK - sic) / torch.clamp(r, min=torch.finfo(r.dtype).tiny)
    one = torch.ones_like(sic)
    slope = torch.where(sic <= lo, one, torch.where(sic < hi, cap, -one))
    inside = (sic > FALSE_ICE_LOW) & (sic < FALSE_ICE_HIGH)
    return torch.where(inside, slope, torch.zeros_like(slope))


def false_ice_smooth_penalty(sic: Tensor, sigma: float, peak_scaling: float = 0.2) -> Tensor:
    """Smooth false-ice prior of the v2 reference, elementwise (dimensionless).

    ``p(C) = C^2 / sigma^2``                          for ``0 < C <= b``
    ``p(C) = [h - s (0.15 - C)^2] / sigma^2``          for ``b < C < 0.3 - b``
    ``p(C) = (0.3 - C)^2 / sigma^2``                  for ``0.3 - b <= C < 0.3``, 0 elsewhere,

    with ``s = peak_scaling``, ``b = 0.15 s / (1 + s)``, ``h = 0.15 b``
    (:func:`false_ice_smooth_pieces`): quadratic flanks from 0 and to 0.3 joined by a
    downward parabola about 0.15, continuous in value and slope. For ``s = 0.2``,
    ``sigma = 0.02``: ``b = 0.025``, peak ``p(0.15) = 0.00375 / 0.0004 = 9.375``, steepest
    slope ``2 b / sigma^2 = 125`` at the joins. Equals ``r^2 / sigma^2``
    (:func:`false_ice_smooth_residual`).
    """
    return quadratic_penalty(false_ice_smooth_residual(sic, peak_scaling), sigma)


def warm_ice_weight(t_map_k: Tensor, threshold_k: float = 273.2, factor: float = 4.0) -> Tensor:
    """How warm a map row is for the warm-ice term: ``max(T_map - threshold, 0) factor``."""
    return torch.clamp(t_map_k - threshold_k, min=0.0) * factor


def warm_ice_penalty(
    sic: Tensor, t_map_k: Tensor, threshold_k: float = 273.2, factor: float = 4.0, effective: bool = False
) -> Tensor:
    """Warm-ice penalty, elementwise (see :func:`warm_ice_term` for the mean).

    - reference (``effective=False``): ``[C > 0.01] max(T - threshold, 0) factor``;
      the indicator is flat, so this has **zero gradient** w.r.t. C (the
      result is not even connected to C in the autograd graph);
    - effective (``effective=True``): ``max(C, 0) max(T - threshold, 0) factor``,
      differentiable: d/dC = ``factor max(T - threshold, 0)`` for C > 0.

    Parameters
    ----------
    sic : SIC map values C.
    t_map_k : daily skin temperature T_map (K), same shape.
    """
    return warm_ice_penalty_weighted(sic, warm_ice_weight(t_map_k, threshold_k, factor), effective)


def warm_ice_penalty_weighted(sic: Tensor, warm: Tensor, effective: bool = False) -> Tensor:
    """:func:`warm_ice_penalty` from the rows' :func:`warm_ice_weight` ``warm``:
    ``[C > 0.01] warm`` (reference) or ``max(C, 0) warm`` (effective)."""
    if effective:
        return torch.clamp(sic, min=0.0) * warm
    return (sic.detach() > WARM_ICE_SIC_THRESHOLD).to(warm.dtype) * warm


def warm_ice_penalty_weighted_grad(sic: Tensor, warm: Tensor, effective: bool = False) -> Tensor:
    """``dp/dC`` of :func:`warm_ice_penalty_weighted`: 0 (reference) or ``warm [C >= 0]`` (effective)."""
    if not effective:
        return torch.zeros_like(sic)
    return (sic >= 0.0).to(warm.dtype) * warm


def warm_ice_term(
    sic: Tensor,
    t_map_k: Tensor,
    threshold_k: float = 273.2,
    factor: float = 4.0,
    effective: bool = False,
    nobs: int = 1,
) -> Tensor:
    """Warm-ice term: ``mean([C > 0.01] max(T_map - 273.2, 0) 4) / nobs`` (reference, zero gradient)
    or its effective differentiable form ``mean(max(C, 0) max(T_map - 273.2, 0) 4) / nobs``.

    The mean runs over the map rows given (the reference: the (ngrid, nstep) map without the lag
    columns) and, like every other background term of the reference, is divided by ``nobs``.
    """
    return warm_ice_penalty(sic, t_map_k, threshold_k, factor, effective).mean() / nobs


def anchor_mean_penalty(e0: Tensor, value: float, sigma: float) -> Tensor:
    """v1 emissivity anchor: ``sum ((e0 - value) / sigma)^2`` (e0 of the anchor channel, 0.93, 1e-5)."""
    d = (e0 - value) / sigma
    return (d * d).sum()


def anchor_floor_residual(emis: Tensor, floor: float) -> Tensor:
    """``r(e) = max(floor - e, 0)`` (``dr/de = -1`` where ``r != 0``)."""
    return torch.clamp(floor - emis, min=0.0)


def anchor_floor_penalty(emis: Tensor, floor: float, sigma: float) -> Tensor:
    """v2 emissivity floor, one-sided: ``sum max(floor - e, 0)^2 / sigma^2`` over all elements.

    The network divides this batch sum by nobs (the reference's "summed over
    the batch / nobs").
    """
    return quadratic_penalty(anchor_floor_residual(emis, floor), sigma).sum()


def emis_ceiling_residual(emis: Tensor, mask: Tensor) -> Tensor:
    """``r(e) = max(e - 1, 0)`` on the observed channels (``mask > 0``), 0 elsewhere: how far an emissivity is
    above 1 (``dr/de = 1`` where ``r != 0``). Channels not observed may hold NaN (a sensor without the
    channel); they give 0."""
    return torch.where(mask > 0, torch.clamp(emis - 1.0, min=0.0), torch.zeros_like(emis))


def emis_ceiling_penalty(emis: Tensor, mask: Tensor, sigma: float) -> Tensor:
    """Ice-emissivity ceiling, one-sided, per observation: ``sum_c m_c max(e_c - 1, 0)^2 / sigma^2``
    (``emis`` (B, nchan), dimensionless; ``mask`` (B, nchan) the observed channels, 1 or 0; returns (B,)).

    An emissivity cannot exceed 1; the v1 linear model ``e = e0 + W [x_T, P]`` alone can (cold ice with a
    positive temperature weight). Where ``e <= 1`` the term and its gradient are 0. Channels not observed
    (their emissivity may be NaN: a sensor without the channel) count 0."""
    return quadratic_penalty(emis_ceiling_residual(emis, mask), sigma).sum(dim=-1)


def bias_penalty(bias_k: Tensor, bias_bg_k: Tensor, sigma_k: Tensor | float) -> Tensor:
    """TB bias prior: ``sum ((b - b_bg) / sigma_b)^2`` (sigma broadcast, e.g. (nsensor, 1))."""
    return quadratic_penalty(bias_k - bias_bg_k, sigma_k).sum()


def smoothness_penalty(x: Tensor, first: Tensor, second: Tensor, inv_var: Tensor) -> Tensor:
    """Smoothness prior: the squared differences of neighbouring values, summed (dimensionless).

    ``J_s = sum_k (x_{i_k} - x_{j_k})^2 / sigma_k^2``

    over the pairs ``k`` of neighbours ``(i_k, j_k)`` (``first``, ``second``: int64 indices into the
    flattened ``x``, each pair once) with the pair's error ``sigma_k`` (``inv_var`` = ``1 / sigma_k^2``).
    For the SIC map ``x`` is C (dimensionless) and a pair is two neighbouring grid points on the same
    day (``sigma_s``) or one grid point on consecutive days (``sigma_t``): a Gaussian prior whose
    precision is a graph Laplacian, the simplest spatially and temporally correlated background
    error. Its gradient: :func:`smoothness_grad`.
    """
    d = x.index_select(0, first) - x.index_select(0, second)
    return (d * d * inv_var).sum()


def smoothness_grad(x: Tensor, first: Tensor, second: Tensor, inv_var: Tensor) -> Tensor:
    """``dJ_s/dx_r = sum_{k: i_k = r} 2 d_k / sigma_k^2 - sum_{k: j_k = r} 2 d_k / sigma_k^2`` of
    :func:`smoothness_penalty` (``d_k = x_{i_k} - x_{j_k}``), the shape of ``x``."""
    g = (x.index_select(0, first) - x.index_select(0, second)) * inv_var * 2.0
    return torch.zeros_like(x).index_add_(0, first, g).index_add_(0, second, -g)


__all__ = [
    "observation_cost",
    "sic_range_penalty",
    "sic_background_penalty",
    "false_ice_penalty",
    "warm_ice_penalty",
    "warm_ice_term",
    "anchor_mean_penalty",
    "anchor_floor_penalty",
    "emis_ceiling_penalty",
    "bias_penalty",
    "smoothness_penalty",
    "smoothness_grad",
    "quadratic_penalty",
    "quadratic_penalty_grad",
    "sic_range_residual",
    "sic_background_residual",
    "false_ice_residual",
    "false_ice_slope",
    "anchor_floor_residual",
    "emis_ceiling_residual",
    "warm_ice_weight",
    "warm_ice_penalty_weighted",
    "warm_ice_penalty_weighted_grad",
    "false_ice_smooth_pieces",
    "false_ice_smooth_residual",
    "false_ice_smooth_slope",
    "false_ice_smooth_penalty",
    "FALSE_ICE_LOW",
    "FALSE_ICE_PEAK",
    "FALSE_ICE_HIGH",
    "WARM_ICE_SIC_THRESHOLD",
]
