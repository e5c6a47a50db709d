"""``seaice-training``: the command line of a training / diagnostics run.

Argument parsing only: the seed's options (``--data``, ``--sensors``,
``--output``, ``--tag``, ``--modeltag``, ``--batchsize``, ``--stepstart``,
``--nsteps``, ``--nepochs``, ``--diagsonly``, ``--trainonly``,
``--reproducible``) plus ours, turned into the typed configuration of
:mod:`empirical_seaice.config` and handed to :func:`empirical_seaice.run.train.run`.

A user-caused problem (a bad flag value, a missing file, an unknown sensor)
is reported as one line ``seaice-training: error: <message>`` on stderr and
exit status 2, without a traceback. Progress (one display for the whole run)
and logging go to stderr; the summary table goes to stdout and, with the
machine-readable ``summary_TAG.json``, beside the outputs (``summary_TAG.txt``).
``--quiet`` prints nothing but errors (batch jobs).

Nothing heavy is imported before the arguments are parsed (torch, xarray,
matplotlib come with the run), so ``seaice-training -h`` is quick.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

# With OpenMP's default (active) wait policy, a second torch thread spins while
# the small ops of a training step run, which made a step 10x slower on a
# loaded 2-core machine (benchmarks/results.md). Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from collections.abc import Sequence
from pathlib import Path

from empirical_seaice.config import (
    BATCH_ORDERS,
    DEPRECATED_OPTIMIZERS,
    MAP_PRIORS,
    OPTIMIZERS,
    PRESETS,
    CostConfig,
    DataConfig,
    get_preset,
    replace,
    starting_configuration,
)
from empirical_seaice.errors import RunInterrupted, SeaIceError
from empirical_seaice.sensors import load_catalogue

PROG = "seaice-training"
EXIT_USER_ERROR = 2

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one-line :class:`SeaIceError` s (no usage dump)."""

    def error(self, message: str):
        raise SeaIceError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``seaice-training`` (every option, with its default)."""
    p = _Parser(
        prog=PROG,
        description=(
            "Train sea ice concentration, an empirical sea ice state and a sea ice emissivity "
            "model against satellite microwave radiances (Geer 2024, JAMES), and write the "
            "outputs and diagnostics."
        ),
    )
    seed = p.add_argument_group("options of the reference seaice_training.py")
    seed.add_argument(
        "--data",
        type=Path,
        default=Path("demo_data"),
        help="Directory containing the training data (layout B/C), or a layout-A "
        "monthly file (default: demo_data, the demo twin).",
    )
    seed.add_argument(
        "--sensors",
        nargs="+",
        default=None,
        metavar="SENSOR",
        help="Sensor names for training (default: the preset's: v1 amsr2; v2 amsr2 gmi ssmisf17).",
    )
    seed.add_argument(
        "--output", type=Path, default=Path("output"), help="Directory to store the output files (default: output)."
    )
    seed.add_argument(
        "--tag", default="run", help="Tag name distinguishing the output files, e.g. seaice_TAG.nc (default: run)."
    )
    seed.add_argument(
        "--modeltag", default=None, help="With --diagsonly: use the trained model of this tag (default: --tag)."
    )
    seed.add_argument(
        "--batchsize",
        type=int,
        default=None,
        help="Training batch size (default: automatic, the largest power of two up to 1024, the reference's, "
        "that gives an epoch at least ~200 steps: 1024 from 204,800 observations on).",
    )
    seed.add_argument(
        "--stepstart", type=int, default=0, help="Step in the training data from which to start (default 0)."
    )
    seed.add_argument(
        "--nsteps", type=int, default=None, help="Number of time steps (usually days) in the model (default: all)."
    )
    seed.add_argument(
        "--start-date",
        default=None,
        metavar="YYYY-MM-DD",
        help="First day of the data's period (step 0 = the 21 UTC window ending that day); "
        "default: from the bulk of the observations' Julian days.",
    )
    seed.add_argument(
        "--nepochs",
        type=int,
        default=None,
        help="Number of training epochs (default 25; with --exact-reference the reference's: v1 8, v2 25).",
    )
    mode = seed.add_mutually_exclusive_group()
    mode.add_argument(
        "--diagsonly", action="store_true", help="Compute the output diagnostics from an already-trained model."
    )
    mode.add_argument(
        "--trainonly", action="store_true", help="Only train the model and save it; write no diagnostics."
    )
    seed.add_argument(
        "--reproducible",
        action="store_true",
        help="Seeded, deterministic training: identical output files on rerun (slower).",
    )

    ours = p.add_argument_group("further options")
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
        "in --data if there; else LON, LAT of the skin-temperature file).",
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
        "--learning-rate",
        type=float,
        default=None,
        help="Adam learning rate (default: automatic, 1e-3 x 1024 / batch size: the reference's 1e-3 "
        "at its batch of 1024).",
    )
    ours.add_argument(
        "--optimizer",
        choices=(*OPTIMIZERS, *DEPRECATED_OPTIMIZERS),
        default=None,
        help="State-table optimiser: deferred-adam (dense Adam's updates, applied when a row is next read: "
        "cost per step scales with the batch; default), sparse-adam (torch SparseAdam: rows a batch misses "
        "keep their moments) or dense-adam (plain Adam over every table, the reference's way, ~10x slower "
        "at a year). The old names sparse, lazy, dense still work.",
    )
    ours.add_argument(
        "--map-priors",
        choices=MAP_PRIORS,
        default=None,
        help="Whole-map SIC priors (range, false ice, warm ice) at each step: sampled over the rows of "
        "the batch (unbiased, cost scales with the batch) or full (every row of the map at every step, "
        "the reference's way; needs dense-adam) (default: full with dense-adam, else sampled).",
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
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="Where to train: auto = CUDA when available (default auto).",
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
        type=int,
        default=1,
        metavar="N",
        help="CPU threads of torch's operators (default 1: the network's operations are "
        "small, and more threads were 20x slower on a shared 2-core machine).",
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
    ours.add_argument("--no-progress", action="store_true", help="No progress display on stderr.")
    ours.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="Batch mode: no progress display, no summary on stdout (it is still written to "
        "summary_TAG.txt / summary_TAG.json), only errors on stderr.",
    )
    ours.add_argument(
        "--resume",
        action="store_true",
        help="Resume training from the last checkpoint of this tag in --output (refused if the data, "
        "model, period or training flags differ).",
    )
    ours.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=10.0,
        metavar="MIN",
        help="Also write the training checkpoint within an epoch every MIN minutes (default 10; 0 = epoch ends only).",
    )
    ours.add_argument(
        "--force-outputs",
        action="store_true",
        help="Write the outputs even when the health checks after training fail; they are then marked "
        "health_check = failed in their attributes and in the manifest.",
    )
    ours.add_argument("-v", "--verbose", action="count", default=0, help="More logging on stderr (-v info, -vv debug).")

    prod = p.add_argument_group("products (README 'Products')")
    prod.add_argument(
        "--export",
        action="store_true",
        help="Write the trained emissivity model for NWP use: emis_model_TAG.nc (self-describing "
        "coefficients, evaluable in plain numpy) and emis_model_TAG.onnx. After training, or "
        "with --diagsonly --modeltag on a trained model.",
    )
    prod.add_argument(
        "--plots",
        action="store_true",
        help="Draw maps, spectra, loss curves and departure statistics into <output>/plots_TAG/ with an index.html.",
    )
    prod.add_argument(
        "--plot-day",
        type=int,
        default=None,
        metavar="STEP",
        help="Step (0-based, within the period) of the maps (default: the middle step).",
    )
    prod.add_argument(
        "--no-gridded", action="store_true", help="Do not write the gridded emissivity product ice_emis_grid_TAG.nc."
    )
    prod.add_argument(
        "--grid-channels",
        nargs="+",
        default=None,
        metavar="CH",
        help="Channels of the gridded emissivity product (default: the run's channels).",
    )
    prod.add_argument(
        "--grid-freqs",
        nargs="+",
        default=None,
        metavar="GHZ",
        help="Arbitrary frequencies (GHz) of the gridded product instead of channels (v2): ice_emis_v / ice_emis_h.",
    )
    prod.add_argument(
        "--no-classic",
        action="store_true",
        help="Do not compute the NASA Team / Bootstrap SIC (classic_sic_TAG.nc) and their scores.",
    )
    prod.add_argument(
        "--no-open-water-filter",
        action="store_true",
        help="Do not write seaice_filtered_TAG.nc (the trained SIC with the gradient-ratio open-water filter).",
    )
    prod.add_argument(
        "--retrieve",
        action="store_true",
        help="Retrieval: with the trained model --modeltag (in --output), fit only SIC and the "
        "empirical state to the observations of --data (emissivity model, wind correction "
        "and biases fixed); writes seaice/properties/tbsim files under --tag.",
    )
    return p


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
        open_water_filter=not (args.no_open_water_filter or args.exact_reference),
        plots=args.plots,
        plot_day=args.plot_day,
    )


_REFERENCE_INIT = "reference"


def _ice_emis_init(text: str) -> float | str:
    """``--ice-emis-init``: a number in (0, 1) or ``reference``."""
    if text == _REFERENCE_INIT:
        return text
    try:
        value = float(text)
    except ValueError:
        raise SeaIceError(f"--ice-emis-init: expected a number 0 < E < 1 or 'reference', got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise SeaIceError(f"--ice-emis-init: expected 0 < E < 1, got {value}")
    return value


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
    if args.ice_emis_init == _REFERENCE_INIT:
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
    cost: CostConfig = replace(preset.cost, warm_ice=args.warm_ice)
    if args.sic_background_error is not None:
        cost = replace(cost, sic_background_prior=True, sic_background_error=args.sic_background_error)
    if args.optimizer in DEPRECATED_OPTIMIZERS:
        print(
            f"{PROG}: note: --optimizer {args.optimizer} is now called {DEPRECATED_OPTIMIZERS[args.optimizer]}",
            file=sys.stderr,
        )
    explicit = {
        "nepochs": args.nepochs,
        "batch_size": args.batchsize,
        "learning_rate": args.learning_rate,
        "optimizer": args.optimizer,
        "map_priors": args.map_priors,
        "batch_order": args.batch_order,
        "validation_fraction": args.validation_fraction,
        "early_stopping": args.early_stopping,
        "patience": args.patience,
    }
    explicit = {k: v for k, v in explicit.items() if v is not None}
    if "validation_fraction" in explicit or explicit.get("early_stopping"):
        explicit["validation_min_obs"] = 0  # asked for: held out whatever the data size
    if explicit.get("validation_fraction") == 0.0 and "early_stopping" not in explicit:
        explicit["early_stopping"] = False  # no held-out observations: nothing to stop on
    if "optimizer" in explicit and "map_priors" not in explicit:
        explicit["map_priors"] = None  # the optimiser's own default
    training = replace(
        training,
        **explicit,
        seed=args.seed,
        reproducible=args.reproducible,
        device=args.device,
        fused_step=not args.unfused_step,
    )
    return data, preset, cost, training


def _setup_logging(verbosity: int) -> None:
    """-1 (``--quiet``): errors only; 0: warnings; 1: info; 2: debug."""
    level = (
        logging.ERROR
        if verbosity < 0
        else logging.WARNING
        if verbosity == 0
        else logging.INFO
        if verbosity == 1
        else logging.DEBUG
    )
    root = logging.getLogger("empirical_seaice")
    root.setLevel(level)
    for h in root.handlers:  # the stream of this call (in-process callers redirect sys.stderr)
        if getattr(h, "_seaice_cli", False) and isinstance(h, logging.StreamHandler):
            h.stream = sys.stderr  # not setStream: it flushes the old stream, which may be closed
    if not any(getattr(h, "_seaice_cli", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._seaice_cli = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def _set_threads(n: int) -> int:
    """Set torch's intra-op CPU threads; returns the previous number."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    return before


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``seaice-training``; returns the exit status.

    0 on success (and for ``-h``), 2 on a user-caused error (one line on stderr), 130/143 when
    interrupted by SIGINT/SIGTERM.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # -h / --help
            return int(exc.code or 0)
        return _run_command(args, argv)
    except RunInterrupted as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except SeaIceError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:  # a SIGINT outside our handlers (e.g. before they are installed)
        print(f"{PROG}: interrupted; the previous outputs are unchanged", file=sys.stderr)
        return 130
    except OSError as exc:  # the environment, not the code: one line
        print(
            f"{PROG}: error: {exc.filename or ''}: {exc.strerror or exc}; check the paths and free space",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR


def _run_command(args: argparse.Namespace, argv: list[str]) -> int:
    """The parsed command: check the flags, then train, diagnose or retrieve; prints the summary."""
    from empirical_seaice.io.cf import set_command_line
    from empirical_seaice.run import interrupt
    from empirical_seaice.run import train as pipeline  # imported after parsing so that `-h` stays fast

    set_command_line(PROG, argv)

    _setup_logging(-1 if args.quiet else args.verbose)
    data, preset, cost, training = configs_from_args(args)
    if args.threads < 1:
        raise SeaIceError(f"--threads: must be >= 1, got {args.threads}")
    if not args.checkpoint_minutes >= 0 or args.checkpoint_minutes == float("inf"):
        raise SeaIceError(f"--checkpoint-minutes: expected a number of minutes >= 0, got {args.checkpoint_minutes}")
    products = product_options(args)
    if not args.retrieve:
        from empirical_seaice.products.write import check_product_options

        check_product_options(
            products,
            None if args.diagsonly else preset.model.version,
            data.sensors,
            load_catalogue(data.sensor_catalogue),
        )
    threads_before = _set_threads(args.threads)
    try:
        if args.retrieve:
            with interrupt.handle_signals():
                return _retrieve(args, data, training, products, argv)
        with interrupt.handle_signals():
            result = pipeline.run(
                data,
                preset,
                cost,
                training,
                output=args.output,
                tag=args.tag,
                modeltag=args.modeltag,
                diagsonly=args.diagsonly,
                trainonly=args.trainonly,
                resume=args.resume,
                progress=not (args.no_progress or args.quiet),
                products=products,
                distributed=args.distributed,
                shard_order=args.shard_order,
                force_outputs=args.force_outputs,
                checkpoint_minutes=args.checkpoint_minutes,
                argv=[PROG, *argv],
            )
    finally:
        _set_threads(threads_before)
    if result.summary and not args.quiet:
        print(result.summary)
    return 0


def _retrieve(args: argparse.Namespace, data, training, products, argv) -> int:
    """``--retrieve``: :func:`empirical_seaice.run.retrieve.run_retrieval`, then the products, written
    as one output set (:class:`empirical_seaice.io.transaction.OutputSet`)."""
    from empirical_seaice.io.transaction import OutputSet
    from empirical_seaice.products.write import write_products
    from empirical_seaice.run import interrupt
    from empirical_seaice.run.retrieve import run_retrieval

    if args.modeltag is None:
        raise SeaIceError("--retrieve: give the trained model with --modeltag TAG (its model_TAG.pt in --output)")
    for flag in ("diagsonly", "trainonly", "resume", "force_outputs", "distributed"):
        if getattr(args, flag):
            raise SeaIceError(f"--retrieve: --{flag.replace('_', '-')} does not apply to a retrieval")
    if args.output.exists() and not args.output.is_dir():
        raise SeaIceError(f"--output: {args.output} exists and is not a directory")
    from empirical_seaice.io.outputs import check_tag

    check_tag(args.tag)
    run_set = OutputSet(args.output, args.tag, argv=[PROG, *argv])
    stage = run_set.begin()
    try:
        result = run_retrieval(
            data,
            training,
            args.output,
            args.modeltag,
            args.tag,
            sensors=tuple(args.sensors) if args.sensors else None,
            progress=not (args.no_progress or args.quiet),
            stage=stage,
        )
        _, lines = write_products(
            products,
            network=result.network,
            obs=result.obs,
            background=result.background,
            output=stage,
            tag=args.tag,
            preset_name=result.network.model_config.version,
            data_cfg=data,
            truth=result.truth_data,
            history=result.history,
        )
        with interrupt.deferred():
            run_set.publish({"retrieve": vars(args)})
        interrupt.raise_pending()
    except BaseException:
        run_set.abort()
        raise
    finally:
        run_set.release()
    lines = [ln.replace(str(stage), str(args.output)) for ln in lines]
    if not args.quiet:
        print("\n".join([result.summary, *(f"  {ln}" for ln in lines)]))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
