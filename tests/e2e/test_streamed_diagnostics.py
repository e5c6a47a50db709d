"""The streamed diagnostics passes (run/streamed.py) equal the whole-array diagnostics: cost, departures,
health figures, truth emissivity errors, and the per-observation files."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import xarray as xr

from empirical_seaice.config import PRESETS
from empirical_seaice.cost.sampling import build_row_counts
from empirical_seaice.io import outputs as out
from empirical_seaice.model.operator import HybridNetwork, ObservationTensors
from empirical_seaice.observations import BackgroundMaps
from empirical_seaice.products import diagnostics as d
from empirical_seaice.run import streamed
from empirical_seaice.run.health import check_trained

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
    assert final.files == {} and final.emis_errors is None and final.checks.nice >= 0
    assert list(tmp_path.iterdir()) == []


def test_the_final_pass_computes_on_one_thread_while_it_writes(case, tmp_path, monkeypatch):
    """With files to write, the blocks are packed and the compiled forward pass runs on the pass's
    thread alone (other OpenMP threads would take the compressing threads' cores), while the cost's
    torch sums keep the run's thread count (their rounding depends on it); the run's counts are
    back afterwards and the files hold the same values. Without files the run's counts stay."""
    numba = pytest.importorskip("numba")
    from empirical_seaice.model import fused, tensors

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba offers one thread here")
    obs, bg, net, data = case
    monkeypatch.setattr(out, "block_rows", lambda *a, **k: 100)  # three blocks
    seen: dict[str, list[int]] = {"simulate": [], "pack": [], "cost": []}

    def counted(name, f, threads):
        def g(*args, **kwargs):
            seen[name].append(threads())
            return f(*args, **kwargs)

        return g

    monkeypatch.setattr(fused, "simulate_range", counted("simulate", fused.simulate_range, numba.get_num_threads))
    monkeypatch.setattr(tensors, "pack_floats", counted("pack", tensors.pack_floats, torch.get_num_threads))
    monkeypatch.setattr(d, "cost_from_sums", counted("cost", d.cost_from_sums, torch.get_num_threads))
    sim = d.simulate(net, data, obs.nobs)
    blocks = tensors.ObservationBlocks(obs, "cpu")
    before = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(2)
    torch.set_num_threads(2)
    try:
        held = out.HeldOutputs(tmp_path)
        paths = {k: tmp_path / f"{k}_t.nc" for k in ("tbobs", "tbsim", "ice_emis", "tbzero")}
        for v in seen.values():
            v.clear()
        streamed.final_pass(net, blocks, obs, obs.nobs, held, paths, None, (bg.lon, bg.lat))
        assert seen == {"simulate": [1, 1, 1], "pack": [1, 1, 1], "cost": [2]}
        assert (numba.get_num_threads(), torch.get_num_threads()) == (2, 2)
        for v in seen.values():
            v.clear()
        streamed.final_pass(net, blocks, obs, obs.nobs, None, None)
        assert seen == {"simulate": [2, 2, 2], "pack": [2, 2, 2], "cost": [2]}
    finally:
        numba.set_num_threads(before[0])
        torch.set_num_threads(before[1])
    held.promote(paths["tbsim"])
    np.testing.assert_array_equal(_read(paths["tbsim"], "tb"), np.where(obs.mask, sim.tb, np.float32(np.nan)))
