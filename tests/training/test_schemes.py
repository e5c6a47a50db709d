"""training/schemes.py: the optimisers of each scheme, and the whole-map prior scheme of deferred-adam."""

from __future__ import annotations

import pytest
import torch
from training_toy import build, make_toy

from empirical_seaice.config import TrainingConfig
from empirical_seaice.errors import SeaIceError
from empirical_seaice.training.deferred_adam import DeferredAdam
from empirical_seaice.training.schemes import build_optimizers, whole_map_scheme


@pytest.mark.parametrize(
    "optimizer, sparse, kinds",
    [
        ("deferred-adam", True, [DeferredAdam, torch.optim.Adam]),
        ("sparse-adam", True, [torch.optim.SparseAdam, torch.optim.Adam]),
        ("dense-adam", False, [torch.optim.Adam]),
    ],
)
def test_build_optimizers(optimizer, sparse, kinds):
    net, _ = build(*make_toy(), sparse=sparse)
    opts = build_optimizers(net, TrainingConfig(optimizer=optimizer), 1e-2)
    assert [type(o) for o in opts] == kinds
    params = [p for o in opts for g in o.param_groups for p in g["params"]]
    assert len(params) == 3 and all(g["lr"] == 1e-2 for o in opts for g in o.param_groups)
    with pytest.raises(SeaIceError, match="built with (dense|sparse) state gradients"):
        build_optimizers(build(*make_toy(), sparse=not sparse)[0], TrainingConfig(optimizer=optimizer), 1e-2)


@pytest.mark.parametrize("optimizer, sparse", [("deferred-adam", True), ("dense-adam", False)])
def test_build_optimizers_steps_the_dense_weights_at_the_network_rate(optimizer, sparse):
    """The per-cell tables at lr, the dense weights at network_lr: two optimisers, or one dense Adam with
    two groups; the same rate twice gives dense-adam's one group (the reference's optimiser)."""
    net, _ = build(*make_toy(), sparse=sparse)
    opts = build_optimizers(net, TrainingConfig(optimizer=optimizer), 1e-2, 1e-3)
    lrs = {id(p): g["lr"] for o in opts for g in o.param_groups for p in g["params"]}
    assert all(lrs[id(p)] == 1e-2 for p in net.sparse_parameters())
    assert all(lrs[id(p)] == 1e-3 for p in net.dense_parameters()) and len(list(net.dense_parameters())) > 0
    if optimizer == "dense-adam":
        assert len(opts) == 1 and len(opts[0].param_groups) == 2
        assert len(build_optimizers(net, TrainingConfig(optimizer=optimizer), 1e-2, 1e-2)[0].param_groups) == 1


def test_whole_map_scheme_without_a_fused_program():
    """A network without a compiled program: auto takes the sampled priors and says why; full is refused."""
    net, data = build(*make_toy())
    cfg = TrainingConfig(map_priors="auto")
    opts = build_optimizers(net, cfg, 1e-2)
    chosen, fused, note = whole_map_scheme(net, data, opts, cfg, data.nobs, torch.device("cpu"), "auto", False)
    assert chosen.map_priors == "sampled" and fused is None and net.prior_mode == "sampled"
    assert note == "sampled whole-map priors (--map-priors auto: the fused step does not apply (ToyNetwork has no " \
        "fused program))"  # fmt: skip
    with pytest.raises(SeaIceError, match="runs in the fused step only, which does not apply here"):
        whole_map_scheme(net, data, opts, cfg, data.nobs, torch.device("cpu"), "full", False)
    assert net.prior_mode == "sampled"  # left as it was
    sharded = whole_map_scheme(net, data, opts, cfg, data.nobs, torch.device("cpu"), "auto", True)
    assert sharded[0].map_priors == "sampled" and "a run sharded over processes" in sharded[2]


_DYNAMO_CHECK = """
import sys
import torch
from empirical_seaice.training.adam import dense_adam, skip_dynamo_import
from empirical_seaice.training.deferred_adam import DeferredAdam
applied = skip_dynamo_import() if sys.argv[1] == "skip" else None
w, t = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(4, 2))
opts = [DeferredAdam([t], 0.1, (0.9, 0.999), 1e-7), dense_adam([w], 0.1)]
for o in opts:
    o.zero_grad()
    o.load_state_dict(o.state_dict())
print(applied, "torch._dynamo" in sys.modules, len(opts[1].state_dict()["param_groups"][0]["params"]))
"""


@pytest.mark.parametrize("mode, expected", [("skip", "True False 1"), ("torch", "None True 1")])
def test_optimisers_built_without_importing_dynamo(mode, expected):
    """Building, zeroing and checkpointing the optimisers imports ``torch._dynamo`` (over a second)
    unless :func:`skip_dynamo_import` ran first; with it the optimisers work the same."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _DYNAMO_CHECK, mode], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[-2] == expected
