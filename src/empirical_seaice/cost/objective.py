"""The cost function J, composed once from its terms (docs/method.md, "The cost function J").

``J = J_o + J_b``: the observation term and the priors of :mod:`empirical_seaice.cost.terms`.
This module says which terms make J for a configuration (:class:`CostConfig`) and how
they are put together, in three forms:

- :func:`batch_terms`: the per-step estimate of one batch that training minimises,
  ``(1/B) sum_{i in B} J_o,i + J_b / nobs``, each term by name (the whole-map SIC
  priors estimated from the rows the batch reads, see :class:`BatchCost`). Composed
  with autograd from the pure terms; :func:`empirical_seaice.cost.fused.fused_batch_terms`
  is the same computation with hand-derived derivatives (the training hot path),
  tested equal in values and gradients;
- :func:`map_prior_terms`: the whole-map SIC priors exactly (``sum_r p(C_r) / nobs``);
- :func:`whole_data_cost`: ``J`` by term over all the data (the summary's
  ``cost term J`` table), float64.

:func:`total_cost` is what is minimised: the sum of the terms, the reference
warm-ice term entering without gradient.

Term names, in this order: ``obs``, ``sic_range``, ``sic_background`` (when on),
``false_ice`` (when on), ``sic_smoothness`` (when on: whole-map priors at every step only),
``warm_ice``, ``anchor``, ``emis_ceiling`` (when on), ``bias``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor

from empirical_seaice.config import CostConfig
from empirical_seaice.cost import terms

OBS = "obs"
"""Name of the observation term (the mean ``J_o,i`` of a batch)."""


@dataclass(frozen=True)
class MapPrior:
    """One SIC-map prior as a quadratic penalty ``p(C) = r(C)^2 / sigma^2``.

    residual : ``r(C)`` (elementwise), or None for the background prior, whose residual is
    ``C - C_b``; slope : ``dr/dC`` where ``r != 0`` (None: 1); sigma : the prior's error.
    """

    residual: Callable[[Tensor], Tensor] | None
    slope: Callable[[Tensor], Tensor] | None
    sigma: float

    def residual_of(self, sic: Tensor, sic_background: Tensor | None) -> Tensor:
        """``r`` at SIC values ``sic`` (with their background values for the background prior)."""
        if self.residual is None:
            assert sic_background is not None
            return terms.sic_background_residual(sic, sic_background)
        return self.residual(sic)

    def penalty(self, sic: Tensor, sic_background: Tensor | None = None) -> Tensor:
        """``p(C) = r^2 / sigma^2``, elementwise."""
        return terms.quadratic_penalty(self.residual_of(sic, sic_background), self.sigma)


def map_priors(cost: CostConfig) -> dict[str, MapPrior]:
    """The SIC-map priors that are on, by name, in term order: ``sic_range`` (always),
    ``sic_background`` (:attr:`CostConfig.sic_background_prior`), ``false_ice``
    (:attr:`CostConfig.false_ice_prior`; the smooth bump of the v2 reference or the tent,
    :attr:`CostConfig.false_ice_shape`)."""
    priors = {"sic_range": MapPrior(terms.sic_range_residual, None, cost.sic_error)}
    if cost.sic_background_prior:
        priors["sic_background"] = MapPrior(None, None, cost.sic_background_error)
    if cost.false_ice_prior and cost.false_ice_shape == "smooth":  # the v2 reference's smooth bump
        s = cost.false_ice_peak_scaling
        priors["false_ice"] = MapPrior(
            partial(terms.false_ice_smooth_residual, peak_scaling=s),
            partial(terms.false_ice_smooth_slope, peak_scaling=s),
            cost.false_ice_error,
        )
    elif cost.false_ice_prior:  # the tent min(C, 0.3 - C)
        priors["false_ice"] = MapPrior(terms.false_ice_residual, terms.false_ice_slope, cost.false_ice_error)
    return priors


@dataclass
class BatchCost:
    """What the per-step cost of one batch reads (tensors on one device).

    Observation term: ``tb_sim_k``, ``tb_obs_k``, ``mask`` (B, nchan), ``obs_error_k`` (nchan,).

    Whole-map SIC priors, estimated from the rows the batch reads: ``sic_lags`` (B, nlag + 1)
    the SIC map values ``C_r`` at the rows ``r_il`` the batch reads; ``row_weight`` the same
    shape, ``1 / count(r_il)`` (0 for rows no training observation reads); ``sic_background``
    ``C_b`` at those rows (background prior only); ``warm`` the warm-ice weight
    ``max(T_map - threshold, 0) factor`` of those rows; ``warm_scale``
    ``counts_nobs / (n_warm_rows nobs)`` (the warm-ice term is a mean over the map rows,
    divided by nobs like the other background terms, as in the reference).
    With ``count(r)`` the (training observation, lag) pairs that read row ``r``,

    ``E_B = (1/B) sum_{i in B} sum_l p(C_{r_il}) / count(r_il)``

    has expectation ``(1/nobs) sum_{r observed} p(C_r)`` for a uniformly drawn batch, the
    whole-map prior / nobs, and over a shuffled epoch the batch estimates sum to it exactly.

    Anchor: ``emis_anchor`` (B,) the anchored ice emissivity (v2 floor: the network's V
    emissivity at the anchor frequency, or the ice emissivity of the anchor channel), or
    ``e0_anchor`` the v1 constant ``e0`` of the anchor channel (mean anchor).

    Ice-emissivity ceiling (when on): ``emis_ice_k`` (B, nchan) the ice emissivity of every channel.

    Bias prior: ``bias_ice_k``, ``bias_ocean_k`` (nsensor, nchan), their backgrounds
    ``bias_ice_bg_k``, ``bias_ocean_bg_k`` and errors ``bias_error_k`` (nsensor, 1), K.

    ``nobs``: the training observations, the ``nobs`` of ``J_b / nobs``.

    Sharded over processes: ``batch_total`` is the ``B`` of the batch means (None = this batch's
    size), the size of the global batch of which a rank holds its share, so that the ranks'
    terms add up to the global batch's; ``shared_share`` weights the priors on the shared
    parameters alone (bias prior, v1 mean anchor): 1 for one process, 1 on rank 0 and 0 on the
    other ranks, so that they count once.
    """

    tb_sim_k: Tensor
    tb_obs_k: Tensor
    mask: Tensor
    obs_error_k: Tensor
    sic_lags: Tensor
    row_weight: Tensor
    sic_background: Tensor | None
    warm: Tensor
    warm_scale: float
    emis_anchor: Tensor
    e0_anchor: Tensor | None
    bias_ice_k: Tensor
    bias_ocean_k: Tensor
    bias_ice_bg_k: Tensor
    bias_ocean_bg_k: Tensor
    bias_error_k: Tensor
    nobs: int
    batch_total: int | None = None
    shared_share: float = 1.0
    emis_ice_k: Tensor | None = None

    @property
    def nbatch(self) -> int:
        """``B`` of the batch means: ``batch_total``, or the batch's own size."""
        return int(self.tb_sim_k.shape[0]) if self.batch_total is None else int(self.batch_total)


def observation_term(x: BatchCost) -> Tensor:
    """``(1/B) sum_{i in B} J_o,i`` (:func:`terms.observation_cost`)."""
    cost = terms.observation_cost(x.tb_obs_k, x.tb_sim_k, x.mask, x.obs_error_k)
    return cost.mean() if x.batch_total is None else cost.sum() / x.nbatch


def emis_ceiling_term(cost: CostConfig, x: BatchCost) -> Tensor:
    """The ice-emissivity ceiling of a step: ``(1/B) sum_{i in B} sum_c m_ic max(e_ic - 1, 0)^2 / sigma_e^2``
    (:func:`terms.emis_ceiling_penalty`), a per-observation term like ``J_o``."""
    assert cost.emis_ceiling_error is not None and x.emis_ice_k is not None
    return terms.emis_ceiling_penalty(x.emis_ice_k, x.mask, cost.emis_ceiling_error).sum() / x.nbatch


def anchor_term(cost: CostConfig, x: BatchCost) -> Tensor:
    """The emissivity anchor of a step: v1 ``((e0 - value) / sigma)^2 / nobs``
    (:func:`terms.anchor_mean_penalty`); v2 ``sum_{i in B} max(floor - e_i, 0)^2 / sigma^2 / nobs``
    (:func:`terms.anchor_floor_penalty`, the reference's "summed over the batch")."""
    if cost.anchor == "mean":  # on the shared parameters alone: x.shared_share
        assert x.e0_anchor is not None
        return terms.anchor_mean_penalty(x.e0_anchor, cost.anchor_value, cost.anchor_error) * x.shared_share / x.nobs
    return terms.anchor_floor_penalty(x.emis_anchor, cost.anchor_value, cost.anchor_error) / x.nobs


def bias_prior(
    bias_ice_k: Tensor, bias_ocean_k: Tensor, bias_ice_bg_k: Tensor, bias_ocean_bg_k: Tensor, bias_error_k: Tensor
) -> Tensor:
    """The TB bias prior of both biases, ``sum (b_ice - b_ice,bg)^2 / sigma_b^2 + sum (b_ocean -
    b_ocean,bg)^2 / sigma_b^2`` (:func:`terms.bias_penalty`; not / nobs). Biases (nsensor, nchan) K,
    errors (nsensor, 1) K."""
    return terms.bias_penalty(bias_ice_k, bias_ice_bg_k, bias_error_k) + terms.bias_penalty(
        bias_ocean_k, bias_ocean_bg_k, bias_error_k
    )


def sampled_map_terms(cost: CostConfig, x: BatchCost) -> dict[str, Tensor]:
    """The whole-map SIC priors estimated from the batch's rows (``E_B`` of :class:`BatchCost`)
    and the warm-ice mean estimated the same way, rescaled by ``warm_scale``."""
    w = x.row_weight / x.nbatch
    out = {name: (prior.penalty(x.sic_lags, x.sic_background) * w).sum() for name, prior in map_priors(cost).items()}
    effective = cost.warm_ice == "effective"
    out["warm_ice"] = (terms.warm_ice_penalty_weighted(x.sic_lags, x.warm, effective) * w).sum() * x.warm_scale
    return out


def batch_terms(cost: CostConfig, x: BatchCost, map_terms: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """The per-step estimate of each term of ``J / nobs`` for one batch (0-d tensors, autograd).

    ``map_terms``: the SIC-map priors to use instead of the batch estimate (e.g. the exact
    :func:`map_prior_terms` of the reference's dense scheme); None = :func:`sampled_map_terms`.
    """
    out = {OBS: observation_term(x)}
    out.update(sampled_map_terms(cost, x) if map_terms is None else map_terms)
    out["anchor"] = anchor_term(cost, x)
    if cost.emis_ceiling_error is not None:
        out[CEILING] = emis_ceiling_term(cost, x)
    bias = bias_prior(x.bias_ice_k, x.bias_ocean_k, x.bias_ice_bg_k, x.bias_ocean_bg_k, x.bias_error_k)
    out["bias"] = bias * x.shared_share / x.nobs
    return out


CEILING = "emis_ceiling"
"""Name of the ice-emissivity ceiling's term (:func:`emis_ceiling_term`; when ``emis_ceiling_error`` is set)."""

SMOOTHNESS = "sic_smoothness"
"""Name of the SIC smoothness prior's term (:func:`terms.smoothness_penalty` over the map's neighbour pairs)."""


def map_prior_terms(
    cost: CostConfig,
    sic: Tensor,
    sic_background: Tensor,
    sic_2d: Tensor,
    t_map_2d_k: Tensor,
    nobs: int,
    smoothness: tuple[Tensor, Tensor, Tensor] | None = None,
) -> dict[str, Tensor]:
    """The whole-map SIC priors exactly: each ``sum_r p(C_r) / nobs`` over every row of the map
    (``sic``, ``sic_background``: the flattened map and its background), the smoothness prior
    ``J_s / nobs`` over the map's neighbour pairs (``smoothness``: ``(first, second, inv_var)`` of
    :func:`empirical_seaice.cost.neighbours.smoothness_pairs`; needed when the prior is on), and the
    warm-ice mean over the (ngrid, nstep) map without its lag columns (``sic_2d``, ``t_map_2d_k``), / nobs."""
    out = {name: prior.penalty(sic, sic_background).sum() / nobs for name, prior in map_priors(cost).items()}
    if cost.sic_smoothness:
        if smoothness is None:
            raise ValueError("map_prior_terms: the SIC smoothness prior is on but no neighbour pairs were given")
        out[SMOOTHNESS] = terms.smoothness_penalty(sic, *smoothness) / nobs
    out["warm_ice"] = terms.warm_ice_term(
        sic_2d, t_map_2d_k, cost.warm_ice_threshold_k, cost.warm_ice_factor, cost.warm_ice == "effective", nobs=nobs
    )
    return out


def total_cost(cost: CostConfig, by_term: dict[str, Tensor]) -> Tensor:
    """The sum of the terms: what a step minimises. In the reference ("diagnostic") warm-ice mode
    the warm-ice term is added *without gradient*: the value is the reference loss, the gradient
    that of the other terms."""
    total: Tensor | None = None
    for name, value in by_term.items():
        if name == "warm_ice" and cost.warm_ice == "diagnostic":
            value = value.detach()
        total = value if total is None else total + value
    assert total is not None
    return total


@torch.no_grad()
def observation_sum(
    tb_obs_k: np.ndarray, tb_sim_k: np.ndarray, mask: np.ndarray, obs_error_k: np.ndarray, chunk: int = 262144
) -> float:
    """``J_o = sum_i J_o,i`` over every observation (:func:`terms.observation_cost`), float64, in chunks;
    the values of masked channels are not read (NaN there, as in a simulation's channels that the
    observation's sensor lacks, counts 0)."""
    sigma = torch.as_tensor(np.asarray(obs_error_k, dtype=np.float64))
    total = 0.0
    for start in range(0, tb_sim_k.shape[0], chunk):
        sl = slice(start, start + chunk)
        m = torch.from_numpy(np.array(mask[sl], dtype=bool))  # a copy: the cache arrays are read-only
        y = torch.from_numpy(np.asarray(tb_obs_k[sl], dtype=np.float64)).where(m, 0.0)
        h = torch.from_numpy(np.asarray(tb_sim_k[sl], dtype=np.float64)).where(m, 0.0)
        total += float(terms.observation_cost(y, h, m, sigma).sum())
    return total


@torch.no_grad()
def whole_data_cost(
    cost: CostConfig,
    *,
    obs_sum: float,
    map_terms: Mapping[str, Tensor | float],
    emis_anchor: np.ndarray | None,
    e0_anchor: float | None,
    bias: Tensor,
    nobs: int,
    anchor_sum: float | None = None,
    ceiling_sum: float | None = None,
) -> dict[str, float]:
    """``J = J_o + J_b`` by term over all the data (float64), and ``total``.

    ``obs_sum``: ``sum_i J_o,i`` over every observation; ``map_terms``: :func:`map_prior_terms`, or
    their values as floats (``/ nobs``, multiplied back here); the anchor over every observation (``emis_anchor``, v2;
    or its penalty already summed, ``anchor_sum``) or of ``e0_anchor`` (v1); ``ceiling_sum`` the ice-emissivity
    ceiling summed over every observation (:func:`terms.emis_ceiling_penalty`; needed when it is on);
    ``bias``: :func:`bias_prior`.
    """
    out = {OBS: float(obs_sum)}
    for name, value in map_terms.items():
        out[name] = (float(value.detach().double().cpu()) if isinstance(value, Tensor) else float(value)) * nobs
    if cost.anchor == "mean":
        assert e0_anchor is not None
        e0 = torch.tensor(float(e0_anchor), dtype=torch.float64)
        out["anchor"] = float(terms.anchor_mean_penalty(e0, cost.anchor_value, cost.anchor_error))
    elif anchor_sum is not None:
        out["anchor"] = float(anchor_sum)
    else:
        assert emis_anchor is not None
        e = torch.from_numpy(np.asarray(emis_anchor, dtype=np.float64))
        out["anchor"] = float(terms.anchor_floor_penalty(e, cost.anchor_value, cost.anchor_error))
    if cost.emis_ceiling_error is not None:
        assert ceiling_sum is not None
        out[CEILING] = float(ceiling_sum)
    out["bias"] = float(bias.detach().double())
    out["total"] = float(sum(out.values()))
    return out


__all__ = [
    "OBS",
    "CEILING",
    "SMOOTHNESS",
    "MapPrior",
    "map_priors",
    "BatchCost",
    "observation_term",
    "anchor_term",
    "emis_ceiling_term",
    "bias_prior",
    "sampled_map_terms",
    "batch_terms",
    "map_prior_terms",
    "total_cost",
    "observation_sum",
    "whole_data_cost",
]
