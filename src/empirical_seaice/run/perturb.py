"""The perturbations of an ensemble member (:mod:`empirical_seaice.config.ensemble`).

A member ``k >= 1`` of an ensemble of data assimilations sees

- perturbed observations ``y'_ic = y_ic + sigma_o,c z_ic`` for every valid observation ``i`` and
  channel ``c`` (``z ~ N(0, 1)``, ``sigma_o,c`` the cost's observation error in K, times
  ``obs_error_scale``); masked values stay as they are;
- a perturbed first-guess SIC ``C'_b = C_b + sigma_b z_gt`` for every grid point ``g`` and
  column ``t`` of the background map (lag days included; ``sigma_b`` = ``sic_error``, SIC
  units; not clipped, so that the members' first guesses average to ``C_b``: the range prior
  pulls values outside [0, 1] back). The background also is the mean of the optional SIC
  background prior, which is then perturbed with it, as in any ensemble of data assimilations.

Member 0 is never perturbed. The draws come from :func:`~empirical_seaice.config.ensemble.perturbation_seed`
of the run's seed and ``k``: observations first, in blocks of :data:`BLOCK_ROWS` rows, then the
background map, so a member's perturbations do not depend on anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from empirical_seaice.config.ensemble import perturbation_seed
from empirical_seaice.observations import BackgroundMaps, Observations

BLOCK_ROWS = 1 << 18
"""Observations per block of draws (bounds the float64 temporaries)."""


def perturb_tb(tb_obs_k: np.ndarray, mask: np.ndarray, sigma_k: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``y + sigma_c z`` where ``mask`` (``z ~ N(0, 1)``), ``y`` elsewhere; float32 (nobs, nchan).

    Parameters
    ----------
    tb_obs_k : (nobs, nchan) observed TBs y (K).
    mask : (nobs, nchan) bool, the valid values.
    sigma_k : (nchan,) standard deviation of the perturbation per channel (K).
    rng : the member's generator.
    """
    n = tb_obs_k.shape[0]
    out = np.empty(tb_obs_k.shape, dtype=np.float32)
    sigma = np.asarray(sigma_k, dtype=np.float64)
    for lo in range(0, n, BLOCK_ROWS):
        hi = min(n, lo + BLOCK_ROWS)
        y = np.asarray(tb_obs_k[lo:hi], dtype=np.float64)
        z = rng.standard_normal(y.shape)
        out[lo:hi] = np.where(np.asarray(mask[lo:hi]), y + sigma * z, y)
    return out


def perturb_sic(sic: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``C_b + sigma z`` where ``C_b`` is finite (``z ~ N(0, 1)``), float32 of ``sic``'s shape."""
    sic64 = np.asarray(sic, dtype=np.float64)
    z = rng.standard_normal(sic64.shape)
    return np.where(np.isfinite(sic64), sic64 + sigma * z, sic64).astype(np.float32)


@dataclass(frozen=True)
class Perturbation:
    """What member ``member`` of an ensemble perturbs (see the module docstring).

    member : the member (>= 1).
    seed : the run's seed (``--seed``), with ``member`` the seed of the draws.
    sic_error : standard deviation of the first-guess SIC perturbation.
    obs_error_scale : the observation perturbation in units of the cost's observation error.
    """

    member: int
    seed: int
    sic_error: float
    obs_error_scale: float = 1.0

    def apply(self, obs: Observations, background: BackgroundMaps) -> tuple[Observations, BackgroundMaps]:
        """The member's observations and background maps (new arrays; the inputs are not changed)."""
        rng = np.random.default_rng(perturbation_seed(self.seed, self.member))
        sigma = self.obs_error_scale * np.asarray(obs.basis.obs_error_k, dtype=np.float64)
        tb = perturb_tb(obs.tb_obs_k, obs.mask, sigma, rng)
        sic = perturb_sic(background.sic, self.sic_error, rng) if self.sic_error > 0 else background.sic
        return replace(obs, tb_obs_k=tb), replace(background, sic=sic)


__all__ = ["BLOCK_ROWS", "Perturbation", "perturb_tb", "perturb_sic"]
