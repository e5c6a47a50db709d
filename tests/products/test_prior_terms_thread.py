"""products/diagnostics.PriorTerms: the whole-map prior terms computed on a thread of their own while a
streamed pass runs equal the network's own ``full_prior_terms()`` exactly, and its error comes back in
the caller's thread."""

from __future__ import annotations

import pytest
import torch
from test_gridded import build

from empirical_seaice.products.diagnostics import PriorTerms, cost_from_sums


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_prior_terms_on_a_thread_equal_the_network_s(version):
    net, obs, _ = build(version, ("amsr2", "gmi"))
    with torch.no_grad():
        want = net.full_prior_terms()
    got = PriorTerms(net).result()
    assert set(got) == set(want) and len(want) > 1
    for name in want:
        assert torch.equal(got[name], want[name]), name
        assert not got[name].requires_grad  # computed without gradient, as the pass's cost is
    anchor = None if version == "v1" else 0.25  # v1: a term of e0; v2: the floor penalty's sum
    assert cost_from_sums(net, 12.5, anchor, obs.nobs, map_terms=got) == cost_from_sums(net, 12.5, anchor, obs.nobs)


def test_prior_terms_error_is_raised_by_result():
    class Broken:
        def full_prior_terms(self):
            raise RuntimeError("no map")

    pending = PriorTerms(Broken())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="no map"):
        pending.result()
