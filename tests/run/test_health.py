"""run.health: each check on hand-made arrays (a healthy case passes, each damage names its check)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from empirical_seaice.run.health import HealthReport, anchor_shortfall, check_health, failure_attributes

NAMES = ["10v", "10h"]


def _case(**over):
    rng = np.random.default_rng(0)
    args = dict(
        sic_map=rng.uniform(0.0, 1.0, (50, 4)),
        props_grid=rng.normal(0.0, 0.5, (50, 3, 2)),
        props_obs=rng.normal(0.0, 0.5, (200, 1)),
        emis_ice=rng.uniform(0.8, 0.99, (200, 2)),
        tb_sim=rng.uniform(150.0, 260.0, (200, 2)),
        mask=np.ones((200, 2), bool),
        sic_obs=np.r_[np.full(100, 0.9), np.full(100, 0.1)],
        channel_names=NAMES,
        cost_before={"obs": 1000.0, "sic_range": 0.0, "total": 1000.0},
        cost_after={"obs": 200.0, "sic_range": 5.0, "total": 205.0},
    )
    args.update(over)
    return check_health(**args)


def test_a_healthy_model_passes():
    rep = _case()
    assert rep.ok and rep.figures["obs_cost_ratio"] == 0.2


def test_each_check_names_what_failed():
    sic = np.full((50, 4), 0.5)
    sic[:5] = 1.3  # 10 % of the map at 1.3
    assert _case(sic_map=sic).failures == ["SIC from 0.5 to 1.3, 10.0% of values outside [-0.1, 1.1]"]
    sic = np.full((50, 4), 0.5)
    sic[0, 0] = -0.6  # one value beyond the hard limit
    assert "SIC from -0.6 to 0.5" in _case(sic_map=sic).message()
    p = np.zeros((50, 3, 2))
    p[1, 1, 1] = -12.0
    assert _case(props_grid=p).failures == ["empirical state P reaches |P| = 12 (limit 10)"]
    e = np.full((200, 2), 0.9)
    e[:12, 0] = 1.05  # 12 of 200 ice values (6 %) above 1.01; the open-water half does not count
    e[150:, 1] = 1.5
    assert _case(emis_ice=e).failures == [
        "ice emissivity outside (0, 1] for 6.0% of the 100 observations with SIC > 0.5 "
        "(from 0.9 to 1.05; worst channel 10v: 12%), beyond the unbounded v1 model's tolerance "
        "(the tolerance: 5% outside, none above 1.2)"
    ]
    e[:12, 0] = 1.0  # 1 exactly is fine
    assert _case(emis_ice=e).ok
    e[:6, 0] = 1.05  # 3 % above 1.01: tolerated (the unbounded v1 model), a warning only
    assert _case(emis_ice=e).ok
    e[0, 0] = 1.25  # one value beyond the hard limit 1.2 fails however few
    assert "from 0.9 to 1.25" in _case(emis_ice=e).message()
    after = {"obs": 1100.0, "sic_range": 20000.0, "total": 21100.0}
    assert _case(cost_after=after).failures == [
        "departures worse than before training (J_o 1000 -> 1100)",
        "cost term sic_range exploded (0 -> 2e+04)",
    ]
    tb = np.full((200, 2), 200.0)
    tb[4, 1] = np.inf
    assert _case(tb_sim=tb).failures == ["simulated TB has 1 non-finite values"]
    tb[4, 1] = 200.0
    m = np.ones((200, 2), bool)
    m[4, 1] = False
    tb[4, 1] = np.nan  # masked: not looked at
    assert _case(tb_sim=tb, mask=m).ok


def test_anchor_shortfall_by_hand():
    # v2 floor 0.8, sigma 1e-5: two of 9,322 observations at 0.79 give J_a = 2 (0.01 / 1e-5)^2 = 2e6,
    # an RMS shortfall over all observations of 1e-5 sqrt(2e6 / 9322) = 1.4648e-4
    assert np.isclose(anchor_shortfall("floor", 1e-5, 2e6, 9322), 1e-5 * np.sqrt(2e6 / 9322), rtol=1e-12)
    assert np.isclose(anchor_shortfall("floor", 1e-5, 2e6, 9322), 1.4648e-4, rtol=1e-4)
    # v1 mean anchor: J_a = ((e0 - 0.93) / 1e-5)^2 = 1e6 is e0 off by 0.01, whatever nobs
    assert np.isclose(anchor_shortfall("mean", 1e-5, 1e6, 9322), 0.01, rtol=1e-12)
    assert anchor_shortfall("floor", 1e-5, 0.0, 9322) == 0.0


def test_the_anchor_is_judged_by_its_shortfall():
    # a term 50x the total before, standing for a harmless shortfall: passes when the shortfall is given
    after = {"obs": 200.0, "sic_range": 5.0, "anchor": 5e4, "total": 5.0205e4}
    assert _case(cost_after=after).failures == ["cost term anchor exploded (0 -> 5e+04)"]
    rep = _case(cost_after=after, anchor_shortfall=1.5e-4)
    assert rep.ok and rep.figures["anchor_shortfall"] == 1.5e-4
    # the same term standing for a material shortfall fails, and says why
    assert _case(cost_after=after, anchor_shortfall=0.03).failures == [
        "cost term anchor exploded (0 -> 5e+04): the anchored ice emissivity misses its target by 0.03 "
        "(RMS over all observations; limit 0.01)"
    ]
    # a term that did not explode is not judged by its shortfall (the summary warns about it)
    after = {"obs": 200.0, "sic_range": 5.0, "anchor": 1.0, "total": 206.0}
    assert _case(cost_after=after, anchor_shortfall=0.03).ok


def test_failure_attributes():
    rep = _case(props_obs=np.full((200, 1), 11.0))
    assert failure_attributes(rep) == {
        "health_check": "failed",
        "health_check_failures": "empirical state Q reaches |Q| = 11 (limit 10)",
    }


def test_array_figures_by_hand_and_as_numpy_gives_them():
    """One compiled pass: the non-finite count, then min, max, max |x| and the fraction outside the range over
    the finite values (the fraction of all values), as the numpy expressions give them, float32 or float64."""
    from empirical_seaice.run import health

    a = np.array([[0.5, -0.2, np.nan], [1.3, np.inf, 0.0]], dtype=np.float32)
    fig = health.array_figures(a, -0.1, 1.1)
    f32 = float(np.float32(-0.2)), float(np.float32(1.3))
    assert fig == health.ArrayFigures(6, 2, f32[0], f32[1], f32[1], 2 / 6, (-0.1, 1.1))
    assert health.array_figures(np.array([-3.0, 2.0])).max_abs == 3.0  # no range: nothing outside
    assert health.array_figures(np.array([-3.0, 2.0])).fraction == 0.0
    assert health.array_figures(np.zeros((0, 3), np.float32)).size == 0
    none = health.array_figures(np.array([np.nan, np.inf], np.float32), -0.1, 1.1)  # no finite value: NaN figures
    np.testing.assert_equal(dataclasses.astuple(none), (2, 2, np.nan, np.nan, np.nan, 0.0, (-0.1, 1.1)))
    by_numpy = health._array_figures_numpy(np.array([np.nan, np.inf]), -0.1, 1.1)
    np.testing.assert_equal(dataclasses.astuple(none), dataclasses.astuple(by_numpy))
    # figures of another range than the checks read: refused (they would read another fraction)
    with pytest.raises(ValueError, match=r"array figures of the range \(-inf, inf\)"):
        none_p = np.zeros(0)
        health.check_health_of(health.array_figures(a), none_p, none_p, health.ObservationChecks(2), [], None, {})
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        x = (rng.normal(0.5, 0.4, (300, 7))).astype(dtype)
        x[rng.random(x.shape) < 0.02] = np.nan
        for arr in (x, x[:, ::2]):  # contiguous, and strided columns
            assert health.array_figures(arr, -0.1, 1.1) == health._array_figures_numpy(arr.reshape(-1), -0.1, 1.1)


def test_a_summary_without_a_health_report_judges_the_anchor_as_the_check_does():
    """``--diagsonly`` (and a sharded run) have no health report: the summary finds the anchor's shortfall
    itself, so the same trained model gets the training run's note, not two warnings that call a harmless
    anchor term a failed training (before: a NOTE after training, two WARNINGs in --diagsonly)."""
    from types import SimpleNamespace

    from empirical_seaice.config import PRESETS, TrainingConfig
    from empirical_seaice.run.finish import summary_table
    from empirical_seaice.sensors import build_channel_basis

    preset = PRESETS["v2"]
    obs = SimpleNamespace(basis=build_channel_basis(["amsr2"]), nobs=57_277, ngrid=2823, nstep=30)
    before = {"obs": 1.477e7, "anchor": 0.0, "total": 1.477e7}
    after = {"obs": 4.0e6, "anchor": 4.145e7, "total": 4.545e7}
    shortfall = anchor_shortfall(preset.cost.anchor, preset.cost.anchor_error, after["anchor"], obs.nobs)
    assert shortfall < 0.01  # harmless by the health check's rule

    def table(health):
        result = SimpleNamespace(
            health=health, tag="t", train_seconds=0.0, cost_before=before, cost_after=after, output="out",
            departures_before=None, departures_after=None, truth=None,
        )  # fmt: skip
        return summary_table(result, "v2", obs, None, True, TrainingConfig(), preset.cost)

    trained = table(HealthReport(figures={"anchor_shortfall": shortfall}))
    diagsonly = table(None)
    assert "NOTE: the emissivity anchor term is 91%" in trained and "WARNING" not in trained
    assert diagsonly == trained


def test_the_remedy_fits_the_checks_that_failed(tmp_path):
    """The v1 emissivity's bound alone: the linear model cannot fit these data within (0, 1], which a lower
    learning rate or more epochs did not cure (the message said "lower --learning-rate", which made it
    worse); a diverged fit keeps that advice."""
    from empirical_seaice.run.health import HealthError, health_gate

    e = np.full((200, 2), 0.9)
    e[:12, 0] = 1.05
    with pytest.raises(HealthError) as exc:
        health_gate(_case(emis_ice=e), False, tmp_path / "checkpoint.pt")
    text = str(exc.value)
    assert "lower --learning-rate" not in text and "--model v2 (bounded), or --force-outputs" in text
    assert "--emis-ceiling 0.01 (v1's default) holds it under 1" in text  # a run without the ceiling
    with_ceiling = {"obs": 200.0, "sic_range": 5.0, "emis_ceiling": 3.0, "total": 208.0}
    with pytest.raises(HealthError) as exc:
        health_gate(_case(emis_ice=e, cost_after=with_ceiling), False, tmp_path / "checkpoint.pt")
    text = str(exc.value)
    assert "--emis-ceiling" not in text and "cannot fit these data within (0, 1]: --model v2 (bounded)" in text
    after = {"obs": 1100.0, "sic_range": 5.0, "total": 1105.0}
    for report in (_case(cost_after=after), _case(emis_ice=e, cost_after=after)):
        with pytest.raises(HealthError) as exc:
            health_gate(report, False, tmp_path / "checkpoint.pt")
        assert str(exc.value).endswith(
            "(lower --learning-rate, or --force-outputs to write the outputs marked as failed)"
        )
    report, attrs = health_gate(_case(emis_ice=e), True, tmp_path / "checkpoint.pt")
    assert attrs is not None and attrs["health_check"] == "failed"


def test_the_remedy_of_outputs_written_anyway_and_of_a_sharded_run(tmp_path):
    """Where ``--force-outputs`` wrote the outputs (the summary's likely fix), the remedy does not offer it
    again; a sharded run's checkpoints, one a rank in a directory, are named as that directory."""
    from empirical_seaice.run.health import HealthError, health_gate

    e = np.full((200, 2), 0.9)
    e[:12, 0] = 1.05
    after = {"obs": 1100.0, "sic_range": 5.0, "total": 1105.0}
    assert _case(cost_after=after).remedy(forced=True) == "lower --learning-rate"
    assert _case(emis_ice=e).remedy(forced=True).endswith("holds it under 1; or --model v2 (bounded)")
    (tmp_path / "checkpoints_d").mkdir()
    with pytest.raises(
        HealthError, match=f"no outputs written, the checkpoints in {tmp_path / 'checkpoints_d'} are kept"
    ):
        health_gate(_case(cost_after=after), False, tmp_path / "checkpoints_d")
