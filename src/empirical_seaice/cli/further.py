"""The further options of ``seaice-training`` (beyond the reference's): preset, data files,
training, run control.

Added to the parser by :func:`add_further_options`, in ``-h``'s order; the parsed values become
configuration in :mod:`empirical_seaice.cli.configure`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from empirical_seaice.config import (
    BATCH_ORDERS,
    DEPRECATED_OPTIMIZERS,
    FULL_PRIORS_MAX_SIC_ROWS,
    MAP_PRIORS,
    OPTIMIZERS,
    PRESETS,
)
from empirical_seaice.config.ensemble import DEFAULT_SIC_ERROR, INFLATIONS
from empirical_seaice.errors import SeaIceError

REFERENCE_INIT = "reference"
"""``--ice-emis-init reference``: the reference's initialisation of the ice emissivity."""


def add_further_options(ours) -> None:
    """Our options (``--unfused-step`` ... ``--verbose``) in the argument group ``ours``."""
    ours.add_argument(
        "--unfused-step",
        action="store_true",
        help="Train with the tensor (autograd) step instead of the compiled fused step "
        "(the default where it applies: CPU, --optimizer deferred-adam; same results to float32 rounding).",
    )
    ours.add_argument(
        "--model",
        choices=sorted(PRESETS),
        default="v2",
        help="Reference configuration (preset): v1 (AMSR2, linear) or v2 (multi-sensor network) (default v2).",
    )
    ours.add_argument(
        "--seaice-background",
        type=Path,
        default=None,
        metavar="FILE",
        help="Background (initial) SIC file (default: ifs_seaice*.nc in --data).",
    )
    ours.add_argument(
        "--sensor-catalogue",
        type=Path,
        default=None,
        metavar="FILE",
        help="TOML file adding or overriding sensors of the shipped catalogue for this run "
        "(README 'Sensors'); saved with the model.",
    )
    ours.add_argument(
        "--tsfc-background",
        type=Path,
        default=None,
        metavar="FILE",
        help="Daily skin-temperature file (default: ifs_tsfc*.nc in --data).",
    )
    ours.add_argument(
        "--grid-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="Grid description with lon, lat per grid point, as the v2 reference reads it (default: grid.nc "
        "in --data if there; else LON, LAT of the skin-temperature file). With CF bounds (lon_bnds, lat_bnds) "
        "and optionally cell_area, the outputs' grid cells are those.",
    )
    ours.add_argument(
        "--validation-fraction",
        type=float,
        default=None,
        metavar="F",
        help="Fraction of observations held out of training; their observation cost is reported per epoch "
        "(default 0.1 from 20,000 observations on, else 0; 0 with --exact-reference).",
    )
    ours.add_argument(
        "--early-stopping",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Stop when the held-out observation cost no longer improves and keep the best epoch (default: on "
        "when observations are held out, off with --exact-reference; --no-early-stopping: train every epoch).",
    )
    ours.add_argument(
        "--patience",
        type=int,
        default=None,
        metavar="N",
        help="Early stopping: epochs without a lower held-out cost before stopping (default 1).",
    )
    ours.add_argument(
        "--region-stopping",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Early stopping on a grid of both hemispheres: hold each hemisphere's state at its own best epoch "
        "once its own held-out cost stops improving, while the other trains on (default: on; "
        "--no-region-stopping: one stop for the whole grid).",
    )
    ours.add_argument(
        "--lr-decay",
        type=float,
        default=None,
        metavar="G",
        help="Multiply the learning rate by G after every epoch (default 1: constant).",
    )
    ours.add_argument(
        "--plateau-cuts",
        type=int,
        default=None,
        metavar="N",
        help="Early stopping: up to N times halve the learning rate where training would stop (default 0).",
    )
    ours.add_argument(
        "--exact-reference",
        action="store_true",
        help="Run the published configuration of the preset: switch off every improvement of ours "
        "(initial ice emissivity, automatic batch size and learning rate, epochs, optimiser scheme, "
        "whole-map priors, batch order; README 'Presets'). Explicit flags still apply.",
    )
    ours.add_argument(
        "--sic-background-error",
        type=float,
        metavar="SIGMA",
        help="Add the prior sum (C - C_b)^2 / SIGMA^2 of SIC on the background map (default: off, as the reference).",
    )
    ours.add_argument(
        "--sic-smoothness",
        type=_sigma_or_off("--sic-smoothness"),
        metavar="SIGMA|off",
        help="Add the smoothness prior sum (C_g - C_h)^2 / SIGMA^2 of SIC over neighbouring grid points on the "
        "same day (default: off, as the reference; needs the grid's lon/lat and the whole-map priors at every "
        "step, --map-priors full or auto).",
    )
    ours.add_argument(
        "--sic-smoothness-time",
        type=_sigma_or_off("--sic-smoothness-time"),
        metavar="SIGMA|off",
        help="The smoothness prior sum (C_t - C_t+1)^2 / SIGMA^2 of SIC over consecutive days of each grid point "
        "(default: 0.03; off with --exact-reference or 'off'). It acts with the whole-map priors at every step "
        "(--map-priors auto on maps of up to 200,000 rows, or full); a run with sampled priors goes without it.",
    )
    ours.add_argument(
        "--emis-ceiling",
        type=_sigma_or_off("--emis-ceiling"),
        metavar="SIGMA|off",
        help="The ceiling sum max(e - 1, 0)^2 / SIGMA^2 on the ice emissivity of every observed channel "
        "(default for v1: 0.01, whose linear model alone can exceed 1; off for v2 and with --exact-reference).",
    )
    ours.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="Adam learning rate of the SIC map and the empirical state (default: automatic, 1e-3 x 1024 / "
        "batch size: the reference's 1e-3 at its batch of 1024).",
    )
    ours.add_argument(
        "--network-learning-rate",
        type=float,
        default=None,
        help="Adam learning rate of the network and the TB biases, which get a gradient at every step "
        "(default: the --learning-rate in effect up to the reference's 1e-3, above it sqrt(LR x 1e-3): "
        "2.83e-3 at batch 128, 1.41e-3 at 512).",
    )
    ours.add_argument(
        "--optimizer",
        choices=(*OPTIMIZERS, *DEPRECATED_OPTIMIZERS),
        default=None,
        help="State-table optimiser: deferred-adam (dense Adam's updates, applied when a row is next read: "
        "cost per step scales with the batch; default), sparse-adam (torch SparseAdam: rows a batch misses "
        "keep their moments) or dense-adam (plain Adam over every table, the reference's way, ~10x slower "
        "at a year). The old names still work: sparse = deferred-adam, lazy = sparse-adam, dense = dense-adam.",
    )
    ours.add_argument(
        "--map-priors",
        choices=MAP_PRIORS,
        default=None,
        help="Whole-map SIC priors (range, false ice, warm ice) at each step: full (every row of the map "
        "at every step, the reference's way: dense-adam, or deferred-adam in the fused step), sampled over "
        "the rows of the batch (unbiased, cost scales with the batch), or auto (default: full up to "
        f"{FULL_PRIORS_MAX_SIC_ROWS:,} SIC-map rows, grid points x (days + 1), sampled above; dense-adam: "
        "full, sparse-adam: sampled).",
    )
    ours.add_argument(
        "--batch-order",
        choices=BATCH_ORDERS,
        default=None,
        help="Minibatches: shuffled (observations shuffled every epoch; default) or reference-blocks "
        "(contiguous blocks of the observations in file order, only the block order shuffled: the "
        "v2 reference).",
    )
    ours.add_argument("--seed", type=int, default=0, help="Seed of the run's random generator (default 0).")
    ours.add_argument(
        "--ensemble",
        type=int,
        default=None,
        metavar="N",
        help="Also train N-1 perturbed members (perturbed observations, first-guess SIC and seed) into "
        "<output>/members/KK and write seaice_ensemble_TAG.nc, the ensemble mean SIC and its spread per grid "
        "point and day (N >= 2; costs N trainings; default: no ensemble).",
    )
    ours.add_argument(
        "--ensemble-sic-error",
        type=float,
        default=None,
        metavar="SIGMA",
        help="--ensemble: standard deviation of the members' first-guess SIC perturbation "
        f"(default {DEFAULT_SIC_ERROR}).",
    )
    ours.add_argument(
        "--ensemble-inflation",
        choices=INFLATIONS,
        default=None,
        help="--ensemble: the stated spread: none (the members' standard deviation) or observations (scaled so "
        "that it matches the observation departures; docs/method.md) (default observations).",
    )
    ours.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="Where to train: auto = the CPU, where the fused step trains faster than a GPU and with the "
        "reference's exact whole-map priors (CUDA only without numba) (default auto).",
    )
    ours.add_argument(
        "--warm-ice",
        choices=("diagnostic", "effective"),
        default="diagnostic",
        help="Warm-ice term: diagnostic (reference: zero gradient, monitored only) or "
        "effective (differentiable) (default diagnostic).",
    )
    ours.add_argument(
        "--angle-input",
        choices=("auto", "on", "off"),
        default=None,
        help="v2: give the network the cosine of the view (local zenith) angle as an input: auto = when "
        "the run has a cross-track sensor (default; off with --exact-reference, as in the reference).",
    )
    ours.add_argument(
        "--ice-emis-init",
        type=_ice_emis_init,
        default=None,
        metavar="E",
        help="Start the ice emissivity near E (0 < E < 1) through the output-layer biases, or 'reference' "
        "for the reference's initialisation (v2: zero biases, emissivity ~0.5, which a month of data "
        "does not recover from against its anchor floor) (default: v1 0.93, v2 0.9).",
    )
    ours.add_argument(
        "--threads",
        type=_threads,
        default=None,
        metavar="N",
        help="CPU threads of the training step, the passes and the output files' compression, or auto "
        "(default: the CPUs this process may use (affinity, cgroup quota), at most 16; the tensor step, "
        "--unfused-step or where the fused step does not apply, then trains on one: its operations are small).",
    )
    ours.add_argument(
        "--distributed",
        action="store_true",
        help="Train sharded over the processes of a torchrun launch (on by itself when torchrun starts "
        "more than one process): grid points split by observation count, gloo on CPU, nccl on GPU "
        "(README 'Training on several processes').",
    )
    ours.add_argument(
        "--shard-order",
        choices=("global", "local"),
        default="global",
        help="Batches of a --distributed run: 'global' (default; the single-process run's batches, each rank "
        "taking its own observations from each) or 'local' (each rank shuffles its own observations; memory "
        "per rank independent of the run's size).",
    )
    ours.add_argument(
        "--no-progress", action="store_true", help="No progress display on stderr (drawn only on a terminal anyway)."
    )
    talk = ours.add_mutually_exclusive_group()
    talk.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="Batch mode: no progress display, no summary on stdout (it is still written to "
        "summary_TAG.txt / summary_TAG.json, with the run's warnings), only errors on stderr.",
    )
    ours.add_argument(
        "--resume",
        action="store_true",
        help="Resume training from the last checkpoint of this tag in --output (refused if the data, "
        "model, period or training flags differ); with --ensemble N, each member from its own.",
    )
    ours.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=10.0,
        metavar="MIN",
        help="Also write the training checkpoint within an epoch every MIN minutes (default 10; 0 = epoch ends "
        "only: an epoch's end writes it when the last one is a minute old or more, and after the last epoch).",
    )
    ours.add_argument(
        "--force-outputs",
        action="store_true",
        help="Write the outputs even when the health checks after training fail; they are then marked "
        "health_check = failed in their attributes and in the manifest.",
    )
    talk.add_argument("-v", "--verbose", action="count", default=0, help="More logging on stderr (-v info, -vv debug).")


OFF = "off"
"""The value of ``--sic-smoothness``/``--sic-smoothness-time``/``--emis-ceiling`` that switches the prior off."""


def _number_or_word(flag: str, word: str, what: str, in_range, range_what: str):
    """An argparse type: ``word``, or a number for which ``in_range`` holds (one-line errors naming ``flag``)."""

    def parse(text: str) -> float | str:
        if text == word:
            return text
        try:
            value = float(text)
        except ValueError:
            raise SeaIceError(f"{flag}: expected a number {what} or {word!r}, got {text!r}") from None
        if not in_range(value):
            raise SeaIceError(f"{flag}: expected {range_what}, got {value}")
        return value

    return parse


def _sigma_or_off(flag: str):
    """An argparse type: a number > 0 or ``off``."""
    return _number_or_word(flag, OFF, "SIGMA > 0", lambda v: 0.0 < v < float("inf"), "a finite SIGMA > 0")


def _threads(text: str) -> int | None:
    """``--threads``: a whole number >= 1, or ``auto`` (None: :func:`empirical_seaice.threads.auto_threads`)."""
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise SeaIceError(f"--threads: expected a whole number >= 1 or 'auto', got {text!r}") from None
    if value < 1:
        raise SeaIceError(f"--threads: must be >= 1, got {value}")
    return value


_ice_emis_init = _number_or_word("--ice-emis-init", REFERENCE_INIT, "0 < E < 1", lambda v: 0.0 < v < 1.0, "0 < E < 1")
"""``--ice-emis-init``: a number in (0, 1) or ``reference``."""


__all__ = ["REFERENCE_INIT", "OFF", "add_further_options"]
