"""The warnings a part of the run logs, kept as well as shown: the data cache keeps its read's
(:mod:`empirical_seaice.io.cache`), a run's summary lists its own (:mod:`empirical_seaice.run.train`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


class _Said(logging.Handler):
    """Keeps the message of every warning (or worse) it is handed."""

    def __init__(self, messages: list[str]):
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def warnings_said(logger: str = "empirical_seaice") -> Iterator[list[str]]:
    """The messages of the warnings (and errors) that ``logger`` and the loggers below it log inside the
    block, in order, on any thread; the list grows while the block runs. Only records the loggers' level
    lets through are seen (the CLI's pass warnings on with ``-q`` too; only its stderr hides them)."""
    messages: list[str] = []
    handler = _Said(messages)
    target = logging.getLogger(logger)
    target.addHandler(handler)
    try:
        yield messages
    finally:
        target.removeHandler(handler)


__all__ = ["warnings_said"]
