"""The synthetic twin: a physically based nature run written in the real data layout.

See :func:`generate_twin` (``seaice-twin``), :data:`TWIN_PRESETS`, and the
modules :mod:`.grid`, :mod:`.truth`, :mod:`.ocean`, :mod:`.atmosphere`,
:mod:`.sampling`, :mod:`.writer`. The truth is read back by
:func:`empirical_seaice.io.truth.read_truth`.

The names below are imported on first use (PEP 562), so that importing
``empirical_seaice.twin.cli`` for ``seaice-twin -h`` loads neither the
atmosphere tables nor the land mask.
"""

from importlib import import_module

_LAZY = {
    "generate_twin": "empirical_seaice.twin.generate",
    "TwinSummary": "empirical_seaice.twin.generate",
    "TWIN_PRESETS": "empirical_seaice.twin.presets",
    "TwinConfig": "empirical_seaice.twin.presets",
    "get_twin_preset": "empirical_seaice.twin.presets",
}

__all__ = ["generate_twin", "TwinSummary", "TWIN_PRESETS", "TwinConfig", "get_twin_preset"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
