"""The reader stays free of torch (docs/design.md: the reader does not know about torch)."""

from __future__ import annotations

import subprocess
import sys


def test_reader_imports_no_torch():
    code = (
        "import sys, empirical_seaice.io, empirical_seaice.io.layout_writers, empirical_seaice.io.cache;"
        "print(sorted(m for m in ('torch', 'empirical_seaice.training.trainer', 'empirical_seaice.model.operator')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
