"""The fused (compiled) training step equals the tensor step, is reproducible, and falls back."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from hybrid_case import assert_trained_alike, parameters, step_case

from empirical_seaice.config import TrainingConfig
from empirical_seaice.model.operator import HybridNetwork
from empirical_seaice.model.tensors import ObservationTensors
from empirical_seaice.training import fused_step
from empirical_seaice.training.fused_step import FusedStep
from empirical_seaice.training.runtime import make_generator
from empirical_seaice.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not fused_step.HAVE_NUMBA, reason="numba is not installed")

V1 = dict(
    model_kw=dict(version="v1", nprop_grid=3, nprop_obs=0, ocean_t_floor_k=None, ice_emis_init=0.93),
    cost_kw=dict(anchor="mean", anchor_channels=("10v",), anchor_value=0.93, false_ice_prior=False),
)
CASES = {
    "v2": {},
    # the network and the TB biases at their own step (by default sqrt(1e-2 x 1e-3) here; 1e-3 apart further)
    "v2-network-learning-rate": dict(network_learning_rate=1e-3),
    # original v2 anchor (one more network evaluation at 23.8 GHz V), every optional prior, warm rows
    "v2-anchor-frequency-priors-warm": dict(
        cost_kw=dict(
            anchor_frequency_ghz=23.8,
            anchor_value=0.8,
            sic_background_prior=True,
            false_ice_shape="tent",
            warm_ice="effective",
        ),
        warm=True,
    ),
    "v2-keras-epsilon-diagnostic-warm": dict(eps="keras", warm=True),
    "v1": V1,
    # a cross-track sounder: quasi-polarised QV/QH channels mixed by the scan angle, without and with
    # the network's view-angle input (cos of the local zenith angle, on by default with a sounder)
    "v2-amsr2-atms": dict(sensors=("amsr2", "atms"), model_kw=dict(angle_input=False)),
    "v2-amsr2-atms-angle": dict(sensors=("amsr2", "atms"), model_kw=dict(angle_input=True)),
    # the view-angle input with the anchor frequency: its extra evaluation takes the observation's angle too
    "v2-amsr2-atms-angle-anchor-frequency": dict(
        sensors=("amsr2", "atms"),
        model_kw=dict(angle_input=True),
        cost_kw=dict(anchor_frequency_ghz=23.8, anchor_value=0.93),  # a floor that binds
    ),
    # SSMIS lacks the anchor channel (10v): its rows hold no column for it, the kernel computes the
    # anchor's emissivity on its own (v2: the network at 10.65 GHz V, under a floor that binds; v1: the
    # linear model's 10v row, in the simulation's anchor)
    "v2-amsr2-ssmis-anchor-lacking": dict(sensors=("amsr2", "ssmisf17"), cost_kw=dict(anchor_value=0.93)),
    "v1-amsr2-ssmis-anchor-lacking": dict(V1, sensors=("amsr2", "ssmisf17")),
    # the ice-emissivity ceiling (v1's default): the linear model starts at 0.98 and its temperature
    # weights push cold ice above 1, so the ceiling binds on both sensors' channels
    "v1-emis-ceiling": dict(
        V1,
        sensors=("amsr2", "ssmisf17"),
        model_kw=dict(V1["model_kw"], ice_emis_init=0.98),
        cost_kw=dict(V1["cost_kw"], anchor_value=0.98, emis_ceiling_error=0.01),
    ),
}


def _trainer(
    fused, model_kw=None, cost_kw=None, eps="torch", warm=False, nepochs=4, sensors=("amsr2",), device="cpu", **cfg_kw
):
    """Tiny hybrid case, batch 16: 25 steps per epoch, 100 steps in 4 epochs (the network and the
    observations on ``device``)."""
    obs, bg, model, cost, counts = step_case(model_kw, cost_kw, warm, sensors)
    net = HybridNetwork(model, cost, obs.basis, bg, obs.nobs, row_counts=counts, generator=make_generator(3))
    cfg_kw.setdefault("network_learning_rate", 1e-2)  # every parameter at the same aggressive step
    cfg = TrainingConfig(
        nepochs=nepochs, batch_size=16, learning_rate=1e-2, fused_step=fused, adam_epsilon=eps, device=device, **cfg_kw
    )
    data = ObservationTensors(obs, device)
    return Trainer(net.to(device), data, cfg, np.arange(obs.nobs), None, obs.nobs, progress=False)


@pytest.mark.parametrize("case", list(CASES))
def test_fused_step_equals_tensor_step_after_100_steps(case):
    kw = CASES[case]
    tensor, fused = _trainer(False, **kw), _trainer(True, **kw)
    start = parameters(tensor)
    h_tensor, h_fused = tensor.fit(), fused.fit()
    assert isinstance(fused._fused, FusedStep) and fused._fused._steps == 100
    assert tensor._fused is None  # never built
    assert_trained_alike(tensor, fused, start, h_tensor, h_fused, warm=kw.get("warm", False))
    if case in ("v2-amsr2-atms-angle-anchor-frequency", "v2-amsr2-ssmis-anchor-lacking"):  # its gradient runs
        assert h_fused.epoch_terms[0]["anchor"] > 1.0
        assert h_fused.epoch_terms[0]["anchor"] == pytest.approx(h_tensor.epoch_terms[0]["anchor"], rel=2e-3)
    if case == "v1-emis-ceiling":  # it binds, and falls as the model learns to stay under 1
        first, last = h_fused.epoch_terms[0]["emis_ceiling"], h_fused.epoch_terms[-1]["emis_ceiling"]
        assert first > 1.0 and last < 0.5 * first
        assert first == pytest.approx(h_tensor.epoch_terms[0]["emis_ceiling"], rel=2e-3)


def test_fused_step_reproducible_bit_for_bit_and_thread_count_free():
    runs = []
    before = torch.get_num_threads()
    for threads in (1, 2, 2):
        torch.set_num_threads(1)
        t = _trainer(True, nepochs=2)  # built with one thread (the case's truth uses matmuls)
        torch.set_num_threads(threads)  # the fused step follows torch's thread count
        try:
            t.fit()
        finally:
            torch.set_num_threads(before)
        runs.append(parameters(t))
    torch.set_num_threads(1)
    for other in runs[1:]:
        for name, value in runs[0].items():
            assert torch.equal(value, other[name]), name
    t = _trainer(True, nepochs=2, reproducible=True)
    torch.set_num_threads(before)
    t.fit()
    for name, value in runs[0].items():
        assert torch.equal(value, parameters(t)[name]), name


_COMPILE_OR_LOAD = """
import hashlib, sys
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
from hybrid_case import parameters, step_case
from empirical_seaice.config import TrainingConfig
from empirical_seaice.model.fused_kernels import _step
from empirical_seaice.model.operator import HybridNetwork
from empirical_seaice.model.tensors import ObservationTensors
from empirical_seaice.training.runtime import make_generator
from empirical_seaice.training.trainer import Trainer
torch.set_num_threads(1)
obs, bg, model, cost, counts = step_case(warm=True)
net = HybridNetwork(model, cost, obs.basis, bg, obs.nobs, row_counts=counts, generator=make_generator(3))
cfg = TrainingConfig(nepochs=1, batch_size=16, learning_rate=1e-2, fused_step=True)
trained = Trainer(net, ObservationTensors(obs), cfg, np.arange(obs.nobs), None, obs.nobs, progress=False)
terms = trained.fit().batch_terms
print(sum(_step.stats.cache_hits.values()), len(terms["obs"]))
for name, values in sorted(terms.items()):
    print(name, hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest())
print("parameters", hashlib.sha256(b"".join(p.numpy().tobytes() for p in parameters(trained).values())).hexdigest())
"""


@pytest.mark.slow
def test_a_run_that_compiles_the_step_and_one_that_loads_it_from_the_cache_agree(tmp_path):
    """The same training, bit for bit, in a process that compiles the fused kernels into an empty disk
    cache and in the next, which loads them from it: every batch's terms and every parameter. (With LLVM's
    ``reassoc`` in the kernel's flags, the batches' ``sic_range`` differed: fused_kernels.FASTMATH.)"""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}

    def run() -> list[str]:
        cmd = [sys.executable, "-c", _COMPILE_OR_LOAD, str(Path(__file__).parent)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.split("\n")

    compiled, loaded = run(), run()
    assert compiled[0] == "0 25" and loaded[0] == "1 25"  # 25 batches; compiled, then loaded
    assert len(compiled) == 10 and compiled[1:] == loaded[1:]


@pytest.mark.parametrize("case", ["v2", "v1"])
def test_shares_of_a_batch_add_up_to_the_batch(case):
    """A run sharded over ranks: each rank's step over its share of a global batch of B observations
    (``batch_total=B``), the shared parameters' priors (the bias prior; v1's mean anchor) on the first rank
    alone (``shared_prior_share`` 1 and 0), gives cost terms and dense gradients (what ``reduce`` sums over
    the ranks) that add up to the whole batch's in one process, from the same starting point."""
    index = np.arange(32)
    parts = {
        "whole": (index, None, 1.0),
        "first": (index[:20], 32, 1.0),
        "second": (index[20:], 32, 0.0),
        "none": (index[:0], 32, 0.0),  # a rank without observations in this step still steps
    }
    terms, grads = {}, {}
    for name, (rows, total, share) in parts.items():
        trainer = _trainer(True, **CASES[case])  # the same starting point each time (seeded) ...
        with torch.no_grad():  # ... moved off the priors' minima (biases at their background, e0 at the anchor)
            for p in trainer.network.dense_parameters():
                p.add_(0.05 * torch.sin(torch.arange(p.numel(), dtype=p.dtype)).view_as(p))
        trainer.network.shared_prior_share = share
        step = trainer._fused_step()
        assert isinstance(step, FusedStep)

        def keep(flat, name=name):
            grads[name] = np.concatenate(flat).copy()

        terms[name] = step(rows, distinct=True, batch_total=total, reduce=keep)
    names = step.names
    np.testing.assert_allclose(terms["first"] + terms["second"], terms["whole"], rtol=1e-12, atol=1e-15)
    shared = ["bias", "anchor"] if case == "v1" else ["bias"]  # v2's anchor floor is per observation
    for term in shared:
        assert terms["second"][names.index(term)] == 0.0 < terms["first"][names.index(term)], term
    assert terms["first"][names.index("obs")] < terms["whole"][names.index("obs")]  # a share: 20 of 32
    np.testing.assert_allclose(grads["first"] + grads["second"], grads["whole"], rtol=1e-10, atol=1e-14)
    assert np.abs(grads["second"]).max() > 1e-3 * np.abs(grads["whole"]).max()  # the second share counts
    assert not terms["none"].any() and not grads["none"].any()


def test_batches_of_many_sizes_share_one_set_of_buffers():
    """A sharded run's shares change size from step to step: the step's buffers grow to the largest batch
    and are reused (their leading parts), not kept one set per size."""
    step = _trainer(True)._fused_step()
    assert isinstance(step, FusedStep)
    start = 0
    for nb in (20, 12, 32, 5, 31):
        step(np.arange(start, start + nb), distinct=True)
        start += nb
    assert len(step._bufs) == 1
    ((refs, *_),) = step._bufs.values()
    assert refs.shape[0] == 32 and step.program._cache["batch"]["g_state"].shape[0] == 32
    assert [k for k in step.program._cache if isinstance(k, tuple) and k[0] == "batch"] == []


def test_batches_are_taken_as_distinct_only_when_the_training_observations_are():
    """A training set that repeats an observation (no split makes one) keeps the full search."""
    plain = _trainer(True, nepochs=1)
    assert plain._distinct_batches is None
    plain.fit()
    assert plain._distinct_batches is True
    case = _trainer(True, nepochs=1)
    n = case.train_index.numel()
    repeated = Trainer(case.network, case.data, case.config, np.r_[np.arange(n), [3, 7]], None, n, progress=False)
    repeated.fit()
    assert repeated._distinct_batches is False and isinstance(repeated._fused, FusedStep)


@pytest.mark.skipif(
    getattr(fused_step.numba, "config", None) is None or fused_step.numba.config.NUMBA_NUM_THREADS < 2,
    reason="needs two threads",
)
def test_distinct_batches_skip_the_observation_rows_with_the_same_result(monkeypatch):
    """The trainer's batches are distinct observations: on two threads the search for distinct rows
    takes each observation's own row as new without its mark, and the run ends on the same bits as
    the general search; the marks are all clear after every step either way."""
    import numba

    runs, seen, call, before = [], set(), FusedStep.__call__, torch.get_num_threads()

    def step(self, index, distinct=False, skip=True, **kwargs):
        seen.add((self.obs_col, len(self.ref_table), numba.get_num_threads(), distinct and skip))
        terms = call(self, index, distinct and skip, **kwargs)
        assert (self.mark == -1).all()
        return terms

    for skip in (True, False):
        monkeypatch.setattr(
            FusedStep,
            "__call__",
            lambda self, index, distinct=False, skip=skip, **kw: step(self, index, distinct, skip, **kw),
        )
        torch.set_num_threads(2)  # the trainer's compiled step takes torch's count; the skip needs two threads
        try:
            t = _trainer(True, nepochs=2)
            t.fit()
        finally:
            torch.set_num_threads(before)
        runs.append(parameters(t))
    # two SIC lags, the grid row, then the observation's own row; two threads; with and without the skip
    assert seen == {(3, 4, 2, True), (3, 4, 2, False)}
    for name, value in runs[0].items():
        assert torch.equal(value, runs[1][name]), name


def test_fused_step_resumes_where_the_tensor_step_left(tmp_path):
    """Checkpoints are shared: two tensor epochs then two fused ones end where four tensor epochs end."""
    ref = _trainer(False)
    ref.fit()
    first = _trainer(False, nepochs=2)
    first.checkpoint_dir = tmp_path
    first.fit()
    second = _trainer(True)
    second.checkpoint_dir = tmp_path
    second.fit(resume=True)
    assert isinstance(second._fused, FusedStep) and second._fused._steps == 50
    for name, value in parameters(ref).items():
        np.testing.assert_allclose(parameters(second)[name].numpy(), value.numpy(), rtol=0, atol=2e-5)


@pytest.mark.parametrize("map_priors", ["sampled", "full"])
def test_a_resumed_fused_run_with_a_decaying_rate_ends_on_the_same_bits(tmp_path, map_priors):
    """--lr-decay: two epochs, then two more resumed, end where four end, bit for bit. With the whole-map
    priors the fused step is built with the trainer, before the checkpoint's optimiser state replaces the
    optimiser's groups: it kept the old group and stepped at the first epoch's rate (the SIC up to 0.17 off
    on the tiny twin after a resume)."""
    ref = _trainer(True, nepochs=4, lr_decay=0.5, map_priors=map_priors)
    ref.fit()
    first = _trainer(True, nepochs=2, lr_decay=0.5, map_priors=map_priors)
    first.checkpoint_dir = tmp_path
    first.fit()
    second = _trainer(True, nepochs=4, lr_decay=0.5, map_priors=map_priors)
    second.checkpoint_dir = tmp_path
    second.fit(resume=True)
    assert isinstance(second._fused, FusedStep) and second._fused.group is second.optimizers[0].param_groups[0]
    assert second._fused.group["lr"] == pytest.approx(1e-2 * 0.5**3)
    for name, value in parameters(ref).items():
        assert torch.equal(parameters(second)[name], value), name


@pytest.mark.parametrize("why", ["sparse-adam optimiser", "numba missing"])
def test_fused_step_falls_back_with_one_notice(why, monkeypatch, caplog):
    if why == "numba missing":
        monkeypatch.setattr(fused_step, "HAVE_NUMBA", False)
        t = _trainer(True, nepochs=2)
    else:
        t = _trainer(True, nepochs=2, optimizer="sparse-adam")
    with caplog.at_level(logging.INFO, logger="empirical_seaice"):
        h = t.fit()
    notices = [r for r in caplog.records if "fused training step not used" in r.getMessage()]
    assert len(notices) == 1 and "\n" not in notices[0].getMessage()
    assert ("numba" in notices[0].getMessage()) == (why == "numba missing")
    # numba missing is a warning; another optimiser scheme, chosen by the user (--exact-reference takes
    # dense-adam), is a line at -v: the documented path, which printed a WARNING in every such run
    assert notices[0].levelname == ("WARNING" if why == "numba missing" else "INFO")
    assert t._fused is False and len(h.epoch_terms) == 2 and np.isfinite(h.epoch_terms[-1]["total"])


def test_view_angle_input_takes_the_fused_step_without_a_notice(caplog):
    """The v2 network's view-angle input no longer falls back to the tensor step."""
    t = _trainer(True, nepochs=1, **CASES["v2-amsr2-atms-angle"])
    assert t.network.emissivity.angle_input
    with caplog.at_level(logging.WARNING, logger="empirical_seaice"):
        t.fit()
    assert "fused training step not used" not in caplog.text
    assert isinstance(t._fused, FusedStep) and t._fused._steps == 25


@pytest.mark.parametrize(
    "case",
    [
        "v2",
        "v2-anchor-frequency-priors-warm",
        "v1",
        "v2-amsr2-atms",
        "v2-amsr2-atms-angle-anchor-frequency",
        "v2-amsr2-ssmis-anchor-lacking",
        "v1-amsr2-ssmis-anchor-lacking",
    ],
)
@pytest.mark.parametrize("zero_sic", [False, True])
def test_compiled_simulation_equals_the_network_forward(case, zero_sic):
    """products.diagnostics.simulate runs the compiled forward pass (model/fused.py) where it applies."""
    from empirical_seaice.model.fused import simulate as fused_simulate
    from empirical_seaice.products.diagnostics import simulate

    kw = {k: v for k, v in CASES[case].items() if k in ("model_kw", "cost_kw", "warm", "sensors")}
    t = _trainer(True, nepochs=1, **kw)
    t.fit()  # trained weights and state, not the initial ones
    net, data = t.network, t.data
    with torch.no_grad():
        ref = net(data.all(), zero_sic=zero_sic)
    program, reason = net.fused_program(data, data.nobs, training=False)
    assert program is not None, reason
    tb, emis, sic, anchor = fused_simulate(program, data.nobs, zero_sic=zero_sic, chunk=150)  # 3 chunks
    own = np.asarray(net.basis.present)[data.ints[:, 2].numpy()]  # the sensor's channels; NaN in the others
    assert np.isnan(tb[~own]).all() and np.isnan(emis[~own]).all() and own.all() == (len(net.basis.sensor_names) == 1)
    np.testing.assert_allclose(tb[own], ref["tb"].numpy()[own], rtol=0, atol=2e-4)  # K
    np.testing.assert_allclose(emis[own], ref["emis_ice"].numpy()[own], rtol=0, atol=2e-6)
    np.testing.assert_allclose(sic, ref["sic"].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(anchor, ref["emis_anchor"].numpy().reshape(-1), rtol=0, atol=2e-6)
    assert (sic == 0).all() == zero_sic and np.nanstd(tb) > 1.0
    sim = simulate(net, data, data.nobs, zero_sic=zero_sic)  # the diagnostics' entry point uses it
    assert np.array_equal(sim.tb, tb, equal_nan=True) and np.array_equal(sim.emis_ice, emis, equal_nan=True)


def test_the_tensor_step_trains_on_its_own_thread_count_the_fused_step_on_the_runs(monkeypatch):
    """``tensor_step_threads`` (1 with an automatic --threads): the tensor step's torch operations on that
    many threads, the run's count put back after the epoch; the fused step keeps the run's count."""
    import numba

    from empirical_seaice.threads import torch_threads

    seen: dict[str, list[int]] = {"tensor": [], "fused": []}
    tensor = _trainer(False, nepochs=1, tensor_step_threads=1)
    step = tensor._tensor_step
    monkeypatch.setattr(
        tensor, "_tensor_step", lambda *a: (seen["tensor"].append(torch.get_num_threads()), step(*a))[1]
    )
    fused = _trainer(True, nepochs=1, tensor_step_threads=1)
    call = FusedStep.__call__

    def counted(self, *a, **k):
        seen["fused"].append(numba.get_num_threads())
        return call(self, *a, **k)

    monkeypatch.setattr(FusedStep, "__call__", counted)
    with torch_threads(2):
        tensor.fit()
        assert torch.get_num_threads() == 2
        fused.fit()
    assert seen["tensor"] == [1] * 25
    assert seen["fused"] == [min(2, numba.config.NUMBA_NUM_THREADS)] * 25


@pytest.mark.parametrize("case", ["v2", "v1"])
def test_the_compiled_flush_equals_deferred_adams(monkeypatch, case):
    """FusedStep.flush (the epoch end's catch-up of every row, compiled) brings the same rows to the same step
    as DeferredAdam.flush, with values equal to float32 rounding (float64 coefficients against float32);
    rows never stepped and the marks in the padding column stay as they were."""
    monkeypatch.setattr(Trainer, "flush", lambda self: None)  # the rows left lagging at the epoch's end
    trainer = _trainer(True, nepochs=1, **CASES[case])
    trainer.fit()
    step = trainer._fused
    assert isinstance(step, FusedStep)
    d = step.deferred
    c = step.c
    slab = step.slab_t
    before = slab.clone()
    last = before[:, 3 * c]
    nstep = int(d.state[step.group["params"][0]]["step"])
    lagging = (last > 0) & (last < nstep)
    assert nstep == 25 and int(lagging.sum()) >= 10  # the test has rows to catch up
    step.flush()
    compiled = slab.clone()
    slab.copy_(before)
    d.flush()
    assert torch.equal(compiled[:, 3 * c], slab[:, 3 * c])  # the same rows brought to the same step
    assert torch.equal(compiled[:, 3 * c][lagging], torch.full((int(lagging.sum()),), float(nstep)))
    bits, bits_before = compiled.view(torch.int32), before.view(torch.int32)  # the marks' bits: NaN as floats
    assert torch.equal(bits[~lagging], bits_before[~lagging])  # never stepped or current: untouched
    assert torch.equal(bits[:, 3 * c + 1 :], bits_before[:, 3 * c + 1 :])  # padding and marks
    moved = (compiled[:, : 3 * c] - before[:, : 3 * c]).abs().max()
    assert moved > 1e-6  # the catch-up changed the values ...
    torch.testing.assert_close(compiled[:, : 3 * c], slab[:, : 3 * c], rtol=2e-6, atol=1e-7)  # ... as torch's


@pytest.mark.parametrize("case", ["v2", "v2-amsr2-atms-angle", "v1"])
def test_the_held_out_cost_of_the_compiled_forward_pass_equals_the_tensor_steps(monkeypatch, case):
    """The validation's held-out cost with the fused step: the compiled forward pass and the observation
    term in float64 (FusedProgram.obs_cost_sum), equal to the tensor path's evaluate_obs_cost to float32
    rounding, and what the trainer books at each epoch's end."""
    from empirical_seaice.model.fused import FusedProgram
    from empirical_seaice.training.history import evaluate_obs_cost

    kw = dict(CASES[case])
    obs, bg, model, cost, counts = step_case(
        kw.get("model_kw"), kw.get("cost_kw"), False, kw.get("sensors", ("amsr2",))
    )
    net = HybridNetwork(model, cost, obs.basis, bg, obs.nobs, row_counts=counts, generator=make_generator(3))
    cfg = TrainingConfig(nepochs=2, batch_size=16, learning_rate=1e-2, fused_step=True, validation_fraction=0.25)
    held = np.arange(0, obs.nobs, 4)
    train = np.setdiff1d(np.arange(obs.nobs), held)
    calls = []
    summed = FusedProgram.obs_cost_sum

    def spied(self, index):
        calls.append(index.copy())
        return summed(self, index)

    monkeypatch.setattr(FusedProgram, "obs_cost_sum", spied)
    trainer = Trainer(net, ObservationTensors(obs), cfg, train, held, obs.nobs, progress=False)
    trainer.fit()
    assert len(calls) == 2 and all(np.array_equal(c, held) for c in calls)  # each epoch's end, the held-out rows
    tensor = evaluate_obs_cost(trainer.network, trainer.data, torch.from_numpy(held), obs.nobs, 64)
    assert tensor > 1.0
    assert trainer.history.valid_cost[-1] == pytest.approx(tensor, rel=1e-5)
    other = trainer._fused.program.obs_cost_sum(train) / train.size  # another set of rows: another cost
    assert abs(other - tensor) > 1e-3 * tensor


@pytest.mark.skipif(
    getattr(fused_step.numba, "config", None) is None or fused_step.numba.config.NUMBA_NUM_THREADS < 2,
    reason="needs two threads",
)
def test_the_held_out_cost_and_the_simulation_are_the_same_on_one_and_two_threads():
    """The compiled held-out cost gathers the state rows and sums the observation term in fixed parts of the
    rows on numba's threads: the same float64 sum on one thread and on two, and the forward pass's outputs
    the same bits; the sum is the observation term of those outputs."""
    from empirical_seaice.model.fused import simulate

    t = _trainer(True, nepochs=1)
    t.fit()
    program, nobs = t._fused.program, t.data.nobs
    rows = np.arange(1, nobs, 3)
    got = []
    for threads in (1, 2):
        fused_step.set_threads(threads)
        got.append((program.obs_cost_sum(rows), simulate(program, nobs)))
    fused_step.set_threads(torch.get_num_threads())
    (cost1, sim1), (cost2, sim2) = got
    assert cost1 == cost2 and cost1 > 0
    for a, b in zip(sim1, sim2, strict=True):
        np.testing.assert_array_equal(a, b)
    batch = t.data.batch(torch.from_numpy(rows))
    mask = batch.mask.numpy() > 0
    y, h = batch.tb_obs_k.numpy().astype(np.float64), sim1[0][rows].astype(np.float64)
    sigma = t.network.obs_error_k.detach().numpy().astype(np.float64)
    assert cost1 == pytest.approx(float((((y - h) / sigma) ** 2)[mask].sum()), rel=1e-12)


def test_tables_without_a_channel_map_fall_back_with_the_reason():
    """Packed tables that do not say which basis channel each column is (a row's own sensor's channels)
    get no fused program, and say why (the reason the trainer's one-line notice gives before the tensor
    step trains)."""
    t = _trainer(True, nepochs=1)

    class Unmapped:  # the packed arrays alone
        floats, ints, _slices, nobs = t.data.floats, t.data.ints, t.data._slices, t.data.nobs

    program, reason = t.network.fused_program(Unmapped(), t.data.nobs, training=True)
    assert program is None and reason == "the observation tensors hold no channel map of the network's sensors"
    assert t.network.fused_program(t.data, t.data.nobs, training=True)[0] is not None


def test_the_network_is_evaluated_at_the_sensors_own_frequencies():
    """v2: each sensor's evaluations are the distinct frequencies of its own channels, plus the anchor
    channel's where the sensor lacks it (SSMIS and 10v): not every frequency of the run's channels."""
    t = _trainer(True, nepochs=1, **CASES["v2-amsr2-ssmis-anchor-lacking"])
    program, _ = t.network.fused_program(t.data, t.data.nobs, training=True)
    basis, a = t.network.basis, program.arrays
    anchor = int(program.ip[6])
    own = [len(np.unique(basis.freq_ghz[s][basis.present[s]])) for s in range(basis.nsensor)]
    lacks = [not basis.present[s, anchor] for s in range(basis.nsensor)]
    assert own == [5, 8] and lacks == [False, True]  # AMSR2 (10v its own), SSMIS F17
    assert a["nfreq"].tolist() == [5, 9]  # SSMIS: + 10.65 GHz, the anchor's
    assert [len(np.unique(basis.freq_ghz[s])) for s in range(basis.nsensor)] == [9, 10]  # every channel's


def _hold_grid_point(trainer: Trainer, point: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Hold grid point ``point``'s state rows and its observations' (``network.region_rows``) in the
    trainer's optimiser before it trains; returns those rows."""
    igrid = trainer.data.batch(torch.arange(trainer.nobs_total)).igrid
    tables = trainer.network.region_rows(torch.tensor([point]), torch.nonzero(igrid == point)[:, 0])
    trainer._deferred().hold(tables)
    return tables


@pytest.mark.parametrize("case", ["v2", "v1"])
def test_held_rows_stay_put_and_the_rest_trains_alike_in_both_steps(case):
    """Rows held by the optimiser (a region's early stop) do not move in 100 steps of either step, though
    their observations train the network; every other row and weight ends alike in both steps, and
    differs from a run without the hold (the held rows' observations see other values)."""
    kw = CASES[case]
    tensor, fused, free = _trainer(False, **kw), _trainer(True, **kw), _trainer(True, **kw)
    start = parameters(tensor)
    held = [_hold_grid_point(t, 1) for t in (tensor, fused)][0]
    h_tensor, h_fused = tensor.fit(), fused.fit()
    free.fit()
    assert isinstance(fused._fused, FusedStep) and fused._fused._steps == 100
    assert len(held) == (2 if case == "v1" else 3) and all(rows.numel() for _, rows in held)
    names = {id(p): name for name, p in tensor.network.named_parameters()}  # the held rows' tables, by name
    for trainer in (tensor, fused, free):
        tables = dict(trainer.network.named_parameters())
        for p, rows in held:
            name = names[id(p)]
            same = torch.equal(tables[name][rows], start[name][rows])
            assert same == (trainer is not free), (name, trainer is free)
    a, b, c = parameters(tensor), parameters(fused), parameters(free)
    for name in a:
        assert (a[name] - b[name]).abs().max().item() <= 2e-5 + 2e-7 * a[name].abs().max().item(), name
        if name.startswith("emissivity."):  # the held rows' observations saw other values than without a hold
            assert (b[name] - c[name]).abs().max().item() > 1e-4, name
    assert h_fused.epoch_terms[-1]["obs"] == pytest.approx(h_tensor.epoch_terms[-1]["obs"], rel=2e-5)
