"""The per-observation diagnostics of a training run in streamed passes: one block of observations at a time.

A block (:func:`empirical_seaice.io.output_writer.block_rows` observations,
about :data:`PASS_ROWS`) is simulated with the compiled forward pass
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

``tbobs`` and the twin's truth do not depend on the trained model: in a run with a held-out fit
:class:`AheadOfFinalPass` writes ``tbobs`` and reads the truth on a background thread beside that fit
(which takes one thread fewer meanwhile), on one core, and the final pass writes the three other files.

The files are written into the staging set's held folder
(:class:`~empirical_seaice.io.output_writer.HeldOutputs`): the health checks
decide afterwards whether they become outputs (:meth:`HeldOutputs.promote`,
which marks them when ``--force-outputs`` overrides a failed check), exactly
as the whole-array writers would have written them then.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from empirical_seaice.errors import SeaIceError
from empirical_seaice.io import chunk_writer
from empirical_seaice.io import outputs as out
from empirical_seaice.observations import Observations, release_pages
from empirical_seaice.products import diagnostics as diag
from empirical_seaice.run import interrupt
from empirical_seaice.run.health import ObservationChecks
from empirical_seaice.run.health import state_figures as trained_state_figures
from empirical_seaice.threads import numba_threads, parallel_layer_shared, torch_threads

PASS_ROWS = 1 << 16
"""Observations per block of the streamed passes, about (whole compression chunks: 61,680 rows of 17
channels). A block is packed (the final pass), simulated, summed and written before the next; at 65,536
rows its packed table (24 MB) and outputs are still in the CPU's cache when they are read again: on the
``benchmark`` twin a ``--diagsonly`` run's final pass took 3.9-4.3 CPU-s against 4.4-4.7 in blocks of
262,144 rows, its peak about 200 MiB lower (benchmarks/results.md)."""


BlockSource = Callable[..., Iterator[tuple[int, int, diag.Simulation]]]
"""Where a pass's simulated blocks come from: called with ``with_zero`` and ``block`` (keywords), it yields
``(start, stop, simulation)`` of every observation of the run, in order, blocks of at most ``block``
observations (:func:`~empirical_seaice.products.diagnostics.simulate_blocks`'s). A sharded run's rank 0
gets the ranks' simulations of their shards, gathered block by block
(:class:`~empirical_seaice.run.ranks.ShardedBlocks`)."""


def _simulated(network, data, nobs: int) -> BlockSource:
    """The default :data:`BlockSource`: ``network``'s forward pass over the packed observations ``data``."""
    return functools.partial(diag.simulate_blocks, network, data, nobs)


def _pass_block(obs: Observations) -> int:
    """Observations per block of a streamed pass over ``obs``: about :data:`PASS_ROWS`, whole chunks."""
    return out.block_rows(obs.nobs, obs.nchan, target=PASS_ROWS)


@dataclass
class PassResult:
    """What a pass gathered.

    cost : the full cost J by term (float64). departures : y - H(x) per channel.
    checks : the health checks' per-observation figures (final pass).
    emis_errors : ice-emissivity errors against the truth (final pass with a truth).
    files : the held files written, by kind (their final paths).
    warned : the sensors whose departures over open water were warned about (initial pass).
    """

    cost: dict[str, float]
    departures: diag.DepartureStats
    checks: ObservationChecks | None = None
    emis_errors: diag.EmisErrorSums | None = None
    files: dict[str, Path] = field(default_factory=dict)
    warned: tuple[str, ...] = ()


class _Sums:
    """``J_o``, the anchor floor penalty, the ice-emissivity ceiling and the departures of a pass, block by
    block."""

    def __init__(self, network, obs: Observations):
        self.network, self.obs = network, obs
        self.anchor: float | None = None
        self.ceiling: float | None = None
        self.departures = diag.DepartureSums(obs.nchan)

    def add(self, rows: slice, sim: diag.Simulation) -> None:
        """Add a block."""
        self.add_anchor(sim)
        self.add_departures(rows, sim)
        self.add_ceiling(sim, self.obs.mask[rows])

    def add_ceiling(self, sim: diag.Simulation, mask: np.ndarray) -> None:
        """The block's ice-emissivity ceiling (:func:`~empirical_seaice.products.diagnostics.emis_ceiling_sum`;
        nothing where it is off)."""
        a = diag.emis_ceiling_sum(self.network, sim.emis_ice, mask)
        if a is not None:
            self.ceiling = (self.ceiling or 0.0) + a

    def add_anchor(self, sim: diag.Simulation) -> None:
        """The block's anchor floor penalty (one compiled pass,
        :func:`~empirical_seaice.products.diagnostics.anchor_floor_sum`)."""
        a = diag.anchor_floor_sum(self.network, sim.emis_anchor)
        if a is not None:
            self.anchor = (self.anchor or 0.0) + a

    def add_departures(self, rows: slice, sim: diag.Simulation) -> None:
        """The block's ``J_o`` and departures (one compiled pass, on any thread)."""
        y, m = self.obs.tb_obs_k[rows], self.obs.mask[rows]
        self.departures.add_block(y, sim.tb, m, self.obs.basis.obs_error_k)

    def cost(self, nobs_total: int, map_values: dict[str, float] | None = None) -> dict[str, float]:
        return diag.cost_from_sums(
            self.network, self.departures.obs_sum, self.anchor, nobs_total, map_values, ceiling_sum=self.ceiling
        )


class _InOrder:
    """Callables run one after another on one background thread, in the order they are given (the
    final pass's compiled sums and its writes: the same additions in the same order as on the pass's
    thread, so the same sums bit for bit), while the pass's thread packs and simulates the next block.
    At most ``depth`` wait (each holds a block's simulation). A failure is raised in the pass's thread
    (at the next :meth:`submit` or :meth:`wait`); leaving on an error waits for the one under way and
    drops those not started."""

    def __init__(self, depth: int = 2):
        self.depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="final-pass-sums")
        self._pending: deque[Future] = deque()
        self._failed = False

    def submit(self, fn: Callable[[], None]) -> None:
        while self._pending and (len(self._pending) >= self.depth or self._pending[0].done()):
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._run, fn))

    def _run(self, fn: Callable[[], None]) -> None:
        if self._failed:  # after a failure nothing more runs (the pass's thread raises it)
            return
        try:
            fn()
        except BaseException:
            self._failed = True
            raise

    def wait(self) -> None:
        """Wait for every callable given (the first failure raised here)."""
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> _InOrder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.wait()
        finally:
            for f in self._pending:  # leaving on an error: the one under way finishes, the others never start
                f.cancel()
            with interrupt.deferred():  # a second Ctrl-C waits too: the files close after the side thread
                self._pool.shutdown(wait=True)
            self._pending.clear()
        if exc_type is None:  # a signal held back while the side thread finished: the run stops here (it went
            interrupt.raise_pending()  # on to write every product and publish, then said the stop)


class _PackedOnOneThread:
    """The blocks of an :class:`~empirical_seaice.model.tensors.ObservationBlocks` packed on the
    calling thread alone (the packing takes the torch thread count; the same values on any number),
    the run's torch thread count back for everything else (the cost's torch terms after the pass)."""

    def __init__(self, blocks: Any):
        self._blocks = blocks

    def block(self, start: int, stop: int) -> Any:
        with torch_threads(1):
            return self._blocks.block(start, stop)


def initial_pass(
    network,
    data,
    obs: Observations,
    nobs_total: int,
    held: out.HeldOutputs | None,
    path: Path | None,
    source: BlockSource | None = None,
) -> PassResult:
    """Before training: the cost and departures before, a warning per sensor whose departures over open
    water say its observed TB is not what its files describe (``diag.OpenWaterDepartures``), and
    (``held`` and ``path`` given) ``tbsim_initial`` held for ``path``. ``source``: where the simulated
    blocks come from (:data:`BlockSource`; by default the forward pass of ``network`` over ``data``)."""
    sums = _Sums(network, obs)
    water = diag.OpenWaterDepartures(obs.basis.nsensor, obs.nchan, obs.nobs)
    block = _pass_block(obs)
    with contextlib.ExitStack() as stack:
        f = None
        if held is not None and path is not None:
            f = stack.enter_context(out.open_tb(held.path(path), obs.nobs, obs.basis, "tbsim_initial", sync=False))
        simulated = (source or _simulated(network, data, obs.nobs))(with_zero=False, block=block)
        for start, stop, sim in simulated:
            rows = slice(start, stop)
            sums.add(rows, sim)
            water.add(obs.isensor[rows], sim.sic, obs.tb_obs_k[rows], sim.tb, obs.mask[rows])
            if f is not None:  # masked (NaN where the sensor lacks the channel) by the compressing threads
                f.write("tb", start, sim.tb, np.array(obs.mask[rows], dtype=bool))
            obs.release(rows)
    files = {"tbsim_initial": Path(path)} if f is not None and path is not None else {}
    warned = tuple(water.warn(obs.basis))
    return PassResult(cost=sums.cost(nobs_total), departures=sums.departures.stats(), files=files, warned=warned)


def _observed_rows(obs: Observations, rows: slice, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``tbobs``'s rows ``rows``: the observed TB (float32) and the mask (``mask``: its copy made already),
    as in-memory copies (not views of the memory-mapped cache, whose pages are dropped after the block:
    the compressing threads read them later)."""
    if mask is None:
        mask = np.array(obs.mask[rows], dtype=bool)
    return np.array(obs.tb_obs_k[rows], dtype=np.float32), mask


class _Stopped(Exception):
    """:meth:`AheadOfFinalPass.cancel` asked the background writer to stop (its file is then removed)."""


class AheadOfFinalPass:
    """The final pass's work that does not depend on the trained model, on a background thread: the
    held ``tbobs`` file (observed TB, each observation's place, time, sensor: the cache's values and
    the grid's lon/lat) and the twin's truth (``read_truth()``, None without one).

    Started (:meth:`start`) after training, beside the held-out fit (one core; the run's peak, training's,
    is over), it compresses on its own thread alone (:func:`~empirical_seaice.io.chunk_writer.on_this_thread`):
    its time and CPU are the held-out fit's stage's. :meth:`result` waits for it (the final pass's stage
    then) and gives the truth, or raises its failure as one line; :meth:`cancel` (the run failed or was
    interrupted meanwhile) stops it at the next block and waits: an unfinished file is removed, a finished
    one stays held until the staging set goes; neither is ever an output.
    The final pass's netCDF calls come after :meth:`result` (the library is not thread-safe)."""

    def __init__(
        self,
        held: out.HeldOutputs,
        path: Path,
        obs: Observations,
        lonlat: tuple[Any, Any],
        read_truth: Callable[[], Any] | None = None,
    ):
        self.held, self.path, self.obs, self.lonlat, self._read_truth = held, Path(path), obs, lonlat, read_truth
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="final-pass-ahead", daemon=True)
        self._error: BaseException | None = None
        self._truth: Any = None
        self._doing = f"writing {self.path.name}"
        """What the thread does (its failure's message names it)."""

    def start(self) -> AheadOfFinalPass:
        self._thread.start()
        return self

    def _run(self) -> None:
        obs = self.obs
        if self._stop.is_set():  # cancelled while start() was under way: no file at all
            return
        try:
            block = _pass_block(obs)
            with chunk_writer.on_this_thread():
                with out.open_tbobs(self.held.path(self.path), obs, self.lonlat[0], self.lonlat[1], sync=False) as f:
                    for start in range(0, obs.nobs, block):
                        if self._stop.is_set():
                            raise _Stopped
                        rows = slice(start, min(start + block, obs.nobs))
                        f.write("tb", start, *_observed_rows(obs, rows))
                        for arr in (obs.tb_obs_k, obs.mask):  # the cache's pages (the fit reads others)
                            release_pages(arr, rows)
            if self._read_truth is not None and not self._stop.is_set():
                self._doing = "reading the twin's truth"
                self._truth = self._read_truth()
            for arr in (obs.igrid, obs.istep, obs.isensor, obs.julian_day, obs.obs_index):
                release_pages(arr)  # read whole for tbobs' per-observation variables and the truth
        except BaseException as exc:  # raised by result() in the run's thread
            self._error = exc

    def running(self) -> bool:
        """Whether the background work is still under way."""
        return self._thread.is_alive()

    def result(self) -> Any:
        """Wait for the background work; the truth (None without one). Its failure as one line
        (:class:`~empirical_seaice.errors.SeaIceError`)."""
        self._thread.join()
        exc, self._error = self._error, None
        if exc is None:
            return self._truth
        if isinstance(exc, SeaIceError):  # already one line (a full disk: io.transaction.write_error)
            raise exc
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise SeaIceError(
            f"{self._doing} beside the held-out fit failed ({type(exc).__name__}: {first}); nothing was published"
        ) from exc

    def cancel(self) -> None:
        """Stop the background work at its next block and wait for it, a second interrupt included (the
        run's staging set, which holds its file, is removed after this): a file not finished is removed,
        a finished one stays held (never an output) until the staging set goes. Its own failure, if any, is
        dropped (the run's is raised). Also before :meth:`start` or while it is under way (a signal
        there): a thread not started is not waited for."""
        self._stop.set()
        with interrupt.deferred():
            if self._thread.ident is not None:
                self._thread.join()
        self._error = None


def _figures_beside(side: _InOrder | None, network, checks: ObservationChecks, with_state: bool) -> dict[str, float]:
    """With a side thread, its first jobs, beside the first blocks instead of after the last (they read the
    trained model, which no block changes): with ``with_state``, the trained state's health figures into
    ``checks`` (:func:`~empirical_seaice.run.health.state_figures`; 0.04-0.05 s on the benchmark twin),
    and the cost's whole-map priors (:meth:`~empirical_seaice.model.operator.HybridNetwork.full_prior_values`,
    on one thread: the same values on any number; 0.05-0.09 s), returned filled in once the side thread
    is done; empty (the cost computes them) without a side thread, where they are not the compiled sums
    (:meth:`~empirical_seaice.model.operator.HybridNetwork.prior_values_compiled`: torch's would follow
    the thread count the pass's thread sets meanwhile), or where numba's parallel loops may not run on
    two threads at once (:func:`~empirical_seaice.threads.parallel_layer_shared`)."""
    values: dict[str, float] = {}

    def fill() -> None:
        with numba_threads(1):
            values.update(network.full_prior_values())

    def state() -> None:
        checks.state = trained_state_figures(network.state)

    if side is not None:
        if with_state:
            side.submit(state)
        if network.prior_values_compiled() and parallel_layer_shared():
            side.submit(fill)
    return values


def _open_final_files(
    stack: contextlib.ExitStack, held: out.HeldOutputs, paths: dict[str, Path], obs: Observations, lonlat
) -> dict[str, Any]:
    """The final pass's held files ``paths`` (kind -> final path), opened on ``stack`` for writing by rows
    (their sync left to :meth:`~empirical_seaice.io.output_writer.HeldOutputs.promote`)."""
    files: dict[str, Any] = {}
    if "tbobs" in paths:
        tbobs = out.open_tbobs(held.path(paths["tbobs"]), obs, lonlat[0], lonlat[1], sync=False)
        files["tbobs"] = stack.enter_context(tbobs)
    for kind in ("tbsim", "ice_emis", "tbzero"):
        if kind not in paths:  # (a retrieval writes no tbzero)
            continue
        path = held.path(paths[kind])
        opened = (
            out.open_ice_emis(path, obs.nobs, obs.basis, sync=False)
            if kind == "ice_emis"
            else out.open_tb(path, obs.nobs, obs.basis, kind, sync=False)
        )
        files[kind] = stack.enter_context(opened)
    return files


def _write_rows(files: dict[str, Any], obs: Observations, rows: slice, sim: diag.Simulation, mask: np.ndarray) -> None:
    """A block's rows of the final pass's files (``files``: kind -> open file), masked (NaN where the
    sensor lacks the channel) by the compressing threads."""
    start = rows.start
    if "tbobs" in files:
        files["tbobs"].write("tb", start, *_observed_rows(obs, rows, mask))
    for kind, variable, values in (
        ("tbsim", "tb", sim.tb),
        ("ice_emis", "ice_emis", sim.emis_ice),
        ("tbzero", "tb", sim.tb_zero),
    ):
        if kind in files:
            assert values is not None  # (tb_zero: simulated where the pass writes tbzero)
            files[kind].write(variable, start, values, mask)


def final_pass(
    network,
    data,
    obs: Observations,
    nobs_total: int,
    held: out.HeldOutputs | None,
    paths: dict[str, Path] | None,
    truth: Any = None,
    lonlat: tuple[Any, Any] = (None, None),
    state_figures: bool = False,
    source: BlockSource | None = None,
) -> PassResult:
    """After training: the cost and departures after, the health checks' figures (``state_figures``:
    the trained state's too, :attr:`ObservationChecks.state <empirical_seaice.run.health.ObservationChecks>`,
    computed beside the blocks where the pass writes files), the truth's
    emissivity errors (``truth`` with ``emis_ice``) and, with ``held`` and ``paths`` (kind -> final
    path of ``tbsim``, ``ice_emis``, ``tbzero`` and, unless :class:`AheadOfFinalPass` wrote it,
    ``tbobs``; a retrieval's without ``tbzero``), those files held. ``lonlat``: the grid's lon and lat
    for ``tbobs``. While it writes,
    it packs (``data`` an ``ObservationBlocks``) and simulates on this thread alone, a second thread sums,
    checks and writes each block in order (:class:`_InOrder`), and one thread fewer than the run's
    compresses (at least one; :mod:`empirical_seaice.io.chunk_writer`). ``source``: where the simulated
    blocks come from (:data:`BlockSource`; by default the forward pass of ``network`` over ``data``)."""
    sums = _Sums(network, obs)
    checks = ObservationChecks(obs.nchan)
    errors = diag.EmisErrorSums(obs.nchan) if getattr(truth, "emis_ice", None) is not None else None
    block = _pass_block(obs)
    write = held is not None and paths is not None
    zero = write and paths is not None and "tbzero" in paths  # (the forward pass with SIC 0 only for it)
    with contextlib.ExitStack() as stack:
        files: dict[str, Any] = {}
        if write:
            assert held is not None and paths is not None
            stack.enter_context(numba_threads(1))  # the forward pass: the other cores compress
            # ... but for the one the sums take (below): a core for each of the pass's two threads
            stack.enter_context(chunk_writer.at_most(chunk_writer.threads() - 1))
            files = _open_final_files(stack, held, paths, obs, lonlat)
        if source is None:
            if write and getattr(data, "block", None) is not None:
                data = _PackedOnOneThread(data)
            source = _simulated(network, data, obs.nobs)
        # with files: the compiled sums and the writes of a block on a thread of their own, in order, while
        # this one packs and simulates the next (entered after the files: done before they close)
        side = stack.enter_context(_InOrder()) if write else None
        map_values = _figures_beside(side, network, checks, state_figures)

        def after(rows: slice, sim: diag.Simulation) -> None:
            """A block's compiled sums and checks, its rows of the files, its cache pages dropped."""
            # copies (not views of the memory-mapped cache, whose pages obs.release drops below): the
            # compressing threads read the mask after that
            mask = np.array(obs.mask[rows], dtype=bool)
            sums.add_departures(rows, sim)
            sums.add_ceiling(sim, mask)
            checks.add(sim.tb, sim.emis_ice, mask, sim.sic)
            if errors is not None:
                errors.add(obs, rows, sim.emis_ice, truth)
            if write:
                _write_rows(files, obs, rows, sim, mask)
            obs.release(rows)

        for start, stop, sim in source(with_zero=zero, block=block):
            sums.add_anchor(sim)  # the blocks' anchor sums in order, on this thread
            if side is not None:
                side.submit(functools.partial(after, slice(start, stop), sim))
            else:
                after(slice(start, stop), sim)
        if side is not None:
            side.wait()  # every block summed before the cost
    return PassResult(
        cost=sums.cost(nobs_total, map_values or None),
        departures=sums.departures.stats(),
        checks=checks,
        emis_errors=errors,
        files=dict(paths) if write and paths is not None else {},
    )


__all__ = ["AheadOfFinalPass", "PassResult", "initial_pass", "final_pass"]
