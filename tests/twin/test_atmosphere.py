import numpy as np
import pytest

from empirical_seaice.twin.atmosphere import (
    LWP_AXIS,
    T_AIR_AXIS,
    TCWV_AXIS,
    AtmosphereTable,
    absorption_h2o,
    column_rt,
    layer_rt,
    sidebands,
)


def _tau(name, freq, w=5.0, t=260.0, lwp=0.0, inc=55.0):
    return column_rt(sidebands(freq, name), inc, t, w, lwp)


def test_sidebands_183_never_line_centre():
    assert sidebands(190.31, "183pm7h") == pytest.approx((176.31, 190.31))
    assert sidebands(184.31, "183pm1h") == pytest.approx((182.31, 184.31))
    assert sidebands(36.5, "37v") == (36.5,)


def test_h2o_22ghz_line_strength():
    # surface, 10 g/m3, 293 K: ~0.2 dB/km at the 22.235 GHz line centre (Liebe/Rosenkranz)
    db_km = 4.343 * absorption_h2o(22.235, 293.0, 1013.0, 10.0)
    assert 0.17 < db_km < 0.27


def test_transmittance_range_and_ordering():
    taus = {}
    for name, f in [("19v", 18.7), ("22v", 22.235), ("183pm7h", 190.31), ("183pm3h", 186.31), ("183pm1h", 184.31)]:
        tau, td, tu = _tau(name, f)
        assert 0.0 < tau <= 1.0
        taus[name] = float(tau)
    assert taus["183pm1h"] < taus["183pm3h"] < taus["183pm7h"]
    assert taus["22v"] < taus["19v"]


@pytest.mark.parametrize("freq", [36.5, 89.0, 166.0])
def test_cloud_reduces_transmittance_above_30ghz(freq):
    clear = _tau("x", freq, lwp=0.0)[0]
    cloudy = _tau("x", freq, lwp=0.2)[0]
    assert cloudy < clear - 0.01


def test_isothermal_limit():
    # isothermal layers at T, no cosmic background: T_up = T_down = T (1 - tau)
    rng = np.random.default_rng(1)
    opacity = rng.uniform(0.0, 0.3, (5, 40))
    t = 250.0
    tau, td, tu = layer_rt(opacity, np.full((5, 40), t), t_cosmic_k=0.0)
    np.testing.assert_allclose(tau, np.exp(-opacity.sum(-1)), rtol=1e-12)
    np.testing.assert_allclose(tu, t * (1 - tau), rtol=1e-10)
    np.testing.assert_allclose(td, t * (1 - tau), rtol=1e-10)
    # with the cosmic background: T_down = T (1 - tau) + T_c tau
    tau2, td2, _ = layer_rt(opacity, np.full((5, 40), t), t_cosmic_k=2.73)
    np.testing.assert_allclose(td2, t * (1 - tau2) + 2.73 * tau2, rtol=1e-10)


def test_table_matches_direct_calculation():
    chans, freqs, inc = ("19v", "89h", "183pm3h"), (18.7, 89.0, 186.31), (55.0, 55.0, 53.1)
    table = AtmosphereTable.build(chans, freqs, inc)
    # at a node: exact
    w, t, lwp = TCWV_AXIS[5], T_AIR_AXIS[7], LWP_AXIS[3]
    tau, td, tu = table(np.array([t]), np.array([w]), np.array([lwp]))
    for j, (name, f, i) in enumerate(zip(chans, freqs, inc, strict=True)):
        d_tau, d_td, d_tu = column_rt(sidebands(f, name), i, t, w, lwp)
        assert tau[0, j] == pytest.approx(float(d_tau), abs=1e-12)
        assert tu[0, j] == pytest.approx(float(d_tu), abs=1e-9)
    # between nodes: interpolation error small
    tau, td, tu = table(np.array([262.3]), np.array([4.1]), np.array([0.07]))
    for j, (name, f, i) in enumerate(zip(chans, freqs, inc, strict=True)):
        d_tau, d_td, d_tu = column_rt(sidebands(f, name), i, 262.3, 4.1, 0.07)
        assert tau[0, j] == pytest.approx(float(d_tau), abs=0.01)
        assert tu[0, j] == pytest.approx(float(d_tu), abs=2.0)
