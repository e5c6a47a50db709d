"""A run on a global grid: the twin of both hemispheres (the northern polar grid's points, then the
southern's), as the weather model's grids hold both polar caps, a fifth of the observations held out.

The state moves toward the truth in each hemisphere (the run's summary scores each on its own: one RMSE
over both would let a good Arctic hide a bad Antarctic), and every file on the grid has each
hemisphere's cells (the twin's 200 km squares in both EASE-Grid 2.0 planes)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr

from .conftest import run_cli


@pytest.fixture(scope="module")
def global_run(tmp_path_factory):
    from empirical_seaice.twin.generate import generate_twin
    from empirical_seaice.twin.presets import get_twin_preset

    root = tmp_path_factory.mktemp("global")
    cfg = get_twin_preset(
        "tiny", resolution_km=200.0, lat_limit_deg=65.0, days=3, keep_fraction=0.5, hemisphere="both", seed=5
    )
    generate_twin(cfg, root / "data")
    r = run_cli(
        ["--data", root / "data", "--output", root / "out", "--tag", "g", "--nepochs", "10", "--batchsize", "128",
         "--validation-fraction", "0.2", "--no-progress", "--device", "cpu"]
    )  # fmt: skip
    assert r.code == 0, r.stderr
    r.output = root / "out"
    return r


def _scores(line: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"(background|trained) ([0-9.]+)", line)}


def test_the_state_moves_toward_the_truth_in_each_hemisphere(global_run):
    """Seed 5 (measured before the test was written: seeds 3 and 11 without a hold-out, trained
    0.23-0.28 of the background's RMSE in each hemisphere): under 0.4 of the background's in the north,
    the south and both together."""
    summary = (global_run.output / "summary_g.txt").read_text()
    whole = re.search(r"SIC RMSE vs truth \((\d+) grid-steps\): (.*)", summary)
    north = re.search(r"\n\s+north \((\d+) grid-steps\): (.*)", summary)
    south = re.search(r"\n\s+south \((\d+) grid-steps\): (.*)", summary)
    assert whole and north and south, summary
    assert int(north.group(1)) + int(south.group(1)) == int(whole.group(1))
    assert min(int(north.group(1)), int(south.group(1))) > 500
    for part in (whole, north, south):
        s = _scores(part.group(2))
        assert s["trained"] < 0.4 * s["background"], part.group(0)


def test_each_hemisphere_held_out_cost_is_booked_and_summarised(global_run):
    """The fused step's held-out pass books each hemisphere's cost per epoch (models_g.nc, the summary's
    lines under the whole's): the whole's is their weighted mean, so between them at every epoch."""
    with xr.open_dataset(global_run.output / "models_g.nc") as ds:
        whole = ds["loss_epoch_valid_obs"].values
        north, south = ds["loss_epoch_valid_obs_north"].values, ds["loss_epoch_valid_obs_south"].values
    assert len(whole) == len(north) == len(south) >= 2
    assert ((np.minimum(north, south) < whole) & (whole < np.maximum(north, south))).all()
    summary = (global_run.output / "summary_g.txt").read_text()
    held = re.search(r"held-out observation cost per obs: .*\n\s+north: (.*)\n\s+south: (.*)\n", summary)
    assert held and held.group(1).startswith(f"{north[0]:.4g} -> ") and "its lowest" in held.group(2), summary


def test_a_hemisphere_is_held_at_its_own_best_epoch(global_run):
    """Seed 5: the south's held-out cost is lowest at epoch 8 and higher at epoch 9, so (patience 1) its
    state goes back to epoch 8's and is held while the north trains on to epoch 10; the summary and the
    comment of its loss curve in models_g.nc say so, and the epoch they name is the south's lowest up to
    the hold."""
    summary = (global_run.output / "summary_g.txt").read_text()
    line = re.search(r"\n\s+(north|south): .*its state held at epoch (\d+)'s after epoch (\d+)", summary)
    assert line and line.group(1) == "south", summary
    with xr.open_dataset(global_run.output / "models_g.nc") as ds:
        costs = ds[f"loss_epoch_valid_obs_{line.group(1)}"].values
        comment = ds[f"loss_epoch_valid_obs_{line.group(1)}"].attrs["comment"]
    best, after = int(line.group(2)), int(line.group(3))
    assert after > best and costs[best - 1] == costs[:after].min() < costs[after - 1]
    assert comment == f"the south's state held at epoch {best}'s after epoch {after} (its own early stop)"


def test_every_file_on_the_grid_has_each_hemisphere_cells(global_run):
    for stem in ("seaice", "seaice_filtered", "properties_grid", "ice_emis_grid", "classic_sic"):
        with xr.open_dataset(global_run.output / f"{stem}_g.nc", decode_times=False) as ds:
            lat = ds["lat"].values
            assert (lat > 60).sum() > 250 and (lat < -60).sum() > 250, stem
            np.testing.assert_allclose(ds["cell_area"].values, 4e10, rtol=1e-6, err_msg=stem)
            corners = ds["lat_bnds"].values
            assert ((corners > 0).all(axis=1) == (lat > 0)).all(), stem  # each cell in its point's hemisphere
