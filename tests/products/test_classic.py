"""Classic SIC algorithms: NASA Team and Bootstrap recover the concentrations
of noise-free TBs built from their own tie points; clipping, weather filter,
plane switch, daily gridding and the output file."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from empirical_seaice.errors import SeaIceError
from empirical_seaice.products import classic
from empirical_seaice.products.classic import classic_sic_maps, grid_daily_mean_tb, sic_rmse, write_classic_sic
from empirical_seaice.products.open_water_filter import open_water_mask
from empirical_seaice.products.sic_algorithms import (
    BOOTSTRAP_TIE_POINTS,
    NASA_TEAM_TIE_POINTS,
    bootstrap,
    bootstrap_plane_sic,
    nasa_team,
)


def nt_mixture(tp, c_fy, c_my):
    """TB (19V, 19H, 37V) of a linear OW/FY/MY mixture from the tie points."""
    out = []
    for t in (tp.tb19v_k, tp.tb19h_k, tp.tb37v_k):
        out.append(t[0] + c_fy * (t[1] - t[0]) + c_my * (t[2] - t[0]))
    return out


def bt_mixture(tp, c, ice_37v):
    """TB (37V, 37H, 19V) at concentration c towards an ice point on both ice lines."""
    ice = (ice_37v, tp.line_vh37[0] + tp.line_vh37[1] * ice_37v, tp.line_v1937[0] + tp.line_v1937[1] * ice_37v)
    water = (tp.water_37v_k, tp.water_37h_k, tp.water_19v_k)
    return [w + c * (i - w) for w, i in zip(water, ice, strict=True)]


@pytest.mark.parametrize("sensor", ["amsr2", "ssmisf17"])
def test_nasa_team_recovers_mixtures_of_its_tie_points(sensor):
    tp = NASA_TEAM_TIE_POINTS[sensor]
    rng = np.random.default_rng(1)
    c_fy = rng.uniform(0, 1, 500)
    c_my = rng.uniform(0, 1, 500) * (1 - c_fy)
    corners_fy = np.array([0.0, 1.0, 0.0, 0.5, 0.3])
    corners_my = np.array([0.0, 0.0, 1.0, 0.5, 0.2])
    c_fy = np.concatenate([c_fy, corners_fy])
    c_my = np.concatenate([c_my, corners_my])
    v19, h19, v37 = nt_mixture(tp, c_fy, c_my)
    out = nasa_team(v19, h19, v37, tp, weather_filter=False)
    np.testing.assert_allclose(out.first_year, c_fy, atol=1e-6)
    np.testing.assert_allclose(out.multi_year, c_my, atol=1e-6)
    np.testing.assert_allclose(out.total, c_fy + c_my, atol=1e-6)


def test_nasa_team_pure_types_and_docstring_value():
    tp = NASA_TEAM_TIE_POINTS["amsr2"]
    fy = nasa_team(253.07, 234.73, 244.16, tp)
    assert float(fy.total) == pytest.approx(1.0, abs=1e-9)
    assert float(fy.first_year) == pytest.approx(1.0, abs=1e-9)
    my = nasa_team(225.80, 196.75, 193.78, tp)
    assert float(my.multi_year) == pytest.approx(1.0, abs=1e-9)
    assert float(my.first_year) == pytest.approx(0.0, abs=1e-9)


def test_nasa_team_clips_total_to_unit_interval():
    tp = NASA_TEAM_TIE_POINTS["amsr2"]
    # Extrapolated beyond first-year ice (C_FY = 1.3) and beyond water (C_FY = -0.4).
    v19, h19, v37 = nt_mixture(tp, np.array([1.3, -0.4]), np.array([0.0, 0.0]))
    out = nasa_team(v19, h19, v37, tp, weather_filter=False)
    np.testing.assert_allclose(out.first_year, [1.3, -0.4], atol=1e-6)
    np.testing.assert_array_equal(out.total, [1.0, 0.0])


def test_nasa_team_weather_filter():
    tp = NASA_TEAM_TIE_POINTS["amsr2"]
    # 20 % first-year ice (GR < 0.05) is kept; the same with 37V raised by 10 K (cloud
    # liquid water) has GR > 0.05 and a spurious non-zero unfiltered SIC: set to 0.
    v19, h19, v37 = nt_mixture(tp, np.array([0.2, 0.2]), np.array([0.0, 0.0]))
    v37 = v37 + np.array([0.0, 10.0])
    gr = (v37 - v19) / (v37 + v19)
    assert gr[0] < 0.05 < gr[1]
    raw = nasa_team(v19, h19, v37, tp, weather_filter=False).total
    assert raw[1] > 0.01
    out = nasa_team(v19, h19, v37, tp)
    assert out.total[1] == 0.0
    assert out.total[0] == pytest.approx(0.2, abs=1e-6)
    # The 22/19 ratio: 22V 25 K above 19V gives GR = 25 / (2 * 19V + 25) ~ 0.057 > 0.045.
    out22 = nasa_team(v19[0], h19[0], v37[0], tp, tb22v_k=v19[0] + 25.0)
    assert float(out22.total) == 0.0
    out22_ok = nasa_team(v19[0], h19[0], v37[0], tp, tb22v_k=v19[0] + 2.0)
    assert float(out22_ok.total) == pytest.approx(0.2, abs=1e-6)


def test_nasa_team_nan_propagates():
    tp = NASA_TEAM_TIE_POINTS["amsr2"]
    out = nasa_team(np.array([np.nan]), np.array([200.0]), np.array([230.0]), tp)
    assert np.isnan(out.total[0])


def test_bootstrap_plane_hand_value():
    # W = (0, 0), ice line y = 1: T = (0.5, 0.25) -> I = (2, 1), |WT|/|WI| = 0.25.
    assert float(bootstrap_plane_sic(0.5, 0.25, 0.0, 0.0, (1.0, 0.0))) == pytest.approx(0.25)
    # Sloped line y = 10 + 0.5 x, W = (0, 0), T = (4, 4): ray y = x meets the line at
    # x = 20, so C = |WT|/|WI| = 4/20 = 0.2.
    assert float(bootstrap_plane_sic(4.0, 4.0, 0.0, 0.0, (10.0, 0.5))) == pytest.approx(0.2)


@pytest.mark.parametrize("key", sorted(BOOTSTRAP_TIE_POINTS))
def test_bootstrap_recovers_points_on_its_own_lines(key):
    tp = BOOTSTRAP_TIE_POINTS[key]
    rng = np.random.default_rng(2)
    c = np.concatenate([rng.uniform(0, 1, 400), [0.0, 0.5, 0.92, 0.95, 1.0]])
    ice_37v = rng.uniform(tp.ice_37v_k - 25, tp.ice_37v_k + 5, c.size)
    v37, h37, v19 = bt_mixture(tp, c, ice_37v)
    np.testing.assert_allclose(bootstrap(v37, h37, v19, tp), c, atol=1e-6)


def test_bootstrap_clipping_and_plane_switch():
    tp = BOOTSTRAP_TIE_POINTS[("amsr2", "north")]
    v37, h37, v19 = bt_mixture(tp, np.array([1.4, -0.5]), np.array([250.0, 250.0]))
    np.testing.assert_array_equal(bootstrap(v37, h37, v19, tp), [1.0, 0.0])
    assert float(bootstrap(v37[0], h37[0], v19[0], tp, max_sic=1.2)) == pytest.approx(1.2)
    # Above the AD line (C_A = 0.96) the 37V/37H plane decides even if 19V says 0.5.
    v37a, h37a, _ = bt_mixture(tp, 0.96, 250.0)
    _, _, v19_half = bt_mixture(tp, 0.5, 250.0)
    assert float(bootstrap(v37a, h37a, v19_half, tp)) == pytest.approx(0.96, abs=1e-9)
    # Below it (C_A = 0.6) the 37V/19V plane decides: with 19V of the 0.5 point the
    # plane-B concentration of (37V of the 0.6 point, that 19V), by the formula, is expected.
    v37b, h37b, _ = bt_mixture(tp, 0.6, 250.0)
    v19b = v19_half
    expect = ((v19b - tp.water_19v_k) - tp.line_v1937[1] * (v37b - tp.water_37v_k)) / (
        tp.line_v1937[0] + tp.line_v1937[1] * tp.water_37v_k - tp.water_19v_k
    )
    assert 0.0 < expect < 1.0 and abs(expect - 0.6) > 0.05
    assert float(bootstrap(v37b, h37b, v19b, tp)) == pytest.approx(expect, abs=1e-9)


def test_grid_daily_mean_tb_hand_values(make_obs):
    nchan = 10
    tb = np.full((5, nchan), 200.0)
    tb[:, 2] = [190.0, 210.0, 230.0, 250.0, 999.0]  # 19v
    tb[4, 2] = np.nan  # masked: must not count
    obs = make_obs(tb, igrid=[0, 0, 1, 3, 0], istep=[0, 0, 1, 1, 0], isensor=[0] * 5)
    out = grid_daily_mean_tb(obs, ["19v"], 0)
    assert out.shape == (4, 2, 1)
    assert out[0, 0, 0] == pytest.approx(200.0)
    assert out[1, 1, 0] == pytest.approx(230.0)
    assert out[3, 1, 0] == pytest.approx(250.0)
    assert np.isnan(out[2]).all() and np.isnan(out[0, 1, 0])


@pytest.mark.parametrize("n, ngrid, nstep", [(1000, 7, 5), (20000, 70, 131)])
def test_grid_daily_mean_tb_equals_bincount_means_over_blocks(make_obs, monkeypatch, n, ngrid, nstep):
    """The compiled cell sums (blocks of 64 observations here) equal numpy's bincount means bit for bit."""
    rng = np.random.default_rng(5)
    tb = rng.uniform(150.0, 280.0, size=(n, 14)).astype(np.float32)
    tb[rng.random(tb.shape) < 0.1] = np.nan
    isensor = np.sort(rng.integers(0, 2, n))
    obs = make_obs(tb, rng.integers(0, ngrid, n), rng.integers(0, nstep, n), isensor, ("amsr2", "gmi"), ngrid, nstep)
    monkeypatch.setattr(classic, "_BLOCK", 64)
    channels = ["19v", "19h", "37v", "37h"]
    for s in (0, 1):
        got = grid_daily_mean_tb(obs, channels, s)
        cell = obs.igrid.astype(np.int64) * nstep + obs.istep
        for j, name in enumerate(channels):
            c = obs.basis.channel_index[name]
            m = obs.mask[:, c] & (obs.isensor == s)
            total = np.bincount(cell[m], weights=obs.tb_obs_k[m, c].astype(np.float64), minlength=ngrid * nstep)
            count = np.bincount(cell[m], minlength=ngrid * nstep)
            want = np.where(count > 0, total / np.maximum(count, 1), np.nan).reshape(ngrid, nstep)
            assert (count > 0).sum() > 20
            np.testing.assert_array_equal(got[:, :, j], want)


def test_grid_daily_mean_tb_unknown_channel(make_obs):
    obs = make_obs(np.full((2, 10), 200.0), igrid=[0, 1], istep=[0, 0], isensor=[0, 0])
    with pytest.raises(SeaIceError, match="166v"):
        grid_daily_mean_tb(obs, ["166v"], 0)


def _two_sensor_obs(make_obs, lat):
    """AMSR2 + SSMIS obs per cell built from each sensor's tie points at known SIC."""
    from empirical_seaice.sensors import build_channel_basis

    basis = build_channel_basis(["amsr2", "ssmisf17"])
    ix = basis.channel_index
    ngrid, nstep = 3, 2
    truth_nt = np.array([[0.2, 0.5], [0.9, 1.0], [0.6, 0.35]])
    truth_bt = truth_nt
    rows, ig, it, isn = [], [], [], []
    for s, sname in enumerate(("amsr2", "ssmisf17")):
        for g in range(ngrid):
            hemi = "north" if lat[g] >= 0 else "south"
            for t in range(nstep):
                for _rep in range(2):  # two identical observations per cell
                    tb = np.full(basis.nchan, np.nan)
                    tb[ix["24v"]] = 200.0  # 22V close to 19V: weather filter off
                    v19, h19, v37 = nt_mixture(NASA_TEAM_TIE_POINTS[sname], truth_nt[g, t], 0.0)
                    bv37, bh37, bv19 = bt_mixture(BOOTSTRAP_TIE_POINTS[(sname, hemi)], truth_bt[g, t], 250.0)
                    # NT and BT read 19V/37V: keep them from NT for NT and add the Bootstrap
                    # set on a separate observation so both are noise-free for their algorithm.
                    row_nt = tb.copy()
                    row_nt[[ix["19v"], ix["19h"], ix["37v"]]] = v19, h19, v37
                    rows.append(row_nt)
                    ig.append(g)
                    it.append(t)
                    isn.append(s)
                    row_bt = tb.copy()
                    row_bt[[ix["37v"], ix["37h"], ix["19v"]]] = bv37, bh37, bv19
                    rows.append(row_bt)
                    ig.append(g)
                    it.append(t)
                    isn.append(s)
    return basis, truth_nt, (rows, ig, it, isn)


def test_classic_sic_maps_per_algorithm(make_obs):
    # Each algorithm on observations built from its own tie points only.
    lat = [75.0, -70.0, 80.0]
    _basis, truth, (rows, ig, it, isn) = _two_sensor_obs(make_obs, lat)
    rows, ig, it, isn = map(np.asarray, (rows, ig, it, isn))
    nt_rows = np.arange(len(rows)) % 2 == 0
    obs_nt = make_obs(
        rows[nt_rows], ig[nt_rows], it[nt_rows], isn[nt_rows], sensors=("amsr2", "ssmisf17"), ngrid=3, nstep=2, lat=lat
    )
    out = classic_sic_maps(obs_nt, algorithms=("nasa_team",))
    np.testing.assert_allclose(out.maps["nasa_team"], truth, atol=2e-5)  # float32 TBs
    np.testing.assert_allclose(out.per_sensor[("nasa_team", "ssmisf17")], truth, atol=2e-5)
    obs_bt = make_obs(
        rows[~nt_rows],
        ig[~nt_rows],
        it[~nt_rows],
        isn[~nt_rows],
        sensors=("amsr2", "ssmisf17"),
        ngrid=3,
        nstep=2,
        lat=lat,
    )
    out = classic_sic_maps(obs_bt, algorithms=("bootstrap",))
    np.testing.assert_allclose(out.maps["bootstrap"], truth, atol=2e-5)
    # Grid point 1 is southern: with the northern tie points the answer would differ.
    tpn = BOOTSTRAP_TIE_POINTS[("amsr2", "north")]
    sel = (isn[~nt_rows] == 0) & (ig[~nt_rows] == 1) & (it[~nt_rows] == 0)
    r = rows[~nt_rows][sel][0]
    ix = obs_bt.basis.channel_index
    north_value = float(bootstrap(r[ix["37v"]], r[ix["37h"]], r[ix["19v"]], tpn))
    assert abs(north_value - truth[1, 0]) > 0.02


def test_classic_sic_maps_gmi_uses_amsr2_tie_points(make_obs):
    from empirical_seaice.sensors import build_channel_basis

    basis = build_channel_basis(["gmi"])
    ix = basis.channel_index
    tb = np.full((1, basis.nchan), 200.0)
    v19, h19, v37 = nt_mixture(NASA_TEAM_TIE_POINTS["amsr2"], 0.7, 0.1)
    tb[0, [ix["19v"], ix["19h"], ix["37v"]]] = v19, h19, v37
    tb[0, ix["24v"]] = v19
    obs = make_obs(tb, [0], [0], [0], sensors=("gmi",), ngrid=1, nstep=1)
    out = classic_sic_maps(obs, algorithms=("nasa_team",))
    assert out.maps["nasa_team"][0, 0] == pytest.approx(0.8, abs=2e-5)


def test_classic_sic_maps_errors(make_obs, monkeypatch):
    obs = make_obs(np.full((2, 10), 200.0), igrid=[0, 1], istep=[0, 0], isensor=[0, 0])
    with pytest.raises(SeaIceError, match="unknown algorithm 'nt2'"):
        classic_sic_maps(obs, algorithms=("nt2",))
    monkeypatch.setattr(classic, "TIE_POINT_SENSOR", {})
    with pytest.raises(SeaIceError, match="no sensor of the run"):
        classic_sic_maps(obs, algorithms=("bootstrap",))


def test_write_classic_sic_round_trip(make_obs, tmp_path):
    tp = NASA_TEAM_TIE_POINTS["amsr2"]
    tb = np.full((2, 10), 200.0)
    for k, c in enumerate((0.3, 0.9)):
        tb[k, [2, 3, 6]] = nt_mixture(tp, c, 0.0)
        tb[k, 4] = tb[k, 2]
    obs = make_obs(tb, igrid=[0, 2], istep=[1, 0], isensor=[0, 0], ngrid=3, nstep=2)
    out = classic_sic_maps(obs)
    path = write_classic_sic(tmp_path / "classic_sic_x.nc", out, obs)
    with xr.open_dataset(path) as ds:
        assert ds["nasa_team"].dims == ("time", "grid") and "time" in ds.indexes  # time first, as CDO reads
        assert ds["time_bnds"].dims == ("time", "nv") and ds["julian_day"].dims == ("time",)
        assert float(ds["nasa_team"][1, 0]) == pytest.approx(0.3, abs=2e-5)  # grid point 0, step 1
        assert float(ds["nasa_team_amsr2"][0, 2]) == pytest.approx(0.9, abs=2e-5)
        assert np.isnan(ds["nasa_team"][0, 1])
        np.testing.assert_array_equal(ds["bootstrap"].values, out.maps["bootstrap"].T)
        assert ds["nasa_team"].attrs["units"] == "1"
        assert "NSIDC" in ds["nasa_team_amsr2"].attrs["tie_points"]
        assert "bootstrap" in ds


def _bincount_means(obs, channel, s):
    """numpy's daily mean of ``channel`` for sensor ``s`` (ngrid, nstep), NaN without an observation."""
    c = obs.basis.channel_index[channel]
    m = obs.mask[:, c] & (obs.isensor == s)
    cell = obs.igrid.astype(np.int64)[m] * obs.nstep + obs.istep[m]
    total = np.bincount(cell, weights=obs.tb_obs_k[m, c].astype(np.float64), minlength=obs.ngrid * obs.nstep)
    count = np.bincount(cell, minlength=obs.ngrid * obs.nstep)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).reshape(obs.ngrid, obs.nstep)


def _numpy_classic(obs):
    """The classic maps from numpy's means and the numpy functions of sic_algorithms, composed as the
    maps are defined (per sensor float32; the sensor mean of the float64 values, summed in sensor order)."""
    from empirical_seaice.products.sic_algorithms import TIE_POINT_SENSOR

    north = (obs.lat >= 0)[:, None]
    maps, total, count = {}, {}, {}
    for s, sname in enumerate(obs.basis.sensor_names):
        m = {c: _bincount_means(obs, c, s) for c in ("19v", "19h", "24v", "37v", "37h")}
        tp = TIE_POINT_SENSOR[sname]
        with np.errstate(invalid="ignore", divide="ignore"):
            nt = nasa_team(m["19v"], m["19h"], m["37v"], NASA_TEAM_TIE_POINTS[tp], tb22v_k=m["24v"]).total
            bt = np.where(
                north,
                bootstrap(m["37v"], m["37h"], m["19v"], BOOTSTRAP_TIE_POINTS[(tp, "north")]),
                bootstrap(m["37v"], m["37h"], m["19v"], BOOTSTRAP_TIE_POINTS[(tp, "south")]),
            )
        for alg, sic in (("nasa_team", nt), ("bootstrap", bt)):
            maps[f"{alg}_{sname}"] = sic.astype(np.float32)
            ok = np.isfinite(sic)
            total[alg] = total.get(alg, 0.0) + np.where(ok, sic, 0.0)
            count[alg] = count.get(alg, 0) + ok
    for alg in ("nasa_team", "bootstrap"):
        with np.errstate(invalid="ignore"):
            maps[alg] = np.where(count[alg] > 0, total[alg] / np.maximum(count[alg], 1), np.nan).astype(np.float32)
    return maps


@pytest.mark.parametrize("threads, order", [(1, "random"), (3, "random"), (1, "steps"), (3, "steps")])
def test_classic_sic_maps_equal_the_numpy_functions_bit_for_bit(make_obs, monkeypatch, threads, order):
    """The compiled pass (sums in step blocks, NASA Team and Bootstrap per cell, the sensor means) gives
    numpy's values bit for bit, NaN included: three sensors with interleaved rows (``random``: the
    whole-period table) or each sensor's rows together in step order (``steps``, as the run's reader
    keeps them: chunk by chunk of steps in one table), both hemispheres, channels missing at random
    (cells with 37V but no 19V, ...), clipped and weather-filtered values, a number of steps that is not
    a whole number of blocks nor of chunks, on 1 and 3 threads."""
    from empirical_seaice.io import chunk_writer
    from empirical_seaice.products import classic_kernels

    monkeypatch.setattr(chunk_writer, "threads", lambda: threads)
    monkeypatch.setattr(classic, "_BLOCK", 500)
    monkeypatch.setattr(classic, "CHUNK_STEPS", classic_kernels.TILE_STEPS)  # three chunks, the last short
    bases = []
    tiles = classic_kernels.classic_tiles

    def spy(*args):
        bases.append(args[5])  # t_base: the first step of the table
        return tiles(*args)

    monkeypatch.setattr(classic_kernels, "classic_tiles", spy)
    rng = np.random.default_rng(11)
    sensors = ("amsr2", "gmi", "ssmisf17")
    ngrid, nstep, n = 23, 2 * classic_kernels.TILE_STEPS + 5, 6000
    basis = make_obs(np.zeros((1, 1)), [0], [0], [0], sensors=sensors).basis
    ix = basis.channel_index
    tp = NASA_TEAM_TIE_POINTS["amsr2"]
    c_fy, c_my = rng.uniform(-0.2, 1.1, n), rng.uniform(0, 0.6, n)
    tb = np.full((n, basis.nchan), np.nan)
    tb[:, [ix["19v"], ix["19h"], ix["37v"]]] = np.stack(nt_mixture(tp, c_fy, c_my), axis=1) + rng.normal(0, 6, (n, 3))
    tb[:, ix["37h"]] = tb[:, ix["37v"]] - rng.uniform(5, 60, n)
    tb[:, ix["24v"]] = tb[:, ix["19v"]] + rng.uniform(-5, 30, n)  # some above the 22/19 weather filter
    tb[rng.random(tb.shape) < 0.15] = np.nan
    lat = np.where(np.arange(ngrid) % 3 == 0, -70.0, 72.0)
    igrid, istep, isensor = rng.integers(0, ngrid, n), rng.integers(0, nstep, n), rng.integers(0, 3, n)
    if order == "steps":
        rows = np.lexsort((istep, isensor))
        tb, igrid, istep, isensor = tb[rows], igrid[rows], istep[rows], isensor[rows]
    obs = make_obs(tb, igrid, istep, isensor, sensors, ngrid, nstep, lat)
    got = classic_sic_maps(obs, open_water=True)  # the maps the same with the open-water flags as without
    assert sorted(set(bases)) == ([0, 16, 32] if order == "steps" else [0])
    # the open-water filter's flags from the same means: its own gridding's, cell for cell
    assert got.open_water_sensors == (0, 1, 2)
    want_wet = open_water_mask(obs)
    np.testing.assert_array_equal(got.open_water, want_wet)
    assert 0.05 < want_wet.mean() < 0.95
    want = _numpy_classic(obs)
    maps = {**got.maps, **{f"{a}_{s}": v for (a, s), v in got.per_sensor.items()}}
    assert sorted(maps) == sorted(want)
    for name, arr in want.items():
        assert maps[name].dtype == np.float32
        np.testing.assert_array_equal(maps[name].view(np.uint32), arr.view(np.uint32), err_msg=name)
    nt = maps["nasa_team_amsr2"]
    assert np.isnan(nt).sum() > 50 and (nt == 0).sum() > 20 and (nt == 1).sum() > 20
    assert ((nt > 0.05) & (nt < 0.95)).sum() > 100
    # a cell where only 37V/37H (no 19V) reached the mean: Bootstrap's 37V/37H plane alone
    assert (np.isnan(want["nasa_team_gmi"]) & np.isfinite(want["bootstrap_gmi"])).any()


def test_step_chunk_rows_hand_case():
    """Where each chunk of steps starts among a sensor's rows (other sensors' rows between are kept in
    the ranges), and False where the sensor's steps go back."""
    from empirical_seaice.products.classic_kernels import step_chunk_rows

    isensor = np.array([1, 0, 0, 1, 0, 0, 0, 1], dtype=np.int16)
    istep = np.array([9, 0, 3, 0, 4, 9, 9, 2], dtype=np.int32)
    starts, ok = step_chunk_rows(isensor, istep, 0, 1, 7, 4, 3)  # chunks of 4 steps: 0-3, 4-7, 8-11
    assert ok and starts.tolist() == [1, 4, 5, 7]
    starts, ok = step_chunk_rows(isensor, istep, 0, 1, 7, 4, 4)  # a fourth chunk without rows: empty
    assert ok and starts.tolist() == [1, 4, 5, 7, 7]
    assert not step_chunk_rows(isensor, istep, 1, 0, 8, 4, 3)[1]  # sensor 1: steps 9, 0, 2


def test_at_gathers_the_cells_of_a_map():
    """The flat cells ``g * nstep + t`` of a map with lag columns, contiguous or not, as 2-d indexing."""
    from empirical_seaice.products.write import _at

    rng = np.random.default_rng(2)
    ngrid, nstep = 7, 5
    cells = np.flatnonzero(rng.random(ngrid * nstep) < 0.5)
    for ncol, lag in ((5, 0), (6, 1), (7, 1)):
        arr = rng.random((ngrid, ncol)).astype(np.float32)
        want = arr[cells // nstep, cells % nstep + lag]
        assert np.array_equal(_at(arr, cells, nstep, lag), want)
        assert np.array_equal(_at(np.asfortranarray(arr), cells, nstep, lag), want)


def test_sensor_rows_hand_case():
    from empirical_seaice.products.classic_kernels import sensor_rows

    lo, hi = sensor_rows(np.array([1, 1, 0, 2, 0], dtype=np.int16), 4)
    np.testing.assert_array_equal(lo, [2, 0, 3, 0])
    np.testing.assert_array_equal(hi, [5, 2, 4, 0])


def test_classic_scores_hand_case_with_and_without_counts(make_obs):
    """classic_scores at the observed cells (2 of 6 here, one with a NaN truth): RMSE, bias and n by
    hand, the same with the gridded product's counts in place of a pass over the observations."""
    from types import SimpleNamespace

    from empirical_seaice.products.classic import ClassicSIC
    from empirical_seaice.products.write import classic_scores

    obs = make_obs(np.full((4, 10), 200.0), igrid=[2, 0, 2, 1], istep=[1, 0, 1, 0], isensor=[0] * 4, ngrid=3, nstep=2)
    # observed cells (g, t): (0, 0), (1, 0), (2, 1)
    truth = SimpleNamespace(sic=np.array([[0.5, 9.0], [np.nan, 9.0], [9.0, 0.2]], dtype=np.float32))
    background = SimpleNamespace(nlag=1, sic=np.array([[9, 0.7, 9], [9, 0.1, 9], [9, 9, 0.0]], dtype=np.float32))
    trained = np.array([[9, 0.5, 9], [9, 0.3, 9], [9, 9, 0.6]], dtype=np.float32)
    nt = np.array([[np.nan, 9], [0.4, 9], [9, 0.5]], dtype=np.float32)
    maps = ClassicSIC(maps={"nasa_team": nt})
    npts, scores = classic_scores(maps, obs, background, trained, truth)
    assert npts == 3
    f32 = lambda x: float(np.float32(x))  # noqa: E731
    d_bg = [f32(0.7) - f32(0.5), f32(0.0) - f32(0.2)]
    assert scores["background"]["rmse"] == np.sqrt(np.mean(np.square(d_bg)))
    assert scores["background"]["bias"] == np.mean(d_bg)
    assert scores["background"]["n"] == 2
    assert scores["trained"]["rmse"] == np.sqrt(np.mean(np.square([0.0, f32(0.6) - f32(0.2)])))
    assert scores["nasa_team"]["n"] == 1
    assert scores["nasa_team"]["rmse"] == abs(f32(0.5) - f32(0.2))
    counts = np.zeros((3, 2), dtype=np.int64)
    np.add.at(counts, (obs.igrid, obs.istep), 1)
    assert classic_scores(maps, obs, background, trained, truth, counts) == (npts, scores)
    with pytest.raises(ValueError, match="counts"):
        classic_scores(maps, obs, background, trained, truth, counts[:, :1])
    # grid points 1 and 2 alone (a hemisphere of a global grid): the cells (1, 0), NaN truth, and (2, 1)
    npts, part = classic_scores(maps, obs, background, trained, truth, counts, grid_rows=np.array([1, 2]))
    assert npts == 2 and part["background"]["n"] == 1 and part["nasa_team"]["n"] == 1
    assert part["background"]["rmse"] == abs(f32(0.0) - f32(0.2))
    assert part["trained"]["rmse"] == abs(f32(0.6) - f32(0.2))


def test_classic_scores_rmse_is_sic_rmse_bit_for_bit(make_obs):
    """The scores' RMSE, from the differences the bias uses, is :func:`sic_rmse`'s value bit for bit
    (NaN in the maps and in the truth, every cell observed)."""
    from types import SimpleNamespace

    from empirical_seaice.products.classic import ClassicSIC
    from empirical_seaice.products.write import _at, classic_scores

    rng = np.random.default_rng(5)
    ngrid, nstep = 40, 6
    g, t = np.divmod(np.arange(ngrid * nstep), nstep)
    obs = make_obs(np.full((g.size, 10), 200.0), igrid=g, istep=t, isensor=[0] * g.size, ngrid=ngrid, nstep=nstep)

    def field(ncol):
        x = rng.random((ngrid, ncol)).astype(np.float32)
        x[rng.random(x.shape) < 0.2] = np.nan
        return x

    truth, background, trained = (
        SimpleNamespace(sic=field(nstep)),
        SimpleNamespace(nlag=1, sic=field(nstep + 1)),
        field(7),
    )
    maps = ClassicSIC(maps={"nasa_team": field(nstep), "bootstrap": field(nstep)})
    _, scores = classic_scores(maps, obs, background, trained, truth)
    cells = np.arange(ngrid * nstep)
    ts = _at(truth.sic, cells, nstep)
    for name, arr, lag in (
        ("background", background.sic, 1),
        ("trained", trained, 1),
        ("bootstrap", maps.maps["bootstrap"], 0),
    ):
        want = sic_rmse(_at(arr, cells, nstep, lag), ts)
        assert np.isfinite(want) and scores[name]["rmse"] == want, name


def test_clip_of_one_cell_keeps_numpy_signs():
    """The compiled per-cell clip is numpy's ``clip(x, 0, 1)`` to the bit: NaN stays NaN, -0.0 stays -0.0."""
    from empirical_seaice.products import classic_kernels

    x = np.array([-0.0, -1.0, 0.5, 2.0, np.nan, 0.0, 1.0, -np.inf])
    got = np.array([classic_kernels._clip01(v) for v in x])
    assert np.array_equal(got.view(np.int64), np.clip(x, 0.0, 1.0).view(np.int64))
