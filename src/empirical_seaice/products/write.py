"""The user products of a run, written after training / diagnostics / retrieval.

:func:`write_products` is the one hook the pipeline (and the retrieval) calls:

- ``--export``: ``emis_model_TAG.nc`` (self-describing coefficients, see
  :mod:`empirical_seaice.products.export`) and ``emis_model_TAG.onnx``;
- the gridded emissivity product ``ice_emis_grid_TAG.nc``
  (:mod:`empirical_seaice.products.gridded`);
- the classic algorithms ``classic_sic_TAG.nc`` (NASA Team, Bootstrap;
  :mod:`empirical_seaice.products.classic`), scored against the truth beside the
  trained and background SIC when the data has a truth;
- ``--plots``: PNGs and ``index.html`` in ``<output>/plots_TAG/``
  (:mod:`empirical_seaice.products.plots`).

It returns the files written and lines for the run's summary table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.products import classic, gridded, plots
from empirical_seaice.products.export import Provenance, julian_day_to_iso, write_export

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProductOptions:
    """Which products to write.

    export: write emis_model_TAG.nc (and .onnx).
    onnx: with export, also the ONNX file (needs the onnx package).
    gridded: write ice_emis_grid_TAG.nc.
    grid_channels: channels of the gridded product (None = the run's channels).
    grid_freqs_ghz: arbitrary frequencies of the gridded product instead of channels (v2).
    classic: compute NASA Team and Bootstrap SIC (classic_sic_TAG.nc) and score them.
    open_water_filter: write seaice_filtered_TAG.nc, the trained SIC with the open-water filter
        (:mod:`.open_water_filter`), and score it.
    plots: draw the plots into <output>/plots_TAG/.
    plot_day: step (0-based) of the maps; None = the middle step.
    """

    export: bool = False
    onnx: bool = True
    gridded: bool = True
    grid_channels: tuple[str, ...] | None = None
    grid_freqs_ghz: tuple[float, ...] | None = None
    classic: bool = True
    open_water_filter: bool = True
    plots: bool = False
    plot_day: int | None = None


def check_product_options(
    options: ProductOptions, model_version: str | None, sensors: Sequence[str], catalogue: Any = None
) -> None:
    """Validate the product options before any work (so that a bad flag never
    surfaces after a long training run).

    Raises
    ------
    SeaIceError
        --grid-channels naming a channel the sensors lack; --grid-freqs with a
        v1 model or outside 1..400 GHz; a negative --plot-day.

    ``catalogue``: the run's SensorCatalogue (None = the shipped one).
    """
    from empirical_seaice.sensors import build_channel_basis

    basis = build_channel_basis(sensors, catalogue)
    if options.grid_channels:
        bad = [c for c in options.grid_channels if c not in basis.channel_index]
        if bad:
            raise SeaIceError(
                f"--grid-channels: {', '.join(bad)} not among the run's channels ({', '.join(basis.channel_names)})"
            )
    if options.grid_freqs_ghz:
        if model_version == "v1":
            raise SeaIceError("--grid-freqs: the v1 model has per-channel outputs; use --grid-channels")
        bad_f = [f for f in options.grid_freqs_ghz if not 1.0 <= f <= 400.0]
        if bad_f:
            raise SeaIceError(f"--grid-freqs: expected frequencies in 1..400 GHz, got {bad_f[0]:g}")
    if options.plot_day is not None and options.plot_day < 0:
        raise SeaIceError(f"--plot-day: expected a step >= 0, got {options.plot_day}")


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


def provenance_of(tag: str, preset_name: str, data_cfg: Any, obs: Any) -> Provenance:
    """Provenance of a run: tag, preset, sensors, period (ISO dates of the first/last step), data path."""
    jd = gridded.step_time_bounds(obs.jd_origin, obs.stepstart, obs.nstep, getattr(data_cfg, "steps_per_day", 1))
    return Provenance(
        tag=tag,
        preset=preset_name,
        sensors=tuple(obs.basis.sensor_names),
        period_start=julian_day_to_iso(jd[0, 0] + 0.125),  # the 21 UTC window is labelled by the day it ends
        period_end=julian_day_to_iso(jd[-1, 1] - 0.125),
        data=str(getattr(data_cfg, "data", "")),
        extra={"stepstart": str(obs.stepstart), "nsteps": str(obs.nstep), "nobs": str(obs.nobs)},
    )


def _losses_from_history(history: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    if history is None or not getattr(history, "epoch_terms", None):
        return {}, {}
    names = list(history.epoch_terms[0])
    epoch = {k: np.array([e[k] for e in history.epoch_terms]) for k in names}
    if getattr(history, "valid_cost", None):
        epoch["valid_obs"] = np.asarray(history.valid_cost)
    batch = {k: np.asarray(v) for k, v in getattr(history, "batch_terms", {}).items()}
    return epoch, batch


def _read_tb(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    import xarray as xr

    with xr.open_dataset(path) as ds:
        return np.asarray(ds["tb"].values, dtype=np.float32)


def classic_scores(
    classic_maps: classic.ClassicSIC, obs: Any, background: Any, sic_map: np.ndarray, truth: Any
) -> tuple[int, dict[str, dict[str, float]]]:
    """SIC RMSE and bias versus the truth at the observed (grid, step) points of the background,
    the trained SIC and each classic algorithm: (number of points, name -> {rmse, bias, n})."""
    from empirical_seaice.products.diagnostics import observed_points

    g, t = observed_points(obs)
    ts = np.asarray(truth.sic)[g, t]
    nlag = background.nlag
    ests = {
        "background": np.asarray(background.sic)[g, t + nlag],
        "trained": np.asarray(sic_map)[g, t + nlag],
        **{name: arr[g, t] for name, arr in classic_maps.maps.items()},
    }
    out = {}
    for name, est in ests.items():
        d = np.asarray(est, dtype=np.float64) - ts
        ok = np.isfinite(d)
        out[name] = {
            "rmse": classic.sic_rmse(est, ts),
            "bias": float(d[ok].mean()) if ok.any() else float("nan"),
            "n": int(ok.sum()),
        }
    return len(g), out


def classic_summary(
    classic_maps: classic.ClassicSIC, obs: Any, background: Any, sic_map: np.ndarray, truth: Any
) -> list[str]:
    """Summary lines: SIC RMSE versus the truth at the observed (grid, step) points for the
    background, the trained SIC and each classic algorithm."""
    if truth is None:
        return []
    npts, scores = classic_scores(classic_maps, obs, background, sic_map, truth)
    parts = [f"background {scores['background']['rmse']:.4f}", f"trained {scores['trained']['rmse']:.4f}"]
    for name in classic_maps.maps:
        parts.append(f"{name} {scores[name]['rmse']:.4f} (n={scores[name]['n']})")
    return [f"SIC RMSE vs truth ({npts} grid-steps): " + ", ".join(parts)]


def _open_water_filtered(network, obs, background, output, tag, data_cfg, truth) -> tuple[list[Path], list[str]]:
    """``seaice_filtered_TAG.nc`` and its summary line (the SIC RMSE vs truth with the filter)."""
    from empirical_seaice.io import outputs as out
    from empirical_seaice.products.diagnostics import observed_points
    from empirical_seaice.products.open_water_filter import filter_sic, open_water_mask

    st = network.state
    sic = st.sic_array()
    mask = np.zeros(sic.shape, dtype=bool)
    mask[:, st.nlag :] = open_water_mask(obs)
    filtered = filter_sic(sic, mask)
    spd = getattr(data_cfg, "steps_per_day", 1) if data_cfg else 1
    jd = out.step_julian_day(obs.jd_origin, obs.stepstart, obs.nstep, st.nlag, spd)
    path = out.write_seaice(
        out.output_path(output, "seaice_filtered", tag),
        filtered,
        jd,
        background.lon,
        background.lat,
        nlag=st.nlag,
        step_days=1.0 / spd,
    )
    lines = []
    if truth is not None:
        g, t = observed_points(obs)
        ts = np.asarray(truth.sic)[g, t]
        before = classic.sic_rmse(sic[g, t + st.nlag], ts)
        after = classic.sic_rmse(filtered[g, t + st.nlag], ts)
        lines.append(f"SIC RMSE vs truth with the open-water filter: {before:.4f} -> {after:.4f} ({len(g)} grid-steps)")
    return [path], lines


def write_products(
    options: ProductOptions,
    *,
    network: Any,
    obs: Any,
    background: Any,
    output: Path,
    tag: str,
    preset_name: str,
    data_cfg: Any = None,
    truth: Any = None,
    history: Any = None,
    models_file: Path | None = None,
    report: dict[str, Any] | None = None,
    report_text: str = "",
    progress: Any = None,
) -> tuple[list[Path], list[str]]:
    """Write the products selected in ``options`` for a trained (or retrieved) network.

    Parameters
    ----------
    network : HybridNetwork (its emissivity model, state tables and configuration).
    obs, background : the run's Observations and BackgroundMaps.
    output, tag : output directory and run tag.
    preset_name : "v1"/"v2" (provenance).
    data_cfg : the run's DataConfig (provenance).
    truth : twin truth (io.truth.Truth) or None.
    history : TrainingHistory for the loss curves; None = read ``models_file``.
    models_file : ``models_TAG.nc`` with ``loss_epoch_*``/``loss_batch_*`` variables.
    report : the run's summary (:func:`empirical_seaice.products.report.summary_dict`) for the
        report ``index.html``; the classic algorithms' scores are added to it (``classic_sic_rmse``).
    report_text : the printed summary table, shown in the report.
    progress : the run's RunProgress (its stage names the product being written), or None.

    Returns
    -------
    files : paths written.
    summary_lines : lines for the run's summary.
    """
    output = Path(output)

    def stage(name: str) -> None:
        if progress is not None:
            progress.stage(f"products: {name}")

    model_cfg = network.model_config
    basis = network.basis
    files: list[Path] = []
    lines: list[str] = []
    prov = provenance_of(tag, preset_name, data_cfg, obs)
    emis_model: Any = None
    if options.export:
        stage("export")
        try:
            paths = write_export(output, tag, network.emissivity, model_cfg, basis, prov, onnx=options.onnx)
        except ImportError as exc:  # no onnx package: the coefficient file is what matters
            log.warning("--export: ONNX file not written (%s); install the 'test' extras for ONNX", exc)
            paths = write_export(output, tag, network.emissivity, model_cfg, basis, prov, onnx=False)
        files += paths
        lines.append("export: " + ", ".join(p.name for p in paths))
        if model_cfg.version == "v2":
            from empirical_seaice.products.export import NumpyEmissivityModel

            emis_model = NumpyEmissivityModel.from_file(paths[0])
    if emis_model is None and model_cfg.version == "v2":
        emis_model = TorchEmissivityVH(network.emissivity, model_cfg)

    inputs = gridded.grid_inputs(network, obs, background, getattr(data_cfg, "steps_per_day", 1) if data_cfg else 1)
    if options.gridded:
        stage("gridded emissivity")
        path = output / f"ice_emis_grid_{tag}.nc"
        files.append(
            gridded.write_gridded_emissivity(
                path,
                network.emissivity,
                model_cfg,
                basis,
                inputs,
                channels=list(options.grid_channels) if options.grid_channels else None,
                freq_ghz=list(options.grid_freqs_ghz) if options.grid_freqs_ghz else None,
                provenance=prov,
            )
        )
    classic_maps = None
    if options.classic:
        stage("classic SIC")
        try:
            classic_maps = classic.classic_sic_maps(obs)
        except SeaIceError as exc:  # e.g. a run without 19/37 GHz channels
            log.warning("classic SIC not computed: %s", exc)
        if classic_maps is not None:
            files.append(
                classic.write_classic_sic(
                    output / f"classic_sic_{tag}.nc",
                    classic_maps,
                    obs,
                    getattr(data_cfg, "steps_per_day", 1) if data_cfg else 1,
                )
            )
            lines += classic_summary(classic_maps, obs, background, network.state.sic_array(), truth)
            if truth is not None and report is not None:
                _, scores = classic_scores(classic_maps, obs, background, network.state.sic_array(), truth)
                report["classic_sic_rmse"] = {k: v for k, v in scores.items() if k in classic_maps.maps}

    if options.open_water_filter:
        stage("open-water filter")
        files_owf, lines_owf = _open_water_filtered(network, obs, background, output, tag, data_cfg, truth)
        files += files_owf
        lines += lines_owf

    if options.plots:
        stage("plots")
        nlag = network.state.nlag
        day = obs.nstep // 2 if options.plot_day is None else int(options.plot_day)
        if not 0 <= day < obs.nstep:
            log.warning(
                "--plot-day %d: outside the period's steps 0..%d; mapping step %d", day, obs.nstep - 1, obs.nstep // 2
            )
            day = obs.nstep // 2
        losses_epoch, losses_batch = _losses_from_history(history)
        if not losses_epoch and models_file is not None and Path(models_file).is_file():
            losses_epoch, losses_batch = read_losses(models_file)
        props = np.concatenate([inputs.props_grid[:, day], inputs.props_obs_mean[:, day]], axis=-1)
        emis_day = gridded.evaluate_grid_emissivity(
            network.emissivity,
            model_cfg,
            basis,
            inputs.t_skin_map_k[:, day],
            props,
            channels=[c for c in plots.MAP_CHANNELS if c in basis.channel_index],
        )
        emis_grid = {
            c: np.full((obs.ngrid, obs.nstep), np.nan, np.float32)
            for c in plots.MAP_CHANNELS
            if c in basis.channel_index
        }
        observed = inputs.nobs_cell > 0  # the state of unobserved cells is its untrained initial value
        for j, c in enumerate(emis_grid):
            emis_grid[c][:, day] = np.where(observed[:, day], emis_day[:, j], np.nan)
        props_plot = np.where(observed[..., None], inputs.props_grid, np.nan)
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
            sic_background=np.asarray(background.sic)[:, nlag:],
            sic_truth=None if truth is None else np.asarray(truth.sic),
            sic_classic={"nasa_team": classic_maps.maps["nasa_team"]}
            if classic_maps and "nasa_team" in classic_maps.maps
            else {},
            props_grid=props_plot,
            emis_grid=emis_grid,
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
            dates=step_dates(obs, getattr(data_cfg, "steps_per_day", 1) if data_cfg else 1),
            trained_freqs_ghz=trained_frequencies(basis),
            report=report,
            report_text=report_text,
        )
        plot_files = plots.make_plots(output / f"plots_{tag}", pin)
        files += plot_files
        lines.append(f"plots: {output / f'plots_{tag}' / 'index.html'} ({len(plot_files) - 1} PNG)")
    return files, lines


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


def parse_freqs(text: Sequence[str] | None) -> tuple[float, ...] | None:
    """``--grid-freqs 10.65 36.5 89`` -> floats, with a one-line error for a bad value."""
    if not text:
        return None
    try:
        return tuple(float(t) for t in text)
    except ValueError:
        raise SeaIceError(f"--grid-freqs: expected frequencies in GHz, got {' '.join(text)}") from None


__all__ = [
    "ProductOptions",
    "check_product_options",
    "write_products",
    "provenance_of",
    "classic_summary",
    "classic_scores",
    "step_dates",
    "trained_frequencies",
    "read_losses",
    "TorchEmissivityVH",
    "parse_freqs",
]
