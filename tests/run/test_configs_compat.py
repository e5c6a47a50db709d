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
