"""cli/command.py: seaice-training's entry point, its help and its one-line error paths (no training data needed)."""

from __future__ import annotations

import logging

import pytest

from empirical_seaice import cli


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
        (["--plateau-cuts", "-1"], ("--plateau-cuts: must be >= 0, got -1",)),
        (["--sic-background-error", "0"], ("error: --sic-background-error: must be > 0, got 0.0",)),
        (["--ice-emis-init", "1.5"], ("--ice-emis-init", "1.5")),
        (["--angle-input", "on", "--model", "v1"], ("--angle-input", "v1")),
        (["--angle-input", "yes"], ("--angle-input", "yes")),
        (["--ice-emis-init", "high"], ("--ice-emis-init", "high", "reference")),
        (["--map-priors", "full", "--optimizer", "sparse-adam"], ("--map-priors full", "sparse-adam")),
        (["--optimizer", "adagrad"], ("--optimizer", "adagrad")),
        (["--batch-order", "sorted"], ("--batch-order", "sorted")),
        (["--threads", "0"], ("--threads", "0")),
        (["--threads", "two"], ("--threads", "two", "auto")),
        (["--stepstart", "-2"], ("--stepstart",)),
        (["--nsteps", "0"], ("--nsteps",)),
        (["--diagsonly", "--trainonly"], ("--trainonly", "--diagsonly")),
        (["--bogus"], ("--bogus",)),
        (["--tag", "a/b"], ("--tag",)),
        (["--tag", "x" * 101], ("--tag: at most 100 bytes (it is part of every file name), got 101",)),
        (["--modeltag", "x"], ("--modeltag", "--diagsonly")),
        (["--resume", "--diagsonly"], ("--resume",)),
        (["--shard-order", "local"], ("--shard-order local", "--distributed")),
        (["--shard-order", "local", "--ensemble", "3"], ("--shard-order local", "drop it")),
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


def test_the_progress_display_is_drawn_on_a_terminal_only(monkeypatch):
    """A log file (stderr not a TTY: a batch job, a pipe) got every redraw of the progress line, and its
    warnings between carriage returns; now only a terminal gets the display."""
    from empirical_seaice.cli.command import _progress
    from empirical_seaice.cli.parser import build_parser

    class Stream:
        def __init__(self, tty: bool):
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    parser = build_parser()
    for tty, flags, shown in [
        (True, [], True),
        (False, [], False),
        (True, ["--no-progress"], False),
        (True, ["--quiet"], False),
    ]:
        monkeypatch.setattr("sys.stderr", Stream(tty))
        assert _progress(parser.parse_args(flags)) is shown, (tty, flags)


def test_threads_apply_during_the_run_and_are_restored(monkeypatch, tmp_path):
    import torch

    from empirical_seaice import threads
    from empirical_seaice.io import chunk_writer
    from empirical_seaice.run import train as pipeline

    seen = {}

    def fake_run(*args, **kwargs):
        seen["threads"] = torch.get_num_threads()
        seen["compression"] = chunk_writer._threads
        seen["output"] = kwargs["output"]
        return pipeline.RunResult(output=kwargs["output"], tag=kwargs["tag"])

    monkeypatch.setattr(pipeline, "run", fake_run)
    monkeypatch.setattr(threads, "available_cpus", lambda: 4)  # --threads 3 is not capped on a smaller machine
    monkeypatch.setattr(chunk_writer, "_threads", 5)  # its own number, not torch's, comes back
    before = torch.get_num_threads()
    assert before != 5
    assert cli.main(["--data", str(tmp_path), "--output", str(tmp_path / "o"), "--threads", "3"]) == 0
    assert seen == {"threads": 3, "compression": 3, "output": tmp_path / "o"}
    assert torch.get_num_threads() == before
    assert chunk_writer._threads == 5


@pytest.mark.parametrize(
    ("cpus", "local_world", "expected"),
    [(1, None, 1), (6, None, 6), (64, None, 16), (6, "2", 3), (2, "4", 1)],
)
def test_threads_default_to_the_cpus_the_process_may_use(monkeypatch, tmp_path, cpus, local_world, expected, caplog):
    """No --threads (or --threads auto): the process's CPUs, shared by torchrun's processes on the machine,
    at most 16; the tensor step then trains on one thread, and on the run's count when --threads is given,
    at most the process's CPUs (--threads 100000 crashed in the compiler's thread start), with a notice."""
    import torch

    from empirical_seaice import threads
    from empirical_seaice.run import train as pipeline

    seen = {}

    def fake_run(data, preset, cost, training, **kwargs):
        seen["threads"] = torch.get_num_threads()
        seen["tensor_step_threads"] = training.tensor_step_threads
        return pipeline.RunResult(output=kwargs["output"], tag=kwargs["tag"])

    monkeypatch.setattr(pipeline, "run", fake_run)
    monkeypatch.setattr(threads, "available_cpus", lambda: cpus)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    if local_world is not None:  # a torchrun launch of a single-rank world (no --distributed needed)
        launch = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": local_world}
        for name, value in {**launch, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
            monkeypatch.setenv(name, value)
    before = torch.get_num_threads()
    for extra in ([], ["--threads", "auto"]):
        assert cli.main(["--data", str(tmp_path), "--output", str(tmp_path / "o"), *extra]) == 0
        assert seen == {"threads": expected, "tensor_step_threads": 1}
        assert torch.get_num_threads() == before
    with caplog.at_level(logging.WARNING, logger="empirical_seaice"):
        assert cli.main(["--data", str(tmp_path), "--output", str(tmp_path / "o"), "--threads", "5"]) == 0
    assert seen == {"threads": min(5, cpus), "tensor_step_threads": None}  # asked for: the tensor step too
    capped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("--threads 5:")]
    assert capped == (
        [] if cpus >= 5 else [f"--threads 5: more than the {cpus} CPUs this process may use; running on {cpus}"]
    )
    assert cli.main(["--data", str(tmp_path), "--output", str(tmp_path / "o"), "--threads", "100000"]) == 0
    assert seen["threads"] == cpus


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


def test_shard_order_local_is_taken_under_a_torchrun_of_several_processes(monkeypatch):
    import argparse

    from empirical_seaice.cli.command import _check_shard_order
    from empirical_seaice.errors import SeaIceError

    args = argparse.Namespace(shard_order="local", distributed=False, retrieve=False, ensemble=None)
    with pytest.raises(SeaIceError, match="--shard-order local"):
        _check_shard_order(args)
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "h")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_PORT", "29500")
    _check_shard_order(args)  # sharded: accepted
    args.ensemble = 3
    with pytest.raises(SeaIceError, match="--shard-order local"):
        _check_shard_order(args)


def test_retrieve_and_ensemble_are_refused_under_a_torchrun_of_several_processes(monkeypatch, tmp_path, capsys):
    """A retrieval or an ensemble runs in one process: under a torchrun of two, each process ran the whole
    job into the same files; now one line before any work. One process (WORLD_SIZE 1) is no torchrun of
    several and is let through (here to the retrieval's own error: no trained model)."""
    from empirical_seaice import cli

    for name, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "h")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_PORT", "29500")
    base = ["--data", str(tmp_path), "--output", str(tmp_path / "o"), "--no-progress"]
    for flags, flag in ((["--retrieve"], "--retrieve"), (["--ensemble", "3"], "--ensemble")):
        assert cli.main([*base, *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"seaice-training: error: {flag}: runs in one process; start it without torchrun (here 2)"
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert cli.main([*base, "--retrieve"]) == 2
    assert "runs in one process" not in capsys.readouterr().err


def test_diagsonly_names_the_flags_it_does_not_use(capsys, tmp_path):
    """``--diagsonly`` takes the trained run's setup from its model file: the training and model flags the
    user typed are named in one warning (a log line, before the run's own one-line error here: there is no
    trained model), and flags left at their defaults or used by the diagnostics are not."""
    from empirical_seaice.cli.configure import ignored_flags
    from empirical_seaice.cli.parser import build_parser

    argv = ["--diagsonly", "--modeltag", "m", "--nepochs", "5", "--model", "v1", "--sic-smoothness-time", "off"]
    argv += ["--threads", "1", "--no-classic", "--data", str(tmp_path), "--output", str(tmp_path / "o")]
    args = build_parser().parse_args(argv)
    assert ignored_flags(args, "diagsonly") == ["--model", "--sic-smoothness-time", "--nepochs"]
    # the cost's --emis-ceiling too (before: dropped without a word)
    emis = build_parser().parse_args([*argv, "--emis-ceiling", "0.5"])
    assert ignored_flags(emis, "diagsonly") == ["--model", "--sic-smoothness-time", "--nepochs", "--emis-ceiling"]
    assert ignored_flags(build_parser().parse_args(argv[:3]), "diagsonly") == []
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 2, err
    assert err[0].endswith(
        "WARNING empirical_seaice.cli.command: --diagsonly: --model, --sic-smoothness-time, --nepochs not used "
        "(the trained run's model, period and training setup come from its model file; nothing is trained)"
    )
    assert err[1].startswith("seaice-training: error: ") and "model_m.pt" in err[1]


def test_distributed_takes_checkpoint_minutes_without_a_warning(capsys, tmp_path):
    """A ``--distributed`` run writes checkpoints within an epoch too (every rank after the same step,
    tests/run/test_distributed.py): ``--checkpoint-minutes`` given with it is no longer named as unused (here
    the one line is the error of a run not started by torchrun); ``--force-outputs`` is a sharded run's too."""
    argv = ["--distributed", "--checkpoint-minutes", "5", "--force-outputs", "--data", str(tmp_path)]
    code = cli.main([*argv, "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("seaice-training: error: --distributed")


def test_quiet_hides_the_warnings_from_stderr_not_from_the_run(capsys):
    """``-q`` hid a warning from the run's own records too: the logger's level dropped it, so the data cache
    kept none of its read's warnings (a later run without ``-q`` never heard them) and the summary files
    listed none. Now only stderr's handler hides it."""
    from empirical_seaice.cli.command import _setup_logging
    from empirical_seaice.logs import warnings_said

    log = logging.getLogger("empirical_seaice.tests.quiet")
    try:
        _setup_logging(-1)
        with warnings_said() as said:
            log.warning("kept, not shown")
            log.error("kept and shown")
            log.info("neither")
        assert said == ["kept, not shown", "kept and shown"]
        err = capsys.readouterr().err
        assert "kept and shown" in err and "kept, not shown" not in err
        _setup_logging(1)  # -v: info on stderr too
        log.info("shown with -v")
        assert "shown with -v" in capsys.readouterr().err
    finally:
        _setup_logging(0)
    log.info("not shown by default")
    log.warning("shown by default")
    err = capsys.readouterr().err
    assert "shown by default" in err and "not shown by default" not in err


def test_a_sharded_runs_log_lines_name_their_rank(capsys):
    """The ranks of a sharded run share one stderr, and with ``-v`` each line came twice alike; once the rank
    joins, its lines name it (``rank 1/2``), and the next run in the process has the plain lines again."""
    from empirical_seaice.cli.command import _setup_logging
    from empirical_seaice.logs import name_the_rank

    log = logging.getLogger("empirical_seaice.tests.ranks")
    try:
        _setup_logging(1)
        name_the_rank(1, 2)
        log.info("a stage")
        assert " INFO rank 1/2 empirical_seaice.tests.ranks: a stage" in capsys.readouterr().err
        _setup_logging(1)
        log.info("a stage")
        assert " INFO empirical_seaice.tests.ranks: a stage" in capsys.readouterr().err
    finally:
        _setup_logging(0)


def test_diagsonly_into_a_tag_holding_another_trained_model_is_refused(tmp_path, capsys):
    """``--diagsonly --tag p --modeltag t`` where tag p holds a trained model: its set would be replaced by
    model t's diagnostics, model_p.pt and p's trained SIC gone (before: exit 0 without a word)."""
    out = tmp_path / "o"
    out.mkdir()
    (out / "model_p.pt").write_bytes(b"a trained model")
    argv = ["--data", str(tmp_path), "--output", str(out), "--tag", "p", "--diagsonly", "--modeltag", "t"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--diagsonly --tag p:" in err[0] and "model_p.pt is a trained model" in err[0]
    assert "choose a --tag that holds no trained model" in err[0]
    assert (out / "model_p.pt").read_bytes() == b"a trained model"
