"""seaice-twin command, configuration validation and read_truth errors."""

import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from empirical_seaice.config import DataConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import read_training_data
from empirical_seaice.io.truth import read_truth
from empirical_seaice.twin import TwinConfig, generate_twin, get_twin_preset
from empirical_seaice.twin.cli import main


def test_cli_writes_a_twin_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "twin"
    rc = main(
        [
            "--output",
            str(out),
            "--preset",
            "tiny",
            "--days",
            "1",
            "--sensors",
            "gmi",
            "--seed",
            "4",
            "--hemisphere",
            "south",
            "--noise-scale",
            "0.5",
            "--start-date",
            "2020-09-01",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "gmi" in text and "1 days" in text
    cfg = (out / "truth" / "config.json").read_text()
    for piece in ('"hemisphere": "south"', '"seed": 4', '"noise_scale": 0.5', '"start_date": "2020-09-01"'):
        assert piece in cfg
    with netCDF4.Dataset(out / "gmi" / "field_twin_JULIAN_DAY.nc") as ds:
        jd = ds.variables["JULIAN_DAY"][:]
    # 2020-09-01's window: 21 UTC on 31 August (JD 2459093.375) to 21 UTC on 1 September
    assert jd.min() >= 2459093.375 and jd.max() < 2459094.375
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twin"]  # no partial directory left


def test_cli_refuses_a_non_empty_output(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("keep me")
    rc = main(["--output", str(tmp_path), "--preset", "tiny", "--days", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--output" in err and "not empty" in err and err.count("\n") == 1
    assert (tmp_path / "x.txt").read_text() == "keep me"


def test_cli_output_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("")
    assert main(["--output", str(f), "--preset", "tiny", "--days", "1"]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_cli_bad_date_is_one_line_error(tmp_path, capsys):
    assert main(["--output", str(tmp_path / "o"), "--preset", "tiny", "--start-date", "2020-13-01"]) == 2
    assert "--start-date" in capsys.readouterr().err


def test_cli_names_the_flag_not_the_config_field(tmp_path, capsys):
    assert main(["--output", str(tmp_path / "o"), "--preset", "tiny", "--resolution-km", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "seaice-twin: error: --resolution-km: expected 10 to 200 km, got 0.0"
    assert not (tmp_path / "o").exists()


def test_cli_unknown_preset_is_an_argparse_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["--output", str(tmp_path / "o"), "--preset", "huge"])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    "kwargs,flag",
    [
        ({"days": 0}, "--days"),
        ({"sensors": ()}, "--sensors"),
        ({"sensors": ("amsr2", "amsr2")}, "twice"),
        ({"sensors": ("mwhs2",)}, "--sensors: unknown sensor .mwhs2."),
        ({"keep_fraction": 0.0}, "keep_fraction"),
        ({"noise_scale": -1.0}, "--noise-scale"),
        ({"hemisphere": "up"}, "--hemisphere: expected one of north, south, both, got .up."),
    ],
)
def test_config_validation(kwargs, flag):
    with pytest.raises(SeaIceError, match=flag):
        TwinConfig(**kwargs)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(SeaIceError, match="tiny, demo, benchmark"):
        get_twin_preset("huge")


def test_presets_sizes():
    from empirical_seaice.twin import TWIN_PRESETS

    assert TWIN_PRESETS["demo"].days >= 30 and TWIN_PRESETS["benchmark"].days == 365


def test_overwrite_replaces_a_twin_and_nothing_else(tmp_path):
    """--overwrite replaces a twin (its truth/config.json) but refuses, deleting nothing, where the directory
    also holds what the twin did not write: a user's notes, a training run's outputs written into it, a stray
    file in a sensor's directory (it deleted them all)."""
    out = tmp_path / "o"
    cfg = get_twin_preset("tiny", days=1, sensors=("amsr2",))
    generate_twin(cfg, out)
    generate_twin(cfg, out, overwrite=True)  # the twin alone: replaced
    assert (out / "amsr2" / "field_twin_OBSVALUE.nc").is_file()
    for extra in ("notes.txt", ".lock_run", "amsr2/my_edit.nc", "cache/"):
        path = out / extra
        if extra.endswith("/"):
            path.mkdir()
        else:
            path.write_text("mine")
        before = sorted(p.relative_to(out) for p in out.rglob("*"))
        name = extra.rstrip("/")
        with pytest.raises(SeaIceError, match=rf"--overwrite: {out} holds what the twin did not write \({name}\)"):
            generate_twin(cfg, out, overwrite=True)
        assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing deleted
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    link = out / "seaice_run.nc"  # a training run's published name: a link into its .sets
    link.symlink_to(out / "truth" / "config.json")
    with pytest.raises(SeaIceError, match="seaice_run.nc"):
        generate_twin(cfg, out, overwrite=True)


# ------------------------------------------------------------------ read_truth
@pytest.fixture()
def twin_copy(tiny_twin, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(tiny_twin, out)
    return out


def _obs(out, **kw):
    return read_training_data(DataConfig(data=Path(out), sensors=("amsr2", "gmi"), cache=False, **kw), nlag=1)[0]


def test_read_truth_none_without_truth_dir(twin_copy):
    obs = _obs(twin_copy)
    shutil.rmtree(twin_copy / "truth")
    assert read_truth(twin_copy, obs) is None


def test_read_truth_selects_the_period_and_maps_channels(tiny_twin):
    obs = _obs(tiny_twin, stepstart=2, nsteps=3)
    full = _obs(tiny_twin)
    truth = read_truth(tiny_twin, obs)
    truth_full = read_truth(tiny_twin, full)
    np.testing.assert_array_equal(truth.sic, truth_full.sic[:, 2:5])
    assert truth.julian_day[0] == pytest.approx(obs.jd_origin + 2 + 0.875)
    # GMI has no 24h: NaN there; AMSR2 lacks 166v: NaN there; everything present is finite
    np.testing.assert_array_equal(np.isfinite(truth.emis_ice), obs.basis.present[obs.isensor])
    gmi = obs.basis.sensor_names.index("gmi")
    assert np.all(truth.bias_ice_k[gmi][obs.basis.present[gmi]] == 0.0)  # GMI is the unbiased anchor
    assert set(truth.properties) >= {"MYI_FRACTION", "SNOW_DEPTH", "CORR_LENGTH", "WETNESS", "T_ICE"}
    assert truth.properties["SNOW_DEPTH"].shape == (obs.ngrid, 3)
    # a run reads only what it scores and plots: the ice emissivity and the multi-year fraction
    lean = read_truth(tiny_twin, obs, per_obs=("EMIS_ICE",), properties=("MYI_FRACTION",))
    assert set(lean.properties) == {"MYI_FRACTION"} and lean.tb_noisefree is None
    np.testing.assert_array_equal(lean.properties["MYI_FRACTION"], truth.properties["MYI_FRACTION"])
    np.testing.assert_array_equal(lean.emis_ice, truth.emis_ice)


def test_read_truth_missing_state_file(twin_copy):
    obs = _obs(twin_copy)
    (twin_copy / "truth" / "truth_state.nc").unlink()
    with pytest.raises(SeaIceError, match="truth_state.nc is missing"):
        read_truth(twin_copy, obs)


def test_read_truth_unreadable_file(twin_copy):
    obs = _obs(twin_copy)
    (twin_copy / "truth" / "biases.nc").write_text("not netcdf")
    with pytest.raises(SeaIceError, match="biases.nc is not a readable NetCDF"):
        read_truth(twin_copy, obs)


def test_read_truth_missing_variable(twin_copy):
    obs = _obs(twin_copy)
    path = twin_copy / "truth" / "amsr2" / "truth_EMIS_ICE.nc"
    with netCDF4.Dataset(path, "a") as ds:
        ds.renameVariable("EMIS_ICE", "OTHER")
    with pytest.raises(SeaIceError, match="no variable 'EMIS_ICE'"):
        read_truth(twin_copy, obs)


def test_read_truth_grid_mismatch(tiny_twin):
    obs = _obs(tiny_twin)
    obs.ngrid = obs.ngrid + 1
    with pytest.raises(SeaIceError, match="grid points, the run has"):
        read_truth(tiny_twin, obs)


def test_read_truth_period_outside(tiny_twin):
    obs = _obs(tiny_twin)
    obs.stepstart = 4  # 6 steps from step 4: beyond the truth's 6 days
    with pytest.raises(SeaIceError, match="the run needs 4..9"):
        read_truth(tiny_twin, obs)


def test_read_truth_rows_beyond_the_truth(tiny_twin):
    obs = _obs(tiny_twin)
    obs.obs_index = obs.obs_index + 100000
    with pytest.raises(SeaIceError, match="does not belong to this data"):
        read_truth(tiny_twin, obs)


def test_failure_leaves_no_partial_output(tmp_path, monkeypatch):
    import empirical_seaice.twin.generate as gen

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gen, "write_truth", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_twin(get_twin_preset("tiny", days=1, sensors=("amsr2",)), tmp_path / "o")
    assert list(tmp_path.iterdir()) == []  # neither the twin nor its partial directory


def test_the_twin_never_removes_a_directory_of_the_user(tmp_path, capsys):
    """``NAME.partial`` beside the output is the user's (it was removed whatever it held), and
    ``--overwrite`` replaces a twin only (it emptied any directory); ``.``, a NaN noise, a negative seed,
    a year training cannot read and a mistyped --days are one-line errors (a traceback, a twin of NaN
    TBs, a twin training refuses, hours of work before)."""
    mine = tmp_path / "x.partial"
    mine.mkdir()
    (mine / "mine.txt").write_text("precious")
    assert main(["--output", str(tmp_path / "x"), "--preset", "tiny", "--days", "1", "--sensors", "amsr2"]) == 0
    assert (mine / "mine.txt").read_text() == "precious" and (tmp_path / "x" / "truth" / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x", "x.partial"]
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("important")
    capsys.readouterr()
    cases = [
        (["--output", str(notes), "--overwrite"], "--overwrite: " + str(notes) + " holds no twin"),
        (["--output", "."], "is the current directory"),
        (["--output", str(tmp_path / "n"), "--noise-scale", "nan"], "--noise-scale: must be a number >= 0"),
        (["--output", str(tmp_path / "n"), "--seed", "-5"], "--seed: must be >= 0"),
        (["--output", str(tmp_path / "n"), "--start-date", "1800-01-01"], "--start-date: expected a day of 1970"),
        (["--output", str(tmp_path / "n"), "--days", "100000"], "--days: expected 1 to 3660"),
    ]
    for argv, words in cases:
        assert main(["--preset", "tiny", "--days", "1", *argv]) == 2, argv  # the last --days wins
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, (argv, err)
    assert (notes / "notes.txt").read_text() == "important" and not (tmp_path / "n").exists()
    # --overwrite replaces a twin
    assert main(["--output", str(tmp_path / "x"), "--preset", "tiny", "--days", "1", "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "x", "x.partial"]


def test_every_sensor_alone_has_the_same_step_origin(tiny_twin):
    origins = {s: _obs_one(tiny_twin, s).jd_origin for s in ("amsr2", "gmi", "ssmisf17")}
    assert set(origins.values()) == {2459274.0}  # noon of 28 Feb 2021, the day before 2021-03-01


def _obs_one(out, sensor):
    return read_training_data(DataConfig(data=Path(out), sensors=(sensor,), cache=False), nlag=1)[0]
