"""The gridded products of a run are readable by CDO: time is their first dimension, named ``time``,
so that ``time(time)`` is a coordinate variable (CDO skips a variable whose first dimension is not
its time: "Time must be the first dimension!"). The reference files keep the reference code's
layout (``seaice`` (grid, lagstep), ``properties`` (grid, step, prop): tests/e2e/test_run.py).

``seaice_ensemble_TAG.nc`` is written here by its writer from the trained run's SIC (the ensemble
run itself is tests/e2e/test_ensemble.py's, which checks its dimensions too)."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from empirical_seaice.io.ensemble_file import write_ensemble

from .conftest import TAG

PRODUCTS = {
    # file stem: its SIC variable (what CDO must list and average), first, then the others CDO must read
    "seaice_filtered": ("seaice",),
    "classic_sic": ("nasa_team", "bootstrap", "nasa_team_amsr2"),
    "ice_emis_grid": ("seaice", "ice_emis", "t_skin", "properties", "properties_obs_mean", "nobs_cell"),
    "seaice_ensemble": ("seaice_mean", "seaice_spread", "seaice_spread_raw"),
}
TIME_DIMS = ("time", "step", "lagstep")


@pytest.fixture(scope="module")
def products(trained, tmp_path_factory) -> dict[str, Path]:
    """stem -> path of each product file: the trained run's, and an ensemble file of two "members"."""
    paths = {stem: trained.output / f"{stem}_{TAG}.nc" for stem in PRODUCTS if stem != "seaice_ensemble"}
    with xr.open_dataset(trained.output / f"seaice_{TAG}.nc", decode_times=False) as ds:
        sic, jd, lon, lat, nlag = ds["seaice"].values, ds["julian_day"].values, ds["lon"], ds["lat"], ds.nlag
        members = [sic, np.clip(sic + 0.05, 0, 1)]
        mean, spread = np.mean(members, axis=0), np.std(members, axis=0, ddof=1)
        paths["seaice_ensemble"] = write_ensemble(
            tmp_path_factory.mktemp("ens") / f"seaice_ensemble_{TAG}.nc", mean, spread, jd,
            lon.values, lat.values, nlag=int(nlag), inflation=1.5,
        )  # fmt: skip
    return paths


@pytest.mark.parametrize("stem", PRODUCTS)
def test_every_product_has_time_first_and_a_time_coordinate(products, stem):
    with xr.open_dataset(products[stem]) as ds:
        assert "time" in ds.indexes, f"{stem}: time is not a coordinate variable"
        assert ds["time"].dims == ("time",) and ds["time_bnds"].dims == ("time", "nv")
        assert ds["julian_day"].dims == ("time",)
        assert not {"step", "lagstep"} & set(ds.dims), (stem, dict(ds.sizes))
        on_time = [str(n) for n, v in ds.data_vars.items() if set(v.dims) & set(TIME_DIMS)]
        assert set(PRODUCTS[stem]) <= set(on_time)
        for name in on_time:
            v = ds[name]
            assert v.dims[0] == "time", (stem, name, v.dims)
            if "grid" in v.dims:
                assert v.dims[1] == "grid", (stem, name, v.dims)


def test_the_filtered_sic_is_the_trained_map_time_first_with_its_own_description(trained):
    """The lag days are the first times (not filtered); the file says which filter was applied."""
    with (
        xr.open_dataset(trained.output / f"seaice_{TAG}.nc") as raw,
        xr.open_dataset(trained.output / f"seaice_filtered_{TAG}.nc") as filt,
    ):
        a, b = raw["seaice"].values, filt["seaice"].values
        assert b.shape == a.T.shape
        nlag = int(raw.nlag)
        np.testing.assert_array_equal(b[:nlag], np.clip(a[:, :nlag].T, 0, 1))  # the lag columns, unfiltered
        np.testing.assert_array_equal(filt["time"].values, raw["time"].values)
        np.testing.assert_array_equal(filt["julian_day"].values, raw["julian_day"].values)
        assert filt.attrs["title"] != raw.attrs["title"] and "open-water filter" in filt.attrs["title"]
        assert filt.attrs["open_water_filter"].startswith("NASA Team gradient-ratio")
        comment = filt["seaice"].attrs["comment"]
        assert "GR(37V/19V) > 0.05" in comment and "0.3" in comment and "not filtered" in comment
        assert int(filt.attrs["nlag"]) == nlag


def _cdo(*args: str) -> str:
    r = subprocess.run(["cdo", "-s", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("cdo") is None, reason="cdo is not installed")
@pytest.mark.parametrize("stem", PRODUCTS)
def test_cdo_reads_every_product(products, stem, tmp_path):
    """``cdo sinfon`` lists the data variables (none "skipped": CDO skips a variable whose first dimension is
    not its time) and ``cdo fldmean`` gives the SIC's mean over the grid at each time, weighted by the
    file's cell areas (it reads the cells' corners: no "Grid cell bounds not available, using constant
    grid cell area weights for variable <SIC>!", its warning without them)."""
    path = products[stem]
    info = _cdo("sinfon", str(path))
    assert "Time must be the first dimension" not in info, info
    names = info.split()
    for name in PRODUCTS[stem]:
        assert name in names and f"skipped variable {name}!" not in info, (name, info)
    sic = PRODUCTS[stem][0]
    with xr.open_dataset(path) as ds:
        want, area = ds[sic].values, ds["cell_area"].values
        assert ds[sic].attrs["cell_measures"] == "area: cell_area" and ds["lon"].attrs["bounds"] == "lon_bnds"
    mean = tmp_path / "fldmean.nc"
    said = _cdo("fldmean", str(path), str(mean))
    assert f"constant grid cell area weights for variable {sic}!" not in said, said
    with netCDF4.Dataset(mean) as nc:
        assert sic in nc.variables, list(nc.variables)
        got = np.ma.filled(nc[sic][:], np.nan).astype(np.float64).reshape(want.shape[0])
    weight = np.where(np.isfinite(want), area, 0.0)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a time with no value (classic: no observation)
        weighted = np.nansum(want * area, axis=1) / weight.sum(axis=1)
    np.testing.assert_allclose(got, np.where(weight.sum(axis=1) > 0, weighted, np.nan), rtol=1e-5)
    assert np.isfinite(got).any()


@pytest.mark.skipif(shutil.which("cdo") is None, reason="cdo is not installed")
def test_cdo_remaps_the_sic_conservatively_with_the_cells(products, tmp_path, monkeypatch):
    """``cdo gridarea`` gives the file's cell_area, and ``cdo remapcon`` (conservative, which needs the
    cells' corners) onto a 1-degree grid keeps the SIC's area integral Σ SIC x cell area: to 1 % (CDO
    takes the corners on a sphere of 6371 km, the cells are WGS84's: 0.76 % less area on this twin)."""
    path = products["seaice_filtered"]
    area_file, remapped, remapped_area = (tmp_path / n for n in ("area.nc", "remapped.nc", "remapped_area.nc"))
    _cdo("gridarea", "-selname,seaice", str(path), str(area_file))
    with xr.open_dataset(path) as ds, xr.open_dataset(area_file) as ga:
        sic, area = ds["seaice"].values.astype(np.float64), ds["cell_area"].values
        np.testing.assert_allclose(ga["cell_area"].values.ravel(), area, rtol=1e-6)
    monkeypatch.setenv("CDO_REMAP_NORM", "destarea")  # the integral, not the mean over the covered part
    _cdo("remapcon,global_1", "-selname,seaice", str(path), str(remapped))
    _cdo("gridarea", str(remapped), str(remapped_area))
    with xr.open_dataset(remapped) as r, xr.open_dataset(remapped_area) as ra:
        got = np.nansum(r["seaice"].values * ra["cell_area"].values, axis=(1, 2))
    want = np.nansum(sic * area, axis=1)
    assert (want > 0).all()
    np.testing.assert_allclose(got, want, rtol=0.01)


@pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("cdo", "ncpdq", "ncks", "ncrename")), reason="cdo or NCO is not installed"
)
def test_the_documented_nco_recipe_gives_cdo_the_reference_file_with_its_dates(trained, tmp_path):
    """The recipe of docs/outputs.md, run as written there on seaice_TAG.nc ((grid, lagstep), the reference's
    layout): CDO reads the SIC and dates each step as the file's julian_day. Renaming the dimension in the
    netCDF-4 file (the recipe before ``ncks -3``) turned every time into fill, dated 1970-01-01 with no error."""
    import datetime
    import re

    doc = (Path(__file__).parents[2] / "docs" / "outputs.md").read_text()
    block = re.search(r"```\n(ncpdq -a lagstep,grid seaice_TAG\.nc.*?)```", doc, re.S)
    assert block is not None, "the NCO recipe is no longer in docs/outputs.md"
    shutil.copy(trained.output / f"seaice_{TAG}.nc", tmp_path / "seaice_TAG.nc")
    shown = ""
    for line in block.group(1).strip().splitlines():
        r = subprocess.run(line.split(), cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (line, r.stderr)
        shown = r.stdout
    with netCDF4.Dataset(tmp_path / "seaice_TAG.nc") as nc:
        jd = np.asarray(nc["julian_day"][:], dtype=np.float64)
    want = [(datetime.date(2000, 1, 1) + datetime.timedelta(days=float(d) - 2451544.5)).isoformat() for d in jd]
    assert shown.split() == want and want[0] > "2000", (shown, want)
    with netCDF4.Dataset(tmp_path / "seaice_cdo.nc") as nc, netCDF4.Dataset(tmp_path / "seaice_TAG.nc") as ref:
        np.testing.assert_array_equal(np.asarray(nc["seaice"][:]).T, np.asarray(ref["seaice"][:]))


@pytest.mark.skipif(shutil.which("cdo") is None, reason="cdo is not installed")
def test_the_documented_map_recipe_gives_a_cf_map_with_the_sea_ice_area(products, tmp_path):
    """The recipe of docs/outputs.md ("Onto a map grid"), run as written there on seaice_filtered_TAG.nc:
    a (time, y, x) map on EASE-Grid 2.0 North with its grid mapping, and the sea ice area of each day
    within 1.5 % of Σ SIC x cell_area (CDO's 6371 km sphere against WGS84: 0.8 %)."""
    import re

    doc = (Path(__file__).parents[2] / "docs" / "outputs.md").read_text()
    block = re.search(r"```\n(cat > ease2_250\.txt <<EOF\n.*?)```", doc, re.S)
    assert block is not None, "the map recipe is no longer in docs/outputs.md"
    shutil.copy(products["seaice_filtered"], tmp_path / "seaice_filtered_TAG.nc")
    r = subprocess.run(["bash", "-c", block.group(1)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    _cdo("gridarea", str(tmp_path / "seaice_ease2_250.nc"), str(tmp_path / "map_area.nc"))
    with (
        xr.open_dataset(tmp_path / "seaice_ease2_250.nc") as m,
        xr.open_dataset(tmp_path / "map_area.nc") as a,
        xr.open_dataset(products["seaice_filtered"]) as src,
    ):
        assert m["seaice"].dims == ("time", "y", "x") and m["seaice"].shape[1:] == (432, 432)
        assert m[m["seaice"].attrs["grid_mapping"]].attrs["grid_mapping_name"] == "lambert_azimuthal_equal_area"
        assert m["x"].attrs["standard_name"] == "projection_x_coordinate"
        got = np.nansum(m["seaice"].values * a["cell_area"].values[None], axis=(1, 2))
        want = np.nansum(src["seaice"].values.astype(np.float64) * src["cell_area"].values, axis=1)
    assert (want > 0).all()
    np.testing.assert_allclose(got, want, rtol=0.015)


def test_the_documented_xarray_lines_give_the_report_extent_and_area(products, tmp_path, monkeypatch):
    """The xarray lines of docs/outputs.md ("Grid cells"), run as written there on seaice_filtered_TAG.nc,
    give the daily sea ice area and extent that the run report's time series draws (plots/series.py's
    extent_area with the cells' areas), and the area is Σ SIC x cell_area over SIC >= 0.15 by hand."""
    import re

    from empirical_seaice.io.grid_cells import grid_cells
    from empirical_seaice.products.plots.series import extent_area

    doc = (Path(__file__).parents[2] / "docs" / "outputs.md").read_text()
    block = re.search(
        r"```python\n(import xarray as xr\n\nds = xr\.open_dataset\(\"seaice_filtered_TAG\.nc\"\).*?)```", doc, re.S
    )
    assert block is not None, "the xarray lines are no longer in docs/outputs.md"
    shutil.copy(products["seaice_filtered"], tmp_path / "seaice_filtered_TAG.nc")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(block.group(1), namespace)
    with xr.open_dataset(products["seaice_filtered"]) as ds:
        sic, lon, lat, cell_area = ds["seaice"].values.T, ds["lon"].values, ds["lat"].values, ds["cell_area"].values
    cells = grid_cells(lon, lat)
    assert cells is not None
    np.testing.assert_allclose(cell_area, cells.area_m2)
    want_extent, want_area = extent_area(sic, cells.area_m2 / 1e6)
    np.testing.assert_allclose(namespace["area"].values, want_area, rtol=1e-6)
    np.testing.assert_allclose(namespace["extent"].values, want_extent, rtol=1e-6)
    by_hand = np.nansum(np.where(sic >= 0.15, sic * cell_area[:, None], 0.0), axis=0) / 1e12
    np.testing.assert_allclose(namespace["area"].values, by_hand, rtol=1e-6)
    assert (want_area > 0).all() and (want_extent >= want_area).all()
    assert (lat > 0).all()  # the twin's grid is northern: the north's extent is the whole, the south's none
    np.testing.assert_array_equal(namespace["extent_north"].values, namespace["extent"].values)
    assert (namespace["extent_south"].values == 0).all()
    namespace["ds"].close()
