"""The trainer: minibatch Adam over shuffled observations.

The trainer knows nothing about sea ice. It minimises the stochastic cost that
a *network* reports for a batch of observations, over the parameters the
network hands it, and keeps the books (per-batch and per-epoch terms,
held-out validation, early stopping, checkpoints, progress). The network
contract it relies on (:class:`~empirical_seaice.network.HybridNetwork`
fulfils it)::

    data.batch(index: LongTensor) -> batch
    network(batch) -> out
    network.cost_terms(batch, out, nobs_total) -> dict[str, Tensor]   # scalar terms
    network.total_cost(terms) -> Tensor                               # what is minimised
    network.sparse_parameters() -> list[Parameter]   # tables with sparse gradients
    network.dense_parameters() -> list[Parameter]
    network.full_prior_terms(nobs_total) -> dict[str, Tensor]  # whole-map priors, exact (evaluation)
    network.state_rows(batch) -> list[(Parameter, LongTensor)]  # optional: table rows a batch reads
    network.reads_state_values: bool      # optional: network(batch, state_values=[tensor per state_rows entry])

The term named ``"obs"`` (:data:`OBS_TERM`) is the observation term: the mean
of ``J_o,i`` over the batch; it is what the held-out validation reports.

Optimisers and the objective
----------------------------
Each step minimises the stochastic estimate of PHYSICS.md,
``(1/B) sum_{i in batch} J_o,i + J_b / nobs`` (the network's sampled priors
make the ``J_b`` part an unbiased per-step estimate too; see
:mod:`empirical_seaice.network`). Its expectation over a uniformly shuffled
epoch is ``J / nobs``, the same objective as the reference.

Three optimiser schemes (``TrainingConfig.optimizer``); the small dense
weights (emissivity network, wind correction, biases) always use
:class:`torch.optim.Adam` (fused); they differ on the empirical-state tables
(SIC map, grid and observation properties), which are embeddings:

``"sparse"`` (default): :class:`DeferredAdam`
    Sparse row gradients; the optimiser touches only the rows of the batch,
    so its cost per step is O(batch), not O(state size). It reproduces
    *dense* Adam: a row untouched by a batch has zero gradient, but dense
    Adam still moves it on its momentum (``m`` decays by ``b1`` per step)
    for ~10 more steps, ~30 ``lr`` in all after one isolated gradient
    (``sum q^j``, ``q = b1/sqrt(b2)``, divided by ``sqrt(1 - b2)``). Nothing
    reads the row until its next visit, so those updates are deferred and
    applied there in closed form (see :class:`DeferredAdam`); rows are
    brought up to date at each epoch end. If the network tells which rows a
    batch reads (``state_rows(batch) -> [(parameter, rows)]``) the catch-up
    happens before the forward pass and the parameters equal dense Adam's
    to float32 rounding (``tests/training/test_deferred_adam.py``);
    otherwise it happens just after (the gradient of that visit is taken
    before the tail is applied: same total movement, slightly later). If the
    network also computes with rows handed to it (``reads_state_values``),
    the trainer passes it the caught-up rows (:meth:`DeferredAdam.gather`),
    whose gradient comes back dense: no embedding lookup, no sparse gradient.

``"lazy"``: :class:`torch.optim.SparseAdam`
    Classic lazy Adam: rows untouched by a batch are skipped, their ``m``
    and ``v`` not decayed, and their momentum tail never applied. Also
    O(batch). It is *not* the same optimiser as dense Adam: a row visited
    once per epoch (every observation-space property, and most grid rows of
    a year-long state) moves ~3-6 ``lr`` per visit instead of ~30 ``lr``, so
    within a fixed number of epochs it travels several times less far. It
    reaches the same minimum only when trained to convergence (+1.0 % final
    cost vs dense Adam on the equivalence case, "sparse" -0.05 %).

``"dense"``: plain :class:`torch.optim.Adam` over every parameter
    With a network built with dense gradients and exact full-map priors:
    the reference's way (O(state) per step), kept for the equivalence check.

With the sampled whole-map priors of the network (an unbiased per-step
estimate of ``J_b / nobs``, :mod:`empirical_seaice.network`), each step
minimises an unbiased estimate of the same objective in every scheme; the
optimiser only decides how the steps are taken.

All use the Keras defaults of the reference: lr 1e-3, betas (0.9, 0.999) and
``eps = 1e-7`` (Keras' default; PyTorch's own default is 1e-8). Keras adds its
epsilon to ``sqrt(v)`` before bias correction where PyTorch adds it after;
with ``eps`` this small the two differ only for gradients of order 1e-7.

Reproducibility
---------------
One :class:`torch.Generator` seeded from ``TrainingConfig.seed`` draws the
validation split and every epoch's permutation; pass the same generator to
the network for its sampled priors so a checkpoint captures all randomness.
``reproducible=True`` additionally seeds torch, switches on
``torch.use_deterministic_algorithms`` and runs single-threaded: two runs give
bit-identical parameters, and a run resumed from a checkpoint equals an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .config import TrainingConfig
from .errors import SeaIceError

logger = logging.getLogger(__name__)

OBS_TERM = "obs"
"""Name of the observation term in the network's cost terms."""

CHECKPOINT_NAME = "checkpoint.pt"
"""File name of the checkpoint in the checkpoint directory."""

CHECKPOINT_FORMAT = 2
"""2: DeferredAdam keeps its state in one slab per parameter group."""

ADAM_BETAS = (0.9, 0.999)
"""Keras-default Adam betas (the reference's optimiser)."""
ADAM_EPS = 1e-7
"""Keras-default Adam epsilon (PyTorch's default is 1e-8)."""


# --------------------------------------------------------------------------- helpers


def resolve_device(name: str) -> torch.device:
    """The torch device of ``TrainingConfig.device``.

    ``"auto"`` is CUDA when available, else CPU; ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` are taken as given. Raises :class:`SeaIceError` for an
    unknown name or CUDA asked for on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SeaIceError(f"--device: expected auto, cpu or cuda, got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise SeaIceError(f"--device: expected auto, cpu or cuda, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SeaIceError("--device cuda: CUDA is not available on this machine; use --device cpu or auto")
    return device


def make_generator(seed: int) -> torch.Generator:
    """The one random generator of a run (CPU), seeded with ``seed``."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen


def split_observations(
    nobs: int, validation_fraction: float, generator: torch.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Random split of ``range(nobs)`` into training and held-out indices.

    ``round(validation_fraction * nobs)`` observations (at least one when the
    fraction is > 0) are held out, drawn by ``generator``. Both index arrays
    are sorted int64. Compute the network's row counts from the training part
    only. Returns ``(train_index, None)`` when the fraction is 0.
    """
    if validation_fraction <= 0.0:
        return np.arange(nobs, dtype=np.int64), None
    nvalid = max(1, int(round(validation_fraction * nobs)))
    if nvalid >= nobs:
        raise SeaIceError(
            f"--validation-fraction {validation_fraction}: holds out {nvalid} of {nobs} observations, "
            "leaving none to train on"
        )
    perm = torch.randperm(nobs, generator=generator).numpy()
    return np.sort(perm[nvalid:]).astype(np.int64), np.sort(perm[:nvalid]).astype(np.int64)


@contextlib.contextmanager
def reproducible_mode(enabled: bool, seed: int) -> Iterator[None]:
    """Seeded, deterministic, single-threaded torch while the block runs.

    Restores the previous determinism flag and thread count on exit. Does
    nothing when ``enabled`` is False.
    """
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_threads = torch.get_num_threads()
    torch.manual_seed(int(seed))
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)


# --------------------------------------------------------------------------- optimiser


@dataclass(eq=False)
class _CaughtUp:
    """Slab rows that :meth:`DeferredAdam.catch_up_many` brought up to ``step`` before a
    forward pass (already written back), kept so that the step that follows needs no
    second gather and no sort."""

    params: tuple[torch.Tensor, ...]  # the tables caught up, in order
    rows: tuple[torch.Tensor, ...]  # each table's rows as the batch reads them (may repeat)
    joint_inverse: torch.Tensor  # the tables' rows, concatenated (plus offsets) == unique[joint_inverse]
    unique: torch.Tensor  # sorted distinct slab rows
    step: int
    r: torch.Tensor  # (slab width, len(unique)): the caught-up slab rows, column-major
    leaf: torch.Tensor | None = None  # (len(unique), ncol) weights handed out by :meth:`DeferredAdam.gather`

    @property
    def inverse(self) -> tuple[torch.Tensor, ...]:
        """Each table's part of :attr:`joint_inverse`: its rows == unique[inverse] - offset."""
        return self.joint_inverse.split([r.numel() for r in self.rows])

    def matches(self, params: list[torch.Tensor], step: int) -> bool:
        """Whether every table with a gradient was caught up here and its gradient is the
        uncoalesced sparse gradient of a lookup of exactly its caught-up rows
        (``nn.Embedding(sparse=True)``: indices = the looked-up rows, in order), and
        nothing has moved the tables since the catch-up at ``step``."""
        if self.step != step:
            return False
        caught = {id(p): rows for p, rows in zip(self.params, self.rows)}
        for p in params:
            grad = p.grad
            if grad is None:
                continue
            rows = caught.get(id(p))
            if rows is None or not grad.is_sparse or grad.is_coalesced():
                return False
            idx = grad._indices()
            if idx.shape[1] != rows.numel() or not torch.equal(idx[0], rows.reshape(-1)):
                return False
        return True


def _slab_width(ncol: int) -> int:
    """Columns of a slab row ``[w | m | v | last]`` for tables of up to ``ncol`` columns
    (``3 ncol + 1``), rounded up to a power of two so that a row never straddles two
    cache lines (4 floats for one column, 8 for two)."""
    need = 3 * ncol + 1
    return 1 << (need - 1).bit_length()


class DeferredAdam(torch.optim.Optimizer):
    """Adam for row tables with sparse gradients: dense Adam's result at O(batch) cost.

    Dense Adam moves a row of a table at *every* step: after its last
    gradient, its first moment keeps decaying (``m <- b1 m``, ``v <- b2 v``)
    and moving it. But between two visits nothing reads the row (a batch
    only reads its own rows), so those zero-gradient updates can be deferred
    to the row's next visit and applied there in closed form. Without
    ``eps`` the update at the ``j``-th zero-gradient step after step ``t``
    is ``lr q^j c(t + j) m_t / sqrt(v_t)`` with ``q = b1 / sqrt(b2)`` and the
    bias correction ``c(s) = sqrt(1 - b2^s) / (1 - b1^s)``, so ``k`` skipped
    steps sum to

    ``lr m_t / sqrt(v_t) [A(t) - q^k A(t + k)]``,   ``A(t) = sum_{j>=1} q^j c(t + j)``

    with ``A`` tabulated once (computed in float64). Before a batch's forward
    pass, :meth:`catch_up_many` applies the deferred tail to the rows the
    batch reads and decays their ``m, v`` by ``b1^k, b2^k`` (the trainer
    does this when the network tells it which rows a batch reads,
    ``state_rows(batch)``); :meth:`step` then does the usual Adam update of
    those rows (catching up first any row with a gradient that was not
    caught up), and :meth:`flush` brings every row up to date (once per
    epoch, before evaluation or a checkpoint). A row's value whenever it is
    read then equals dense Adam's, up to ``eps`` in the deferred steps
    (relative ``eps / sqrt(v)``) and rounding. Without ``state_rows`` the
    tail is applied at the visit but after its gradient was evaluated, i.e.
    the gradient is taken at the row's value before its momentum tail: a
    small lag, not a different total movement.

    Memory layout. A step costs a few hundred small tensor operations plus
    a few thousand random row visits in tables of millions of rows, so both
    the number of operations and the number of cache lines touched count.
    All tables of a parameter group therefore live in one *slab*
    (``sum nrow x 2^k`` float32, :func:`_slab_width`), one row per table
    row: ``[w | m | v | last | padding]``, ``w``, ``m``, ``v`` as wide as
    the group's widest table (narrower tables leave their extra columns at
    0, which Adam never moves). A batch's rows of all tables are then
    caught up and stepped with one sort, one gather and one write, and a
    row visit touches one cache line. Each parameter keeps its identity; its
    ``.data`` becomes the strided view ``slab[offset : offset + nrow, :ncol]``
    (re-attached if something replaces it, e.g. ``module.to(device)``).
    ``state[p]`` holds ``step``, the shared ``slab``, ``offset`` and the views
    ``exp_avg``, ``exp_avg_sq`` and ``last_step`` (float32: exact up to
    2^24 steps).

    Parameters
    ----------
    params : iterable of 2-D Parameters whose gradients are sparse COO row
        gradients (``nn.Embedding(sparse=True)``); a dense gradient is taken
        as touching every row.
    lr, betas, eps : Adam's (PyTorch convention: ``eps`` added to
        ``sqrt(v_hat)``).
    """

    _TAIL_TERMS = 800  # q^800 < 1e-36: the sum A(t) is truncated there
    MAX_STEPS = 2**24  # the last-update step is stored as float32 in the slab

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = ADAM_BETAS, eps: float = ADAM_EPS):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"DeferredAdam: expected 2-D row tables, got a parameter of shape {tuple(p.shape)}")
                if p.dtype != group["params"][0].dtype or p.device != group["params"][0].device:
                    raise ValueError("DeferredAdam: the tables of a parameter group must share dtype and device")
        self._tail_tables: dict[tuple, tuple[torch.Tensor, np.ndarray]] = {}
        # per parameter group (index), what :meth:`catch_up_many` left for the coming :meth:`step`
        self._pending: dict[int, _CaughtUp] = {}

    def _tail(self, betas: tuple[float, float], upto: int, device: torch.device, dtype: torch.dtype):
        """Tables over ``t = 0..n-1`` with n > ``upto``, extended as needed (computed in float64):
        ``A(t)`` (tensor on ``device`` and float64 numpy) and the decays ``b1^t, b2^t, q^t``
        (3, n) tensor, so that the catch-up of a row ``k`` steps behind is a lookup."""
        key = (betas, str(device), dtype)
        entry = self._tail_tables.get(key)
        if entry is None or entry[1].shape[0] <= upto:
            b1, b2 = betas
            n = max(2 * upto + 1, 4096)
            s = np.arange(1, n + self._TAIL_TERMS + 1, dtype=np.float64)
            c = np.sqrt(1.0 - b2**s) / (1.0 - b1**s)
            q = b1 / np.sqrt(b2)
            a = np.zeros(n + self._TAIL_TERMS + 1)
            for t in range(n + self._TAIL_TERMS - 1, -1, -1):  # A(t) = q (c(t+1) + A(t+1))
                a[t] = q * (c[t] + a[t + 1])
            k = np.arange(n, dtype=np.float64)
            decay = np.stack([b1**k, b2**k, q**k])
            entry = (torch.from_numpy(a[:n]).to(device=device, dtype=dtype), a[:n],
                     torch.from_numpy(decay).to(device=device, dtype=dtype))
            self._tail_tables[key] = entry
        return entry

    # ------------------------------------------------------------------ slab

    @staticmethod
    def _ncol(group) -> int:
        return max(p.shape[1] for p in group["params"])

    def _slab(self, group) -> torch.Tensor:
        """The group's slab, created on first use; re-attaches any parameter whose data was replaced."""
        params = group["params"]
        ncol = self._ncol(group)
        st0 = self.state[params[0]]
        if not st0:
            nrow = sum(p.shape[0] for p in params)
            slab = torch.zeros((nrow, _slab_width(ncol)), dtype=params[0].dtype, device=params[0].device)
            offset = 0
            for p in params:
                slab[offset: offset + p.shape[0], : p.shape[1]] = p.detach()
                self.state[p].update(step=0, offset=offset)
                offset += p.shape[0]
            self._attach(group, slab)
            return slab
        slab = st0["slab"]
        for p in params:
            off = self.state[p]["offset"]
            if p.data_ptr() != slab[off].data_ptr() or p.stride() != slab.stride():
                # the parameter's data was replaced (module.to(), a load into a new tensor): it wins
                slab[off: off + p.shape[0], : p.shape[1]] = p.detach()
                self._attach(group, slab)
        return slab

    def _attach(self, group, slab: torch.Tensor) -> None:
        """Make ``slab`` the storage of the group's parameters and moments (views)."""
        c = self._ncol(group)
        for p in group["params"]:
            st = self.state[p]
            rows = slice(st["offset"], st["offset"] + p.shape[0])
            n = p.shape[1]
            st["slab"] = slab
            st["exp_avg"] = slab[rows, c: c + n]
            st["exp_avg_sq"] = slab[rows, 2 * c: 2 * c + n]
            st["last_step"] = slab[rows, 3 * c]
            p.data = slab[rows, :n]

    def _gather(self, slab: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Slab rows ``rows`` as a *column-major* block ``(slab width, len(rows))``: each of
        ``w, m, v, last`` is then a contiguous block of rows (elementwise ops on the
        row-major (n, 8) layout run ~5x slower, one short inner loop per row)."""
        return slab.index_select(0, rows).t().contiguous()

    @staticmethod
    def _scatter(slab: torch.Tensor, rows: torch.Tensor, rt: torch.Tensor) -> None:
        """Write a column-major block from :meth:`_gather` back to slab rows ``rows``."""
        slab.index_copy_(0, rows, rt.t().contiguous())

    def _catch_up(self, group, rt: torch.Tensor, upto: int) -> None:
        """In place on a gathered column-major block ``rt``: apply the deferred zero-gradient steps
        ``last+1 .. upto``, decay ``m, v`` by ``b1^k, b2^k`` (``k = upto - last``), set ``last = upto``."""
        b1, b2 = group["betas"]
        c = self._ncol(group)
        w, m, v, last = rt[:c], rt[c: 2 * c], rt[2 * c: 3 * c], rt[3 * c]
        table, table_np, decays = self._tail(group["betas"], upto, rt.device, rt.dtype)
        decay = decays.index_select(1, last.neg().add_(upto).long())  # (3, n): b1^k, b2^k, q^k, k = upto - last
        # coef = A(last) - q^k A(upto); a row never updated has m = v = 0, so its tail is 0
        coef = table.index_select(0, last.long()).sub_(decay[2], alpha=float(table_np[upto]))
        w.addcmul_(m / v.sqrt().add_(group["eps"]), coef.mul_(-group["lr"]))
        rt[c: 3 * c].view(2, c, -1).mul_(decay[:2].unsqueeze(1))
        last.fill_(upto)

    def _adam(self, group, rt: torch.Tensor, vals: torch.Tensor, step: int) -> None:
        """In place on a column-major block ``rt`` caught up to ``step - 1``: the Adam update of
        ``step`` with gradient ``vals`` (ncol, n)."""
        b1, b2 = group["betas"]
        c = self._ncol(group)
        w, m, v = rt[:c], rt[c: 2 * c], rt[2 * c: 3 * c]
        m.mul_(b1).add_(vals, alpha=1.0 - b1)
        v.mul_(b2).addcmul_(vals, vals, value=1.0 - b2)
        bc2_sqrt = float(np.sqrt(1.0 - b2**step))
        w.addcdiv_(m, v.sqrt().div_(bc2_sqrt).add_(group["eps"]), value=-group["lr"] / (1.0 - b1**step))
        rt[3 * c].fill_(step)

    def _group_of(self, p: torch.Tensor) -> int:
        for i, group in enumerate(self.param_groups):
            if any(q is p for q in group["params"]):
                return i
        raise ValueError("DeferredAdam: the tensor is not one of the optimiser's parameters")

    def load_state_dict(self, state_dict) -> None:
        """As :meth:`torch.optim.Optimizer.load_state_dict`; the loaded slab takes the
        parameters' current values and becomes their storage."""
        self._pending.clear()
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            p0 = group["params"][0]
            if self.state.get(p0):
                # a copy: the state dict's slab may still be another optimiser's storage
                slab = self.state[p0]["slab"].to(dtype=p0.dtype, device=p0.device, copy=True).contiguous()
                for p in group["params"]:
                    off = self.state[p]["offset"]
                    slab[off: off + p.shape[0], : p.shape[1]] = p.detach()
                self._attach(group, slab)

    def state_dict(self):
        """As :meth:`torch.optim.Optimizer.state_dict` (the slab is always up to date, also
        between a catch-up and its step; the parameters and moments in it are views of one
        shared tensor, saved once by ``torch.save``)."""
        return super().state_dict()

    # ------------------------------------------------------------------ steps

    @torch.no_grad()
    def step(self, closure=None):
        """One Adam step on the rows that have a gradient (all rows' step count advances)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for gi, group in enumerate(self.param_groups):
            params = group["params"]
            slab = self._slab(group)
            c = self._ncol(group)
            for p in params:
                self.state[p]["step"] += 1
            step = self.state[params[0]]["step"]
            if step >= self.MAX_STEPS:
                raise SeaIceError(f"DeferredAdam: more than {self.MAX_STEPS} steps (float32 step counters)")
            pending = self._pending.pop(gi, None)
            if pending is not None and pending.leaf is not None:
                # the batch read the caught-up rows through :meth:`gather`: their gradient is dense
                if pending.step != step - 1 or any(p.grad is not None for p in params):
                    raise SeaIceError(
                        "DeferredAdam: a table read through gather() also has a gradient of its own, "
                        "or the tables were stepped in between; read each table one way per step"
                    )
                g = pending.leaf.grad
                vals = pending.r.new_zeros((c, pending.unique.numel())) if g is None else g.t().contiguous()
                self._adam(group, pending.r, vals, step)
                self._scatter(slab, pending.unique, pending.r)
                continue
            if pending is not None and pending.matches(params, step - 1):
                # the batch's rows were caught up to step - 1 before the forward pass: sum the
                # duplicate rows' gradients through the catch-up's inverse index (no sort) and
                # do the Adam update of every caught-up row (a row without gradient gets dense
                # Adam's zero-gradient update, exactly what deferring it would give)
                vals = pending.r.new_zeros((c, pending.unique.numel()))
                for p, inverse in zip(pending.params, pending.inverse):
                    if p.grad is not None:
                        vals[: p.shape[1]].index_add_(1, inverse, p.grad._values().t())
                self._adam(group, pending.r, vals, step)
                self._scatter(slab, pending.unique, pending.r)
                continue
            for p in params:  # the general path, table by table
                if p.grad is None:
                    continue
                grad, off = p.grad, self.state[p]["offset"]
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, vals = grad.indices()[0], grad.values()
                else:
                    rows, vals = torch.arange(p.shape[0], device=p.device), grad
                if rows.numel() == 0:
                    continue
                rows = rows + off
                rt = self._gather(slab, rows)
                self._catch_up(group, rt, step - 1)
                self._adam(group, rt, torch.nn.functional.pad(vals.t(), (0, 0, 0, c - p.shape[1])), step)
                self._scatter(slab, rows, rt)
        return loss

    @torch.no_grad()
    def catch_up_many(self, tables: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Apply the deferred zero-gradient steps of the given rows of the given tables up to now.

        ``tables``: ``[(parameter, rows)]``, the rows (int64, may repeat) a batch is about
        to read. Called before the forward pass, this makes the scheme exactly dense Adam
        (see the class docstring). The rows of all tables of a group are caught up with one
        sort, one gather and one write, and kept for the :meth:`step` that follows.
        """
        by_group: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for p, rows in tables:
            by_group.setdefault(self._group_of(p), []).append((p, rows))
        for gi, pairs in by_group.items():
            group = self.param_groups[gi]
            self._pending.pop(gi, None)
            slab = self._slab(group)
            step = self.state[group["params"][0]]["step"]
            # Every row the batch reads, caught up or not: a row already at ``step`` has
            # k = 0 (coefficient A(last) - A(step) = 0, decays 1) and a row never updated
            # has m = v = 0, so both come back unchanged.
            joint = [rows.reshape(-1) + self.state[p]["offset"] for p, rows in pairs]
            unique, inverse = torch.unique(torch.cat(joint) if len(joint) > 1 else joint[0], return_inverse=True)
            r = self._gather(slab, unique)
            self._catch_up(group, r, step)
            self._scatter(slab, unique, r)
            self._pending[gi] = _CaughtUp(
                params=tuple(p for p, _ in pairs), rows=tuple(rows for _, rows in pairs),
                joint_inverse=inverse, unique=unique, step=step, r=r,
            )

    def gather(self, tables: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        """The rows a batch reads, caught up (:meth:`catch_up_many`), as tensors to compute with.

        ``tables``: ``[(parameter, rows)]``. Returns, for each, a tensor of shape
        ``rows.shape + (ncol,)``: the table's rows ``rows``, equal to what an embedding
        lookup would read after the catch-up. They are differentiable: autograd sums
        their gradients into the caught-up rows (one dense ``(distinct rows, ncol)``
        gradient per group), which :meth:`step` then uses directly: no embedding
        lookup, no sparse gradient tensors, no matching of indices. The tables
        themselves get no gradient; a table that has one of its own at the step is an
        error.
        """
        self.catch_up_many(tables)
        joint: dict[int, torch.Tensor] = {}
        out = []
        for p, rows in tables:
            gi = self._group_of(p)
            pending = self._pending[gi]
            if gi not in joint:
                c = self._ncol(self.param_groups[gi])
                # a contiguous (distinct rows, ncol) copy: gathering rows of a strided view is ~10x slower
                pending.leaf = pending.r[:c].t().contiguous().requires_grad_(True)
                joint[gi] = pending.leaf.index_select(0, pending.joint_inverse).split(
                    [r.numel() for r in pending.rows])
            k = next(i for i, q in enumerate(pending.params) if q is p)
            out.append(joint[gi][k][:, : p.shape[1]].reshape(*rows.shape, p.shape[1]))
        return out

    def catch_up(self, p: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Apply the deferred zero-gradient steps of ``rows`` of ``p`` (None = all its rows) up to now."""
        if rows is not None:
            self.catch_up_many([(p, rows)])
            return
        with torch.no_grad():
            gi = self._group_of(p)
            group = self.param_groups[gi]
            if not self.state.get(p):
                return
            self._pending.pop(gi, None)
            slab = self._slab(group)
            st = self.state[p]
            last = st["last_step"]
            todo = torch.nonzero((last > 0) & (last < st["step"])).flatten()
            if todo.numel() == 0:
                return
            todo += st["offset"]
            r = self._gather(slab, todo)
            self._catch_up(group, r, st["step"])
            self._scatter(slab, todo, r)

    def flush(self) -> None:
        """Bring every row up to the current step (O(state); once per epoch)."""
        for group in self.param_groups:
            for p in group["params"]:
                self.catch_up(p)


# --------------------------------------------------------------------------- history


@dataclass
class TrainingHistory:
    """What happened during training.

    Attributes
    ----------
    terms : tuple of str
        Names of the cost terms (network order) plus ``"total"``.
    epoch_terms : list of dict
        Per epoch, the observation-weighted mean of each term over its batches
        (float64), i.e. the epoch's estimate of ``J / nobs`` split by term.
    batch_terms : dict of str to float64 array
        Per batch (all epochs concatenated), the value of each term.
    batch_size : int64 array
        Number of observations in each batch.
    valid_cost : list of float
        Per epoch, the held-out observation cost (mean ``J_o,i``); empty
        without validation.
    best_epoch : int or None
        0-based epoch with the lowest held-out cost (None without validation).
    stopped_early : bool
        Whether early stopping ended the run.
    epoch_wall_s : list of float
        Wall time of each epoch's training steps (s).
    epoch_obs_per_s : list of float
        Training observations processed per second in each epoch.
    epoch_cpu_s : list of float
        Process CPU time of each epoch's training steps (s).
    wall_time_s : float
        Total wall time of training, validation included (s).
    obs_per_s : float
        Training observations per second over all epochs (steps only).
    """

    terms: tuple[str, ...] = ()
    epoch_terms: list[dict[str, float]] = field(default_factory=list)
    batch_terms: dict[str, np.ndarray] = field(default_factory=dict)
    batch_size: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    valid_cost: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    epoch_wall_s: list[float] = field(default_factory=list)
    epoch_obs_per_s: list[float] = field(default_factory=list)
    epoch_cpu_s: list[float] = field(default_factory=list)
    wall_time_s: float = 0.0
    obs_per_s: float = 0.0

    @property
    def nepochs(self) -> int:
        """Number of completed epochs."""
        return len(self.epoch_terms)

    def _append_epoch(self, names: tuple[str, ...], values: np.ndarray, sizes: np.ndarray) -> dict[str, float]:
        """Add one epoch's per-batch term values (nbatch, nterm) and batch sizes."""
        if not self.terms:
            self.terms = names
        w = sizes.astype(np.float64)
        means = (values * w[:, None]).sum(axis=0) / max(w.sum(), 1.0)
        epoch = {name: float(m) for name, m in zip(names, means)}
        self.epoch_terms.append(epoch)
        for j, name in enumerate(names):
            old = self.batch_terms.get(name, np.zeros(0, dtype=np.float64))
            self.batch_terms[name] = np.concatenate([old, values[:, j]])
        self.batch_size = np.concatenate([self.batch_size, sizes.astype(np.int64)])
        return epoch

    def to_state(self) -> dict[str, Any]:
        """Plain-python/tensor form for a checkpoint (``torch.load(weights_only=True)``-safe)."""
        state = asdict(self)
        state["terms"] = list(self.terms)
        state["batch_terms"] = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.batch_terms.items()}
        state["batch_size"] = torch.from_numpy(np.ascontiguousarray(self.batch_size))
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TrainingHistory":
        """Inverse of :meth:`to_state`."""
        state = dict(state)
        state["terms"] = tuple(state["terms"])
        state["batch_terms"] = {k: v.numpy().astype(np.float64) for k, v in state["batch_terms"].items()}
        state["batch_size"] = state["batch_size"].numpy().astype(np.int64)
        return cls(**state)


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_cost(
    network: torch.nn.Module,
    data: Any,
    index: np.ndarray | torch.Tensor,
    nobs_total: int,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Exact cost over the observations ``index`` and the whole map, float64.

    Every term in the per-step normalisation of :class:`TrainingHistory`
    (the per-step objective, whose expectation over an epoch is ``J / nobs``):

    - the terms of ``network.full_prior_terms(nobs_total)`` (whole-map
      priors) are taken exactly from it, not from the sampled estimates;
    - every other term of ``network.cost_terms`` (the observation term, and
      per-batch terms such as an anchor or a bias prior) is averaged over all
      ``index``, batch by batch, weighted by batch size (float64). For the
      observation term that is exactly ``(1/n) sum_i J_o,i``. Use the
      training ``batch_size`` so that a term summed over a batch has the
      scale it has in training.

    Returns
    -------
    dict with each term, ``"total"`` (their sum, ``J / nobs``), ``"J"``
    (``nobs_total * total``) and ``"obs_sum"`` (``sum_i J_o,i``).
    """
    was_training = network.training
    network.eval()
    try:
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        device = _data_device(data, network)
        sums: dict[str, float] = {}
        for start in range(0, idx.numel(), batch_size):
            bidx = idx[start : start + batch_size].to(device)
            batch = data.batch(bidx)
            terms = network.cost_terms(batch, network(batch), nobs_total)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach().double()) * int(bidx.numel())
        n = max(idx.numel(), 1)
        result = {name: v / n for name, v in sums.items()}
        for name, value in network.full_prior_terms(nobs_total).items():
            result[name] = float(value.detach().double())
        obs_sum = sums.get(OBS_TERM, 0.0)
        total = float(sum(result.values()))
        result["total"] = total
        result["J"] = total * nobs_total
        result["obs_sum"] = obs_sum
        return result
    finally:
        network.train(was_training)


def _batch_obs_sum(network: torch.nn.Module, data: Any, bidx: torch.Tensor, nobs_total: int) -> float:
    """``sum_{i in batch} J_o,i`` (float64) of one batch, from the mean obs term."""
    batch = data.batch(bidx)
    out = network(batch)
    terms = network.cost_terms(batch, out, nobs_total)
    return float(terms[OBS_TERM].detach().double()) * int(bidx.numel())


def _data_device(data: Any, network: torch.nn.Module) -> torch.device:
    device = getattr(data, "device", None)
    if device is not None:
        return torch.device(device)
    for p in network.parameters():
        return p.device
    return torch.device("cpu")


# --------------------------------------------------------------------------- trainer


class Trainer:
    """Minibatch Adam over shuffled observations, with books and checkpoints.

    Parameters
    ----------
    network : torch.nn.Module
        Fulfils the contract in the module docstring. For
        ``optimizer="sparse"`` its state tables must produce sparse gradients
        (``HybridNetwork(..., sparse=True)``); for ``"dense"`` dense ones.
    data : object with ``batch(index) -> batch``
        The observations on the training device
        (:class:`~empirical_seaice.network.ObservationTensors`).
    config : TrainingConfig
        Epochs, batch size, learning rate, seed, reproducibility, early
        stopping, optimiser scheme.
    train_index : int array
        Observations to train on (indices into ``data``).
    valid_index : int array or None
        Held-out observations, whose observation cost is reported per epoch.
    nobs_total : int
        ``nobs`` of the cost normalisation ``J_b / nobs`` (the number of
        training observations in the reference).
    checkpoint_dir : Path or None
        Where ``checkpoint.pt`` is written at each epoch end; None = no
        checkpoints.
    progress : bool
        Show a tqdm progress bar on stderr.
    generator : torch.Generator or None
        The run's generator; None = :func:`make_generator` ``(config.seed)``.
        Share it with the network (sampled priors) and
        :func:`split_observations` so that a checkpoint holds all randomness.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        data: Any,
        config: TrainingConfig,
        train_index: np.ndarray,
        valid_index: np.ndarray | None,
        nobs_total: int,
        checkpoint_dir: Path | None = None,
        progress: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        self.network = network
        self.data = data
        self.config = config
        self.train_index = torch.as_tensor(np.asarray(train_index), dtype=torch.long)
        if self.train_index.numel() == 0:
            raise SeaIceError("training: no observations to train on (empty training set)")
        self.valid_index = (
            None
            if valid_index is None or len(valid_index) == 0
            else torch.as_tensor(np.asarray(valid_index), dtype=torch.long)
        )
        if config.early_stopping and self.valid_index is None:
            raise SeaIceError("--early-stopping needs held-out observations (--validation-fraction > 0)")
        self.nobs_total = int(nobs_total)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.progress = progress
        self.generator = generator if generator is not None else make_generator(config.seed)
        self.device = _data_device(data, network)
        self.optimizers = self._build_optimizers()
        self.history = TrainingHistory()
        self.epoch = 0
        self._best_cost = float("inf")
        self._best_state: dict[str, torch.Tensor] | None = None

    # ----------------------------------------------------------------- optimisers

    def _build_optimizers(self) -> list[torch.optim.Optimizer]:
        cfg = self.config
        sparse_params = list(self.network.sparse_parameters())
        dense_params = list(self.network.dense_parameters())
        net_sparse = getattr(self.network, "sparse", None)
        if cfg.optimizer in ("sparse", "lazy"):
            if net_sparse is False:
                raise SeaIceError(
                    f"optimizer {cfg.optimizer!r}: the network was built with dense state gradients (sparse=False); "
                    "build it with sparse=True or use optimizer 'dense'"
                )
            opts: list[torch.optim.Optimizer] = []
            if sparse_params:
                table_opt = DeferredAdam if cfg.optimizer == "sparse" else torch.optim.SparseAdam
                opts.append(table_opt(sparse_params, lr=cfg.learning_rate, betas=ADAM_BETAS, eps=ADAM_EPS))
            if dense_params:
                opts.append(_dense_adam(dense_params, cfg.learning_rate))
            return opts
        # dense: plain Adam over everything (the reference's way)
        if net_sparse is True:
            raise SeaIceError(
                "optimizer 'dense': the network was built with sparse state gradients (sparse=True); "
                "build it with sparse=False or use optimizer 'sparse' or 'lazy'"
            )
        params = sparse_params + dense_params
        return [_dense_adam(params, cfg.learning_rate)]

    def flush(self) -> None:
        """Apply the deferred updates of :class:`DeferredAdam` to every row (done at each epoch end)."""
        for opt in self.optimizers:
            if isinstance(opt, DeferredAdam):
                opt.flush()

    # ----------------------------------------------------------------- checkpoints

    @property
    def checkpoint_path(self) -> Path | None:
        """``checkpoint_dir / checkpoint.pt`` or None."""
        return None if self.checkpoint_dir is None else self.checkpoint_dir / CHECKPOINT_NAME

    def save_checkpoint(self) -> Path:
        """Write the checkpoint atomically (temporary file, then ``os.replace``)."""
        path = self.checkpoint_path
        if path is None:
            raise ValueError("save_checkpoint: the trainer has no checkpoint_dir")
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "network": self.network.state_dict(),
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "history": self.history.to_state(),
            "generator": self.generator.get_state(),
            "best_cost": self._best_cost,
            "best_state": self._best_state,
            "config": {"batch_size": self.config.batch_size, "optimizer": self.config.optimizer,
                       "learning_rate": self.config.learning_rate, "seed": self.config.seed},
        }
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self) -> None:
        """Restore network, optimisers, epoch, history and generator from the checkpoint."""
        path = self.checkpoint_path
        if path is None or not path.is_file():
            raise SeaIceError(f"resume: no checkpoint at {path}; run without resume first")
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a user problem
            raise SeaIceError(f"resume: cannot read checkpoint {path}: {exc}") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise SeaIceError(f"resume: {path} is not a trainer checkpoint of format {CHECKPOINT_FORMAT}")
        saved = state["config"]
        for key in ("batch_size", "optimizer"):
            if saved[key] != getattr(self.config, key):
                raise SeaIceError(
                    f"resume: checkpoint {path} was written with {key}={saved[key]!r}, "
                    f"this run has {key}={getattr(self.config, key)!r}"
                )
        self.network.load_state_dict(state["network"])
        for opt, opt_state in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(opt_state)
        self.history = TrainingHistory.from_state(state["history"])
        self.generator.set_state(state["generator"].cpu())
        self.epoch = int(state["epoch"])
        self._best_cost = float(state["best_cost"])
        self._best_state = state["best_state"]
        logger.info("resumed from %s after epoch %d", path, self.epoch)

    # ----------------------------------------------------------------- training

    def fit(self, resume: bool = False) -> TrainingHistory:
        """Train for ``config.nepochs`` epochs (in total, counting resumed ones).

        Parameters
        ----------
        resume : bool
            Continue from ``checkpoint_dir/checkpoint.pt``.

        Returns
        -------
        TrainingHistory
        """
        cfg = self.config
        with reproducible_mode(cfg.reproducible, cfg.seed):
            if resume:
                self.load_checkpoint()
            self.network.train()
            t_start = time.perf_counter()
            wall_before = self.history.wall_time_s
            while self.epoch < cfg.nepochs and not self.history.stopped_early:
                self._train_epoch()
                self.flush()
                if self.valid_index is not None:
                    self._validate_epoch()
                self.epoch += 1
                self.history.wall_time_s = wall_before + time.perf_counter() - t_start
                steps_s = sum(self.history.epoch_wall_s)
                nseen = int(self.history.batch_size.sum())
                self.history.obs_per_s = nseen / steps_s if steps_s > 0 else 0.0
                self._log_epoch()
                if self.checkpoint_dir is not None:
                    self.save_checkpoint()
            if cfg.early_stopping and self._best_state is not None:
                self.network.load_state_dict(self._best_state)
                logger.info("restored the parameters of the best epoch %d", self.history.best_epoch + 1)
        return self.history

    def _train_epoch(self) -> None:
        cfg = self.config
        network = self.network
        n = self.train_index.numel()
        bs = cfg.batch_size
        nbatch = (n + bs - 1) // bs
        perm = self.train_index[torch.randperm(n, generator=self.generator)].to(self.device)
        names: tuple[str, ...] | None = None
        values: torch.Tensor | None = None  # (nbatch, nterm + 1) float64 on device
        sizes = np.diff(np.minimum(np.arange(nbatch + 1) * bs, n))
        bar = _progress_bar(nbatch, f"epoch {self.epoch + 1}/{cfg.nepochs}", self.progress)
        deferred = next((opt for opt in self.optimizers if isinstance(opt, DeferredAdam)), None)
        state_rows = getattr(network, "state_rows", None)
        if state_rows is None:
            deferred = None
        # the network computes with the caught-up rows DeferredAdam hands it (no lookup of its own)
        gathered = deferred is not None and getattr(network, "reads_state_values", False)
        running = 0.0
        t0 = time.perf_counter()
        c0 = time.process_time()
        for b in range(nbatch):
            batch = self.data.batch(perm[b * bs : (b + 1) * bs])
            if gathered:
                out = network(batch, state_values=deferred.gather(state_rows(batch)))
            else:
                if deferred is not None:
                    deferred.catch_up_many(state_rows(batch))
                out = network(batch)
            terms = network.cost_terms(batch, out, self.nobs_total)
            loss = network.total_cost(terms)
            for opt in self.optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in self.optimizers:
                opt.step()
            with torch.no_grad():
                if values is None:
                    names = tuple(terms) + ("total",)
                    values = torch.zeros((nbatch, len(names)), dtype=torch.float64, device=loss.device)
                values[b] = torch.stack([*terms.values(), loss])  # 0-d terms; no graph under no_grad
            if bar is not None and (b % 20 == 0 or b == nbatch - 1):
                running = float(values[max(0, b - 19) : b + 1, -1].mean())
                bar.set_postfix_str(f"J/nobs={running:.4g}", refresh=b == nbatch - 1)
            if bar is not None:
                bar.update(1)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        if bar is not None:
            bar.close()
        assert names is not None and values is not None
        if not all(np.isfinite(values.cpu().numpy()).ravel()):
            bad = [nm for nm, ok in zip(names, torch.isfinite(values).all(dim=0).tolist()) if not ok]
            raise SeaIceError(
                f"training: cost term(s) {', '.join(bad)} became non-finite in epoch {self.epoch + 1}; "
                "lower --learning-rate or check the input data"
            )
        self.history._append_epoch(names, values.cpu().numpy(), sizes)
        self.history.epoch_wall_s.append(wall)
        self.history.epoch_cpu_s.append(cpu)
        self.history.epoch_obs_per_s.append(n / wall if wall > 0 else 0.0)

    def _validate_epoch(self) -> None:
        assert self.valid_index is not None
        result = evaluate_obs_cost(self.network, self.data, self.valid_index, self.nobs_total,
                                   max(self.config.batch_size, 16384), self.device)
        self.network.train()
        h = self.history
        h.valid_cost.append(result)
        if result < self._best_cost:
            self._best_cost = result
            h.best_epoch = self.epoch
            if self.config.early_stopping:
                self._best_state = copy.deepcopy({k: v.detach().clone() for k, v in self.network.state_dict().items()})
        elif self.config.early_stopping and h.best_epoch is not None and self.epoch - h.best_epoch >= self.config.patience:
            h.stopped_early = True
            logger.info(
                "early stopping after epoch %d: held-out cost has not improved for %d epoch(s) (best epoch %d)",
                self.epoch + 1, self.config.patience, h.best_epoch + 1,
            )

    def _log_epoch(self) -> None:
        h = self.history
        e = h.epoch_terms[-1]
        parts = " ".join(f"{k}={v:.5g}" for k, v in e.items())
        valid = f" valid_obs={h.valid_cost[-1]:.5g}" if h.valid_cost else ""
        logger.info(
            "epoch %d/%d: %s%s (%.0f obs/s)", self.epoch, self.config.nepochs, parts, valid, h.epoch_obs_per_s[-1]
        )


@torch.no_grad()
def evaluate_obs_cost(
    network: torch.nn.Module,
    data: Any,
    index: torch.Tensor,
    nobs_total: int,
    batch_size: int,
    device: torch.device | None = None,
) -> float:
    """Mean observation cost ``(1/n) sum_i J_o,i`` over ``index`` (float64 accumulation)."""
    network.eval()
    device = device if device is not None else _data_device(data, network)
    total = 0.0
    for start in range(0, index.numel(), batch_size):
        bidx = index[start : start + batch_size].to(device)
        total += _batch_obs_sum(network, data, bidx, nobs_total)
    return total / max(index.numel(), 1)


def _dense_adam(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """torch Adam with Keras betas/eps, fused (one kernel for all tensors; CPU and CUDA)."""
    return torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS, fused=True)


def _progress_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True, mininterval=0.5)


__all__ = [
    "Trainer", "TrainingHistory", "DeferredAdam", "evaluate_cost", "evaluate_obs_cost", "make_generator",
    "split_observations", "resolve_device", "reproducible_mode", "OBS_TERM", "CHECKPOINT_NAME",
    "ADAM_BETAS", "ADAM_EPS",
]
