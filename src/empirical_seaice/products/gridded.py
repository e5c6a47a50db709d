"""Gridded ice emissivity product ``ice_emis_grid_TAG.nc``: its inputs and the model on the grid.

The trained emissivity model evaluated on every grid point and time step,
for the run's channels (default) or a list of channels or arbitrary
frequencies, beside the SIC, the empirical state, the daily skin temperature,
lon/lat and the time bounds of each step — for comparison with other
emissivity datasets and atlases.

Inputs of the model at grid point g and step t (docs/method.md step 3):

- ``x_T = max(273 - T_map[g, t], 0) / 30`` with ``T_map`` the daily
  skin-temperature map (``BackgroundMaps.t_skin_map_k``), not the
  per-observation ``T_s``;
- the grid empirical state ``P[g, t, :]``;
- the observation-space state Q (v2) has no grid value: the product uses
  ``Q_bar[g, t] = mean of Q over the observations of (g, t)``, and 0 (its
  initial value) where there is none. ``Q_bar`` is written as the variable
  ``properties_obs_mean`` with the count of observations
  ``nobs_cell``, so users can mask cells with no observation.
- v2: the channel's frequency on the first run sensor that has it (written
  as ``frequency``); e_V or e_H by its polarisation. Arbitrary frequencies
  give both ``ice_emis_v`` and ``ice_emis_h``. v1 (per-channel linear model)
  supports the run's channels only.

So the gridded value equals the per-observation ``ice_emis`` of an
observation whenever that observation's T_s equals the daily map and its Q
equals the cell mean (tested).

The file itself is written by :mod:`.gridded_file`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from empirical_seaice.io import cf
from empirical_seaice.observations import WINDOW_OFFSET_DAYS, BackgroundMaps, Observations
from empirical_seaice.sensors import POL_H, POL_QH, POL_QV, POL_V, network_frequency_table

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from empirical_seaice.config import ModelConfig
    from empirical_seaice.model.emissivity import EmissivityModel
    from empirical_seaice.sensors import ChannelBasis

UNIX_EPOCH_JD = cf.UNIX_EPOCH_JD


@dataclass
class GridInputs:
    """Everything the gridded product needs, on the grid (numpy).

    sic : (ngrid, nstep) trained SIC of each step (lag columns dropped).
    props_grid : (ngrid, nstep, nprop_grid) grid empirical state P.
    props_obs_mean : (ngrid, nstep, nprop_obs) cell mean of Q (0 where no observation).
    nobs_cell : (ngrid, nstep) number of observations of each cell.
    t_skin_map_k : (ngrid, nstep) daily skin temperature (K).
    lon, lat : (ngrid,) degrees or None.
    time_bounds_jd : (nstep, 2) Julian days of the start and end of each step's window.
    """

    sic: np.ndarray
    props_grid: np.ndarray
    props_obs_mean: np.ndarray
    nobs_cell: np.ndarray
    t_skin_map_k: np.ndarray
    lon: np.ndarray | None
    lat: np.ndarray | None
    time_bounds_jd: np.ndarray

    @property
    def ngrid(self) -> int:
        return int(self.sic.shape[0])

    @property
    def nstep(self) -> int:
        return int(self.sic.shape[1])


def cell_mean(
    values: np.ndarray, igrid: np.ndarray, istep: np.ndarray, ngrid: int, nstep: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of per-observation ``values`` (nobs, k) over each (grid, step) cell.

    The sums are float64, observation by observation in observation order (the values of
    ``numpy.bincount``'s sums), in one compiled pass (:func:`_cell_sums`; 0.43 s of numpy's passes and
    temporaries on the ``benchmark`` twin before), and the mean their quotient by the count.

    Returns
    -------
    mean : float32 (ngrid, nstep, k), 0 where a cell has no observation.
    count : int64 (ngrid, nstep).

    Raises
    ------
    ValueError
        An observation outside the grid or the steps.
    """
    values = np.asarray(values)
    k = values.shape[1]
    sums = np.zeros((ngrid * nstep, k))
    count = np.zeros(ngrid * nstep, dtype=np.int64)
    g, t = np.asarray(igrid), np.asarray(istep)
    if not _cell_sums(values, g, t, ngrid, nstep, sums, count):
        raise ValueError(f"cell_mean: an observation outside the {ngrid} grid points and {nstep} steps")
    seen = count > 0
    mean = np.zeros_like(sums)
    np.divide(sums, count[:, None], out=mean, where=seen[:, None])
    return mean.reshape(ngrid, nstep, k).astype(np.float32), count.reshape(ngrid, nstep)


def _cell_sums_py(values, igrid, istep, ngrid, nstep, sums, count):  # pragma: no cover - compiled below
    """Add each observation's row of ``values`` (float64) to ``sums`` and 1 to ``count`` at its cell
    ``igrid * nstep + istep``, in observation order; False (the sums left part-way) where a cell is outside."""
    for i in range(values.shape[0]):
        g, t = igrid[i], istep[i]
        if g < 0 or g >= ngrid or t < 0 or t >= nstep:
            return False
        c = np.int64(g) * nstep + t
        count[c] += 1
        for j in range(values.shape[1]):
            sums[c, j] += np.float64(values[i, j])
    return True


_cell_sums: Any = _cell_sums_py
try:
    from empirical_seaice.compiled import njit

    _cell_sums = njit(cache=True, nogil=True)(_cell_sums_py)
except ImportError:  # pragma: no cover - exercised only where numba is absent
    pass


def step_time_bounds(jd_origin: float, stepstart: int, nstep: int, steps_per_day: int = 1) -> np.ndarray:
    """Julian days (nstep, 2) of the start and end of each step's 21 UTC window."""
    t = np.arange(nstep, dtype=np.float64) + stepstart
    start = jd_origin + WINDOW_OFFSET_DAYS + t / steps_per_day
    return np.stack([start, start + 1.0 / steps_per_day], axis=1)


def grid_inputs(network, obs: Observations, background: BackgroundMaps, steps_per_day: int = 1) -> GridInputs:
    """Collect the gridded product's inputs from a trained HybridNetwork and its data."""
    st = network.state
    q = st.obs_properties_array()
    q_mean, count = cell_mean(q, obs.igrid, obs.istep, obs.ngrid, obs.nstep)
    return GridInputs(
        sic=st.sic_array()[:, st.nlag :],
        props_grid=st.grid_properties_array(),
        props_obs_mean=q_mean,
        nobs_cell=count,
        t_skin_map_k=np.asarray(background.t_skin_map_k, dtype=np.float32),
        lon=background.lon if background.lon is not None else obs.lon,
        lat=background.lat if background.lat is not None else obs.lat,
        time_bounds_jd=step_time_bounds(obs.jd_origin, obs.stepstart, obs.nstep, steps_per_day),
    )


def channel_frequencies(
    basis: ChannelBasis, channels: Sequence[str], model: ModelConfig | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Network frequency input (GHz) of each channel on the first run sensor that has it (in the
    model's ``network_frequencies`` convention; None = physical), polarisation, sensor."""
    table = network_frequency_table(basis, "physical" if model is None else model.network_frequencies)
    freq, pol, sensor = [], [], []
    for c in channels:
        j = basis.channel_index[c]
        s = int(np.argmax(basis.present[:, j]))
        freq.append(float(table[s, j]))
        pol.append(int(basis.pol[j]))
        sensor.append(basis.sensor_names[s])
    return np.array(freq), np.array(pol, dtype=np.int64), sensor


def evaluate_grid_emissivity(
    emissivity: EmissivityModel,
    model: ModelConfig,
    basis: ChannelBasis,
    t_skin_k: np.ndarray,
    props: np.ndarray,
    *,
    channels: Sequence[str] | None = None,
    freq_ghz: Sequence[float] | None = None,
) -> np.ndarray:
    """Ice emissivity of cells (n,) with inputs T (n,) K and props (n, nprop).

    Returns (n, nch) for ``channels`` (default: all of the basis), or
    (n, nfreq, 2) = (e_V, e_H) for ``freq_ghz`` (v2 only). float32. A grid
    cell has no scan angle: a sounder's QV / QH channel is mapped at nadir,
    where it equals V / H; a network with the view-angle input is evaluated at
    the imagers' 55 deg.
    """
    return GridEvaluator(emissivity, model, basis, channels=channels, freq_ghz=freq_ghz)(t_skin_k, props)


class GridEvaluator:
    """:func:`evaluate_grid_emissivity` of one request (channels or frequencies) for many sets of cells
    (the steps of a gridded product): what does not depend on the cells (the channels' frequencies
    and polarisations, the distinct frequencies) is worked out once. The same values, call by call."""

    def __init__(
        self,
        emissivity: EmissivityModel,
        model: ModelConfig,
        basis: ChannelBasis,
        *,
        channels: Sequence[str] | None = None,
        freq_ghz: Sequence[float] | None = None,
    ):
        self.emissivity, self.model = emissivity, model
        self.freq_ghz = None if freq_ghz is None else np.asarray(freq_ghz, dtype=np.float32)
        self.channels = list(basis.channel_names if channels is None else channels)
        self.idx = [basis.channel_index[c] for c in self.channels]
        if self.freq_ghz is None and model.version != "v1":
            freq, pol, _ = channel_frequencies(basis, self.channels, model)
            self.pol = np.where(pol == POL_QV, POL_V, np.where(pol == POL_QH, POL_H, pol))
            self.distinct, self.which = np.unique(freq.astype(np.float32), return_inverse=True)

    def __call__(self, t_skin_k: np.ndarray, props: np.ndarray) -> np.ndarray:
        """Ice emissivity of cells (n,) with inputs T (n,) K and props (n, nprop) (see
        :func:`evaluate_grid_emissivity`)."""
        import torch

        from empirical_seaice.model import physics

        with torch.no_grad():
            param = next(self.emissivity.parameters())
            t = torch.as_tensor(np.array(t_skin_k, dtype=np.float32), device=param.device)
            p = torch.as_tensor(np.array(props, dtype=np.float32), device=param.device)
            x_t = physics.normalised_temperature(t, self.model.t_ref_k, self.model.t_scale_k)
            if self.freq_ghz is not None:
                f = torch.as_tensor(self.freq_ghz, device=param.device)
                vh = self.emissivity.emissivity_vh(x_t[:, None], p[:, None, :], f[None, :])  # (n, nf, 2)
                return vh.cpu().numpy()
            if self.model.version == "v1":
                return self.emissivity(x_t, p)[:, self.idx].cpu().numpy()
            per_pol = _network_vh(self.emissivity, x_t, p, self.distinct).cpu().numpy()  # each frequency once
            # each channel's row of (2 nfreq, n), transposed in one copy (column by column took twice the time)
            rows = per_pol.reshape(-1, x_t.shape[0]).take(self.pol * len(self.distinct) + self.which, axis=0)
            return np.ascontiguousarray(rows.T)


def _network_vh(emissivity, x_t, props, freqs: np.ndarray) -> torch.Tensor:
    """``(e_V, e_H)`` of the v2 network (:meth:`NetworkEmissivity.emissivity_vh`) at the frequencies
    ``freqs`` (GHz) for the cells ``x_t`` (n,), ``props`` (n, nprop): (2, nfreq, n) float32 (V, then H), on
    the network's device (on CUDA the frequencies were a CPU tensor and every v2 run's gridded product
    failed after training: benchmarks/results.md, thirty-fourth round).
    The part of the hidden layer that does not depend on the frequency is computed once, in the network's
    (feature, cell) layout (``W z^T``: much faster than ``z W^T`` for the tiny inner dimension), and
    every frequency in the same few operations (on the ``benchmark`` twin's gridded product 0.66-0.67
    instead of 0.85 CPU-s a run, one frequency at a time; the same values to 2 units in the last place)."""
    import math

    import torch

    from empirical_seaice.model.emissivity import ANGLE_INIT_DEG

    cols = [x_t.unsqueeze(-1), props]
    if emissivity.angle_input:
        cols.append(torch.full_like(x_t, math.cos(math.radians(ANGLE_INIT_DEG))).unsqueeze(-1))
    z = torch.cat(cols, dim=-1)
    w1, w2 = emissivity.hidden.weight, emissivity.output.weight
    base = torch.addmm(emissivity.hidden.bias.unsqueeze(-1), w1[:, :-1], z.t())  # (H, n)
    # the frequencies scaled as emissivity_vh rounds them
    scaled = torch.as_tensor(freqs, dtype=x_t.dtype, device=x_t.device) / emissivity.freq_scale_ghz
    # every frequency at once, (H, nfreq, n): a few large operations instead of six per frequency
    hidden = torch.sigmoid_(base.unsqueeze(1) + w1[:, -1:].unsqueeze(-1) * scaled.view(1, -1, 1))
    out = torch.addmm(emissivity.output.bias.unsqueeze(-1), w2, hidden.view(w2.shape[1], -1)).sigmoid_()
    return out.view(2, len(freqs), -1)


__all__ = [
    "GridInputs",
    "cell_mean",
    "step_time_bounds",
    "grid_inputs",
    "channel_frequencies",
    "evaluate_grid_emissivity",
    "GridEvaluator",
    "UNIX_EPOCH_JD",
]
