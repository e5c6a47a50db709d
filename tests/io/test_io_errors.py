"""Every bad-input case raises SeaIceError naming the file (or flag) and the variable."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import read_training_data
from empirical_seaice.io._netcdf import open_dataset
from empirical_seaice.io.layout_writers import write_backgrounds, write_netcdf

NGRID, NSTEP, NLAG = 12, 4, 1  # as in conftest.py


def _raises(config, *fragments, nlag=NLAG):
    with pytest.raises(SeaIceError) as info:
        read_training_data(config, nlag)
    msg = str(info.value)
    assert "\n" not in msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


# ---------------------------------------------------------------- locating files


def test_data_path_missing(tmp_path):
    from empirical_seaice.config import DataConfig

    _raises(DataConfig(data=tmp_path / "nope"), "--data", "nope", "no such file or directory")


def test_data_directory_without_data(tmp_path):
    from empirical_seaice.config import DataConfig

    _raises(DataConfig(data=tmp_path), "--data", str(tmp_path), "no training data found")


def test_layout_c_missing_sensor_directory(dataset):
    ds = dataset("C")
    cfg = dataclasses.replace(ds.config, sensors=("amsr2", "gmi"))
    _raises(cfg, "sensor directory gmi not found", "amsr2", "; to train on those, give --sensors amsr2")


def test_layout_c_sensor_directory_without_files(dataset):
    ds = dataset("C")
    (ds.root / "gmi").mkdir()
    cfg = dataclasses.replace(ds.config, sensors=("amsr2", "gmi"))
    _raises(cfg, str(ds.root / "gmi"), "no *JULIAN_DAY.nc", "gmi")


def test_layout_b_ambiguous_prefix(dataset):
    ds = dataset("B")
    (ds.root / "other_JULIAN_DAY.nc").write_bytes((ds.root / "field_v2_JULIAN_DAY.nc").read_bytes())
    _raises(ds.config, "several *JULIAN_DAY.nc", "other_JULIAN_DAY.nc", "field_v2_JULIAN_DAY.nc")


def test_single_sensor_layouts_refuse_several_sensors(dataset):
    a = dataset("A")
    # the sensors may be the preset's, not the user's: the message says so and how to choose the file's
    fix = "(--sensors, or the preset's); give --sensors with"
    _raises(dataclasses.replace(a.config, sensors=("amsr2", "gmi")), "--data", "layout A", "amsr2 gmi", fix)
    b = dataset("B")
    _raises(dataclasses.replace(b.config, sensors=("amsr2", "gmi")), "--data", "layout-B", "amsr2 gmi", fix)


@pytest.mark.parametrize(
    "pattern, flag, stem",
    [
        ("ifs_seaice*.nc", "--seaice-background", "ifs_seaice_initials_test.nc"),
        ("ifs_tsfc*.nc", "--tsfc-background", "ifs_tsfc_test_dailyx.nc"),
    ],
)
def test_background_file_missing(dataset, pattern, flag, stem):
    ds = dataset("C")
    (ds.root / stem).unlink()
    _raises(ds.config, str(ds.root), pattern, flag)


def test_background_file_missing_beside_a_relative_data_file_names_its_directory(dataset, monkeypatch):
    """A layout-A file given by its bare name: the message named the directory ".", which said nothing."""
    ds = dataset("A")
    (ds.config.data.parent / "ifs_seaice_initials_test.nc").unlink()
    monkeypatch.chdir(ds.config.data.parent)
    cfg = dataclasses.replace(ds.config, data=Path(ds.config.data.name))
    with pytest.raises(SeaIceError) as exc:
        read_training_data(cfg, NLAG)
    assert str(exc.value) == (
        f"{ds.config.data.parent.resolve()}: no background SIC file ifs_seaice*.nc found beside the training "
        "data; give it with --seaice-background FILE"
    )


def test_background_file_ambiguous(dataset):
    ds = dataset("C")
    src = ds.root / "ifs_seaice_initials_test.nc"
    (ds.root / "ifs_seaice_other.nc").write_bytes(src.read_bytes())
    _raises(ds.config, "several", "ifs_seaice_other.nc", "--seaice-background")
    # An explicit choice resolves it.
    cfg = dataclasses.replace(ds.config, seaice_background=src)
    obs, _ = read_training_data(cfg, NLAG)
    assert obs.nobs == 40


@pytest.mark.parametrize(
    "field, flag", [("seaice_background", "--seaice-background"), ("tsfc_background", "--tsfc-background")]
)
def test_explicit_background_missing(dataset, field, flag):
    ds = dataset("C")
    cfg = dataclasses.replace(ds.config, **{field: ds.root / "missing.nc"})
    _raises(cfg, flag, "missing.nc", "not found")


def test_open_dataset_missing_file(tmp_path):
    with pytest.raises(SeaIceError, match=re.escape(f"{tmp_path / 'x.nc'}: file not found")):
        with open_dataset(tmp_path / "x.nc"):
            pass


def test_unreadable_netcdf(dataset):
    ds = dataset("B")
    bad = ds.root / "field_v2_TUP.nc"
    bad.write_text("this is not netcdf")
    _raises(ds.config, str(bad), "cannot read as NetCDF")


@pytest.mark.parametrize(
    "make, words",
    [
        (os.mkfifo, "not a regular file (a named pipe, device or socket)"),  # before: the run hung
        (os.mkdir, "a directory, not a file"),  # before: 'file not found'
        (lambda p: os.symlink(p.parent / "gone.nc", p), "a broken link (to "),
        # a link into a loop: stat fails with another error than 'not found' (ELOOP)
        (lambda p: (os.symlink(p.parent / "loop_b", p), os.symlink(p, p.parent / "loop_b")), "cannot read the file ("),
    ],
)
@pytest.mark.parametrize("name", ["field_v2_TUP.nc", "ifs_tsfc_test_dailyx.nc"])
def test_a_data_file_that_is_not_a_file_is_named(dataset, make, words, name):
    ds = dataset("B")
    path = ds.root / name
    path.unlink()
    make(path)
    done: list[str] = []

    def read() -> None:
        try:
            read_training_data(ds.config, NLAG)
        except SeaIceError as exc:
            done.append(str(exc))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(60)
    if t.is_alive():  # a reader blocked on the pipe: let it go, then fail
        with open(path, "wb") if stat.S_ISFIFO(os.lstat(path).st_mode) else contextlib.nullcontext():
            pass
        pytest.fail(f"reading with {name} a {make} did not end")
    assert len(done) == 1 and f"{path}: {words}" in done[0] and "\n" not in done[0], done


# ---------------------------------------------------------------- variables and shapes


def test_layout_a_missing_variable(dataset):
    ds = dataset("A", edit=lambda s, f: f.pop("WINDSPEED10M"))
    _raises(ds.config, str(ds.config.data), "variable WINDSPEED10M not found", "OBSVALUE")


def test_layout_b_missing_file(dataset):
    ds = dataset("B")
    (ds.root / "field_v2_TUP_CLD.nc").unlink()
    _raises(ds.config, "field_v2_TUP_CLD.nc", "file not found", "variable TUP_CLD", "amsr2")


def test_layout_b_file_with_wrong_variable_name(dataset):
    ds = dataset("B")
    write_netcdf(ds.root / "field_v2_TAUSFC.nc", {"tau": ds.fields["amsr2"]["TAUSFC"]})
    _raises(ds.config, "field_v2_TAUSFC.nc", "variable TAUSFC not found", "tau")


def test_multi_sensor_common_igrid_for_all_or_none(dataset):
    """COMMON_IGRID for some sensors but not others: their IGRID may index a sensor-local grid."""
    ds = dataset("C", sensors=("amsr2", "gmi"))
    (ds.root / "gmi" / "field_v2_COMMON_IGRID.nc").unlink()
    _raises(ds.config, "field_v2_COMMON_IGRID.nc", "COMMON_IGRID not found for sensor gmi", "amsr2 have it")


@pytest.mark.parametrize("layout", ["A", "B", "C"])
def test_no_grid_index_names_both_variables(dataset, layout):
    """A sensor with neither COMMON_IGRID nor IGRID: one line naming its file and both variables (it said
    "variable IGRID not found", no word of COMMON_IGRID)."""
    if layout == "A":
        ds = dataset("A", edit=lambda s, f: f.pop("IGRID"))
        where = ds.config.data
    else:
        ds = dataset(layout)
        where = (ds.root / "amsr2" if layout == "C" else ds.root) / "field_v2_IGRID.nc"
        where.unlink()
    _raises(ds.config, f"{where}:", "no grid index for sensor amsr2: give COMMON_IGRID", "or IGRID (its point of the")


def test_per_observation_wrong_shape(dataset):
    ds = dataset("B")
    write_netcdf(ds.root / "field_v2_TSFC.nc", {"TSFC": np.full((40, 2), 260.0, np.float32)})
    _raises(ds.config, "field_v2_TSFC.nc", "variable TSFC", "expected shape (40,)", "got (40, 2)")


def test_per_observation_wrong_length(dataset):
    ds = dataset("B")
    write_netcdf(ds.root / "field_v2_CLOUD_FRACTION.nc", {"CLOUD_FRACTION": np.zeros(39, np.float32)})
    _raises(ds.config, "field_v2_CLOUD_FRACTION.nc", "variable CLOUD_FRACTION", "(40,)", "got (39,)")


def test_wrong_channel_count(dataset):
    ds = dataset("B")
    write_netcdf(ds.root / "field_v2_OBSVALUE.nc", {"OBSVALUE": ds.fields["amsr2"]["OBSVALUE"][:, :9]})
    _raises(
        ds.config, "field_v2_OBSVALUE.nc", "variable OBSVALUE has 9 channels", "amsr2 expects 10 or 14", "got (40, 9)"
    )


def test_per_channel_wrong_rank_and_length(dataset):
    ds = dataset("B", sensors=("gmi",))
    write_netcdf(ds.root / "field_v2_TDOWN.nc", {"TDOWN": np.zeros((40, 13, 2), np.float32)})
    _raises(ds.config, "field_v2_TDOWN.nc", "variable TDOWN", "expected shape (40, 13)", "got (40, 13, 2)")
    write_netcdf(ds.root / "field_v2_TDOWN.nc", {"TDOWN": np.zeros((41, 13), np.float32)})
    _raises(ds.config, "field_v2_TDOWN.nc", "variable TDOWN", "expected shape (40, 13)", "got (41, 13)")


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("layout", ["A", "B"])
def test_mostly_nan_field(dataset, layout):
    def spoil(sensor, f):
        f["EMIS_WATER"][:25] = np.nan

    ds = dataset(layout, edit=spoil)
    path = ds.config.data if layout == "A" else ds.root / "field_v2_EMIS_WATER.nc"
    _raises(ds.config, str(path), "variable EMIS_WATER mostly missing", "62%")


def test_mostly_fill_per_observation_field(dataset):
    def spoil(sensor, f):
        f["WINDSPEED10M"][:30] = -999.0

    ds = dataset("B", edit=spoil)
    _raises(ds.config, "field_v2_WINDSPEED10M.nc", "variable WINDSPEED10M mostly missing", "75%")


def test_mostly_out_of_range_tb(dataset):
    # TBs in degrees Celsius: most are negative.
    ds = dataset("B", edit=lambda s, f: f.__setitem__("OBSVALUE", f["OBSVALUE"] - 273.15))
    _raises(ds.config, "field_v2_OBSVALUE.nc", "variable OBSVALUE mostly out of range [0, 400] K", "wrong units")


def test_mostly_out_of_range_skin_temperature(dataset):
    ds = dataset("A", edit=lambda s, f: f.__setitem__("TSFC", f["TSFC"] - 273.15))
    _raises(ds.config, str(ds.config.data), "variable TSFC mostly out of range [180, 340] K")


def test_a_zenith_angle_in_radians_is_refused(dataset):
    """ZENITH in radians (every value within pi/2) passed the 0-90 degree range check and was taken as a view
    from overhead (the cross-track physics and the network's angle input then wrong, without a word)."""
    ds = dataset("B", edit=lambda s, f: f.__setitem__("ZENITH", np.deg2rad(f["ZENITH"])))
    _raises(ds.config, "field_v2_ZENITH.nc: variable ZENITH of sensor amsr2: every value within 0..1.5708, radians?")


def test_julian_day_mostly_missing(dataset):
    def spoil(sensor, f):
        f["JULIAN_DAY"][5:] = np.nan

    ds = dataset("B", edit=spoil)
    _raises(ds.config, "field_v2_JULIAN_DAY.nc", "variable JULIAN_DAY mostly missing")


def test_julian_day_empty_file(dataset):
    def empty(sensor, f):
        for k in list(f):
            f[k] = f[k][:0]

    ds = dataset("B", edit=empty)
    _raises(ds.config, "field_v2_JULIAN_DAY.nc", "sensor amsr2 has no observation (0 rows)")


def test_igrid_mostly_missing(dataset):
    def spoil(sensor, f):
        f["IGRID"][:30] = -1

    ds = dataset("B", edit=spoil)
    _raises(ds.config, "field_v2_IGRID.nc", "variable IGRID mostly missing")


def test_igrid_not_integer(dataset):
    def spoil(sensor, f):
        f["IGRID"] = f["IGRID"].astype(np.float32) + 0.5

    ds = dataset("B", edit=spoil)
    _raises(ds.config, "field_v2_IGRID.nc", "variable IGRID holds non-integer")


def test_igrid_beyond_background_grid(dataset):
    def spoil(sensor, f):
        f["COMMON_IGRID"][7] = NGRID

    ds = dataset("C", sensors=("amsr2", "gmi"), edit=spoil)
    _raises(
        ds.config,
        str(ds.root / "amsr2" / "field_v2_COMMON_IGRID.nc"),
        "variable COMMON_IGRID",
        f"up to {NGRID}",
        "ifs_seaice_initials_test.nc",
        f"ngrid={NGRID}",
    )


# ---------------------------------------------------------------- period


def test_empty_selected_period(dataset):
    def skip_step_2(sensor, f):
        jd = f["JULIAN_DAY"]
        step = np.floor(jd - 2459000.0 - 0.375)
        f["JULIAN_DAY"] = np.where(step == 2, jd + 1.0, jd)

    ds = dataset("B", edit=skip_step_2, stepstart=2, nsteps=1)
    _raises(ds.config, "--stepstart 2 --nsteps 1", "no valid observation in the selected period")


def test_nsteps_beyond_data(dataset):
    ds = dataset("B", stepstart=1, nsteps=10)
    _raises(ds.config, "--nsteps 10", "steps 0..3", "use --nsteps 3 or less")


def test_stepstart_beyond_data(dataset):
    ds = dataset("B", stepstart=4)
    _raises(ds.config, "--stepstart 4", "the data has 4 steps")


def test_stepstart_beyond_background(dataset):
    ds = dataset("C", stepstart=3)
    write_backgrounds(ds.root, ds.background["sic"][:, :3], ds.background["t_skin_map_k"][:, :2])
    _raises(ds.config, "--stepstart 3", "background files cover only 2 steps")


def test_nsteps_beyond_background(dataset):
    ds = dataset("C", nsteps=4)
    write_backgrounds(ds.root, ds.background["sic"][:, :3], ds.background["t_skin_map_k"][:, :2])
    _raises(ds.config, "ifs_tsfc_test_dailyx.nc", "variable TSFC covers 2 steps", "--nsteps")


def test_negative_nlag(dataset):
    ds = dataset("C")
    _raises(ds.config, "nlag", "got -1", nlag=-1)


# ---------------------------------------------------------------- background shapes and values


def test_sic_wrong_number_of_columns(dataset):
    ds = dataset("C")
    write_backgrounds(ds.root, np.zeros((NGRID, 7), np.float32), ds.background["t_skin_map_k"])
    _raises(ds.config, "ifs_seaice_initials_test.nc and ifs_tsfc", "SEAICE has 7 columns", "expected 5 (the days")


def test_sic_transposed(dataset):
    ds = dataset("C")
    write_backgrounds(
        ds.root, np.zeros((5, NGRID), np.float32), ds.background["t_skin_map_k"], lon=ds.background["lon"]
    )
    _raises(ds.config, "ifs_seaice_initials_test.nc", "variable SEAICE", f"ngrid={NGRID}", "looks transposed")


def test_sic_and_tsfc_grids_disagree(dataset):
    ds = dataset("C")
    write_backgrounds(ds.root, np.zeros((NGRID + 1, 5), np.float32), ds.background["t_skin_map_k"])
    _raises(
        ds.config,
        "ifs_tsfc_test_dailyx.nc",
        "variable TSFC",
        f"ngrid={NGRID + 1}",
        "ifs_seaice_initials_test.nc",
        f"got ({NGRID}, 4)",
    )


def test_sic_wrong_rank(dataset):
    ds = dataset("C")
    write_backgrounds(ds.root, np.zeros((NGRID, 5, 2), np.float32), ds.background["t_skin_map_k"])
    _raises(ds.config, "ifs_seaice_initials_test.nc", "variable SEAICE", "got (12, 5, 2)")


def test_sic_variable_missing(dataset):
    ds = dataset("C")
    write_netcdf(ds.root / "ifs_seaice_initials_test.nc", {"ice": ds.background["sic"]})
    _raises(ds.config, "ifs_seaice_initials_test.nc", "variable SEAICE or seaice not found", "ice")


def test_tsfc_transposed(dataset):
    ds = dataset("C")
    write_backgrounds(ds.root, ds.background["sic"], ds.background["t_skin_map_k"].T.copy(), lon=ds.background["lon"])
    _raises(ds.config, "ifs_tsfc_test_dailyx.nc", "variable TSFC", "looks transposed")


@pytest.mark.parametrize("var", ["LON", "LAT"])
def test_lon_lat_wrong_length(dataset, var):
    ds = dataset("C")
    kw = {"lon": ds.background["lon"], "lat": ds.background["lat"]}
    kw[var.lower()] = kw[var.lower()][:3]
    write_backgrounds(ds.root, ds.background["sic"], ds.background["t_skin_map_k"], **kw)
    if var == "LAT":
        _raises(ds.config, "ifs_tsfc_test_dailyx.nc", f"variable LAT expected shape ({NGRID},)", "got (3,)")
    else:  # LON defines ngrid: the SIC rows no longer fit, and either file may be the wrong one
        _raises(
            ds.config,
            "ifs_seaice_initials_test.nc and ifs_tsfc_test_dailyx.nc are not on the same grid: SEAICE has "
            f"{NGRID} grid points, LON of ifs_tsfc_test_dailyx.nc 3 (TSFC ({NGRID}, ",
        )


@pytest.mark.parametrize("var", ["LON", "LAT"])
def test_lon_or_lat_alone_is_an_error(dataset, var):
    """One coordinate without the other (before: read without a word, the outputs then without their
    coordinates and cells)."""
    ds = dataset("C")
    kw = {var.lower(): ds.background[var.lower()]}
    write_backgrounds(ds.root, ds.background["sic"], ds.background["t_skin_map_k"], **kw)
    other = "LAT" if var == "LON" else "LON"
    _raises(
        ds.config,
        "ifs_tsfc_test_dailyx.nc",
        "ifs_seaice_initials_test.nc",
        f"variable {var} without {other}",
        f"add {other} to the skin-temperature file",
        "--grid-file",
    )


@pytest.mark.parametrize("tsfc_has", [(), ("lon",)])
def test_the_sic_files_coordinates_stand_in_for_the_skin_temperature_files(dataset, tsfc_has):
    ds = dataset("C")
    lon, lat = ds.background["lon"], ds.background["lat"]
    write_backgrounds(
        ds.root, ds.background["sic"], ds.background["t_skin_map_k"], **{k: ds.background[k] for k in tsfc_has}
    )
    write_netcdf(
        ds.root / "ifs_seaice_initials_test.nc",
        {"SEAICE": np.asarray(ds.background["sic"], np.float32), "LON": lon + 0.01, "LAT": lat - 0.02},
    )
    obs, bg = read_training_data(ds.config, NLAG)
    # the skin-temperature file's LON where it has one, the SIC file's otherwise (0.01 deg apart: the same points)
    np.testing.assert_allclose(bg.lon, lon if tsfc_has else lon + 0.01, rtol=0, atol=1e-5)
    np.testing.assert_allclose(bg.lat, lat - 0.02, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(obs.lat, bg.lat)
    # the SIC file's of another size: named
    write_netcdf(
        ds.root / "ifs_seaice_initials_test.nc",
        {"SEAICE": np.asarray(ds.background["sic"], np.float32), "LON": lon[:5], "LAT": lat[:5]},
    )
    words = ("variable LON expected shape", "got (5,)") if not tsfc_has else ("5 values against 12",)
    _raises(ds.config, "ifs_seaice_initials_test.nc", *words)


@pytest.mark.parametrize(
    "case, words",
    [
        ("lat_nan", "variable LAT: 1 of 12 values missing or outside [-90, 90] (e.g. nan)"),
        ("lat_plus_100", "variable LAT: 12 of 12 values missing or outside [-90, 90]"),
        ("swapped", "variable LAT:"),
        ("radians", "variable LAT: every value within +-1.5708, radians?"),
        ("lon_inf", "variable LON: 1 of 12 values missing or outside [-360, 360] (e.g. nan)"),
    ],
)
def test_grid_coordinates_not_in_degrees_are_one_line_errors(dataset, case, words):
    """A NaN, out-of-range, swapped or radian LAT / LON is refused naming the file and variable (before:
    taken as they were; a NaN latitude gave the Bootstrap algorithm the southern tie points and every
    output file the bad coordinates)."""
    ds = dataset("C")
    lon, lat = ds.background["lon"].astype(np.float64), ds.background["lat"].astype(np.float64)
    assert lon.size == NGRID == 12 and np.abs(lon).max() > 90  # the swap puts longitudes beyond 90 into LAT
    lon, lat = {
        "lat_nan": (lon, np.r_[np.nan, lat[1:]]),
        "lat_plus_100": (lon, lat + 100.0),
        "swapped": (lat, lon),
        "radians": (np.radians(lon), np.radians(lat)),
        "lon_inf": (np.r_[lon[:-1], np.inf], lat),
    }[case]
    write_backgrounds(ds.root, ds.background["sic"], ds.background["t_skin_map_k"], lon=lon, lat=lat)
    _raises(ds.config, "ifs_tsfc_test_dailyx.nc", words)


def test_sic_in_percent_is_mostly_out_of_range(dataset):
    ds = dataset("C")
    write_backgrounds(ds.root, ds.background["sic"] * 100 + 2, ds.background["t_skin_map_k"])
    _raises(ds.config, "ifs_seaice_initials_test.nc", "variable SEAICE mostly out of range [0, 1]")


def test_tsfc_map_mostly_missing(dataset):
    ds = dataset("C")
    tmap = ds.background["t_skin_map_k"].copy()
    tmap[: NGRID - 2] = np.nan
    write_backgrounds(ds.root, ds.background["sic"], tmap)
    _raises(ds.config, "ifs_tsfc_test_dailyx.nc", "variable TSFC mostly missing")


def test_a_variable_of_text_is_a_one_line_error(dataset, tmp_path):
    """A per-observation field stored as text (a value "warm" gave a traceback; "271.84" was taken)."""
    import netCDF4

    ds = dataset("C")
    (path,) = (ds.root / "amsr2").glob("*TSFC.nc")
    with netCDF4.Dataset(path) as nc:
        (dim,) = nc["TSFC"].dimensions
        values = nc["TSFC"][:]
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension(dim, len(values))
        v = nc.createVariable("TSFC", str, (dim,))
        for i, t in enumerate(values):
            v[i] = "warm" if i % 2 else f"{t:.2f}"
    _raises(ds.config, "TSFC.nc", "variable TSFC holds text")


def test_dropping_or_replacing_more_than_a_percent_is_a_warning(dataset, caplog):
    """A third of a sensor's grid indices missing, or of the background skin temperatures, is a warning at
    the default level (before: a line at -v only); none missing gives no such warning."""

    def third_missing(sensor, fields):
        fields["IGRID"][::3] = -1

    ds = dataset("C", edit=third_missing)
    tmap = ds.background["t_skin_map_k"].copy()
    tmap[: NGRID // 3] = 1e30
    write_backgrounds(ds.root, ds.background["sic"], tmap, lon=ds.background["lon"], lat=ds.background["lat"])
    with caplog.at_level("WARNING", logger="empirical_seaice"):
        read_training_data(ds.config, NLAG)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    said = [m for m in warned if "sensor amsr2:" in m and "dropped for invalid per-observation fields" in m]
    assert len(said) == 1 and "(missing or out of range, by variable: IGRID " in said[0], warned
    assert any("skin temperatures missing or out of range, set to their mean" in m for m in warned), warned
    caplog.clear()
    with caplog.at_level("INFO", logger="empirical_seaice"):
        read_training_data(dataset("C").config, NLAG)
    assert [r for r in caplog.records if "dropped for invalid" in r.getMessage()]  # said at -v
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_missing_day_of_a_background_map_is_the_nearest_days(dataset, caplog):
    """A whole day missing from the background SIC or skin temperature is taken from the nearest day (before:
    filled point by point, the day's SIC 0 everywhere, open water; its skin temperature the map's mean)."""
    ds = dataset("C")
    sic, tmap = ds.background["sic"].copy(), ds.background["t_skin_map_k"].copy()
    assert sic.shape == (NGRID, NSTEP + NLAG) and tmap.shape == (NGRID, NSTEP)
    sic[:, 3] = np.nan  # step 2 (column 0 is the lag)
    sic[1, 2] = np.nan  # an isolated value of the day it is taken from: 0, as ever
    tmap[:8, 1] = np.nan  # 8 of 12 points: mostly missing
    tmap[5, 2] = 1e30  # isolated: the map's mean, as ever
    write_backgrounds(ds.root, sic, tmap, lon=ds.background["lon"], lat=ds.background["lat"])
    with caplog.at_level("WARNING", logger="empirical_seaice"):
        _, bg = read_training_data(ds.config, NLAG)
    want_sic = sic.copy()
    want_sic[:, 3] = np.nan_to_num(sic[:, 2], nan=0.0)  # the earlier of two neighbours
    want_sic[1, 2] = 0.0
    np.testing.assert_array_equal(bg.sic, np.clip(want_sic, 0.0, 1.0).astype(np.float32))
    np.testing.assert_array_equal(bg.t_skin_map_k[:, 1], tmap[:, 0].astype(np.float32))
    filled = tmap.astype(np.float32)
    filled[:, 1] = filled[:, 0]
    valid = np.isfinite(filled) & (filled < 400.0)
    assert bg.t_skin_map_k[5, 2] == pytest.approx(float(filled[valid].mean()), rel=1e-6)  # of the filled map
    warned = [r.getMessage() for r in caplog.records]
    assert any("variable SEAICE: 1 step(s) (2) mostly missing or out of range" in m for m in warned), warned
    assert any("variable TSFC: 1 step(s) (1) mostly missing or out of range" in m for m in warned), warned


@pytest.mark.parametrize("missing", [1.0, 0.6])
def test_a_channel_mostly_missing_is_a_warning_naming_sensor_channel_and_file(dataset, caplog, missing):
    """A channel missing in all (or most) of a sensor's observations was dropped with no word (only its
    count in the channel table showed it): a warning names the sensor, the channel, the share and the file."""
    from empirical_seaice.sensors import build_channel_basis

    basis = build_channel_basis(["amsr2"])
    col = int(basis.sensor_file_columns[0][2])
    name = basis.channel_names[int(basis.sensor_channel_map[0][2])]

    def spoil(sensor, fields):
        n = fields["OBSVALUE"].shape[0]
        fields["OBSVALUE"][: int(round(missing * n)), col] = np.nan

    ds = dataset("B", edit=spoil)
    with caplog.at_level("WARNING", logger="empirical_seaice"):
        obs, _ = read_training_data(ds.config, NLAG)
    warned = [
        r.getMessage() for r in caplog.records if r.levelname == "WARNING" and f"channel {name}" in r.getMessage()
    ]
    assert len(warned) == 1, warned
    share = "valid in none of its" if missing == 1.0 else "missing or out of range in 60% of its"
    assert f"sensor amsr2, channel {name}:" in warned[0] and share in warned[0], warned[0]
    assert "field_v2_OBSVALUE.nc" in warned[0]
    c = basis.channel_index[name]
    assert obs.mask[:, c].mean() == pytest.approx(1.0 - missing, abs=0.02)


@pytest.mark.parametrize("what", ["OBSVALUE", "EMIS_WATER"])
def test_observations_without_any_valid_channel_are_a_warning(dataset, caplog, what):
    """A third of a sensor's observations with every channel missing (the TBs) or out of range (an ocean
    emissivity of 1.7): each channel is still valid in two thirds, so no channel's warning came, and they
    were kept silently though they add nothing. Now the sensor's share is named; the run goes on."""

    def spoil(sensor, fields):
        n = fields[what].shape[0]
        fields[what][: n // 3] = np.nan if what == "OBSVALUE" else 1.7

    ds = dataset("B", edit=spoil)
    with caplog.at_level("WARNING", logger="empirical_seaice"):
        obs, _ = read_training_data(ds.config, NLAG)
    warned = [r.getMessage() for r in caplog.records if "no valid channel" in r.getMessage()]
    none = (~obs.mask.any(axis=1)).mean()  # the share the warning names: every row of the sample here
    assert 0.3 < none < 0.35 and len(warned) == 1, (none, warned)
    assert warned[0].startswith(f"sensor amsr2: {100 * none:.0f}% of its {obs.nobs} observations have no valid channel")
    assert not [r for r in caplog.records if "channel 1" in r.getMessage()]  # no channel's own warning


def test_observations_without_a_time_are_named_where_more_than_a_hundredth(dataset, caplog):
    """NaN or fill JULIAN_DAY in 5 % of a sensor's observations: dropped (no step), which was said nowhere,
    not even at -v; a warning now names the file and the count (below the share, at -v)."""

    def spoil(sensor, fields):
        n = fields["JULIAN_DAY"].shape[0]
        fields["JULIAN_DAY"][: n // 20] = np.nan

    ds = dataset("B", edit=spoil)
    with caplog.at_level("INFO", logger="empirical_seaice"):
        read_training_data(ds.config, NLAG)
    said = [r for r in caplog.records if "have no JULIAN_DAY (NaN or fill); dropped" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "WARNING", said
    assert "field_v2_JULIAN_DAY.nc: sensor amsr2: " in said[0].getMessage()


def test_background_files_of_different_days_name_both(dataset):
    """A skin-temperature file two days short: the message names both files and what each holds (it
    named the SIC file alone, with the shape the other file implied)."""
    ds = dataset("C")
    write_backgrounds(ds.root, ds.background["sic"], ds.background["t_skin_map_k"][:, :2], lon=ds.background["lon"])
    _raises(
        ds.config,
        "ifs_seaice_initials_test.nc and ifs_tsfc_test_dailyx.nc do not cover the same days",
        f"SEAICE has {NSTEP + NLAG} columns, TSFC 2 days; expected 3 (the days + nlag=1), 2 or one column",
    )


def test_an_unreadable_sensor_directory_says_so(dataset, monkeypatch):
    """A sensor directory that cannot be listed (permission denied) is named as such (it was "no
    *JULIAN_DAY.nc file found": glob takes an unreadable directory for an empty one). Root reads any
    directory, so the refusal is simulated."""
    import os

    ds = dataset("C", sensors=("amsr2", "gmi"))
    listdir = os.listdir

    def denied(path):
        if str(path).endswith("gmi"):
            raise PermissionError(13, "Permission denied", str(path))
        return listdir(path)

    monkeypatch.setattr(os, "listdir", denied)
    _raises(ds.config, "gmi: cannot list the directory (permission denied); make it readable")


@pytest.mark.parametrize(
    "case, error",
    [
        ("same", None),
        ("lon_plus_360", None),  # the same meridians
        ("rounded_to_a_tenth", None),  # coordinates stored to 0.1 degree
        ("lon_at_the_pole", None),  # within half a degree of the pole any longitude is the same place
        ("lon_reversed", "their LON differ at"),
        ("lat_shifted", "their LAT differ at 12 of 12 grid points (grid point 0: "),
        ("lon_short", "their LON differ at 12 of 12 grid points (11 values against 12)"),
    ],
)
def test_a_sic_file_on_other_grid_points_is_refused(dataset, case, error):
    """The SIC file's LON/LAT were never read: a SIC file of the same size whose points are another grid or
    in another order was used as it came (fuzz: LON reversed, rc 0, output as the clean run's). Where both
    files give them, they are compared point by point."""
    import netCDF4

    ds = dataset("C")
    lon, lat = ds.background["lon"].astype(np.float64), ds.background["lat"].astype(np.float64)
    sic_lon, sic_lat = {
        "same": (lon, lat),
        "lon_plus_360": (lon + 360.0, lat),
        "rounded_to_a_tenth": (np.round(lon, 1), np.round(lat, 1)),
        "lon_at_the_pole": (lon + 90.0 * (np.arange(lon.size) == 3), lat),
        "lon_reversed": (lon[::-1], lat),
        "lat_shifted": (lon, lat + 0.5),
        "lon_short": (lon[:-1], lat),
    }[case]
    if case == "lon_at_the_pole":
        lat[3] = 89.7
        write_backgrounds(ds.root, ds.background["sic"], ds.background["t_skin_map_k"], lon=lon, lat=lat)
    with netCDF4.Dataset(ds.root / "ifs_seaice_initials_test.nc", "a") as f:
        for name, values in (("LON", sic_lon), ("LAT", sic_lat)):
            f.createDimension(f"points_{name}", values.size)
            f.createVariable(name, "f4", (f"points_{name}",))[:] = values
    if error is None:
        obs, background = read_training_data(ds.config, NLAG)
        np.testing.assert_array_equal(background.lon, lon.astype(np.float32))
        return
    msg = _raises(
        ds.config, "ifs_seaice_initials_test.nc and ifs_tsfc_test_dailyx.nc are not on the same grid: ", error
    )
    if case == "lon_reversed":
        first = int(np.flatnonzero((np.abs(lon[::-1] - lon) > 0.05) & (lat < 89.5))[0])  # the pole's not compared
        assert f"(grid point {first}: {np.float32(lon[::-1][first]):g} against {np.float32(lon[first]):g})" in msg


@pytest.mark.parametrize("reverse", [False, True])
def test_a_grid_description_on_other_points_than_the_skin_temperature_file_is_refused(dataset, reverse):
    """A grid description (grid.nc) beside a skin-temperature file that has its own LON/LAT: the file's were
    kept and the description's read, checked for size, and dropped, whatever points it gave."""
    ds = dataset("C")
    lon, lat = ds.background["lon"], ds.background["lat"]
    write_netcdf(ds.root / "grid.nc", {"lon": lon[::-1] if reverse else lon, "lat": lat})
    if not reverse:
        read_training_data(ds.config, NLAG)
        return
    _raises(ds.config, "grid.nc and ifs_tsfc_test_dailyx.nc are not on the same grid: their LON differ at")


def test_one_grid_index_for_every_observation_is_a_warning(dataset, caplog):
    """Every observation of a sensor on one grid point (a fill or a constant COMMON_IGRID) trained that point
    alone without a word; the truth scores' count of grid-steps was the only sign."""

    def constant(sensor, fields):
        fields["IGRID"][:] = 7

    ds = dataset("B", nobs=150, edit=constant)
    with caplog.at_level("INFO", logger="empirical_seaice"):
        obs, _ = read_training_data(ds.config, NLAG)
    said = [r.getMessage() for r in caplog.records if "holds one grid index" in r.getMessage()]
    assert said == [
        f"{ds.root / 'field_v2_IGRID.nc'}: variable IGRID holds one grid index (7) for every observation of sensor "
        f"amsr2 ({obs.nobs}): a fill or a constant, not the observations' grid points; they all train grid point 7"
    ]
    caplog.clear()
    few = dataset("B", nobs=60, edit=constant)  # below ONE_POINT_MIN_OBS: not judged
    spread = dataset("B", nobs=150)
    with caplog.at_level("INFO", logger="empirical_seaice"):
        read_training_data(few.config, NLAG)
        read_training_data(spread.config, NLAG)
    assert not [r for r in caplog.records if "holds one grid index" in r.getMessage()]


@pytest.mark.parametrize(
    "said, error",
    [
        ("gmi", "the file's global attribute sensor = 'gmi', but it is read as sensor amsr2"),
        ("AMSR2", None),  # its own name, spelt otherwise
        ("AMSR-2 on GCOM-W1", None),  # a name the catalogue does not know: not judged
    ],
)
def test_a_sensor_directory_under_another_sensors_name_is_refused(dataset, said, error):
    """Files whose global attribute names another sensor of the catalogue than the one they are read as
    (fuzz: ssmisf17's directory renamed ssmisf16) trained with the other sensor's channels and incidence
    angle; only a missing truth variable hinted at it."""
    import netCDF4

    ds = dataset("C", sensors=("amsr2", "gmi"))
    (path,) = (ds.root / "amsr2").glob("*JULIAN_DAY.nc")
    with netCDF4.Dataset(path, "a") as f:
        f.sensor = said
    if error is None:
        read_training_data(ds.config, NLAG)
        return
    _raises(ds.config, f"{path}: ", error, "rename the directory amsr2 to gmi and give --sensors gmi")


def test_observations_not_where_their_grid_index_puts_them_are_a_warning(dataset, caplog):
    """A grid index into another ordering of the grid (every value valid) trained every observation at the
    wrong point without a word. Each observation's TSFC is the weather model's skin temperature there; the
    map holds it per grid point and day: where the observations' own pairing is not much better than pairing
    them at random, a warning names the sensor, both RMS differences and the map's file."""
    import netCDF4

    ds = dataset("B", nobs=400)
    with caplog.at_level("INFO", logger="empirical_seaice"):
        obs, bg = read_training_data(ds.config, NLAG)
    # the fixture's TSFC and map are drawn apart: as the warning says
    assert [r for r in caplog.records if "skin temperatures of its observations" in r.getMessage()]
    caplog.clear()
    tmap = np.asarray(bg.t_skin_map_k, np.float64)
    rows, grid, step = np.asarray(obs.obs_index), np.asarray(obs.igrid), np.asarray(obs.istep) - obs.stepstart
    tsfc = np.asarray(ds.fields["amsr2"]["TSFC"], np.float64).copy()
    tsfc[rows] = tmap[grid, step] + np.random.default_rng(1).normal(0.0, 1.5, rows.size)  # paired, 1.5 K apart
    with netCDF4.Dataset(ds.root / "field_v2_TSFC.nc", "a") as f:
        f["TSFC"][:] = tsfc.astype(np.float32)
    with caplog.at_level("INFO", logger="empirical_seaice"):
        read_training_data(ds.config, NLAG)
    assert not [r for r in caplog.records if "skin temperatures of its observations" in r.getMessage()]

    with netCDF4.Dataset(ds.root / "field_v2_IGRID.nc", "a") as f:  # the grid's points in reverse order
        f["IGRID"][:] = NGRID - 1 - np.asarray(ds.fields["amsr2"]["IGRID"])
    caplog.clear()
    with caplog.at_level("INFO", logger="empirical_seaice"):
        read_training_data(ds.config, NLAG)
    said = [r.getMessage() for r in caplog.records if "skin temperatures of its observations" in r.getMessage()]
    assert len(said) == 1, said
    own = np.sqrt(np.mean((tsfc[rows].astype(np.float32) - tmap[NGRID - 1 - grid, step]) ** 2))
    found = re.fullmatch(
        r"sensor amsr2: the skin temperatures of its observations \(TSFC of its files\) differ from "
        r"ifs_tsfc_test_dailyx.nc at their grid point and day by ([0-9.]+) K RMS, about as much as at random grid "
        r"points and days \(([0-9.]+) K\): its IGRID may not index that map's grid, or its JULIAN_DAY may not be "
        r"the observations' times; check them against (.*)",
        said[0],
    )
    assert found, said[0]
    assert float(found[1]) == pytest.approx(own, abs=0.06) and own > 8.0  # 1.5 K when paired
    assert float(found[2]) > 5.0 and own > 0.5 * float(found[2])
    assert found[3] == str(ds.root / "ifs_tsfc_test_dailyx.nc")

    # skin temperatures that vary too little to tell (every value within 1 K, a melting summer): nothing said
    rng = np.random.default_rng(2)
    write_backgrounds(ds.root, bg.sic, 271.0 + rng.uniform(0, 1, tmap.shape), lon=bg.lon, lat=bg.lat)
    with netCDF4.Dataset(ds.root / "field_v2_TSFC.nc", "a") as f:
        f["TSFC"][:] = (271.0 + rng.uniform(0, 1, tsfc.size)).astype(np.float32)
    caplog.clear()
    with caplog.at_level("INFO", logger="empirical_seaice"):
        read_training_data(ds.config, NLAG)
    assert not [r for r in caplog.records if "skin temperatures of its observations" in r.getMessage()]
