"""Helpers of the products tests: tiny hand-made Observations."""

from __future__ import annotations

import numpy as np

from empirical_seaice.observations import Observations
from empirical_seaice.sensors import build_channel_basis


def make_observations(tb, igrid, istep, isensor, sensors=("amsr2",), ngrid=4, nstep=2, lat=None, seed=0):
    """Observations with the given TB (nobs, nchan) and indices; the rest plausible constants."""
    basis = build_channel_basis(sensors)
    tb = np.asarray(tb, dtype=np.float32)
    n = tb.shape[0]
    rng = np.random.default_rng(seed)
    mask = np.isfinite(tb) & basis.present[np.asarray(isensor)]
    full = lambda v: np.full((n, basis.nchan), v, dtype=np.float32)
    return Observations.from_columns(
        igrid=np.asarray(igrid, dtype=np.int32),
        istep=np.asarray(istep, dtype=np.int32),
        isensor=np.asarray(isensor, dtype=np.int16),
        t_skin_k=rng.uniform(240, 275, n).astype(np.float32),
        wind_ms=rng.uniform(0, 15, n).astype(np.float32),
        cloud_fraction=rng.uniform(0, 1, n).astype(np.float32),
        zenith_deg=np.full(n, np.nan, dtype=np.float32),
        julian_day=2459000.5 + np.asarray(istep, dtype=np.float64),
        obs_index=np.arange(n, dtype=np.int64),
        tb_obs_k=np.where(mask, np.nan_to_num(tb), 0.0).astype(np.float32),
        mask=mask,
        emis_water=full(0.5),
        tau=full(0.9),
        t_down_k=full(30.0),
        t_up_k=full(25.0),
        tau_cld=full(0.8),
        t_down_cld_k=full(50.0),
        t_up_cld_k=full(45.0),
        basis=basis,
        ngrid=ngrid,
        nstep=nstep,
        jd_origin=2459000.0,
        lon=np.linspace(0, 90, ngrid).astype(np.float32),
        lat=(np.full(ngrid, 75.0, np.float32) if lat is None else np.asarray(lat, np.float32)),
    )
