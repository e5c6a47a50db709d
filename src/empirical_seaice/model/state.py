"""The empirical state: trainable SIC map, grid and observation-space properties.

docs/method.md, "Notation":

- SIC map ``C[g, col]``, ``ngrid x (nstep + nlag)``, initialised from the
  background SIC; columns ``col < nlag`` are the days before the period, so
  time step ``t`` lives in column ``t + nlag``.
- grid empirical state ``P[g, t, k]``, ``ngrid x nstep x nprop_grid``, zeros;
- observation empirical state ``Q[i, k]``, ``nobs x nprop_obs``, zeros.

Each table is an :class:`torch.nn.Embedding` over flattened rows
(``g * ncol + col`` for C, ``g * nstep + t`` for P, ``i`` for Q) so a batch
touches only its own rows and, with ``sparse=True``, gets a sparse gradient:
the optimiser's cost per step scales with the batch, not with the state.
(In training, :class:`~empirical_seaice.training.deferred_adam.DeferredAdam` keeps the
three tables' weights in its own storage, the tables becoming views of it,
and hands the network the rows a batch reads.)

The SIC seen by observation ``i`` is the lag-weighted sum of these rows
(docs/method.md step 1, :func:`empirical_seaice.model.physics.lag_weighted_sic`)

``c_i = sum_{l=0..nlag} alpha_l C[g_i, t_i + nlag - l]``

i.e. ``alpha_0`` weights the observation's own day and ``alpha_l`` the day
``l`` steps earlier.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from empirical_seaice.errors import SeaIceError


class EmpiricalState(nn.Module):
    """The trainable state tables of the hybrid network.

    Parameters
    ----------
    background_sic : float array (ngrid, nstep + nlag)
        Background SIC C_b, the initial SIC map (first ``nlag`` columns are the
        days before the period).
    nstep : int
        Number of time steps of the period.
    nprop_grid : int
        Grid empirical variables per (g, t); 0 for none.
    nobs : int
        Number of observations (rows of Q).
    nprop_obs : int
        Observation-space empirical variables per observation; 0 for none.
    lag_weights : sequence of float
        ``alpha_l``, l = 0..nlag; ``nlag = len(lag_weights) - 1``.
    sparse : bool
        Lookups produce sparse gradients (use a sparse optimiser on
        :meth:`parameters`); False gives dense gradients (reference behaviour).

    Attributes
    ----------
    sic_map : nn.Embedding (ngrid * (nstep + nlag), 1)
    props_grid : nn.Embedding (ngrid * nstep, nprop_grid) or None
    props_obs : nn.Embedding (nobs, nprop_obs) or None
    lag_weights : buffer (nlag + 1,)
    background_flat : buffer (ngrid * (nstep + nlag),), C_b by row (for the background prior)
    """

    lag_weights: Tensor
    lag_offsets: Tensor
    background_flat: Tensor
    props_grid: nn.Embedding | None
    props_obs: nn.Embedding | None

    def __init__(
        self,
        background_sic: np.ndarray,
        nstep: int,
        nprop_grid: int,
        nobs: int,
        nprop_obs: int,
        lag_weights: Sequence[float],
        sparse: bool = True,
    ) -> None:
        super().__init__()
        bg = np.asarray(background_sic, dtype=np.float32)
        self.nlag = len(lag_weights) - 1
        if bg.ndim != 2 or bg.shape[1] != nstep + self.nlag:
            raise SeaIceError(
                f"background SIC: expected shape (ngrid, nstep + nlag) = (ngrid, {nstep + self.nlag}), got {bg.shape}"
            )
        self.ngrid = int(bg.shape[0])
        self.nstep = int(nstep)
        self.ncol = self.nstep + self.nlag
        self.nobs = int(nobs)
        self.nprop_grid = int(nprop_grid)
        self.nprop_obs = int(nprop_obs)
        self.sparse = bool(sparse)

        flat = torch.from_numpy(np.ascontiguousarray(bg).reshape(-1, 1).copy())
        self.sic_map = nn.Embedding(self.ngrid * self.ncol, 1, sparse=sparse, _weight=flat)
        self.props_grid = (
            nn.Embedding(
                self.ngrid * self.nstep,
                self.nprop_grid,
                sparse=sparse,
                _weight=torch.zeros(self.ngrid * self.nstep, self.nprop_grid),
            )
            if self.nprop_grid > 0
            else None
        )
        self.props_obs = (
            nn.Embedding(self.nobs, self.nprop_obs, sparse=sparse, _weight=torch.zeros(self.nobs, self.nprop_obs))
            if self.nprop_obs > 0
            else None
        )
        self.register_buffer("lag_weights", torch.tensor(list(lag_weights), dtype=torch.float32))
        self.register_buffer("lag_offsets", torch.arange(self.nlag, -1, -1, dtype=torch.int64), persistent=False)
        # derived from the input data: not saved in state_dict (checkpoints stay small)
        self.register_buffer("background_flat", flat[:, 0].clone(), persistent=False)

    # ------------------------------------------------------------------ lookups
    def sic_rows(self, igrid: Tensor, istep: Tensor) -> Tensor:
        """Rows of the flattened SIC map seen through the lag window, (B, nlag + 1).

        ``rows[b, l] = g_b * ncol + t_b + nlag - l``.
        """
        return (igrid * self.ncol + istep).unsqueeze(-1) + self.lag_offsets

    def sic_lags(self, igrid: Tensor, istep: Tensor) -> tuple[Tensor, Tensor]:
        """Rows (B, nlag + 1) and values ``C[g, t + nlag - l]`` (B, nlag + 1)."""
        rows = self.sic_rows(igrid, istep)
        values = F.embedding(rows, self.sic_map.weight, sparse=self.sparse).squeeze(-1)
        return rows, values

    def grid_rows(self, igrid: Tensor, istep: Tensor) -> Tensor:
        """Rows ``g * nstep + t`` of the grid-property table, (B,)."""
        return igrid * self.nstep + istep

    def grid_properties(self, igrid: Tensor, istep: Tensor) -> Tensor:
        """``P[g, t, :]`` for each observation, (B, nprop_grid)."""
        if self.props_grid is None:
            return self.lag_weights.new_zeros((igrid.shape[0], 0))
        return F.embedding(self.grid_rows(igrid, istep), self.props_grid.weight, sparse=self.sparse)

    def obs_properties(self, iobs: Tensor) -> Tensor:
        """``Q[i, :]`` for each observation, (B, nprop_obs)."""
        if self.props_obs is None:
            return self.lag_weights.new_zeros((iobs.shape[0], 0))
        return F.embedding(iobs, self.props_obs.weight, sparse=self.sparse)

    def sic_map_2d(self) -> Tensor:
        """The SIC map as a (ngrid, nstep + nlag) view of the parameter (carries gradient)."""
        return self.sic_map.weight.view(self.ngrid, self.ncol)

    # ------------------------------------------------------------ numpy views
    def sic_array(self) -> np.ndarray:
        """SIC map C as float32 (ngrid, nstep + nlag) (a copy)."""
        return self.sic_map.weight.detach().cpu().float().numpy().reshape(self.ngrid, self.ncol).copy()

    def grid_properties_array(self) -> np.ndarray:
        """Grid empirical state P as float32 (ngrid, nstep, nprop_grid) (a copy)."""
        if self.props_grid is None:
            return np.zeros((self.ngrid, self.nstep, 0), dtype=np.float32)
        w = self.props_grid.weight.detach().cpu().float().numpy()
        return w.reshape(self.ngrid, self.nstep, self.nprop_grid).copy()

    def obs_properties_array(self) -> np.ndarray:
        """Observation empirical state Q as float32 (nobs, nprop_obs) (a copy)."""
        if self.props_obs is None:
            return np.zeros((self.nobs, 0), dtype=np.float32)
        return self.props_obs.weight.detach().cpu().float().numpy().copy()


__all__ = ["EmpiricalState"]
