"""Run-time sea ice emissivity for the synthetic twin: the shipped SMRT table.

The table (``twin/data/smrt_ice_emissivity.nc``) is generated once by
:mod:`empirical_seaice.twin.smrt_table`; :mod:`empirical_seaice.twin.smrt_column` documents the
snow/ice column, the SMRT set-up and the two-run Kirchhoff emissivity. This
module only reads the file and interpolates it; it needs numpy (and netCDF4
to read the file), never SMRT or torch.

Interpolation is multilinear in (MYI fraction, snow depth, snow correlation
length, surface temperature, snow wetness, log-frequency), exact at the
table nodes, and clamped to the table edges (no extrapolation). The
polarisation selects a table slice. ``myi_fraction`` mixes the first-year
and multi-year tables linearly, which is linear interpolation along the
table's ``ice_type`` axis (0 = first-year, 1 = multi-year).

Example
-------
>>> from empirical_seaice.twin.ice_emissivity import load_ice_table, ice_emissivity
>>> table = load_ice_table()
>>> e = ice_emissivity(table, [18.7, 36.5, 89.0], "V", 0.0, 0.10, 0.10, 250.0, 0.0)
>>> e.shape
(3,)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from empirical_seaice.errors import SeaIceError

#: Name of the shipped table in ``twin/data``.
TABLE_FILENAME = "smrt_ice_emissivity.nc"

#: (variable name, expected units) of the table axes, in the order of the
#: ``emissivity`` dimensions (polarization last).
_AXES = (
    ("ice_type", "1"),
    ("snow_depth", "m"),
    ("corr_length", "mm"),
    ("t_surface", "K"),
    ("wetness", "1"),
    ("frequency", "GHz"),
    ("polarization", "1"),
)

_CHUNK = 1 << 15
#: Up to this many distinct frequencies, pre-interpolate the table in frequency.
_MAX_UNIQUE_FREQ = 64


def _readonly(a, dtype) -> np.ndarray:
    a = np.array(a, dtype=dtype)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class IceEmissivityTable:
    """The SMRT ice emissivity table: axes and values.

    Attributes
    ----------
    ice_type : (2,) ice type coordinate, 1: 0 = first-year, 1 = multi-year.
    snow_depth_m : (nd,) snow depth nodes, m, increasing.
    corr_length_mm : (nc,) snow exponential correlation length nodes, mm.
    t_surface_k : (nt,) snow/ice surface (skin) temperature nodes, K.
    wetness : (nw,) snow liquid water volume fraction nodes, 1.
    frequency_ghz : (nf,) frequency nodes, GHz.
    emissivity : (2, nd, nc, nt, nw, nf, 2) emissivity, 1, float32; the last
        axis is the polarisation (0 = V, 1 = H).
    attrs : global attributes of the file (source, SMRT version, set-up).
    source : where the table was read from.
    """

    ice_type: np.ndarray
    snow_depth_m: np.ndarray
    corr_length_mm: np.ndarray
    t_surface_k: np.ndarray
    wetness: np.ndarray
    frequency_ghz: np.ndarray
    emissivity: np.ndarray
    attrs: dict = field(default_factory=dict)
    source: str = ""

    def __post_init__(self):
        names = ("ice_type", "snow_depth_m", "corr_length_mm", "t_surface_k", "wetness", "frequency_ghz")
        for name in names:
            a = _readonly(getattr(self, name), np.float64)
            if a.ndim != 1 or a.size < 2 or not np.all(np.diff(a) > 0):
                raise SeaIceError(
                    f"ice emissivity table {self.source or '(in memory)'}: axis {name!r} must be 1-D, "
                    f"strictly increasing with >= 2 nodes; got {a!r}"
                )
            object.__setattr__(self, name, a)
        if self.frequency_ghz[0] <= 0:
            raise SeaIceError(
                f"ice emissivity table {self.source or '(in memory)'}: frequencies must be > 0 GHz, "
                f"got {self.frequency_ghz[0]}"
            )
        expected = tuple(getattr(self, n).size for n in names) + (2,)
        e = _readonly(self.emissivity, np.float32)
        if e.shape != expected:
            raise SeaIceError(
                f"ice emissivity table {self.source or '(in memory)'}: variable 'emissivity' has shape "
                f"{e.shape}, expected {expected} from its axes"
            )
        if not np.all(np.isfinite(e)) or e.min() < 0 or e.max() > 1:
            raise SeaIceError(
                f"ice emissivity table {self.source or '(in memory)'}: 'emissivity' must be finite and in "
                f"[0, 1]; got range [{np.nanmin(e)}, {np.nanmax(e)}] with {np.sum(~np.isfinite(e))} non-finite"
            )
        object.__setattr__(self, "emissivity", e)


def default_table_path() -> Path:
    """Path of the table shipped in the package (``twin/data``)."""
    return Path(__file__).resolve().parent / "data" / TABLE_FILENAME


def load_ice_table(path: str | Path | None = None) -> IceEmissivityTable:
    """Read an ice emissivity table from NetCDF.

    Parameters
    ----------
    path : NetCDF file written by :mod:`empirical_seaice.twin.smrt_table`;
        None (default) reads the table shipped with the package.

    Returns
    -------
    IceEmissivityTable

    Raises
    ------
    SeaIceError
        If the file is missing, lacks a variable, or has wrong units or shapes.
    """
    import netCDF4

    path = default_table_path() if path is None else Path(path)
    if not path.is_file():
        raise SeaIceError(
            f"ice emissivity table {path}: file not found (regenerate with "
            f"'python -m empirical_seaice.twin.smrt_table --output {path}', which needs "
            "pip install 'empirical-seaice[smrt]')"
        )
    try:
        nc = netCDF4.Dataset(path, "r")
    except OSError as exc:
        raise SeaIceError(f"ice emissivity table {path}: not a readable NetCDF file ({exc})") from None
    with nc:
        values = {}
        for name, units in _AXES + (("emissivity", "1"),):
            if name not in nc.variables:
                raise SeaIceError(
                    f"ice emissivity table {path}: variable {name!r} missing; "
                    f"expected {[a for a, _ in _AXES] + ['emissivity']}"
                )
            var = nc.variables[name]
            got = getattr(var, "units", None)
            if got != units:
                raise SeaIceError(
                    f"ice emissivity table {path}: variable {name!r} has units {got!r}, expected {units!r}"
                )
            values[name] = np.asarray(var[:].filled(np.nan) if np.ma.isMaskedArray(var[:]) else var[:])
        dims = nc.variables["emissivity"].dimensions
        if dims != tuple(a for a, _ in _AXES):
            raise SeaIceError(
                f"ice emissivity table {path}: 'emissivity' has dimensions {dims}, "
                f"expected {tuple(a for a, _ in _AXES)}"
            )
        if not np.array_equal(values["polarization"], [0, 1]):
            raise SeaIceError(
                f"ice emissivity table {path}: 'polarization' must be [0, 1] (V, H), got {values['polarization']}"
            )
        attrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
    return IceEmissivityTable(
        ice_type=values["ice_type"],
        snow_depth_m=values["snow_depth"],
        corr_length_mm=values["corr_length"],
        t_surface_k=values["t_surface"],
        wetness=values["wetness"],
        frequency_ghz=values["frequency"],
        emissivity=values["emissivity"],
        attrs=attrs,
        source=str(path),
    )


def _pol_index(pol) -> np.ndarray:
    """Polarisation argument to an int array of 0 (V) / 1 (H)."""
    a = np.asarray(pol)
    if a.dtype.kind in "UO":
        upper = np.char.upper(a.astype(str))
        bad = ~np.isin(upper, ["V", "H"])
        if np.any(bad):
            raise SeaIceError(f"ice_emissivity: pol must be 'V' or 'H' (or 0/1), got {a[bad].ravel()[:3]!r}")
        return (upper == "H").astype(np.int64)
    if a.dtype.kind not in "iub" and not (a.dtype.kind == "f" and np.all(a == np.round(a))):
        raise SeaIceError(f"ice_emissivity: pol must be 0 (V), 1 (H), 'V' or 'H'; got dtype {a.dtype}")
    idx = a.astype(np.int64)
    if np.any((idx < 0) | (idx > 1)):
        raise SeaIceError(f"ice_emissivity: pol must be 0 (V) or 1 (H), got values {np.unique(idx)[:5]}")
    return idx


def _locate(nodes: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower cell index and weight of ``x`` in ``nodes``, clamped to the edges.

    Returns ``(i, t)`` with ``nodes[i] <= x <= nodes[i+1]`` and
    ``t = (x - nodes[i]) / (nodes[i+1] - nodes[i])`` in [0, 1]. The
    fractional node position comes from ``np.interp`` (which clamps and
    returns the exact integer position at a node), so ``t`` is exactly 0 or
    1 at a node and the interpolation reproduces node values exactly. NaN in
    ``x`` gives a NaN weight.
    """
    n = nodes.size
    pos = np.interp(x, nodes, np.arange(n, dtype=np.float64))
    # fmax maps NaN to 0 for the index (the weight stays NaN)
    i = np.minimum(np.fmax(pos, 0.0).astype(np.int32), n - 2)
    return i, pos - i


def ice_emissivity(
    table: IceEmissivityTable,
    freq_ghz,
    pol,
    myi_fraction,
    snow_depth_m,
    corr_length_mm,
    t_ice_k,
    wetness,
) -> np.ndarray:
    """Sea ice emissivity interpolated from the SMRT table.

    All arguments broadcast against each other (numpy rules).

    Parameters
    ----------
    table : the table, from :func:`load_ice_table`.
    freq_ghz : frequency, GHz (interpolated in log-frequency; table range
        6.925-190.31 GHz, clamped outside).
    pol : polarisation: int array with 0 = V, 1 = H, or 'V'/'H' strings.
    myi_fraction : multi-year ice fraction of the ice, 1 (0 = first-year,
        1 = multi-year; linear mixing of the two ice types, clamped to [0, 1]).
    snow_depth_m : snow depth on the ice, m.
    corr_length_mm : snow exponential correlation length, mm (~0.1 typical;
        table 0.05-0.20).
    t_ice_k : snow/ice surface (skin) temperature, K: the temperature ``T_i``
        the forward model multiplies the emissivity by. Only affects dry
        states; wet snow is at the melting point.
    wetness : snow liquid water volume fraction, 1 (0 = dry; table 0-0.03).

    Returns
    -------
    np.ndarray (float32) of the broadcast shape: emissivity in [0, 1]. NaN
    inputs give NaN.

    Raises
    ------
    SeaIceError
        If ``pol`` is not 0/1/'V'/'H' or a frequency is not positive.
    """
    pol_idx = _pol_index(pol)
    freq = np.asarray(freq_ghz, dtype=np.float64)
    if np.any(~(freq > 0)):
        raise SeaIceError(f"ice_emissivity: freq_ghz must be > 0 (and not NaN), got min {np.min(freq)}")
    args = [
        np.asarray(myi_fraction, dtype=np.float64),
        np.asarray(snow_depth_m, dtype=np.float64),
        np.asarray(corr_length_mm, dtype=np.float64),
        np.asarray(t_ice_k, dtype=np.float64),
        np.asarray(wetness, dtype=np.float64),
    ]
    nodes = [table.ice_type, table.snow_depth_m, table.corr_length_mm, table.t_surface_k, table.wetness]
    shape = np.broadcast_shapes(pol_idx.shape, freq.shape, *(a.shape for a in args))
    log_nodes_f = np.log(table.frequency_ghz)
    freq_u, freq_inv = np.unique(freq, return_inverse=True)
    if freq_u.size <= _MAX_UNIQUE_FREQ:
        # Few distinct frequencies (the usual case: channels): interpolate the
        # table in log-frequency once per frequency, then frequency is a
        # discrete axis and the per-point work is 5-D (32 corners), not 6-D.
        i, t = _locate(log_nodes_f, np.log(freq_u))
        t = t.astype(np.float32)[:, None]
        values = (1 - t) * table.emissivity[..., i, :] + t * table.emissivity[..., i + 1, :]
        discrete = [freq_inv.reshape(freq.shape), pol_idx]
    else:
        values = table.emissivity
        args.append(np.log(freq))
        nodes.append(log_nodes_f)
        discrete = [pol_idx]
    return _interpolate(values, args, nodes, discrete, shape)


def _interpolate(values, args, nodes, discrete, shape, clip: bool = True) -> np.ndarray:
    """Multilinear interpolation of ``values`` at broadcast points.

    ``values`` has ``len(args)`` continuous axes (with ``nodes``) followed by
    ``len(discrete)`` axes indexed by the integer arrays ``discrete``. Works
    in chunks so that the temporaries stay in cache.
    """
    values = np.ascontiguousarray(values, dtype=np.float32)
    flat = values.reshape(-1)
    nc = len(args)
    strides = (np.array(values.strides) // values.itemsize).astype(np.int32)
    # offsets of the 2**nc cell corners, in C order of the continuous axes
    corner = np.array(np.meshgrid(*([[0, 1]] * nc), indexing="ij")).reshape(nc, -1).T
    offsets = (corner @ strides[:nc]).astype(np.int32)
    n_total = int(np.prod(shape))
    out = np.empty(n_total, dtype=np.float32)
    views = [np.broadcast_to(a, shape) for a in args]
    dviews = [np.broadcast_to(d, shape) for d in discrete]
    for start in range(0, n_total, _CHUNK):
        stop = min(start + _CHUNK, n_total)
        base = np.zeros(stop - start, dtype=np.int32)
        for view, stride in zip(dviews, strides[nc:], strict=True):
            base += view.flat[start:stop].astype(np.int32) * stride
        weights = []
        for view, node, stride in zip(views, nodes, strides[:nc], strict=True):
            i, t = _locate(node, view.flat[start:stop])
            base += i * stride
            weights.append(t.astype(np.float32))
        corners = flat.take(base[:, None] + offsets[None, :])
        corners = corners.reshape((stop - start,) + (2,) * nc)
        # reduce the last axis first; (1 - t) a + t b is exact at t = 0 and t = 1
        for t in reversed(weights):
            tt = t.reshape((-1,) + (1,) * (corners.ndim - 2))
            corners = (1 - tt) * corners[..., 0] + tt * corners[..., 1]
        out[start:stop] = corners
    return (np.clip(out, 0.0, 1.0) if clip else out).reshape(shape)


# ---------------------------------------------------------------- incidence angle (cross-track sounders)

#: Name of the shipped angular anomaly table in ``twin/data``.
ANGULAR_TABLE_FILENAME = "smrt_ice_emissivity_angular.nc"


@dataclass(frozen=True, eq=False)
class AngularAnomalyTable:
    """``e(theta) - e(53 deg)`` of the SMRT columns of :mod:`.smrt_angular` (``smrt_table --angular``).

    anomaly : (2, nd, nw, nf, na, 2) float32 over ice type, snow depth, wetness,
        frequency, incidence and polarisation (0 = V, 1 = H).
    """

    ice_type: np.ndarray
    snow_depth_m: np.ndarray
    wetness: np.ndarray
    frequency_ghz: np.ndarray
    incidence_deg: np.ndarray
    anomaly: np.ndarray


def load_angular_table(path: str | Path | None = None) -> AngularAnomalyTable:
    """Read the angular anomaly table (default: the one shipped in ``twin/data``)."""
    import netCDF4

    path = Path(__file__).resolve().parent / "data" / ANGULAR_TABLE_FILENAME if path is None else Path(path)
    if not path.is_file():
        raise SeaIceError(
            f"ice emissivity angular table {path}: file not found (regenerate with "
            f"'python -m empirical_seaice.twin.smrt_table --angular --output {path}', which needs "
            "pip install 'empirical-seaice[smrt]')"
        )
    with netCDF4.Dataset(path) as nc:
        get = lambda name: np.asarray(nc.variables[name][:], dtype=np.float64)
        return AngularAnomalyTable(
            ice_type=_readonly(get("ice_type"), np.float64),
            snow_depth_m=_readonly(get("snow_depth"), np.float64),
            wetness=_readonly(get("wetness"), np.float64),
            frequency_ghz=_readonly(get("frequency"), np.float64),
            incidence_deg=_readonly(get("incidence"), np.float64),
            anomaly=_readonly(nc.variables["anomaly"][:], np.float32),
        )


def ice_emissivity_angle_anomaly(
    table: AngularAnomalyTable, freq_ghz, pol, myi_fraction, snow_depth_m, wetness, incidence_deg
) -> np.ndarray:
    """Change of the ice emissivity from 53 deg to ``incidence_deg``: ``e(theta) - e(53 deg)``.

    Multilinear in (MYI fraction, snow depth, wetness, incidence), log-frequency
    first, clamped to the table (0-65 deg). Add it to :func:`ice_emissivity`
    (the 53-deg table) for a view at another angle. Arguments broadcast; ``pol``
    0 (V) or 1 (H).
    """
    pol_idx = _pol_index(pol)
    freq = np.asarray(freq_ghz, dtype=np.float64)
    args = [np.asarray(a, dtype=np.float64) for a in (myi_fraction, snow_depth_m, wetness, incidence_deg)]
    shape = np.broadcast_shapes(pol_idx.shape, freq.shape, *(a.shape for a in args))
    freq_u, freq_inv = np.unique(freq, return_inverse=True)
    i, t = _locate(np.log(table.frequency_ghz), np.log(freq_u))
    t = t.astype(np.float32)[:, None, None]
    a = table.anomaly  # (2, nd, nw, nf, na, 2)
    per_f = (1 - t) * a[:, :, :, i] + t * a[:, :, :, i + 1]  # (2, nd, nw, nfu, na, 2)
    values = np.moveaxis(per_f, 3, -2)  # (2, nd, nw, na, nfu, 2): continuous axes first
    nodes = [table.ice_type, table.snow_depth_m, table.wetness, table.incidence_deg]
    return _interpolate(values, args, nodes, [freq_inv.reshape(freq.shape), pol_idx], shape, clip=False)
