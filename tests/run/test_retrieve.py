"""Retrieval with a trained model on the tiny twin (train on the first days,
retrieve on the last), and the run's products on the same trained model."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
import xarray as xr
from matplotlib import image as mpimg

from empirical_seaice.config import DataConfig, Preset, TrainingConfig, get_preset
from empirical_seaice.config.presets import DEFAULT_SIC_SMOOTHNESS_TIME
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import outputs as out
from empirical_seaice.io import transaction as txn
from empirical_seaice.run import train as pipeline
from empirical_seaice.run.model_file import configs_from_dict
from empirical_seaice.run.retrieve import FrozenModel, run_retrieval, transfer_trained_model

NTRAIN = 3  # days trained on; the twin has 4, the last one is retrieved


@pytest.fixture(scope="module")
def single_thread():
    # Under a loaded machine torch's intra-op threads spin and slow tiny ops 10x.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, single_thread):
    from empirical_seaice.twin import generate_twin, get_twin_preset

    root = tmp_path_factory.mktemp("retrieval")
    twin = root / "twin"
    generate_twin(get_twin_preset("tiny", sensors=("amsr2",), days=4, keep_fraction=0.08), twin)
    base = get_preset("v2")
    # range prior at v1's 0.02: with v2's reference 0.002 this short lr-0.02 run ends at SIC RMSE 0.073
    # instead of 0.035 (background 0.106; measured), the stiff prior against 0.02-sized Adam steps
    # and the default smoothness prior in time, as a run of the command line trains (starting_configuration)
    cost = replace(base.cost, sic_error=0.02, sic_smoothness_time_error=DEFAULT_SIC_SMOOTHNESS_TIME)
    preset = Preset(name="v2", model=replace(base.model, ice_emis_init=0.9), cost=cost, sensors=("amsr2",))
    tc = TrainingConfig(nepochs=15, batch_size=128, learning_rate=0.02, network_learning_rate=0.02, reproducible=True)
    output = root / "out"
    res = pipeline.run(
        DataConfig(data=twin, sensors=("amsr2",), nsteps=NTRAIN),
        preset,
        preset.cost,
        tc,
        output=output,
        tag="train",
        progress=False,
    )
    return twin, output, tc, res


def test_retrieval_beats_background_and_keeps_model_fixed(trained):
    twin, output, tc, res = trained
    # The trained model itself fits well (measured SIC RMSE 0.1064 -> 0.0350).
    assert res.truth.sic_rmse < 0.6 * res.truth.sic_rmse_background
    r = run_retrieval(DataConfig(data=twin, stepstart=NTRAIN), tc, output, "train", "ret", progress=False)
    t = r.truth
    assert r.obs.stepstart == NTRAIN and r.obs.nstep == 1
    # Measured on this twin: SIC RMSE background 0.1214 -> retrieved 0.0378 (ratio 0.31).
    assert t.sic_rmse < 0.5 * t.sic_rmse_background, (t.sic_rmse, t.sic_rmse_background)
    assert r.cost_after["obs"] < 0.5 * r.cost_before["obs"]
    ckpt = out.load_checkpoint(out.output_path(output, out.CHECKPOINT, "train"))
    sd = ckpt["state_dict"]
    net = r.network
    for name in (
        "emissivity.hidden.weight",
        "emissivity.hidden.bias",
        "emissivity.output.weight",
        "emissivity.output.bias",
        "wind_coef",
        "bias_ice_k",
        "bias_ocean_k",
    ):
        torch.testing.assert_close(net.state_dict()[name].cpu(), sd[name], rtol=0, atol=0)
    for stem in ("seaice", "properties_grid", "properties_obs", "tbsim", "tbsim_initial", "ice_emis", "tbobs"):
        assert out.output_path(output, stem, "ret").is_file()
    with xr.open_dataset(out.output_path(output, "seaice", "ret")) as ds:
        np.testing.assert_allclose(ds["seaice"].values, net.state.sic_array())
    assert "retrieval 'ret'" in r.summary and "SIC vs truth" in r.summary


def test_retrieval_takes_the_full_priors_and_the_smoothness_prior_of_training(trained):
    """Over two days a retrieval takes training's whole-map priors (auto: full on this small map) and with
    them the trained cost's smoothness prior; it was always fitted with the sampled priors and no
    smoothness (the tiny twin's example of docs/usage.md: SIC RMSE 0.0780 against 0.0555)."""
    twin, output, tc, _ = trained
    data = DataConfig(data=twin, stepstart=NTRAIN - 1)
    full = run_retrieval(data, tc, output, "train", "r2full", progress=False)
    sampled = run_retrieval(data, replace(tc, map_priors="sampled"), output, "train", "r2smp", progress=False)
    assert full.obs.nstep == 2 and full.network.prior_mode == "full" and sampled.network.prior_mode == "sampled"
    assert full.history.epoch_terms[-1]["sic_smoothness"] > 0.0
    assert "sic_smoothness" not in sampled.history.epoch_terms[-1]
    f, s = full.truth, sampled.truth
    assert f.sic_rmse_background == s.sic_rmse_background
    # measured: background 0.1019, sampled 0.0376, full (with smoothness) 0.0351
    assert f.sic_rmse < 0.96 * s.sic_rmse and f.sic_rmse < 0.4 * f.sic_rmse_background, (f.sic_rmse, s.sic_rmse)


def test_retrieval_errors(trained, tmp_path):
    twin, output, tc, _ = trained
    with pytest.raises(SeaIceError, match="must differ from --modeltag"):
        run_retrieval(DataConfig(data=twin), tc, output, "train", "train", progress=False)
    with pytest.raises(SeaIceError, match="no trained model"):
        run_retrieval(DataConfig(data=twin), tc, output, "nosuch", "ret2", progress=False)
    with pytest.raises(SeaIceError, match="does not exist"):
        run_retrieval(DataConfig(data=tmp_path / "none"), tc, output, "train", "ret2", progress=False)
    with pytest.raises(SeaIceError, match="stepstart"):
        run_retrieval(DataConfig(data=twin, stepstart=99), tc, output, "train", "ret3", progress=False)
    assert not (output / "cache_ret3").exists()
    # a --tag that holds another trained run: its model and set were replaced without a word (2026-12-05)
    other = tmp_path / "two_models"
    other.mkdir()
    for name in ("model_train.pt", "model_kept.pt"):
        shutil.copy(output / "model_train.pt", other / name)
    with pytest.raises(SeaIceError) as err:
        run_retrieval(DataConfig(data=twin, stepstart=NTRAIN), tc, other, "train", "kept", progress=False)
    assert str(err.value) == (
        f"--retrieve --tag kept: {other / 'model_kept.pt'} is a trained model, whose outputs a retrieval with model "
        "'train' would replace; choose a --tag that holds no trained model"
    )
    assert sorted(p.name for p in other.iterdir()) == ["model_kept.pt", "model_train.pt"]


def test_retrieval_rejects_foreign_checkpoints(trained, tmp_path):
    twin, output, tc, _ = trained
    ckpt = out.load_checkpoint(out.output_path(output, out.CHECKPOINT, "train"))
    bad = dict(ckpt, format=999)
    out.save_checkpoint(out.output_path(tmp_path, out.CHECKPOINT, "old"), bad)
    with pytest.raises(SeaIceError, match="checkpoint format 999"):
        run_retrieval(DataConfig(data=twin), tc, tmp_path, "old", "r", progress=False)
    # A checkpoint whose emissivity network has another width does not fit.
    configs = {**ckpt["configs"], "model": {**ckpt["configs"]["model"], "hidden": 5}}
    out.save_checkpoint(out.output_path(tmp_path, out.CHECKPOINT, "wide"), dict(ckpt, configs=configs))
    with pytest.raises(SeaIceError, match="does not fit the configuration"):
        run_retrieval(DataConfig(data=twin, stepstart=NTRAIN), tc, tmp_path, "wide", "r", progress=False)
    assert not (tmp_path / "cache_r").exists()


def test_losses_read_back_from_models_file(trained):
    from empirical_seaice.products.run_plots import read_losses

    _, output, _, res = trained
    epoch, batch = read_losses(output / "models_train.nc")
    np.testing.assert_allclose(epoch["obs"], [e["obs"] for e in res.history.epoch_terms])
    assert batch["obs"].size == res.history.batch_terms["obs"].size > epoch["obs"].size == 15


def test_transfer_v2_to_other_sensors_matches_by_name():
    from empirical_seaice.model.operator import HybridNetwork
    from empirical_seaice.observations import BackgroundMaps
    from empirical_seaice.sensors import build_channel_basis

    pre = get_preset("v2")
    bg = BackgroundMaps(sic=np.zeros((2, 3), np.float32), t_skin_map_k=np.full((2, 2), 260.0, np.float32), nlag=1)
    trained_basis = build_channel_basis(["amsr2", "ssmisf17"])
    src = HybridNetwork(pre.model, pre.cost, trained_basis, bg, 4)
    with torch.no_grad():
        src.wind_coef.copy_(torch.arange(src.wind_coef.numel(), dtype=torch.float32))
        src.bias_ice_k.fill_(7.0)
    new_basis = build_channel_basis(["gmi", "ssmisf17"])
    dst = HybridNetwork(pre.model, pre.cost, new_basis, bg, 5)
    counts = transfer_trained_model(dst, src.state_dict(), trained_basis)
    torch.testing.assert_close(dst.emissivity.hidden.weight, src.emissivity.hidden.weight)
    for j, c in enumerate(new_basis.channel_names):
        jt = trained_basis.channel_index.get(c)
        assert float(dst.wind_coef.detach()[j]) == (float(jt) if jt is not None else 0.0), c
    s_ssmis = new_basis.sensor_names.index("ssmisf17")
    present = new_basis.present[s_ssmis]
    assert torch.all(dst.bias_ice_k[s_ssmis, torch.from_numpy(present)] == 7.0)
    assert torch.all(dst.bias_ice_k[new_basis.sensor_names.index("gmi")] == 0.0)  # GMI's background
    assert counts["sensor_channels"] == int(present.sum())
    # 166v and 183+-3v/183+-7v are GMI-only here: no trained wind correction for them.
    assert counts["channels"] == sum(c in trained_basis.channel_index for c in new_basis.channel_names)


def test_transfer_v1_needs_trained_channels():
    from empirical_seaice.model.operator import HybridNetwork
    from empirical_seaice.observations import BackgroundMaps
    from empirical_seaice.sensors import build_channel_basis

    pre = get_preset("v1")
    bg = BackgroundMaps(sic=np.zeros((2, 3), np.float32), t_skin_map_k=np.full((2, 2), 260.0, np.float32), nlag=1)
    trained_basis = build_channel_basis(["amsr2"])
    src = HybridNetwork(pre.model, pre.cost, trained_basis, bg, 4)
    # Same channels: copied; the frozen wrapper hands the trainer no dense parameter.
    dst = HybridNetwork(pre.model, pre.cost, trained_basis, bg, 5)
    counts = transfer_trained_model(dst, src.state_dict(), trained_basis)
    assert counts == {"channels": 10, "sensor_channels": 10}
    torch.testing.assert_close(dst.emissivity.output.weight, src.emissivity.output.weight)
    frozen = FrozenModel(dst)
    assert frozen.dense_parameters() == [] and not dst.emissivity.output.weight.requires_grad
    gmi = build_channel_basis(["gmi"])
    cost = replace(pre.cost, anchor_channels=("10v",))
    other = HybridNetwork(pre.model, cost, gmi, bg, 5)
    with pytest.raises(SeaIceError, match="v1 model was trained on channels"):
        transfer_trained_model(other, src.state_dict(), trained_basis)


def test_cli_diagsonly_export_products(trained, capsys):
    """seaice-training --diagsonly --modeltag TAG --export --plots on the trained run."""
    from empirical_seaice.cli import main
    from empirical_seaice.io import read_training_data
    from empirical_seaice.products.export import NumpyEmissivityModel

    twin, output, tc, res = trained
    rc = main(
        [
            "--data",
            str(twin),
            "--output",
            str(output),
            "--diagsonly",
            "--modeltag",
            "train",
            "--tag",
            "diag",
            "--sensors",
            "amsr2",
            "--export",
            "--plots",
            "--no-progress",
        ]
    )
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    for name in (
        "emis_model_diag.nc",
        "emis_model_diag.onnx",
        "ice_emis_grid_diag.nc",
        "classic_sic_diag.nc",
        "seaice_filtered_diag.nc",  # a model not trained with --exact-reference: the open-water filter as asked
        "plots_diag/index.html",
        "plots_diag/map_sic.png",
        "plots_diag/spectra.png",
        "plots_diag/loss_epoch.png",
        "plots_diag/departures_stats.png",
        "plots_diag/map_ice_emis.png",
        "plots_diag/spectra_ice_types.png",
    ):
        assert (output / name).is_file(), name
    for png in (output / "plots_diag").glob("*.png"):
        assert mpimg.imread(png)[..., :3].std() > 0.02, png.name
    line = [ln.strip() for ln in printed.out.splitlines() if ln.strip().startswith("SIC RMSE vs truth")][0]
    vals = dict(part.split(" ", 1) for part in line.split(": ", 1)[1].split(", "))
    rmse = {k: float(v.split()[0]) for k, v in vals.items()}
    # Same scores as the training run's own (trained 0.0426, background 0.1135); the classic
    # algorithms measured 0.12-0.14 (NASA Team) and 0.07-0.08 (Bootstrap) on this twin.
    assert rmse["trained"] == pytest.approx(res.truth.sic_rmse, abs=1e-4)
    assert rmse["background"] == pytest.approx(res.truth.sic_rmse_background, abs=1e-4)
    assert 0.02 < rmse["nasa_team"] < 0.25 and 0.02 < rmse["bootstrap"] < 0.2
    # The exported numpy model reproduces the run's per-observation ice emissivity (ice_emis_diag.nc).
    ckpt = out.load_checkpoint(out.output_path(output, out.CHECKPOINT, "train"))
    data_cfg, model_cfg, _ = configs_from_dict(ckpt["configs"])
    obs, _bg = read_training_data(data_cfg, model_cfg.nlag, cache_dir=output / "cache")
    with xr.open_dataset(output / "properties_grid_train.nc") as ds:
        p_grid = ds["properties"].values
    with xr.open_dataset(output / "properties_obs_train.nc") as ds:
        q = ds["properties"].values
    with xr.open_dataset(output / "ice_emis_diag.nc") as ds:
        ice_emis = ds["ice_emis"].values
    props = np.concatenate([p_grid[obs.igrid, obs.istep], q], axis=1).astype(np.float64)
    m = NumpyEmissivityModel.from_file(output / "emis_model_diag.nc")
    e = m.emissivity_channels(np.asarray(obs.t_skin_k), props, sensor="amsr2")
    ok = np.isfinite(ice_emis)
    assert ok.sum() > 1000
    np.testing.assert_allclose(e[ok], ice_emis[ok], atol=2e-6)


def facts_period_end(output, tag: str) -> str:
    """The last day of the run ``tag``'s period, as its summary says."""
    return json.loads((output / f"summary_{tag}.json").read_text())["run"]["period_end"]


def test_cli_retrieve(trained, capsys):
    from empirical_seaice.cli import main

    twin, output, tc, _ = trained
    rc = main(
        [
            "--retrieve",
            "--modeltag",
            "train",
            "--data",
            str(twin),
            "--stepstart",
            str(NTRAIN),
            "--output",
            str(output),
            "--tag",
            "ret_cli",
            "--nepochs",
            "2",
            "--batchsize",
            "128",
            "--no-progress",
            "--export",
        ]
    )
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    # the export describes the model's training (its period, data and run), not the retrieval's day (before:
    # training_period_* of the retrieved day, the retrieval's data and observations)
    trained_facts = json.loads((output / "summary_train.json").read_text())["run"]
    with xr.open_dataset(output / "emis_model_ret_cli.nc") as ds:
        attrs = dict(ds.attrs)
    assert attrs["training_period_start"] == trained_facts["period_start"]
    assert attrs["training_period_end"] == trained_facts["period_end"] != facts_period_end(output, "ret_cli")
    assert attrs["run_tag"] == "train" and attrs["nsteps"] == NTRAIN and attrs["nobs"] == trained_facts["nobs"]
    # and so does the gridded emissivity's (the trained model's emissivity on the retrieved days: its time axis)
    with xr.open_dataset(output / "ice_emis_grid_ret_cli.nc") as ds:
        attrs = dict(ds.attrs)
        days = ds["time"].values
    assert attrs["training_period_start"] == trained_facts["period_start"]
    assert attrs["training_period_end"] == trained_facts["period_end"] < str(days[0])[:10]
    assert "retrieval 'ret_cli' with trained model 'train'" in printed.out
    assert "SIC vs truth" in printed.out
    assert (output / "seaice_ret_cli.nc").is_file() and (output / "properties_grid_ret_cli.nc").is_file()
    # the summary beside the outputs, as a training run writes it (a retrieval wrote none)
    assert (output / "summary_ret_cli.txt").read_text() == printed.out
    summary = json.loads((output / "summary_ret_cli.json").read_text())
    facts = summary["run"]
    assert facts["mode"] == "retrieval with the trained model 'train'" and facts["tag"] == "ret_cli"
    assert facts["epochs"] == 2 and facts["stepstart"] == NTRAIN and facts["output"] == str(output)
    # the priors the fit took, as a training run's summary names them (null before 2026-12-05), and in its title
    assert facts["whole_map_priors"].startswith("full whole-map priors (--map-priors auto: "), facts
    assert "\n  " + facts["whole_map_priors"] + "\n" in printed.out
    rmse = float(printed.out.split("RMSE background")[1].split("->")[1].split()[1].rstrip(";"))
    assert summary["truth"]["sic_rmse"]["trained"] == pytest.approx(rmse, abs=5e-5)
    # and the classic algorithms' scores, as a training run's summary_TAG.json has them (a retrieval's had not)
    classic = printed.out.split("SIC RMSE vs truth (")[1].splitlines()[0]
    nasa = float(classic.split("nasa_team ")[1].split()[0])
    assert set(summary["classic_sic_rmse"]) == {"nasa_team", "bootstrap"}
    assert summary["classic_sic_rmse"]["nasa_team"]["rmse"] == pytest.approx(nasa, abs=5e-5)
    assert {"summary_ret_cli.txt", "summary_ret_cli.json"} <= set(txn.read_manifest(output, "ret_cli")["files"])


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--retrieve"], "--retrieve: give the trained model with --modeltag"),
        (["--retrieve", "--modeltag", "train", "--diagsonly"], "--diagsonly does not apply"),
        # (with a flag --diagsonly does not use, its warning came before the error: two lines)
        (["--retrieve", "--modeltag", "train", "--diagsonly", "--nepochs", "3"], "--diagsonly does not apply"),
        (["--grid-channels", "183pm7v"], "--grid-channels: 183pm7v not among"),
        (["--grid-channels", "10v", "--grid-freqs", "10"], "give at most one"),
        (["--grid-freqs", "ten"], "--grid-freqs: expected frequencies in GHz"),
        (["--grid-freqs", "1000"], "expected frequencies in 1..400 GHz"),
        (["--model", "v1", "--grid-freqs", "10"], "v1 model has per-channel outputs"),
        (["--plots", "--plot-day", "-1"], "--plot-day: expected a step >= 0"),
        # a flag the run would drop without a word
        (["--plot-day", "3"], "--plot-day: applies only with --plots"),
        (["--no-gridded", "--grid-channels", "10v"], "--grid-channels: configures the gridded product"),
        (["--no-gridded", "--grid-freqs", "50"], "--grid-freqs: configures the gridded product"),
        (["--retrieve", "--modeltag", "train", "--optimizer", "dense-adam"], "--retrieve: --optimizer does not apply"),
        (["--retrieve", "--modeltag", "train", "--sic-smoothness-time", "off"], "--sic-smoothness-time does not"),
        # the cost comes from the model file; the product flags hold for a retrieval too (before: accepted,
        # and dropped without a word)
        (["--retrieve", "--modeltag", "train", "--emis-ceiling", "off"], "--retrieve: --emis-ceiling does not apply"),
        # (it switched the retrieval to v2's reference batch and rate, whatever the model: SIC RMSE 0.037 -> 0.096)
        (["--retrieve", "--modeltag", "train", "--exact-reference"], "--retrieve: --exact-reference does not apply"),
        (["--retrieve", "--modeltag", "train", "--plot-day", "3"], "--plot-day: applies only with --plots"),
        (
            ["--retrieve", "--modeltag", "train", "--no-gridded", "--grid-channels", "10v"],
            "--grid-channels: configures the gridded product",
        ),
        (["--validation-fraction", "0", "--patience", "3"], "--patience: applies only with early stopping"),
        (["--exact-reference", "--plateau-cuts", "2"], "--plateau-cuts: applies only with early stopping"),
        (["--no-early-stopping", "--patience", "2"], "--patience: applies only with early stopping"),
        (["--exact-reference", "--no-region-stopping"], "--region-stopping: applies only with early stopping"),
        (["-q", "-v"], "not allowed with argument"),
    ],
)
def test_cli_product_flag_errors(tmp_path, capsys, extra, message):
    from empirical_seaice.cli import main

    rc = main(["--data", str(tmp_path), "--output", str(tmp_path / "o"), "--sensors", "amsr2", *extra])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o").exists()


def test_a_retrievals_product_flags_are_checked_before_it_reads_anything(trained, capsys):
    """A retrieval's channels are the model's (or --sensors'): a --grid-channels outside them was refused only
    at the gridded product, after the whole fit, without naming the flag, and left the retrieval's cache."""
    from empirical_seaice.cli import main

    twin, output, _, _ = trained
    before = sorted(p.name for p in output.iterdir())
    argv = ["--data", str(twin), "--output", str(output), "--retrieve", "--modeltag", "train", "--tag", "bad",
            "--stepstart", str(NTRAIN), "--no-progress"]  # fmt: skip
    for extra in (["--grid-channels", "166v"], ["--sensors", "amsr2", "--grid-channels", "89v", "183pm1h"]):
        assert main([*argv, *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"seaice-training: error: --grid-channels: {extra[-1]} not "), err
        assert "not among the run's channels (10v, 10h, 19v, 19h, 24v, 24h, 37v, 37h, 89v, 89h)" in err[0], err
    assert sorted(p.name for p in output.iterdir()) == before  # no cache_bad, no file of the tag


def test_frozen_model_fulfils_the_trainer_contract(trained):
    """The frozen model hands the trainer the rows a batch reads and computes with the rows it is
    given, so a retrieval takes training's optimiser path (catch-up before the forward pass). On
    the tiny twin, the old frozen model without state_rows (catch-up after the gradient) retrieved
    SIC RMSE 0.0668 against 0.0592 with it (the example of docs/usage.md, "Products", 15 epochs, before the
    retrieval took the full priors)."""
    from empirical_seaice.training.contract import TrainableNetwork, check_network

    twin, output, tc, res = trained
    r = run_retrieval(DataConfig(data=twin, stepstart=NTRAIN), replace(tc, nepochs=1), output, "train", "c1")
    net = r.network
    frozen = FrozenModel(net)
    assert check_network(frozen) is frozen and isinstance(frozen, TrainableNetwork)
    assert frozen.reads_state_values and frozen.sparse
    from empirical_seaice.model.tensors import ObservationTensors

    batch = ObservationTensors(r.obs).batch(torch.arange(5))
    rows = frozen.state_rows(batch)
    assert [p for p, _ in rows] == net.sparse_parameters()
    for (_, a), (_, b) in zip(rows, net.state_rows(batch), strict=True):
        assert torch.equal(a, b)
    values = [p[i] for p, i in rows]
    torch.testing.assert_close(frozen(batch, state_values=values)["tb"], net(batch)["tb"], rtol=0, atol=0)


def test_a_retrieval_on_a_map_too_large_for_the_full_priors_never_builds_them(trained, monkeypatch):
    """--map-priors auto on a map above the full priors' limit: the retrieval takes the sampled priors
    without building the full priors' program first (the frozen model showed the trainer no SIC map,
    so "auto" built the whole-map neighbour lists and discarded them: on the benchmark twin 530 MB more
    at the retrieval's peak, 2.9 GiB; the limit is lowered here to the tiny twin's map)."""
    from empirical_seaice.config import schema
    from empirical_seaice.model.operator import HybridNetwork
    from empirical_seaice.training.schemes import _sic_rows

    twin, output, tc, _ = trained
    monkeypatch.setattr(schema, "FULL_PRIORS_MAX_SIC_ROWS", 10)
    modes = []
    pairs = HybridNetwork.smoothness_pairs
    monkeypatch.setattr(HybridNetwork, "smoothness_pairs", lambda self: modes.append(self.prior_mode) or pairs(self))
    r = run_retrieval(DataConfig(data=twin, stepstart=NTRAIN), tc, output, "train", "big", progress=False)
    assert r.network.prior_mode == "sampled" and "sic_smoothness" not in r.history.epoch_terms[-1]
    assert "full" not in modes
    assert _sic_rows(FrozenModel(r.network)) == r.network.state.sic_map.weight.shape[0] > 10
    assert r.truth.sic_rmse < 0.6 * r.truth.sic_rmse_background  # it still retrieves


def test_a_retrieval_shows_its_stages_as_a_training_run_does(trained, monkeypatch):
    """The command line's retrieval shows (and logs at -v) its stages on the run's one display, as a
    training run does, its products' included: it showed the trainer's batches alone, and the stage
    table of benchmarks/run_stages.py put every second of it under "training" or "other"."""
    from empirical_seaice.cli import main
    from empirical_seaice.training.runtime import RunProgress

    twin, output, _, _ = trained
    shown = []
    stage = RunProgress.stage
    monkeypatch.setattr(RunProgress, "stage", lambda self, name: shown.append(name) or stage(self, name))
    args = ["--retrieve", "--modeltag", "train", "--data", twin, "--stepstart", NTRAIN, "--output", output]
    assert main([str(a) for a in [*args, "--tag", "stages", "--nepochs", "1", "--no-progress", "-q"]]) == 0
    steps = [s for s in shown if not s.startswith(("training", "products"))]
    assert steps == ["reading data", "packing observations", "initial diagnostics", "diagnostics", "publishing", "done"]
    assert any(s.startswith("training") for s in shown[3:]) and "products: classic SIC" in shown
    assert shown.index("products: classic SIC") > shown.index("diagnostics")


def test_a_signal_in_a_retrieval_stops_it_with_the_signals_status_and_publishes_nothing(trained, capsys, monkeypatch):
    """SIGTERM during a retrieval's fit (its trainer polls the run's requested stop at each step): the run
    stops after that step with exit status 143, one line naming the retrieval's epoch and step, and no file
    of its tag. Before, the line said 'no checkpoint directory' and the status was 130 (SIGINT's)."""
    from empirical_seaice.cli import main
    from empirical_seaice.run import interrupt

    twin, output, _, _ = trained
    polls = iter([None] * 5 + ["SIGTERM"] * 100)  # 4 step boundaries an epoch of 5: the 6th is after epoch 2 step 2
    monkeypatch.setattr(interrupt, "requested", lambda: next(polls))
    argv = ["--retrieve", "--modeltag", "train", "--data", str(twin), "--stepstart", str(NTRAIN), "--output",
            str(output), "--tag", "ret_sig", "--nepochs", "5", "--batchsize", "128", "--no-progress"]  # fmt: skip
    assert main(argv) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("seaice-training: interrupted by SIGTERM in the retrieval's epoch "), err
    assert re.fullmatch(r".*epoch 2, after step 2 of 5; it keeps no checkpoint", err[-1]), err[-1]
    assert not list(output.glob("*ret_sig*")) and not (output / ".sets" / "ret_sig").exists()
