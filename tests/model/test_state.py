"""state.py: lag lookups and table layout against hand values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from empirical_seaice.errors import SeaIceError
from empirical_seaice.model.physics import lag_weighted_sic
from empirical_seaice.model.state import EmpiricalState

L = torch.tensor


def _sic(st, igrid, istep):
    """The SIC seen by observations at (igrid, istep), as the network computes it."""
    return lag_weighted_sic(st.sic_lags(igrid, istep)[1], st.lag_weights)


def _state(nlag=1, weights=(0.6, 0.4), ngrid=3, nstep=4, nobs=5, sparse=True):
    bg = np.arange(ngrid * (nstep + nlag), dtype=np.float32).reshape(ngrid, nstep + nlag) / 100.0
    return EmpiricalState(bg, nstep, 2, nobs, 1, weights, sparse=sparse), bg


def test_sic_lag_lookup_hand_values():
    st, bg = _state()
    # obs at g=1, t=2: c = 0.6 C[1, 3] + 0.4 C[1, 2]; C[g, col] = (5 g + col) / 100
    c = _sic(st, L([1, 0, 2]), L([2, 0, 3]))
    expected = [0.6 * 0.08 + 0.4 * 0.07, 0.6 * 0.01 + 0.4 * 0.00, 0.6 * 0.14 + 0.4 * 0.13]
    assert np.allclose(c.detach().numpy(), expected, atol=1e-7)
    rows, vals = st.sic_lags(L([1]), L([2]))
    assert rows.tolist() == [[8, 7]]  # g * 5 + t + nlag - l
    assert np.allclose(vals.detach().numpy(), [[0.08, 0.07]])


def test_sic_two_lags():
    st, bg = _state(nlag=2, weights=(0.5, 0.3, 0.2))
    # ncol = 6; g=2, t=1: 0.5 C[2, 3] + 0.3 C[2, 2] + 0.2 C[2, 1]; C = (6 g + col)/100
    c = _sic(st, L([2]), L([1])).item()
    assert c == pytest.approx(0.5 * 0.15 + 0.3 * 0.14 + 0.2 * 0.13, abs=1e-7)


def test_property_lookups_and_arrays():
    st, _ = _state()
    with torch.no_grad():
        st.props_grid.weight.copy_(torch.arange(24, dtype=torch.float32).reshape(12, 2))
        st.props_obs.weight.copy_(torch.arange(5, dtype=torch.float32).reshape(5, 1) * 10)
    # row g * nstep + t = 2 * 4 + 1 = 9 -> [18, 19]
    assert st.grid_properties(L([2]), L([1])).tolist() == [[18.0, 19.0]]
    assert st.obs_properties(L([3, 0])).tolist() == [[30.0], [0.0]]
    p = st.grid_properties_array()
    assert p.shape == (3, 4, 2) and p[2, 1].tolist() == [18.0, 19.0]
    assert st.obs_properties_array()[:, 0].tolist() == [0.0, 10.0, 20.0, 30.0, 40.0]


def test_initial_state_background_and_zeros():
    st, bg = _state()
    assert np.array_equal(st.sic_array(), bg)
    assert not st.grid_properties_array().any() and not st.obs_properties_array().any()


def test_no_property_tables():
    bg = np.zeros((2, 3), np.float32)
    st = EmpiricalState(bg, 2, 0, 4, 0, (0.6, 0.4))
    assert st.props_grid is None and st.props_obs is None
    assert st.grid_properties(L([0]), L([1])).shape == (1, 0)
    assert st.obs_properties(L([0])).shape == (1, 0)
    assert st.grid_properties_array().shape == (2, 2, 0) and st.obs_properties_array().shape == (4, 0)
    assert list(st.parameters()) == [st.sic_map.weight]


def test_background_wrong_shape_raises():
    with pytest.raises(SeaIceError, match=r"background SIC: expected shape \(ngrid, nstep \+ nlag\) = \(ngrid, 5\)"):
        EmpiricalState(np.zeros((3, 4), np.float32), 4, 2, 5, 1, (0.6, 0.4))


def test_sparse_and_dense_gradients():
    for sparse in (True, False):
        st, _ = _state(sparse=sparse)
        loss = _sic(st, L([1]), L([2])).sum() + st.grid_properties(L([1]), L([2])).sum()
        loss = loss + st.obs_properties(L([4])).sum()
        loss.backward()
        for p in st.parameters():
            assert p.grad.is_sparse == sparse
        g = st.sic_map.weight.grad.to_dense()[:, 0]
        expected = torch.zeros(15)
        expected[8], expected[7] = 0.6, 0.4
        assert torch.allclose(g, expected)
