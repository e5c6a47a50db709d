"""Terms of the cost function J = J_o + J_b (docs/method.md, "The cost function J").

Pure tensor functions. The ``*_penalty`` functions of the SIC map are
*elementwise* (same shape as ``C``) so that the network can sum them over the
whole map ("full" mode) or estimate that sum from the rows a batch touches
("sampled" mode, see :mod:`empirical_seaice.model.operator`). The others return the
summed scalar (or, for the observation term, one value per observation).
All arguments are dimensionless except TBs and errors in K.

Every prior is quadratic in a *residual*: ``p = r^2 / sigma^2``, so
``dp/dx = 2 r (dr/dx) / sigma^2`` (:func:`quadratic_penalty`,
:func:`quadratic_penalty_grad`). Each prior defines its residual ``r`` and,
where it is not 1, its slope ``dr/dx`` (``*_residual``, ``*_slope``); the
``*_penalty`` and ``*_penalty_grad`` functions are built from them. The
network's sampled cost uses the residuals and slopes directly, computing
values and derivatives together without recording a graph, and hands them to
autograd in one node (:func:`terms_with_gradients`). The tests check each
derivative against autograd.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def sic_range_penalty_grad(sic: Tensor, sigma: float) -> Tensor:
    """``dp/dC`` of :func:`sic_range_penalty`: ``2 r(C) / sigma^2``."""
    return quadratic_penalty_grad(sic_range_residual(sic), 1.0, sigma)


def sic_background_penalty(sic: Tensor, sic_background: Tensor, sigma: float) -> Tensor:
    """SIC background prior, elementwise: ``p(C) = (C - C_b)^2 / sigma^2`` (residual ``C - C_b``)."""
    return quadratic_penalty(sic - sic_background, sigma)


def sic_background_penalty_grad(sic: Tensor, sic_background: Tensor, sigma: float) -> Tensor:
    """``dp/dC`` of :func:`sic_background_penalty`: ``2 (C - C_b) / sigma^2``."""
    return quadratic_penalty_grad(sic - sic_background, 1.0, sigma)


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


def false_ice_penalty_grad(sic: Tensor, sigma: float) -> Tensor:
    """``dp/dC`` of :func:`false_ice_penalty`: ``-2 r(C) sign(C - 0.15) / sigma^2``, i.e.
    ``2 C / sigma^2`` on (0, 0.15), ``-2 (0.3 - C) / sigma^2`` on (0.15, 0.3), 0 elsewhere
    and at the peak."""
    return quadratic_penalty_grad(false_ice_residual(sic), false_ice_slope(sic), sigma)


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


def warm_ice_penalty_grad(
    sic: Tensor, t_map_k: Tensor, threshold_k: float = 273.2, factor: float = 4.0, effective: bool = False
) -> Tensor:
    """``dp/dC`` of :func:`warm_ice_penalty`: 0 in the reference form; in the effective
    form ``factor max(T - threshold, 0)`` where ``C >= 0`` (autograd's convention at C = 0)."""
    return warm_ice_penalty_weighted_grad(sic, warm_ice_weight(t_map_k, threshold_k, factor), effective)


def warm_ice_penalty_weighted_grad(sic: Tensor, warm: Tensor, effective: bool = False) -> Tensor:
    """``dp/dC`` of :func:`warm_ice_penalty_weighted`: 0 (reference) or ``warm [C >= 0]`` (effective)."""
    if not effective:
        return torch.zeros_like(sic)
    return (sic >= 0.0).to(warm.dtype) * warm


def warm_ice_term(
    sic: Tensor, t_map_k: Tensor, threshold_k: float = 273.2, factor: float = 4.0, effective: bool = False
) -> Tensor:
    """Warm-ice term: ``mean([C > 0.01] max(T_map - 273.2, 0) 4)`` (reference, zero gradient)
    or its effective differentiable form ``mean(max(C, 0) max(T_map - 273.2, 0) 4)``."""
    return warm_ice_penalty(sic, t_map_k, threshold_k, factor, effective).mean()


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


def anchor_floor_penalty_grad(emis: Tensor, floor: float, sigma: float) -> Tensor:
    """``d/de`` of :func:`anchor_floor_penalty`, elementwise: ``-2 max(floor - e, 0) / sigma^2``."""
    return quadratic_penalty_grad(anchor_floor_residual(emis, floor), -1.0, sigma)


def bias_penalty(bias_k: Tensor, bias_bg_k: Tensor, sigma_k: Tensor | float) -> Tensor:
    """TB bias prior: ``sum ((b - b_bg) / sigma_b)^2`` (sigma broadcast, e.g. (nsensor, 1))."""
    return quadratic_penalty(bias_k - bias_bg_k, sigma_k).sum()


def bias_penalty_grad(bias_k: Tensor, bias_bg_k: Tensor, sigma_k: Tensor | float) -> Tensor:
    """``d/db`` of :func:`bias_penalty`: ``2 (b - b_bg) / sigma_b^2``."""
    return quadratic_penalty_grad(bias_k - bias_bg_k, 1.0, sigma_k)


class _TermsWithGradients(torch.autograd.Function):
    """Cost terms whose derivatives were computed along with their values (see
    :func:`terms_with_gradients`); backward is ``grad_in_j = sum_t dL/dterm_t D_tj``."""

    @staticmethod
    def forward(ctx, values, derivatives, *inputs):  # inputs only carry the graph edges
        ctx.derivatives = derivatives
        return values.clone()

    @staticmethod
    def backward(ctx, grad):
        out: list[Tensor | None] = [None, None]
        for pairs in ctx.derivatives:
            g = None
            for t, d in pairs:
                g = d * grad[t] if g is None else g.addcmul_(d, grad[t])
            out.append(g)
        return tuple(out)


def terms_with_gradients(
    values: Tensor, inputs: Sequence[Tensor], derivatives: Sequence[Sequence[tuple[int, Tensor]]]
) -> Tensor:
    """Cost terms computed without a graph, attached to autograd in one node.

    Parameters
    ----------
    values : (T,) the terms' values (computed under ``no_grad``).
    inputs : the tensors the terms depend on (those that need gradients).
    derivatives : for each input ``j``, pairs ``(t, D_tj)``: ``D_tj`` is
        ``d value_t / d inputs[j]`` (same shape as the input); terms not
        listed do not depend on that input.

    Returns
    -------
    (T,) equal to ``values``, whose backward gives ``inputs[j]`` the
    gradient ``sum_t dL/dvalue_t D_tj``.
    """
    if not torch.is_grad_enabled() or not any(x.requires_grad for x in inputs):
        return values
    return _TermsWithGradients.apply(values, tuple(tuple(p) for p in derivatives), *inputs)


__all__ = [
    "observation_cost",
    "sic_range_penalty",
    "sic_background_penalty",
    "false_ice_penalty",
    "warm_ice_penalty",
    "warm_ice_term",
    "anchor_mean_penalty",
    "anchor_floor_penalty",
    "bias_penalty",
    "quadratic_penalty",
    "quadratic_penalty_grad",
    "sic_range_residual",
    "false_ice_residual",
    "false_ice_slope",
    "anchor_floor_residual",
    "warm_ice_weight",
    "warm_ice_penalty_weighted",
    "warm_ice_penalty_weighted_grad",
    "sic_range_penalty_grad",
    "sic_background_penalty_grad",
    "false_ice_penalty_grad",
    "warm_ice_penalty_grad",
    "anchor_floor_penalty_grad",
    "bias_penalty_grad",
    "terms_with_gradients",
    "FALSE_ICE_LOW",
    "FALSE_ICE_PEAK",
    "FALSE_ICE_HIGH",
    "WARM_ICE_SIC_THRESHOLD",
]
