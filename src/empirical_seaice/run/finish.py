"""What training runs and retrievals both do around the fit: diagnostics and the state files.

- :func:`publish_final_pass`: the files of the streamed final pass
  (:mod:`empirical_seaice.run.streamed`: ``tbobs``, ``tbsim``, ``ice_emis``, ``tbzero``) made outputs, its
  cost and departures after and the truth scores on a twin (:func:`run_truth`, :func:`score_truth`) into the
  run's result: a single process's run, a sharded run's rank 0 and a retrieval alike;
- :func:`write_state_files`: ``seaice_TAG.nc``, ``properties_grid_TAG.nc``,
  ``properties_obs_TAG.nc`` from the trained state;
- :func:`run_summary`: the run's summary as data (``summary_TAG.json``);
  :func:`summary_table`: the table printed after a run (:func:`run_title`: its first lines).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from empirical_seaice.config import CostConfig, TrainingConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import outputs as out
from empirical_seaice.model.operator import HybridNetwork
from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.products import diagnostics as diag
from empirical_seaice.run.health import ANCHOR_SHORTFALL_LIMIT, anchor_shortfall

log = logging.getLogger(__name__)


def training_seconds(result: Any, history) -> float:
    """The wall time of the training's epochs (s, validation included) over every run of it: the books'
    (``history.wall_time_s``, which a resumed run carries on from its checkpoint), else this run's
    (``result.train_seconds``). A run resumed after its last epoch trains for no time of its own: its summary
    said "N epochs in 0.0 s"."""
    books = float(getattr(history, "wall_time_s", 0.0) or 0.0)
    return books if books > 0 else float(result.train_seconds)


def run_truth(data_dir: Path, obs: Observations):
    """The twin's truth of the run (:func:`empirical_seaice.io.truth.read_truth`; only the per-observation
    ice emissivity of its per-observation fields and the multi-year fraction of its property maps, what
    the scores and the plots read), or None: no truth, or one that cannot be read (a warning)."""
    from empirical_seaice.io.truth import read_truth

    try:
        return read_truth(data_dir, obs, per_obs=("EMIS_ICE",), properties=("MYI_FRACTION",))
    except SeaIceError as exc:  # a truth/ folder that is not our twin's: score nothing, keep the run
        log.warning("no truth scores: %s", exc)
        return None


def score_truth(
    network: HybridNetwork, obs: Observations, background: BackgroundMaps, truth, *, emis_ice=None, emis_errors=None
) -> diag.TruthScores:
    """:func:`empirical_seaice.products.diagnostics.truth_scores` of the trained network: its SIC map and TB
    biases, and the ice emissivity at the observations (``emis_ice``, or the errors a streamed pass summed)."""
    return diag.truth_scores(
        obs,
        background,
        network.state.sic_array(),
        emis_ice,
        truth,
        network.bias_ice_k.detach().cpu().numpy(),
        network.bias_ocean_k.detach().cpu().numpy(),
        emis_errors=emis_errors,
    )


def publish_final_pass(network, obs, background, truth, result: Any, final, held: out.HeldOutputs) -> None:
    """After a streamed :func:`~empirical_seaice.run.streamed.final_pass`: its held files become outputs
    (``tbobs``, ``tbsim``, ``ice_emis``, ``tbzero``), its cost, departures and truth scores go into ``result``."""
    result.cost_after, result.departures_after = final.cost, final.departures
    for kind in ("tbobs", "tbsim", "ice_emis", "tbzero"):
        if kind in final.files:
            result.files.append(held.promote(final.files[kind]))
    if truth is not None:
        result.truth = score_truth(network, obs, background, truth, emis_errors=final.emis_errors)


def write_state_files(
    network: HybridNetwork,
    obs: Observations,
    background: BackgroundMaps,
    output: Path,
    tag: str,
    steps_per_day: int,
) -> list[Path]:
    """``seaice_TAG.nc``, ``properties_grid_TAG.nc`` and ``properties_obs_TAG.nc`` of the trained state."""
    st = network.state
    jd = out.step_julian_day(obs.jd_origin, obs.stepstart, obs.nstep, st.nlag, steps_per_day)
    return [
        out.write_seaice(
            out.output_path(output, "seaice", tag),
            st.sic_array(),
            jd,
            background.lon,
            background.lat,
            nlag=st.nlag,
            step_days=1.0 / steps_per_day,
        ),
        out.write_properties_grid(
            out.output_path(output, "properties_grid", tag),
            st.grid_properties_array(),
            jd[st.nlag :],
            background.lon,
            background.lat,
            step_days=1.0 / steps_per_day,
        ),
        out.write_properties_obs(out.output_path(output, "properties_obs", tag), st.obs_properties_array()),
    ]


def summary_table(
    result: Any,
    preset_name: str,
    obs: Observations,
    history,
    diagsonly: bool,
    train_cfg: TrainingConfig,
    cost_cfg: CostConfig,
    said: Sequence[str] = (),
    modeltag: str = "",
) -> str:
    """The summary table printed after a run (:func:`run_title`, the cost and departures before and
    after, the truth scores) of ``result`` (a ``RunResult``: its costs, departures, truth, output, tag,
    and the health report, whose anchor shortfall decides whether a large anchor term is a warning, and
    whose failure, where ``--force-outputs`` wrote the outputs anyway, is the likely fix; without one,
    ``--diagsonly``, the shortfall of the cost after, as the check finds it; the count of the warnings about
    the data, which a run that got worse points at); ``said``: the warnings the run logged, listed at the end;
    ``modeltag``: the trained model of ``--diagsonly``."""
    health = getattr(result, "health", None)
    shortfall = health.figures.get("anchor_shortfall") if health is not None else None
    if shortfall is None and result.cost_after:
        anchor = result.cost_after.get("anchor", 0.0)
        shortfall = anchor_shortfall(cost_cfg.anchor, cost_cfg.anchor_error, anchor, obs.nobs)
    return diag.format_summary(
        diag.RunDiagnostics(
            title=run_title(
                diagsonly,
                result.tag,
                preset_name,
                obs,
                history,
                training_seconds(result, history),
                schedule_line(train_cfg, getattr(result, "map_priors_note", "")),
                train_cfg.early_stopping,
                getattr(result, "sharded", ""),
                modeltag,
            ),
            cost_before=result.cost_before,
            cost_after=result.cost_after,
            departures_before=result.departures_before,
            departures_after=result.departures_after,
            truth=result.truth,
            notes=(f"outputs: {result.output}/*_{result.tag}.nc",),
            kept_epoch=kept_epoch(history, train_cfg.early_stopping),
            held_out_cost=tuple(history.valid_cost) if history is not None else (),
            anchor_shortfall=shortfall,
            anchor_harmless=shortfall is not None and shortfall <= ANCHOR_SHORTFALL_LIMIT,
            logged=tuple(said),
            data_warnings=getattr(result, "data_warnings", 0),
            health_remedy=health.remedy(forced=True) if health is not None and not health.ok else None,
        ),
        obs.basis,
    )


def run_title(
    diagsonly: bool,
    tag: str,
    preset_name: str,
    obs: Observations,
    history,
    train_seconds: float,
    schedule: str = "",
    early_stopping: bool = False,
    sharded: str = "",
    modeltag: str = "",
) -> str:
    """The first lines of a run's summary table: what ran, on which data, how training went (``sharded``:
    how a sharded run was sharded, in words; ``modeltag``: the trained model of ``--diagsonly``)."""
    if diagsonly:
        what = f"diagnostics '{tag}' of the trained model" + (f" '{modeltag}'" if modeltag else "")
    else:
        what = " ".join(part for part in ("training", sharded, f"'{tag}'") if part)
    line = (
        f"seaice-training {what}: model {preset_name}, sensors {' '.join(obs.basis.sensor_names)}\n"
        f"  {obs.nobs} observations, {obs.ngrid} grid points x {obs.nstep} steps"
    )
    if history is not None and not diagsonly:
        line += f"; {history.nepochs} epochs in {train_seconds:.1f} s ({history.obs_per_s:,.0f} obs/s)"
        if schedule:
            line += f"\n  {schedule}"
        if history.valid_cost:
            line += (
                f"\n  held-out observation cost per obs: {history.valid_cost[0]:.4g} -> {history.valid_cost[-1]:.4g}"
            )
        kept = kept_epoch(history, early_stopping)
        line += "".join("\n    " + text for text in region_lines(history, kept))
        if kept is not None:
            best = history.valid_cost[kept - 1]
            train_j = history.epoch_terms[kept - 1]["total"]
            line += (
                f"\n  early stopping kept epoch {kept} of {history.nepochs}, the lowest held-out cost ({best:.4g} per"
                f" obs; training cost J/nobs {train_j:.4g}): column 'epoch {kept}' below is the cost of that model"
            )
    return line


REGION_RISE = 0.05
"""A region's held-out cost this much above its own lowest at the kept epoch is reported as a rise."""


def region_lines(history, kept: int | None) -> list[str]:
    """One line per region of the grid with its own held-out cost (a global grid's hemispheres): first ->
    at the kept epoch (else the last), and its own lowest; a region whose cost at the kept epoch is
    :data:`REGION_RISE` above its lowest, reached earlier, is said to have risen: early stopping
    watches the whole's cost, and one hemisphere's fall can hide the other's rise (its state over-fitted:
    on the twin its SIC error grows with it). A region whose state was held at its own best epoch
    (``history.region_held``, :mod:`empirical_seaice.training.regions`) before the kept epoch says so instead."""
    at = kept if kept is not None else history.nepochs
    lines = []
    for name, costs in getattr(history, "valid_cost_regions", {}).items():
        if len(costs) < at or at < 1:
            continue
        low = min(range(at), key=costs.__getitem__)
        text = f"{name}: {costs[0]:.4g} -> {costs[at - 1]:.4g}, its lowest {costs[low]:.4g} at epoch {low + 1}"
        held = getattr(history, "region_held", {}).get(name)
        if held is not None and held < at:
            text += f"; its {history.held_note(name)}"
        elif costs[at - 1] > (1 + REGION_RISE) * costs[low]:
            text += f"; it rose after epoch {low + 1} while the whole's fell: the {name}'s state is likely over-fitted"
        lines.append(text)
    return lines


def kept_epoch(history, early_stopping: bool = True) -> int | None:
    """With early stopping: the epoch (1-based) whose parameters the trainer kept (the trainer
    restores the best epoch's parameters at the end, stopped early or not); else None."""
    stopped = history is not None and (history.stopped_early or early_stopping)
    if not stopped or history.best_epoch is None:
        return None
    return history.best_epoch + 1


def schedule_line(cfg: TrainingConfig, priors_note: str = "") -> str:
    """One line naming the training settings in effect (``priors_note``: which whole-map priors
    ``--map-priors auto`` took and why, in place of the prior mode)."""
    network = "" if cfg.network_step == cfg.learning_rate else f" (network {cfg.network_step:.3g})"
    line = (
        f"batch {cfg.batch_size}, learning rate {cfg.learning_rate:.3g}{network}, {cfg.optimizer}, "
        f"{priors_note or f'{cfg.prior_mode} whole-map priors'}, {cfg.batch_order} batches"
    )
    if cfg.exact_reference:  # (the summary said nothing of it: only models_TAG.nc's setup did)
        line = f"the reference's training (--exact-reference): {line}"
    if cfg.lr_decay != 1.0:
        line += f", learning rate x{cfg.lr_decay:.3g} per epoch"
    if cfg.validation_fraction > 0.0:
        line += f", {100 * cfg.validation_fraction:.3g} % held out" + (", early stopping" if cfg.early_stopping else "")
    elif cfg.too_few_to_hold_out:
        line += (
            f", no held-out observations and no early stopping (fewer than {cfg.validation_min_obs:,} "
            "observations; --validation-fraction 0.1 holds out anyway)"
        )
    return line


def run_summary(
    result: Any,
    preset_name,
    data_cfg,
    obs,
    history,
    diagsonly: bool,
    wall_s: float,
    mode: str | None = None,
    said: Sequence[str] = (),
) -> dict:
    """The run's summary as data (:func:`empirical_seaice.products.report.summary_dict`); ``mode``: the
    run's kind in words (default: training, or the diagnostics of a trained model); ``said``: the warnings
    the run logged."""
    from empirical_seaice.io.cf import code_version, now_iso
    from empirical_seaice.products.report import summary_dict
    from empirical_seaice.products.write import provenance_of

    prov = provenance_of(result.tag, preset_name, data_cfg, obs)
    sharded = getattr(result, "sharded", "")
    facts = {
        "tag": result.tag,
        "mode": mode or ("diagnostics of a trained model" if diagsonly else f"training {sharded}".strip()),
        "preset": preset_name,
        "sensors": list(obs.basis.sensor_names),
        "period_start": prov.period_start,
        "period_end": prov.period_end,
        "stepstart": int(obs.stepstart),
        "nsteps": int(obs.nstep),
        "nobs": int(obs.nobs),
        "ngrid": int(obs.ngrid),
        "epochs": int(history.nepochs) if history is not None else None,
        "train_seconds": round(training_seconds(result, history), 2) if not diagsonly else None,
        "obs_per_s": round(float(history.obs_per_s)) if history is not None and not diagsonly else None,
        "wall_seconds": round(wall_s, 2),
        "whole_map_priors": getattr(result, "map_priors_note", "") or None,
        "data": str(data_cfg.data),
        "output": str(result.output),
        "code_version": code_version(),
        "date_created": now_iso(),
        "warnings": list(said),
    }
    return summary_dict(
        facts=facts,
        channel_names=list(obs.basis.channel_names),
        sensor_names=list(obs.basis.sensor_names),
        cost_before=result.cost_before,
        cost_after=result.cost_after,
        departures_before=result.departures_before,
        departures_after=result.departures_after,
        truth=result.truth,
    )


__all__ = [
    "training_seconds",
    "write_state_files",
    "run_truth",
    "score_truth",
    "publish_final_pass",
    "run_summary",
    "run_title",
    "summary_table",
    "region_lines",
]
