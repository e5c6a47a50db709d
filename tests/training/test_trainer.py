"""Trainer mechanics on the toy network: lazy Adam by hand, books, validation,
early stopping, reproducibility, checkpoints and resume, errors."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from training_toy import ToyData, ToyNetwork, build, make_toy

from empirical_seaice.config import TrainingConfig, replace
from empirical_seaice.errors import RunInterrupted, SeaIceError
from empirical_seaice.training.deferred_adam import ADAM_EPS, DeferredAdam
from empirical_seaice.training.history import TrainingHistory
from empirical_seaice.training.regions import Region
from empirical_seaice.training.runtime import make_generator, resolve_device, split_observations
from empirical_seaice.training.trainer import CHECKPOINT_NAME, Trainer

B1, B2, LR = 0.9, 0.999, 1e-3


def _adam_move(grads: list[float], steps: list[int]) -> float:
    """|total move| of one scalar under Adam (eps after bias correction) given
    its gradient at each step (0 = untouched) and the global step numbers."""
    m = v = 0.0
    move = 0.0
    for g, t in zip(grads, steps, strict=True):
        m = B1 * m + (1 - B1) * g
        v = B2 * v + (1 - B2) * g * g
        move += LR * (m / (1 - B1**t)) / (math.sqrt(v / (1 - B2**t)) + ADAM_EPS)
    return abs(move)


def _two_obs_case(optimizer: str):
    row = np.array([0, 1, 3])  # row 3 exists only to size the table; not trained on
    x = np.zeros(3)
    y = np.array([1.0, -2.0, 0.0])
    net = ToyNetwork(4, np.array([1, 1, 0, 0]), sparse=optimizer != "dense-adam")
    cfg = TrainingConfig(nepochs=1, batch_size=1, optimizer=optimizer, seed=3)
    trainer = Trainer(net, ToyData(row, x, y), cfg, np.array([0, 1]), None, nobs_total=2, progress=False)
    trainer.fit()
    return net.table.weight.detach().double().numpy()[:, 0], trainer


@pytest.mark.parametrize("optimizer", ["deferred-adam", "sparse-adam", "dense-adam"])
def test_adam_moves_by_hand(optimizer):
    """Two steps, one observation each on rows 0 and 1. Gradient of the touched
    row at a = 0 is -2 y (the prior's is 0 there). Lazy Adam (torch SparseAdam)
    moves the first row once (step 1) and the second once (step 2, global bias
    correction); dense Adam moves the first row again at step 2 on momentum, and
    so does the deferred-momentum scheme ("deferred-adam") once flushed at epoch end."""
    a, trainer = _two_obs_case(optimizer)
    # which observation came first: the permutation of the run's generator
    first = int(torch.randperm(2, generator=make_generator(3))[0])
    second = 1 - first
    y = {0: 1.0, 1: -2.0}
    g_first, g_second = -2 * y[first], -2 * y[second]
    if optimizer == "sparse-adam":
        exp_first = _adam_move([g_first], [1])
    else:
        exp_first = _adam_move([g_first, 0.0], [1, 2])
        assert exp_first == pytest.approx(LR * (1 + 0.9 * 0.1 / 0.19 / math.sqrt(0.999 * 0.001 / 0.001999)), rel=1e-5)
    exp_second = _adam_move([g_second], [2])
    assert a[first] * np.sign(y[first]) == pytest.approx(exp_first, rel=1e-5)
    assert a[second] * np.sign(y[second]) == pytest.approx(exp_second, rel=1e-5)
    assert exp_second == pytest.approx(LR * (0.1 / 0.19) / math.sqrt(0.001 / 0.001999), rel=1e-6)
    assert a[2] == 0.0 and a[3] == 0.0  # never observed: never moved


def test_history_books():
    row, x, y = make_toy(nobs=600)
    net, data = build(row, x, y)
    cfg = TrainingConfig(nepochs=3, batch_size=128, seed=0)
    hist = Trainer(net, data, cfg, np.arange(600), None, 600, progress=False).fit()
    assert hist.nepochs == 3
    assert hist.terms == ("obs", "prior", "total")
    nb = 5  # ceil(600 / 128)
    assert hist.batch_size.tolist() == [128, 128, 128, 128, 88] * 3
    for name in hist.terms:
        assert hist.batch_terms[name].shape == (3 * nb,)
    np.testing.assert_allclose(
        hist.batch_terms["total"], hist.batch_terms["obs"] + hist.batch_terms["prior"], rtol=1e-6
    )
    for e in range(3):
        sl = slice(e * nb, (e + 1) * nb)
        w = hist.batch_size[sl]
        for name in hist.terms:
            assert hist.epoch_terms[e][name] == pytest.approx(np.sum(hist.batch_terms[name][sl] * w) / 600, rel=1e-12)
    # the cost falls: epoch 3 below epoch 1
    assert hist.epoch_terms[2]["total"] < hist.epoch_terms[0]["total"]
    assert hist.valid_cost == [] and hist.best_epoch is None and not hist.stopped_early
    assert hist.obs_per_s > 0 and len(hist.epoch_obs_per_s) == 3 and hist.wall_time_s >= sum(hist.epoch_wall_s)
    assert len(hist.epoch_cpu_s) == 3 and all(c > 0 for c in hist.epoch_cpu_s)


def test_progress_bar_on_stderr(capsys):
    row, x, y = make_toy(nobs=200)
    net, data = build(row, x, y)
    Trainer(net, data, TrainingConfig(nepochs=1, batch_size=50), np.arange(200), None, 200, progress=True).fit()
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "J/nobs=" in err


def test_split_observations():
    tr, va = split_observations(1000, 0.2, make_generator(5))
    assert len(va) == 200 and len(tr) == 800
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(1000))
    tr2, va2 = split_observations(1000, 0.2, make_generator(5))
    assert np.array_equal(va, va2)
    _, va3 = split_observations(1000, 0.2, make_generator(6))
    assert not np.array_equal(va, va3)
    perm = torch.randperm(1000, generator=make_generator(5)).numpy()  # the halves of the generator's permutation
    assert va.tolist() == sorted(perm[:200].tolist()) and tr.tolist() == sorted(perm[200:].tolist())
    assert tr.dtype == va.dtype == np.int64
    tr0, va0 = split_observations(7, 0.0, make_generator(5))
    assert va0 is None and tr0.tolist() == list(range(7))
    with pytest.raises(SeaIceError, match="leaving none to train on"):
        split_observations(2, 0.9, make_generator(0))


def _conflict_case(patience=1, nepochs=6):
    """Held-out observations of the same rows with the opposite sign: training
    pulls the rows away from them, so the held-out cost rises from epoch 1."""
    nrow = 10
    rng = np.random.default_rng(0)
    row = np.concatenate([np.repeat(np.arange(nrow), 20), np.arange(nrow)])
    y = np.concatenate([np.full(200, 3.0), np.full(nrow, -3.0)])
    x = rng.normal(size=row.size)
    train, valid = np.arange(200), np.arange(200, 210)
    net, data = build(row, x, y, train_index=train)
    return net, data, _stopping_config(nepochs, patience=patience), train, valid


def _stopping_config(nepochs: int, **kw) -> TrainingConfig:
    """Batch 40, step 0.05, early stopping on the held-out observations, reproducible."""
    return TrainingConfig(
        nepochs=nepochs,
        batch_size=40,
        learning_rate=0.05,
        validation_fraction=0.05,
        early_stopping=True,
        reproducible=True,
        **kw,
    )


def test_validation_and_early_stopping_restores_best():
    net, data, cfg, train, valid = _conflict_case(patience=2)
    trainer = Trainer(net, data, cfg, train, valid, 200, progress=False)
    hist = trainer.fit()
    assert hist.best_epoch == 0
    assert hist.stopped_early and hist.nepochs == 3  # epoch 1 best, 2 and 3 worse -> stop
    assert hist.valid_cost[0] < hist.valid_cost[1] < hist.valid_cost[2]
    # the held-out cost is the mean J_o of the held-out observations, now at the best epoch
    with torch.no_grad():
        b = data.batch(torch.as_tensor(valid))
        mean_jo = float((((b["y"] - net(b)["tb"]) / net.sigma_o) ** 2).double().mean())
    assert mean_jo == pytest.approx(hist.valid_cost[0], rel=1e-6)
    # and the parameters equal those of a 1-epoch run
    net1, data1, cfg1, _, _ = _conflict_case(nepochs=1)
    Trainer(net1, data1, cfg1, train, valid, 200, progress=False).fit()
    for (k, v), (_, v1) in zip(net.state_dict().items(), net1.state_dict().items(), strict=True):
        assert torch.equal(v, v1), k


def test_each_region_held_out_cost_is_booked_beside_the_whole():
    """Regions (a global grid's hemispheres) splitting the held-out observations: each one's cost per
    epoch is its observations' mean J_o, the whole's their weighted mean (to float32 rounding), the
    whole's values and the stopping as without regions; a region without observations is left out."""
    net, data, cfg, train, valid = _conflict_case(patience=2)
    plain = Trainer(net, data, cfg, train, valid, 200, progress=False).fit()
    net, data, cfg, train, valid = _conflict_case(patience=2)
    parts = {"north": valid[::3], "south": np.setdiff1d(valid, valid[::3]), "none": valid[:0]}
    regions = {name: Region(ix) for name, ix in parts.items()}  # no grid points: booked only
    hist = Trainer(net, data, cfg, train, valid, 200, progress=False, valid_regions=regions).fit()
    assert hist.valid_cost == plain.valid_cost and hist.nepochs == plain.nepochs == 3
    assert list(hist.valid_cost_regions) == ["north", "south"]
    n, s = len(parts["north"]), len(parts["south"])
    for epoch in range(3):
        north, south = hist.valid_cost_regions["north"][epoch], hist.valid_cost_regions["south"][epoch]
        assert (n * north + s * south) / (n + s) == pytest.approx(hist.valid_cost[epoch], rel=1e-6)
    with torch.no_grad():  # the kept (best) epoch's parameters: the north's cost of epoch 1 by hand
        b = data.batch(torch.as_tensor(parts["north"]))
        mean_jo = float((((b["y"] - net(b)["tb"]) / net.sigma_o) ** 2).double().mean())
    assert mean_jo == pytest.approx(hist.valid_cost_regions["north"][0], rel=1e-6)
    again = TrainingHistory.from_state(hist.to_state())  # a checkpoint keeps them
    assert again.valid_cost_regions == hist.valid_cost_regions


def _regions_case(nepochs=8, region_stopping=True, checkpoint_dir=None):
    """Two regions of five rows each, trained towards 3: the north's held-out observations say -3 (its
    held-out cost rises from epoch 2), the south's three times as many say 3 (it falls throughout)."""
    rng = np.random.default_rng(0)
    row = np.concatenate([np.repeat(np.arange(10), 20), np.arange(5), np.repeat(np.arange(5, 10), 3)])
    y = np.concatenate([np.full(200, 3.0), np.full(5, -3.0), np.full(15, 3.0)])
    train, valid = np.arange(200), np.arange(200, 220)
    net, data = build(row, rng.normal(size=row.size), y, train_index=train)
    regions = {
        "north": Region(valid[:5], np.arange(5), np.arange(0)),
        "south": Region(valid[5:], np.arange(5, 10), np.arange(0)),
    }
    cfg = _stopping_config(nepochs, region_stopping=region_stopping)
    return Trainer(
        net, data, cfg, train, valid, 200, progress=False, valid_regions=regions, checkpoint_dir=checkpoint_dir
    )


def test_a_region_whose_cost_rose_is_held_at_its_best_epoch_while_the_other_trains(tmp_path):
    """The north's held-out cost rises at epoch 2 (patience 1): its rows go back to epoch 1's, those of a
    run of one epoch, bit for bit, and stay there; the south trains all 8 epochs, so the whole's held-out
    cost ends at 3.85 instead of stopping at 6.65 (epoch 6) with the north over-fitted (22.1, not 12.1).
    Resumed from a checkpoint of epoch 1 (the copy of the north's rows in it) or of epoch 3 (the north
    held), the run is the same."""
    one = _regions_case(1)
    one.fit()
    held = _regions_case()
    h = held.fit()
    assert h.region_held == {"north": 1} and h.nepochs == 8 and h.best_epoch == 7
    north = held.network.table.weight[:5, 0].detach()
    assert torch.equal(north, one.network.table.weight[:5, 0].detach())
    assert held.network.table.weight[5:, 0].min().item() > 1.6 > one.network.table.weight[5:, 0].max().item()
    assert h.valid_cost[-1] == pytest.approx(3.85, abs=0.01)
    assert max(h.valid_cost_regions["north"]) < 12.5
    plain = _regions_case(region_stopping=False)
    hp = plain.fit()
    assert hp.region_held == {} and hp.stopped_early and hp.best_epoch == 5
    assert hp.valid_cost[5] == pytest.approx(6.65, abs=0.01) and hp.valid_cost_regions["north"][-1] > 22
    assert plain.network.table.weight[:5, 0].min().item() > 1.2
    for epochs in (1, 3):
        _regions_case(epochs, checkpoint_dir=tmp_path / str(epochs)).fit()
        resumed = _regions_case(checkpoint_dir=tmp_path / str(epochs))
        hr = resumed.fit(resume=True)
        assert hr.region_held == h.region_held and hr.valid_cost == h.valid_cost
        assert torch.equal(resumed.network.table.weight, held.network.table.weight)


def test_early_stopping_copies_the_best_state_only_when_another_epoch_trains(tmp_path):
    """The best epoch's parameters are copied only when an epoch is about to change them: after the
    last epoch (here the best) the trainer holds no copy, and its checkpoint says the network is the
    best state; resumed for more epochs, the run equals one that was never interrupted."""
    net, data, cfg, train, valid = _conflict_case(patience=2, nepochs=1)
    trainer = Trainer(net, data, cfg, train, valid, 200, checkpoint_dir=tmp_path, progress=False)
    hist = trainer.fit()
    assert hist.best_epoch == 0 and trainer._best_state is None and trainer._best_is_current
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["best_state"] is None and state["best_is_current"] is True
    # more epochs from that checkpoint: epochs 2 and 3 are worse, the best (epoch 1) is restored
    again, adata, cfg6, _, _ = _conflict_case(patience=2, nepochs=6)
    resumed = Trainer(again, adata, cfg6, train, valid, 200, checkpoint_dir=tmp_path, progress=False)
    hres = resumed.fit(resume=True)
    whole, wdata, _, _, _ = _conflict_case(patience=2, nepochs=6)
    hwhole = Trainer(whole, wdata, cfg6, train, valid, 200, progress=False).fit()
    assert hres.stopped_early and hres.nepochs == hwhole.nepochs == 3 and hres.valid_cost == hwhole.valid_cost
    for (k, v), (_, w) in zip(again.state_dict().items(), whole.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
    for (k, v), (_, w) in zip(again.state_dict().items(), net.state_dict().items(), strict=True):
        assert torch.equal(v, w), k  # the restored state is epoch 1's
    assert resumed._best_state is not None and not resumed._best_is_current  # copied as epoch 2 started


def test_early_stopping_copies_each_better_epoch_into_one_copy():
    """Held-out observations between the start and the training's target: the held-out cost falls for five
    epochs, then rises. Each better epoch's copy is made into the previous copy's tensors (no new memory
    an epoch), and the restored parameters are those of a five-epoch run without early stopping."""

    def case(nepochs, early_stopping):
        nrow = 10
        row = np.concatenate([np.repeat(np.arange(nrow), 20), np.arange(nrow)])
        y = np.concatenate([np.full(200, 3.0), np.full(nrow, 1.0)])
        x = np.random.default_rng(0).normal(size=row.size)
        net, data = build(row, x, y, train_index=np.arange(200))
        cfg = TrainingConfig(
            nepochs=nepochs, batch_size=40, learning_rate=0.02, network_learning_rate=0.02,
            validation_fraction=0.05, early_stopping=early_stopping, patience=2, reproducible=True,
        )  # fmt: skip
        return net, Trainer(net, data, cfg, np.arange(200), np.arange(200, 210), 200, progress=False)

    net, trainer = case(12, True)
    copies = []
    keep = trainer._keep_best

    def spied() -> None:
        copying = trainer._best_is_current
        keep()
        if copying:
            assert trainer._best_state is not None
            copies.append({k: v.data_ptr() for k, v in trainer._best_state.items()})

    trainer._keep_best = spied
    hist = trainer.fit()
    assert hist.best_epoch == 4 and hist.stopped_early and hist.nepochs == 7
    assert hist.valid_cost[:5] == sorted(hist.valid_cost[:5], reverse=True) and hist.valid_cost[5] > hist.valid_cost[4]
    # copies at the starts of epochs 2-6 (after each better epoch): the first made, the next four into it
    assert len(copies) == 5 and all(ptrs == copies[0] for ptrs in copies)
    assert trainer._spare_best is None  # nothing kept beside the network once training ends
    net5, trainer5 = case(5, False)
    trainer5.fit()
    for (k, v), (_, w) in zip(net.state_dict().items(), net5.state_dict().items(), strict=True):
        assert torch.equal(v, w), k


def _run(nepochs, tmp_path=None, resume=False, seed=0, net_data=None):
    row, x, y = make_toy(nobs=500)
    net, data = net_data if net_data is not None else build(row, x, y)
    cfg = TrainingConfig(nepochs=nepochs, batch_size=64, seed=seed, reproducible=True, learning_rate=0.01)
    trainer = Trainer(net, data, cfg, np.arange(500), None, 500, checkpoint_dir=tmp_path, progress=False)
    hist = trainer.fit(resume=resume)
    return net, hist, (net, data)


def test_reproducible_runs_are_bitwise_equal():
    a, ha, _ = _run(2)
    b, hb, _ = _run(2)
    c, _, _ = _run(2, seed=1)
    for k in a.state_dict():
        assert torch.equal(a.state_dict()[k], b.state_dict()[k]), k
    assert np.array_equal(ha.batch_terms["total"], hb.batch_terms["total"])
    assert not torch.equal(a.table.weight, c.table.weight)  # the seed matters


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    full, hfull, _ = _run(3)
    _, h1, _ = _run(1, tmp_path)
    ck = tmp_path / CHECKPOINT_NAME
    assert ck.is_file() and [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]  # no temp file left
    state = torch.load(ck, weights_only=True)
    assert state["epoch"] == 1
    # a fresh network and trainer resume from the checkpoint
    resumed, hres, _ = _run(3, tmp_path, resume=True)
    for k in full.state_dict():
        assert torch.equal(full.state_dict()[k], resumed.state_dict()[k]), k
    assert hres.nepochs == 3
    np.testing.assert_array_equal(hres.batch_terms["total"], hfull.batch_terms["total"])
    assert TrainingHistory.from_state(hres.to_state()).epoch_terms == hres.epoch_terms


def test_resume_errors(tmp_path):
    row, x, y = make_toy(nobs=100)
    net, data = build(row, x, y)
    cfg = TrainingConfig(nepochs=1, batch_size=32)
    with pytest.raises(SeaIceError, match="no checkpoint at"):
        Trainer(net, data, cfg, np.arange(100), None, 100, checkpoint_dir=tmp_path, progress=False).fit(resume=True)
    Trainer(net, data, cfg, np.arange(100), None, 100, checkpoint_dir=tmp_path, progress=False).fit()
    other = TrainingConfig(nepochs=2, batch_size=16)
    with pytest.raises(SeaIceError, match="batch_size=32, this run has batch_size=16"):
        Trainer(net, data, other, np.arange(100), None, 100, checkpoint_dir=tmp_path, progress=False).fit(resume=True)
    whole = (tmp_path / CHECKPOINT_NAME).read_bytes()
    for damaged, why in [
        (whole[: len(whole) // 2], "the file is damaged or cut short"),  # torch: "PytorchStreamReader failed ..."
        (b"", "the file is damaged or cut short"),
        (b"not a checkpoint", "it is not a file seaice-training wrote"),
        (pickle.dumps({1, 2}), "it is not a file seaice-training wrote"),  # torch: "Weights only load failed. ..."
    ]:
        (tmp_path / CHECKPOINT_NAME).write_bytes(damaged)
        with pytest.raises(SeaIceError) as exc:
            Trainer(net, data, cfg, np.arange(100), None, 100, checkpoint_dir=tmp_path, progress=False).fit(resume=True)
        assert str(exc.value) == (
            f"--resume: cannot read checkpoint {tmp_path / CHECKPOINT_NAME}: {why}; train without --resume"
        )
    torch.save({"format": 99}, tmp_path / CHECKPOINT_NAME)
    with pytest.raises(SeaIceError, match="not a trainer checkpoint"):
        Trainer(net, data, cfg, np.arange(100), None, 100, checkpoint_dir=tmp_path, progress=False).fit(resume=True)
    with pytest.raises(ValueError, match="no checkpoint_dir"):
        Trainer(net, data, cfg, np.arange(100), None, 100, progress=False).save_checkpoint()


def test_trainer_errors():
    row, x, y = make_toy(nobs=100)
    _, data = build(row, x, y)
    dense_net, _ = build(row, x, y, sparse=False)
    sparse_net, _ = build(row, x, y, sparse=True)
    with pytest.raises(SeaIceError, match="built with dense state gradients"):
        Trainer(dense_net, data, TrainingConfig(optimizer="deferred-adam"), np.arange(100), None, 100)
    with pytest.raises(SeaIceError, match="built with sparse state gradients"):
        Trainer(sparse_net, data, TrainingConfig(optimizer="dense-adam"), np.arange(100), None, 100)
    with pytest.raises(SeaIceError, match="empty training set"):
        Trainer(sparse_net, data, TrainingConfig(), np.arange(0), None, 100)
    cfg = TrainingConfig(validation_fraction=0.1, early_stopping=True)
    with pytest.raises(SeaIceError, match="needs held-out observations"):
        Trainer(sparse_net, data, cfg, np.arange(100), None, 100)
    with pytest.raises(SeaIceError, match="became non-finite"):
        with torch.no_grad():
            sparse_net.w.fill_(float("inf"))
        Trainer(
            sparse_net, data, TrainingConfig(nepochs=1, batch_size=50), np.arange(100), None, 100, progress=False
        ).fit()


def test_config_and_device_errors(monkeypatch):
    with pytest.raises(
        SeaIceError, match="--optimizer: expected one of deferred-adam, sparse-adam, dense-adam, got .adagrad."
    ):
        TrainingConfig(optimizer="adagrad")
    old = {name: TrainingConfig(optimizer=name).optimizer for name in ("sparse", "lazy", "dense")}
    assert old == {"sparse": "deferred-adam", "lazy": "sparse-adam", "dense": "dense-adam"}  # deprecated aliases
    with pytest.raises(SeaIceError, match="--map-priors full: .* sparse-adam does not do"):
        TrainingConfig(map_priors="full", optimizer="sparse-adam")
    assert TrainingConfig(map_priors="full").prior_mode == "full"  # deferred-adam: in the fused step
    with pytest.raises(SeaIceError, match="--map-priors: expected auto, sampled or full"):
        TrainingConfig(map_priors="both")
    with pytest.raises(SeaIceError, match="--batch-order: expected shuffled or reference-blocks"):
        TrainingConfig(batch_order="random")
    with pytest.raises(SeaIceError, match="--patience: must be >= 1, got 0"):
        TrainingConfig(patience=0)
    with pytest.raises(SeaIceError, match="tensor_step_threads: must be >= 1 or None, got 0"):
        TrainingConfig(tensor_step_threads=0)
    assert TrainingConfig(tensor_step_threads=1).tensor_step_threads == 1
    assert resolve_device("cpu") == torch.device("cpu")
    # auto: the CPU where the fused step can run (numba), whatever GPU the machine has
    from empirical_seaice import compiled

    assert compiled.HAVE_NUMBA and resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(compiled, "HAVE_NUMBA", False)
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(compiled, "HAVE_NUMBA", True)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.undo()
    with pytest.raises(SeaIceError, match="--device: expected auto, cpu or cuda, got 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(SeaIceError, match="--device: expected auto, cpu or cuda, got 'meta'"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(SeaIceError, match="CUDA is not available"):
            resolve_device("cuda")


def test_a_network_missing_part_of_the_contract_is_rejected():
    """Every member of TrainableNetwork is required: a wrapper that forgets to delegate state_rows
    (as the retrieval's frozen model once did) would take another optimiser path (catch-up after
    the gradient), so the trainer refuses it."""

    class Wrapper(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net
            self.sparse, self.reads_state_values = net.sparse, net.reads_state_values
            self.cost_terms, self.total_cost = net.cost_terms, net.total_cost
            self.full_prior_terms, self.sparse_parameters = net.full_prior_terms, net.sparse_parameters
            self.dense_parameters = net.dense_parameters

        def forward(self, batch, state_values=None):
            return self.net(batch)

    row, x, y = make_toy(nobs=50)
    net, data = build(row, x, y)
    with pytest.raises(TypeError, match="missing state_rows"):
        Trainer(Wrapper(net), data, TrainingConfig(), np.arange(50), None, 50)
    # the complete network is accepted
    Trainer(net, data, TrainingConfig(), np.arange(50), None, 50)


class _RecordingData(ToyData):
    """ToyData that records the observation indices of every batch it hands out."""

    def __init__(self, *args):
        super().__init__(*args)
        self.seen: list[list[int]] = []

    def batch(self, index):
        self.seen.append(index.tolist())
        return super().batch(index)


@pytest.mark.parametrize("order", ["shuffled", "reference-blocks"])
def test_batch_order(order):
    """reference-blocks: each batch is a contiguous block of the training observations in their
    order (blocks start at multiples of the batch size, the last one shorter), each observation once
    per epoch, the block order shuffled anew each epoch; shuffled: every epoch a new permutation."""
    row, x, y = make_toy(nobs=100)
    net, _ = build(row, x, y)
    data = _RecordingData(row, x, y)
    train = np.setdiff1d(np.arange(100), [5, 50])  # 98 training observations, held-out ones skipped
    cfg = TrainingConfig(nepochs=2, batch_size=16, batch_order=order, seed=4)
    Trainer(net, data, cfg, train, None, 98, progress=False).fit()
    epochs = [data.seen[:7], data.seen[7:]]
    assert len(data.seen) == 14  # ceil(98 / 16) = 7 batches per epoch
    for batches in epochs:
        assert sorted(i for b in batches for i in b) == train.tolist()
    if order == "reference-blocks":
        blocks = [train[a : a + 16].tolist() for a in range(0, 98, 16)]
        for batches in epochs:
            assert sorted(batches) == sorted(blocks)
        assert epochs[0] != blocks or epochs[1] != blocks  # the block order is shuffled
        assert epochs[0] != epochs[1]
    else:
        assert all(b != sorted(b) for b in epochs[0][:6])  # observations mixed inside the batches
        assert [i for b in epochs[0] for i in b] != [i for b in epochs[1] for i in b]


def test_stop_mid_epoch_writes_a_checkpoint_and_resume_is_bit_identical(tmp_path):
    """A stop request (SIGINT) at a step boundary writes a within-epoch checkpoint; resuming from
    it gives the parameters and per-batch costs of the uninterrupted run, bit for bit."""
    from empirical_seaice.errors import RunInterrupted

    full, hfull, _ = _run(2)
    row, x, y = make_toy(nobs=500)
    net, data = build(row, x, y)
    cfg = TrainingConfig(nepochs=2, batch_size=64, seed=0, reproducible=True, learning_rate=0.01)
    calls = {"n": 0}

    def stop():  # asked at every step boundary; the 11th is epoch 2, step 3 (8 steps per epoch)
        calls["n"] += 1
        return "SIGINT" if calls["n"] == 11 else None

    trainer = Trainer(net, data, cfg, np.arange(500), None, 500, checkpoint_dir=tmp_path, progress=False, stop=stop)
    with pytest.raises(RunInterrupted, match=r"SIGINT in epoch 2 after step 3 of 8.*--resume") as info:
        trainer.fit()
    assert info.value.exit_code == 130
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["epoch"] == 1 and state["position"]["batch"] == 3
    net2, data2 = build(row, x, y)
    resumed = Trainer(net2, data2, cfg, np.arange(500), None, 500, checkpoint_dir=tmp_path, progress=False)
    hres = resumed.fit(resume=True)
    for k in full.state_dict():
        assert torch.equal(full.state_dict()[k], net2.state_dict()[k]), k
    np.testing.assert_array_equal(hres.batch_terms["total"], hfull.batch_terms["total"])


def test_within_epoch_checkpoints_by_time(tmp_path):
    row, x, y = make_toy(nobs=500)
    net, data = build(row, x, y)
    cfg = TrainingConfig(nepochs=1, batch_size=64, seed=0, reproducible=True, learning_rate=0.01)
    saved = []
    trainer = Trainer(
        net, data, cfg, np.arange(500), None, 500, checkpoint_dir=tmp_path, progress=False, checkpoint_minutes=1e-9
    )
    orig = trainer.save_checkpoint
    trainer.save_checkpoint = lambda position=None: (
        saved.append(None if position is None else position["batch"]) or orig(position)
    )
    trainer.fit()
    assert saved == [1, 2, 3, 4, 5, 6, 7, None]  # every step boundary, then the epoch end
    with pytest.raises(SeaIceError, match="--checkpoint-minutes: must be >= 0"):
        Trainer(net, data, cfg, np.arange(500), None, 500, checkpoint_minutes=float("nan"))


def test_resume_refuses_another_identity(tmp_path):
    row, x, y = make_toy(nobs=100)
    net, data = build(row, x, y)
    cfg = TrainingConfig(nepochs=1, batch_size=32)
    ident = {"data": "abc", "period": [2459000.0, 0, 3], "learning_rate": 1e-3}
    Trainer(net, data, cfg, np.arange(100), None, 100, checkpoint_dir=tmp_path, progress=False, identity=ident).fit()
    for key, value, words in (
        ("data", "abd", "another training data"),
        ("period", [2459000.0, 1, 3], r"another period \(--stepstart/--nsteps"),
        ("learning_rate", 2e-3, "another --learning-rate: 0.001 then, 0.002 now"),
    ):
        other = TrainingConfig(nepochs=2, batch_size=32)
        t = Trainer(
            net,
            data,
            other,
            np.arange(100),
            None,
            100,
            checkpoint_dir=tmp_path,
            progress=False,
            identity={**ident, key: value},
        )
        with pytest.raises(SeaIceError, match=words):
            t.fit(resume=True)


def test_run_progress_shows_stages_and_the_training_of_all_epochs():
    import io

    from empirical_seaice.training.runtime import RunProgress

    out = io.StringIO()
    progress = RunProgress(True, file=out)
    progress.stage("reading data")
    row, x, y = make_toy(nobs=200)
    net, data = build(row, x, y)
    Trainer(net, data, TrainingConfig(nepochs=2, batch_size=50), np.arange(200), None, 200, progress=progress).fit()
    assert progress.bar.total == 8 and progress.bar.n == 8  # 2 epochs x 4 batches in one bar
    progress.stage("diagnostics")
    progress.close()
    text = out.getvalue()
    for part in ("reading data", "training epoch 1/2", "training epoch 2/2", "8/8 batches", "diagnostics"):
        assert part in text, part
    assert [name for name, _ in progress.stages] == ["reading data", "training epoch 1/2", "diagnostics"]
    quiet = io.StringIO()
    silent = RunProgress(False, file=quiet)
    silent.stage("reading data")
    silent.start_training(2, 4)
    silent.update(1)
    silent.close()
    assert quiet.getvalue() == ""


def test_a_log_line_during_the_display_is_a_line_of_its_own(capsys):
    """A warning while a stage is shown starts a line of its own (it was glued to the stage line, easy to
    miss); after the display is closed the log has its own handler back."""
    import logging
    import re

    from empirical_seaice.cli.command import _setup_logging
    from empirical_seaice.training.runtime import RunProgress

    _setup_logging(0)
    logger = logging.getLogger("empirical_seaice")
    handlers = list(logger.handlers)
    progress = RunProgress(True)  # on sys.stderr, as the run's
    progress.stage("reading data")
    logging.getLogger("empirical_seaice.io.cache").warning("the cache changed")
    progress.close()
    assert logger.handlers == handlers
    logging.getLogger("empirical_seaice.io.cache").warning("after the display")
    err = capsys.readouterr().err
    pieces = re.split(r"[\r\n]", err)
    warned = [p for p in pieces if "the cache changed" in p]
    assert len(warned) == 1 and warned[0].split(" ")[2:4] == ["WARNING", "empirical_seaice.io.cache:"]
    assert "reading data" in err and sum("after the display" in p for p in pieces) == 1


def test_learning_rate_decay_and_plateau_cuts():
    """--lr-decay: epoch k steps with lr * G**k; --plateau-cuts: where early stopping would stop, the
    step is halved instead (up to N times), then it stops; the best epoch is still the one kept. The
    network's own step (sqrt(0.05 * 1e-3) = 0.00707 by default) is decayed and cut alike."""
    seen: list[float] = []
    seen_network: list[float] = []

    class Spy(Trainer):
        def _train_epoch(self, position=None):
            seen.append(self.optimizers[0].param_groups[0]["lr"])
            seen_network.append(self.optimizers[-1].param_groups[0]["lr"])
            super()._train_epoch(position)

    net, data, cfg, train, valid = _conflict_case(nepochs=4)
    Spy(net, data, replace(cfg, early_stopping=False, lr_decay=0.5), train, valid, 200, progress=False).fit()
    assert seen == pytest.approx([0.05, 0.025, 0.0125, 0.00625])
    assert seen_network == pytest.approx([0.05**0.5 * 1e-3**0.5 * 0.5**k for k in range(4)])
    seen.clear()
    seen_network.clear()
    net, data, cfg, train, valid = _conflict_case(patience=1, nepochs=10)
    hist = Spy(net, data, replace(cfg, plateau_cuts=2), train, valid, 200, progress=False).fit()
    # epoch 1 best; after 2 and 3 (no better) the step is halved twice, after 4 it stops
    assert seen == pytest.approx([0.05, 0.05, 0.025, 0.0125])
    assert seen_network == pytest.approx([0.007071, 0.007071, 0.0035355, 0.0017678], rel=1e-4)
    assert hist.stopped_early and hist.nepochs == 4 and hist.best_epoch == 0


def test_the_checkpoint_is_written_without_crcs_and_the_setting_is_put_back(tmp_path):
    """torch.load does not check a record's CRC-32 (a flipped byte loads silently with or without them): the
    checkpoint skips computing them; the setting is put back, also after an error, for other files."""
    import zipfile

    from torch.utils.serialization import config

    from empirical_seaice.training.checkpoint import without_crc32, write_checkpoint

    state = {"format": 3, "w": torch.arange(1000, dtype=torch.float32)}
    write_checkpoint(tmp_path / "c.pt", state)
    assert config.save.compute_crc32 is True
    with zipfile.ZipFile(tmp_path / "c.pt") as z:
        data = [i for i in z.infolist() if "/data/" in i.filename]
        assert data and all(i.CRC == 0 for i in data)
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["w"], state["w"])
    torch.save(state, tmp_path / "other.pt")  # outside: with CRCs, which zipfile checks
    with zipfile.ZipFile(tmp_path / "other.pt") as z:
        assert z.testzip() is None
        assert all(i.CRC != 0 for i in z.infolist() if "/data/" in i.filename)
    with pytest.raises(ValueError, match="inside"), without_crc32():
        assert config.save.compute_crc32 is False
        raise ValueError("inside")
    assert config.save.compute_crc32 is True


def test_short_epochs_skip_the_epoch_end_checkpoint_but_not_the_last_nor_a_stop(tmp_path, monkeypatch):
    """EPOCH_CHECKPOINT_S: epochs ending within a minute of the last checkpoint do not write one; the last
    epoch does, and so does an epoch after which a stop is asked for; resuming from an older checkpoint
    redoes the epochs since to the same parameters."""
    from empirical_seaice.training import trainer as trainer_mod

    written: list[int] = []
    save = Trainer.save_checkpoint

    def spied(self, position=None):
        written.append(self.epoch)
        return save(self, position)

    monkeypatch.setattr(Trainer, "save_checkpoint", spied)
    full, hfull, _ = _run(4, tmp_path / "a")
    assert written == [4]  # fast epochs: the last one's alone
    written.clear()
    monkeypatch.setattr(trainer_mod, "EPOCH_CHECKPOINT_S", 0.0)
    _run(4, tmp_path / "b")
    assert written == [1, 2, 3, 4]
    written.clear()
    monkeypatch.setattr(trainer_mod, "EPOCH_CHECKPOINT_S", 3600.0)
    row, x, y = make_toy(nobs=500)
    net, data = build(row, x, y)
    cfg = TrainingConfig(nepochs=4, batch_size=64, seed=0, reproducible=True, learning_rate=0.01)
    asked = iter([None] * 15 + ["SIGTERM"] + [None] * 100)  # 7 step boundaries and an end an epoch: epoch 2 end
    trainer = Trainer(net, data, cfg, np.arange(500), None, 500, checkpoint_dir=tmp_path / "c", progress=False)
    trainer.stop = lambda: next(asked)
    with pytest.raises(RunInterrupted, match="after epoch 2"):
        trainer.fit()
    assert written == [2]
    resumed, hres, _ = _run(4, tmp_path / "c", resume=True)
    for k in full.state_dict():
        assert torch.equal(full.state_dict()[k], resumed.state_dict()[k]), k


def test_a_damaged_checkpoint_is_refused_and_an_intact_one_resumes(tmp_path):
    """A value of the optimiser's state changed after the checkpoint was written (a flipped bit on the disk):
    --resume refuses in one line (before: resumed silently to other outputs, published as complete); the
    intact checkpoint and one written before its checksum (none: not checked) still load."""
    from empirical_seaice.training.checkpoint import DIGEST_KEY, read_checkpoint

    row, x, y = make_toy(nobs=100)
    net, data = build(row, x, y)
    cfg = TrainingConfig(nepochs=1, batch_size=32, seed=0)
    Trainer(net, data, cfg, np.arange(100), None, 100, checkpoint_dir=tmp_path, progress=False).fit()
    path = tmp_path / CHECKPOINT_NAME
    state = torch.load(path, weights_only=True)
    assert isinstance(state[DIGEST_KEY], int) and DIGEST_KEY not in read_checkpoint(path)
    first = next(v for v in state["optimizers"][0]["state"].values() if isinstance(v, dict))
    name = next(k for k, v in first.items() if isinstance(v, torch.Tensor) and v.numel() > 1)
    first[name].view(-1)[1] += 1e-3  # one value changed, the checksum as written
    torch.save(state, path)
    with pytest.raises(SeaIceError, match=r"checkpoint .* is damaged \(its content no longer matches its checksum\)"):
        read_checkpoint(path)
    del state[DIGEST_KEY]  # a checkpoint of an earlier version: no checksum, not checked
    torch.save(state, path)
    assert read_checkpoint(path)["epoch"] == 1


def test_the_identity_check_reads_no_tensor_of_the_checkpoint(tmp_path):
    """--resume checks the checkpoint's identity before any work: it read the whole checkpoint for it (and
    the trainer read it again), 0.5-1.2 s for the benchmark twin's 349 MB; now a memory map gives the identity
    without reading a tensor (a damaged tensor is found by the trainer's full read), and a file torch cannot
    open still gets read_checkpoint's one-line error."""
    from empirical_seaice.training.checkpoint import DIGEST_KEY, checkpoint_identity, read_checkpoint

    row, x, y = make_toy(nobs=100)
    net, data = build(row, x, y)
    trainer = Trainer(net, data, TrainingConfig(nepochs=1, batch_size=32), np.arange(100), None, 100,
                      checkpoint_dir=tmp_path, progress=False, identity={"data": "abc", "batch_size": 32})  # fmt: skip
    trainer.fit()
    path = tmp_path / CHECKPOINT_NAME
    assert checkpoint_identity(path) == read_checkpoint(path)["identity"] == {"data": "abc", "batch_size": 32}
    state = torch.load(path, weights_only=True)
    first = next(v for v in state["optimizers"][0]["state"].values() if isinstance(v, dict))
    name = next(k for k, v in first.items() if isinstance(v, torch.Tensor) and v.numel() > 1)
    first[name].view(-1)[1] += 1e-3  # a tensor damaged: the identity is still read, the full read refuses
    torch.save(state, path)
    assert DIGEST_KEY in state and checkpoint_identity(path) == {"data": "abc", "batch_size": 32}
    with pytest.raises(SeaIceError, match="is damaged"):
        read_checkpoint(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(SeaIceError, match="cannot read checkpoint .*: the file is damaged or cut short"):
        checkpoint_identity(path)
    torch.save({"format": 99}, path)
    with pytest.raises(SeaIceError, match="not a trainer checkpoint"):
        checkpoint_identity(path)


def test_a_checkpoint_is_read_through_a_memory_map_and_what_is_kept_is_copied(tmp_path):
    """read_checkpoint maps the file (the `benchmark` twin's 412 MB checkpoint read whole took a resumed
    run's peak from 1.63 to 2.39 GiB): its values equal a whole read; every tensor the trainer keeps (the
    history's, the best epoch's, the dense optimiser's) is its own memory, outside the file's map; the
    optimiser's slab stays mapped and its load copies it into the slab the optimiser already has (the
    same storage before and after: no second slab), and the resumed run ends where an unbroken one does."""
    from empirical_seaice.memory import file_ranges
    from empirical_seaice.training.checkpoint import read_checkpoint

    def tensors(o, path=""):
        if isinstance(o, torch.Tensor):
            yield path, o
        elif isinstance(o, dict):
            for k, v in o.items():
                yield from tensors(v, f"{path}/{k}")
        elif isinstance(o, (list, tuple)):
            for i, v in enumerate(o):
                yield from tensors(v, f"{path}[{i}]")

    def mapped(t, ranges):
        return any(lo <= t.data_ptr() < hi for lo, hi in ranges)

    full, _, _ = _run(3)
    _run(1, tmp_path)
    path = tmp_path / CHECKPOINT_NAME
    whole = dict(tensors(torch.load(path, weights_only=True)))
    state = read_checkpoint(path)
    ranges = file_ranges(path)
    assert ranges  # the slab keeps the map
    got = dict(tensors(state))
    assert got.keys() == whole.keys()
    for name, t in got.items():
        assert torch.equal(t, whole[name]), name
        in_slab = name.startswith("/optimizers[0]/state")
        assert mapped(t, ranges) == in_slab, name  # the network's tables and the best epoch's too: copies
    del state, got
    net, data = build(*make_toy(nobs=500)[:3])
    cfg = TrainingConfig(nepochs=3, batch_size=64, seed=0, reproducible=True, learning_rate=0.01)  # _run's
    trainer = Trainer(net, data, cfg, np.arange(500), None, 500, checkpoint_dir=tmp_path, progress=False)
    deferred = trainer.optimizers[0]
    assert isinstance(deferred, DeferredAdam)
    slab = deferred._slab(deferred.param_groups[0])  # made before the load, as the compiled step makes it
    trainer.fit(resume=True)
    assert deferred.state[deferred.param_groups[0]["params"][0]]["slab"] is slab
    for k in full.state_dict():
        assert torch.equal(full.state_dict()[k], net.state_dict()[k]), k
