"""HybridNetwork: empirical state + emissivity model + known physics = observation operator.

Per observation (PHYSICS.md "Forward model"): lag-weighted SIC ``c_i`` from
:class:`~empirical_seaice.model.state.EmpiricalState`; ``x_T``; ice emissivity from
the :class:`~empirical_seaice.model.emissivity.EmissivityModel` with inputs
``[x_T, P[g, t, :], Q[i, :]]``; ocean emissivity with the wind correction;
then :func:`empirical_seaice.model.physics.simulate_tb` (surface mix, clear/cloudy
specular RT, all-sky, SIC-weighted bias of the observation's sensor) in its
factored form: the effective all-sky atmosphere
(:func:`empirical_seaice.model.physics.effective_atmosphere`, data only, packed once
by :class:`ObservationTensors`), the surface terms
(:func:`empirical_seaice.model.physics.surface_atmosphere_terms`), then
:func:`empirical_seaice.model.physics.simulate_tb_mixed`, one SIC mix of the
pure-ice and pure-ocean TBs: same TB', fewer operations per step.

Cost (PHYSICS.md "Cost function"); each training step minimises the
stochastic estimate ``(1/B) sum_{i in batch} J_o,i + J_b / nobs``.

Whole-map priors without a full pass per step ("sampled" mode)
--------------------------------------------------------------
The SIC-map priors (range, background, false ice, warm ice) are sums over map
rows ``r = (g, col)`` of an elementwise penalty ``p(C_r)``. Let
``count(r) = #{(i, l) : g_i * ncol + t_i + nlag - l = r}`` be the number of
(training observation, lag) pairs that touch row ``r``
(:func:`build_row_counts`). For a batch ``B`` the sampled estimate is

``E_B = (1/|B|) sum_{i in B} sum_l p(C[r_il]) / count(r_il)``.

For ``i`` drawn uniformly from the ``nobs`` training observations,
``E[E_B] = (1/nobs) sum_i sum_l p(C[r_il]) / count(r_il)
= (1/nobs) sum_r p(C_r) * count(r) / count(r) = (1/nobs) sum_{r: count(r) > 0} p(C_r)``,
exactly the full prior over the observed rows divided by nobs. Over one
shuffled epoch (every observation once) it is exact, not only in
expectation: ``sum_batches (|B| / nobs) E_B`` equals that value. The gradient
of the estimate is unbiased too, and it touches only the batch's rows, so the
cost per step is O(batch) and sparse optimisers stay sparse.

Rows that no training observation touches are left out: in "sampled" mode
they get no gradient from any term and keep their background. In "full"
mode the priors would still move them (e.g. background trace ice toward 0 or
0.3 by the false-ice prior), which changes no simulated TB; every other row
gets the same prior gradient in expectation in both modes.

The warm-ice term is a *mean* over the map rows, divided by nobs like the
other background terms (as in the reference). In "full" mode it is the mean
over the whole (ngrid, nstep) map / nobs; in "sampled" mode the estimate
above is rescaled by ``1 / n_warm_rows`` (observed rows with a temperature,
i.e. columns >= nlag), so its expectation is the mean over the observed rows
/ nobs (equal to the full value when every row is observed).

"full" mode (``prior_mode="full"``) computes the priors over the entire map
each step (the reference's way); use it with ``sparse=False`` (it produces
dense gradients on the SIC table).

Other background terms: the anchor (v1: ``(e0[10v] - 0.93)^2 / 1e-5^2``;
v2: ``sum_{i in batch} max(floor - e_i, 0)^2 / 1e-5^2``, the reference's
"summed over the batch", with ``e_i`` the network's V emissivity at 23.8 GHz
(original v2, floor 0.8) or the ice emissivity of the anchor channel (the
fork's variant, 10v else 24v, floor 0.7)), the bias prior
``sum (b - b_bg)^2 / sigma_b^2``, each divided by ``nobs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from empirical_seaice.config import CostConfig, ModelConfig
from empirical_seaice.cost import terms as costs
from empirical_seaice.errors import SeaIceError
from empirical_seaice.model import physics
from empirical_seaice.model.emissivity import EmissivityModel, LinearEmissivity, NetworkEmissivity, make_emissivity
from empirical_seaice.model.state import EmpiricalState
from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.sensors import POL_V, ChannelBasis

PER_OBS_FLOAT_FIELDS = ("t_skin_k", "wind_ms", "cloud_fraction", "cos2_scan", "cos_view")
"""Per-observation float fields carried by a :class:`Batch`, in packing order."""
PACKED_CHANNEL_FIELDS = ("tb_obs_k", "mask", "emis_water", "tau_eff", "down_eff_k", "const_k")
"""Per-channel float fields carried by a :class:`Batch`, in packing order."""
ATMOSPHERE_FIELDS = ("tau", "t_down_k", "t_up_k", "tau_cld", "t_down_cld_k", "t_up_cld_k")
"""The Observations' clear and cloudy atmosphere, packed as (``tau_eff``, ``down_eff_k``, ``const_k``)."""
INT_FIELDS = ("iobs", "igrid", "istep", "isensor")
"""Integer fields carried by a :class:`Batch`, in packing order."""


@dataclass
class Batch:
    """One minibatch of observations as tensors on one device.

    Integer (B,) int64: ``iobs`` (row in the Observations the tensors were
    built from), ``igrid``, ``istep``, ``isensor``. Float (B,): ``t_skin_k``,
    ``wind_ms``, ``cloud_fraction``, ``cos2_scan`` (the cross-track
    polarisation weight), ``cos_view`` (cosine of the local zenith angle).
    Float (B, nchan): ``tb_obs_k``, ``mask``
    (0/1), ``emis_water``, and the all-sky atmosphere as one effective
    specular atmosphere (:func:`physics.effective_atmosphere`): ``tau_eff``,
    ``down_eff_k``, ``const_k``. Fields may be strided views into one packed
    tensor.
    """

    iobs: Tensor
    igrid: Tensor
    istep: Tensor
    isensor: Tensor
    t_skin_k: Tensor
    wind_ms: Tensor
    cloud_fraction: Tensor
    cos2_scan: Tensor
    cos_view: Tensor
    tb_obs_k: Tensor
    mask: Tensor
    emis_water: Tensor
    tau_eff: Tensor
    down_eff_k: Tensor
    const_k: Tensor

    def __len__(self) -> int:
        return int(self.iobs.shape[0])


class ObservationTensors:
    """All observations packed once on a device, for fast batching.

    Floats are packed into one (nobs, 4 + 6 nchan) tensor: the per-observation
    fields, then ``tb_obs_k``, ``mask`` (0/1), ``emis_water`` and the
    effective all-sky atmosphere ``tau_eff``, ``down_eff_k``, ``const_k``
    computed here once from the six clear and cloudy terms
    (:func:`physics.effective_atmosphere`; data only, so a step does not
    redo it, and a row is a third shorter). Non-finite values (NaN, inf) are
    replaced by 0 first so masked channels cannot turn the cost into NaN.
    Integers go into one (nobs, 4) int64 tensor (``INT_FIELDS``).
    :meth:`batch` is two ``index_select`` calls.

    Parameters
    ----------
    obs : Observations
    device : torch device
    dtype : float dtype of the packed floats (float32; float64 for gradchecks).
    """

    _CHUNK = 1 << 20  # observations converted at a time (bounds the temporaries)

    def __init__(self, obs: Observations, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        n, nc = obs.nobs, obs.nchan
        self.nobs = n
        self.nchan = nc
        self.device = torch.device(device)
        ncol = len(PER_OBS_FLOAT_FIELDS) + len(PACKED_CHANNEL_FIELDS) * nc
        floats = torch.empty((n, ncol), dtype=dtype)
        self._slices: dict[str, tuple[int, int | None]] = {}
        np_dtype = np.float64 if dtype == torch.float64 else np.float32

        def finite(name: str, rows: slice) -> torch.Tensor:
            arr = np.asarray(getattr(obs, name)[rows], dtype=np_dtype)
            return torch.from_numpy(np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0))

        col = 0
        for name in PER_OBS_FLOAT_FIELDS:
            self._slices[name] = (col, None)
            col += 1
        for name in PACKED_CHANNEL_FIELDS:
            self._slices[name] = (col, col + nc)
            col += nc
        for start in range(0, n, self._CHUNK):
            rows = slice(start, min(start + self._CHUNK, n))
            block = floats[rows]
            for name in PER_OBS_FLOAT_FIELDS[:-2]:
                block[:, self._slices[name][0]] = finite(name, rows)
            block[:, self._slices["cos2_scan"][0]] = _cos2_scan(obs, rows, np_dtype)
            block[:, self._slices["cos_view"][0]] = _cos_view(obs, rows)
            for name in ("tb_obs_k", "mask", "emis_water"):
                a, b = self._slices[name]
                block[:, a:b] = finite(name, rows)
            atmosphere = physics.effective_atmosphere(
                **{name: finite(name, rows) for name in ATMOSPHERE_FIELDS},
                cloud_fraction=finite("cloud_fraction", rows),
            )
            for name, value in zip(("tau_eff", "down_eff_k", "const_k"), atmosphere):
                a, b = self._slices[name]
                block[:, a:b] = value
        ints = torch.empty((n, len(INT_FIELDS)), dtype=torch.int64)
        ints[:, 0] = torch.arange(n)
        ints[:, 1] = torch.from_numpy(np.asarray(obs.igrid, dtype=np.int64))
        ints[:, 2] = torch.from_numpy(np.asarray(obs.istep, dtype=np.int64))
        ints[:, 3] = torch.from_numpy(np.asarray(obs.isensor, dtype=np.int64))
        self.floats = floats.to(self.device)
        self.ints = ints.to(self.device)

    def __len__(self) -> int:
        return self.nobs

    def batch(self, index: Tensor) -> Batch:
        """The observations ``index`` (int64 tensor on :attr:`device`) as a :class:`Batch`."""
        f = self.floats.index_select(0, index)
        i = self.ints.index_select(0, index)
        fields: dict[str, Tensor] = {name: i[:, k] for k, name in enumerate(INT_FIELDS)}
        for name, (a, b) in self._slices.items():
            fields[name] = f[:, a] if b is None else f[:, a:b]
        return Batch(**fields)

    def all(self) -> Batch:
        """Every observation as one batch."""
        return self.batch(torch.arange(self.nobs, device=self.device))


def _cos2_scan(obs: Observations, rows: slice, np_dtype) -> torch.Tensor:
    """``cos^2`` of the scan angle of each observation: from ``ZENITH`` and the orbit altitude
    for cross-track sensors (:func:`physics.scan_angle_cos2`), 1 for conical ones."""
    basis = obs.basis
    isensor = np.asarray(obs.isensor[rows], dtype=np.int64)
    out = torch.ones(isensor.size, dtype=torch.float64)
    if basis.cross_track is None or not basis.cross_track.any():
        return out
    cross = basis.cross_track[isensor]
    zen = torch.from_numpy(np.asarray(obs.zenith_deg[rows], dtype=np.float64)[cross])
    alt = torch.from_numpy(np.asarray(basis.altitude_km, dtype=np.float64)[isensor[cross]])
    out[torch.from_numpy(cross)] = physics.scan_angle_cos2(zen, alt)
    return out


def _cos_view(obs: Observations, rows: slice) -> torch.Tensor:
    """Cosine of each observation's local zenith (view) angle: ``ZENITH`` for cross-track
    sensors, the sensor's incidence angle for conical ones (1 where neither is finite)."""
    basis = obs.basis
    isensor = np.asarray(obs.isensor[rows], dtype=np.int64)
    inc = np.array([basis.sensor(s).incidence_deg for s in range(basis.nsensor)], dtype=np.float64)
    theta = inc[isensor]
    if basis.cross_track is not None and basis.cross_track.any():
        cross = basis.cross_track[isensor]
        theta[cross] = np.asarray(obs.zenith_deg[rows], dtype=np.float64)[cross]
    out = np.cos(np.radians(theta))
    return torch.from_numpy(np.where(np.isfinite(out), out, 1.0))


@dataclass(frozen=True)
class RowCounts:
    """How many training (observation, lag) pairs touch each state row.

    sic : float64 (ngrid * (nstep + nlag),): count(r) for SIC-map row r = g * (nstep + nlag) + col.
    grid : float64 (ngrid * nstep,): observations per grid-property row g * nstep + t.
    nobs : number of observations counted.
    nlag, ngrid, nstep : the state's shape.
    """

    sic: np.ndarray
    grid: np.ndarray
    nobs: int
    nlag: int
    ngrid: int
    nstep: int

    @property
    def n_warm_rows(self) -> int:
        """Observed SIC rows that have a temperature (columns >= nlag)."""
        c = self.sic.reshape(self.ngrid, self.nstep + self.nlag)[:, self.nlag :]
        return int(np.count_nonzero(c))


def build_row_counts(
    obs: Observations, nlag: int, ngrid: int, nstep: int, index: np.ndarray | None = None
) -> RowCounts:
    """Count the observations touching each SIC-map row (through the lag window) and grid-property row.

    Parameters
    ----------
    obs : Observations
    nlag, ngrid, nstep : the state's shape.
    index : optional int array of the observations to count (e.g. the training
        subset); None = all.

    Raises
    ------
    SeaIceError
        ``igrid`` or ``istep`` outside the state (0..ngrid-1, 0..nstep-1).
    """
    g = np.asarray(obs.igrid, dtype=np.int64)
    t = np.asarray(obs.istep, dtype=np.int64)
    if index is not None:
        g, t = g[index], t[index]
    if g.size and (g.min() < 0 or g.max() >= ngrid):
        raise SeaIceError(f"Observations.igrid: expected 0 <= igrid < ngrid={ngrid}, got range {g.min()}..{g.max()}")
    if t.size and (t.min() < 0 or t.max() >= nstep):
        raise SeaIceError(f"Observations.istep: expected 0 <= istep < nstep={nstep}, got range {t.min()}..{t.max()}")
    ncol = nstep + nlag
    base = g * ncol + t + nlag
    sic = np.zeros(ngrid * ncol, dtype=np.float64)
    for lag in range(nlag + 1):
        sic += np.bincount(base - lag, minlength=ngrid * ncol)
    grid = np.bincount(g * nstep + t, minlength=ngrid * nstep).astype(np.float64)
    return RowCounts(sic=sic, grid=grid, nobs=int(g.size), nlag=nlag, ngrid=ngrid, nstep=nstep)


def _anchor_channel(cost: CostConfig, basis: ChannelBasis) -> int:
    for name in cost.anchor_channels:
        if name in basis.channel_index:
            return int(basis.channel_index[name])
    raise SeaIceError(
        f"anchor_channels: none of {', '.join(cost.anchor_channels)} is in the run's channels "
        f"({', '.join(basis.channel_names)}); add a sensor with one of them"
    )


def _anchor(cost: CostConfig, basis: ChannelBasis, emissivity: EmissivityModel) -> int | None:
    """Basis index of the anchored channel, or None when the v2 network is anchored at
    ``cost.anchor_frequency_ghz`` (V polarisation) instead of at a channel."""
    if cost.anchor_frequency_ghz is not None and not isinstance(emissivity, NetworkEmissivity):
        raise SeaIceError("anchor_frequency_ghz: needs the v2 network (frequency input); use anchor_channels for v1")
    if cost.anchor == "mean" and not isinstance(emissivity, LinearEmissivity):
        raise SeaIceError("anchor: 'mean' (the e0 of the anchor channel) needs the v1 linear model; use 'floor' for v2")
    return _anchor_channel(cost, basis) if cost.anchor_frequency_ghz is None else None


class HybridNetwork(nn.Module):
    """The hybrid empirical-physical network (observation operator + cost).

    Parameters
    ----------
    model, cost : ModelConfig, CostConfig
    basis : ChannelBasis of the run.
    background : BackgroundMaps (SIC initialises the SIC map; T_map feeds the warm-ice term).
    nobs : rows of the observation-space state (all observations the tensors hold).
    row_counts : RowCounts of the training observations (needed by "sampled" priors).
    sparse : state lookups give sparse gradients (sparse optimiser on :meth:`sparse_parameters`).
    generator : torch.Generator for the initial network weights.
    prior_mode : "sampled" or "full"; None = "sampled" if ``row_counts`` is given, else "full".

    Attributes
    ----------
    state : EmpiricalState
    emissivity : EmissivityModel (LinearEmissivity for v1, NetworkEmissivity for v2)
    wind_coef : Parameter (nchan,), w_c, init 0.
    bias_ice_k, bias_ocean_k : Parameter (nsensor, nchan), init from the backgrounds.
    anchor_channel : basis index of the anchor channel; None when the v2 network is anchored at
        ``CostConfig.anchor_frequency_ghz`` (the forward pass then returns ``emis_anchor``, the
        network's V emissivity at that frequency, evaluated once more per observation).
    """

    def __init__(
        self,
        model: ModelConfig,
        cost: CostConfig,
        basis: ChannelBasis,
        background: BackgroundMaps,
        nobs: int,
        row_counts: RowCounts | None = None,
        sparse: bool = True,
        generator: torch.Generator | None = None,
        prior_mode: Literal["sampled", "full"] | None = None,
    ) -> None:
        super().__init__()
        if background.nlag != model.nlag:
            raise SeaIceError(f"background SIC: expected nlag={model.nlag} lag columns, got nlag={background.nlag}")
        if background.t_skin_map_k.shape != (background.ngrid, background.nstep):
            raise SeaIceError(
                f"TSFC background map: expected shape {(background.ngrid, background.nstep)}, "
                f"got {background.t_skin_map_k.shape}"
            )
        self.model_config = model
        self.cost_config = cost
        self.basis = basis
        self.nobs = int(nobs)
        self.sparse = bool(sparse)
        if prior_mode is None:
            prior_mode = "sampled" if row_counts is not None else "full"
        if prior_mode not in ("sampled", "full"):
            raise SeaIceError(f"prior_mode: expected sampled or full, got {prior_mode!r}")
        if prior_mode == "sampled" and row_counts is None:
            raise SeaIceError("prior_mode: 'sampled' needs row_counts (build_row_counts of the training observations)")
        self.prior_mode = prior_mode

        self.state = EmpiricalState(
            background.sic, background.nstep, model.nprop_grid, nobs, model.nprop_obs, model.lag_weights, sparse
        )
        self.emissivity = make_emissivity(model, basis, generator)
        self.anchor_channel = _anchor(cost, basis, self.emissivity)

        ns, nc = basis.nsensor, basis.nchan
        ice = np.array(basis.bias_ice_bg_k, dtype=np.float32).copy()
        ocean = np.array(basis.bias_ocean_bg_k, dtype=np.float32).copy()
        err = np.array(basis.bias_error_k, dtype=np.float32).copy()
        for s, name in enumerate(basis.sensor_names):
            if name in cost.bias_bg:
                b_ice, b_ocean, b_err = cost.bias_bg[name]
                ice[s, :], ocean[s, :], err[s] = b_ice, b_ocean, b_err
        self.wind_coef = nn.Parameter(torch.zeros(nc))
        self.bias_ice_k = nn.Parameter(torch.from_numpy(ice.copy()))
        self.bias_ocean_k = nn.Parameter(torch.from_numpy(ocean.copy()))
        self.register_buffer("bias_ice_bg_k", torch.from_numpy(ice))
        self.register_buffer("bias_ocean_bg_k", torch.from_numpy(ocean))
        self.register_buffer("bias_error_k", torch.from_numpy(err).reshape(ns, 1))
        self.register_buffer("obs_error_k", torch.from_numpy(np.asarray(basis.obs_error_k, dtype=np.float32)))

        # T_map per SIC row; lag columns have no temperature: 0 K (warm weight 0).
        st = self.state
        t_rows = np.zeros((st.ngrid, st.ncol), dtype=np.float32)
        t_rows[:, st.nlag :] = background.t_skin_map_k
        # data-derived map-sized buffers are not saved in state_dict (checkpoints stay small)
        self.register_buffer("t_map_flat", torch.from_numpy(t_rows.reshape(-1)), persistent=False)
        if row_counts is not None:
            if row_counts.sic.shape != (st.ngrid * st.ncol,):
                raise SeaIceError(f"row_counts: expected {st.ngrid * st.ncol} SIC rows, got {row_counts.sic.shape[0]}")
            # count(r), +inf for unobserved rows so that 1 / count = 0 there (integers: exact in float32)
            cnt = np.where(row_counts.sic > 0, row_counts.sic, np.inf)
            self.register_buffer("sic_count", torch.from_numpy(cnt.astype(np.float32)), persistent=False)
            self.counts_nobs = row_counts.nobs
            self.n_warm_rows = max(row_counts.n_warm_rows, 1)
        else:
            self.register_buffer("sic_count", None, persistent=False)
            self.counts_nobs = self.nobs
            self.n_warm_rows = st.ngrid * st.nstep
        self._cache: dict[tuple, Tensor] = {}  # derived constants, by (name, ..., dtype, device)
        self.shared_prior_share = 1.0
        """Weight of the priors that act on the shared parameters only (bias prior, v1 anchor) in
        :meth:`cost_terms`: 1 for a network alone; in a run sharded over ranks 1 on rank 0 and 0 on
        the others, so that the sum of the ranks' costs counts them once."""

    # ---------------------------------------------------------------- forward
    reads_state_values = True
    """:meth:`forward` can compute with state rows handed to it (``state_values``)."""

    def forward(
        self, batch: Batch, zero_sic: bool = False, state_values: list[Tensor] | None = None
    ) -> dict[str, Tensor]:
        """Simulate the batch.

        ``state_values``: optional, the values of the state rows the batch reads, one
        tensor per entry of :meth:`state_rows` (``rows.shape + (ncol,)``), e.g. the
        caught-up rows of :meth:`~empirical_seaice.training.deferred_adam.DeferredAdam.gather`;
        None = look them up in the state tables.

        Returns
        -------
        dict with ``tb`` TB' (B, nchan) K; ``sic`` c_i (B,); ``emis_ice``,
        ``emis_ocean`` (B, nchan); ``x_t`` (B,); ``props`` (B, nprop);
        ``sic_rows``, ``sic_lags`` (B, nlag + 1): the SIC rows seen and their values.
        With ``zero_sic`` the SIC seen is 0 (the ``tbzero`` diagnostic).
        """
        mc = self.model_config
        st = self.state
        if state_values is None:
            rows, lags = st.sic_lags(batch.igrid, batch.istep)
            props = torch.cat([st.grid_properties(batch.igrid, batch.istep), st.obs_properties(batch.iobs)], dim=-1)
        else:
            rows = st.sic_rows(batch.igrid, batch.istep)
            lags = state_values[0].reshape(rows.shape)
            props = torch.cat(state_values[1:], dim=-1) if len(state_values) > 1 else lags.new_zeros((len(batch), 0))
        sic = lags @ st.lag_weights
        if zero_sic:
            sic = torch.zeros_like(sic)
        x_t = physics.normalised_temperature(batch.t_skin_k, mc.t_ref_k, mc.t_scale_k)
        emis_ice = self.emissivity(x_t, props, batch.isensor, batch.cos2_scan, batch.cos_view)
        if self.anchor_channel is None:  # original v2: one more evaluation per observation, V polarisation
            f = self.cost_config.anchor_frequency_ghz
            emis_anchor = self.emissivity.emissivity_vh(x_t, props, x_t.new_full((), f), batch.cos_view)[..., POL_V]
        else:
            emis_anchor = emis_ice[:, self.anchor_channel]
        emis_ocean = physics.ocean_emissivity(batch.emis_water, batch.wind_ms, self.wind_coef)
        # the parameter-free atmospheric terms first, then one SIC mix (fewer graph nodes)
        a_ice, a_ocean = physics.surface_atmosphere_terms(
            t_skin_k=batch.t_skin_k,
            ocean_t_floor_k=mc.ocean_t_floor_k,
            tau_eff=batch.tau_eff,
            down_eff_k=batch.down_eff_k,
        )
        tb = physics.simulate_tb_mixed(
            sic=sic,
            emis_ice=emis_ice,
            emis_ocean=emis_ocean,
            a_ice_k=a_ice,
            a_ocean_k=a_ocean,
            const_k=batch.const_k,
            bias_ice_k=self.bias_ice_k.index_select(0, batch.isensor),
            bias_ocean_k=self.bias_ocean_k.index_select(0, batch.isensor),
        )
        return {
            "tb": tb,
            "sic": sic,
            "emis_ice": emis_ice,
            "emis_ocean": emis_ocean,
            "x_t": x_t,
            "props": props,
            "emis_anchor": emis_anchor,
            "sic_rows": rows,
            "sic_lags": lags,
        }

    # ------------------------------------------------------------------- cost
    def observation_costs(self, batch: Batch, out: dict[str, Tensor]) -> Tensor:
        """J_o,i of each observation of the batch, (B,)."""
        return costs.observation_cost(batch.tb_obs_k, out["tb"], batch.mask, self.obs_error_k)

    def _map_residuals(self, sic: Tensor, rows: Tensor | None) -> dict[str, tuple[Tensor, Tensor | None, float]]:
        """The SIC-map priors that are on (range, background, false ice) as quadratic penalties
        ``r^2 / sigma^2`` (:mod:`empirical_seaice.cost.terms`), for SIC values ``sic`` at flattened
        map rows ``rows`` (None = the whole map): name -> (residual r, slope dr/dC or None for 1, sigma)."""
        cc = self.cost_config
        p: dict[str, tuple[Tensor, Tensor | None, float]] = {
            "sic_range": (costs.sic_range_residual(sic), None, cc.sic_error)
        }
        if cc.sic_background_prior:
            bg = self.state.background_flat
            p["sic_background"] = (sic - (bg if rows is None else bg.take(rows)), None, cc.sic_background_error)
        if cc.false_ice_prior and cc.false_ice_shape == "smooth":
            s = cc.false_ice_peak_scaling
            p["false_ice"] = (
                costs.false_ice_smooth_residual(sic, s),
                costs.false_ice_smooth_slope(sic, s),
                cc.false_ice_error,
            )
        elif cc.false_ice_prior:
            p["false_ice"] = (costs.false_ice_residual(sic), costs.false_ice_slope(sic), cc.false_ice_error)
        return p

    def cost_terms(
        self, batch: Batch, out: dict[str, Tensor], nobs_total: int, batch_total: int | None = None
    ) -> dict[str, Tensor]:
        """Per-step stochastic estimate of each cost term (scalars).

        Keys: ``obs`` ((1/B) sum_i J_o,i); ``sic_range``; ``sic_background``
        and ``false_ice`` when switched on; ``warm_ice`` (always reported; see
        :meth:`total_cost`); ``anchor``; ``bias``. ``nobs_total`` is the number
        of training observations (the ``nobs`` of ``J_b / nobs``).
        ``batch_total`` is the ``B`` of the batch means (default ``len(batch)``):
        in a sharded step a rank holds only its share of a global batch of
        ``B`` observations, and the terms of all ranks then add up to the
        global batch's terms (the priors on the shared parameters alone carry
        the factor :attr:`shared_prior_share`, so that they count once).

        Every term but the whole-map priors of "full" mode and the v1 anchor is
        computed with its derivative without recording a graph, from the priors'
        residuals and slopes (quadratic penalties ``r^2 / sigma^2``,
        :mod:`empirical_seaice.cost.terms`), and enters autograd as one node
        (:func:`costs.terms_with_gradients`); each term's constant factor is
        applied once at the end.
        """
        cc = self.cost_config
        nb = len(batch) if batch_total is None else int(batch_total)
        tb, lags = out["tb"], out["sic_lags"]
        emis_anchor = out["emis_anchor"]
        sampled = self.prior_mode == "sampled"
        floor = cc.anchor != "mean"
        grads = torch.is_grad_enabled()
        names: list[str] = []
        raw: list[Tensor] = []  # each term's value before its constant factor ``scale``
        scale: list[float] = []
        derivs: dict[str, list[tuple[int, Tensor]]] = {"tb": [], "lags": [], "anchor": [], "b_ice": [], "b_ocean": []}

        def dot(a: Tensor, b: Tensor) -> Tensor:
            return torch.dot(a.reshape(-1), b.reshape(-1))

        with torch.no_grad():
            # (1/B) sum_ic (TB'_ic - y_ic)^2 mask_ic / sigma_c^2, derivative 2 (TB' - y) mask / (sigma^2 B)
            d = tb - batch.tb_obs_k
            g_tb = d.mul(batch.mask).mul_(self._obs_scale(nb))
            names.append("obs"), raw.append(dot(d, g_tb)), scale.append(0.5)
            derivs["tb"].append((0, g_tb))
            if sampled:
                rows = out["sic_rows"]
                w = self._derived(("inv_count",), self.sic_count.reciprocal).take(rows)  # 1 / count(r); 1 / B later
                for name, (r, slope, sigma) in self._map_residuals(lags, rows).items():
                    wr = w * r  # sum_r w r^2 / (sigma^2 B), derivative 2 w r dr/dC / (sigma^2 B)
                    if grads:
                        derivs["lags"].append(
                            (
                                len(raw),
                                costs.quadratic_penalty_grad(wr, 1.0 if slope is None else slope, sigma).div_(nb),
                            )
                        )
                    names.append(name), raw.append(dot(wr, r)), scale.append(1.0 / (sigma * sigma * nb))
                # the reference warm-ice term has no derivative; its effective form max(C, 0) warm does
                warm = self._derived(
                    ("warm_rows",),
                    lambda: costs.warm_ice_weight(self.t_map_flat, cc.warm_ice_threshold_k, cc.warm_ice_factor),
                ).take(rows)
                effective = cc.warm_ice == "effective"
                warm_scale = self.counts_nobs / (self.n_warm_rows * nb * nobs_total)
                if grads and effective:
                    derivs["lags"].append(
                        (len(raw), costs.warm_ice_penalty_weighted_grad(lags, warm, True).mul_(w).mul_(warm_scale))
                    )
                raw.append(dot(w, costs.warm_ice_penalty_weighted(lags, warm, effective)))
                names.append("warm_ice"), scale.append(warm_scale)
            if floor:  # the v2 anchor floor, summed over the batch, / nobs
                r = costs.anchor_floor_residual(emis_anchor, cc.anchor_value)
                if grads:
                    derivs["anchor"].append(
                        (len(raw), costs.quadratic_penalty_grad(r, -1.0, cc.anchor_error).div_(nobs_total))
                    )
                names.append("anchor"), raw.append(dot(r, r))
                scale.append(1.0 / (cc.anchor_error * cc.anchor_error * nobs_total))
            bias = 0.0  # sum (b - b_bg)^2 / sigma_b^2 / nobs over both biases
            for key, b, bg in (
                ("b_ice", self.bias_ice_k, self.bias_ice_bg_k),
                ("b_ocean", self.bias_ocean_k, self.bias_ocean_bg_k),
            ):
                r = b - bg
                wr = r * self._derived(("bias_inv_var",), lambda: self.bias_error_k.square().reciprocal())
                if grads:
                    derivs[key].append((len(raw), wr.mul(2.0 * self.shared_prior_share / nobs_total)))
                bias = bias + dot(wr, r)
            names.append("bias"), raw.append(bias), scale.append(self.shared_prior_share / nobs_total)
            values = torch.stack(raw).mul_(torch.tensor(scale, dtype=tb.dtype, device=tb.device))
        inputs = {"tb": tb, "lags": lags, "anchor": emis_anchor, "b_ice": self.bias_ice_k, "b_ocean": self.bias_ocean_k}
        pairs = [(inputs[k], dl) for k, dl in derivs.items() if dl]
        vec = costs.terms_with_gradients(values, [x for x, _ in pairs], [dl for _, dl in pairs])
        fused = dict(zip(names, vec.unbind()))
        terms: dict[str, Tensor] = {"obs": fused["obs"]}
        if sampled:
            terms.update((k, v) for k, v in fused.items() if k not in ("obs", "anchor", "bias"))
        else:
            terms.update(self.full_prior_terms(nobs_total))
        if floor:
            terms["anchor"] = fused["anchor"]
        else:
            e0 = self.emissivity.e0[self.anchor_channel]  # type: ignore[union-attr]
            terms["anchor"] = (
                costs.anchor_mean_penalty(e0, cc.anchor_value, cc.anchor_error) * self.shared_prior_share / nobs_total
            )
        terms["bias"] = fused["bias"]
        return terms

    def _derived(self, key: tuple, make) -> Tensor:
        """A constant derived from the buffers, cached per dtype and device (the buffers follow the module)."""
        ref = self.obs_error_k
        key = key + (ref.dtype, ref.device)
        value = self._cache.get(key)
        if value is None:
            value = self._cache[key] = make()
        return value

    def _obs_scale(self, nb: int) -> Tensor:
        """``2 / (sigma_c^2 B)`` per channel."""
        return self._derived(("obs_scale", nb), lambda: 2.0 / (self.obs_error_k.square() * nb))

    def bias_prior(self) -> Tensor:
        """``sum (b_ice - b_ice_bg)^2 / sigma^2 + sum (b_ocean - b_ocean_bg)^2 / sigma^2`` (not /nobs)."""
        return costs.bias_penalty(self.bias_ice_k, self.bias_ice_bg_k, self.bias_error_k) + costs.bias_penalty(
            self.bias_ocean_k, self.bias_ocean_bg_k, self.bias_error_k
        )

    def full_prior_terms(self, nobs_total: int | None = None) -> dict[str, Tensor]:
        """Whole-map SIC priors over the entire map: each ``sum_r p(C_r) / nobs``; ``warm_ice`` the
        reference mean over (ngrid, nstep), / nobs. ``nobs_total`` defaults to the counted training observations."""
        cc = self.cost_config
        n = self.counts_nobs if nobs_total is None else nobs_total
        st = self.state
        sic = st.sic_map.weight[:, 0]
        terms = {
            name: costs.quadratic_penalty(r, sigma).sum() / n
            for name, (r, _, sigma) in self._map_residuals(sic, None).items()
        }
        c2 = st.sic_map_2d()[:, st.nlag :]
        t2 = self.t_map_flat.view(st.ngrid, st.ncol)[:, st.nlag :]
        terms["warm_ice"] = costs.warm_ice_term(
            c2, t2, cc.warm_ice_threshold_k, cc.warm_ice_factor, cc.warm_ice == "effective", nobs=n
        )
        return terms

    def total_cost(self, terms: dict[str, Tensor]) -> Tensor:
        """Sum of the terms. In the reference ("diagnostic") warm-ice mode the
        warm-ice term is added *with zero gradient* (detached): the total's
        value is the reference loss, its gradient is that of the other terms."""
        total = None
        for name, value in terms.items():
            if name == "warm_ice" and self.cost_config.warm_ice == "diagnostic":
                value = value.detach()
            total = value if total is None else total + value
        assert total is not None
        return total

    def fused_program(self, data: ObservationTensors, nobs_total: int, training: bool = True):
        """The compiled forward, sampled cost and gradient of this network on ``data``
        (:func:`empirical_seaice.model.fused.build_program`): ``(program, "")`` or ``(None, reason)``;
        ``training=False``: for the compiled forward pass only (:func:`empirical_seaice.model.fused.simulate`)."""
        from empirical_seaice.model.fused import build_program

        return build_program(self, data, nobs_total, training)

    # ------------------------------------------------------------- parameters
    def state_rows(self, batch: Batch) -> list[tuple[nn.Parameter, Tensor]]:
        """The rows of each state table that a batch reads (int64, may repeat):
        SIC-map rows through the lag window (B, nlag + 1), grid-property rows
        ``g * nstep + t`` (B,), observation rows ``iobs`` (B,), in this order (the
        order of :meth:`forward`'s ``state_values``). Lets a lazy optimiser bring
        them up to date before the forward pass."""
        st = self.state
        rows = [(st.sic_map.weight, st.sic_rows(batch.igrid, batch.istep))]
        if st.props_grid is not None:
            rows.append((st.props_grid.weight, st.grid_rows(batch.igrid, batch.istep)))
        if st.props_obs is not None:
            rows.append((st.props_obs.weight, batch.iobs))
        return rows

    def sparse_parameters(self) -> list[nn.Parameter]:
        """The state tables (SIC map, grid and observation properties): sparse grads when ``sparse``."""
        return list(self.state.parameters())

    def dense_parameters(self) -> list[nn.Parameter]:
        """Emissivity-model weights, wind correction and TB biases."""
        return [*self.emissivity.parameters(), self.wind_coef, self.bias_ice_k, self.bias_ocean_k]


__all__ = [
    "Batch",
    "ObservationTensors",
    "HybridNetwork",
    "RowCounts",
    "build_row_counts",
    "PER_OBS_FLOAT_FIELDS",
    "PACKED_CHANNEL_FIELDS",
    "ATMOSPHERE_FIELDS",
    "INT_FIELDS",
]
