"""DeferredAdam equals dense Adam on row tables, at O(batch) cost per step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from training_toy import build, make_toy

from empirical_seaice.config import TrainingConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.training.deferred_adam import ADAM_BETAS, ADAM_EPS, DeferredAdam
from empirical_seaice.training.trainer import Trainer


def _run_tables(nstep, nrow=50, ncol=3, touch=4, seed=0, flush_every=None):
    """The same random row gradients through DeferredAdam (sparse) and torch Adam (dense)."""
    gen = torch.Generator().manual_seed(seed)
    w0 = torch.randn(nrow, ncol, generator=gen)
    ws = torch.nn.Parameter(w0.clone())
    wd = torch.nn.Parameter(w0.clone())
    opt_s = DeferredAdam([ws], lr=1e-2)
    opt_d = torch.optim.Adam([wd], lr=1e-2, betas=ADAM_BETAS, eps=ADAM_EPS)
    for step in range(nstep):
        rows = torch.randint(0, nrow // 2, (touch,), generator=gen)  # rows >= nrow/2 are never touched
        vals = torch.randn(touch, ncol, generator=gen)
        ws.grad = torch.sparse_coo_tensor(rows[None], vals, (nrow, ncol), check_invariants=True)
        wd.grad = torch.zeros(nrow, ncol).index_add_(0, rows, vals)
        opt_s.step()
        opt_d.step()
        if flush_every and (step + 1) % flush_every == 0:
            opt_s.flush()
    return ws, wd, w0, opt_s, rows


def test_deferred_adam_equals_dense_adam():
    ws, wd, w0, opt, _ = _run_tables(300)
    # before the flush, rows not touched lately lag behind dense Adam ...
    assert (ws.detach() - wd.detach()).abs().max() > 1e-3
    opt.flush()
    # ... after it, every row equals dense Adam's (float32 rounding; eps only in the deferred steps)
    np.testing.assert_allclose(ws.detach().numpy(), wd.detach().numpy(), rtol=0, atol=1e-5)
    moved = (wd.detach() - w0).abs()
    assert moved[:25].min() > 1e-3 and moved[25:].max() == 0.0  # it was a real test: rows moved, untouched ones not
    st = opt.state[ws]
    assert st["step"] == 300 and int(st["last_step"].min()) == 0 and int(st["last_step"][:25].min()) == 300


def test_deferred_adam_flush_is_transparent():
    """Flushing in between (as the trainer does at each epoch end) changes nothing."""
    a, _, _, _, _ = _run_tables(200, flush_every=None)
    b, _, _, opt_b, _ = _run_tables(200, flush_every=37)
    _, _, _, opt_a, _ = _run_tables(200, flush_every=None)
    opt_b.flush()
    a2, _, _, opt_a2, _ = _run_tables(200)
    opt_a2.flush()
    np.testing.assert_allclose(a2.detach().numpy(), b.detach().numpy(), rtol=0, atol=1e-6)


def test_whole_table_catch_up_in_row_blocks_is_bit_identical(monkeypatch):
    """flush catches a table up block by block (bounded temporaries): the same bits as in one go."""
    one, _, _, opt_one, _ = _run_tables(120, nrow=400, touch=30)
    monkeypatch.setattr(DeferredAdam, "CATCH_UP_ROWS", 7)  # many blocks, the last one short
    blocks, _, _, opt_blocks, _ = _run_tables(120, nrow=400, touch=30)
    lagging = (opt_one.state[one]["last_step"] < 120).sum()
    assert lagging > 7 * 3  # several blocks of rows to catch up
    opt_one.flush()
    opt_blocks.flush()
    assert torch.equal(opt_one.state[one]["slab"], opt_blocks.state[blocks]["slab"])


def test_deferred_adam_dense_gradient_and_no_gradient():
    """A dense gradient counts as touching every row: then it is exactly Adam."""
    w0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    ws, wd = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    opt_s, opt_d = DeferredAdam([ws], lr=0.1), torch.optim.Adam([wd], lr=0.1, betas=ADAM_BETAS, eps=ADAM_EPS)
    for i in range(5):
        g = torch.full((6, 2), float(i - 2))
        ws.grad, wd.grad = g.clone(), g.clone()
        opt_s.step()
        opt_d.step()
    ws.grad = None
    opt_s.step()  # no gradient: the step count still advances (it is a global step)
    assert opt_s.state[ws]["step"] == 6
    wd.grad = torch.zeros(6, 2)
    opt_d.step()
    opt_s.flush()
    np.testing.assert_allclose(ws.detach().numpy(), wd.detach().numpy(), rtol=0, atol=1e-6)


def test_trainer_sparse_equals_dense_adam_on_toy():
    """Same gradients (the toy's prior sampled in both), only the optimiser differs:
    the trainer's sparse scheme ends where plain dense Adam ends."""
    row, x, y = make_toy(nobs=300)
    nets = {}
    for opt in ("sparse", "dense"):
        net, data = build(row, x, y, sparse=opt == "sparse", prior_mode="sampled")
        cfg = TrainingConfig(nepochs=4, batch_size=16, learning_rate=0.01, optimizer=opt, seed=2)
        Trainer(net, data, cfg, np.arange(300), None, 300, progress=False).fit()
        nets[opt] = net
    a, b = nets["sparse"].table.weight.detach(), nets["dense"].table.weight.detach()
    assert b.abs().max() > 0.2  # the table really moved
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(nets["sparse"].w.detach().numpy(), nets["dense"].w.detach().numpy(), atol=1e-5)


def test_own_storage_frees_the_slab_and_keeps_values():
    """After training the run gives each state table its own storage (training.runtime.own_storage):
    the values stay, the slab (parameter and moments side by side) is no longer held by the table."""
    import gc
    import weakref

    from empirical_seaice.training.runtime import own_storage

    ws, _, _, opt, _ = _run_tables(50, nrow=40, ncol=3)
    opt.flush()
    before = ws.detach().clone()
    slab_bytes = ws.untyped_storage().nbytes()
    assert slab_bytes > ws.numel() * ws.element_size()  # a view into the slab
    module = torch.nn.Module()
    module.w = ws
    slab_ref = weakref.ref(opt.state[ws]["slab"])
    assert own_storage(module) == 1
    assert ws.untyped_storage().nbytes() == ws.numel() * ws.element_size()
    assert torch.equal(ws.detach(), before)
    assert own_storage(module) == 0
    del opt
    gc.collect()
    assert slab_ref() is None  # nothing holds the slab any more


def test_slab_takes_the_tables_one_by_one(monkeypatch):
    """The first step builds the slab table by table: each table's values in its rows, the moments and
    steps zero, the table a view of the slab, and its own storage gone before the next table moves in
    (the slab and every table's old storage are never all held at once)."""
    import gc
    import weakref

    gen = torch.Generator().manual_seed(3)
    tables = [torch.nn.Parameter(torch.randn(n, c, generator=gen)) for n, c in ((30, 1), (20, 2), (25, 1))]
    values = [t.detach().clone() for t in tables]
    old = [weakref.ref(t.untyped_storage()) for t in tables]
    alive = []
    opt = DeferredAdam(tables, lr=1e-2)
    attach = DeferredAdam._attach_table

    def spy(self, group, slab, p):
        gc.collect()
        alive.append([ref() is not None for ref in old])
        attach(self, group, slab, p)

    monkeypatch.setattr(DeferredAdam, "_attach_table", spy)
    slab = opt._slab(opt.param_groups[0])
    assert alive == [[True, True, True], [False, True, True], [False, False, True]]
    gc.collect()
    assert [ref() for ref in old] == [None, None, None]
    assert slab.shape == (75, 8)
    # on a cache line (compiled.empty_huge): its 32-byte rows never straddle two (each would cost two misses)
    assert slab.data_ptr() % 64 == 0
    offset = 0
    for t, v in zip(tables, values, strict=True):
        n, c = v.shape
        assert torch.equal(slab[offset : offset + n, :c], v) and not slab[offset : offset + n, c:].any()
        assert t.untyped_storage().data_ptr() == slab.untyped_storage().data_ptr() and torch.equal(t.detach(), v)
        offset += n


def test_a_loaded_slab_starts_on_a_cache_line():
    """A checkpoint's slab (torch.load's own storage, at any address) is copied into a new aligned slab,
    with its values, so a resumed run's rows do not straddle cache lines either."""
    ws, _, _, opt, _ = _run_tables(20)
    saved = opt.state_dict()
    p = torch.nn.Parameter(ws.detach().clone())
    again = DeferredAdam([p], lr=1e-2)
    again.load_state_dict(saved)
    slab = again.state[p]["slab"]
    assert slab.data_ptr() % 64 == 0 and torch.equal(slab, opt.state[ws]["slab"])


def test_gradients_handed_to_gathered_rows_equal_autograds():
    """``set_gathered_gradients`` (the GPU's step, whose kernel computes its gradients itself) gives each
    group's caught-up rows the bits that the backward pass through ``gather`` gives them: two groups,
    a group of two tables of 1 and 2 columns, rows read many times over (lag windows), over three steps
    of Adam; a call without a gather of the same step is refused."""
    gen = torch.Generator().manual_seed(5)

    def tables():
        g = torch.Generator().manual_seed(1)
        return [torch.nn.Parameter(torch.randn(n, c, generator=g)) for n, c in ((40, 1), (30, 2), (20, 2))]

    runs = []
    for by_hand in (False, True):
        params = tables()
        opt = DeferredAdam([{"params": params[:2]}, {"params": params[2:]}], lr=1e-2)
        gen.manual_seed(5)
        for _ in range(3):
            reads = [(params[0], torch.randint(0, 8, (64, 3), generator=gen))]  # 64 reads of 3 lags, 8 rows
            reads += [(params[1], torch.randint(0, 30, (64,), generator=gen))]
            reads += [(params[2], torch.randint(0, 5, (64,), generator=gen))]
            grads = [torch.randn(*r.shape, p.shape[1], generator=gen) for p, r in reads]
            values = opt.gather(reads)
            if by_hand:
                with torch.no_grad():
                    opt.set_gathered_gradients(reads, grads)
            else:
                sum((v * g).sum() for v, g in zip(values, grads, strict=True)).backward()
            opt.step()
        runs.append([p.detach().clone() for p in params])
        with pytest.raises(SeaIceError, match="without a gather"):
            opt.set_gathered_gradients(reads, grads)
    for autograd, by_hand in zip(*runs, strict=True):
        assert torch.equal(autograd, by_hand)
    assert float((runs[0][0] - tables()[0].detach()).abs().max()) > 1e-2  # they moved
