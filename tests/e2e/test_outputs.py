"""Output writers/readers (io/outputs.py): names, attributes, NaN fill, atomic writes, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import outputs as o
from empirical_seaice.sensors import build_channel_basis

from .fakes import make_obs


def _every_variable_has_units(ds: xr.Dataset) -> None:
    """Every numeric variable has units and a long name, except CF bounds (they inherit them);
    a decoded time keeps its units in the encoding."""
    bounds = {v.attrs["bounds"] for v in ds.variables.values() if "bounds" in v.attrs}
    for name, var in ds.variables.items():
        if var.dtype.kind in "OSU" or name in bounds:
            continue
        units = var.attrs.get("units", var.encoding.get("units"))
        assert units and "long_name" in var.attrs, name


def test_seaice_time_is_cf_with_an_epoch_and_bounds(tmp_path):
    jd = o.step_julian_day(2459000.0, 0, 3, 1)  # JD 2459000.0 = 2020-05-30 12:00 UTC
    path = o.write_seaice(tmp_path / "seaice_t.nc", np.zeros((2, 4), np.float32), jd, lon=[1, 2], lat=[70, 71], nlag=1)
    with xr.open_dataset(path, decode_times=False) as raw:
        assert raw["time"].attrs["units"] == "days since 1970-01-01 00:00:00"
        assert raw["time"].attrs["calendar"] == "standard" and raw["time"].attrs["bounds"] == "time_bnds"
        # window centre of lag column 0: 2459000.0 + 0.375 + (-1 + 0.5) = JD 2458999.875 = 2020-05-30 09:00 UTC
        np.testing.assert_allclose(raw["time"].values, jd - 2440587.5)
        np.testing.assert_allclose(raw["time_bnds"].values[:, 1] - raw["time_bnds"].values[:, 0], 1.0)
        assert "units" not in raw["time_bnds"].attrs and "_FillValue" not in raw["time_bnds"].attrs
        assert raw.attrs["Conventions"] == "CF-1.10" and "10.1029/2023MS004080" in raw.attrs["references"]
        assert raw["seaice"].attrs["standard_name"] == "sea_ice_area_fraction"
        assert raw["lat"].attrs["standard_name"] == "latitude"
    with xr.open_dataset(path) as ds:
        assert str(ds["time"].values[0]) == "2020-05-30T09:00:00.000000000"
        np.testing.assert_allclose(ds["julian_day"].values, jd)


def test_names_are_fixed_length_char_arrays(tmp_path):
    import netCDF4

    basis = build_channel_basis(["amsr2", "gmi"])
    path = o.write_tb(tmp_path / "tbsim_t.nc", np.zeros((2, basis.nchan)), basis, "tbsim")
    with netCDF4.Dataset(path) as nc:
        v = nc["channel_name"]
        assert v.dtype == np.dtype("S1") and v.dimensions == ("channel", "channel_name_strlen")
        assert nc.dimensions["channel_name_strlen"].size == max(len(c) for c in basis.channel_names)
    with xr.open_dataset(path) as ds:
        assert list(ds["channel_name"].values) == list(basis.channel_names)


def test_output_path_and_tag():
    assert o.output_path("out", "seaice", "demo").as_posix() == "out/seaice_demo.nc"
    assert o.output_path("out", "model", "demo").as_posix() == "out/model_demo.pt"
    assert o.check_tag("a-1.b") == "a-1.b"
    for bad in ("", "a/b", "a b", ".."):
        with pytest.raises(SeaIceError, match="--tag"):
            o.check_tag(bad)
    with pytest.raises(SeaIceError, match="--modeltag"):
        o.check_tag("x/y", "--modeltag")


def test_step_julian_day_is_window_centre():
    # origin 2459000.0: step 0 window starts 2459000.375 (21 UTC), centre +0.5 day.
    jd = o.step_julian_day(2459000.0, stepstart=2, nstep=2, nlag=1)
    # lag column = absolute step 1: window [2459001.375, 2459002.375), centre 2459001.875
    np.testing.assert_allclose(jd, [2459001.875, 2459002.875, 2459003.875])
    jd2 = o.step_julian_day(2459000.0, 0, 2, 0, steps_per_day=2)
    np.testing.assert_allclose(jd2, [2459000.625, 2459001.125])


def test_seaice_roundtrip_with_cf_attributes(tmp_path):
    sic = np.arange(12, dtype=np.float32).reshape(3, 4) / 12
    jd = o.step_julian_day(2459000.0, 0, 3, 1)
    path = o.write_seaice(tmp_path / "seaice_t.nc", sic, jd, lon=[1, 2, 3], lat=[70, 71, 72], nlag=1)
    with xr.open_dataset(path) as ds:
        assert ds["seaice"].dims == ("grid", "lagstep")
        np.testing.assert_array_equal(ds["seaice"].values, sic)
        np.testing.assert_array_equal(ds["lat"].values, [70, 71, 72])
        np.testing.assert_allclose(ds["julian_day"].values, jd)
        assert ds["seaice"].attrs["units"] == "1"
        assert ds["lon"].attrs["units"] == "degrees_east"
        _every_variable_has_units(ds)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seaice_t.nc"]  # no temporary left


def test_tb_masked_values_are_nan_with_fillvalue(tmp_path):
    obs = make_obs()
    path = o.write_tb(tmp_path / "tbsim_t.nc", obs.tb_obs_k, obs.basis, "tbsim", obs.mask)
    with xr.open_dataset(path, mask_and_scale=False) as raw:
        assert np.isnan(raw["tb"].attrs["_FillValue"])
    with xr.open_dataset(path) as ds:
        tb = ds["tb"].values
        assert ds["tb"].dims == ("iobs", "channel")
        assert list(ds["channel_name"].values) == list(obs.basis.channel_names)
        assert ds["tb"].attrs["units"] == "K"
    assert np.array_equal(np.isnan(tb), ~obs.mask)
    np.testing.assert_array_equal(tb[obs.mask], obs.tb_obs_k[obs.mask])
    # amsr2 (sensor 0) has no 166v; gmi (sensor 1) has no 24h
    c166, c24h = obs.basis.channel_index["166v"], obs.basis.channel_index["24h"]
    assert np.isnan(tb[0, c166]) and tb[1, c166] == obs.tb_obs_k[1, c166]
    assert np.isnan(tb[1, c24h]) and tb[0, c24h] == obs.tb_obs_k[0, c24h]


def test_tbobs_has_per_observation_geolocation(tmp_path):
    obs = make_obs(nobs=5)
    path = o.write_tbobs(tmp_path / "tbobs_t.nc", obs)
    with xr.open_dataset(path) as ds:
        _every_variable_has_units(ds)
        np.testing.assert_array_equal(ds["lon"].values, obs.lon[obs.igrid])
        np.testing.assert_array_equal(ds["lat"].values, obs.lat[obs.igrid])
        np.testing.assert_array_equal(ds["julian_day"].values, obs.julian_day)
        np.testing.assert_array_equal(ds["isensor"].values, obs.isensor)
        np.testing.assert_array_equal(ds["igrid"].values, obs.igrid)
        np.testing.assert_array_equal(ds["istep"].values, obs.istep)
        assert ds["isensor"].attrs["flag_meanings"] == "amsr2 gmi"
        # no variable has the name of a dimension it is not the coordinate of (netCDF-C hides such a
        # variable from HDF5 readers as _nc4_non_coord_<name>)
        assert not [n for n, v in ds.variables.items() if n in ds.dims and v.dims != (n,)]
        assert list(ds["sensor_name"].values) == ["amsr2", "gmi"]
        f = ds["frequency"].values
        assert f[1, obs.basis.channel_index["37v"]] == pytest.approx(36.64)  # GMI override
        assert f[0, obs.basis.channel_index["37v"]] == pytest.approx(36.5)
        # the band's centre under sensor_band_central_radiation_frequency (183.31 for 183 +/- 7, not the
        # network's upper sideband 190.31), NaN where the sensor lacks the channel (AMSR2 183, 166 GHz)
        assert ds["frequency"].attrs["standard_name"] == "sensor_band_central_radiation_frequency"
        assert f[1, obs.basis.channel_index["183pm7v"]] == pytest.approx(183.31)
        assert np.isnan(f[0, obs.basis.channel_index["183pm7v"]]) and np.isnan(f[0, obs.basis.channel_index["166v"]])


def test_large_variables_are_compressed(tmp_path):
    basis = build_channel_basis(["amsr2"])
    tb = np.full((20000, basis.nchan), 200.0, dtype=np.float32)
    path = o.write_tb(tmp_path / "tbzero_t.nc", tb, basis, "tbzero")
    with xr.open_dataset(path) as ds:
        assert ds["tb"].encoding.get("zlib") is True
        assert ds["channel_name"].encoding.get("zlib", False) is False
    assert path.stat().st_size < tb.nbytes / 10  # constant field compresses well


def test_write_replaces_existing_file_atomically(tmp_path):
    basis = build_channel_basis(["amsr2"])
    path = tmp_path / "ice_emis_t.nc"
    o.write_ice_emis(path, np.full((2, basis.nchan), 0.9), basis)
    o.write_ice_emis(path, np.full((2, basis.nchan), 0.8), basis)
    with xr.open_dataset(path) as ds:
        np.testing.assert_allclose(ds["ice_emis"].values, 0.8)
    assert [p.name for p in tmp_path.iterdir()] == ["ice_emis_t.nc"]


def test_writer_refuses_a_variable_without_units(tmp_path):
    ds = xr.Dataset({"x": (("a",), np.zeros(3), {"long_name": "x"})})
    with pytest.raises(ValueError, match="units"):
        o.write_dataset(ds, tmp_path / "x.nc")
    assert list(tmp_path.iterdir()) == []


def test_models_file_names_inputs_and_stores_setup(tmp_path):
    basis = build_channel_basis(["amsr2", "gmi"])
    kernel = np.arange(35, dtype=np.float32).reshape(5, 7)
    path = o.write_models(
        tmp_path / "models_t.nc",
        weights={
            "hidden_kernel": kernel,
            "hidden_bias": np.zeros(7),
            "output_kernel": np.ones((7, 2)),
            "output_bias": np.zeros(2),
        },
        input_names=["x_T", "P0", "P1", "Q0", "f/100"],
        input_layer="hidden_kernel",
        basis=basis,
        wind_coef=np.full(basis.nchan, 1e-3),
        bias_ice=np.full((2, basis.nchan), 5.0),
        bias_ocean=np.full((2, basis.nchan), 2.5),
        setup={"model": {"version": "v2", "hidden": 7}},
        epoch_losses={"obs": [10.0, 5.0]},
        batch_losses={"obs": [12.0, 9.0, 6.0, 4.0]},
    )
    with xr.open_dataset(path) as ds:
        _every_variable_has_units(ds)
        w = ds["emis_hidden_kernel"]
        assert w.dims[0] == "input" and w.attrs["inputs"] == "x_T, P0, P1, Q0, f/100"
        assert list(ds["input_name"].values) == ["x_T", "P0", "P1", "Q0", "f/100"]
        np.testing.assert_array_equal(w.values, kernel)
        assert ds["bias_ice"].dims == ("sensor", "channel")
        assert ds["wind_coef"].attrs["units"] == "s m-1"
        np.testing.assert_array_equal(ds["loss_epoch_obs"].values, [10.0, 5.0])
        np.testing.assert_array_equal(ds["loss_batch_obs"].values, [12.0, 9.0, 6.0, 4.0])
        assert ds.attrs["setup_model"] == '{"hidden": 7, "version": "v2"}'
    with pytest.raises(ValueError, match="hidden_kernel"):
        o.write_models(
            tmp_path / "bad.nc",
            weights={"hidden_kernel": np.zeros((4, 7))},
            input_names=["x_T", "P0", "P1", "Q0", "f/100"],
            input_layer="hidden_kernel",
            basis=basis,
            wind_coef=np.zeros(basis.nchan),
            bias_ice=np.zeros((2, basis.nchan)),
            bias_ocean=np.zeros((2, basis.nchan)),
            setup={},
        )


def test_read_variable_errors(tmp_path):
    basis = build_channel_basis(["amsr2"])
    path = o.write_tb(tmp_path / "tbsim_t.nc", np.ones((2, basis.nchan)), basis, "tbsim")
    np.testing.assert_array_equal(o.read_variable(path, "tb"), np.ones((2, basis.nchan)))
    with pytest.raises(SeaIceError, match="no variable 'seaice'"):
        o.read_variable(path, "seaice")
    with pytest.raises(SeaIceError, match="not found"):
        o.read_variable(tmp_path / "nothing.nc", "tb")


def test_checkpoint_roundtrip_and_errors(tmp_path):
    path = o.save_checkpoint(tmp_path / "model_t.pt", {"state_dict": {"w": torch.arange(3.0)}, "format": 1})
    payload = o.load_checkpoint(path)
    assert torch.equal(payload["state_dict"]["w"], torch.arange(3.0))
    with pytest.raises(SeaIceError, match="--modeltag: no trained model"):
        o.load_checkpoint(tmp_path / "model_missing.pt")
    (tmp_path / "model_junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SeaIceError, match="not a readable model checkpoint"):
        o.load_checkpoint(tmp_path / "model_junk.pt")
    (tmp_path / "model_cut.pt").write_bytes(path.read_bytes()[:-100])
    with pytest.raises(
        SeaIceError, match=r"model_cut.pt: not a readable model checkpoint \(the file is damaged or cut"
    ):
        o.load_checkpoint(tmp_path / "model_cut.pt")
    torch.save([1, 2], tmp_path / "model_list.pt")
    with pytest.raises(SeaIceError, match="no state_dict"):
        o.load_checkpoint(tmp_path / "model_list.pt")
