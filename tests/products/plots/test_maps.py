"""Maps: each file is produced and is a valid, non-blank PNG of the expected size; bad fields are refused."""

from __future__ import annotations

import numpy as np
import pytest
from plot_helpers import assert_png, polar_grid

from empirical_seaice.errors import SeaIceError
from empirical_seaice.products.plots.maps import plot_maps


def test_plot_maps_png(tmp_path):
    lon, lat = polar_grid()
    rng = np.random.default_rng(0)
    f = {"a": np.clip((90 - lat) / 30, 0, 1), "b": rng.uniform(0, 1, lon.size)}
    f["b"][:5] = np.nan
    img = assert_png(plot_maps(tmp_path / "m.png", lon, lat, f, title="t", vmin=0, vmax=1))
    # Two panels of 3.6 in + colour bar at 100 dpi.
    assert img.shape[1] == int(round((3.6 * 2 + 1.4) * 100))
    with pytest.raises(SeaIceError, match="expected"):
        plot_maps(tmp_path / "x.png", lon, lat, {"bad": np.zeros(3)})
    with pytest.raises(SeaIceError, match="no field"):
        plot_maps(tmp_path / "x.png", lon, lat, {})


def test_south_hemisphere_map(tmp_path):
    """A southern map with the colour scale centred on zero: drawn, and not the picture without the centring
    (the field runs from -0.2 to 1, so a centred scale is -1..1)."""
    lon, lat = polar_grid(n_side=14, south=True)
    field = {"a": np.linspace(-0.2, 1, lon.size)}
    centred = assert_png(plot_maps(tmp_path / "s.png", lon, lat, field, centre_zero=True))
    plain = assert_png(plot_maps(tmp_path / "p.png", lon, lat, field))
    assert centred.shape == plain.shape and (centred != plain).any(axis=-1).sum() > 100


def test_a_grid_with_both_hemispheres_gets_a_panel_of_each_per_field(tmp_path):
    """A global grid (the two polar grids together): two fields give four panels, each field's north and
    south on their own planes (one plane for both drew the Arctic smeared along the rim of the southern
    map), in one row as tall as a single hemisphere's map."""
    lon_n, lat_n = polar_grid()
    lon_s, lat_s = polar_grid(south=True)
    lon, lat = np.concatenate([lon_n, lon_s]), np.concatenate([lat_n, lat_s])
    f = {"a": np.clip((np.abs(lat) - 60) / 30, 0, 1), "b": np.linspace(0, 1, lon.size)}
    img = assert_png(plot_maps(tmp_path / "both.png", lon, lat, f, vmin=0, vmax=1))
    assert img.shape[1] == int(round((3.6 * 4 + 1.4) * 100))  # four panels in a row, and the colour bar
    south_only = assert_png(plot_maps(tmp_path / "s.png", lon_s, lat_s, {"a": f["a"][lon_n.size :]}, vmin=0, vmax=1))
    assert img.shape[0] == south_only.shape[0]
