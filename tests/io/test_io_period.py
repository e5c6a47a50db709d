"""Step index at window boundaries, period selection and background padding rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from empirical_seaice.io import read_training_data
from empirical_seaice.io.layout_writers import write_backgrounds

NGRID = 12
MINUTE = 1.0 / 1440.0
D0 = 2459000.0  # floor of the first Julian day in these tests (12 UTC on 2020-05-30)


def _with_days(days):
    days = np.asarray(days, dtype=np.float64)

    def edit(sensor, f):
        for name, arr in list(f.items()):
            f[name] = arr[: days.size]
        f["JULIAN_DAY"] = days

    return edit


def test_step_index_at_21utc_boundaries(dataset):
    # 21 UTC is JD fraction .375; one minute either side of each boundary.
    days = [D0 + 0.5, D0 + 1.375 - MINUTE, D0 + 1.375 + MINUTE, D0 + 2.375 - MINUTE, D0 + 2.375 + MINUTE, D0 + 3.9]
    ds = dataset("B", nobs=6, edit=_with_days(days))
    obs, _ = read_training_data(ds.config, 1)
    assert obs.jd_origin == D0
    np.testing.assert_array_equal(obs.istep, [0, 0, 1, 1, 2, 3])
    np.testing.assert_array_equal(obs.julian_day, days)


def test_the_sensor_line_counts_the_period_and_the_invalid_apart(dataset, caplog):
    """The sensor's line counts the observations in the period and those of them dropped for an invalid
    per-observation field separately (it counted the kept ones as "in the period", and 0 dropped)."""
    days = [D0 + 0.2, D0 + 0.5, D0 + 1.5, D0 + 2.5, D0 + 3.5, D0 + 3.6]

    def edit(sensor, f):
        _with_days(days)(sensor, f)
        f["TSFC"][[2, 4]] = np.nan

    ds = dataset("B", nobs=6, edit=edit)
    with caplog.at_level("INFO", logger="empirical_seaice.io.per_observation"):
        obs, _ = read_training_data(ds.config, 1)
    assert "sensor amsr2: 6 observations in file, 5 in the period, 2 dropped for invalid per-observation fields" in (
        caplog.text
    )
    # which variable, and where (the line named neither: "grid index, skin temperature, wind, cloud or angle")
    assert f"(missing or out of range, by variable: TSFC 2; in {ds.root}/field_v2_VARIABLE.nc)" in caplog.text
    np.testing.assert_array_equal(obs.obs_index, [1, 3, 5])


def test_observation_before_first_window_is_dropped(dataset, caplog):
    # JD .2 (16:48 UTC) lies before the 21 UTC that opens step 0: step -1.
    days = [D0 + 0.2, D0 + 0.375 + MINUTE, D0 + 1.5, D0 + 2.5, D0 + 3.5]
    ds = dataset("B", nobs=5, edit=_with_days(days))
    with caplog.at_level("WARNING"):
        obs, _ = read_training_data(ds.config, 1)
    assert "sensor amsr2: 1 observations before the first 21 UTC window dropped" in caplog.text
    assert obs.jd_origin == D0
    np.testing.assert_array_equal(obs.obs_index, [1, 2, 3, 4])
    np.testing.assert_array_equal(obs.istep, [0, 1, 2, 3])


def test_origin_is_the_earliest_day_over_all_sensors(dataset):
    def edit(sensor, f):
        # amsr2 starts a day after gmi; both share gmi's origin.
        shift = 1.0 if sensor == "amsr2" else 0.0
        f["JULIAN_DAY"] = np.linspace(D0 + 0.5, D0 + 2.9, f["JULIAN_DAY"].size) + shift

    ds = dataset("C", sensors=("amsr2", "gmi"), nobs=5, edit=edit)
    obs, _ = read_training_data(ds.config, 1)
    assert obs.jd_origin == D0
    jd = obs.julian_day
    np.testing.assert_array_equal(obs.istep, np.floor(jd - D0 - 0.375).astype(int))
    assert obs.istep[obs.isensor == 0].min() == 1 and obs.istep[obs.isensor == 1].min() == 0


def test_stepstart_nsteps_select_and_reindex(dataset):
    ds = dataset("C", nobs=60)
    cfg = dataclasses.replace(ds.config, stepstart=1, nsteps=2)
    obs, bg = read_training_data(cfg, 1)
    jd = ds.fields["amsr2"]["JULIAN_DAY"]
    step = np.floor(jd - D0 - 0.375).astype(int)
    expected = np.flatnonzero((step >= 1) & (step <= 2))
    assert 0 < expected.size < 60
    np.testing.assert_array_equal(obs.obs_index, expected)
    np.testing.assert_array_equal(obs.istep, step[expected] - 1)
    assert obs.stepstart == 1 and obs.nstep == 2
    # Lagged SIC (ngrid, 4 + 1): columns [1, 1 + 2 + 1).
    np.testing.assert_array_equal(bg.sic, ds.background["sic"][:, 1:4])
    np.testing.assert_array_equal(bg.t_skin_map_k, ds.background["t_skin_map_k"][:, 1:3])
    assert bg.nlag == 1 and bg.nstep == 2 and bg.ngrid == NGRID


def test_default_nsteps_runs_to_the_last_observation(dataset):
    ds = dataset("C", nobs=30)
    cfg = dataclasses.replace(ds.config, stepstart=2)
    obs, bg = read_training_data(cfg, 1)
    assert obs.nstep == 2 and bg.sic.shape == (NGRID, 3)
    assert set(np.unique(obs.istep)) == {0, 1}


def test_default_nsteps_capped_at_background_period(dataset, caplog):
    # Observations reach step 3, the backgrounds cover steps 0..2 only.
    ds = dataset("C", nobs=30)
    rng = np.random.default_rng(5)
    sic = rng.uniform(0, 1, (NGRID, 4)).astype(np.float32)
    tmap = rng.uniform(250, 270, (NGRID, 3)).astype(np.float32)
    write_backgrounds(ds.root, sic, tmap)
    with caplog.at_level("WARNING"):
        obs, bg = read_training_data(ds.config, 1)
    step = np.floor(ds.fields["amsr2"]["JULIAN_DAY"] - D0 - 0.375).astype(int)
    assert f"sensor amsr2: {int((step == 3).sum())} observations after the background period dropped" in caplog.text
    assert obs.nstep == 3
    np.testing.assert_array_equal(obs.obs_index, np.flatnonzero(step < 3))
    np.testing.assert_array_equal(bg.sic, sic)


@pytest.mark.parametrize(
    "nlag, stepstart, nsteps, columns",
    [
        (1, 0, 4, [0, 0, 1, 2, 3]),  # first column repeated nlag times
        (2, 0, 4, [0, 0, 0, 1, 2, 3]),
        (1, 1, 2, [0, 1, 2]),  # padded [c0 c0 c1 c2 c3], columns 1..3
        (2, 2, 2, [0, 1, 2, 3]),  # padded [c0 c0 c0 c1 c2 c3], columns 2..5
        (0, 1, 3, [1, 2, 3]),
    ],
)
def test_background_sic_padding(dataset, nlag, stepstart, nsteps, columns):
    ds = dataset("C", nobs=60, stepstart=stepstart, nsteps=nsteps)
    sic = (np.arange(4, dtype=np.float32)[None, :] * 0.1 + np.arange(NGRID)[:, None] * 0.01).astype(np.float32)
    write_backgrounds(ds.root, sic, ds.background["t_skin_map_k"])
    _, bg = read_training_data(ds.config, nlag)
    np.testing.assert_array_equal(bg.sic, sic[:, columns])
    assert bg.sic.dtype == np.float32 and bg.nlag == nlag


def test_background_sic_lagged_shape_is_sliced(dataset):
    ds = dataset("C", nobs=60, stepstart=1, nsteps=3)
    sic = np.tile(np.arange(6, dtype=np.float32) * 0.1, (NGRID, 1))  # (ngrid, 4 + nlag=2)
    write_backgrounds(ds.root, sic, ds.background["t_skin_map_k"], sic_variable="seaice")
    _, bg = read_training_data(ds.config, 2)
    np.testing.assert_allclose(bg.sic[0], [0.1, 0.2, 0.3, 0.4, 0.5])


def test_background_sic_constant_in_time(dataset):
    ds = dataset("C", nobs=60, stepstart=1, nsteps=2)
    sic = np.linspace(0, 1, NGRID).astype(np.float32)
    write_backgrounds(ds.root, sic, ds.background["t_skin_map_k"])
    _, bg = read_training_data(ds.config, 1)
    assert bg.sic.shape == (NGRID, 3)
    for col in range(3):
        np.testing.assert_array_equal(bg.sic[:, col], sic)


def test_background_isolated_bad_values_repaired(dataset):
    ds = dataset("C", nobs=60)
    sic = ds.background["sic"].copy()
    sic[0, 0], sic[1, 1] = np.nan, 1.2
    tmap = ds.background["t_skin_map_k"].copy()
    tmap[2, 2] = np.nan
    write_backgrounds(ds.root, sic, tmap, ds.background["lon"], ds.background["lat"])
    _, bg = read_training_data(ds.config, 1)
    assert bg.sic[0, 0] == 0.0 and bg.sic[1, 1] == 1.0
    good = np.delete(tmap.ravel(), 2 * tmap.shape[1] + 2)
    assert bg.t_skin_map_k[2, 2] == pytest.approx(float(good.mean()), rel=1e-6)
    assert bg.sic[3, 3] == sic[3, 3]


def test_window_counts_equal_numpy_unique():
    from empirical_seaice.io.period import _window_counts

    rng = np.random.default_rng(5)
    near = rng.integers(7300, 7665, size=5000)
    cases = [near, np.append(near, [10, 10**9]), np.array([-3, -3, 4]), np.array([42]), np.zeros(0, dtype=np.int64)]
    for win in cases:
        win = win.astype(np.int64)
        got, want = _window_counts(win), np.unique(win, return_counts=True)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)


def test_convention_is_decided_by_the_median_also_past_the_range_check():
    """check_convention: values all within 1970-2100 pass without a median; a few outliers, NaN or
    not, leave the decision to the median (plausible here); mostly other values are an error."""
    from pathlib import Path

    from empirical_seaice.errors import SeaIceError
    from empirical_seaice.io.period import check_convention

    days = D0 + np.linspace(0.0, 3.0, 101)
    check_convention(days, Path("jd.nc"), "amsr2")  # all plausible
    spoilt = days.copy()
    spoilt[[3, 50]] = [59000.0, np.nan]  # one MJD and one missing value: the median stays plausible
    check_convention(spoilt, Path("jd.nc"), "amsr2")
    mjd = days - 2400000.5
    mjd[:10] = days[:10]  # a few plausible values among MJDs
    with pytest.raises(SeaIceError, match=r"jd.nc: variable JULIAN_DAY of sensor gmi looks like Modified Julian"):
        check_convention(mjd, Path("jd.nc"), "gmi")
    check_convention(np.full(4, np.nan), Path("jd.nc"), "gmi")  # nothing finite: left to the caller


def test_times_without_their_time_of_day_are_a_warning(caplog):
    """JULIAN_DAY floored to whole days, or stored in float32 (0.25-day steps near 2.46e6), loses the
    times of day that put each observation in its 21 UTC window; that was seen only as a count of
    observations dropped before the first window. Real times, and a handful of observations, pass."""
    from pathlib import Path

    from empirical_seaice.io.period import check_time_of_day

    rng = np.random.default_rng(3)
    times = D0 + np.sort(rng.uniform(0.0, 30.0, 5000))
    cases = {
        "floored": (np.floor(times), "1 distinct time of day (12:00 UTC)"),
        "float32": (times.astype(np.float32).astype(np.float64), "4 distinct times of day"),
    }
    for name, (jd, said) in cases.items():
        caplog.clear()
        with caplog.at_level("WARNING", logger="empirical_seaice"):
            check_time_of_day(jd, Path("jd.nc"), "amsr2")
        assert len(caplog.records) == 1, name
        text = caplog.records[0].getMessage()
        assert text.startswith("jd.nc: JULIAN_DAY of sensor amsr2 holds only ") and said in text, text
        assert "store the times of day, as float64 Julian days" in text
    caplog.clear()
    with caplog.at_level("WARNING", logger="empirical_seaice"):  # one value for all: said as such
        check_time_of_day(np.full(5000, D0 + 0.4), Path("jd.nc"), "amsr2")
    assert [r.getMessage() for r in caplog.records] == [
        f"jd.nc: JULIAN_DAY of sensor amsr2 holds one value ({D0 + 0.4:.6f}) for every observation (5000): a fill "
        "or a constant, not the observations' times; they all fall on one day"
    ]
    caplog.clear()
    with caplog.at_level("WARNING", logger="empirical_seaice"):
        check_time_of_day(times, Path("jd.nc"), "amsr2")
        check_time_of_day(np.floor(times[:20]), Path("jd.nc"), "amsr2")  # too few to tell
        few = np.floor(times)
        few[3:] = np.nan  # 3 finite values of 5000
        check_time_of_day(few, Path("jd.nc"), "amsr2")
        check_time_of_day(np.full(4, np.nan), Path("jd.nc"), "amsr2")
    assert not caplog.records


def test_a_missing_and_a_stray_time_are_dropped_and_the_other_steps_kept(dataset, caplog):
    """Windows and steps with some times missing or outside the data's period (the path beside the one of
    all times valid): those two rows dropped, every other row's step as the 21 UTC rule gives it."""
    rng = np.random.default_rng(3)
    days = np.sort(D0 + 0.4 + 3.5 * rng.random(200))
    days[17] = np.nan
    days[120] = D0 + 40.5  # a stray timestamp, weeks after the others (0.5% of the sensor's rows)
    ds = dataset("B", nobs=200, edit=_with_days(days))
    with caplog.at_level("WARNING"):
        obs, _ = read_training_data(ds.config, 1)
    assert "sensor amsr2: 1 of 199 observations have a JULIAN_DAY outside the data's period" in caplog.text
    kept = np.setdiff1d(np.arange(200), [17, 120])
    np.testing.assert_array_equal(obs.obs_index, kept)
    assert obs.jd_origin == D0
    np.testing.assert_array_equal(obs.istep, np.floor(days[kept] - D0 - 0.375).astype(np.int64))
    assert set(np.unique(obs.istep)) == {0, 1, 2, 3}


def test_a_later_start_date_says_how_the_background_files_are_read(dataset, caplog):
    """--start-date after the data's first day drops the earlier observations, and the warning says that
    column 0 of the background files is taken as that day (it silently paired the files' first day with
    the later start: maps off by that many days) and how to skip days of files that start earlier."""
    import dataclasses

    from empirical_seaice.products.export import julian_day_to_iso

    days = [D0 + 0.5, D0 + 1.5, D0 + 2.5, D0 + 3.5, D0 + 3.6]
    ds = dataset("B", nobs=5, edit=_with_days(days))
    start = julian_day_to_iso(D0 + 2.0)
    with caplog.at_level("WARNING"):
        read_training_data(dataclasses.replace(ds.config, start_date=start, nsteps=2), 1)
    assert f"before the first 21 UTC window of --start-date {start} (column 0 of the background files" in caplog.text
    assert "skip days with --stepstart" in caplog.text


@pytest.mark.parametrize("nsteps", [None, 2])
def test_a_start_date_whose_period_ends_before_the_data_names_it(dataset, nsteps):
    """--start-date days before the data: the period the background files give ends before the first
    observation (before: 'no valid observation' blamed --stepstart 0 --nsteps N, which the user never gave)."""
    import dataclasses

    from empirical_seaice.errors import SeaIceError
    from empirical_seaice.products.export import julian_day_to_iso

    days = [D0 + 0.5, D0 + 1.5, D0 + 2.5, D0 + 3.5, D0 + 3.6]
    ds = dataset("B", nobs=5, edit=_with_days(days))
    start = julian_day_to_iso(D0 - 10.0)  # the background files' 4 steps end days before the data
    with pytest.raises(SeaIceError) as info:
        read_training_data(dataclasses.replace(ds.config, start_date=start, nsteps=nsteps), 1)
    msg = str(info.value)
    assert msg.startswith(f"--start-date {start}: the period it starts (steps 0..{(nsteps or 4) - 1}")
    assert "ends before the first observation (Julian day" in msg and "choose a later date" in msg
    assert ("as far as the background files reach" in msg) == (nsteps is None)


def test_the_bulk_grows_from_the_largest_run_over_near_or_large_runs_only():
    """Runs of days separated by a day without observations: a dense run joins the bulk where it lies no
    farther from it than the bulk is long, or holds 5 % of the observations. Stray timestamps packed into one
    day (2.4 % of the data, 400 days early: as dense as a sixth of a day of data) started the period there,
    and every real observation then fell after the background period."""
    from empirical_seaice.config import DataConfig
    from empirical_seaice.io.period import _windows, bulk_period

    rng = np.random.default_rng(5)

    def days_of(first, ndays, per_day):
        return first + 0.4 + ndays * np.sort(rng.random(int(ndays * per_day)))

    def step(days):  # the step of the last observation from D0 (the 21 UTC rule)
        return int(np.floor(days.max() - D0 - 0.375))

    cfg = DataConfig(data=".")
    main = days_of(D0, 6, 1000)
    strays = D0 - 400 + 0.5 + 0.01 * rng.random(150)  # one window, 15 % of a day's density
    origin, last, w0, w1 = bulk_period([np.concatenate([strays, main])], cfg)
    assert (origin, last) == (D0, step(main)) and (w0, w1) == (_windows(main, 1).min(), _windows(main, 1).max())
    # the same run of strays with 6 % of the observations (a second sensor's file of fills, say) joins
    many = D0 - 400 + 0.5 + 0.01 * rng.random(400)
    assert bulk_period([np.concatenate([many, main])], cfg)[0] == D0 - 400
    # a gap of two days inside six days of data, and a second block 20 days on with half the data: kept
    near = np.concatenate([days_of(D0, 3, 1000), days_of(D0 + 5, 3, 1000)])
    assert bulk_period([near], cfg)[:2] == (D0, step(near))
    far = np.concatenate([days_of(D0, 5, 1000), days_of(D0 + 25, 5, 1000)])
    assert bulk_period([far], cfg)[:2] == (D0, step(far)) and step(far) > 28
