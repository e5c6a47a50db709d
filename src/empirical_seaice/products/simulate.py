"""The forward pass of the diagnostics: the network's simulated quantities at every observation
(:class:`Simulation`), whole (:func:`simulate`) or block by block (:func:`simulate_blocks`, for the
streamed output files), without gradient, in float32. Re-exported by
:mod:`empirical_seaice.products.diagnostics`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

CHUNK = 32768
"""Observations per chunk of the tensor forward pass of the diagnostics."""

BLOCK = 1 << 18
"""Observations per block of :func:`simulate_blocks` by default (the run's streamed passes give theirs:
:data:`empirical_seaice.run.streamed.PASS_ROWS`)."""


@dataclass
class Simulation:
    """Simulated quantities at every observation (float32).

    tb : (nobs, nchan) simulated TB' (K); NaN in the channels that an observation's sensor lacks
        (``basis.present``), as in ``emis_ice`` and ``tb_zero``.
    emis_ice : (nobs, nchan) ice emissivity.
    sic : (nobs,) SIC seen by each observation (lag-weighted).
    emis_anchor : (nobs,) the anchored ice emissivity (the anchor channel's, or the v2 network's
        at the anchor frequency); None if the network does not report it.
    tb_zero : (nobs, nchan) the TB with SIC set to zero (``tbzero``), where asked for (``with_zero``).
        From the compiled pass, ``tb`` and ``tb_zero`` are the two halves of one (n, 2 nchan) array:
        not C-contiguous (index them; do not ``reshape(-1)``, ``view`` to another item size or ``tobytes``).
    """

    tb: np.ndarray
    emis_ice: np.ndarray
    sic: np.ndarray
    emis_anchor: np.ndarray | None = None
    tb_zero: np.ndarray | None = None


def simulate(
    network: torch.nn.Module, data: Any, nobs: int, *, zero_sic: bool = False, chunk: int = CHUNK
) -> Simulation:
    """Run the network's observation operator over observations ``0..nobs-1`` (every block of
    :func:`simulate_blocks`, gathered).

    Parameters
    ----------
    network : HybridNetwork
        ``network(batch, zero_sic=...)`` returns a dict with ``tb``, ``emis_ice``, ``sic``.
    data : ObservationTensors
        ``data.batch(index)`` gives the batch of observations ``index``.
    nobs : int
        Number of observations.
    zero_sic : bool
        Simulate with SIC set to zero (the ``tbzero`` set: no ice signal).
    chunk : int
        Observations per forward pass of the tensor path (memory bound, results do not depend on it
        beyond float32 rounding of batched kernels).
    """
    if nobs <= 0:
        raise ValueError("simulate: no observations")
    parts = [sim for _, _, sim in simulate_blocks(network, data, nobs, zero_sic=zero_sic, block=nobs, chunk=chunk)]
    if len(parts) == 1:
        return parts[0]
    anchors = [p.emis_anchor for p in parts]
    return Simulation(
        tb=np.concatenate([p.tb for p in parts]),
        emis_ice=np.concatenate([p.emis_ice for p in parts]),
        sic=np.concatenate([p.sic for p in parts]),
        emis_anchor=None if any(a is None for a in anchors) else np.concatenate(anchors),  # type: ignore[arg-type]
    )


@torch.no_grad()
def simulate_blocks(
    network: torch.nn.Module,
    data: Any,
    nobs: int,
    *,
    zero_sic: bool = False,
    with_zero: bool = False,
    block: int = BLOCK,
    chunk: int = CHUNK,
    ranges: Sequence[tuple[int, int]] | None = None,
) -> Iterator[tuple[int, int, Simulation]]:
    """``(start, stop, simulation of observations start .. stop - 1)`` for consecutive blocks of at
    most ``block`` observations: a streamed pass holds one block at a time; ``ranges``: these blocks
    instead, in this order (``(start, stop)``, each non-empty, within ``0 .. nobs``; a sharded run's
    rank simulates its part of each of the run's blocks). ``with_zero``: also the
    TB with SIC set to zero (:attr:`Simulation.tb_zero`, equal to a ``zero_sic`` pass's TB).
    ``data``: the packed observations (``ObservationTensors``), or an ``ObservationBlocks`` that
    packs each block when it comes (the pass then holds one block's table, not the whole one).

    The compiled forward pass (:func:`empirical_seaice.model.fused.simulate_range`, CPU) where
    the network offers a program (``with_zero``: from the same pass, ``TB_o``), else the tensor
    forward pass in chunks of ``chunk`` (``with_zero``: a second forward pass with SIC 0).
    """
    ranges = _blocks(nobs, block, ranges)
    blocks = getattr(data, "block", None)  # ObservationBlocks: one block's packed table at a time
    if blocks is not None and ranges:
        data = blocks(*ranges[0])
    make = getattr(network, "fused_program", None)
    program = make(data, nobs, training=False)[0] if make is not None and nobs > 0 else None
    if program is not None:
        from empirical_seaice.model.fused import simulate_range

        for k, (start, stop) in enumerate(ranges):
            if blocks is not None and k > 0:
                program.use(blocks(start, stop))
            if with_zero and not zero_sic:
                # tb and tb0: the two halves of one (n, 2 nchan) array, used as they are (no copies)
                tb, emis, sic, emis_anchor, tb0 = simulate_range(program, start, stop, zero_sic="both")
            else:
                tb, emis, sic, emis_anchor = simulate_range(program, start, stop, zero_sic=zero_sic)
                tb0 = tb if with_zero else None
            yield start, stop, Simulation(tb=tb, emis_ice=emis, sic=sic, emis_anchor=emis_anchor, tb_zero=tb0)
        return
    was_training = network.training
    network.eval()
    device = getattr(data, "device", None) or next(network.parameters()).device
    present = np.asarray(cast(Any, network).basis.present, dtype=bool)  # the HybridNetwork's sensor basis
    try:
        for k, (start, stop) in enumerate(ranges):
            if blocks is not None and k > 0:
                data = blocks(start, stop)
            parts = []
            for a in range(start, stop, chunk):
                idx = torch.arange(a, min(a + chunk, stop), dtype=torch.long, device=device)
                batch = data.batch(idx - getattr(data, "row0", 0))
                out = network(batch, zero_sic=zero_sic)
                parts.append({k: v.detach().float().cpu().numpy() for k, v in out.items() if k in _SIM_KEYS})
                if with_zero:
                    zero = network(batch, zero_sic=True)["tb"] if not zero_sic else out["tb"]
                    parts[-1]["tb_zero"] = zero.detach().float().cpu().numpy()
                _not_simulated(parts[-1], present[batch.isensor.cpu().numpy()])
            anchor = (
                np.concatenate([p["emis_anchor"].reshape(-1) for p in parts]) if "emis_anchor" in parts[0] else None
            )
            yield (
                start,
                stop,
                Simulation(
                    tb=np.concatenate([p["tb"] for p in parts]),
                    emis_ice=np.concatenate([p["emis_ice"] for p in parts]),
                    sic=np.concatenate([p["sic"].reshape(-1) for p in parts]),
                    emis_anchor=anchor,
                    tb_zero=np.concatenate([p["tb_zero"] for p in parts]) if with_zero else None,
                ),
            )
    finally:
        network.train(was_training)


_SIM_KEYS = ("tb", "emis_ice", "sic", "emis_anchor")


def _blocks(nobs: int, block: int, ranges: Sequence[tuple[int, int]] | None) -> Sequence[tuple[int, int]]:
    """The blocks of :func:`simulate_blocks`: ``ranges`` (checked: each non-empty, within ``0 .. nobs``), or
    every ``block`` observations from the first."""
    if ranges is None:
        return [(start, min(start + block, nobs)) for start in range(0, nobs, block)]
    if any(not 0 <= start < stop <= nobs for start, stop in ranges):
        raise ValueError(f"simulate_blocks: a block empty or outside 0..{nobs} among {list(ranges)[:4]}")
    return ranges


def _not_simulated(part: dict[str, np.ndarray], own: np.ndarray) -> None:
    """NaN in the channels an observation's sensor lacks (``own`` False), as the compiled pass gives them:
    those channels are not simulated (the tensor forward pass computes them from zeros)."""
    for key in ("tb", "emis_ice", "tb_zero"):
        if key in part:
            part[key][~own] = np.nan


__all__ = ["BLOCK", "CHUNK", "Simulation", "simulate", "simulate_blocks"]
