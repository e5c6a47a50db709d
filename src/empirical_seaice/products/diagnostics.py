"""Diagnostics of a run: simulated TB sets, departures, costs, truth scores, summary.

- :func:`simulate` runs the observation operator over all observations in
  chunks (no gradient, float32): simulated TB and ice emissivity, optionally
  with SIC set to zero (``tbzero``).
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
- :func:`format_summary`: the short table printed on stdout after a run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from empirical_seaice.cost import objective
from empirical_seaice.model.emissivity import LinearEmissivity
from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.sensors import ChannelBasis

if TYPE_CHECKING:  # pragma: no cover
    from empirical_seaice.model.operator import HybridNetwork

CHUNK = 32768
"""Observations per chunk of the diagnostic forward passes."""

ICE_SIC_THRESHOLD = 0.5
"""True SIC above which an observation counts for the ice-emissivity RMSE."""


# ------------------------------------------------------------------ simulation
@dataclass
class Simulation:
    """Simulated quantities at every observation (float32).

    tb : (nobs, nchan) simulated TB' (K).
    emis_ice : (nobs, nchan) ice emissivity.
    sic : (nobs,) SIC seen by each observation (lag-weighted).
    emis_anchor : (nobs,) the anchored ice emissivity (the anchor channel's, or the v2 network's
        at the anchor frequency); None if the network does not report it.
    """

    tb: np.ndarray
    emis_ice: np.ndarray
    sic: np.ndarray
    emis_anchor: np.ndarray | None = None


@torch.no_grad()
def simulate(
    network: torch.nn.Module, data: Any, nobs: int, *, zero_sic: bool = False, chunk: int = CHUNK
) -> Simulation:
    """Run the network's observation operator over observations ``0..nobs-1``.

    Parameters
    ----------
    network : HybridNetwork
        ``network(batch, zero_sic=...)`` returns a dict with ``tb``, ``emis_ice``, ``sic``.
    data : ObservationTensors
        ``data.batch(index)`` gives the batch of observations ``index``.
    nobs : int
        Number of observations.
    zero_sic : bool
        Simulate with SIC set to zero (the ``tbzero`` set: no ice signal).
    chunk : int
        Observations per forward pass (memory bound, results do not depend on it
        beyond float32 rounding of batched kernels).
    """
    make = getattr(network, "fused_program", None)
    program = make(data, nobs, training=False)[0] if make is not None and nobs > 0 else None
    if program is not None:  # the compiled forward pass (CPU; model/fused.py), both cores
        from empirical_seaice.model.fused import simulate as fused_simulate

        tb, emis, sic, emis_anchor = fused_simulate(program, nobs, zero_sic=zero_sic)
        return Simulation(tb=tb, emis_ice=emis, sic=sic, emis_anchor=emis_anchor)
    was_training = network.training
    network.eval()
    device = getattr(data, "device", None) or next(network.parameters()).device
    try:
        tb = emis = sic = np.empty(0, dtype=np.float32)
        anchor: np.ndarray | None = None
        for start in range(0, nobs, chunk):
            idx = torch.arange(start, min(start + chunk, nobs), dtype=torch.long, device=device)
            out = network(data.batch(idx), zero_sic=zero_sic)
            t = out["tb"].detach().float().cpu().numpy()
            e = out["emis_ice"].detach().float().cpu().numpy()
            c = out["sic"].detach().float().cpu().numpy().reshape(-1)
            if start == 0:
                tb = np.empty((nobs, t.shape[1]), dtype=np.float32)
                emis = np.empty((nobs, e.shape[1]), dtype=np.float32)
                sic = np.empty(nobs, dtype=np.float32)
            tb[start : start + len(idx)] = t
            emis[start : start + len(idx)] = e
            sic[start : start + len(idx)] = c
            if "emis_anchor" in out:
                if anchor is None:
                    anchor = np.empty(nobs, dtype=np.float32)
                anchor[start : start + len(idx)] = out["emis_anchor"].detach().float().cpu().numpy().reshape(-1)
        if nobs <= 0:
            raise ValueError("simulate: no observations")
        return Simulation(tb=tb, emis_ice=emis, sic=sic, emis_anchor=anchor)
    finally:
        network.train(was_training)


# ------------------------------------------------------------------ departures
@dataclass
class DepartureStats:
    """Observed minus simulated TB per channel (K), over valid values.

    count : (nchan,) int64; mean, std : (nchan,) float64 (NaN where count = 0).
    """

    count: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def departure_stats(obs: Observations, tb_sim: np.ndarray, chunk: int = 262144) -> DepartureStats:
    """Per-channel mean and standard deviation of ``y - TB_sim`` where ``mask``.

    Accumulated in float64 in chunks (sum and sum of squares of the departure
    about a first-chunk shift, to keep the variance accurate).

    Examples
    --------
    Departures 1 and 3 K on channel 0 give mean 2, std 1 (population std).
    """
    nobs, nchan = tb_sim.shape
    count = np.zeros(nchan, dtype=np.int64)
    s1 = np.zeros(nchan, dtype=np.float64)
    s2 = np.zeros(nchan, dtype=np.float64)
    for start in range(0, nobs, chunk):
        sl = slice(start, start + chunk)
        m = np.asarray(obs.mask[sl], dtype=bool)
        d = np.asarray(obs.tb_obs_k[sl], dtype=np.float64) - np.asarray(tb_sim[sl], dtype=np.float64)
        d = np.where(m, d, 0.0)
        count += m.sum(axis=0)
        s1 += d.sum(axis=0)
        s2 += (d * d).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.where(count > 0, count, np.nan)
        mean = s1 / n
        var = np.maximum(s2 / n - mean * mean, 0.0)
    return DepartureStats(count=count, mean=mean, std=np.sqrt(var))


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
        obs_sum=observation_cost_sum(obs, sim.tb),
        map_terms=network.full_prior_terms(),
        emis_anchor=sim.emis_anchor,
        e0_anchor=e0,
        bias=bias,
        nobs=nobs_total,
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


def observed_points(obs: Observations) -> tuple[np.ndarray, np.ndarray]:
    """Unique (grid, step) pairs that have at least one observation."""
    key = np.unique(np.asarray(obs.igrid, dtype=np.int64) * obs.nstep + np.asarray(obs.istep, dtype=np.int64))
    return key // obs.nstep, key % obs.nstep


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
    """
    nlag = background.nlag
    g, t = observed_points(obs)
    true_sic = np.asarray(truth.sic, dtype=np.float64)
    if true_sic.shape != (obs.ngrid, obs.nstep):
        raise ValueError(f"truth.sic: expected shape {(obs.ngrid, obs.nstep)}, got {true_sic.shape}")
    ts = true_sic[g, t]
    rmse_bg, bias_bg = _rmse_bias(np.asarray(background.sic)[g, t + nlag], ts)
    rmse, bias = _rmse_bias(np.asarray(sic_map)[g, t + nlag], ts)

    nchan = obs.nchan
    emis_rmse = np.full(nchan, np.nan)
    emis_count = np.zeros(nchan, dtype=np.int64)
    true_emis = getattr(truth, "emis_ice", None)
    if true_emis is not None:
        true_emis = np.asarray(true_emis)
        ice = true_sic[np.asarray(obs.igrid), np.asarray(obs.istep)] > ice_threshold
        for c in range(nchan):
            sel = ice & np.asarray(obs.mask[:, c], dtype=bool) & np.isfinite(true_emis[:, c])
            emis_count[c] = int(sel.sum())
            if emis_count[c]:
                d = emis_ice[sel, c].astype(np.float64) - true_emis[sel, c].astype(np.float64)
                emis_rmse[c] = float(np.sqrt(np.mean(d * d)))

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


# ------------------------------------------------------------------ summary
@dataclass
class RunDiagnostics:
    """Everything the summary table shows; any part may be missing (None)."""

    title: str
    cost_before: Mapping[str, float] | None = None
    cost_after: Mapping[str, float] | None = None
    departures_before: DepartureStats | None = None
    departures_after: DepartureStats | None = None
    truth: TruthScores | None = None
    notes: Sequence[str] = field(default_factory=tuple)
    kept_epoch: int | None = None  # with early stopping: the epoch (1-based) whose parameters were kept


ANCHOR_DOMINATES = 0.5
"""The anchor term "dominates" when it is more than this fraction of the cost after training."""


def departure_rms(d: DepartureStats, obs_error_k: np.ndarray | None = None) -> float:
    """Root mean square of ``y - H(x)`` over every valid value of every channel (K, or in units of
    the observation error when ``obs_error_k`` is given): ``sqrt(sum_c n_c (mean_c^2 + std_c^2) / sum_c n_c)``.

    Examples
    --------
    Channel 0: 3 values, mean 1, std 1; channel 1: 1 value, mean 2, std 0 gives sqrt((3*2 + 4) / 4).
    """
    n = np.asarray(d.count, dtype=np.float64)
    ms = np.nan_to_num(np.asarray(d.mean) ** 2 + np.asarray(d.std) ** 2)
    if obs_error_k is not None:
        ms = ms / np.asarray(obs_error_k, dtype=np.float64) ** 2
    return float(np.sqrt((n * ms).sum() / max(n.sum(), 1.0)))


def plain_warnings(diag: RunDiagnostics) -> list[str]:
    """Plain-words warnings when a run ended worse than it started, each with the likely fix.

    Checked: the trained SIC against the truth is worse than the background (twin
    data only); the observation departures are larger after training than before;
    the emissivity anchor term is more than :data:`ANCHOR_DOMINATES` of the cost
    after training and larger than the observation term before training; the
    total cost rose. Empty when none applies.
    """
    out: list[str] = []
    before, after = diag.cost_before or {}, diag.cost_after or {}
    t = diag.truth
    sic_worse = t is not None and np.isfinite(t.sic_rmse) and t.sic_rmse > t.sic_rmse_background
    if t is not None and sic_worse:
        out.append(
            f"WARNING: the trained SIC is worse than the background it started from "
            f"(RMSE against the truth {t.sic_rmse_background:.4f} -> {t.sic_rmse:.4f})."
        )
    dep_worse = False
    if diag.departures_before is not None and diag.departures_after is not None:
        rb, ra = departure_rms(diag.departures_before), departure_rms(diag.departures_after)
        dep_worse = ra > rb
        if dep_worse:
            out.append(
                f"WARNING: the simulated TBs fit the observations worse than before training "
                f"(RMS of y - H(x) {rb:.2f} K -> {ra:.2f} K)."
            )
    anchor, total = after.get("anchor", 0.0), after.get("total", 0.0)
    # more than half of J, and more than the whole observation misfit training started from (a few
    # emissivities ending 1e-3 under the floor are worth 1e4 each at error 1e-5: not a failure)
    anchor_dominates = total > 0 and anchor > ANCHOR_DOMINATES * total and anchor > before.get("obs", 0.0)
    if anchor_dominates:
        out.append(
            f"WARNING: the emissivity anchor term is {100 * anchor / total:.0f}% of the cost after training "
            f"({anchor:.4g} of {total:.4g}): the ice emissivity sits far below its anchor, and the training "
            "spent its steps on that instead of on the observations."
        )
    cost_rose = bool(before) and bool(after) and after.get("total", 0.0) > before.get("total", np.inf)
    if cost_rose:
        grew = max((k for k in after if k != "total"), key=lambda k: after[k] - before.get(k, 0.0))
        out.append(
            f"WARNING: the total cost rose during training ({before['total']:.4g} -> {after['total']:.4g}); "
            f"most of the rise is the {grew} term ({before.get(grew, 0.0):.4g} -> {after[grew]:.4g})."
        )
    if not out:
        return out
    if anchor_dominates or (before.get("anchor", 0.0) > ANCHOR_DOMINATES * before.get("total", np.inf)):
        out.append(
            "  Likely fix: start the ice emissivity near its anchor (--ice-emis-init 0.9 for v2, 0.93 for v1: "
            "the default unless --exact-reference or --ice-emis-init reference), or train on much more data."
        )
    else:
        out.append(
            "  Likely fix: give each SIC cell more steps: more epochs (--nepochs), or a smaller --batchsize with "
            "a larger --learning-rate (by default both follow the data size); the held-out cost (v2's default "
            "from 20,000 observations on, else --validation-fraction 0.1) shows whether the model is fitting noise."
        )
    return out


def _fmt(x: float | None, spec: str) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    return format(x, spec)


def format_summary(diag: RunDiagnostics, basis: ChannelBasis) -> str:
    """The short summary table (about 30 lines for 18 channels).

    Sections: cost terms before/after (``J`` by term); per-channel departure
    mean/std before/after and, with a truth, the ice-emissivity RMSE; SIC
    scores versus the truth (background vs trained) and the TB-bias errors;
    then :func:`plain_warnings`. With early stopping (``kept_epoch``) the "after"
    column is headed by the kept epoch: its parameters are the trained model.
    """
    lines = [diag.title]
    lines += _cost_lines(diag.cost_before, diag.cost_after, diag.kept_epoch)
    lines += _channel_lines(diag.departures_before, diag.departures_after, diag.truth, basis)
    if diag.truth is not None:
        lines += _truth_lines(diag.truth, basis)
    lines.extend(f"  {n}" for n in diag.notes)
    lines.extend(f"  {w}" for w in plain_warnings(diag))
    return "\n".join(lines)


def _cost_lines(
    before: Mapping[str, float] | None, after: Mapping[str, float] | None, kept_epoch: int | None = None
) -> list[str]:
    """The ``cost term J`` rows of the summary (none when neither cost is known); with early stopping
    the "after" column is headed by the kept epoch."""
    if before is None and after is None:
        return []
    names = list(dict.fromkeys([*(before or {}), *(after or {})]))
    names = [n for n in names if n != "total"] + ["total"]
    head = "after" if kept_epoch is None else f"epoch {kept_epoch}"
    lines = [f"  {'cost term J':<16}{'before':>13}{head:>13}"]
    for n in names:
        b = (before or {}).get(n)
        a = (after or {}).get(n)
        lines.append(f"  {n:<16}{_fmt(b, '13.5g'):>13}{_fmt(a, '13.5g'):>13}")
    return lines


def _mean_std(d: DepartureStats | None, c: int) -> str:
    """``mean / std`` of channel ``c`` of a departure set, ``-`` without one."""
    return "-" if d is None else f"{_fmt(d.mean[c], '+7.2f')} /{_fmt(d.std[c], '6.2f')}"


def _channel_lines(
    dep_b: DepartureStats | None, dep_a: DepartureStats | None, truth: TruthScores | None, basis: ChannelBasis
) -> list[str]:
    """One row per channel: count, departures before/after and, with a truth, the emissivity RMSE."""
    ref = dep_a if dep_a is not None else dep_b
    if ref is None:
        return []
    head = f"  {'channel':<9}{'n':>8}  {'y-H(x) mean/std (K) before':>27}  {'after':>14}"
    if truth is not None:
        head += f"  {'emis RMSE':>9}"
    lines = [head]
    for c, name in enumerate(basis.channel_names):
        row = f"  {name:<9}{int(ref.count[c]):>8}  {_mean_std(dep_b, c):>27}  {_mean_std(dep_a, c):>14}"
        if truth is not None:
            row += f"  {_fmt(truth.emis_rmse[c], '9.4f')}"
        lines.append(row)
    return lines


def _truth_lines(t: TruthScores, basis: ChannelBasis) -> list[str]:
    """SIC scores against the truth and the largest TB-bias error per sensor."""
    lines = [
        f"  SIC vs truth ({t.npoints} grid-steps): RMSE background {t.sic_rmse_background:.4f}"
        f" -> trained {t.sic_rmse:.4f}; bias {t.sic_bias_background:+.4f} -> {t.sic_bias:+.4f}"
    ]
    for label, err in (("ice", t.bias_ice_error), ("ocean", t.bias_ocean_error)):
        if err is not None:
            parts = []
            for s, sname in enumerate(basis.sensor_names):
                e = err[s][np.isfinite(err[s])]
                if e.size:
                    parts.append(f"{sname} {np.max(np.abs(e)):.2f}")
            lines.append(f"  TB bias {label} error vs truth, max |K|: " + ", ".join(parts))
    return lines


__all__ = [
    "Simulation",
    "simulate",
    "DepartureStats",
    "departure_stats",
    "observation_cost_sum",
    "full_cost",
    "TruthScores",
    "truth_scores",
    "observed_points",
    "RunDiagnostics",
    "format_summary",
    "plain_warnings",
    "departure_rms",
    "ANCHOR_DOMINATES",
    "CHUNK",
    "ICE_SIC_THRESHOLD",
]
