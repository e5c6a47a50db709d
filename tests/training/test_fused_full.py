"""The fused step with the exact whole-map priors at every step ("full") is the reference's scheme.

``deferred-adam`` + ``--map-priors full`` in the fused step (the whole SIC map stepped at every
step, the other state rows deferred) against the tensor ``dense-adam --map-priors full`` (plain
Adam over every table, the priors over the whole map by autograd): the same parameters after
100 steps to float32 rounding; reproducible bit for bit; ``--map-priors auto`` on both sides of
its threshold.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
from hybrid_case import assert_trained_alike, parameters, step_case
from test_fused_step import CASES

from empirical_seaice.config import TrainingConfig, choose_map_priors
from empirical_seaice.config import schema as config_module
from empirical_seaice.errors import SeaIceError
from empirical_seaice.model.operator import HybridNetwork, ObservationTensors
from empirical_seaice.training import adam as adam_module
from empirical_seaice.training import fused_step
from empirical_seaice.training import schemes as schemes_module
from empirical_seaice.training.fused_step import FusedStep
from empirical_seaice.training.runtime import make_generator
from empirical_seaice.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not fused_step.HAVE_NUMBA, reason="numba is not installed")


def _trainer(scheme, model_kw=None, cost_kw=None, eps="torch", warm=False, nepochs=4, sensors=("amsr2",), **cfg_kw):
    """Tiny hybrid case, batch 16, 100 steps in 4 epochs. ``scheme``: "tensor" (dense-adam, full
    priors, the tensor step: the reference's way), "fused" (deferred-adam, full priors, fused
    step) or "auto" (deferred-adam, --map-priors auto, fused step)."""
    obs, bg, model, cost, counts = step_case(model_kw, cost_kw, warm, sensors)
    dense = scheme == "tensor"
    net = HybridNetwork(
        model,
        cost,
        obs.basis,
        bg,
        obs.nobs,
        row_counts=counts,
        sparse=not dense,
        prior_mode="sampled" if scheme == "auto" else "full",
        generator=make_generator(3),
    )
    cfg = TrainingConfig(
        nepochs=nepochs,
        batch_size=16,
        learning_rate=1e-2,
        network_learning_rate=cfg_kw.pop("network_learning_rate", 1e-2),
        fused_step=cfg_kw.pop("fused_step", not dense),
        adam_epsilon=eps,
        optimizer="dense-adam" if dense else "deferred-adam",
        map_priors={"tensor": "full", "fused": "full", "auto": "auto"}[scheme],
        **cfg_kw,
    )
    return Trainer(net, ObservationTensors(obs), cfg, np.arange(obs.nobs), None, obs.nobs, progress=False)


OBS_PROPERTIES = "state.props_obs.weight"
CASES = {
    **CASES,
    # the SIC smoothness prior over the 2 x 2 grid and consecutive days (the whole-map pass's neighbours)
    "v2-smoothness": dict(cost_kw=dict(sic_smoothness_error=0.1, sic_smoothness_time_error=0.2)),
}
EQUAL_CASES = [
    ("v2", 1e-13),
    ("v2-anchor-frequency-priors-warm", 1e-13),
    ("v1", 1e-13),
    ("v2-keras-epsilon-diagnostic-warm", 1e-7),
    ("v2", 1e-7),
    ("v2-amsr2-atms-angle", 1e-13),
    ("v2-smoothness", 1e-13),
]


@pytest.mark.parametrize(("case", "eps"), EQUAL_CASES)
def test_fused_full_priors_equal_dense_adam_full_priors_after_100_steps(case, eps, monkeypatch):
    """Every parameter to float32 rounding (2e-5 after 100 steps at lr 1e-2). With Adam's eps 1e-7
    in torch's placement (the last case) the observation properties differ more: each is read once
    per epoch, and the deferred steps between two reads (the state rows other than the SIC map stay
    deferred, as in the default scheme) leave out eps, which matters for their tiny gradients
    (2.2e-4 on values of 0.24 here, and through them 4.5e-5 on network weights of up to 1.6); with
    eps 1e-13, or in Keras' placement, they agree to float32 rounding too."""
    monkeypatch.setattr(schemes_module, "ADAM_EPS", eps)
    monkeypatch.setattr(adam_module, "ADAM_EPS", eps)
    eps_tails = eps > 1e-10 and CASES[case].get("eps", "torch") == "torch"
    kw = CASES[case]
    tensor, fused = _trainer("tensor", **kw), _trainer("fused", **kw)
    start = parameters(tensor)
    h_tensor, h_fused = tensor.fit(), fused.fit()
    assert isinstance(fused._fused, FusedStep) and fused._fused.full and fused._fused._steps == 100
    assert tensor._fused is None  # the tensor step

    def tolerance(name, value):
        if eps_tails:
            return 5e-4 if name == OBS_PROPERTIES else 1e-4  # measured 2.2e-4 and 4.5e-5
        return 2e-5 + 2e-7 * value.abs().max().item()

    assert_trained_alike(tensor, fused, start, h_tensor, h_fused, warm=kw.get("warm", False), tolerance=tolerance)


def test_smoothness_prior_moves_the_map():
    """The smoothness term is in the step's cost and makes the map smoother than without it."""
    smooth = _trainer("fused", nepochs=1, **CASES["v2-smoothness"])
    plain = _trainer("fused", nepochs=1)
    h = smooth.fit()
    plain.fit()
    assert h.epoch_terms[-1]["sic_smoothness"] > 0.0
    sic = parameters(smooth)["state.sic_map.weight"].view(4, 6)
    sic_plain = parameters(plain)["state.sic_map.weight"].view(4, 6)
    assert (sic - sic_plain).abs().max().item() > 1e-3

    # smoother: the neighbour differences of the map (2 x 2 grid, consecutive days) are smaller
    def roughness(c):
        return ((c[0] - c[1]) ** 2 + (c[2] - c[3]) ** 2 + (c[0] - c[2]) ** 2 + (c[1] - c[3]) ** 2).sum() + (
            (c[:, 1:] - c[:, :-1]) ** 2
        ).sum()

    assert roughness(sic).item() < roughness(sic_plain).item()


def test_sampled_priors_run_without_the_smoothness_prior_and_say_so(monkeypatch, caplog):
    """Above the threshold --map-priors auto samples the priors, which have no neighbours: the run goes on
    without the smoothness prior (as without the flag, bit for bit) and logs one note."""
    monkeypatch.setattr(config_module, "FULL_PRIORS_MAX_SIC_ROWS", 10)
    with caplog.at_level(logging.WARNING, logger="empirical_seaice"):
        smooth = _trainer("auto", nepochs=1, **CASES["v2-smoothness"])
        h = smooth.fit()
    plain = _trainer("auto", nepochs=1)
    plain.fit()
    assert smooth.network.prior_mode == "sampled" and "sic_smoothness" not in h.epoch_terms[-1]
    assert caplog.text.count("SIC smoothness prior off in this run") == 1
    for name, value in parameters(plain).items():
        assert torch.equal(value, parameters(smooth)[name]), name


def test_fused_full_priors_differ_from_sampled():
    """The scheme matters (the reason it exists): the same case with sampled priors ends elsewhere."""
    full = _trainer("fused", nepochs=1)
    full.fit()
    sampled = _trainer("auto", nepochs=1)
    sampled.network.prior_mode = "sampled"
    sampled.config = replace(sampled.config, map_priors="sampled")
    sampled._fused = None
    sampled.fit()
    d = (parameters(full)["state.sic_map.weight"] - parameters(sampled)["state.sic_map.weight"]).abs().max().item()
    assert d > 1e-3


def test_fused_full_priors_reproducible_bit_for_bit_and_thread_count_free():
    runs = []
    before = torch.get_num_threads()
    for threads, reproducible in ((1, False), (2, False), (1, True)):
        torch.set_num_threads(1)
        t = _trainer("fused", nepochs=2, reproducible=reproducible)
        torch.set_num_threads(threads)
        try:
            t.fit()
        finally:
            torch.set_num_threads(before)
        assert t._fused.full
        runs.append(parameters(t))
    torch.set_num_threads(1)
    for other in runs[1:]:
        for name, value in runs[0].items():
            assert torch.equal(value, other[name]), name


@pytest.mark.parametrize("limit", [10_000_000, 10])
def test_auto_takes_full_below_the_threshold_and_sampled_above(limit, monkeypatch, caplog):
    monkeypatch.setattr(config_module, "FULL_PRIORS_MAX_SIC_ROWS", limit)
    with caplog.at_level(logging.INFO, logger="empirical_seaice"):
        t = _trainer("auto", nepochs=1)
    rows = t.network.state.sic_map.weight.shape[0]
    expected = "full" if rows <= limit else "sampled"
    assert t.config.map_priors == expected and t.network.prior_mode == expected
    assert t.map_priors_note.startswith(f"{expected} whole-map priors (--map-priors auto: {rows:,} SIC-map rows")
    assert "\n" not in t.map_priors_note and t.map_priors_note in caplog.text
    t.fit()
    assert isinstance(t._fused, FusedStep) and t._fused.full == (expected == "full")
    ref = _trainer("fused" if expected == "full" else "auto", nepochs=1)
    if expected == "sampled":
        ref.network.prior_mode = "sampled"
        ref.config = replace(ref.config, map_priors="sampled")
    ref.fit()
    for name, value in parameters(ref).items():
        assert torch.equal(value, parameters(t)[name]), name


def test_auto_takes_full_priors_with_the_view_angle_input():
    """The view-angle input no longer sends --map-priors auto to the sampled priors."""
    t = _trainer("auto", nepochs=1, **CASES["v2-amsr2-atms-angle"])
    assert t.network.emissivity.angle_input
    assert t.config.map_priors == "full" and t.network.prior_mode == "full"
    assert t.map_priors_note.startswith("full whole-map priors")


def test_auto_falls_back_to_sampled_without_the_fused_step_and_full_refuses():
    t = _trainer("auto", nepochs=1, fused_step=False)
    assert t.config.map_priors == "sampled" and "--unfused-step" in t.map_priors_note
    with pytest.raises(SeaIceError, match="--map-priors full with --optimizer deferred-adam"):
        _trainer("fused", nepochs=1, fused_step=False)


def test_choose_map_priors_threshold():
    limit = config_module.FULL_PRIORS_MAX_SIC_ROWS
    assert choose_map_priors(limit)[0] == "full"
    assert choose_map_priors(limit + 1)[0] == "sampled"
    assert choose_map_priors(10, "numba is not installed") == (
        "sampled",
        "the fused step does not apply (numba is not installed)",
    )


def test_held_rows_stay_put_under_the_whole_map_priors():
    """The whole-map pass steps every SIC row at every step, but not the rows the optimiser holds (a
    region's early stop): grid point 2's rows (every column) end as they started, the other points'
    moved (the exact priors run in the fused step only)."""
    from test_fused_step import _hold_grid_point

    trainer = _trainer("fused")
    start = parameters(trainer)
    held = _hold_grid_point(trainer, 2)
    trainer.fit()
    assert isinstance(trainer._fused, FusedStep) and trainer._fused.full
    sic = trainer.network.state.sic_map.weight.detach()[:, 0]
    rows = held[0][1]
    others = np.setdiff1d(np.arange(sic.numel()), rows.numpy())
    assert torch.equal(sic[rows], start["state.sic_map.weight"][rows, 0])
    assert (sic[others] - start["state.sic_map.weight"][others, 0]).abs().min().item() > 1e-4
