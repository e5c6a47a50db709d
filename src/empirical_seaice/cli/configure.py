"""From parsed ``seaice-training`` flags to the run's typed configuration and product options.

:func:`configs_from_args` starts from :func:`empirical_seaice.config.starting_configuration`
(our defaults, or the reference's with ``--exact-reference``) and applies every flag given
explicitly; :func:`product_options` collects the products' flags.
"""

from __future__ import annotations

import argparse
import logging
import sys

from empirical_seaice.cli.further import OFF, REFERENCE_INIT
from empirical_seaice.cli.parser import PROG
from empirical_seaice.config import (
    DEPRECATED_OPTIMIZERS,
    CostConfig,
    DataConfig,
    TrainingConfig,
    get_preset,
    replace,
    starting_configuration,
)
from empirical_seaice.errors import SeaIceError

log = logging.getLogger(__name__)


def _cost_from_args(args: argparse.Namespace, cost: CostConfig) -> CostConfig:
    """The preset's cost with the cost flags: warm-ice mode, SIC background and smoothness priors, the
    ice-emissivity ceiling."""
    cost = replace(cost, warm_ice=args.warm_ice)
    if args.sic_background_error is not None:
        cost = replace(cost, sic_background_prior=True, sic_background_error=args.sic_background_error)
    if args.sic_smoothness is not None:  # given: a sigma, or off
        cost = replace(cost, sic_smoothness_error=None if args.sic_smoothness == OFF else args.sic_smoothness)
    if args.sic_smoothness_time is not None:
        time_error = None if args.sic_smoothness_time == OFF else args.sic_smoothness_time
        cost = replace(cost, sic_smoothness_time_error=time_error)
    if args.emis_ceiling is not None:
        cost = replace(cost, emis_ceiling_error=None if args.emis_ceiling == OFF else args.emis_ceiling)
    return cost


def configs_from_args(args: argparse.Namespace):
    """Turn parsed arguments into ``(data, preset, cost, training)`` configuration.

    The starting point is :func:`empirical_seaice.config.starting_configuration`
    (our defaults, or the reference's with ``--exact-reference``); every flag
    given explicitly overrides it.

    Raises
    ------
    SeaIceError
        A value a configuration dataclass rejects (its message names the flag).
    """
    preset, training = starting_configuration(args.model, exact_reference=args.exact_reference)
    if args.ice_emis_init == REFERENCE_INIT:
        preset = replace(preset, model=replace(preset.model, ice_emis_init=get_preset(args.model).model.ice_emis_init))
    elif args.ice_emis_init is not None:
        preset = replace(preset, model=replace(preset.model, ice_emis_init=args.ice_emis_init))
    angle = getattr(args, "angle_input", None)
    if angle is not None:
        if preset.model.version != "v2":
            raise SeaIceError(f"--angle-input: only the v2 network takes the angle, not --model {args.model}")
        value = {"auto": None, "on": True, "off": False}[angle]
        preset = replace(preset, model=replace(preset.model, angle_input=value))
    sensors = tuple(args.sensors) if args.sensors else preset.sensors
    data = DataConfig(
        data=args.data,
        sensors=sensors,
        stepstart=args.stepstart,
        nsteps=args.nsteps,
        seaice_background=args.seaice_background,
        tsfc_background=args.tsfc_background,
        grid_file=args.grid_file,
        sensor_catalogue=args.sensor_catalogue,
        start_date=args.start_date,
    )
    cost = _cost_from_args(args, preset.cost)
    if args.optimizer in DEPRECATED_OPTIMIZERS:
        print(
            f"{PROG}: note: --optimizer {args.optimizer} is now called {DEPRECATED_OPTIMIZERS[args.optimizer]}",
            file=sys.stderr,
        )
    explicit = {
        "nepochs": args.nepochs,
        "batch_size": args.batchsize,
        "learning_rate": args.learning_rate,
        "network_learning_rate": args.network_learning_rate,
        "optimizer": args.optimizer,
        "map_priors": args.map_priors,
        "batch_order": args.batch_order,
        "validation_fraction": args.validation_fraction,
        "early_stopping": args.early_stopping,
        "patience": args.patience,
        "region_stopping": args.region_stopping,
        "lr_decay": args.lr_decay,
        "plateau_cuts": args.plateau_cuts,
    }
    explicit = {k: v for k, v in explicit.items() if v is not None}
    if "validation_fraction" in explicit or explicit.get("early_stopping"):
        explicit["validation_min_obs"] = 0  # asked for: held out whatever the data size
    if explicit.get("validation_fraction") == 0.0 and "early_stopping" not in explicit:
        explicit["early_stopping"] = False  # no held-out observations: nothing to stop on
    if "optimizer" in explicit and "map_priors" not in explicit:
        explicit["map_priors"] = "auto"  # the optimiser's own default
    training = replace(
        training,
        **explicit,
        seed=args.seed,
        reproducible=args.reproducible,
        device=args.device,
        fused_step=not args.unfused_step,
        tensor_step_threads=1 if getattr(args, "threads", 1) is None else None,  # an automatic --threads
    )
    _check_early_stopping_flags(training, explicit)
    if training.validation_fraction > HELD_OUT_WARN:
        log.warning(
            "--validation-fraction %g holds out more observations than it trains on (%.1f %% left to train the "
            "state, the SIC and the network); the held-out cost needs a tenth (0.1, the default)",
            training.validation_fraction, 100 * (1 - training.validation_fraction),
        )  # fmt: skip
    return data, preset, cost, training


HELD_OUT_WARN = 0.5
"""A ``--validation-fraction`` above this is warned about: most observations would train nothing."""


def _check_early_stopping_flags(training: TrainingConfig, explicit: dict) -> None:
    """``--patience``, ``--plateau-cuts`` and ``--region-stopping`` act only where early stopping does: a
    one-line error where it is off (``--exact-reference``, ``--no-early-stopping``, ``--validation-fraction 0``),
    not a flag dropped unseen."""
    if training.early_stopping and training.validation_fraction > 0:
        return
    for flag in ("patience", "plateau_cuts", "region_stopping"):
        if flag in explicit:
            raise SeaIceError(
                f"--{flag.replace('_', '-')}: applies only with early stopping, which is off here "
                "(--exact-reference, --no-early-stopping or --validation-fraction 0); add --validation-fraction F "
                "--early-stopping or drop it"
            )


MODE_IGNORES = {
    "diagsonly": (
        "model", "ice_emis_init", "angle_input", "warm_ice", "sic_background_error", "sic_smoothness",
        "sic_smoothness_time", "stepstart", "nsteps", "start_date", "nepochs", "batchsize",
        "learning_rate", "network_learning_rate", "optimizer", "map_priors", "batch_order", "validation_fraction",
        "early_stopping", "patience", "region_stopping", "plateau_cuts", "lr_decay", "unfused_step",
        "checkpoint_minutes", "force_outputs", "emis_ceiling", "exact_reference",
    ),
    "retrieve": (
        "model", "ice_emis_init", "angle_input", "warm_ice", "sic_background_error", "sic_smoothness",
        "sic_smoothness_time", "network_learning_rate", "optimizer", "map_priors", "validation_fraction",
        "early_stopping", "patience", "region_stopping", "plateau_cuts", "checkpoint_minutes", "emis_ceiling",
        "exact_reference",
    ),
}  # fmt: skip
"""The flags each mode does without: ``--diagsonly`` takes the trained run's model, cost, period and
training setup from its model file and trains nothing; ``--retrieve`` takes the model and cost from the
trained model and fits the state alone (deferred Adam with the whole-map priors chosen as in training,
``auto``, no hold-out, no checkpoint)."""


def ignored_flags(args: argparse.Namespace, mode: str) -> list[str]:
    """The flags of :data:`MODE_IGNORES` ``[mode]`` given with a value other than their default (the
    parser's), as ``--name``: flags the user typed that this mode would otherwise drop without a word."""
    from empirical_seaice.cli.parser import build_parser

    parser = build_parser()
    return [
        "--" + dest.replace("_", "-") for dest in MODE_IGNORES[mode] if getattr(args, dest) != parser.get_default(dest)
    ]


def product_options(args: argparse.Namespace):
    """The :class:`~empirical_seaice.products.write.ProductOptions` of the parsed flags.

    Raises
    ------
    SeaIceError
        --grid-channels with --grid-freqs, or a frequency that is not a number.
    """
    from empirical_seaice.products.write import ProductOptions, parse_freqs

    if args.grid_channels and args.grid_freqs:
        raise SeaIceError("--grid-channels and --grid-freqs: give at most one of them")
    return ProductOptions(
        export=args.export,
        gridded=not args.no_gridded,
        grid_channels=tuple(args.grid_channels) if args.grid_channels else None,
        grid_freqs_ghz=parse_freqs(args.grid_freqs),
        classic=not args.no_classic,
        # --diagsonly ignores --exact-reference: the model file says whether it is the reference's
        open_water_filter=not (args.no_open_water_filter or (args.exact_reference and not args.diagsonly)),
        plots=args.plots,
        plot_day=args.plot_day,
    )


__all__ = ["configs_from_args", "product_options", "ignored_flags", "MODE_IGNORES"]
