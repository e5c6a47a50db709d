"""The synthetic twin: a physically based nature run written in the real data layout.

See :func:`generate_twin` (``seaice-twin``), :data:`TWIN_PRESETS`, and the
modules :mod:`.grid`, :mod:`.truth`, :mod:`.ocean`, :mod:`.atmosphere`,
:mod:`.sampling`, :mod:`.writer`. The truth is read back by
:func:`empirical_seaice.io.truth.read_truth`.
"""

from empirical_seaice.twin.generate import TwinSummary, generate_twin
from empirical_seaice.twin.presets import TWIN_PRESETS, TwinConfig, get_twin_preset

__all__ = ["generate_twin", "TwinSummary", "TWIN_PRESETS", "TwinConfig", "get_twin_preset"]
