"""Where and when each sensor observes: swaths over the polar grid.

Each sensor flies ``overpasses_per_day`` passes over the polar cap per day,
spread through the day. Near the pole a pass's ground track is drawn as a
straight line in the equal-area plane that passes at ``track_distance_km``
from the pole (the orbit's turning latitude: ~82 deg for the sun-synchronous
AMSR2 and SSMIS, 65 deg for GMI's 65 deg inclination orbit), turning with the
Earth (360 deg per day, so passes at different times cross different
longitudes). A grid point is seen by a pass when it lies within half the
swath width of the track; its observation time is the pass time plus the
along-track flight time at 6.9 km/s. Each seen point is kept with
probability ``keep_fraction`` (thinning, as for super-obbed data). GMI also
never sees anything poleward of :attr:`SensorSampling.max_abs_lat_deg`
(68 deg).

Observation times stay inside the day's 21 UTC-21 UTC window.

Cross-track sounders (ATMS, AMSU-A, MHS) sample the same way with their
wider swaths; each footprint's satellite zenith angle follows from its
distance ``d`` across the track and the orbit altitude ``h``
(:func:`local_zenith_deg`, spherical Earth). Sensors of the catalogue without
an entry in :data:`SAMPLING` (a user's sensor) get one from their scan
geometry (:func:`sampling_for`).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from empirical_seaice.twin.grid import PolarGrid

GROUND_SPEED_KMS = 6.9
"""Sub-satellite ground speed (km/s) of a ~700-800 km orbit."""


@dataclass(frozen=True)
class SensorSampling:
    """Sampling of one sensor.

    name: sensor name (catalogue).
    overpasses_per_day: passes over the polar cap per day (~14 orbits).
    swath_km: swath width (km).
    track_distance_km: closest approach of the track to the pole (km).
    max_abs_lat_deg: no observation poleward of this |latitude| (degrees); None = no limit.
    phase_day: fraction of a day by which the first pass follows the window start.
    precession_per_day_deg: extra rotation of the track pattern per day (non sun-synchronous orbits).
    """

    name: str
    overpasses_per_day: int
    swath_km: float
    track_distance_km: float
    max_abs_lat_deg: float | None = None
    phase_day: float = 0.0
    precession_per_day_deg: float = 0.0


SAMPLING = {
    "amsr2": SensorSampling("amsr2", 14, 1450.0, 900.0, None, 0.010),
    "gmi": SensorSampling("gmi", 15, 885.0, 2780.0, 68.0, 0.025, precession_per_day_deg=23.0),
    "ssmisf17": SensorSampling("ssmisf17", 14, 1700.0, 1000.0, None, 0.040),
    # cross-track sounders: swath from the largest scan angle and the altitude (swath_km_cross_track)
    "atms": SensorSampling("atms", 14, 2503.0, 950.0, None, 0.055),
    "amsua": SensorSampling("amsua", 14, 2025.0, 950.0, None, 0.070),
    "mhs": SensorSampling("mhs", 14, 2126.0, 950.0, None, 0.070),
}
"""Sampling of the sensors the twin knows (names as in :data:`empirical_seaice.sensors.SENSORS`)."""

GMI_MAX_ABS_LAT_DEG = 68.0
EARTH_RADIUS_KM = 6371.0


def local_zenith_deg(offset_km, altitude_km: float) -> np.ndarray:
    """Satellite zenith angle (degrees) at a footprint ``offset_km`` across the track.

    With ``gamma = |d| / R`` the Earth central angle between nadir and the
    footprint, the scan angle at the satellite is
    ``a = atan2(R sin gamma, R + h - R cos gamma)`` and the local zenith angle
    ``theta = a + gamma`` (triangle Earth centre - footprint - satellite).
    """
    gamma = np.abs(np.asarray(offset_km, dtype=np.float64)) / EARTH_RADIUS_KM
    r, h = EARTH_RADIUS_KM, float(altitude_km)
    return np.rad2deg(np.arctan2(r * np.sin(gamma), r + h - r * np.cos(gamma)) + gamma)


def swath_km_cross_track(max_scan_angle_deg: float, altitude_km: float) -> float:
    """Swath width (km) of a cross-track scan to ``max_scan_angle_deg`` from ``altitude_km``."""
    r, h = EARTH_RADIUS_KM, float(altitude_km)
    a = math.radians(max_scan_angle_deg)
    theta = math.asin(min((r + h) / r * math.sin(a), 1.0))
    return 2.0 * r * (theta - a)


def sampling_for(sensor) -> SensorSampling:
    """The twin's sampling of a catalogue sensor: :data:`SAMPLING`, else one from its scan geometry.

    Conical: AMSR2's swath and track; cross-track: the swath of
    :func:`swath_km_cross_track`, a sun-synchronous track; the pass phase from
    the sensor's name (so two sensors rarely pass together).
    """
    if sensor.name in SAMPLING:
        return SAMPLING[sensor.name]
    phase = 0.005 + (zlib.crc32(sensor.name.encode()) % 60) / 1000.0
    if sensor.cross_track:
        swath = swath_km_cross_track(sensor.max_scan_angle_deg, sensor.altitude_km)
        return SensorSampling(sensor.name, 14, swath, 950.0, None, phase)
    return SensorSampling(sensor.name, 14, 1450.0, 900.0, None, phase)


def sample_day(
    grid: PolarGrid,
    sampling: SensorSampling,
    window_start_jd: float,
    day_index: int,
    keep_fraction: float,
    rng: np.random.Generator,
    with_offset: bool = False,
) -> tuple[np.ndarray, ...]:
    """Observations of one sensor in one 21 UTC window.

    Parameters
    ----------
    grid : the twin's grid.
    sampling : the sensor's sampling.
    window_start_jd : Julian day of the window start (21 UTC).
    day_index : index of the day in the run (rotates non sun-synchronous orbits).
    keep_fraction : probability that a seen grid point is kept (day 0's first pass that sees the grid is kept whole).
    rng : generator (jitter of pass times, thinning).
    with_offset : also return each observation's distance across the track (km).

    Returns
    -------
    igrid : int64 (n,) grid indices, sorted by time.
    julian_day : float64 (n,) observation times (Julian days), in the window.
    offset_km : float64 (n,) signed distance from the track (with ``with_offset``).
    """
    n = sampling.overpasses_per_day
    jitter = rng.uniform(-0.15, 0.15, n) / n
    t_pass = (sampling.phase_day + (np.arange(n) + 0.5 + jitter) / n) % 1.0
    # track orientation turns with the Earth (sun-synchronous: fixed in local time)
    angle = 2 * np.pi * t_pass + np.deg2rad(sampling.precession_per_day_deg * day_index) + rng.uniform(-0.05, 0.05, n)
    dx, dy = np.cos(angle), np.sin(angle)
    d = (grid.x_km[:, None] * -dy + grid.y_km[:, None] * dx) - sampling.track_distance_km  # (ngrid, npass)
    along = grid.x_km[:, None] * dx + grid.y_km[:, None] * dy
    seen = np.abs(d) <= 0.5 * sampling.swath_km
    if sampling.max_abs_lat_deg is not None:
        seen &= (np.abs(grid.lat) <= sampling.max_abs_lat_deg)[:, None]
    keep = rng.random(seen.shape) < keep_fraction
    if day_index == 0:
        # the run's first pass that sees any grid point is not thinned: every sensor then has
        # observations in the first hours of the first window, so floor(min JD) is the same
        # whichever sensors a run reads
        passes = [k for k in np.argsort(t_pass) if seen[:, k].any()]
        if passes:
            keep[:, passes[0]] = True
    seen &= keep
    g, k = np.nonzero(seen)
    t = t_pass[k] + along[g, k] / GROUND_SPEED_KMS / 86400.0
    inside = (t > 1e-6) & (t < 1.0 - 1e-6)
    g, t, k = g[inside], t[inside], k[inside]
    order = np.lexsort((g, t))
    if with_offset:
        return g[order].astype(np.int64), window_start_jd + t[order], d[g[order], k[order]]
    return g[order].astype(np.int64), window_start_jd + t[order]
