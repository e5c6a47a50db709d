"""Training sharded over processes: the process group, a rank's share of each step, and its collectives.

The problem is parallel by grid point: an observation reads only its own grid
point's rows of the empirical state (SIC through the lag window, the grid
properties ``P[g, t]``) and its own observation property ``Q[i]``, and every
observation shares the few hundred numbers of the emissivity network, the wind
correction and the TB biases. A run over ``W`` processes (ranks) therefore
shards the *state*: each rank owns a set of grid points (the partition, made in
:mod:`empirical_seaice.run.partition`), their observations and their state
rows; the shared parameters are replicated.

A step of the sharded run is the step of a single process over the same
global batch:

1. every rank draws the same global permutation of the training observations
   (the run's generator, seeded alike on every rank) and takes, from each
   global batch of ``B`` observations, the ones it owns
   (:meth:`ShardPlan.epoch_batches`); a rank's share may be empty;
2. forward model and cost on its share, normalised by the *global* ``B``
   (``cost_terms(..., batch_total=B)``), so that the ranks' costs add up to
   the global batch's cost; the priors on the shared parameters only (bias
   prior, v1 anchor) are carried by rank 0 alone;
3. backward; the gradients of the shared parameters are summed over the ranks
   in one all-reduce of a flat buffer (:meth:`ShardPlan.reduce_gradients`; on the
   CPU steps 2-4 are the fused step's, which sums its float64 gradients with
   :meth:`ShardPlan.reduce_arrays`);
   the state rows' gradients need no communication (a row belongs to one
   rank). The same buffer carries what each rank asks of the step
   (:meth:`ShardPlan.ask`: a stop by a signal, rank 0's due checkpoint), so
   that every rank stops or writes its checkpoint after the same step;
4. every rank steps: Adam on the shared parameters (the same summed gradient
   on every rank, so the replicas stay identical) and the deferred Adam of
   :class:`~empirical_seaice.training.deferred_adam.DeferredAdam` on its own
   state rows. Every rank steps at every global step, also with an empty
   share, so the step counts and the deferred momentum tails agree with the
   single-process run.

The books (per-batch terms) are summed over ranks once per epoch, the
held-out cost once per validation; the summed terms are the global batch's.
With ``--reproducible`` the gradient sum is an all-gather followed by a sum in
rank order (the same on every rank and on every rerun, whatever the backend's
reduction order).

Backends: ``gloo`` on CPU, ``nccl`` on CUDA; launched by ``torchrun``, which
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` (:func:`launch_environment`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from empirical_seaice.errors import SeaIceError, relayed
from empirical_seaice.training.runtime import even_bounds

logger = logging.getLogger(__name__)

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""Environment variables that ``torchrun`` sets for every process it starts."""
_STOPS = (None, "SIGINT", "SIGTERM")
"""The stops :func:`agreed_stop` agrees on, in order (the last any rank asked for is taken)."""
_REQUESTS = ("SIGINT", "SIGTERM", "checkpoint")
"""What a rank can ask of a training step (:meth:`ShardPlan.ask`), in the order of the numbers it sends."""


@dataclass(frozen=True)
class LaunchEnvironment:
    """Where this process sits in a ``torchrun`` launch.

    rank : global rank, 0..world_size-1; world_size : number of processes;
    local_rank : rank on this node (selects the GPU); local_world_size :
    processes on this node.
    """

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int


def launch_environment(environ: dict[str, str] | None = None) -> LaunchEnvironment | None:
    """The torchrun environment of this process, or None when it was not started by a launcher.

    Raises
    ------
    SeaIceError
        ``RANK``/``WORLD_SIZE`` present but incomplete or not integers.
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env and "RANK" not in env:
        return None
    missing = [name for name in TORCHRUN_VARIABLES if name not in env]
    if missing:
        raise SeaIceError(
            f"--distributed: environment variable(s) {', '.join(missing)} not set; "
            "launch with torchrun (e.g. torchrun --nproc-per-node 2 -m empirical_seaice.cli ...)"
        )
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env["LOCAL_RANK"])
        local_world = int(env.get("LOCAL_WORLD_SIZE", world))
    except ValueError:
        raise SeaIceError("--distributed: RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
    if not 0 <= rank < world:
        raise SeaIceError(f"--distributed: RANK={rank} is outside 0..WORLD_SIZE-1={world - 1}")
    return LaunchEnvironment(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world)


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA devices, ``gloo`` for CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device, env: LaunchEnvironment) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for CUDA (one GPU per process), else ``device``."""
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if env.local_rank >= count:
        raise SeaIceError(
            f"--distributed: LOCAL_RANK={env.local_rank} but this node has {count} GPU(s); "
            f"start at most {count} processes per node (--nproc-per-node) or use --device cpu"
        )
    return torch.device("cuda", env.local_rank)


def init_process_group(env: LaunchEnvironment, device: torch.device) -> None:
    """Join the process group (``env://`` rendezvous of torchrun) with the device's backend."""
    if dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend_for(device), rank=env.rank, world_size=env.world_size)
    logger.info("rank %d of %d joined (%s)", env.rank, env.world_size, backend_for(device))


def destroy_process_group() -> None:
    """Leave the process group, if joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------ agreement of the ranks
def digest(*parts: object) -> bytes:
    """SHA-256 of the ``repr`` of ``parts`` (32 bytes)."""
    return hashlib.sha256(repr(parts).encode()).digest()


def check_agreement(fingerprints: dict[str, bytes], device: torch.device) -> None:
    """Stop every rank with one line if any rank's fingerprints differ from rank 0's.

    ``fingerprints``: name (e.g. ``"data"``, ``"configuration"``, ``"code version"``)
    -> 32-byte digest, the same names in the same order on every rank. One
    all-gather of ``len(fingerprints) x 32`` bytes.

    Raises
    ------
    SeaIceError
        On every rank, naming the first disagreeing rank and what it disagrees on.
    """
    names = list(fingerprints)
    mine = torch.tensor(np.frombuffer(b"".join(fingerprints[n] for n in names), dtype=np.uint8).astype(np.int64))
    mine = mine.to(device)
    world = dist.get_world_size()
    every = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(every, mine)
    ref = every[0].view(len(names), -1)
    for rank in range(1, world):
        differs = (every[rank].view(len(names), -1) != ref).any(dim=1).tolist()
        bad = [n for n, d in zip(names, differs, strict=True) if d]
        if bad:
            raise relayed(
                SeaIceError(
                    f"--distributed: rank {rank} disagrees with rank 0 on the {' and '.join(bad)}; "
                    "launch every rank with the same command, the same data and the same code version"
                ),
                dist.get_rank(),
            )


# ------------------------------------------------------------------ the step
def agreed_stop(reason: str | None, device: torch.device) -> str | None:
    """The stop every rank of the process group takes: this rank's requested stop (``"SIGINT"``,
    ``"SIGTERM"`` or None) and the others', SIGTERM before SIGINT; one all-reduce (none in one process)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return reason
    t = torch.tensor([_STOPS.index(reason)], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return _STOPS[int(t.item())]


def local_shares(ntrain: np.ndarray, batch_size: int) -> np.ndarray:
    """Observations of each rank at each step of an epoch in the "local" order, int64 (world, nbatch).

    ``nbatch = ceil(N / B)`` steps for ``N = sum_r n_r`` training observations; rank ``r``
    spreads its ``n_r`` evenly over them (``n_r // nbatch``, one more in the first
    ``n_r % nbatch`` steps), so every step's global batch is ``~B`` and each rank's share of it
    is proportional to its observations.
    """
    n = np.asarray(ntrain, dtype=np.int64)
    nbatch = max(int(-(-int(n.sum()) // batch_size)), 1)
    b = np.arange(nbatch)
    return n[:, None] // nbatch + (b[None, :] < (n[:, None] % nbatch))


class ShardPlan:
    """A rank's share of the sharded run, as the trainer sees it.

    Two batch orders (``order``):

    ``"global"``: the single-process run's batches, shared out
        Every rank draws the same permutation of the *global* training
        observations and takes its own from each batch of ``B``
        (:meth:`epoch_batches`): the run equals a single-process run up to
        rounding. Costs every rank one permutation of all observations per
        epoch (two int64 per observation of the run), which bounds it to runs
        of up to a few hundred million observations.
    ``"local"``: each rank shuffles its own observations
        With its own generator; the epoch has the same number of steps
        ``ceil(N / B)`` on every rank and each rank spreads its ``n_r``
        training observations evenly over them, so step ``b`` has a global
        batch of ``sum_r n_r(b) ~ B`` observations and each rank's share is
        proportional to its observations. Memory O(shard); not the
        single-process batch sequence (the same objective, another order).

    Parameters
    ----------
    device : torch.device
        Where the collectives' tensors live (the rank's training device).
    reproducible : bool
        Sum the gradients in rank order (all-gather) instead of the backend's
        all-reduce order.
    global_to_local : int64 array (nobs_global,), order "global" only
        For each observation of the whole run, its row in this rank's
        observation tensors, -1 where another rank owns it.
    ntrain_local : int, order "local" only
        This rank's training observations.
    """

    def __init__(
        self,
        device: torch.device,
        reproducible: bool = False,
        global_to_local: np.ndarray | None = None,
        ntrain_local: int | None = None,
    ) -> None:
        if not dist.is_initialized():
            raise RuntimeError("ShardPlan: the process group is not initialised")
        if (global_to_local is None) == (ntrain_local is None):
            raise ValueError("ShardPlan: give global_to_local (global order) or ntrain_local (local order)")
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.device = torch.device(device)
        self.reproducible = bool(reproducible)
        self.order = "global" if global_to_local is not None else "local"
        self.global_to_local: torch.Tensor | None = None
        self.ntrain: np.ndarray | None = None  # every rank's training observations (local order)
        if global_to_local is not None:
            self.global_to_local = torch.as_tensor(np.asarray(global_to_local, dtype=np.int64))
        else:
            every = self.all_sum(
                torch.zeros(self.world_size, dtype=torch.int64, device=self.device).index_fill_(
                    0, torch.tensor([self.rank], device=self.device), int(ntrain_local or 0)
                )
            )
            self.ntrain = every.cpu().numpy()
        self._asked = np.zeros(len(_REQUESTS))  # what this rank asks of the next step (ask)
        self._answer: np.ndarray | None = None  # the ranks' requests summed by the last step (answer)

    @property
    def checkpoint_name(self) -> str:
        """This rank's file name in the checkpoint directory."""
        return f"checkpoint-rank{self.rank:05d}-of-{self.world_size:05d}.pt"

    def ntrain_total(self, train_index: torch.Tensor) -> int:
        """Training observations of the whole run, given the trainer's ``train_index`` (global in the
        global order, this rank's own in the local order)."""
        return int(train_index.numel()) if self.ntrain is None else int(self.ntrain.sum())

    def epoch_batches(self, perm: torch.Tensor, batch_size: int) -> tuple[list[torch.Tensor], np.ndarray]:
        """This rank's share of each step of an epoch, as local row indices (int64, on the device;
        possibly empty), and the global batch size of each step.

        ``perm``: the epoch's permutation of the trainer's ``train_index``: the global training
        observations (order "global"; the global batch ``b`` is ``perm[b B : (b + 1) B]``) or this
        rank's own (order "local")."""
        perm = perm.cpu()
        if self.global_to_local is not None:
            n = perm.numel()
            nbatch = (n + batch_size - 1) // batch_size
            local = self.global_to_local.index_select(0, perm)
            keep = torch.nonzero(local >= 0).flatten()
            counts = torch.bincount(keep // batch_size, minlength=nbatch).tolist()
            sizes = np.diff(even_bounds(n, batch_size))
            return [b.to(self.device) for b in local.index_select(0, keep).split(counts)], sizes
        assert self.ntrain is not None
        share = local_shares(self.ntrain, batch_size)
        return [x.to(self.device) for x in perm.split(share[self.rank].tolist())], share.sum(axis=0)

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place (returned)."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def reduce_gradients(self, params: list[torch.Tensor]) -> None:
        """Sum the gradients of the shared parameters over the ranks: one collective on one flat
        buffer (a missing gradient counts as zero and is set afterwards), the ranks' requests (:meth:`ask`)
        at its end."""
        if self.world_size == 1 or not params:  # nothing to sum (a one-rank launch, a frozen model): no collective
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            if params:
                self._answered(self._asked.copy())
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        asked = torch.from_numpy(self._asked).to(grads[0])
        flat = self._sum_flat(torch.cat([*(g.reshape(-1) for g in grads), asked]))
        self._answered(flat[-asked.numel() :].cpu().double().numpy())
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def reduce_arrays(self, arrays: tuple[np.ndarray, ...]) -> None:
        """Sum flat numpy arrays over the ranks, in place (the fused step's dense gradients,
        :class:`~empirical_seaice.training.fused_step.FusedStep`): one collective on one flat buffer, as
        :meth:`reduce_gradients`, the ranks' requests (:meth:`ask`) with them."""
        if self.world_size == 1:
            self._answered(self._asked.copy())
            return
        flat = torch.from_numpy(np.concatenate([*arrays, self._asked.astype(arrays[0].dtype)]))
        summed = self._sum_flat(flat.to(self.device)).cpu().numpy()
        self._answered(summed[-self._asked.size :].astype(np.float64))
        offset = 0
        for a in arrays:
            a[:] = summed[offset : offset + a.size]
            offset += a.size

    def _sum_flat(self, flat: torch.Tensor) -> torch.Tensor:
        """``flat`` summed over the ranks: an all-reduce, or with ``reproducible`` an all-gather summed in
        rank order (the same bits on every rank and every rerun, whatever the backend's order)."""
        if self.reproducible:
            every = [torch.empty_like(flat) for _ in range(self.world_size)]
            dist.all_gather(every, flat)
            flat = every[0].clone()
            for other in every[1:]:
                flat.add_(other)
        else:
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        return flat

    def ask(self, stop: str | None, checkpoint: bool) -> None:
        """What this rank asks of the step it is about to run, sent with that step's sum of the shared
        gradients (three numbers more in the same collective, :meth:`reduce_arrays` or
        :meth:`reduce_gradients`): a stop (``"SIGINT"``, ``"SIGTERM"`` or None: a signal this rank got) and a
        checkpoint (rank 0's clock is the run's: another rank's ``checkpoint`` is not sent). Every rank then
        reads the same :meth:`answer` after the step, and all stop or write their checkpoints after the
        same step, without a collective of their own."""
        self._asked[:] = (stop == "SIGINT", stop == "SIGTERM", bool(checkpoint) and self.rank == 0)

    def answer(self) -> tuple[str | None, bool]:
        """What the ranks asked (:meth:`ask`) of the step that just ran, summed: the stop every rank takes
        after it (SIGTERM before SIGINT, as :func:`agreed_stop`) and whether every rank writes its
        checkpoint there. ``(None, False)`` where no step summed anything since the last answer (a frozen
        model's steps have no shared gradients: their stops wait for :func:`agreed_stop`)."""
        got, self._answer = self._answer, None
        if got is None:
            return None, False
        asked = dict(zip(_REQUESTS, (got > 0).tolist(), strict=True))
        return ("SIGTERM" if asked["SIGTERM"] else "SIGINT" if asked["SIGINT"] else None), asked["checkpoint"]

    def _answered(self, summed: np.ndarray) -> None:
        """Keep the step's summed requests for :meth:`answer`; what this rank asked is sent once."""
        self._answer = summed
        self._asked[:] = 0.0

    def agreed_epoch_end(self, reason: str | None, checkpoint: bool) -> tuple[str | None, bool]:
        """What every rank does at an epoch's end: the stop (this rank's ``reason`` and the others', SIGTERM
        before SIGINT, as :func:`agreed_stop`) and whether to write the checkpoint (rank 0's ``checkpoint``:
        its clock is the run's, as within an epoch, :meth:`ask`); one all-reduce."""
        due = bool(checkpoint) and self.rank == 0
        if self.world_size == 1:
            return reason, due
        t = torch.tensor([_STOPS.index(reason), int(due)], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return _STOPS[int(t[0])], bool(t[1])

    def same_everywhere(self, value: int, what: str) -> None:
        """Check that an integer (e.g. the resumed epoch) is the same on every rank.

        Raises
        ------
        SeaIceError
            On every rank when it is not.
        """
        t = torch.tensor([value, -value], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if int(t[0]) != -int(t[1]):
            raise relayed(
                SeaIceError(
                    f"--distributed: the ranks disagree on {what} (from {-int(t[1])} to {int(t[0])}); "
                    "the per-rank checkpoints are from different points of training: train again without --resume"
                ),
                self.rank,
            )


__all__ = [
    "LaunchEnvironment",
    "ShardPlan",
    "TORCHRUN_VARIABLES",
    "backend_for",
    "check_agreement",
    "destroy_process_group",
    "digest",
    "init_process_group",
    "launch_environment",
    "local_shares",
    "rank_device",
]
