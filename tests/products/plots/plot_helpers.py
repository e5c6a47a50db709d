"""Helpers of the plot tests: a regular polar grid and a check that a PNG is drawn."""

from __future__ import annotations

import numpy as np
from matplotlib import image as mpimg


def polar_grid(n_side=16, spacing_km=150.0, south=False):
    """A regular grid in EASE-Grid 2.0 (EPSG:6931/6932) around the pole, returned as lon/lat."""
    import pyproj

    epsg = 6932 if south else 6931
    r = (np.arange(n_side) - n_side / 2 + 0.5) * spacing_km * 1000
    xx, yy = np.meshgrid(r, r)
    keep = np.hypot(xx, yy) > 2 * spacing_km * 1000  # a "land" hole in the middle
    tr = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True)
    lon, lat = tr.transform(xx[keep], yy[keep])
    return np.asarray(lon), np.asarray(lat)


def assert_png(path, min_std=0.02, min_size=(200, 200)):
    assert path.is_file() and path.suffix == ".png"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] >= min_size[1] and img.shape[1] >= min_size[0]
    assert float(img[..., :3].std()) > min_std, f"{path.name} looks blank"
    return img
