"""The streamed diagnostics passes (run/streamed.py) equal the whole-array diagnostics: cost, departures,
health figures, truth emissivity errors, and the per-observation files."""

from __future__ import annotations

import dataclasses
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import xarray as xr

from empirical_seaice.config import PRESETS
from empirical_seaice.cost.sampling import build_row_counts
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import outputs as out
from empirical_seaice.model.operator import HybridNetwork, ObservationTensors
from empirical_seaice.observations import BackgroundMaps
from empirical_seaice.products import diagnostics as d
from empirical_seaice.run import streamed
from empirical_seaice.run.health import check_trained, state_figures
from empirical_seaice.threads import parallel_layer_shared

from .fakes import make_obs


@pytest.fixture
def case():
    obs = make_obs(nobs=300, sensors=("amsr2", "gmi"), ngrid=5, nstep=4, seed=2)
    preset = PRESETS["v2"]
    rng = np.random.default_rng(0)
    bg = BackgroundMaps(
        sic=rng.uniform(0, 1, (5, 5)).astype(np.float32), t_skin_map_k=np.full((5, 4), 260.0, np.float32), nlag=1
    )
    net = HybridNetwork(
        preset.model, preset.cost, obs.basis, bg, obs.nobs,
        row_counts=build_row_counts(obs, 1, 5, 4), generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    return obs, bg, net, ObservationTensors(obs, "cpu")


def _read(path, name):
    with xr.open_dataset(path) as ds:
        return ds[name].values


@pytest.mark.parametrize("block", [64, 1000])
def test_streamed_passes_equal_the_whole_array_diagnostics(case, tmp_path, monkeypatch, block):
    obs, bg, net, data = case
    monkeypatch.setattr(out, "block_rows", lambda *a, **k: block)  # several blocks, or one
    sim = d.simulate(net, data, obs.nobs)
    zero = d.simulate(net, data, obs.nobs, zero_sic=True)
    cost, dep = d.full_cost(net, obs, sim, obs.nobs), d.departure_stats(obs, sim.tb)
    truth = SimpleNamespace(
        sic=np.random.default_rng(1).uniform(0, 1, (5, 4)),
        emis_ice=np.where(obs.mask, np.random.default_rng(2).uniform(0.8, 1.0, obs.tb_obs_k.shape), np.nan),
    )
    held = out.HeldOutputs(tmp_path)
    first = streamed.initial_pass(net, data, obs, obs.nobs, held, tmp_path / "tbsim_initial_t.nc")
    paths = {k: tmp_path / f"{k}_t.nc" for k in ("tbobs", "tbsim", "ice_emis", "tbzero")}
    final = streamed.final_pass(net, data, obs, obs.nobs, held, paths, truth, (bg.lon, bg.lat))
    for result in (first, final):
        assert result.cost.keys() == cost.keys()
        for k in cost:
            assert result.cost[k] == pytest.approx(cost[k], rel=1e-12, abs=1e-12), k
        np.testing.assert_array_equal(result.departures.count, dep.count)
        np.testing.assert_allclose(result.departures.mean, dep.mean, rtol=1e-12)
        np.testing.assert_allclose(result.departures.std, dep.std, rtol=1e-9)
    whole = check_trained(net, obs, sim, cost, cost)
    assert check_trained(net, obs, final.checks, cost, final.cost).figures == pytest.approx(whole.figures)
    scores = d.truth_scores(obs, bg, net.state.sic_array(), sim.emis_ice, truth)
    streamed_scores = d.truth_scores(obs, bg, net.state.sic_array(), None, truth, emis_errors=final.emis_errors)
    np.testing.assert_array_equal(streamed_scores.emis_count, scores.emis_count)
    np.testing.assert_allclose(streamed_scores.emis_rmse, scores.emis_rmse, rtol=1e-12)
    # nothing is an output before it is promoted; then the files hold what the whole arrays give
    assert sorted(p.name for p in tmp_path.iterdir()) == [".held"]
    for kind in ("tbsim_initial", *paths):
        held.promote(tmp_path / f"{kind}_t.nc")
    nan = np.float32(np.nan)
    np.testing.assert_array_equal(_read(tmp_path / "tbsim_t.nc", "tb"), np.where(obs.mask, sim.tb, nan))
    np.testing.assert_array_equal(_read(tmp_path / "tbsim_initial_t.nc", "tb"), np.where(obs.mask, sim.tb, nan))
    np.testing.assert_array_equal(_read(tmp_path / "tbzero_t.nc", "tb"), np.where(obs.mask, zero.tb, nan))
    np.testing.assert_array_equal(_read(tmp_path / "ice_emis_t.nc", "ice_emis"), np.where(obs.mask, sim.emis_ice, nan))
    np.testing.assert_array_equal(_read(tmp_path / "tbobs_t.nc", "tb"), np.where(obs.mask, obs.tb_obs_k, nan))


def test_the_final_pass_without_files_only_sums(case, tmp_path):
    obs, _, net, data = case
    final = streamed.final_pass(net, data, obs, obs.nobs, None, None)
    assert final.files == {} and final.emis_errors is None
    assert list(tmp_path.iterdir()) == []


def test_the_final_pass_computes_on_one_thread_while_it_writes(case, tmp_path, monkeypatch):
    """With files to write, the blocks are packed and the compiled forward pass runs on the pass's
    thread alone (other OpenMP threads would take the compressing threads' cores), while the cost's
    torch sums keep the run's thread count (their rounding depends on it); the run's counts are
    back afterwards and the files hold the same values. Without files the run's counts stay."""
    numba = pytest.importorskip("numba")
    from empirical_seaice.io import chunk_writer
    from empirical_seaice.model import fused, tensors

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba offers one thread here")
    obs, bg, net, data = case
    monkeypatch.setattr(out, "block_rows", lambda *a, **k: 100)  # three blocks
    seen: dict[str, list[int]] = {"simulate": [], "pack": [], "cost": [], "compress": []}

    def counted(name, f, threads):
        def g(*args, **kwargs):
            seen[name].append(threads())
            return f(*args, **kwargs)

        return g

    monkeypatch.setattr(fused, "simulate_range", counted("simulate", fused.simulate_range, numba.get_num_threads))
    monkeypatch.setattr(fused, "simulate_range", counted("compress", fused.simulate_range, chunk_writer.threads))
    monkeypatch.setattr(tensors, "pack_floats", counted("pack", tensors.pack_floats, torch.get_num_threads))
    monkeypatch.setattr(d, "cost_from_sums", counted("cost", d.cost_from_sums, torch.get_num_threads))
    priors_on: list[tuple[str, int]] = []  # the whole-map priors: the thread that computes them, its numba count
    real_priors = type(net).full_prior_values

    def priors(self, *args):
        priors_on.append((threading.current_thread().name.split("_")[0], numba.get_num_threads()))
        return real_priors(self, *args)

    monkeypatch.setattr(type(net), "full_prior_values", priors)
    sim = d.simulate(net, data, obs.nobs)
    blocks = tensors.ObservationBlocks(obs, "cpu")
    before = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(2)
    torch.set_num_threads(2)
    compressing = chunk_writer.set_threads(2)
    try:
        held = out.HeldOutputs(tmp_path)
        paths = {k: tmp_path / f"{k}_t.nc" for k in ("tbobs", "tbsim", "ice_emis", "tbzero")}
        for v in seen.values():
            v.clear()
        streamed.final_pass(net, blocks, obs, obs.nobs, held, paths, None, (bg.lon, bg.lat))
        # the compressing threads one fewer: the sums and writes of each block take a core (run.streamed._InOrder)
        assert seen == {"simulate": [1, 1, 1], "pack": [1, 1, 1], "cost": [2], "compress": [1, 1, 1]}
        assert (numba.get_num_threads(), torch.get_num_threads(), chunk_writer.threads()) == (2, 2, 2)
        # the cost's whole-map priors on the sums' thread, one thread, beside the blocks (OpenMP or TBB)
        assert priors_on == ([("final-pass-sums", 1)] if parallel_layer_shared() else [("MainThread", 2)])
        for v in seen.values():
            v.clear()
        priors_on.clear()
        streamed.final_pass(net, blocks, obs, obs.nobs, None, None)
        assert seen == {"simulate": [2, 2, 2], "pack": [2, 2, 2], "cost": [2], "compress": [2, 2, 2]}
        assert priors_on == [("MainThread", 2)]  # without files: after the blocks, on the run's threads
    finally:
        numba.set_num_threads(before[0])
        torch.set_num_threads(before[1])
        chunk_writer.set_threads(compressing)
    held.promote(paths["tbsim"])
    np.testing.assert_array_equal(_read(paths["tbsim"], "tb"), np.where(obs.mask, sim.tb, np.float32(np.nan)))


def _variables(path):
    with xr.open_dataset(path, decode_times=False) as ds:
        return {str(k): (v.dims, v.values.copy(), dict(v.attrs)) for k, v in ds.variables.items()}, dict(ds.attrs)


def test_tbobs_written_ahead_equals_the_final_pass_file(case, tmp_path, monkeypatch):
    """``tbobs`` written by the background writer (beside the held-out fit, compressing on its own thread
    alone) is the final pass's file: every variable, value and attribute; the truth comes with it; the
    final pass without ``tbobs`` writes the other three files as before."""
    from empirical_seaice.io import chunk_writer

    obs, bg, net, data = case
    monkeypatch.setattr(out, "block_rows", lambda *a, **k: 128)  # 128, 128, 44: several blocks
    inline, early = out.HeldOutputs(tmp_path / "inline"), out.HeldOutputs(tmp_path / "early")
    paths = {k: tmp_path / f"{k}_t.nc" for k in ("tbobs", "tbsim", "ice_emis", "tbzero")}
    streamed.final_pass(net, data, obs, obs.nobs, inline, paths, None, (bg.lon, bg.lat))

    def no_pool():
        raise AssertionError("the background writer compresses on its own thread, not on the pool")

    with monkeypatch.context() as m:
        m.setattr(chunk_writer, "_executor", no_pool)
        ahead = streamed.AheadOfFinalPass(early, paths["tbobs"], obs, (bg.lon, bg.lat), lambda: "the truth")
        assert ahead.start().result() == "the truth"
    rest = {k: p for k, p in paths.items() if k != "tbobs"}
    final = streamed.final_pass(net, data, obs, obs.nobs, early, rest, None, (bg.lon, bg.lat))
    assert final.files == rest
    for kind in paths:
        (got, got_attrs), (want, want_attrs) = _variables(early.path(paths[kind])), _variables(inline.path(paths[kind]))
        assert got.keys() == want.keys() and got_attrs.keys() == want_attrs.keys(), kind
        for name, (dims, values, attrs) in want.items():
            assert got[name][0] == dims and got[name][2].keys() == attrs.keys(), (kind, name)
            np.testing.assert_array_equal(got[name][1], values, err_msg=f"{kind}: {name}")
    tb = _variables(early.path(paths["tbobs"]))[0]["tb"][1]
    np.testing.assert_array_equal(tb, np.where(obs.mask, obs.tb_obs_k, np.float32(np.nan)))


def test_a_failure_of_the_background_writer_is_one_line_and_leaves_no_file(case, tmp_path, monkeypatch):
    obs, bg, _, _ = case
    monkeypatch.setattr(out, "block_rows", lambda *a, **k: 128)
    calls = []

    def failing(obs, rows):
        calls.append(rows.start)
        if rows.start > 0:
            raise ValueError("a bug\nwith a second line")
        return np.array(obs.tb_obs_k[rows], np.float32), np.array(obs.mask[rows], bool)

    monkeypatch.setattr(streamed, "_observed_rows", failing)
    held = out.HeldOutputs(tmp_path)
    ahead = streamed.AheadOfFinalPass(held, tmp_path / "tbobs_t.nc", obs, (bg.lon, bg.lat), lambda: "truth")
    with pytest.raises(SeaIceError) as err:
        ahead.start().result()
    message = str(err.value)
    assert calls == [0, 128] and "\n" not in message
    assert message == "writing tbobs_t.nc beside the held-out fit failed (ValueError: a bug); nothing was published"
    assert list(held.dir.iterdir()) == []  # neither the file nor its temporary


def test_a_failure_to_read_the_truth_beside_the_held_out_fit_names_the_truth(case, tmp_path):
    obs, bg, _, _ = case

    def no_truth():
        raise OSError("truth_sic.nc: unreadable")

    held = out.HeldOutputs(tmp_path)
    ahead = streamed.AheadOfFinalPass(held, tmp_path / "tbobs_t.nc", obs, (bg.lon, bg.lat), no_truth)
    with pytest.raises(SeaIceError) as err:
        ahead.start().result()
    assert str(err.value) == (
        "reading the twin's truth beside the held-out fit failed (OSError: truth_sic.nc: unreadable); "
        "nothing was published"
    )


def test_the_final_pass_sums_the_same_bits_with_and_without_its_files(case, tmp_path, monkeypatch):
    """With files the final pass sums each block on a thread of its own (:class:`streamed._InOrder`);
    without, on its own thread: the same additions in the same order, so the same bits."""
    obs, bg, net, data = case
    monkeypatch.setattr(out, "block_rows", lambda *a, **k: 64)  # five blocks
    truth = SimpleNamespace(
        sic=np.random.default_rng(1).uniform(0, 1, (5, 4)),
        emis_ice=np.where(obs.mask, np.random.default_rng(2).uniform(0.8, 1.0, obs.tb_obs_k.shape), np.nan),
    )
    paths = {k: tmp_path / f"{k}_t.nc" for k in ("tbobs", "tbsim", "ice_emis", "tbzero")}
    held = out.HeldOutputs(tmp_path)
    side = streamed.final_pass(net, data, obs, obs.nobs, held, paths, truth, (bg.lon, bg.lat), state_figures=True)
    alone = streamed.final_pass(net, data, obs, obs.nobs, None, None, truth, state_figures=True)
    assert side.cost == alone.cost  # exactly
    for name in ("count", "mean", "std"):
        np.testing.assert_array_equal(getattr(side.departures, name), getattr(alone.departures, name))
    assert side.checks is not None and alone.checks is not None
    assert vars(side.checks).keys() == vars(alone.checks).keys()
    for name, value in vars(alone.checks).items():
        if name != "state":
            np.testing.assert_array_equal(vars(side.checks)[name], value, err_msg=name)
    # the state's figures (state_figures=True): gathered on the side thread beside the blocks (None without
    # it: the checks compute them), the same figures and the same report either way
    assert alone.checks.state is None and side.checks.state is not None
    for got, want in zip(side.checks.state, state_figures(net.state), strict=True):
        np.testing.assert_equal(dataclasses.astuple(got), dataclasses.astuple(want))  # (NaN where a table is empty)
    whole = check_trained(net, obs, alone.checks, side.cost, side.cost)
    assert check_trained(net, obs, side.checks, side.cost, side.cost) == whole and whole.figures["sic_max"] > 0
    assert side.emis_errors is not None and alone.emis_errors is not None
    for name, value in vars(alone.emis_errors).items():
        np.testing.assert_array_equal(vars(side.emis_errors)[name], value, err_msg=name)


def test_a_failure_of_the_forward_pass_with_blocks_on_the_side_thread_leaves_no_file(case, tmp_path, monkeypatch):
    """The pass's own thread fails (block 3 of 5) while earlier blocks are summed and written on the side
    thread: the failure is raised, the side thread is waited for and gone, no held file is left."""
    from empirical_seaice.model import fused

    obs, bg, net, data = case
    monkeypatch.setattr(out, "block_rows", lambda *a, **k: 64)
    simulate, calls = fused.simulate_range, []

    def failing(program, start, stop, *args, **kwargs):
        calls.append(start)
        if len(calls) == 3:
            raise RuntimeError("simulation failed")
        return simulate(program, start, stop, *args, **kwargs)

    monkeypatch.setattr(fused, "simulate_range", failing)
    held = out.HeldOutputs(tmp_path)
    paths = {k: tmp_path / f"{k}_t.nc" for k in ("tbobs", "tbsim", "ice_emis", "tbzero")}
    with pytest.raises(RuntimeError, match="simulation failed"):
        streamed.final_pass(net, data, obs, obs.nobs, held, paths, None, (bg.lon, bg.lat))
    assert calls == [0, 64, 128]
    assert not [t for t in threading.enumerate() if t.name.startswith("final-pass-sums")]
    assert list(held.dir.iterdir()) == []


def test_a_cancelled_background_writer_stops_and_leaves_no_file(case, tmp_path, monkeypatch):
    """The run failed or was interrupted during the held-out fit: :meth:`cancel` stops the writer at its
    next block and waits; its file is removed, the truth never read, its own error (none here) dropped."""
    obs, bg, _, _ = case
    monkeypatch.setattr(out, "block_rows", lambda *a, **k: 64)
    first, go_on = threading.Event(), threading.Event()
    rows_written = []

    def slow(obs, rows):
        rows_written.append(rows.start)
        first.set()
        go_on.wait(10)
        return np.array(obs.tb_obs_k[rows], np.float32), np.array(obs.mask[rows], bool)

    monkeypatch.setattr(streamed, "_observed_rows", slow)
    truth_read = []
    held = out.HeldOutputs(tmp_path)
    ahead = streamed.AheadOfFinalPass(
        held, tmp_path / "tbobs_t.nc", obs, (bg.lon, bg.lat), lambda: truth_read.append(1)
    ).start()
    assert first.wait(10)
    stopper = threading.Thread(target=ahead.cancel)
    stopper.start()
    deadline = time.monotonic() + 10
    while not ahead._stop.is_set() and time.monotonic() < deadline:  # asked to stop, while in its first block
        time.sleep(0.001)
    go_on.set()
    stopper.join(10)
    assert not stopper.is_alive() and rows_written == [0] and truth_read == []
    assert list(held.dir.iterdir()) == []
    assert ahead.result() is None  # cancelled: nothing to raise


def test_a_failure_in_the_final_pass_sums_thread_is_raised_and_leaves_no_file(case, tmp_path, monkeypatch):
    """The final pass sums and writes each block on a thread of its own: a failure there is raised in the
    pass's thread, the blocks after it never summed, and no held file is left (nor a temporary)."""
    from empirical_seaice.run import health

    obs, bg, net, data = case
    monkeypatch.setattr(out, "block_rows", lambda *a, **k: 64)  # five blocks
    seen = []
    add = health.ObservationChecks.add

    def failing(self, tb, *args):
        seen.append(len(tb))
        if len(seen) == 2:
            raise ValueError("checks failed")
        return add(self, tb, *args)

    monkeypatch.setattr(health.ObservationChecks, "add", failing)
    held = out.HeldOutputs(tmp_path)
    paths = {k: tmp_path / f"{k}_t.nc" for k in ("tbsim", "ice_emis", "tbzero")}
    with pytest.raises(ValueError, match="checks failed"):
        streamed.final_pass(net, data, obs, obs.nobs, held, paths, None, (bg.lon, bg.lat))
    assert seen == [64, 64]
    assert list(held.dir.iterdir()) == []
