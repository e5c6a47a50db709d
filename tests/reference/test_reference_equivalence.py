"""The v1 and v2 presets reproduce the ECMWF reference code, number for number.

``reference_fixture.npz`` holds a small fixed case (200 AMSR2 observations for v1; 240
AMSR2/GMI/SSMIS observations for v2; fixed state and weights) and what the reference code
computed from it with TensorFlow (``make_reference_fixture.py``; docs/reference.md says how to
regenerate it). Here the project's own operator and cost, configured only by ``PRESETS["v1"]``
and ``PRESETS["v2"]``, recompute it with the same inputs and weights: TB to 1e-3 K, every cost
term to 1e-5 relative, the gradient of every term with respect to every trainable table or
weight to 1e-4 (relative to the largest element of that gradient), and the reference's own
configuration tables (channels, network frequencies, observation errors, bias backgrounds,
initial weights) exactly. No TensorFlow is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from empirical_seaice.config import PRESETS
from empirical_seaice.model.operator import HybridNetwork
from empirical_seaice.model.tensors import ObservationTensors
from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.sensors import build_channel_basis, network_frequency_table

FIXTURE = Path(__file__).with_name("reference_fixture.npz")
TB_ATOL_K = 1e-3
TERM_RTOL = 1e-5
GRAD_RTOL = 1e-4


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as d:
        return {k: d[k] for k in d.files}


def _case(ref: dict, v: str):
    """Our network, configured by the preset only, with the fixture's inputs, state and weights."""
    g = lambda name: ref[f"{v}_{name}"]
    preset = PRESETS[v]
    basis = build_channel_basis(list(preset.sensors))
    nobs = g("igrid").shape[0]
    isensor = g("isensor") if v == "v2" else np.zeros(nobs, np.int16)
    mask = (g("mask") if v == "v2" else np.ones((nobs, basis.nchan))).astype(bool)
    ngrid, nstep = int(g("ngrid")), int(g("nstep"))
    obs = Observations.from_columns(
        igrid=g("igrid").astype(np.int32),
        istep=g("istep").astype(np.int32),
        isensor=isensor.astype(np.int16),
        t_skin_k=g("t_skin_k"),
        wind_ms=g("wind_ms"),
        cloud_fraction=g("cloud_fraction"),
        zenith_deg=np.full(nobs, np.nan, np.float32),
        julian_day=np.full(nobs, 2459000.5),
        obs_index=np.arange(nobs, dtype=np.int64),
        tb_obs_k=g("tb_obs_k"),
        mask=mask,
        emis_water=g("emis_water"),
        tau=g("tau"),
        t_down_k=g("t_down_k"),
        t_up_k=g("t_up_k"),
        tau_cld=g("tau_cld"),
        t_down_cld_k=g("t_down_cld_k"),
        t_up_cld_k=g("t_up_cld_k"),
        basis=basis,
        ngrid=ngrid,
        nstep=nstep,
        jd_origin=2459000.0,
    )
    bg = BackgroundMaps(sic=g("sic"), t_skin_map_k=g("t_map"), nlag=int(g("nlag")))
    net = HybridNetwork(preset.model, preset.cost, basis, bg, nobs, sparse=False, prior_mode="full")
    initial = {k: v.detach().clone() for k, v in net.named_parameters()}
    st, em = net.state, net.emissivity
    with torch.no_grad():
        t = torch.from_numpy
        st.props_grid.weight.copy_(t(g("props_grid")).reshape(ngrid * nstep, -1))
        if v == "v1":
            em.output.weight.copy_(t(g("kernel")).T)
            em.output.bias.copy_(t(g("bias")))
            net.bias_ice_k.copy_(t(g("b_ice"))[None])
            net.bias_ocean_k.copy_(t(g("b_ocean"))[None])
        else:
            st.props_obs.weight.copy_(t(g("props_obs")))
            em.hidden.weight.copy_(t(g("w1")).T)
            em.hidden.bias.copy_(t(g("b1")))
            em.output.weight.copy_(t(g("w2")).T)
            em.output.bias.copy_(t(g("b2")))
            net.bias_ice_k.copy_(t(g("inst_bias"))[0])
            net.bias_ocean_k.copy_(t(g("inst_bias"))[1])
        net.wind_coef.copy_(t(g("wind")))
    return net, ObservationTensors(obs), basis, initial


def _ours_in_reference_layout(net: HybridNetwork, v: str) -> dict[str, torch.Tensor | None]:
    """Our parameters' gradients in the reference's variable layout (None: no gradient)."""
    st, em = net.state, net.emissivity

    def grad(p, f=lambda x: x):
        return None if p.grad is None else f(p.grad.detach().clone())

    out = {
        "sic": grad(st.sic_map.weight, lambda x: x.reshape(st.ngrid, st.ncol)),
        "props_grid": grad(st.props_grid.weight, lambda x: x.reshape(st.ngrid, st.nstep, -1)),
        "wind": grad(net.wind_coef),
    }
    if v == "v1":
        out.update(
            kernel=grad(em.output.weight, lambda x: x.T),
            bias=grad(em.output.bias),
            b_ice=grad(net.bias_ice_k, lambda x: x[0]),
            b_ocean=grad(net.bias_ocean_k, lambda x: x[0]),
        )
    else:
        gi, go = grad(net.bias_ice_k), grad(net.bias_ocean_k)
        out.update(
            props_obs=grad(st.props_obs.weight),
            w1=grad(em.hidden.weight, lambda x: x.T),
            b1=grad(em.hidden.bias),
            w2=grad(em.output.weight, lambda x: x.T),
            b2=grad(em.output.bias),
            inst_bias=None if gi is None and go is None else torch.stack([gi, go]),
        )
    return out


# The reference's terms (as it adds them, each / nobs) and ours; v2's range prior and false-ice
# bump are one added loss in the reference ("sic_range_false_ice").
TERMS = {
    "v1": {
        "obs": ["obs"],
        "anchor": ["anchor"],
        "sic_range": ["sic_range"],
        "warm_ice": ["warm_ice"],
        "bias": ["bias"],
    },
    "v2": {
        "obs": ["obs"],
        "anchor": ["anchor"],
        "sic_range": ["sic_range"],
        "sic_range_false_ice": ["sic_range", "false_ice"],
        "warm_ice": ["warm_ice"],
        "bias": ["bias"],
    },
}


@pytest.mark.parametrize("v", ["v1", "v2"])
def test_reference_configuration_tables(ref, v):
    """Channels, network frequencies, observation errors and bias backgrounds of the preset are
    the reference's, and so are the initial weights that the reference does not draw at random."""
    net, ot, basis, initial = _case(ref, v)
    g = lambda name: ref[f"{v}_{name}"]
    np.testing.assert_array_equal(basis.obs_error_k, g("obs_error"))
    if v == "v1":
        # SeaiceEmis: bias Constant(0.93) for every channel; BiasCorrection starts at its background
        np.testing.assert_array_equal(initial["emissivity.output.bias"].numpy(), g("bias_initial"))
        np.testing.assert_array_equal(initial["bias_ocean_k"][0].numpy(), g("tb_bias_ocean_initial"))
        np.testing.assert_array_equal(initial["bias_ice_k"][0].numpy(), g("tb_bias_ice_initial"))
        return
    assert basis.channel_names == tuple(str(c) for c in g("channel_names"))
    assert basis.sensor_names == tuple(str(s) for s in g("sensor_names"))
    freq = network_frequency_table(basis, net.model_config.network_frequencies)
    np.testing.assert_array_equal(freq, g("freq_table_ghz"))
    np.testing.assert_array_equal(net.emissivity.channel_freq_ghz, g("freq_table_ghz"))
    np.testing.assert_array_equal(basis.pol, g("pol_table")[0].astype(np.int8))
    np.testing.assert_array_equal(net.bias_ice_bg_k.numpy(), np.repeat(g("bias_background")[0][:, None], 17, 1))
    np.testing.assert_array_equal(net.bias_ocean_bg_k.numpy(), np.repeat(g("bias_background")[1][:, None], 17, 1))
    np.testing.assert_array_equal(net.bias_error_k[:, 0].numpy(), g("bias_error"))
    assert net.cost_config.sic_error == pytest.approx(float(g("frac_bg_error")))
    assert net.cost_config.false_ice_error == pytest.approx(float(g("frac_bg_error_false_sic")))
    # Keras Dense defaults: zero biases (the hidden kernel is glorot-uniform in both)
    assert not initial["emissivity.hidden.bias"].any() and not initial["emissivity.output.bias"].any()
    np.testing.assert_array_equal(g("layer1_bias_initial"), 0.0)
    np.testing.assert_array_equal(g("layer2_bias_initial"), 0.0)


@pytest.mark.parametrize("v", ["v1", "v2"])
def test_tb_and_emissivity_equal_the_reference(ref, v):
    net, ot, basis, _ = _case(ref, v)
    with torch.no_grad():
        out = net(ot.all())
    tb_ref = ref[f"{v}_tb"]
    tb = out["tb"].numpy()
    assert np.abs(tb - tb_ref).max() < TB_ATOL_K
    np.testing.assert_allclose(out["emis_ice"].numpy(), ref[f"{v}_emis_ice"], rtol=0, atol=2e-6)
    if v == "v2":  # the original anchor's extra 23.8 GHz V evaluation
        np.testing.assert_allclose(out["emis_anchor"].numpy(), ref["v2_emis_anchor"], rtol=0, atol=2e-6)


@pytest.mark.parametrize("v", ["v1", "v2"])
def test_cost_terms_and_gradients_equal_the_reference(ref, v):
    net, ot, basis, _ = _case(ref, v)
    b = ot.all()
    out = net(b)
    terms = net.cost_terms(b, out, len(b))
    ours = {name: sum(terms[k] for k in keys) for name, keys in TERMS[v].items()}
    ours["total"] = net.total_cost(terms)
    for name, value in ours.items():
        expected = float(ref[f"{v}_term_{name}"])
        assert value.item() == pytest.approx(expected, rel=TERM_RTOL), name
        assert name == "anchor" or expected > 0, name  # every term is active in the fixture
    names = [n.split("_grad_")[1] for n in ref if n.startswith(f"{v}_grad_")]
    for name, value in ours.items():
        net.zero_grad(set_to_none=True)
        if name == "warm_ice":  # zero gradient in the reference (flat indicator): none in ours either
            assert not value.requires_grad
            continue
        value.backward(retain_graph=True)
        for var, g in _ours_in_reference_layout(net, v).items():
            key = f"{name}_{var}"
            if key not in names:  # the reference term does not depend on that variable
                assert g is None or not g.any(), key
                continue
            expected = ref[f"{v}_grad_{key}"]
            assert g is not None, key
            scale = np.abs(expected).max()
            assert scale > 0, key
            err = np.abs(g.numpy() - expected).max()
            assert err <= GRAD_RTOL * scale, f"{key}: max error {err:.3g} vs max |grad| {scale:.3g}"
