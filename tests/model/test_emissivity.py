"""emissivity.py: shapes, layouts, V/H selection, frequency sharing, initialisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from empirical_seaice.model.emissivity import LinearEmissivity, NetworkEmissivity
from empirical_seaice.sensors import POL_H, POL_V, build_channel_basis

SENSORS = ("amsr2", "gmi", "ssmisf17")


def _inputs(B=64, nprop=3, nsensor=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.rand(B, generator=g),
        torch.randn(B, nprop, generator=g),
        torch.randint(0, nsensor, (B,), generator=g),
    )


def _v2(seed=0, sensors=SENSORS, nprop=3, init=None):
    basis = build_channel_basis(list(sensors))
    return NetworkEmissivity(nprop, basis, 7, 100.0, torch.Generator().manual_seed(seed), init), basis


def test_v2_shape_range_and_frequency_sharing_equals_per_channel_loop():
    model, basis = _v2()
    x, props, isens = _inputs()
    e = model(x, props, isens)
    assert e.shape == (64, basis.nchan)
    assert bool(((e > 0) & (e < 1)).all())
    # naive: every channel evaluated on its own, at its sensor's frequency, taking V or H
    freq = torch.from_numpy(basis.freq_ghz)
    naive = torch.stack(
        [model.emissivity_vh(x, props, freq[isens, c])[:, int(basis.pol[c])] for c in range(basis.nchan)], dim=1
    )
    assert torch.allclose(e, naive, atol=1e-6)


def test_v2_distinct_frequency_table():
    model, basis = _v2()
    # SSMIS 19v and 19h share 19.35 GHz; GMI 37 is 36.64; distinct per sensor, padded to the longest
    s = basis.sensor_names.index("ssmisf17")
    c19v, c19h = basis.channel_index["19v"], basis.channel_index["19h"]
    assert model.chan_freq[s, c19v] == model.chan_freq[s, c19h]
    assert model.freq_table[s, model.chan_freq[s, c19v]].item() == pytest.approx(19.35)
    g = basis.sensor_names.index("gmi")
    assert model.freq_table[g, model.chan_freq[g, basis.channel_index["37v"]]].item() == pytest.approx(36.64)
    assert model.nfreq == max(len(np.unique(basis.freq_ghz[k])) for k in range(3))
    amsr2, _ = _v2(sensors=("amsr2",))
    assert amsr2.nfreq == 5  # 10.65, 18.7, 23.8, 36.5, 89: ten channels, five evaluations


def test_v2_polarisation_selection():
    model, basis = _v2(sensors=("amsr2",))
    x, props, _ = _inputs(B=8)
    isens = torch.zeros(8, dtype=torch.int64)
    e = model(x, props, isens)
    vh = model.emissivity_vh(x, props, torch.tensor(10.65))
    assert torch.allclose(e[:, basis.channel_index["10v"]], vh[:, POL_V], atol=1e-7)
    assert torch.allclose(e[:, basis.channel_index["10h"]], vh[:, POL_H], atol=1e-7)


def test_v2_emissivity_vh_hand_computed_network():
    model, _ = _v2(nprop=1, sensors=("amsr2",))
    with torch.no_grad():
        model.hidden.weight.zero_()
        model.hidden.bias.zero_()
        model.hidden.weight[0] = torch.tensor([1.0, 2.0, 3.0])  # x_T, P, f/100
        model.output.weight.zero_()
        model.output.weight[0, 0] = 2.0
        model.output.weight[1, 1] = 1.0
        model.output.bias.copy_(torch.tensor([0.5, -1.0]))
    e = model.emissivity_vh(torch.tensor(0.2), torch.tensor([0.1]), torch.tensor(50.0))
    h0 = 1 / (1 + math.exp(-(0.2 + 0.2 + 1.5)))
    h1 = 0.5
    sig = lambda z: 1 / (1 + math.exp(-z))
    assert e.tolist() == pytest.approx([sig(2 * h0 + 0.5), sig(h1 - 1.0)], abs=1e-6)


def test_v1_output_layout_and_e0():
    basis = build_channel_basis(["amsr2"])
    model = LinearEmissivity(3, basis)
    with torch.no_grad():
        model.output.weight.zero_()
        model.output.weight[:, 0] = torch.arange(10, dtype=torch.float32)  # x_T weight = channel index
        model.output.weight[:, 2] = 1.0  # second property
        model.output.bias.copy_(0.9 + 0.001 * torch.arange(10, dtype=torch.float32))
    x = torch.tensor([0.5])
    props = torch.tensor([[7.0, 0.01, 3.0]])
    e = model(x, props, torch.zeros(1, dtype=torch.int64))
    expected = 0.5 * np.arange(10) + 0.01 + 0.9 + 0.001 * np.arange(10)
    assert np.allclose(e.detach().numpy()[0], expected, atol=1e-6)
    assert model.channel_names[0] == "10v" and model.e0[0].item() == pytest.approx(0.9)


def test_keras_initialisation_and_reproducibility():
    model, _ = _v2(seed=5)
    again, _ = _v2(seed=5)
    other, _ = _v2(seed=6)
    for name in ("hidden", "output"):
        w = getattr(model, name).weight.detach()
        limit = math.sqrt(6.0 / (w.shape[0] + w.shape[1]))
        assert float(w.abs().max()) <= limit and float(w.abs().max()) > 0.3 * limit
        assert not getattr(model, name).bias.any()
        assert torch.equal(w, getattr(again, name).weight)
        assert not torch.equal(w, getattr(other, name).weight)
    v1 = LinearEmissivity(3, build_channel_basis(["amsr2"]), torch.Generator().manual_seed(0))
    assert not v1.e0.any()


def test_ice_emis_init_option():
    model, _ = _v2(init=0.9)
    vh = model.emissivity_vh(torch.tensor(0.0), torch.zeros(3), torch.tensor(50.0))
    assert vh.tolist() == pytest.approx([0.9, 0.9], abs=1e-6)
    v1 = LinearEmissivity(3, build_channel_basis(["amsr2"]), init_emis=0.93)
    assert torch.allclose(v1.e0, torch.full((10,), 0.93))


def test_emissivity_vh_broadcasts_over_frequencies():
    model, _ = _v2()
    f = torch.tensor([10.0, 50.0, 150.0])
    e = model.emissivity_vh(torch.tensor(0.3).expand(3), torch.zeros(3), f)
    assert e.shape == (3, 2)
    e1 = model.emissivity_vh(torch.tensor(0.3), torch.zeros(3), torch.tensor(150.0))
    assert torch.allclose(e[2], e1)


def test_emissivity_vh_broadcasts_properties_against_scalar_inputs():
    model, _ = _v2()
    props = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    e = model.emissivity_vh(torch.tensor(0.2), props, torch.tensor(89.0))
    assert e.shape == (4, 2)
    for k in range(4):
        assert torch.allclose(e[k], model.emissivity_vh(torch.tensor(0.2), props[k], torch.tensor(89.0)))


_IMPORT_CHECK = """
import sys
import torch
from empirical_seaice.model.emissivity import NetworkEmissivity
from empirical_seaice.sensors import build_channel_basis
model = NetworkEmissivity(3, build_channel_basis(["amsr2"]), 7, 100.0, torch.Generator().manual_seed(0))
with torch.no_grad():
    e = model.emissivity_vh(torch.rand(5, 1), torch.zeros(4, 3), torch.tensor(89.0), torch.rand(1, 4))
print(tuple(e.shape), "sympy" in sys.modules, "mpmath" in sys.modules)
"""


def test_emissivity_vh_imports_no_sympy():
    """The anchor emissivity (the tensor path: a run's held-out validation) broadcasts its inputs
    without ``torch.broadcast_shapes``, whose first call imports sympy and mpmath (about 500 modules,
    34 MiB resident); the shape is the same broadcast."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _IMPORT_CHECK], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[-2] == "(5, 4, 2) False False"
    assert torch.broadcast_shapes((5, 1), (), (1, 4), (4,)) == (5, 4)  # the rule it follows
