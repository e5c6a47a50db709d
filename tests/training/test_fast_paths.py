"""The training hot path's shortcuts give the results of the plain code.

- DeferredAdam's catch-up-then-step path (rows gathered once, duplicates
  summed through the lookup's inverse index, moments written by the step)
  equals dense Adam at every read, also when a catch-up is followed by a
  step without gradient, a gradient on other rows, or a state_dict;
- physics.effective_atmosphere + surface_atmosphere_terms + simulate_tb_mixed equal simulate_tb (value and
  gradients).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from empirical_seaice.errors import SeaIceError
from empirical_seaice.model import physics
from empirical_seaice.training.deferred_adam import ADAM_BETAS, ADAM_EPS, DeferredAdam


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
    assert float((ws.detach() - w0)[nrow // 2 :].abs().max()) == 0.0  # never-read rows did not
    st = opt_s.state[ws]
    np.testing.assert_allclose(st["exp_avg"].numpy(), opt_d.state[wd]["exp_avg"].numpy(), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("floor", [None, 271.35])
def test_mixed_tb_equals_simulate_tb(floor):
    gen = torch.Generator().manual_seed(0)
    nb, nc = 30, 5

    def r(*shape, lo=0.0, hi=1.0, grad=False):
        x = lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=torch.float64)
        return x.requires_grad_(grad)

    atm = dict(
        t_skin_k=r(nb, lo=240, hi=280),
        ocean_t_floor_k=floor,
        tau=r(nb, nc),
        t_down_k=r(nb, nc, hi=80),
        t_up_k=r(nb, nc, hi=80),
        tau_cld=r(nb, nc),
        t_down_cld_k=r(nb, nc, hi=100),
        t_up_cld_k=r(nb, nc, hi=100),
        cloud_fraction=r(nb),
    )
    train = dict(
        sic=r(nb, lo=-0.1, hi=1.1, grad=True),
        emis_ice=r(nb, nc, grad=True),
        emis_ocean=r(nb, nc, grad=True),
        bias_ice_k=r(nb, nc, lo=-2, hi=2, grad=True),
        bias_ocean_k=r(nb, nc, lo=-2, hi=2, grad=True),
    )
    ref = physics.simulate_tb(**atm, **train)
    tau_eff, down_eff, const = physics.effective_atmosphere(
        **{k: v for k, v in atm.items() if k not in ("t_skin_k", "ocean_t_floor_k")}
    )
    a_ice, a_ocean = physics.surface_atmosphere_terms(
        t_skin_k=atm["t_skin_k"], ocean_t_floor_k=atm["ocean_t_floor_k"], tau_eff=tau_eff, down_eff_k=down_eff
    )
    new = physics.simulate_tb_mixed(a_ice_k=a_ice, a_ocean_k=a_ocean, const_k=const, **train)
    assert 100.0 < float(ref.detach().mean()) < 300.0
    np.testing.assert_allclose(new.detach().numpy(), ref.detach().numpy(), rtol=1e-13, atol=0)
    weights = r(nb, nc)
    g_ref = torch.autograd.grad((ref * weights).sum(), list(train.values()))
    g_new = torch.autograd.grad((new * weights).sum(), list(train.values()))
    for name, a, b in zip(train, g_ref, g_new, strict=True):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-12, atol=1e-12, err_msg=name)
    # hand check of one element: TB' = c TB_i + (1 - c) TB_o
    c, ei, eo = (float(train[k].detach().reshape(-1)[0]) for k in ("sic", "emis_ice", "emis_ocean"))
    tb_i = ei * float(a_ice[0, 0]) + float(const[0, 0]) + float(train["bias_ice_k"].detach()[0, 0])
    tb_o = eo * float(a_ocean[0, 0]) + float(const[0, 0]) + float(train["bias_ocean_k"].detach()[0, 0])
    assert float(new.detach()[0, 0]) == pytest.approx(c * tb_i + (1 - c) * tb_o, rel=1e-13)


def _two_tables(gen):
    """A 1-column and a 2-column table (the SIC map and grid properties' shapes)."""
    return torch.randn(30, 1, generator=gen), torch.randn(12, 2, generator=gen)


def test_catch_up_many_tables_of_two_widths_equals_dense_adam():
    """Two tables in one slab (one sort, gather and write per step for both) follow dense Adam;
    the narrow table's padding column never moves anything."""
    gen = torch.Generator().manual_seed(3)
    a0, b0 = _two_tables(gen)
    sa, sb = torch.nn.Parameter(a0.clone()), torch.nn.Parameter(b0.clone())
    da, db = torch.nn.Parameter(a0.clone()), torch.nn.Parameter(b0.clone())
    opt_s = DeferredAdam([sa, sb], lr=1e-2)
    opt_d = torch.optim.Adam([da, db], lr=1e-2, betas=ADAM_BETAS, eps=ADAM_EPS)
    max_read_diff = 0.0
    for _step in range(150):
        ra = torch.randint(0, 20, (4, 2), generator=gen)  # rows 20.. never read
        rb = torch.randint(0, 8, (4,), generator=gen)
        ta, tb = torch.randn(4, 2, 1, generator=gen), torch.randn(4, 2, generator=gen)
        opt_s.catch_up_many([(sa, ra.reshape(-1)), (sb, rb)])
        max_read_diff = max(
            max_read_diff,
            float((sa.detach()[ra] - da.detach()[ra]).abs().max()),
            float((sb.detach()[rb] - db.detach()[rb]).abs().max()),
        )
        for wa, wb, sparse in ((sa, sb, True), (da, db, False)):
            (_lookup_loss(wa, ra, ta, sparse) + _lookup_loss(wb, rb, tb, sparse)).backward()
        opt_s.step()
        opt_d.step()
        opt_s.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)
    assert max_read_diff < 1e-5
    opt_s.flush()
    np.testing.assert_allclose(sa.detach().numpy(), da.detach().numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(sb.detach().numpy(), db.detach().numpy(), rtol=0, atol=1e-5)
    assert float((da.detach() - a0)[:20].abs().min()) > 1e-3 and float((sa.detach() - a0)[20:].abs().max()) == 0.0
    # the layout: both tables are views into one slab of 8-float rows [w w | m m | v v | last | pad]
    slab = opt_s.state[sa]["slab"]
    assert slab is opt_s.state[sb]["slab"] and slab.shape == (42, 8)
    assert sa.data_ptr() == slab.data_ptr() and sb.data_ptr() == slab[30].data_ptr()
    assert float(slab[:30, 1].abs().max()) == 0.0  # the 1-column table's padding weight stayed 0
    assert float(opt_s.state[sb]["last_step"].max()) == 150.0


def test_slab_survives_state_dict_round_trip_and_replaced_data():
    """A checkpoint round trip continues exactly; a parameter whose data was replaced
    (e.g. ``module.to``) is re-attached to the slab with its new values."""
    gen = torch.Generator().manual_seed(4)
    a0, b0 = _two_tables(gen)

    def run(opt, tables, steps, seed):
        g = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            ra, rb = torch.randint(0, 30, (5,), generator=g), torch.randint(0, 12, (3,), generator=g)
            opt.catch_up_many([(tables[0], ra), (tables[1], rb)])
            (
                F.embedding(ra, tables[0], sparse=True).sum() + F.embedding(rb, tables[1], sparse=True).pow(2).sum()
            ).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    ref = [torch.nn.Parameter(a0.clone()), torch.nn.Parameter(b0.clone())]
    opt_ref = DeferredAdam(ref, lr=1e-2)
    run(opt_ref, ref, 20, 1)
    run(opt_ref, ref, 20, 2)
    opt_ref.flush()

    first = [torch.nn.Parameter(a0.clone()), torch.nn.Parameter(b0.clone())]
    opt1 = DeferredAdam(first, lr=1e-2)
    run(opt1, first, 20, 1)
    saved_opt = opt1.state_dict()
    saved_w = [w.detach().clone() for w in first]
    resumed = [torch.nn.Parameter(w.clone()) for w in saved_w]
    opt2 = DeferredAdam(resumed, lr=1e-2)
    opt2.load_state_dict(saved_opt)
    # the loaded slab is a copy: the source optimiser keeps its own storage
    assert opt2.state[resumed[0]]["slab"].data_ptr() != opt1.state[first[0]]["slab"].data_ptr()
    run(opt2, resumed, 20, 2)
    opt2.flush()
    for a, b in zip(ref, resumed, strict=True):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())

    # replaced data: the new values win and the table is back in the slab
    new = torch.full_like(first[0], 0.5)
    first[0].data = new.clone()
    run(opt1, first, 1, 3)
    st = opt1.state[first[0]]
    assert first[0].data_ptr() == st["slab"].data_ptr()
    moved = (first[0].detach() - 0.5).abs()
    # only the rows read by that one step moved (their deferred momentum tail: tens of lr at most)
    assert int((moved > 0).sum()) <= 5 and float(moved.max()) < 50 * 1e-2


def test_deferred_adam_refuses_too_many_steps():
    w = torch.nn.Parameter(torch.zeros(3, 1))
    opt = DeferredAdam([w], lr=0.1)
    w.grad = torch.ones(3, 1)
    opt.step()
    opt.state[w]["step"] = DeferredAdam.MAX_STEPS - 1
    with pytest.raises(SeaIceError, match="more than 16777216 steps"):
        opt.step()
    with pytest.raises(ValueError, match="2-D row tables"):
        DeferredAdam([torch.nn.Parameter(torch.zeros(3))])


def test_gather_equals_dense_adam_and_refuses_a_second_gradient():
    """Computing with the rows DeferredAdam.gather hands out (no lookup, no sparse gradient)
    follows dense Adam like the lookup path; a table that also has a gradient is an error."""
    gen = torch.Generator().manual_seed(5)
    a0, b0 = _two_tables(gen)
    sa, sb = torch.nn.Parameter(a0.clone()), torch.nn.Parameter(b0.clone())
    da, db = torch.nn.Parameter(a0.clone()), torch.nn.Parameter(b0.clone())
    opt_s = DeferredAdam([sa, sb], lr=1e-2)
    opt_d = torch.optim.Adam([da, db], lr=1e-2, betas=ADAM_BETAS, eps=ADAM_EPS)
    for _step in range(150):
        ra = torch.randint(0, 20, (4, 2), generator=gen)
        rb = torch.randint(0, 8, (4,), generator=gen)
        ta, tb = torch.randn(4, 2, 1, generator=gen), torch.randn(4, 2, generator=gen)
        va, vb = opt_s.gather([(sa, ra), (sb, rb)])
        assert va.shape == (4, 2, 1) and vb.shape == (4, 2)
        # what the network computes with equals dense Adam's parameters at those rows
        assert float((va.detach() - da.detach()[ra]).abs().max()) < 1e-5
        (((va - ta) ** 2).sum() + ((vb - tb) ** 2).sum()).backward()
        (_lookup_loss(da, ra, ta, False) + _lookup_loss(db, rb, tb, False)).backward()
        assert sa.grad is None and sb.grad is None  # the tables themselves get no gradient
        opt_s.step()
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)
    opt_s.flush()
    np.testing.assert_allclose(sa.detach().numpy(), da.detach().numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(sb.detach().numpy(), db.detach().numpy(), rtol=0, atol=1e-5)
    assert float((da.detach() - a0)[:20].abs().min()) > 1e-3

    va, vb = opt_s.gather([(sa, ra), (sb, rb)])
    (va.sum() + F.embedding(rb, sb, sparse=True).sum()).backward()
    with pytest.raises(SeaIceError, match="read through gather"):
        opt_s.step()
