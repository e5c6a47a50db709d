"""costs.py: every term against a hand value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from empirical_seaice.cost import terms as costs

D = torch.float64


def t(*v):
    return torch.tensor(v, dtype=D)


def test_observation_cost_hand_value_and_mask():
    y = t(200.0, 210.0).reshape(1, 2)
    tb = t(195.0, 218.0).reshape(1, 2)
    sigma = t(2.5, 4.0)
    # ((5/2.5)^2 + (-8/4)^2) = 4 + 4
    assert costs.observation_cost(y, tb, t(1.0, 1.0).reshape(1, 2), sigma).item() == pytest.approx(8.0)
    assert costs.observation_cost(y, tb, torch.tensor([[True, False]]), sigma).item() == pytest.approx(4.0)
    assert costs.observation_cost(y, tb, t(0.0, 0.0).reshape(1, 2), sigma).item() == 0.0


def test_sic_range_penalty_hand_values():
    p = costs.sic_range_penalty(t(1.04, -0.02, 0.5, 0.0, 1.0), 0.02)
    assert torch.allclose(p, t(4.0, 1.0, 0.0, 0.0, 0.0))


def test_sic_background_penalty_hand_value():
    assert costs.sic_background_penalty(t(0.5), t(0.3), 0.1).item() == pytest.approx(4.0)


def test_false_ice_penalty_hand_values_and_shape():
    c = t(-0.1, 0.0, 0.05, 0.15, 0.27, 0.3, 0.5, 1.0)
    p = costs.false_ice_penalty(c, 0.02)
    # min(C, 0.3 - C)^2 / 0.0004 inside (0, 0.3): 0.05 -> 6.25, 0.15 -> 56.25, 0.27 -> 2.25
    assert torch.allclose(p, t(0.0, 0.0, 6.25, 56.25, 2.25, 0.0, 0.0, 0.0))
    # continuous at the peak and at both ends
    for x in (0.0, costs.FALSE_ICE_PEAK, 0.3):
        lo, hi = costs.false_ice_penalty(t(x - 1e-9, x + 1e-9), 0.02)
        assert abs(lo.item() - hi.item()) < 1e-5
    # the gradient pushes SIC below the peak down and above the peak up
    c = t(0.1, 0.2).requires_grad_(True)
    costs.false_ice_penalty(c, 0.02).sum().backward()
    assert c.grad[0] > 0 and c.grad[1] < 0
    assert c.grad[0].item() == pytest.approx(2 * 0.1 / 0.0004)


def _smooth_grad(c, sigma, s=0.2):
    """dp/dC of the smooth bump from its residual and slope (as cost/fused.py computes it)."""
    return costs.quadratic_penalty_grad(
        costs.false_ice_smooth_residual(c, s), costs.false_ice_smooth_slope(c, s), sigma
    )


def test_false_ice_smooth_penalty_hand_values():
    """The v2 reference bump, s = 0.2, sigma = 0.02: b = 0.025, h = 0.00375."""
    lo, hi, h = costs.false_ice_smooth_pieces(0.2)
    assert (lo, hi, h) == pytest.approx((0.025, 0.275, 0.00375))
    c = t(-0.1, 0.0, 0.01, 0.025, 0.05, 0.15, 0.2, 0.275, 0.29, 0.3, 0.5)
    p = costs.false_ice_smooth_penalty(c, 0.02)
    # by hand: 0.01^2/4e-4 = 0.25; 0.025^2/4e-4 = 1.5625; (0.00375 - 0.2 * 0.1^2)/4e-4 = 4.375;
    # peak 0.00375/4e-4 = 9.375; (0.00375 - 0.2 * 0.05^2)/4e-4 = 8.125; (0.3 - 0.275)^2/4e-4 = 1.5625;
    # 0.01^2/4e-4 = 0.25
    hand = t(0.0, 0.0, 0.25, 1.5625, 4.375, 9.375, 8.125, 1.5625, 0.25, 0.0, 0.0)
    np.testing.assert_allclose(p.numpy(), hand.numpy(), rtol=1e-12, atol=1e-12)
    # continuous in value and slope at both joins and at the ends; 6x lower peak than the tent
    for x in (0.0, lo, hi, 0.3):
        pa, pb = costs.false_ice_smooth_penalty(t(x - 1e-9, x + 1e-9), 0.02)
        assert abs(pa.item() - pb.item()) < 1e-5, x
        ga, gb = _smooth_grad(t(x - 1e-9, x + 1e-9), 0.02)
        if 0.0 < x < 0.3:
            assert ga.item() == pytest.approx(gb.item(), rel=1e-6), x
    assert costs.false_ice_penalty(t(0.15), 0.02).item() / p[5].item() == pytest.approx(6.0)
    # slopes by hand: 2 C / s^2 rising, 2 s (0.15 - C) / s^2 on the cap, -2 (0.3 - C) / s^2 falling
    g = _smooth_grad(t(0.01, 0.1, 0.15, 0.2, 0.29), 0.02)
    np.testing.assert_allclose(g.numpy(), [50.0, 50.0, 0.0, -50.0, -50.0], rtol=1e-12, atol=1e-9)


def test_false_ice_smooth_gradient_equals_autograd_and_gradcheck():
    c = t(-0.02, 0.001, 0.02, 0.0249, 0.0251, 0.08, 0.15, 0.22, 0.2749, 0.2751, 0.298, 0.31, 0.9)
    for s in (0.2, 0.5):
        hand = _smooth_grad(c, 0.02, s)
        auto = _autograd_derivative(lambda x, s=s: costs.false_ice_smooth_penalty(x, 0.02, s), c)
        np.testing.assert_allclose(hand.numpy(), auto.numpy(), rtol=1e-9, atol=1e-9)
        assert torch.autograd.gradcheck(
            lambda x, s=s: costs.false_ice_smooth_penalty(x, 0.02, s), (c.clone().requires_grad_(True),), eps=1e-7
        )
    # no NaN gradient from the unselected cap branch (sqrt at 0) outside (0, 0.3)
    x = t(0.0, 0.3, -0.5, 1.2).requires_grad_(True)
    costs.false_ice_smooth_penalty(x, 0.02).sum().backward()
    assert torch.equal(x.grad, t(0.0, 0.0, 0.0, 0.0))


def test_warm_ice_term_divided_by_nobs():
    c, temp = t(0.5, 0.005, 0.8), t(275.2, 280.0, 270.0)
    assert costs.warm_ice_term(c, temp, nobs=200).item() == pytest.approx(8.0 / 3.0 / 200)


def test_warm_ice_reference_value_and_zero_gradient():
    c = t(0.5, 0.005, 0.8).requires_grad_(True)
    temp = t(275.2, 280.0, 270.0)
    # [C > 0.01] max(T - 273.2, 0) 4 = [8, 0 (no ice), 0 (cold)]
    term = costs.warm_ice_term(c, temp)
    assert term.item() == pytest.approx(8.0 / 3.0)
    assert not term.requires_grad  # flat indicator: no gradient path to C at all
    # effective: max(C, 0) max(T - 273.2, 0) 4, mean
    eff = costs.warm_ice_term(c, temp, effective=True)
    assert eff.item() == pytest.approx((0.5 * 8.0 + 0.005 * 6.8 * 4.0) / 3.0)
    eff.backward()
    assert torch.allclose(c.grad, t(8.0, 27.2, 0.0) / 3.0)


def test_warm_ice_threshold_and_factor_options():
    p = costs.warm_ice_penalty(t(1.0), t(275.0), threshold_k=274.0, factor=2.0)
    assert p.item() == pytest.approx(2.0)


def test_anchor_mean_penalty_hand_value():
    assert costs.anchor_mean_penalty(t(0.93002), 0.93, 1e-5).item() == pytest.approx(4.0, rel=1e-6)
    assert costs.anchor_mean_penalty(t(0.93), 0.93, 1e-5).item() == 0.0


def test_anchor_floor_penalty_one_sided_sum():
    p = costs.anchor_floor_penalty(t(0.69, 0.75, 0.7, 0.68), 0.7, 1e-5)
    # (0.01 / 1e-5)^2 + (0.02 / 1e-5)^2 = 1e6 + 4e6
    assert p.item() == pytest.approx(5e6, rel=1e-6)


def test_emis_ceiling_penalty_hand_values_mask_and_gradient():
    """max(e - 1, 0)^2 / sigma^2 summed over the observed channels of each observation: 1.02 and 1.005 above
    the ceiling, 0.98 below, NaN where the channel is not observed."""
    e = torch.tensor([[1.02, 0.98, float("nan")], [1.005, 1.0, 1.03]], dtype=torch.float64, requires_grad=True)
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    p = costs.emis_ceiling_penalty(e, m, 0.01)
    assert p.tolist() == pytest.approx([4.0, 0.25], rel=1e-9)  # (0.02 / 0.01)^2; (0.005 / 0.01)^2; 1.03 unobserved
    (g,) = torch.autograd.grad(p.sum(), e)
    np.testing.assert_allclose(g.numpy(), [[400.0, 0.0, 0.0], [100.0, 0.0, 0.0]], rtol=1e-9)  # 2 r / sigma^2
    x = torch.tensor([[1.02, 0.97, 1.004]], dtype=torch.float64, requires_grad=True)  # away from the kink at 1
    ones = torch.ones(1, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: costs.emis_ceiling_penalty(v, ones, 0.01), (x,))


def test_bias_penalty_hand_value():
    b = t(6.0, 2.5, 1.0, 0.0).reshape(2, 2)
    bg = t(5.0, 2.5, 0.0, 0.0).reshape(2, 2)
    sigma = t(0.5, 4.0).reshape(2, 1)
    # ((6-5)/0.5)^2 + ((1-0)/4)^2 = 4 + 0.0625
    assert costs.bias_penalty(b, bg, sigma).item() == pytest.approx(4.0625)


# ------------------------------------------------------------- hand-derived derivatives


def _autograd_derivative(fn, x):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x).sum(), x)
    return g


def test_penalty_derivatives_from_residuals_and_slopes_equal_autograd():
    """``2 r (dr/dx) / sigma^2`` from each prior's residual and slope (what the fused training path
    uses, cost/fused.py) equals autograd's derivative of its penalty, on values covering every
    branch (below 0, the false-ice rise and fall, the peak, inside [0, 1], above 1)."""
    c = torch.tensor(
        [-0.2, -1e-3, 0.0, 0.05, 0.1499, 0.15, 0.1501, 0.29, 0.3, 0.31, 0.7, 1.0, 1.05, 1.3], dtype=torch.float64
    )
    bg = torch.linspace(0.0, 1.0, c.numel(), dtype=torch.float64)
    t = torch.linspace(265.0, 280.0, c.numel(), dtype=torch.float64)
    q = costs.quadratic_penalty_grad
    cases = {
        "range": (lambda x: costs.sic_range_penalty(x, 0.02), q(costs.sic_range_residual(c), 1.0, 0.02)),
        "background": (
            lambda x: costs.sic_background_penalty(x, bg, 0.1),
            q(costs.sic_background_residual(c, bg), 1.0, 0.1),
        ),
        "false_ice": (
            lambda x: costs.false_ice_penalty(x, 0.02),
            q(costs.false_ice_residual(c), costs.false_ice_slope(c), 0.02),
        ),
        "warm_effective": (
            lambda x: costs.warm_ice_penalty(x, t, effective=True),
            costs.warm_ice_penalty_weighted_grad(c, costs.warm_ice_weight(t), True),
        ),
        "anchor_floor": (
            lambda x: costs.anchor_floor_penalty(x, 0.7, 1e-5),
            q(costs.anchor_floor_residual(c, 0.7), -1.0, 1e-5),
        ),
    }
    for name, (fn, hand) in cases.items():
        np.testing.assert_allclose(hand.numpy(), _autograd_derivative(fn, c).numpy(), rtol=1e-12, atol=0, err_msg=name)
    # hand values: range 2 (C - 1) / s^2 above 1, false ice 2 C / s^2 rising and -2 (0.3 - C) / s^2 falling
    one = lambda v: torch.tensor(v, dtype=torch.float64)
    assert float(q(costs.sic_range_residual(one(1.05)), 1.0, 0.02)) == pytest.approx(2 * 0.05 / 0.02**2)
    for v, want in ((0.1, 2 * 0.1 / 0.02**2), (0.2, -2 * 0.1 / 0.02**2), (0.15, 0.0)):
        got = float(q(costs.false_ice_residual(one(v)), costs.false_ice_slope(one(v)), 0.02))
        assert got == pytest.approx(want), v
    b = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]], dtype=torch.float64)
    b_bg = torch.tensor([[0.5, -1.0, 0.5], [2.0, 1.0, 0.0]], dtype=torch.float64)
    sig = torch.tensor([[0.5], [4.0]], dtype=torch.float64)
    np.testing.assert_allclose(
        q(b - b_bg, 1.0, sig).numpy(),
        _autograd_derivative(lambda x: costs.bias_penalty(x, b_bg, sig), b).numpy(),
        rtol=1e-12,
    )
    assert float(q(b - b_bg, 1.0, sig)[0, 0]) == pytest.approx(2 * 0.5 / 0.25)
    # the reference warm-ice term has no derivative
    assert float(costs.warm_ice_penalty_weighted_grad(c, costs.warm_ice_weight(t)).abs().max()) == 0.0


def test_smoothness_penalty_hand_value_and_gradient():
    """Three values in a row, pairs (0, 1) with sigma 0.1 and (1, 2) with sigma 0.2:
    J = (0.2 - 0.5)^2 / 0.01 + (0.5 - 0.4)^2 / 0.04 = 9 + 0.25 = 9.25;
    dJ/dx = (2 (-0.3) / 0.01, -2 (-0.3) / 0.01 + 2 (0.1) / 0.04, -2 (0.1) / 0.04) = (-60, 65, -5)."""
    x = t(0.2, 0.5, 0.4)
    first, second = torch.tensor([0, 1]), torch.tensor([1, 2])
    inv_var = t(1 / 0.1**2, 1 / 0.2**2)
    assert costs.smoothness_penalty(x, first, second, inv_var).item() == pytest.approx(9.25, rel=1e-12)
    np.testing.assert_allclose(costs.smoothness_grad(x, first, second, inv_var).numpy(), [-60.0, 65.0, -5.0])
    # a constant map costs nothing, whatever its level
    assert costs.smoothness_penalty(t(0.7, 0.7, 0.7), first, second, inv_var).item() == 0.0


def test_smoothness_gradient_equals_autograd_and_gradcheck():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, dtype=D, generator=g)
    first = torch.tensor([0, 0, 3, 5, 7, 2, 11, 4])
    second = torch.tensor([1, 4, 4, 6, 8, 9, 10, 11])
    inv_var = torch.rand(8, dtype=D, generator=g) * 100.0
    auto = _autograd_derivative(lambda v: costs.smoothness_penalty(v, first, second, inv_var), x)
    np.testing.assert_allclose(costs.smoothness_grad(x, first, second, inv_var).numpy(), auto.numpy(), rtol=1e-12)
    assert torch.autograd.gradcheck(
        lambda v: costs.smoothness_penalty(v, first, second, inv_var), (x.clone().requires_grad_(True),)
    )
