"""Retrieval with a trained model: fit only SIC and the empirical state to new observations.

``seaice-training --retrieve --modeltag TAG --data NEWDATA --tag NEWTAG``
(:func:`run_retrieval`) does what a weather model's assimilation does with
the exported emissivity model:

1. load the trained model ``model_TAG.pt`` from ``--output``;
2. read the new observations (another period, another sensor, a denser
   sampling) and their background maps;
3. build a :class:`~empirical_seaice.model.operator.HybridNetwork` sized for the
   new data (new SIC map, grid and observation state tables, initialised
   from the new background: SIC = background, P = Q = 0);
4. copy in the trained emissivity-network weights, the ocean wind
   correction and the TB biases — matched by channel and sensor name, so a
   v2 model retrieves on any sensor's channels; a channel or sensor the
   model was not trained on gets the background (w_c = 0, the catalogue's
   bias) — and **hold them fixed** (``requires_grad = False``, and the
   trainer is given no dense parameter: :class:`FrozenModel`);
5. minimise the same cost with the same trainer over the state tables only;
6. write ``seaice_NEWTAG.nc``, ``properties_grid_NEWTAG.nc``,
   ``properties_obs_NEWTAG.nc``, the fit diagnostics ``tbobs``,
   ``tbsim_initial``, ``tbsim``, ``ice_emis`` and, on a twin, score the
   retrieved SIC against the truth next to the background's.

The v1 model has one output per trained channel: it retrieves only on data
whose channels it was trained on.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from empirical_seaice.config import CostConfig, DataConfig, ModelConfig, TrainingConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import outputs as out
from empirical_seaice.memory import release_free_memory
from empirical_seaice.model.operator import HybridNetwork
from empirical_seaice.model.tensors import ObservationBlocks
from empirical_seaice.products import diagnostics as diag
from empirical_seaice.run.finish import publish_final_pass, run_truth, write_state_files
from empirical_seaice.run.model_file import (
    check_tag_holds_no_model,
    configs_from_dict,
    read_model_file,
    trained_provenance,
)
from empirical_seaice.run.streamed import final_pass, initial_pass
from empirical_seaice.sensors import ChannelBasis, build_channel_basis, catalogue_from_dict, load_catalogue
from empirical_seaice.training.runtime import RunProgress, own_storage

log = logging.getLogger(__name__)


class FrozenModel(nn.Module):
    """A HybridNetwork whose emissivity model, wind correction and biases are fixed.

    Fulfils the trainer's :class:`~empirical_seaice.training.contract.TrainableNetwork`
    contract by delegating every member to the network, except :meth:`dense_parameters`,
    which is empty; the fixed parameters have ``requires_grad = False``, so the trainer
    updates only the state tables (SIC map, P, Q). It hands the trainer the rows a batch
    reads (:meth:`state_rows`) and computes with the caught-up rows it is given, so a
    retrieval takes the same optimiser path as training (DeferredAdam's catch-up before
    the forward pass).
    """

    def __init__(self, network: HybridNetwork) -> None:
        super().__init__()
        self.network = network
        for p in network.dense_parameters():
            p.requires_grad_(False)
        self.sparse = network.sparse
        self.reads_state_values = network.reads_state_values

    @property
    def prior_mode(self) -> Literal["sampled", "full"]:
        """The network's whole-map prior mode, which the trainer sets ("auto" takes "full" on a small map:
        :func:`~empirical_seaice.training.schemes.whole_map_scheme`)."""
        return self.network.prior_mode

    @prior_mode.setter
    def prior_mode(self, mode: Literal["sampled", "full"]) -> None:
        self.network.prior_mode = mode

    @property
    def state(self) -> Any:
        """The network's empirical state: the size of its SIC map chooses the whole-map priors of "auto"
        (:func:`~empirical_seaice.training.schemes.whole_map_scheme`). Without it a retrieval on a year's map
        built the full priors' program, its neighbour lists, only to discard it for the sampled priors
        (on the ``benchmark`` twin 530 MB more at the peak, which was 2.9 GiB)."""
        return self.network.state

    def forward(
        self, batch: Any, zero_sic: bool = False, state_values: list[Tensor] | None = None
    ) -> dict[str, Tensor]:
        return self.network(batch, zero_sic=zero_sic, state_values=state_values)

    def fused_program(self, data: Any, nobs_total: int, training: bool = True):
        """The network's compiled program (:meth:`HybridNetwork.fused_program`): the fused step then
        steps the state tables alone (no optimiser holds the fixed weights; their gradients go unused)."""
        return self.network.fused_program(data, nobs_total, training)

    def device_cost(self, data: Any, nobs_total: int, target: str = "cuda"):
        """The network's one-kernel forward pass and cost (:meth:`HybridNetwork.device_cost`): on a GPU the
        state tables step alone as well (the fixed weights need no gradient; theirs go unused)."""
        return self.network.device_cost(data, nobs_total, target)

    def cost_terms(
        self, batch: Any, out_: dict[str, Tensor], nobs_total: int, batch_total: int | None = None
    ) -> dict[str, Tensor]:
        return self.network.cost_terms(batch, out_, nobs_total, batch_total)

    def total_cost(self, terms: dict[str, Tensor]) -> Tensor:
        return self.network.total_cost(terms)

    def full_prior_terms(self, nobs_total: int | None = None) -> dict[str, Tensor]:
        return self.network.full_prior_terms(nobs_total)

    def state_rows(self, batch: Any) -> list[tuple[Tensor, Tensor]]:
        return self.network.state_rows(batch)

    def sparse_parameters(self) -> list[nn.Parameter]:
        return self.network.sparse_parameters()

    def dense_parameters(self) -> list[nn.Parameter]:
        return []


def transfer_trained_model(
    network: HybridNetwork, state_dict: dict[str, torch.Tensor], trained_basis: ChannelBasis
) -> dict[str, int]:
    """Copy the emissivity weights, wind correction and TB biases of a trained
    model into ``network`` (built for new data), matching channels and sensors by name.

    Returns counts of what was copied: ``channels`` (wind correction),
    ``sensor_channels`` (bias entries).

    Raises
    ------
    SeaIceError
        The emissivity weights do not fit (another model version or size), or a
        v1 model and channels it was not trained on.
    """
    em_sd = {
        k[len("emissivity.") :]: v
        for k, v in state_dict.items()
        if k.startswith("emissivity.") and k.split(".")[-1] in ("weight", "bias")
    }
    own = network.emissivity.state_dict()
    basis = network.basis
    if network.model_config.version == "v1":
        missing = [c for c in basis.channel_names if c not in trained_basis.channel_index]
        if missing:
            raise SeaIceError(
                f"--retrieve: the v1 model was trained on channels {', '.join(trained_basis.channel_names)}; "
                f"the new data has {', '.join(missing)} too (use a v2 model for other sensors)"
            )
        idx = torch.tensor([trained_basis.channel_index[c] for c in basis.channel_names])
        em_sd = {k: v.index_select(0, idx) for k, v in em_sd.items()}
    for k, v in em_sd.items():
        if k not in own or own[k].shape != v.shape:
            raise SeaIceError(
                f"--modeltag: the trained emissivity model does not fit the configuration "
                f"(emissivity.{k}: {tuple(v.shape)} vs {tuple(own[k].shape) if k in own else 'absent'})"
            )
    network.emissivity.load_state_dict({**own, **em_sd})
    wind = state_dict["wind_coef"]
    bias_ice, bias_ocean = state_dict["bias_ice_k"], state_dict["bias_ocean_k"]
    n_chan = n_sc = 0
    with torch.no_grad():
        for j, c in enumerate(basis.channel_names):
            jt = trained_basis.channel_index.get(c)
            if jt is None:
                continue
            network.wind_coef[j] = wind[jt]
            n_chan += 1
            for s, sname in enumerate(basis.sensor_names):
                if sname in trained_basis.sensor_names:
                    st = trained_basis.sensor_names.index(sname)
                    if trained_basis.present[st, jt]:
                        network.bias_ice_k[s, j] = bias_ice[st, jt]
                        network.bias_ocean_k[s, j] = bias_ocean[st, jt]
                        n_sc += 1
    return {"channels": n_chan, "sensor_channels": n_sc}


@dataclass
class RetrievalResult:
    """What a retrieval produced (files, costs, departures, truth scores, summary)."""

    output: Path
    tag: str
    files: list[Path] = field(default_factory=list)
    cost_before: dict[str, float] | None = None
    cost_after: dict[str, float] | None = None
    departures_before: Any = None
    departures_after: Any = None
    truth: Any = None
    train_seconds: float = 0.0
    summary: str = ""
    history: Any = None
    network: Any = None
    obs: Any = None
    background: Any = None
    truth_data: Any = None
    trained: Any = None
    """The trained model's provenance (:func:`~empirical_seaice.run.model_file.trained_provenance`), for an
    export's."""
    data_warnings: int = 0
    """The warnings about the input files it logged (its read's, the open-water departures' before the fit)."""
    map_priors_note: str = ""
    """Which whole-map priors the fit's ``--map-priors auto`` took and why (the trainer's; the summary's
    ``whole_map_priors``, null before 2026-12-05)."""


@dataclass
class _RetrievalPlan:
    """What :func:`run_retrieval` validated, for :func:`_retrieve`."""

    data_cfg: DataConfig
    train_cfg: TrainingConfig
    output: Path
    modeltag: str
    tag: str
    sensors: tuple[str, ...]
    progress: Any
    model_file: dict[str, Any]
    model_cfg: ModelConfig
    cost_cfg: CostConfig
    preset_name: str
    basis: ChannelBasis
    trained_basis: ChannelBasis
    device: torch.device
    cache_dir: Path
    stage: Path
    said: Sequence[str] = ()
    """The warnings logged so far (listed at the end of the summary)."""


def run_retrieval(
    data_cfg: DataConfig,
    train_cfg: TrainingConfig,
    output: Path,
    modeltag: str,
    tag: str,
    sensors: tuple[str, ...] | None = None,
    progress: Any = True,
    stage: Path | None = None,
    said: Sequence[str] = (),
    products: Any = None,
) -> RetrievalResult:
    """Retrieve SIC and the empirical state on new data with a trained model.

    Parameters
    ----------
    data_cfg : DataConfig
        The new data (``data``, ``stepstart``, ``nsteps``, background files);
        its ``sensors`` are replaced by ``sensors`` or the trained model's.
    train_cfg : TrainingConfig
        Epochs, batch size, learning rate, seed of the fit.
    output : Path
        Directory holding ``model_MODELTAG.pt``; the retrieval's files go there too.
    modeltag : str
        Tag of the trained model.
    tag : str
        Tag of the retrieval's output files (must differ from ``modeltag``).
    sensors : tuple of str, optional
        Sensors of the new data (default: those the model was trained on).
    progress : bool or RunProgress
        The run's progress display on stderr (its stages, the training's batches), or whether to show
        one; a display handed in stays open for the caller's products (the command line's).
    stage : Path, optional
        Where the files are written (the staging directory of the run's output set); default ``output``.
    said : list of str, optional
        The warnings logged so far (:func:`~empirical_seaice.logs.warnings_said`'s list, growing), listed at
        the end of the summary as a training run's are.
    products : empirical_seaice.products.write.ProductOptions, optional
        The products the caller writes after the retrieval: checked against the model's version and the
        retrieval's channels before anything is read (a bad ``--grid-channels`` failed after the whole fit).

    Raises
    ------
    SeaIceError
        Missing model, unknown sensor, bad data, a tag equal to the model tag,
        or a model that cannot be applied to the new channels.
    """
    from empirical_seaice.training.runtime import resolve_device

    output = Path(output)
    out.check_tag(tag)
    out.check_tag(modeltag, "--modeltag")
    if tag == modeltag:
        raise SeaIceError(
            f"--tag: the retrieval's tag must differ from --modeltag ({modeltag!r}), "
            "or it would overwrite the trained run's SIC and state files"
        )
    check_tag_holds_no_model(output, tag, modeltag, "--retrieve", "a retrieval with")
    model_file = read_model_file(output, modeltag)
    trained_data, model_cfg, cost_cfg = configs_from_dict(model_file["configs"])
    preset_name = model_file["configs"].get("preset", model_cfg.version)
    sensors = tuple(sensors) if sensors else trained_data.sensors
    data_cfg = replace(data_cfg, sensors=sensors)
    if products is not None:
        from empirical_seaice.products.write import check_product_options

        check_product_options(products, model_cfg.version, sensors, load_catalogue(data_cfg.sensor_catalogue))
    if not Path(data_cfg.data).exists():
        raise SeaIceError(f"--data: {data_cfg.data} does not exist (give the new data directory or file)")
    plan = _RetrievalPlan(
        data_cfg=data_cfg,
        train_cfg=train_cfg,
        output=output,
        modeltag=modeltag,
        tag=tag,
        sensors=sensors,
        progress=progress if isinstance(progress, RunProgress) else RunProgress(bool(progress)),
        model_file=model_file,
        model_cfg=model_cfg,
        cost_cfg=cost_cfg,
        preset_name=preset_name,
        basis=build_channel_basis(sensors, load_catalogue(data_cfg.sensor_catalogue)),
        trained_basis=build_channel_basis(trained_data.sensors, _trained_catalogue(model_file, modeltag, trained_data)),
        device=resolve_device(train_cfg.device),
        cache_dir=output / f"cache_{tag}",
        stage=Path(stage) if stage is not None else output,
        said=said,
    )
    cache_existed = plan.cache_dir.exists()
    try:
        return _retrieve(plan)
    except BaseException:  # remove only what this retrieval created (its cache); the output set is the caller's
        if not cache_existed:
            shutil.rmtree(plan.cache_dir, ignore_errors=True)
        raise
    finally:
        if plan.progress is not progress:  # its own display (a caller's stays open for its products)
            plan.progress.close()


def _trained_catalogue(model_file: dict[str, Any], modeltag: str, trained_data: DataConfig):
    """The sensor catalogue the model was trained with (saved in the model file; older files: the
    trained run's catalogue file or the built-in one)."""
    saved = model_file["configs"].get("catalogue")
    if saved is not None:
        return catalogue_from_dict(saved, f"model_{modeltag}.pt")
    return load_catalogue(trained_data.sensor_catalogue)


def _retrieve(plan: _RetrievalPlan) -> RetrievalResult:
    from empirical_seaice.io import read_training_data
    from empirical_seaice.run import interrupt
    from empirical_seaice.run.factory import build_network, build_trainer
    from empirical_seaice.training.runtime import make_generator

    output, tag = plan.output, plan.tag
    result = RetrievalResult(output=output, tag=tag, trained=trained_provenance(plan.model_file))
    display = plan.progress
    display.stage("reading data")
    obs, background = read_training_data(plan.data_cfg, plan.model_cfg.nlag, cache_dir=plan.cache_dir)
    result.data_warnings = len(obs.read_warnings)
    log.info("retrieval: %d observations, %d grid points, %d steps", obs.nobs, obs.ngrid, obs.nstep)
    generator = make_generator(plan.train_cfg.seed)
    # the state tables only, with the default scheme and training's choice of the whole-map priors (auto: the
    # full priors, and with them the trained cost's smoothness prior, on a map of up to 200,000 rows on the CPU,
    # where the fused step runs (on CUDA the sampled ones, as training takes there); sampled
    # priors, without smoothness, retrieved the tiny twin's example at SIC RMSE 0.0780 against 0.0555); no
    # validation split (every observation is fitted)
    train_cfg = replace(
        plan.train_cfg,
        optimizer="deferred-adam",
        map_priors=plan.train_cfg.map_priors or "auto",
        validation_fraction=0.0,
        early_stopping=False,
    )
    display.stage("packing observations")
    built = build_network(
        obs,
        background,
        plan.model_cfg,
        plan.cost_cfg,
        optimizer=train_cfg.optimizer,
        generator=generator,
        device=plan.device,
        prior_mode=train_cfg.prior_mode,
    )
    network = built.network
    copied = transfer_trained_model(network, plan.model_file["state_dict"], plan.trained_basis)
    log.info(
        "retrieval: trained model %s applied (%d channels, %d sensor-channel biases copied)",
        plan.modeltag,
        copied["channels"],
        copied["sensor_channels"],
    )
    data = built.data
    assert data is not None  # built packed (the default)
    # the streamed passes of a training run (run.streamed: a block of observations at a time), their files
    # held until complete; a retrieval has no health checks, so each is an output once its pass is done
    held = out.HeldOutputs(plan.stage)
    display.stage("initial diagnostics")
    before = initial_pass(network, data, obs, obs.nobs, held, out.output_path(plan.stage, "tbsim_initial", tag))
    result.cost_before, result.departures_before = before.cost, before.departures
    result.data_warnings += len(before.warned)
    result.files.append(held.promote(before.files["tbsim_initial"]))
    release_free_memory(collect=False)  # the pass's blocks

    fixed_before = [t.detach().clone() for t in network.dense_parameters()]
    t0 = time.perf_counter()
    trainer = build_trainer(
        FrozenModel(network),
        built,
        train_cfg,
        train_index=np.arange(obs.nobs),
        generator=generator,
        progress=display,
        stop=interrupt.requested,
        fit_name="the retrieval",
    )
    with interrupt.training():
        history = trainer.fit()
    result.history = history
    result.train_seconds = time.perf_counter() - t0
    for a, b in zip(fixed_before, network.dense_parameters(), strict=True):
        if not torch.equal(a, b.detach()):  # pragma: no cover - guards the contract
            raise RuntimeError("retrieval changed a fixed model parameter")

    # the packed table goes with the trainer, the state tables out of the optimiser's slab (as after a
    # training run's fit): the final pass packs a block at a time, the products need the state only
    result.map_priors_note = trainer.map_priors_note
    del trainer
    built.data = data = None
    release_free_memory()
    own_storage(network)
    release_free_memory()
    display.stage("diagnostics")
    result.files += write_state_files(network, obs, background, plan.stage, tag, plan.data_cfg.steps_per_day)
    truth = run_truth(Path(plan.data_cfg.data), obs)
    paths = {kind: out.output_path(plan.stage, kind, tag) for kind in ("tbobs", "tbsim", "ice_emis")}
    lonlat = (background.lon, background.lat)
    final = final_pass(network, ObservationBlocks(obs, plan.device), obs, obs.nobs, held, paths, truth, lonlat)
    publish_final_pass(network, obs, background, truth, result, final, held)
    held.discard()
    if truth is not None and final.emis_errors is not None:  # summed by the pass: the scores need no more
        truth.emis_ice = None  # (nobs, nchan): not held through the products
    title = (
        f"seaice-training retrieval '{tag}' with trained model '{plan.modeltag}' ({plan.preset_name}; emissivity, "
        f"wind correction and biases fixed): sensors {' '.join(plan.sensors)}; {obs.nobs} obs, {obs.ngrid} grid "
        f"points x {obs.nstep} steps (steps {obs.stepstart}..{obs.stepstart + obs.nstep - 1}); "
        f"{history.nepochs} epochs in {result.train_seconds:.1f} s"
    ) + (f"\n  {result.map_priors_note}" if result.map_priors_note else "")
    result.summary = diag.format_summary(
        diag.RunDiagnostics(
            title=title,
            cost_before=result.cost_before,
            cost_after=result.cost_after,
            departures_before=result.departures_before,
            departures_after=result.departures_after,
            truth=result.truth,
            notes=(f"outputs: {output}/*_{tag}.nc",),
            retrieval=True,
            logged=plan.said,
            data_warnings=result.data_warnings,
        ),
        plan.basis,
    )
    result.network, result.obs, result.background, result.truth_data = network, obs, background, truth
    return result


__all__ = ["FrozenModel", "transfer_trained_model", "run_retrieval", "RetrievalResult"]
