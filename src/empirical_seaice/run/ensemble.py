"""An ensemble of data assimilations (``seaice-training --ensemble N``): members, then the ensemble file.

:func:`run_ensemble` runs, in order:

1. **member 0**: the ordinary run (:func:`empirical_seaice.run.train.run`), unperturbed, its outputs
   in ``--output`` as without ``--ensemble`` (same seed, same files, same products);
2. **members 1 .. N-1**: each an ordinary training run without products (with
   ``--ensemble-inflation none`` also without diagnostics: the model and the state files only;
   the default inflation reads their simulated TBs) into ``<output>/members/KK/`` with the same tag, on perturbed
   observations and a perturbed first-guess SIC (:mod:`empirical_seaice.run.perturb`) and with its
   own training seed (:func:`~empirical_seaice.config.ensemble.member_seed`); each member's
   directory is its own output set, and its data cache is member 0's (a link);
3. **the ensemble file** ``seaice_ensemble_TAG.nc`` (:mod:`empirical_seaice.io.ensemble_file`):
   the members' SIC product (``seaice_filtered`` when the open-water filter is on, else
   ``seaice``; every member filtered with the observed TBs' flags), its mean and spread,
   added to the tag's published set in a second publication that inherits member 0's files
   (:class:`~empirical_seaice.io.transaction.OutputSet` with ``inherit``): readers see the set
   without or with the ensemble file, never half of it. A failed member stops the ensemble
   before this step, so a failure leaves member 0's ordinary outputs and no ensemble file (member
   0's publication removed any older one).

With ``resume`` (``--resume``) an ensemble that stopped (a failed member, a signal, a batch job's time
limit) carries on: each member with an epoch checkpoint in its directory resumes from it (one that
finished training writes its outputs again without training), the others train from the start; member
0 must have one, as a single run's ``--resume`` must. A checkpoint of other data or flags is refused
with the single run's one line.

With ``inflation = "observations"`` the stated spread is the members' spread times the factor of
:mod:`empirical_seaice.run.ensemble_calibration` (data only, no truth).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.config import CostConfig, DataConfig, Preset, TrainingConfig
from empirical_seaice.config.ensemble import EnsembleConfig, member_seed
from empirical_seaice.errors import RunInterrupted, SeaIceError
from empirical_seaice.io import cf
from empirical_seaice.io import outputs as out
from empirical_seaice.io import transaction as txn
from empirical_seaice.io.ensemble_file import STEM, ensemble_statistics, write_ensemble
from empirical_seaice.run import interrupt, train
from empirical_seaice.run.perturb import Perturbation

log = logging.getLogger(__name__)

MEMBERS_DIR = "members"
"""``<output>/members/KK/``: the output directory of member ``KK`` (1 .. N-1)."""


def member_dir(output: Path, member: int, members: int) -> Path:
    """``<output>/members/KK``, ``KK`` the member zero-padded to the width of ``members - 1`` (at least 2)."""
    width = max(2, len(str(members - 1)))
    return Path(output) / MEMBERS_DIR / f"{member:0{width}d}"


@dataclass
class EnsembleResult:
    """What :func:`run_ensemble` produced: member 0's :class:`~empirical_seaice.run.train.RunResult`,
    the ensemble file, the members' directories, the inflation factor and the summary lines."""

    member0: Any
    path: Path
    member_dirs: list[Path] = field(default_factory=list)
    inflation: float = 1.0
    lines: list[str] = field(default_factory=list)


def check_ensemble_flags(*, diagsonly: bool, distributed: bool, retrieve: bool = False, modeltag: bool = False) -> None:
    """The modes an ensemble does not combine with: one-line errors naming the flag (``--modeltag``
    only names a trained model for ``--diagsonly`` or ``--retrieve``: an ensemble trains its own)."""
    if retrieve:
        raise SeaIceError("--ensemble: a retrieval (--retrieve) has no ensemble; train with --ensemble instead")
    given_flags = (("--diagsonly", diagsonly), ("--distributed", distributed))
    for flag, given in (*given_flags, ("--modeltag", modeltag)):
        if given:
            raise SeaIceError(f"--ensemble: cannot be combined with {flag}; run the ensemble without it")


def run_ensemble(
    ensemble: EnsembleConfig,
    data_cfg: DataConfig,
    preset: Preset,
    cost_cfg: CostConfig,
    train_cfg: TrainingConfig,
    output: Path,
    tag: str = "run",
    *,
    trainonly: bool = False,
    resume: bool = False,
    progress: bool = True,
    products: Any = None,
    force_outputs: bool = False,
    checkpoint_minutes: float | None = None,
    argv: Any = None,
    said_before: Sequence[str] = (),
) -> EnsembleResult:
    """Run the ensemble (module docstring); arguments as :func:`empirical_seaice.run.train.run`'s
    (``resume``: carry on a stopped ensemble, member by member; ``said_before``: listed in member 0's
    summary, which is the ensemble's).

    Raises
    ------
    SeaIceError
        A user-caused problem, or a member that failed (naming it); then no ensemble file is written.
    """
    output = Path(output)
    argv = list(argv or [])
    n = ensemble.members
    if trainonly and ensemble.inflation != "none":
        raise SeaIceError(
            f"--ensemble with --trainonly: the inflation '{ensemble.inflation}' "
            "(--ensemble-inflation, default observations) needs the simulated TBs that --trainonly "
            "does not write; drop --trainonly or use --ensemble-inflation none"
        )
    log.info("ensemble member 0 of %d (unperturbed)%s", n, _resumed(resume, output, tag))
    result0 = train.run(
        data_cfg, preset, cost_cfg, train_cfg, output, tag, trainonly=trainonly, resume=resume, progress=progress,
        products=products, force_outputs=force_outputs, checkpoint_minutes=checkpoint_minutes, argv=argv,
        said_before=said_before,
    )  # fmt: skip
    dirs = []
    for k in range(1, n):
        dirs.append(member_dir(output, k, n))
        again = resume and _checkpoint(dirs[-1], tag).is_file()
        log.info("ensemble member %d of %d into %s%s", k, n, dirs[-1], _resumed(resume, dirs[-1], tag))
        _share_cache(output, dirs[-1], data_cfg)
        note = f"(ensemble member {k} of {n}: its observations and first-guess SIC perturbed)"
        try:
            with cf.command_noted(note):
                train.run(
                    data_cfg, preset, cost_cfg, replace(train_cfg, seed=member_seed(train_cfg.seed, k)), dirs[-1], tag,
                    trainonly=ensemble.inflation == "none", resume=again, progress=progress, products=None,
                    force_outputs=force_outputs, checkpoint_minutes=checkpoint_minutes,
                    argv=[*argv, f"(ensemble member {k})"],
                    perturbation=Perturbation(k, train_cfg.seed, ensemble.sic_error, ensemble.obs_error_scale),
                )  # fmt: skip
        except SeaIceError as exc:
            raise SeaIceError(
                f"--ensemble: member {k} ({dirs[-1]}) failed, no ensemble file written: {exc} -- once it is "
                "fixed, rerun the same command with --resume: the members carry on from their checkpoints"
            ) from None
        except RunInterrupted as exc:  # (its line named member k's files only, not the ensemble unfinished)
            raise _unfinished(exc, f"member {k} of {n}") from None
    filtered = bool(products is not None and getattr(products, "open_water_filter", False))
    try:
        res = publish_ensemble(ensemble, data_cfg, preset, train_cfg, output, tag, dirs, filtered=filtered, argv=argv)
    except RunInterrupted as exc:
        if exc.published:  # the ensemble file's set was published: the ensemble is complete
            raise
        raise _unfinished(exc, "the ensemble file") from None
    res.member0 = result0
    return res


def _unfinished(exc: RunInterrupted, where: str) -> RunInterrupted:
    """A signal's stop of an ensemble after member 0 (at ``where``), its line saying the ensemble is not
    finished and how to finish it."""
    return RunInterrupted(
        f"{exc} -- at {where}, the ensemble file is not written: rerun the same command with --resume to finish "
        "the ensemble (the members carry on from their checkpoints)",
        exit_code=exc.exit_code,
    )


def _checkpoint(directory: Path, tag: str) -> Path:
    """A member's epoch checkpoint in its output directory ``directory``."""
    from empirical_seaice.training.checkpoint import CHECKPOINT_NAME, checkpoint_dir

    return checkpoint_dir(directory, tag) / CHECKPOINT_NAME


def _resumed(resume: bool, directory: Path, tag: str) -> str:
    """How a member of a resumed ensemble starts, for its log line ('' without ``--resume``)."""
    if not resume:
        return ""
    found = _checkpoint(directory, tag).is_file()
    return ", resumed from its checkpoint" if found else ", from the start (no checkpoint)"


def _share_cache(output: Path, member: Path, data_cfg: DataConfig) -> None:
    """``<member>/cache`` -> member 0's ``<output>/cache`` (the same data: one cache on disk)."""
    if not data_cfg.cache or not (output / "cache").is_dir():
        return
    member.mkdir(parents=True, exist_ok=True)
    link = member / "cache"
    if not link.exists() and not link.is_symlink():
        os.symlink(os.path.relpath(output / "cache", member), link)


def member_sic(paths: list[Path], tag: str, water: np.ndarray | None, nlag: int) -> list[np.ndarray]:
    """Each member's SIC map (``seaice_TAG.nc`` in each directory of ``paths``), with the open-water
    filter of the flags ``water`` (ngrid, nstep) when given."""
    from empirical_seaice.products.open_water_filter import filter_sic

    sics = [out.read_variable(out.output_path(p, "seaice", tag), "seaice") for p in paths]
    if water is None:
        return sics
    mask = np.zeros(sics[0].shape, dtype=bool)
    mask[:, nlag:] = water
    return [filter_sic(s, mask) for s in sics]


def publish_ensemble(
    ensemble: EnsembleConfig,
    data_cfg: DataConfig,
    preset: Preset,
    train_cfg: TrainingConfig,
    output: Path,
    tag: str,
    dirs: list[Path],
    *,
    filtered: bool,
    argv: list[str],
) -> EnsembleResult:
    """Step 3: ``seaice_ensemble_TAG.nc`` from the members' published SIC, added to the tag's set."""
    from empirical_seaice.io import read_training_data
    from empirical_seaice.products.open_water_filter import open_water_mask

    nlag = preset.model.nlag
    manifest0 = txn.read_manifest(output, tag) or {}
    run_set = txn.OutputSet(output, tag, argv=argv, inherit=True, inherit_dirs=True)
    stage = run_set.begin()
    try:
        obs, background = read_training_data(data_cfg, nlag, cache_dir=output / "cache" if data_cfg.cache else None)
        water = open_water_mask(obs) if filtered else None
        sics = member_sic([output, *dirs], tag, water, nlag)
        mean, spread = ensemble_statistics(sics)
        inflation, why = 1.0, "none"
        if ensemble.inflation == "observations":
            from empirical_seaice.run.ensemble_calibration import observation_inflation

            inflation, why = observation_inflation(obs, train_cfg, [output, *dirs], tag)
            log.info("ensemble spread inflation: %s", why)
        jd = out.step_julian_day(obs.jd_origin, obs.stepstart, obs.nstep, nlag, data_cfg.steps_per_day)
        path = write_ensemble(
            out.output_path(stage, STEM, tag), mean, spread, jd, background.lon, background.lat,
            nlag=nlag, step_days=1.0 / data_cfg.steps_per_day, inflation=inflation,
            attrs=_file_attrs(ensemble, train_cfg, obs, filtered, why),
        )  # fmt: skip
        lines = ensemble_lines(ensemble.members, sics[0], mean, spread * inflation, obs, data_cfg, nlag, inflation)
        _summary_with_the_ensemble(stage, tag, [*lines, f"ensemble file: {output / path.relative_to(stage)}"])
        configs = {"member0_config_hash": manifest0.get("config_hash", ""), "ensemble": vars(ensemble)}
        with interrupt.deferred():  # a signal waits for the switch (between the switch and the end of publish,
            # abort() removed the set just made current: every output name dangled)
            run_set.publish(configs, status=manifest0.get("status", "complete"), message=manifest0.get("message", ""))
        interrupt.raise_pending(published=f"{output}/*_{tag}.nc")
    except BaseException:
        run_set.abort()
        raise
    finally:
        run_set.release()
    final = output / path.relative_to(stage)
    return EnsembleResult(member0=None, path=final, member_dirs=dirs, inflation=inflation, lines=lines)


def _summary_with_the_ensemble(stage: Path, tag: str, lines: list[str]) -> None:
    """Member 0's ``summary_TAG.txt`` and ``.json`` in the ensemble's set with the ensemble's lines (the text as
    the command prints it; the JSON's ``ensemble``: ``lines``), new files in the set (the set's copies of the
    published ones are links). Before, only the printed summary had them."""
    import json

    from empirical_seaice.products.report import write_summary_files

    txt, js = stage / f"summary_{tag}.txt", stage / f"summary_{tag}.json"
    if not (txt.is_file() and js.is_file()):
        return
    text = "\n".join([txt.read_text().rstrip("\n"), *(f"  {ln}" for ln in lines)])
    summary = {**json.loads(js.read_text()), "ensemble": {"lines": list(lines)}}
    write_summary_files(stage, tag, text, summary)


def _file_attrs(ensemble: EnsembleConfig, train_cfg: TrainingConfig, obs, filtered: bool, why: str) -> dict:
    seeds = [member_seed(train_cfg.seed, k) for k in range(ensemble.members)]
    sigma = ", ".join(
        f"{c} {ensemble.obs_error_scale * s:.3g} K"
        for c, s in zip(obs.basis.channel_names, obs.basis.obs_error_k, strict=True)
    )
    return {
        "ensemble_size": ensemble.members,
        "member_seeds": " ".join(map(str, seeds)),
        "member_directories": f"member 0: this directory; members 1..{ensemble.members - 1}: {MEMBERS_DIR}/KK",
        "sic_product": "seaice_filtered" if filtered else "seaice",
        "obs_perturbation": f"N(0, sigma_o^2) per observation and channel, members 1..; sigma_o: {sigma}",
        "sic_perturbation_std": float(ensemble.sic_error),
        "inflation_method": ensemble.inflation if ensemble.inflation == "none" else f"{ensemble.inflation}: {why}",
    }


def ensemble_lines(
    members: int,
    sic0: np.ndarray,
    mean: np.ndarray,
    spread: np.ndarray,
    obs,
    data_cfg: DataConfig,
    nlag: int,
    inflation: float = 1.0,
) -> list[str]:
    """The summary lines of the ensemble: its mean spread over the observed grid points and days and,
    on a twin with a truth, the SIC RMSE of member 0 and of the mean and the spread/error ratio."""
    from empirical_seaice.io.truth import read_truth
    from empirical_seaice.products.diagnostics import observed_points

    g, t = observed_points(obs)
    rms_spread = float(np.sqrt(np.mean(spread[g, t + nlag] ** 2)))
    lines = [f"ensemble of {members}: RMS spread {rms_spread:.4f} over {len(g)} observed grid-steps"]
    if inflation != 1.0:
        lines[0] += f" (the members' standard deviation x {inflation:.2f}, from the observation departures)"
    try:
        truth = read_truth(Path(data_cfg.data), obs, per_obs=())
    except SeaIceError as exc:
        log.warning("no truth scores of the ensemble: %s", exc)
        truth = None
    if truth is not None:
        ts = np.asarray(truth.sic, dtype=np.float64)[g, t]
        err0 = float(np.sqrt(np.mean((sic0[g, t + nlag] - ts) ** 2)))
        err = float(np.sqrt(np.mean((mean[g, t + nlag] - ts) ** 2)))
        lines.append(
            f"SIC RMSE vs truth: member 0 {err0:.4f}, ensemble mean {err:.4f}; "
            + (f"spread/error {rms_spread / err:.2f}" if err > 0 else "spread/error undefined (no error)")
        )
    return lines


__all__ = ["MEMBERS_DIR", "EnsembleResult", "member_dir", "check_ensemble_flags", "run_ensemble", "member_sic"]
