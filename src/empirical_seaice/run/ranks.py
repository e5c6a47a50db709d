"""This process among the ranks of a sharded run: its context, agreement, and collectives over numpy rows.

What :mod:`empirical_seaice.run.sharded` needs from the process group, beyond the training
step itself (:mod:`empirical_seaice.training.distributed`): :class:`RankContext` (rank, world
size, device), :func:`read_once` (rank 0 reads the data and writes the cache while the others
wait), the digests the ranks agree on (:func:`data_digest`, :func:`code_digest`),
:func:`from_root` (a value computed on rank 0, or its one-line error, on every rank),
:func:`gather_rows` (rows of every rank on rank 0), and on top of it :func:`simulate_sharded`
and :func:`assemble_state` (the whole run's simulations and state on rank 0).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from empirical_seaice.errors import RunInterrupted, SeaIceError
from empirical_seaice.observations import BackgroundMaps, Observations
from empirical_seaice.products import diagnostics as diag
from empirical_seaice.run.partition import Shard
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

    ``rows`` int64 (n,), ``values`` float32 (n, k); ``n`` may differ between ranks
    (padded to the largest for the collective).
    """
    values = np.ascontiguousarray(values, dtype=np.float32).reshape(len(rows), -1)
    n = torch.tensor([len(rows)], dtype=torch.int64, device=ctx.device)
    sizes = [torch.zeros_like(n) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, n)
    counts = [int(s) for s in sizes]
    nmax = max(counts)
    r = torch.full((nmax,), -1, dtype=torch.int64, device=ctx.device)
    r[: len(rows)] = torch.from_numpy(np.asarray(rows, dtype=np.int64))
    v = torch.zeros((nmax, values.shape[1]), dtype=torch.float32, device=ctx.device)
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


def simulate_sharded(
    ctx: RankContext, network, data, shard: Shard, *, zero_sic: bool = False
) -> diag.Simulation | None:
    """Every rank simulates its observations; rank 0 gets the whole run's
    :class:`~empirical_seaice.products.diagnostics.Simulation` in global observation order (None elsewhere)."""
    sim = diag.simulate(network, data, len(shard.obs), zero_sic=zero_sic)
    names = [f.name for f in dataclasses.fields(sim) if getattr(sim, f.name) is not None]
    parts = [np.asarray(getattr(sim, n), dtype=np.float32).reshape(len(shard.obs), -1) for n in names]
    got = gather_rows(ctx, shard.obs, np.concatenate(parts, axis=1))
    if got is None:
        return None
    rows, values = got
    full = np.empty((shard.nobs, values.shape[1]), dtype=np.float32)
    full[rows] = values
    fields, col = {}, 0
    for name, part in zip(names, parts, strict=True):
        block = full[:, col : col + part.shape[1]]
        fields[name] = np.ascontiguousarray(block if getattr(sim, name).ndim == 2 else block[:, 0])
        col += part.shape[1]
    return diag.Simulation(**fields)


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
    all stop with its one line (and its exit status) instead of waiting for rank 0 in the next collective.
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
            box[0] = ("error", f"rank 0 stopped: {type(exc).__name__}: {exc} (its traceback is on its stderr)")
    with interrupt.deferred():
        dist.broadcast_object_list(box, src=0)
    if fault is not None:
        raise fault
    status, value = box[0]
    if status == "error":
        raise SeaIceError(value)
    if status == "interrupted":
        raise RunInterrupted(*value)
    stopped = tdist.agreed_stop(interrupt.requested(), ctx.device)
    if stopped:
        raise interrupt.stopped_by(stopped, published)
    return value


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
    "simulate_sharded",
    "assemble_state",
    "from_root",
    "read_once",
]
