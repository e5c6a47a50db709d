"""config/schema.py: the configuration dataclasses, their validation and the automatic batch settings."""

from __future__ import annotations

import pytest

from empirical_seaice.config import TrainingConfig, auto_batch_size, auto_learning_rate
from empirical_seaice.errors import SeaIceError


@pytest.mark.parametrize(
    "nobs, batch",
    [(0, 128), (9322, 128), (51_200, 256), (141_596, 512), (204_799, 512), (204_800, 1024), (10**8, 1024)],
)
def test_auto_batch_size_is_the_largest_power_of_two_giving_200_steps_within_128_to_1024(nobs, batch):
    assert auto_batch_size(nobs) == batch


def test_auto_learning_rate_scales_the_reference_step_with_the_batch():
    assert auto_learning_rate(1024) == 1e-3 and auto_learning_rate(128) == 8e-3 and auto_learning_rate(512) == 2e-3


def test_resolved_fills_the_automatic_values_and_keeps_explicit_ones():
    r = TrainingConfig(batch_size=None, learning_rate=None).resolved(141_596)
    assert (r.batch_size, r.learning_rate) == (512, 2e-3)
    r = TrainingConfig(batch_size=64, learning_rate=None).resolved(141_596)
    assert (r.batch_size, r.learning_rate) == (64, 1e-3 * 1024 / 64)


def test_a_batch_larger_than_the_training_observations_is_refused():
    """A batch of more observations than there are is an epoch of one step, at an automatic learning rate that
    shrinks with the batch (--batchsize 8192 on 4,856 observations trained at 1.25e-4 and ended where it began):
    refused with the largest batch allowed and the automatic one; as many as there are is allowed."""
    cfg = TrainingConfig(batch_size=8192, learning_rate=None).resolved(4856)
    with pytest.raises(SeaIceError) as exc:
        cfg.check_batch(4856)
    assert str(exc.value) == (
        "--batchsize 8192: more than the 4,856 training observations, so every epoch would be one step at learning "
        "rate 0.000125; give at most 4,856, or leave --batchsize out (automatic: 128 here)"
    )
    TrainingConfig(batch_size=4856).check_batch(4856)
    TrainingConfig(batch_size=None).check_batch(10)  # automatic: the size follows the data


def test_the_network_steps_at_most_the_geometric_mean_of_the_learning_rate_and_the_reference_step():
    """The automatic step of the dense weights: the learning rate up to 1e-3, above it sqrt(lr * 1e-3)
    (batch 128: 8e-3 -> 2.83e-3; 512: 2e-3 -> 1.41e-3); an explicit --network-learning-rate is kept."""
    nets = {n: TrainingConfig(batch_size=None, learning_rate=None).resolved(n) for n in (9_322, 141_596, 300_000)}
    assert [(r.batch_size, r.learning_rate) for r in nets.values()] == [(128, 8e-3), (512, 2e-3), (1024, 1e-3)]
    assert [r.network_learning_rate for r in nets.values()] == pytest.approx([2.8284e-3, 1.4142e-3, 1e-3], rel=1e-4)
    assert TrainingConfig(batch_size=4096, learning_rate=None).resolved(10**6).network_learning_rate == 2.5e-4
    assert TrainingConfig(learning_rate=0.02, network_learning_rate=0.005).resolved(9_322).network_step == 0.005
    with pytest.raises(SeaIceError, match="--network-learning-rate: must be a finite number > 0"):
        TrainingConfig(network_learning_rate=0.0)


def test_a_bad_value_is_one_error_naming_the_field():
    with pytest.raises(SeaIceError, match="optimizer"):
        TrainingConfig(optimizer="adagrad")
