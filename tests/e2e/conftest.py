"""Shared fixtures of the end-to-end tests: a small synthetic twin and one trained run.

The twin is the ``tiny`` preset made smaller and denser (200 km grid north of
65 N, 3 days, half the swath points kept): 346 grid points x 3 days and about
5,600 observations of AMSR2, GMI and SSMIS F17, i.e. ~5 observations per SIC
cell — enough for SIC to be constrained in a few seconds of training.

The trained run uses lr 1e-2 (not the reference 1e-3: each SIC cell is seen
only ~5 times per epoch here, against hundreds of visits in a year-long run)
and ``--ice-emis-init 0.9`` (the reference's zero output biases start the v2
emissivity at ~0.5, far below the v2 anchor floor (23.8 GHz V >= 0.8), which a run of a few
hundred steps cannot recover from).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from empirical_seaice import cli

TAG = "e2e"
TRAIN_FLAGS = [
    "--nepochs",
    "10",
    "--batchsize",
    "128",
    "--learning-rate",
    "1e-2",
    "--ice-emis-init",
    "0.9",
    "--reproducible",
    "--no-progress",
    "--device",
    "cpu",
]


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread():
    """One intra-op thread: the test machine is shared, and oversubscribed threads make
    these small-batch runs ~8x slower (measured 94 s vs 12 s for the trained run)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def twin_dir(tmp_path_factory) -> Path:
    from empirical_seaice.twin.generate import generate_twin
    from empirical_seaice.twin.presets import get_twin_preset

    out = tmp_path_factory.mktemp("twin") / "data"
    cfg = get_twin_preset("tiny", resolution_km=200.0, lat_limit_deg=65.0, days=3, keep_fraction=0.5)
    generate_twin(cfg, out)
    return out


def run_cli(argv: list[str]) -> SimpleNamespace:
    """``cli.main(argv)`` in-process; returns code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return SimpleNamespace(code=code, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.fixture(scope="session")
def trained(twin_dir, tmp_path_factory) -> SimpleNamespace:
    """One v2 training run on the twin (all three sensors), outputs in ``output``."""
    output = tmp_path_factory.mktemp("run") / "out"
    r = run_cli(["--data", twin_dir, "--output", output, "--tag", TAG, *TRAIN_FLAGS])
    assert r.code == 0, r.stderr
    r.output = output
    r.data = twin_dir
    return r


@pytest.fixture(scope="session")
def products_run(trained, tmp_path_factory) -> SimpleNamespace:
    """The trained model's diagnostics and every product (export, gridded, classic, plots and the
    report) in a directory of their own: ``--diagsonly --export --plots`` on a copy of model_TAG.pt."""
    import shutil

    output = tmp_path_factory.mktemp("products") / "out"
    output.mkdir()
    shutil.copy(trained.output / f"model_{TAG}.pt", output / f"model_{TAG}.pt")
    r = run_cli(
        ["--data", trained.data, "--output", output, "--tag", TAG, "--diagsonly", "--export", "--plots", "--quiet"]
    )
    assert r.code == 0, r.stderr
    r.output = output
    r.data = trained.data
    return r
