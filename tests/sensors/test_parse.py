"""sensors/parse.py: one catalogue entry at a time, its one-line errors in the order of the checks."""

from __future__ import annotations

import math

import pytest

from empirical_seaice.errors import SeaIceError
from empirical_seaice.sensors import POL_QV, default_catalogue
from empirical_seaice.sensors.parse import parse_channel, parse_sensor

CHANNELS = default_catalogue().channels
ENTRY = {
    "scan": "conical",
    "incidence_deg": 53.1,
    "channels": ["10v", "10h", "89v", "89h"],
    "bias_ice_k": 1.0,
    "bias_ocean_k": 2.0,
    "bias_error_k": 4.0,
}


def test_a_valid_entry_becomes_the_sensor_with_its_channel_values():
    s = parse_sensor("mwri", {**ENTRY, "channel": {"89v": {"centre_ghz": 89.5}}, "nfov": 254}, CHANNELS, "u.toml")
    assert (s.name, s.scan, s.channels, s.nfov) == ("mwri", "conical", ("10v", "10h", "89v", "89h"), 254)
    assert (s.bias_ice_k, s.bias_ocean_k, s.bias_error_k, s.incidence_deg) == (1.0, 2.0, 4.0, 53.1)
    assert s.freq_ghz("89v") == 89.5 and s.channel_info["89v"].reference_freq_ghz == 89.5
    assert s.freq_ghz("89h") == CHANNELS["89h"].freq_ghz and s.incidence("10v") == 53.1
    assert math.isnan(s.max_scan_angle_deg) and math.isnan(s.altitude_km)


@pytest.mark.parametrize(
    "change, message",
    [
        # two mistakes each: the earlier check speaks (scan, fields, channel lists, polarisation,
        # incidence, per-channel values, surface-blind, nfov, the numbers)
        ({"scan": "helical", "colour": 1}, "scan: expected 'conical' or 'cross-track', got 'helical'"),
        ({"colour": 1, "channels": ["90h"]}, "colour: unknown field"),
        ({"channels": ["90h"], "nfov": -1}, "channels: channel '90h' is not defined in [channels]"),
        ({"channels": ["23.8qv"], "incidence_deg": 95.0}, "channels: channel '23.8qv' is quasi-polarised (QV/QH)"),
        ({"incidence_deg": 95.0, "channel": 3}, "incidence_deg: must be <= 90, got 95.0"),
        ({"channel": {"19v": {}}, "nfov": -1}, "channel: channel '19v' is not one of this sensor's channels"),
        ({"nfov": -1, "bias_ice_k": "x"}, "nfov: expected a positive integer, got -1"),
        ({"bias_ice_k": "x", "long_name": 3}, "bias_ice_k: expected a number, got 'x'"),
    ],
)
def test_the_first_failing_check_is_the_one_line_error(change, message):
    with pytest.raises(SeaIceError) as exc:
        parse_sensor("mwri", {**ENTRY, **change}, CHANNELS, "u.toml")
    assert str(exc.value).startswith(f"u.toml: sensor 'mwri': {message}")


def test_an_entry_without_its_scan_says_so_before_its_fields():
    """Without ``scan`` the conical or cross-track fields given were called unknown ("incidence_deg: unknown
    field"), e.g. a user's entry of a shipped sensor's name, which replaces the shipped entry whole."""
    entry = {k: v for k, v in ENTRY.items() if k != "scan"}
    with pytest.raises(SeaIceError) as exc:
        parse_sensor("amsr2", entry, CHANNELS, "u.toml")
    assert str(exc.value) == (
        "u.toml: sensor 'amsr2': scan: missing: 'conical' or 'cross-track', which decides the entry's other fields"
    )


def test_channel_entry():
    c = parse_channel("23.8qv", {"centre_ghz": 23.8, "pol": "QV", "obs_error_k": 3.0}, "u.toml")
    assert (c.freq_ghz, c.reference_freq_ghz, c.pol, c.obs_error_k, c.passbands_ghz) == (
        23.8,
        23.8,
        POL_QV,
        3.0,
        (23.8,),
    )
    with pytest.raises(SeaIceError, match=r"^u.toml: channel '1v': pol: expected one of V, H, QV, QH, got 'v'$"):
        parse_channel("1v", {"centre_ghz": 1.0, "pol": "v", "obs_error_k": 3.0}, "u.toml")


def test_an_observation_error_below_a_hundredth_of_a_kelvin_is_refused():
    """obs_error_k = 1e-30 K passed the catalogue check and made the cost non-finite in the first epoch."""
    for bad in (1e-30, 0.001):
        with pytest.raises(SeaIceError) as exc:
            parse_channel("23.8qv", {"centre_ghz": 23.8, "pol": "QV", "obs_error_k": bad}, "u.toml")
        assert str(exc.value) == (
            "u.toml: channel '23.8qv': obs_error_k: must be at least 0.01 K (noise and model error, 1-30 K), "
            f"got {bad!r}"
        )
    assert parse_channel("23.8qv", {"centre_ghz": 23.8, "pol": "QV", "obs_error_k": 0.01}, "u.toml").obs_error_k == 0.01


def test_noise_k_is_the_twins_noise_and_defaults_to_obs_error_k():
    """``noise_k`` (the instrument's noise, what the twin adds) is separate from the cost's sigma_c."""
    c = parse_channel("23.8qv", {"centre_ghz": 23.8, "pol": "QV", "obs_error_k": 9.0, "noise_k": 3.0}, "u.toml")
    assert (c.obs_error_k, c.noise_k) == (9.0, 3.0)
    c = parse_channel("23.8qv", {"centre_ghz": 23.8, "pol": "QV", "obs_error_k": 3.0}, "u.toml")
    assert c.noise_k == 3.0  # not given: the observation error, as before the field existed
    for bad, problem in (("3", "expected a number, got '3'"), (-1.0, "must be > 0, got -1.0"), (True, "a number")):
        with pytest.raises(SeaIceError) as exc:
            parse_channel("23.8qv", {"centre_ghz": 23.8, "pol": "QV", "obs_error_k": 3.0, "noise_k": bad}, "u.toml")
        assert str(exc.value).startswith("u.toml: channel '23.8qv': noise_k: ") and problem in str(exc.value)
        assert "\n" not in str(exc.value)
