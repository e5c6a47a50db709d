"""cli/configure.py (with cli/parser.py, cli/further.py): seaice-training flags to the run's configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from empirical_seaice.cli.configure import configs_from_args, product_options
from empirical_seaice.cli.parser import build_parser
from empirical_seaice.config import PRESETS, REFERENCE_TRAINING, replace


def _configs(argv):
    return configs_from_args(build_parser().parse_args(argv))


def test_defaults_are_the_v2_preset_with_our_improvements():
    data, preset, cost, training = _configs([])
    assert data.data == Path("demo_data")
    assert data.sensors == ("amsr2", "gmi", "ssmisf17")
    assert data.stepstart == 0 and data.nsteps is None
    # the improvements: every one differs from the reference's value
    assert preset.model == replace(PRESETS["v2"].model, ice_emis_init=0.9, angle_input=None)
    assert PRESETS["v2"].model.ice_emis_init is None and PRESETS["v2"].model.angle_input is False
    # the SIC smoothness prior between consecutive days (the reference treats every day as independent)
    assert cost == replace(PRESETS["v2"].cost, sic_smoothness_time_error=0.03) and cost.warm_ice == "diagnostic"
    assert PRESETS["v2"].cost.sic_smoothness is False and cost.sic_smoothness_error is None
    ref = REFERENCE_TRAINING["v2"]
    assert training.nepochs == 25
    assert (training.batch_size, training.learning_rate) == (None, None)  # automatic, from the data size
    assert training.optimizer == "deferred-adam" != ref.optimizer
    assert training.prior_mode == "auto" != ref.prior_mode  # the reference's full priors on small maps
    assert training.batch_order == "shuffled" != ref.batch_order
    assert training.adam_epsilon == "torch" != ref.adam_epsilon
    assert (training.seed, training.reproducible) == (0, False)
    assert training.device == "auto"
    # early stopping on 10 % held out, from 20,000 observations on (the reference trains on every one)
    assert (training.validation_fraction, training.early_stopping, training.lr_decay) == (0.1, True, 1.0)
    assert (ref.validation_fraction, ref.early_stopping, ref.lr_decay) == (0.0, False, 1.0)
    small, large = training.resolved(19_999), training.resolved(20_000)
    assert (small.validation_fraction, small.early_stopping, small.too_few_to_hold_out) == (0.0, False, True)
    assert (large.validation_fraction, large.early_stopping, large.too_few_to_hold_out) == (0.1, True, False)
    assert large.resolved(18_000) == large  # decided once: the trainer's second call keeps the hold-out
    _, _, _, v1 = _configs(["--model", "v1"])  # v1 holds out and stops early as v2 (docs/training-defaults.md)
    assert v1 == training and v1.resolved(100_000).validation_fraction == 0.1
    # the automatic schedule: the reference's batch and step from 204,800 observations on
    assert training.resolved(9322).batch_size == 128 and training.resolved(9322).learning_rate == 8e-3
    assert training.resolved(141596).batch_size == 512 and training.resolved(141596).learning_rate == 2e-3
    assert training.resolved(300000).batch_size == 1024 and training.resolved(300000).learning_rate == 1e-3


@pytest.mark.parametrize("model, nepochs, order", [("v1", 8, "shuffled"), ("v2", 25, "reference-blocks")])
def test_exact_reference_is_the_published_configuration(model, nepochs, order):
    """--exact-reference: the preset untouched (its reference values) and the reference's training
    (seaice_year.py / seaice_training.py: Keras Adam lr 1e-3 on batches of 1024, dense Adam with the
    whole-map priors at every step, 8 / 25 epochs, v1 observations shuffled by Keras fit, v2 blocks)."""
    data, preset, cost, training = _configs(["--model", model, "--exact-reference"])
    assert preset == PRESETS[model] and cost == PRESETS[model].cost
    if model == "v2":
        assert preset.model.ice_emis_init is None  # Keras zero output biases
    assert training.nepochs == nepochs and training.batch_order == order
    assert (training.batch_size, training.learning_rate) == (1024, 1e-3)
    assert training.optimizer == "dense-adam" and training.prior_mode == "full"
    assert training.adam_epsilon == "keras"  # epsilon added before Keras' bias correction
    resolved = training.resolved(9322)  # nothing automatic left: the same on any data size
    assert (resolved.batch_size, resolved.learning_rate, resolved.map_priors) == (1024, 1e-3, "full")
    assert resolved.network_learning_rate == 1e-3  # the network at the same step: one Adam, one group
    # explicit flags still apply on top
    _, preset3, _, short = _configs(["--model", model, "--exact-reference", "--nepochs", "3"])
    assert short == replace(training, nepochs=3) and preset3 == preset
    assert (training.validation_fraction, training.early_stopping) == (0.0, False)  # every observation trains


def test_hold_out_flags_override_the_default():
    """--validation-fraction holds out on any data size; 0 switches early stopping off with it;
    --no-early-stopping keeps the hold-out (its cost is reported) and trains every epoch;
    --no-region-stopping stops a global grid as one."""
    _, _, _, t = _configs(["--validation-fraction", "0.2", "--patience", "3"])
    assert (t.validation_fraction, t.early_stopping, t.resolved(5000).validation_fraction) == (0.2, True, 0.2)
    assert t.patience == 3 and t.region_stopping  # each hemisphere of a global grid stopped on its own
    _, _, _, t = _configs(["--no-region-stopping"])
    assert t.early_stopping and not t.region_stopping
    _, _, _, t = _configs(["--validation-fraction", "0"])
    assert (t.validation_fraction, t.early_stopping, t.too_few_to_hold_out) == (0.0, False, False)
    _, _, _, t = _configs(["--no-early-stopping"])
    assert (t.validation_fraction, t.early_stopping) == (0.1, False)
    _, _, _, t = _configs(["--exact-reference", "--validation-fraction", "0.1", "--early-stopping"])
    assert (t.validation_fraction, t.early_stopping, t.resolved(5000).early_stopping) == (0.1, True, True)


def test_holding_out_most_observations_is_a_warning(caplog):
    """--validation-fraction 0.999 trained on 5 observations of the fuzz's 4,856 without a word (the summary
    said "99.9 % held out"); above one half, a warning says what is left to train and what suffices."""
    with caplog.at_level("INFO", logger="empirical_seaice"):
        _configs(["--validation-fraction", "0.999"])
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert said == [
        "--validation-fraction 0.999 holds out more observations than it trains on (0.1 % left to train the "
        "state, the SIC and the network); the held-out cost needs a tenth (0.1, the default)"
    ]
    caplog.clear()
    with caplog.at_level("INFO", logger="empirical_seaice"):
        _configs(["--validation-fraction", "0.5"])
        _configs([])
    assert not [r for r in caplog.records if "--validation-fraction" in r.getMessage()]


def test_ice_emis_init_reference_and_old_optimizer_names(capsys):
    _, preset, _, training = _configs(["--ice-emis-init", "reference", "--optimizer", "dense"])
    assert preset.model.ice_emis_init is None
    assert training.optimizer == "dense-adam" and training.prior_mode == "full"
    assert "--optimizer dense is now called dense-adam" in capsys.readouterr().err
    _, _, _, training = _configs(["--optimizer", "dense-adam", "--map-priors", "sampled"])
    assert training.prior_mode == "sampled"
    _, _, _, training = _configs(["--optimizer", "lazy", "--batch-order", "reference-blocks"])
    assert training.optimizer == "sparse-adam" and training.batch_order == "reference-blocks"
    assert training.prior_mode == "sampled"
    for argv in ([], ["--optimizer", "deferred-adam"], ["--exact-reference", "--optimizer", "deferred-adam"]):
        assert _configs(argv)[3].prior_mode == "auto", argv  # chosen by the map's size (the trainer)
    assert _configs(["--map-priors", "full"])[3].prior_mode == "full"  # deferred-adam: the fused step


def test_every_option_reaches_the_configuration(tmp_path):
    data, preset, cost, training = _configs(
        [
            "--data",
            str(tmp_path),
            "--sensors",
            "amsr2",
            "gmi",
            "--batchsize",
            "256",
            "--stepstart",
            "3",
            "--nsteps",
            "5",
            "--nepochs",
            "2",
            "--reproducible",
            "--model",
            "v1",
            "--seaice-background",
            "a.nc",
            "--tsfc-background",
            "b.nc",
            "--validation-fraction",
            "0.1",
            "--early-stopping",
            "--learning-rate",
            "0.01",
            "--seed",
            "7",
            "--device",
            "cpu",
            "--warm-ice",
            "effective",
            "--ice-emis-init",
            "0.9",
        ]
    )
    assert preset.name == "v1" and preset.model.ice_emis_init == 0.9
    assert preset.model == replace(PRESETS["v1"].model, ice_emis_init=0.9)
    assert data.data == tmp_path and data.sensors == ("amsr2", "gmi")
    assert (data.stepstart, data.nsteps) == (3, 5)
    assert data.seaice_background == Path("a.nc") and data.tsfc_background == Path("b.nc")
    assert cost.anchor == "mean" and cost.warm_ice == "effective"
    assert (training.batch_size, training.nepochs, training.learning_rate, training.seed) == (256, 2, 0.01, 7)
    assert training.reproducible and training.early_stopping and training.validation_fraction == 0.1
    assert training.device == "cpu"


def test_v1_default_sensors_are_amsr2_only():
    data, *_ = _configs(["--model", "v1"])
    assert data.sensors == ("amsr2",)


def test_angle_input_flag_sets_the_model_config():
    p = build_parser()
    for argv, value in (
        ([], None),  # our default: on when the run has a cross-track sensor
        (["--exact-reference"], False),  # the reference's v2 network has no angle input
        (["--angle-input", "auto"], None),
        (["--angle-input", "on"], True),
        (["--angle-input", "off"], False),
        (["--exact-reference", "--angle-input", "on"], True),
    ):
        _, preset, _, _ = configs_from_args(p.parse_args(["--data", ".", *argv]))
        assert preset.model.angle_input is value, argv


def test_exact_reference_writes_no_open_water_filtered_product():
    """The open-water filter is our improvement (benchmarks/science.md): on by default, off in exact mode."""
    parser = build_parser()
    base = ["--data", "D", "--output", "O"]
    assert product_options(parser.parse_args(base)).open_water_filter
    assert not product_options(parser.parse_args([*base, "--no-open-water-filter"])).open_water_filter
    assert not product_options(parser.parse_args([*base, "--exact-reference"])).open_water_filter


def test_smoothness_flags_set_switch_off_and_check_the_sigma():
    from empirical_seaice.errors import SeaIceError

    _, _, cost, _ = _configs(["--sic-smoothness", "0.1", "--sic-smoothness-time", "0.02"])
    assert (cost.sic_smoothness_error, cost.sic_smoothness_time_error) == (0.1, 0.02)
    _, _, off, _ = _configs(["--sic-smoothness-time", "off"])
    assert off.sic_smoothness is False
    _, _, exact, _ = _configs(["--exact-reference"])
    assert exact.sic_smoothness is False  # the reference's independent grid points and days
    _, _, asked, _ = _configs(["--exact-reference", "--sic-smoothness-time", "0.05"])
    assert asked.sic_smoothness_time_error == 0.05  # an explicit flag still applies
    _, _, v1, _ = _configs(["--model", "v1"])
    assert v1.sic_smoothness_time_error == 0.03
    for bad in ("0", "-0.1", "nan", "smooth"):
        with pytest.raises(SeaIceError, match="^--sic-smoothness-time: expected"):
            _configs(["--sic-smoothness-time", bad])


def test_emis_ceiling_flag_sets_and_switches_off_the_v1_default():
    from empirical_seaice.errors import SeaIceError

    assert _configs(["--model", "v1"])[2].emis_ceiling_error == 0.01
    assert _configs(["--model", "v1", "--emis-ceiling", "off"])[2].emis_ceiling_error is None
    assert _configs(["--model", "v1", "--emis-ceiling", "0.02"])[2].emis_ceiling_error == 0.02
    assert _configs(["--model", "v1", "--exact-reference"])[2].emis_ceiling_error is None
    assert _configs(["--model", "v2"])[2].emis_ceiling_error is None
    with pytest.raises(SeaIceError, match="^--emis-ceiling: expected"):
        _configs(["--emis-ceiling", "-1"])
