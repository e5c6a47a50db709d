"""The final diagnostics' one forward pass gives ``tbzero`` (the TB with SIC set to zero) beside the TB:
bit for bit what a second pass with SIC 0 gives, in the compiled pass (model/fused.py) and the tensor one."""

from __future__ import annotations

import numpy as np
import pytest
from test_fused_step import CASES, _trainer

from empirical_seaice.model.fused import simulate, simulate_range
from empirical_seaice.products import diagnostics as d


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
        assert np.array_equal(got, want)
    assert (sic > 0).any() and np.abs(tb - tb_zero).max() > 1.0  # the ice is seen, and taken away
    # the streamed pass's blocks (compiled), and the tensor forward pass's, give the same pair
    blocks = list(d.simulate_blocks(net, data, n, with_zero=True, block=128))
    assert np.array_equal(np.concatenate([s.tb_zero for _, _, s in blocks]), tb_zero)
    assert np.array_equal(np.concatenate([s.tb for _, _, s in blocks]), tb)
    net.fused_program = None  # type: ignore[method-assign,assignment]  # the tensor path
    tensor = list(d.simulate_blocks(net, data, n, with_zero=True, block=128))
    ref = d.simulate(net, data, n, zero_sic=True)
    assert np.array_equal(np.concatenate([s.tb_zero for _, _, s in tensor]), ref.tb)
