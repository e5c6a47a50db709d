"""Kill -9, signals, a second run and a full disk: the previous good output set stays intact and readable.

Each test runs over a private copy of the good output set (tag ``good``) and
checks, with the manifest's checksums, that the published set is the same
complete set afterwards; then that the next run removes every leftover.
``SEAICE_FAULT`` (io.transaction) kills the process with SIGKILL at an exact
point: before an output file is renamed into the staging set (``write``),
before the set is switched (``publish``), before the data cache is renamed
into place (``cache``), after the run has ended (``ended``); ``POINT:N:SIGINT``
(or ``SIGTERM``) sends a user's signal there instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from empirical_seaice.io import transaction as txn

from .conftest import FAST, TAG, assert_one_line_error, leftovers, run_cli, set_state, start_cli

LONG = ["--nepochs", "500", "--checkpoint-minutes", "0.001"]


def _wait_for(pred, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.05)


def _training(output: Path):
    ck = output / f"checkpoints_{TAG}" / "checkpoint.pt"
    t_start = time.time()
    return lambda: ck.is_file() and ck.stat().st_mtime > t_start


def _rerun_cleans_up(twin: Path, output: Path, before_run: str, extra=()) -> None:
    """The next run takes over the dead run's lock, removes its leftovers and publishes a new set."""
    r = run_cli(["--data", twin, "--output", output, "--tag", TAG, "--nepochs", "1", *FAST, *extra])
    assert r.code == 0, r.stderr
    run_id, _ = set_state(output)
    assert run_id != before_run
    assert leftovers(output) == []


def _run_with_fault(twin: Path, output: Path, fault: str):
    """A one-epoch run of the good tag into ``output`` with ``SEAICE_FAULT=fault``: (its result, its argv)."""
    argv = ["--data", twin, "--output", output, "--tag", TAG, "--nepochs", "1", *FAST]
    proc = start_cli(argv, SEAICE_FAULT=fault)
    _, err = proc.communicate(timeout=300)
    return type("R", (), {"code": proc.returncode, "stderr": err})(), argv


def test_kill_during_training(twin, good_copy, untouched):
    before = set_state(good_copy)
    proc = start_cli(["--data", twin, "--output", good_copy, "--tag", TAG, *FAST, *LONG])
    _wait_for(_training(good_copy), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert set_state(good_copy) == before
    assert (good_copy / f".lock_{TAG}").exists()  # the dead run's lock: stale, taken over below
    # resume from the checkpoint the dead run left (within an epoch, or at an epoch end)
    _rerun_cleans_up(twin, good_copy, before[0], extra=["--resume", "--nepochs", "2", "--checkpoint-minutes", "0"])


@pytest.mark.parametrize("point", ["write:3", "publish"])
def test_kill_while_writing_the_outputs(twin, good_copy, untouched, point):
    before = set_state(good_copy)
    proc = start_cli(["--data", twin, "--output", good_copy, "--tag", TAG, "--nepochs", "1", *FAST], SEAICE_FAULT=point)
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert set_state(good_copy) == before  # readers still see the old complete set
    assert leftovers(good_copy)  # the unpublished set and the lock of the dead run ...
    _rerun_cleans_up(twin, good_copy, before[0])  # ... are removed by the next run


def test_kill_during_cache_building(twin, good_copy, untouched):
    before = set_state(good_copy)
    argv = ["--data", twin, "--output", good_copy, "--tag", TAG, "--nepochs", "1", "--nsteps", "2", *FAST]
    proc = start_cli(argv, SEAICE_FAULT="cache")  # another period: the cache is rebuilt
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert set_state(good_copy) == before
    assert list((good_copy / "cache").glob(".observations.tmp-*"))
    _rerun_cleans_up(twin, good_copy, before[0])


def test_second_run_and_sigterm(twin, good_copy, untouched):
    """A second run of the same tag is refused; a failing run of another tag removes only its own files;
    SIGTERM stops the first run at a step boundary with a checkpoint and a one-line message."""
    before = set_state(good_copy)
    proc = start_cli(["--data", twin, "--output", good_copy, "--tag", TAG, *FAST, *LONG])
    _wait_for(_training(good_copy), proc)
    r = run_cli(["--data", twin, "--output", good_copy, "--tag", TAG, "--nepochs", "1", *FAST])
    assert_one_line_error(r, f"--tag {TAG}: another run (pid {proc.pid}", "wait for it to finish")
    r = run_cli(["--data", twin, "--output", good_copy, "--tag", "other", "--nsteps", "9", *FAST])
    assert_one_line_error(r, "--nsteps 9")
    assert (good_copy / f".lock_{TAG}").exists() and (good_copy / "cache" / "observations").is_dir()
    assert not list(good_copy.glob("*_other*")) and not (good_copy / ".sets" / "other").exists()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert_one_line_error(
        type("R", (), {"code": 143, "stderr": err})(), "interrupted by SIGTERM", "--resume to continue", code=143
    )
    assert set_state(good_copy) == before and leftovers(good_copy) == []


def test_sigint_during_training(twin, good_copy, untouched):
    before = set_state(good_copy)
    proc = start_cli(["--data", twin, "--output", good_copy, "--tag", TAG, *FAST, *LONG])
    _wait_for(_training(good_copy), proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    r = type("R", (), {"code": proc.returncode, "stderr": err})()
    assert_one_line_error(r, "interrupted by SIGINT", "checkpoint", "rerun the same command with --resume", code=130)
    assert set_state(good_copy) == before and leftovers(good_copy) == []


@pytest.fixture()
def tmpfs(tmp_path):
    """mount(name, size) -> a fresh tmpfs under tmp_path (root only); unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = []

    def mount(name: str, size: str = "16m") -> Path:
        mnt = tmp_path / name
        mnt.mkdir()
        if subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True
        ).returncode:
            pytest.skip("cannot mount a tmpfs here")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk(twin, tmpfs, untouched):
    fs = tmpfs("full")
    out = fs / "out"
    r = run_cli(["--data", twin, "--output", out, "--tag", TAG, "--nepochs", "1", *FAST])
    assert r.code == 0, r.stderr
    before = set_state(out)
    files_before = sorted(p for p in out.rglob("*") if p.is_file() and not p.is_symlink())
    filler = fs / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(fs).free - 600_000))  # leave 0.6 MB: a new set needs more
    r = run_cli(["--data", twin, "--output", out, "--tag", TAG, "--nepochs", "1", *FAST])
    assert_one_line_error(r, "cannot write", "the disk is full", "free space or choose a writable --output")
    assert set_state(out) == before and leftovers(out) == []
    # no temporary file is left holding the space (in this process the netCDF library may still hold
    # the handle of the file whose close failed: released when the process exits, as the CLI does)
    assert sorted(p for p in out.rglob("*") if p.is_file() and not p.is_symlink()) == files_before


def test_read_only_disk(twin, good, tmpfs, untouched):
    fs = tmpfs("ro")
    out = fs / "out"
    shutil.copytree(good, out, symlinks=True)
    before = set_state(out)
    subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
    r = run_cli(["--data", twin, "--output", out, "--tag", TAG, "--nepochs", "1", *FAST])
    assert_one_line_error(r, "read-only")
    assert set_state(out) == before
    r = run_cli(["--data", twin, "--output", fs / "new", "--tag", TAG, "--nepochs", "1", *FAST])
    assert_one_line_error(r, "--output", "cannot create directory", "choose a writable place")


def test_stale_temporaries_are_removed_at_start_up(twin, good_copy, untouched):
    """Temporaries of dead processes (hidden .NAME.tmpPID files, cache/.observations.tmp-*) go at the next run."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    junk = [
        good_copy / f".seaice_{TAG}.nc.tmp{dead.pid}",
        good_copy / f"checkpoints_{TAG}" / f".checkpoint.pt.tmp{dead.pid}",
        good_copy / "cache" / ".observations.tmp-abcd",
    ]
    for p in junk[:2]:
        p.write_bytes(b"\0" * 1000)
    junk[2].mkdir()
    (junk[2] / "igrid.npy").write_bytes(b"\0" * 1000)
    before = set_state(good_copy)
    _rerun_cleans_up(twin, good_copy, before[0])
    assert not any(p.exists() for p in junk)
    assert txn.read_manifest(good_copy, TAG)["status"] == "complete"


@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_while_the_outputs_are_written_publishes_nothing_and_says_how_to_resume(
    twin, good_copy, untouched, sig, code
):
    """Ctrl-C (or a batch system's SIGTERM) after training, while the outputs are written: the run stops at
    once with 130 / 143 and one line saying that ``--resume`` writes the outputs without training again;
    nothing is published (the previous set is unchanged) and nothing is left behind. (Before, the signal's
    exception was an ``Exception`` that the after-training handler took for a failure: it published a
    ``partial`` set and exited 2.)"""
    before = set_state(good_copy)
    r, argv = _run_with_fault(twin, good_copy, f"write:16:{sig}")
    # the 16th file write of this run falls in the final diagnostics, after training (its last checkpoint)
    msg = "rerun the same command with --resume to write the outputs without training again"
    assert_one_line_error(r, f"interrupted by {sig}", msg, code=code)
    assert set_state(good_copy) == before and leftovers(good_copy) == []
    r = run_cli([*argv, "--resume"])  # the outputs from the checkpoint, without training again
    assert r.code == 0, r.stderr
    assert set_state(good_copy)[0] != before[0] and leftovers(good_copy) == []


def test_a_signal_during_the_last_checkpoint_write_says_how_to_resume(twin, good_copy, untouched):
    """SIGINT while the checkpoint after the last epoch is written (the second file write of this run): the
    checkpoint is finished, the run stops with 130 and the line says that --resume writes the outputs
    (before: a bare "interrupted by SIGINT", the trained state not mentioned)."""
    before = set_state(good_copy)
    r, _ = _run_with_fault(twin, good_copy, "write:2:SIGINT")
    assert_one_line_error(r, "interrupted by SIGINT", "checkpoint.pt", "rerun the same command with --resume", code=130)
    assert set_state(good_copy) == before and leftovers(good_copy) == []


def test_a_signal_while_the_ensemble_is_published_waits_for_the_switch(twin, tmp_path):
    """SIGINT as the ensemble file's set is switched in (the third publish of --ensemble 2: member 0, member 1,
    the ensemble): the switch is finished first and the line says the outputs are complete, every name
    resolving (before: the ensemble's publish did not hold signals back; one after the switch removed the set
    just made current, every output name dangling, and said 'no output was published or changed')."""
    output = tmp_path / "ens"
    argv = ["--data", twin, "--output", output, "--tag", TAG, "--nepochs", "1", *FAST, "--ensemble", "2"]
    proc = start_cli(argv, SEAICE_FAULT="publish:3:SIGINT")
    _, err = proc.communicate(timeout=300)
    r = type("R", (), {"code": proc.returncode, "stderr": err})()
    assert_one_line_error(r, "interrupted by SIGINT", "as the outputs were published", "are complete", code=130)
    assert txn.verify_set(output, TAG) == [] and leftovers(output) == []
    links = [p for p in output.iterdir() if p.is_symlink()]
    assert f"seaice_ensemble_{TAG}.nc" in {p.name for p in links} and all(p.exists() for p in links)


def test_a_signal_at_an_ensemble_member_says_the_ensemble_is_unfinished_and_resume_finishes_it(twin, tmp_path):
    """SIGTERM as member 1 of --ensemble 2 is published (the second publish): the line says the ensemble file
    is not written and how to finish it (before: only that member 1's files were complete); --resume does."""
    output = tmp_path / "ens"
    argv = ["--data", twin, "--output", output, "--tag", TAG, "--nepochs", "1", *FAST, "--ensemble", "2"]
    proc = start_cli(argv, SEAICE_FAULT="publish:2:SIGTERM")
    _, err = proc.communicate(timeout=300)
    r = type("R", (), {"code": proc.returncode, "stderr": err})()
    words = ("at member 1 of 2, the ensemble file is not written", "rerun the same command with --resume")
    assert_one_line_error(r, "interrupted by SIGTERM", *words, code=143)
    assert not (output / f"seaice_ensemble_{TAG}.nc").exists()
    r = run_cli([*argv, "--resume"])
    assert r.code == 0, r.stderr
    assert (output / f"seaice_ensemble_{TAG}.nc").is_file() and txn.verify_set(output, TAG) == []


@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_after_the_run_ends_the_process_at_once_saying_the_outputs_are_complete(
    twin, good_copy, untouched, sig, code
):
    """A signal after the outputs are published (the summary and the interpreter's teardown, about a second)
    ends the process at once with 130 / 143 and one line saying the outputs are complete (before: Python's
    own handlers there: a Ctrl-C printed 'Exception ignored ... KeyboardInterrupt' and exited 0, a SIGTERM
    killed the process without a line)."""
    before = set_state(good_copy)
    r, _ = _run_with_fault(twin, good_copy, f"ended:1:{sig}")
    assert_one_line_error(r, f"interrupted by {sig} after the run: {good_copy}/*_{TAG}.nc are complete", code=code)
    assert "Exception ignored" not in r.stderr
    assert set_state(good_copy)[0] != before[0] and leftovers(good_copy) == []
    assert txn.verify_set(good_copy, TAG) == []


def test_a_signal_while_the_set_is_switched_says_that_it_was_published(twin, good_copy, untouched):
    """SIGTERM as the new set is switched in: the switch is finished first, so the new complete set is
    published; the run still stops with 143, and its line says that the outputs were published (before: a
    bare "interrupted by SIGTERM", which reads as "nothing written")."""
    before = set_state(good_copy)
    r, _ = _run_with_fault(twin, good_copy, "publish:1:SIGTERM")
    assert_one_line_error(r, "interrupted by SIGTERM", "as the outputs were published", "are complete", code=143)
    assert set_state(good_copy)[0] != before[0] and leftovers(good_copy) == []
    assert txn.verify_set(good_copy, TAG) == []
