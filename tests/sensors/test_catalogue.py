"""The sensor catalogue file: every shipped sensor loads with its documented facts, a malformed
file is one error line per kind of mistake, a user file adds and overrides sensors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from empirical_seaice.errors import SeaIceError
from empirical_seaice.sensors import (
    POL_H,
    POL_QH,
    POL_QV,
    POL_V,
    build_channel_basis,
    catalogue_from_dict,
    load_catalogue,
    shipped_catalogue_path,
)

SHIPPED = ("amsr2", "amsre", "gmi", "ssmisf16", "ssmisf17", "ssmisf18", "windsat", "amsua", "mhs", "atms")


def test_every_shipped_sensor_loads_and_builds_a_basis():
    cat = load_catalogue()
    assert set(SHIPPED) <= set(cat.sensors)
    for name in SHIPPED:
        s = cat.sensors[name]
        assert s.source and s.long_name, name  # facts cited in the file
        b = build_channel_basis([name])
        assert b.nchan == len(s.channels) and b.present.all()
        assert [b.channel_names[c] for c in b.sensor_channel_map[0]] == list(s.channels)
        assert [s.file_channels[j] for j in b.sensor_file_columns[0]] == list(s.channels)
    b = build_channel_basis(SHIPPED)  # all at once: one basis
    assert b.nsensor == len(SHIPPED)


def test_cross_track_sounders_facts():
    cat = load_catalogue()
    atms, amsua, mhs = cat.sensors["atms"], cat.sensors["amsua"], cat.sensors["mhs"]
    # ATMS: 22 channels, 96 fields of view, +/-52.725 deg; channels 7-15 (54.4 GHz and up) do not see the surface
    assert len(atms.file_channels) == 22 and atms.nfov == 96 and atms.max_scan_angle_deg == 52.725
    assert atms.file_channels[6:15] == tuple(c for c in atms.file_channels if atms.channel_info[c].surface_blind)
    assert len(atms.channels) == 13 and "54.4qh" not in atms.channels
    assert [atms.channel_info[c].pol for c in ("23.8qv", "31.4qv", "50.3qh", "88.2qv", "165.5qh")] == [
        POL_QV,
        POL_QV,
        POL_QH,
        POL_QV,
        POL_QH,
    ]
    # AMSU-A: 15 channels, channels 6-14 surface-blind; channel 3 (50.3 GHz) is QV on AMSU-A but QH on ATMS
    assert len(amsua.file_channels) == 15 and amsua.file_channels[2] == "50.3qv" and len(amsua.channels) == 6
    assert amsua.max_scan_angle_deg == 48.33 and amsua.nfov == 30
    assert mhs.file_channels == ("89qv", "157qv", "183pm1qh", "183pm3qh", "190.31qv") and mhs.nfov == 90
    # the four passbands of 57.290344 +/- 0.3222 +/- 0.048 GHz
    np.testing.assert_allclose(
        sorted(atms.channel_info["57.29pm0.322pm0.048qh"].passbands_ghz),
        [
            57.290344 - 0.3222 - 0.048,
            57.290344 - 0.3222 + 0.048,
            57.290344 + 0.3222 - 0.048,
            57.290344 + 0.3222 + 0.048,
        ],
    )
    b = build_channel_basis(["amsr2", "atms"])
    assert b.cross_track.tolist() == [False, True] and b.has_quasi_polarisation
    assert math.isnan(b.incidence_deg[1, 0]) and b.altitude_km[1] == np.float32(824.0)


# the used ATMS channels' errors of the catalogue before noise_k existed (2026-11-30): the twin's noise stays
ATMS_NOISE_K = {
    "23.8qv": 3.0, "31.4qv": 4.0, "50.3qh": 4.0, "51.76qh": 3.0, "52.8qh": 2.0, "53.6qh": 1.0, "88.2qv": 6.0,
    "165.5qh": 10.0, "183pm7qh": 8.0, "183pm4.5qh": 6.0, "183pm3qh": 4.0, "183pm1.8qh": 3.0, "183pm1qh": 2.0,
}  # fmt: skip


def test_sounder_surface_channels_cost_errors_are_three_times_their_noise():
    """Cross-track sounders' surface-sensitive channels: sigma_c = 3 noise_k (the angle-dependent ice
    emissivity the network fits only partly, docs/sensors.md); the twin's noise is unchanged; imagers and
    surface-blind channels have no noise_k (noise = sigma_c)."""
    cat = load_catalogue()
    atms = cat.sensors["atms"]
    assert {c: atms.channel_info[c].noise_k for c in atms.channels} == ATMS_NOISE_K
    for name in ("atms", "amsua", "mhs"):
        s = cat.sensors[name]
        for c in s.file_channels:
            ch = s.channel_info[c]
            assert ch.obs_error_k == (ch.noise_k if ch.surface_blind else 3.0 * ch.noise_k), (name, c)
    for name in ("amsr2", "gmi", "ssmisf17", "windsat"):
        assert all(ch.noise_k == ch.obs_error_k for ch in cat.sensors[name].channel_info.values()), name
    b = build_channel_basis(["amsr2", "atms"])
    np.testing.assert_array_equal(b.noise_k[:10], b.obs_error_k[:10])  # AMSR2
    np.testing.assert_array_equal(b.obs_error_k[10:], 3 * b.noise_k[10:])  # ATMS
    assert b.noise_k.dtype == np.float32


def test_both_frequency_conventions():
    """This project's network frequency and the reference v2 code's, per sensor and channel."""
    b = build_channel_basis(["amsr2", "gmi", "ssmisf17", "atms"])
    f, r, c = b.freq_ghz, b.reference_freq_ghz, b.centre_ghz
    i = b.channel_index
    gmi, ssmis, atms = 1, 2, 3
    assert (f[gmi, i["37v"]], r[gmi, i["37v"]], c[gmi, i["37v"]]) == pytest.approx((36.64, 36.5, 36.64))
    assert (f[gmi, i["166v"]], r[gmi, i["166v"]]) == pytest.approx((166.0, 166.5))
    assert (f[gmi, i["183pm7v"]], r[gmi, i["183pm7v"]], c[gmi, i["183pm7v"]]) == pytest.approx((190.31, 183.31, 183.31))
    assert (f[ssmis, i["166h"]], r[ssmis, i["166h"]]) == pytest.approx((150.0, 150.0))
    assert (f[ssmis, i["19v"]], r[ssmis, i["19v"]]) == pytest.approx((19.35, 19.35))
    assert r[ssmis, i["183pm1h"]] == pytest.approx(183.31) and f[ssmis, i["183pm1h"]] == pytest.approx(184.31)
    assert b.catalogue.sensors["ssmisf17"].channel_info["183pm7h"].sidebands_ghz == (6.6,)
    assert (f[atms, i["183pm4.5qh"]], r[atms, i["183pm4.5qh"]]) == pytest.approx((187.81, 183.31))
    assert (f[0, i["37v"]], r[0, i["37v"]]) == pytest.approx((36.5, 36.5))


def _write(tmp_path: Path, text: str, name: str = "user.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD_SENSOR = """
[sensors.mwri]
scan = "conical"
incidence_deg = 53.1
channels = ["10v", "10h", "19v", "19h", "24v", "24h", "37v", "37h", "89v", "89h"]
bias_ice_k = 0.0
bias_ocean_k = 0.0
bias_error_k = 4.0
"""

MISTAKES = [
    # (file text, words the one-line error must contain)
    ("format_version = 1\n[sensors.x\n", ["not valid TOML", "line 2"]),
    ("format_version = 2\n" + GOOD_SENSOR, ["format_version", "expected 1, got 2"]),
    (GOOD_SENSOR, ["format_version", "got None"]),
    ("format_version = 1\n" + GOOD_SENSOR + "colour = 'red'\n", ["sensor 'mwri'", "colour", "unknown field"]),
    (
        "format_version = 1\n" + GOOD_SENSOR.replace("bias_error_k = 4.0\n", ""),
        ["sensor 'mwri'", "bias_error_k", "missing"],
    ),
    ("format_version = 1\n" + GOOD_SENSOR.replace("53.1", '"53.1"'), ["sensor 'mwri'", "incidence_deg", "a number"]),
    ("format_version = 1\n" + GOOD_SENSOR.replace("53.1", "95.0"), ["sensor 'mwri'", "incidence_deg", "<= 90"]),
    ("format_version = 1\n" + GOOD_SENSOR.replace("bias_error_k = 4.0", "bias_error_k = 0"), ["bias_error_k", "> 0"]),
    ("format_version = 1\n" + GOOD_SENSOR.replace('"89h"]', '"89h", "10v"]'), ["channels", "'10v' is listed twice"]),
    ("format_version = 1\n" + GOOD_SENSOR.replace('"89h"]', '"90h"]'), ["channels", "'90h' is not defined"]),
    ("format_version = 1\n" + GOOD_SENSOR.replace('"89h"]', '"89qv"]'), ["channels", "'89qv' is quasi-polarised"]),
    ("format_version = 1\n" + GOOD_SENSOR.replace('"conical"', '"helical"'), ["sensor 'mwri'", "scan", "'helical'"]),
    (
        "format_version = 1\n" + GOOD_SENSOR.replace('scan = "conical"\nincidence_deg = 53.1', 'scan = "cross-track"'),
        ["sensor 'mwri'", "max_scan_angle_deg", "missing"],
    ),
    (
        'format_version = 1\n[channels]\n"95x" = { centre_ghz = 95.0, pol = "X", obs_error_k = 3.0 }\n',
        ["channel '95x'", "pol", "'X'"],
    ),
    (
        'format_version = 1\n[channels]\n"95v" = { centre_ghz = -95.0, pol = "V", obs_error_k = 3.0 }\n',
        ["channel '95v'", "centre_ghz", "> 0"],
    ),
    (
        'format_version = 1\n[channels]\n"95v" = { centre_ghz = 95.0, pol = "V" }\n',
        ["channel '95v'", "obs_error_k", "missing"],
    ),
    (
        'format_version = 1\n[channels]\n"95v" = { centre_ghz = 95.0, pol = "V", obs_error_k = 3.0, noise_k = "1" }\n',
        ["channel '95v'", "noise_k", "expected a number, got '1'"],
    ),
    (
        'format_version = 1\n[channels]\n"95v" = { centre_ghz = 95.0, pol = "V", obs_error_k = 3.0, noise_k = 0.0 }\n',
        ["channel '95v'", "noise_k", "> 0"],
    ),
    (
        'format_version = 1\n[channels]\n"95v" = '
        '{ centre_ghz = 95.0, pol = "V", obs_error_k = 1, sidebands_ghz = [1, 2, 3] }\n',
        ["channel '95v'", "sidebands_ghz", "0, 1 or 2"],
    ),
    (
        "format_version = 1\n" + GOOD_SENSOR + '[sensors.mwri.channel]\n"166v" = { centre_ghz = 150.0 }\n',
        ["sensor 'mwri'", "channel", "'166v' is not one of this sensor's channels"],
    ),
    (
        "format_version = 1\n" + GOOD_SENSOR + '[sensors.mwri.channel]\n"89v" = { frequency = 150.0 }\n',
        ["sensor 'mwri' channel '89v'", "frequency", "unknown field"],
    ),
    ("format_version = 1\nsensor = 3\n", ["sensor", "unknown top-level entry"]),
]


def test_a_file_that_is_not_text_is_one_line_naming_it(tmp_path):
    """A binary file (here a NetCDF-4/HDF5 header) given as the catalogue: one line, no traceback."""
    path = tmp_path / "grid.nc"
    path.write_bytes(b"\x89HDF\r\n\x1a\n\x00\x00\xff\xfe")
    with pytest.raises(SeaIceError, match=r"grid\.nc: not a UTF-8 text file \(byte 0: .*\); give a TOML catalogue"):
        load_catalogue(path)


@pytest.mark.parametrize("text,words", MISTAKES, ids=[f"mistake{k}" for k in range(len(MISTAKES))])
def test_malformed_file_is_one_line_naming_file_entry_and_field(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(SeaIceError) as exc:
        load_catalogue(path)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(str(path)), msg
    for w in words:
        assert w in msg, (w, msg)


def test_missing_file(tmp_path):
    with pytest.raises(SeaIceError, match=r"--sensor-catalogue: catalogue file .*nope.toml not found"):
        load_catalogue(tmp_path / "nope.toml")


def test_user_file_adds_a_sensor_and_a_channel_and_overrides_one(tmp_path):
    text = (
        "format_version = 1\n"
        '[channels]\n"118qh" = { centre_ghz = 118.75, sidebands_ghz = [1.2], pol = "QH", obs_error_k = 3.0 }\n'
        + GOOD_SENSOR
        + "[sensors.amsr2]\n"  # replaces the shipped amsr2 entry as a whole
        'scan = "conical"\nincidence_deg = 55.0\nchannels = ["10v", "10h"]\n'
        "bias_ice_k = 1.0\nbias_ocean_k = 2.0\nbias_error_k = 3.0\n"
        "[sensors.mws]\n"
        'scan = "cross-track"\nmax_scan_angle_deg = 49.3\naltitude_km = 830.0\n'
        'channels = ["23.8qv", "118qh", "183pm7qh"]\nbias_ice_k = 0.0\nbias_ocean_k = 0.0\nbias_error_k = 4.0\n'
    )
    cat = load_catalogue(_write(tmp_path, text))
    assert cat.sensors["mwri"].incidence_deg == 53.1 and cat.sensors["amsr2"].channels == ("10v", "10h")
    assert cat.sensors["amsr2"].bias_ice_k == 1.0 and cat.sensors["atms"].channels  # shipped ones stay
    assert list(cat.channels)[-1] == "118qh"  # added channels after the shipped ones (basis order)
    b = build_channel_basis(["mws", "mwri"], cat)
    assert b.channel_names[-1] == "118qh" and b.pol[b.channel_index["118qh"]] == POL_QH
    assert b.cross_track.tolist() == [True, False]
    # the shipped catalogue itself is untouched
    assert load_catalogue().sensors["amsr2"].bias_ice_k == 5.0 and "mwri" not in load_catalogue().sensors
    # a saved catalogue (model, export) rebuilds the same sensors
    again = catalogue_from_dict(json.loads(cat.to_json(["mws", "mwri"])), "saved")
    b2 = build_channel_basis(["mws", "mwri"], again)
    assert b2.channel_names == b.channel_names
    np.testing.assert_array_equal(b2.freq_ghz, b.freq_ghz)
    assert again.sensors["mws"] == cat.sensors["mws"]


def test_shipped_file_is_in_the_package_and_v_h_codes_unchanged():
    assert shipped_catalogue_path().is_file()
    b = build_channel_basis(["amsr2"])
    assert b.pol[:2].tolist() == [POL_V, POL_H]
