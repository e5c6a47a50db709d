"""The final diagnostics' one forward pass gives ``tbzero`` (the TB with SIC set to zero) beside the TB:
bit for bit what a second pass with SIC 0 gives, in the compiled pass (model/fused.py) and the tensor one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_fused_step import CASES, _trainer, step_case

from empirical_seaice.model.fused import simulate, simulate_range
from empirical_seaice.model.tensors import ObservationBlocks
from empirical_seaice.products import diagnostics as d


def _eq(a, b) -> bool:
    """The same values, NaN where both are (the channels an observation's sensor lacks)."""
    return np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("case", ["v2", "v1", "v2-amsr2-atms-angle-anchor-frequency"])
def test_one_pass_gives_the_zero_sic_tb_of_a_second_pass(case):
    kw = {k: v for k, v in CASES[case].items() if k in ("model_kw", "cost_kw", "warm", "sensors")}
    t = _trainer(True, nepochs=1, **kw)
    t.fit()
    net, data = t.network, t.data
    program, reason = net.fused_program(data, data.nobs, training=False)
    assert program is not None, reason
    n = data.nobs
    tb, emis, sic, anchor = simulate(program, n)
    tb_zero = simulate(program, n, zero_sic=True)[0]
    both = simulate_range(program, 0, n, zero_sic="both", chunk=150)  # several chunks
    for got, want in zip(both, (tb, emis, sic, anchor, tb_zero), strict=True):
        assert _eq(got, want)
    assert (sic > 0).any() and np.nanmax(np.abs(tb - tb_zero)) > 1.0  # the ice is seen, and taken away
    # the streamed pass's blocks (compiled), and the tensor forward pass's, give the same pair
    blocks = list(d.simulate_blocks(net, data, n, with_zero=True, block=128))
    assert _eq(np.concatenate([s.tb_zero for _, _, s in blocks]), tb_zero)
    assert _eq(np.concatenate([s.tb for _, _, s in blocks]), tb)
    # the final pass packs one block at a time (ObservationBlocks): the same tables and simulation
    obs = step_case(kw.get("model_kw"), kw.get("cost_kw"), kw.get("warm", False), kw.get("sensors", ("amsr2",)))[0]
    packed = ObservationBlocks(obs)
    part = packed.block(128, 256)
    assert part.row0 == 128 and part.batch(torch.tensor([0, 5])).iobs.tolist() == [128, 133]
    assert torch.equal(part.floats, data.floats[128:256]) and torch.equal(part.ints, data.ints[128:256])
    by_block = list(d.simulate_blocks(net, packed, n, with_zero=True, block=128))  # 128, 128, 128, 16
    for name, want in (("tb", tb), ("emis_ice", emis), ("sic", sic), ("emis_anchor", anchor), ("tb_zero", tb_zero)):
        assert _eq(np.concatenate([getattr(s, name) for _, _, s in by_block]), want), name
    net.fused_program = None  # type: ignore[method-assign,assignment]  # the tensor path
    tensor = list(d.simulate_blocks(net, data, n, with_zero=True, block=128))
    ref = d.simulate(net, data, n, zero_sic=True)
    assert _eq(np.concatenate([s.tb_zero for _, _, s in tensor]), ref.tb)
    tensor_blocks = list(d.simulate_blocks(net, packed, n, with_zero=True, block=128))
    for name in ("tb", "emis_ice", "sic", "tb_zero"):
        got = np.concatenate([getattr(s, name) for _, _, s in tensor_blocks])
        assert _eq(got, np.concatenate([getattr(s, name) for _, _, s in tensor])), name


def test_blocks_of_given_ranges_are_those_rows_of_the_whole_pass():
    """``simulate_blocks(ranges=...)`` (a sharded run's rank simulating its part of each of the run's blocks):
    each block, in the order given (not consecutive, not from the first row, one of a single row), is the
    rows of the whole pass (bit for bit in the compiled pass; to float32 rounding through the tensor forward
    pass, whose batched kernels round by the batch's size), from the packed table and from one block's table
    at a time; an empty block or one outside the observations is refused."""
    kw = {k: v for k, v in CASES["v2"].items() if k in ("model_kw", "cost_kw", "warm", "sensors")}
    t = _trainer(True, nepochs=1, **kw)
    t.fit()
    net, data, n = t.network, t.data, t.data.nobs
    ranges = [(n - 90, n - 7), (10, 140), (3, 4), (n - 1, n)]
    obs = step_case(kw.get("model_kw"), kw.get("cost_kw"), kw.get("warm", False), kw.get("sensors", ("amsr2",)))[0]
    names = ("tb", "emis_ice", "sic", "emis_anchor", "tb_zero")
    for compiled in (True, False):
        if not compiled:
            net.fused_program = None  # type: ignore[method-assign,assignment]  # the tensor path
        whole = d.simulate(net, data, n)
        whole.tb_zero = d.simulate(net, data, n, zero_sic=True).tb
        for source in (data, ObservationBlocks(obs)):
            got = list(d.simulate_blocks(net, source, n, with_zero=True, ranges=ranges))
            assert [(a, b) for a, b, _ in got] == ranges
            for (a, b), (_, _, sim) in zip(ranges, got, strict=True):
                for name in names:
                    want, have = getattr(whole, name), getattr(sim, name)
                    if want is None:
                        continue
                    where = (compiled, type(source).__name__, name)
                    assert have.shape == want[a:b].shape, where
                    if compiled:  # bit for bit
                        assert _eq(have, want[a:b]), where
                    else:  # torch's batched kernels round by the batch's size: to a float32 ulp or two
                        np.testing.assert_allclose(have, want[a:b], rtol=3e-7 * 4, atol=0, err_msg=str(where))
    for bad in ([(5, 5)], [(0, n + 1)], [(-1, 3)]):
        with pytest.raises(ValueError, match="a block empty or outside"):
            next(d.simulate_blocks(net, data, n, ranges=bad))
