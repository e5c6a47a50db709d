"""The ensemble's spread calibrated in observation space, from the data alone (``--ensemble-inflation observations``).

Members that differ by perturbed observations, first guess and seed under-disperse when the
errors that matter are not the ones perturbed (forward-model error, representativeness, weather
inputs). The usual spread-skill consistency of an ensemble of data assimilations says where: for
the departures ``d = y - H(x_mean)`` of observations the fit did not use, with ``H(x_mean)`` the
members' mean simulation (K),

    E[d_ic^2] = lambda^2 s_ic^2 + sigma_c^2,

``s_ic^2`` the members' variance of ``H(x_k)`` at observation ``i``, channel ``c`` (``ddof = 1``)
and ``sigma_c`` the cost's observation error. One factor for the run, weighted by ``1/sigma_c^2``
over every valid (observation, channel):

    lambda^2 = max(sum (d_ic^2 - sigma_c^2) / sigma_c^2, 0) / sum s_ic^2 / sigma_c^2,

and the stated SIC spread is ``lambda`` times the members' standard deviation, with ``lambda``
not below 1: the members differ by the errors the cost states, and a ``lambda < 1`` (the
observation-space spread larger than the departures need, measured in the southern twin, where
the SIC spread was still too small) is no evidence that the SIC spread is too large. Channels that do
not see the surface have ``s ~ 0`` and weigh little in the denominator. The observations are
member 0's held-out ones (``--validation-fraction``; the other members drew their own), else every
observation (then ``d`` is a fitted departure and ``lambda`` a lower estimate). No truth is used.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import netCDF4
import numpy as np

from empirical_seaice.config import TrainingConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import outputs as out
from empirical_seaice.observations import Observations
from empirical_seaice.training.runtime import make_generator, split_observations

BLOCK_ROWS = 1 << 16
"""Observations read per block from each member's ``tbsim_TAG.nc``."""


def consistency_sums(y: np.ndarray, sims: np.ndarray, mask: np.ndarray, sigma: np.ndarray) -> tuple[float, float, int]:
    """``(sum (d^2 - sigma^2) / sigma^2, sum s^2 / sigma^2, n)`` over the valid (row, channel)
    of one block: ``y`` (n, nchan) observed (K), ``sims`` (N, n, nchan) the members' simulations,
    ``mask`` (n, nchan), ``sigma`` (nchan,) the observation error (K)."""
    ok = mask & np.all(np.isfinite(sims), axis=0)
    d = y - sims.mean(axis=0)
    var = sims.var(axis=0, ddof=1)
    w = 1.0 / np.asarray(sigma, dtype=np.float64) ** 2
    excess = ((d**2 - sigma**2) * w)[ok]
    return float(excess.sum()), float((var * w)[ok].sum()), int(ok.sum())


def inflation_factor(excess: float, spread: float) -> float:
    """``lambda = max(sqrt(max(excess, 0) / spread), 1)`` (1 when there is no spread to scale).

    Never below 1: an inflation, not a deflation (module docstring)."""
    if not spread > 0.0:
        return 1.0
    return max(float(np.sqrt(max(excess, 0.0) / spread)), 1.0)


def evaluation_rows(obs: Observations, train_cfg: TrainingConfig) -> tuple[np.ndarray, str]:
    """Member 0's held-out observations (the split of its seed, as the run drew it), else all; with a word on which."""
    cfg = train_cfg.resolved(obs.nobs)
    valid = split_observations(obs.nobs, cfg.validation_fraction, make_generator(cfg.seed))[1]
    if valid is None:
        return np.arange(obs.nobs, dtype=np.int64), "every observation (none held out: fitted departures)"
    return valid, f"member 0's {valid.size} held-out observations"


def _open_tbsim(path: Path) -> netCDF4.Dataset:
    """A member's ``tbsim`` file, or a one-line error naming it."""
    try:
        return netCDF4.Dataset(path)
    except OSError as err:
        raise SeaIceError(
            f"{path}: cannot read a member's simulated TBs for --ensemble-inflation observations ({err}); "
            "rerun the ensemble, or use --ensemble-inflation none"
        ) from None


def observation_inflation(
    obs: Observations, train_cfg: TrainingConfig, dirs: list[Path], tag: str
) -> tuple[float, str]:
    """``lambda`` (module docstring) from the members' ``tbsim_TAG.nc`` in ``dirs`` (member 0 first)
    and the unperturbed observations ``obs``; returns it and a line saying how it was found."""
    rows, which = evaluation_rows(obs, train_cfg)
    sigma = np.asarray(obs.basis.obs_error_k, dtype=np.float64)
    excess = spread = 0.0
    count = 0
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(_open_tbsim(out.output_path(d, "tbsim", tag))) for d in dirs]
        for lo in range(0, obs.nobs, BLOCK_ROWS):
            hi = min(obs.nobs, lo + BLOCK_ROWS)
            sel = rows[(rows >= lo) & (rows < hi)]
            if not sel.size:
                continue
            sims = np.stack([np.asarray(f["tb"][lo:hi], dtype=np.float64)[sel - lo] for f in files])
            y = np.asarray(obs.tb_obs_k[sel], dtype=np.float64)
            e, s, n = consistency_sums(y, sims, np.asarray(obs.mask[sel]), sigma)
            excess, spread, count = excess + e, spread + s, count + n
    lam = inflation_factor(excess, spread)
    raw = np.sqrt(max(excess, 0.0) / spread) if spread > 0 else float("nan")
    return lam, (
        f"lambda = {lam:.3f} (consistency {raw:.3f}, not below 1) from {which} ({count} values): "
        f"mean (d^2 - sigma_o^2)/sigma_o^2 "
        f"{excess / max(count, 1):.3f}, mean spread^2/sigma_o^2 {spread / max(count, 1):.3f}"
    )


__all__ = ["BLOCK_ROWS", "consistency_sums", "inflation_factor", "evaluation_rows", "observation_inflation"]
