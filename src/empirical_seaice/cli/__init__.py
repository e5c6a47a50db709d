"""``seaice-training``: the command line of a training / diagnostics run.

Argument parsing only: the seed's options (``--data``, ``--sensors``,
``--output``, ``--tag``, ``--modeltag``, ``--batchsize``, ``--stepstart``,
``--nsteps``, ``--nepochs``, ``--diagsonly``, ``--trainonly``,
``--reproducible``) plus ours, turned into the typed configuration of
:mod:`empirical_seaice.config` and handed to :func:`empirical_seaice.run.train.run`.

A user-caused problem (a bad flag value, a missing file, an unknown sensor)
is reported as one line ``seaice-training: error: <message>`` on stderr and
exit status 2, without a traceback. Progress (one display for the whole run)
and logging go to stderr; the summary table goes to stdout and, with the
machine-readable ``summary_TAG.json``, beside the outputs (``summary_TAG.txt``).
``--quiet`` prints nothing but errors (batch jobs).

Nothing heavy is imported before the arguments are parsed (torch, xarray,
matplotlib come with the run), so ``seaice-training -h`` is quick.

The command lives in this package: :mod:`~empirical_seaice.cli.parser` (the parser and the
reference's and the products' options), :mod:`~empirical_seaice.cli.further` (our further
options), :mod:`~empirical_seaice.cli.configure` (flags to configuration) and
:mod:`~empirical_seaice.cli.command` (:func:`main`, the run). ``python -m empirical_seaice.cli``
runs :func:`main` (what ``torchrun`` launches).
"""

from __future__ import annotations

import os

from empirical_seaice import OPENMP_ENVIRONMENT

# How long an idle OpenMP thread spins (empirical_seaice.OPENMP_ENVIRONMENT); set before torch is imported
for _name, _value in OPENMP_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)

from empirical_seaice.cli.command import main  # noqa: E402 - after the OpenMP settings

__all__ = ["main"]
