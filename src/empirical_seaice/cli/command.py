"""``seaice-training``'s entry point: parse, check, then train, diagnose or retrieve.

:func:`main` turns a user-caused problem (a bad flag value, a missing file, an unknown
sensor) into one line ``seaice-training: error: <message>`` on stderr and exit status 2,
an interruption into 130/143; it sets the logging and torch's threads for the run and
prints the summary.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from empirical_seaice.cli.configure import configs_from_args, ignored_flags, product_options
from empirical_seaice.cli.parser import PROG, build_parser
from empirical_seaice.errors import RunInterrupted, SeaIceError, as_flag
from empirical_seaice.logs import LOG_FORMAT, warnings_said
from empirical_seaice.sensors import load_catalogue

EXIT_USER_ERROR = 2
"""Exit status of a user-caused error."""


def _setup_logging(verbosity: int) -> None:
    """What stderr shows: -1 (``--quiet``): errors only; 0: warnings; 1: info; 2: debug. The loggers pass
    warnings on in every case, so that the run still keeps them where it does (the data cache's manifest,
    the summary files: :mod:`empirical_seaice.logs`) when stderr does not show them."""
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
    root.setLevel(min(level, logging.WARNING))
    for h in root.handlers:  # the stream of this call (in-process callers redirect sys.stderr)
        if getattr(h, "_seaice_cli", False) and isinstance(h, logging.StreamHandler):
            h.stream = sys.stderr  # not setStream: it flushes the old stream, which may be closed
            h.setLevel(level)
            h.setFormatter(logging.Formatter(LOG_FORMAT))  # (a sharded run's names its rank: logs.name_the_rank)
    if not any(getattr(h, "_seaice_cli", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.setLevel(level)
        handler._seaice_cli = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def _progress(args: argparse.Namespace) -> bool:
    """Whether the run shows its progress display: not with ``--no-progress`` or ``--quiet``, and only on a
    terminal (stderr a TTY): a log file got every redraw of the line, carriage returns and all, and the
    warnings between them (a batch job's log grows by the redraws, twice a second)."""
    return not (args.no_progress or args.quiet) and sys.stderr.isatty()


def _set_threads(n: int, compression: int | None = None) -> tuple[int, int]:
    """Set torch's intra-op CPU threads to ``n`` and the output files' compression threads to
    ``compression`` (default ``n``); returns the previous numbers of both, for restoring them."""
    import torch

    from empirical_seaice.io import chunk_writer

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    return before, chunk_writer.set_threads(n if compression is None else compression)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``seaice-training``; returns the exit status.

    0 on success (and for ``-h``), 2 on a user-caused error (one line on stderr), 130/143 when
    interrupted by SIGINT/SIGTERM.
    """
    entry = argv is None  # the process's own entry point (the command line): its teardown follows
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # -h / --help
            return int(exc.code or 0)
        return _run_command(args, argv, entry)
    except RunInterrupted as exc:
        if not exc.relayed:  # (rank 0 of a sharded run says what every rank stopped with)
            _say(f"{PROG}: {exc}")
        return exc.exit_code
    except SeaIceError as exc:
        if not exc.relayed:
            _log_the_fault(exc)
            _say(f"{PROG}: error: {as_flag(str(exc), parser)}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:  # a SIGINT outside our handlers (e.g. before they are installed)
        _say(f"{PROG}: interrupted; no output was published or changed")
        return 130
    except OSError as exc:  # the environment, not the code: one line
        _say(f"{PROG}: error: {exc.filename or ''}: {exc.strerror or exc}; check the paths and free space")
        return EXIT_USER_ERROR


def _say(line: str) -> None:
    """``line`` and its newline on stderr in one write (the ranks of a sharded run share one stderr, and
    print's separate newline let two ranks' lines run together)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _log_the_fault(exc: SeaIceError) -> None:
    """With ``-v``: the traceback of a fault of the code under a one-line error (a failure after training
    says how to redo the rest in one line and keeps the fault as its cause), for a report of it; a
    user-caused error's cause is no fault and stays unsaid."""
    cause = exc.__cause__
    if cause is not None and not isinstance(cause, (SeaIceError, OSError)):
        logging.getLogger("empirical_seaice").info("the fault under the error below:", exc_info=cause)


_MODE_WARNINGS = (
    ("diagsonly", "the trained run's model, period and training setup come from its model file; nothing is trained"),
)
"""The modes whose ignored flags (:data:`~empirical_seaice.cli.configure.MODE_IGNORES`) are a warning, and
why (``--retrieve``'s are an error)."""


def _run_command(args: argparse.Namespace, argv: list[str], entry: bool = False) -> int:
    """The parsed command: check the flags, then train, diagnose or retrieve; prints the summary. ``entry``:
    the process's own entry point, whose end follows (a signal after the run ends it at once:
    :func:`~empirical_seaice.run.interrupt.end_at_once_after_the_run`)."""
    from empirical_seaice.io.cf import set_command_line
    from empirical_seaice.run import interrupt
    from empirical_seaice.run import train as pipeline  # imported after parsing so that `-h` stays fast

    set_command_line(PROG, argv)

    _setup_logging(-1 if args.quiet else args.verbose)
    with warnings_said() as said_before:  # the flags' warnings, listed in the run's summary too
        data, preset, cost, training = configs_from_args(args)
        for mode, why in _MODE_WARNINGS:  # (--retrieve refuses --diagsonly)
            if getattr(args, mode) and not args.retrieve and (ignored := ignored_flags(args, mode)):
                logging.getLogger(__name__).warning("--%s: %s not used (%s)", mode, ", ".join(ignored), why)
        if not args.checkpoint_minutes >= 0 or args.checkpoint_minutes == float("inf"):
            raise SeaIceError(f"--checkpoint-minutes: expected a number of minutes >= 0, got {args.checkpoint_minutes}")
        _check_shard_order(args)
        _check_one_process(args)
        products = product_options(args)
        if args.retrieve:  # the model, and so its version and sensors, come with the run
            from empirical_seaice.products.write import check_product_flags

            check_product_flags(products)
        else:
            from empirical_seaice.products.write import check_product_options

            check_product_options(
                products,
                None if args.diagsonly else preset.model.version,
                data.sensors,
                load_catalogue(data.sensor_catalogue),
            )
        ensemble = _ensemble(args)
        threads_before = _set_threads(_thread_count(args))

    def ended(code: int) -> int:
        """The run has ended with ``code`` (0: its outputs published)."""
        if entry and code == 0:
            from empirical_seaice.io.transaction import fault_point

            published = f"{args.output}/*_{args.tag}.nc"
            interrupt.end_at_once_after_the_run(published, lambda line: _say(f"{PROG}: {line}"))
            fault_point("ended")
        return code

    try:
        if ensemble is not None:
            with interrupt.handle_signals():
                code = _run_ensemble(args, ensemble, (data, preset, cost, training), products, argv, said_before)
            return ended(code)
        if args.retrieve:
            with interrupt.handle_signals():
                code = _retrieve(args, data, training, products, argv, said_before)
            return ended(code)
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
                progress=_progress(args),
                products=products,
                distributed=args.distributed,
                shard_order=args.shard_order,
                force_outputs=args.force_outputs,
                checkpoint_minutes=args.checkpoint_minutes,
                argv=[PROG, *argv],
                said_before=said_before,
            )
    finally:
        _set_threads(*threads_before)
    ended(0)
    if result.summary and not args.quiet:
        print(result.summary)
    return 0


def _thread_count(args: argparse.Namespace) -> int:
    """``--threads``, at most the CPUs this process may use (more only slow the run down, and tens of
    thousands crashed it in the compiler's or OpenMP's thread start), or where it was not given those CPUs
    shared by the processes a torchrun launch started on this machine
    (:func:`empirical_seaice.threads.auto_threads`)."""
    from empirical_seaice.threads import auto_threads, available_cpus
    from empirical_seaice.training.distributed import launch_environment

    if args.threads is not None:
        cpus = available_cpus()
        if args.threads > cpus:
            logging.getLogger(__name__).warning(
                "--threads %d: more than the %d CPUs this process may use; running on %d", args.threads, cpus, cpus
            )
            return cpus
        return int(args.threads)
    env = launch_environment()
    return auto_threads(env.local_world_size if env is not None else 1)


def _check_one_process(args: argparse.Namespace) -> None:
    """``--retrieve`` and ``--ensemble`` run in one process: a one-line error under a torchrun of several
    processes (each process ran the whole job into the same files, the tag's lock refusing all but one)."""
    from empirical_seaice.training.distributed import launch_environment

    env = launch_environment()
    if env is None or env.world_size == 1:
        return
    for flag, given in (("--retrieve", args.retrieve), ("--ensemble", args.ensemble is not None)):
        if given:
            raise SeaIceError(f"{flag}: runs in one process; start it without torchrun (here {env.world_size})")


def _check_shard_order(args: argparse.Namespace) -> None:
    """``--shard-order local`` orders the batches of a run sharded over processes only: a one-line
    error where no sharded run will start (no --distributed and no torchrun of several processes,
    or a retrieval or an ensemble, which run in one process)."""
    if args.shard_order == "global":
        return
    from empirical_seaice.training.distributed import launch_environment

    env = launch_environment()
    sharded = args.distributed or (env is not None and env.world_size > 1)
    if not sharded or args.retrieve or args.ensemble is not None:
        raise SeaIceError(
            f"--shard-order {args.shard_order}: applies only to a training run sharded over processes "
            "(--distributed under torchrun); drop it"
        )


def _ensemble(args: argparse.Namespace):
    """The :class:`~empirical_seaice.config.ensemble.EnsembleConfig` of ``--ensemble N`` (None without it);
    one-line errors for a bad value or a mode it does not combine with."""
    from empirical_seaice.config.ensemble import EnsembleConfig

    if args.ensemble is None:
        for flag in ("ensemble_sic_error", "ensemble_inflation"):
            if getattr(args, flag) is not None:
                raise SeaIceError(f"--{flag.replace('_', '-')}: applies only with --ensemble N")
        return None
    from empirical_seaice.run.ensemble import check_ensemble_flags

    check_ensemble_flags(
        diagsonly=args.diagsonly,
        distributed=args.distributed,
        retrieve=args.retrieve,
        modeltag=args.modeltag is not None,
    )
    given = {"sic_error": args.ensemble_sic_error, "inflation": args.ensemble_inflation}
    return EnsembleConfig(members=args.ensemble, **{k: v for k, v in given.items() if v is not None})


def _run_ensemble(args: argparse.Namespace, ensemble, configs, products, argv, said_before: Sequence[str]) -> int:
    """``--ensemble N``: :func:`empirical_seaice.run.ensemble.run_ensemble`; prints member 0's summary
    (which lists ``said_before``, the warnings about the flags) and the ensemble's lines."""
    from empirical_seaice.run.ensemble import run_ensemble

    data, preset, cost, training = configs
    result = run_ensemble(
        ensemble, data, preset, cost, training, args.output, args.tag, trainonly=args.trainonly,
        resume=args.resume, progress=_progress(args), products=products, force_outputs=args.force_outputs,
        checkpoint_minutes=args.checkpoint_minutes, argv=[PROG, *argv], said_before=said_before,
    )  # fmt: skip
    if not args.quiet:
        lines = [f"  {ln}" for ln in (*result.lines, f"ensemble file: {result.path}")]
        print("\n".join([result.member0.summary, *lines] if result.member0.summary else lines))
    return 0


def _retrieve(args: argparse.Namespace, data, training, products, argv, said_before: Sequence[str]) -> int:
    """``--retrieve``: :func:`empirical_seaice.run.retrieve.run_retrieval`, then the products, written
    as one output set (:class:`empirical_seaice.io.transaction.OutputSet`); its summary lists the warnings
    logged, ``said_before`` (the flags') first."""
    from empirical_seaice.io.transaction import OutputSet
    from empirical_seaice.products.report import write_summary_files
    from empirical_seaice.products.write import write_products
    from empirical_seaice.run import interrupt
    from empirical_seaice.run.retrieve import run_retrieval
    from empirical_seaice.training.runtime import RunProgress

    t_start = time.perf_counter()
    if args.modeltag is None:
        raise SeaIceError("--retrieve: give the trained model with --modeltag TAG (its model_TAG.pt in --output)")
    for flag in ("diagsonly", "trainonly", "resume", "force_outputs", "distributed"):
        if getattr(args, flag):
            raise SeaIceError(f"--retrieve: --{flag.replace('_', '-')} does not apply to a retrieval")
    if ignored := ignored_flags(args, "retrieve"):
        raise SeaIceError(
            f"--retrieve: {ignored[0]} does not apply to a retrieval (it takes the model and cost of --modeltag "
            "and fits the state alone); drop it"
        )
    if args.output.exists() and not args.output.is_dir():
        raise SeaIceError(f"--output: {args.output} exists and is not a directory")
    from empirical_seaice.io.outputs import check_tag

    check_tag(args.tag)
    run_set = OutputSet(args.output, args.tag, argv=[PROG, *argv])
    stage = run_set.begin()
    display = RunProgress(_progress(args))  # the retrieval's stages, then its products', as a training run's
    try:
        # the warnings logged, listed in the summary as a training run's, the flags' first
        with warnings_said(before=said_before) as said:
            result = run_retrieval(
                data,
                training,
                args.output,
                args.modeltag,
                args.tag,
                sensors=tuple(args.sensors) if args.sensors else None,
                progress=display,
                stage=stage,
                said=said,
                products=products,
            )
            # the summary's data first: the products add the classic algorithms' scores to it, and the report
            # (--plots) shows it, as a training run's
            summary = _retrieval_summary(result, args, data, time.perf_counter() - t_start, said)
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
                trained=result.trained,
                report=summary,
                report_text=result.summary,
                progress=display,
            )
            lines = [ln.replace(str(stage), str(args.output)) for ln in lines]
            text = "\n".join([result.summary, *(f"  {ln}" for ln in lines)])
            summary["run"]["wall_seconds"] = round(time.perf_counter() - t_start, 2)
            write_summary_files(stage, args.tag, text, summary)
        display.stage("publishing")
        with interrupt.deferred():
            run_set.publish({"retrieve": vars(args)})
        interrupt.raise_pending(published=f"{args.output}/*_{args.tag}.nc")
        display.stage("done")
    except BaseException:
        run_set.abort()
        raise
    finally:
        display.close()
        run_set.release()
    if not args.quiet:
        print(text)
    return 0


def _retrieval_summary(result, args: argparse.Namespace, data, wall_s: float, said: Sequence[str]) -> dict:
    """A retrieval's summary as data (``summary_TAG.json``, the report's), as a training run's
    (:func:`~empirical_seaice.run.finish.run_summary`; ``said``: the warnings logged, its ``run.warnings``)."""
    from empirical_seaice.run.finish import run_summary

    summary = run_summary(
        result, result.network.model_config.version, data, result.obs, result.history, False, wall_s,
        mode=f"retrieval with the trained model {args.modeltag!r}", said=said,
    )  # fmt: skip
    summary["run"]["output"] = str(args.output)
    return summary


__all__ = ["EXIT_USER_ERROR", "main"]
