"""Land mask of the maps: the GLOBE 1 km land mask of the ``global-land-mask``
package, reduced to a 1/12 degree grid and shipped with this package
(``products/data/land_mask_12th_degree.npz``, 61 kB).

Loading the full 1 km mask takes ~1 GB and 10-15 s; the maps only need the
coastline at a few km, so :func:`build_land_mask` reduces it once (a cell is
land where at least half of its 10 x 10 GLOBE pixels are) and :func:`is_land`
looks points up in the shipped file. Regenerate the file with
``python -m empirical_seaice.products.coastline``. Nothing is downloaded.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

CELLS_PER_DEGREE = 12
"""Resolution of the shipped mask: 1/12 degree (~9 km)."""

REDUCTION = 10
"""GLOBE pixels (1/120 degree) per mask cell along each axis."""

MASK_FILE = Path(__file__).parent / "data" / "land_mask_12th_degree.npz"


def build_land_mask() -> np.ndarray:
    """The 1/12 degree land mask (2160, 4320) bool from the GLOBE mask of ``global-land-mask``.

    Row 0 starts at 90 N (rows go south), column 0 at 180 W (columns go east).
    A cell is land where at least half of its ``REDUCTION`` x ``REDUCTION`` pixels are.
    """
    from global_land_mask import globe

    ocean = globe._mask  # (21600, 43200) True over the ocean; row 0 at 90 N, column 0 at 180 W
    f = REDUCTION
    ny, nx = ocean.shape[0] // f, ocean.shape[1] // f
    frac = np.zeros((ny, nx))
    for i in range(f):  # in slices: no 1 GB float temporary
        frac += ocean[i : ny * f : f, : nx * f].reshape(ny, nx, f).mean(axis=2)
    return frac / f <= 0.5


def write_land_mask(path: Path = MASK_FILE) -> Path:
    """Write the shipped mask file (bits packed along longitude)."""
    land = build_land_mask()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, land_bits=np.packbits(land, axis=1), shape=np.array(land.shape))
    return path


@lru_cache(maxsize=1)
def _mask() -> np.ndarray:
    with np.load(MASK_FILE) as f:
        shape = tuple(int(n) for n in f["shape"])
        return np.unpackbits(f["land_bits"], axis=1, count=shape[1]).astype(bool)


def is_land(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """True where (lat, lon) in degrees is land, from the shipped 1/12 degree mask."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    m = _mask()
    i = np.clip(np.floor((90.0 - lat) * CELLS_PER_DEGREE).astype(np.int64), 0, m.shape[0] - 1)
    j = np.floor(((lon + 180.0) % 360.0) * CELLS_PER_DEGREE).astype(np.int64) % m.shape[1]
    return m[i, j]


if __name__ == "__main__":  # pragma: no cover - regenerates the shipped file
    print(write_land_mask())
