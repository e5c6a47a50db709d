"""The SMRT angular anomaly table of the twin's cross-track sounders."""

from __future__ import annotations

import numpy as np
import pytest

from empirical_seaice.twin.ice_emissivity import (
    ice_emissivity,
    ice_emissivity_angle_anomaly,
    load_angular_table,
    load_ice_table,
)


@pytest.fixture(scope="module")
def angular():
    return load_angular_table()


def test_zero_at_53_degrees_and_v_equals_h_at_nadir(angular):
    i53 = int(np.flatnonzero(angular.incidence_deg == 53.0)[0])
    assert np.all(angular.anomaly[..., i53, :] == 0.0)
    # at nadir V and H are the same wave: e_V(0) = e_H(0) for every column of the table
    base = load_ice_table()
    for it in range(2):
        for isd, depth in enumerate(angular.snow_depth_m):
            for iw, wet in enumerate(angular.wetness):
                e53 = ice_emissivity(base, angular.frequency_ghz[:, None], [[0, 1]], it, depth, 0.10, 260.0, wet)
                e0 = e53 + angular.anomaly[it, isd, iw, :, 0, :]
                np.testing.assert_allclose(e0[:, 0], e0[:, 1], atol=2e-3)


def test_h_falls_and_v_rises_towards_the_brewster_angle(angular):
    d = ice_emissivity_angle_anomaly(angular, 18.7, [0, 1], 0.0, 0.10, 0.0, [[0.0], [35.0], [65.0]])
    assert d[0, 1] > d[1, 1] > 0 > d[2, 1]  # H: above its 53-deg value at nadir, below at 65 deg
    assert d[0, 0] < d[1, 0] < 0  # V: below its 53-deg value towards nadir


def test_interpolation_exact_at_nodes_and_clamped(angular):
    got = ice_emissivity_angle_anomaly(angular, 89.0, 1, 1.0, 0.40, 0.03, 20.0)
    f = int(np.flatnonzero(angular.frequency_ghz == 89.0)[0])
    assert got == pytest.approx(float(angular.anomaly[1, 2, 1, f, 1, 1]), abs=1e-7)
    assert ice_emissivity_angle_anomaly(angular, 89.0, 1, 1.0, 0.40, 0.03, 80.0) == pytest.approx(
        float(angular.anomaly[1, 2, 1, f, -1, 1]), abs=1e-7
    )


@pytest.mark.slow
def test_shipped_angular_table_is_what_the_generator_computes(angular):
    pytest.importorskip("smrt")
    from empirical_seaice.twin import smrt_angular, smrt_column

    medium = smrt_column.build_column("multiyear", 0.10, 0.10, 260.0, 0.0)
    e = smrt_angular.angular_emissivity(medium)
    np.testing.assert_allclose(e - e[:, 4:5, :], angular.anomaly[1, 1, 0], atol=1e-6)


def test_twin_without_ice_view_angle_sees_the_53_degree_table_at_every_angle(tmp_path):
    """TwinConfig.ice_view_angle=False: an ATMS footprint's ice emissivity is the V/H mix of the
    53-deg table whatever its zenith angle (the diagnostic twin of docs/usage.md, "Sensors"); the angular
    table would change it by more than 0.02 near nadir."""
    import torch
    import xarray as xr

    from empirical_seaice.model.physics import polarisation_weight_v, scan_angle_cos2
    from empirical_seaice.sensors import load_catalogue
    from empirical_seaice.twin import generate_twin, get_twin_preset

    cfg = get_twin_preset(
        "tiny",
        sensors=("atms",),
        resolution_km=200.0,
        lat_limit_deg=65.0,
        days=1,
        keep_fraction=0.2,
        ice_view_angle=False,
    )
    generate_twin(cfg, tmp_path / "twin")
    atms = load_catalogue().sensors["atms"]
    info = [atms.channel_info[c] for c in atms.file_channels]
    freq = np.array([c.freq_ghz for c in info])[None, :]
    pol = np.array([c.pol for c in info])

    def read(kind, name):
        path = tmp_path / "twin" / (f"truth/atms/truth_{name}.nc" if kind == "truth" else f"atms/field_twin_{name}.nc")
        with xr.open_dataset(path) as ds:
            return ds[name].values.astype(np.float64)

    g = read("data", "IGRID").astype(np.int64)
    zen = read("data", "ZENITH")
    t_ice, wet, got = read("truth", "T_ICE")[:, None], read("truth", "WETNESS")[:, None], read("truth", "EMIS_ICE")
    with xr.open_dataset(tmp_path / "twin" / "truth" / "truth_state.nc") as ds:
        myi, snow, corr = (
            ds[v].values[g, 0].astype(np.float64)[:, None] for v in ("MYI_FRACTION", "SNOW_DEPTH", "CORR_LENGTH")
        )
    table = load_ice_table()
    e_v = ice_emissivity(table, freq, 0, myi, snow, corr, t_ice, wet)
    e_h = ice_emissivity(table, freq, 1, myi, snow, corr, t_ice, wet)
    c2 = scan_angle_cos2(torch.as_tensor(zen), torch.tensor(atms.altitude_km, dtype=torch.float64))
    w_v = polarisation_weight_v(torch.as_tensor(pol), c2).numpy()
    expected = w_v * e_v + (1.0 - w_v) * e_h
    np.testing.assert_allclose(got, expected, atol=2e-4)
    # what the angular table would have added near nadir (zenith < 20 deg)
    a_v = ice_emissivity_angle_anomaly(load_angular_table(), freq, 0, myi, snow, wet, zen[:, None])
    a_h = ice_emissivity_angle_anomaly(load_angular_table(), freq, 1, myi, snow, wet, zen[:, None])
    near_nadir = zen < 20.0
    assert near_nadir.sum() > 20
    assert np.max(np.abs(w_v * a_v + (1.0 - w_v) * a_h)[near_nadir]) > 0.02


def test_regenerating_a_table_without_smrt_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    """``python -m empirical_seaice.twin.smrt_table`` where SMRT (an optional extra) is missing: one line
    naming the extra, before anything is computed or written, not a traceback from deep in a column."""
    import sys

    from empirical_seaice.twin import smrt_table

    monkeypatch.setitem(sys.modules, "smrt", None)
    with pytest.raises(SystemExit) as exc:
        smrt_table.main(["--output", str(tmp_path / "t.nc"), "--quiet"])
    assert exc.value.code == 2
    assert "the SMRT model is not installed: pip install 'empirical-seaice[smrt]'" in capsys.readouterr().err
    assert not (tmp_path / "t.nc").exists()
