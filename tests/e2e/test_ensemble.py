"""``seaice-training --ensemble N`` on the tiny twin: member 0 is the plain run, the members are
perturbed as stated, the ensemble file holds the members' mean and spread with its CF attributes and
is published with the set, a failed member leaves no ensemble file, and bad flags are one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from empirical_seaice.config import DataConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import read_training_data
from empirical_seaice.io import transaction as txn
from empirical_seaice.products.open_water_filter import filter_sic, open_water_mask
from empirical_seaice.run import ensemble as ens
from empirical_seaice.run.perturb import Perturbation

from .conftest import TAG, TRAIN_FLAGS, run_cli

SENSORS = ("amsr2", "gmi", "ssmisf17")


def _sic(path: Path, name: str = "seaice") -> np.ndarray:
    """A SIC map as (grid, lagstep): ``seaice_TAG.nc``'s layout; the products' (time, grid) transposed."""
    with netCDF4.Dataset(path) as ds:
        v = ds[name]
        values = np.asarray(v[:], dtype=np.float64)
        return values.T if v.dimensions == ("time", "grid") else values


@pytest.fixture(scope="module")
def ensemble_run(twin_dir, tmp_path_factory):
    """The trained run's flags with ``--ensemble 3``."""
    output = tmp_path_factory.mktemp("ens") / "out"
    r = run_cli(["--data", twin_dir, "--output", output, "--tag", TAG, *TRAIN_FLAGS, "--ensemble", "3"])
    assert r.code == 0, r.stderr
    r.output = output
    return r


def test_observation_perturbation_of_the_twin_has_the_cost_obs_error_per_channel(twin_dir):
    obs, background = read_training_data(DataConfig(data=twin_dir, sensors=SENSORS, cache=False), 1)
    pobs, pbg = Perturbation(member=1, seed=0, sic_error=0.1).apply(obs, background)
    d = np.asarray(pobs.tb_obs_k, dtype=np.float64) - obs.tb_obs_k
    mask = np.asarray(obs.mask)
    assert np.all(d[~mask] == 0.0)
    for c, sigma in enumerate(obs.basis.obs_error_k):
        dc = d[mask[:, c], c]
        if dc.size < 500:
            continue
        assert abs(dc.std() / sigma - 1.0) < 4.0 / np.sqrt(2 * dc.size), obs.basis.channel_names[c]
    db = (np.asarray(pbg.sic, dtype=np.float64) - background.sic).ravel()
    assert abs(db.std() / 0.1 - 1.0) < 4.0 / np.sqrt(2 * db.size)
    again, _ = Perturbation(member=1, seed=0, sic_error=0.1).apply(obs, background)
    np.testing.assert_array_equal(again.tb_obs_k, pobs.tb_obs_k)  # reproducible from (seed, member)
    assert obs.tb_obs_k is not pobs.tb_obs_k and background.sic is not pbg.sic  # the inputs are unchanged


def test_member_0_is_the_plain_run_and_the_members_differ(ensemble_run, trained):
    np.testing.assert_array_equal(
        _sic(ensemble_run.output / f"seaice_{TAG}.nc"), _sic(trained.output / f"seaice_{TAG}.nc")
    )
    members = [ensemble_run.output / "members" / k for k in ("01", "02")]
    for m in members:
        assert (m / f"model_{TAG}.pt").is_file() and not txn.verify_set(m, TAG)
        assert (m / f"tbsim_{TAG}.nc").is_file()  # the inflation's simulated TBs
        assert not (m / f"seaice_filtered_{TAG}.nc").exists()  # no products
    s0, s1, s2 = (_sic(p / f"seaice_{TAG}.nc") for p in [ensemble_run.output, *members])
    assert np.abs(s1 - s0).max() > 0.01 and np.abs(s2 - s1).max() > 0.01
    # a member's files say which member wrote them from perturbed inputs (they read as the plain run's)
    for k, where in enumerate([ensemble_run.output, *members]):
        with netCDF4.Dataset(where / f"tbobs_{TAG}.nc") as ds:
            noted = f"(ensemble member {k} of 3: its observations and first-guess SIC perturbed)"
            assert ds.getncattr("history").endswith(noted) == (k > 0), ds.getncattr("history")


def test_the_ensemble_file_holds_the_members_mean_and_spread(ensemble_run, twin_dir):
    out = ensemble_run.output
    obs, _ = read_training_data(DataConfig(data=twin_dir, sensors=SENSORS, cache=False), 1)
    water = _sic(out / f"seaice_filtered_{TAG}.nc", "open_water_flag").astype(bool)  # member 0's published flags
    assert not water[:, 0].any()
    np.testing.assert_array_equal(water[:, 1:], open_water_mask(obs))  # those of the observed TBs
    sics = [filter_sic(_sic(p / f"seaice_{TAG}.nc"), water) for p in (out, out / "members/01", out / "members/02")]
    np.testing.assert_array_equal(sics[0], _sic(out / f"seaice_filtered_{TAG}.nc"))  # member 0's product
    stack = np.stack(sics)
    path = out / f"seaice_ensemble_{TAG}.nc"
    np.testing.assert_allclose(_sic(path, "seaice_mean"), stack.mean(axis=0), atol=1e-6)
    by_hand = np.sqrt(((stack - stack.mean(axis=0)) ** 2).sum(axis=0) / 2.0)
    np.testing.assert_allclose(_sic(path, "seaice_spread_raw"), by_hand, atol=1e-6)
    assert by_hand.max() > 0.01
    with netCDF4.Dataset(path) as ds:
        mean, spread = ds["seaice_mean"], ds["seaice_spread"]
        assert mean.standard_name == "sea_ice_area_fraction" and mean.ancillary_variables == "seaice_spread"
        assert spread.standard_name == "sea_ice_area_fraction standard_error" and spread.units == "1"
        assert spread.comment.startswith("times 0..0 are the lag days") and "above 0.5" in spread.comment
        assert ds.ensemble_size == 3 and ds.sic_product == "seaice_filtered"
        assert ds.Conventions == "CF-1.10" and "time_bnds" in ds.variables
        assert mean.dimensions == spread.dimensions == ("time", "grid") and ds["time"].dimensions == ("time",)
        # the default inflation: the tiny twin holds none out, so every observation's fitted departure
        lam = float(ds.spread_inflation)
        assert lam > 1.0 and f"lambda = {lam:.3f}" in ds.inflation_method and "every observation" in ds.inflation_method
    np.testing.assert_allclose(_sic(path, "seaice_spread"), lam * by_hand, atol=1e-6)
    assert f"seaice_ensemble_{TAG}.nc" in txn.read_manifest(out, TAG)["files"]
    assert not txn.verify_set(out, TAG)  # one published set: member 0's files and the ensemble file
    assert "ensemble of 3: RMS spread" in ensemble_run.stdout and "spread/error" in ensemble_run.stdout
    # the summary files beside the outputs have the ensemble's lines as printed (before: member 0's alone)
    assert (out / f"summary_{TAG}.txt").read_text() == ensemble_run.stdout
    summary = json.loads((out / f"summary_{TAG}.json").read_text())
    assert summary["ensemble"]["lines"][-1] == f"ensemble file: {path}" and summary["run"]["tag"] == TAG


def test_the_ensemble_file_is_cf_compliant(ensemble_run, tmp_path, monkeypatch):
    import socket

    from .test_cf_compliance import _no_network, check_cf

    monkeypatch.setattr(socket.socket, "connect", _no_network)
    errors, warnings, failed = check_cf(ensemble_run.output / f"seaice_ensemble_{TAG}.nc", tmp_path)
    assert not errors and not warnings and not failed, (errors, warnings)


def test_a_failed_member_leaves_no_ensemble_file(ensemble_run, twin_dir, tmp_path, monkeypatch):
    """A copy of the published ensemble run, rerun with member 1 failing: member 0's new set is
    published without the old ensemble file, and none is written."""
    out = tmp_path / "out"
    shutil.copytree(ensemble_run.output, out, symlinks=True)
    assert (out / f"seaice_ensemble_{TAG}.nc").is_file()
    real = ens.train.run

    def failing(*args, perturbation=None, **kwargs):
        if perturbation is not None:
            raise SeaIceError("injected failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(ens.train, "run", failing)
    flags = [f if f != "10" else "1" for f in TRAIN_FLAGS]  # one epoch
    r = run_cli(["--data", twin_dir, "--output", out, "--tag", TAG, *flags, "--ensemble", "3"])
    assert r.code == 2
    assert r.stderr.count("\n") == 1 and "member 1" in r.stderr and "no ensemble file" in r.stderr
    assert not (out / f"seaice_ensemble_{TAG}.nc").exists() and not (out / f"seaice_ensemble_{TAG}.nc").is_symlink()
    assert (out / f"seaice_{TAG}.nc").is_file() and not txn.verify_set(out, TAG)


def test_a_stopped_ensemble_carries_on_with_resume(ensemble_run, twin_dir, tmp_path, monkeypatch):
    """An ensemble could not be resumed (``--resume`` was refused): a member that failed after hours of
    the others' training meant training them all again. With ``--resume`` each member with a checkpoint
    carries on from it (here members 0 and 1, finished: their outputs written again without training, the
    same state), a member without one trains from the start (member 2, as if it had never started), and
    the ensemble file is the uninterrupted run's (``--reproducible``)."""
    out = tmp_path / "out"
    shutil.copytree(ensemble_run.output, out, symlinks=True)
    flags = ["--data", twin_dir, "--output", out, "--tag", TAG, *TRAIN_FLAGS, "--ensemble", "3", "--resume", "-v"]
    real = ens.train.run

    def failing(*args, perturbation=None, **kwargs):
        if perturbation is not None and perturbation.member == 2:
            raise SeaIceError("injected failure")
        return real(*args, perturbation=perturbation, **kwargs)

    monkeypatch.setattr(ens.train, "run", failing)
    r = run_cli(flags)
    assert r.code == 2
    assert r.stderr.splitlines()[-1].endswith(
        "injected failure -- once it is fixed, rerun the same command with --resume: the members carry on from "
        "their checkpoints"
    )
    monkeypatch.setattr(ens.train, "run", real)
    shutil.rmtree(out / "members" / "02")  # member 2 had not started
    r = run_cli(flags)
    assert r.code == 0, r.stderr
    said = [ln.split("run.ensemble: ")[1] for ln in r.stderr.splitlines() if "run.ensemble: ensemble member" in ln]
    assert said == [
        "ensemble member 0 of 3 (unperturbed), resumed from its checkpoint",
        f"ensemble member 1 of 3 into {out / 'members' / '01'}, resumed from its checkpoint",
        f"ensemble member 2 of 3 into {out / 'members' / '02'}, from the start (no checkpoint)",
    ]
    assert r.stderr.count("training.trainer: epoch ") == 10  # member 2's ten epochs, none of 0's or 1's
    for member in ("", "members/01", "members/02"):
        a, b = (_sic(d / member / f"seaice_{TAG}.nc") for d in (ensemble_run.output, out))
        np.testing.assert_array_equal(a, b)
    for name in ("seaice_mean", "seaice_spread"):
        a, b = (_sic(d / f"seaice_ensemble_{TAG}.nc", name) for d in (ensemble_run.output, out))
        np.testing.assert_array_equal(a, b)
    assert not txn.verify_set(out, TAG)
    # member 0 without a checkpoint: the single run's line
    shutil.rmtree(out / f"checkpoints_{TAG}")
    r = run_cli(flags)
    assert r.code == 2 and "--resume: no epoch checkpoint" in r.stderr and r.stderr.count("error:") == 1


def test_without_inflation_the_stated_spread_is_the_members_std(twin_dir, tmp_path):
    out = tmp_path / "out"
    flags = [f if f != "10" else "2" for f in TRAIN_FLAGS]  # two epochs
    r = run_cli(["--data", twin_dir, "--output", out, "--tag", TAG, *flags, "--ensemble", "2"]
                + ["--ensemble-inflation", "none", "--no-open-water-filter"])  # fmt: skip
    assert r.code == 0, r.stderr
    assert not (out / "members/01" / f"tbsim_{TAG}.nc").exists()  # members train only
    s0, s1 = _sic(out / f"seaice_{TAG}.nc"), _sic(out / "members/01" / f"seaice_{TAG}.nc")
    path = out / f"seaice_ensemble_{TAG}.nc"
    np.testing.assert_allclose(_sic(path, "seaice_mean"), (s0 + s1) / 2.0, atol=1e-6)
    np.testing.assert_allclose(_sic(path, "seaice_spread"), np.abs(s0 - s1) / np.sqrt(2.0), atol=1e-6)
    with netCDF4.Dataset(path) as ds:
        assert ds.spread_inflation == 1.0 and ds.sic_product == "seaice" and "seaice_spread_raw" not in ds.variables


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ensemble", "1"], "--ensemble: expected a number of members N >= 2"),
        (["--ensemble", "x"], "--ensemble: invalid int value"),
        (["--ensemble", "3", "--diagsonly"], "--ensemble: cannot be combined with --diagsonly"),
        (["--ensemble", "3", "--modeltag", "m"], "--ensemble: cannot be combined with --modeltag"),
        (["--ensemble", "3", "--ensemble-sic-error", "-1"], "--ensemble-sic-error: expected a standard deviation"),
        (["--ensemble-sic-error", "0.1"], "--ensemble-sic-error: applies only with --ensemble"),
        (["--ensemble", "2", "--ensemble-inflation", "lots"], "--ensemble-inflation: invalid choice"),
        (
            ["--ensemble", "2", "--trainonly"],
            "--ensemble with --trainonly: the inflation 'observations' (--ensemble-inflation",
        ),
    ],
)
def test_bad_ensemble_flags_are_one_line_errors(flags, message, twin_dir, tmp_path):
    r = run_cli(["--data", twin_dir, "--output", tmp_path / "out", *flags])
    assert r.code == 2
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
