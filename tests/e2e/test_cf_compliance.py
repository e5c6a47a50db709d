"""Every NetCDF file of a run passes the IOOS compliance checker's CF-1.10 suite with no error
and no warning, offline (the CF standard-name table shipped with compliance-checker), but one
finding of the checker's own: the products' (time, grid[, x]) order (:data:`TIME_GRID`)."""

from __future__ import annotations

import json
import re
import socket

import pytest

from .conftest import TAG

cc_runner = pytest.importorskip("compliance_checker.runner", reason="compliance-checker (test extras) not installed")

CF = "cf:1.10"

TIME_GRID = re.compile(
    r"^\w+'s spatio-temporal dimensions are not in the recommended order .*"
    r" are time \(T\), grid \(A\)(, \w+ \(U\))? \("
)
"""The checker's §2.4 finding on a product's (time, grid) or (time, grid, x) variable, dropped: the products put
time first for CDO, and the checker takes ``grid``, the horizontal dimension of the unstructured grid (``lon``,
``lat`` along it), for an "other" dimension, which CF 2.4 recommends left of the spatiotemporal ones: it accepts
only (grid, time), the order CDO skips. CF's recommendation is about the order of T, Z, Y, X; the horizontal
dimension of an unstructured grid is not an "other" one (ioos/compliance-checker#1345, open, on the same rule and
unstructured grids). Any other dimension-order finding still fails."""


def _no_network(*args, **kwargs):
    raise OSError("network access attempted during the compliance check")


def check_cf(path, tmp_path) -> tuple[list[str], list[str], bool]:
    """(errors, warnings, checker_failed) of compliance-checker's CF suite on ``path``."""
    cc_runner.CheckSuite.load_all_available_checkers()
    report = tmp_path / f"{path.name}.json"
    _, failed = cc_runner.ComplianceChecker.run_checker(
        str(path), [CF], 0, "normal", output_filename=str(report), output_format="json"
    )
    result = json.loads(report.read_text())[CF]

    def failing(group: str) -> list[str]:
        found = []
        for r in result[group]:
            msgs = [m for m in r["msgs"] if not TIME_GRID.match(m)]
            if r["value"][0] < r["value"][1] and (msgs or not r["msgs"]):
                found.append(f"{r['name']}: {'; '.join(msgs)}")
        return found

    return failing("high_priorities"), failing("medium_priorities"), bool(failed)


def test_every_output_file_is_cf_compliant(trained, products_run, tmp_path, monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _no_network)  # the checker must work offline
    files = sorted(trained.output.glob(f"*_{TAG}.nc")) + sorted(products_run.output.glob(f"*_{TAG}.nc"))
    stems = {p.name.removesuffix(f"_{TAG}.nc") for p in files}
    assert {
        "seaice",
        "models",
        "properties_grid",
        "properties_obs",
        "tbobs",
        "tbsim_initial",
        "tbsim",
        "tbzero",
        "ice_emis",
        "ice_emis_grid",
        "classic_sic",
        "emis_model",
    } <= stems
    report = {}
    for path in files:
        errors, warnings, failed = check_cf(path, tmp_path)
        if errors or warnings or failed:
            report[f"{path.parent.parent.name}/{path.name}"] = (errors, warnings, failed)
    assert not report, report


def test_only_the_time_grid_order_finding_is_dropped(tmp_path):
    """A (time, grid) variable on an unstructured grid (``lon``, ``lat`` along ``grid``) passes (the finding
    dropped), but a (time, grid, x, y) one is still reported (two dimensions after the grid's)."""
    import netCDF4
    import numpy as np

    def write(path, dims):
        with netCDF4.Dataset(path, "w") as nc:
            for d, n in (("time", 2), ("grid", 3), ("x", 2), ("y", 2)):
                nc.createDimension(d, n)
            t = nc.createVariable("time", "f8", ("time",))
            t.setncatts({"units": "days since 1970-01-01", "standard_name": "time", "axis": "T", "long_name": "t"})
            t[:] = [1, 2]
            for c, sn, u in (("lon", "longitude", "degrees_east"), ("lat", "latitude", "degrees_north")):
                v = nc.createVariable(c, "f4", ("grid",))
                v.setncatts({"units": u, "standard_name": sn, "long_name": c})
                v[:] = [1, 2, 3]
            v = nc.createVariable("sic", "f4", dims)
            v.setncatts({"units": "1", "standard_name": "sea_ice_area_fraction", "long_name": "sic"})
            v.coordinates = "lon lat"
            v[:] = np.zeros([{"time": 2, "grid": 3, "x": 2, "y": 2}[d] for d in dims])
        return check_cf(path, tmp_path)[1]

    assert not [w for w in write(tmp_path / "tg.nc", ("time", "grid")) if "§2.4" in w]
    assert [w for w in write(tmp_path / "tgxy.nc", ("time", "grid", "x", "y")) if "§2.4" in w]


def test_the_checker_finds_errors_in_a_non_cf_file(tmp_path):
    """The check above can fail: a file with an unknown standard name and a time without an epoch."""
    import netCDF4

    path = tmp_path / "bad.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("t", 2)
        v = nc.createVariable("sic", "f4", ("t",))
        v.standard_name = "sea_ice_concentration_of_my_own"
        v.units = "1"
        t = nc.createVariable("t", "f8", ("t",))
        t.units = "days"
        t[:] = [1, 2]
    errors, warnings, _ = check_cf(path, tmp_path)
    assert any("standard_name" in e for e in errors + warnings)
    assert errors


def test_the_frequency_gridded_product_is_cf_compliant(trained, tmp_path, monkeypatch):
    """``--grid-freqs`` writes ``frequency`` as a coordinate variable (no ``_FillValue``: the checker's one
    error on this mode before)."""
    import shutil

    from .conftest import run_cli

    monkeypatch.setattr(socket.socket, "connect", _no_network)
    output = tmp_path / "out"
    output.mkdir()
    shutil.copy(trained.output / f"model_{TAG}.pt", output / f"model_{TAG}.pt")
    argv = ["--data", trained.data, "--output", output, "--modeltag", TAG, "--tag", "f", "--diagsonly"]
    r = run_cli([*argv, "--grid-freqs", "10", "89", "150", "--no-classic", "--quiet"])
    assert r.code == 0, r.stderr
    errors, warnings, failed = check_cf(output / "ice_emis_grid_f.nc", tmp_path)
    assert not (errors or warnings or failed), (errors, warnings)


def test_global_attributes_have_one_type_across_files(trained, products_run):
    """An attribute several files carry (``stepstart``, ``nobs``...) has the same type in each: scripts
    reading it across files need not parse strings in some (the provenance wrote them as text)."""
    import netCDF4

    files = sorted(trained.output.glob(f"*_{TAG}.nc")) + sorted(products_run.output.glob(f"*_{TAG}.nc"))
    types: dict[str, dict[str, str]] = {}
    for path in files:
        with netCDF4.Dataset(path) as nc:
            for name in nc.ncattrs():
                types.setdefault(name, {})[path.name] = type(nc.getncattr(name)).__name__.replace("64", "")
    mixed = {name: seen for name, seen in types.items() if len(set(seen.values())) > 1}
    assert "stepstart" in types and len(types["stepstart"]) >= 3
    assert not mixed, mixed


def test_times_have_no_fill_value_in_any_file(trained, products_run):
    """``time``, its bounds and the reference's ``julian_day`` are never missing: no ``_FillValue`` in any
    file (``julian_day`` had NaN in most files and none in the gridded product)."""
    import netCDF4

    files = sorted(trained.output.glob(f"*_{TAG}.nc")) + sorted(products_run.output.glob(f"*_{TAG}.nc"))
    filled = []
    for path in files:
        with netCDF4.Dataset(path) as nc:
            for name in ("time", "time_bnds", "julian_day"):
                if name in nc.variables and "_FillValue" in nc[name].ncattrs():
                    filled.append(f"{path.name}:{name}")
    assert len(files) > 5 and not filled, filled


def test_every_variable_on_the_grid_names_the_cell_area(trained, products_run):
    """In every file with ``cell_area``, every variable along ``grid`` but the cells' own (``lon``, ``lat``,
    their bounds, the area) says ``cell_measures = "area: cell_area"`` (``nobs_cell`` of the gridded product
    did not)."""
    import netCDF4

    files = sorted(trained.output.glob(f"*_{TAG}.nc")) + sorted(products_run.output.glob(f"*_{TAG}.nc"))
    cells = ("lon", "lat", "lon_bnds", "lat_bnds", "cell_area")
    lacking, checked = [], 0
    for path in files:
        with netCDF4.Dataset(path) as nc:
            if "cell_area" not in nc.variables:
                continue
            for name, var in nc.variables.items():
                if "grid" in var.dimensions and name not in cells:
                    checked += 1
                    if getattr(var, "cell_measures", None) != "area: cell_area":
                        lacking.append(f"{path.name}:{name}")
    assert checked > 10 and not lacking, lacking


@pytest.mark.parametrize("grid", ["rows", "tessellation"])
def test_the_cells_of_other_grids_are_cf_compliant(grid, tmp_path, monkeypatch):
    """seaice_TAG.nc on a grid of latitude rows (boxes, some across the antimeridian) and on an irregular
    grid (Voronoi cells of up to about ten corners, the last repeated): the cells pass the checker too."""
    import numpy as np
    import pyproj
    import xarray as xr

    from empirical_seaice.io.grid_cells import EPSG_NORTH
    from empirical_seaice.io.outputs import write_seaice

    monkeypatch.setattr(socket.socket, "connect", _no_network)
    rng = np.random.default_rng(5)
    if grid == "rows":
        lon, lat = (a.ravel() for a in np.meshgrid(np.arange(-179.5, 180.0, 2.0), np.arange(71.0, 90.0, 2.0)))
    else:
        i, j = (a.ravel() for a in np.meshgrid(np.arange(15), np.arange(15), indexing="ij"))
        x = -300_000.0 + 50_000.0 * (i + rng.uniform(-0.3, 0.3, i.size))
        y = -1_500_000.0 + 50_000.0 * (j + rng.uniform(-0.3, 0.3, j.size))
        lon, lat = pyproj.Transformer.from_crs(EPSG_NORTH, 4326, always_xy=True).transform(x, y)
    sic = rng.uniform(0.0, 1.0, (len(lon), 4)).astype(np.float32)
    path = write_seaice(tmp_path / "seaice_t.nc", sic, 2459000.5 + np.arange(4.0), np.asarray(lon), np.asarray(lat))
    with xr.open_dataset(path) as ds:
        assert {"lon_bnds", "lat_bnds", "cell_area"} <= set(ds.variables)
        assert (ds.sizes["vertices"] == 4) if grid == "rows" else (ds.sizes["vertices"] > 4)
    errors, warnings, failed = check_cf(path, tmp_path)
    assert not failed and not errors and not warnings, (errors, warnings)
