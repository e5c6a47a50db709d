"""The clear and cloudy atmosphere of each observation and channel folded into one effective specular
atmosphere, in float32: what :class:`~empirical_seaice.observations.Observations` holds.

The all-sky TB is linear in the atmospheric terms (docs/method.md, step 8): with ``f`` the cloud
fraction, ``tau`` the transmittance, ``T_down`` the downwelling TB at the surface and ``T_up`` the
upwelling TB at the top of the atmosphere (K) of the clear column and ``_cld`` those of the cloudy one,

``tau* = (1 - f) tau + f tau_cld``,
``D* = (1 - f) tau T_down + f tau_cld T_down_cld`` (K),
``K = D* + (1 - f) T_up + f T_up_cld`` (K),

and ``TB = S tau* - e_mix D* + K`` (:func:`empirical_seaice.model.physics.effective_atmosphere`, the
equations in torch at any precision). The reader folds the six file variables into these three as it
reads them (:mod:`empirical_seaice.io.per_channel`), so the data cache stores three arrays per channel
instead of six and the packing copies them. The values are torch's float32 ones bit for bit (tested):
each product ``tau T_down`` is rounded to float32 and each ``lerp`` rounded as torch's vectorised CPU
kernel rounds it (:func:`_lerp`). A non-finite input (NaN, inf) counts as 0, a non-finite cloud
fraction as 0 (the packing's rule before).
"""

from __future__ import annotations

from typing import Any

import numpy as np

ALL_SKY_FIELDS = ("tau_eff", "down_eff_k", "const_k")
"""The effective atmosphere's per-channel fields of :class:`~empirical_seaice.observations.Observations`:
``tau*``, ``D*`` (K), ``K`` (K)."""
CLEAR_CLOUDY_FIELDS = ("tau", "t_down_k", "t_up_k", "tau_cld", "t_down_cld_k", "t_up_cld_k")
"""The clear and cloudy columns' terms they are made of (the keywords of :func:`all_sky_fields`)."""


def _lerp(a, b, w_from, low):
    """``torch.lerp(a, b, w)`` of float32 ``a``, ``b``, ``w`` as torch's vectorised CPU kernel rounds it:
    ``d = b - a`` in float32, then ``a + w d`` (``|w| < 0.5``: ``low``) or ``b + (w - 1) d`` with one
    rounding (a fused multiply-add; here exact in float64, then rounded to float32). ``w_from``: ``w``
    or ``w - 1`` (float64) as ``low`` says, decided once per row: the channels' loop has no branch."""
    d = np.float64(np.float32(b - a))
    return np.float32(np.float64(a if low else b) + w_from * d)


def finite_value(x):
    """``x``, or 0 where it is NaN or infinite (``x - x`` is 0 only for a finite ``x``)."""
    return x if x - x == 0 else np.float32(0.0)


def _all_sky_rows(tau, tdown, tup, taucld, tdowncld, tupcld, cloud, cols, out_tau, out_down, out_k):  # noqa: PLR0913
    """For every row ``i`` and the channels ``cols`` (columns of the (n, nchan) float32 inputs and outputs):
    ``out_tau[i, c] = tau*``, ``out_down[i, c] = D*``, ``out_k[i, c] = K`` (module docstring) from the
    clear and cloudy terms and ``cloud[i]`` (float32). The other columns are left as they are."""
    zero = np.float32(0.0)
    for i in range(tau.shape[0]):
        f = np.float32(cloud[i]) if np.isfinite(cloud[i]) else zero
        low = abs(f) < 0.5
        w_from = np.float64(f) if low else np.float64(f) - 1.0
        for j in range(cols.size):
            c = cols[j]
            t0, t1 = finite_value(tau[i, c]), finite_value(taucld[i, c])
            down = _lerp(
                np.float32(t0 * finite_value(tdown[i, c])), np.float32(t1 * finite_value(tdowncld[i, c])), w_from, low
            )
            out_tau[i, c] = _lerp(t0, t1, w_from, low)
            out_down[i, c] = down
            out_k[i, c] = np.float32(down + _lerp(finite_value(tup[i, c]), finite_value(tupcld[i, c]), w_from, low))


all_sky_rows: Any = _all_sky_rows
""":func:`_all_sky_rows`, compiled where numba is importable (releasing the GIL: the reader calls it on
its threads)."""
try:
    from empirical_seaice.compiled import njit

    _lerp = njit(inline="always")(_lerp)
    finite_value = njit(inline="always")(finite_value)
    all_sky_rows = njit(cache=True, nogil=True)(_all_sky_rows)
except ImportError:  # pragma: no cover - exercised only where numba is absent
    pass


def all_sky_fields(
    *,
    tau: np.ndarray,
    t_down_k: np.ndarray,
    t_up_k: np.ndarray,
    tau_cld: np.ndarray,
    t_down_cld_k: np.ndarray,
    t_up_cld_k: np.ndarray,
    cloud_fraction: np.ndarray,
) -> dict[str, np.ndarray]:
    """``{"tau_eff": tau*, "down_eff_k": D*, "const_k": K}`` (float32, (n, nchan)) of the clear and
    cloudy terms ((n, nchan) each) and the cloud fraction ((n,)): the keywords
    :class:`~empirical_seaice.observations.Observations` takes for its atmosphere.

    >>> one = np.ones((1, 1), dtype=np.float32)
    >>> out = all_sky_fields(tau=0.8 * one, t_down_k=30 * one, t_up_k=40 * one, tau_cld=0.6 * one,
    ...                      t_down_cld_k=80 * one, t_up_cld_k=90 * one, cloud_fraction=np.array([0.25]))
    >>> [round(float(out[k][0, 0]), 4) for k in ALL_SKY_FIELDS]  # 0.75*0.8+0.25*0.6, 0.75*24+0.25*48, + 52.5
    [0.75, 30.0, 82.5]
    """
    columns = (tau, t_down_k, t_up_k, tau_cld, t_down_cld_k, t_up_cld_k)
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in columns]
    shape = arrays[0].shape
    for name, a in zip(CLEAR_CLOUDY_FIELDS, arrays, strict=True):
        if a.ndim != 2 or a.shape != shape:
            raise ValueError(f"all_sky_fields: {name} has shape {a.shape}, expected {shape} (observation, channel)")
    cloud = np.ascontiguousarray(cloud_fraction, dtype=np.float32)
    if cloud.shape != shape[:1]:
        raise ValueError(f"all_sky_fields: cloud_fraction has shape {cloud.shape}, expected ({shape[0]},)")
    out = {name: np.zeros(shape, dtype=np.float32) for name in ALL_SKY_FIELDS}
    cols = np.arange(shape[1], dtype=np.int64)
    all_sky_rows(*arrays, cloud, cols, *out.values())
    return out


__all__ = ["ALL_SKY_FIELDS", "CLEAR_CLOUDY_FIELDS", "all_sky_fields", "all_sky_rows", "finite_value"]
