"""The time axis of the training data: its origin, its period, and timestamps that do not belong.

The period is defined by the bulk of the data, not by its extremes, so one bad
timestamp cannot move the origin of every sensor:

- a sensor whose median ``JULIAN_DAY`` is not a Julian day of 1970-2100
  (:data:`PLAUSIBLE_JD`) uses another date convention (MJD, days or seconds
  since an epoch): an error naming it (:func:`check_convention`);
- the windows of all sensors' observations are grouped into runs separated by
  a day without any observation; a run holding on average less than
  :data:`OUTLIER_DENSITY` of the observations per day of the largest run lies
  outside the period, and so does a run farther from the others than they span
  that holds less than :data:`STRAY_SHARE` of the observations
  (:func:`bulk_period`); ``jd_origin`` is the floor of the
  first Julian day of the bulk, or the day before ``--start-date``
  (:func:`start_origin`);
- each sensor's timestamps outside the period are counted; a sensor losing more
  than :data:`SENSOR_LOSS_FRACTION` of its observations is an error naming the
  sensor and the bad values, fewer are dropped with a warning
  (:func:`select_period`).

``nsteps`` defaults to every step from ``stepstart`` up to the last step that
has an observation, capped at the background period (columns of the
skin-temperature map); an explicit ``nsteps`` beyond the data is an error.
"""

from __future__ import annotations

import datetime
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from empirical_seaice.config import DataConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.io.validity import log_dropped
from empirical_seaice.observations import step_index

log = logging.getLogger(__name__)

PLAUSIBLE_JD = (2440587.5, 2488069.5)
"""Julian days of 1970-01-01 and 2100-01-01: a sensor whose median JULIAN_DAY is outside uses another
date convention (MJD, days or seconds since an epoch) and is an error naming it."""

OUTLIER_DENSITY = 0.1
"""A run of days separated from the rest by a day without any observation, holding on average less than
this fraction of the observations per day of the largest run, lies outside the data's period (stray
timestamps): its observations are dropped."""

STRAY_SHARE = 0.05
"""A dense run of days farther from the data's bulk than the bulk is long joins it only when it holds at least
this share of all observations (:func:`bulk_period`)."""

SENSOR_LOSS_FRACTION = 0.01
"""A sensor losing more than this fraction of its observations to timestamps outside the data's
period, or holding more than this fraction of duplicated observations, is an error."""


def date_convention(values: np.ndarray) -> str:
    """A guess of the date convention of JULIAN_DAY values that are not Julian days of 1970-2100."""
    med = float(np.median(values))
    if 40000.0 <= med < 80000.0:
        return "Modified Julian Days (days since 1858-11-17: add 2400000.5)"
    if 2.0e6 <= med < 3.0e6:
        day = datetime.date(2000, 1, 1) + datetime.timedelta(days=math.floor(med + 0.5 - 2451545.0))
        return f"Julian days of the year {day.year} (an epoch offset?)"
    if 0.0 <= med < 40000.0:
        return "days since an epoch (e.g. 1950-01-01 or 1970-01-01)"
    if med > 1.0e8:
        return "seconds since an epoch (e.g. 1970-01-01)"
    return "not Julian days"


def check_convention(julian_day: np.ndarray, path: Path, sensor: str) -> None:
    """A sensor's ``JULIAN_DAY`` must be Julian days of 1970-2100 (by its median); else a one-line error.
    Values all finite and within those days have their median there too: the median is computed only
    where they are not."""
    if julian_day.size and PLAUSIBLE_JD[0] <= julian_day.min() and julian_day.max() <= PLAUSIBLE_JD[1]:
        return  # NaN fails the comparisons
    finite = julian_day[np.isfinite(julian_day)]
    if finite.size == 0:
        return
    med = float(np.median(finite))
    if not PLAUSIBLE_JD[0] <= med <= PLAUSIBLE_JD[1]:
        raise SeaIceError(
            f"{path}: variable JULIAN_DAY of sensor {sensor} looks like "
            f"{date_convention(finite)} (median {med:.10g}, from {finite.min():.10g} to {finite.max():.10g}), "
            "not Julian days of 1970-2100; convert it to Julian days (2459000.5 = 2020-05-31 00 UTC)"
        )


TIME_SAMPLES = (1 << 10, 1 << 16)
"""Observations of a sensor whose times of day :func:`check_time_of_day` looks at (evenly spaced): the
first sample, enough where the times are real; the second where the first finds at most 4."""


def _times_of_day(julian_day: np.ndarray, n: int) -> np.ndarray:
    """The distinct times of day (s after 12 UTC) of at most ``n`` evenly spaced finite values; none where
    fewer than 100 are finite (too few to tell)."""
    jd = julian_day[:: max(1, julian_day.size // n)]
    jd = jd[np.isfinite(jd)]
    if jd.size < 100:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.round((jd - np.floor(jd)) * 86400.0).astype(np.int64) % 86400)


def check_time_of_day(julian_day: np.ndarray, path: Path, sensor: str) -> None:
    """A warning where a sensor's ``JULIAN_DAY`` holds at most 4 distinct times of day over 100 or more
    observations: whole days (the times floored) or float32 values (near 2.46e6 they step by 0.25 day).
    Without the time of day an observation can fall in the wrong 21 UTC window (step); looked at on
    :data:`TIME_SAMPLES` evenly spaced values (0.1 ms for a sensor of the benchmark twin). One value for
    every observation (a fill, a constant) is named as such."""
    for n in TIME_SAMPLES:
        seconds = _times_of_day(julian_day, n)
        if seconds.size > 4 or seconds.size == 0:
            return  # times of day (or too few values to tell)
    sample = julian_day[:: max(1, julian_day.size // TIME_SAMPLES[-1])]
    sample = sample[np.isfinite(sample)]
    if sample.min() == sample.max():  # not a lost time of day: one value for every observation
        log.warning(
            "%s: JULIAN_DAY of sensor %s holds one value (%.6f) for every observation (%d): a fill or a constant, "
            "not the observations' times; they all fall on one day",
            path, sensor, float(sample[0]), julian_day.size,
        )  # fmt: skip
        return
    hours = ", ".join(f"{(sec // 3600 + 12) % 24:02d}:{sec // 60 % 60:02d}" for sec in seconds.tolist())
    log.warning(
        "%s: JULIAN_DAY of sensor %s holds only %d distinct time%s of day (%s UTC) in %d observations: whole "
        "days, or float32 values; observations may fall in the wrong day (21 UTC window): store the times of "
        "day, as float64 Julian days",
        path, sensor, seconds.size, "" if seconds.size == 1 else "s", hours, julian_day.size,
    )  # fmt: skip


def start_origin(start_date: str) -> float:
    """jd_origin of ``--start-date D``: step 0 is the 21 UTC window that ends on day D."""
    d = datetime.date.fromisoformat(start_date)
    return float(d.toordinal() - datetime.date(2000, 1, 1).toordinal() + 2451544)  # JD of D 00 UTC minus 0.5


def _window_counts(win: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(win, return_counts=True)`` of integer window indices: a count per window
    (``np.bincount``) where they span at most a few times as many windows as there are values, not a sort."""
    if win.size == 0:
        return np.unique(win, return_counts=True)
    lo, hi = int(win.min()), int(win.max())
    if hi - lo >= 4 * win.size + 1024:  # far outliers: sorting costs less than so many counters
        return np.unique(win, return_counts=True)
    counts = np.bincount(win - lo, minlength=hi - lo + 1)
    uniq = np.flatnonzero(counts)
    return uniq + lo, counts[uniq]


def _windows(jd: np.ndarray, n: int) -> np.ndarray:
    """The absolute window index ``floor(n * (jd - 0.375))`` (int64) of finite Julian days ``jd``, ``n``
    windows a day (the same operations on one temporary)."""
    t = jd - 0.375
    t *= n
    np.floor(t, out=t)
    return t.astype(np.int64)


def _finite(jd: np.ndarray) -> np.ndarray:
    """The finite values of ``jd``: ``jd`` itself where they all are."""
    ok = np.isfinite(jd)
    return jd if ok.all() else jd[ok]


def bulk_period(days: Sequence[np.ndarray], config: DataConfig) -> tuple[float, int, int, int]:
    """(jd_origin, last step, first and last absolute window) of the data's bulk: of the runs of days separated
    by a day without observations, those whose density is below :data:`OUTLIER_DENSITY` of the largest run's
    are outside, and so are dense runs too far and too small to join it (:func:`_bulk_runs`)."""
    n = config.steps_per_day
    jd = np.concatenate([_finite(d) for d in days])
    win = _windows(jd, n)  # absolute window index
    uniq, counts = _window_counts(win)
    starts = np.flatnonzero(np.diff(uniq, prepend=uniq[0] - 2) > 1)
    totals = np.add.reduceat(counts, starts)
    ends = np.append(starts[1:], uniq.size) - 1
    density = totals / (uniq[ends] - uniq[starts] + 1)
    dense = density >= OUTLIER_DENSITY * density[int(np.argmax(totals))]
    lo, hi = _bulk_runs(uniq[starts], uniq[ends], totals, dense)
    w0, w1 = int(uniq[starts[lo]]), int(uniq[ends[hi]])
    if config.start_date is not None:
        origin = start_origin(config.start_date)
    else:
        origin = float(math.floor(jd[win >= w0].min()))
    last = int(step_index(np.array([(w1 + 0.5) / n + 0.375]), origin, n)[0])
    return origin, last, w0, w1


def _bulk_runs(first: np.ndarray, last: np.ndarray, totals: np.ndarray, dense: np.ndarray) -> tuple[int, int]:
    """The first and the last run of the data's bulk (runs: their first and last window, their observations,
    whether dense enough). From the largest run, the next dense run on either side joins while it lies no
    farther from the bulk than the bulk is long (windows between them), or holds at least
    :data:`STRAY_SHARE` of all observations; a run that does not join ends the bulk on its side. Stray
    timestamps packed into a day (a fill, an epoch: 2 % of a sensor's 400 days early) can be denser than a
    tenth of a day of data, and started the period there."""
    lo = hi = int(np.argmax(totals))
    share = totals / totals.sum()
    while True:
        below = next((k for k in range(lo - 1, -1, -1) if dense[k]), None)
        above = next((k for k in range(hi + 1, totals.size) if dense[k]), None)
        span = int(last[hi] - first[lo] + 1)
        joined = False
        if below is not None and (first[lo] - last[below] - 1 <= span or share[below] >= STRAY_SHARE):
            lo, joined = below, True
        if above is not None and (first[above] - last[hi] - 1 <= span or share[above] >= STRAY_SHARE):
            hi, joined = above, True
        if not joined:
            return lo, hi


def _outside(
    days: Sequence[np.ndarray],
    paths: Sequence[Path],
    sensors: Sequence[str],
    config: DataConfig,
    window: tuple[int, int],
    span: str,
) -> list[np.ndarray]:
    """Each sensor's timestamps outside the windows ``window``; too many of them is an error. Observations
    without a timestamp (NaN or fill: no step) are dropped with them, named where more than
    :data:`~empirical_seaice.io.validity.NOTABLE` of the sensor's (more than half is an error before this)."""
    w0, w1 = window
    outside = []
    for jd, path, sensor in zip(days, paths, sensors, strict=True):
        ok = np.isfinite(jd)
        nmiss = int(jd.shape[0] - ok.sum())
        if nmiss:
            what = "%s: sensor %s: %d of %d observations have no JULIAN_DAY (NaN or fill); dropped"
            log_dropped(log, nmiss, jd.shape[0], what, path, sensor, nmiss, jd.shape[0])
        if ok.all():
            win = _windows(jd, config.steps_per_day)
        else:
            win = np.full(jd.shape[0], w0, dtype=np.int64)
            win[ok] = _windows(jd[ok], config.steps_per_day)
        out = ok & ((win < w0) | (win > w1))
        outside.append(out)
        nout = int(out.sum())
        if not nout:
            continue
        bad = np.unique(jd[out])
        what = (
            f"sensor {sensor}: {nout} of {int(ok.sum())} observations have a JULIAN_DAY outside the "
            f"data's period ({span}; found {', '.join(f'{v:.6f}' for v in bad[:3])}{', ...' if bad.size > 3 else ''})"
        )
        if nout > SENSOR_LOSS_FRACTION * ok.sum():
            raise SeaIceError(
                f"{path}: {what}; fix the timestamps"
                + (" or give --start-date" if config.start_date is None else " or check --start-date")
            )
        log.warning("%s; dropped", what)
    return outside


def select_period(
    days: Sequence[np.ndarray],
    paths: Sequence[Path],
    sensors: Sequence[str],
    config: DataConfig,
    nstep_total_bg: int,
) -> tuple[float, int, int, list[np.ndarray]]:
    """jd_origin, number of steps with data, the chosen nsteps, and each sensor's observations outside
    the data's period (``days``, ``paths`` and ``sensors``: each sensor's ``JULIAN_DAY``, its file, its name).

    Raises
    ------
    SeaIceError
        No valid Julian day, a sensor losing too many observations, ``--start-date`` after the data,
        ``--stepstart``/``--nsteps`` beyond the data or the background period.
    """
    if not any(np.isfinite(d).any() for d in days):
        raise SeaIceError(f"{paths[0]}: variable JULIAN_DAY has no valid value")
    jd_origin, last, w0, w1 = bulk_period(days, config)
    span = f"Julian days {jd_origin + 0.375:.2f} to {jd_origin + 1.375 + last:.2f}"
    outside = _outside(days, paths, sensors, config, (w0, w1), span)
    nstep_data = last + 1
    if nstep_data < 1:
        jd_last = max(np.nanmax(d) for d in days if np.isfinite(d).any())
        raise SeaIceError(
            f"--start-date {config.start_date}: after the last observation (Julian day {jd_last:.2f}); "
            "choose an earlier date"
        )
    start = config.stepstart
    if start >= nstep_data:
        raise SeaIceError(
            f"--stepstart {start}: the data has {nstep_data} steps (0..{nstep_data - 1} from Julian day "
            f"{jd_origin:.0f}); choose a smaller --stepstart"
        )
    if config.nsteps is None:
        nsteps = min(nstep_data, nstep_total_bg) - start
        if nsteps < 1:
            raise SeaIceError(
                f"--stepstart {start}: the background files cover only {nstep_total_bg} steps; "
                "choose a smaller --stepstart"
            )
    else:
        nsteps = config.nsteps
        if start + nsteps > nstep_data:
            raise SeaIceError(
                f"--nsteps {nsteps}: with --stepstart {start} the period needs steps {start}..{start + nsteps - 1}, "
                f"but the data has steps 0..{nstep_data - 1}; use --nsteps {nstep_data - start} or less"
            )
    n = config.steps_per_day
    first = int(step_index(np.array([(w0 + 0.5) / n + 0.375]), jd_origin, n)[0])
    if config.start_date is not None and first >= start + nsteps:  # (before: blamed --stepstart/--nsteps)
        raise SeaIceError(
            f"--start-date {config.start_date}: the period it starts (steps {start}..{start + nsteps - 1}"
            + (", as far as the background files reach" if config.nsteps is None else "")
            + f") ends before the first observation (Julian day {jd_origin + 0.375 + first / n:.2f}, step {first}); "
            "choose a later date, or background files that reach the data"
        )
    return jd_origin, nstep_data, nsteps, outside


__all__ = [
    "PLAUSIBLE_JD",
    "OUTLIER_DENSITY",
    "STRAY_SHARE",
    "SENSOR_LOSS_FRACTION",
    "date_convention",
    "check_convention",
    "check_time_of_day",
    "start_origin",
    "bulk_period",
    "select_period",
]
