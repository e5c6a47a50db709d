import numpy as np
import pytest

from empirical_seaice.twin.ocean import (
    flat_sea_emissivity,
    foam_fraction,
    fresnel_reflectivity,
    ocean_emissivity_model,
    ocean_emissivity_true,
    seawater_permittivity_mw04,
)


def test_fresnel_normal_incidence_hand_value():
    # eps = 4: sqrt(eps) = 2, r = ((1 - 2) / (1 + 2))^2 = 1/9 for both polarisations
    r_v, r_h = fresnel_reflectivity(np.array(4.0 + 0j), 0.0)
    assert r_v == pytest.approx(1.0 / 9.0, abs=1e-12)
    assert r_h == pytest.approx(1.0 / 9.0, abs=1e-12)


def test_fresnel_brewster_angle_and_energy():
    # lossless eps = 4: r_V = 0 at the Brewster angle atan(2) = 63.435 deg
    r_v, r_h = fresnel_reflectivity(np.array(4.0 + 0j), np.rad2deg(np.arctan(2.0)))
    assert r_v == pytest.approx(0.0, abs=1e-12)
    # r_H at 63.435 deg, hand value: cos = 1/sqrt5, sqrt(4 - 4/5) = sqrt(3.2)
    c, s = 1 / np.sqrt(5), np.sqrt(3.2)
    assert r_h == pytest.approx(((c - s) / (c + s)) ** 2, rel=1e-12)


def test_pure_water_static_permittivity():
    # Stogryn static permittivity at 0 C: 3.70886e4 / 421.854 = 87.92
    eps = seawater_permittivity_mw04(1e-4, 273.15, 0.0)
    assert eps.real == pytest.approx(3.70886e4 / 421.854, rel=1e-4)
    assert eps.imag > 0  # loss as a positive imaginary part


def test_sea_water_conductivity_loss():
    # at 1.4 GHz the salt conductivity dominates the loss: eps'' far larger for sea than pure water
    sea = seawater_permittivity_mw04(1.4, 275.0, 33.0)
    pure = seawater_permittivity_mw04(1.4, 275.0, 0.0)
    assert sea.imag > 3 * pure.imag


@pytest.mark.parametrize("freq", [10.65, 18.7, 36.5, 89.0, 166.0, 190.31])
def test_ocean_emissivity_v_above_h_and_h_increases_with_wind(freq):
    calm_v = ocean_emissivity_true(freq, 0, 55.0, 272.0, 33.0, 0.0)
    calm_h = ocean_emissivity_true(freq, 1, 55.0, 272.0, 33.0, 0.0)
    windy_h = ocean_emissivity_true(freq, 1, 55.0, 272.0, 33.0, 12.0)
    assert 0.2 < calm_h < calm_v < 1.0
    assert windy_h > calm_h + 0.02
    # flat sea at zero wind
    assert calm_h == pytest.approx(flat_sea_emissivity(freq, 1, 55.0, 272.0, 33.0), abs=1e-12)


def test_flat_sea_10v_plausible():
    # cold sea at 55 deg: 10.65 GHz e_V ~ 0.55-0.62, e_H ~ 0.22-0.30 (Wentz/FASTEM range)
    assert 0.55 < flat_sea_emissivity(10.65, 0, 55.0, 272.0, 33.0) < 0.62
    assert 0.22 < flat_sea_emissivity(10.65, 1, 55.0, 272.0, 33.0) < 0.30


def test_foam_fraction_hand_value():
    assert foam_fraction(10.0) == pytest.approx(1.95e-5 * 10.0**2.55, rel=1e-12)
    assert foam_fraction(0.0) == 0.0


def test_model_emissivity_is_imperfect_but_equal_when_calm():
    args = (36.5, 1, 55.0, 273.0, 33.0)
    assert ocean_emissivity_model(*args, 0.0) == pytest.approx(ocean_emissivity_true(*args, 0.0), abs=1e-12)
    err = ocean_emissivity_true(*args, 15.0) - ocean_emissivity_model(*args, 15.0)
    assert 0.01 < err < 0.05  # missing roughness and foam: a real wind-dependent error
