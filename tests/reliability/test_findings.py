"""The seven findings of the reliability review, one test each (each failed before the fix).

1. a diverged but finite run wrote garbage products with exit 0;
2. one bad timestamp moved the time origin of every sensor;
3. the output set was not transactional (``classic_sic`` written in place);
4. a failing run of another tag deleted the whole output directory;
5. silent cases: a cache reused after the input changed with the same size and mtime, ``--resume``
   after the data changed (a vanishing sensor and duplicates: tests/reliability/test_catalogue.py);
6. a failure after training deleted the trained model; a foreign ``truth/`` folder was fatal;
7. tracebacks instead of one line (``--learning-rate nan``, ``--resume`` with another model after
   overwriting ``tbsim_initial``; SIGINT and full disks: tests/reliability/test_kill.py).
"""

from __future__ import annotations

import errno
import json
import os
import shutil

import numpy as np
import pytest
import torch
import xarray as xr

from empirical_seaice.config import DataConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import read_training_data
from empirical_seaice.io import transaction as txn

from .conftest import FAST, TAG, assert_one_line_error, damaged, leftovers, nc_edit, run_cli, set_state

SENSORS = ("amsr2", "gmi", "ssmisf17")


def test_1_a_diverged_run_writes_nothing_unless_forced(twin, tmp_path, untouched):
    out = tmp_path / "out"
    diverging = ["--learning-rate", "1.0", "--network-learning-rate", "1.0"]
    flags = ["--data", twin, "--output", out, "--tag", "d", "--nepochs", "3", *FAST, *diverging]
    r = run_cli(flags)
    line = assert_one_line_error(r, "health check failed: SIC from", "departures worse than before training")
    assert "--force-outputs" in line
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints_d"]  # the checkpoint, kept for inspection
    r = run_cli([*flags, "--force-outputs"])
    assert r.code == 0, r.stderr
    assert txn.read_manifest(out, "d")["status"] == "health-check-failed"
    for name in ("seaice_d.nc", "tbsim_d.nc", "classic_sic_d.nc"):
        with xr.open_dataset(out / name) as ds:
            assert ds.attrs["health_check"] == "failed"
            assert "SIC from" in ds.attrs["health_check_failures"]
    # the diagnostics of that model, into its tag and into another, stay marked failed (before: published
    # "complete", the new files unmarked beside the inherited ones marked failed)
    message = txn.read_manifest(out, "d")["message"]
    for tag in ("d", "d2"):
        r = run_cli(["--data", twin, "--output", out, "--tag", tag, "--modeltag", "d", "--diagsonly", *FAST])
        assert r.code == 0, r.stderr
        manifest = txn.read_manifest(out, tag)
        assert (manifest["status"], manifest["message"]) == ("health-check-failed", message)
        for name in (f"tbsim_{tag}.nc", f"classic_sic_{tag}.nc", f"tbobs_{tag}.nc"):
            with xr.open_dataset(out / name) as ds:
                assert ds.attrs["health_check"] == "failed" and ds.attrs["health_check_failures"] == message


def test_2_one_early_timestamp_does_not_move_the_period(twin, tmp_path, untouched):
    clean, _ = read_training_data(DataConfig(data=twin, sensors=SENSORS), 1)

    def early(v):
        v = v.copy()
        v[7] -= 3.0  # one GMI value three days early
        return v

    data = damaged(twin, tmp_path / "early", {"gmi/field_twin_JULIAN_DAY.nc": nc_edit("JULIAN_DAY", early)})
    obs, bg = read_training_data(DataConfig(data=data, sensors=SENSORS), 1)
    assert obs.jd_origin == clean.jd_origin and obs.nstep == clean.nstep
    assert obs.nobs == clean.nobs - 1  # only the bad observation is lost (44 % before)
    g = np.asarray(obs.isensor) == 1
    assert 7 not in np.asarray(obs.obs_index)[g]
    # a JULIAN_DAY in 1858 in one sensor: its convention is named (before: a problem with --stepstart/--nsteps)
    data = damaged(
        twin, tmp_path / "old", {"gmi/field_twin_JULIAN_DAY.nc": nc_edit("JULIAN_DAY", lambda v: v - 58000.0)}
    )
    with pytest.raises(SeaIceError, match="sensor gmi looks like Julian days of the year 1862"):
        read_training_data(DataConfig(data=data, sensors=SENSORS), 1)


def test_3_a_full_disk_while_writing_classic_keeps_the_previous_set(twin, good_copy, untouched, monkeypatch):
    before = set_state(good_copy)
    real = xr.Dataset.to_netcdf

    def full_disk(self, path=None, *args, **kwargs):
        if path is not None and "classic_sic" in str(path):
            real(self, path, *args, **kwargs)  # the file is half-written...
            raise OSError(errno.ENOSPC, "No space left on device")  # ...when the disk fills up
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_netcdf", full_disk)
    r = run_cli(["--data", twin, "--output", good_copy, "--tag", TAG, "--nepochs", "1", *FAST])
    # named as the output it was to become (before: its hidden staging path only)
    staged = f"{good_copy / 'classic_sic_good.nc'} (staged in {good_copy / '.sets' / 'good'}/"
    assert_one_line_error(r, staged, "): cannot write the file (the disk is full)", "with --resume")
    assert set_state(good_copy) == before  # classic_sic_good.nc included, with its old checksum
    assert leftovers(good_copy) == []
    monkeypatch.undo()  # space again: --resume writes the outputs of the trained state, no training
    r = run_cli(["--data", twin, "--output", good_copy, "--tag", TAG, "--nepochs", "1", "--resume", *FAST])
    assert r.code == 0, r.stderr
    assert " 1 epochs in " in r.stdout and set_state(good_copy)[0] != before[0]
    # the epoch's time is the first run's, from the checkpoint's books (before: the resumed run's own, which
    # trains for no time: "1 epochs in 0.0 s")
    wall = float(torch.load(good_copy / "model_good.pt", weights_only=True)["history"]["wall_time_s"])
    trained = json.loads((good_copy / "summary_good.json").read_text())["run"]["train_seconds"]
    assert wall > 0.005 and trained == round(wall, 2) > 0
    assert f" 1 epochs in {wall:.1f} s " in r.stdout


def test_3b_a_full_disk_in_the_final_pass_says_resume(twin, good_copy, untouched, monkeypatch):
    """A write failure after training but before the products (the final pass's files) names the checkpoint
    and --resume, as one in the products does (before: only '... no output was published or changed')."""
    from empirical_seaice.io import outputs
    from empirical_seaice.io.transaction import write_error

    before = set_state(good_copy)
    real = outputs.open_tb

    def full_disk(path, nobs, basis, kind, **kwargs):
        if kind == "tbzero":
            raise write_error(path, OSError(errno.ENOSPC, "No space left on device"))
        return real(path, nobs, basis, kind, **kwargs)

    monkeypatch.setattr(outputs, "open_tb", full_disk)
    r = run_cli(["--data", twin, "--output", good_copy, "--tag", TAG, "--nepochs", "1", *FAST])
    staged = f"{good_copy / 'tbzero_good.nc'} (staged in {good_copy / '.sets' / 'good'}/"
    assert_one_line_error(r, staged, "): cannot write the file (the disk is full)", "checkpoint.pt", "with --resume")
    assert set_state(good_copy) == before
    assert leftovers(good_copy) == []
    monkeypatch.undo()
    r = run_cli(["--data", twin, "--output", good_copy, "--tag", TAG, "--nepochs", "1", "--resume", *FAST])
    assert r.code == 0, r.stderr
    assert " 1 epochs in " in r.stdout and set_state(good_copy)[0] != before[0]


def test_4_a_failing_run_of_another_tag_removes_only_its_own_files(twin, good_copy, untouched):
    before = set_state(good_copy)
    names = sorted(p.name for p in good_copy.iterdir())
    r = run_cli(["--data", twin, "--output", good_copy, "--tag", "other", "--nsteps", "9", *FAST])
    assert_one_line_error(r, "--nsteps 9")
    assert set_state(good_copy) == before
    assert sorted(p.name for p in good_copy.iterdir()) == names and (good_copy / "cache" / "observations").is_dir()


def test_5_content_changes_are_seen_by_the_cache_and_by_resume(twin, tmp_path, untouched):
    data = tmp_path / "data"
    shutil.copytree(twin, data)
    path = data / "amsr2" / "field_twin_OBSVALUE.nc"
    cfg = DataConfig(data=data, sensors=SENSORS)
    out = tmp_path / "out"
    r = run_cli(["--data", data, "--output", out, "--tag", "r", "--nepochs", "1", "--trainonly", *FAST])
    assert r.code == 0, r.stderr
    obs, _ = read_training_data(cfg, 1, cache_dir=out / "cache")
    tb = float(obs.tb_obs_k[0, 0])
    st = path.stat()
    nc_edit("OBSVALUE", lambda v: np.where(np.arange(v.shape[0])[:, None] == 0, v + 1.0, v))(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    obs, _ = read_training_data(cfg, 1, cache_dir=out / "cache")
    assert float(obs.tb_obs_k[0, 0]) == pytest.approx(tb + 1.0)  # rebuilt: the old cache would say tb
    r = run_cli(["--data", data, "--output", out, "--tag", "r", "--nepochs", "2", "--trainonly", "--resume", *FAST])
    assert_one_line_error(r, "--resume: checkpoint", "another training data (the input files' content, --sensor")


def test_6_a_failure_after_training_keeps_the_model(twin, tmp_path, untouched, monkeypatch):
    data = damaged(twin, tmp_path / "data", {"truth/truth_state.nc": lambda p: p.unlink()})  # a truth/ not ours
    out = tmp_path / "out"
    flags = ["--data", data, "--output", out, "--tag", "k", "--nepochs", "1", *FAST]
    r = run_cli(flags)
    assert r.code == 0, r.stderr  # before: "twin truth: file .../truth_state.nc is missing", model deleted
    assert "no truth scores: twin truth: file" in r.stderr and "SIC vs truth" not in r.stdout
    import empirical_seaice.products.write as pw

    def broken(*args, **kwargs):
        raise SeaIceError("plots: the plotting library failed")

    monkeypatch.setattr(pw, "write_products", broken)
    r = run_cli(flags)
    assert_one_line_error(r, "plots: the plotting library failed", "the trained model is kept", "--diagsonly --tag k")
    manifest = txn.read_manifest(out, "k")
    assert manifest["status"] == "partial" and "model_k.pt" in manifest["files"]
    # the streamed diagnostics' files were released before the products failed; nothing held is published
    assert {"tbsim_k.nc", "tbsim_initial_k.nc", "tbzero_k.nc"} <= set(manifest["files"])
    assert not any(".held" in name for name in manifest["files"])
    assert txn.verify_set(out, "k") == []
    # a fault of the code (on a GPU: a CPU tensor in the gridded product): one line, and with -v its traceback
    monkeypatch.setattr(pw, "write_products", lambda *a, **k: torch.ones(2, device="meta") + torch.ones(2))
    line = assert_one_line_error(run_cli(flags), "RuntimeError: ", "the trained model is kept")
    r = run_cli([*flags, "-v"])
    assert r.code == 2 and "Traceback" in r.stderr and "in <lambda>" in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == line
    monkeypatch.undo()
    r = run_cli(["--data", data, "--output", out, "--tag", "k", "--diagsonly", "--no-progress", "--no-gridded"])
    assert r.code == 0, r.stderr
    manifest = txn.read_manifest(out, "k")
    assert manifest["status"] == "complete" and {"model_k.pt", "tbsim_k.nc"} <= set(manifest["files"])


def test_7_one_line_instead_of_tracebacks(twin, good_copy, untouched):
    before = set_state(good_copy)
    r = run_cli(["--data", twin, "--output", good_copy, "--tag", TAG, *FAST, "--learning-rate", "nan"])
    assert_one_line_error(r, "--learning-rate: must be a finite number > 0, got nan")
    argv = ["--data", twin, "--output", good_copy, "--tag", TAG, "--nepochs", "2", "--resume", *FAST]
    r = run_cli([*argv, "--model", "v1", "--sensors", *SENSORS])  # before: RuntimeError size mismatch
    assert_one_line_error(r, "--resume: checkpoint", "another model (--model, --ice-emis-init, --angle-input")
    assert set_state(good_copy) == before  # tbsim_initial_good.nc included (it was overwritten before)
    lock = json.dumps({"pid": 1, "host": "elsewhere", "start": None, "time": "t"})
    (good_copy / f".lock_{TAG}").write_text(lock)
    r = run_cli(argv)
    assert_one_line_error(r, "another run (pid 1 on elsewhere", f"remove {good_copy / ('.lock_' + TAG)}")
