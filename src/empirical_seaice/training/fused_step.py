"""The fused training step: one step in seven compiled calls (three more with the whole-map priors)
instead of ~900 tensor operations.

:class:`FusedStep` does what one iteration of :meth:`Trainer._train_epoch` does on the
default scheme (``optimizer="deferred-adam"``: :class:`DeferredAdam` on the state tables,
:func:`dense_adam` on the small dense weights), for a network that offers a compiled
program of its forward pass, cost and gradient (``network.fused_program(data,
nobs_total) -> (program | None, reason)``; the sea-ice physics stays on the network's
side):

1. the rows each observation reads (``program.rows``);
2. the distinct rows are found with a mark array (one int32 per slab row: the rows' last padding
   column where they have one), each caught up (the deferred zero-gradient Adam steps,
   :class:`DeferredAdam`'s closed form) and copied out as it is found (:func:`_catch_up_batch_rows`: one
   pass per group of tables, :func:`column_groups`, the groups in parallel);
3. forward, cost terms and gradients of every parameter (``program.run``);
4. the Adam step of the caught-up rows (:func:`_adam_rows`), as
   :meth:`DeferredAdam.step` after :meth:`DeferredAdam.gather`;
5. the Adam step of every dense weight in one call (:func:`_adam_dense_all`), torch's fused
   Adam formula on the optimiser's own ``exp_avg``/``exp_avg_sq``/``step``.

Buffers are allocated once per number of groups and grown to the largest batch (a batch takes their leading
parts); the large tables read at random (slab, marks) are in 2 MiB pages and their rows are prefetched ahead
(:mod:`empirical_seaice.compiled`).

With the exact whole-map priors at every step (the program's ``full``: the reference's
scheme, ``map_priors="full"``), between 3 and 4 the priors and their derivative are
evaluated over every SIC-map row (``program.map_priors``) and every SIC row takes its
Adam step with that gradient plus the batch's (:func:`_full_map_adam`); step 4 then
leaves the SIC rows alone. This is dense Adam with the whole-map priors at every step
(``tests/training/test_fused_full.py``: equal to the tensor ``dense-adam`` step).

Parameters, moments and step counters stay in the optimisers' own storage, so
checkpoints, :meth:`DeferredAdam.flush`, evaluation and the unfused step see the
same state whichever step ran. The result equals the unfused step to float32
rounding (``tests/training/test_fused_step.py``: parameters after 100 steps) and
is the same bit for bit on rerun and for any thread count (fixed chunks summed
in order).

:func:`build_fused_step` returns None, with a one-line reason, where it does not
apply (numba missing, another optimiser scheme, a network without a program,
non-CPU tensors); the trainer then logs the reason once and uses the unfused step.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable

import numpy as np
import torch

from empirical_seaice.compiled import empty_huge
from empirical_seaice.training.deferred_adam import DeferredAdam

logger = logging.getLogger(__name__)

try:
    import numba
    from numba import prange

    from empirical_seaice.compiled import njit, prefetch, prefetch1

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is absent
    numba = None  # type: ignore[assignment]
    prange = range  # type: ignore[misc]
    HAVE_NUMBA = False


_AHEAD = 8
"""Prefetch distance: :func:`_catch_up_batch_rows` fetches the slab rows of the observation this many ahead (their
marks too where the marks are kept in the rows), :func:`_adam_rows` the slab rows ``4 _AHEAD`` ahead. 8
rather than 4: at batch 16384 on two threads 2.72-2.83 M observations/s against 2.68-2.75 M, at batch 1024
and on one thread the same (benchmarks/results.md, seventh round); 16 was no better than 8."""


def _catch_up_batch_rows(  # noqa: C901 - one compiled pass: the search, the catch-up and the copy of each row
    slab, refs, ref_off, ref_width, groups, mark, uniq, inv, counts, kobs, step, c, a_tab, decay, lr, eps, vals, g_vals
):
    """The batch's distinct slab rows found, caught up to ``step`` and copied out, in one pass per group
    of tables, the groups in parallel.

    Group ``t`` holds the reference columns ``groups[t, 0] .. groups[t, 1] - 1``, every column of each of
    its tables (:func:`column_groups`), so no two groups meet the same row or mark. A group's distinct
    rows go in first-visit order into its own segment ``t S .. t S + counts[t] - 1`` of ``uniq``,
    ``vals`` and ``g_vals`` (``S = uniq.shape[0] // G``): ``inv[b, k]`` is the index of the row of
    reference ``(b, k)`` there and ``mark[row]`` that index (reset by :func:`_adam_rows`). Column
    ``kobs`` (-1: none) holds rows that no other reference of the batch reads (each observation's own
    row, in a batch of distinct observations): taken as new without a mark, by the group that has the
    column, or where none has it (:func:`column_groups` with ``own``) shared out by position, group ``t``
    taking those of observations ``nb t / G .. nb (t + 1) / G - 1`` after its own columns (so that every
    thread has a share of them, whatever its tables).

    A new row is caught up the moment it is found, while its line (the mark's) is in the cache
    (:func:`_take_row`). Every row's values depend on that row alone, so the result is the same for any
    grouping and thread count (only the rows' places in the segments differ). The group's rows of the
    observation ``_AHEAD`` ahead are prefetched."""
    ngroup = groups.shape[0]
    seg = uniq.shape[0] // ngroup
    nb = refs.shape[0]
    a_step = a_tab[step]
    shared = kobs >= 0 and groups[ngroup - 1, 1] <= kobs  # the own rows' column in no group
    for t in prange(ngroup):
        lo, hi = groups[t, 0], groups[t, 1]
        n = t * seg
        for b in range(nb):
            if b + _AHEAD < nb:
                for k in range(lo, hi):
                    prefetch(slab, refs[b + _AHEAD, k] + ref_off[k], 0)
            for k in range(lo, hi):
                row = refs[b, k] + ref_off[k]
                if k != kobs:
                    j = mark[row]
                    if j >= 0:
                        inv[b, k] = j
                        continue
                    mark[row] = n
                inv[b, k] = n
                _take_row(slab, row, n, ref_width[k], step, c, a_tab, a_step, decay, lr, eps, uniq, vals, g_vals)
                n += 1
        if shared:  # this group's share of the observations' own rows
            b0, b1 = (nb * t) // ngroup, (nb * (t + 1)) // ngroup
            off, w = ref_off[kobs], ref_width[kobs]
            for b in range(b0, b1):
                if b + _AHEAD < b1:
                    prefetch(slab, refs[b + _AHEAD, kobs] + off, 0)
                inv[b, kobs] = n
                _take_row(slab, refs[b, kobs] + off, n, w, step, c, a_tab, a_step, decay, lr, eps, uniq, vals, g_vals)
                n += 1
        counts[t] = n - t * seg


def _take_row(slab, row, j, w, step, c, a_tab, a_step, decay, lr, eps, uniq, vals, g_vals):
    """A new distinct row of the batch (:func:`_catch_up_batch_rows`) at index ``j``: ``uniq[j] = row``, the
    row caught up to ``step`` (:func:`_catch_up_row`: ``k = step - last`` deferred zero-gradient steps,
    :class:`DeferredAdam`'s closed form) on its first ``w`` columns (the rest of the row is padding), copied
    to ``vals[j]`` and its gradient row ``g_vals[j]`` zeroed."""
    uniq[j] = row
    last = int(slab[row, 3 * c])
    if step > last:
        _catch_up_row(slab, row, w, last, step, c, a_tab, a_step, decay, lr, eps)
    for col in range(w):
        vals[j, col] = slab[row, col]
        g_vals[j, col] = 0.0


def _catch_up_row(slab, row, w, last, step, c, a_tab, a_step, decay, lr, eps):
    """Slab row ``row`` (its first ``w`` columns of each of ``w, m, v``) caught up from step ``last`` to
    ``step > last``: ``k = step - last`` deferred zero-gradient steps, ``w += -lr (A(last) - q^k A(step)) m
    / (sqrt(v) + eps)``, ``m *= b1^k``, ``v *= b2^k``, ``last = step`` (:class:`DeferredAdam`'s closed form;
    ``a_step = A(step)``)."""
    kk = step - last
    coef = -lr * (a_tab[last] - decay[2, kk] * a_step)
    d1 = decay[0, kk]
    d2 = decay[1, kk]
    for col in range(w):
        m = slab[row, c + col]
        v = slab[row, 2 * c + col]
        slab[row, col] += coef * (m / (math.sqrt(v) + eps))
        slab[row, c + col] = m * d1
        slab[row, 2 * c + col] = v * d2
    slab[row, 3 * c] = step


def _adam_rows(
    slab, uniq, counts, grad, mark, row_width, step, c, b1, b2, lr, eps, keras, skip_lo, skip_hi, held, nchunk
):
    """Adam step ``step`` of the caught-up rows of every group's segment of ``uniq`` (:func:`_catch_up_batch_rows`:
    rows ``t S .. t S + counts[t] - 1``) with gradient ``grad`` (rows aligned with ``uniq``; the first
    columns of each table, ``row_width``: from, to, columns); clears their marks. Rows in ``[skip_lo,
    skip_hi)`` (the SIC map that :func:`_full_map_adam` stepped already) are left alone, and so are the rows
    that ``held`` marks (:meth:`DeferredAdam.hold`: one flag a slab row, or empty: none held). The segments
    one after the other are cut into ``nchunk`` fixed chunks, in parallel (distinct rows: the same
    result for any thread count), each prefetching the rows ``4 _AHEAD`` ahead."""
    bc1 = 1.0 - b1**step
    bc2s = math.sqrt(1.0 - b2**step)
    ahead = 4 * _AHEAD
    ngroup = counts.shape[0]
    seg = uniq.shape[0] // ngroup
    total = counts.sum()
    for k in prange(nchunk):
        v0, v1 = (total * k) // nchunk, (total * (k + 1)) // nchunk
        start = 0  # the segments' rows numbered one after the other: group t's from `start`
        for t in range(ngroup):
            a, z = max(v0, start), min(v1, start + counts[t])
            j1 = t * seg + z - start
            for j in range(t * seg + a - start, j1):
                if j + ahead < j1:
                    prefetch(slab, uniq[j + ahead], 0)
                    prefetch1(mark, uniq[j + ahead])
                row = uniq[j]
                mark[row] = -1
                if not skip_lo <= row < skip_hi and not (held.shape[0] and held[row]):
                    _adam_row(slab, row, grad, j, row_width, step, c, b1, b2, bc1, bc2s, lr, eps, keras)
            start += counts[t]


def _adam_row(slab, row, grad, j, row_width, step, c, b1, b2, bc1, bc2s, lr, eps, keras):
    """Slab row ``row``'s Adam step ``step`` with gradient ``grad[j]`` (its table's columns, ``row_width``)."""
    lc = 3 * c
    w = c
    for t in range(row_width.shape[0]):
        if row_width[t, 0] <= row < row_width[t, 1]:
            w = row_width[t, 2]
    for col in range(w):
        g = grad[j, col]
        m = b1 * slab[row, c + col] + (1.0 - b1) * g
        v = b2 * slab[row, 2 * c + col] + (1.0 - b2) * g * g
        slab[row, c + col] = m
        slab[row, 2 * c + col] = v
        if keras:
            denom = (math.sqrt(v) + eps) / bc2s
        else:
            denom = math.sqrt(v) / bc2s + eps
        slab[row, col] -= (lr / bc1) * (m / denom)
    slab[row, lc] = step


def _full_map_adam(slab, lo, nrow, mark, grad, g_map, step, c, b1, b2, lr, eps, keras, held, nchunk):
    """The "full" scheme's Adam step ``step`` of every row of one table (slab rows ``lo .. lo +
    nrow - 1``, first column: the SIC map, every row current): gradient = ``g_map[r]`` (the
    exact whole-map priors' derivative, from the network's program) + the batch's
    (``grad[mark[row], 0]`` where the batch read the row). Rows are independent, so the
    fixed chunks run in parallel with the same result for any thread count. Dense Adam with
    the whole-map priors at every step: every row moves at every step, but the rows ``held`` marks
    (:func:`_adam_rows`)."""
    bc1 = 1.0 - b1**step
    bc2s = math.sqrt(1.0 - b2**step)
    lc = 3 * c
    for k in prange(nchunk):
        for r in range((nrow * k) // nchunk, (nrow * (k + 1)) // nchunk):
            row = lo + r
            if held.shape[0] and held[row]:
                continue
            g = g_map[r]
            j = mark[row]
            if j >= 0:
                g += grad[j, 0]
            m = b1 * slab[row, c] + (1.0 - b1) * g
            v = b2 * slab[row, 2 * c] + (1.0 - b2) * g * g
            if keras:
                denom = (math.sqrt(v) + eps) / bc2s
            else:
                denom = math.sqrt(v) / bc2s + eps
            slab[row, 0] -= (lr / bc1) * (m / denom)
            slab[row, c] = m
            slab[row, 2 * c] = v
            slab[row, lc] = step


def _adam_dense(p, g, m, v, step, b1, b2, lr, eps):
    """torch's Adam step ``step`` on flat float32 arrays (eps after the bias correction)."""
    bc1 = 1.0 - b1**step
    bc2s = math.sqrt(1.0 - b2**step)
    for i in range(p.shape[0]):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * (1.0 - b1)
        vi = b2 * v[i] + (1.0 - b2) * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] -= (lr / bc1) * (mi / (math.sqrt(vi) / bc2s + eps))


def _adam_dense_all(ps, gs, ms, vs, steps, hyper):
    """:func:`_adam_dense` of every dense weight in one call: weight ``k`` (flat float32 ``ps[k]``,
    gradient ``gs[k]``, moments ``ms[k]``, ``vs[k]``) advances its step counter ``steps[k][0]`` (the
    optimiser's own float32 ``step``) by one and takes that step with ``hyper[k]`` = (beta1, beta2,
    lr, eps, Keras' eps or -1: then ``eps = keras_eps / sqrt(1 - beta2^t)``)."""
    for k in range(len(ps)):
        steps[k][0] += 1
        t = float(steps[k][0])
        b1, b2, lr, eps, keras_eps = hyper[k, 0], hyper[k, 1], hyper[k, 2], hyper[k, 3], hyper[k, 4]
        if keras_eps >= 0.0:
            eps = keras_eps / math.sqrt(1.0 - b2**t)
        _adam_dense(ps[k], gs[k], ms[k], vs[k], t, b1, b2, lr, eps)


def _flush_rows(slab, row_width, steps, c, a_tab, decay, lr, eps, nchunk):
    """Every row of the tables ``row_width`` ((slab row from, to, columns) each, at ``steps[t]`` steps) with
    ``0 < last < step`` caught up to ``step``: :func:`_catch_up_batch_rows`' closed form, row by row. Rows
    never stepped (``last = 0``: zero moments) keep their ``last``, as in :meth:`DeferredAdam.catch_up`;
    padding columns (the marks) are left alone. Each table's rows in ``nchunk`` fixed chunks in parallel:
    every row its own, the same result for any thread count."""
    lc = 3 * c
    for t in range(row_width.shape[0]):
        lo, hi, w = row_width[t, 0], row_width[t, 1], row_width[t, 2]
        step = steps[t]
        a_step = a_tab[step]
        n = hi - lo
        for k in prange(nchunk):
            for row in range(lo + (n * k) // nchunk, lo + (n * (k + 1)) // nchunk):
                last = int(slab[row, lc])
                if 0 < last < step:
                    _catch_up_row(slab, row, w, last, step, c, a_tab, a_step, decay, lr, eps)


if HAVE_NUMBA:
    _flush_rows = njit(cache=True, parallel=True)(_flush_rows)
    _catch_up_batch_rows = njit(cache=True, parallel=True)(_catch_up_batch_rows)
    _catch_up_row = njit(cache=True, inline="always")(_catch_up_row)  # inlined in both passes
    _take_row = njit(cache=True, inline="always")(_take_row)  # inlined in the search's two loops
    _adam_row = njit(cache=True, inline="always")(_adam_row)  # inlined in the pass
    _adam_rows = njit(cache=True, parallel=True)(_adam_rows)
    _adam_dense = njit(cache=True)(_adam_dense)
    _adam_dense_all = njit(cache=True)(_adam_dense_all)
    _full_map_adam = njit(cache=True, parallel=True)(_full_map_adam)


_NONE_HELD = np.zeros(0, dtype=np.bool_)
"""No row held (:meth:`FusedStep._held`)."""

NCHUNK_MAP = 16
"""Fixed chunks of the whole-map pass (independent of the thread count)."""


def column_groups(ref_table: np.ndarray, threads: int, own: int = -1) -> np.ndarray:
    """The reference columns cut into at most ``threads`` groups for :func:`_catch_up_batch_rows`: (G, 2) int64
    ``[from, to)``, each group a run of whole tables (the columns of one table, e.g. the SIC map's lags,
    read the same rows and stay together), the cut that makes the largest group smallest, with the
    fewest groups.
    ``ref_table`` is each column's table (a table's columns adjacent). Any grouping gives the same result.

    ``own`` (the last column; -1: none): on more than one thread, the column of the observations' own rows,
    which the search then shares out by position among the groups: the other columns are grouped, and
    empty groups (``[own, own)``) added up to ``threads``, so that each thread takes a share of the own
    rows. On two threads, v2's SIC lags then go with half the own rows and its grid row with the other
    half, instead of the grid and own rows together (at batch 16384 the search took 0.56 ms for the SIC
    lags, 0.67 for the grid rows and 0.55 for the own rows, each alone: benchmarks/results.md, forty-first
    round). On one thread the column stays in the one group (a second loop over the batch was slower)."""
    if own >= 0 and threads > 1:
        if own != len(ref_table) - 1:
            raise ValueError(f"column_groups: the own rows' column must be the last ({len(ref_table) - 1}), got {own}")
        groups = column_groups(ref_table[:own], threads) if own else np.zeros((0, 2), dtype=np.int64)
        empty = np.full((threads - groups.shape[0], 2), own, dtype=np.int64)
        return np.concatenate([groups, empty]) if empty.size else groups
    edges = [0] + [k for k in range(1, len(ref_table)) if ref_table[k] != ref_table[k - 1]] + [len(ref_table)]
    runs = len(edges) - 1
    best: tuple[int, ...] = ()
    best_size = len(ref_table) + 1
    for g in range(1, min(max(threads, 1), runs) + 1):
        for cut in itertools.combinations(range(1, runs), g - 1):
            bounds = [edges[0], *(edges[i] for i in cut), edges[-1]]
            size = max(b - a for a, b in itertools.pairwise(bounds))
            if size < best_size:
                best, best_size = tuple(bounds), size
    return np.array(list(itertools.pairwise(best)), dtype=np.int64)


class FusedStep:
    """One training step of the default scheme, compiled; see the module docstring.

    Call with the batch's observation indices (int64 numpy); returns the cost terms of
    the step and their total (float64, order :attr:`names`). ``distinct=True`` says the indices
    are distinct (the trainer's batches: slices of a permutation), so each observation's own
    state row is read by no other reference of the batch: :func:`_catch_up_batch_rows` takes it as new without
    reading or setting its mark (the same result). ``dense_opt`` None: the dense weights are fixed (a
    frozen model, e.g. the held-out fit's), only the state tables step.
    """

    def __init__(self, program, deferred: DeferredAdam, dense_opt: torch.optim.Optimizer | None):
        self.program = program
        self.deferred = deferred
        self.dense_opt = dense_opt
        self.names = (*program.names, "total")
        self.c = deferred._ncol(self.group)
        self.ref_table = program.ref_table
        self.obs_col = len(program.ref_table) - 1 if program.arrays["has_obs"] else -1
        """The column of the refs that is each observation's own row (-1: no per-observation state)."""
        self._steps = 0
        self._bufs: dict[int, tuple[np.ndarray, ...]] = {}
        self._groups: dict[tuple[int, int], np.ndarray] = {}
        """:func:`column_groups` by thread count and own rows' column (-1: a batch that may repeat them)."""
        self.full = bool(getattr(program, "full", False))
        """The exact whole-map priors at every step (the reference's scheme): the program's first
        table (the SIC map) is stepped whole at every step (:func:`_full_map_adam`)."""
        self.refresh()

    @property
    def group(self) -> dict:
        """The state tables' parameter group, the optimiser's own at each call: loading a checkpoint replaces
        the optimiser's group dicts, and the learning rate is set on the new one (a copy kept from before
        the load kept the old rate: a resumed run with --lr-decay or --plateau-cuts stepped at the
        checkpoint's first rate, not bit-identical to an unbroken one)."""
        return self.deferred.param_groups[0]

    def refresh(self) -> None:
        """Re-read the optimisers' storage (after a checkpoint load or anything that replaced it)."""
        d = self.deferred
        if self.full:  # every SIC row is current from here on (a no-op after an epoch's flush)
            d.catch_up(self.program.tables[0])
        slab = d._slab(self.group)
        self.slab_t = slab
        self.slab = slab.numpy()
        offs = {id(p): d.state[p]["offset"] for p in self.group["params"]}
        self.ref_off = np.array([offs[id(self.program.tables[t])] for t in self.ref_table], dtype=np.int64)
        self.ref_width = np.array([self.program.tables[t].shape[1] for t in self.ref_table], dtype=np.int64)
        """The columns of each reference's table: the rest of a slab row's ``c`` columns is padding (always 0),
        which the compiled passes leave alone."""
        self.row_width = np.array([(offs[id(p)], offs[id(p)] + p.shape[0], p.shape[1]) for p in self.group["params"]])
        """(slab row from, to, columns) of each table."""
        sic = self.program.tables[0]
        self.map_rows = (offs[id(sic)], offs[id(sic)] + sic.shape[0]) if self.full else (0, 0)
        self.g_map = np.empty(sic.shape[0] if self.full else 0)
        mark: np.ndarray | None = getattr(self, "mark", None)
        if slab.shape[1] > 3 * self.c + 1 and self.slab.dtype == np.float32:
            # the marks in the rows' last padding column, as int32 (its bits: never read as a float),
            # instead of an array of the slab's rows beside it (42 MiB at the benchmark twin's size)
            if mark is None or not np.shares_memory(mark, self.slab):
                self.mark = self.slab.view(np.int32)[:, -1]
                self.mark.fill(-1)
        elif mark is None or mark.shape[0] != slab.shape[0] or np.shares_memory(mark, self.slab):
            self.mark = empty_huge(slab.shape[0], np.int32)  # read at random: 2 MiB pages
            self.mark.fill(-1)
        d._pending.clear()
        self.dense = []
        states = self.dense_opt.state if self.dense_opt is not None else {}
        for group in self.dense_opt.param_groups if self.dense_opt is not None else ():  # None: fixed weights
            for p in group["params"]:
                st = states[p]
                if not st:
                    st["step"] = torch.zeros((), dtype=torch.float32)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                self.dense.append(
                    (group, st, p.detach().numpy().reshape(-1), st["exp_avg"].numpy().reshape(-1),
                     st["exp_avg_sq"].numpy().reshape(-1))
                )  # fmt: skip
        # the dense weights as one compiled call's tuples: weights, moments, step counters (float32 views)
        self._dense_p = tuple(x[2] for x in self.dense)
        self._dense_m = tuple(x[3] for x in self.dense)
        self._dense_v = tuple(x[4] for x in self.dense)
        self._dense_step = tuple(x[1]["step"].numpy().reshape(1) for x in self.dense)
        self._tail_np: tuple[tuple[float, ...], np.ndarray, np.ndarray] | None = None
        self._hyper_key: tuple | None = None
        self._hyper = np.zeros((0, 5))

    def flush(self) -> None:
        """:meth:`DeferredAdam.flush` compiled: every row of the step's state tables brought up to the current
        step (:func:`_flush_rows`, the closed form the step's own catch-up applies, in float64 like it),
        the optimiser's other groups by :meth:`DeferredAdam.catch_up`. Once per epoch; O(state)."""
        d, group = self.deferred, self.group
        steps = np.array([int(d.state[p]["step"]) if d.state.get(p) else 0 for p in group["params"]], dtype=np.int64)
        if steps.size and steps.max() > 0:
            a_np, decays = self._tails(int(steps.max()))
            _flush_rows(self.slab, self.row_width, steps, self.c, a_np, decays, group["lr"], group["eps"], NCHUNK_MAP)
        d._pending.pop(0, None)
        for other in d.param_groups[1:]:
            for p in other["params"]:
                d.catch_up(p)

    def _buffers(self, nb: int, ngroup: int) -> tuple[np.ndarray, ...]:
        """``refs, uniq, inv, vals, g_vals, counts`` for a batch of ``nb`` observations and ``ngroup`` groups
        of tables (:func:`_catch_up_batch_rows`: a segment of ``nb nref`` rows each): the leading parts of
        buffers allocated once per number of groups and grown when a batch is larger (a sharded run's
        shares vary from step to step; one set per size would pile up)."""
        nref = self.ref_table.shape[0]
        bufs = self._bufs.get(ngroup)
        if bufs is None or bufs[0].shape[0] < nb:
            n = ngroup * nb * nref
            bufs = (
                np.empty((nb, nref), dtype=np.int64),
                np.empty(n, dtype=np.int64),
                np.empty((nb, nref), dtype=np.int64),
                np.empty((n, self.c), dtype=np.float32),
                np.empty((n, self.c), dtype=np.float64),
                np.zeros(ngroup, dtype=np.int64),
            )
            self._bufs[ngroup] = bufs
        refs, uniq, inv, vals, g_vals, counts = bufs
        n = ngroup * nb * nref  # the segments' layout follows the batch: S = nb nref rows a group
        return refs[:nb], uniq[:n], inv[:nb], vals[:n], g_vals[:n], counts

    def _tails(self, upto: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`DeferredAdam._tail`'s ``A(t)`` and decay tables (numpy), covering step ``upto``."""
        betas = tuple(self.group["betas"])
        tails = self._tail_np
        if tails is None or tails[0] != betas or tails[1].shape[0] <= upto:
            _, a_np, decays = self.deferred._tail(betas, upto, self.slab_t.device, torch.float64)
            tails = self._tail_np = (betas, a_np, decays.numpy())
        return tails[1], tails[2]

    def _held(self) -> np.ndarray:
        """The slab rows the optimiser holds (:meth:`DeferredAdam.hold`; bool, one a row), or an empty array."""
        mask = self.deferred.held.get(0)
        return _NONE_HELD if mask is None else mask.numpy()

    def _dense_hyper(self) -> np.ndarray:
        """(nweights, 5) float64: each dense weight's beta1, beta2, lr, eps, Keras' eps (-1 without; then
        eps is not read), re-made when a group's settings change (a learning-rate schedule)."""
        assert self.dense_opt is not None  # called only with dense weights to step
        key = tuple(
            (g["betas"], g["lr"], g["keras_eps"] if "keras_eps" in g else g["eps"], "keras_eps" in g)
            for g in self.dense_opt.param_groups
        )
        if key != self._hyper_key:
            self._hyper = np.array(
                [(*g["betas"], g["lr"], g["eps"], g.get("keras_eps", -1.0)) for g, *_ in self.dense], dtype=np.float64
            )
            self._hyper_key = key
        return self._hyper

    def __call__(
        self,
        index: np.ndarray,
        distinct: bool = False,
        batch_total: int | None = None,
        reduce: Callable[[tuple[np.ndarray, ...]], None] | None = None,
    ) -> np.ndarray:
        """One step on the observations ``index``; see the class docstring. Sharded over ranks: ``batch_total``
        is the global batch's ``B`` (this rank's share of it in ``index``, possibly none; the program's
        ``run``), and ``reduce`` sums the dense weights' gradients (flat float64 arrays, in place) over the
        ranks before their Adam step (:meth:`ShardPlan.reduce_arrays
        <empirical_seaice.training.distributed.ShardPlan.reduce_arrays>`); the state rows are the rank's own."""
        d, group, c = self.deferred, self.group, self.c
        prog = self.program
        params = group["params"]
        step = d.state[params[0]]["step"]
        if step + 1 >= d.MAX_STEPS:
            from empirical_seaice.errors import SeaIceError

            raise SeaIceError(f"DeferredAdam: more than {d.MAX_STEPS} steps (float32 step counters)")
        threads = numba.get_num_threads()
        skip = self.obs_col if distinct else -1
        groups = self._groups.get((threads, skip))
        if groups is None:
            groups = self._groups[threads, skip] = column_groups(self.ref_table, threads, skip)
        refs, uniq, inv, vals, g_vals, counts = self._buffers(index.shape[0], groups.shape[0])
        prog.rows(index, refs)
        a_np, decays = self._tails(step + 1)
        b1, b2 = group["betas"]
        _catch_up_batch_rows(
            self.slab, refs, self.ref_off, self.ref_width, groups, self.mark, uniq, inv, counts, skip, step, c, a_np,
            decays, group["lr"], group["eps"], vals, g_vals,
        )  # fmt: skip
        terms = prog.run(index, refs, vals, inv, g_vals, batch_total)
        if reduce is not None and self.dense:  # (a frozen model's fixed weights: nothing to sum)
            reduce(prog.dense_flat)
        for p in params:
            d.state[p]["step"] += 1
        keras = group.get("eps_mode", "torch") == "keras"
        lo, hi = self.map_rows
        held = self._held()
        if self.full:  # the exact whole-map priors at the values before the step, then Adam on every SIC row
            for name, value in prog.map_priors(self.slab[lo:hi, 0], self.g_map).items():
                terms[self.names.index(name)] += value
            _full_map_adam(
                self.slab, lo, hi - lo, self.mark, g_vals, self.g_map, step + 1, c, b1, b2, group["lr"],
                group["eps"], keras, held, NCHUNK_MAP,
            )  # fmt: skip
        _adam_rows(
            self.slab, uniq, counts, g_vals, self.mark, self.row_width, step + 1, c, b1, b2, group["lr"], group["eps"],
            keras, lo, hi, held, NCHUNK_MAP,
        )  # fmt: skip
        if self.dense:  # (none: a frozen model's fixed weights; their gradients are left unused)
            _adam_dense_all(
                self._dense_p, prog.dense_flat, self._dense_m, self._dense_v, self._dense_step, self._dense_hyper()
            )
        for dgroup, st, *_ in self.dense:
            if "keras_eps" in dgroup:  # KerasEpsilonAdam: Keras' epsilon placement, the eps of this step
                dgroup["eps"] = dgroup["keras_eps"] / math.sqrt(1.0 - dgroup["betas"][1] ** float(st["step"]))
        self._steps += 1
        return np.append(terms, terms.sum())


def build_fused_step(network, data, optimizers, nobs_total: int, device: torch.device) -> tuple[FusedStep | None, str]:
    """A :class:`FusedStep` for this trainer's network, data and optimisers, or ``(None, reason)``."""
    if not HAVE_NUMBA:
        return None, "numba is not installed"
    if device.type != "cpu":
        return None, f"no fused step on {device.type} (CPU only)"
    make = getattr(network, "fused_program", None)
    if make is None:
        return None, f"{type(network).__name__} has no fused program"
    deferred = [o for o in optimizers if isinstance(o, DeferredAdam)]
    dense = [o for o in optimizers if not isinstance(o, DeferredAdam)]
    if len(deferred) != 1 or len(dense) > 1 or len(deferred[0].param_groups) != 1:
        return None, "the fused step needs the deferred-adam optimiser scheme (DeferredAdam + Adam)"
    dopt = dense[0] if dense else None  # None: the dense weights are fixed (a frozen model: no optimiser)
    if dopt is not None and (
        not isinstance(dopt, torch.optim.Adam)
        or any(g.get("weight_decay", 0) or g.get("amsgrad") or g.get("maximize") for g in dopt.param_groups)
    ):
        return None, "the fused step needs plain Adam on the dense weights"
    program, reason = make(data, nobs_total)
    if program is None:
        return None, reason
    ids = {id(p) for p in deferred[0].param_groups[0]["params"]}
    if {id(t) for t in program.tables} != ids:
        return None, "the optimiser's state tables are not the network's"
    if dopt is None and any(p.requires_grad for p in program.dense):
        return None, "the network's dense weights are trained but have no optimiser"
    if dopt is not None and [id(p) for g in dopt.param_groups for p in g["params"]] != [id(p) for p in program.dense]:
        return None, "the dense optimiser's parameters are not the network's dense weights, in order"
    return FusedStep(program, deferred[0], dopt), ""


def set_threads(n: int) -> None:
    """Use ``n`` threads (at most numba's maximum) in the compiled step."""
    if HAVE_NUMBA:
        numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]


__all__ = ["FusedStep", "build_fused_step", "set_threads", "HAVE_NUMBA"]
