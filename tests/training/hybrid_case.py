"""A small twin for the optimiser-equivalence test: observations simulated by a
"truth" HybridNetwork (random SIC, properties and emissivity weights) plus
noise of half the observation error; training starts from a perturbed SIC
background and other random emissivity weights."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from empirical_seaice.config import CostConfig, ModelConfig
from empirical_seaice.cost.sampling import build_row_counts
from empirical_seaice.model.operator import HybridNetwork
from empirical_seaice.model.tensors import ObservationTensors
from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.sensors import build_channel_basis
from empirical_seaice.training.runtime import make_generator


def make_case(nobs: int = 400, ngrid: int = 4, nstep: int = 5, nlag: int = 1, seed: int = 0, sensors=("amsr2",)):
    rng = np.random.default_rng(seed)
    basis = build_channel_basis(list(sensors))
    nc = basis.nchan
    cell = np.concatenate([np.arange(ngrid * nstep), rng.integers(0, ngrid * nstep, nobs - ngrid * nstep)])
    igrid = (cell // nstep).astype(np.int32)
    istep = (cell % nstep).astype(np.int32)
    isensor = (np.arange(nobs) % len(sensors)).astype(np.int16)
    mask = basis.present[isensor].copy()
    f32 = np.float32

    def u(lo, hi, shape):
        return rng.uniform(lo, hi, shape).astype(f32)

    obs = Observations.from_columns(
        igrid=igrid,
        istep=istep,
        isensor=isensor,
        t_skin_k=u(240, 272, nobs),
        wind_ms=u(0, 15, nobs),
        cloud_fraction=u(0, 1, nobs),
        # used by cross-track sensors only (own generator: the default case's data stay as they were)
        zenith_deg=np.random.default_rng(seed + 1).uniform(0, 60, nobs).astype(f32),
        julian_day=2459000.5 + istep,
        obs_index=np.arange(nobs, dtype=np.int64),
        tb_obs_k=np.zeros((nobs, nc), f32),
        mask=mask,
        emis_water=u(0.4, 0.7, (nobs, nc)),
        tau=u(0.6, 1.0, (nobs, nc)),
        t_down_k=u(10, 60, (nobs, nc)),
        t_up_k=u(10, 60, (nobs, nc)),
        tau_cld=u(0.4, 0.9, (nobs, nc)),
        t_down_cld_k=u(20, 100, (nobs, nc)),
        t_up_cld_k=u(20, 100, (nobs, nc)),
        basis=basis,
        ngrid=ngrid,
        nstep=nstep,
        jd_origin=2459000.0,
    )
    sic_true = u(0.0, 1.0, (ngrid, nstep + nlag))
    tmap = u(255, 272, (ngrid, nstep))
    model, cost = ModelConfig(ice_emis_init=0.9), CostConfig()
    truth = HybridNetwork(
        model,
        cost,
        basis,
        BackgroundMaps(sic_true, tmap, nlag),
        nobs,
        sparse=False,
        prior_mode="full",
        generator=make_generator(7),
    )
    with torch.no_grad():
        truth.state.props_grid.weight.normal_(0, 0.5, generator=make_generator(8))
        truth.state.props_obs.weight.normal_(0, 0.5, generator=make_generator(9))
        tb = truth(ObservationTensors(obs).all())["tb"].numpy()
    obs.tb_obs_k = np.where(mask, tb + rng.normal(0, 0.5, tb.shape) * basis.obs_error_k, 0).astype(f32)
    background = BackgroundMaps(np.clip(sic_true + rng.normal(0, 0.15, sic_true.shape), 0, 1).astype(f32), tmap, nlag)
    return obs, background, model, cost


def step_case(model_kw=None, cost_kw=None, warm=False, sensors=("amsr2",)):
    """:func:`make_case` with 400 observations for the step-equality tests: the preset configs
    replaced by ``model_kw`` / ``cost_kw``; ``warm`` puts a third of the map rows above 273.2 K
    (the warm-ice term is not zero). Returns ``(obs, background, model, cost, row_counts)``."""
    obs, bg, model, cost = make_case(nobs=400, sensors=sensors)
    model = replace(model, **(model_kw or {}))
    cost = replace(cost, **(cost_kw or {}))
    if warm:
        t = bg.t_skin_map_k.copy()
        t[:, ::3] = 276.0
        bg = BackgroundMaps(bg.sic, t, bg.nlag)
    # the 4 grid points on a 2 x 2 square of 1 degree at the equator (the smoothness prior's neighbours)
    bg = BackgroundMaps(bg.sic, bg.t_skin_map_k, bg.nlag, lon=np.array([0, 1, 0, 1], np.float32), lat=LAT_2X2)
    return obs, bg, model, cost, build_row_counts(obs, model.nlag, obs.ngrid, obs.nstep)


LAT_2X2 = np.array([0, 0, 1, 1], np.float32)


def parameters(trainer) -> dict[str, torch.Tensor]:
    """A copy of every parameter of the trainer's network, by name."""
    return {k: v.detach().clone() for k, v in trainer.network.named_parameters()}


def assert_trained_alike(tensor, fused, start, h_tensor, h_fused, warm=False, tolerance=None) -> None:
    """Two trainers of the same case ended alike: every parameter to ``tolerance(name, value)`` (default
    float32 rounding: ``2e-5 + 2e-7 max|value|``; lr 1e-2 moves a row up to ~1e-2 per step), every
    parameter but the output bias really trained (moved > 50x the difference and > 1e-3), the same
    cost terms to their rounding, and with ``warm`` rows a warm-ice term."""
    a, b = parameters(tensor), parameters(fused)
    for name in a:
        moved = (a[name] - start[name]).abs().max().item()
        diff = (a[name] - b[name]).abs().max().item()
        tol = tolerance(name, a[name]) if tolerance else 2e-5 + 2e-7 * a[name].abs().max().item()
        assert diff <= tol, (name, diff)
        if name not in ("emissivity.output.bias",):  # everything really trained
            assert moved > 50 * diff and moved > 1e-3, (name, moved, diff)
    assert tuple(h_tensor.epoch_terms[-1]) == tuple(h_fused.epoch_terms[-1])
    for term, value in h_tensor.epoch_terms[-1].items():
        # the priors are sums of small residuals (e.g. C - 1 ~ 1e-3 for C ~ 1 + 1e-3): the parameters'
        # float32 differences (~1e-7) are ~1e-4 of them; the v1 anchor ((e0 - 0.93) / 1e-5)^2 amplifies
        # e0's float32 rounding further: 1e-3 relative
        rtol = {"obs": 2e-5, "total": 2e-5, "bias": 2e-5, "anchor": 2e-3}.get(term, 2e-4)
        assert h_fused.epoch_terms[-1][term] == pytest.approx(value, rel=rtol, abs=1e-9), term
    if warm:
        assert h_fused.epoch_terms[-1]["warm_ice"] > 1e-3
