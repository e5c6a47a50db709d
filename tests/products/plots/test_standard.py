"""The standard set of a run: every picture and the report index are written, in order, with dated captions."""

from __future__ import annotations

import numpy as np
from plot_helpers import assert_png, polar_grid

from empirical_seaice.products.plots import PlotInputs, make_plots
from empirical_seaice.products.plots.standard import hemisphere_series


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
    inputs = PlotInputs(
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
    paths = make_plots(tmp_path / "plots", inputs)
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


def test_a_global_grid_has_each_hemisphere_extent_and_area_by_hand():
    """Two northern cells (1 and 2 x 10^6 km^2) and two southern (3 and 4): on day 0 the north has
    SIC 1.0 and 0.5, the south 0.1 and 0.2, so the north's extent is 3 and its area 2, the south's
    extent 4 (the cell of 0.2 alone) and area 0.8, where one sum would give 7 and 2.8; on day 1 the
    seasons swap. The classic map's coverage is noted per hemisphere (the south's half missing)."""
    lat = np.array([70.0, 80.0, -70.0, -80.0])
    area = np.array([1e6, 2e6, 3e6, 4e6])
    sic = np.array([[1.0, 0.0], [0.5, 0.1], [0.1, 0.9], [0.2, 1.0]])
    classic = np.array([[1.0, 0.0], [0.5, 0.1], [np.nan, 0.9], [np.nan, 1.0]])
    series, notes = hemisphere_series({"trained": sic, "background": None, "nasa team": classic}, lat, area)
    assert list(series) == ["north", "south"] and list(series["north"]) == ["trained", "nasa team"]
    np.testing.assert_allclose(series["north"]["trained"][0], [3.0, 0.0])
    np.testing.assert_allclose(series["north"]["trained"][1], [2.0, 0.0])
    np.testing.assert_allclose(series["south"]["trained"][0], [4.0, 7.0])
    np.testing.assert_allclose(series["south"]["trained"][1], [0.8, 6.7])
    assert notes == {"north": {}, "south": {"nasa team": "observed cells only, 50 % of cell-days"}}
    one, _ = hemisphere_series({"trained": sic[:2]}, lat[:2], area[:2])
    assert list(one) == [""]  # one hemisphere: one row without a title
    np.testing.assert_allclose(one[""]["trained"][0], [3.0, 0.0])


def test_a_global_grid_report_draws_a_row_of_extent_and_area_per_hemisphere(tmp_path):
    """make_plots on the two polar grids together: the time series has two rows of panels."""
    lon_n, lat_n = polar_grid(n_side=10)
    lon_s, lat_s = polar_grid(n_side=10, south=True)
    lon, lat = np.concatenate([lon_n, lon_s]), np.concatenate([lat_n, lat_s])
    sic = np.clip(np.random.default_rng(3).uniform(-0.2, 1.2, (lon.size, 2)), 0, 1)
    drawn = {}
    for name, (x, y, s) in {"global": (lon, lat, sic), "north": (lon_n, lat_n, sic[: lon_n.size])}.items():
        inputs = PlotInputs(lon=x, lat=y, day=0, sic=s, dates=["2021-03-01", "2021-03-02"], title=name)
        paths = make_plots(tmp_path / name, inputs)
        drawn[name] = assert_png(next(p for p in paths if p.name == "timeseries_extent_area.png"))
    assert drawn["global"].shape[0] > 1.8 * drawn["north"].shape[0]
