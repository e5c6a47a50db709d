"""Diagnostics of a run: simulated TB sets, departures, costs, truth scores, summary.

- :func:`simulate` runs the observation operator over all observations in
  chunks (no gradient, float32): simulated TB and ice emissivity, optionally
  with SIC set to zero (``tbzero``) (:mod:`empirical_seaice.products.simulate`,
  re-exported here with :func:`simulate_blocks` and :class:`Simulation`).
- :func:`departure_stats`: per channel, count, mean and standard deviation of
  observed minus simulated TB ``y - H(x)`` over the valid (masked-in) values,
  accumulated in float64.
- :func:`observation_cost_sum`: ``J_o = sum_i sum_c mask ((y - TB') / sigma_c)^2``
  in float64; with the network's exact whole-map priors this gives the full
  cost ``J`` (:func:`full_cost`).
- :func:`truth_scores`: when the data has a truth (the synthetic twin), SIC
  RMSE and bias of the background and of the trained map against the truth
  over the grid points and steps that have observations, ice-emissivity RMSE
  per channel where the true SIC exceeds :data:`ICE_SIC_THRESHOLD`, and the
  error of the trained TB biases.
- :func:`format_summary`: the short table printed on stdout after a run
  (:mod:`empirical_seaice.products.summary_table`, re-exported here).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from empirical_seaice.cost import objective
from empirical_seaice.cost import terms as costs
from empirical_seaice.model.emissivity import LinearEmissivity
from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.products.simulate import BLOCK, CHUNK, Simulation, simulate, simulate_blocks  # re-exported
from empirical_seaice.products.summary_table import (  # the table's names, re-exported
    ANCHOR_DOMINATES,
    RunDiagnostics,
    departure_rms,
    format_summary,
    plain_warnings,
)

if TYPE_CHECKING:  # pragma: no cover
    from empirical_seaice.model.operator import HybridNetwork

log = logging.getLogger(__name__)

ICE_SIC_THRESHOLD = 0.5
"""True SIC above which an observation counts for the ice-emissivity RMSE."""


# ------------------------------------------------------------------ departures
@dataclass
class DepartureStats:
    """Observed minus simulated TB per channel (K), over valid values.

    count : (nchan,) int64; mean, std : (nchan,) float64 (NaN where count = 0).
    """

    count: np.ndarray
    mean: np.ndarray
    std: np.ndarray


class DepartureSums:
    """Per-channel count, sum and sum of squares of ``y - TB_sim`` over valid values (float64),
    added block by block (:meth:`add`); :meth:`stats` gives the :class:`DepartureStats`.
    :meth:`add_block` also sums the observation term ``J_o``, in one compiled pass over the block (numba;
    numpy without it)."""

    def __init__(self, nchan: int):
        self.count = np.zeros(nchan, dtype=np.int64)
        self.s1 = np.zeros(nchan, dtype=np.float64)
        self.s2 = np.zeros(nchan, dtype=np.float64)
        self.obs_sum = 0.0

    def add(self, tb_obs: np.ndarray, tb_sim: np.ndarray, mask: np.ndarray) -> None:
        """Add the observations of one block: ``tb_obs``, ``tb_sim`` (n, nchan) K, ``mask`` (n, nchan)."""
        m = np.asarray(mask, dtype=bool)
        d = np.asarray(tb_obs, dtype=np.float64) - np.asarray(tb_sim, dtype=np.float64)
        d = np.where(m, d, 0.0)
        self.count += m.sum(axis=0)
        self.s1 += d.sum(axis=0)
        self.s2 += (d * d).sum(axis=0)

    def add_block(self, tb_obs: np.ndarray, tb_sim: np.ndarray, mask: np.ndarray, sigma: np.ndarray) -> None:
        """:meth:`add`, plus ``J_o += sum_i sum_c mask ((y - TB') / sigma_c)^2`` (:attr:`obs_sum`, as
        :func:`observation_cost_sum`)."""
        tb_sim = np.asarray(tb_sim, dtype=np.float32)  # any strides (the final pass's TB: half of a wider array)
        if _block_sums is None:  # pragma: no cover - without numba
            self.add(tb_obs, tb_sim, mask)
            self.obs_sum += objective.observation_sum(tb_obs, tb_sim, mask, sigma)
            return
        self.obs_sum += _block_sums(
            np.asarray(tb_obs), tb_sim, np.asarray(mask), np.asarray(sigma, dtype=np.float64),
            self.count, self.s1, self.s2,
        )  # fmt: skip

    def stats(self) -> DepartureStats:
        with np.errstate(invalid="ignore", divide="ignore"):
            n = np.where(self.count > 0, self.count, np.nan)
            mean = self.s1 / n
            var = np.maximum(self.s2 / n - mean * mean, 0.0)
        return DepartureStats(count=self.count.copy(), mean=mean, std=np.sqrt(var))


OPEN_WATER_SIC = 0.01
"""SIC (the one each observation sees) below which an observation counts as over open water for
:class:`OpenWaterDepartures`."""

OPEN_WATER_SAMPLE = 1 << 16
"""About how many observations of a pass :class:`OpenWaterDepartures` looks at, evenly spaced (every
one up to this many; a mean of a few thousand departures is known to a fraction of a kelvin)."""

OPEN_WATER_WARN_K = 20.0
"""A sensor's channel whose mean departure over open water before training exceeds this (K) is warned
about (:meth:`OpenWaterDepartures.warn`)."""

OPEN_WATER_MIN_COUNT = 100
"""Open-water departures a (sensor, channel) needs before its mean is judged."""


class OpenWaterDepartures:
    """Mean departure ``y - H(x)`` per sensor and channel over open water before training: a check of the
    observations' channel order, calibration and place, from the data alone.

    Where the SIC an observation sees is below :data:`OPEN_WATER_SIC`, its simulation is the ocean's
    emissivity and the atmosphere of its own files (``EMIS_WATER``, transmittance, up- and downwelling TB),
    whatever the ice model; the background's ice-edge errors add a little (on five clean twins every mean
    is within -2.0 and +10.6 K). A mean beyond :data:`OPEN_WATER_WARN_K` says the observed TB is not what
    the other per-channel fields describe: channels in another order (``V`` and ``H`` swapped: -79 and
    +85 K), another calibration or units, or observations not where their grid index and time put them
    (ice seen as open water: +30 to +130 K with a reversed grid index, largest in H at 10-19 GHz). The bias
    correction would absorb part of it and the SIC the rest. About :data:`OPEN_WATER_SAMPLE` of a pass's
    ``nobs`` observations are counted, evenly spaced (float64 sums).
    """

    def __init__(self, nsensor: int, nchan: int, nobs: int):
        self.stride = max(1, nobs // OPEN_WATER_SAMPLE)
        self.count = np.zeros((nsensor, nchan), dtype=np.int64)
        self.s1 = np.zeros((nsensor, nchan), dtype=np.float64)

    def add(self, isensor: np.ndarray, sic: np.ndarray, tb_obs: np.ndarray, tb_sim: np.ndarray, mask) -> None:
        """Add a block: ``isensor``, ``sic`` (n,), ``tb_obs``, ``tb_sim`` (K) and ``mask`` (n, nchan)."""
        rows = np.flatnonzero(np.asarray(sic[:: self.stride]) < OPEN_WATER_SIC) * self.stride
        if rows.size == 0:
            return
        m = np.asarray(mask[rows], dtype=bool)
        d = np.where(m, np.asarray(tb_obs[rows], np.float64) - np.asarray(tb_sim[rows], np.float64), 0.0)
        s = np.asarray(isensor[rows])
        for k in np.unique(s).tolist():  # a block holds one sensor's rows, or the end of one and the next's
            of_k = s == k
            self.count[k] += m[of_k].sum(axis=0)
            self.s1[k] += d[of_k].sum(axis=0)

    def warn(self, basis: Any) -> list[str]:
        """Log one warning per sensor of ``basis`` naming its channels whose mean over at least
        :data:`OPEN_WATER_MIN_COUNT` departures exceeds :data:`OPEN_WATER_WARN_K` in magnitude; returns
        the sensors warned about."""
        warned = []
        mean = np.where(self.count >= OPEN_WATER_MIN_COUNT, self.s1 / np.maximum(self.count, 1), 0.0)
        for s, name in enumerate(basis.sensor_names):
            far = np.flatnonzero(np.abs(mean[s]) > OPEN_WATER_WARN_K)
            if far.size == 0:
                continue
            warned.append(name)
            log.warning(
                "sensor %s: before training, the mean departure (observed - simulated TB) over open water is "
                "beyond %g K in channel%s %s (%d observations with SIC < %g, where the ice model plays no part); "
                "check the channel order, units (K) and calibration of its OBSVALUE against its other per-channel "
                "fields, and its grid index and times (ice where the background has open water: positive, largest "
                "at 10-19 GHz H)",
                name, OPEN_WATER_WARN_K, "s" if far.size > 1 else "",
                ", ".join(f"{basis.channel_names[c]} {mean[s, c]:+.1f} K" for c in far.tolist()),
                int(self.count[s, far].max()), OPEN_WATER_SIC,
            )  # fmt: skip
        return warned


def _block_sums_py(y, h, mask, sigma, count, s1, s2):  # pragma: no cover - compiled below
    """One pass over a block (see :meth:`DepartureSums.add_block`); returns the block's ``J_o``."""
    n, nc = h.shape
    jo = 0.0
    for i in range(n):
        for c in range(nc):
            if mask[i, c]:
                d = np.float64(y[i, c]) - np.float64(h[i, c])
                count[c] += 1
                s1[c] += d
                s2[c] += d * d
                r = d / sigma[c]
                jo += r * r
    return jo


def _anchor_floor_sum_py(e, floor, sigma2):  # pragma: no cover - compiled below
    """``sum_i max(floor - e_i, 0)^2 / sigma^2`` of float32 or float64 ``e``, in float64, in order (each term
    as :func:`empirical_seaice.cost.terms.anchor_floor_penalty` computes it in float64)."""
    total = 0.0
    for i in range(e.shape[0]):
        r = floor - np.float64(e[i])
        if r > 0.0:
            total += r * r / sigma2
    return total


_block_sums: Any
_anchor_floor_sum: Any
try:
    from empirical_seaice.compiled import njit

    _block_sums = njit(cache=True, nogil=True)(_block_sums_py)
    _anchor_floor_sum = njit(cache=True, nogil=True)(_anchor_floor_sum_py)
except ImportError:  # pragma: no cover - exercised only where numba is absent
    _block_sums = _anchor_floor_sum = None


def departure_stats(obs: Observations, tb_sim: np.ndarray, chunk: int = 262144) -> DepartureStats:
    """Per-channel mean and standard deviation of ``y - TB_sim`` where ``mask``.

    Accumulated in float64 in chunks (:class:`DepartureSums`).

    Examples
    --------
    Departures 1 and 3 K on channel 0 give mean 2, std 1 (population std).
    """
    sums = DepartureSums(tb_sim.shape[1])
    for start in range(0, tb_sim.shape[0], chunk):
        sl = slice(start, start + chunk)
        sums.add(obs.tb_obs_k[sl], tb_sim[sl], obs.mask[sl])
    return sums.stats()


def observation_cost_sum(obs: Observations, tb_sim: np.ndarray, chunk: int = 262144) -> float:
    """``J_o = sum_i sum_c mask_ic ((y_ic - TB'_ic) / sigma_c)^2`` in float64 (dimensionless),
    :func:`empirical_seaice.cost.objective.observation_sum`."""
    return objective.observation_sum(obs.tb_obs_k, tb_sim, obs.mask, obs.basis.obs_error_k, chunk)


@torch.no_grad()
def full_cost(network: HybridNetwork, obs: Observations, sim: Simulation, nobs_total: int) -> dict[str, float]:
    """The full cost ``J = J_o + J_b`` by term (float64), as the summary reports it
    (:func:`empirical_seaice.cost.objective.whole_data_cost`): ``J_o`` over every observation, the
    network's exact whole-map priors, the anchor over every observation (v2 floor) or of ``e0``
    (v1 mean), the TB bias prior; ``total`` their sum."""
    return cost_from_sums(
        network,
        observation_cost_sum(obs, sim.tb),
        anchor_floor_sum(network, sim.emis_anchor),
        nobs_total,
        ceiling_sum=emis_ceiling_sum(network, sim.emis_ice, obs.mask),
    )


def anchor_floor_sum(network: HybridNetwork, emis_anchor: np.ndarray | None) -> float | None:
    """The v2 anchor floor penalty ``sum_i max(floor - e_i, 0)^2 / sigma^2`` of a block of
    observations (float64); None for the v1 mean anchor (a term of ``e0``, not of the observations).

    One compiled pass in order (the same on any number of threads; the terms those of
    :func:`empirical_seaice.cost.terms.anchor_floor_penalty` in float64, their sum in another order: tested
    equal to 1e-13). The torch expression it replaces ran five operations, on torch's threads, at every block
    of a streamed pass, beside the compressing threads: on the benchmark twin a ``--diagsonly`` run's final
    pass took 2.33-2.46 s against 2.38-2.53 s, a training run's 1.60-1.72 s against 1.66-1.80 s
    (interleaved; benchmarks/results.md, seventh round)."""
    cc = network.cost_config
    if cc.anchor == "mean" or emis_anchor is None:
        return None
    if _anchor_floor_sum is None:  # pragma: no cover - without numba
        e = torch.from_numpy(np.asarray(emis_anchor, dtype=np.float64))
        return float(costs.anchor_floor_penalty(e, cc.anchor_value, cc.anchor_error))
    sigma = float(cc.anchor_error)
    return float(_anchor_floor_sum(np.asarray(emis_anchor).reshape(-1), float(cc.anchor_value), sigma * sigma))


@torch.no_grad()
def emis_ceiling_sum(network: HybridNetwork, emis_ice: np.ndarray | None, mask: np.ndarray) -> float | None:
    """The ice-emissivity ceiling ``sum_i sum_c m_ic max(e_ic - 1, 0)^2 / sigma_e^2`` of a block of
    observations (``emis_ice``, ``mask``: (n, nchan); float64,
    :func:`empirical_seaice.cost.terms.emis_ceiling_penalty`); None where the ceiling is off."""
    sigma = network.cost_config.emis_ceiling_error
    if sigma is None or emis_ice is None:
        return None
    e = torch.from_numpy(np.asarray(emis_ice, dtype=np.float64))
    m = torch.from_numpy(np.asarray(mask, dtype=np.float64))
    return float(costs.emis_ceiling_penalty(e, m, sigma).sum())


@torch.no_grad()
def cost_from_sums(
    network: HybridNetwork,
    obs_sum: float,
    anchor_sum: float | None,
    nobs_total: int,
    map_values: dict[str, float] | None = None,
    ceiling_sum: float | None = None,
) -> dict[str, float]:
    """:func:`full_cost` from the sums over the observations (``J_o``, the anchor floor penalty and the
    ice-emissivity ceiling (:func:`emis_ceiling_sum`; 0 where it is on and None given), each the sum of its
    blocks), as a streamed pass gathers them; the whole-map priors
    ``map_values`` (:meth:`~empirical_seaice.model.operator.HybridNetwork.full_prior_values`, computed
    here when None)."""
    cc = network.cost_config
    e0 = None
    if cc.anchor == "mean":
        emissivity = network.emissivity
        assert isinstance(emissivity, LinearEmissivity)  # the mean anchor needs the v1 model (checked at build)
        e0 = float(emissivity.e0[network.anchor_channel].detach().double())
    n = network
    bias = objective.bias_prior(n.bias_ice_k, n.bias_ocean_k, n.bias_ice_bg_k, n.bias_ocean_bg_k, n.bias_error_k)
    return objective.whole_data_cost(
        cc,
        obs_sum=obs_sum,
        map_terms=network.full_prior_values() if map_values is None else map_values,
        emis_anchor=None,
        anchor_sum=anchor_sum if cc.anchor != "mean" else None,
        e0_anchor=e0,
        bias=bias,
        nobs=nobs_total,
        ceiling_sum=None if cc.emis_ceiling_error is None else (ceiling_sum or 0.0),
    )


# ------------------------------------------------------------------ truth
@dataclass
class TruthScores:
    """Scores of a run against the truth of a synthetic twin.

    npoints : number of (grid, step) pairs with observations (where SIC is scored).
    sic_rmse_background, sic_bias_background : background SIC minus truth.
    sic_rmse, sic_bias : trained SIC minus truth.
    emis_rmse : (nchan,) ice-emissivity RMSE per channel where true SIC > threshold
        (NaN where no such value); emis_count : (nchan,) values used.
    bias_ice_error, bias_ocean_error : (nsensor, nchan) trained minus true TB bias (K),
        NaN where the sensor lacks the channel; None if the truth has no biases.
    """

    npoints: int
    sic_rmse_background: float
    sic_bias_background: float
    sic_rmse: float
    sic_bias: float
    emis_rmse: np.ndarray
    emis_count: np.ndarray
    bias_ice_error: np.ndarray | None = None
    bias_ocean_error: np.ndarray | None = None


def observed_points(obs: Observations, counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unique (grid, step) pairs that have at least one observation, in (grid, step) order (a count
    per cell: linear in the observations and the cells, where sorting the observations is not).

    ``counts``: the observations' count per cell (ngrid, nstep) when already counted (the gridded
    product's ``nobs_cell``), so that the observations are not read again."""
    cells = observed_cells(obs, counts)
    return cells // obs.nstep, cells % obs.nstep


def observed_cells(obs: Observations, counts: np.ndarray | None = None) -> np.ndarray:
    """:func:`observed_points` as flat (grid-major) cell indices ``g * nstep + t`` (int64, ascending)."""
    if counts is None:
        key = np.asarray(obs.igrid, dtype=np.int64) * obs.nstep + np.asarray(obs.istep, dtype=np.int64)
        counts = np.bincount(key, minlength=obs.ngrid * obs.nstep)
    elif np.shape(counts) != (obs.ngrid, obs.nstep):
        raise ValueError(f"counts: expected shape {(obs.ngrid, obs.nstep)}, got {np.shape(counts)}")
    return np.flatnonzero(np.asarray(counts).reshape(-1)).astype(np.int64, copy=False)


class EmisErrorSums:
    """Per channel, the sum of squared ice-emissivity errors against the truth and their count where
    the true SIC exceeds the threshold, the channel is valid and the true value finite; added block by
    block (:meth:`add`)."""

    def __init__(self, nchan: int):
        self.sq = np.zeros(nchan, dtype=np.float64)
        self.count = np.zeros(nchan, dtype=np.int64)

    def add(
        self, obs: Observations, rows: slice, emis_ice: np.ndarray, truth: Any, threshold: float = ICE_SIC_THRESHOLD
    ) -> None:
        """Add observations ``rows`` (``emis_ice``: their trained ice emissivity, (n, nchan)): one
        compiled pass (the squared errors summed in observation order, as numpy's column sums of
        the reference's expressions add them)."""
        true_sic = np.asarray(truth.sic)
        igrid, istep, mask = np.asarray(obs.igrid[rows]), np.asarray(obs.istep[rows]), np.asarray(obs.mask[rows])
        true_emis = np.asarray(truth.emis_ice[rows])
        thr = true_sic.dtype.type(threshold) if true_sic.dtype.kind == "f" else threshold  # compared as numpy does
        sq = np.zeros_like(self.sq)
        _emis_error_block(true_sic, igrid, istep, mask, true_emis, np.asarray(emis_ice), thr, sq, self.count)
        self.sq += sq

    def rmse(self) -> tuple[np.ndarray, np.ndarray]:
        """(RMSE per channel, NaN where no value; count per channel)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            rmse = np.where(self.count > 0, np.sqrt(self.sq / np.maximum(self.count, 1)), np.nan)
        return rmse, self.count.copy()


def _emis_error_block_py(true_sic, igrid, istep, mask, true_emis, emis, threshold, sq, count):  # pragma: no cover
    """One block of :meth:`EmisErrorSums.add` (compiled below): ``sq[c]`` += the squared errors in
    float64, observation by observation (numpy's column sums add the rows in this order)."""
    n, nc = emis.shape
    for i in range(n):
        if not true_sic[igrid[i], istep[i]] > threshold:
            continue
        for c in range(nc):
            t = true_emis[i, c]
            if mask[i, c] and np.isfinite(t):
                d = np.float64(emis[i, c]) - np.float64(t)
                sq[c] += d * d
                count[c] += 1


_emis_error_block: Any
try:
    from empirical_seaice.compiled import njit as _njit

    _emis_error_block = _njit(cache=True, nogil=True)(_emis_error_block_py)
except ImportError:  # pragma: no cover - exercised only where numba is absent
    _emis_error_block = _emis_error_block_py


def _rmse_bias(est: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    d = np.asarray(est, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    ok = np.isfinite(d)
    if not ok.any():
        return float("nan"), float("nan")
    d = d[ok]
    return float(np.sqrt(np.mean(d * d))), float(np.mean(d))


def truth_scores(
    obs: Observations,
    background: BackgroundMaps,
    sic_map: np.ndarray,
    emis_ice: np.ndarray,
    truth: Any,
    bias_ice: np.ndarray | None = None,
    bias_ocean: np.ndarray | None = None,
    ice_threshold: float = ICE_SIC_THRESHOLD,
    emis_errors: EmisErrorSums | None = None,
) -> TruthScores:
    """Score the background and the trained state against a twin's truth.

    Parameters
    ----------
    obs : the run's observations.
    background : background maps (``sic`` (ngrid, nstep + nlag)).
    sic_map : trained SIC map C (ngrid, nstep + nlag).
    emis_ice : (nobs, nchan) trained ice emissivity at each observation.
    truth : object with ``sic`` (ngrid, nstep) over the selected period and
        ``emis_ice`` (nobs, nchan) aligned with ``obs`` (NaN where absent); optional
        ``bias_ice_k``/``bias_ocean_k`` (nsensor, nchan).
    bias_ice, bias_ocean : (nsensor, nchan) trained TB biases (K).
    ice_threshold : true SIC above which the emissivity is scored.
    emis_errors : the ice-emissivity errors already summed block by block (a streamed pass;
        ``emis_ice`` is then not read).
    """
    nlag = background.nlag
    g, t = observed_points(obs)
    true_sic = np.asarray(truth.sic, dtype=np.float64)
    if true_sic.shape != (obs.ngrid, obs.nstep):
        raise ValueError(f"truth.sic: expected shape {(obs.ngrid, obs.nstep)}, got {true_sic.shape}")
    ts = true_sic[g, t]
    rmse_bg, bias_bg = _rmse_bias(np.asarray(background.sic)[g, t + nlag], ts)
    rmse, bias = _rmse_bias(np.asarray(sic_map)[g, t + nlag], ts)

    if emis_errors is None:
        emis_errors = EmisErrorSums(obs.nchan)
        if getattr(truth, "emis_ice", None) is not None:
            emis_errors.add(obs, slice(0, obs.nobs), emis_ice, truth, ice_threshold)
    emis_rmse, emis_count = emis_errors.rmse()

    def _err(trained, name):
        tv = getattr(truth, name, None)
        if trained is None or tv is None:
            return None
        err = np.asarray(trained, dtype=np.float64) - np.asarray(tv, dtype=np.float64)
        return np.where(obs.basis.present, err, np.nan)

    return TruthScores(
        npoints=int(len(g)),
        sic_rmse_background=rmse_bg,
        sic_bias_background=bias_bg,
        sic_rmse=rmse,
        sic_bias=bias,
        emis_rmse=emis_rmse,
        emis_count=emis_count,
        bias_ice_error=_err(bias_ice, "bias_ice_k"),
        bias_ocean_error=_err(bias_ocean, "bias_ocean_k"),
    )


__all__ = [
    "Simulation",
    "simulate",
    "DepartureStats",
    "departure_stats",
    "DepartureSums",
    "EmisErrorSums",
    "simulate_blocks",
    "cost_from_sums",
    "emis_ceiling_sum",
    "anchor_floor_sum",
    "BLOCK",
    "observation_cost_sum",
    "full_cost",
    "TruthScores",
    "truth_scores",
    "observed_points",
    "observed_cells",
    "RunDiagnostics",
    "format_summary",
    "plain_warnings",
    "departure_rms",
    "ANCHOR_DOMINATES",
    "CHUNK",
    "ICE_SIC_THRESHOLD",
]
