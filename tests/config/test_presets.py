"""config/presets.py: the reference presets, the reference training and where a run starts."""

from __future__ import annotations

import pytest

from empirical_seaice.config import (
    DEFAULT_TRAINING,
    PRESETS,
    REFERENCE_TRAINING,
    get_preset,
    starting_configuration,
)
from empirical_seaice.errors import SeaIceError


def test_our_start_adds_the_initial_emissivity_and_the_angle_input_to_the_exact_preset():
    preset, training = starting_configuration("v2")
    assert training is DEFAULT_TRAINING and training.nepochs == 25 and training.batch_size is None
    assert preset.model.ice_emis_init == 0.9 and preset.model.angle_input is None
    assert PRESETS["v2"].model.ice_emis_init is None and PRESETS["v2"].model.angle_input is False
    v1, _ = starting_configuration("v1")
    assert v1.model.ice_emis_init == 0.93 and v1.model == PRESETS["v1"].model
    # the SIC smoothness prior between consecutive days, in both presets
    assert preset.cost.sic_smoothness_time_error == 0.03 == v1.cost.sic_smoothness_time_error
    assert preset.cost.sic_smoothness_error is None and not PRESETS["v2"].cost.sic_smoothness
    # the ice-emissivity ceiling: v1's unbounded linear model only (the v2 network's sigmoid stays under 1)
    assert v1.cost.emis_ceiling_error == 0.01 and preset.cost.emis_ceiling_error is None
    assert PRESETS["v1"].cost.emis_ceiling_error is None


@pytest.mark.parametrize("name, nepochs, order", [("v1", 8, "shuffled"), ("v2", 25, "reference-blocks")])
def test_exact_reference_is_the_preset_unchanged_with_the_reference_training(name, nepochs, order):
    preset, training = starting_configuration(name, exact_reference=True)
    assert preset is PRESETS[name] and training is REFERENCE_TRAINING[name]
    assert (training.nepochs, training.batch_size, training.learning_rate) == (nepochs, 1024, 1e-3)
    assert (training.optimizer, training.map_priors, training.batch_order) == ("dense-adam", "full", order)


def test_unknown_preset_names_the_flag_and_the_known_ones():
    with pytest.raises(SeaIceError, match=r"^--model: unknown preset 'v3'; known presets: v1, v2$"):
        get_preset("v3")
