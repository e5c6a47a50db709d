"""``python -m empirical_seaice.cli``: :func:`empirical_seaice.cli.main` (what ``torchrun`` launches).

A rank of a launch of several processes ends with ``os._exit`` once the run has returned its exit
status, its streams flushed and its logging shut down: the interpreter's teardown, whose C++ static
destructors (torch's and its process group's threads) once aborted a rank with "terminate called
without an active exception" after a complete run (exit -6, which torchrun reports as the launch's
failure: 1 of 24 launches of a tiny twin on two ranks, and 2 of 4 runs of
``tests/run/test_distributed.py`` on this project's 2-core machine, 2026-12-04, with the code of
before that day too), is left out. Every output is published and synced before :func:`main` returns.
"""

import logging
import os
import sys

from empirical_seaice.cli import main

code = main()
if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
sys.exit(code)
