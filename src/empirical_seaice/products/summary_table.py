"""The summary table printed after a run, and its plain-words warnings.

- :class:`RunDiagnostics`: everything the table shows (any part may be missing);
- :func:`format_summary`: the short table (cost terms before/after, per-channel
  departures, truth scores, warnings);
- :func:`plain_warnings`: what went wrong, in plain words, with the likely fix;
- :func:`departure_rms`: the RMS of ``y - H(x)`` over every valid value.

The figures come from :mod:`empirical_seaice.products.diagnostics` (departures, costs,
truth scores), which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from empirical_seaice.sensors import ChannelBasis

if TYPE_CHECKING:  # pragma: no cover
    from empirical_seaice.products.diagnostics import DepartureStats, TruthScores


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
    held_out_cost: Sequence[float] = ()  # per epoch, the held-out observations' cost (empty: none held out)
    retrieval: bool = False  # a retrieval with a trained model: it fits every observation, holds none out
    # the emissivity error the anchor term stands for, and whether the health check found it harmless
    anchor_shortfall: float | None = None
    anchor_harmless: bool = False
    logged: Sequence[str] = ()  # the warnings the run logged (on stderr as they came), listed at the end
    data_warnings: int = 0  # of them, those about the input files (the read's, the open-water departures')
    health_remedy: str | None = None  # the failed health checks' remedy, where --force-outputs wrote anyway


LOGGED_SHOWN = 10
"""Logged warnings the summary lists in full (:func:`format_summary`); the rest are counted."""


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
    total cost rose. Empty when none applies. When the health check found the
    anchor's shortfall harmless (``anchor_harmless``), a dominating anchor term,
    or a rise of the total that is the anchor term's, is one note instead, and
    the other checks (SIC, departures) still warn. The last line is the likely fix (:func:`_likely_fix`):
    with nothing held out it asks for a held-out rerun before more epochs, since the run cannot tell
    training that stopped short from training that fitted noise. Where the run logged warnings about the
    data (``data_warnings``), a line before it points at them: no flag makes up for a fault in the files.
    """
    out: list[str] = []
    before, after = diag.cost_before or {}, diag.cost_after or {}
    t = diag.truth
    if t is not None and np.isfinite(t.sic_rmse) and t.sic_rmse > t.sic_rmse_background:
        out.append(
            f"WARNING: the trained SIC is worse than the background it started from "
            f"(RMSE against the truth {t.sic_rmse_background:.4f} -> {t.sic_rmse:.4f})."
        )
    if diag.departures_before is not None and diag.departures_after is not None:
        rb, ra = departure_rms(diag.departures_before), departure_rms(diag.departures_after)
        if ra > rb:
            out.append(
                f"WARNING: the simulated TBs fit the observations worse than before training "
                f"(RMS of y - H(x) {rb:.2f} K -> {ra:.2f} K)."
            )
    note, cost_out, anchor_dominates = _anchor_and_cost(diag, before, after)
    out += cost_out
    if not out:
        return note
    if diag.data_warnings:
        n = diag.data_warnings
        out.append(
            f"  See also the data: {n} warning{'s' if n > 1 else ''} about the input files "
            f"{'are' if n > 1 else 'is'} listed below; no flag makes up for a fault in the files (channels "
            "swapped, TBs offset, a grid or times that do not fit)."
        )
    return [*note, *out, _likely_fix(diag, before, anchor_dominates)]


def _anchor_and_cost(
    diag: RunDiagnostics, before: Mapping[str, float], after: Mapping[str, float]
) -> tuple[list[str], list[str], bool]:
    """The anchor term's and the total cost's lines of :func:`plain_warnings`: ``(notes, warnings, whether the
    anchor term dominates the cost and is not harmless)``."""
    out: list[str] = []
    anchor, total = after.get("anchor", 0.0), after.get("total", 0.0)
    # more than half of J, and more than the whole observation misfit training started from (a few
    # emissivities ending 1e-3 under the floor are worth 1e4 each at error 1e-5: not a failure)
    anchor_dominates = total > 0 and anchor > ANCHOR_DOMINATES * total and anchor > before.get("obs", 0.0)
    note: list[str] = []
    if anchor_dominates and diag.anchor_harmless:
        # the term is large, the emissivity error it stands for is not: a note instead of a warning
        note.append(
            f"NOTE: the emissivity anchor term is {100 * anchor / total:.0f}% of the cost after training "
            f"({anchor:.4g} of {total:.4g}) but stands for an emissivity shortfall of only "
            f"{diag.anchor_shortfall:.2g} (RMS over all observations): a few emissivities end just under the "
            "anchor's floor, and the term's small error makes it large. The products are not affected."
        )
        anchor_dominates = False
    if anchor_dominates:
        out.append(
            f"WARNING: the emissivity anchor term is {100 * anchor / total:.0f}% of the cost after training "
            f"({anchor:.4g} of {total:.4g}): the ice emissivity sits far below its anchor, and the training "
            "spent its steps on that instead of on the observations."
        )
    if not (before and after and total > before.get("total", np.inf)):
        return note, out, anchor_dominates
    grew = max((k for k in after if k != "total"), key=lambda k: after[k] - before.get(k, 0.0))
    if grew == "anchor" and diag.anchor_harmless and not note:
        # the rise is an anchor term whose shortfall is harmless (the `science` twin's good run: 0 -> 9.8e6,
        # a WARNING whose "more epochs" early stopping made moot)
        note.append(
            f"NOTE: the total cost rose during training ({before['total']:.4g} -> {total:.4g}) by the "
            f"emissivity anchor term ({before.get('anchor', 0.0):.4g} -> {anchor:.4g}), which stands for an "
            f"emissivity shortfall of only {diag.anchor_shortfall:.2g} (RMS over all observations): a few "
            "emissivities end just under the anchor's floor. The products are not affected."
        )
    if not (note and grew == "anchor"):  # else the noted anchor term's rise
        out.append(
            f"WARNING: the total cost rose during training ({before['total']:.4g} -> {total:.4g}); "
            f"most of the rise is the {grew} term ({before.get(grew, 0.0):.4g} -> {after[grew]:.4g})."
        )
    return note, out, anchor_dominates


def _likely_fix(diag: RunDiagnostics, before: Mapping[str, float], anchor_dominates: bool) -> str:
    """The last line of :func:`plain_warnings`' warnings: what most likely went wrong and what to do."""
    if diag.health_remedy is not None:
        return (
            "  Likely fix: the health checks failed (the outputs are marked health_check = failed, the failure "
            f"is listed below): {diag.health_remedy}."
        )
    if anchor_dominates or (before.get("anchor", 0.0) > ANCHOR_DOMINATES * before.get("total", np.inf)):
        return (
            "  Likely fix: start the ice emissivity near its anchor (--ice-emis-init 0.9 for v2, 0.93 for v1: "
            "the default unless --exact-reference or --ice-emis-init reference), or train on much more data."
        )
    if diag.kept_epoch is not None:  # early stopping chose the epoch: more epochs would fit noise
        return (
            f"  Likely cause: the held-out observations' cost was lowest at epoch {diag.kept_epoch}, whose "
            "parameters are kept, so more epochs would not help (--no-early-stopping made the `science` twin's "
            "SIC worse); check the departures above for a sensor or channel the model cannot fit."
        )
    more_steps = (
        "give each SIC cell more steps: more epochs (--nepochs), or a smaller --batchsize with a larger "
        "--learning-rate (by default both follow the data size)"
    )
    if diag.retrieval:
        return f"  Likely fix: {more_steps}."
    costs = [c if np.isfinite(c) else np.inf for c in diag.held_out_cost]
    # held out without early stopping (--no-early-stopping): the held-out cost says which way
    if costs and min(costs) < np.inf:
        best = int(np.argmin(costs)) + 1
        if best < len(costs):
            return (
                f"  Likely cause: the held-out observations' cost was lowest at epoch {best} of {len(costs)}, so "
                "the later epochs fitted noise; without --no-early-stopping the run keeps that epoch's parameters."
            )
        return f"  Likely fix: the held-out observations' cost was still falling at the last epoch: {more_steps}."
    return (
        "  Likely fix: nothing was held out to tell whether training stopped short or fitted the weather's and "
        "the forward model's errors into the SIC. Rerun with --validation-fraction 0.1 (the default from 20,000 "
        f"observations on): it keeps the epoch of the lowest held-out cost; if that is the last epoch, {more_steps}."
    )


def _fmt(x: float | None, spec: str) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    return format(x, spec)


def format_summary(diag: RunDiagnostics, basis: ChannelBasis) -> str:
    """The short summary table (about 30 lines for 18 channels).

    Sections: cost terms before/after (``J`` by term); per-channel departure
    mean/std before/after and, with a truth, the ice-emissivity RMSE; SIC
    scores versus the truth (background vs trained) and the TB-bias errors;
    then :func:`plain_warnings`, and the warnings the run logged (``logged``). With early stopping
    (``kept_epoch``) the "after" column is headed by the kept epoch: its parameters are the trained model.
    """
    lines = [diag.title]
    lines += _cost_lines(diag.cost_before, diag.cost_after, diag.kept_epoch)
    lines += _channel_lines(diag.departures_before, diag.departures_after, diag.truth, basis)
    if diag.truth is not None:
        lines += _truth_lines(diag.truth, basis)
    lines.extend(f"  {n}" for n in diag.notes)
    lines.extend(f"  {w}" for w in plain_warnings(diag))
    lines += _logged_lines(diag.logged)
    return "\n".join(lines)


def _logged_lines(logged: Sequence[str]) -> list[str]:
    """The warnings the run logged, after the table: they scroll by on stderr while a run goes on (under
    ``--quiet`` stderr shows none), and some (the data's) matter more than any figure above. The first
    :data:`LOGGED_SHOWN` in full; ``summary_TAG.json`` holds every one (``run.warnings``)."""
    if not logged:
        return []
    n = len(logged)
    lines = [f"  {n} warning{'s' if n > 1 else ''} logged during the run:"]
    lines += [f"  - {m}" for m in logged[:LOGGED_SHOWN]]
    if n > LOGGED_SHOWN:
        lines.append(f"  - ... and {n - LOGGED_SHOWN} more (every one in summary_TAG.json, run.warnings)")
    return lines


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


__all__ = ["RunDiagnostics", "format_summary", "plain_warnings", "departure_rms", "ANCHOR_DOMINATES"]
