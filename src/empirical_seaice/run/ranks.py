"""This process among the ranks of a sharded run: its context, agreement, and collectives over numpy rows.

What :mod:`empirical_seaice.run.sharded` needs from the process group, beyond the training
step itself (:mod:`empirical_seaice.training.distributed`): :class:`RankContext` (rank, world
size, device), :func:`read_once` (rank 0 reads the data and writes the cache while the others
wait), the digests the ranks agree on (:func:`data_digest`, :func:`code_digest`),
:func:`from_root` (a value computed on rank 0, or its one-line error, on every rank),
:func:`gather_rows` (rows of every rank on rank 0), and on top of it :func:`sharded_pass` (a streamed
pass over the whole run's simulations, block by block on rank 0) and :func:`assemble_state` (the whole
run's state on rank 0).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from empirical_seaice.errors import RunInterrupted, SeaIceError, relayed
from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.products import diagnostics as diag
from empirical_seaice.run.partition import Shard
from empirical_seaice.threads import numba_threads
from empirical_seaice.training import distributed as tdist

_SAMPLE = 4096  # evenly spaced observations whose values enter the data digest


@dataclass
class RankContext:
    """This process in the sharded run: launch environment, device, rank, world size."""

    env: tdist.LaunchEnvironment
    device: torch.device

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def world_size(self) -> int:
        return self.env.world_size

    @property
    def root(self) -> bool:
        return self.env.rank == 0


# ------------------------------------------------------------------ agreement
def code_digest() -> bytes:
    """Digest of the package's source files, the package and torch versions (the 'code version')."""
    import empirical_seaice

    root = Path(empirical_seaice.__file__).parent
    h = []
    for path in sorted(root.rglob("*.py")):
        h.append((str(path.relative_to(root)), tdist.digest(path.read_bytes())))
    version = getattr(empirical_seaice, "__version__", "")
    return tdist.digest(version, torch.__version__, h)


def data_digest(obs: Observations, background: BackgroundMaps) -> bytes:
    """Digest of the data's shape, period, channels and values at evenly spaced observations."""
    pick = np.linspace(0, max(obs.nobs - 1, 0), min(obs.nobs, _SAMPLE)).astype(np.int64)
    values = [np.asarray(getattr(obs, name))[pick].tobytes() for name in ("igrid", "istep", "tb_obs_k", "julian_day")]
    gpick = np.linspace(0, background.ngrid - 1, min(background.ngrid, _SAMPLE)).astype(np.int64)
    return tdist.digest(
        obs.nobs,
        obs.ngrid,
        obs.nstep,
        obs.jd_origin,
        obs.stepstart,
        tuple(obs.basis.channel_names),
        tuple(obs.basis.sensor_names),
        values,
        np.asarray(background.sic)[gpick].tobytes(),
    )


# ------------------------------------------------------------------ collectives over numpy rows
def gather_rows(ctx: RankContext, rows: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Gather ``(rows, values)`` of every rank on rank 0 (concatenated in rank order); None elsewhere.

    ``rows`` int64 (n,), ``values`` float32 (n, k); ``n`` may differ between ranks (padded to the
    largest for the collective), and so may ``k`` where ``n`` is 0 (a rank with no rows need not know
    how many columns the others send); ranks with rows send the same ``k``.
    """
    values = np.ascontiguousarray(values, dtype=np.float32)
    values = values if values.ndim == 2 else values.reshape(len(rows), -1)
    n = torch.tensor([len(rows), values.shape[1]], dtype=torch.int64, device=ctx.device)
    sizes = [torch.zeros_like(n) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, n)
    counts = [int(s[0]) for s in sizes]
    ncol = {int(s[1]) for s in sizes if int(s[0]) > 0}
    if len(ncol) > 1:
        raise ValueError(f"gather_rows: the ranks' rows have {sorted(ncol)} columns")
    nmax, k = max(counts), (ncol.pop() if ncol else values.shape[1])
    r = torch.full((nmax,), -1, dtype=torch.int64, device=ctx.device)
    r[: len(rows)] = torch.from_numpy(np.asarray(rows, dtype=np.int64))
    v = torch.zeros((nmax, k), dtype=torch.float32, device=ctx.device)
    if len(rows):  # (a rank without rows may send no columns)
        v[: len(rows)] = torch.from_numpy(values)
    r_all = [torch.empty_like(r) for _ in range(ctx.world_size)] if ctx.root else None
    v_all = [torch.empty_like(v) for _ in range(ctx.world_size)] if ctx.root else None
    dist.gather(r, r_all, dst=0)
    dist.gather(v, v_all, dst=0)
    if not ctx.root:
        return None
    assert r_all is not None and v_all is not None
    rows_out = np.concatenate([t[:c].cpu().numpy() for t, c in zip(r_all, counts, strict=True)])
    values_out = np.concatenate([t[:c].cpu().numpy() for t, c in zip(v_all, counts, strict=True)])
    return rows_out, values_out


# ------------------------------------------------------------------ the streamed passes over the ranks
LocalBlocks = Callable[..., Iterator[tuple[int, int, diag.Simulation]]]
"""A rank's forward pass over its own observations: called with ``ranges`` (local ``(start, stop)``
blocks, each non-empty) and ``with_zero`` (keywords), it yields their simulations in that order
(:func:`~empirical_seaice.products.diagnostics.simulate_blocks`)."""


def local_blocks(network, data, shard: Shard) -> LocalBlocks:
    """The rank's :data:`LocalBlocks`: ``network``'s forward pass over its packed observations ``data``."""
    return functools.partial(diag.simulate_blocks, network, data, len(shard.obs))


def _block_plan(shard: Shard, block: int) -> list[tuple[int, int, int, int]]:
    """The run's blocks of at most ``block`` observations, ``(start, stop)`` in the run's observations, each
    with the rank's local rows in it (``(lo, hi)``: its observations are ascending, so a range)."""
    starts = np.arange(0, shard.nobs, block, dtype=np.int64)
    stops = np.minimum(starts + block, shard.nobs)
    lo, hi = np.searchsorted(shard.obs, starts), np.searchsorted(shard.obs, stops)
    return [(int(a), int(b), int(c), int(d)) for a, b, c, d in zip(starts, stops, lo, hi, strict=True)]


def _my_parts(shard: Shard, local: LocalBlocks, block: int, with_zero: bool):
    """The run's blocks (:func:`_block_plan`) and this rank's forward pass over its non-empty parts of them."""
    plan = _block_plan(shard, block)
    return plan, local(ranges=[(lo, hi) for _, _, lo, hi in plan if hi > lo], with_zero=with_zero)


def _my_part(mine: Iterator, lo: int, hi: int) -> diag.Simulation | None:
    """This rank's part of a block (its local rows ``lo:hi``), simulated next by ``mine``; None where empty."""
    return next(mine)[2] if hi > lo else None


def _send_part(ctx: RankContext, shard: Shard, part: diag.Simulation | None, lo: int, hi: int):
    """This rank's part ``part`` of a block (:func:`_my_part`) gathered on rank 0 (:func:`gather_rows`: rank 0
    gets every rank's rows and values, the others None)."""
    return gather_rows(ctx, shard.obs[lo:hi], _columns(part))


class _PartsAhead:
    """Rank 0's own parts of a pass's blocks (:func:`_my_part`), each simulated on a thread of its own while
    rank 0 uses the block before (sums and writes it): rank 0's forward pass off the pass's critical path, as
    the other ranks' already is. Where numba's parallel loops may not run on two threads at once
    (:func:`~empirical_seaice.threads.parallel_layer_shared`), each part is simulated when asked for."""

    def __init__(self, mine: Iterator, plan: list[tuple[int, int, int, int]]):
        from empirical_seaice.threads import parallel_layer_shared

        self.mine, self.plan = mine, plan
        self.pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="pass-ahead") if parallel_layer_shared() else None
        )
        self.next: Future | None = None
        self.threads = 1
        if self.pool is not None:  # (numba is there: its parallel loops' layer is known)
            import numba

            self.threads = numba.get_num_threads()

    def get(self, k: int) -> diag.Simulation | None:
        """Block ``k``'s part (the one simulated ahead, or simulated now)."""
        _, _, lo, hi = self.plan[k]
        if self.next is None:
            return _my_part(self.mine, lo, hi)
        part, self.next = self.next.result(), None
        return part

    def ahead(self, k: int) -> None:
        """Start simulating block ``k``'s part on the thread (nothing without one)."""
        if self.pool is not None:
            _, _, lo, hi = self.plan[k]
            self.next = self.pool.submit(self._simulate, lo, hi)

    def _simulate(self, lo: int, hi: int) -> diag.Simulation | None:
        with numba_threads(self.threads):  # the pass's thread count (numba's is each thread's own)
            return _my_part(self.mine, lo, hi)

    def close(self) -> None:
        """Wait for a part under way (a pass stopped early) and end the thread."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def _columns(sim: diag.Simulation | None) -> np.ndarray:
    """A block's simulation as one float32 array, its fields side by side in :class:`Simulation`'s order
    (``tb``, ``emis_ice``, ``sic``, ``emis_anchor`` where given, ``tb_zero`` where asked for); (0, 0) for
    none (a rank without observations in the block)."""
    if sim is None:
        return np.zeros((0, 0), dtype=np.float32)
    parts = [getattr(sim, f.name) for f in dataclasses.fields(sim)]
    n = len(sim.sic)
    return np.concatenate([np.asarray(p, dtype=np.float32).reshape(n, -1) for p in parts if p is not None], axis=1)


def _simulation(values: np.ndarray, nchan: int, with_zero: bool) -> diag.Simulation:
    """:func:`_columns` undone: the fields of a block's gathered ``values`` ((n, k) float32, the anchor's
    column among them where ``k`` has room for it), each a C-contiguous copy (as the forward pass gives
    them: the compiled sums take them as they are)."""
    anchor = values.shape[1] == (3 if with_zero else 2) * nchan + 2
    zero = 2 * nchan + 1 + int(anchor)
    return diag.Simulation(
        tb=np.ascontiguousarray(values[:, :nchan]),
        emis_ice=np.ascontiguousarray(values[:, nchan : 2 * nchan]),
        sic=np.ascontiguousarray(values[:, 2 * nchan]),
        emis_anchor=np.ascontiguousarray(values[:, 2 * nchan + 1]) if anchor else None,
        tb_zero=np.ascontiguousarray(values[:, zero:]) if with_zero else None,
    )


class ShardedBlocks:
    """Rank 0's :data:`~empirical_seaice.run.streamed.BlockSource` in a sharded run: every block of the
    run's observations (:func:`_block_plan`), each rank's part of it simulated by that rank on its shard
    (:data:`LocalBlocks`) and gathered on rank 0 in the run's observation order. A pass holds one block at
    a time on every rank (two on the others: the next one under way), whatever the number of observations
    (before: each rank's whole shard, and rank 0 the whole run's simulation twice over, about 0.2-0.3 KB an
    observation a pass).

    Rank 0 tells the others to go on to a block (``block``, ``with_zero``) as soon as it has gathered the one
    before, so that they simulate it while rank 0 sums and writes that one; or that the pass has ended
    (:meth:`end`: after its last block, or when the pass stopped early, e.g. a full disk while it wrote, the
    block they were told to go on to gathered first, without rank 0's rows). :func:`follow_blocks` is the
    other ranks' side. Use through :func:`sharded_pass`."""

    def __init__(self, ctx: RankContext, shard: Shard, local: LocalBlocks, nchan: int):
        self.ctx, self.shard, self.local, self.nchan = ctx, shard, local, nchan
        self.ended = False
        self.told = False
        """Whether the others were told to go on to a block that is not gathered yet."""

    def __call__(self, *, with_zero: bool = False, block: int) -> Iterator[tuple[int, int, diag.Simulation]]:
        from empirical_seaice.run import interrupt

        plan, mine = _my_parts(self.shard, self.local, block, with_zero)
        parts = _PartsAhead(mine, plan)
        try:
            for k, (start, stop, lo, hi) in enumerate(plan):
                with interrupt.deferred():  # a signal waits for the block's collectives (the others are in them)
                    if k == 0:
                        self._go(block, with_zero)
                    got = _send_part(self.ctx, self.shard, parts.get(k), lo, hi)
                    self.told = False
                    if k + 1 < len(plan):  # the next block now: every rank simulates it while this one is used
                        self._go(block, with_zero)
                        parts.ahead(k + 1)
                interrupt.raise_pending()  # then stops the pass (and, through end(), the others' following)
                assert got is not None
                rows, values = got
                whole = np.empty((stop - start, values.shape[1]), dtype=np.float32)
                whole[rows - start] = values
                yield start, stop, _simulation(whole, self.nchan, with_zero)
        finally:
            parts.close()
        self.end()

    def _go(self, block: int, with_zero: bool) -> None:
        _tell(self.ctx, (1, block, int(with_zero)))
        self.told = True

    def end(self) -> None:
        """Tell the other ranks that the pass has ended (once), after the gather of the block they were told
        to go on to, if any (rank 0 sends no rows to it)."""
        if not self.ended:
            self.ended = True
            if self.told:
                gather_rows(self.ctx, np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))
                self.told = False
            _tell(self.ctx, (0, 0, 0))


def follow_blocks(ctx: RankContext, shard: Shard, local: LocalBlocks) -> None:
    """A rank other than 0 during a pass of :class:`ShardedBlocks`: its part of each block simulated and
    sent to rank 0, until rank 0 says the pass has ended."""
    plan: list[tuple[int, int, int, int]] = []
    mine: Iterator[tuple[int, int, diag.Simulation]] | None = None
    for k in itertools.count():
        go, block, with_zero = _tell(ctx)
        if not go:
            return
        if mine is None:
            plan, mine = _my_parts(shard, local, block, bool(with_zero))
        _, _, lo, hi = plan[k]
        _send_part(ctx, shard, _my_part(mine, lo, hi), lo, hi)


def _tell(ctx: RankContext, message: tuple[int, int, int] = (0, 0, 0)) -> tuple[int, int, int]:
    """Rank 0's ``message`` (three integers) to every rank: what each gets."""
    t = torch.tensor(message, dtype=torch.int64, device=ctx.device)
    dist.broadcast(t, src=0)
    go, block, with_zero = (int(x) for x in t.cpu())
    return go, block, with_zero


def sharded_pass(ctx: RankContext, shard: Shard, local: LocalBlocks, nchan: int, make):
    """A streamed pass of a sharded run: ``make(source)`` on rank 0, with ``source`` the
    :class:`ShardedBlocks` of the run's simulated blocks (for :func:`~empirical_seaice.run.streamed.initial_pass`
    or :func:`~empirical_seaice.run.streamed.final_pass`), while every other rank simulates its part of each
    block (:func:`follow_blocks`); then, as :func:`from_root`, ``make``'s result on every rank, or its error
    raised on every rank. A signal to a rank other than 0 waits for the pass's end (then every rank stops:
    :func:`from_root`); one to rank 0 stops its pass at once and, through the pass's end, every rank."""
    from empirical_seaice.run import interrupt

    if not ctx.root:
        with interrupt.deferred():
            follow_blocks(ctx, shard, local)
        return from_root(ctx, None)
    source = ShardedBlocks(ctx, shard, local, nchan)

    def run():
        try:
            return make(source)
        finally:
            source.end()  # the others stop following, also when the pass stopped early

    return from_root(ctx, run)


@torch.no_grad()
def assemble_state(ctx: RankContext, local, shard: Shard, full) -> None:
    """Copy every rank's state rows into rank 0's whole-map network ``full`` (None on other ranks),
    and the shared parameters of rank 0's ``local`` network into it."""
    st = local.state
    tables = [(st.sic_map, shard.table_rows(st.ncol))]
    if st.props_grid is not None:
        tables.append((st.props_grid, shard.table_rows(st.nstep)))
    if st.props_obs is not None:
        tables.append((st.props_obs, shard.obs))
    targets = []
    if full is not None:
        fs = full.state
        targets = [fs.sic_map, *([fs.props_grid] if fs.props_grid is not None else [])]
        targets += [fs.props_obs] if fs.props_obs is not None else []
    for k, (table, rows) in enumerate(tables):
        got = gather_rows(ctx, rows, table.weight.detach().float().cpu().numpy())
        if got is not None:
            w = targets[k].weight
            idx = torch.from_numpy(got[0]).to(w.device)
            w.index_copy_(0, idx, torch.from_numpy(got[1]).to(w))
    if full is not None:
        for dst, src in zip(full.dense_parameters(), local.dense_parameters(), strict=True):
            dst.copy_(src.detach())


def from_root(ctx: RankContext, make, published: str = ""):
    """``make()`` on rank 0, its result broadcast to every rank (``broadcast_object_list``); a
    :class:`SeaIceError` or a signal's :class:`RunInterrupted` on rank 0 is raised on every rank, so that
    all stop with its one line (and its exit status) instead of waiting for rank 0 in the next collective;
    rank 0 prints the line, the others exit with its status in silence (:func:`~empirical_seaice.errors.relayed`).
    Any other exception (a fault of the code) is raised on rank 0 as it is, traceback and all, and the
    other ranks stop with one line naming it (before: a lost peer's traceback in their next collective).

    A signal that reaches a rank while it waits for rank 0 is held until rank 0's outcome is known; then
    the ranks agree on it (:func:`~empirical_seaice.training.distributed.agreed_stop`) and all stop (a
    rank that stopped at once left rank 0 to die in its broadcast with a traceback). ``published``: the
    files ``make`` published (``OUT/*_TAG.nc``), named in that stop's line as complete."""
    from empirical_seaice.run import interrupt

    box: list[Any] = [None]
    fault: Exception | None = None
    if ctx.root:
        try:
            box[0] = ("ok", make())
        except SeaIceError as exc:
            box[0] = ("error", str(exc))
        except RunInterrupted as exc:
            box[0] = ("interrupted", (str(exc), exc.exit_code, exc.published))
        except Exception as exc:
            fault = exc
            box[0] = ("fault", f"rank 0 stopped: {type(exc).__name__}: {exc} (its traceback is on its stderr)")
    with interrupt.deferred():
        dist.broadcast_object_list(box, src=0)
    if fault is not None:
        raise fault
    status, value = box[0]
    if status == "error":  # rank 0 prints its line; every rank stops with it
        raise relayed(SeaIceError(value), ctx.rank)
    if status == "fault":  # rank 0 prints its traceback, the others this line
        raise SeaIceError(value)
    if status == "interrupted":
        raise relayed(RunInterrupted(*value), ctx.rank)
    stop_if_any_asked(ctx, published)
    return value


def stop_if_any_asked(ctx: RankContext, published: str = "") -> None:
    """Where a signal was held back (a rank waiting for rank 0, a training, a held-out fit): the stop any rank
    got, agreed over the ranks (:func:`~empirical_seaice.training.distributed.agreed_stop`: SIGTERM before
    SIGINT), raised on every rank and said by rank 0 (:func:`~empirical_seaice.errors.relayed`); nothing where
    none did. ``published``: the files published meanwhile, named in the line as complete."""
    from empirical_seaice.run import interrupt

    stopped = tdist.agreed_stop(interrupt.requested(), ctx.device)
    if stopped:
        raise relayed(interrupt.stopped_by(stopped, published), ctx.rank)


def read_once(ctx: RankContext, data_cfg, nlag: int, cache_dir: Path) -> tuple[Observations, BackgroundMaps]:
    """Rank 0 reads the data and writes the cache (its read returns the cache's maps); the others wait, then
    open the cache. A reading error on rank 0 stops every rank with its message."""
    from empirical_seaice.io import read_training_data

    read: list[tuple[Observations, BackgroundMaps]] = []

    def write_cache() -> None:
        read.append(read_training_data(data_cfg, nlag, cache_dir=cache_dir))

    from_root(ctx, write_cache)
    return read[0] if read else read_training_data(data_cfg, nlag, cache_dir=cache_dir)


def rank_context(distributed: bool, device: torch.device, diagsonly: bool):
    """The :class:`~empirical_seaice.run.ranks.RankContext` of a sharded run (the process group
    joined), or None for a single process."""
    env = tdist.launch_environment()
    if env is None:
        if distributed:
            raise SeaIceError(
                "--distributed: not started by torchrun (RANK and WORLD_SIZE unset); launch with "
                "torchrun --nproc-per-node N -m empirical_seaice.cli ... (README 'Training on several processes')"
            )
        return None
    if not distributed and env.world_size == 1:
        return None
    if diagsonly:
        raise SeaIceError("--diagsonly: runs in one process; start it without torchrun and --distributed")
    from empirical_seaice.logs import name_the_rank

    name_the_rank(env.rank, env.world_size)
    rank_device = tdist.rank_device(device, env)
    tdist.init_process_group(env, rank_device)
    return RankContext(env=env, device=rank_device)


__all__ = [
    "rank_context",
    "RankContext",
    "code_digest",
    "data_digest",
    "gather_rows",
    "ShardedBlocks",
    "follow_blocks",
    "local_blocks",
    "sharded_pass",
    "assemble_state",
    "from_root",
    "stop_if_any_asked",
    "read_once",
]
