"""physics.py: hand-computed cases, float64 gradchecks and physics laws."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from empirical_seaice.model import physics

D = torch.float64


def t(*values):
    return torch.tensor(values, dtype=D)


# ----------------------------------------------------------------- hand values
def test_normalised_temperature_hand_values():
    x = physics.normalised_temperature(t(243.0, 273.0, 280.0, 258.0))
    assert torch.allclose(x, t(1.0, 0.0, 0.0, 0.5))
    # non-default reference and scale: max(250 - 240, 0) / 20
    assert physics.normalised_temperature(t(240.0), 250.0, 20.0).item() == pytest.approx(0.5)


def test_ocean_emissivity_hand_values():
    e = physics.ocean_emissivity(t(0.5, 0.6).reshape(1, 2), t(10.0), t(0.001, -0.002))
    assert torch.allclose(e, t(0.51, 0.58).reshape(1, 2))


def test_ocean_temperature_floor_and_v1():
    ts = t(265.0, 271.35, 275.0)
    assert torch.allclose(physics.ocean_temperature(ts, 271.35), t(271.35, 271.35, 275.0))
    assert torch.equal(physics.ocean_temperature(ts, None), ts)


def test_surface_mix_hand_values():
    s, e = physics.surface_mix(t(0.25), t(0.9).reshape(1, 1), t(260.0), t(0.5).reshape(1, 1), t(271.35))
    # S = 0.25*0.9*260 + 0.75*0.5*271.35 = 58.5 + 101.75625
    assert s.item() == pytest.approx(160.25625, abs=1e-12)
    assert e.item() == pytest.approx(0.6, abs=1e-15)


def test_specular_rt_hand_values():
    # 160*0.8 + (1-0.6)*0.8*50 + 20 = 128 + 16 + 20
    tb = physics.specular_rt(t(160.0), t(0.6), t(0.8), t(50.0), t(20.0))
    assert tb.item() == pytest.approx(164.0, abs=1e-12)


def test_all_sky_hand_values():
    tb = physics.all_sky(t(200.0).reshape(1, 1), t(220.0).reshape(1, 1), t(0.25))
    assert tb.item() == pytest.approx(205.0)


def test_bias_correction_hand_values():
    tb = physics.bias_correction(t(200.0).reshape(1, 1), t(0.4), t(5.0).reshape(1, 1), t(2.5).reshape(1, 1))
    assert tb.item() == pytest.approx(203.5)  # 200 + 0.4*5 + 0.6*2.5


def test_simulate_tb_hand_value():
    # One observation, one channel, every step by hand.
    kw = dict(
        sic=t(0.25),
        emis_ice=t(0.9).reshape(1, 1),
        t_skin_k=t(260.0),
        emis_ocean=t(0.5).reshape(1, 1),
        ocean_t_floor_k=271.35,
        tau=t(0.8).reshape(1, 1),
        t_down_k=t(50.0).reshape(1, 1),
        t_up_k=t(20.0).reshape(1, 1),
        tau_cld=t(0.5).reshape(1, 1),
        t_down_cld_k=t(100.0).reshape(1, 1),
        t_up_cld_k=t(90.0).reshape(1, 1),
        cloud_fraction=t(0.2),
        bias_ice_k=t(4.0).reshape(1, 1),
        bias_ocean_k=t(2.0).reshape(1, 1),
    )
    s, e = 160.25625, 0.6
    clr = s * 0.8 + (1 - e) * 0.8 * 50 + 20
    cld = s * 0.5 + (1 - e) * 0.5 * 100 + 90
    allsky = 0.2 * cld + 0.8 * clr
    expected = allsky + 0.25 * 4.0 + 0.75 * 2.0
    assert physics.simulate_tb(**kw).item() == pytest.approx(expected, abs=1e-10)
    # v1: T_o = T_s = 260
    s1 = 0.25 * 0.9 * 260 + 0.75 * 0.5 * 260
    clr1 = s1 * 0.8 + (1 - e) * 0.8 * 50 + 20
    cld1 = s1 * 0.5 + (1 - e) * 0.5 * 100 + 90
    kw["ocean_t_floor_k"] = None
    assert physics.simulate_tb(**kw).item() == pytest.approx(0.2 * cld1 + 0.8 * clr1 + 2.5, abs=1e-10)


# -------------------------------------------------------------------- gradchecks
def _rand(*shape, lo=0.0, hi=1.0, seed=0):
    g = torch.Generator().manual_seed(seed + sum(shape))
    return (lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=D)).requires_grad_(True)


def test_gradcheck_each_function():
    B, C = 3, 4
    assert torch.autograd.gradcheck(physics.normalised_temperature, (_rand(B, lo=240, hi=270),))
    assert torch.autograd.gradcheck(
        physics.ocean_emissivity, (_rand(B, C), _rand(B, hi=15), _rand(C, lo=-0.01, hi=0.01))
    )
    assert torch.autograd.gradcheck(lambda x: physics.ocean_temperature(x, 271.35), (_rand(B, lo=272, hi=280),))
    assert torch.autograd.gradcheck(
        physics.surface_mix, (_rand(B), _rand(B, C), _rand(B, lo=250, hi=270), _rand(B, C), _rand(B, lo=270, hi=280))
    )
    assert torch.autograd.gradcheck(
        physics.specular_rt, (_rand(B, C, hi=200), _rand(B, C), _rand(B, C), _rand(B, C, hi=80), _rand(B, C, hi=80))
    )
    assert torch.autograd.gradcheck(physics.all_sky, (_rand(B, C, hi=250), _rand(B, C, hi=250), _rand(B)))
    assert torch.autograd.gradcheck(physics.bias_correction, (_rand(B, C, hi=250), _rand(B), _rand(B, C), _rand(B, C)))


def test_gradcheck_simulate_tb():
    B, C = 2, 3
    names = _NAMES  # the inputs of simulate_tb, in order (defined with the factored chain below)
    per_obs = {"sic", "t_skin_k", "cloud_fraction"}
    args = []
    for k, n in enumerate(names):
        shape = (B,) if n in per_obs else (B, C)
        lo, hi = (250.0, 270.0) if n == "t_skin_k" else (0.0, 1.0)  # stay away from the 271.35 K floor kink
        args.append(_rand(*shape, lo=lo, hi=hi, seed=k))

    def f(*a):
        return physics.simulate_tb(**dict(zip(names, a, strict=True)), ocean_t_floor_k=271.35)

    assert torch.autograd.gradcheck(f, tuple(args))


# ---------------------------------------------------------------- physics laws
def _chain(sic, emis_ice, emis_ocean, t_skin=260.0, tau=0.7, t_down=40.0, t_up=30.0, floor=None, B=5, C=3):
    g = torch.Generator().manual_seed(1)
    full = lambda v: torch.full((B, C), v, dtype=D) if not torch.is_tensor(v) else v
    return physics.simulate_tb(
        sic=torch.full((B,), sic, dtype=D),
        emis_ice=full(emis_ice),
        t_skin_k=torch.full((B,), t_skin, dtype=D),
        emis_ocean=full(emis_ocean),
        ocean_t_floor_k=floor,
        tau=full(tau),
        t_down_k=full(t_down),
        t_up_k=full(t_up),
        tau_cld=full(tau),
        t_down_cld_k=full(t_down),
        t_up_cld_k=full(t_up),
        cloud_fraction=torch.rand(B, generator=g, dtype=D),
        bias_ice_k=full(0.0),
        bias_ocean_k=full(0.0),
    )


def test_sic_zero_gives_ocean_tb_and_one_gives_ice_tb():
    ocean = _chain(0.0, 0.95, 0.5)
    assert torch.allclose(ocean, _chain(0.0, 0.2, 0.5))  # ice emissivity is invisible at SIC 0
    assert torch.allclose(ocean, _chain(1.0, 0.5, 0.95))  # SIC 1 with the ocean's emissivity as ice
    ice = _chain(1.0, 0.9, 0.5)
    assert torch.allclose(ice, _chain(1.0, 0.9, 0.1))  # ocean emissivity is invisible at SIC 1
    assert torch.allclose(ice, _chain(0.0, 0.1, 0.9))


def test_transparent_atmosphere_gives_e_times_t():
    # tau = 1, T_up = 0 (and T_down = 0): TB = e T
    tb = _chain(1.0, 0.9, 0.5, t_skin=250.0, tau=1.0, t_down=0.0, t_up=0.0)
    assert torch.allclose(tb, torch.full_like(tb, 0.9 * 250.0))
    tb = _chain(0.0, 0.9, 0.5, t_skin=275.0, tau=1.0, t_down=0.0, t_up=0.0, floor=271.35)
    assert torch.allclose(tb, torch.full_like(tb, 0.5 * 275.0))


def test_opaque_atmosphere_gives_t_up():
    tb = _chain(0.6, 0.9, 0.5, tau=0.0, t_up=123.0)
    assert torch.allclose(tb, torch.full_like(tb, 123.0))


def test_isothermal_universe_gives_t_for_any_emissivity():
    # Atmosphere and space at T: T_down = T at the surface, T_up = (1 - tau) T: TB = T.
    temp = 255.0
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        e_i, e_o, sic = (torch.rand(3, generator=g, dtype=D)).tolist()
        tau = torch.rand(5, 3, generator=g, dtype=D)
        tb = _chain(sic, e_i, e_o, t_skin=temp, tau=tau, t_down=temp, t_up=(1 - tau) * temp)
        assert torch.allclose(tb, torch.full_like(tb, temp))


def test_e_mix_bounded_by_its_parts():
    g = torch.Generator().manual_seed(4)
    sic = torch.rand(200, generator=g, dtype=D)
    e_i = torch.rand(200, 3, generator=g, dtype=D)
    e_o = torch.rand(200, 3, generator=g, dtype=D)
    temp = torch.full((200,), 260.0, dtype=D)
    _, e = physics.surface_mix(sic, e_i, temp, e_o, temp)
    assert bool((e >= torch.minimum(e_i, e_o) - 1e-15).all() and (e <= torch.maximum(e_i, e_o) + 1e-15).all())


def test_tb_monotonic_in_sic_between_ocean_and_ice():
    # Linear in SIC (with biases 0): TB(c) = (1 - c) TB(0) + c TB(1).
    tb0, tb1, tbc = _chain(0.0, 0.92, 0.55), _chain(1.0, 0.92, 0.55), _chain(0.3, 0.92, 0.55)
    assert torch.allclose(tbc, 0.7 * tb0 + 0.3 * tb1)


# -------------------------------------------------------------- factored chain
_NAMES = [
    "sic",
    "emis_ice",
    "t_skin_k",
    "emis_ocean",
    "tau",
    "t_down_k",
    "t_up_k",
    "tau_cld",
    "t_down_cld_k",
    "t_up_cld_k",
    "cloud_fraction",
    "bias_ice_k",
    "bias_ocean_k",
]
_PER_OBS = {"sic", "t_skin_k", "cloud_fraction"}
_RANGES = {
    "t_skin_k": (250.0, 290.0),
    "t_down_k": (5.0, 100.0),
    "t_up_k": (5.0, 100.0),
    "t_down_cld_k": (20.0, 200.0),
    "t_up_cld_k": (20.0, 200.0),
    "bias_ice_k": (-5.0, 5.0),
    "bias_ocean_k": (-5.0, 5.0),
}


def _chain_args(B, C, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n in _NAMES:
        lo, hi = _RANGES.get(n, (0.0, 1.0))
        shape = (B,) if n in _PER_OBS else (B, C)
        out[n] = lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=D)
    return out


def _factored(*, t_skin_k, ocean_t_floor_k, cloud_fraction, **clear_cloudy):
    """The data-only terms of the training hot path (as ObservationTensors and HybridNetwork.forward
    compute them): effective_atmosphere, then surface_atmosphere_terms -> A_i, A_o, K."""
    tau_eff, down_eff, const = physics.effective_atmosphere(cloud_fraction=cloud_fraction, **clear_cloudy)
    a_ice, a_ocean = physics.surface_atmosphere_terms(
        t_skin_k=t_skin_k, ocean_t_floor_k=ocean_t_floor_k, tau_eff=tau_eff, down_eff_k=down_eff
    )
    return a_ice, a_ocean, const


def _mixed_chain(*, sic, emis_ice, emis_ocean, bias_ice_k, bias_ocean_k, **atmosphere):
    """The training hot path: the data-only terms, then simulate_tb_mixed."""
    a_ice, a_ocean, const = _factored(**atmosphere)
    return physics.simulate_tb_mixed(
        sic=sic,
        emis_ice=emis_ice,
        emis_ocean=emis_ocean,
        a_ice_k=a_ice,
        a_ocean_k=a_ocean,
        const_k=const,
        bias_ice_k=bias_ice_k,
        bias_ocean_k=bias_ocean_k,
    )


@pytest.mark.parametrize("floor", [271.35, None])
def test_factored_chain_equals_simulate_tb(floor):
    kw = _chain_args(50, 6)
    ref = physics.simulate_tb(**kw, ocean_t_floor_k=floor)
    fast = _mixed_chain(**kw, ocean_t_floor_k=floor)
    assert torch.allclose(fast, ref, rtol=0, atol=1e-11)


def test_gradcheck_factored_chain():
    kw = _chain_args(2, 3, seed=1)
    kw["t_skin_k"] = 250.0 + 15.0 * torch.rand(2, dtype=D)  # away from the floor kink
    args = tuple(kw[n].requires_grad_(True) for n in _NAMES)

    def f(*a):
        return _mixed_chain(**dict(zip(_NAMES, a, strict=True)), ocean_t_floor_k=271.35)

    assert torch.autograd.gradcheck(f, args)


# ------------------------------------------------------------ property tests

_unit = st.floats(0.0, 1.0)


@settings(max_examples=60, deadline=None)
@given(sic=_unit, e_i=_unit, e_o=_unit, tau=_unit, f=_unit, temp=st.floats(150.0, 320.0))
def test_isothermal_universe_property(sic, e_i, e_o, tau, f, temp):
    one = lambda v: torch.tensor([[v]], dtype=D)
    tb = _mixed_chain(
        sic=torch.tensor([sic], dtype=D),
        emis_ice=one(e_i),
        t_skin_k=torch.tensor([temp], dtype=D),
        emis_ocean=one(e_o),
        ocean_t_floor_k=None,
        tau=one(tau),
        t_down_k=one(temp),
        t_up_k=one((1 - tau) * temp),
        tau_cld=one(tau),
        t_down_cld_k=one(temp),
        t_up_cld_k=one((1 - tau) * temp),
        cloud_fraction=torch.tensor([f], dtype=D),
        bias_ice_k=one(0.0),
        bias_ocean_k=one(0.0),
    )
    assert tb.item() == pytest.approx(temp, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    sic=_unit,
    e_i=_unit,
    e_o=_unit,
    tau=_unit,
    t_down=st.floats(0.0, 300.0),
    t_up=st.floats(0.0, 300.0),
    temp=st.floats(200.0, 300.0),
)
def test_tb_between_ocean_and_ice_tb_property(sic, e_i, e_o, tau, t_down, t_up, temp):
    def tb(c):
        one = lambda v: torch.tensor([[v]], dtype=D)
        return physics.simulate_tb(
            sic=torch.tensor([c], dtype=D),
            emis_ice=one(e_i),
            t_skin_k=torch.tensor([temp], dtype=D),
            emis_ocean=one(e_o),
            ocean_t_floor_k=271.35,
            tau=one(tau),
            t_down_k=one(t_down),
            t_up_k=one(t_up),
            tau_cld=one(tau),
            t_down_cld_k=one(t_down),
            t_up_cld_k=one(t_up),
            cloud_fraction=torch.tensor([0.5], dtype=D),
            bias_ice_k=one(1.0),
            bias_ocean_k=one(-1.0),
        ).item()

    lo, hi = sorted((tb(0.0), tb(1.0)))
    assert lo - 1e-9 <= tb(sic) <= hi + 1e-9


def test_lag_weighted_sic_hand_value_and_gradient():
    lags = torch.tensor([[0.8, 0.5], [0.0, 1.0]], dtype=D)
    alpha = torch.tensor([0.6, 0.4], dtype=D)
    c = physics.lag_weighted_sic(lags, alpha)
    assert c.tolist() == pytest.approx([0.6 * 0.8 + 0.4 * 0.5, 0.4])
    x = lags.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: physics.lag_weighted_sic(v, alpha), (x,))
