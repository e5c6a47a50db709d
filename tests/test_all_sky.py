"""all_sky.py: the clear and cloudy columns folded into the effective atmosphere, by hand and bit for bit
as torch rounds :func:`physics.effective_atmosphere` in float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from empirical_seaice.all_sky import ALL_SKY_FIELDS, CLEAR_CLOUDY_FIELDS, all_sky_fields, all_sky_rows
from empirical_seaice.model import physics


def _columns(rng, n, nc):
    return {
        "tau": rng.uniform(0.3, 1.0, (n, nc)),
        "t_down_k": rng.uniform(5, 120, (n, nc)),
        "t_up_k": rng.uniform(5, 120, (n, nc)),
        "tau_cld": rng.uniform(0.1, 0.9, (n, nc)),
        "t_down_cld_k": rng.uniform(20, 250, (n, nc)),
        "t_up_cld_k": rng.uniform(20, 250, (n, nc)),
    }


def test_hand_values():
    # f = 0.3: tau* = 0.7 * 0.9 + 0.3 * 0.5 = 0.78; D* = 0.7 * 0.9 * 20 + 0.3 * 0.5 * 100 = 27.6;
    # K = 27.6 + 0.7 * 30 + 0.3 * 110 = 81.6 (K). f = 0: the clear column; f = 1: the cloudy one.
    one = np.ones((3, 1), dtype=np.float32)
    out = all_sky_fields(
        tau=0.9 * one, t_down_k=20 * one, t_up_k=30 * one, tau_cld=0.5 * one, t_down_cld_k=100 * one,
        t_up_cld_k=110 * one, cloud_fraction=np.array([0.3, 0.0, 1.0], dtype=np.float32),
    )  # fmt: skip
    np.testing.assert_allclose(out["tau_eff"][:, 0], [0.78, 0.9, 0.5], rtol=1e-6)
    np.testing.assert_allclose(out["down_eff_k"][:, 0], [27.6, 18.0, 50.0], rtol=1e-6)
    np.testing.assert_allclose(out["const_k"][:, 0], [81.6, 48.0, 160.0], rtol=1e-6)
    assert all(out[k].dtype == np.float32 for k in ALL_SKY_FIELDS)


def test_equals_torch_effective_atmosphere_in_float32_bit_for_bit():
    rng = np.random.default_rng(21)
    n, nc = 4000, 17
    cols = {k: v.astype(np.float32) for k, v in _columns(rng, n, nc).items()}
    cloud = rng.uniform(0, 1, n).astype(np.float32)
    cloud[:8] = [0.0, 0.5, 1.0, np.nextafter(np.float32(0.5), np.float32(0)), 0.25, 0.75, 1e-8, 1 - 1e-7]
    cloud[8] = np.nan  # counts as 0
    bad = rng.random((n, nc)) < 0.01
    cols["tau"][bad] = np.nan
    cols["t_up_cld_k"][rng.random((n, nc)) < 0.01] = np.inf
    out = all_sky_fields(**cols, cloud_fraction=cloud)
    clean = {k: torch.from_numpy(np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)) for k, v in cols.items()}
    ref = physics.effective_atmosphere(**clean, cloud_fraction=torch.from_numpy(np.nan_to_num(cloud)))
    for name, want in zip(ALL_SKY_FIELDS, ref, strict=True):
        assert want.dtype == torch.float32
        np.testing.assert_array_equal(out[name].view(np.int32), want.numpy().view(np.int32), err_msg=name)
    # and the equations in float64 to the float32 rounding
    f = np.nan_to_num(cloud).astype(np.float64)[:, None]
    c = {k: v.numpy().astype(np.float64) for k, v in clean.items()}
    down = (1 - f) * c["tau"] * c["t_down_k"] + f * c["tau_cld"] * c["t_down_cld_k"]
    np.testing.assert_allclose(out["tau_eff"], (1 - f) * c["tau"] + f * c["tau_cld"], rtol=3e-7, atol=1e-7)
    np.testing.assert_allclose(out["down_eff_k"], down, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(out["const_k"], down + (1 - f) * c["t_up_k"] + f * c["t_up_cld_k"], rtol=1e-6)


def test_the_tb_of_the_folded_atmosphere_is_the_all_sky_tb():
    # TB = f TB_cld + (1 - f) TB_clr = S tau* - e D* + K (float64 torch, the columns' float32 values)
    rng = np.random.default_rng(22)
    n, nc = 300, 5
    cols = {k: v.astype(np.float32) for k, v in _columns(rng, n, nc).items()}
    cloud = rng.uniform(0, 1, n).astype(np.float32)
    out = all_sky_fields(**cols, cloud_fraction=cloud)
    t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float64))  # noqa: E731
    sic, emis_ice = t(rng.uniform(0, 1, n)), t(rng.uniform(0.6, 1, (n, nc)))
    emis_ocean = t(rng.uniform(0.4, 0.7, (n, nc)))
    t_skin, bias = t(rng.uniform(250, 275, n)), t(np.zeros((n, nc)))
    ref = physics.simulate_tb(
        sic=sic, emis_ice=emis_ice, t_skin_k=t_skin, emis_ocean=emis_ocean, ocean_t_floor_k=271.35,
        **{k: t(v) for k, v in cols.items()}, cloud_fraction=t(cloud), bias_ice_k=bias, bias_ocean_k=bias,
    )  # fmt: skip
    a_ice, a_ocean = physics.surface_atmosphere_terms(
        t_skin_k=t_skin, ocean_t_floor_k=271.35, tau_eff=t(out["tau_eff"]), down_eff_k=t(out["down_eff_k"])
    )
    tb = physics.simulate_tb_mixed(
        sic=sic, emis_ice=emis_ice, emis_ocean=emis_ocean, a_ice_k=a_ice, a_ocean_k=a_ocean,
        const_k=t(out["const_k"]), bias_ice_k=bias, bias_ocean_k=bias,
    )  # fmt: skip
    err = (tb - ref).abs().max().item()
    assert 0 < err < 1e-4  # the stored fields' float32 rounding (K)


def test_only_the_given_channels_are_written_and_shapes_are_checked():
    rng = np.random.default_rng(23)
    cols = {k: v.astype(np.float32) for k, v in _columns(rng, 10, 4).items()}
    outs = [np.full((10, 4), -1.0, dtype=np.float32) for _ in ALL_SKY_FIELDS]
    all_sky_rows(*(cols[k] for k in CLEAR_CLOUDY_FIELDS), np.zeros(10, np.float32), np.array([0, 2]), *outs)
    for o in outs:
        assert (o[:, [1, 3]] == -1).all() and (o[:, [0, 2]] != -1).all()
    np.testing.assert_array_equal(outs[0][:, [0, 2]], cols["tau"][:, [0, 2]])  # f = 0: the clear column
    with pytest.raises(ValueError, match="tau_cld has shape"):
        all_sky_fields(**(cols | {"tau_cld": cols["tau_cld"][:, :3]}), cloud_fraction=np.zeros(10))
    with pytest.raises(ValueError, match="cloud_fraction has shape"):
        all_sky_fields(**cols, cloud_fraction=np.zeros(9))
