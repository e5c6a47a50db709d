"""Plots: each file is produced and is a valid, non-blank PNG of the expected
size; the helper statistics are right by hand."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import image as mpimg

from empirical_seaice.errors import SeaIceError
from empirical_seaice.products import plots


def polar_grid(n_side=16, spacing_km=150.0, south=False):
    """A regular grid in EASE-Grid 2.0 (EPSG:6931/6932) around the pole, returned as lon/lat."""
    import pyproj

    epsg = 6932 if south else 6931
    r = (np.arange(n_side) - n_side / 2 + 0.5) * spacing_km * 1000
    xx, yy = np.meshgrid(r, r)
    keep = np.hypot(xx, yy) > 2 * spacing_km * 1000  # a "land" hole in the middle
    tr = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True)
    lon, lat = tr.transform(xx[keep], yy[keep])
    return np.asarray(lon), np.asarray(lat)


def assert_png(path, min_std=0.02, min_size=(200, 200)):
    assert path.is_file() and path.suffix == ".png"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] >= min_size[1] and img.shape[1] >= min_size[0]
    assert float(img[..., :3].std()) > min_std, f"{path.name} looks blank"
    return img


def test_projection_and_spacing():
    lon, lat = polar_grid()
    x, y, epsg = plots.projected_xy(lon, lat)
    assert epsg == 6931
    assert plots.grid_spacing_km(x, y) == pytest.approx(150.0, rel=1e-6)
    lon_s, lat_s = polar_grid(south=True)
    assert plots.projected_xy(lon_s, lat_s)[2] == 6932
    # The North Pole is the origin of EASE-Grid 2.0 North.
    x0, y0, _ = plots.projected_xy(np.array([0.0, 10.0]), np.array([90.0, 80.0]))
    assert abs(x0[0]) < 1e-6 and abs(y0[0]) < 1e-6


def test_plot_maps_png(tmp_path):
    lon, lat = polar_grid()
    rng = np.random.default_rng(0)
    f = {"a": np.clip((90 - lat) / 30, 0, 1), "b": rng.uniform(0, 1, lon.size)}
    f["b"][:5] = np.nan
    img = assert_png(plots.plot_maps(tmp_path / "m.png", lon, lat, f, title="t", vmin=0, vmax=1))
    # Two panels of 3.6 in + colour bar at 100 dpi.
    assert img.shape[1] == int(round((3.6 * 2 + 1.4) * 100))
    with pytest.raises(SeaIceError, match="expected"):
        plots.plot_maps(tmp_path / "x.png", lon, lat, {"bad": np.zeros(3)})
    with pytest.raises(SeaIceError, match="no field"):
        plots.plot_maps(tmp_path / "x.png", lon, lat, {})


def test_plot_spectra_loss_departures(tmp_path):
    f = plots.SPECTRUM_FREQ_GHZ
    spectra = {
        "a": np.column_stack([0.95 - 0.001 * f, 0.85 - 0.002 * f]),
        "b": np.column_stack([0.9 - 0.0005 * f, 0.8 - 0.001 * f]),
    }
    assert_png(plots.plot_spectra(tmp_path / "s.png", f, spectra))
    with pytest.raises(SeaIceError, match="expected"):
        plots.plot_spectra(tmp_path / "s2.png", f, {"x": np.zeros((3, 2))})
    losses = {"obs": np.array([10.0, 5.0, 3.0, 2.5]), "sic_range": np.array([1.0, 0.5, 0.2, 0.1])}
    assert_png(plots.plot_loss_curves(tmp_path / "l.png", losses))
    with pytest.raises(SeaIceError, match="no loss"):
        plots.plot_loss_curves(tmp_path / "l2.png", {"obs": np.array([])})
    rng = np.random.default_rng(1)
    before = rng.normal(5, 8, (500, 4))
    after = rng.normal(0, 2, (500, 4))
    before[:100, 3] = np.nan
    names = ["19v", "19h", "37v", "37h"]
    assert_png(plots.plot_departure_histograms(tmp_path / "h.png", names, before, after))
    assert_png(plots.plot_departure_stats(tmp_path / "d.png", names, before, after))
    with pytest.raises(SeaIceError, match="expected"):
        plots.plot_departure_histograms(tmp_path / "h2.png", names[:2], before, after)
    with pytest.raises(SeaIceError, match="expected 2 channels"):
        plots.plot_departure_stats(tmp_path / "d2.png", names[:2], before, after)
    with pytest.raises(SeaIceError, match="no spectrum"):
        plots.plot_spectra(tmp_path / "s3.png", f, {})
    # Without the "before" set (diagnostics of a trained model) the plots still come.
    assert_png(plots.plot_departure_stats(tmp_path / "d3.png", names, None, after))


def test_departure_stats_hand_values():
    d = np.array([[1.0, np.nan], [3.0, 4.0], [5.0, np.nan]])
    n, mean, std = plots.departure_stats(d)
    np.testing.assert_array_equal(n, [3, 1])
    np.testing.assert_allclose(mean, [3.0, 4.0])
    np.testing.assert_allclose(std, [np.sqrt(8 / 3), 0.0])


def test_spectrum_groups_from_masks():
    sic = np.array([0.9, 0.95, 0.5, 1.0])
    props = np.array([[1.0, 0.0], [3.0, 0.0], [9.0, 9.0], [5.0, 2.0]])
    t = np.array([250.0, 254.0, 260.0, 240.0])
    g = plots.spectrum_groups_from_masks({"a": [True, True, True, False], "b": [False] * 4}, sic, props, t)
    ((label, (tm, pm)),) = g.items()
    assert label == "a (n=2)" and tm == 252.0  # the SIC 0.5 cell is not consolidated ice
    np.testing.assert_allclose(pm, [2.0, 0.0])


def test_spectrum_groups():
    sic = np.array([0.9, 0.95, 1.0, 0.99, 0.3, 0.85])
    props = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [9.0, 9.0], [4.0, 2.0]])
    t = np.array([250.0, 251.0, 252.0, 253.0, 270.0, 254.0])
    g = plots.spectrum_groups(sic, props, t)
    assert len(g) == 3
    total = sum(int(k.split("n=")[1].rstrip(")")) for k in g)
    assert total == 5  # the SIC 0.3 point is excluded
    low = [v for k, v in g.items() if k.startswith("lowest third of P0: P0 < ")][0]
    assert low[1][0] < 1.5 and low[0] <= 251.0
    assert plots.spectrum_groups(np.zeros(3), props[:3], t[:3]) == {}


class _LinearModel:
    nprop = 3

    def emissivity_vh(self, t_skin_k, props, freq_ghz):
        f = np.asarray(freq_ghz, dtype=np.float64)
        p = np.asarray(props, dtype=np.float64)
        ev = 0.95 - 0.0008 * f + 0.01 * p[..., 0] + 0 * np.asarray(t_skin_k)
        return np.stack([ev, ev - 0.08], axis=-1)


def test_make_plots_writes_all_and_index(tmp_path):
    lon, lat = polar_grid(n_side=12)
    ng, ns = lon.size, 3
    rng = np.random.default_rng(2)
    sic = np.clip(rng.uniform(-0.2, 1.2, (ng, ns)), 0, 1)
    inputs = plots.PlotInputs(
        lon=lon,
        lat=lat,
        day=1,
        sic=sic,
        sic_background=np.clip(sic + 0.1, 0, 1),
        sic_truth=np.clip(sic - 0.05, 0, 1),
        sic_classic={"nasa_team": np.clip(sic * 0.9, 0, 1)},
        props_grid=rng.normal(0, 1, (ng, ns, 2)),
        emis_grid={c: rng.uniform(0.7, 0.97, (ng, ns)) for c in ("10v", "37v", "89v")},
        t_skin_map_k=rng.uniform(240, 270, (ng, ns)),
        emissivity_model=_LinearModel(),
        nprop_obs=1,
        losses_epoch={"obs": np.array([5.0, 3.0, 2.0])},
        losses_batch={"obs": np.linspace(9, 2, 50)},
        channel_names=["19v", "37v"],
        dep_before=rng.normal(3, 5, (200, 2)),
        dep_after=rng.normal(0, 1, (200, 2)),
        title="test",
        spectrum_masks={"west": np.tile((lon < 0)[:, None], (1, ns)), "none": np.zeros((ng, ns), bool)},
        dates=["2021-03-01", "2021-03-02", "2021-03-03"],
        trained_freqs_ghz={"amsr2": [10.65, 18.7, 36.5, 89.0]},
    )
    paths = plots.make_plots(tmp_path / "plots", inputs)
    names = [p.name for p in paths]
    assert names == [
        "map_sic.png",
        "map_sic_error.png",
        "map_prop0.png",
        "map_prop1.png",
        "map_ice_emis.png",
        "spectra.png",
        "spectra_ice_types.png",
        "timeseries_extent_area.png",
        "loss_epoch.png",
        "loss_batch.png",
        "departures_hist.png",
        "departures_stats.png",
        "index.html",
    ]
    for p in paths[:-1]:
        assert_png(p)
    index = paths[-1].read_text()
    for n in names[:-1]:
        assert f"src='{n}'" in index
    assert "Sea ice concentration on 2021-03-02" in index  # captions carry the date


def test_rasterise_fills_every_cell_of_a_regular_grid_once():
    lon, lat = polar_grid(n_side=12, spacing_km=100.0)
    g = plots.rasterise(lon, lat)
    assert g.spacing_km == pytest.approx(100.0) and g.cell_area_km2 == pytest.approx(1e4)
    drawn = g.index[g.index >= 0]
    assert sorted(drawn.tolist()) == list(range(lon.size))  # each point exactly once: no gap, no overlap
    # the raster is the 12 x 12 lattice (the hole in the middle stays empty)
    assert g.index.shape == (12, 12) and (g.index < 0).sum() == 144 - lon.size
    filled = g.fill(np.arange(lon.size, dtype=float))
    assert filled.count() == lon.size


def test_extent_and_area_by_hand():
    sic = np.array([[1.0, 0.1], [0.5, np.nan], [0.15, 0.2]])  # 3 cells x 2 days
    extent, area = plots.extent_area(sic, cell_area_km2=1e6)  # cells of 10^6 km^2 -> values in cells
    np.testing.assert_allclose(extent, [3.0, 1.0])  # day 0: 1.0, 0.5, 0.15 >= 0.15; day 1: 0.2 only
    np.testing.assert_allclose(area, [1.65, 0.2])


def test_shipped_land_mask_matches_the_globe_mask():
    from global_land_mask import globe

    from empirical_seaice.products.coastline import is_land

    assert is_land(np.array([72.0, 0.0, 89.9, 0.0]), np.array([-40.0, 20.0, 0.0, -30.0])).tolist() == [
        True,  # Greenland
        True,  # Africa
        False,  # North Pole
        False,  # Atlantic
    ]
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(-85, 85, 20000), rng.uniform(-180, 180, 20000)
    agree = (is_land(lat, lon) == globe.is_land(lat, lon)).mean()
    assert agree > 0.99  # measured 0.9968 on 200,000 points: only coastal cells differ


def test_spectra_mark_trained_channels_and_loss_note(tmp_path):
    f = plots.SPECTRUM_FREQ_GHZ
    assert_png(
        plots.plot_spectra(
            tmp_path / "s.png",
            f,
            {"x": np.column_stack([0.95 - 0.001 * f, 0.85 - 0.002 * f])},
            trained_freqs_ghz={"amsr2": [10.65, 89.0], "gmi": [166.0]},
        )
    )
    losses = {"obs": np.array([3.0, 2.0]), "warm_ice": np.array([0.5, 0.4]), "total": np.array([3.5, 2.4])}
    assert_png(plots.plot_loss_curves(tmp_path / "l.png", losses))


def test_south_hemisphere_map(tmp_path):
    lon, lat = polar_grid(n_side=14, south=True)
    assert_png(plots.plot_maps(tmp_path / "s.png", lon, lat, {"a": np.linspace(-1, 1, lon.size)}, centre_zero=True))
