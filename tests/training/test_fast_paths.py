"""The training hot path's shortcuts give the results of the plain code.

- DeferredAdam's catch-up-then-step path (rows gathered once, duplicates
  summed through the lookup's inverse index, moments written by the step)
  equals dense Adam at every read, also when a catch-up is followed by a
  step without gradient, a gradient on other rows, or a state_dict;
- physics.atmosphere_terms + simulate_tb_mixed equal simulate_tb (value and
  gradients).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from empirical_seaice import physics
from empirical_seaice.training import ADAM_BETAS, ADAM_EPS, DeferredAdam


def _lookup_loss(w, rows, target, sparse):
    return ((F.embedding(rows, w, sparse=sparse) - target) ** 2).sum()


@pytest.mark.parametrize("detour", [None, "no_grad", "other_rows", "state_dict"])
def test_catch_up_then_step_equals_dense_adam(detour):
    gen = torch.Generator().manual_seed(1)
    nrow, ncol = 40, 2
    w0 = torch.randn(nrow, ncol, generator=gen)
    ws, wd = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    opt_s = DeferredAdam([ws], lr=1e-2)
    opt_d = torch.optim.Adam([wd], lr=1e-2, betas=ADAM_BETAS, eps=ADAM_EPS)
    max_read_diff = 0.0
    for step in range(120):
        rows = torch.randint(0, nrow // 2, (3, 2), generator=gen)  # repeats within a batch
        target = torch.randn(3, 2, ncol, generator=gen)
        other = torch.randint(0, nrow // 2, (4,), generator=gen)
        if detour == "other_rows" and step % 5 == 2:
            # caught up: more rows than the gradient will have (the step cannot reuse the gathered rows)
            opt_s.catch_up(ws, torch.cat([rows.reshape(-1), other]))
        else:
            opt_s.catch_up(ws, rows.reshape(-1))
        # what the forward pass reads equals dense Adam's parameters
        max_read_diff = max(max_read_diff, float((ws.detach()[rows] - wd.detach()[rows]).abs().max()))
        if detour == "state_dict" and step % 7 == 3:
            opt_s.state_dict()  # writes back the pending moments (the final flush checks them)
        if detour == "no_grad" and step % 5 == 2:
            ws.grad = None  # a step without gradient after a catch-up
            wd.grad = torch.zeros_like(wd)
        elif detour == "other_rows" and step % 5 == 2:
            _lookup_loss(ws, other, target[0, :1].expand(4, ncol), True).backward()
            _lookup_loss(wd, other, target[0, :1].expand(4, ncol), False).backward()
        else:
            _lookup_loss(ws, rows, target, True).backward()
            _lookup_loss(wd, rows, target, False).backward()
        opt_s.step()
        opt_d.step()
        opt_s.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)
    assert max_read_diff < 1e-5
    opt_s.flush()
    np.testing.assert_allclose(ws.detach().numpy(), wd.detach().numpy(), rtol=0, atol=1e-5)
    assert float((wd.detach() - w0)[: nrow // 2].abs().min()) > 1e-3  # the rows did move
    assert float((ws.detach() - w0)[nrow // 2:].abs().max()) == 0.0  # never-read rows did not
    st = opt_s.state[ws]
    np.testing.assert_allclose(st["exp_avg"].numpy(), opt_d.state[wd]["exp_avg"].numpy(), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("floor", [None, 271.35])
def test_mixed_tb_equals_simulate_tb(floor):
    gen = torch.Generator().manual_seed(0)
    nb, nc = 30, 5

    def r(*shape, lo=0.0, hi=1.0, grad=False):
        x = lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=torch.float64)
        return x.requires_grad_(grad)

    atm = dict(t_skin_k=r(nb, lo=240, hi=280), ocean_t_floor_k=floor, tau=r(nb, nc), t_down_k=r(nb, nc, hi=80),
               t_up_k=r(nb, nc, hi=80), tau_cld=r(nb, nc), t_down_cld_k=r(nb, nc, hi=100),
               t_up_cld_k=r(nb, nc, hi=100), cloud_fraction=r(nb))
    train = dict(sic=r(nb, lo=-0.1, hi=1.1, grad=True), emis_ice=r(nb, nc, grad=True), emis_ocean=r(nb, nc, grad=True),
                 bias_ice_k=r(nb, nc, lo=-2, hi=2, grad=True), bias_ocean_k=r(nb, nc, lo=-2, hi=2, grad=True))
    ref = physics.simulate_tb(**atm, **train)
    a_ice, a_ocean, const = physics.atmosphere_terms(**atm)
    new = physics.simulate_tb_mixed(a_ice_k=a_ice, a_ocean_k=a_ocean, const_k=const, **train)
    assert 100.0 < float(ref.detach().mean()) < 300.0
    np.testing.assert_allclose(new.detach().numpy(), ref.detach().numpy(), rtol=1e-13, atol=0)
    weights = r(nb, nc)
    g_ref = torch.autograd.grad((ref * weights).sum(), list(train.values()))
    g_new = torch.autograd.grad((new * weights).sum(), list(train.values()))
    for name, a, b in zip(train, g_ref, g_new):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-12, atol=1e-12, err_msg=name)
    # hand check of one element: TB' = c TB_i + (1 - c) TB_o
    c, ei, eo = (float(train[k].detach().reshape(-1)[0]) for k in ("sic", "emis_ice", "emis_ocean"))
    tb_i = ei * float(a_ice[0, 0]) + float(const[0, 0]) + float(train["bias_ice_k"].detach()[0, 0])
    tb_o = eo * float(a_ocean[0, 0]) + float(const[0, 0]) + float(train["bias_ocean_k"].detach()[0, 0])
    assert float(new.detach()[0, 0]) == pytest.approx(c * tb_i + (1 - c) * tb_o, rel=1e-13)
