"""seaice-training argument parsing and its error paths (no training data needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from empirical_seaice import cli
from empirical_seaice.config import PRESETS, replace


def _configs(argv):
    return cli.configs_from_args(cli.build_parser().parse_args(argv))


def test_defaults_are_the_seed_and_v2_preset():
    data, preset, cost, training = _configs([])
    assert data.data == Path("demo_data")
    assert data.sensors == ("amsr2", "gmi", "ssmisf17")
    assert data.stepstart == 0 and data.nsteps is None
    assert preset is PRESETS["v2"]
    assert cost == PRESETS["v2"].cost and cost.warm_ice == "diagnostic"
    assert (training.nepochs, training.batch_size, training.learning_rate) == (8, 1024, 1e-3)
    assert (training.seed, training.reproducible, training.validation_fraction) == (0, False, 0.0)
    assert training.device == "auto"


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
        "--threads",
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
        (["--early-stopping"], ("--early-stopping", "--validation-fraction")),
        (["--learning-rate", "0"], ("--learning-rate",)),
        (["--ice-emis-init", "1.5"], ("--ice-emis-init", "1.5")),
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
