"""A grid description's own cells (CF bounds and cell_area in ``--grid-file``) in every file on the grid.

The twin's grid would get its 200 km squares drawn (io/grid_cells.py); declared here as those squares
listed clockwise with their last corner repeated, and areas 10 % larger, the files must carry the
declared ones: read backwards into CF's anticlockwise order, five corners, the areas as given."""

from __future__ import annotations

import netCDF4
import numpy as np
import xarray as xr

from empirical_seaice.io import grid_cells as gc

from .conftest import run_cli

FILES_ON_THE_GRID = ("seaice", "seaice_filtered", "properties_grid", "ice_emis_grid", "classic_sic")


def test_the_outputs_carry_the_cells_the_grid_file_declares(twin_dir, tmp_path):
    with netCDF4.Dataset(str(next(twin_dir.glob("ifs_tsfc_*.nc")))) as ds:
        lon, lat = (np.asarray(ds[name][:], np.float32) for name in ("LON", "LAT"))
    drawn = gc.grid_cells(lon, lat)
    assert drawn is not None and drawn.nvertex == 4
    clockwise = [0, 3, 2, 1, 1]  # the drawn squares' corners, anticlockwise, read backwards, the last twice
    grid_file = tmp_path / "grid_with_cells.nc"
    with netCDF4.Dataset(str(grid_file), "w") as ds:
        ds.createDimension("igrid", len(lon))
        ds.createDimension("nv", 5)
        for name, values, bounds in (("lon", lon, drawn.lon_bounds), ("lat", lat, drawn.lat_bounds)):
            ds.createVariable(name, "f4", ("igrid",))[:] = values
            ds.createVariable(f"{name}_bnds", "f8", ("igrid", "nv"))[:] = bounds[:, clockwise]
        ds.createVariable("cell_area", "f8", ("igrid",))[:] = 1.1 * drawn.area_m2
        ds["cell_area"].units = "m2"
    try:
        r = run_cli(
            ["--data", twin_dir, "--output", tmp_path / "out", "--tag", "cells", "--grid-file", grid_file,
             "--nepochs", "1", "--batchsize", "256", "--no-progress", "--device", "cpu"]
        )  # fmt: skip
        assert r.code == 0, r.stderr
    finally:
        gc.declare(None, None, None)
    anticlockwise = [1, 2, 3, 0, 0]  # the clockwise list read backwards: the drawn squares from their second corner
    for stem in FILES_ON_THE_GRID:
        with xr.open_dataset(tmp_path / "out" / f"{stem}_cells.nc", decode_times=False) as ds:
            assert ds["lon_bnds"].shape == (len(lon), 5), stem
            np.testing.assert_array_equal(ds["lon_bnds"].values, drawn.lon_bounds[:, anticlockwise], err_msg=stem)
            np.testing.assert_array_equal(ds["lat_bnds"].values, drawn.lat_bounds[:, anticlockwise], err_msg=stem)
            np.testing.assert_allclose(ds["cell_area"].values, 1.1 * drawn.area_m2, rtol=1e-12, err_msg=stem)
            comment = ds["cell_area"].attrs["comment"]
            assert comment.startswith("the cell of the grid description's CF bounds, its area the description's"), stem
