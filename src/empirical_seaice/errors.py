"""The project's one exception type for problems a user can cause.

Bad data files, bad flags, inconsistent options: each raises
:class:`SeaIceError` with a one-line message that names the file, variable or
flag, says what was expected and what was found, and how to fix it. The CLI
prints the message on one line and exits non-zero. Programming errors (bugs)
still raise ordinary Python exceptions.
"""

from __future__ import annotations


class SeaIceError(Exception):
    """A user-caused problem (input data, configuration or command-line flag)."""

    def __init__(self, message: str):
        # Keep the message on one line, whatever the caller composed.
        super().__init__(" ".join(str(message).split()))


class RunInterrupted(SeaIceError):
    """The run was stopped by a signal (SIGINT, SIGTERM); ``exit_code`` is 128 + the signal number."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code
