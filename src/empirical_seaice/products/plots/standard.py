"""The standard set of pictures of a run (:func:`make_plots`, from a :class:`PlotInputs`): maps of the
chosen day, emissivity spectra, the daily extent and area, loss curves and departure statistics, and
the run report ``index.html`` (:mod:`empirical_seaice.products.report`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.io.grid_cells import grid_cells, hemispheres
from empirical_seaice.products.plots.departures import plot_departure_histograms, plot_departure_stats
from empirical_seaice.products.plots.grid import rasterise
from empirical_seaice.products.plots.maps import plot_maps
from empirical_seaice.products.plots.series import extent_area, plot_loss_curves, plot_time_series
from empirical_seaice.products.plots.spectra import (
    SPECTRUM_FREQ_GHZ,
    EmissivityVH,
    plot_spectra,
    spectrum_groups,
    spectrum_groups_from_masks,
)
from empirical_seaice.products.plots.style import OPEN_WATER_SIC

MAP_CHANNELS = ("10v", "37v", "89v")
"""Channels of the ice emissivity maps."""


def write_index(plot_dir: Path, entries: Sequence[tuple[str, str]], *, title: str = "", **report: Any) -> Path:
    """``index.html`` in ``plot_dir``: the run report (:func:`empirical_seaice.products.report.write_report`)
    with every (file name, caption) entry; ``report`` may give ``summary`` and ``summary_text``."""
    from empirical_seaice.products.report import write_report

    return write_report(plot_dir, entries, title=title, **report)


@dataclass
class PlotInputs:
    """What :func:`make_plots` draws (arrays; every optional part may be None).

    lon, lat : (ngrid,) degrees.
    day : step index (0-based, within the period) of the maps.
    sic : (ngrid, nstep) trained SIC (without the lag columns).
    sic_background : (ngrid, nstep) background SIC.
    sic_truth : (ngrid, nstep) truth SIC (twin), or None.
    sic_classic : algorithm name -> (ngrid, nstep) SIC (e.g. NASA Team).
    props_grid : (ngrid, nstep, nprop_grid) grid empirical state.
    emis_grid : channel name -> (ngrid, nstep) gridded ice emissivity (10v, 37v, 89v).
    t_skin_map_k : (ngrid, nstep) daily skin temperature, for the spectra.
    emissivity_model : evaluator of the trained model (emissivity_vh), for the spectra.
    nprop_obs : number of observation-space variables (set to 0 in the spectra).
    losses_epoch, losses_batch : term -> values.
    channel_names : the run's channels.
    dep_before, dep_after : (nobs, nchan) observed minus simulated TB before/after training.
    title : run name for the titles.
    spectrum_masks : label -> (ngrid, nstep) bool cell sets (e.g. truth ice types) for a
        second spectra plot ``spectra_ice_types.png``.
    dates : ISO date of each step (titles and the time series); default "step N".
    trained_freqs_ghz : sensor -> trained channel frequencies (marked on the spectra).
    report, report_text : the run's summary (dict) and printed table for ``index.html``.
    """

    lon: np.ndarray
    lat: np.ndarray
    day: int = 0
    sic: np.ndarray | None = None
    sic_background: np.ndarray | None = None
    sic_truth: np.ndarray | None = None
    sic_classic: Mapping[str, np.ndarray] = field(default_factory=dict)
    props_grid: np.ndarray | None = None
    emis_grid: Mapping[str, np.ndarray] = field(default_factory=dict)
    t_skin_map_k: np.ndarray | None = None
    emissivity_model: EmissivityVH | None = None
    nprop_obs: int = 0
    losses_epoch: Mapping[str, np.ndarray] = field(default_factory=dict)
    losses_batch: Mapping[str, np.ndarray] = field(default_factory=dict)
    channel_names: Sequence[str] = ()
    dep_before: np.ndarray | None = None
    dep_after: np.ndarray | None = None
    title: str = ""
    spectrum_masks: Mapping[str, np.ndarray] = field(default_factory=dict)
    dates: Sequence[str] = ()
    trained_freqs_ghz: Mapping[str, Sequence[float]] = field(default_factory=dict)
    report: Mapping[str, Any] | None = None
    report_text: str = ""


def _day_label(d: PlotInputs, day: int) -> str:
    return d.dates[day] if len(d.dates) > day else f"step {day}"


def _map_plots(d: PlotInputs, plot_dir: Path, add) -> None:
    """SIC, SIC error, empirical state and ice emissivity maps of the chosen day."""
    day = int(d.day)
    when = _day_label(d, day)
    _sic_maps(d, plot_dir, add, day, when)
    if d.sic is not None and d.sic_truth is not None:
        _sic_error_maps(d, plot_dir, add, day, when)
    water = None if d.sic is None else np.asarray(d.sic)[:, day] < OPEN_WATER_SIC
    if d.props_grid is not None and np.asarray(d.props_grid).shape[-1] > 0:
        _state_maps(d, plot_dir, add, day, when, water)
    _emissivity_maps(d, plot_dir, add, day, when, water)


def _sic_maps(d: PlotInputs, plot_dir: Path, add, day: int, when: str) -> None:
    """``map_sic.png``: every SIC of the day side by side (trained, background, truth, classic)."""
    sic_fields: dict[str, np.ndarray] = {}
    for name, arr in (("trained", d.sic), ("background", d.sic_background), ("truth", d.sic_truth)):
        if arr is not None:
            sic_fields[name] = np.asarray(arr)[:, day]
    for name, arr in d.sic_classic.items():
        sic_fields[name.replace("_", " ")] = np.asarray(arr)[:, day]
    if not sic_fields:
        return
    add(
        plot_maps(
            plot_dir / "map_sic.png",
            d.lon,
            d.lat,
            sic_fields,
            title=f"{d.title} sea ice concentration, {when}",
            cmap="ice",
            vmin=0.0,
            vmax=1.0,
            units="sea ice concentration (fraction, 0-1)",
        ),
        f"Sea ice concentration on {when}: trained, background"
        + (", truth" if d.sic_truth is not None else "")
        + ("".join(f", {k.replace('_', ' ')}" for k in d.sic_classic))
        + "; white cells had no data.",
    )


def _sic_error_maps(d: PlotInputs, plot_dir: Path, add, day: int, when: str) -> None:
    """``map_sic_error.png``: each SIC of the day minus the twin's truth."""
    truth = np.asarray(d.sic_truth)[:, day]
    err = {"trained - truth": np.asarray(d.sic)[:, day] - truth}
    if d.sic_background is not None:
        err["background - truth"] = np.asarray(d.sic_background)[:, day] - truth
    for name, arr in d.sic_classic.items():
        err[f"{name.replace('_', ' ')} - truth"] = np.asarray(arr)[:, day] - truth
    add(
        plot_maps(
            plot_dir / "map_sic_error.png",
            d.lon,
            d.lat,
            err,
            title=f"{d.title} SIC error, {when}",
            cmap="balance",
            vmin=-0.5,
            vmax=0.5,
            centre_zero=True,
            units="SIC minus truth (fraction)",
        ),
        f"SIC minus the twin's truth on {when} (blue: too little ice, red: too much).",
    )


def _state_maps(d: PlotInputs, plot_dir: Path, add, day: int, when: str, water: np.ndarray | None) -> None:
    """``map_propK.png``: each grid empirical state variable of the day, open water masked."""
    props = np.asarray(d.props_grid)
    for k in range(props.shape[-1]):
        add(
            plot_maps(
                plot_dir / f"map_prop{k}.png",
                d.lon,
                d.lat,
                {f"P{k}": props[:, day, k]},
                title=f"{d.title} empirical state P{k}, {when}",
                cmap="viridis",
                units=f"P{k} (dimensionless latent ice/snow property)",
                open_water=water,
            ),
            f"Grid empirical state variable P{k} on {when} (open water and unobserved cells masked).",
        )


def _emissivity_maps(d: PlotInputs, plot_dir: Path, add, day: int, when: str, water: np.ndarray | None) -> None:
    """``map_ice_emis.png``: the gridded ice emissivity of the day at :data:`MAP_CHANNELS`, open water masked."""
    emis = {c: np.asarray(d.emis_grid[c])[:, day] for c in MAP_CHANNELS if c in d.emis_grid}
    if not emis:
        return
    add(
        plot_maps(
            plot_dir / "map_ice_emis.png",
            d.lon,
            d.lat,
            emis,
            title=f"{d.title} sea ice emissivity, {when}",
            cmap="thermal",
            units="sea ice emissivity (1)",
            open_water=water,
        ),
        f"Sea ice emissivity at {'/'.join(emis)} from the trained model on {when} (open water masked).",
    )


def _spectrum_plots(d: PlotInputs, plot_dir: Path, add) -> None:
    day = int(d.day)
    when = _day_label(d, day)
    if d.emissivity_model is None or d.props_grid is None or d.sic is None or d.t_skin_map_k is None:
        return

    def evaluate(groups):
        """Spectra (V, H) of each group's median state at its median temperature (Q = 0)."""
        return {
            f"{label}, T={t:.0f} K": d.emissivity_model.emissivity_vh(
                np.full(SPECTRUM_FREQ_GHZ.size, t), np.concatenate([p, np.zeros(d.nprop_obs)]), SPECTRUM_FREQ_GHZ
            )
            for label, (t, p) in groups.items()
        }

    sic, props, t = (np.asarray(a)[:, day] for a in (d.sic, d.props_grid, d.t_skin_map_k))
    spectra = evaluate(spectrum_groups(sic, props, t))
    if spectra:
        add(
            plot_spectra(
                plot_dir / "spectra.png",
                SPECTRUM_FREQ_GHZ,
                spectra,
                title=f"{d.title} sea ice emissivity spectra by tercile of P0, {when}",
                trained_freqs_ghz=d.trained_freqs_ghz,
            ),
            f"Emissivity spectra of consolidated ice (SIC > 0.8) on {when}, median state of each tercile of P0; "
            "markers: the trained channels.",
        )
    if d.spectrum_masks:
        typed = evaluate(
            spectrum_groups_from_masks({k: np.asarray(m)[:, day] for k, m in d.spectrum_masks.items()}, sic, props, t)
        )
        if typed:
            add(
                plot_spectra(
                    plot_dir / "spectra_ice_types.png",
                    SPECTRUM_FREQ_GHZ,
                    typed,
                    title=f"{d.title} sea ice emissivity spectra by ice type, {when}",
                    trained_freqs_ghz=d.trained_freqs_ghz,
                ),
                f"Emissivity spectra of the trained state in the twin's first-year and multi-year ice on {when}.",
            )


def hemisphere_series(
    sources: Mapping[str, np.ndarray | None], lat: np.ndarray, area_km2: np.ndarray
) -> tuple[dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], dict[str, dict[str, str]]]:
    """The daily extent and area of each SIC map (label -> (ngrid, nstep) or None), each hemisphere's
    own: part -> label -> (extent, area) (10^6 km^2, :func:`extent_area` with the cells' areas
    ``area_km2`` (ngrid,)), the parts "north" and "south" on a grid with both, else the one part "".
    The notes (part -> label -> text) give the coverage of the maps other than trained, background and
    truth (the classic algorithms: observed cells only) where it is under 99.9 %."""
    parts = hemispheres(lat)
    series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    notes: dict[str, dict[str, str]] = {}
    for hemi, _, rows in parts:
        part = hemi if len(parts) > 1 else ""
        series[part], notes[part] = {}, {}
        for label, arr in sources.items():
            if arr is None:
                continue
            sic = np.asarray(np.asarray(arr)[rows], dtype=np.float64)  # the hemisphere's rows, then float64
            series[part][label] = extent_area(sic, np.asarray(area_km2)[rows])
            cover = float(np.isfinite(sic).mean())
            if label not in ("trained", "background", "truth") and cover < 0.999:
                notes[part][label] = f"observed cells only, {100 * cover:.0f} % of cell-days"
    return series, notes


def _time_series_plot(d: PlotInputs, plot_dir: Path, add) -> None:
    if d.sic is None:
        return
    nstep = np.asarray(d.sic).shape[1]
    dates = list(d.dates) if len(d.dates) == nstep else None
    if dates is None:
        return
    cells = grid_cells(np.asarray(d.lon, np.float32), np.asarray(d.lat, np.float32))  # the files' cell_area
    if cells is not None:
        area = cells.area_m2 / 1e6
    else:
        area = np.full(np.shape(d.lat), rasterise(d.lon, d.lat).cell_area_km2)
    cell_km2 = float(np.median(area))
    sources = {"trained": d.sic, "background": d.sic_background, "truth": d.sic_truth}
    sources.update({name.replace("_", " "): arr for name, arr in d.sic_classic.items()})
    series, notes = hemisphere_series(sources, d.lat, area)
    add(
        plot_time_series(
            plot_dir / "timeseries_extent_area.png",
            dates,
            series,
            title=(
                f"{d.title} daily sea ice extent and area (SIC >= {OPEN_WATER_SIC:g}, "
                + ("median cell" if np.ptp(area) > 1e-6 * cell_km2 else "cells of")
                + f" {cell_km2:,.0f} km$^2$)"
            ),
            notes=notes,
        ),
        "Daily sea ice extent (area of cells with SIC >= 0.15) and area (SIC-weighted) of each SIC map"
        + (", each hemisphere on a row of its own." if len(series) > 1 else "."),
    )


def make_plots(plot_dir: Path, inputs: PlotInputs) -> list[Path]:
    """Draw the standard plots of a run into ``plot_dir`` and write the report ``index.html``.

    Maps for the chosen day: SIC (trained, background, truth, classic), SIC
    minus truth, each empirical variable and the 10v/37v/89v ice emissivity
    (open water masked); emissivity spectra of representative ice states;
    the daily extent and area; loss curves per term; departure histograms and
    statistics before/after training. Returns the PNG paths and the index (last).
    """
    plot_dir = Path(plot_dir)
    plot_dir.mkdir(parents=True, exist_ok=True)
    d = inputs
    entries: list[tuple[str, str]] = []
    paths: list[Path] = []

    def add(path: Path, caption: str) -> None:
        paths.append(path)
        entries.append((path.name, caption))

    _map_plots(d, plot_dir, add)
    _spectrum_plots(d, plot_dir, add)
    _time_series_plot(d, plot_dir, add)
    if d.losses_epoch:
        add(
            plot_loss_curves(
                plot_dir / "loss_epoch.png", d.losses_epoch, xlabel="epoch", title=f"{d.title} cost terms per epoch"
            ),
            "Cost terms (J / nobs) per epoch; total includes the monitored warm-ice term.",
        )
    if d.losses_batch:
        add(
            plot_loss_curves(
                plot_dir / "loss_batch.png", d.losses_batch, xlabel="batch", title=f"{d.title} cost terms per batch"
            ),
            "Cost terms (J / nobs) per batch.",
        )
    if d.dep_after is not None and len(d.channel_names):
        add(
            plot_departure_histograms(
                plot_dir / "departures_hist.png",
                d.channel_names,
                d.dep_before,
                d.dep_after,
                title=f"{d.title} observed minus simulated TB (K)",
            ),
            "Histograms of observed minus simulated TB per channel, before and after training.",
        )
        add(
            plot_departure_stats(
                plot_dir / "departures_stats.png",
                d.channel_names,
                d.dep_before,
                d.dep_after,
                title=f"{d.title} departure mean and standard deviation",
            ),
            "Mean and standard deviation of observed minus simulated TB per channel, before and after training.",
        )
    paths.append(
        write_index(
            plot_dir,
            entries,
            title=f"{d.title.rstrip(':')} report".strip(),
            summary=d.report,
            summary_text=d.report_text,
        )
    )
    return paths


__all__ = ["MAP_CHANNELS", "PlotInputs", "hemisphere_series", "make_plots", "write_index"]
