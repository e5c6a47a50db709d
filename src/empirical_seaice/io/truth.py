"""Read the truth of a synthetic twin (``<data>/truth/``), aligned with a run's observations.

The twin (:mod:`empirical_seaice.twin`) writes, next to its layout-C data,
``truth/truth_state.nc`` (daily truth maps), ``truth/biases.nc`` (true TB
biases per sensor) and ``truth/<sensor>/truth_<FIELD>.nc`` (per-observation
truth, in the same rows as the sensor's data files). :func:`read_truth`
selects the run's period and maps the per-observation truth into the run's
unified channel basis through ``obs.isensor``/``obs.obs_index``. numpy and
netCDF4 only (no torch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import netCDF4
import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.observations import Observations

log = logging.getLogger(__name__)

TRUTH_DIR = "truth"
STATE_FILE = "truth_state.nc"
BIAS_FILE = "biases.nc"
PROPERTY_VARIABLES = (
    "MYI_FRACTION",
    "SNOW_DEPTH",
    "CORR_LENGTH",
    "T_AIR",
    "T_ICE",
    "WETNESS",
    "T_WATER",
    "T_SKIN",
)
"""Daily property maps of ``truth_state.nc`` returned in :attr:`Truth.properties`."""


@dataclass
class Truth:
    """The twin's truth for a run.

    Attributes
    ----------
    sic : float32 (ngrid, obs.nstep)
        True SIC of the run's selected steps.
    emis_ice, emis_ocean : float32 (obs.nobs, obs.nchan)
        True ice / ocean emissivity at each observation, unified basis (NaN
        where the observation's sensor lacks the channel); None when not read.
    tb_noisefree : float32 (obs.nobs, obs.nchan)
        Simulated TB before noise (K), NaN where absent; None when not read.
    sic_obs : float32 (obs.nobs,)
        True SIC seen by each observation.
    bias_ice_k, bias_ocean_k : float32 (nsensor, nchan)
        True TB biases (K); NaN where the sensor lacks the channel.
    properties : dict of float32 (ngrid, obs.nstep)
        Daily truth maps by name (``MYI_FRACTION``, ``SNOW_DEPTH`` (m),
        ``CORR_LENGTH`` (mm), ``T_AIR``, ``T_ICE``, ``T_WATER``, ``T_SKIN`` (K),
        ``WETNESS``).
    julian_day : float64 (obs.nstep,)
        Julian day of the centre of each selected step.
    """

    sic: np.ndarray
    emis_ice: np.ndarray | None
    emis_ocean: np.ndarray | None
    tb_noisefree: np.ndarray | None
    sic_obs: np.ndarray
    bias_ice_k: np.ndarray
    bias_ocean_k: np.ndarray
    properties: dict[str, np.ndarray] = field(default_factory=dict)
    julian_day: np.ndarray | None = None


def _open(path: Path) -> netCDF4.Dataset:
    if not path.is_file():
        raise SeaIceError(f"twin truth: file {path} is missing (regenerate the twin with seaice-twin)")
    try:
        return netCDF4.Dataset(path, "r")
    except OSError as exc:
        raise SeaIceError(f"twin truth: {path} is not a readable NetCDF file ({exc})") from None


def _get(ds: netCDF4.Dataset, path: Path, name: str) -> np.ndarray:
    if name not in ds.variables:
        raise SeaIceError(f"twin truth: {path} has no variable {name!r}")
    var = ds.variables[name]
    var.set_auto_mask(False)
    return np.asarray(var[...])


def _read_truth_state(
    state_path: Path, obs: Observations, properties: tuple[str, ...] = PROPERTY_VARIABLES
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """The true SIC (ngrid, nstep), the property maps ``properties`` (those in the file) and Julian
    days of the run's period."""
    with _open(state_path) as ds:
        sic_all = _get(ds, state_path, "SIC")
        jd_all = _get(ds, state_path, "JULIAN_DAY").astype(np.float64)
        if sic_all.shape[0] != obs.ngrid:
            raise SeaIceError(
                f"twin truth: {state_path} variable 'SIC' has {sic_all.shape[0]} grid points, the run has {obs.ngrid}"
            )
        jd_origin_truth = (
            float(ds.getncattr("jd_origin")) if "jd_origin" in ds.ncattrs() else float(np.floor(jd_all[0] - 0.875))
        )
        # truth step s covers [jd_origin_truth + 0.375 + s, +1); run step 0 covers jd_origin + 0.375 + stepstart
        first = int(round(obs.jd_origin - jd_origin_truth)) + int(obs.stepstart)
        if first < 0 or first + obs.nstep > sic_all.shape[1]:
            raise SeaIceError(
                f"twin truth: {state_path} holds steps 0..{sic_all.shape[1] - 1}, the run needs "
                f"{first}..{first + obs.nstep - 1}"
            )
        sel = slice(first, first + obs.nstep)
        props = {
            name: _get(ds, state_path, name)[:, sel].astype(np.float32) for name in properties if name in ds.variables
        }
        return sic_all[:, sel].astype(np.float32), props, jd_all[sel]


def _read_sensor_truth(
    sdir: Path,
    name: str,
    rows: np.ndarray,
    cols: np.ndarray,
    fcols: np.ndarray,
    idx: np.ndarray,
    targets: list[tuple[str, np.ndarray]],
) -> None:
    """Fill each target's ``rows`` (and basis columns ``cols`` for per-channel fields, the sensor's
    used file columns ``fcols``) from the sensor's truth files, rows ``idx`` of its observation files."""
    for field_name, target in targets:
        path = sdir / f"truth_{field_name}.nc"
        with _open(path) as ds:
            values = _get(ds, path, field_name)
        if idx.max() >= values.shape[0]:
            raise SeaIceError(
                f"twin truth: {path} has {values.shape[0]} rows, the run uses row {int(idx.max())} "
                f"of sensor {name}: the truth does not belong to this data"
            )
        if values.ndim == 2:
            _scatter_rows(values, idx, rows, cols, fcols, target)
        else:
            target[rows] = values[idx]


def _scatter_rows_py(values, idx, rows, cols, fcols, target):  # pragma: no cover - compiled below
    """``target[rows[k]] = NaN`` except ``target[rows[k], cols] = values[idx[k], fcols]``: the sensor's
    observations in the unified channel basis, each row written whole in one pass."""
    nan = np.float32(np.nan)
    for k in range(rows.shape[0]):
        r, i = rows[k], idx[k]
        for c in range(target.shape[1]):
            target[r, c] = nan
        for j in range(cols.shape[0]):
            target[r, cols[j]] = values[i, fcols[j]]


def _scatter_rows_numpy(values, idx, rows, cols, fcols, target) -> None:
    """:func:`_scatter_rows_py` in numpy (without numba, or values of another dtype than float32)."""
    target[rows] = np.nan
    target[np.ix_(rows, cols)] = values[np.ix_(idx, fcols)]


try:
    from empirical_seaice.compiled import njit

    _scatter_rows_jit = njit(cache=True, nogil=True)(_scatter_rows_py)
except ImportError:  # pragma: no cover - exercised only where numba is absent
    _scatter_rows_jit = None


def _scatter_rows(values, idx, rows, cols, fcols, target) -> None:
    """Per-channel truth rows of one sensor into the unified basis (see :func:`_scatter_rows_py`)."""
    if _scatter_rows_jit is None or values.dtype != np.float32:  # pragma: no cover - without numba
        _scatter_rows_numpy(values, idx, rows, cols, fcols, target)
        return
    as64 = [np.ascontiguousarray(a, dtype=np.int64) for a in (idx, rows, cols, fcols)]
    _scatter_rows_jit(values, as64[0], as64[1], as64[2], as64[3], target)


PER_OBS_FIELDS = ("EMIS_ICE", "EMIS_OCEAN", "TB_NOISEFREE")
"""The per-observation and channel fields of the truth (each ``(nobs, nchan)`` float32 when read)."""


def read_truth(
    data_dir: Path,
    obs: Observations,
    per_obs: tuple[str, ...] = PER_OBS_FIELDS,
    properties: tuple[str, ...] = PROPERTY_VARIABLES,
) -> Truth | None:
    """Read the twin's truth for the observations ``obs`` of a run.

    Parameters
    ----------
    data_dir : the training-data directory (the twin's output directory).
    obs : the run's observations (their period, grid and channel basis).
    per_obs : which of :data:`PER_OBS_FIELDS` to read (the others are None): a run scores only
        the ice emissivity, and each field is as large as the observations' TBs.
    properties : which of :data:`PROPERTY_VARIABLES` to read into :attr:`Truth.properties` (each
        a float32 map of the state's size).

    Returns
    -------
    :class:`Truth`, or None when ``data_dir`` has no ``truth/`` directory.

    Raises
    ------
    SeaIceError
        A truth file or variable is missing, the truth grid differs from the
        run's, the run's period is outside the truth's, or an observation row
        is beyond the sensor's truth rows.
    """
    tdir = Path(data_dir) / TRUTH_DIR
    if not tdir.is_dir():
        return None
    sic, props, julian_day = _read_truth_state(tdir / STATE_FILE, obs, properties)
    basis = obs.basis
    nobs, nchan = obs.nobs, obs.nchan
    # every row is written whole by its sensor's pass (NaN where the sensor lacks the channel)
    per_chan = {name: np.empty((nobs, nchan), dtype=np.float32) for name in per_obs}
    sic_obs = np.full(nobs, np.nan, dtype=np.float32)
    bias_ice = np.full((basis.nsensor, nchan), np.nan, dtype=np.float32)
    bias_ocean = np.full((basis.nsensor, nchan), np.nan, dtype=np.float32)
    bias_path = tdir / BIAS_FILE
    isensor = np.asarray(obs.isensor)
    obs_index = np.asarray(obs.obs_index)
    covered = 0
    with _open(bias_path) as bds:
        for s, name in enumerate(basis.sensor_names):
            cols = basis.sensor_channel_map[s]
            fcols = basis.sensor_file_columns[s]  # the used channels among the sensor's file channels
            bias_ice[s, cols] = _get(bds, bias_path, f"BIAS_ICE_{name}")[fcols]
            bias_ocean[s, cols] = _get(bds, bias_path, f"BIAS_OCEAN_{name}")[fcols]
            rows = np.flatnonzero(isensor == s)
            covered += rows.size
            if rows.size:
                targets = [*per_chan.items(), ("SIC", sic_obs)]
                _read_sensor_truth(tdir / name, name, rows, cols, fcols, obs_index[rows], targets)
    if covered != nobs:  # rows of no run sensor (not written above): NaN
        stray = (isensor < 0) | (isensor >= basis.nsensor)
        for arr in per_chan.values():
            arr[stray] = np.nan
    return Truth(
        sic=sic,
        emis_ice=per_chan.get("EMIS_ICE"),
        emis_ocean=per_chan.get("EMIS_OCEAN"),
        tb_noisefree=per_chan.get("TB_NOISEFREE"),
        sic_obs=sic_obs,
        bias_ice_k=bias_ice,
        bias_ocean_k=bias_ocean,
        properties=props,
        julian_day=julian_day,
    )
