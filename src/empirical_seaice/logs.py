"""The warnings a part of the run logs, kept as well as shown: the data cache keeps its read's
(:mod:`empirical_seaice.io.cache`), a run's summary lists its own (:mod:`empirical_seaice.run.train`); and
the rank in each line of a sharded run (:func:`name_the_rank`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence


class _Said(logging.Handler):
    """Keeps the message of every warning (or worse) it is handed."""

    def __init__(self, messages: list[str]):
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def warnings_said(logger: str = "empirical_seaice", before: Sequence[str] = ()) -> Iterator[list[str]]:
    """The messages of the warnings (and errors) that ``logger`` and the loggers below it log inside the
    block, in order, on any thread, after ``before`` (those collected earlier); the list grows while the
    block runs. Only records the loggers' level lets through are seen (the CLI's pass warnings on with
    ``-q`` too; only its stderr hides them)."""
    messages: list[str] = list(before)
    handler = _Said(messages)
    target = logging.getLogger(logger)
    target.addHandler(handler)
    try:
        yield messages
    finally:
        target.removeHandler(handler)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The command line's log lines on stderr (:mod:`empirical_seaice.cli.command`)."""


def name_the_rank(rank: int, world_size: int, logger: str = "empirical_seaice") -> None:
    """In a run sharded over processes, every line the command line's handler of ``logger`` writes names
    its rank (``rank 1/2``): the ranks share one stderr, and their lines came alike, twice each."""
    ranked = LOG_FORMAT.replace("%(name)s", f"rank {rank}/{world_size} %(name)s")
    for handler in logging.getLogger(logger).handlers:
        if getattr(handler, "_seaice_cli", False):
            handler.setFormatter(logging.Formatter(ranked))


__all__ = ["LOG_FORMAT", "warnings_said", "name_the_rank"]
