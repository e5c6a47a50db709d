"""The user products of a run, written after training / diagnostics / retrieval.

:func:`write_products` is the one hook the pipeline (and the retrieval) calls:

- ``--export``: ``emis_model_TAG.nc`` (self-describing coefficients, see
  :mod:`empirical_seaice.products.export`) and ``emis_model_TAG.onnx``;
- the gridded emissivity product ``ice_emis_grid_TAG.nc``
  (:mod:`empirical_seaice.products.gridded`, :mod:`empirical_seaice.products.gridded_file`);
- the classic algorithms ``classic_sic_TAG.nc`` (NASA Team, Bootstrap;
  :mod:`empirical_seaice.products.classic`), scored against the truth beside the
  trained and background SIC when the data has a truth;
- ``--plots``: PNGs and ``index.html`` in ``<output>/plots_TAG/``
  (:mod:`empirical_seaice.products.run_plots`, :mod:`empirical_seaice.products.plots`).

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
from empirical_seaice.io.grid_cells import global_hemispheres
from empirical_seaice.products import classic, gridded, gridded_file, run_plots
from empirical_seaice.products.export import Provenance, julian_day_to_iso, write_export
from empirical_seaice.products.export.onnx_files import ONNX_MISSING, onnx_available

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProductOptions:
    """Which products to write.

    export: write emis_model_TAG.nc (and the ONNX files).
    onnx: with export, also the ONNX files (where the onnx package is missing: a warning, the coefficient
        file alone).
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
        v1 model or outside 1..400 GHz; a negative --plot-day; --grid-channels or --grid-freqs with
        --no-gridded, --plot-day without --plots.

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
    check_product_flags(options)


def check_product_flags(options: ProductOptions) -> None:
    """The product flags that need no model nor sensors (also ``--retrieve``'s, whose model comes later):
    a negative ``--plot-day``, and flags that configure a product the run does not make (``--grid-channels``
    or ``--grid-freqs`` with ``--no-gridded``, ``--plot-day`` without ``--plots``): an error, not a flag
    dropped unseen.

    Raises
    ------
    SeaIceError
        Naming the flag and the fix.
    """
    if options.plot_day is not None and options.plot_day < 0:
        raise SeaIceError(f"--plot-day: expected a step >= 0, got {options.plot_day}")
    for flag, given in (("--grid-channels", options.grid_channels), ("--grid-freqs", options.grid_freqs_ghz)):
        if given and not options.gridded:
            raise SeaIceError(f"{flag}: configures the gridded product, which --no-gridded turns off; drop one of them")
    if options.plot_day is not None and not options.plots:
        raise SeaIceError("--plot-day: applies only with --plots; add --plots or drop it")


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
        extra={"stepstart": int(obs.stepstart), "nsteps": int(obs.nstep), "nobs": int(obs.nobs)},
    )


def classic_scores(
    classic_maps: classic.ClassicSIC,
    obs: Any,
    background: Any,
    sic_map: np.ndarray,
    truth: Any,
    counts: np.ndarray | None = None,
    grid_rows: np.ndarray | None = None,
) -> tuple[int, dict[str, dict[str, float]]]:
    """SIC RMSE and bias versus the truth at the observed (grid, step) points of the background,
    the trained SIC and each classic algorithm: (number of points, name -> {rmse, bias, n}).

    ``counts``: the observations per cell (the gridded product's ``nobs_cell``), which gives the
    observed points without reading the observations again; ``grid_rows``: the grid points scored
    (indices or a mask over the grid; all by default: one hemisphere of a global grid, say). The RMSE is
    :func:`.classic.sic_rmse`."""
    from empirical_seaice.products.diagnostics import observed_cells

    cells = observed_cells(obs, counts)
    if grid_rows is not None:
        chosen = np.zeros(obs.ngrid, dtype=bool)
        chosen[grid_rows] = True
        cells = cells[chosen[cells // obs.nstep]]
    ts = _at(truth.sic, cells, obs.nstep)
    nlag = background.nlag
    ests = {
        "background": _at(background.sic, cells, obs.nstep, nlag),
        "trained": _at(sic_map, cells, obs.nstep, nlag),
        **{name: _at(arr, cells, obs.nstep) for name, arr in classic_maps.maps.items()},
    }
    out = {}
    ts = np.asarray(ts, dtype=np.float64)
    for name, est in ests.items():
        d = np.asarray(est, dtype=np.float64) - ts  # finite exactly where both are (float32 values: no overflow)
        d = d[np.isfinite(d)]
        out[name] = {  # the RMSE of classic.sic_rmse, from the same differences
            "rmse": float(np.sqrt(np.mean(d**2))) if d.size else float("nan"),
            "bias": float(d.mean()) if d.size else float("nan"),
            "n": int(d.size),
        }
    return len(cells), out


def _at(arr: Any, cells: np.ndarray, nstep: int, lag: int = 0) -> np.ndarray:
    """``arr[g, t + lag]`` at the flat cells ``g * nstep + t`` of an (ngrid, lag + nstep + ...) map (a
    C-contiguous map: one flat gather at ``g * ncol + t + lag``, 3x faster than the 2-d one)."""
    arr = np.asarray(arr)
    ncol = arr.shape[1]
    if arr.flags.c_contiguous:
        return arr.reshape(-1)[cells if ncol == nstep and lag == 0 else cells + cells // nstep * (ncol - nstep) + lag]
    g = cells // nstep
    return arr[g, cells - g * nstep + lag]


def classic_summary(
    classic_maps: classic.ClassicSIC,
    obs: Any,
    background: Any,
    sic_map: np.ndarray,
    truth: Any,
    scored: tuple[int, dict[str, dict[str, float]]] | None = None,
    counts: np.ndarray | None = None,
) -> list[str]:
    """Summary lines: SIC RMSE versus the truth at the observed (grid, step) points for the
    background, the trained SIC and each classic algorithm (``scored``: :func:`classic_scores`'s
    result when already computed)."""
    if truth is None:
        return []
    npts, scores = scored if scored is not None else classic_scores(classic_maps, obs, background, sic_map, truth)
    lines = [f"SIC RMSE vs truth ({npts} grid-steps): " + _score_parts(scores, classic_maps)]
    for name, mask in global_hemispheres(background.lat):  # a global grid: each hemisphere's ice on its own
        n, own = classic_scores(classic_maps, obs, background, sic_map, truth, counts, grid_rows=mask)
        lines.append(f"  {name} ({n} grid-steps): " + _score_parts(own, classic_maps))
    return lines


def _score_parts(scores: dict[str, dict[str, float]], classic_maps: classic.ClassicSIC) -> str:
    parts = [f"background {scores['background']['rmse']:.4f}", f"trained {scores['trained']['rmse']:.4f}"]
    for name in classic_maps.maps:
        parts.append(f"{name} {scores[name]['rmse']:.4f} (n={scores[name]['n']})")
    return ", ".join(parts)


def _open_water_filtered(
    network, obs, background, output, tag, data_cfg, truth, counts: np.ndarray | None = None, classic_maps=None
) -> tuple[list[Path], list[str]]:
    """``seaice_filtered_TAG.nc`` (time, grid; the lag days, not filtered, the first times) and its summary
    line (the SIC RMSE vs truth with the filter; ``counts``:
    the gridded product's observations per cell, which give the observed points without another pass;
    ``classic_maps``: the classic algorithms' maps, whose gridding gave the flags of their sensors)."""
    from empirical_seaice.io import outputs as out
    from empirical_seaice.products.diagnostics import observed_points
    from empirical_seaice.products.open_water_filter import filter_sic, open_water_mask, write_filtered_sic

    st = network.state
    sic = st.sic_array()
    mask = np.zeros(sic.shape, dtype=bool)
    known = getattr(classic_maps, "open_water", None)
    done = classic_maps.open_water_sensors if known is not None else ()
    mask[:, st.nlag :] = open_water_mask(obs, known, done)
    filtered = filter_sic(sic, mask)
    spd = getattr(data_cfg, "steps_per_day", 1) if data_cfg else 1
    jd = out.step_julian_day(obs.jd_origin, obs.stepstart, obs.nstep, st.nlag, spd)
    path = write_filtered_sic(
        out.output_path(output, "seaice_filtered", tag),
        filtered,
        jd,
        background.lon,
        background.lat,
        nlag=st.nlag,
        step_days=1.0 / spd,
        flags=mask,
    )
    lines = []
    if truth is not None:
        g, t = observed_points(obs, counts)
        ts = np.asarray(truth.sic)[g, t]

        def change(at: np.ndarray | slice) -> str:  # the RMSE before -> after the filter at those points
            before = classic.sic_rmse(sic[g[at], t[at] + st.nlag], ts[at])
            return f"{before:.4f} -> {classic.sic_rmse(filtered[g[at], t[at] + st.nlag], ts[at]):.4f}"

        lines.append(f"SIC RMSE vs truth with the open-water filter: {change(slice(None))} ({len(g)} grid-steps)")
        for name, mask in global_hemispheres(background.lat):  # a global grid: each hemisphere on its own
            lines.append(f"  {name}: {change(mask[g])} ({int(mask[g].sum())} grid-steps)")
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
    trained: Provenance | None = None,
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
    trained : the training run's provenance for ``--export`` and the gridded product's ``training_*``
        attributes, with ``--diagsonly`` and ``--retrieve``
        (:func:`~empirical_seaice.run.model_file.trained_provenance`); None = this run's (a training run).

    Returns
    -------
    files : paths written.
    summary_lines : lines for the run's summary.
    """
    output = Path(output)
    output = Path(output)

    def stage(name: str) -> None:
        if progress is not None:
            progress.stage(f"products: {name}")

    spd = getattr(data_cfg, "steps_per_day", 1) if data_cfg else 1
    files: list[Path] = []
    lines: list[str] = []
    prov = provenance_of(tag, preset_name, data_cfg, obs)
    emis_model: Any = None
    if options.export:
        stage("export")
        paths, emis_model = _export(options, network, output, tag, trained or prov)
        files += paths
        lines.append("export: " + ", ".join(p.name for p in paths))
    inputs = gridded.grid_inputs(network, obs, background, spd)
    if options.gridded:
        stage("gridded emissivity")
        files.append(
            gridded_file.write_gridded_emissivity(
                output / f"ice_emis_grid_{tag}.nc",
                network.emissivity,
                network.model_config,
                network.basis,
                inputs,
                channels=list(options.grid_channels) if options.grid_channels else None,
                freq_ghz=list(options.grid_freqs_ghz) if options.grid_freqs_ghz else None,
                provenance=trained or prov,  # the model's training (a retrieval's days: the file's time axis)
            )
        )
    classic_maps = None
    if options.classic:
        stage("classic SIC")
        classic_maps, files_c, lines_c = _classic(
            network, obs, background, output, tag, spd, truth, report, inputs.nobs_cell, options.open_water_filter
        )
        files += files_c
        lines += lines_c
    if options.open_water_filter:
        stage("open-water filter")
        files_owf, lines_owf = _open_water_filtered(
            network, obs, background, output, tag, data_cfg, truth, inputs.nobs_cell, classic_maps
        )
        files += files_owf
        lines += lines_owf
    if options.plots:
        stage("plots")
        files_p, lines_p = run_plots.write_run_plots(
            network=network,
            obs=obs,
            background=background,
            inputs=inputs,
            output=output,
            tag=tag,
            plot_day=options.plot_day,
            steps_per_day=spd,
            truth=truth,
            history=history,
            models_file=models_file,
            classic_maps=classic_maps,
            emis_model=emis_model,
            report=report,
            report_text=report_text,
        )
        files += files_p
        lines += lines_p
    return files, lines


def _export(options: ProductOptions, network: Any, output: Path, tag: str, prov: Provenance) -> tuple[list[Path], Any]:
    """``--export``: the coefficient file (and the ONNX files when the onnx package is there); returns
    the paths and, for v2, the numpy evaluator of the file just written (for the spectra)."""
    model_cfg, basis = network.model_config, network.basis
    onnx = options.onnx and onnx_available()
    if options.onnx and not onnx:  # the coefficient file is what a forecasting system reads
        log.warning("--export: the ONNX files are not written (emis_model_%s.nc is): %s", tag, ONNX_MISSING)
    try:
        paths = write_export(output, tag, network.emissivity, model_cfg, basis, prov, onnx=onnx)
    except ImportError as exc:  # one of torch's ONNX exporter's own packages missing
        log.warning("--export: the ONNX files are not written (emis_model_%s.nc is): %s", tag, exc)
        paths = write_export(output, tag, network.emissivity, model_cfg, basis, prov, onnx=False)
    if model_cfg.version != "v2":
        return paths, None
    from empirical_seaice.products.export import NumpyEmissivityModel

    return paths, NumpyEmissivityModel.from_file(paths[0])


def _classic(
    network: Any,
    obs: Any,
    background: Any,
    output: Path,
    tag: str,
    steps_per_day: int,
    truth: Any,
    report: dict[str, Any] | None,
    counts: np.ndarray | None = None,
    open_water: bool = False,
) -> tuple[Any, list[Path], list[str]]:
    """NASA Team and Bootstrap SIC: ``classic_sic_TAG.nc``, their summary lines and (with a truth) their
    scores in ``report`` (``counts``: the observations per cell, for :func:`classic_scores`; ``open_water``:
    the open-water filter's flags too, for the filter that follows); (None, [], []) when the run's
    channels do not allow them."""
    try:
        classic_maps = classic.classic_sic_maps(obs, open_water=open_water)
    except SeaIceError as exc:  # e.g. a run without 19/37 GHz channels
        log.warning("classic SIC not computed: %s", exc)
        return None, [], []
    path = classic.write_classic_sic(output / f"classic_sic_{tag}.nc", classic_maps, obs, steps_per_day)
    sic_map = network.state.sic_array()
    scored = classic_scores(classic_maps, obs, background, sic_map, truth, counts) if truth is not None else None
    lines = classic_summary(classic_maps, obs, background, sic_map, truth, scored, counts)
    if scored is not None and report is not None:
        _, scores = scored
        report["classic_sic_rmse"] = {k: v for k, v in scores.items() if k in classic_maps.maps}
    return classic_maps, [path], lines


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
    "check_product_flags",
    "classic_summary",
    "classic_scores",
    "parse_freqs",
]
