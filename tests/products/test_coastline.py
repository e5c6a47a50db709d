"""The coastline shipped with the package agrees with the GLOBE land mask it was reduced from."""

from __future__ import annotations

import numpy as np


def test_shipped_land_mask_matches_the_globe_mask():
    from global_land_mask import globe

    from empirical_seaice.products.coastline import is_land

    assert is_land(np.array([72.0, 0.0, 89.9, 0.0]), np.array([-40.0, 20.0, 0.0, -30.0])).tolist() == [
        True,  # Greenland
        True,  # Africa
        False,  # North Pole
        False,  # Atlantic
    ]
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(-85, 85, 20000), rng.uniform(-180, 180, 20000)
    agree = (is_land(lat, lon) == globe.is_land(lat, lon)).mean()
    assert agree > 0.99  # measured 0.9968 on 200,000 points: only coastal cells differ
