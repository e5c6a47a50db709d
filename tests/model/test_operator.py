"""network.py: batching, forward = physics chain, cost terms, sampled priors, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_fixtures import make_obs

from empirical_seaice.config import PRESETS, V2_FORK_ANCHOR, CostConfig, ModelConfig, replace
from empirical_seaice.cost import objective
from empirical_seaice.cost import terms as costs
from empirical_seaice.cost.sampling import build_row_counts
from empirical_seaice.errors import SeaIceError
from empirical_seaice.model import physics
from empirical_seaice.model.operator import HybridNetwork
from empirical_seaice.model.tensors import ObservationTensors


def _net(preset="v2", obs_bg=None, sparse=True, prior_mode=None, cost=None, model=None, dtype=torch.float32, **kw):
    p = PRESETS[preset]
    obs, bg = obs_bg if obs_bg is not None else make_obs(p.sensors, **kw)
    rc = build_row_counts(obs, bg.nlag, bg.ngrid, bg.nstep)
    net = HybridNetwork(
        model or p.model,
        cost or p.cost,
        obs.basis,
        bg,
        obs.nobs,
        rc,
        sparse=sparse,
        generator=torch.Generator().manual_seed(0),
        prior_mode=prior_mode,
    )
    if dtype == torch.float64:
        net = net.double()
    return net, ObservationTensors(obs, dtype=dtype), obs, bg


def test_build_row_counts_hand_values():
    obs, bg = make_obs(nobs=12, ngrid=3, nstep=4, all_rows=True)
    rc = build_row_counts(obs, 1, 3, 4)
    # every (g, t) once: column 0 (lag) of each grid point is touched once (by t=0, l=1),
    # columns 1..3 twice (own day + the next day's lag), column 4 once.
    assert rc.sic.reshape(3, 5).tolist() == [[1, 2, 2, 2, 1]] * 3
    assert rc.grid.tolist() == [1.0] * 12 and rc.nobs == 12 and rc.n_warm_rows == 12
    sub = build_row_counts(obs, 1, 3, 4, index=np.array([0, 1]))  # g=0, t=0 and t=1
    assert sub.sic.reshape(3, 5)[0].tolist() == [1, 2, 1, 0, 0] and sub.nobs == 2
    with pytest.raises(SeaIceError, match=r"observation indices 0\.\.11, got 0\.\.12"):  # read unchecked: refused
        build_row_counts(obs, 1, 3, 4, index=np.array([0, 12]))


def test_build_row_counts_out_of_range_raises():
    obs, bg = make_obs(nobs=12, ngrid=3, nstep=4)
    with pytest.raises(SeaIceError, match=r"Observations.istep: expected 0 <= istep < nstep=3"):
        build_row_counts(obs, 1, 3, 3)
    with pytest.raises(SeaIceError, match=r"Observations.igrid: expected 0 <= igrid < ngrid=2"):
        build_row_counts(obs, 1, 2, 4)


# ------------------------------------------------------------------------ forward
@pytest.mark.parametrize("preset", ["v1", "v2"])
@torch.no_grad()
def test_forward_reproduces_physics_chain(preset):
    cols: dict = {}
    net, ot, obs, bg = _net(preset, nobs=25, dtype=torch.float64, columns=cols)
    net.wind_coef.copy_(torch.linspace(-0.002, 0.002, obs.nchan, dtype=torch.float64))
    net.state.props_grid.weight.normal_(generator=torch.Generator().manual_seed(1))
    if net.state.props_obs is not None:
        net.state.props_obs.weight.normal_(generator=torch.Generator().manual_seed(2))
    net.bias_ice_k.add_(1.5)
    b = ot.all()
    out = net(b)
    # by hand from the state tables, with the model's own emissivity
    cmap = bg.sic.astype(np.float64)
    g, tt = obs.igrid, obs.istep
    c = 0.6 * cmap[g, tt + 1] + 0.4 * cmap[g, tt]
    assert np.allclose(out["sic"].numpy(), c, atol=1e-7)
    mc = net.model_config
    x_t = np.maximum(273.0 - obs.t_skin_k.astype(np.float64), 0) / 30.0
    props = [net.state.grid_properties_array()[g, tt]]
    if mc.nprop_obs:
        props.append(net.state.obs_properties_array())
    props = torch.from_numpy(np.concatenate(props, axis=1).astype(np.float64))
    isens = torch.from_numpy(obs.isensor.astype(np.int64))
    e_ice = net.emissivity(torch.from_numpy(x_t), props, isens)
    e_ocean = (
        torch.from_numpy(obs.emis_water.astype(np.float64))
        + net.wind_coef * torch.from_numpy(obs.wind_ms.astype(np.float64))[:, None]
    )
    f = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float64))

    def simulate(**atmosphere):
        return physics.simulate_tb(
            sic=f(c),
            emis_ice=e_ice,
            t_skin_k=f(obs.t_skin_k),
            emis_ocean=e_ocean,
            ocean_t_floor_k=mc.ocean_t_floor_k,
            **atmosphere,
            bias_ice_k=net.bias_ice_k[isens],
            bias_ocean_k=net.bias_ocean_k[isens],
        )

    # the observations' effective atmosphere as one clear column (f = 0: tau*, D* = tau* T_down, K = D* + T_up)
    tau = f(obs.tau_eff)
    tb = simulate(
        tau=tau,
        t_down_k=f(obs.down_eff_k) / tau,
        t_up_k=f(obs.const_k) - f(obs.down_eff_k),
        tau_cld=tau,
        t_down_cld_k=f(obs.down_eff_k) / tau,
        t_up_cld_k=f(obs.const_k) - f(obs.down_eff_k),
        cloud_fraction=torch.zeros(obs.nobs, dtype=torch.float64),
    )
    # and the clear and cloudy columns it was folded from, to the float32 rounding of the stored fields
    tb_columns = simulate(**{k: f(v) for k, v in cols.items()}, cloud_fraction=f(obs.cloud_fraction))
    own = torch.from_numpy(np.asarray(obs.basis.present))[isens]  # the packed rows hold their sensor's channels
    assert torch.allclose(out["tb"][own], tb[own], atol=1e-9)
    assert 0 < (out["tb"][own] - tb_columns[own]).abs().max() < 2e-4
    assert torch.allclose(out["emis_ice"], e_ice) and torch.allclose(out["emis_ocean"][own], e_ocean[own])


def test_zero_sic_gives_ocean_only_tb():
    net, ot, obs, bg = _net("v2", nobs=20, dtype=torch.float64)
    b = ot.all()
    tb0 = net(b, zero_sic=True)["tb"]
    with torch.no_grad():
        net.state.sic_map.weight.zero_()
        net.emissivity.output.bias.add_(3.0)  # ice emissivity is invisible at SIC 0
    assert torch.allclose(net(b)["tb"], tb0)


def test_bias_initialisation_from_catalogue_and_override():
    net, *_ = _net("v2", nobs=20)
    names = net.basis.sensor_names
    assert net.bias_ice_k[names.index("amsr2")].unique().tolist() == [5.0]
    assert net.bias_ocean_k[names.index("amsr2")].unique().tolist() == [2.5]
    assert net.bias_error_k[:, 0].tolist() == pytest.approx([0.5, 0.001, 4.0])
    v1, *_ = _net("v1", nobs=20)  # v1 preset: bias_bg override (5.0, 2.5, 0.001)
    assert v1.bias_error_k.item() == pytest.approx(0.001)
    assert not v1.wind_coef.any()


# --------------------------------------------------------------------- cost terms
def test_cost_terms_hand_values():
    net, ot, obs, bg = _net("v2", nobs=40, dtype=torch.float64)
    b = ot.batch(torch.arange(10))
    out = net(b)
    terms = net.cost_terms(b, out, nobs_total=40)
    # J_o by hand in numpy: sum over the masked channels of ((y - H(x)) / sigma)^2, averaged over the batch
    y, h = b.tb_obs_k.numpy(), out["tb"].detach().numpy()
    jo = ((((y - h) / net.obs_error_k.numpy()) ** 2) * b.mask.numpy()).sum(axis=1).mean()
    assert jo > 0 and terms["obs"].item() == pytest.approx(jo, rel=1e-12)
    assert terms["bias"].item() == 0.0
    # original v2 anchor: the network's V emissivity at 23.8 GHz held above 0.8, summed, / 1e-5^2 / nobs
    x_t = torch.clamp(273.0 - b.t_skin_k, min=0.0) / 30.0
    e = net.emissivity.emissivity_vh(x_t, out["props"], torch.tensor(23.8, dtype=torch.float64))[:, 0]
    assert torch.equal(out["emis_anchor"], e)
    expected = (np.maximum(0.8 - e.detach().numpy(), 0) ** 2).sum() / 1e-10 / 40
    assert expected > 0 and terms["anchor"].item() == pytest.approx(expected, rel=1e-9)
    # the fork's variant: the 10v ice emissivity held above 0.7
    fork, *_ = _net("v2", nobs=40, dtype=torch.float64, cost=replace(PRESETS["v2"].cost, **V2_FORK_ANCHOR))
    out_f = fork(b)
    e10 = out_f["emis_ice"][:, fork.basis.channel_index["10v"]].detach().numpy()
    expected = (np.maximum(0.7 - e10, 0) ** 2).sum() / 1e-10 / 40
    assert fork.cost_terms(b, out_f, 40)["anchor"].item() == pytest.approx(expected, rel=1e-9)
    with torch.no_grad():
        net.bias_ice_k[0, 0] += 0.5  # amsr2 sigma 0.5 -> 1 / nobs
    assert net.cost_terms(b, out, 40)["bias"].item() == pytest.approx(1.0 / 40)
    assert set(terms) == {"obs", "sic_range", "false_ice", "warm_ice", "anchor", "bias"}


def test_v1_mean_anchor_and_channel_fallback():
    p = PRESETS["v1"]
    net, ot, obs, bg = _net("v1", nobs=20, model=replace(p.model, ice_emis_init=0.93), dtype=torch.float64)
    b = ot.all()
    assert net.cost_terms(b, net(b), 20)["anchor"].item() < 1e-6  # float32 rounding of 0.93 only
    with torch.no_grad():
        net.emissivity.output.bias.fill_(0.93002)
    assert net.cost_terms(b, net(b), 20)["anchor"].item() == pytest.approx(4.0 / 20, rel=1e-6)
    # v2, the fork's anchor, on SSMIS alone: no 10v, the anchor falls back to 24v
    net2, *_ = _net("v2", obs_bg=make_obs(("ssmisf17",)), cost=replace(PRESETS["v2"].cost, **V2_FORK_ANCHOR))
    assert net2.basis.channel_names[net2.anchor_channel] == "24v"


def test_total_cost_warm_ice_diagnostic_has_zero_gradient_effective_not():
    p = PRESETS["v2"]
    obs_bg = make_obs(("amsr2",), nobs=30)
    grads, values = {}, {}
    for mode in ("diagnostic", "effective"):
        net, ot, *_ = _net("v2", obs_bg=obs_bg, sparse=False, cost=replace(p.cost, warm_ice=mode), dtype=torch.float64)
        b = ot.all()
        terms = net.cost_terms(b, net(b), 30)
        total = net.total_cost(terms)
        assert total.item() == pytest.approx(sum(v.item() for v in terms.values()))
        total.backward()
        grads[mode] = net.state.sic_map.weight.grad.clone()
        values[mode] = terms
        # gradient without the warm-ice term
        net.zero_grad()
        net.total_cost({k: v for k, v in net.cost_terms(b, net(b), 30).items() if k != "warm_ice"}).backward()
        grads[mode + "-nowarm"] = net.state.sic_map.weight.grad.clone()
    assert torch.equal(grads["diagnostic"], grads["diagnostic-nowarm"])
    diff = grads["effective"] - grads["effective-nowarm"]
    assert diff.abs().max() > 0 and values["effective"]["warm_ice"].requires_grad


# ---------------------------------------------------------------- sampled priors
@pytest.mark.parametrize("all_rows", [True, False])
def test_sampled_priors_over_all_observations_equal_full_prior(all_rows):
    cost = replace(PRESETS["v2"].cost, sic_background_prior=True, warm_ice="effective")
    obs_bg = make_obs(("amsr2",), nobs=30 if all_rows else 6, ngrid=3, nstep=4, all_rows=all_rows, seed=3)
    obs_bg[1].sic[:, 1:3] = [[0.1, 1.05], [0.2, -0.05], [0.25, 0.12]]  # trace ice and out-of-range SIC
    net, ot, obs, bg = _net("v2", obs_bg=obs_bg, cost=cost, dtype=torch.float64, sparse=False, prior_mode="sampled")
    b = ot.all()
    sampled = net.cost_terms(b, net(b), obs.nobs)
    rc = build_row_counts(obs, 1, 3, 4)
    observed = torch.from_numpy(rc.sic > 0)
    full = net.full_prior_terms(obs.nobs)
    if all_rows:
        assert observed.all()
        for name in ("sic_range", "sic_background", "false_ice", "warm_ice"):
            assert sampled[name].item() == pytest.approx(full[name].item(), rel=1e-12), name
    else:
        assert not observed.all()
    # in general: the full prior over the observed rows
    C = net.state.sic_map.weight[:, 0].detach()
    Cb = torch.from_numpy(bg.sic.reshape(-1).astype(np.float64))
    ref = {
        "sic_range": costs.sic_range_penalty(C, 0.002)[observed].sum() / obs.nobs,
        "sic_background": costs.sic_background_penalty(C, Cb, 0.1)[observed].sum() / obs.nobs,
        "false_ice": costs.false_ice_smooth_penalty(C, 0.02)[observed].sum() / obs.nobs,
    }
    for name, value in ref.items():
        assert sampled[name].item() == pytest.approx(value.item(), rel=1e-12), name
    assert ref["sic_range"] > 0 and ref["false_ice"] > 0  # the background has values outside [0, 1] and trace ice
    # warm ice: the mean over observed rows with a temperature, / nobs
    warm_obs = observed.reshape(3, 5)[:, 1:]
    tmap = torch.from_numpy(bg.t_skin_map_k.astype(np.float64))
    w = costs.warm_ice_penalty(C.reshape(3, 5)[:, 1:], tmap, effective=True)[warm_obs].mean() / obs.nobs
    assert sampled["warm_ice"].item() == pytest.approx(w.item(), rel=1e-12)


def test_sampled_prior_gradient_equals_full_gradient_and_epoch_sum():
    obs_bg = make_obs(("amsr2",), nobs=30, ngrid=3, nstep=4, seed=4)
    net, ot, obs, bg = _net("v2", obs_bg=obs_bg, dtype=torch.float64, sparse=False, prior_mode="sampled")
    b = ot.all()
    s = net.cost_terms(b, net(b), obs.nobs)
    (s["sic_range"] + s["false_ice"]).backward()
    g_sampled = net.state.sic_map.weight.grad.clone()
    net.zero_grad()
    f = net.full_prior_terms(obs.nobs)
    (f["sic_range"] + f["false_ice"]).backward()
    assert torch.allclose(g_sampled, net.state.sic_map.weight.grad, rtol=1e-12, atol=0)
    assert g_sampled.abs().max() > 0
    # one shuffled epoch in batches of 7: sum of (|B| / nobs) * estimate = the full term
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    total = 0.0
    for k in range(0, 30, 7):
        bb = ot.batch(perm[k : k + 7])
        total += len(bb) / 30 * net.cost_terms(bb, net(bb), 30)["sic_range"].item()
    assert total == pytest.approx(f["sic_range"].item(), rel=1e-12)


def test_full_prior_mode_uses_the_whole_map():
    """The reference's dense scheme ("full"): every step's map priors are the whole-map sums
    (unobserved rows included), whatever the batch; the sampled estimate covers observed rows only."""
    cost = replace(PRESETS["v2"].cost, warm_ice="effective")
    obs_bg = make_obs(("amsr2",), nobs=6, ngrid=3, nstep=4, all_rows=False, seed=3)
    obs_bg[1].sic[:, 1:3] = [[0.1, 1.05], [0.2, -0.05], [0.25, 0.12]]  # trace ice and out-of-range SIC
    net, ot, obs, bg = _net("v2", obs_bg=obs_bg, cost=cost, dtype=torch.float64, sparse=False, prior_mode="full")
    C = torch.from_numpy(bg.sic.reshape(-1).astype(np.float64))
    tmap = torch.from_numpy(bg.t_skin_map_k.astype(np.float64))
    hand = {
        "sic_range": costs.sic_range_penalty(C, cost.sic_error).sum() / 30,
        "false_ice": costs.false_ice_smooth_penalty(C, cost.false_ice_error, cost.false_ice_peak_scaling).sum() / 30,
        "warm_ice": costs.warm_ice_penalty(C.reshape(3, 5)[:, 1:], tmap, effective=True).mean() / 30,
    }
    for index in ([0, 1], [5]):
        b = ot.batch(torch.tensor(index))
        terms = net.cost_terms(b, net(b), 30)
        for name, value in hand.items():
            assert terms[name].item() == pytest.approx(value.item(), rel=1e-12), (name, index)
    observed = torch.from_numpy(build_row_counts(obs, 1, 3, 4).sic > 0)
    assert not observed.all()  # rows no observation reads count too
    assert costs.sic_range_penalty(C, cost.sic_error)[~observed].sum() > 0


# -------------------------------------------------------------------- gradients
def test_gradcheck_stochastic_total_tiny_float64_network():
    obs_bg = make_obs(("amsr2", "gmi"), nobs=16, ngrid=2, nstep=3, seed=5)
    cost = replace(PRESETS["v2"].cost, warm_ice="effective", sic_background_prior=True)
    net, ot, obs, bg = _net("v2", obs_bg=obs_bg, cost=cost, dtype=torch.float64, sparse=False)
    with torch.no_grad():
        net.emissivity.output.bias.fill_(2.5)  # keep away from the anchor floor's kink (e ~ 0.9 > 0.8)
    b = ot.batch(torch.arange(8))
    names = ["wind_coef", "state.sic_map.weight", "emissivity.hidden.weight", "bias_ice_k", "state.props_obs.weight"]
    params = dict(net.named_parameters())
    start = tuple(
        params[n].detach()[:1].clone().requires_grad_(True)
        if n == "bias_ice_k"
        else params[n].detach().clone().requires_grad_(True)
        for n in names
    )

    class Total(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, batch):
            return self.net.total_cost(self.net.cost_terms(batch, self.net(batch), 16))

    wrapper = Total()
    rest = params["bias_ice_k"].detach()[1:]

    def total(*values):
        swap = {"net." + n: v for n, v in zip(names, values, strict=True)}
        swap["net.bias_ice_k"] = torch.cat([swap["net.bias_ice_k"], rest])  # gradcheck the AMSR2 row only
        return torch.func.functional_call(wrapper, swap, (b,))

    assert torch.autograd.gradcheck(total, start, eps=1e-6, atol=1e-5, rtol=1e-5, fast_mode=True)


def test_cost_terms_values_and_gradients_equal_an_autograd_reference():
    """The cost terms computed with their hand-derived derivatives in one node equal the same
    terms composed from the costs.py penalties through autograd, values and every parameter's
    gradient, with every term active (anchor floor violated, biases off their background,
    SIC outside [0, 1] and in the false-ice band, the effective warm-ice form)."""
    obs_bg = make_obs(("amsr2", "gmi"), nobs=24, ngrid=3, nstep=4, seed=7)
    obs_bg[1].sic[:, 1:4] = [[0.1, 1.05, 0.2], [0.25, -0.05, 0.9], [0.12, 0.5, 1.2]]
    cost = replace(PRESETS["v2"].cost, warm_ice="effective", sic_background_prior=True)
    net, ot, obs, bg = _net("v2", obs_bg=obs_bg, cost=cost, dtype=torch.float64, sparse=False)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        net.emissivity.output.bias.fill_(1.4)  # e around 0.8, spread by the properties: some below the floor
        net.state.props_obs.weight.copy_(
            3 * torch.randn(net.state.props_obs.weight.shape, generator=gen, dtype=torch.float64)
        )
        net.state.props_grid.weight.copy_(
            torch.randn(net.state.props_grid.weight.shape, generator=gen, dtype=torch.float64)
        )
        net.bias_ice_k.add_(torch.randn(net.bias_ice_k.shape, generator=gen, dtype=torch.float64))
        net.bias_ocean_k.add_(torch.randn(net.bias_ocean_k.shape, generator=gen, dtype=torch.float64))
        net.state.sic_map.weight.add_(
            0.1 * torch.randn(net.state.sic_map.weight.shape, generator=gen, dtype=torch.float64)
        )
    b = ot.batch(torch.arange(16))
    nb, n = 16, 24
    cc = net.cost_config

    out = net(b)
    terms = net.cost_terms(b, out, n)
    net.total_cost(terms).backward()
    got = {k: p.grad.clone() for k, p in net.named_parameters()}
    net.zero_grad(set_to_none=True)

    out = net(b)
    rows, lags = out["sic_rows"], out["sic_lags"]
    w = 1.0 / (torch.from_numpy(build_row_counts(obs, 1, 3, 4).sic)[rows] * nb)
    x_t = torch.clamp(273.0 - b.t_skin_k, min=0.0) / 30.0
    e_anchor = net.emissivity.emissivity_vh(x_t, out["props"], torch.tensor(23.8, dtype=torch.float64))[:, 0]
    assert float(e_anchor.detach().min()) < 0.8 < float(e_anchor.detach().max())  # the floor is active
    ref = {
        "obs": costs.observation_cost(b.tb_obs_k, out["tb"], b.mask, net.obs_error_k).mean(),
        "sic_range": (costs.sic_range_penalty(lags, cc.sic_error) * w).sum(),
        "sic_background": (
            costs.sic_background_penalty(lags, net.state.background_flat[rows], cc.sic_background_error) * w
        ).sum(),
        "false_ice": (costs.false_ice_smooth_penalty(lags, cc.false_ice_error) * w).sum(),
        "warm_ice": (costs.warm_ice_penalty(lags, net.t_map_flat[rows], effective=True) * w).sum()
        * (net.counts_nobs / net.n_warm_rows / n),
        "anchor": costs.anchor_floor_penalty(e_anchor, cc.anchor_value, cc.anchor_error) / n,
        "bias": (
            costs.bias_penalty(net.bias_ice_k, net.bias_ice_bg_k, net.bias_error_k)
            + costs.bias_penalty(net.bias_ocean_k, net.bias_ocean_bg_k, net.bias_error_k)
        )
        / n,
    }
    assert list(terms) == list(ref)
    # the definition the network's fused path optimises (cost/objective.py) is this composition
    composed = objective.batch_terms(cc, net.batch_cost(b, out, n))
    for k in ref:
        assert composed[k].item() == pytest.approx(ref[k].item(), rel=1e-12), k
    for k in ref:
        assert terms[k].item() == pytest.approx(ref[k].item(), rel=1e-10), k
        assert ref[k].item() > 0, k  # every term is active
    sum(ref.values()).backward()
    for k, p in net.named_parameters():
        np.testing.assert_allclose(got[k].numpy(), p.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=k)


def test_sparse_grads_on_tables_dense_elsewhere():
    for sparse in (True, False):
        net, ot, *_ = _net("v2", nobs=30, sparse=sparse)
        b = ot.batch(torch.arange(12))
        net.total_cost(net.cost_terms(b, net(b), 30)).backward()
        tables = net.sparse_parameters()
        assert len(tables) == 3
        for p in tables:
            assert p.grad is not None and p.grad.is_sparse == sparse
        dense = net.dense_parameters()
        assert len(dense) == 4 + 3
        for p in dense:
            assert p.grad is not None and not p.grad.is_sparse
        assert {id(p) for p in tables} | {id(p) for p in dense} == {id(p) for p in net.parameters()}
        if sparse:  # only the batch's rows
            g = net.state.sic_map.weight.grad.coalesce()
            assert g.indices().shape[1] <= 24


# ------------------------------------------------------------------------ errors
def test_constructor_errors():
    p = PRESETS["v2"]
    obs, bg = make_obs(("amsr2",), nobs=20)
    rc = build_row_counts(obs, 1, bg.ngrid, bg.nstep)
    basis = obs.basis

    def make(model=p.model, cost=p.cost, background=bg, row_counts=rc, **kw):
        return HybridNetwork(model, cost, basis, background, 20, row_counts, **kw)

    with pytest.raises(SeaIceError, match="background SIC: expected nlag=2"):
        make(model=replace(p.model, nlag=2, lag_weights=(0.5, 0.3, 0.2)))
    with pytest.raises(SeaIceError, match=r"TSFC background map: expected shape \(3, 4\)"):
        make(background=replace(bg, t_skin_map_k=bg.t_skin_map_k[:, :2]))
    with pytest.raises(SeaIceError, match="prior_mode: expected sampled or full, got 'both'"):
        make(prior_mode="both")
    with pytest.raises(SeaIceError, match="prior_mode: 'sampled' needs row_counts"):
        make(row_counts=None, prior_mode="sampled")
    with pytest.raises(SeaIceError, match="anchor_channels: none of 6.9v is in the run's channels"):
        make(cost=replace(p.cost, anchor_frequency_ghz=None, anchor_channels=("6.9v",)))
    make(cost=replace(p.cost, anchor_channels=("6.9v",)))  # unused with the 23.8 GHz anchor
    with pytest.raises(SeaIceError, match="anchor: 'mean' .* needs the v1 linear model"):
        make(cost=replace(p.cost, anchor="mean", anchor_frequency_ghz=None))
    v1 = PRESETS["v1"]
    with pytest.raises(SeaIceError, match="anchor_frequency_ghz: needs the v2 network"):
        make(model=v1.model, cost=replace(v1.cost, anchor="floor", anchor_frequency_ghz=23.8))
    with pytest.raises(SeaIceError, match="row_counts: expected 15 SIC rows, got 18"):
        make(row_counts=build_row_counts(obs, 2, bg.ngrid, bg.nstep))
    assert make(row_counts=None).prior_mode == "full"


def test_model_config_ice_emis_init_validation():
    with pytest.raises(SeaIceError, match=r"ice_emis_init: must be in \(0, 1\) or None, got 1.5"):
        ModelConfig(ice_emis_init=1.5)
    assert CostConfig().anchor == "floor"


def test_state_dict_holds_parameters_not_data_sized_buffers_and_round_trips():
    obs_bg = make_obs(("amsr2", "gmi"), nobs=30)
    net, ot, obs, bg = _net("v2", obs_bg=obs_bg)
    sd = net.state_dict()
    for name in ("t_map_flat", "sic_count", "state.background_flat", "state.lag_offsets"):
        assert name not in sd
    assert {n for n, _ in net.named_parameters()} <= set(sd)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    other, *_ = _net("v2", obs_bg=obs_bg)
    other.load_state_dict(net.state_dict())
    b = ot.all()
    assert torch.equal(other(b)["tb"], net(b)["tb"])
    assert torch.equal(other.cost_terms(b, other(b), 30)["sic_range"], net.cost_terms(b, net(b), 30)["sic_range"])


def test_state_rows_are_exactly_the_rows_with_gradient():
    net, ot, *_ = _net("v2", nobs=30, sparse=True)
    b = ot.batch(torch.tensor([4, 9, 17]))
    rows = net.state_rows(b)
    assert [p is q for (p, _), q in zip(rows, net.sparse_parameters(), strict=True)] == [True, True, True]
    net.total_cost(net.cost_terms(b, net(b), 30)).backward()
    for p, r in rows:
        touched = torch.unique(p.grad.coalesce().indices()[0])
        assert torch.equal(torch.unique(r), touched)
        assert torch.equal(p.grad._indices()[0], r.reshape(-1))  # the lookup's order: what DeferredAdam matches
    sic_rows = rows[0][1].reshape(-1).tolist()
    assert rows[0][1].shape == (3, 2)
    g, t = b.igrid.tolist(), b.istep.tolist()
    assert sic_rows == [x for gi, ti in zip(g, t, strict=True) for x in (gi * 5 + ti + 1, gi * 5 + ti)]
    assert rows[2][1].tolist() == [4, 9, 17]


@pytest.mark.parametrize(("nlag", "dtype"), [(0, np.int64), (1, np.int32), (2, np.int64)])
def test_row_count_pass_equals_bincount(nlag, dtype):
    from empirical_seaice.cost.sampling import _count_rows, _count_rows_numpy

    rng = np.random.default_rng(nlag)
    ngrid, nstep = 37, 23
    g, t = rng.integers(0, ngrid, 5000).astype(dtype), rng.integers(0, nstep, 5000).astype(dtype)
    index = np.flatnonzero(rng.random(5000) < 0.7)
    for rows, every, n in ((np.zeros(0, np.int64), True, 5000), (index, False, index.size)):
        got = (np.zeros(ngrid * (nstep + nlag)), np.zeros(ngrid * nstep))
        want = (np.zeros(ngrid * (nstep + nlag)), np.zeros(ngrid * nstep))
        assert _count_rows(g, t, rows, every, ngrid, nstep, nlag, *got)
        assert _count_rows_numpy(g, t, rows, every, ngrid, nstep, nlag, *want)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert got[0].sum() == n * (nlag + 1) and got[1].sum() == n
    g[index[3]] = ngrid  # outside the state: nothing counted, the caller raises
    assert not _count_rows(g, t, index, False, ngrid, nstep, nlag, *got)


def test_batch_cost_row_weights_taken_per_batch_equal_the_whole_maps():
    """The sampled priors' row weights (1 / count, the warm-ice weight) are taken from the batch's rows
    of the map-sized buffers: the same bits as the whole map's weights' rows, and nothing map-sized is
    kept between the calls (the held-out validation runs this path beside the training's memory)."""
    net, ot, obs, bg = _net("v2", nobs=60)
    b = ot.batch(torch.arange(20))
    out = net(b)
    x = net.batch_cost(b, out, 60)
    rows = out["sic_rows"]
    cc = net.cost_config
    assert torch.equal(x.row_weight, net.sic_count.reciprocal().take(rows))
    whole = costs.warm_ice_weight(net.t_map_flat, cc.warm_ice_threshold_k, cc.warm_ice_factor)
    assert torch.equal(x.warm, whole.take(rows))
    assert len(torch.unique(x.row_weight)) > 2 and (x.row_weight > 0).all()  # real counts, not a constant
    # warm rows: the same elementwise function over the rows (a warm map, so that it is not all zeros)
    with torch.no_grad():
        net.t_map_flat.add_(torch.linspace(-5.0, 30.0, net.t_map_flat.numel()))
    warm = net.batch_cost(b, out, 60).warm
    whole = costs.warm_ice_weight(net.t_map_flat, cc.warm_ice_threshold_k, cc.warm_ice_factor)
    assert torch.equal(warm, whole.take(rows)) and (warm > 0).any() and (warm == 0).any()
    net.cost_terms(b, out, 60)
    assert all(v.shape != net.sic_count.shape for v in net._cache.values() if isinstance(v, torch.Tensor))


@pytest.mark.parametrize(
    "preset,changes",
    [
        ("v2", {}),
        ("v2", {"sic_background_prior": True, "warm_ice": "effective", "false_ice_shape": "tent"}),
        ("v2", {"sic_smoothness_time_error": 0.1}),
        ("v1", {}),
        ("v1", {"false_ice_prior": False, "sic_smoothness_time_error": 0.2}),
    ],
)
def test_full_prior_values_equal_the_torch_terms(preset, changes):
    """The diagnostics' whole-map priors (one compiled float64 pass over the map) equal the torch terms of
    the same map in float64, term by term and in the same order; the same bits on one thread and on two."""
    numba = pytest.importorskip("numba")
    cost = replace(PRESETS[preset].cost, **changes)
    obs_bg = make_obs(PRESETS[preset].sensors, nobs=40, ngrid=5, nstep=6, seed=11)
    # out-of-range SIC, trace ice, both flanks and the cap of the false-ice bump
    obs_bg[1].sic[:, 1:4] = [[0.1, 1.05, 0.02], [0.2, -0.05, 0.28], [0.25, 0.12, 0.6], [0, 0.15, 1], [0.3, 0.5, 0.9]]
    net, _, obs, _ = _net(preset, obs_bg=obs_bg, cost=cost, sparse=False)
    values = net.full_prior_values(obs.nobs)
    before = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):  # (one only where numba has one)
            numba.set_num_threads(threads)
            assert net.full_prior_values(obs.nobs) == values
    finally:
        numba.set_num_threads(before)
    ref = net.double().full_prior_terms(obs.nobs)  # the same map values, in float64
    assert list(values) == list(ref)
    for name, v in values.items():
        assert v == pytest.approx(ref[name].item(), rel=1e-12, abs=1e-300), name
    assert values["sic_range"] > 0 and values["warm_ice"] > 0
    if cost.false_ice_prior:
        assert values["false_ice"] > 0
    if cost.sic_smoothness:
        assert values[objective.SMOOTHNESS] > 0


def test_full_prior_values_without_numba_are_the_torch_terms(monkeypatch):
    from empirical_seaice.model import fused_kernels

    net, _, obs, _ = _net("v2", nobs=30, ngrid=3, nstep=4, seed=5)
    monkeypatch.setattr(fused_kernels, "HAVE_NUMBA", False)
    values = net.full_prior_values(obs.nobs)
    assert values == {k: float(v.detach().double()) for k, v in net.full_prior_terms(obs.nobs).items()}
