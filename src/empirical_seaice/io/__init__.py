"""Training-data input: readers for layouts A, B and C, background maps, cache.

Public API
----------
read_training_data(config, nlag, cache_dir=None) -> (Observations, BackgroundMaps)
    Read, validate and assemble the training data of a run (see :mod:`.reader`).
describe(obs, background=None) -> str
    Per-sensor summary: observations, channels, steps, grid points, TB ranges.
find_data_files(config) -> DataFiles
    Detect the layout and locate every input file (no NetCDF opened).

Writers for test data in the same layouts are in :mod:`.layout_writers`.
The reader imports no torch.
"""

from empirical_seaice.io.layouts import DataFiles, SensorFiles, find_data_files
from empirical_seaice.io.reader import read_training_data
from empirical_seaice.io.summary import describe

__all__ = ["read_training_data", "describe", "find_data_files", "DataFiles", "SensorFiles"]
