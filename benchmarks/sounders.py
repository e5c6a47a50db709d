"""Imagers and a cross-track sounder on the twin: the numbers of docs/usage.md, "Sensors" (not a test).

1. A twin with AMSR2 and ATMS (``tiny`` preset: 100 km grid north of 60 N,
   6 days; ``--keep`` of the swath points).
2. v2 trained on the first ``--ntrain`` days with AMSR2 alone and with
   AMSR2 + ATMS, each for ``--seeds`` seeds: SIC RMSE against the truth
   (the spread over seeds is the noise), and the ATMS departures
   (root mean square of y - H(x) over the used ATMS channels, K) before and
   after training. ``--lr`` and ``--batch`` set Adam's step size and the
   minibatch; ``--batch-with-sounder`` the minibatch of the AMSR2 + ATMS runs
   (default ``--batch``; 333 gives them as many steps per epoch as AMSR2
   alone at 128, ATMS having ~1.6 times AMSR2's observations);
   ``--angle-input`` gives the network the view-angle input in the runs with
   ATMS (``ModelConfig.angle_input`` left automatic; the v2 preset has it off).
   ``--optimizer`` sets the state optimiser (``dense-adam``: the reference's
   plain Adam with the whole-map priors in full at every step) and
   ``--map-priors`` the whole-map priors (``TrainingConfig.map_priors``;
   default: the library's, sampled with ``deferred-adam``);
   ``--sensor-catalogue FILE`` is read by the runs with ATMS (e.g. other ATMS
   observation errors; the twin keeps the shipped catalogue's noise);
   ``--atms-error-scale K`` writes such a file, the used ATMS channels with
   an observation error of ``K`` times their instrument noise ``noise_k``
   (the shipped catalogue has K = 3; K = 1 is the errors before 2026-11-30).
   The twin: ``--noise-scale`` (0: noise-free) and ``--no-ice-view-angle``
   (the ice emissivity of ATMS ignores the view angle,
   ``TwinConfig.ice_view_angle``).
3. Retrieval on the remaining days with the sounder alone (ATMS), using the
   model trained on AMSR2 alone: SIC RMSE of the background and of the
   retrieval against the truth, and the ATMS departures before and after.

Usage::

    python benchmarks/sounders.py [--seeds 3] [--nepochs 15] [--lr 0.01] [--batch 128]
        [--batch-with-sounder N] [--angle-input] [--optimizer NAME] [--map-priors M]
        [--sensor-catalogue FILE | --atms-error-scale K]
        [--noise-scale 1] [--no-ice-view-angle] [--keep 0.15] [--work DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from empirical_seaice.config import DataConfig, Preset, TrainingConfig, get_preset
from empirical_seaice.run import train as pipeline
from empirical_seaice.run.retrieve import run_retrieval
from empirical_seaice.twin import generate_twin, get_twin_preset


def write_atms_error_catalogue(path: Path, scale: float) -> Path:
    """A user catalogue giving the used ATMS channels an observation error of ``scale`` times their
    instrument noise (``noise_k``; the shipped catalogue has 3): 1 is the errors before 2026-11-30."""
    from empirical_seaice.sensors import load_catalogue, shipped_catalogue_path
    from empirical_seaice.sensors.catalogue import tomllib

    with open(shipped_catalogue_path(), "rb") as f:
        channels = tomllib.load(f)["channels"]
    lines = ["format_version = 1", "", "[channels]"]
    cat = load_catalogue()
    for name in cat.sensors["atms"].channels:
        entry = dict(channels[name], obs_error_k=cat.channels[name].noise_k * scale)
        fields = ", ".join(f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}" for k, v in entry.items())
        lines.append(f'"{name}" = {{ {fields} }}')
    path.write_text("\n".join(lines) + "\n")
    return path


def rms_departure(stats, basis, sensor_channels) -> float:
    """RMS of y - H(x) (K) over the given channels, weighting each by its count."""
    idx = [basis.channel_index[c] for c in sensor_channels]
    n = stats.count[idx].astype(np.float64)
    ms = stats.std[idx] ** 2 + stats.mean[idx] ** 2
    return float(np.sqrt(np.sum(n * ms) / np.sum(n)))


def sic_rmse_on_cells(work: Path, tag: str, twin: Path, cells) -> float:
    """SIC RMSE of run ``tag`` against the truth on the (grid, step) ``cells``."""
    import xarray as xr

    g, s = cells
    with xr.open_dataset(twin / "truth" / "truth_state.nc") as ds:
        truth = ds["SIC"].values[g, s].astype(np.float64)
    with xr.open_dataset(work / "out" / f"seaice_{tag}.nc") as ds:
        trained = ds["seaice"].values[g, s + 1].astype(np.float64)
    return float(np.sqrt(np.mean((trained - truth) ** 2)))


def amsr2_cells(work: Path, tag: str):
    """(grid, step) seen by the AMSR2 observations of run ``tag``."""
    import xarray as xr

    with xr.open_dataset(work / "out" / f"tbobs_{tag}.nc") as t:
        key = np.unique(t["igrid"].values.astype(np.int64) * 1000 + t["istep"].values)
    return key // 1000, key % 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--nepochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--batch-with-sounder", type=int, default=None)
    ap.add_argument("--angle-input", action="store_true")
    ap.add_argument("--optimizer", default="deferred-adam")
    ap.add_argument("--map-priors", default=None)
    ap.add_argument("--sensor-catalogue", type=Path, default=None)
    ap.add_argument("--atms-error-scale", type=float, default=None)
    ap.add_argument("--noise-scale", type=float, default=1.0)
    ap.add_argument("--no-ice-view-angle", action="store_true")
    ap.add_argument("--keep", type=float, default=0.15)
    ap.add_argument("--days", type=int, default=6)
    ap.add_argument("--ntrain", type=int, default=5)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="sounders-"))
    twin = work / "twin"
    if not twin.exists():
        cfg = get_twin_preset(
            "tiny",
            sensors=("amsr2", "atms"),
            days=args.days,
            keep_fraction=args.keep,
            noise_scale=args.noise_scale,
            ice_view_angle=not args.no_ice_view_angle,
        )
        generate_twin(cfg, twin)
    if args.atms_error_scale is not None:
        work.mkdir(parents=True, exist_ok=True)
        args.sensor_catalogue = write_atms_error_catalogue(work / "atms_errors.toml", args.atms_error_scale)
    base = get_preset("v2")
    tc = TrainingConfig(
        nepochs=args.nepochs,
        batch_size=args.batch,
        learning_rate=args.lr,
        reproducible=True,
        optimizer=args.optimizer,
        map_priors=args.map_priors,
    )
    rows = {}
    for sensors in (("amsr2",), ("amsr2", "atms")):
        angle = None if args.angle_input else False  # None: on with a cross-track sensor
        preset = Preset("v2", replace(base.model, ice_emis_init=0.9, angle_input=angle), base.cost, sensors)
        batch = args.batch if sensors == ("amsr2",) else (args.batch_with_sounder or args.batch)
        catalogue = None if sensors == ("amsr2",) else args.sensor_catalogue
        for seed in range(args.seeds):
            tag = f"{'_'.join(sensors)}_s{seed}"
            t0 = time.perf_counter()
            res = pipeline.run(
                DataConfig(data=twin, sensors=sensors, nsteps=args.ntrain, sensor_catalogue=catalogue),
                preset,
                preset.cost,
                replace(tc, seed=seed, batch_size=batch),
                output=work / "out",
                tag=tag,
                progress=False,
            )
            line = f"{tag}: SIC RMSE background {res.truth.sic_rmse_background:.4f} -> {res.truth.sic_rmse:.4f}"
            if "atms" in sensors:
                from empirical_seaice.sensors import build_channel_basis, load_catalogue

                basis = build_channel_basis(sensors, load_catalogue(catalogue))
                chans = basis.sensor(1).channels
                before = rms_departure(res.departures_before, basis, chans)
                after = rms_departure(res.departures_after, basis, chans)
                line += f"; ATMS RMS departure {before:.2f} -> {after:.2f} K"
            rows[tag] = res
            print(line, f"({time.perf_counter() - t0:.0f} s)", flush=True)
    for sensors in (("atms",), ("amsr2",)):
        r = run_retrieval(
            DataConfig(data=twin, stepstart=args.ntrain),
            tc,
            work / "out",
            "amsr2_s0",
            f"ret_{sensors[0]}",
            sensors=sensors,
            progress=False,
        )
        basis = r.obs.basis
        line = (
            f"retrieval day {args.ntrain}, {sensors[0]} alone, model trained on amsr2: SIC RMSE background "
            f"{r.truth.sic_rmse_background:.4f} -> retrieved {r.truth.sic_rmse:.4f} ({r.truth.npoints} grid-steps)"
        )
        if sensors == ("atms",):
            chans = basis.sensor(0).channels
            before = rms_departure(r.departures_before, basis, chans)
            after = rms_departure(r.departures_after, basis, chans)
            line += f"; ATMS RMS departure {before:.2f} -> {after:.2f} K"
        print(line, flush=True)
    cells = amsr2_cells(work, "amsr2_s0")
    a = [sic_rmse_on_cells(work, f"amsr2_s{s}", twin, cells) for s in range(args.seeds)]
    b = [sic_rmse_on_cells(work, f"amsr2_atms_s{s}", twin, cells) for s in range(args.seeds)]
    print(f"on the {cells[0].size} grid-steps AMSR2 sees:")
    print(f"SIC RMSE amsr2 alone: mean {np.mean(a):.4f}, range {min(a):.4f}-{max(a):.4f}")
    print(f"SIC RMSE amsr2+atms:  mean {np.mean(b):.4f}, range {min(b):.4f}-{max(b):.4f}")


if __name__ == "__main__":
    main()
