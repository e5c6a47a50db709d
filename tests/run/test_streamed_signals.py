"""A signal held back while the final pass's side thread finishes stops the run there."""

from __future__ import annotations

import os
import signal

import pytest

from empirical_seaice.errors import RunInterrupted
from empirical_seaice.run import interrupt, streamed


def _side_signalled_in_its_shutdown() -> streamed._InOrder:
    """An :class:`~empirical_seaice.run.streamed._InOrder` whose pool's shutdown (the held-back part of its
    exit) brings this process a SIGINT."""
    side = streamed._InOrder()
    real = side._pool.shutdown

    def shutdown(wait: bool = True, **kw) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        real(wait=wait, **kw)

    side._pool.shutdown = shutdown  # type: ignore[method-assign]
    return side


def test_a_signal_while_the_side_thread_finishes_is_raised_after_it():
    """Before: the signal was held by the deferred shutdown and never raised there; the run went on to write
    every product and publish them, and only then stopped."""
    done = []
    with interrupt.handle_signals():
        with pytest.raises(RunInterrupted, match="^interrupted by SIGINT$"):
            with _side_signalled_in_its_shutdown() as side:
                side.submit(lambda: done.append(1))
    assert done == [1]  # the block given was summed and written before the stop


def test_on_an_error_the_error_is_raised_not_the_held_signal():
    with interrupt.handle_signals():
        with pytest.raises(ValueError, match="the pass failed"):
            with _side_signalled_in_its_shutdown():
                raise ValueError("the pass failed")
