"""Empirical-state training of a sea ice emissivity model and sea ice state.

Implements the method of A.J. Geer, "Simultaneous inference of sea ice state
and surface emissivity model using machine learning and data assimilation",
JAMES 2024, doi:10.1029/2023MS004080 (v1 = ECMWF IFS 49r1, v2 = IFS 50r1).
"""

__version__ = "0.1.0"
