"""Adam as the references' Keras runs it (``TrainingConfig.adam_epsilon="keras"``).

The fixture holds six steps of ``tf.keras.optimizers.Adam()`` (the ``optimizer="adam"`` of
both reference training scripts) on gradients whose sizes span 1 .. 1e-9; the project's dense
Adam and its DeferredAdam, in Keras mode, follow the same trajectory, while the PyTorch
epsilon placement departs from it on the small gradients.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_reference_equivalence import FIXTURE

from empirical_seaice.errors import SeaIceError
from empirical_seaice.training.adam import dense_adam, keras_epsilon
from empirical_seaice.training.deferred_adam import DeferredAdam


@pytest.fixture(scope="module")
def adam():
    with np.load(FIXTURE) as d:
        return {k: d[k] for k in d.files if k.startswith("adam_")}


def _trajectory(make, adam, shape):
    p = torch.nn.Parameter(torch.from_numpy(adam["adam_w0"].copy()).reshape(shape))
    opt = make([p])
    out = []
    for g in adam["adam_grads"]:
        p.grad = torch.from_numpy(g.copy()).reshape(shape)
        opt.step()
        out.append(p.detach().reshape(-1).numpy().copy())
    if hasattr(opt, "flush"):
        opt.flush()
    return np.stack(out)


def test_keras_epsilon_hand_values():
    assert keras_epsilon(1e-7, 0.999, 1) == pytest.approx(1e-7 / np.sqrt(0.001))  # 3.16e-6
    assert keras_epsilon(1e-7, 0.999, 100) == pytest.approx(1e-7 / np.sqrt(1 - 0.999**100))  # 3.24e-7
    assert keras_epsilon(1e-7, 0.999, 10**6) == pytest.approx(1e-7)


@pytest.mark.parametrize("which", ["dense", "deferred"])
def test_keras_mode_follows_keras_adam(adam, which):
    assert float(adam["adam_epsilon"]) == pytest.approx(1e-7) and float(adam["adam_lr"]) == pytest.approx(1e-3)
    keras = adam["adam_traj"]
    moved = np.abs(keras - adam["adam_w0"])
    if which == "dense":

        def make(eps_mode):
            return lambda ps: dense_adam(ps, 1e-3, eps_mode)

        shape = (-1,)
    else:

        def make(eps_mode):
            return lambda ps: DeferredAdam(ps, lr=1e-3, eps_mode=eps_mode)

        shape = (-1, 1)
    ours = _trajectory(make("keras"), adam, shape)
    torch_placement = _trajectory(make("torch"), adam, shape)
    # float32: the steps agree to a few ulp of the weights (|w| ~ 0.01: ulp 1e-9)
    assert np.abs(ours - keras).max() < 2e-8 + 1e-5 * moved.max()
    # the PyTorch placement moves the 1e-7 .. 1e-9 gradients' weights much further (measured ~1e-3)
    assert np.abs(torch_placement - keras).max() > 1e-4


def test_unknown_epsilon_mode_is_an_error():
    p = [torch.nn.Parameter(torch.zeros(2, 1))]
    with pytest.raises(SeaIceError, match="adam_epsilon: expected torch or keras, got 'tf'"):
        dense_adam(p, 1e-3, "tf")
    with pytest.raises(SeaIceError, match="adam_epsilon: expected torch or keras, got 'tf'"):
        DeferredAdam(p, eps_mode="tf")
