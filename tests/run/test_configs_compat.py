"""Configurations saved in checkpoints before the reference-exact fields existed load as they were trained."""

from __future__ import annotations

from empirical_seaice.config import PRESETS, DataConfig, TrainingConfig
from empirical_seaice.run.model_file import configs_from_dict, configs_to_dict


def test_old_checkpoint_configs_keep_their_false_ice_shape_and_frequencies(tmp_path):
    p = PRESETS["v2"]
    d = configs_to_dict(DataConfig(data=tmp_path), p.model, p.cost, TrainingConfig(), "v2")
    _, model, cost = configs_from_dict(d)
    assert model == p.model and cost == p.cost  # round trip
    for key in ("network_frequencies",):
        del d["model"][key]
    for key in ("false_ice_shape", "false_ice_peak_scaling", "anchor_frequency_ghz"):
        del d["cost"][key]
    _, model, cost = configs_from_dict(d)
    assert model.network_frequencies == "physical"
    assert cost.false_ice_shape == "tent" and cost.anchor_frequency_ghz is None


def test_checkpoints_before_the_emissivity_ceiling_load_and_resume_without_it(tmp_path):
    """A model file without the field loads with the ceiling off; a run without it has the identity (what
    ``--resume`` compares) of a checkpoint written before the field existed, one with it another."""
    from dataclasses import replace

    from empirical_seaice.io.transaction.output_set import config_hash
    from empirical_seaice.run.model_file import run_identity

    p = PRESETS["v1"]
    d = configs_to_dict(DataConfig(data=tmp_path), p.model, p.cost, TrainingConfig(), "v1")
    del d["cost"]["emis_ceiling_error"]
    assert configs_from_dict(d)[2].emis_ceiling_error is None

    class Obs:  # what run_identity reads of the observations
        basis = type("B", (), {"sensor_names": ("amsr2",)})()
        source_digest, jd_origin, stepstart, nstep, nobs = "x", 0.0, 0, 5, 100

    before = config_hash(d["cost"])  # the cost as a checkpoint from before the field hashed it
    assert run_identity(Obs(), p.model, p.cost, TrainingConfig())["cost"] == before
    with_ceiling = replace(p.cost, emis_ceiling_error=0.01)
    assert run_identity(Obs(), p.model, with_ceiling, TrainingConfig())["cost"] != before
