"""``python -m empirical_seaice.cli``: :func:`empirical_seaice.cli.main` (what ``torchrun`` launches)."""

import sys

from empirical_seaice.cli import main

sys.exit(main())
