"""The held-out observations' own state, fitted after training with the model fixed (run.held_out)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from empirical_seaice.config import DataConfig, TrainingConfig, get_preset
from empirical_seaice.run.factory import build_network, build_trainer
from empirical_seaice.run.held_out import fit_held_out_state, held_out_only_rows
from empirical_seaice.training.history import evaluate_obs_cost
from empirical_seaice.training.runtime import make_generator, split_observations


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from empirical_seaice.io import read_training_data
    from empirical_seaice.twin import generate_twin, get_twin_preset

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    twin = tmp_path_factory.mktemp("held_out") / "twin"
    generate_twin(get_twin_preset("tiny", days=2, keep_fraction=0.3, sensors=("amsr2",)), twin)
    preset = get_preset("v2")
    model = replace(preset.model, ice_emis_init=0.9)
    obs, background = read_training_data(DataConfig(data=twin, sensors=("amsr2",), cache=False), model.nlag)
    cfg = TrainingConfig(nepochs=3, batch_size=128, learning_rate=8e-3, validation_fraction=0.2).resolved(obs.nobs)
    gen = make_generator(0)
    train, valid = split_observations(obs.nobs, cfg.validation_fraction, gen)
    assert valid is not None
    built = build_network(obs, background, model, preset.cost, optimizer=cfg.optimizer, generator=gen, counted=train)
    build_trainer(built.network, built, cfg, train_index=train, valid_index=valid, generator=gen, progress=False).fit()
    yield obs, background, model, preset.cost, cfg, built, train, valid, gen
    torch.set_num_threads(n)


def test_only_the_held_out_rows_move_and_their_cost_falls(trained):
    obs, background, model, cost, cfg, built, train, valid, gen = trained
    net = built.network
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    j_before = evaluate_obs_cost(net, built.data, torch.as_tensor(valid), built.nobs_train, 4096, "cpu")
    changed = fit_held_out_state(net, obs, background, model, cost, cfg, train, valid, 3)
    after = net.state_dict()
    # the network (emissivity, wind, biases) is the trained one to the bit
    for name in before:
        if not name.startswith("state."):
            assert torch.equal(before[name], after[name]), name
    sic_only, grid_only = held_out_only_rows(obs, model.nlag, train, valid)
    assert sic_only.sum() > 0 and grid_only.sum() > 0  # 20 % held out of ~1.5 observations per cell
    keep_sic = torch.from_numpy(~sic_only)
    assert torch.equal(before["state.sic_map.weight"][keep_sic], after["state.sic_map.weight"][keep_sic])
    keep_grid = torch.from_numpy(~grid_only)
    assert torch.equal(before["state.props_grid.weight"][keep_grid], after["state.props_grid.weight"][keep_grid])
    q0, q1 = before["state.props_obs.weight"], after["state.props_obs.weight"]
    assert torch.equal(q0[torch.as_tensor(train)], q1[torch.as_tensor(train)])
    # the held-out observations' own state was untrained (zero) and now fits them
    assert torch.count_nonzero(q0[torch.as_tensor(valid)]) == 0
    assert torch.count_nonzero(q1[torch.as_tensor(valid)]) > 0.9 * len(valid)
    assert {k: v.size for k, v in changed.items()} == {
        "sic": sic_only.sum(),
        "grid": grid_only.sum(),
        "obs": len(valid),
    }
    moved = (before["state.sic_map.weight"] != after["state.sic_map.weight"]).squeeze(-1).numpy()
    assert moved[sic_only].mean() > 0.9
    j_after = evaluate_obs_cost(net, built.data, torch.as_tensor(valid), built.nobs_train, 4096, "cpu")
    assert j_after < 0.9 * j_before, (j_before, j_after)  # measured 72.0 -> 59.5
    assert np.isfinite(j_after)


@pytest.mark.parametrize("fused", [True, False])
def test_the_held_out_observations_packed_alone_give_the_same_fit(trained, fused):
    """The run frees the training's packed table and the fit packs the held-out observations alone
    (data=None): the fitted state is the one the whole table (the training's) gives, to the bit, with
    the fused step (the default) and with the tensor step."""
    obs, background, model, cost, cfg, built, train, valid, gen = trained
    cfg = replace(cfg, fused_step=fused)
    start = {k: v.detach().clone() for k, v in built.network.state_dict().items()}
    for order in (valid, valid[::-1].copy()):  # the run's (sorted), and another order of the same observations
        states = []
        for data in (None, built.data):
            built.network.load_state_dict(start)
            fit_held_out_state(built.network, obs, background, model, cost, cfg, train, order, 2, data=data)
            states.append({k: v.detach().clone() for k, v in built.network.state_dict().items()})
        for name in start:
            assert torch.equal(states[0][name], states[1][name]), name
        assert not torch.equal(start["state.props_obs.weight"], states[1]["state.props_obs.weight"])
    built.network.load_state_dict(start)  # the trained state again, for the module's other tests


def test_the_held_out_fit_takes_the_fused_step_and_equals_the_tensor_step(trained, monkeypatch):
    """The held-out fit trains a frozen model (run.retrieve.FrozenModel): the fused step steps its state
    tables alone (no optimiser holds the fixed weights), on the held-out observations' own table (its
    observation rows mapped to the observations' property rows), and fits the state the tensor step fits,
    to float32 rounding (but for the odd row where rounding decides a kink of the priors, e.g. the SIC
    range's bounds); the weights stay the trained ones to the bit."""
    from empirical_seaice.training import fused_step

    obs, background, model, cost, cfg, built, train, valid, gen = trained
    start = {k: v.detach().clone() for k, v in built.network.state_dict().items()}
    calls = []
    step = fused_step.FusedStep.__call__
    monkeypatch.setattr(fused_step.FusedStep, "__call__", lambda self, *a, **k: calls.append(1) or step(self, *a, **k))
    states = []
    for fused in (True, False):
        built.network.load_state_dict(start)
        calls.clear()
        fit_held_out_state(built.network, obs, background, model, cost, replace(cfg, fused_step=fused), train, valid, 2)
        assert bool(calls) == fused  # every batch of the fused fit in the fused step, none of the other
        states.append({k: v.detach().clone() for k, v in built.network.state_dict().items()})
    for name, value in start.items():
        if not name.startswith("state."):
            assert torch.equal(states[0][name], value) and torch.equal(states[1][name], value), name
    for name in ("state.sic_map.weight", "state.props_grid.weight", "state.props_obs.weight"):
        moved = (states[1][name] - start[name]).abs().max()
        assert moved > 1e-3, name
        diff = (states[0][name] - states[1][name]).abs()
        close = diff <= 1e-4 * states[1][name].abs() + 2e-5 * float(moved)
        assert close.float().mean() > 0.999, (name, int((~close).sum()))  # the odd row at a kink
        assert float(diff.max()) < 0.02 * float(moved), (name, float(diff.max()))
    built.network.load_state_dict(start)


def test_the_held_out_table_takes_increasing_rows_only(trained):
    """Each packed row is its observation's own property row (the fused step's distinct batches): the
    held-out table refuses rows out of order or repeated."""
    from empirical_seaice.run.held_out import _held_out_tensors

    obs = trained[0]
    for rows in ([3, 1], [2, 2]):
        with pytest.raises(ValueError, match="the rows must be increasing"):
            _held_out_tensors(obs, np.array(rows), "cpu")
    assert _held_out_tensors(obs, np.array([1, 3]), "cpu").obs_rows.tolist() == [1, 3]


def test_the_trainings_rows_read_give_the_same_rows_and_fit_counting_once(trained, monkeypatch):
    """The training's build hands over the rows its observations read (``Built.rows_read``): the rows only
    the held-out observations read are the ones a recount gives, and the fit from them ends on the same
    state to the bit, counting the held-out observations once and the training ones not at all."""
    from empirical_seaice.run import factory, held_out

    obs, background, model, cost, cfg, built, train, valid, gen = trained
    want = held_out_only_rows(obs, model.nlag, train, valid)
    got = held_out_only_rows(obs, model.nlag, train, valid, train_read=built.rows_read)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)
        assert 0 < w.sum() < w.size
    nets = []
    for _ in range(2):  # two copies of the trained network
        net = build_network(obs, background, model, cost, optimizer=cfg.optimizer, generator=gen, counted=train)
        net.network.load_state_dict(built.network.state_dict())
        nets.append(net.network)
    fit_held_out_state(nets[0], obs, background, model, cost, cfg, train, valid, 2)
    counted = []
    count = held_out.build_row_counts

    def spy(*args, index=None):
        counted.append(len(index))
        return count(*args, index=index)

    monkeypatch.setattr(held_out, "build_row_counts", spy)
    monkeypatch.setattr(factory, "build_row_counts", spy)
    fit_held_out_state(nets[1], obs, background, model, cost, cfg, train, valid, 2, train_read=built.rows_read)
    assert counted == [len(valid)]
    a, b = nets[0].state_dict(), nets[1].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["state.props_obs.weight"], built.network.state_dict()["state.props_obs.weight"])


def test_the_fit_takes_one_thread_fewer_while_the_run_computes_beside_it(trained, monkeypatch):
    """While ``beside`` says another thread of the run computes (the final pass's ``tbobs``), the fit's steps
    run on one thread fewer, then on the run's count again; the fit ends on the same state to the bit."""
    import numba

    from empirical_seaice.training import fused_step

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two threads")
    obs, background, model, cost, cfg, built, train, valid, gen = trained
    nets = []
    for _ in range(2):  # two copies of the trained network
        net = build_network(obs, background, model, cost, optimizer=cfg.optimizer, generator=gen, counted=train)
        net.network.load_state_dict(built.network.state_dict())
        nets.append(net.network)
    threads, call = [], fused_step.FusedStep.__call__

    def spy(self, *args, **kwargs):
        threads.append(numba.get_num_threads())
        return call(self, *args, **kwargs)

    monkeypatch.setattr(fused_step.FusedStep, "__call__", spy)
    asked = iter(range(1000))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fit_held_out_state(nets[0], obs, background, model, cost, cfg, train, valid, 2)
        alone, threads[:] = list(threads), []
        fit_held_out_state(nets[1], obs, background, model, cost, cfg, train, valid, 2, beside=lambda: next(asked) < 3)
    finally:
        torch.set_num_threads(before)
    assert set(alone) == {2} and len(threads) == len(alone) > 3
    assert threads == [1, 1, 1] + [2] * (len(alone) - 3)
    a, b = nets[0].state_dict(), nets[1].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["state.props_obs.weight"], built.network.state_dict()["state.props_obs.weight"])
