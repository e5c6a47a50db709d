"""Diagnostics: departures, costs, truth scores and the summary, against hand values."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from empirical_seaice.config import PRESETS
from empirical_seaice.observations import BackgroundMaps
from empirical_seaice.products import diagnostics as d

from .fakes import make_obs


def test_departure_stats_hand_values():
    obs = make_obs(nobs=4, sensors=("amsr2",))
    sim = obs.tb_obs_k.copy()
    sim[:, 0] -= np.array([1.0, 3.0, 1.0, 3.0], dtype=np.float32)  # y - sim = 1, 3, 1, 3: mean 2, std 1
    sim[:, 1] += 2.0  # y - sim = -2 everywhere: mean -2, std 0
    obs.mask[3, 1] = False
    sim[3, 1] = 1e6  # masked: must not count
    st = d.departure_stats(obs, sim, chunk=3)  # chunks of 3 and 1
    assert st.count[0] == 4 and st.count[1] == 3
    assert st.mean[0] == pytest.approx(2.0) and st.std[0] == pytest.approx(1.0)
    assert st.mean[1] == pytest.approx(-2.0) and st.std[1] == pytest.approx(0.0, abs=1e-9)
    assert st.mean[2] == pytest.approx(0.0) and st.std[2] == pytest.approx(0.0)


def test_departure_stats_channel_without_data_is_nan():
    obs = make_obs(nobs=2, sensors=("amsr2",))
    obs.mask[:, 4] = False
    st = d.departure_stats(obs, obs.tb_obs_k)
    assert st.count[4] == 0 and np.isnan(st.mean[4]) and np.isnan(st.std[4])


def test_open_water_departures_hand_values(caplog, monkeypatch):
    """Means per sensor and channel over the observations whose SIC is below 0.01, and one warning per sensor
    naming the channels beyond 20 K (hand values); masked values, ice and too few observations not judged."""
    from empirical_seaice.sensors import build_channel_basis

    basis = build_channel_basis(["amsr2", "gmi"])
    n, nchan = 240, basis.nchan
    isensor = np.repeat(np.array([0, 1], np.int16), n // 2)
    sic = np.tile(np.array([0.0, 0.005, 0.5, 0.9], np.float32), n // 4)  # half the rows over open water
    y = np.full((n, nchan), 200.0, np.float32)
    sim = y.copy()
    sim[:, 0] -= 25.0  # amsr2's and gmi's first channel: +25 K everywhere
    sim[sic >= 0.01, 1] += 60.0  # -60 K over ice only: not judged
    sim[:, 2] -= np.where(np.arange(n) % 2 == 0, 10.0, 50.0).astype(np.float32)  # open water rows are 0, 1 mod 4
    mask = np.ones((n, nchan), bool)
    mask[::2, 3] = False
    sim[::2, 3] = 1e6  # masked: must not count
    water = d.OpenWaterDepartures(basis.nsensor, nchan, n)
    assert water.stride == 1
    water.add(isensor[:100], sic[:100], y[:100], sim[:100], mask[:100])  # blocks of 100 and 140
    water.add(isensor[100:], sic[100:], y[100:], sim[100:], mask[100:])
    np.testing.assert_array_equal(water.count[:, 0], [60, 60])
    np.testing.assert_array_equal(water.count[:, 3], [30, 30])
    with np.errstate(invalid="ignore"):
        mean = water.s1 / water.count
    np.testing.assert_allclose(mean[:, 0], 25.0)
    np.testing.assert_allclose(mean[:, 1], 0.0)
    np.testing.assert_allclose(mean[:, 2], 30.0)  # (10 + 50) / 2
    monkeypatch.setattr(d, "OPEN_WATER_MIN_COUNT", 50)  # gmi has 60 open-water rows; channel 3 only 30
    with caplog.at_level("INFO", logger="empirical_seaice"):
        assert water.warn(basis) == ["amsr2", "gmi"]
    lines = [r.getMessage() for r in caplog.records]
    c = basis.channel_names
    assert lines[0] == (
        f"sensor amsr2: before training, the mean departure (observed - simulated TB) over open water is beyond "
        f"20 K in channels {c[0]} +25.0 K, {c[2]} +30.0 K (60 observations with SIC < 0.01, where the ice model "
        "plays no part); check the channel order, units (K) and calibration of its OBSVALUE against its other "
        "per-channel fields, and its grid index and times (ice where the background has open water: positive, "
        "largest at 10-19 GHz H)"
    )
    monkeypatch.setattr(d, "OPEN_WATER_MIN_COUNT", 61)
    assert water.warn(basis) == []
    # a pass of many observations looks at about OPEN_WATER_SAMPLE of them, evenly spaced
    big = d.OpenWaterDepartures(2, nchan, 10 * d.OPEN_WATER_SAMPLE + 5)
    assert big.stride == 10
    big.add(np.zeros(40, np.int16), np.zeros(40, np.float32), y[:40], sim[:40], mask[:40])
    assert big.count[0, 0] == 4


def test_the_summary_lists_the_warnings_the_run_logged():
    """The warnings a run logged come after the table, the first ten in full and the rest counted; none,
    no lines."""
    basis = make_obs(nobs=4, sensors=("amsr2",)).basis
    plain = d.format_summary(d.RunDiagnostics(title="T"), basis)
    assert "logged during the run" not in plain
    one = d.format_summary(d.RunDiagnostics(title="T", logged=("sensor amsr2: something",)), basis)
    assert one.splitlines()[-2:] == ["  1 warning logged during the run:", "  - sensor amsr2: something"]
    many = d.format_summary(d.RunDiagnostics(title="T", logged=tuple(f"w{i}" for i in range(12))), basis)
    tail = many.splitlines()[-12:]
    assert tail[0] == "  12 warnings logged during the run:"
    assert tail[1:11] == [f"  - w{i}" for i in range(10)] and tail[11] == (
        "  - ... and 2 more (every one in summary_TAG.json, run.warnings)"
    )


def test_a_run_that_got_worse_points_at_the_data_warnings_and_the_failed_health_checks():
    """Where the run logged warnings about the input files, a worse run's summary points at them before the
    likely fix (the swapped-channel twin's run had asked for a held-out rerun instead); where the health
    checks failed and ``--force-outputs`` wrote anyway, their remedy is the likely fix."""
    worse = d.RunDiagnostics(
        title="T",
        cost_before={"obs": 100.0, "anchor": 0.0, "total": 100.0},
        cost_after={"obs": 150.0, "anchor": 0.0, "total": 150.0},
        departures_before=_stats(1.0),
        departures_after=_stats(2.0),
        logged=("sensor amsr2: ...", "sensor gmi: ...", "another"),
    )
    assert not any("See also the data" in w for w in d.plain_warnings(worse))  # logged, none about the data
    w = d.plain_warnings(replace(worse, data_warnings=2))
    assert w[-2] == (
        "  See also the data: 2 warnings about the input files are listed below; no flag makes up for a fault in "
        "the files (channels swapped, TBs offset, a grid or times that do not fit)."
    )
    assert w[-1].startswith("  Likely fix: nothing was held out")
    assert "1 warning about the input files is listed" in d.plain_warnings(replace(worse, data_warnings=1))[-2]
    good = replace(worse, cost_after={"obs": 10.0, "anchor": 0.0, "total": 10.0}, departures_after=_stats(0.5))
    assert d.plain_warnings(replace(good, data_warnings=2)) == []  # a run that did not get worse: no pointer
    forced = d.plain_warnings(replace(worse, health_remedy="lower --learning-rate"))
    assert forced[-1] == (
        "  Likely fix: the health checks failed (the outputs are marked health_check = failed, the failure is "
        "listed below): lower --learning-rate."
    )


def test_observation_cost_sum_hand_value():
    obs = make_obs(nobs=2, sensors=("amsr2",))
    sim = obs.tb_obs_k.copy()
    # 10v sigma 2.5 K, 10h sigma 4 K: departures 5 K and 8 K give (2)^2 + (2)^2 = 8 per observation
    sim[:, 0] += 5.0
    sim[:, 1] -= 8.0
    assert d.observation_cost_sum(obs, sim) == pytest.approx(16.0)
    obs.mask[1, 1] = False
    assert d.observation_cost_sum(obs, sim) == pytest.approx(12.0)


def test_anchor_floor_sum_hand_value_and_the_cost_term():
    """The compiled anchor floor sum of a block: by hand, and equal to the cost's torch term on many values."""
    net = SimpleNamespace(cost_config=SimpleNamespace(anchor="floor", anchor_value=0.7, anchor_error=0.01))
    e = np.array([0.69, 0.75, 0.7, 0.68], dtype=np.float32)  # below the floor by 0.01 and 0.02 (float32 values)
    r = 0.7 - e.astype(np.float64)
    assert d.anchor_floor_sum(net, e) == pytest.approx((r[0] ** 2 + r[3] ** 2) / 1e-4, rel=1e-12)
    assert d.anchor_floor_sum(net, e) == pytest.approx(5.0, rel=1e-5)  # (1 + 4) x 1e-4 / 1e-4
    many = np.random.default_rng(4).uniform(0.6, 0.8, 100_000).astype(np.float32)
    torch_sum = float(d.costs.anchor_floor_penalty(torch.from_numpy(many.astype(np.float64)), 0.7, 0.01))
    assert d.anchor_floor_sum(net, many) == pytest.approx(torch_sum, rel=1e-13)
    assert d.anchor_floor_sum(SimpleNamespace(cost_config=SimpleNamespace(anchor="mean")), e) is None


def test_observed_points_and_truth_scores_hand_case():
    obs = make_obs(nobs=4, sensors=("amsr2",), ngrid=3, nstep=2)
    # obs (g, t): (0,0) (1,0) (2,0) (0,1); grid point 1 and 2 at step 1 unobserved
    g, t = d.observed_points(obs)
    assert list(zip(g.tolist(), t.tolist(), strict=True)) == [(0, 0), (0, 1), (1, 0), (2, 0)]
    nlag = 1
    truth_sic = np.array([[1.0, 0.9], [0.0, 0.5], [0.6, 0.7]])
    bg = np.zeros((3, 3), dtype=np.float32)  # background 0 everywhere: errors -1, -0.9, 0, -0.6
    trained = np.zeros((3, 3), dtype=np.float32)
    trained[:, 1:] = truth_sic + 0.1  # +0.1 everywhere; the unobserved (1,1), (2,1) must not matter
    trained[1, 2] = trained[2, 2] = 9.0
    background = BackgroundMaps(sic=bg, t_skin_map_k=np.full((3, 2), 260.0, np.float32), nlag=nlag)
    nc = obs.nchan
    true_emis = np.full((4, nc), 0.9)
    true_emis[:, 2] = np.nan  # no truth for channel 2
    emis = np.full((4, nc), 0.9, dtype=np.float32)
    emis[:, 0] = [0.8, 0.0, 1.0, 0.95]  # obs 1 is on open water (truth SIC 0): excluded
    truth = SimpleNamespace(
        sic=truth_sic, emis_ice=true_emis, bias_ice_k=np.full((1, nc), 5.0), bias_ocean_k=np.full((1, nc), 2.0)
    )
    s = d.truth_scores(
        obs, background, trained, emis, truth, bias_ice=np.full((1, nc), 5.5), bias_ocean=np.full((1, nc), 2.0)
    )
    assert s.npoints == 4
    assert s.sic_rmse_background == pytest.approx(np.sqrt((1 + 0.81 + 0 + 0.36) / 4))
    assert s.sic_bias_background == pytest.approx(-(1 + 0.9 + 0 + 0.6) / 4)
    assert s.sic_rmse == pytest.approx(0.1, abs=1e-6) and s.sic_bias == pytest.approx(0.1, abs=1e-6)
    # channel 0 over ice (truth SIC > 0.5): obs 0 (1.0), 2 (0.6), 3 (0.9): errors -0.1, 0.1, 0.05
    assert s.emis_count[0] == 3
    assert s.emis_rmse[0] == pytest.approx(np.sqrt((0.01 + 0.01 + 0.0025) / 3), rel=1e-5)
    assert s.emis_count[2] == 0 and np.isnan(s.emis_rmse[2])
    assert s.emis_rmse[1] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(s.bias_ice_error, 0.5)
    np.testing.assert_allclose(s.bias_ocean_error, 0.0)


def test_truth_scores_rejects_misshaped_truth():
    obs = make_obs(nobs=4, sensors=("amsr2",), ngrid=3, nstep=2)
    background = BackgroundMaps(sic=np.zeros((3, 3), np.float32), t_skin_map_k=np.zeros((3, 2), np.float32), nlag=1)
    with pytest.raises(ValueError, match=r"truth.sic: expected shape \(3, 2\)"):
        d.truth_scores(
            obs, background, np.zeros((3, 3)), np.zeros((4, obs.nchan)), SimpleNamespace(sic=np.zeros((3, 3)))
        )


def test_simulate_does_not_depend_on_chunking():
    from empirical_seaice.cost.sampling import build_row_counts
    from empirical_seaice.model.operator import HybridNetwork
    from empirical_seaice.model.tensors import ObservationTensors

    obs = make_obs(nobs=7, sensors=("amsr2", "gmi"), ngrid=3, nstep=2)
    preset = PRESETS["v2"]
    bg = BackgroundMaps(sic=np.full((3, 3), 0.5, np.float32), t_skin_map_k=np.full((3, 2), 260.0, np.float32), nlag=1)
    net = HybridNetwork(
        preset.model,
        preset.cost,
        obs.basis,
        bg,
        obs.nobs,
        row_counts=build_row_counts(obs, 1, 3, 2),
        generator=torch.Generator().manual_seed(0),
    )
    data = ObservationTensors(obs, "cpu")
    a = d.simulate(net, data, obs.nobs, chunk=3)
    b = d.simulate(net, data, obs.nobs, chunk=100)
    np.testing.assert_allclose(a.tb, b.tb, rtol=1e-6)
    np.testing.assert_array_equal(a.sic, np.full(7, 0.5, np.float32))  # 0.6 * 0.5 + 0.4 * 0.5
    z = d.simulate(net, data, obs.nobs, zero_sic=True)
    np.testing.assert_array_equal(z.sic, 0.0)
    # SIC 0: TB' = e_o (T_o tau* - D*) + K + b_ocean (the all-sky atmosphere's effective terms), independent
    # of the ice; with the fixture's cloud fraction 0: e_o T_o tau + (1 - e_o) tau T_down + T_up + b_ocean
    e_o = obs.emis_water
    t_o = np.maximum(obs.t_skin_k, 271.35)[:, None]
    b_ocean = obs.basis.bias_ocean_bg_k[obs.isensor]
    expect = e_o * (t_o * obs.tau_eff - obs.down_eff_k) + obs.const_k + b_ocean
    own = np.asarray(obs.basis.present)[obs.isensor]  # NaN in the channels the sensor lacks
    assert not own.all() and np.isnan(z.tb[~own]).all()
    np.testing.assert_allclose(z.tb[own], expect[own], rtol=1e-5)
    assert net.training  # restored


def test_format_summary_layout():
    obs = make_obs(nobs=4, sensors=("amsr2",))
    st = d.departure_stats(obs, obs.tb_obs_k - 1.0)
    truth = d.TruthScores(
        npoints=4,
        sic_rmse_background=0.2,
        sic_bias_background=-0.1,
        sic_rmse=0.05,
        sic_bias=0.01,
        emis_rmse=np.full(obs.nchan, 0.02),
        emis_count=np.ones(obs.nchan, int),
        bias_ice_error=np.full((1, obs.nchan), 0.25),
        bias_ocean_error=None,
    )
    text = d.format_summary(
        d.RunDiagnostics(
            title="T",
            cost_before={"obs": 100.0, "total": 110.0},
            cost_after={"obs": 1.0, "total": 2.0},
            departures_before=st,
            departures_after=st,
            truth=truth,
            notes=("n",),
        ),
        obs.basis,
    )
    lines = text.splitlines()
    assert lines[0] == "T"
    assert lines[1].split() == ["cost", "term", "J", "before", "after"]
    assert lines[2].split() == ["obs", "100", "1"] and lines[3].split() == ["total", "110", "2"]
    row_10v = next(line for line in lines if line.split()[0] == "10v")
    assert row_10v.split() == ["10v", "4", "+1.00", "/", "0.00", "+1.00", "/", "0.00", "0.0200"]
    assert "RMSE background 0.2000 -> trained 0.0500" in text
    assert "TB bias ice error vs truth, max |K|: amsr2 0.25" in text
    assert len(lines) == 1 + 3 + 1 + obs.nchan + 2 + 1


def test_departure_rms_hand_value():
    st = d.DepartureStats(
        count=np.array([3, 1, 0]), mean=np.array([1.0, 2.0, np.nan]), std=np.array([1.0, 0.0, np.nan])
    )
    assert d.departure_rms(st) == pytest.approx(np.sqrt((3 * 2.0 + 1 * 4.0) / 4))
    assert d.departure_rms(st, np.array([1.0, 2.0, 1.0])) == pytest.approx(np.sqrt((3 * 2.0 + 1 * 1.0) / 4))


def _truth(before, after):
    return d.TruthScores(
        npoints=4,
        sic_rmse_background=before,
        sic_bias_background=0.0,
        sic_rmse=after,
        sic_bias=0.0,
        emis_rmse=np.zeros(1),
        emis_count=np.zeros(1, int),
    )


def _stats(m):
    return d.DepartureStats(count=np.array([10]), mean=np.array([m]), std=np.array([1.0]))


def test_the_summary_reads_the_held_out_cost_of_a_run_without_early_stopping():
    """A run's summary hands the trainer's held-out cost per epoch to the warnings: held out with
    --no-early-stopping, a trained SIC worse than the background is named an over-fit from the epoch of the
    lowest held-out cost; with nothing held out, a held-out rerun comes before more epochs."""
    from empirical_seaice.config import TrainingConfig
    from empirical_seaice.run.finish import summary_table
    from empirical_seaice.sensors import build_channel_basis
    from empirical_seaice.training.history import TrainingHistory

    obs = SimpleNamespace(basis=build_channel_basis(["amsr2"]), nobs=25_000, ngrid=500, nstep=20)
    result = SimpleNamespace(
        health=None, tag="t", train_seconds=1.0, output="out", departures_before=None, departures_after=None,
        cost_before={"obs": 100.0, "total": 100.0}, cost_after={"obs": 60.0, "total": 60.0},
        truth=_truth(0.12, 0.14),
    )  # fmt: skip
    history = TrainingHistory(epoch_terms=[{"total": 1.0}] * 6, valid_cost=[3.0, 2.0, 2.2, 2.5, 2.7, 2.9])
    no_stop = TrainingConfig(early_stopping=False, validation_fraction=0.1)
    text = summary_table(result, "v1", obs, history, False, no_stop, PRESETS["v1"].cost)
    assert "WARNING: the trained SIC is worse than the background it started from (RMSE against the truth " in text
    assert "Likely cause: the held-out observations' cost was lowest at epoch 2 of 6, so the later epochs" in text
    assert "--nepochs" not in text.split("WARNING")[-1]
    text = summary_table(result, "v1", obs, TrainingHistory(epoch_terms=[{"total": 1.0}] * 6), False, no_stop,
                         PRESETS["v1"].cost)  # fmt: skip
    assert "Likely fix: nothing was held out to tell whether training stopped short or fitted" in text


def test_plain_warnings_name_what_went_wrong_and_the_fix():
    ok = d.RunDiagnostics(
        title="T",
        cost_before={"obs": 100.0, "anchor": 0.0, "total": 100.0},
        cost_after={"obs": 10.0, "anchor": 1.0, "total": 11.0},
        departures_before=_stats(3.0),
        departures_after=_stats(0.5),
        truth=_truth(0.11, 0.05),
    )
    assert d.plain_warnings(ok) == []
    # a good run whose anchor term is mostly a few emissivities just under the floor: no warning
    noise = d.RunDiagnostics(
        title="T",
        cost_before={"obs": 1.27e6, "anchor": 0.0, "total": 1.27e6},
        cost_after={"obs": 2.0e5, "anchor": 8.5e5, "total": 1.06e6},
        truth=_truth(0.1101, 0.0594),
    )
    assert d.plain_warnings(noise) == []
    # a term of 100% of J, of which the health check found the shortfall harmless (a 3-epoch tiny v2 run):
    # one note, no warning for the term nor for the total's rise it caused
    harmless = d.RunDiagnostics(
        title="T",
        cost_before={"obs": 1.54e6, "anchor": 0.0, "total": 1.54e6},
        cost_after={"obs": 2.5e5, "anchor": 6.7e7, "total": 6.725e7},
        truth=_truth(0.1101, 0.0727),
        anchor_shortfall=8.5e-4,
        anchor_harmless=True,
    )
    assert d.plain_warnings(harmless) == [
        "NOTE: the emissivity anchor term is 100% of the cost after training (6.7e+07 of 6.725e+07) but stands "
        "for an emissivity shortfall of only 0.00085 (RMS over all observations): a few emissivities end just "
        "under the anchor's floor, and the term's small error makes it large. The products are not affected."
    ]
    # the same figures without the health check's verdict: warnings and the fix
    harmless.anchor_harmless = False
    w = d.plain_warnings(harmless)
    assert w[0].startswith("WARNING: the emissivity anchor term is 100%") and w[1].startswith("WARNING: the total")
    # the first-run failure of the reference's v2 start: SIC and departures worse, anchor dominating
    bad = d.RunDiagnostics(
        title="T",
        cost_before={"obs": 4.7e7, "anchor": 4.5e12, "total": 4.5e12},
        cost_after={"obs": 2.7e7, "anchor": 1.2e12, "total": 1.2e12},
        departures_before=_stats(1.0),
        departures_after=_stats(2.0),
        truth=_truth(0.1101, 0.1177),
    )
    w = d.plain_warnings(bad)
    assert w[0] == (
        "WARNING: the trained SIC is worse than the background it started from "
        "(RMSE against the truth 0.1101 -> 0.1177)."
    )
    assert w[1].startswith(
        "WARNING: the simulated TBs fit the observations worse than before training (RMS of y - H(x) 1.41 K -> 2.24 K)"
    )
    assert w[2].startswith("WARNING: the emissivity anchor term is 100% of the cost after training")
    assert "--ice-emis-init 0.9" in w[-1] and w[-1].lstrip().startswith("Likely fix")
    # no anchor problem: the cost rose and its cause is named; the fix is more steps per cell
    rose = d.RunDiagnostics(
        title="T",
        cost_before={"obs": 100.0, "warm_ice": 0.0, "anchor": 0.0, "total": 100.0},
        cost_after={"obs": 90.0, "warm_ice": 500.0, "anchor": 0.0, "total": 590.0},
    )
    w = d.plain_warnings(rose)
    assert w[0] == (
        "WARNING: the total cost rose during training (100 -> 590); most of the rise is the warm_ice term (0 -> 500)."
    )
    # nothing held out: training may have stopped short or fitted noise, and the held-out cost would tell
    assert "--nepochs" in w[1] and "Rerun with --validation-fraction 0.1" in w[1]
    # a retrieval holds nothing out by design: more steps only
    retrieved = replace(rose, retrieval=True)
    assert d.plain_warnings(retrieved)[1] == (
        "  Likely fix: give each SIC cell more steps: more epochs (--nepochs), or a smaller --batchsize with a "
        "larger --learning-rate (by default both follow the data size)."
    )
    # held out without early stopping: the held-out costs say which way
    fitted_noise = replace(rose, held_out_cost=(3.0, 2.0, 2.5, 2.6))
    assert d.plain_warnings(fitted_noise)[1] == (
        "  Likely cause: the held-out observations' cost was lowest at epoch 2 of 4, so the later epochs "
        "fitted noise; without --no-early-stopping the run keeps that epoch's parameters."
    )
    short = replace(rose, held_out_cost=(3.0, 2.0, 1.9))
    w_short = d.plain_warnings(short)[1]
    assert w_short.startswith("  Likely fix: the held-out observations' cost was still falling at the last epoch")
    assert "--nepochs" in w_short and "--validation-fraction" not in w_short
    text = d.format_summary(rose, make_obs(nobs=4, sensors=("amsr2",)).basis)
    assert text.splitlines()[-2:] == [f"  {w[0]}", f"  {w[1]}"]
    # with early stopping the kept epoch had the lowest held-out cost: no "more epochs"
    rose.kept_epoch = 4
    w = d.plain_warnings(rose)
    assert w[0].startswith("WARNING: the total cost rose") and "--nepochs" not in w[1]
    assert w[1].startswith("  Likely cause: the held-out observations' cost was lowest at epoch 4")
    # the `science` twin's good run (SIC 0.1218 -> 0.0795): the total rose by an anchor term whose shortfall
    # the health check found harmless and which stays below the observation term before (so not "dominating"):
    # a note, no warning
    science = d.RunDiagnostics(
        title="T",
        cost_before={"obs": 1.2e7, "anchor": 0.0, "total": 1.2483e7},
        cost_after={"obs": 3.2e6, "anchor": 9.8276e6, "total": 1.312e7},
        truth=_truth(0.1218, 0.0795),
        kept_epoch=4,
        anchor_shortfall=1.1e-4,
        anchor_harmless=True,
    )
    assert d.plain_warnings(science) == [
        "NOTE: the total cost rose during training (1.248e+07 -> 1.312e+07) by the emissivity anchor term "
        "(0 -> 9.828e+06), which stands for an emissivity shortfall of only 0.00011 (RMS over all observations): "
        "a few emissivities end just under the anchor's floor. The products are not affected."
    ]
    science.anchor_harmless = False  # without the health check's verdict: the warning
    assert d.plain_warnings(science)[0].startswith("WARNING: the total cost rose")
