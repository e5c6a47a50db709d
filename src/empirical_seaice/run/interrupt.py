"""SIGINT and SIGTERM: stop cleanly instead of a traceback.

While :func:`handle_signals` is active, the first SIGINT or SIGTERM

- during training (:func:`training`) only records the request: the trainer sees it at the
  next step boundary (:func:`requested`), writes its checkpoint and raises
  :class:`~empirical_seaice.errors.RunInterrupted` (exit status 130 / 143);
- while an output set is being published (:func:`deferred`) is held back until the switch is done;
- anywhere else raises :class:`~empirical_seaice.errors.RunInterrupted` at once (the run's
  clean-up then removes its unpublished files).

A second signal while a stop is pending raises at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from empirical_seaice.errors import RunInterrupted, signal_exit_code

_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class _State:
    requested: str | None = None
    training: bool = False
    deferring: bool = False


_state = _State()


def _handler(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    name = _NAMES.get(signum, f"signal {signum}")
    if _state.requested is None and (_state.training or _state.deferring):
        _state.requested = name
        return
    _state.requested = name
    if _state.deferring:
        return
    raise RunInterrupted(f"interrupted by {name}; no output was published or changed", exit_code=signal_exit_code(name))


def requested() -> str | None:
    """The name of a pending stop request (``"SIGINT"``/``"SIGTERM"``), else None."""
    return _state.requested


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Install the handlers of SIGINT and SIGTERM (main thread only), restore the old ones after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in _NAMES}
    _state.requested, _state.training, _state.deferring = None, False, False
    for s in _NAMES:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _state.requested, _state.training, _state.deferring = None, False, False


def end_at_once_after_the_run(published: str, say: Callable[[str], None]) -> None:
    """From here to the end of the process (main thread only): a SIGINT or SIGTERM ends it at once with the
    signal's exit status and a line (given to ``say``) saying that the run's outputs ``published`` (e.g.
    ``OUT/*_TAG.nc``) are complete. After a run the interpreter's teardown still takes about a second (1.0 s
    after a run of the tiny twin); with Python's own handlers there a Ctrl-C printed ``Exception ignored ...
    KeyboardInterrupt`` and exited 0, and a SIGTERM killed the process without a line. Only for the
    process's own entry point (the command line): the handlers are not put back."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
        name = _NAMES.get(signum, f"signal {signum}")
        say(f"interrupted by {name} after the run: {published} are complete")
        sys.stdout.flush()
        os._exit(signal_exit_code(name))

    for s in _NAMES:
        signal.signal(s, handler)


@contextlib.contextmanager
def training() -> Iterator[None]:
    """Signals only request a stop (seen by the trainer at its next step boundary)."""
    before = _state.training
    _state.training = True
    try:
        yield
    finally:
        _state.training = before
    raise_pending()


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Signals wait until the block (publishing an output set) is done."""
    before = _state.deferring
    _state.deferring = True
    try:
        yield
    finally:
        _state.deferring = before


def raise_pending(published: str = "") -> None:
    """Raise :class:`RunInterrupted` for a stop requested while signals were held back; ``published``: the
    files of the set the held-back block published meanwhile (e.g. ``OUT/*_TAG.nc``), said in its message."""
    name = _state.requested
    if name is not None and not _state.training and not _state.deferring:
        raise stopped_by(name, published)


def stopped_by(name: str, published: str = "") -> RunInterrupted:
    """The :class:`RunInterrupted` of a stop by the signal ``name`` (``"SIGINT"``/``"SIGTERM"``) held back until
    now; ``published``: the files published meanwhile (e.g. ``OUT/*_TAG.nc``), said in its message as complete."""
    done = f"; it came as the outputs were published: {published} are complete" if published else ""
    return RunInterrupted(f"interrupted by {name}{done}", exit_code=signal_exit_code(name), published=bool(published))


__all__ = [
    "end_at_once_after_the_run",
    "handle_signals",
    "training",
    "deferred",
    "requested",
    "raise_pending",
    "stopped_by",
]
