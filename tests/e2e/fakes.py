"""Tiny hand-made Observations for the unit tests of outputs and diagnostics."""

from __future__ import annotations

import numpy as np

from empirical_seaice.observations import Observations
from empirical_seaice.sensors import build_channel_basis


def make_obs(nobs: int = 6, sensors=("amsr2", "gmi"), ngrid: int = 3, nstep: int = 2, seed: int = 0) -> Observations:
    """Observations with deterministic values; channels a sensor lacks are masked out."""
    rng = np.random.default_rng(seed)
    basis = build_channel_basis(list(sensors))
    nc = basis.nchan
    isensor = (np.arange(nobs) % len(sensors)).astype(np.int16)
    mask = basis.present[isensor].copy()
    tb = np.where(mask, 150.0 + 10.0 * np.arange(nobs)[:, None] + np.arange(nc)[None, :], 0.0).astype(np.float32)
    per_chan = {name: rng.uniform(0.1, 0.9, (nobs, nc)).astype(np.float32) for name in ("emis_water", "tau", "tau_cld")}
    per_k = {
        name: rng.uniform(5.0, 50.0, (nobs, nc)).astype(np.float32)
        for name in ("t_down_k", "t_up_k", "t_down_cld_k", "t_up_cld_k")
    }
    return Observations.from_columns(
        igrid=(np.arange(nobs) % ngrid).astype(np.int32),
        istep=(np.arange(nobs) // ngrid % nstep).astype(np.int32),
        isensor=isensor,
        t_skin_k=np.full(nobs, 260.0, np.float32),
        wind_ms=np.full(nobs, 5.0, np.float32),
        cloud_fraction=np.zeros(nobs, np.float32),
        zenith_deg=np.full(nobs, np.nan, np.float32),
        julian_day=2459000.5 + np.arange(nobs, dtype=np.float64) * 0.1,
        obs_index=np.arange(nobs, dtype=np.int64),
        tb_obs_k=tb,
        mask=mask,
        **per_chan,
        **per_k,
        basis=basis,
        ngrid=ngrid,
        nstep=nstep,
        jd_origin=2459000.0,
        lon=np.linspace(-10, 10, ngrid).astype(np.float32),
        lat=np.linspace(70, 80, ngrid).astype(np.float32),
    )
