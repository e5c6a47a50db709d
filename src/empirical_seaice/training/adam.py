"""Adam for the dense weights (emissivity model, wind correction, biases) with the reference's settings.

Keras defaults of the reference: lr 1e-3, betas (0.9, 0.999), ``eps = 1e-7``; the epsilon
enters after the bias correction (PyTorch's placement, ``"torch"``) or before it, as in
Keras (``"keras"``, :class:`KerasEpsilonAdam`). The state tables use
:class:`~empirical_seaice.training.deferred_adam.DeferredAdam`.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from empirical_seaice.errors import SeaIceError

ADAM_BETAS = (0.9, 0.999)
"""Keras-default Adam betas (the reference's optimiser)."""
ADAM_EPS = 1e-7
"""Keras-default Adam epsilon (PyTorch's default is 1e-8)."""


def keras_epsilon(eps: float, beta2: float, step: int) -> float:
    """PyTorch-convention Adam epsilon equal to Keras' ``eps`` at ``step`` (1-based):
    ``eps / sqrt(1 - beta2^step)`` (dimensionless like the update's denominator's units)."""
    return float(eps / np.sqrt(1.0 - beta2**step))


class KerasEpsilonAdam(torch.optim.Adam):
    """torch Adam whose epsilon enters as in Keras (before the bias correction of ``v``).

    Before step ``t`` every group's ``eps`` is set to :func:`keras_epsilon` of the Keras
    epsilon (kept as the group's ``keras_eps``); ``t`` is the group's step count + 1 (Keras'
    global iteration counter), so it is exact when every parameter gets a gradient at every
    step (dense training), and it survives a checkpoint (the step counts are Adam's state).
    """

    def __init__(self, params, lr: float = 1e-3, betas=ADAM_BETAS, eps: float = ADAM_EPS, **kw):
        super().__init__(params, lr=lr, betas=betas, eps=eps, **kw)
        for group in self.param_groups:
            group["keras_eps"] = float(eps)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            done = max((int(self.state[p]["step"]) for p in group["params"] if "step" in self.state[p]), default=0)
            group["eps"] = keras_epsilon(group["keras_eps"], group["betas"][1], done + 1)
        return super().step(closure)


def skip_dynamo_import() -> bool:
    """Keep building and checkpointing torch's optimisers from importing ``torch._dynamo`` (1.0-1.4 s
    and as many CPU-s at a run's first optimiser, as long as importing torch itself); returns
    whether it applied.

    torch wraps four :class:`torch.optim.Optimizer` methods (``add_param_group``, ``state_dict``,
    ``load_state_dict``, ``zero_grad``) in ``torch._disable_dynamo``, which imports
    ``torch._dynamo`` at the first call only to mark the method as not to be traced by
    ``torch.compile``, and caches the marked method on the function as ``__dynamo_disable``.
    Nothing here is traced by ``torch.compile``, so the unmarked method goes in that cache instead:
    the same calls, no import. torch's own ``step`` still imports it (the unfused steps); the
    fused step (:mod:`empirical_seaice.training.fused_step`) never calls it. Does nothing once
    ``torch._dynamo`` is imported, or for a method another torch does not wrap that way.
    """
    if "torch._dynamo" in sys.modules:
        return False
    opt = torch.optim.Optimizer
    applied = False
    for method in (opt.add_param_group, opt.state_dict, opt.load_state_dict, opt.zero_grad):
        fn = getattr(method, "__wrapped__", None)
        torchs = method.__code__.co_filename.endswith("_compile.py")  # torch._disable_dynamo's wrapper
        if torchs and fn is not None and getattr(fn, "__dynamo_disable", None) is None:
            fn.__dynamo_disable = fn
            applied = True
    return applied


def dense_adam(params: list, lr: float, eps_mode: str = "torch") -> torch.optim.Adam:
    """torch Adam with Keras betas/eps, fused (one kernel for all tensors; CPU and CUDA);
    ``eps_mode="keras"``: :class:`KerasEpsilonAdam` (Keras' epsilon placement). ``params``: the
    parameters, or parameter groups (dicts, each with its own ``lr``)."""
    if eps_mode == "keras":
        return KerasEpsilonAdam(params, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS, fused=True)
    if eps_mode != "torch":
        raise SeaIceError(f"adam_epsilon: expected torch or keras, got {eps_mode!r}")
    return torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS, fused=True)


__all__ = ["ADAM_BETAS", "ADAM_EPS", "keras_epsilon", "KerasEpsilonAdam", "dense_adam", "skip_dynamo_import"]
