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
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from empirical_seaice.config import DataConfig, TrainingConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import outputs as out
from empirical_seaice.products import diagnostics as diag
from empirical_seaice.sensors import ChannelBasis, build_channel_basis, catalogue_from_dict, load_catalogue

log = logging.getLogger(__name__)


class FrozenModel(nn.Module):
    """A HybridNetwork whose emissivity model, wind correction and biases are fixed.

    Fulfils the trainer's network contract; :meth:`dense_parameters` is empty
    and the fixed parameters have ``requires_grad = False``, so the trainer
    updates only the state tables (SIC map, P, Q).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        for p in network.dense_parameters():
            p.requires_grad_(False)
        self.sparse = network.sparse

    def forward(self, batch, zero_sic: bool = False):
        return self.network(batch, zero_sic=zero_sic)

    def cost_terms(self, batch, out_, nobs_total):
        return self.network.cost_terms(batch, out_, nobs_total)

    def total_cost(self, terms):
        return self.network.total_cost(terms)

    def full_prior_terms(self, nobs_total=None):
        return self.network.full_prior_terms(nobs_total)

    def sparse_parameters(self):
        return self.network.sparse_parameters()

    def dense_parameters(self):
        return []


def transfer_trained_model(
    network: nn.Module, state_dict: dict[str, torch.Tensor], trained_basis: ChannelBasis
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
    seconds: float = 0.0
    summary: str = ""
    history: Any = None
    network: Any = None
    obs: Any = None
    background: Any = None
    truth_data: Any = None


def run_retrieval(
    data_cfg: DataConfig,
    train_cfg: TrainingConfig,
    output: Path,
    modeltag: str,
    tag: str,
    sensors: tuple[str, ...] | None = None,
    progress: bool = True,
    stage: Path | None = None,
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
    progress : bool
        Progress bar on stderr.
    stage : Path, optional
        Where the files are written (the staging directory of the run's output set); default ``output``.

    Raises
    ------
    SeaIceError
        Missing model, unknown sensor, bad data, a tag equal to the model tag,
        or a model that cannot be applied to the new channels.
    """
    from empirical_seaice.run.train import CHECKPOINT_FORMAT, _configs_from_dict
    from empirical_seaice.training.runtime import resolve_device

    output = Path(output)
    out.check_tag(tag)
    out.check_tag(modeltag, "--modeltag")
    if tag == modeltag:
        raise SeaIceError(
            f"--tag: the retrieval's tag must differ from --modeltag ({modeltag!r}), "
            "or it would overwrite the trained run's SIC and state files"
        )
    ckpt = out.load_checkpoint(out.output_path(output, out.CHECKPOINT, modeltag))
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise SeaIceError(f"--modeltag: checkpoint format {ckpt.get('format')} is not {CHECKPOINT_FORMAT}")
    trained_data, model_cfg, cost_cfg = _configs_from_dict(ckpt["configs"])
    preset_name = ckpt["configs"].get("preset", model_cfg.version)
    sensors = tuple(sensors) if sensors else trained_data.sensors
    data_cfg = replace(data_cfg, sensors=sensors)
    if not Path(data_cfg.data).exists():
        raise SeaIceError(f"--data: {data_cfg.data} does not exist (give the new data directory or file)")
    basis = build_channel_basis(sensors, load_catalogue(data_cfg.sensor_catalogue))
    saved = ckpt["configs"].get("catalogue")  # the catalogue the model was trained with
    trained_catalogue = (
        catalogue_from_dict(saved, f"model_{modeltag}.pt")
        if saved is not None
        else load_catalogue(trained_data.sensor_catalogue)
    )
    trained_basis = build_channel_basis(trained_data.sensors, trained_catalogue)
    device = resolve_device(train_cfg.device)

    cache_dir = output / f"cache_{tag}"
    cache_existed = cache_dir.exists()
    try:
        return _retrieve(
            data_cfg,
            train_cfg,
            output,
            modeltag,
            tag,
            sensors,
            progress,
            ckpt,
            model_cfg,
            cost_cfg,
            preset_name,
            basis,
            trained_basis,
            device,
            cache_dir,
            Path(stage) if stage is not None else output,
        )
    except BaseException:  # remove only what this retrieval created (its cache); the output set is the caller's
        import shutil

        if not cache_existed:
            shutil.rmtree(cache_dir, ignore_errors=True)
        raise


def _retrieve(
    data_cfg,
    train_cfg,
    output,
    modeltag,
    tag,
    sensors,
    progress,
    ckpt,
    model_cfg,
    cost_cfg,
    preset_name,
    basis,
    trained_basis,
    device,
    cache_dir,
    stage,
) -> RetrievalResult:
    from empirical_seaice.io import read_training_data
    from empirical_seaice.model.operator import HybridNetwork, ObservationTensors, build_row_counts
    from empirical_seaice.run import interrupt
    from empirical_seaice.run.train import _full_cost, final_diagnostics
    from empirical_seaice.training.runtime import make_generator
    from empirical_seaice.training.trainer import Trainer

    result = RetrievalResult(output=output, tag=tag)
    obs, background = read_training_data(data_cfg, model_cfg.nlag, cache_dir=cache_dir)
    log.info("retrieval: %d observations, %d grid points, %d steps", obs.nobs, obs.ngrid, obs.nstep)
    generator = make_generator(train_cfg.seed)
    counts = build_row_counts(obs, model_cfg.nlag, obs.ngrid, obs.nstep)
    network = HybridNetwork(
        model_cfg, cost_cfg, basis, background, obs.nobs, row_counts=counts, sparse=True, generator=generator
    )
    copied = transfer_trained_model(network, ckpt["state_dict"], trained_basis)
    log.info(
        "retrieval: trained model %s applied (%d channels, %d sensor-channel biases copied)",
        modeltag,
        copied["channels"],
        copied["sensor_channels"],
    )
    frozen = FrozenModel(network)
    train_cfg = replace(
        train_cfg, optimizer="deferred-adam", map_priors=None, validation_fraction=0.0, early_stopping=False
    )
    network.to(device)
    data = ObservationTensors(obs, device)
    p = lambda stem: out.output_path(stage, stem, tag)  # noqa: E731

    sim0 = diag.simulate(network, data, obs.nobs)
    result.cost_before = _full_cost(network, obs, sim0, obs.nobs)
    result.departures_before = diag.departure_stats(obs, sim0.tb)
    result.files.append(out.write_tb(p("tbsim_initial"), sim0.tb, basis, "tbsim_initial", obs.mask))
    del sim0

    fixed_before = [t.detach().clone() for t in network.dense_parameters()]
    t0 = time.perf_counter()
    trainer = Trainer(
        frozen,
        data,
        train_cfg,
        np.arange(obs.nobs),
        None,
        obs.nobs,
        checkpoint_dir=None,
        progress=progress,
        generator=generator,
        stop=interrupt.requested,
    )
    with interrupt.training():
        history = trainer.fit()
    result.history = history
    result.seconds = time.perf_counter() - t0
    for a, b in zip(fixed_before, network.dense_parameters()):
        if not torch.equal(a, b.detach()):  # pragma: no cover - guards the contract
            raise RuntimeError("retrieval changed a fixed model parameter")

    st = network.state
    jd = out.step_julian_day(obs.jd_origin, obs.stepstart, obs.nstep, st.nlag, data_cfg.steps_per_day)
    result.files.append(
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
    result.files.append(
        out.write_properties_grid(
            p("properties_grid"),
            st.grid_properties_array(),
            jd[st.nlag :],
            background.lon,
            background.lat,
            step_days=1.0 / data_cfg.steps_per_day,
        )
    )
    result.files.append(out.write_properties_obs(p("properties_obs"), st.obs_properties_array()))
    truth = final_diagnostics(network, data, obs, background, Path(data_cfg.data), stage, tag, obs.nobs, result)
    title = (
        f"seaice-training retrieval '{tag}' with trained model '{modeltag}' ({preset_name}; emissivity, "
        f"wind correction and biases fixed): sensors {' '.join(sensors)}; {obs.nobs} obs, {obs.ngrid} grid "
        f"points x {obs.nstep} steps (steps {obs.stepstart}..{obs.stepstart + obs.nstep - 1}); "
        f"{history.nepochs} epochs in {result.seconds:.1f} s"
    )
    result.summary = diag.format_summary(
        diag.RunDiagnostics(
            title=title,
            cost_before=result.cost_before,
            cost_after=result.cost_after,
            departures_before=result.departures_before,
            departures_after=result.departures_after,
            truth=result.truth,
            notes=(f"outputs: {output}/*_{tag}.nc",),
        ),
        basis,
    )
    result.network, result.obs, result.background, result.truth_data = network, obs, background, truth
    return result


__all__ = ["FrozenModel", "transfer_trained_model", "run_retrieval", "RetrievalResult"]
