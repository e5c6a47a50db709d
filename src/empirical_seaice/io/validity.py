"""What counts as a missing or an out-of-range value of a training-data field.

A value is *missing* if NaN/inf, masked by the file's ``_FillValue``,
``|x| > 1e10`` or a conventional fill (-999, -9999, ...)
(:func:`empirical_seaice.io._netcdf.invalid_float`); *out of range* if outside
the physical range of its variable (:data:`RANGES`, docs/data-format.md). A
field with more than :data:`MOSTLY` of its values missing or out of range is
an error naming the file and the variable (:class:`FieldStats`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io._netcdf import invalid_float

MOSTLY = 0.5
"""A field with more than this fraction of missing or out-of-range values is an error."""

NOTABLE = 0.01
"""Observations dropped, or background values replaced, beyond this fraction are a warning (below it a
line at ``-v``): a third of a sensor's grid indices missing passed silently before."""


def log_dropped(log, count: int, total: int, message: str, *args) -> None:
    """``message % args`` as a warning where ``count`` is more than :data:`NOTABLE` of ``total``, else at
    info level."""
    level = logging.WARNING if total and count > NOTABLE * total else logging.INFO
    log.log(level, message, *args)


# the ranges of docs/data-format.md: (low, high, units); a small tolerance absorbs rounding.
RANGES: dict[str, tuple[float, float, str]] = {
    "OBSVALUE": (0.0, 400.0, "K"),
    "EMIS_WATER": (0.0, 1.0, ""),
    "TAUSFC": (0.0, 1.0, ""),
    "TAUSFC_CLD": (0.0, 1.0, ""),
    "TDOWN": (0.0, 400.0, "K"),
    "TDOWN_CLD": (0.0, 400.0, "K"),
    "TUP": (0.0, 400.0, "K"),
    "TUP_CLD": (0.0, 400.0, "K"),
    "TSFC": (180.0, 340.0, "K"),
    "WINDSPEED10M": (0.0, 100.0, "m/s"),
    "CLOUD_FRACTION": (0.0, 1.0, ""),
    "ZENITH": (0.0, 90.0, "degrees"),
}
RANGE_TOL = 1e-4
"""Tolerance of the range test (absorbs rounding)."""


@dataclass
class FieldStats:
    """Running counts of missing and out-of-range values of one field."""

    n: int = 0
    missing: int = 0
    out: int = 0
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, values: np.ndarray, missing: np.ndarray, out: np.ndarray) -> None:
        self.n += values.size
        self.missing += int(missing.sum())
        self.out += int(out.sum())
        if out.any():  # the range found is only reported for out-of-range fields
            self.lo = min(self.lo, float(np.nanmin(values)))
            self.hi = max(self.hi, float(np.nanmax(values)))

    def check(self, path: Path, name: str) -> None:
        if self.n == 0 or self.missing + self.out <= MOSTLY * self.n:
            return
        if self.out >= self.missing:
            lo, hi, units = RANGES[name]
            raise SeaIceError(
                f"{path}: variable {name} mostly out of range [{lo:g}, {hi:g}] {units}: "
                f"{100 * self.out / self.n:.0f}% of values (found {self.lo:g} to {self.hi:g}); wrong units?"
            )
        raise SeaIceError(
            f"{path}: variable {name} mostly missing (NaN/fill): {100 * self.missing / self.n:.0f}% of values"
        )


def classify(values: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(missing, out_of_range) masks of a C-contiguous float block.

    One fused range test finds every bad value (NaN fails it too); only the
    bad values are then split into missing (NaN/fill) and out of range.
    """
    lo, hi, _ = RANGES[name]
    with np.errstate(invalid="ignore"):
        bad = ~((values >= lo - RANGE_TOL) & (values <= hi + RANGE_TOL))
    missing = np.zeros(values.shape, dtype=bool)
    if bad.any():
        idx = np.flatnonzero(bad)
        missing.ravel()[idx[invalid_float(values.ravel()[idx])]] = True
        bad &= ~missing
    return missing, bad


__all__ = ["MOSTLY", "RANGES", "RANGE_TOL", "FieldStats", "classify"]
