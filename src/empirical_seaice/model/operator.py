"""HybridNetwork: empirical state + emissivity model + known physics = observation operator.

Per observation (docs/method.md, "The forward model"): lag-weighted SIC ``c_i`` from
:class:`~empirical_seaice.model.state.EmpiricalState`; ``x_T``; ice emissivity from
the :class:`~empirical_seaice.model.emissivity.EmissivityModel` with inputs
``[x_T, P[g, t, :], Q[i, :]]``; ocean emissivity with the wind correction;
then :func:`empirical_seaice.model.physics.simulate_tb` (surface mix, clear/cloudy
specular RT, all-sky, SIC-weighted bias of the observation's sensor) in its
factored form: the effective all-sky atmosphere
(:func:`empirical_seaice.model.physics.effective_atmosphere`, data only: stored so by the
reader, :mod:`empirical_seaice.all_sky`), the surface terms
(:func:`empirical_seaice.model.physics.surface_atmosphere_terms`), then
:func:`empirical_seaice.model.physics.simulate_tb_mixed`, one SIC mix of the
pure-ice and pure-ocean TBs: same TB', fewer operations per step.

Cost: each training step minimises the per-step estimate of ``J / nobs`` defined in
:mod:`empirical_seaice.cost.objective` (:meth:`HybridNetwork.cost_terms`; its fused,
hand-differentiated form :func:`empirical_seaice.cost.fused.fused_batch_terms` in the
default "sampled" mode; the sampling of the whole-map priors:
:mod:`empirical_seaice.cost.sampling`). "full" mode (``prior_mode="full"``) computes the
map priors over the entire map each step (the reference's way); use it with
``sparse=False`` (it produces dense gradients on the SIC table).
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from empirical_seaice.config import FULL_PRIORS_MAX_SIC_ROWS, CostConfig, ModelConfig
from empirical_seaice.cost import objective
from empirical_seaice.cost import terms as costs
from empirical_seaice.cost.fused import fused_batch_terms
from empirical_seaice.cost.neighbours import grid_neighbours, smoothness_pairs
from empirical_seaice.cost.sampling import RowCounts
from empirical_seaice.errors import SeaIceError
from empirical_seaice.model import physics
from empirical_seaice.model.emissivity import EmissivityModel, LinearEmissivity, NetworkEmissivity, make_emissivity
from empirical_seaice.model.state import EmpiricalState
from empirical_seaice.model.tensors import Batch, ObservationTensors
from empirical_seaice.observations import BackgroundMaps
from empirical_seaice.sensors import POL_V, ChannelBasis

logger = logging.getLogger(__name__)

SMOOTHNESS_NEEDS_FULL = (
    "SIC smoothness prior off in this run: it needs the whole-map priors at every step (--map-priors full, "
    f"or auto on a map of at most {FULL_PRIORS_MAX_SIC_ROWS:,} rows, in a single process on CPU), and this "
    "run samples them"
)
"""The one-time note of a run whose sampled priors leave the smoothness prior out."""


def _bias_backgrounds(basis: ChannelBasis, cost: CostConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background TB biases over ice and ocean (nsensor, nchan) and their errors (nsensor,), K:
    the sensor catalogue's, or a preset's override (``CostConfig.bias_bg``)."""
    ice = np.array(basis.bias_ice_bg_k, dtype=np.float32).copy()
    ocean = np.array(basis.bias_ocean_bg_k, dtype=np.float32).copy()
    err = np.array(basis.bias_error_k, dtype=np.float32).copy()
    for s, name in enumerate(basis.sensor_names):
        if name in cost.bias_bg:
            b_ice, b_ocean, b_err = cost.bias_bg[name]
            ice[s, :], ocean[s, :], err[s] = b_ice, b_ocean, b_err
    return ice, ocean, err


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

    bias_ice_bg_k: Tensor
    bias_ocean_bg_k: Tensor
    bias_error_k: Tensor
    obs_error_k: Tensor
    t_map_flat: Tensor
    sic_count: Tensor | None

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
        ice, ocean, err = _bias_backgrounds(basis, cost)
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
            cnt = row_counts.sic.astype(np.float32)
            cnt[cnt == 0.0] = np.inf
            self.register_buffer("sic_count", torch.from_numpy(cnt), persistent=False)
            self.counts_nobs = row_counts.nobs
            self.n_warm_rows = max(row_counts.n_warm_rows, 1)
        else:
            self.register_buffer("sic_count", None, persistent=False)
            self.counts_nobs = self.nobs
            self.n_warm_rows = st.ngrid * st.nstep
        # the smoothness prior's neighbour pairs of the SIC map (20 bytes per SIC row): built when asked for
        # (:meth:`smoothness_pairs`), kept only where every step reads them
        self._smooth_args = (
            (st.ngrid, st.ncol, cost.sic_smoothness_error, cost.sic_smoothness_time_error, background.lat,
             background.lon)
            if cost.sic_smoothness else None
        )  # fmt: skip
        self._smooth_pairs: tuple[Tensor, Tensor, Tensor] | None = None
        self._neighbours: tuple[np.ndarray, np.ndarray] | None = None  # the grid's neighbour pairs (k-d tree), once
        self._smoothness_note = False  # the note that the sampled priors leave the smoothness prior out, given
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
        sic = physics.lag_weighted_sic(lags, st.lag_weights)
        if zero_sic:
            sic = torch.zeros_like(sic)
        x_t = physics.normalised_temperature(batch.t_skin_k, mc.t_ref_k, mc.t_scale_k)
        emis_ice = self.emissivity(x_t, props, batch.isensor, batch.cos2_scan, batch.cos_view)
        if self.anchor_channel is None:  # original v2: one more evaluation per observation, V polarisation
            f = self.cost_config.anchor_frequency_ghz
            assert f is not None  # anchor_channel is None only with an anchor frequency
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
    def batch_cost(
        self, batch: Batch, out: dict[str, Tensor], nobs_total: int, batch_total: int | None = None
    ) -> objective.BatchCost:
        """What the per-step cost of the batch reads (:class:`~empirical_seaice.cost.objective.BatchCost`):
        the simulated TBs, the SIC rows with their sampling weights, the anchor emissivity, the biases
        (``batch_total``: see :meth:`cost_terms`)."""
        cc = self.cost_config
        rows = out["sic_rows"]
        # elementwise functions of the batch's rows of the map-sized buffers, taken per batch (the same bits
        # as taking the rows of the whole map's; no map-sized array held beside the training's)
        if self.sic_count is not None:
            w = self.sic_count.take(rows).reciprocal()  # 1 / count(r), 0 where unobserved
        else:  # no row counts ("full" mode): no batch estimate of the map priors
            w = torch.zeros_like(out["sic_lags"])
        warm = costs.warm_ice_weight(self.t_map_flat.take(rows), cc.warm_ice_threshold_k, cc.warm_ice_factor)
        e0 = None
        if cc.anchor == "mean":
            assert isinstance(self.emissivity, LinearEmissivity) and self.anchor_channel is not None  # checked
            e0 = self.emissivity.e0[self.anchor_channel]
        return objective.BatchCost(
            tb_sim_k=out["tb"],
            tb_obs_k=batch.tb_obs_k,
            mask=batch.mask,
            obs_error_k=self.obs_error_k,
            sic_lags=out["sic_lags"],
            row_weight=w,
            sic_background=self.state.background_flat.take(rows) if cc.sic_background_prior else None,
            warm=warm,
            warm_scale=self.counts_nobs / (self.n_warm_rows * nobs_total),
            emis_anchor=out["emis_anchor"],
            e0_anchor=e0,
            bias_ice_k=self.bias_ice_k,
            bias_ocean_k=self.bias_ocean_k,
            bias_ice_bg_k=self.bias_ice_bg_k,
            bias_ocean_bg_k=self.bias_ocean_bg_k,
            bias_error_k=self.bias_error_k,
            nobs=nobs_total,
            batch_total=batch_total,
            shared_share=self.shared_prior_share,
            emis_ice_k=out["emis_ice"] if cc.emis_ceiling_error is not None else None,
        )

    def cost_terms(
        self, batch: Batch, out: dict[str, Tensor], nobs_total: int, batch_total: int | None = None
    ) -> dict[str, Tensor]:
        """The per-step estimate of each term of ``J / nobs`` for the batch (0-d tensors).

        Keys in order: ``obs`` ((1/B) sum_i J_o,i); ``sic_range``; ``sic_background`` and
        ``false_ice`` when switched on; ``warm_ice`` (always reported; see :meth:`total_cost`);
        ``anchor``; ``emis_ceiling`` when on; ``bias``. ``nobs_total`` is the number of training
        observations (the ``nobs`` of ``J_b / nobs``). ``batch_total`` is the ``B`` of the batch means
        (default ``len(batch)``): in a sharded step a rank holds only its share of a global batch of
        ``B`` observations, and the terms of all ranks then add up to the global batch's terms (the
        priors on the shared parameters alone carry the factor :attr:`shared_prior_share`, so that they
        count once).
        The terms are those of :func:`empirical_seaice.cost.objective.batch_terms`;
        "sampled" mode computes them with :func:`empirical_seaice.cost.fused.fused_batch_terms`
        (its hand-differentiated optimisation), "full" mode with the exact whole-map priors of
        :meth:`full_prior_terms` (the reference's dense scheme).
        """
        x = self.batch_cost(batch, out, nobs_total, batch_total)
        if self.prior_mode == "sampled":
            self.note_sampled_without_smoothness()
            return fused_batch_terms(self.cost_config, x, self._cache)
        return objective.batch_terms(self.cost_config, x, map_terms=self.full_prior_terms(nobs_total))

    def full_prior_terms(self, nobs_total: int | None = None) -> dict[str, Tensor]:
        """Whole-map SIC priors over the entire map (:func:`~empirical_seaice.cost.objective.map_prior_terms`):
        each ``sum_r p(C_r) / nobs``; ``warm_ice`` the reference mean over (ngrid, nstep). ``nobs_total``
        defaults to the counted training observations."""
        st = self.state
        return objective.map_prior_terms(
            self.cost_config,
            st.sic_map.weight[:, 0],
            st.background_flat,
            st.sic_map_2d()[:, st.nlag :],
            self.t_map_flat.view(st.ngrid, st.ncol)[:, st.nlag :],
            self.counts_nobs if nobs_total is None else nobs_total,
            self.smoothness_pairs(),
        )

    @torch.no_grad()
    def full_prior_values(self, nobs_total: int | None = None) -> dict[str, float]:
        """The values of :meth:`full_prior_terms` (float64, the same names and order), for the
        diagnostics' cost (:func:`~empirical_seaice.products.diagnostics.cost_from_sums`).

        Where numba is present and the map is a CPU float32 one: the row priors in one compiled pass
        over the map (:func:`~empirical_seaice.model.fused_map.map_prior_sums`) and the smoothness prior
        over its neighbour pairs (:func:`~empirical_seaice.model.fused_map.smoothness_sum`), float64
        sums over fixed chunks (the same on any number of threads; the torch terms are float32 sums).
        On the ``benchmark`` twin's 4.1 M map rows about 0.06 s against 0.18-0.24 s for the torch
        terms, at the end of the initial and of the final pass. Else the torch terms' values."""
        if not self.prior_values_compiled():
            return {k: float(v.double()) for k, v in self.full_prior_terms(nobs_total).items()}
        from empirical_seaice.model.fused_map import map_prior_sums, smoothness_sum

        st, cc = self.state, self.cost_config
        sic = st.sic_map.weight[:, 0]

        nobs = self.counts_nobs if nobs_total is None else nobs_total
        bg = st.background_flat.numpy()
        rows = map_prior_sums(sic.numpy(), bg, self.t_map_flat.numpy(), cc, st.ngrid, st.nstep, float(nobs))
        out = {name: float(rows[k]) for k, name in enumerate(("sic_range", "sic_background", "false_ice"))}
        out = {name: value for name, value in out.items() if name in objective.map_priors(cc)}
        if cc.sic_smoothness:
            pairs = self.smoothness_pairs()
            if pairs is None:
                raise ValueError("full_prior_values: the SIC smoothness prior is on but no neighbour pairs were built")
            out[objective.SMOOTHNESS] = smoothness_sum(sic.numpy(), *(t.numpy() for t in pairs)) / nobs
        out["warm_ice"] = float(rows[3])
        return out

    def prior_values_compiled(self) -> bool:
        """Whether :meth:`full_prior_values` sums compiled (numba present, the map a CPU float32 one):
        float64 sums over fixed chunks, the same on any number of threads."""
        from empirical_seaice.model.fused_kernels import HAVE_NUMBA

        w = self.state.sic_map.weight
        return bool(HAVE_NUMBA) and w.device.type == "cpu" and w.dtype == torch.float32

    def note_sampled_without_smoothness(self) -> None:
        """Log once that the sampled priors leave the smoothness prior out (when it is on)."""
        if self.cost_config.sic_smoothness and not self._smoothness_note:
            logger.warning("%s", SMOOTHNESS_NEEDS_FULL)
            self._smoothness_note = True

    def smoothness_pairs(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """``(first, second, inv_var)`` of the SIC smoothness prior (rows of the flattened map), or None
        when the prior is off (:func:`empirical_seaice.cost.neighbours.smoothness_pairs`)."""
        if not self.cost_config.sic_smoothness or self._smooth_args is None:
            return None
        device = self.state.sic_map.weight.device
        pairs = self._smooth_pairs
        if pairs is None or pairs[0].device != device:
            ngrid, ncol, space_error, time_error, lat, lon = self._smooth_args
            if space_error is not None and self._neighbours is None and lat is not None and lon is not None:
                self._neighbours = grid_neighbours(lat, lon)[:2]
            first, second, inv_var = smoothness_pairs(
                ngrid, ncol, space_error, time_error, lat, lon, neighbours=self._neighbours, dtype=np.float32
            )
            pairs = (
                torch.from_numpy(first).to(device),
                torch.from_numpy(second).to(device),
                torch.from_numpy(inv_var).to(device),
            )
            if self.prior_mode == "full":  # every step reads them: built once; else (the diagnostics' full
                self._smooth_pairs = pairs  # cost at a pass's end) not held between the calls
        return pairs

    def total_cost(self, terms: dict[str, Tensor]) -> Tensor:
        """What a step minimises (:func:`~empirical_seaice.cost.objective.total_cost`): the sum of the
        terms, the reference ("diagnostic") warm-ice term without gradient."""
        return objective.total_cost(self.cost_config, terms)

    def fused_program(self, data: ObservationTensors, nobs_total: int, training: bool = True):
        """The compiled forward, sampled cost and gradient of this network on ``data``
        (:func:`empirical_seaice.model.fused.build_program`): ``(program, "")`` or ``(None, reason)``;
        ``training=False``: for the compiled forward pass only (:func:`empirical_seaice.model.fused.simulate`)."""
        from empirical_seaice.model.fused import build_program

        return build_program(self, data, nobs_total, training)

    def device_cost(self, data: ObservationTensors, nobs_total: int, target: str = "cuda"):
        """The forward pass, sampled cost and gradient of this network on ``data`` in one kernel, one
        observation a thread (:func:`empirical_seaice.model.fused_device.build_device_cost`): ``(cost, "")``
        or ``(None, reason)``; ``target`` "cuda", or "cpu" (the same code compiled for the CPU)."""
        from empirical_seaice.model.fused_device import build_device_cost

        return build_device_cost(self, data, nobs_total, target)

    # ------------------------------------------------------------- parameters
    def state_rows(self, batch: Batch) -> list[tuple[Tensor, Tensor]]:
        """The rows of each state table that a batch reads (int64, may repeat):
        SIC-map rows through the lag window (B, nlag + 1), grid-property rows
        ``g * nstep + t`` (B,), observation rows ``iobs`` (B,), in this order (the
        order of :meth:`forward`'s ``state_values``). Lets a lazy optimiser bring
        them up to date before the forward pass."""
        st = self.state
        rows: list[tuple[Tensor, Tensor]] = [(st.sic_map.weight, st.sic_rows(batch.igrid, batch.istep))]
        if st.props_grid is not None:
            rows.append((st.props_grid.weight, st.grid_rows(batch.igrid, batch.istep)))
        if st.props_obs is not None:
            rows.append((st.props_obs.weight, batch.iobs))
        return rows

    def region_rows(self, points: Tensor, obs: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Every row of each state table that belongs to a part of the grid: its grid points ``points`` and
        the observations ``obs`` on them (int64): the SIC map's rows ``g * ncol + col`` of every column (the
        lag days too), the grid properties' ``g * nstep + t`` of every step, the observation properties'
        ``obs``; the tables in :meth:`state_rows`' order (a region the trainer stops on its own)."""
        st = self.state
        points = points.to(torch.int64)
        sic = (points.unsqueeze(-1) * st.ncol + torch.arange(st.ncol, device=points.device)).reshape(-1)
        rows: list[tuple[Tensor, Tensor]] = [(st.sic_map.weight, sic)]
        if st.props_grid is not None:
            grid = (points.unsqueeze(-1) * st.nstep + torch.arange(st.nstep, device=points.device)).reshape(-1)
            rows.append((st.props_grid.weight, grid))
        if st.props_obs is not None:
            rows.append((st.props_obs.weight, obs.to(torch.int64)))
        return rows

    def sparse_parameters(self) -> list[nn.Parameter]:
        """The state tables (SIC map, grid and observation properties): sparse grads when ``sparse``."""
        return list(self.state.parameters())

    def dense_parameters(self) -> list[nn.Parameter]:
        """Emissivity-model weights, wind correction and TB biases."""
        return [*self.emissivity.parameters(), self.wind_coef, self.bias_ice_k, self.bias_ocean_k]


__all__ = ["HybridNetwork", "SMOOTHNESS_NEEDS_FULL"]
