"""The fused step's one pass over the batch's state rows (``_catch_up_batch_rows``): distinct rows found per
group of tables, each caught up as DeferredAdam does and copied out; the same slab whatever the
grouping; the Adam pass (``_adam_rows``) over the groups' segments; the grouping (``column_groups``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from empirical_seaice.training import fused_step
from empirical_seaice.training.deferred_adam import DeferredAdam

pytestmark = pytest.mark.skipif(not fused_step.HAVE_NUMBA, reason="numba is not installed")

STEP = 40
GROUPINGS = (np.array([[0, 3]]), np.array([[0, 2], [2, 3]]))  # one group; the first table, then the second
OWN_GROUPINGS = (np.array([[0, 2]]), np.array([[0, 2], [2, 2]]), np.array([[0, 2], [2, 2], [2, 2]]))
"""With column 2 the observations' own rows (``kobs``): in no group, shared out by position among one, two or
three groups (:func:`fused_step.column_groups` with ``own`` on more than one thread); in :data:`GROUPINGS`
the group that has the column takes them."""


def _case(seed: int = 5):
    """A DeferredAdam over a 1-column and a 2-column table (slab: c = 2, rows of 8 float32) whose rows
    were last stepped at random earlier steps with random moments, and a batch of 64 observations
    reading 3 rows each (column 2: each observation's own row of the second table)."""
    rng = np.random.default_rng(seed)
    a = torch.nn.Parameter(torch.zeros(300, 1))
    b = torch.nn.Parameter(torch.zeros(200, 2))
    opt = DeferredAdam([a, b], lr=0.05)
    group = opt.param_groups[0]
    slab = opt._slab(group).numpy()
    nrow = slab.shape[0]
    slab[:, 0] = rng.normal(size=nrow)
    slab[300:, 1] = rng.normal(size=200)
    slab[:, 2] = rng.normal(scale=0.1, size=nrow)
    slab[300:, 3] = rng.normal(scale=0.1, size=200)
    slab[:, 4] = rng.uniform(1e-4, 1e-2, size=nrow)
    slab[300:, 5] = rng.uniform(1e-4, 1e-2, size=200)
    slab[:, 6] = rng.integers(1, STEP, size=nrow)
    for p in (a, b):
        opt.state[p]["step"] = STEP
    nb = 64
    refs = np.stack(
        [rng.integers(0, 40, nb), rng.integers(0, 300, nb), rng.permutation(200)[:nb]], axis=1
    )  # first column: a few rows read many times
    ref_off = np.array([0, 0, 300])
    ref_width = np.array([1, 1, 2])  # column 0 and 1: the first table, 2: the second
    row_width = np.array([[0, 300, 1], [300, 500, 2]])
    return opt, group, refs, ref_off, ref_width, row_width


def _gather(slab, refs, ref_off, ref_width, groups, kobs, group, opt):
    nb, nk = refs.shape
    ng = groups.shape[0]
    mark = slab.view(np.int32)[:, -1]
    mark.fill(-1)
    uniq = np.full(ng * nb * nk, -7, dtype=np.int64)
    inv = np.empty((nb, nk), dtype=np.int64)
    vals = np.full((ng * nb * nk, 2), np.nan, dtype=np.float32)
    g_vals = np.full((ng * nb * nk, 2), np.nan)
    counts = np.zeros(ng, dtype=np.int64)
    _, a_np, decay = opt._tail(group["betas"], STEP, torch.device("cpu"), torch.float64)
    fused_step._catch_up_batch_rows(
        slab, refs, ref_off, ref_width, groups, mark, uniq, inv, counts, kobs, STEP, 2, a_np, decay.numpy(),
        group["lr"], group["eps"], vals, g_vals,
    )  # fmt: skip
    return mark, uniq, inv, vals, g_vals, counts


@pytest.mark.parametrize("kobs", [-1, 2])
def test_gather_finds_each_row_once_and_catches_it_up_as_deferred_adam(kobs):
    opt, group, refs, ref_off, ref_width, _ = _case()
    slab0 = opt._slab(group).numpy().copy()
    rows = refs + ref_off
    distinct = np.unique(rows)
    # DeferredAdam's own catch-up of the same rows (torch, float32), from the same slab
    opt.catch_up(opt.param_groups[0]["params"][0], torch.as_tensor(np.unique(refs[:, :2])))
    opt.catch_up(opt.param_groups[0]["params"][1], torch.as_tensor(np.unique(refs[:, 2])))
    expected = opt._slab(group).numpy()[:, :7].copy()
    assert not np.array_equal(expected[distinct], slab0[distinct, :7])  # the rows did move
    slabs = []
    nb = refs.shape[0]
    for groups in GROUPINGS + (OWN_GROUPINGS if kobs >= 0 else ()):
        slab = slab0.copy()
        mark, uniq, inv, vals, g_vals, counts = _gather(slab, refs, ref_off, ref_width, groups, kobs, group, opt)
        ng = groups.shape[0]
        seg = uniq.shape[0] // ng
        shared = kobs >= 0 and groups[-1, 1] <= kobs  # the own rows' column in no group
        assert counts.sum() == distinct.size  # each distinct row once
        for t, (lo, hi) in enumerate(groups):
            mine = uniq[t * seg : t * seg + counts[t]]
            own = rows[nb * t // ng : nb * (t + 1) // ng, 2] if shared else rows[:0, 2]
            # a group holds its tables' rows (and its share of the own rows, in observation order, last)
            assert np.array_equal(np.sort(mine), np.unique(np.concatenate([rows[:, lo:hi].ravel(), own])))
            assert np.array_equal(mine[mine.size - own.size :], own)
            assert np.all(uniq[t * seg + counts[t] : (t + 1) * seg] == -7)
        assert np.array_equal(uniq[inv], rows)  # every reference points at its row
        assert np.array_equal(mark[rows[:, :2]], inv[:, :2])  # the marked rows hold their index
        assert np.all(mark[rows[:, 2]] == (-1 if kobs == 2 else inv[:, 2]))  # the own rows: no mark with kobs
        np.testing.assert_allclose(slab[distinct, :7], expected[distinct], rtol=2e-6, atol=1e-7)
        assert np.all(slab[distinct, 6] == STEP)
        untouched = np.setdiff1d(np.arange(slab.shape[0]), distinct)
        assert np.array_equal(slab[untouched, :7], slab0[untouched, :7])
        w = ref_width[None, :].repeat(refs.shape[0], 0)
        assert np.array_equal(vals[inv, 0], slab[rows, 0])  # copied out
        assert np.array_equal(vals[inv[w == 2], 1], slab[rows[w == 2], 1])
        assert np.all(g_vals[inv, 0] == 0.0) and np.all(g_vals[inv[w == 2], 1] == 0.0)
        assert np.all(np.isnan(vals[inv[w == 1], 1]))  # the 1-column table's padding is left alone
        slabs.append(slab[:, :7].copy())
    for other in slabs[1:]:
        assert np.array_equal(slabs[0], other)  # the same bits for any grouping


def test_adam_pass_steps_each_row_of_every_segment_and_clears_its_mark():
    opt, group, refs, ref_off, ref_width, row_width = _case(seed=9)
    slab0 = opt._slab(group).numpy().copy()
    b1, b2 = group["betas"]
    results = []
    for groups in GROUPINGS:
        slab = slab0.copy()
        mark, uniq, inv, vals, g_vals, counts = _gather(slab, refs, ref_off, ref_width, groups, -1, group, opt)
        caught = slab.copy()
        grad = np.full_like(g_vals, np.nan)  # NaN in the padding and between the segments: never read
        seg = uniq.shape[0] // groups.shape[0]
        for p in range(groups.shape[0]):
            js = np.arange(p * seg, p * seg + counts[p])
            grad[js, 0] = np.sin(uniq[js])  # each row's gradient, wherever the row is placed
            grad[js[uniq[js] >= 300], 1] = np.cos(uniq[js][uniq[js] >= 300])
        fused_step._adam_rows(
            slab, uniq, counts, grad, mark, row_width, STEP + 1, 2, b1, b2, group["lr"], group["eps"], False, 0, 0,
            fused_step._NONE_HELD, 5,
        )  # fmt: skip
        assert np.all(mark == -1)
        # by hand, torch's Adam formula, for the first row of each segment
        for p in range(groups.shape[0]):
            j = p * seg
            row = uniq[j]
            for col in range(1 if row < 300 else 2):
                g = grad[j, col]
                m = b1 * np.float64(caught[row, 2 + col]) + (1 - b1) * g
                v = b2 * np.float64(caught[row, 4 + col]) + (1 - b2) * g * g
                bc1, bc2s = 1 - b1 ** (STEP + 1), np.sqrt(1 - b2 ** (STEP + 1))
                w = caught[row, col] - group["lr"] / bc1 * m / (np.sqrt(v) / bc2s + group["eps"])
                assert slab[row, col] == pytest.approx(w, rel=1e-6)
                assert slab[row, 2 + col] == pytest.approx(m, rel=1e-6)
            if row < 300:
                assert slab[row, 1] == 0.0 and slab[row, 3] == 0.0 and slab[row, 5] == 0.0  # padding stays 0
            assert slab[row, 6] == STEP + 1
        assert not np.isnan(slab[:, :7]).any()
        results.append(slab[:, :7])
    assert np.array_equal(results[0], results[1])  # the same bits for one group or two


@pytest.mark.parametrize(
    "ref_table, threads, expected",
    [
        ([0, 0, 1, 2], 1, [[0, 4]]),
        ([0, 0, 1, 2], 2, [[0, 2], [2, 4]]),  # the SIC lags together; the grid and the observation rows
        ([0, 0, 1, 2], 3, [[0, 2], [2, 4]]),  # a third group would not shorten the largest
        ([0, 0, 1, 1, 2, 3], 16, [[0, 2], [2, 4], [4, 6]]),  # tables whole: no group smaller than the largest table
        ([0, 0, 0, 0, 1, 2], 2, [[0, 4], [4, 6]]),
        ([0, 1], 2, [[0, 1], [1, 2]]),  # v1: the SIC lag and the grid row
        ([0], 4, [[0, 1]]),
    ],
)
def test_column_groups_keep_tables_whole_and_balance_the_columns(ref_table, threads, expected):
    assert fused_step.column_groups(np.array(ref_table), threads).tolist() == expected


@pytest.mark.parametrize(
    "ref_table, threads, expected",
    [
        ([0, 0, 1, 2], 1, [[0, 4]]),  # one thread: the own rows in the one group, as without own
        ([0, 0, 1, 2], 2, [[0, 2], [2, 3]]),  # v2: the SIC lags, the grid row; the own rows shared by both
        ([0, 0, 1, 2], 3, [[0, 2], [2, 3], [3, 3]]),  # a third thread: own rows only
        ([0, 1], 2, [[0, 1], [1, 1]]),
        ([0], 2, [[0, 0], [0, 0]]),  # the own rows only
    ],
)
def test_column_groups_share_the_own_rows_among_every_thread(ref_table, threads, expected):
    own = len(ref_table) - 1
    assert fused_step.column_groups(np.array(ref_table), threads, own).tolist() == expected
    if threads > 1:
        with pytest.raises(ValueError, match="must be the last"):
            fused_step.column_groups(np.array(ref_table + [3]), threads, own)
