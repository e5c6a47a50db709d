"""Empirical sea ice emissivity models (docs/method.md step 3).

One interface, :class:`EmissivityModel`: ``forward(x_t, props, isensor)``
returns the ice emissivity of every channel of the run's unified basis,
``(B, nchan)``. Two implementations:

- :class:`LinearEmissivity` (v1): ``e_ice = W [x_T, P...] + e0``, a dense
  linear layer (``output``) from ``1 + nprop`` inputs to one emissivity per
  basis channel, in basis order. ``e0`` (:attr:`LinearEmissivity.e0`) is the
  layer's bias; the v1 anchor holds ``e0[10v]`` at 0.93.
- :class:`NetworkEmissivity` (v2): per frequency, inputs in this order
  ``[x_T, P_0, .., P_{n-1}, Q_0, .., f / freq_scale]`` -> ``hidden``
  (Linear, sigmoid) -> ``output`` (Linear(hidden, 2), sigmoid) = ``(e_V, e_H)``;
  each channel takes ``e_V`` or ``e_H`` by its polarisation
  (``ChannelBasis.pol``, V = 0, H = 1), or, for the quasi-polarised channels
  of cross-track sounders (QV = 2, QH = 3), the mix
  :func:`~empirical_seaice.model.physics.mix_polarisations` by the
  observation's scan angle.

Layer names are exactly ``hidden`` and ``output`` (``torch.nn.Linear``,
weight shape (out, in)) so pure-numpy evaluators can read the weights.

Initialisation: Keras defaults (glorot-uniform weights, zero biases) from
the generator passed in. ``init_emis`` (ModelConfig.ice_emis_init) optionally
sets the output biases so that the initial ice emissivity is about that
value: with zero biases the v1 emissivity starts at 0 and the v2 one at
~0.5 against an anchor of 0.93 / a floor of 0.8 (23.8 GHz V) with error
1e-5, which a small run (a few hundred Adam steps at lr 1e-3) cannot
recover from. The v1 reference initialises every bias to 0.93
(``init_emis=0.93``), the v2 reference leaves them at zero
(``init_emis=None``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from empirical_seaice.model import physics
from empirical_seaice.sensors import ChannelBasis, network_frequency_table

ANGLE_INIT_DEG = 55.0
"""View angle (deg) at which ``ice_emis_init`` sets the initial emissivity of a network with an angle input."""

if TYPE_CHECKING:  # pragma: no cover
    from empirical_seaice.config import ModelConfig


def _glorot_zero(layer: nn.Linear, generator: torch.Generator | None) -> None:
    """Keras default initialisation: glorot_uniform kernel, zero bias."""
    nn.init.xavier_uniform_(layer.weight, generator=generator)
    nn.init.zeros_(layer.bias)


class EmissivityModel(nn.Module):
    """Interface: ice emissivity per basis channel.

    ``forward(x_t, props, isensor, cos2_scan=None) -> emis_ice``

    Parameters
    ----------
    x_t : (B,) normalised temperature ``max(273 - T_s, 0) / 30``.
    props : (B, nprop) empirical state, grid properties then observation properties.
    isensor : (B,) int64 sensor index of each observation.
    cos2_scan : (B,) ``cos^2`` of the scan angle (cross-track sensors; needed
        when the basis has QV/QH channels, ignored otherwise).

    Returns
    -------
    (B, nchan) ice emissivity in the run's unified channel basis.
    """

    nprop: int
    nchan: int

    def forward(
        self,
        x_t: Tensor,
        props: Tensor,
        isensor: Tensor,
        cos2_scan: Tensor | None = None,
        cos_view: Tensor | None = None,
    ) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def emissivity_vh(self, x_t: Tensor, props: Tensor, freq_ghz: Tensor, cos_view: Tensor | None = None) -> Tensor:
        """``(e_V, e_H)`` at any frequency (and view angle), (..., 2): only models with a frequency input
        (v2) have it."""
        raise ValueError(f"{type(self).__name__} has no frequency input: no emissivity at arbitrary frequencies")


class LinearEmissivity(EmissivityModel):
    """v1 linear emissivity: ``e_ice[c] = sum_j W[c, j] z_j + e0[c]``, ``z = [x_T, P...]``.

    Parameters
    ----------
    nprop : int
        Number of empirical-state inputs (v1: 3 grid properties).
    basis : ChannelBasis
        The run's unified basis: one output per basis channel, in basis order.
    generator : torch.Generator, optional
        Source of the glorot-uniform initial weights.
    init_emis : float, optional
        Initial bias e0 of every channel; None = 0 (Keras default). The v1
        reference initialises every channel's bias to 0.93.
    """

    def __init__(
        self, nprop: int, basis: ChannelBasis, generator: torch.Generator | None = None, init_emis: float | None = None
    ) -> None:
        super().__init__()
        self.nprop = int(nprop)
        self.nchan = basis.nchan
        self.channel_names = tuple(basis.channel_names)
        self.output = nn.Linear(1 + self.nprop, self.nchan)
        _glorot_zero(self.output, generator)
        if init_emis is not None:
            with torch.no_grad():
                self.output.bias.fill_(float(init_emis))

    @property
    def e0(self) -> Tensor:
        """Per-channel bias e0 (nchan,): the ice emissivity at x_T = 0, P = 0."""
        return self.output.bias

    def forward(
        self,
        x_t: Tensor,
        props: Tensor,
        isensor: Tensor | None = None,
        cos2_scan: Tensor | None = None,
        cos_view: Tensor | None = None,
    ) -> Tensor:
        # one output per channel: a QV/QH channel has its own weights, no mixing needed
        z = torch.cat([x_t.unsqueeze(-1), props], dim=-1)  # (B, 1 + nprop)
        # W @ z^T is much faster than z @ W^T for the tiny inner dimension (CPU).
        return torch.addmm(self.output.bias.unsqueeze(-1), self.output.weight, z.t()).t()


class NetworkEmissivity(EmissivityModel):
    """v2 network emissivity with frequency as an input.

    ``(e_V, e_H) = sigmoid(W2 sigmoid(W1 [x_T, props..., f/scale] + b1) + b2)``

    In :meth:`forward` each observation is evaluated once per *distinct*
    frequency of its sensor (V and H channels share one evaluation): the
    per-sensor table :attr:`freq_table` (nsensor, nfreq_max) holds those
    frequencies (padded by repeating the first), :attr:`chan_freq`
    (nsensor, nchan) the index of each channel's frequency in its sensor's
    row; the result is gathered by polarisation and ``chan_freq``. Channels a sensor
    does not have are evaluated at the basis's nominal frequency
    (``ChannelBasis.freq_ghz``), so every entry is a finite, meaningful
    emissivity. The first layer is affine, so its frequency column is applied
    separately: ``W1 z = W1[:, :-1] z' + W1[:, -1] f/scale``.

    Parameters
    ----------
    nprop : int
        Empirical inputs (v2: 2 grid + 1 observation property).
    basis : ChannelBasis
    hidden : int
        Width of the hidden layer (7 in v2).
    freq_scale_ghz : float
        Frequency input is ``f / freq_scale_ghz``.
    generator : torch.Generator, optional
        Source of the glorot-uniform initial weights.
    init_emis : float, optional
        If set, the output biases are chosen so that at x_T = 0, props = 0 and
        f = 50 GHz the initial emissivity is ``init_emis`` for V and H;
        None = zero biases (Keras default).
    freq_table_ghz : float array (nsensor, nchan), optional
        The frequency input of each channel on each sensor
        (:func:`empirical_seaice.sensors.network_frequency_table` of the model's
        ``network_frequencies`` convention); None = ``basis.freq_ghz``. Kept as
        :attr:`channel_freq_ghz`.
    angle_input : bool
        Feed the network the cosine of the observation's local zenith (view)
        angle as one more input, before the frequency:
        ``[x_T, props..., cos(theta), f/scale]`` (:attr:`angle_input`); the
        initial-emissivity biases are set at ``cos(55 deg)``.
    """

    freq_table: Tensor
    freq_input_t: Tensor
    chan_freq: Tensor
    pol: Tensor

    def __init__(
        self,
        nprop: int,
        basis: ChannelBasis,
        hidden: int = 7,
        freq_scale_ghz: float = 100.0,
        generator: torch.Generator | None = None,
        init_emis: float | None = None,
        freq_table_ghz: np.ndarray | None = None,
        angle_input: bool = False,
    ) -> None:
        super().__init__()
        self.angle_input = bool(angle_input)
        nang = int(self.angle_input)
        self.nprop = int(nprop)
        self.nchan = basis.nchan
        self.nhidden = int(hidden)
        self.freq_scale_ghz = float(freq_scale_ghz)
        self.channel_names = tuple(basis.channel_names)
        self.hidden = nn.Linear(self.nprop + 2 + nang, self.nhidden)
        self.output = nn.Linear(self.nhidden, 2)
        _glorot_zero(self.hidden, generator)
        _glorot_zero(self.output, generator)
        if init_emis is not None:
            with torch.no_grad():
                z0 = torch.zeros(self.nprop + 2 + nang)
                z0[-1] = 50.0 / self.freq_scale_ghz
                if nang:
                    z0[-2] = math.cos(math.radians(ANGLE_INIT_DEG))
                h0 = torch.sigmoid(self.hidden(z0))
                logit = math.log(init_emis / (1.0 - init_emis))
                self.output.bias.copy_(logit - self.output.weight @ h0)

        freq = np.asarray(basis.freq_ghz if freq_table_ghz is None else freq_table_ghz, dtype=np.float32)
        if freq.shape != (basis.nsensor, basis.nchan):
            raise ValueError(f"freq_table_ghz: expected shape {(basis.nsensor, basis.nchan)}, got {freq.shape}")
        self.channel_freq_ghz = freq.copy()  # (nsensor, nchan) the frequency input of each channel
        ns, nc = freq.shape
        tables = [np.unique(freq[s]) for s in range(ns)]
        nf = max(len(t) for t in tables)
        table = np.zeros((ns, nf), dtype=np.float32)
        chan_freq = np.zeros((ns, nc), dtype=np.int64)
        for s, t in enumerate(tables):
            table[s, : len(t)] = t
            table[s, len(t) :] = t[0]
            chan_freq[s] = np.searchsorted(t, freq[s])
        pol = np.asarray(basis.pol, dtype=np.int64)
        self.quasi = bool(basis.has_quasi_polarisation)
        self.nfreq = nf
        self.register_buffer("freq_table", torch.from_numpy(table))
        self.register_buffer("freq_input_t", torch.from_numpy(np.ascontiguousarray(table.T / self.freq_scale_ghz)))
        self.register_buffer("chan_freq", torch.from_numpy(chan_freq))
        self.register_buffer("pol", torch.from_numpy(pol))

    def emissivity_vh(self, x_t: Tensor, props: Tensor, freq_ghz: Tensor, cos_view: Tensor | None = None) -> Tensor:
        """``(e_V, e_H)`` at any frequency: shapes x_t (...), props (..., nprop), freq (...),
        cos_view (...; the cosine of the view angle, used with :attr:`angle_input`; None = the
        imagers' :data:`ANGLE_INIT_DEG` view, as the gridded maps and spectra have no angle)
        broadcast; returns (..., 2) (docs/method.md step 3)."""
        freq_ghz = torch.as_tensor(freq_ghz, dtype=x_t.dtype, device=x_t.device)
        parts = [x_t, freq_ghz]
        if self.angle_input:
            view = math.cos(math.radians(ANGLE_INIT_DEG)) if cos_view is None else cos_view
            parts.append(torch.as_tensor(view, dtype=x_t.dtype, device=x_t.device))
        # numpy's rule, the same as torch.broadcast_shapes, whose first call imports sympy and mpmath
        # (about 500 modules, 34 MiB resident, at a run's first held-out validation)
        shape = np.broadcast_shapes(*(tuple(p.shape) for p in parts), tuple(props.shape[:-1]))
        x_t, freq_ghz = x_t.expand(shape), freq_ghz.expand(shape)
        props = props.expand(*shape, self.nprop)
        cols = [x_t.unsqueeze(-1), props]
        if self.angle_input:
            cols.append(parts[2].expand(shape).unsqueeze(-1))
        cols.append((freq_ghz / self.freq_scale_ghz).unsqueeze(-1))
        z = torch.cat(cols, dim=-1)
        return torch.sigmoid(self.output(torch.sigmoid(self.hidden(z))))

    def forward(
        self,
        x_t: Tensor,
        props: Tensor,
        isensor: Tensor,
        cos2_scan: Tensor | None = None,
        cos_view: Tensor | None = None,
    ) -> Tensor:
        # Computed in a (feature, frequency, observation) layout: tiny-inner-dimension
        # matmuls are ~10x faster as W @ X^T than as X @ W^T on CPU.
        nb = x_t.shape[0]
        w = self.hidden.weight
        cols = [x_t.unsqueeze(-1), props]
        if self.angle_input:
            if cos_view is None:
                raise ValueError("NetworkEmissivity: the network takes the view angle; pass cos_view")
            cols.append(cos_view.unsqueeze(-1))
        z = torch.cat(cols, dim=-1)  # (B, nprop + 1 [+ 1])
        base = torch.addmm(self.hidden.bias.unsqueeze(-1), w[:, :-1], z.t())  # (H, B)
        f = self.freq_input_t.index_select(1, isensor)  # (nf, B) contiguous: f / freq_scale
        h = torch.sigmoid(torch.addcmul(base.unsqueeze(1), w[:, -1].reshape(-1, 1, 1), f))  # (H, nf, B)
        vh = torch.sigmoid(
            torch.addmm(self.output.bias.unsqueeze(-1), self.output.weight, h.reshape(self.nhidden, -1))
        )  # (2, nf * B): vh[p, k * B + b]
        if self.quasi:
            if cos2_scan is None:
                raise ValueError("NetworkEmissivity: the basis has QV/QH channels; pass cos2_scan")
            at = (
                self.chan_freq.index_select(0, isensor) * nb + torch.arange(nb, device=isensor.device).unsqueeze(-1)
            ).reshape(-1)
            e_v = vh[0].index_select(0, at).reshape(nb, self.nchan)
            e_h = vh[1].index_select(0, at).reshape(nb, self.nchan)
            return physics.mix_polarisations(e_v, e_h, physics.polarisation_weight_v(self.pol, cos2_scan))
        idx = (
            self.pol * (self.nfreq * nb)
            + self.chan_freq.index_select(0, isensor) * nb
            + torch.arange(nb, device=isensor.device).unsqueeze(-1)
        )  # (B, nchan)
        return vh.reshape(-1).index_select(0, idx.reshape(-1)).reshape(nb, self.nchan)


def make_emissivity(
    model: ModelConfig, basis: ChannelBasis, generator: torch.Generator | None = None
) -> EmissivityModel:
    """The emissivity model a ModelConfig describes: :class:`LinearEmissivity` (v1) or
    :class:`NetworkEmissivity` (v2, given the frequency table of its ``network_frequencies``
    convention), initialised with ``ice_emis_init``."""
    nprop = model.nprop_grid + model.nprop_obs
    if model.version == "v1":
        return LinearEmissivity(nprop, basis, generator, model.ice_emis_init)
    return NetworkEmissivity(
        nprop,
        basis,
        model.hidden,
        model.freq_scale_ghz,
        generator,
        model.ice_emis_init,
        freq_table_ghz=network_frequency_table(basis, model.network_frequencies),
        angle_input=network_angle_input(model, basis),
    )


def network_angle_input(model: ModelConfig, basis: ChannelBasis) -> bool:
    """Whether the v2 network takes the view angle: ``model.angle_input``, or when that is None
    whether the basis has a cross-track sensor."""
    if model.angle_input is not None:
        return bool(model.angle_input)
    return bool(basis.cross_track is not None and np.asarray(basis.cross_track).any())


__all__ = [
    "ANGLE_INIT_DEG",
    "EmissivityModel",
    "LinearEmissivity",
    "NetworkEmissivity",
    "make_emissivity",
    "network_angle_input",
]
