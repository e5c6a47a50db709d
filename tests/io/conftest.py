"""Fixtures for the reader tests: tiny data sets in layouts A, B and C.

The writers themselves live in :mod:`empirical_seaice.io.layout_writers` so
other test directories can import them; the fixtures here wrap them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from empirical_seaice.config import DataConfig
from empirical_seaice.io.layout_writers import (
    example_backgrounds,
    example_fields,
    write_backgrounds,
    write_layout_a,
    write_layout_b,
    write_layout_c,
)

NGRID = 12
NSTEP = 4
NLAG = 1


@dataclass
class Dataset:
    """A data set written by a fixture: its config, the raw fields and the backgrounds."""

    config: DataConfig
    fields: dict  # sensor -> {variable: array} as written
    background: dict
    root: Path


def write_dataset(
    root: Path,
    layout: str,
    sensors: tuple[str, ...] = ("amsr2",),
    nobs: int = 40,
    ngrid: int = NGRID,
    nstep: int = NSTEP,
    nlag: int = NLAG,
    seed: int = 0,
    edit=None,
    fill_value: float | None = None,
    **config_kw,
) -> Dataset:
    """Write a tiny data set in ``layout`` ("A", "B" or "C") plus background files.

    ``edit(sensor, fields)`` may modify the fields before they are written;
    masked arrays are written with ``_FillValue = fill_value`` (layouts A, B).
    """
    rng = np.random.default_rng(seed)
    grid_var = "COMMON_IGRID" if len(sensors) > 1 else "IGRID"
    fields = {
        s: example_fields(
            s, nobs, ngrid, nstep, rng, with_leading=(layout == "A" and s == "amsr2"), grid_variable=grid_var
        )
        for s in sensors
    }
    if edit is not None:
        for s in sensors:
            edit(s, fields[s])
    root.mkdir(parents=True, exist_ok=True)
    if layout == "A":
        assert len(sensors) == 1
        data = write_layout_a(root / f"{sensors[0]}_v2_202008.nc", fields[sensors[0]], fill_value)
    elif layout == "B":
        assert len(sensors) == 1
        write_layout_b(root, fields[sensors[0]], fill_value=fill_value)
        data = root
    else:
        write_layout_c(root, fields)
        data = root
    bg = example_backgrounds(ngrid, nstep, nlag, rng)
    write_backgrounds(root, **bg)
    config = DataConfig(data=data, sensors=tuple(sensors), **config_kw)
    return Dataset(config, fields, bg, root)


@pytest.fixture
def dataset(tmp_path):
    """Factory fixture: ``dataset(layout, sensors=..., **kw)`` -> :class:`Dataset` in a fresh directory."""
    count = [0]

    def make(layout: str = "C", sensors=("amsr2",), **kw) -> Dataset:
        count[0] += 1
        return write_dataset(tmp_path / f"data{count[0]}", layout, tuple(sensors), **kw)

    return make
