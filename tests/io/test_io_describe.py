"""describe(): per-sensor counts and TB statistics match hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from empirical_seaice.io import describe, read_training_data
from empirical_seaice.io.summary import channel_stats


def test_describe_two_sensors(dataset):
    def spoil(sensor, f):
        if sensor == "gmi":
            f["OBSVALUE"][0, 0] = np.nan  # one 10v value masked

    ds = dataset("C", sensors=("amsr2", "gmi"), nobs=30, edit=spoil)
    obs, bg = read_training_data(ds.config, 1)
    text = describe(obs, bg)
    lines = text.splitlines()
    assert lines[0].startswith("training data: 60 observations, 2 sensor(s), 14 channels, 4 steps from step 0")
    assert "12 grid points" in lines[0]
    a_grid = np.unique(ds.fields["amsr2"]["COMMON_IGRID"]).size
    assert f"sensor amsr2: 30 observations, 10 channels, 4 of 4 steps, {a_grid} of 12 grid points" in text
    assert "sensor gmi: 30 observations, 13 channels" in text
    raw = ds.fields["gmi"]["OBSVALUE"][1:, 0].astype(np.float64)  # gmi 10v without the NaN
    row = next(
        l
        for l in lines[lines.index(next(l for l in lines if l.startswith("sensor gmi"))) :]
        if l.strip().startswith("10v")
    )
    parts = row.split()
    assert parts[1] == "29"
    assert float(parts[2]) == round(raw.min(), 2)
    assert abs(float(parts[3]) - raw.mean()) < 0.006
    assert float(parts[4]) == round(raw.max(), 2)
    # 24h exists on amsr2 only: absent from the gmi block.
    gmi_block = text[text.index("sensor gmi") :]
    assert "24h" not in gmi_block and "183pm7v" in gmi_block
    assert f"SIC mean {bg.sic.mean():.3f}" in lines[1]


def test_channel_stats_slice_and_index_agree(dataset):
    ds = dataset("C", sensors=("amsr2", "gmi"), nobs=20)
    obs, _ = read_training_data(ds.config, 1)
    by_slice = channel_stats(obs, slice(20, 40))
    by_index = channel_stats(obs, np.arange(20, 40))
    for a, b in zip(by_slice, by_index):
        np.testing.assert_array_equal(a, b)
    count, lo, mean, hi = by_slice
    assert count[5] == 0 and np.isnan(mean[5])  # 24h: not on gmi
    np.testing.assert_allclose(mean[0], ds.fields["gmi"]["OBSVALUE"][:, 0].astype(np.float64).mean(), rtol=1e-6)


def test_sensor_without_observations_in_period_is_an_error(dataset):
    """A requested sensor without any observation in the period used to vanish silently (the run
    trained without it and still named it in the summary); now a one-line error naming it."""
    from empirical_seaice.errors import SeaIceError

    def late_gmi(sensor, f):
        if sensor == "gmi":
            f["JULIAN_DAY"] = np.full(f["JULIAN_DAY"].size, 2459000.0 + 3.5)  # all in step 3

    ds = dataset("C", sensors=("amsr2", "gmi"), nobs=20, edit=late_gmi, nsteps=2)
    with pytest.raises(
        SeaIceError,
        match=r"gmi/\S*JULIAN_DAY\.nc: sensor gmi has no valid observation in steps "
        r"0\.\.1 \(20 rows in its files\); remove it from --sensors",
    ):
        read_training_data(ds.config, 1)
