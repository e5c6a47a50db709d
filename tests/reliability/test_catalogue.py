"""The catalogue of bad inputs: each case is one damaged input file or one bad flag.

Every case asserts: exit status 2, one line on stderr naming the file,
variable or flag and saying how to fix it, no traceback, no output directory
left behind (or, over an existing output set, that set unchanged, intact and
readable, and no leftovers), and the input files untouched.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from .conftest import (
    FAST,
    TAG,
    assert_one_line_error,
    damaged,
    leftovers,
    nc_edit,
    rows_edit,
    run_cli,
    sensor_files,
    set_state,
)

GMI_JD = "gmi/field_twin_JULIAN_DAY.nc"
SSMIS_JD = "ssmisf17/field_twin_JULIAN_DAY.nc"
AMSR2_JD = "amsr2/field_twin_JULIAN_DAY.nc"


def _shift_some(frac: float, days: float):
    def fn(v):
        v = v.copy()
        n = max(1, int(frac * v.size))
        v[-n:] += days
        return v

    return fn


def _garbage(path):
    path.write_bytes(b"this is not a NetCDF file\n" * 10)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _remove(path):
    path.unlink()


def _global_attribute(name: str, value: str):
    """An edit that sets a global attribute of the file."""

    def edit(path):
        import netCDF4

        with netCDF4.Dataset(path, "a") as ds:
            ds.setncattr(name, value)

    return edit


def _all_rows(fn):
    return {rel: rows_edit(fn) for rel in sensor_files("gmi")}


# (id, flags, fragments naming the flag and the fix)
FLAG_CASES = [
    ("lr-nan", ["--learning-rate", "nan"], ["--learning-rate", "finite number > 0"]),
    ("lr-inf", ["--learning-rate", "inf"], ["--learning-rate", "finite number > 0"]),
    ("lr-negative", ["--learning-rate", "-1"], ["--learning-rate", "finite number > 0"]),
    ("lr-text", ["--learning-rate", "fast"], ["--learning-rate", "invalid float value"]),
    ("network-lr-zero", ["--network-learning-rate", "0"], ["--network-learning-rate", "finite number > 0"]),
    ("batchsize-0", ["--batchsize", "0"], ["--batchsize", "must be >= 1"]),
    ("nepochs-negative", ["--nepochs", "-1"], ["--nepochs", "must be >= 0"]),
    ("stepstart-negative", ["--stepstart", "-1"], ["--stepstart", "must be >= 0"]),
    ("nsteps-0", ["--nsteps", "0"], ["--nsteps", "must be >= 1"]),
    ("nsteps-beyond-data", ["--nsteps", "9"], ["--nsteps 9", "use --nsteps 3 or less"]),
    ("stepstart-beyond-data", ["--stepstart", "7"], ["--stepstart 7", "choose a smaller --stepstart"]),
    ("validation-nan", ["--validation-fraction", "nan"], ["--validation-fraction", "must be in [0, 1)"]),
    ("validation-1", ["--validation-fraction", "1"], ["--validation-fraction", "must be in [0, 1)"]),
    (
        "early-stop-no-hold-out",
        ["--validation-fraction", "0", "--early-stopping"],
        ["--early-stopping", "--validation-fraction > 0"],
    ),
    ("ice-emis-init-big", ["--ice-emis-init", "1.5"], ["--ice-emis-init", "expected 0 < E < 1"]),
    ("ice-emis-init-nan", ["--ice-emis-init", "nan"], ["--ice-emis-init", "expected 0 < E < 1"]),
    (
        "ice-emis-init-word",
        ["--ice-emis-init", "high"],
        ["--ice-emis-init", "expected a number 0 < E < 1 or 'reference'"],
    ),
    ("threads-0", ["--threads", "0"], ["--threads", "must be >= 1"]),
    ("checkpoint-minutes-neg", ["--checkpoint-minutes", "-1"], ["--checkpoint-minutes", "minutes >= 0"]),
    ("checkpoint-minutes-nan", ["--checkpoint-minutes", "nan"], ["--checkpoint-minutes", "minutes >= 0"]),
    ("start-date-bad", ["--start-date", "2021-13-01"], ["--start-date", "expected a date YYYY-MM-DD"]),
    ("start-date-after-data", ["--start-date", "2030-01-01"], ["--start-date 2030-01-01", "choose an earlier date"]),
    ("sensor-unknown", ["--sensors", "amsr9"], ["amsr9", "known"]),
    ("model-unknown", ["--model", "v9"], ["--model", "invalid choice"]),
    ("tag-with-space", ["--tag", "a b"], ["--tag", "file-name-safe"]),
    ("resume-no-checkpoint", ["--resume"], ["--resume", "train without --resume first"]),
    ("diagsonly-no-model", ["--diagsonly"], ["--modeltag", "train first"]),
    ("grid-freqs-text", ["--grid-freqs", "ten"], ["--grid-freqs", "expected frequencies in GHz"]),
    ("grid-channels-unknown", ["--grid-channels", "999v"], ["--grid-channels", "999v not among the run's channels"]),
    ("optimizer-unknown", ["--optimizer", "sgd"], ["--optimizer", "invalid choice"]),
]


@pytest.mark.parametrize("flags, fragments", [c[1:] for c in FLAG_CASES], ids=[c[0] for c in FLAG_CASES])
def test_bad_flag(twin, tmp_path, untouched, flags, fragments):
    out = tmp_path / "out"
    r = run_cli(["--data", twin, "--output", out, "--tag", "t", "--nepochs", "1", *FAST, *flags])
    assert_one_line_error(r, *fragments)
    assert not out.exists()


def test_bad_paths(twin, tmp_path, untouched):
    out = tmp_path / "out"
    base = ["--output", out, "--tag", "t", "--nepochs", "1", *FAST]
    assert_one_line_error(
        run_cli(["--data", tmp_path / "nowhere", *base]),
        "--data",
        "does not exist",
        "give the",
        "seaice-twin --output DIR",
    )
    r = run_cli(["--data", twin, "--seaice-background", tmp_path / "bg.nc", *base])
    assert_one_line_error(r, "--seaice-background", "bg.nc not found")
    (tmp_path / "file").write_text("x")
    r = run_cli(["--data", twin, "--output", tmp_path / "file", "--tag", "t", *FAST])
    assert_one_line_error(r, "--output", "is not a directory")
    assert not out.exists()


# (id, edits of the twin's files, fragments naming the file/variable and the fix)
DATA_CASES = [
    (
        "gmi-in-mjd",
        {GMI_JD: nc_edit("JULIAN_DAY", lambda v: v - 2400000.5)},
        [GMI_JD, "sensor gmi looks like Modified Julian Days", "convert it to Julian days"],
    ),
    (
        "ssmis-in-1858",
        {SSMIS_JD: nc_edit("JULIAN_DAY", lambda v: v - 2459274.0 + 2400000.0)},
        [SSMIS_JD, "sensor ssmisf17 looks like Julian days of the year 1858", "convert it"],
    ),
    (
        "gmi-days-since-1970",
        {GMI_JD: nc_edit("JULIAN_DAY", lambda v: v - 2440587.5)},
        [GMI_JD, "days since an epoch", "convert it"],
    ),
    (
        "amsr2-5pct-a-month-late",
        {AMSR2_JD: nc_edit("JULIAN_DAY", _shift_some(0.05, 30.0))},
        [AMSR2_JD, "sensor amsr2:", "outside the data's period", "fix the timestamps or give --start-date"],
    ),
    (
        "gmi-0-rows",
        _all_rows(lambda a: a[:0]),
        [GMI_JD, "sensor gmi has no observation (0 rows)", "remove it from --sensors"],
    ),
    (
        "gmi-appended-twice",
        _all_rows(lambda a: np.concatenate([a, a])),
        [GMI_JD, "sensor gmi has 124 duplicated observations", "remove the repeated rows"],
    ),
    (
        "gmi-tb-all-nan",
        {"gmi/field_twin_OBSVALUE.nc": nc_edit("OBSVALUE", lambda v: np.full_like(v, np.nan))},
        ["gmi/field_twin_OBSVALUE.nc", "variable OBSVALUE mostly missing"],
    ),
    (
        "amsr2-tb-in-celsius",
        {"amsr2/field_twin_OBSVALUE.nc": nc_edit("OBSVALUE", lambda v: v - 273.15)},
        ["amsr2/field_twin_OBSVALUE.nc", "variable OBSVALUE mostly out of range", "wrong units?"],
    ),
    (
        "tsfc-in-celsius",
        {"ssmisf17/field_twin_TSFC.nc": nc_edit("TSFC", lambda v: v - 273.15)},
        ["ssmisf17/field_twin_TSFC.nc", "variable TSFC mostly out of range", "wrong units?"],
    ),
    (
        "wind-negative",
        {"amsr2/field_twin_WINDSPEED10M.nc": nc_edit("WINDSPEED10M", lambda v: -v - 1)},
        ["amsr2/field_twin_WINDSPEED10M.nc", "WINDSPEED10M mostly out of range"],
    ),
    (
        "tausfc-missing-file",
        {"gmi/field_twin_TAUSFC.nc": _remove},
        ["gmi/field_twin_TAUSFC.nc", "file not found", "variable TAUSFC of sensor gmi"],
    ),
    (
        "obsvalue-not-netcdf",
        {"amsr2/field_twin_OBSVALUE.nc": _garbage},
        ["amsr2/field_twin_OBSVALUE.nc", "cannot read as NetCDF"],
    ),
    (
        "obsvalue-truncated",
        {"ssmisf17/field_twin_OBSVALUE.nc": _truncate},
        ["ssmisf17/field_twin_OBSVALUE.nc", "cannot read as NetCDF"],
    ),
    (
        "obsvalue-wrong-channels",
        {"gmi/field_twin_OBSVALUE.nc": rows_edit(lambda a: a[:, :5] if a.ndim == 2 else a)},
        ["gmi/field_twin_OBSVALUE.nc", "has 5 channels, sensor gmi expects 13"],
    ),
    (
        "grid-beyond-background",
        {"amsr2/field_twin_COMMON_IGRID.nc": nc_edit("COMMON_IGRID", lambda v: v + 1000)},
        ["amsr2/field_twin_COMMON_IGRID.nc", "grid index up to", "ngrid=346"],
    ),
    (
        "grid-mostly-negative",
        {"gmi/field_twin_COMMON_IGRID.nc": nc_edit("COMMON_IGRID", lambda v: -1 - v)},
        ["gmi/field_twin_COMMON_IGRID.nc", "variable COMMON_IGRID mostly missing (NaN/fill/negative)"],
    ),
    (
        "julian-day-mostly-nan",
        {AMSR2_JD: nc_edit("JULIAN_DAY", lambda v: np.full_like(v, np.nan))},
        [AMSR2_JD, "variable JULIAN_DAY mostly missing"],
    ),
    (
        "sic-file-points-reversed",  # before: its LON/LAT never read, the SIC map taken in the wrong order
        {"ifs_seaice_initials_twin.nc": nc_edit("LON", lambda v: v[::-1].copy())},
        [
            "ifs_seaice_initials_twin.nc and ifs_tsfc_twin_dailyx.nc are not on the same grid: their LON differ at",
            "give background files of one grid, its points in one order",
        ],
    ),
    (
        "gmi-files-in-amsr2-directory",  # before: read with amsr2's channels and incidence, silently
        {AMSR2_JD: _global_attribute("sensor", "gmi")},
        [AMSR2_JD, "global attribute sensor = 'gmi', but it is read as sensor amsr2", "rename the directory amsr2"],
    ),
    (
        "background-sic-missing",
        {"ifs_seaice_initials_twin.nc": _remove},
        ["ifs_seaice", "--seaice-background"],
    ),
    (
        "background-wrong-grid",
        {"ifs_tsfc_twin_dailyx.nc": rows_edit(lambda a: a[:100])},
        [
            "ifs_seaice_initials_twin.nc and ifs_tsfc_twin_dailyx.nc are not on the same grid: SEAICE has",
            "grid points, LON of ifs_tsfc_twin_dailyx.nc 100 (TSFC (100, ",
        ],
    ),
]


@pytest.mark.parametrize("edits, fragments", [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_damaged_input(twin, tmp_path, untouched, edits, fragments):
    data = damaged(twin, tmp_path / "data", edits)
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file() and not p.is_symlink()}
    out = tmp_path / "out"
    r = run_cli(["--data", data, "--output", out, "--tag", "t", "--nepochs", "1", *FAST])
    assert_one_line_error(r, *fragments)
    assert not out.exists()
    assert {p: p.read_bytes() for p in before} == before  # the damaged copies are untouched too


def test_swapped_channels_are_warned_about_before_training(twin, tmp_path, untouched):
    """AMSR2's 10v and 10h swapped in its OBSVALUE only (each value plausible): the run trained on them without
    a word, the bias correction and the SIC taking up 80 K. Over open water the simulation does not depend on
    the ice model, so the initial pass names the sensor and the two channels; the other sensors' departures
    over open water, on the same twin, stay within the bound."""

    def swap(v):
        v = v.copy()
        v[:, [0, 1]] = v[:, [1, 0]]
        return v

    data = damaged(twin, tmp_path / "data", {"amsr2/field_twin_OBSVALUE.nc": nc_edit("OBSVALUE", swap)})
    r = run_cli(["--data", data, "--output", tmp_path / "out", "--tag", "t", "--nepochs", "1", *FAST])
    assert r.code == 0, r.stderr
    said = [ln for ln in r.stderr.splitlines() if "over open water is beyond 20 K" in ln]
    assert len(said) == 1, r.stderr
    found = re.search(r"sensor amsr2: .* in channels 10v ([-+][0-9.]+) K, 10h ([-+][0-9.]+) K \(([0-9]+) obs", said[0])
    assert found, said[0]
    v, h, n = float(found[1]), float(found[2]), int(found[3])
    assert v < -40 and h > 40 and n >= 100, said[0]  # the polarisation difference over the ocean
    # the summary (stdout, and its files) lists it after the table: on stderr it scrolled by
    message = said[0].split(": ", 1)[1]  # without the time stamp, the level and the logger's name
    assert f"  - {message}" in r.stdout.splitlines(), r.stdout
    summary = json.loads((tmp_path / "out" / "summary_t.json").read_text())
    assert message in summary["run"]["warnings"]
    assert f"  - {message}" in (tmp_path / "out" / "summary_t.txt").read_text().splitlines()
    # a run on them that got worse (here diverged, written anyway) points at the data before its likely fix,
    # which is the failed health checks' remedy
    diverged = ["--learning-rate", "1.0", "--network-learning-rate", "1.0", "--force-outputs"]
    r = run_cli(["--data", data, "--output", tmp_path / "out2", "--tag", "t", "--nepochs", "1", *FAST, *diverged])
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("    See also the data"))
    assert lines[at].startswith("    See also the data: 1 warning about the input files is listed below; no flag")
    assert lines[at + 1].startswith("    Likely fix: the health checks failed (the outputs are marked health_check")
    assert lines[at + 1].endswith(": lower --learning-rate.")
    assert lines[at + 2] == "  2 warnings logged during the run:"  # the open water's, the checks'


def test_a_grid_index_into_another_order_of_the_grid_is_warned_about(twin, tmp_path, untouched):
    """AMSR2's COMMON_IGRID counting the grid's points from the other end (every index valid): trained at the
    wrong points silently. Its observations' skin temperatures no longer follow the map at their points; the
    other sensors' do (no word about them), and the open-water departures see ice where the background has
    none."""
    data = damaged(
        twin, tmp_path / "data", {"amsr2/field_twin_COMMON_IGRID.nc": nc_edit("COMMON_IGRID", lambda v: 345 - v)}
    )
    r = run_cli(["--data", data, "--output", tmp_path / "out", "--tag", "t", "--nepochs", "1", *FAST])
    assert r.code == 0, r.stderr
    said = [ln for ln in r.stderr.splitlines() if "skin temperatures of its observations" in ln]
    assert len(said) == 1 and "sensor amsr2: " in said[0] and "its COMMON_IGRID may not index" in said[0], r.stderr
    own, chance = map(float, re.search(r"by ([0-9.]+) K RMS, .* days \(([0-9.]+) K\)", said[0]).groups())
    assert own > 0.5 * chance and chance > 5.0, said[0]
    assert [ln for ln in r.stderr.splitlines() if "sensor amsr2: before training" in ln and "over open water" in ln]
    # a retrieval on them (with the model trained on them) says it too, and lists it at the end of its summary
    # and in its summary_TAG.json as a training run does (before: not in its summary)
    retrieve = ["--retrieve", "--modeltag", "t", "--tag", "r", "--no-classic", "--nepochs", "1", "--batchsize", "256"]
    r = run_cli(["--data", data, "--output", tmp_path / "out", *retrieve, *FAST[6:]])
    assert r.code == 0, r.stderr
    said = [ln.split(": ", 1)[1] for ln in r.stderr.splitlines() if "skin temperatures of its observations" in ln]
    assert len(said) == 1 and "its COMMON_IGRID may not index" in said[0], r.stderr
    assert f"  - {said[0]}" in r.stdout.splitlines(), r.stdout
    assert said[0] in json.loads((tmp_path / "out" / "summary_r.json").read_text())["run"]["warnings"]


# (id, flags of a second run over the good output set, fragments)
OVER_GOOD_CASES = [
    ("resume-other-lr", ["--resume", "--learning-rate", "2e-2"], ["--resume", "--learning-rate: 0.01 then, 0.02 now"]),
    (
        "resume-other-network-lr",
        ["--resume", "--network-learning-rate", "2e-3"],
        ["--resume", "--network-learning-rate:", "then, 0.002 now"],
    ),
    ("resume-other-period", ["--resume", "--nsteps", "2"], ["--resume", "another period (--stepstart/--nsteps"]),
    (
        "resume-other-sensors",
        ["--resume", "--sensors", "amsr2", "gmi"],
        ["--resume", "another sensors (--sensors)", "train without --resume"],
    ),
    (
        "resume-other-model",
        ["--resume", "--model", "v1", "--sensors", "amsr2", "gmi", "ssmisf17"],
        ["--resume", "another model (--model"],
    ),
    # another --model alone reads other files too (v1: AMSR2 only): the model is named, not the data
    ("resume-other-model-alone", ["--resume", "--model", "v1"], ["--resume", "another model (--model"]),
    ("resume-other-seed", ["--resume", "--seed", "3"], ["--resume", "another --seed: 0 then, 3 now"]),
    ("resume-other-batch", ["--resume", "--batchsize", "128"], ["--resume", "another --batchsize: 256 then, 128 now"]),
    # every training option that changes what is trained (before: accepted, the rest trained with the new
    # value, which alone was recorded; --map-priors from a mid-epoch checkpoint ended in a traceback)
    ("resume-other-lr-decay", ["--resume", "--lr-decay", "0.5"], ["another --lr-decay: 1.0 then, 0.5 now"]),
    (
        "resume-other-batch-order",
        ["--resume", "--batch-order", "reference-blocks"],
        ["another --batch-order: shuffled then, reference-blocks now"],
    ),
    ("resume-other-map-priors", ["--resume", "--map-priors", "sampled"], ["--resume", "another --map-priors"]),
    # a cost flag is named among the cost's (before: "cost configuration (--warm-ice, preset)" only)
    (
        "resume-other-smoothness",
        ["--resume", "--sic-smoothness", "0.05"],
        ["--resume", "another cost configuration (--warm-ice, --sic-background-error, --sic-smoothness"],
    ),
    ("resume-reproducible", ["--resume", "--reproducible"], ["another --reproducible: False then, True now"]),
    (
        "diverged-lr-1e6",
        ["--learning-rate", "1e6"],
        ["health check failed", "cost term obs exploded", "--force-outputs"],
    ),
]


@pytest.mark.parametrize("flags, fragments", [c[1:] for c in OVER_GOOD_CASES], ids=[c[0] for c in OVER_GOOD_CASES])
def test_second_run_over_good_set(twin, good_copy, untouched, flags, fragments):
    before = set_state(good_copy)
    r = run_cli(["--data", twin, "--output", good_copy, "--tag", TAG, "--nepochs", "2", *FAST, *flags])
    assert_one_line_error(r, *fragments)
    assert set_state(good_copy) == before
    assert leftovers(good_copy) == []


def test_a_held_lock_is_a_one_line_error(twin, good_copy, untouched):
    before = set_state(good_copy)
    lock = good_copy / f".lock_{TAG}"
    lock.write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename, "start": None, "time": "then"}))
    r = run_cli(["--data", twin, "--output", good_copy, "--tag", TAG, "--nepochs", "1", *FAST])
    assert_one_line_error(r, f"--tag {TAG}: another run (pid {os.getppid()}", "wait for it to finish or use another")
    assert lock.exists() and set_state(good_copy) == before


def test_resume_with_fewer_epochs_writes_the_trained_ones_and_records_them(twin, good_copy, untouched):
    """``--resume --nepochs N`` below the checkpoint's epochs (a long run stopped with Ctrl-C, then its
    outputs wanted now): no more training, a warning, and the files record the epochs the model has
    (before: the run's nepochs N, not the epochs trained)."""
    import torch

    r = run_cli(["--data", twin, "--output", good_copy, "--tag", TAG, "--nepochs", "0", *FAST, "--resume"])
    assert r.code == 0, r.stderr
    assert "--nepochs 0: checkpoint" in r.stderr and "has trained 1 epochs already: no more training" in r.stderr
    model = torch.load(good_copy / f"model_{TAG}.pt", weights_only=False)
    assert model["configs"]["training"]["nepochs"] == 1 and len(model["history"]["epoch_terms"]) == 1
