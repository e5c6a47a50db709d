"""Fixtures of the reliability tests: one tiny twin and one good output set per session.

The twin is the end-to-end tests' (200 km grid north of 65 N, 3 days, about
5,600 observations); it is never modified: a damaged dataset is a directory of
symbolic links to the twin's files with only the damaged file copied and
edited (:func:`damaged`). ``good`` is one trained output set (tag ``good``),
copied for each test that runs over it (``good_copy``), so that a test can
check that the previous good set is intact and readable after a kill, a full
disk or a second run.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import netCDF4
import numpy as np
import pytest
import torch

from empirical_seaice import cli
from empirical_seaice.io import transaction as txn

TAG = "good"
FAST = ["--batchsize", "256", "--learning-rate", "1e-2", "--ice-emis-init", "0.9", "--no-progress"]
FAST += ["--device", "cpu", "--threads", "1", "--no-gridded"]
"""Training flags of the small runs (one epoch of ~22 steps: about a second)."""

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tree_digest(root: Path) -> dict[str, tuple[int, int]]:
    """(size, CRC-32) of every file under ``root`` (symbolic links followed)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = (p.stat().st_size, zlib.crc32(p.read_bytes()))
    return out


@pytest.fixture(scope="session")
def twin(tmp_path_factory) -> Path:
    from empirical_seaice.twin.generate import generate_twin
    from empirical_seaice.twin.presets import get_twin_preset

    out = tmp_path_factory.mktemp("rtwin") / "data"
    generate_twin(get_twin_preset("tiny", resolution_km=200.0, lat_limit_deg=65.0, days=3, keep_fraction=0.5), out)
    return out


@pytest.fixture(scope="session")
def twin_digest(twin) -> dict:
    return tree_digest(twin)


@pytest.fixture()
def untouched(twin, twin_digest):
    """Asserts after the test that the twin (every input) is byte for byte unchanged."""
    yield
    assert tree_digest(twin) == twin_digest


def run_cli(argv: list) -> SimpleNamespace:
    """``cli.main(argv)`` in-process; returns code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return SimpleNamespace(code=code, stdout=out.getvalue(), stderr=err.getvalue())


def cli_command(argv: list) -> list[str]:
    """The command line of ``seaice-training argv`` in a fresh interpreter (for the kill tests)."""
    return [
        sys.executable,
        "-c",
        "import sys; from empirical_seaice.cli import main; sys.exit(main())",
        *map(str, argv),
    ]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    env.update(extra)
    return env


def start_cli(argv: list, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        cli_command(argv), env=cli_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def assert_one_line_error(r: SimpleNamespace, *fragments: str, code: int = 2) -> str:
    """Exit code, one line on stderr (``seaice-training: ...``) holding every fragment, no traceback."""
    assert r.code == code, (r.code, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("seaice-training:")]
    assert len(lines) == 1, r.stderr
    for frag in fragments:
        assert frag in lines[0], f"{frag!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="session")
def good(twin, tmp_path_factory) -> Path:
    """A trained output set (tag ``good``, 1 epoch, classic SIC included)."""
    output = tmp_path_factory.mktemp("good") / "out"
    r = run_cli(["--data", twin, "--output", output, "--tag", TAG, "--nepochs", "1", *FAST])
    assert r.code == 0, r.stderr
    assert txn.verify_set(output, TAG) == []
    return output


@pytest.fixture()
def good_copy(good, tmp_path) -> Path:
    """A private copy of the good output set (links kept as links)."""
    dst = tmp_path / "out"
    shutil.copytree(good, dst, symlinks=True)
    return dst


def set_state(output: Path, tag: str = TAG) -> tuple[str, dict]:
    """(run id, manifest files) of the published set; asserts that it is intact and readable."""
    import xarray as xr

    assert txn.verify_set(output, tag) == []
    manifest = txn.read_manifest(output, tag)
    with xr.open_dataset(output / f"seaice_{tag}.nc") as ds:
        assert np.isfinite(ds["seaice"].values).all()
    return manifest["run"], manifest["files"]


def leftovers(output: Path) -> list[str]:
    """Temporary files, unpublished sets and lock files under ``output``."""
    found = []
    for p in Path(output).rglob("*"):
        n = p.name
        if ".tmp" in n or n.startswith(txn.LOCK_PREFIX) or ".observations." in n:
            found.append(str(p.relative_to(output)))
    sets = Path(output) / txn.SETS_DIR
    if sets.is_dir():
        for tag_dir in sets.iterdir():
            cur = txn.current_set(output, tag_dir.name)
            for p in tag_dir.iterdir():
                if p.name != txn.CURRENT and (cur is None or p.name != cur.name):
                    found.append(str(p.relative_to(output)))
    return found


def damaged(twin: Path, dst: Path, edits: dict[str, Callable[[Path], None]]) -> Path:
    """A copy of the twin made of links to its files, where each file named in ``edits`` (a path relative
    to the twin) is a real copy that the edit function changes (or removes)."""
    shutil.copytree(twin, dst, copy_function=os.symlink)
    for rel, edit in edits.items():
        p = dst / rel
        p.unlink()
        shutil.copyfile(twin / rel, p)
        edit(p)
    return dst


def nc_edit(var: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    """An edit that replaces the values of ``var`` by ``fn(values)``."""

    def edit(path: Path) -> None:
        with netCDF4.Dataset(path, "a") as ds:
            v = ds.variables[var]
            v.set_auto_mask(False)
            v[...] = fn(np.array(v[...]))

    return edit


def rows_edit(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    """An edit that rewrites the file with its rows (first dimension) replaced by ``fn(rows)``."""

    def edit(path: Path) -> None:
        import xarray as xr

        with xr.open_dataset(path, mask_and_scale=False) as ds:
            data = {k: (v.dims, fn(np.asarray(v.values))) for k, v in ds.variables.items()}
        path.unlink()
        xr.Dataset(data).to_netcdf(path)

    return edit


def sensor_files(sensor: str) -> list[str]:
    fields = [
        "CLOUD_FRACTION", "COMMON_IGRID", "EMIS_WATER", "IGRID", "JULIAN_DAY", "OBSVALUE", "TAUSFC", "TAUSFC_CLD",
        "TDOWN", "TDOWN_CLD", "TSFC", "TUP", "TUP_CLD", "WINDSPEED10M", "ZENITH",
    ]  # fmt: skip
    return [f"{sensor}/field_twin_{f}.nc" for f in fields]
