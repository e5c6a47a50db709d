"""The v2 network's view-angle input (``ModelConfig.angle_input``): hand-computed value, gradcheck,
the per-observation angle, the automatic choice, and the export evaluating it."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from empirical_seaice.config import get_preset
from empirical_seaice.model import physics
from empirical_seaice.model.emissivity import NetworkEmissivity, make_emissivity, network_angle_input
from empirical_seaice.sensors import build_channel_basis


def _net(seed=1, init=None):
    basis = build_channel_basis(["amsr2", "atms"])
    net = NetworkEmissivity(3, basis, generator=torch.Generator().manual_seed(seed), init_emis=init, angle_input=True)
    return net.double(), basis


def test_angle_network_by_hand():
    # one observation, hidden width 7: z = [x_T, P0, P1, Q0, cos(theta), f/100]
    net, _ = _net()
    x_t, props, theta, f = 0.4, [0.1, -0.3, 0.2], 60.0, 23.8
    z = np.array([x_t, *props, math.cos(math.radians(theta)), f / 100.0])
    w1, b1 = net.hidden.weight.detach().numpy(), net.hidden.bias.detach().numpy()
    w2, b2 = net.output.weight.detach().numpy(), net.output.bias.detach().numpy()
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731
    expect = sig(w2 @ sig(w1 @ z + b1) + b2)
    got = net.emissivity_vh(
        torch.tensor(x_t, dtype=torch.float64),
        torch.tensor(props, dtype=torch.float64),
        torch.tensor(f, dtype=torch.float64),
        torch.tensor(math.cos(math.radians(theta)), dtype=torch.float64),
    )
    np.testing.assert_allclose(got.detach().numpy(), expect, rtol=1e-12)
    assert net.hidden.weight.shape == (7, 6)
    # no angle (gridded maps, spectra): the imagers' 55 deg view
    default = net.emissivity_vh(
        torch.tensor(x_t, dtype=torch.float64), torch.tensor(props, dtype=torch.float64), torch.tensor(f)
    )
    at55 = net.emissivity_vh(
        torch.tensor(x_t, dtype=torch.float64),
        torch.tensor(props, dtype=torch.float64),
        torch.tensor(f),
        torch.tensor(math.cos(math.radians(55.0)), dtype=torch.float64),
    )
    torch.testing.assert_close(default, at55, rtol=0, atol=0)


def test_angle_changes_the_emissivity_and_init_holds_at_55_degrees():
    net, _ = _net(init=0.9)
    zero = torch.zeros((), dtype=torch.float64)

    def at(deg):
        mu = torch.tensor(math.cos(math.radians(deg)), dtype=torch.float64)
        return net.emissivity_vh(zero, torch.zeros(3, dtype=torch.float64), torch.tensor(50.0), mu)

    torch.testing.assert_close(at(55.0), torch.tensor([0.9, 0.9], dtype=torch.float64))
    assert not torch.allclose(at(0.0), at(55.0))


def test_forward_matches_emissivity_vh_with_the_angle_and_gradcheck():
    net, basis = _net()
    n = 5
    g = torch.Generator().manual_seed(2)
    x_t = torch.rand(n, dtype=torch.float64, generator=g)
    props = torch.randn(n, 3, dtype=torch.float64, generator=g)
    isensor = torch.tensor([0, 1, 1, 0, 1])
    cos2 = torch.tensor([1.0, 0.7, 0.2, 1.0, 0.9], dtype=torch.float64)
    mu = torch.tensor([0.57, 0.9, 0.45, 0.57, 1.0], dtype=torch.float64)
    out = net(x_t, props, isensor, cos2, mu)
    freq = torch.as_tensor(basis.freq_ghz, dtype=torch.float64)[isensor]
    vh = net.emissivity_vh(x_t[:, None], props[:, None, :], freq, mu[:, None])
    w = physics.polarisation_weight_v(torch.as_tensor(basis.pol, dtype=torch.int64), cos2)
    torch.testing.assert_close(out, w * vh[..., 0] + (1 - w) * vh[..., 1], rtol=0, atol=1e-8)
    mu = mu.clone().requires_grad_()
    props = props.clone().requires_grad_()
    net.freq_input_t = net.freq_input_t.double()
    assert torch.autograd.gradcheck(lambda m, p: net(x_t, p, isensor, cos2, m), (mu, props))
    with pytest.raises(ValueError, match="cos_view"):
        net(x_t, props, isensor, cos2)


def test_angle_input_default_follows_the_sensors_and_is_off_in_the_v2_preset():
    v2 = get_preset("v2").model
    auto = replace(v2, angle_input=None)
    assert v2.angle_input is False
    assert network_angle_input(auto, build_channel_basis(["amsr2", "atms"]))
    assert not network_angle_input(auto, build_channel_basis(["amsr2", "gmi"]))
    assert not network_angle_input(v2, build_channel_basis(["amsr2", "atms"]))
    em = make_emissivity(auto, build_channel_basis(["amsr2", "atms"]))
    assert em.angle_input and em.hidden.weight.shape[1] == 3 + 3


@pytest.fixture(scope="module")
def tiny_twin_sounder(tmp_path_factory):
    from empirical_seaice.twin import generate_twin, get_twin_preset

    twin = tmp_path_factory.mktemp("angle") / "twin"
    cfg = get_twin_preset(
        "tiny", sensors=("amsr2", "atms"), resolution_km=200.0, lat_limit_deg=65.0, days=1, keep_fraction=0.2
    )
    generate_twin(cfg, twin)
    return twin


def test_cos_view_per_observation(tiny_twin_sounder):
    """Conical: cos of the sensor's incidence; cross-track: cos of ZENITH."""
    from empirical_seaice.config import DataConfig
    from empirical_seaice.io import read_training_data
    from empirical_seaice.model.tensors import ObservationTensors

    obs, _ = read_training_data(DataConfig(data=tiny_twin_sounder, sensors=("amsr2", "atms")), 1)
    b = ObservationTensors(obs, dtype=torch.float64).all()
    conical = b.isensor == 0
    np.testing.assert_allclose(b.cos_view[conical].numpy(), math.cos(math.radians(55.0)), rtol=1e-12)
    zen = np.asarray(obs.zenith_deg, dtype=np.float64)[~conical.numpy()]
    np.testing.assert_allclose(b.cos_view[~conical].numpy(), np.cos(np.radians(zen)), rtol=1e-12)
    assert zen.max() - zen.min() > 30.0  # the sounder's view angles really vary
