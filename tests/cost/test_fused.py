"""cost/fused.py: the hand-differentiated per-step cost equals its definition, the autograd
composition of cost/objective.py, in values and gradients, with every term active."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from empirical_seaice.config import PRESETS
from empirical_seaice.cost import objective
from empirical_seaice.cost.fused import fused_batch_terms, terms_with_gradients

D = torch.float64


def _batch(cost, nb=12, nchan=5, nlag=1, nsensor=2, seed=0):
    """A BatchCost of random inputs that puts every term in its active range: SIC values below 0,
    in the false-ice band and above 1; warm rows; anchor emissivities around the floor; biases
    off their backgrounds. The tensors the cost depends on require gradients."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.rand(*shape, generator=g, dtype=D)

    lags = torch.tensor([-0.05, 0.1, 0.2, 0.5, 1.05, 0.02, 0.28, 0.9, 1.2, 0.15, 0.4, 0.12], dtype=D)
    lags = torch.stack([lags, lags.flip(0)], dim=1)[:nb]
    e = cost.anchor_value + 0.05 * (r(nb) - 0.5)
    x = objective.BatchCost(
        tb_sim_k=(150 + 100 * r(nb, nchan)).requires_grad_(True),
        tb_obs_k=150 + 100 * r(nb, nchan),
        mask=(r(nb, nchan) > 0.2).to(D),
        obs_error_k=1 + 4 * r(nchan),
        sic_lags=lags.clone().requires_grad_(True),
        row_weight=torch.where(r(nb, nlag + 1) > 0.1, 1.0 / (1 + torch.floor(5 * r(nb, nlag + 1))), 0.0),
        sic_background=r(nb, nlag + 1) if cost.sic_background_prior else None,
        warm=torch.clamp(270 + 8 * r(nb, nlag + 1) - 273.2, min=0.0) * 4.0,
        warm_scale=1.7,
        emis_anchor=e.requires_grad_(True),
        e0_anchor=torch.tensor(0.93004, dtype=D, requires_grad=True) if cost.anchor == "mean" else None,
        bias_ice_k=(5 * r(nsensor, nchan)).requires_grad_(True),
        bias_ocean_k=(3 * r(nsensor, nchan)).requires_grad_(True),
        bias_ice_bg_k=torch.full((nsensor, nchan), 2.5, dtype=D),
        bias_ocean_bg_k=torch.full((nsensor, nchan), 1.0, dtype=D),
        bias_error_k=torch.tensor([[0.5], [4.0]], dtype=D),
        nobs=40,
        # ice emissivities of every channel from 0.9 to 1.1: the ceiling active on some, NaN on one not observed
        emis_ice_k=(0.9 + 0.2 * r(nb, nchan)).requires_grad_(True) if cost.emis_ceiling_error is not None else None,
    )
    if x.emis_ice_k is not None:
        with torch.no_grad():
            x.mask[0, 0] = 0.0
            x.emis_ice_k[0, 0] = float("nan")
    anchor = x.emis_anchor if x.e0_anchor is None else x.e0_anchor  # v2 floor or v1 mean
    inputs = [x.tb_sim_k, x.sic_lags, anchor, x.bias_ice_k, x.bias_ocean_k]
    if x.emis_ice_k is not None:
        inputs.append(x.emis_ice_k)
    return x, inputs


COSTS = {
    "v2 effective warm ice, background prior": replace(
        PRESETS["v2"].cost, warm_ice="effective", sic_background_prior=True
    ),
    "v2 reference (diagnostic warm ice, smooth false ice)": PRESETS["v2"].cost,
    "v2 tent false ice": replace(PRESETS["v2"].cost, false_ice_shape="tent"),
    "v1 mean anchor": PRESETS["v1"].cost,
    "v1 with the ice-emissivity ceiling": replace(PRESETS["v1"].cost, emis_ceiling_error=0.01),
}


@pytest.mark.parametrize("name", list(COSTS))
def test_fused_equals_the_autograd_composition(name):
    cost = COSTS[name]
    x, inputs = _batch(cost)
    want = objective.batch_terms(cost, x)
    got = fused_batch_terms(cost, x)
    assert list(got) == list(want)  # same terms, same order
    for k in want:
        assert got[k].item() == pytest.approx(want[k].item(), rel=1e-12), k
        assert want[k].item() > 0, k  # every term is active
    weights = torch.linspace(0.5, 2.0, len(want), dtype=D)  # a different weight per term
    g_want = torch.autograd.grad(sum(w * t for w, t in zip(weights, want.values(), strict=True)), inputs)
    g_got = torch.autograd.grad(sum(w * t for w, t in zip(weights, got.values(), strict=True)), inputs)
    for a, b in zip(g_got, g_want, strict=True):
        assert b.abs().max() > 0
        assert torch.isfinite(a).all() and torch.isfinite(b).all()  # (0 at the unobserved NaN emissivity)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)
    # what is minimised: the reference warm-ice term adds its value but no gradient
    total_w, total_g = objective.total_cost(cost, want), objective.total_cost(cost, got)
    assert total_g.item() == pytest.approx(total_w.item(), rel=1e-12)
    lag_grad = torch.autograd.grad(objective.total_cost(cost, fused_batch_terms(cost, x)), x.sic_lags)[0]
    no_warm = {k: v for k, v in fused_batch_terms(cost, x).items() if k != "warm_ice"}
    lag_grad_no_warm = torch.autograd.grad(objective.total_cost(cost, no_warm), x.sic_lags)[0]
    assert torch.equal(lag_grad, lag_grad_no_warm) == (cost.warm_ice == "diagnostic")


def test_fused_without_gradients_gives_the_values():
    cost = COSTS["v2 effective warm ice, background prior"]
    x, _ = _batch(cost, seed=3)
    want = objective.batch_terms(cost, x)
    with torch.no_grad():
        got = fused_batch_terms(cost, x)
    for k in want:
        assert not got[k].requires_grad
        assert got[k].item() == pytest.approx(want[k].item(), rel=1e-12), k


def test_batch_terms_hand_values():
    """The composition by hand on a tiny batch: J_o mean, the sampled range prior, anchor and bias / nobs."""
    cost = replace(PRESETS["v2"].cost, false_ice_prior=False, sic_error=0.02, anchor_value=0.7)
    x = objective.BatchCost(
        tb_sim_k=torch.tensor([[200.0, 150.0], [210.0, 160.0]], dtype=D),
        tb_obs_k=torch.tensor([[202.0, 150.0], [210.0, 163.0]], dtype=D),
        mask=torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=D),
        obs_error_k=torch.tensor([2.0, 3.0], dtype=D),
        sic_lags=torch.tensor([[1.1, 0.5], [0.5, -0.2]], dtype=D),
        row_weight=torch.tensor([[1.0, 0.5], [0.5, 1.0]], dtype=D),
        sic_background=None,
        warm=torch.zeros(2, 2, dtype=D),
        warm_scale=1.0,
        emis_anchor=torch.tensor([0.69, 0.8], dtype=D),
        e0_anchor=None,
        bias_ice_k=torch.tensor([[1.0, 1.0]], dtype=D),
        bias_ocean_k=torch.tensor([[0.0, 0.0]], dtype=D),
        bias_ice_bg_k=torch.tensor([[0.5, 1.0]], dtype=D),
        bias_ocean_bg_k=torch.tensor([[0.0, 0.0]], dtype=D),
        bias_error_k=torch.tensor([[0.5]], dtype=D),
        nobs=10,
    )
    t = objective.batch_terms(cost, x)
    assert list(t) == ["obs", "sic_range", "warm_ice", "anchor", "bias"]
    assert t["obs"].item() == pytest.approx(((2 / 2) ** 2 + 0) / 2)  # obs 1: (2/2)^2; obs 2: 3 K masked
    # range: rows at 1.1 (weight 1) and -0.2 (weight 1): (0.1^2 + 0.2^2) / 0.02^2 / B
    assert t["sic_range"].item() == pytest.approx((0.01 + 0.04) / 0.0004 / 2)
    assert t["warm_ice"].item() == 0.0
    assert t["anchor"].item() == pytest.approx(0.01**2 / 1e-10 / 10)
    assert t["bias"].item() == pytest.approx((0.5 / 0.5) ** 2 / 10)
    got = fused_batch_terms(cost, x)
    for k in t:
        assert got[k].item() == pytest.approx(t[k].item(), rel=1e-12, abs=1e-15), k


def test_terms_with_gradients_backward_and_gradcheck():
    """One node carrying precomputed values and derivatives gives autograd's gradients."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(4, generator=gen, dtype=torch.float64, requires_grad=True)
    weights = torch.tensor([1.5, -2.0, 0.25], dtype=torch.float64)

    def fused(x, y):
        with torch.no_grad():
            values = torch.stack([(x * x).sum(), (x * y.sum()).sum(), y.pow(3).sum()])
            d_x = [(0, 2 * x), (1, y.sum().expand_as(x))]
            d_y = [(1, x.sum().expand_as(y)), (2, 3 * y * y)]
        return terms_with_gradients(values, [x, y], [d_x, d_y])

    def plain(x, y):
        return torch.stack([(x * x).sum(), (x * y.sum()).sum(), y.pow(3).sum()])

    got = torch.autograd.grad((fused(x, y) * weights).sum(), [x, y])
    want = torch.autograd.grad((plain(x, y) * weights).sum(), [x, y])
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-13)
    assert torch.autograd.gradcheck(lambda x, y: fused(x, y), (x, y))
    with torch.no_grad():  # no graph wanted: the values come back as they are
        v = torch.ones(2)
        assert terms_with_gradients(v, [x], [[(0, x)]]) is v
