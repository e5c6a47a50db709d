"""Tiny synthetic observations for the model tests (built with numpy, no readers).

A module of its own, not the conftest: two test folders' conftests share the module name
``conftest``, so importing a helper from one breaks when both folders run in one pytest call.
"""

from __future__ import annotations

import numpy as np

from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.sensors import build_channel_basis


def make_obs(
    sensors=("amsr2",), nobs=40, ngrid=3, nstep=4, nlag=1, seed=0, all_rows=True, columns=None
) -> tuple[Observations, BackgroundMaps]:
    """Random but physical observations; with ``all_rows`` every (g, t) has at least one observation.
    ``columns`` (a dict) gets the clear and cloudy columns' terms the atmosphere was made of."""
    rng = np.random.default_rng(seed)
    basis = build_channel_basis(list(sensors))
    nc = basis.nchan
    if all_rows:
        base = np.arange(ngrid * nstep)
        rest = rng.integers(0, ngrid * nstep, size=nobs - base.size)
        cell = np.concatenate([base, rest])
    else:
        cell = rng.integers(0, ngrid * nstep, size=nobs)
    igrid = (cell // nstep).astype(np.int32)
    istep = (cell % nstep).astype(np.int32)
    isensor = rng.integers(0, len(sensors), size=nobs).astype(np.int16)
    mask = basis.present[isensor].copy()
    mask &= rng.random((nobs, nc)) > 0.1
    f32 = np.float32
    obs = Observations.from_columns(
        igrid=igrid,
        istep=istep,
        isensor=isensor,
        t_skin_k=rng.uniform(240, 280, nobs).astype(f32),
        wind_ms=rng.uniform(0, 15, nobs).astype(f32),
        cloud_fraction=rng.uniform(0, 1, nobs).astype(f32),
        zenith_deg=np.full(nobs, np.nan, f32),
        julian_day=2459000.5 + istep.astype(np.float64),
        obs_index=np.arange(nobs, dtype=np.int64),
        tb_obs_k=np.where(mask, rng.uniform(150, 260, (nobs, nc)), 0).astype(f32),
        mask=mask,
        emis_water=rng.uniform(0.4, 0.7, (nobs, nc)).astype(f32),
        **_columns(columns, rng, nobs, nc),
        basis=basis,
        ngrid=ngrid,
        nstep=nstep,
        jd_origin=2459000.0,
    )
    bg = BackgroundMaps(
        sic=rng.uniform(-0.1, 1.1, (ngrid, nstep + nlag)).astype(f32),
        t_skin_map_k=rng.uniform(265, 280, (ngrid, nstep)).astype(f32),
        nlag=nlag,
    )
    return obs, bg


def _columns(into: dict | None, rng, nobs: int, nc: int) -> dict[str, np.ndarray]:
    """The clear and cloudy columns' terms (random, physical), copied into ``into`` where given."""
    f32 = np.float32
    cols = {
        "tau": rng.uniform(0.5, 1.0, (nobs, nc)).astype(f32),
        "t_down_k": rng.uniform(10, 80, (nobs, nc)).astype(f32),
        "t_up_k": rng.uniform(10, 80, (nobs, nc)).astype(f32),
        "tau_cld": rng.uniform(0.3, 0.9, (nobs, nc)).astype(f32),
        "t_down_cld_k": rng.uniform(20, 120, (nobs, nc)).astype(f32),
        "t_up_cld_k": rng.uniform(20, 120, (nobs, nc)).astype(f32),
    }
    if into is not None:
        into.update({k: v.copy() for k, v in cols.items()})
    return cols
