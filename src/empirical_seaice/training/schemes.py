"""The trainer's optimiser schemes: which optimisers step which parameters, and the whole-map priors.

:func:`build_optimizers` builds the optimisers of ``TrainingConfig.optimizer`` over the
parameters the network hands out (``sparse_parameters``: the state tables;
``dense_parameters``: the small dense weights):

- ``"deferred-adam"``: :class:`~empirical_seaice.training.deferred_adam.DeferredAdam` on the
  state tables (dense Adam's updates at O(batch) per step), torch Adam on the dense weights;
- ``"sparse-adam"``: torch SparseAdam on the state tables, torch Adam on the dense weights;
- ``"dense-adam"``: one torch Adam over everything (the reference's way).

:func:`whole_map_scheme` resolves ``deferred-adam`` with the exact whole-map priors at every
step (``map_priors="full"``, the reference's scheme), which only the fused step
(:mod:`empirical_seaice.training.fused_step`) runs, and ``map_priors="auto"``, which takes it
where the fused step applies and the map is small enough
(:func:`~empirical_seaice.config.choose_map_priors`), the sampled priors otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import torch

from empirical_seaice.config import TrainingConfig, choose_map_priors
from empirical_seaice.errors import SeaIceError
from empirical_seaice.training.adam import ADAM_BETAS, ADAM_EPS, dense_adam, skip_dynamo_import
from empirical_seaice.training.deferred_adam import DeferredAdam
from empirical_seaice.training.fused_step import FusedStep, build_fused_step

logger = logging.getLogger(__name__)


def build_optimizers(
    network: Any, cfg: TrainingConfig, lr: float, network_lr: float | None = None
) -> list[torch.optim.Optimizer]:
    """The optimisers of ``cfg.optimizer`` over ``network``'s parameters: the per-cell tables at
    learning rate ``lr``, the dense weights at ``network_lr`` (None: ``lr``) (the deferred or sparse
    optimiser first, then the dense weights' Adam; one Adam with the two groups for ``dense-adam``).
    A network built with the other kind of state gradients is a one-line error."""
    network_lr = lr if network_lr is None else network_lr
    skip_dynamo_import()
    sparse_params = list(network.sparse_parameters())
    dense_params = list(network.dense_parameters())
    net_sparse = network.sparse
    if cfg.optimizer in ("deferred-adam", "sparse-adam"):
        if net_sparse is False:
            raise SeaIceError(
                f"optimizer {cfg.optimizer!r}: the network was built with dense state gradients (sparse=False); "
                "build it with sparse=True or use optimizer 'dense-adam'"
            )
        opts: list[torch.optim.Optimizer] = []
        if sparse_params:
            if cfg.optimizer == "deferred-adam":
                opts.append(DeferredAdam(sparse_params, lr, ADAM_BETAS, ADAM_EPS, eps_mode=cfg.adam_epsilon))
            else:
                opts.append(torch.optim.SparseAdam(sparse_params, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS))
        if dense_params:
            opts.append(dense_adam(dense_params, network_lr, cfg.adam_epsilon))
        return opts
    # dense-adam: plain Adam over everything (the reference's way)
    if net_sparse is True:
        raise SeaIceError(
            "optimizer 'dense-adam': the network was built with sparse state gradients (sparse=True); "
            "build it with sparse=False or use optimizer 'deferred-adam' or 'sparse-adam'"
        )
    groups = [{"params": p, "lr": r} for p, r in ((sparse_params, lr), (dense_params, network_lr)) if p]
    if len(groups) == 2 and network_lr == lr:  # one group: the reference's optimiser as it is
        groups = [{"params": sparse_params + dense_params, "lr": lr}]
    return [dense_adam(groups, lr, cfg.adam_epsilon)]


def whole_map_scheme(
    network: Any,
    data: Any,
    optimizers: list[torch.optim.Optimizer],
    cfg: TrainingConfig,
    nobs_total: int,
    device: torch.device,
    mode: str,
    sharded: bool,
) -> tuple[TrainingConfig, FusedStep | None, str]:
    """``deferred-adam`` with the "full" or "auto" whole-map priors: ``(config, fused step, note)``.

    "full" runs in the fused step only (it steps the whole SIC map at every step): built here,
    or a one-line error where it does not apply. "auto" takes it where the fused step applies
    and the map is small enough (:func:`~empirical_seaice.config.choose_map_priors`), else the
    sampled priors; ``note`` says which and why (one line; '' for "full"). Sets the network's
    ``prior_mode``; the returned config has the prior mode taken.
    """
    if not hasattr(network, "prior_mode"):  # a network without whole-map priors
        return replace(cfg, map_priors="sampled"), None, ""
    before = network.prior_mode
    network.prior_mode = "full"
    fused, reason, rows = None, "", 0
    if sharded:
        reason = "a run sharded over processes"
    elif not cfg.fused_step:
        reason = "--unfused-step"
    elif mode == "auto" and choose_map_priors(_sic_rows(network))[0] != "full":
        # too large a map for the full priors whatever else: the sampled step the trainer would build
        # (not the full program's whole-map neighbour lists, hundreds of MB for a year's map, to discard)
        network.prior_mode = "sampled"
        fused, reason = build_fused_step(network, data, optimizers, nobs_total, device)
        chosen, why = choose_map_priors(_sic_rows(network), reason)
        note = f"{chosen} whole-map priors (--map-priors auto: {why})"
        logger.info("%s", note)
        return replace(cfg, map_priors=chosen), fused, note
    else:
        fused, reason = build_fused_step(network, data, optimizers, nobs_total, device)
        rows = int(fused.program.tables[0].shape[0]) if fused is not None else 0
    if mode == "full":
        if fused is None:
            network.prior_mode = before
            raise SeaIceError(
                f"--map-priors full with --optimizer deferred-adam runs in the fused step only, which does not "
                f"apply here ({reason}); use --optimizer dense-adam for the full priors, or --map-priors sampled"
            )
        return cfg, fused, ""
    chosen, why = choose_map_priors(rows, reason)
    note = f"{chosen} whole-map priors (--map-priors auto: {why})"
    logger.info("%s", note)
    if chosen != "full":
        network.prior_mode = "sampled"
        fused = None
    return replace(cfg, map_priors=chosen), fused, note


def _sic_rows(network: Any) -> int:
    """Rows of the network's SIC map (the first state table); 0 where it has none."""
    state = getattr(network, "state", None)
    sic = getattr(state, "sic_map", None)
    return int(sic.weight.shape[0]) if sic is not None else 0


__all__ = ["build_optimizers", "whole_map_scheme"]
