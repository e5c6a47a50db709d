"""Sensor catalogue and the unified channel basis against a hand-written table; doctests."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from empirical_seaice import observations, sensors
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import layout_writers, per_channel
from empirical_seaice.sensors import POL_H, POL_V, build_channel_basis, get_sensor

# Unified basis of amsr2 + gmi + ssmisf17, in catalogue order, written by hand:
# name, nominal GHz, pol, sigma_c (K); then per-sensor presence and actual frequency.
TABLE = [
    # name      f_nom   pol    err   amsr2 gmi   ssmis  f_amsr2 f_gmi  f_ssmis
    ("10v", 10.65, POL_V, 2.5, 1, 1, 0, 10.65, 10.65, 10.65),
    ("10h", 10.65, POL_H, 4.0, 1, 1, 0, 10.65, 10.65, 10.65),
    ("19v", 18.7, POL_V, 2.5, 1, 1, 1, 18.7, 18.7, 19.35),
    ("19h", 18.7, POL_H, 4.5, 1, 1, 1, 18.7, 18.7, 19.35),
    ("24v", 23.8, POL_V, 2.5, 1, 1, 1, 23.8, 23.8, 22.235),
    ("24h", 23.8, POL_H, 5.0, 1, 0, 0, 23.8, 23.8, 23.8),
    ("37v", 36.5, POL_V, 4.0, 1, 1, 1, 36.5, 36.64, 37.0),
    ("37h", 36.5, POL_H, 7.0, 1, 1, 1, 36.5, 36.64, 37.0),
    ("89v", 89.0, POL_V, 4.5, 1, 1, 1, 89.0, 89.0, 91.655),
    ("89h", 89.0, POL_H, 10.0, 1, 1, 1, 89.0, 89.0, 91.655),
    ("166v", 166.0, POL_V, 12.0, 0, 1, 0, 166.0, 166.0, 166.0),
    ("166h", 166.0, POL_H, 12.0, 0, 1, 1, 166.0, 166.0, 150.0),
    ("183pm7v", 190.31, POL_V, 12.0, 0, 1, 0, 190.31, 190.31, 190.31),
    ("183pm7h", 190.31, POL_H, 8.0, 0, 0, 1, 190.31, 190.31, 190.31),
    ("183pm3v", 186.31, POL_V, 8.0, 0, 1, 0, 186.31, 186.31, 186.31),
    ("183pm3h", 186.31, POL_H, 4.0, 0, 0, 1, 186.31, 186.31, 186.31),
    ("183pm1h", 184.31, POL_H, 2.0, 0, 0, 1, 184.31, 184.31, 184.31),
]
# File column j -> basis slot (GMI files hold 183pm3v before 183pm7v).
MAPS = {
    "amsr2": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    "gmi": [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 14, 12],
    "ssmisf17": [2, 3, 4, 6, 7, 8, 9, 11, 13, 15, 16],
}
BIAS = {"amsr2": (5.0, 2.5, 0.5), "gmi": (0.0, 0.0, 0.001), "ssmisf17": (0.0, 0.0, 4.0)}


def test_unified_basis_three_sensors_matches_table():
    b = build_channel_basis(["amsr2", "gmi", "ssmisf17"])
    assert b.sensor_names == ("amsr2", "gmi", "ssmisf17") and b.nsensor == 3
    assert b.channel_names == tuple(r[0] for r in TABLE) and b.nchan == 17
    assert dict(b.channel_index) == {r[0]: j for j, r in enumerate(TABLE)}
    np.testing.assert_array_equal(b.pol, [r[2] for r in TABLE])
    np.testing.assert_allclose(b.obs_error_k, [r[3] for r in TABLE])
    np.testing.assert_array_equal(b.present, np.array([r[4:7] for r in TABLE], bool).T)
    np.testing.assert_allclose(b.freq_ghz, np.array([r[7:10] for r in TABLE], np.float32).T, rtol=1e-7)
    assert b.freq_ghz.dtype == np.float32 and b.obs_error_k.dtype == np.float32
    for s, name in enumerate(b.sensor_names):
        np.testing.assert_array_equal(b.sensor_channel_map[s], MAPS[name])
        # The map sends file channel names to the same basis names.
        assert [b.channel_names[c] for c in b.sensor_channel_map[s]] == list(get_sensor(name).channels)
        ice, ocean, err = BIAS[name]
        np.testing.assert_array_equal(b.bias_ice_bg_k[s], np.full(17, ice, np.float32))
        np.testing.assert_array_equal(b.bias_ocean_bg_k[s], np.full(17, ocean, np.float32))
        assert b.bias_error_k[s] == np.float32(err)
    # GMI 183 ordering: file column 11 is 183pm3v, column 12 is 183pm7v.
    assert b.channel_names[b.sensor_channel_map[1][11]] == "183pm3v"
    assert b.channel_names[b.sensor_channel_map[1][12]] == "183pm7v"
    # GMI's high-frequency feedhorn incidence.
    assert b.incidence_deg[1, b.channel_index["166v"]] == pytest.approx(49.2)
    assert b.incidence_deg[1, b.channel_index["10v"]] == pytest.approx(52.8)
    assert b.incidence_deg[0, 0] == pytest.approx(55.0) and b.incidence_deg[2, 2] == pytest.approx(53.1)


def test_amsr2_leading_unused_channels():
    s = get_sensor("amsr2")
    assert s.leading_unused == ("6.9v", "6.9h", "7.3v", "7.3h")
    assert len(s.leading_unused) + len(s.channels) == 14


def test_sensor_order_defines_isensor():
    b = build_channel_basis(["ssmisf17", "amsr2"])
    assert b.sensor_names == ("ssmisf17", "amsr2")
    assert b.sensor(0).name == "ssmisf17"
    assert b.bias_ice_bg_k[1, 0] == 5.0 and b.bias_error_k.tolist() == pytest.approx([4.0, 0.5])


def test_unknown_sensor_lists_known_ones():
    with pytest.raises(SeaIceError, match=r"--sensors: unknown sensor 'amsr3'; known sensors: amsr2, gmi, ssmisf17"):
        build_channel_basis(["amsr2", "amsr3"])


def test_empty_and_repeated_sensor_lists():
    with pytest.raises(SeaIceError, match="no sensor given; known sensors: amsr2, gmi, ssmisf17"):
        build_channel_basis([])
    with pytest.raises(SeaIceError, match="given twice"):
        build_channel_basis(["gmi", "gmi"])


@pytest.mark.parametrize("module", [sensors, observations, layout_writers, per_channel])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0


def test_network_frequency_table_reference_and_physical():
    from empirical_seaice.sensors import network_frequency_table

    basis = build_channel_basis(["amsr2", "gmi", "ssmisf17"])
    ref = network_frequency_table(basis, "reference")
    phys = network_frequency_table(basis, "physical")
    assert np.array_equal(phys, basis.freq_ghz) and phys is not basis.freq_ghz
    j = basis.channel_index
    g, s = basis.sensor_names.index("gmi"), basis.sensor_names.index("ssmisf17")
    # the ECMWF v2 table: 166.5, 183.31 for every 183 +/- d, GMI's 37 GHz at 36.5, SSMIS's own values
    assert ref[g, j["166v"]] == np.float32(166.5) and phys[g, j["166v"]] == np.float32(166.0)
    assert ref[g, j["183pm7v"]] == ref[g, j["183pm3v"]] == np.float32(183.31)
    assert phys[g, j["183pm7v"]] == np.float32(190.31)
    assert ref[g, j["37v"]] == np.float32(36.5) and phys[g, j["37v"]] == np.float32(36.64)
    assert ref[s, j["24v"]] == np.float32(22.235) and ref[s, j["166h"]] == np.float32(150.0)
    assert ref[s, j["183pm1h"]] == np.float32(183.31) and ref[s, j["166v"]] == np.float32(166.5)  # lacks 166v
    assert ref[s, j["10v"]] == np.float32(10.65)  # a channel SSMIS lacks: the nominal value
    with pytest.raises(SeaIceError, match="network_frequencies: expected one of reference, physical"):
        network_frequency_table(basis, "nominal")
