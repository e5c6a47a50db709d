"""Layouts A, B and C read value by value into the unified channel basis."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from empirical_seaice.all_sky import ALL_SKY_FIELDS, CLEAR_CLOUDY_FIELDS, all_sky_fields
from empirical_seaice.io import find_data_files, read_training_data
from empirical_seaice.io.layout_writers import write_netcdf

NGRID, NSTEP, NLAG = 12, 4, 1  # as in conftest.py

CHANNEL_VARIABLES = ("OBSVALUE", "EMIS_WATER", "TAUSFC", "TDOWN", "TUP", "TAUSFC_CLD", "TDOWN_CLD", "TUP_CLD")
FIELDS = ("tb_obs_k", "emis_water", *ALL_SKY_FIELDS)


def _expected(raw: dict, cols=slice(None)) -> dict[str, np.ndarray]:
    """The per-channel fields the reader makes of a sensor's file variables ``raw`` (file columns ``cols``):
    the TBs and ocean emissivity as written, the atmosphere folded (all_sky_fields) with the cloud fraction."""
    folded = all_sky_fields(
        **{name: raw[var][:, cols] for var, name in zip(CHANNEL_VARIABLES[2:], CLEAR_CLOUDY_FIELDS, strict=True)},
        cloud_fraction=raw["CLOUD_FRACTION"],
    )
    return {"tb_obs_k": raw["OBSVALUE"][:, cols], "emis_water": raw["EMIS_WATER"][:, cols], **folded}


OBS_FIELDS = {"TSFC": "t_skin_k", "WINDSPEED10M": "wind_ms", "CLOUD_FRACTION": "cloud_fraction", "ZENITH": "zenith_deg"}


def _expected_step(jd):
    return np.floor(jd - 2459000.0 - 0.375).astype(int)


def test_layout_a_drops_first_four_amsr2_channels(dataset):
    ds = dataset("A")
    raw = ds.fields["amsr2"]
    assert raw["OBSVALUE"].shape == (40, 14)
    assert find_data_files(ds.config).layout == "A"
    obs, bg = read_training_data(ds.config, NLAG)
    assert obs.nobs == 40 and obs.basis.channel_names == (
        "10v",
        "10h",
        "19v",
        "19h",
        "24v",
        "24h",
        "37v",
        "37h",
        "89v",
        "89h",
    )
    np.testing.assert_array_equal(obs.obs_index, np.arange(40))
    # Basis slot c holds file column c + 4 (6.9v, 6.9h, 7.3v, 7.3h dropped).
    for key, want in _expected(raw, slice(4, None)).items():
        np.testing.assert_array_equal(getattr(obs, key), want, err_msg=key)
        assert getattr(obs, key).dtype == np.float32
    # The fixture's channel j is near 150 + 10 j K: 10v (file column 4) is near 190 K.
    assert 185.0 <= obs.tb_obs_k[:, 0].min() and obs.tb_obs_k[:, 0].max() <= 195.0
    assert obs.mask.all()
    for var, key in OBS_FIELDS.items():
        np.testing.assert_array_equal(getattr(obs, key), raw[var])
    np.testing.assert_array_equal(obs.igrid, raw["IGRID"])
    np.testing.assert_array_equal(obs.julian_day, raw["JULIAN_DAY"])
    assert obs.julian_day.dtype == np.float64
    np.testing.assert_array_equal(obs.istep, _expected_step(raw["JULIAN_DAY"]))
    assert obs.jd_origin == 2459000.0 and obs.nstep == NSTEP and obs.ngrid == NGRID
    assert (obs.isensor == 0).all()
    np.testing.assert_array_equal(bg.sic, ds.background["sic"])
    np.testing.assert_array_equal(bg.t_skin_map_k, ds.background["t_skin_map_k"])
    np.testing.assert_array_equal(obs.lon, ds.background["lon"])
    np.testing.assert_array_equal(obs.lat, ds.background["lat"])


def test_layout_a_with_ten_channels_is_accepted(dataset):
    def ten(sensor, f):
        for var in CHANNEL_VARIABLES:
            f[var] = f[var][:, 4:].copy()

    ds = dataset("A", edit=ten)
    obs, _ = read_training_data(ds.config, NLAG)
    np.testing.assert_array_equal(obs.tb_obs_k, ds.fields["amsr2"]["OBSVALUE"])


def test_layout_b_single_sensor(dataset):
    ds = dataset("B", sensors=("gmi",))
    assert find_data_files(ds.config).layout == "B"
    raw = ds.fields["gmi"]
    obs, _ = read_training_data(ds.config, NLAG)
    names = obs.basis.channel_names
    # GMI's unified basis on its own: catalogue order puts 183pm7v before 183pm3v.
    assert names == (
        "10v",
        "10h",
        "19v",
        "19h",
        "24v",
        "37v",
        "37h",
        "89v",
        "89h",
        "166v",
        "166h",
        "183pm7v",
        "183pm3v",
    )
    # File order has 183pm3v (column 11) before 183pm7v (column 12).
    np.testing.assert_array_equal(obs.tb_obs_k[:, names.index("183pm3v")], raw["OBSVALUE"][:, 11])
    np.testing.assert_array_equal(obs.tb_obs_k[:, names.index("183pm7v")], raw["OBSVALUE"][:, 12])
    np.testing.assert_array_equal(obs.tb_obs_k[:, :11], raw["OBSVALUE"][:, :11])
    np.testing.assert_array_equal(obs.igrid, raw["IGRID"])


def test_layout_c_two_sensors_common_igrid(dataset):
    def add_local_igrid(sensor, f):
        # A sensor-local IGRID that differs: multi-sensor runs must use COMMON_IGRID.
        f["IGRID"] = (f["COMMON_IGRID"] + 1).astype(np.int32)

    ds = dataset("C", sensors=("amsr2", "gmi"), edit=add_local_igrid)
    assert find_data_files(ds.config).layout == "C"
    obs, _ = read_training_data(ds.config, NLAG)
    b = obs.basis
    assert b.channel_names == (
        "10v",
        "10h",
        "19v",
        "19h",
        "24v",
        "24h",
        "37v",
        "37h",
        "89v",
        "89h",
        "166v",
        "166h",
        "183pm7v",
        "183pm3v",
    )
    # Hand-written maps: file column -> basis slot.
    amsr2_map = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    gmi_map = [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 13, 12]
    assert obs.nobs == 80
    a_rows, g_rows = slice(0, 40), slice(40, 80)
    np.testing.assert_array_equal(obs.isensor, [0] * 40 + [1] * 40)
    want_a, want_g = _expected(ds.fields["amsr2"]), _expected(ds.fields["gmi"])
    for key in FIELDS:
        arr = getattr(obs, key)
        np.testing.assert_array_equal(arr[a_rows][:, amsr2_map], want_a[key])
        np.testing.assert_array_equal(arr[g_rows][:, gmi_map], want_g[key])
        # Channels a sensor lacks: masked and zero.
        assert (arr[a_rows][:, [10, 11, 12, 13]] == 0).all()
        assert (arr[g_rows][:, 5] == 0).all()
    mask_a = np.zeros(14, bool)
    mask_a[amsr2_map] = True
    mask_g = np.zeros(14, bool)
    mask_g[gmi_map] = True
    assert (obs.mask[a_rows] == mask_a).all() and (obs.mask[g_rows] == mask_g).all()
    np.testing.assert_array_equal(obs.igrid[a_rows], ds.fields["amsr2"]["COMMON_IGRID"])
    np.testing.assert_array_equal(obs.igrid[g_rows], ds.fields["gmi"]["COMMON_IGRID"])
    np.testing.assert_array_equal(obs.obs_index, np.r_[np.arange(40), np.arange(40)])


def test_single_sensor_prefers_common_igrid_when_present(dataset):
    def both(sensor, f):
        f["COMMON_IGRID"] = ((f["IGRID"] + 5) % NGRID).astype(np.int32)

    ds = dataset("B", edit=both)
    obs, _ = read_training_data(ds.config, NLAG)
    np.testing.assert_array_equal(obs.igrid, ds.fields["amsr2"]["COMMON_IGRID"])


@pytest.mark.parametrize("layout", ["A", "B"])
def test_isolated_missing_values_are_masked_or_dropped(dataset, layout):
    fill = -32000.0  # only recognisable through the file's _FillValue attribute

    def spoil(sensor, f):
        f["OBSVALUE"][3, 6] = np.nan  # file column c -> basis slot c - off
        f["OBSVALUE"][5, 5] = -999.0  # conventional fill
        f["EMIS_WATER"][7, 7] = 9.96921e36  # netCDF default fill
        f["TAUSFC"][8, 8] = 1.5  # out of range
        tdown = np.ma.masked_array(f["TDOWN"], mask=np.zeros_like(f["TDOWN"], bool))
        tdown[9, 9] = np.ma.masked  # _FillValue in the file
        f["TDOWN"] = tdown
        f["TSFC"][10] = np.nan  # per-observation: drop
        f["WINDSPEED10M"][11] = 150.0  # out of range: drop
        f["CLOUD_FRACTION"][12] = -999.0  # fill: drop
        f["ZENITH"][13] = np.nan  # optional: kept, NaN

    ds = dataset(layout, edit=spoil, fill_value=fill)
    off = 4 if layout == "A" else 0
    obs, _ = read_training_data(ds.config, NLAG)
    kept = np.setdiff1d(np.arange(40), [10, 11, 12])
    np.testing.assert_array_equal(obs.obs_index, kept)
    row = {i: int(np.flatnonzero(kept == i)[0]) for i in (3, 5, 7, 8, 9, 13)}
    bad = {(row[3], 6 - off), (row[5], 5 - off), (row[7], 7 - off), (row[8], 8 - off), (row[9], 9 - off)}
    expected_mask = np.ones((37, 10), bool)
    for r, c in bad:
        expected_mask[r, c] = False
    np.testing.assert_array_equal(obs.mask, expected_mask)
    for key in FIELDS:
        for r, c in bad:
            assert getattr(obs, key)[r, c] == 0.0, key
    # An unaffected value next to a masked one is read as written.
    assert obs.tb_obs_k[row[3], 7 - off] == ds.fields["amsr2"]["OBSVALUE"][3, 7]
    assert np.isnan(obs.zenith_deg[row[13]])
    assert np.isfinite(np.delete(obs.zenith_deg, row[13])).all()


@pytest.mark.parametrize("layout", ["A", "B"])
def test_zenith_absent_gives_nan(dataset, layout):
    ds = dataset(layout, edit=lambda s, f: f.pop("ZENITH"))
    obs, _ = read_training_data(ds.config, NLAG)
    assert np.isnan(obs.zenith_deg).all() and obs.nobs == 40


@pytest.mark.parametrize("var", ["OBSVALUE", "TAUSFC_CLD"])
def test_transposed_channel_variable_is_accepted(dataset, var):
    """A (channel, observation) variable, read through the netCDF library; the atmosphere's among the
    others read straight from their storage."""
    ds = dataset("B")
    raw = ds.fields["amsr2"]
    write_netcdf(ds.root / f"field_v2_{var}.nc", {var: np.ascontiguousarray(raw[var].T)})
    obs, _ = read_training_data(ds.config, NLAG)
    for key, want in _expected(raw).items():
        np.testing.assert_array_equal(getattr(obs, key), want, err_msg=key)


@pytest.mark.parametrize(
    "dims, transpose, warned",
    [
        (("nchan", "nobs"), True, False),  # the names say (channel, observation)
        (("nobs", "nchan"), False, False),
        (("x", "y"), False, True),  # the names say nothing: (observation, channel), with a warning
    ],
)
def test_a_square_channel_variable_follows_its_dimension_names(dataset, caplog, dims, transpose, warned):
    """As many observations as channels: the shape cannot tell the layout (before: always read as
    (observation, channel), a (channel, observation) file misread by up to 137 K without a word)."""
    import netCDF4

    nchan = dataset("B").fields["amsr2"]["OBSVALUE"].shape[1]
    ds = dataset("B", nobs=nchan)
    raw = ds.fields["amsr2"]
    for var in ("OBSVALUE", "TAUSFC"):  # read through the netCDF library, and one of those read from storage
        with netCDF4.Dataset(ds.root / f"field_v2_{var}.nc", "w") as f:
            for d in dims:
                f.createDimension(d, nchan)
            f.createVariable(var, "f4", dims)[:] = raw[var].T if transpose else raw[var]
    caplog.clear()
    obs, _ = read_training_data(ds.config, NLAG)
    for key, want in _expected(raw).items():
        np.testing.assert_array_equal(getattr(obs, key), want, err_msg=key)
    said = [r.getMessage() for r in caplog.records if "read as (observation, channel)" in r.getMessage()]
    for var in ("OBSVALUE", "TAUSFC"):  # (the fixture's other files have dimension names that say nothing)
        mine = [m for m in said if f"field_v2_{var}.nc: variable {var} holds {nchan} observations of {nchan}" in m]
        assert len(mine) == int(warned), said


@pytest.mark.parametrize("period", [{}, {"stepstart": 1, "nsteps": 2}])
def test_small_blocks_give_same_result(dataset, monkeypatch, period):
    from empirical_seaice.io import _netcdf

    def spoil(sensor, f):
        f["TUP"][[2, 9, 30], [0, 3, 5]] = np.nan

    ds = dataset("C", sensors=("amsr2", "gmi"), nobs=50, edit=spoil, **period)
    ref, _ = read_training_data(ds.config, NLAG)
    monkeypatch.setattr(_netcdf, "BLOCK_ROWS", 7)
    assert list(_netcdf.row_blocks(16, start=3)) == [(3, 10), (10, 16)]
    small, _ = read_training_data(ds.config, NLAG)
    for name, arr in ref.arrays().items():
        np.testing.assert_array_equal(getattr(small, name), arr, err_msg=name)


def test_rows_outside_the_period_are_not_read(dataset):
    # Observations are time-sorted: step 3 rows are at the end; their EMIS_WATER
    # is all missing, which would be "mostly missing" if they were read.
    def spoil(sensor, f):
        step = np.floor(f["JULIAN_DAY"] - 2459000.375)
        f["EMIS_WATER"][step == 3] = np.nan
        f["EMIS_WATER"][step == 2] = np.nan

    ds = dataset("B", nobs=40, edit=spoil, nsteps=2)
    obs, _ = read_training_data(ds.config, NLAG)
    step = np.floor(ds.fields["amsr2"]["JULIAN_DAY"] - 2459000.375)
    assert obs.nobs == int((step < 2).sum()) and obs.mask.all()
    # The whole period reads them, and the field is then mostly missing.
    from empirical_seaice.errors import SeaIceError

    with pytest.raises(SeaIceError, match="variable EMIS_WATER mostly missing"):
        read_training_data(dataclasses.replace(ds.config, nsteps=None), NLAG)


def _reference_v2_dataset(root, gmi_day_later=True):
    """The v2 reference's directory: <sensor>/<sensor>_<FIELD>.nc with IGRID only, grid.nc, backgrounds
    without coordinates; GMI starts a day after AMSR2 and SSMIS (its first step is 1)."""
    from empirical_seaice.io.layout_writers import JD_START, example_backgrounds, example_fields, write_reference_v2

    rng = np.random.default_rng(5)
    fields = {}
    for s in ("amsr2", "gmi", "ssmisf17"):
        late = gmi_day_later and s == "gmi"
        start, nstep = (JD_START + 1.0, NSTEP - 1) if late else (JD_START, NSTEP)
        fields[s] = example_fields(s, 30, NGRID, nstep, rng, jd_start=start, grid_variable="IGRID")
    bg = example_backgrounds(NGRID, NSTEP, NLAG, rng)
    write_reference_v2(root, fields, bg["sic"], bg["t_skin_map_k"], bg["lon"], bg["lat"])
    return fields, bg


def test_reference_v2_directory_reads_unchanged(tmp_path):
    """IGRID only for every sensor (no COMMON_IGRID), the grid description grid.nc, and one step origin
    for all sensors: GMI, starting a day later, keeps its day (the reference's per-sensor origin would
    have moved every GMI observation one step earlier)."""
    from empirical_seaice.config import DataConfig

    fields, bg = _reference_v2_dataset(tmp_path)
    assert not list(tmp_path.rglob("*COMMON_IGRID*")) and (tmp_path / "gmi" / "gmi_IGRID.nc").is_file()
    cfg = DataConfig(data=tmp_path, sensors=("amsr2", "gmi", "ssmisf17"))
    files = find_data_files(cfg)
    assert files.layout == "C" and files.grid == tmp_path / "grid.nc"
    obs, background = read_training_data(cfg, NLAG)
    assert obs.nobs == 90 and obs.nstep == NSTEP
    for s, name in enumerate(("amsr2", "gmi", "ssmisf17")):
        rows = obs.isensor == s
        np.testing.assert_array_equal(obs.igrid[rows], fields[name]["IGRID"])
        np.testing.assert_array_equal(obs.istep[rows], _expected_step(fields[name]["JULIAN_DAY"]))
    gmi_steps = obs.istep[obs.isensor == 1]
    assert gmi_steps.min() == 1  # per-sensor origin (the reference's defect) would give 0
    np.testing.assert_allclose(background.lon, bg["lon"], rtol=1e-6)
    np.testing.assert_allclose(background.lat, bg["lat"], rtol=1e-6)


def test_reference_v2_grid_file_must_fit_the_grid(tmp_path):
    from empirical_seaice.config import DataConfig
    from empirical_seaice.errors import SeaIceError

    _reference_v2_dataset(tmp_path)
    write_netcdf(tmp_path / "other_grid.nc", {"lon": np.zeros(5, np.float32), "lat": np.zeros(5, np.float32)})
    cfg = DataConfig(data=tmp_path, sensors=("amsr2",), grid_file=tmp_path / "other_grid.nc")
    with pytest.raises(SeaIceError, match=r"other_grid.nc: variable lon expected shape \(12,\)"):
        read_training_data(cfg, NLAG)
    with pytest.raises(SeaIceError, match="--grid-file: grid description .*missing.nc not found"):
        read_training_data(dataclasses.replace(cfg, grid_file=tmp_path / "missing.nc"), NLAG)


def _grid_file_with_cells(path, lon, lat, area=None, units="km2", transposed=False, shift=0.0):
    """grid.nc with CF bounds (a 0.2° x 0.1° box about each point, named by lon's and lat's ``bounds``)
    and, optionally, cell_area."""
    import netCDF4

    w, e = lon - 0.1 + shift, lon + 0.1 + shift
    s, n = np.clip(lat - 0.05, -90, 90), np.clip(lat + 0.05, -90, 90)
    corners = {"lon_b": np.stack([w, e, e, w], 1), "lat_b": np.stack([s, s, n, n], 1)}
    with netCDF4.Dataset(str(path), "w") as ds:
        ds.createDimension("igrid", len(lon))
        ds.createDimension("nv4", 4)
        for name, arr in (("lon", lon), ("lat", lat)):
            ds.createVariable(name, "f4", ("igrid",))[:] = arr
            ds[name].bounds = f"{name}_b"
            dims = ("nv4", "igrid") if transposed else ("igrid", "nv4")
            b = corners[f"{name}_b"]
            ds.createVariable(f"{name}_b", "f8", dims)[:] = b.T if transposed else b
        if area is not None:
            v = ds.createVariable("areacello", "f8", ("igrid",))
            v.standard_name, v.units = "cell_area", units
            v[:] = area
    return corners


def test_a_grid_description_with_cells_declares_them_for_the_outputs(tmp_path, caplog):
    """grid.nc with CF bounds and a cell_area in km² (found by its standard_name): read with the data,
    fresh and from the cache, the outputs' cells for the run's coordinates are those, their areas in m²;
    a grid.nc with cell_area alone declares none (logged), and cells that do not fit the points, bounds
    written (vertices, grid points) or areas in unknown units are refused naming the file."""
    import logging

    from empirical_seaice.config import DataConfig
    from empirical_seaice.errors import SeaIceError
    from empirical_seaice.io import grid_cells as gc

    _, bg = _reference_v2_dataset(tmp_path / "data")
    lon, lat = bg["lon"].astype(np.float64), bg["lat"].astype(np.float64)
    corners = _grid_file_with_cells(tmp_path / "data" / "grid.nc", lon, lat)
    area_km2 = 1.05 * gc.declared_cells(lon, lat, corners["lon_b"], corners["lat_b"], None).area_m2 / 1e6
    _grid_file_with_cells(tmp_path / "data" / "grid.nc", lon, lat, area_km2)
    cfg = DataConfig(data=tmp_path / "data", sensors=("amsr2", "gmi", "ssmisf17"))
    try:
        for cache in (None, tmp_path / "cache", tmp_path / "cache"):  # fresh, building the cache, from it
            gc.declare(None, None, None)
            _, background = read_training_data(dataclasses.replace(cfg, cache=cache is not None), NLAG, cache)
            cells = gc.grid_cells(background.lon, background.lat)
            assert cells is not None and cells.nvertex == 4
            np.testing.assert_array_equal(cells.lon_bounds, corners["lon_b"])
            np.testing.assert_array_equal(cells.lat_bounds, corners["lat_b"])
            np.testing.assert_allclose(cells.area_m2, area_km2 * 1e6)
        alone = tmp_path / "alone.nc"
        write_netcdf(alone, {"lon": lon.astype(np.float32), "lat": lat.astype(np.float32), "cell_area": area_km2})
        with caplog.at_level(logging.INFO, logger="empirical_seaice"):  # a CLI run before may have set WARNING
            _, background = read_training_data(dataclasses.replace(cfg, grid_file=alone), NLAG)
        assert "cell_area without the cells' corners (lon_bnds, lat_bnds) is not used" in caplog.text
        assert gc.grid_cells(background.lon, background.lat) is not cells  # drawn: not the ones declared before
        bad = [
            (dict(shift=0.3), r"bad.nc: variables lon_b, lat_b, areacello: 12 of 12 grid points outside their cells"),
            (dict(transposed=True), r"bad.nc: variables lon_b, lat_b, areacello: the corners are \(vertices, grid"),
            (dict(units="ha"), r"bad.nc: variable areacello: units 'ha' not known; give the cells' areas in m2 or km2"),
        ]
        for kwargs, message in bad:
            _grid_file_with_cells(tmp_path / "bad.nc", lon, lat, area_km2, **kwargs)
            with pytest.raises(SeaIceError, match=message):
                read_training_data(dataclasses.replace(cfg, grid_file=tmp_path / "bad.nc"), NLAG)
    finally:
        gc.declare(None, None, None)
