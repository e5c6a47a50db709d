"""The per-observation diagnostics of a training run in streamed passes: one block of observations at a time.

A block (:func:`empirical_seaice.io.output_writer.block_rows` observations,
about 2.6e5) is simulated with the compiled forward pass
(:func:`empirical_seaice.products.diagnostics.simulate_blocks`), its
contributions to the sums are added (the observation term ``J_o``, the v2
anchor floor penalty, the departures ``y - H(x)``, the health checks'
figures, the ice-emissivity errors against a twin's truth), its rows are
written into the per-observation files, and its pages of the memory-mapped
cache are dropped (:meth:`~empirical_seaice.observations.Observations.release`).
No ``(nobs, nchan)`` array is ever whole: the memory of a pass is a few
blocks, whatever the number of observations.

- :func:`initial_pass` (before training): ``tbsim_initial_TAG.nc``, the cost
  and departures before;
- :func:`final_pass` (after training, before the health checks):
  ``tbobs``, ``tbsim``, ``ice_emis`` and ``tbzero`` (SIC set to zero; from the same forward pass,
  :attr:`~empirical_seaice.products.diagnostics.Simulation.tb_zero`), the
  cost and departures after, the health checks' per-observation figures, the
  truth's emissivity errors.

The files are written into the staging set's held folder
(:class:`~empirical_seaice.io.output_writer.HeldOutputs`): the health checks
decide afterwards whether they become outputs (:meth:`HeldOutputs.promote`,
which marks them when ``--force-outputs`` overrides a failed check), exactly
as the whole-array writers would have written them then.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.io import outputs as out
from empirical_seaice.observations import Observations
from empirical_seaice.products import diagnostics as diag
from empirical_seaice.run.health import ObservationChecks
from empirical_seaice.threads import numba_threads, torch_threads


@dataclass
class PassResult:
    """What a pass gathered.

    cost : the full cost J by term (float64). departures : y - H(x) per channel.
    checks : the health checks' per-observation figures (final pass).
    emis_errors : ice-emissivity errors against the truth (final pass with a truth).
    files : the held files written, by kind (their final paths).
    """

    cost: dict[str, float]
    departures: diag.DepartureStats
    checks: ObservationChecks | None = None
    emis_errors: diag.EmisErrorSums | None = None
    files: dict[str, Path] = field(default_factory=dict)


class _Sums:
    """``J_o``, the anchor floor penalty and the departures of a pass, block by block."""

    def __init__(self, network, obs: Observations):
        self.network, self.obs = network, obs
        self.anchor: float | None = None
        self.departures = diag.DepartureSums(obs.nchan)

    def add(self, rows: slice, sim: diag.Simulation) -> np.ndarray:
        """Add a block; returns its simulated TB with NaN where masked (the output files' values)."""
        a = diag.anchor_floor_sum(self.network, sim.emis_anchor)
        if a is not None:
            self.anchor = (self.anchor or 0.0) + a
        y, m = self.obs.tb_obs_k[rows], self.obs.mask[rows]
        return self.departures.add_block(y, sim.tb, m, self.obs.basis.obs_error_k)

    def cost(self, nobs_total: int) -> dict[str, float]:
        return diag.cost_from_sums(self.network, self.departures.obs_sum, self.anchor, nobs_total)


class _PackedOnOneThread:
    """The blocks of an :class:`~empirical_seaice.model.tensors.ObservationBlocks` packed on the
    calling thread alone (the packing takes the torch thread count; the same values on any number),
    the run's torch thread count back for everything else: the pass's torch sums (the cost's terms,
    whose float32 rounding depends on the number of threads) are computed as before."""

    def __init__(self, blocks: Any):
        self._blocks = blocks

    def block(self, start: int, stop: int) -> Any:
        with torch_threads(1):
            return self._blocks.block(start, stop)


def initial_pass(
    network, data, obs: Observations, nobs_total: int, held: out.HeldOutputs | None, path: Path | None
) -> PassResult:
    """Before training: the cost and departures before, and (``held`` and ``path`` given)
    ``tbsim_initial`` held for ``path``."""
    sums = _Sums(network, obs)
    block = out.block_rows(obs.nobs, obs.nchan)
    with contextlib.ExitStack() as stack:
        f = None
        if held is not None and path is not None:
            f = stack.enter_context(out.open_tb(held.path(path), obs.nobs, obs.basis, "tbsim_initial"))
        for start, stop, sim in diag.simulate_blocks(network, data, obs.nobs, block=block):
            rows = slice(start, stop)
            tb = sums.add(rows, sim)
            if f is not None:
                f.write("tb", start, tb)
            obs.release(rows)
    files = {"tbsim_initial": Path(path)} if f is not None and path is not None else {}
    return PassResult(cost=sums.cost(nobs_total), departures=sums.departures.stats(), files=files)


def final_pass(
    network,
    data,
    obs: Observations,
    nobs_total: int,
    held: out.HeldOutputs | None,
    paths: dict[str, Path] | None,
    truth: Any = None,
    lonlat: tuple[Any, Any] = (None, None),
) -> PassResult:
    """After training: the cost and departures after, the health checks' figures, the truth's
    emissivity errors (``truth`` with ``emis_ice``) and, with ``held`` and ``paths`` (kind -> final
    path of ``tbobs``, ``tbsim``, ``ice_emis``, ``tbzero``), those files held. ``lonlat``: the grid's
    lon and lat for ``tbobs``. While it writes, it packs (``data`` an ``ObservationBlocks``) and
    simulates on this thread alone: the other cores compress (:mod:`empirical_seaice.io.chunk_writer`)."""
    sums = _Sums(network, obs)
    checks = ObservationChecks(obs.nchan)
    errors = diag.EmisErrorSums(obs.nchan) if getattr(truth, "emis_ice", None) is not None else None
    block = out.block_rows(obs.nobs, obs.nchan)
    write = held is not None and paths is not None
    with contextlib.ExitStack() as stack:
        files: dict[str, Any] = {}
        if write:
            assert held is not None and paths is not None
            stack.enter_context(numba_threads(1))  # the forward pass: the other cores compress
            lon, lat = lonlat
            files["tbobs"] = stack.enter_context(out.open_tbobs(held.path(paths["tbobs"]), obs, lon, lat))
            files["tbsim"] = stack.enter_context(out.open_tb(held.path(paths["tbsim"]), obs.nobs, obs.basis, "tbsim"))
            files["ice_emis"] = stack.enter_context(
                out.open_ice_emis(held.path(paths["ice_emis"]), obs.nobs, obs.basis)
            )
            files["tbzero"] = stack.enter_context(
                out.open_tb(held.path(paths["tbzero"]), obs.nobs, obs.basis, "tbzero")
            )
        if write and getattr(data, "block", None) is not None:
            data = _PackedOnOneThread(data)
        for start, stop, sim in diag.simulate_blocks(network, data, obs.nobs, with_zero=write, block=block):
            rows = slice(start, stop)
            # copies (not views of the memory-mapped cache, whose pages obs.release drops below): the
            # compressing threads read the mask and the observed TB after that
            mask = np.array(obs.mask[rows], dtype=bool)
            tb = sums.add(rows, sim)
            checks.add(sim.tb, sim.emis_ice, mask, sim.sic)
            if errors is not None:
                errors.add(obs, rows, sim.emis_ice, truth)
            if write:  # masked (NaN where the sensor lacks the channel) by the compressing threads
                files["tbobs"].write("tb", start, np.array(obs.tb_obs_k[rows], dtype=np.float32), mask)
                files["tbsim"].write("tb", start, tb)
                files["ice_emis"].write("ice_emis", start, sim.emis_ice, mask)
                assert sim.tb_zero is not None
                files["tbzero"].write("tb", start, sim.tb_zero, mask)
            obs.release(rows)
    return PassResult(
        cost=sums.cost(nobs_total),
        departures=sums.departures.stats(),
        checks=checks,
        emis_errors=errors,
        files=dict(paths) if write and paths is not None else {},
    )


__all__ = ["PassResult", "initial_pass", "final_pass"]
