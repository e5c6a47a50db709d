"""seaice-training argument parsing and its error paths (no training data needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from empirical_seaice import cli
from empirical_seaice.config import PRESETS, REFERENCE_TRAINING, replace


def _configs(argv):
    return cli.configs_from_args(cli.build_parser().parse_args(argv))


def test_defaults_are_the_v2_preset_with_our_improvements():
    data, preset, cost, training = _configs([])
    assert data.data == Path("demo_data")
    assert data.sensors == ("amsr2", "gmi", "ssmisf17")
    assert data.stepstart == 0 and data.nsteps is None
    # the improvements: every one differs from the reference's value
    assert preset.model == replace(PRESETS["v2"].model, ice_emis_init=0.9, angle_input=None)
    assert PRESETS["v2"].model.ice_emis_init is None and PRESETS["v2"].model.angle_input is False
    assert cost == PRESETS["v2"].cost and cost.warm_ice == "diagnostic"
    ref = REFERENCE_TRAINING["v2"]
    assert training.nepochs == 25
    assert (training.batch_size, training.learning_rate) == (None, None)  # automatic, from the data size
    assert training.optimizer == "deferred-adam" != ref.optimizer
    assert training.prior_mode == "sampled" != ref.prior_mode
    assert training.batch_order == "shuffled" != ref.batch_order
    assert training.adam_epsilon == "torch" != ref.adam_epsilon
    assert (training.seed, training.reproducible) == (0, False)
    assert training.device == "auto"
    # early stopping on 10 % held out, from 20,000 observations on (the reference trains on every one)
    assert (training.validation_fraction, training.early_stopping) == (0.1, True)
    assert (ref.validation_fraction, ref.early_stopping) == (0.0, False)
    small, large = training.resolved(19_999), training.resolved(20_000)
    assert (small.validation_fraction, small.early_stopping, small.too_few_to_hold_out) == (0.0, False, True)
    assert (large.validation_fraction, large.early_stopping, large.too_few_to_hold_out) == (0.1, True, False)
    assert large.resolved(18_000) == large  # decided once: the trainer's second call keeps the hold-out
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
    # explicit flags still apply on top
    _, preset3, _, short = _configs(["--model", model, "--exact-reference", "--nepochs", "3"])
    assert short == replace(training, nepochs=3) and preset3 == preset
    assert (training.validation_fraction, training.early_stopping) == (0.0, False)  # every observation trains


def test_hold_out_flags_override_the_default():
    """--validation-fraction holds out on any data size; 0 switches early stopping off with it;
    --no-early-stopping keeps the hold-out (its cost is reported) and trains every epoch."""
    _, _, _, t = _configs(["--validation-fraction", "0.2"])
    assert (t.validation_fraction, t.early_stopping, t.resolved(5000).validation_fraction) == (0.2, True, 0.2)
    _, _, _, t = _configs(["--validation-fraction", "0"])
    assert (t.validation_fraction, t.early_stopping, t.too_few_to_hold_out) == (0.0, False, False)
    _, _, _, t = _configs(["--no-early-stopping"])
    assert (t.validation_fraction, t.early_stopping) == (0.1, False)
    _, _, _, t = _configs(["--exact-reference", "--validation-fraction", "0.1", "--early-stopping"])
    assert (t.validation_fraction, t.early_stopping, t.resolved(5000).early_stopping) == (0.1, True, True)


def test_ice_emis_init_reference_and_old_optimizer_names(capsys):
    _, preset, _, training = _configs(["--ice-emis-init", "reference", "--optimizer", "dense"])
    assert preset.model.ice_emis_init is None
    assert training.optimizer == "dense-adam" and training.prior_mode == "full"
    assert "--optimizer dense is now called dense-adam" in capsys.readouterr().err
    _, _, _, training = _configs(["--optimizer", "dense-adam", "--map-priors", "sampled"])
    assert training.prior_mode == "sampled"
    _, _, _, training = _configs(["--optimizer", "lazy", "--batch-order", "reference-blocks"])
    assert training.optimizer == "sparse-adam" and training.batch_order == "reference-blocks"


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


def test_help_exits_zero(capsys):
    assert cli.main(["-h"]) == 0
    out = capsys.readouterr().out
    for flag in (
        "--data",
        "--sensors",
        "--output",
        "--tag",
        "--modeltag",
        "--batchsize",
        "--stepstart",
        "--nsteps",
        "--nepochs",
        "--diagsonly",
        "--trainonly",
        "--reproducible",
        "--model",
        "--seaice-background",
        "--tsfc-background",
        "--validation-fraction",
        "--early-stopping",
        "--learning-rate",
        "--seed",
        "--device",
        "--warm-ice",
        "--no-progress",
        "--resume",
        "--ice-emis-init",
        "--angle-input",
        "--threads",
        "--exact-reference",
        "--optimizer",
        "--map-priors",
        "--batch-order",
    ):
        assert flag in out, flag


def _fails(argv, capsys, *needles):
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("seaice-training: error: ")
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--nepochs", "abc"], ("--nepochs", "abc")),
        (["--nepochs", "-1"], ("--nepochs", "-1")),
        (["--batchsize", "0"], ("--batchsize",)),
        (["--model", "v3"], ("--model", "v3")),
        (["--device", "tpu"], ("--device", "tpu")),
        (["--warm-ice", "hot"], ("--warm-ice", "hot")),
        (["--validation-fraction", "1.5"], ("--validation-fraction",)),
        (["--validation-fraction", "0", "--early-stopping"], ("--early-stopping", "--validation-fraction")),
        (["--learning-rate", "0"], ("--learning-rate",)),
        (["--ice-emis-init", "1.5"], ("--ice-emis-init", "1.5")),
        (["--angle-input", "on", "--model", "v1"], ("--angle-input", "v1")),
        (["--angle-input", "yes"], ("--angle-input", "yes")),
        (["--ice-emis-init", "high"], ("--ice-emis-init", "high", "reference")),
        (["--map-priors", "full"], ("--map-priors full", "dense-adam")),
        (["--optimizer", "adagrad"], ("--optimizer", "adagrad")),
        (["--batch-order", "sorted"], ("--batch-order", "sorted")),
        (["--threads", "0"], ("--threads", "0")),
        (["--stepstart", "-2"], ("--stepstart",)),
        (["--nsteps", "0"], ("--nsteps",)),
        (["--diagsonly", "--trainonly"], ("--trainonly", "--diagsonly")),
        (["--bogus"], ("--bogus",)),
        (["--tag", "a/b"], ("--tag",)),
        (["--modeltag", "x"], ("--modeltag", "--diagsonly")),
        (["--resume", "--diagsonly"], ("--resume",)),
    ],
)
def test_bad_flag_values_exit_2_with_one_line(argv, needles, capsys, tmp_path):
    out = tmp_path / "out"
    _fails([*argv, "--data", str(tmp_path), "--output", str(out)], capsys, *needles)
    assert not out.exists()


def test_missing_data_directory(capsys, tmp_path):
    out = tmp_path / "out"
    _fails(["--data", str(tmp_path / "nowhere"), "--output", str(out)], capsys, "--data", "nowhere")
    assert not out.exists()


def test_missing_background_file(capsys, tmp_path):
    out = tmp_path / "out"
    _fails(
        ["--data", str(tmp_path), "--output", str(out), "--seaice-background", str(tmp_path / "nope.nc")],
        capsys,
        "--seaice-background",
        "nope.nc",
    )
    _fails(
        ["--data", str(tmp_path), "--output", str(out), "--tsfc-background", str(tmp_path / "nope.nc")],
        capsys,
        "--tsfc-background",
        "nope.nc",
    )
    assert not out.exists()


def test_unknown_sensor(capsys, tmp_path):
    out = tmp_path / "out"
    line = _fails(
        ["--data", str(tmp_path), "--output", str(out), "--sensors", "amsr2", "mwri"], capsys, "--sensors", "'mwri'"
    )
    assert "amsr2, gmi, ssmisf17" in line
    assert not out.exists()


def test_output_is_a_file(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    _fails(["--data", str(tmp_path), "--output", str(f)], capsys, "--output", "not a directory")
    assert f.read_text() == "x"


def test_diagsonly_without_a_trained_model(capsys, tmp_path):
    out = tmp_path / "out"
    _fails(
        ["--data", str(tmp_path), "--output", str(out), "--diagsonly", "--tag", "t1"],
        capsys,
        "--modeltag",
        "model_t1.pt",
    )
    assert not out.exists()
    out.mkdir()
    _fails(
        ["--data", str(tmp_path), "--output", str(out), "--diagsonly", "--tag", "t1", "--modeltag", "t0"],
        capsys,
        "--modeltag",
        "model_t0.pt",
    )
    assert list(out.iterdir()) == []


def test_resume_without_checkpoint(capsys, tmp_path):
    out = tmp_path / "out"
    _fails(["--data", str(tmp_path), "--output", str(out), "--resume"], capsys, "--resume", "checkpoint")
    assert not out.exists()


def test_cuda_requested_without_cuda(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "out"
    _fails(["--data", str(tmp_path), "--output", str(out), "--device", "cuda"], capsys, "--device cuda")
    assert not out.exists()


def test_threads_apply_during_the_run_and_are_restored(monkeypatch, tmp_path):
    import torch

    from empirical_seaice.run import train as pipeline

    seen = {}

    def fake_run(*args, **kwargs):
        seen["threads"] = torch.get_num_threads()
        seen["output"] = kwargs["output"]
        return pipeline.RunResult(output=kwargs["output"], tag=kwargs["tag"])

    monkeypatch.setattr(pipeline, "run", fake_run)
    before = torch.get_num_threads()
    assert cli.main(["--data", str(tmp_path), "--output", str(tmp_path / "o"), "--threads", "3"]) == 0
    assert seen == {"threads": 3, "output": tmp_path / "o"}
    assert torch.get_num_threads() == before
    assert cli.main(["--data", str(tmp_path), "--output", str(tmp_path / "o")]) == 0
    assert seen["threads"] == 1  # the default


def test_help_imports_nothing_heavy():
    """`seaice-training -h` and `seaice-twin -h` stay quick: no torch, xarray, matplotlib, scipy
    or land mask is imported before the arguments are parsed (timings in the README, not asserted)."""
    import subprocess
    import sys

    code = (
        "import sys, contextlib, io\n"
        "from empirical_seaice import cli\n"
        "from empirical_seaice.twin import cli as twin_cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert cli.main(['-h']) == 0\n"
        "    try:\n"
        "        twin_cli.main(['-h'])\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0\n"
        "heavy = ('torch', 'xarray', 'matplotlib', 'scipy', 'global_land_mask', 'netCDF4')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_twin_cli_presets_are_the_twin_presets():
    from empirical_seaice.twin.cli import PRESET_NAMES
    from empirical_seaice.twin.presets import TWIN_PRESETS

    assert PRESET_NAMES == tuple(sorted(TWIN_PRESETS))


def test_angle_input_flag_sets_the_model_config():
    p = cli.build_parser()
    for argv, value in (
        ([], None),  # our default: on when the run has a cross-track sensor
        (["--exact-reference"], False),  # the reference's v2 network has no angle input
        (["--angle-input", "auto"], None),
        (["--angle-input", "on"], True),
        (["--angle-input", "off"], False),
        (["--exact-reference", "--angle-input", "on"], True),
    ):
        _, preset, _, _ = cli.configs_from_args(p.parse_args(["--data", ".", *argv]))
        assert preset.model.angle_input is value, argv


def test_exact_reference_writes_no_open_water_filtered_product():
    """The open-water filter is our improvement (benchmarks/science.md): on by default, off in exact mode."""
    parser = cli.build_parser()
    base = ["--data", "D", "--output", "O"]
    assert cli.product_options(parser.parse_args(base)).open_water_filter
    assert not cli.product_options(parser.parse_args([*base, "--no-open-water-filter"])).open_water_filter
    assert not cli.product_options(parser.parse_args([*base, "--exact-reference"])).open_water_filter
