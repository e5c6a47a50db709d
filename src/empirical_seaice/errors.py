"""The project's one exception type for problems a user can cause.

Bad data files, bad flags, inconsistent options: each raises
:class:`SeaIceError` with a one-line message that names the file, variable or
flag, says what was expected and what was found, and how to fix it. The CLI
prints the message on one line and exits non-zero. Programming errors (bugs)
still raise ordinary Python exceptions.
"""

from __future__ import annotations

import argparse
import re
from typing import TypeVar


def _one_line(message: str) -> str:
    """The message on one line, whatever the caller composed."""
    return " ".join(str(message).split())


class SeaIceError(Exception):
    """A user-caused problem (input data, configuration or command-line flag)."""

    relayed = False
    """Raised alike on every rank of a sharded run, and this is not rank 0 (:func:`relayed`)."""

    def __init__(self, message: str):
        super().__init__(_one_line(message))


class RunInterrupted(BaseException):
    """The run was stopped by a signal (SIGINT, SIGTERM); ``exit_code`` is 128 + the signal number.

    Like :class:`KeyboardInterrupt`, not an :class:`Exception`: the signal handler raises it wherever the
    main thread is, and no ``except Exception`` or ``except SeaIceError`` on the way (the products' and
    the truth's fallbacks, the handler that publishes what was written after training) may take it for
    a failure of its own; the runs' ``except BaseException`` clean-ups remove their files and re-raise it,
    and the CLI exits with ``exit_code``. ``published``: the signal came as the run's outputs were
    published, and they are complete (no ``--resume`` advice is due)."""

    relayed = False
    """Raised alike on every rank of a sharded run, and this is not rank 0 (:func:`relayed`)."""

    def __init__(self, message: str, exit_code: int = 130, published: bool = False):
        super().__init__(_one_line(message))
        self.exit_code = exit_code
        self.published = published


def signal_exit_code(name: str) -> int:
    """The exit status of a run stopped by the signal ``name``: 128 + its number, 143 for ``"SIGTERM"``, else 130
    (``"SIGINT"``)."""
    return 143 if name == "SIGTERM" else 130


_Stop = TypeVar("_Stop", "SeaIceError", "RunInterrupted")


def relayed(exc: _Stop, rank: int) -> _Stop:
    """``exc``, which every rank of a sharded run raises alike (rank 0's error relayed to the others, a
    stop or a check the ranks agreed on), marked as relayed on a rank other than 0: the command line
    exits there with its status without printing it, so the launch prints its one line once, not once a
    rank (rank 0 prints it)."""
    exc.relayed = rank != 0
    return exc


def as_flag(message: str, parser: argparse.ArgumentParser) -> str:
    """``message`` with a leading configuration field name (``sic_background_error: must be > 0``: the
    typed configs check their fields, :mod:`empirical_seaice.config`) replaced by the flag of ``parser``
    that sets it (``--sic-background-error: must be > 0``), so a command-line user reads the name typed."""
    m = re.match(r"([a-z][a-z0-9_]*): ", message)
    if m is None:
        return message
    for action in parser._actions:  # argparse keeps no public map from dest to option strings
        if action.dest == m.group(1) and action.option_strings:
            return max(action.option_strings, key=len) + message[m.end(1) :]
    return message


def unreadable(exc: BaseException) -> str:
    """Why ``torch.load`` could not read a file, in words a user can act on (torch's own messages run to
    several sentences about its internals, and were cut off mid-sentence)."""
    text = str(exc)
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, (EOFError, OSError)) or "zip archive" in text or "central directory" in text:
        return "the file is damaged or cut short"  # torch: "PytorchStreamReader failed ...", or EINVAL from a seek
    return "it is not a file seaice-training wrote"  # e.g. "Weights only load failed. In PyTorch 2.6, ..."
