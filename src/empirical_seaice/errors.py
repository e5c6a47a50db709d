"""The project's one exception type for problems a user can cause.

Bad data files, bad flags, inconsistent options: each raises
:class:`SeaIceError` with a one-line message that names the file, variable or
flag, says what was expected and what was found, and how to fix it. The CLI
prints the message on one line and exits non-zero. Programming errors (bugs)
still raise ordinary Python exceptions.
"""

from __future__ import annotations


def _one_line(message: str) -> str:
    """The message on one line, whatever the caller composed."""
    return " ".join(str(message).split())


class SeaIceError(Exception):
    """A user-caused problem (input data, configuration or command-line flag)."""

    def __init__(self, message: str):
        super().__init__(_one_line(message))


class RunInterrupted(BaseException):
    """The run was stopped by a signal (SIGINT, SIGTERM); ``exit_code`` is 128 + the signal number.

    Like :class:`KeyboardInterrupt`, not an :class:`Exception`: the signal handler raises it wherever the
    main thread is, and no ``except Exception`` or ``except SeaIceError`` on the way (the products' and
    the truth's fallbacks, the handler that publishes what was written after training) may take it for
    a failure of its own; the runs' ``except BaseException`` clean-ups remove their files and re-raise it,
    and the CLI exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(_one_line(message))
        self.exit_code = exit_code
