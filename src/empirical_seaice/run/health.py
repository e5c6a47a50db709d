"""Health checks of a trained model, before anything is written.

A diverged run can end with finite numbers: SIC far outside [0, 1], state
values far beyond anything the emissivity model saw, TB errors larger than
before training, and yet a smaller total cost (the anchor penalty collapsing
hides the rest). :func:`check_health` looks at the trained state and one
simulation of every observation:

============  ==============================================================  ===========================
check         fails when                                                      bound
============  ==============================================================  ===========================
finite        any SIC, state or simulated TB/emissivity value is NaN or inf
sic           more than :data:`SIC_OUT_FRACTION` of the SIC map outside        5% outside [-0.1, 1.1] (range
              :data:`SIC_RANGE`, or any value outside :data:`SIC_LIMIT`        prior sigma 0.02); [-0.5, 1.5]
state         any empirical-state value with ``|P|`` or ``|Q|`` above          10 (the state starts at 0;
              :data:`STATE_LIMIT`                                              trained values are O(1))
emissivity    of the observations whose trained SIC exceeds 0.5, more than    5% outside (0, 1 + 0.01];
              :data:`EMIS_OUT_FRACTION` with an ice emissivity outside        none above 1.2
              :data:`EMIS_RANGE`, or any above :data:`EMIS_LIMIT`
departures    the observation cost ``J_o`` after training above its value     x 1.01
              before (:data:`DEPARTURE_FACTOR`)
cost terms    a cost term after training above :data:`EXPLODE_FACTOR` times   x 10
              the total cost before; the anchor term only if, besides, the    and 0.01
              emissivity shortfall it stands for is above
              :data:`ANCHOR_SHORTFALL_LIMIT` (:func:`anchor_shortfall`)
============  ==============================================================  ===========================

The anchor term is judged by the emissivity error it stands for, not by its
size: its error (1e-5, the reference's) turns a harmless shortfall into a large
number. Two observations of 9,322 whose 23.8 GHz V emissivity ends at 0.79
(floor 0.8) give a v2 anchor term of ~1e6, ten times the total cost before
training on a small twin, yet an RMS shortfall over all observations of
~1e-4: the products are unaffected, and the summary reports the term
(:mod:`empirical_seaice.products.summary_table`, a note instead of a
warning). An anchor term that exploded while the anchored emissivity falls
well below the floor for many observations (RMS above 0.01: e.g. a tenth of
them 0.03 below) fails.

The v1 emissivity model is linear and unbounded: ``e = e0 + W [x_T, P]`` with
the anchor holding only ``e0(10v)`` (the value at ``x_T = 0`` and ``P = 0``);
a positive temperature weight puts cold ice (``x_T = (273 - T) / 30`` up to
about 1.5) above 1 while the TB still fits (SIC mixing and the biases absorb
it). The reference keeps this design, so a few per cent of such values are
tolerated (a warning above 1 %: a default v1 run on the 6-day tiny twin ends
with 2.9 %, up to 1.14, while its SIC RMSE halves); a model that leans on it
(a 3-epoch v1 run at the reference's batch 1024 and lr 1e-3: 19.8 %, up to
1.26) fails. The v2 network's sigmoid output cannot leave (0, 1).

A failed check is :class:`HealthError` (one line naming every check that
failed). The run then writes no products and keeps the trainer checkpoint;
``--force-outputs`` writes them anyway, marked with the global attributes of
:func:`failure_attributes`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.errors import SeaIceError

log = logging.getLogger(__name__)

SIC_RANGE = (-0.1, 1.1)
SIC_LIMIT = (-0.5, 1.5)
SIC_OUT_FRACTION = 0.05
STATE_LIMIT = 10.0
EMIS_RANGE = (0.0, 1.01)
EMIS_OUT_FRACTION = 0.05
EMIS_WARN_FRACTION = 0.01
EMIS_LIMIT = 1.2
EMIS_SIC_MIN = 0.5
DEPARTURE_FACTOR = 1.01
EXPLODE_FACTOR = 10.0
ANCHOR_SHORTFALL_LIMIT = 0.01


class HealthError(SeaIceError):
    """The trained model failed a health check (see :mod:`empirical_seaice.run.health`)."""


@dataclass
class HealthReport:
    """Failed checks (``failures``, one phrase each) and the figures looked at (``figures``)."""

    failures: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    emissivity_failure: str | None = None
    """The emissivity check's failure among ``failures``, if it failed."""
    ceiling: bool = False
    """Whether the cost had the ice-emissivity ceiling (its ``emis_ceiling`` term)."""

    @property
    def ok(self) -> bool:
        return not self.failures

    def remedy(self, forced: bool = False) -> str:
        """What to do, for the checks that failed: the v1 emissivity's bound alone is the linear model's (the
        reference's) nature, which a lower learning rate or more epochs did not cure (measured on a southern
        twin: 14.7 % outside (0, 1] by default, 20.1 % at lr 2e-3, 12.5 % after 60 epochs); anything else is
        a diverged fit. Without the ice-emissivity ceiling, the ceiling first: on 13 small twins a default
        v1 run without it failed this check on 10, with it (``--emis-ceiling 0.01``, v1's default) on none.
        ``forced``: the outputs were written anyway (``--force-outputs``), which is then not offered."""
        force = "" if forced else ", or --force-outputs to write the outputs marked as failed"
        if self.failures == [self.emissivity_failure] and not self.ceiling:
            return (
                "the linear v1 emissivity, unbounded as the reference's, went above 1: --emis-ceiling 0.01 "
                f"(v1's default) holds it under 1; or --model v2 (bounded){force}"
            )
        if self.failures == [self.emissivity_failure]:
            return (
                "the linear v1 emissivity, unbounded as the reference's, cannot fit these data within (0, 1]: "
                f"--model v2 (bounded){force}"
            )
        return f"lower --learning-rate{force}"

    def message(self) -> str:
        return "health check failed: " + "; ".join(self.failures)


class ObservationChecks:
    """The per-observation figures of the checks (non-finite simulated values; the emissivity of the
    observations whose trained SIC exceeds :data:`EMIS_SIC_MIN`), added block by block (:meth:`add`),
    so a streamed pass over the observations can check them without holding them."""

    def __init__(self, nchan: int):
        self.nonfinite_tb = 0
        self.nonfinite_emis = 0
        self.nice = 0
        self.bad = np.zeros(nchan, dtype=np.int64)
        self.valid = np.zeros(nchan, dtype=np.int64)
        self.emis_max = -np.inf
        self.emis_min = np.inf
        self.state: tuple[ArrayFigures, ArrayFigures, ArrayFigures] | None = None
        """The trained state's figures (:func:`state_figures`), where the pass gathered them too."""

    def add(self, tb_sim: np.ndarray, emis_ice: np.ndarray, mask: np.ndarray, sic_obs: np.ndarray) -> None:
        """Add one block: simulated TB and ice emissivity (n, nchan), valid channels, trained SIC (n,)
        (one compiled pass; the numpy expressions of :meth:`add_numpy` without numba)."""
        if _check_block is None:  # pragma: no cover - without numba
            self.add_numpy(tb_sim, emis_ice, mask, sic_obs)
            return
        counts = np.zeros(3, dtype=np.int64)  # non-finite TB, non-finite emissivity, ice observations
        ext = np.zeros(3)  # the block's largest and smallest valid ice emissivity, 1 if a NaN among them
        anyvalid = _check_block(
            np.asarray(tb_sim), np.asarray(emis_ice), np.asarray(mask, dtype=bool), np.asarray(sic_obs),
            np.float32(EMIS_SIC_MIN), np.float32(EMIS_RANGE[0]), np.float32(EMIS_RANGE[1]),
            counts, self.bad, self.valid, ext,
        )  # fmt: skip
        self.nonfinite_tb += int(counts[0])
        self.nonfinite_emis += int(counts[1])
        self.nice += int(counts[2])
        if anyvalid:  # numpy's max/min of the block (NaN if one is NaN), then Python's max/min as before
            hi, lo = (np.nan, np.nan) if ext[2] else (float(ext[0]), float(ext[1]))
            self.emis_max = max(self.emis_max, hi)
            self.emis_min = min(self.emis_min, lo)

    def add_numpy(self, tb_sim: np.ndarray, emis_ice: np.ndarray, mask: np.ndarray, sic_obs: np.ndarray) -> None:
        """:meth:`add` in numpy expressions (the definition the compiled pass is tested against)."""
        mask = np.asarray(mask, dtype=bool)
        self.nonfinite_tb += int((mask & ~np.isfinite(tb_sim)).sum())
        self.nonfinite_emis += int((mask & ~np.isfinite(emis_ice)).sum())
        ice = np.asarray(sic_obs) > EMIS_SIC_MIN
        if not ice.any():
            return
        e, m = np.asarray(emis_ice)[ice], mask[ice]
        self.nice += int(ice.sum())
        self.bad += (m & ((e <= EMIS_RANGE[0]) | (e > EMIS_RANGE[1]))).sum(axis=0)
        self.valid += m.sum(axis=0)
        if m.any():
            self.emis_max = max(self.emis_max, float(e[m].max()))
            self.emis_min = min(self.emis_min, float(e[m].min()))


def _check_block_py(tb, emis, mask, sic, sic_min, lo, hi, counts, bad, valid, ext):  # pragma: no cover - compiled
    """One pass of :meth:`ObservationChecks.add` over a block; returns True if an ice observation has
    a valid channel (``ext``: their largest and smallest emissivity, and 1 if one is NaN)."""
    n, nc = emis.shape
    anyvalid = False
    emax, emin, nan = -np.inf, np.inf, False
    for i in range(n):
        ice = sic[i] > sic_min
        counts[2] += ice
        for c in range(nc):
            if not mask[i, c]:
                continue
            counts[0] += not np.isfinite(tb[i, c])
            e = emis[i, c]
            counts[1] += not np.isfinite(e)
            if ice:
                valid[c] += 1
                bad[c] += e <= lo or e > hi
                anyvalid = True
                if e != e:
                    nan = True
                else:
                    emax = max(emax, np.float64(e))
                    emin = min(emin, np.float64(e))
    ext[0], ext[1], ext[2] = emax, emin, 1.0 if nan else 0.0
    return anyvalid


def _figures_py(a, lo, hi, out):  # pragma: no cover - compiled below
    """One pass of :func:`array_figures` over the 1-D ``a``: ``out`` = (non-finite values, min, max,
    max |x|, values outside [lo, hi]) (the last four over the finite values)."""
    bad = 0
    nout = 0
    amin = np.inf
    amax = -np.inf
    for x in a:
        v = np.float64(x)
        if not np.isfinite(v):
            bad += 1
            continue
        amin = min(amin, v)
        amax = max(amax, v)
        if v < lo or v > hi:
            nout += 1
    if bad == a.shape[0]:  # no finite value: no figures (as numpy's expressions give them)
        amin = amax = np.nan
    out[0], out[1], out[2], out[3], out[4] = bad, amin, amax, max(abs(amin), abs(amax)), nout


_check_block: Any
_figures: Any
try:
    from empirical_seaice.compiled import njit

    _check_block = njit(cache=True, nogil=True)(_check_block_py)
    _figures = njit(cache=True, nogil=True)(_figures_py)
except ImportError:  # pragma: no cover - exercised only where numba is absent
    _check_block = _figures = None


@dataclass(frozen=True)
class ArrayFigures:
    """What the checks read of a state array of ``size`` values: ``nonfinite`` values (NaN, inf); over
    the finite ones ``min``, ``max``, ``max_abs`` (NaN without any) and the ``fraction`` of all values
    outside ``range``."""

    size: int
    nonfinite: int
    min: float
    max: float
    max_abs: float
    fraction: float
    range: tuple[float, float] = (-np.inf, np.inf)


def array_figures(arr: np.ndarray, lo: float = -np.inf, hi: float = np.inf) -> ArrayFigures:
    """:class:`ArrayFigures` of ``arr`` (any shape) with the range ``[lo, hi]``: one compiled pass without
    a copy (numpy's expressions without numba). On the ``benchmark`` twin's state the checks took 0.06 s
    with numpy (copies, a float64 map, a pass per figure)."""
    a = np.asarray(arr).reshape(-1)
    if not a.size:
        return ArrayFigures(0, 0, np.nan, np.nan, np.nan, 0.0, (lo, hi))
    if _figures is not None and a.dtype in (np.float32, np.float64):
        out = np.zeros(5)
        _figures(a, float(lo), float(hi), out)
        bad, amin, amax, max_abs, nout = out
        return ArrayFigures(a.size, int(bad), float(amin), float(amax), float(max_abs), nout / a.size, (lo, hi))
    return _array_figures_numpy(a, lo, hi)


def _array_figures_numpy(a: np.ndarray, lo: float, hi: float) -> ArrayFigures:
    """:func:`array_figures` in numpy expressions (without numba; the definition the pass is tested against)."""
    finite = np.isfinite(a)
    v = np.asarray(a[finite], dtype=np.float64)
    bad = int((~finite).sum())
    if not v.size:
        return ArrayFigures(a.size, bad, np.nan, np.nan, np.nan, 0.0, (lo, hi))
    nout = int(((v < lo) | (v > hi)).sum())
    return ArrayFigures(a.size, bad, float(v.min()), float(v.max()), float(np.abs(v).max()), nout / a.size, (lo, hi))


def _figures_of(a: np.ndarray | ArrayFigures, lo: float = -np.inf, hi: float = np.inf) -> ArrayFigures:
    """``a``'s :func:`array_figures` with the range ``[lo, hi]``, or ``a`` when it is figures already of that
    range (else a ValueError: the checks would read another fraction)."""
    if not isinstance(a, ArrayFigures):
        return array_figures(a, lo, hi)
    if a.size and a.range != (lo, hi):
        raise ValueError(f"array figures of the range {a.range}, the checks read [{lo}, {hi}]")
    return a


def state_figures(state) -> tuple[ArrayFigures, ArrayFigures, ArrayFigures]:
    """The checks' figures of a trained :class:`~empirical_seaice.model.state.EmpiricalState`: its SIC
    map (with :data:`SIC_RANGE`), grid properties P and observation properties Q, read from its tables as
    they are (views on the CPU, no copies)."""
    return (
        array_figures(_values(state.sic_map), *SIC_RANGE),
        array_figures(_values(state.props_grid)),
        array_figures(_values(state.props_obs)),
    )


def anchor_shortfall(anchor: str, anchor_error: float, term: float, nobs: int) -> float:
    """The emissivity error an anchor term ``J_a`` (over the whole data) stands for.

    v1 ("mean", ``J_a = ((e0 - value) / sigma)^2``): ``|e0 - value| = sigma sqrt(J_a)``;
    v2 ("floor", ``J_a = sum_i max(floor - e_i, 0)^2 / sigma^2``): the RMS shortfall below the
    floor over all ``nobs`` observations, ``sigma sqrt(J_a / nobs)``. Dimensionless (emissivity).
    """
    if term <= 0.0:
        return 0.0
    if anchor == "mean":
        return float(anchor_error * np.sqrt(term))
    return float(anchor_error * np.sqrt(term / max(nobs, 1)))


def check_health(
    sic_map: np.ndarray,
    props_grid: np.ndarray,
    props_obs: np.ndarray,
    emis_ice: np.ndarray,
    tb_sim: np.ndarray,
    mask: np.ndarray,
    sic_obs: np.ndarray,
    channel_names: list[str] | tuple[str, ...],
    cost_before: dict[str, float] | None,
    cost_after: dict[str, float],
    anchor_shortfall: float | None = None,
) -> HealthReport:
    """Check a trained model (see the module docstring).

    Parameters
    ----------
    sic_map : (ngrid, nstep + nlag) trained SIC.
    props_grid, props_obs : the empirical state P (grid, step, k) and Q (iobs, k).
    emis_ice, tb_sim : (nobs, nchan) simulated ice emissivity and TB after training.
    mask : (nobs, nchan) valid channels.
    sic_obs : (nobs,) trained SIC seen by each observation.
    channel_names : the unified channel names.
    cost_before, cost_after : the full cost J by term before / after training (None: no "before").
    anchor_shortfall : the emissivity error the anchor term stands for (:func:`anchor_shortfall`);
        None: the anchor term is judged like the other terms.
    """
    checks = ObservationChecks(len(channel_names))
    checks.add(tb_sim, emis_ice, mask, sic_obs)
    return check_health_of(
        sic_map, props_grid, props_obs, checks, channel_names, cost_before, cost_after, anchor_shortfall
    )


def check_health_of(
    sic_map: np.ndarray | ArrayFigures,
    props_grid: np.ndarray | ArrayFigures,
    props_obs: np.ndarray | ArrayFigures,
    checks: ObservationChecks,
    channel_names: list[str] | tuple[str, ...],
    cost_before: dict[str, float] | None,
    cost_after: dict[str, float],
    anchor_shortfall: float | None = None,
) -> HealthReport:
    """:func:`check_health` with the per-observation figures already gathered (``checks``); the state's
    arrays, or their :func:`array_figures` (the SIC map's with :data:`SIC_RANGE`: :func:`state_figures`)."""
    rep = HealthReport(ceiling="emis_ceiling" in cost_after)
    sic = _figures_of(sic_map, *SIC_RANGE)
    state = {"P": _figures_of(props_grid), "Q": _figures_of(props_obs)}
    for name, fig in (("SIC", sic), ("state P", state["P"]), ("state Q", state["Q"])):
        if fig.nonfinite:
            rep.failures.append(f"{name} has {fig.nonfinite} non-finite values")
    for name, count in (("simulated TB", checks.nonfinite_tb), ("ice emissivity", checks.nonfinite_emis)):
        if count:
            rep.failures.append(f"{name} has {count} non-finite values")
    if rep.failures:
        return rep
    _check_sic(rep, sic)
    for name, fig in state.items():
        _check_state(rep, name, fig)
    _check_emissivity(rep, checks, channel_names)
    if cost_before:
        _check_costs(rep, cost_before, cost_after, anchor_shortfall)
    return rep


def _check_sic(rep: HealthReport, sic: ArrayFigures) -> None:
    if not sic.size:
        return
    rep.figures.update(sic_min=sic.min, sic_max=sic.max, sic_out_fraction=sic.fraction)
    if sic.fraction > SIC_OUT_FRACTION or sic.min < SIC_LIMIT[0] or sic.max > SIC_LIMIT[1]:
        rep.failures.append(
            f"SIC from {sic.min:.3g} to {sic.max:.3g}, {100 * sic.fraction:.1f}% of values outside "
            f"[{SIC_RANGE[0]:g}, {SIC_RANGE[1]:g}]"
        )


def _check_state(rep: HealthReport, name: str, fig: ArrayFigures) -> None:
    if not fig.size:
        return
    m = fig.max_abs
    rep.figures[f"state_{name}_max_abs"] = m
    if m > STATE_LIMIT:
        rep.failures.append(f"empirical state {name} reaches |{name}| = {m:.3g} (limit {STATE_LIMIT:g})")


def _check_emissivity(rep: HealthReport, checks: ObservationChecks, names) -> None:
    if not checks.nice:
        return
    frac = checks.bad.sum() / max(checks.valid.sum(), 1)
    rep.figures.update(emis_out_fraction=float(frac), emis_max=checks.emis_max, emis_min=checks.emis_min)
    if frac > EMIS_WARN_FRACTION or rep.figures["emis_max"] > EMIS_LIMIT:
        per = checks.bad / np.maximum(checks.valid, 1)
        worst = int(np.argmax(per))
        text = (
            f"ice emissivity outside (0, 1] for {100 * frac:.1f}% of the {checks.nice} observations with "
            f"SIC > {EMIS_SIC_MIN:g} (from {rep.figures['emis_min']:.3g} to {rep.figures['emis_max']:.3g}; "
            f"worst channel {names[worst]}: {100 * per[worst]:.0f}%)"
        )
        bound = f"(the tolerance: {100 * EMIS_OUT_FRACTION:g}% outside, none above {EMIS_LIMIT:g})"
        if frac > EMIS_OUT_FRACTION or rep.figures["emis_max"] > EMIS_LIMIT:
            rep.emissivity_failure = f"{text}, beyond the unbounded v1 model's tolerance {bound}"
            rep.failures.append(rep.emissivity_failure)
        else:
            log.warning("%s: within the tolerance of the unbounded v1 model %s", text, bound)


def _check_costs(rep: HealthReport, before: dict[str, float], after: dict[str, float], shortfall: float | None) -> None:
    jb, ja = before.get("obs", 0.0), after.get("obs", 0.0)
    rep.figures["obs_cost_ratio"] = ja / jb if jb > 0 else 0.0
    if jb > 0 and ja > DEPARTURE_FACTOR * jb:
        rep.failures.append(f"departures worse than before training (J_o {jb:.4g} -> {ja:.4g})")
    total = max(before.get("total", 0.0), 1.0)
    if shortfall is not None:
        rep.figures["anchor_shortfall"] = shortfall
    for term, value in after.items():
        if term == "total" or value <= EXPLODE_FACTOR * total:
            continue
        if term == "anchor" and shortfall is not None:
            if shortfall > ANCHOR_SHORTFALL_LIMIT:
                rep.failures.append(
                    f"cost term anchor exploded ({before.get(term, 0.0):.4g} -> {value:.4g}): the anchored ice "
                    f"emissivity misses its target by {shortfall:.3g} (RMS over all observations; "
                    f"limit {ANCHOR_SHORTFALL_LIMIT:g})"
                )
            continue
        rep.failures.append(f"cost term {term} exploded ({before.get(term, 0.0):.4g} -> {value:.4g})")


def check_trained(
    network, obs, sim, cost_before: dict[str, float] | None, cost_after: dict[str, float]
) -> HealthReport:
    """:func:`check_health` of a trained network (its state tables) and ``sim``: its simulation of every
    observation of ``obs`` (:func:`empirical_seaice.products.diagnostics.simulate`), or the
    :class:`ObservationChecks` a streamed pass gathered from it. The state's figures are the ones the
    pass gathered (``checks.state``: the state as the pass read it, which it does not change), else
    computed here (:func:`state_figures`)."""
    st = network.state
    checks = sim
    if not isinstance(sim, ObservationChecks):
        checks = ObservationChecks(obs.nchan)
        checks.add(sim.tb, sim.emis_ice, obs.mask, sim.sic)
    cost = network.cost_config
    shortfall = anchor_shortfall(cost.anchor, cost.anchor_error, cost_after.get("anchor", 0.0), obs.nobs)
    sic, p, q = checks.state if checks.state is not None else state_figures(st)
    return check_health_of(
        sic,
        p,
        q,
        checks,
        list(obs.basis.channel_names),
        cost_before,
        cost_after,
        shortfall,
    )


def _values(table) -> np.ndarray:
    """A state table's values as they are (on the CPU: a view, not a copy; none for a table the state lacks)."""
    return np.zeros(0, np.float32) if table is None else table.weight.detach().cpu().numpy()


def failure_attributes(report: HealthReport) -> dict[str, str]:
    """Global attributes marking a product written with ``--force-outputs`` despite failed checks."""
    return failure_marks("; ".join(report.failures))


def failure_marks(failures: str) -> dict[str, str]:
    """The global attributes of :func:`failure_attributes` for the failed checks ``failures`` in words (as a
    failed set's manifest keeps them: ``--diagsonly`` of its model marks its files alike)."""
    return {"health_check": "failed", "health_check_failures": failures}


def health_gate(
    report: HealthReport, force_outputs: bool, checkpoint: Path
) -> tuple[HealthReport, dict[str, str] | None]:
    """What a run does with its report: ``(report, None)`` when the checks pass; with failed checks a
    one-line :class:`HealthError` naming them (the trainer checkpoint is kept: ``checkpoint``, its file,
    or the directory of a sharded run's, one a rank), or with ``force_outputs`` a warning and the
    attributes that mark every output as failed (:func:`failure_attributes`)."""
    if report.ok:
        return report, None
    if not force_outputs:
        kept = f"the checkpoints in {checkpoint} are" if checkpoint.is_dir() else f"the checkpoint {checkpoint} is"
        raise HealthError(f"{report.message()}; no outputs written, {kept} kept for inspection ({report.remedy()})")
    log.warning("%s; writing the outputs anyway (--force-outputs), marked health_check = failed", report.message())
    return report, failure_attributes(report)


__all__ = [
    "ANCHOR_SHORTFALL_LIMIT",
    "anchor_shortfall",
    "check_health",
    "check_health_of",
    "ObservationChecks",
    "check_trained",
    "health_gate",
    "HealthReport",
    "HealthError",
    "failure_attributes",
    "failure_marks",
]
