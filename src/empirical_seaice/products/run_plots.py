"""The plots of a run (``--plots``): the :class:`~empirical_seaice.products.plots.PlotInputs` of a
trained (or retrieved) network, its data, the twin's truth and the run's files (loss curves, the TBs
simulated before and after training), drawn by :func:`empirical_seaice.products.plots.make_plots`
(:func:`write_run_plots`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.products import gridded, plots
from empirical_seaice.products.export import julian_day_to_iso

log = logging.getLogger(__name__)


class TorchEmissivityVH:
    """``emissivity_vh(t_skin_k, props, freq_ghz)`` of a torch v2 emissivity model, in numpy
    (for the spectra when no coefficient file was exported)."""

    def __init__(self, emissivity: Any, model: Any):
        self.emissivity = emissivity
        self.model = model
        self.nprop = int(emissivity.nprop)

    def emissivity_vh(self, t_skin_k, props, freq_ghz) -> np.ndarray:
        import torch

        from empirical_seaice.model import physics

        dev = next(self.emissivity.parameters()).device
        with torch.no_grad():
            t = torch.as_tensor(np.array(t_skin_k, dtype=np.float32), device=dev)
            x_t = physics.normalised_temperature(t, self.model.t_ref_k, self.model.t_scale_k)
            p = torch.as_tensor(np.array(props, dtype=np.float32), device=dev)
            f = torch.as_tensor(np.asarray(freq_ghz, dtype=np.float32), device=dev)
            return self.emissivity.emissivity_vh(x_t, p, f).cpu().numpy()


def losses_from_history(history: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Cost terms per epoch (with the held-out ``valid_obs``, and each hemisphere's ``valid_obs_north``,
    ``valid_obs_south`` on a global grid) and per batch of a TrainingHistory."""
    if history is None or not getattr(history, "epoch_terms", None):
        return {}, {}
    batch = {k: np.asarray(v) for k, v in getattr(history, "batch_terms", {}).items()}
    return history.epoch_losses(), batch


def _read_tb(path: Path) -> np.ndarray | None:
    """The simulated TBs ``tb`` of a ``tbsim`` file, None when it was not written."""
    if not path.is_file():
        return None
    import xarray as xr

    with xr.open_dataset(path) as ds:
        return np.asarray(ds["tb"].values, dtype=np.float32)


def write_run_plots(
    *,
    network: Any,
    obs: Any,
    background: Any,
    inputs: gridded.GridInputs,
    output: Path,
    tag: str,
    plot_day: int | None = None,
    steps_per_day: int = 1,
    truth: Any = None,
    history: Any = None,
    models_file: Path | None = None,
    classic_maps: Any = None,
    emis_model: Any = None,
    report: dict[str, Any] | None = None,
    report_text: str = "",
) -> tuple[list[Path], list[str]]:
    """Draw the plots of a run into ``<output>/plots_TAG/``; returns the files and a summary line.

    ``plot_day``: the step of the maps (None or outside the period: the middle step);
    ``emis_model``: the exported numpy evaluator for the spectra (None: the torch model, v2).
    """
    model_cfg, basis = network.model_config, network.basis
    day = _plot_day(plot_day, obs.nstep)
    losses_epoch, losses_batch = losses_from_history(history)
    if not losses_epoch and models_file is not None and Path(models_file).is_file():
        losses_epoch, losses_batch = read_losses(models_file)
    if emis_model is None and model_cfg.version == "v2":
        emis_model = TorchEmissivityVH(network.emissivity, model_cfg)
    observed = inputs.nobs_cell > 0  # the state of unobserved cells is its untrained initial value
    tb_obs = np.where(np.asarray(obs.mask), np.asarray(obs.tb_obs_k, dtype=np.float32), np.nan)
    before = _read_tb(output / f"tbsim_initial_{tag}.nc")
    after = _read_tb(output / f"tbsim_{tag}.nc")
    lon = inputs.lon if inputs.lon is not None else np.zeros(obs.ngrid)
    lat = inputs.lat if inputs.lat is not None else np.full(obs.ngrid, 80.0)
    pin = plots.PlotInputs(
        lon=np.asarray(lon),
        lat=np.asarray(lat),
        day=day,
        sic=inputs.sic,
        sic_background=np.asarray(background.sic)[:, network.state.nlag :],
        sic_truth=None if truth is None else np.asarray(truth.sic),
        sic_classic={"nasa_team": classic_maps.maps["nasa_team"]}
        if classic_maps and "nasa_team" in classic_maps.maps
        else {},
        props_grid=np.where(observed[..., None], inputs.props_grid, np.nan),
        emis_grid=_emissivity_maps(network, obs, inputs, day, observed),
        t_skin_map_k=inputs.t_skin_map_k,
        emissivity_model=emis_model,
        nprop_obs=model_cfg.nprop_obs,
        losses_epoch=losses_epoch,
        losses_batch=losses_batch,
        channel_names=list(basis.channel_names),
        dep_before=None if before is None else tb_obs - before,
        dep_after=None if after is None else tb_obs - after,
        title=f"run {tag}:",
        spectrum_masks=truth_ice_types(truth),
        dates=step_dates(obs, steps_per_day),
        trained_freqs_ghz=trained_frequencies(basis),
        report=report,
        report_text=report_text,
    )
    plot_files = plots.make_plots(output / f"plots_{tag}", pin)
    return plot_files, [f"plots: {output / f'plots_{tag}' / 'index.html'} ({len(plot_files) - 1} PNG)"]


def _plot_day(plot_day: int | None, nstep: int) -> int:
    """The step of the maps: ``plot_day``, or the middle step (also, with a warning, for a step
    outside the period)."""
    day = nstep // 2 if plot_day is None else int(plot_day)
    if not 0 <= day < nstep:
        log.warning("--plot-day %d: outside the period's steps 0..%d; mapping step %d", day, nstep - 1, nstep // 2)
        day = nstep // 2
    return day


def _emissivity_maps(network: Any, obs: Any, inputs: gridded.GridInputs, day: int, observed: np.ndarray):
    """The ice emissivity of :data:`~empirical_seaice.products.plots.MAP_CHANNELS` on ``day``
    (channel -> (ngrid, nstep), NaN on other days and unobserved cells)."""
    basis = network.basis
    props = np.concatenate([inputs.props_grid[:, day], inputs.props_obs_mean[:, day]], axis=-1)
    emis_day = gridded.evaluate_grid_emissivity(
        network.emissivity,
        network.model_config,
        basis,
        inputs.t_skin_map_k[:, day],
        props,
        channels=[c for c in plots.MAP_CHANNELS if c in basis.channel_index],
    )
    emis_grid = {
        c: np.full((obs.ngrid, obs.nstep), np.nan, np.float32) for c in plots.MAP_CHANNELS if c in basis.channel_index
    }
    for j, c in enumerate(emis_grid):
        emis_grid[c][:, day] = np.where(observed[:, day], emis_day[:, j], np.nan)
    return emis_grid


def step_dates(obs: Any, steps_per_day: int = 1) -> list[str]:
    """The date of each step (ISO, the day its 21 UTC window ends), for titles."""
    jd = gridded.step_time_bounds(obs.jd_origin, obs.stepstart, obs.nstep, steps_per_day)
    return [julian_day_to_iso(b - 0.125) for b in jd[:, 1]]


def trained_frequencies(basis: Any) -> dict[str, list[float]]:
    """Frequencies (GHz) of the channels the model was trained on, per sensor."""
    out = {}
    for s, name in enumerate(basis.sensor_names):
        present = np.asarray(basis.present[s], dtype=bool)
        out[str(name)] = sorted({float(f) for f in np.asarray(basis.freq_ghz[s])[present]})
    return out


def truth_ice_types(truth: Any) -> dict[str, np.ndarray]:
    """Cell sets of the twin's truth ice types: first-year (true multi-year fraction < 0.2)
    and multi-year (> 0.8) ice, (ngrid, nstep) bool; empty without a truth."""
    myi = None if truth is None else getattr(truth, "properties", {}).get("MYI_FRACTION")
    if myi is None:
        return {}
    myi = np.asarray(myi, dtype=np.float64)
    return {"first-year ice (truth)": myi < 0.2, "multi-year ice (truth)": myi > 0.8}


def read_losses(models_file: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``loss_epoch_<term>`` and ``loss_batch_<term>`` of a ``models_TAG.nc`` file."""
    import xarray as xr

    epoch, batch = {}, {}
    with xr.open_dataset(models_file) as ds:
        for name in ds.data_vars:
            if name.startswith("loss_epoch_"):
                epoch[name[len("loss_epoch_") :]] = np.asarray(ds[name].values)
            elif name.startswith("loss_batch_"):
                batch[name[len("loss_batch_") :]] = np.asarray(ds[name].values)
    return epoch, batch


__all__ = [
    "write_run_plots",
    "TorchEmissivityVH",
    "losses_from_history",
    "step_dates",
    "trained_frequencies",
    "truth_ice_types",
    "read_losses",
]
