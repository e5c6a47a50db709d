"""One run of ``seaice-training``: read -> build -> initial diagnostics -> train -> save -> diagnostics.

:func:`run` is the library entry point behind the CLI. Order of work:

1. **Validate** the flags and files that can be checked without reading
   (tag names, mode flags, the data path and background files, sensor names,
   the device, with ``--diagsonly`` the trained model ``model_MODELTAG.pt``,
   with ``--resume`` the epoch checkpoint). Nothing is created before this.
2. **Read** the training data (memory-mapped cache in ``<output>/cache/``)
   and build the :class:`~empirical_seaice.model.operator.HybridNetwork`. A
   user-caused error here or later removes the output directory if this run
   created it (or the cache it created in an existing one), so a bad input
   never leaves a half-made output directory behind.
3. Unless ``--trainonly``/``--diagsonly``: simulate every observation before
   training (``tbsim_initial_TAG.nc``) and evaluate the full cost ``J``.
4. **Train** (:class:`~empirical_seaice.training.trainer.Trainer`, epoch checkpoints
   in ``<output>/checkpoints_TAG/``) and **save** the model: the PyTorch
   checkpoint ``model_TAG.pt`` (state_dict + configuration, what
   ``--diagsonly`` reloads) and ``models_TAG.nc``, ``seaice_TAG.nc``,
   ``properties_grid_TAG.nc``, ``properties_obs_TAG.nc``. With
   ``--diagsonly`` the network is loaded from ``model_MODELTAG.pt`` instead.
5. Unless ``--trainonly``: final diagnostics ``tbobs``, ``tbsim``,
   ``tbzero``, ``ice_emis``; the cost after; with a twin truth in
   ``<data>/truth`` the truth scores; the summary table (returned, printed by
   the CLI).

``--diagsonly`` uses the setup stored in the checkpoint (model and cost
configuration, sensors, period and background files), so the diagnostics are
those of the trained run: the same float32 forward pass over the same
parameters gives bit-identical ``tbsim``.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empirical_seaice.config import CostConfig, DataConfig, ModelConfig, Preset, TrainingConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import outputs as out
from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.products import diagnostics as diag
from empirical_seaice.sensors import build_channel_basis, load_catalogue

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
"""Format number of ``model_TAG.pt``."""


@dataclass
class RunResult:
    """What a run produced.

    output : the output directory; files : every file written (final names).
    history : the TrainingHistory (None with ``--diagsonly``).
    cost_before, cost_after : full cost J by term (float64), when computed.
    departures_before, departures_after : per-channel y - H(x) statistics.
    truth : truth scores when the data has a truth.
    train_seconds : wall time of training (s).
    summary : the summary table ('' with ``--trainonly``).
    summary_data : the same as data (``summary_TAG.json``), None with ``--trainonly``.
    """

    output: Path
    tag: str
    files: list[Path] = field(default_factory=list)
    history: Any = None
    cost_before: dict[str, float] | None = None
    cost_after: dict[str, float] | None = None
    departures_before: diag.DepartureStats | None = None
    departures_after: diag.DepartureStats | None = None
    truth: diag.TruthScores | None = None
    train_seconds: float = 0.0
    summary: str = ""
    summary_data: dict[str, Any] | None = None


# ------------------------------------------------------------------ config I/O
def _configs_to_dict(
    data: DataConfig, model: ModelConfig, cost: CostConfig, training: TrainingConfig, preset: str
) -> dict[str, Any]:
    def plain(cfg):
        d = asdict(cfg)
        for k, v in d.items():
            if isinstance(v, Path):
                d[k] = str(v)
            elif isinstance(v, tuple):
                d[k] = list(v)
        return d

    cd = plain(cost)
    cd["bias_bg"] = {k: list(v) for k, v in cost.bias_bg.items()}
    return {
        "preset": preset,
        "data": plain(data),
        "model": plain(model),
        "cost": cd,
        "training": plain(training),
        # the catalogue entries of the run's sensors and channels, as used (README "Sensors")
        "catalogue": load_catalogue(data.sensor_catalogue).to_dict(data.sensors),
    }


def _configs_from_dict(d: dict[str, Any]) -> tuple[DataConfig, ModelConfig, CostConfig]:
    dd = dict(d["data"])
    dd["data"] = Path(dd["data"])
    dd["sensors"] = tuple(dd["sensors"])
    for k in ("seaice_background", "tsfc_background", "sensor_catalogue"):
        dd[k] = None if dd.get(k) is None else Path(dd[k])
    md = dict(d["model"])
    md["lag_weights"] = tuple(md["lag_weights"])
    cd = dict(d["cost"])
    # checkpoints written before these fields existed were trained with the min(C, 0.3 - C) false-ice
    # shape and the physical network frequencies (anchor_frequency_ghz defaults to None: the channel anchor)
    cd.setdefault("false_ice_shape", "tent")
    md.setdefault("network_frequencies", "physical")
    cd["anchor_channels"] = tuple(cd["anchor_channels"])
    cd["bias_bg"] = {k: tuple(v) for k, v in cd["bias_bg"].items()}
    return DataConfig(**dd), ModelConfig(**md), CostConfig(**cd)


# ------------------------------------------------------------------ helpers
def _input_names(model: ModelConfig) -> list[str]:
    names = ["x_T"] + [f"P{k}" for k in range(model.nprop_grid)] + [f"Q{k}" for k in range(model.nprop_obs)]
    if model.version == "v2":
        scale = model.freq_scale_ghz
        names.append(f"f/{int(scale) if float(scale).is_integer() else scale}")
    return names


def emissivity_weights(network) -> tuple[dict[str, np.ndarray], str]:
    """The emissivity model's weights in Keras orientation and the name of the input kernel.

    ``torch.nn.Linear`` layer ``L`` (weight (out, in)) becomes ``L_kernel`` (in, out)
    and ``L_bias`` (out,). The input layer is ``hidden`` (v2) or ``output`` (v1).
    """
    weights: dict[str, np.ndarray] = {}
    first = None
    for name, module in network.emissivity.named_children():
        if isinstance(module, torch.nn.Linear):
            first = first or f"{name}_kernel"
            weights[f"{name}_kernel"] = module.weight.detach().cpu().numpy().T.copy()
            weights[f"{name}_bias"] = module.bias.detach().cpu().numpy().copy()
    if first is None:
        raise ValueError("emissivity model has no Linear layer")
    return weights, first


def _prepare_output(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise SeaIceError(f"--output: {output} exists and is not a directory")


class _OutputGuard:
    """Remove what this run created in the output directory if a user error stops it."""

    def __init__(self, output: Path):
        self.output = output
        self.existed = output.exists()
        self.cache_existed = (output / "cache").exists()

    def cleanup(self) -> None:
        if not self.existed:
            shutil.rmtree(self.output, ignore_errors=True)
        elif not self.cache_existed:
            shutil.rmtree(self.output / "cache", ignore_errors=True)


def final_diagnostics(
    network,
    data,
    obs: Observations,
    background: BackgroundMaps,
    data_dir: Path,
    output: Path,
    tag: str,
    nobs_total: int,
    result,
):
    """Simulate every observation with the trained model and state; write ``tbobs``, ``tbsim`` and
    ``ice_emis``; fill ``result.cost_after``, ``.departures_after``, ``.files`` and, when ``data_dir``
    holds a twin truth, ``.truth``. Returns the truth (None without one). Shared by training runs and
    retrievals."""
    from empirical_seaice.io.truth import read_truth

    basis = obs.basis
    p = lambda stem: out.output_path(output, stem, tag)  # noqa: E731
    sim = diag.simulate(network, data, obs.nobs)
    result.cost_after = _full_cost(network, obs, sim, nobs_total)
    result.departures_after = diag.departure_stats(obs, sim.tb)
    result.files.append(out.write_tbobs(p("tbobs"), obs, background.lon, background.lat))
    result.files.append(out.write_tb(p("tbsim"), sim.tb, basis, "tbsim", obs.mask))
    result.files.append(out.write_ice_emis(p("ice_emis"), sim.emis_ice, basis, obs.mask))
    truth = read_truth(data_dir, obs)
    if truth is not None:
        result.truth = diag.truth_scores(
            obs,
            background,
            network.state.sic_array(),
            sim.emis_ice,
            truth,
            network.bias_ice_k.detach().cpu().numpy(),
            network.bias_ocean_k.detach().cpu().numpy(),
        )
    return truth


def _full_cost(network, obs: Observations, sim: diag.Simulation, nobs_total: int) -> dict[str, float]:
    """J by term (float64): J_o, whole-map priors, anchor over all observations, bias prior."""
    terms = diag.full_cost(network, obs, sim.tb, nobs_total)
    total = terms.pop("total")
    cc = network.cost_config
    if cc.anchor == "mean":
        e0 = float(network.emissivity.e0[network.anchor_channel].detach().double())
        terms["anchor"] = ((e0 - cc.anchor_value) / cc.anchor_error) ** 2
    else:
        e = sim.emis_anchor.astype(np.float64)
        terms["anchor"] = float((np.maximum(cc.anchor_value - e, 0.0) ** 2).sum() / cc.anchor_error**2)
    terms["bias"] = float(network.bias_prior().detach().double())
    terms["total"] = total + terms["anchor"] + terms["bias"]
    return terms


# ------------------------------------------------------------------ the run
def run(
    data_cfg: DataConfig,
    preset: Preset | ModelConfig,
    cost_cfg: CostConfig,
    train_cfg: TrainingConfig,
    output: Path,
    tag: str = "run",
    modeltag: str | None = None,
    diagsonly: bool = False,
    trainonly: bool = False,
    resume: bool = False,
    progress: bool = True,
    products: Any = None,
) -> RunResult:
    """Run training and/or diagnostics and write the outputs (see the module docstring).

    Parameters
    ----------
    data_cfg : DataConfig
        Training data, sensors, period, background files.
    preset : Preset or ModelConfig
        The model configuration (a preset's ``model`` is used).
    cost_cfg : CostConfig
    train_cfg : TrainingConfig
    output : Path
        Output directory (created if needed).
    tag : str
        Run tag of the output names.
    modeltag : str, optional
        With ``diagsonly``: the tag of the trained model to load (default ``tag``).
    diagsonly, trainonly : bool
        Diagnostics from a trained model only / training only (no diagnostics).
    resume : bool
        Resume training from the epoch checkpoint in ``<output>/checkpoints_TAG``.
    progress : bool
        One progress display for the run on stderr (stages, training ETA).
    products : empirical_seaice.products.write.ProductOptions, optional
        User products written at the end (export, gridded emissivity, classic
        SIC, plots); None = none (see :func:`empirical_seaice.products.write.write_products`).

    Raises
    ------
    SeaIceError
        Any user-caused problem (flags, files, data); nothing is left behind in
        an output directory this run created.
    """
    from empirical_seaice.training.history import TrainingHistory
    from empirical_seaice.training.runtime import make_generator, resolve_device, split_observations
    from empirical_seaice.training.trainer import Trainer

    output = Path(output)
    model_cfg = preset.model if isinstance(preset, Preset) else preset
    preset_name = preset.name if isinstance(preset, Preset) else model_cfg.version

    # ---- 1. validate, create nothing
    out.check_tag(tag)
    if diagsonly and trainonly:
        raise SeaIceError("--diagsonly and --trainonly: give at most one of them")
    if modeltag is not None and not diagsonly:
        raise SeaIceError("--modeltag: only used with --diagsonly (training writes the model under --tag)")
    if resume and diagsonly:
        raise SeaIceError("--resume: only used when training, not with --diagsonly")
    modeltag = out.check_tag(modeltag, "--modeltag") if modeltag is not None else tag
    _prepare_output(output)
    ckpt = None
    if diagsonly:
        ckpt = out.load_checkpoint(out.output_path(output, out.CHECKPOINT, modeltag))
        saved_data, model_cfg, cost_cfg = _configs_from_dict(ckpt["configs"])
        preset_name = ckpt["configs"]["preset"]
        if tuple(data_cfg.sensors) != saved_data.sensors:
            log.warning("--diagsonly: using the trained model's sensors %s", " ".join(saved_data.sensors))
        data_cfg = replace(
            saved_data,
            data=data_cfg.data,
            seaice_background=data_cfg.seaice_background or saved_data.seaice_background,
            tsfc_background=data_cfg.tsfc_background or saved_data.tsfc_background,
            sensor_catalogue=data_cfg.sensor_catalogue or saved_data.sensor_catalogue,
        )
    if not Path(data_cfg.data).exists():
        raise SeaIceError(f"--data: {data_cfg.data} does not exist (give the training-data directory or file)")
    for flag, path in (
        ("--seaice-background", data_cfg.seaice_background),
        ("--tsfc-background", data_cfg.tsfc_background),
    ):
        if path is not None and not Path(path).is_file():
            raise SeaIceError(f"{flag}: file {path} not found")
    basis = build_channel_basis(data_cfg.sensors, load_catalogue(data_cfg.sensor_catalogue))
    device = resolve_device(train_cfg.device)
    ckpt_dir = output / f"checkpoints_{tag}"
    if resume:
        from empirical_seaice.training.trainer import CHECKPOINT_NAME

        if not (ckpt_dir / CHECKPOINT_NAME).is_file():
            raise SeaIceError(
                f"--resume: no epoch checkpoint {ckpt_dir / CHECKPOINT_NAME}; train without --resume first"
            )

    guard = _OutputGuard(output)
    try:
        return _run(
            data_cfg,
            model_cfg,
            cost_cfg,
            train_cfg,
            output,
            tag,
            preset_name,
            basis,
            device,
            ckpt,
            ckpt_dir,
            diagsonly,
            trainonly,
            resume,
            progress,
            Trainer,
            TrainingHistory,
            make_generator,
            split_observations,
            products,
        )
    except SeaIceError:
        guard.cleanup()
        raise


def _run(
    data_cfg,
    model_cfg,
    cost_cfg,
    train_cfg,
    output,
    tag,
    preset_name,
    basis,
    device,
    ckpt,
    ckpt_dir,
    diagsonly,
    trainonly,
    resume,
    progress,
    Trainer,
    TrainingHistory,
    make_generator,
    split_observations,
    products=None,
):
    from empirical_seaice.training.runtime import RunProgress

    display = RunProgress(progress)
    try:
        return _run_stages(
            data_cfg,
            model_cfg,
            cost_cfg,
            train_cfg,
            output,
            tag,
            preset_name,
            basis,
            device,
            ckpt,
            ckpt_dir,
            diagsonly,
            trainonly,
            resume,
            display,
            Trainer,
            TrainingHistory,
            make_generator,
            split_observations,
            products,
        )
    finally:
        display.close()


def _run_stages(
    data_cfg,
    model_cfg,
    cost_cfg,
    train_cfg,
    output,
    tag,
    preset_name,
    basis,
    device,
    ckpt,
    ckpt_dir,
    diagsonly,
    trainonly,
    resume,
    display,
    Trainer,
    TrainingHistory,
    make_generator,
    split_observations,
    products=None,
):
    from empirical_seaice.io import read_training_data
    from empirical_seaice.model.operator import HybridNetwork, ObservationTensors, build_row_counts

    result = RunResult(output=output, tag=tag)
    t_run = time.perf_counter()
    # ---- 2. read and build
    display.stage("reading data")
    t0 = time.perf_counter()
    obs, background = read_training_data(data_cfg, model_cfg.nlag, cache_dir=output / "cache")
    if tuple(obs.basis.channel_names) != tuple(basis.channel_names):  # pragma: no cover - reader contract
        raise ValueError("reader returned a different channel basis")
    log.info(
        "read %d observations, %d grid points, %d steps in %.1f s",
        obs.nobs,
        obs.ngrid,
        obs.nstep,
        time.perf_counter() - t0,
    )
    try:
        from empirical_seaice.io import describe

        log.info("training data:\n%s", describe(obs, background))
    except ImportError:  # pragma: no cover - describe is optional
        pass

    display.stage("packing observations")
    generator = make_generator(train_cfg.seed)
    train_index, valid_index = split_observations(obs.nobs, train_cfg.validation_fraction, generator)
    nobs_train = int(train_index.size)
    counts = build_row_counts(obs, model_cfg.nlag, obs.ngrid, obs.nstep, index=train_index)
    dense = train_cfg.optimizer == "dense"  # the reference: dense tables, whole-map priors every step
    network = HybridNetwork(
        model_cfg,
        cost_cfg,
        basis,
        background,
        obs.nobs,
        row_counts=counts,
        sparse=not dense,
        prior_mode="full" if dense else "sampled",
        generator=generator,
    )
    if ckpt is not None:
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise SeaIceError(f"--modeltag: checkpoint format {ckpt.get('format')} is not {CHECKPOINT_FORMAT}")
        try:
            network.load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:
            first = str(exc).splitlines()[1:2] or [str(exc)]
            raise SeaIceError(
                f"--modeltag: the trained model does not fit this data ({first[0].strip()}); "
                "use the data, sensors and period it was trained on"
            ) from None
        nobs_train = int(ckpt.get("nobs_train", nobs_train))
    network.to(device)
    data = ObservationTensors(obs, device)
    output.mkdir(parents=True, exist_ok=True)

    # ---- 3. initial diagnostics
    sim0 = None
    if not trainonly and not diagsonly:
        display.stage("initial diagnostics")
        sim0 = diag.simulate(network, data, obs.nobs)
        result.cost_before = _full_cost(network, obs, sim0, nobs_train)
        result.departures_before = diag.departure_stats(obs, sim0.tb)
        result.files.append(
            out.write_tb(out.output_path(output, "tbsim_initial", tag), sim0.tb, basis, "tbsim_initial", obs.mask)
        )
        del sim0

    # ---- 4. train and save
    history = None
    if not diagsonly:
        trainer = Trainer(
            network,
            data,
            train_cfg,
            train_index,
            valid_index,
            nobs_train,
            checkpoint_dir=ckpt_dir,
            progress=display,
            generator=generator,
        )
        t1 = time.perf_counter()
        history = trainer.fit(resume=resume)
        result.train_seconds = time.perf_counter() - t1
        result.history = history
        display.stage("saving the model")
        result.files += _save_model(
            network,
            history,
            obs,
            background,
            data_cfg,
            model_cfg,
            cost_cfg,
            train_cfg,
            preset_name,
            output,
            tag,
            nobs_train,
            _before_state(result),
        )
    else:
        if ckpt.get("history") is not None:
            history = TrainingHistory.from_state(ckpt["history"])
            result.history = history
        before = ckpt.get("before")
        if before:  # the "before training" numbers of the trained run, for the summary
            result.cost_before = dict(before["cost"])
            result.departures_before = diag.DepartureStats(
                count=np.asarray(before["count"]), mean=np.asarray(before["mean"]), std=np.asarray(before["std"])
            )

    # ---- 5. final diagnostics
    truth = None
    if not trainonly:
        display.stage("diagnostics")
        truth = final_diagnostics(network, data, obs, background, Path(data_cfg.data), output, tag, nobs_train, result)
        p = lambda stem: out.output_path(output, stem, tag)  # noqa: E731
        zero = diag.simulate(network, data, obs.nobs, zero_sic=True)
        result.files.append(out.write_tb(p("tbzero"), zero.tb, basis, "tbzero", obs.mask))
        del zero
        result.summary = diag.format_summary(
            diag.RunDiagnostics(
                title=_title(preset_name, basis, obs, history, result, tag, diagsonly),
                cost_before=result.cost_before,
                cost_after=result.cost_after,
                departures_before=result.departures_before,
                departures_after=result.departures_after,
                truth=result.truth,
                notes=(f"outputs: {output}/*_{tag}.nc",),
            ),
            basis,
        )
    summary = None
    if not trainonly:
        summary = run_summary(result, preset_name, data_cfg, obs, history, diagsonly, time.perf_counter() - t_run)
    # ---- 6. user products (export, gridded emissivity, classic SIC, plots and the report)
    if products is not None:
        from empirical_seaice.products.write import write_products

        display.stage("products")
        files, lines = write_products(
            products,
            network=network,
            obs=obs,
            background=background,
            output=output,
            tag=tag,
            preset_name=preset_name,
            data_cfg=data_cfg,
            truth=None if trainonly else truth,
            history=history,
            report=summary,
            report_text=result.summary,
            progress=display,
        )
        result.files += files
        if lines:
            result.summary = "\n".join([result.summary, *(f"  {ln}" for ln in lines)]) if result.summary else ""
    # ---- 7. the summary beside the outputs: summary_TAG.txt and summary_TAG.json
    if summary is not None:
        from empirical_seaice.products.report import write_summary_files

        summary["run"]["wall_seconds"] = round(time.perf_counter() - t_run, 2)
        result.summary_data = summary
        result.files += write_summary_files(output, tag, result.summary, summary)
    display.stage("done")
    return result


def run_summary(result: RunResult, preset_name, data_cfg, obs, history, diagsonly: bool, wall_s: float) -> dict:
    """The run's summary as data (:func:`empirical_seaice.products.report.summary_dict`)."""
    from empirical_seaice.io.cf import code_version, now_iso
    from empirical_seaice.products.report import summary_dict
    from empirical_seaice.products.write import provenance_of

    prov = provenance_of(result.tag, preset_name, data_cfg, obs)
    facts = {
        "tag": result.tag,
        "mode": "diagnostics of a trained model" if diagsonly else "training",
        "preset": preset_name,
        "sensors": list(obs.basis.sensor_names),
        "period_start": prov.period_start,
        "period_end": prov.period_end,
        "stepstart": int(obs.stepstart),
        "nsteps": int(obs.nstep),
        "nobs": int(obs.nobs),
        "ngrid": int(obs.ngrid),
        "epochs": int(history.nepochs) if history is not None else None,
        "train_seconds": round(result.train_seconds, 2) if not diagsonly else None,
        "obs_per_s": round(float(history.obs_per_s)) if history is not None and not diagsonly else None,
        "wall_seconds": round(wall_s, 2),
        "data": str(data_cfg.data),
        "output": str(result.output),
        "code_version": code_version(),
        "date_created": now_iso(),
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


def _title(preset_name, basis, obs, history, result, tag, diagsonly) -> str:
    what = "diagnostics of the trained model" if diagsonly else "training"
    line = (
        f"seaice-training {what} '{tag}': model {preset_name}, sensors {' '.join(basis.sensor_names)}\n"
        f"  {obs.nobs} observations, {obs.ngrid} grid points x {obs.nstep} steps"
    )
    if history is not None and not diagsonly:
        line += f"; {history.nepochs} epochs in {result.train_seconds:.1f} s ({history.obs_per_s:,.0f} obs/s)"
        if history.valid_cost:
            line += (
                f"\n  held-out observation cost per obs: {history.valid_cost[0]:.4g} -> {history.valid_cost[-1]:.4g}"
            )
            if history.stopped_early:
                line += f" (early stop, best epoch {history.best_epoch + 1})"
    return line


def _before_state(result: RunResult) -> dict[str, Any] | None:
    """The cost and departures before training, kept in model_TAG.pt for a later --diagsonly summary."""
    if result.cost_before is None or result.departures_before is None:
        return None
    d = result.departures_before
    return {"cost": dict(result.cost_before), "count": d.count.tolist(), "mean": d.mean.tolist(), "std": d.std.tolist()}


def _save_model(
    network,
    history,
    obs: Observations,
    background: BackgroundMaps,
    data_cfg,
    model_cfg,
    cost_cfg,
    train_cfg,
    preset_name,
    output: Path,
    tag: str,
    nobs_train: int,
    before: dict[str, Any] | None = None,
) -> list[Path]:
    """Write model_TAG.pt, models_TAG.nc, seaice_TAG.nc and the two properties files."""
    configs = _configs_to_dict(data_cfg, model_cfg, cost_cfg, train_cfg, preset_name)
    # contiguous copies: the state tables are views into the optimiser's slab (weights + moments)
    state_dict = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    files = [
        out.save_checkpoint(
            out.output_path(output, out.CHECKPOINT, tag),
            {
                "format": CHECKPOINT_FORMAT,
                "state_dict": state_dict,
                "configs": configs,
                "history": history.to_state() if history is not None else None,
                "nobs": obs.nobs,
                "ngrid": obs.ngrid,
                "nstep": obs.nstep,
                "nobs_train": nobs_train,
                "before": before,
            },
        )
    ]
    p = lambda stem: out.output_path(output, stem, tag)  # noqa: E731
    st = network.state
    jd = out.step_julian_day(obs.jd_origin, obs.stepstart, obs.nstep, st.nlag, data_cfg.steps_per_day)
    files.append(
        out.write_seaice(
            p("seaice"),
            st.sic_array(),
            jd,
            background.lon,
            background.lat,
            nlag=st.nlag,
            step_days=1.0 / data_cfg.steps_per_day,
        )
    )
    files.append(
        out.write_properties_grid(
            p("properties_grid"),
            st.grid_properties_array(),
            jd[st.nlag :],
            background.lon,
            background.lat,
            step_days=1.0 / data_cfg.steps_per_day,
        )
    )
    files.append(out.write_properties_obs(p("properties_obs"), st.obs_properties_array()))
    weights, input_layer = emissivity_weights(network)
    epoch_losses = batch_losses = None
    if history is not None and history.epoch_terms:
        epoch_losses = {k: [e[k] for e in history.epoch_terms] for k in history.epoch_terms[0]}
        if history.valid_cost:
            epoch_losses["valid_obs"] = list(history.valid_cost)
        batch_losses = dict(history.batch_terms)
    files.append(
        out.write_models(
            p("models"),
            weights=weights,
            input_names=_input_names(model_cfg),
            input_layer=input_layer,
            basis=network.basis,
            wind_coef=network.wind_coef.detach().cpu().numpy(),
            bias_ice=network.bias_ice_k.detach().cpu().numpy(),
            bias_ocean=network.bias_ocean_k.detach().cpu().numpy(),
            setup=configs,
            epoch_losses=epoch_losses,
            batch_losses=batch_losses,
            model_version=model_cfg.version,
        )
    )
    return files


__all__ = ["run", "RunResult", "emissivity_weights", "CHECKPOINT_FORMAT"]
