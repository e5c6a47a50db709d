"""The test hook of the kill tests: stop the process with a signal (SIGKILL) at a named point of writing."""

from __future__ import annotations

import os
import signal

FAULT_ENV = "SEAICE_FAULT"
"""Test hook: ``SEAICE_FAULT=POINT[:N[:SIGNAL]]`` sends the process SIGNAL (default ``SIGKILL``; ``SIGINT``,
``SIGTERM``: what a user's Ctrl-C or a batch system sends) the N-th time (default 1st) it reaches POINT
(``write``: before an output file is renamed into place; ``publish``: before the set is switched;
``cache``: before the data cache is renamed into place; ``ended``: the command line's run has ended, its
outputs published, before its summary and the interpreter's teardown). Used by the kill tests."""

_fault_counts: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Send this process the signal :data:`FAULT_ENV` asks for here, if it does (tests only)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, _, rest = spec.partition(":")
    if point != name:
        return
    nth, _, sig = rest.partition(":")
    _fault_counts[name] = _fault_counts.get(name, 0) + 1
    if _fault_counts[name] == int(nth or 1):
        os.kill(os.getpid(), getattr(signal, sig or "SIGKILL"))


__all__ = ["FAULT_ENV", "fault_point"]
