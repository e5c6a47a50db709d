"""Quasi-polarised (QV/QH) channels of cross-track sounders: hand-computed values, gradcheck,
and the v2 network's mixing by the scan angle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from empirical_seaice.model import physics
from empirical_seaice.model.emissivity import NetworkEmissivity
from empirical_seaice.products import export
from empirical_seaice.sensors import POL_H, POL_QH, POL_QV, POL_V, build_channel_basis

POLS = torch.tensor([POL_V, POL_H, POL_QV, POL_QH])


def _mix(e_v, e_h, angle_deg):
    c2 = torch.cos(torch.deg2rad(torch.as_tensor(angle_deg, dtype=torch.float64))) ** 2
    return physics.mix_polarisations(e_v, e_h, physics.polarisation_weight_v(POLS, c2))


def test_qv_qh_at_nadir_equal_v_h_and_swap_at_90_degrees():
    e_v = torch.tensor([[0.93, 0.93, 0.93, 0.93]], dtype=torch.float64)
    e_h = torch.tensor([[0.81, 0.81, 0.81, 0.81]], dtype=torch.float64)
    at0 = _mix(e_v, e_h, [0.0])
    assert at0.tolist() == [[0.93, 0.81, 0.93, 0.81]]  # exact: QV = V, QH = H
    at90 = _mix(e_v, e_h, [90.0])
    torch.testing.assert_close(at90, torch.tensor([[0.93, 0.81, 0.81, 0.93]], dtype=torch.float64))  # QV = H, QH = V


def test_mixing_by_hand_at_30_degrees():
    # cos^2 30 = 0.75: QV = 0.75 * 0.9 + 0.25 * 0.7 = 0.85, QH = 0.25 * 0.9 + 0.75 * 0.7 = 0.75
    out = _mix(torch.tensor([[0.9] * 4], dtype=torch.float64), torch.tensor([[0.7] * 4], dtype=torch.float64), [30.0])
    torch.testing.assert_close(out, torch.tensor([[0.9, 0.7, 0.85, 0.75]], dtype=torch.float64))


def test_scan_angle_from_local_zenith_by_hand():
    # sin a = R sin(theta) / (R + h): ATMS (h = 824 km) at theta = 63.98 deg -> a = 52.73 deg (its largest scan angle)
    c2 = physics.scan_angle_cos2(
        torch.tensor([0.0, 63.98], dtype=torch.float64), torch.tensor(824.0, dtype=torch.float64)
    )
    a = math.asin(6371.0 * math.sin(math.radians(63.98)) / (6371.0 + 824.0))
    assert math.degrees(a) == pytest.approx(52.73, abs=0.01)
    torch.testing.assert_close(c2, torch.tensor([1.0, math.cos(a) ** 2], dtype=torch.float64))
    # the export's numpy form agrees
    np.testing.assert_allclose(export.scan_angle_deg_from_zenith(63.98, 824.0), math.degrees(a), rtol=1e-12)
    for pol in range(4):
        np.testing.assert_allclose(
            export.polarisation_weight_v(pol, 40.0),
            physics.polarisation_weight_v(torch.tensor([pol]), torch.tensor([math.cos(math.radians(40)) ** 2]))[0, 0],
        )


def test_gradcheck_mixing_and_scan_angle():
    g = torch.Generator().manual_seed(0)
    e_v = torch.rand(5, 4, dtype=torch.float64, generator=g).requires_grad_()
    e_h = torch.rand(5, 4, dtype=torch.float64, generator=g).requires_grad_()
    c2 = torch.rand(5, dtype=torch.float64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v, h, c: physics.mix_polarisations(v, h, physics.polarisation_weight_v(POLS, c)), (e_v, e_h, c2)
    )
    zen = (torch.rand(5, dtype=torch.float64, generator=g) * 65).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda z: physics.scan_angle_cos2(z, torch.tensor(830.0, dtype=torch.float64)), (zen,)
    )


def test_network_mixes_quasi_channels_by_the_scan_angle():
    basis = build_channel_basis(["amsr2", "atms"])
    net = NetworkEmissivity(3, basis, generator=torch.Generator().manual_seed(1)).double()
    n = 6
    g = torch.Generator().manual_seed(2)
    x_t = torch.rand(n, dtype=torch.float64, generator=g)
    props = torch.randn(n, 3, dtype=torch.float64, generator=g)
    isensor = torch.tensor([0, 1, 1, 1, 0, 1])
    cos2 = torch.tensor([1.0, 1.0, 0.5, 0.0, 1.0, 0.3], dtype=torch.float64)
    out = net(x_t, props, isensor, cos2)
    freq = torch.as_tensor(basis.freq_ghz, dtype=torch.float64)[isensor]  # (n, nchan)
    vh = net.emissivity_vh(x_t[:, None], props[:, None, :], freq)  # (n, nchan, 2)
    w = physics.polarisation_weight_v(torch.as_tensor(basis.pol, dtype=torch.int64), cos2)
    expect = w * vh[..., 0] + (1 - w) * vh[..., 1]
    torch.testing.assert_close(out, expect, rtol=0, atol=1e-8)  # the network keeps f/100 in float32
    with pytest.raises(ValueError, match="cos2_scan"):
        net(x_t, props, isensor)


def test_imager_only_network_unchanged_by_the_quasi_path():
    """Pure V/H channels through the mixing path equal the V/H gather path to the bit."""
    basis = build_channel_basis(["amsr2", "gmi"])
    net = NetworkEmissivity(3, basis, generator=torch.Generator().manual_seed(3))
    x_t, props, isensor = torch.rand(8), torch.randn(8, 3), torch.tensor([0, 1] * 4)
    plain = net(x_t, props, isensor)
    net.quasi = True
    mixed = net(x_t, props, isensor, torch.rand(8))
    assert torch.equal(plain, mixed)
