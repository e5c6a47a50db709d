"""An optimisation of :func:`empirical_seaice.cost.objective.batch_terms`: the per-step cost with
its derivatives computed by hand, handed to autograd as one node (the training hot path).

Same terms, same values, same gradients as the autograd composition of
:mod:`empirical_seaice.cost.objective` (``tests/cost/test_fused.py`` proves it on a batch
with every term active, in float64), computed with fewer operations: under ``no_grad``,
each term is written as its raw value times a constant factor applied once, and its
derivative with respect to each input from the priors' residuals and slopes
(``d(r^2 / sigma^2)/dx = 2 r (dr/dx) / sigma^2``, :func:`terms.quadratic_penalty_grad`);
:func:`terms_with_gradients` then attaches the vector of terms to the inputs in one
autograd node whose backward is ``grad_in_j = sum_t dL/dterm_t D_tj``. No graph is
recorded for the cost: the backward pass of a step touches the batch's ``tb``, its SIC
rows, the anchor emissivities and the two bias tables only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from empirical_seaice.config import CostConfig
from empirical_seaice.cost import terms
from empirical_seaice.cost.objective import CEILING, OBS, BatchCost, anchor_term, map_priors


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


def _scaled(t: Tensor, factor: float) -> Callable[[], Tensor]:
    return lambda: t.mul(factor)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return torch.dot(a.reshape(-1), b.reshape(-1))


class _Terms:
    """The raw values, constant factors and derivatives of the terms, in term order."""

    def __init__(self, grads: bool) -> None:
        self.grads = grads
        self.names: list[str] = []
        self.raw: list[Tensor] = []  # each term's value before its constant factor
        self.scale: list[float] = []
        self.derivs: dict[str, list[tuple[int, Tensor]]] = {
            k: [] for k in ("tb", "lags", "anchor", "emis", "b_ice", "b_ocean")
        }

    def add(self, name: str, raw: Tensor, scale: float, derivs: dict[str, Callable[[], Tensor]] | None = None) -> None:
        """One term: ``scale * raw``; ``derivs`` maps an input to the derivative of the term (computed
        only when gradients are wanted)."""
        if self.grads and derivs:
            for key, make in derivs.items():
                self.derivs[key].append((len(self.raw), make()))
        self.names.append(name)
        self.raw.append(raw)
        self.scale.append(scale)


def fused_batch_terms(cost: CostConfig, x: BatchCost, cache: dict | None = None) -> dict[str, Tensor]:
    """:func:`empirical_seaice.cost.objective.batch_terms` (the batch estimate of the map priors),
    computed with hand-derived derivatives in one autograd node.

    ``cache``: a dict the caller keeps between steps for constants derived from ``x``'s
    per-channel errors (``2 / (sigma_c^2 B)``, ``1 / sigma_b^2``), by batch size, dtype and device.
    The v1 mean anchor (one scalar of the model's weights) goes through autograd.
    """
    cache = {} if cache is None else cache
    nb, n = x.nbatch, x.nobs
    tb, lags = x.tb_sim_k, x.sic_lags
    floor = cost.anchor != "mean"
    out = _Terms(torch.is_grad_enabled())
    key = (nb, tb.dtype, tb.device)
    if ("obs_scale",) + key not in cache:
        cache[("obs_scale",) + key] = 2.0 / (x.obs_error_k.square() * nb)
        cache[("bias_inv_var",) + key] = x.bias_error_k.square().reciprocal()
    with torch.no_grad():
        # (1/B) sum_ic (TB'_ic - y_ic)^2 mask_ic / sigma_c^2, derivative 2 (TB' - y) mask / (sigma^2 B)
        d = tb - x.tb_obs_k
        g_tb = d.mul(x.mask).mul_(cache[("obs_scale",) + key])
        out.add(OBS, _dot(d, g_tb), 0.5, {"tb": lambda: g_tb})
        w = x.row_weight  # 1 / count(r); the 1 / B is applied with the constant factor
        for name, prior in map_priors(cost).items():
            r = prior.residual_of(lags, x.sic_background)
            wr = w * r  # sum_r w r^2 / (sigma^2 B), derivative 2 w r dr/dC / (sigma^2 B)
            slope = 1.0 if prior.slope is None else prior.slope(lags)
            grad = lambda wr=wr, slope=slope, sigma=prior.sigma: terms.quadratic_penalty_grad(wr, slope, sigma).div_(nb)
            out.add(name, _dot(wr, r), 1.0 / (prior.sigma * prior.sigma * nb), {"lags": grad})
        # the reference warm-ice term has no derivative; its effective form max(C, 0) warm does
        effective = cost.warm_ice == "effective"
        warm_scale = x.warm_scale / nb
        warm_grad = {"lags": lambda: terms.warm_ice_penalty_weighted_grad(lags, x.warm, True).mul_(w).mul_(warm_scale)}
        raw = _dot(w, terms.warm_ice_penalty_weighted(lags, x.warm, effective))
        out.add("warm_ice", raw, warm_scale, warm_grad if effective else None)
        if floor:  # the v2 anchor floor, summed over the batch, / nobs
            r = terms.anchor_floor_residual(x.emis_anchor, cost.anchor_value)
            anchor_grad = lambda: terms.quadratic_penalty_grad(r, -1.0, cost.anchor_error).div_(n)
            out.add("anchor", _dot(r, r), 1.0 / (cost.anchor_error * cost.anchor_error * n), {"anchor": anchor_grad})
        if cost.emis_ceiling_error is not None:
            # (1/B) sum_ic m max(e - 1, 0)^2 / sigma_e^2, derivative 2 m r / (sigma_e^2 B)
            assert x.emis_ice_k is not None
            s_e = cost.emis_ceiling_error
            r = terms.emis_ceiling_residual(x.emis_ice_k, x.mask)
            ceiling_grad = lambda: terms.quadratic_penalty_grad(r, 1.0, s_e).div_(nb)
            out.add(CEILING, _dot(r, r), 1.0 / (s_e * s_e * nb), {"emis": ceiling_grad})
        bias = tb.new_zeros(())  # sum (b - b_bg)^2 / sigma_b^2 / nobs over both biases
        bias_grads: dict[str, Callable[[], Tensor]] = {}
        for k, b, bg in (("b_ice", x.bias_ice_k, x.bias_ice_bg_k), ("b_ocean", x.bias_ocean_k, x.bias_ocean_bg_k)):
            r = b - bg
            wr = r * cache[("bias_inv_var",) + key]
            bias_grads[k] = _scaled(wr, 2.0 * x.shared_share / n)
            bias = bias + _dot(wr, r)
        out.add("bias", bias, x.shared_share / n, bias_grads)
        values = torch.stack(out.raw).mul_(torch.tensor(out.scale, dtype=tb.dtype, device=tb.device))
    inputs = {
        "tb": tb, "lags": lags, "anchor": x.emis_anchor, "emis": x.emis_ice_k, "b_ice": x.bias_ice_k,
        "b_ocean": x.bias_ocean_k,
    }  # fmt: skip
    pairs = [(t, dl) for k, dl in out.derivs.items() if dl and (t := inputs[k]) is not None]
    vec = terms_with_gradients(values, [t for t, _ in pairs], [dl for _, dl in pairs])
    fused = dict(zip(out.names, vec.unbind(), strict=True))
    result = {name: fused[name] for name in out.names if name not in ("anchor", CEILING, "bias")}
    result["anchor"] = fused["anchor"] if floor else anchor_term(cost, x)
    if CEILING in fused:
        result[CEILING] = fused[CEILING]
    result["bias"] = fused["bias"]
    return result


__all__ = ["fused_batch_terms", "terms_with_gradients"]
