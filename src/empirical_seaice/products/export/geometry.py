"""The viewing geometry of the exported model in numpy: the scan angle at the satellite and the local
zenith angle of a footprint, and the weight of e_V in a channel's polarisation (V, H, QV, QH).

Each is the numpy form of the torch equation in :mod:`empirical_seaice.model.physics` (tested equal),
so that the evaluator needs no torch.
"""

from __future__ import annotations

import numpy as np

from empirical_seaice.sensors import POL_H, POL_QV, POL_V

EARTH_RADIUS_KM = 6371.0
"""Earth radius (km) of the scan-angle geometry (as :data:`empirical_seaice.model.physics.EARTH_RADIUS_KM`)."""


def scan_angle_deg_from_zenith(zenith_deg, altitude_km) -> np.ndarray:
    """Scan (nadir) angle ``a`` (degrees) at the satellite from the local zenith angle ``theta``.

    ``sin a = R sin(theta) / (R + h)``: numpy form of
    :func:`empirical_seaice.model.physics.scan_angle_cos2` (tested equal).
    """
    s = EARTH_RADIUS_KM * np.sin(np.deg2rad(zenith_deg)) / (EARTH_RADIUS_KM + np.asarray(altitude_km))
    return np.rad2deg(np.arcsin(s))


def polarisation_weight_v(pol: int, scan_angle_deg) -> np.ndarray:
    """``w_V`` of ``e = w_V e_V + (1 - w_V) e_H``: 1 (V), 0 (H), ``cos^2 a`` (QV), ``sin^2 a`` (QH).

    numpy form of :func:`empirical_seaice.model.physics.polarisation_weight_v` (tested equal).
    """
    c2 = np.cos(np.deg2rad(np.asarray(scan_angle_deg, dtype=np.float64))) ** 2
    if pol == POL_V:
        return np.ones_like(c2)
    if pol == POL_H:
        return np.zeros_like(c2)
    return c2 if pol == POL_QV else 1.0 - c2


def zenith_deg_from_scan_angle(scan_angle_deg, altitude_km: float) -> np.ndarray:
    """Local zenith angle (deg) of a footprint seen at scan (nadir) angle ``a`` from altitude h (km):
    ``sin(theta) = (R + h) sin(a) / R``, R = 6371 km (the inverse of :func:`scan_angle_deg_from_zenith`)."""
    r = EARTH_RADIUS_KM
    s = (r + float(altitude_km)) / r * np.sin(np.radians(np.asarray(scan_angle_deg, dtype=np.float64)))
    return np.degrees(np.arcsin(np.clip(s, -1.0, 1.0)))


__all__ = ["EARTH_RADIUS_KM", "scan_angle_deg_from_zenith", "zenith_deg_from_scan_angle", "polarisation_weight_v"]
