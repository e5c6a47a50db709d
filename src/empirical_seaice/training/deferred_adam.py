"""Adam for the empirical-state tables with the cost of a step O(batch).

Optimisers and the objective
----------------------------
Each step minimises the stochastic estimate (docs/method.md, "The per-step objective"),
``(1/B) sum_{i in batch} J_o,i + J_b / nobs`` (the network's sampled priors
make the ``J_b`` part an unbiased per-step estimate too; see
:mod:`empirical_seaice.model.operator`). Its expectation over a uniformly shuffled
epoch is ``J / nobs``, the same objective as the reference.

Three optimiser schemes (``TrainingConfig.optimizer``); the small dense
weights (emissivity network, wind correction, biases) always use
:class:`torch.optim.Adam` (fused); they differ on the empirical-state tables
(SIC map, grid and observation properties), which are embeddings:

``"deferred-adam"`` (default): :class:`DeferredAdam`
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

``"sparse-adam"``: :class:`torch.optim.SparseAdam`
    Classic lazy Adam: rows untouched by a batch are skipped, their ``m``
    and ``v`` not decayed, and their momentum tail never applied. Also
    O(batch). It is *not* the same optimiser as dense Adam: a row visited
    once per epoch (every observation-space property, and most grid rows of
    a year-long state) moves ~3-6 ``lr`` per visit instead of ~30 ``lr``, so
    within a fixed number of epochs it travels several times less far. It
    reaches the same minimum only when trained to convergence (+1.0 % final
    cost vs dense Adam on the equivalence case, "deferred-adam" -0.05 %).

``"dense-adam"``: plain :class:`torch.optim.Adam` over every parameter
    With a network built with dense gradients and exact full-map priors:
    the reference's way (O(state) per step, the tensor step). The fused step
    runs the same scheme with :class:`DeferredAdam` (``map_priors="full"``:
    the SIC map stepped whole at every step, the other tables deferred).

With the sampled whole-map priors of the network (an unbiased per-step
estimate of ``J_b / nobs``, :mod:`empirical_seaice.model.operator`), each step
minimises an unbiased estimate of the same objective in every scheme; the
optimiser only decides how the steps are taken.

All use the Keras defaults of the reference: lr 1e-3, betas (0.9, 0.999) and
``eps = 1e-7`` (Keras' default; PyTorch's own default is 1e-8). Keras adds its
epsilon to ``sqrt(v)`` before the bias correction,
``w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)``, where PyTorch adds it
after, ``w -= lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps)``: Keras' update is
PyTorch's with ``eps_t = eps / sqrt(1 - b2^t)`` (:func:`empirical_seaice.training.adam.keras_epsilon`; 3.2e-6 at
step 1, 3.2e-7 at step 100, 1e-7 in the limit), which matters only for gradients
of order 1e-6 or less. ``eps_mode="keras"`` (``TrainingConfig.adam_epsilon``)
reproduces Keras: :func:`dense_adam` sets ``eps_t`` before each step and
:class:`DeferredAdam` adds ``eps`` before its bias correction (its deferred
zero-gradient steps neglect ``eps`` in either mode).
"""

from __future__ import annotations

import numpy as np
import torch

from empirical_seaice.compiled import empty_huge
from empirical_seaice.errors import SeaIceError
from empirical_seaice.memory import copy_rows
from empirical_seaice.training.adam import ADAM_BETAS, ADAM_EPS
from empirical_seaice.training.slab import _CaughtUp, _slab_width


def _new_slab(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, zeroed: bool = True) -> torch.Tensor:
    """A zeroed slab (``zeroed=False``: unfilled, for a caller that fills every row); on the CPU in 2 MiB
    pages (:func:`~empirical_seaice.compiled.empty_huge`: its rows are read at random, one TLB entry per
    2 MiB instead of per 4 KiB)."""
    if torch.device(device).type == "cpu" and dtype in (torch.float32, torch.float64):
        np_dtype = np.float32 if dtype == torch.float32 else np.float64
        slab = torch.from_numpy(empty_huge(shape, np_dtype))
        return slab.zero_() if zeroed else slab
    return torch.zeros(shape, dtype=dtype, device=device) if zeroed else torch.empty(shape, dtype=dtype, device=device)


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
    lr, betas, eps : Adam's.
    eps_mode : "torch" (``eps`` added to the bias-corrected ``sqrt(v_hat)``) or "keras"
        (added to ``sqrt(v)`` before the bias correction, as Keras does).
    """

    _TAIL_TERMS = 800  # q^800 < 1e-36: the sum A(t) is truncated there
    MAX_STEPS = 2**24  # the last-update step is stored as float32 in the slab
    CATCH_UP_ROWS = 1 << 16  # rows caught up at a time by a whole-table catch-up (bounds its temporaries)

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = ADAM_BETAS,
        eps: float = ADAM_EPS,
        eps_mode: str = "torch",
    ):
        if eps_mode not in ("torch", "keras"):
            raise SeaIceError(f"adam_epsilon: expected torch or keras, got {eps_mode!r}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, eps_mode=eps_mode))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(
                        f"DeferredAdam: expected 2-D row tables, got a parameter of shape {tuple(p.shape)}"
                    )
                if p.dtype != group["params"][0].dtype or p.device != group["params"][0].device:
                    raise ValueError("DeferredAdam: the tables of a parameter group must share dtype and device")
        self._tail_tables: dict[tuple, tuple[torch.Tensor, np.ndarray, torch.Tensor]] = {}
        # per parameter group (index), what :meth:`catch_up_many` left for the coming :meth:`step`
        self._pending: dict[int, _CaughtUp] = {}
        self.held: dict[int, torch.Tensor] = {}
        """Per parameter group (index), the slab rows :meth:`hold` keeps where they are (bool, one per slab row)."""

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
            entry = (
                torch.from_numpy(a[:n]).to(device=device, dtype=dtype),
                a[:n],
                torch.from_numpy(decay).to(device=device, dtype=dtype),
            )
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
            slab = _new_slab((nrow, _slab_width(ncol)), params[0].dtype, params[0].device, zeroed=False)
            offset = 0
            for p in params:  # table by table: each one's own storage goes as soon as its rows are in the slab,
                rows = slab[offset : offset + p.shape[0]]  # and the slab's pages come in as the tables move in
                rows.zero_()
                rows[:, : p.shape[1]] = p.detach()
                self.state[p].update(step=0, offset=offset)
                self._attach_table(group, slab, p)
                offset += p.shape[0]
            return slab
        slab = st0["slab"]
        for p in params:
            off = self.state[p]["offset"]
            if p.data_ptr() != slab[off].data_ptr() or p.stride() != slab.stride():
                # the parameter's data was replaced (module.to(), a load into a new tensor): it wins
                slab[off : off + p.shape[0], : p.shape[1]] = p.detach()
                self._attach(group, slab)
        return slab

    def _attach(self, group, slab: torch.Tensor) -> None:
        """Make ``slab`` the storage of the group's parameters and moments (views)."""
        for p in group["params"]:
            self._attach_table(group, slab, p)

    def _attach_table(self, group, slab: torch.Tensor, p: torch.Tensor) -> None:
        """Make ``slab`` the storage of the group's parameter ``p`` and its moments (views)."""
        c = self._ncol(group)
        st = self.state[p]
        rows = slice(st["offset"], st["offset"] + p.shape[0])
        n = p.shape[1]
        st["slab"] = slab
        st["exp_avg"] = slab[rows, c : c + n]
        st["exp_avg_sq"] = slab[rows, 2 * c : 2 * c + n]
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
        w, m, v, last = rt[:c], rt[c : 2 * c], rt[2 * c : 3 * c], rt[3 * c]
        table, table_np, decays = self._tail(group["betas"], upto, rt.device, rt.dtype)
        decay = decays.index_select(1, last.neg().add_(upto).long())  # (3, n): b1^k, b2^k, q^k, k = upto - last
        # coef = A(last) - q^k A(upto); a row never updated has m = v = 0, so its tail is 0
        coef = table.index_select(0, last.long()).sub_(decay[2], alpha=float(table_np[upto]))
        w.addcmul_(m / v.sqrt().add_(group["eps"]), coef.mul_(-group["lr"]))
        rt[c : 3 * c].view(2, c, -1).mul_(decay[:2].unsqueeze(1))
        last.fill_(upto)

    def _adam(self, group, rt: torch.Tensor, vals: torch.Tensor, step: int) -> None:
        """In place on a column-major block ``rt`` caught up to ``step - 1``: the Adam update of
        ``step`` with gradient ``vals`` (ncol, n)."""
        b1, b2 = group["betas"]
        c = self._ncol(group)
        w, m, v = rt[:c], rt[c : 2 * c], rt[2 * c : 3 * c]
        m.mul_(b1).add_(vals, alpha=1.0 - b1)
        v.mul_(b2).addcmul_(vals, vals, value=1.0 - b2)
        bc2_sqrt = float(np.sqrt(1.0 - b2**step))
        if group.get("eps_mode", "torch") == "keras":  # eps before the bias correction
            denom = v.sqrt().add_(group["eps"]).div_(bc2_sqrt)
        else:
            denom = v.sqrt().div_(bc2_sqrt).add_(group["eps"])
        w.addcdiv_(m, denom, value=-group["lr"] / (1.0 - b1**step))
        rt[3 * c].fill_(step)

    def _group_of(self, p: torch.Tensor) -> int:
        for i, group in enumerate(self.param_groups):
            if any(q is p for q in group["params"]):
                return i
        raise ValueError("DeferredAdam: the tensor is not one of the optimiser's parameters")

    @torch.no_grad()
    def hold(self, tables: list[tuple[torch.Tensor, torch.Tensor]], zero_moments: bool = True) -> None:
        """Keep the given rows of the given tables (``[(parameter, rows)]``) where they are from now on: their
        ``m, v`` zeroed and their gradient ignored at every later step. A row with ``m = v = 0`` and no
        gradient does not move (its Adam update and its deferred tail are both ``0 / (0 + eps)``
        times 0), so the catch-ups need no test. Call with every row current (after :meth:`flush`).
        ``zero_moments=False``: only mark them (a resumed run, whose checkpoint holds the zeroed moments).
        The mark is not in :meth:`state_dict`: its owner (the trainer's region stops) holds the rows again
        after a load."""
        for p, rows in tables:
            gi = self._group_of(p)
            slab = self._slab(self.param_groups[gi])
            st = self.state[p]
            if zero_moments:
                st["exp_avg"][rows] = 0.0
                st["exp_avg_sq"][rows] = 0.0
            mask = self.held.get(gi)
            if mask is None:
                mask = self.held[gi] = torch.zeros(slab.shape[0], dtype=torch.bool, device=slab.device)
            mask[rows.to(slab.device) + st["offset"]] = True

    def _held_gradient(self, group, rows: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
        """``vals`` (ncol, n), the gradient of slab rows ``rows``, with the held rows' columns zeroed
        (:meth:`hold`); unchanged where the group holds none."""
        mask = next((self.held.get(i) for i, g in enumerate(self.param_groups) if g is group), None)
        if mask is None:
            return vals
        return vals * (~mask.index_select(0, rows)).to(vals.dtype)

    def load_state_dict(self, state_dict, mapped: list[tuple[int, int]] | None = None) -> None:
        """As :meth:`torch.optim.Optimizer.load_state_dict`; the loaded slab is copied into the
        group's own slab (the one it has, or a new one), which takes the parameters' current values
        and stays their storage. Copied, not adopted: the state dict's slab may still be another
        optimiser's storage, or a checkpoint's memory map (``mapped``: its address ranges, whose
        pages are released piece by piece as they are copied, :func:`~empirical_seaice.memory.copy_rows`).
        Into the slab the group has: a second slab beside the loaded one would be its size again at
        the load's peak (333 MiB on the ``benchmark`` twin), and the compiled step's views of the
        slab stay its own."""
        self._pending.clear()
        own = [
            self.state[g["params"][0]].get("slab") if self.state.get(g["params"][0]) else None
            for g in self.param_groups
        ]
        super().load_state_dict(state_dict)
        for group, slab in zip(self.param_groups, own, strict=True):
            p0 = group["params"][0]
            if self.state.get(p0):
                saved = self.state[p0]["slab"]
                if (
                    slab is None
                    or slab.shape != saved.shape
                    or slab.dtype != saved.dtype
                    or slab.device != saved.device
                ):
                    slab = _new_slab(tuple(saved.shape), p0.dtype, p0.device)
                # the parameters' values, kept aside where they are views of the slab the copy overwrites
                ptr = slab.untyped_storage().data_ptr()
                values = [
                    p.detach().clone() if p.untyped_storage().data_ptr() == ptr else p.detach() for p in group["params"]
                ]
                copy_rows(slab, saved, mapped)
                for p, value in zip(group["params"], values, strict=True):
                    off = self.state[p]["offset"]
                    slab[off : off + p.shape[0], : p.shape[1]] = value
                self._attach(group, slab)

    def state_dict(self):
        """As :meth:`torch.optim.Optimizer.state_dict` (the slab is always up to date, also
        between a catch-up and its step; the parameters and moments in it are views of one
        shared tensor, saved once by ``torch.save``)."""
        return super().state_dict()

    # ------------------------------------------------------------------ steps

    @torch.no_grad()
    def step(self, closure=None):
        """One Adam step on the rows that have a gradient (all rows' step count advances).

        Three ways in, one Adam update: the batch read the caught-up rows through
        :meth:`gather` (their gradient is dense, :meth:`_step_gathered`); the rows were
        caught up in the tables before the forward pass (:meth:`catch_up_many`,
        :meth:`_step_caught_up`); or nothing was caught up (the general path, table by
        table, :meth:`_step_tables`).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for gi, group in enumerate(self.param_groups):
            params = group["params"]
            slab = self._slab(group)  # first: creates the state on the first step
            for p in params:
                self.state[p]["step"] += 1
            step = self.state[params[0]]["step"]
            if step >= self.MAX_STEPS:
                raise SeaIceError(f"DeferredAdam: more than {self.MAX_STEPS} steps (float32 step counters)")
            pending = self._pending.pop(gi, None)
            if pending is not None and pending.leaf is not None:
                self._step_gathered(group, slab, pending, step)
            elif pending is not None and pending.matches(params, step - 1):
                self._step_caught_up(group, slab, pending, step)
            else:
                self._step_tables(group, slab, step)
        return loss

    def _step_gathered(self, group, slab: torch.Tensor, pending: _CaughtUp, step: int) -> None:
        """The batch read the caught-up rows through :meth:`gather`: their gradient is dense."""
        if pending.step != step - 1 or any(p.grad is not None for p in group["params"]):
            raise SeaIceError(
                "DeferredAdam: a table read through gather() also has a gradient of its own, "
                "or the tables were stepped in between; read each table one way per step"
            )
        g = pending.leaf.grad if pending.leaf is not None else None
        c = self._ncol(group)
        vals = pending.r.new_zeros((c, pending.unique.numel())) if g is None else g.t().contiguous()
        self._adam(group, pending.r, self._held_gradient(group, pending.unique, vals), step)
        self._scatter(slab, pending.unique, pending.r)

    def _step_caught_up(self, group, slab: torch.Tensor, pending: _CaughtUp, step: int) -> None:
        """The batch's rows were caught up to ``step - 1`` before the forward pass: sum the
        duplicate rows' gradients through the catch-up's inverse index (no sort) and do the
        Adam update of every caught-up row (a row without gradient gets dense Adam's
        zero-gradient update, exactly what deferring it would give)."""
        vals = pending.r.new_zeros((self._ncol(group), pending.unique.numel()))
        for p, inverse in zip(pending.params, pending.inverse, strict=True):
            if p.grad is not None:
                vals[: p.shape[1]].index_add_(1, inverse, p.grad._values().t())
        self._adam(group, pending.r, self._held_gradient(group, pending.unique, vals), step)
        self._scatter(slab, pending.unique, pending.r)

    def _step_tables(self, group, slab: torch.Tensor, step: int) -> None:
        """The general path, table by table: catch up the rows with a gradient, then update them."""
        c = self._ncol(group)
        for p in group["params"]:
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
            vals = torch.nn.functional.pad(vals.t(), (0, 0, 0, c - p.shape[1]))
            self._adam(group, rt, self._held_gradient(group, rows, vals), step)
            self._scatter(slab, rows, rt)

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
                params=tuple(p for p, _ in pairs),
                rows=tuple(rows for _, rows in pairs),
                joint_inverse=inverse,
                unique=unique,
                step=step,
                r=r,
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
                joint[gi] = pending.leaf.index_select(0, pending.joint_inverse).split([r.numel() for r in pending.rows])
            k = next(i for i, q in enumerate(pending.params) if q is p)
            out.append(joint[gi][k][:, : p.shape[1]].reshape(*rows.shape, p.shape[1]))
        return out

    @torch.no_grad()
    def set_gathered_gradients(
        self, tables: list[tuple[torch.Tensor, torch.Tensor]], grads: list[torch.Tensor]
    ) -> None:
        """Hand the gradients of the rows :meth:`gather` returned (``grads``, one for each of ``tables``, in
        the shape it returned) to the coming :meth:`step` without autograd: each group's caught-up rows
        get the sum of their reads' gradients, exactly as the backward pass through :meth:`gather` would
        (the same additions in the same order: the same bits): each table's gradients, padded to the
        group's columns, one after the other in :meth:`gather`'s order, summed into the distinct rows by
        ``index_add_``."""
        by_group: dict[int, list[torch.Tensor]] = {}
        for (p, rows), g in zip(tables, grads, strict=True):
            by_group.setdefault(self._group_of(p), []).append(g.reshape(rows.numel(), p.shape[1]))
        for gi, parts in by_group.items():
            pending = self._pending.get(gi)
            step = self.state[self.param_groups[gi]["params"][0]]["step"]
            leaf = None if pending is None or pending.step != step else pending.leaf
            if pending is None or leaf is None:
                raise SeaIceError("DeferredAdam: set_gathered_gradients() without a gather() of the same step")
            c = leaf.shape[1]
            joint = torch.cat([torch.nn.functional.pad(g, (0, c - g.shape[1])) for g in parts])
            leaf.grad = torch.zeros_like(leaf).index_add_(0, pending.joint_inverse, joint)

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
            last, step = st["last_step"], st["step"]
            # window by window of the table's rows: the temporaries (the lagging rows' index, the gathered
            # block) are those of one window, whatever the table's size; each row's update is its own
            for a in range(0, last.shape[0], self.CATCH_UP_ROWS):
                part = last[a : a + self.CATCH_UP_ROWS]
                rows = torch.nonzero((part > 0) & (part < step)).flatten()
                if rows.numel() == 0:
                    continue
                rows += st["offset"] + a
                r = self._gather(slab, rows)
                self._catch_up(group, r, step)
                self._scatter(slab, rows, r)

    def flush(self) -> None:
        """Bring every row up to the current step (O(state); once per epoch)."""
        for group in self.param_groups:
            for p in group["params"]:
                self.catch_up(p)
