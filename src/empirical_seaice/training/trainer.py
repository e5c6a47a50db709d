"""The trainer: minibatch Adam over the observations, shuffled or in reference blocks.

The trainer knows nothing about sea ice. It minimises the stochastic cost that
a *network* reports for a batch of observations, over the parameters the
network hands it, and keeps the books (per-batch and per-epoch terms,
held-out validation, early stopping, checkpoints, progress). What it relies
on is the typed contract of :mod:`empirical_seaice.training.contract`
(:class:`~empirical_seaice.training.contract.TrainableNetwork`,
:class:`~empirical_seaice.training.contract.BatchSource`), checked when the
trainer is built.

With the default ``"deferred-adam"`` scheme every step takes one path: the rows a batch
reads (``network.state_rows``) are caught up by
:class:`~empirical_seaice.training.deferred_adam.DeferredAdam` before the forward
pass and handed to the network (``state_values``; a network with
``reads_state_values = False`` reads the caught-up tables itself).

By default (``TrainingConfig.fused_step``) a step on the CPU runs the
compiled step of :mod:`empirical_seaice.training.fused_step` instead (the forward model,
cost, gradient and Adam updates in a few numba calls; tested equal to the tensor step),
when the network offers one (``network.fused_program(data, nobs_total)``, optional) and
the scheme is ``"deferred-adam"``; otherwise the tensor step, with a one-line notice.
On CUDA the tensor step computes its forward pass, cost and gradients in one kernel where the
network offers one (``network.device_cost(data, nobs_total, target)``, optional;
:mod:`empirical_seaice.model.fused_device`), whose gradients go to the optimisers without autograd
(the rows' through :meth:`~empirical_seaice.training.deferred_adam.DeferredAdam.set_gathered_gradients`);
the catch-up and the Adam steps stay the tensor step's.
The optimisers and the whole-map prior scheme (``map_priors`` "full" and "auto" with
``"deferred-adam"`` run in the fused step only) come from
:mod:`empirical_seaice.training.schemes`, each epoch's batches from
:mod:`empirical_seaice.training.epochs`.

Sharded over processes (``sharding``, a
:class:`~empirical_seaice.training.distributed.ShardPlan`), the trainer runs
this rank's share of each global batch (``network.cost_terms(..., batch_total=B)``
with the global batch's ``B``; the fused step the same, ``FusedStep(..., batch_total=B)``),
sums the shared (dense) parameters' gradients over the ranks before each step
(``ShardPlan.reduce_gradients``; the fused step's ``ShardPlan.reduce_arrays``; the ranks' stops and
checkpoints ride with them, ``ShardPlan.ask``), and sums its books over the ranks; see
:mod:`empirical_seaice.training.distributed`.

The term named ``"obs"`` (:data:`~empirical_seaice.training.contract.OBS_TERM`) is
the observation term: the mean of ``J_o,i`` over the batch; it is what the
held-out validation reports.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empirical_seaice.config import TrainingConfig
from empirical_seaice.errors import RunInterrupted, SeaIceError, relayed, signal_exit_code
from empirical_seaice.memory import release_free_memory
from empirical_seaice.threads import torch_threads
from empirical_seaice.training.checkpoint import (
    CHECKPOINT_NAME,
    read_checkpoint,
    restore_trainer,
    trainer_state,
    write_checkpoint,
)
from empirical_seaice.training.contract import BatchSource, TrainableNetwork, check_network
from empirical_seaice.training.deferred_adam import DeferredAdam
from empirical_seaice.training.distributed import ShardPlan, agreed_stop
from empirical_seaice.training.epochs import EpochStart, epoch_start
from empirical_seaice.training.fused_step import FusedStep, build_fused_step, set_threads
from empirical_seaice.training.history import TrainingHistory, data_device, evaluate_obs_cost
from empirical_seaice.training.regions import Region, RegionStops
from empirical_seaice.training.runtime import RunProgress, make_generator, reproducible_mode
from empirical_seaice.training.schemes import build_optimizers, whole_map_scheme

logger = logging.getLogger(__name__)

CHECKPOINT_MINUTES = 10.0
"""Default interval of the within-epoch checkpoints (minutes of wall time)."""

FROZEN_STOP_STEPS = 128
"""Steps between two agreements of the ranks on a stop in a sharded fit of a fixed model (the held-out
fit): its steps sum nothing over the ranks to send a stop with (:meth:`ShardPlan.ask`), so every rank
asks the others after each 128th step (one all-reduce of one number, 0.4-0.5 ms on two processes of
the project's 2-core machine against 128 steps of about 1 ms)."""

EPOCH_CHECKPOINT_S = 60.0
"""An epoch's end writes the checkpoint when the last one is at least this old (seconds of wall time; or
the within-epoch interval where that is shorter), and always after the last epoch and when a stop is asked
for; in a run sharded over processes by rank 0's clock, every rank alike. Shorter epochs skip it: on the
`benchmark` twin an epoch's steps take 1.2 s and its checkpoint (349 MB) 0.75 s, 12 s of a 16-epoch
default run's 33 s of training. A crash then loses at most this much training, which ``--resume`` redoes
to the same result (epochs resume bit for bit)."""


class Trainer:
    """Minibatch Adam over the observations, with books and checkpoints.

    Batches (``TrainingConfig.batch_order``): ``"shuffled"`` draws a new
    permutation of the training observations every epoch and cuts it into
    batches; ``"reference-blocks"`` cuts the training observations in their
    order (file order, sensor after sensor) into contiguous blocks of
    ``batch_size`` (the last one shorter) and shuffles only the order of the
    blocks, as the v2 reference's Keras ``Sequence`` does.

    Parameters
    ----------
    network : TrainableNetwork
        Fulfils the contract of :mod:`empirical_seaice.training.contract`. For
        ``optimizer="deferred-adam"`` or ``"sparse-adam"`` its state tables must
        produce sparse gradients (``HybridNetwork(..., sparse=True)``); for
        ``"dense-adam"`` dense ones.
    data : BatchSource
        The observations on the training device
        (:class:`~empirical_seaice.model.tensors.ObservationTensors`).
    config : TrainingConfig
        Epochs, batch size, learning rate, seed, reproducibility, early
        stopping, optimiser scheme, batch order. An automatic batch size or
        learning rate (None) is resolved for ``len(train_index)``.
    train_index : int array
        Observations to train on (indices into ``data``); when they are distinct (a split's), so are a
        batch's, which the fused step uses (:class:`~empirical_seaice.training.fused_step.FusedStep`).
    valid_index : int array or None
        Held-out observations, whose observation cost is reported per epoch.
    nobs_total : int
        ``nobs`` of the cost normalisation ``J_b / nobs`` (the number of
        training observations in the reference).
    checkpoint_dir : Path or None
        Where ``checkpoint.pt`` is written (epoch ends: :data:`EPOCH_CHECKPOINT_S`); None = no
        checkpoints.
    progress : bool or RunProgress
        Show the progress on stderr: True = a display of its own, or the run's
        :class:`~empirical_seaice.training.runtime.RunProgress` (its training stage).
    generator : torch.Generator or None
        The run's generator; None = :func:`make_generator` ``(config.seed)``.
        Share it with the network (sampled priors) and
        :func:`split_observations` so that a checkpoint holds all randomness.
    sharding : ShardPlan or None
        This rank's share of a run sharded over processes; None = a single
        process. With it, ``train_index`` are the *global* training
        observations (every rank draws the same permutation of them),
        ``data`` and ``valid_index`` this rank's (local rows), ``nobs_total``
        the global count, and ``checkpoint_dir`` holds one file per rank.
    checkpoint_minutes : float
        Also write the checkpoint within an epoch, at the first step boundary after this
        many minutes since the last one (0 = only at epoch ends; sharded, by rank 0's clock, every rank
        after the same step). A resumed run continues from that step.
    identity : mapping or None
        What the checkpoint must match to be resumed (data fingerprint, period, model, ...):
        stored in it, and compared key by key by :meth:`load_checkpoint`
        (:func:`~empirical_seaice.training.checkpoint.check_identity`).
    stop : callable or None
        Polled at every step boundary; a non-empty string (the reason, e.g. ``"SIGINT"``)
        writes the checkpoint and raises :class:`~empirical_seaice.errors.RunInterrupted`. A sharded
        run's ranks poll it before each step and send it with the step's gradient sum
        (:meth:`~empirical_seaice.training.distributed.ShardPlan.ask`): every rank stops after the same step.
        Without a checkpoint directory (a fit with the model fixed: the held-out fit, a retrieval) it raises
        alone, and a sharded fit's ranks agree on it after every :data:`FROZEN_STOP_STEPS`-th step.
    step_threads : callable or None
        The compiled step's thread count, asked before each step; None = torch's count, taken at each
        epoch's start. The held-out fit takes one thread fewer while another thread of the run computes
        beside it: a parallel region on every core with a third thread busy waits a time slice at its barrier
        (on the ``benchmark`` twin 5.0 ms a step instead of 0.52). The step's result is the same on any
        number of threads.
    fit_name : str
        What the stop's line calls this fit without a checkpoint directory ("interrupted by SIGTERM in the
        held-out fit's epoch 2, ..."): ``"the held-out fit"``, ``"the retrieval"``.
    """

    def __init__(
        self,
        network: TrainableNetwork,
        data: BatchSource,
        config: TrainingConfig,
        train_index: np.ndarray,
        valid_index: np.ndarray | None,
        nobs_total: int,
        checkpoint_dir: Path | None = None,
        progress: bool | RunProgress = True,
        generator: torch.Generator | None = None,
        sharding: ShardPlan | None = None,
        checkpoint_minutes: float = CHECKPOINT_MINUTES,
        identity: Mapping[str, Any] | None = None,
        stop: Callable[[], str | None] | None = None,
        step_threads: Callable[[], int] | None = None,
        valid_regions: Mapping[str, Region] | None = None,
        fit_name: str = "the fit",
    ) -> None:
        if not checkpoint_minutes >= 0:
            raise SeaIceError(f"--checkpoint-minutes: must be >= 0, got {checkpoint_minutes}")
        self.checkpoint_s = 60.0 * checkpoint_minutes
        self.identity = dict(identity) if identity is not None else None
        self.stop = stop
        self.fit_name = fit_name
        self.step_threads = step_threads
        self._position: dict[str, Any] | None = None
        self._last_checkpoint = time.monotonic()
        self.network = check_network(network)
        self.sharding = sharding
        self.data = data
        self.config = config = config.resolved(len(train_index))
        assert config.batch_size is not None and config.learning_rate is not None  # resolved
        self.batch_size: int = config.batch_size
        self.learning_rate: float = config.learning_rate
        self.train_index = torch.as_tensor(np.asarray(train_index), dtype=torch.long)
        if self.train_index.numel() == 0:
            raise SeaIceError("training: no observations to train on (empty training set)")
        nvalid = 0 if valid_index is None else len(valid_index)
        if sharding is not None:  # a rank may hold none of the held-out observations; it still takes part
            self.nvalid_total = int(sharding.all_sum(torch.tensor([nvalid], device=sharding.device)).item())
        else:
            self.nvalid_total = nvalid
        self.valid_index = (
            None
            if self.nvalid_total == 0
            else torch.as_tensor(np.asarray([] if valid_index is None else valid_index), dtype=torch.long)
        )
        if config.early_stopping and self.valid_index is None:
            raise SeaIceError("--early-stopping needs held-out observations (--validation-fraction > 0)")
        # each region's held-out observations (a global grid's hemispheres), whose costs the history books
        # beside the whole's; in a sharded run this rank's part of each (a region's cost is summed over the
        # ranks, so every rank keeps the regions that have held-out observations on any rank)
        regions = dict(valid_regions or {}) if self.valid_index is not None else {}
        counts = [len(region.valid) for region in regions.values()]
        if sharding is not None and regions:
            counts = sharding.all_sum(torch.tensor(counts, dtype=torch.float64, device=sharding.device)).tolist()
        regions = {name: region for (name, region), n in zip(regions.items(), counts, strict=True) if n > 0}
        self.valid_regions = {
            name: torch.as_tensor(np.asarray(region.valid), dtype=torch.long) for name, region in regions.items()
        }
        self.nobs_total = int(nobs_total)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.progress = progress if isinstance(progress, RunProgress) else RunProgress(bool(progress))
        self._own_progress = not isinstance(progress, RunProgress)
        self.generator = generator if generator is not None else make_generator(config.seed)
        self.device = data_device(data, network)
        self.optimizers = build_optimizers(self.network, config, self.learning_rate, config.network_step)
        self.history = TrainingHistory()
        self.epoch = 0
        self._best_cost = float("inf")
        self._best_state: dict[str, torch.Tensor] | None = None
        self._best_is_current = False
        """The network's parameters now are the best epoch's (early stopping): copied into
        :attr:`_best_state` only when an epoch is about to change them (:meth:`_keep_best`), so that
        the last epoch (and a run of one epoch) holds no copy of the state tables beside them."""
        self._spare_best: dict[str, torch.Tensor] | None = None
        """An older best epoch's copy, kept between the validation that found a better epoch and the
        next :meth:`_keep_best`, which copies into it: memory new to the process at every better epoch
        cost more than the copy (on the ``benchmark`` twin's 60 MB of state, 45 ms an epoch, most of it
        page faults, against about 10 ms). Dropped when training ends."""
        self._lr_cuts: list[int] = []  # epochs (0-based) after which the step was cut (plateau_cuts)
        self._fused: FusedStep | None | bool = None  # None: not tried yet; False: not available
        self.device_cost_target: str | None = "cuda" if self.device.type == "cuda" else None
        """Where the tensor step's forward pass and cost run as one kernel (:mod:`~empirical_seaice.model.fused_device`)
        when the compiled CPU step does not apply: "cuda" on a GPU, None elsewhere ("cpu": the same kernel
        compiled for the CPU, which the tests set)."""
        self._device: Any = None  # the DeviceCost; None: not tried yet; False: not available
        self._device_launched = False  # whether its kernel ran once (a later failure is an error)
        self._distinct_batches: bool | None = None  # whether train_index is distinct (the fused step's skip)
        self.map_priors_note = ""
        """Which whole-map prior mode ``map_priors="auto"`` took and why (one line; '' otherwise)."""
        self._regions = self._region_stops(regions)
        """Each region's own early stop (:mod:`~empirical_seaice.training.regions`), or None."""
        if config.optimizer == "deferred-adam" and config.prior_mode in ("auto", "full"):  # the fused step's
            self.config, self._fused, self.map_priors_note = whole_map_scheme(
                self.network, data, self.optimizers, config, self.nobs_total, self.device, config.prior_mode,
                sharding is not None,
            )  # fmt: skip

    # ----------------------------------------------------------------- optimisers

    def _deferred(self) -> DeferredAdam | None:
        """The optimiser of the state tables where it is :class:`DeferredAdam`, else None."""
        return next((opt for opt in self.optimizers if isinstance(opt, DeferredAdam)), None)

    def _region_stops(self, regions: Mapping[str, Region]) -> RegionStops | None:
        """Each region stopped on its own (``config.region_stopping``, with early stopping) where every
        region has its grid points, the network tells their rows and :class:`DeferredAdam` steps the state
        tables (it can hold rows); else None: the regions' costs are booked only."""
        cfg, deferred = self.config, self._deferred()
        region_rows = getattr(self.network, "region_rows", None)
        if not (cfg.region_stopping and cfg.early_stopping and regions and region_rows is not None):
            return None
        if deferred is None or any(r.points is None or r.obs is None for r in regions.values()):
            return None
        stepped = {id(p) for group in deferred.param_groups for p in group["params"]}
        tables = {}
        for name, region in regions.items():
            points = torch.as_tensor(np.asarray(region.points), dtype=torch.long)
            obs = torch.as_tensor(np.asarray(region.obs), dtype=torch.long)
            tables[name] = [(p, rows.to(p.device)) for p, rows in region_rows(points, obs)]
            if any(id(p) not in stepped for p, _ in tables[name]):
                return None
        return RegionStops(tables, cfg.patience)

    def _hold_regions(self, costs: Mapping[str, float]) -> None:
        """After this epoch's regions' held-out costs ``costs``: each region whose cost has not improved for
        ``patience`` epochs goes back to its best epoch's state and is held there (:class:`RegionStops`)."""
        stops, deferred, h = self._regions, self._deferred(), self.history
        if stops is None or deferred is None:
            return
        for name in stops.update(self.epoch, costs, h.region_held):
            deferred.hold(stops.restore(name))
            h.region_held[name] = self.epoch
            logger.info(
                "the %s's held-out cost has not improved for %d epoch(s): its state goes back to epoch %d's "
                "and is held there while the rest trains",
                name, self.config.patience, stops.best_epoch[name] + 1,
            )  # fmt: skip

    def flush(self) -> None:
        """Apply the deferred updates of :class:`DeferredAdam` to every row (done at each epoch end); compiled
        (:meth:`FusedStep.flush`) where the fused step trains."""
        fused = self._fused if isinstance(self._fused, FusedStep) else None
        for opt in self.optimizers:
            if fused is not None and opt is fused.deferred:
                fused.flush()
            elif isinstance(opt, DeferredAdam):
                opt.flush()

    # ----------------------------------------------------------------- checkpoints

    @property
    def checkpoint_path(self) -> Path | None:
        """``checkpoint_dir / checkpoint.pt`` or None."""
        if self.checkpoint_dir is None:
            return None
        return self.checkpoint_dir / (CHECKPOINT_NAME if self.sharding is None else self.sharding.checkpoint_name)

    def save_checkpoint(self, position: Mapping[str, Any] | None = None) -> Path:
        """Write the checkpoint atomically (:func:`~empirical_seaice.io.transaction.atomic_path`).

        ``position``: within an epoch, where it stands (next batch, the epoch's permutation, the
        per-batch terms so far, its wall and CPU time); None at an epoch end.
        """
        path = self.checkpoint_path
        if path is None:
            raise ValueError("save_checkpoint: the trainer has no checkpoint_dir")
        write_checkpoint(path, trainer_state(self, position))
        self._last_checkpoint = time.monotonic()
        return path

    def load_checkpoint(self) -> None:
        """Restore network, optimisers, epoch, history and generator from the checkpoint."""
        path = self.checkpoint_path
        if path is None or not path.is_file():
            raise SeaIceError(f"--resume: no checkpoint at {path}; run without --resume first")
        restore_trainer(self, path, read_checkpoint(path, self.device))
        if self.sharding is not None:
            self.sharding.same_everywhere(self.epoch, "the epoch of the checkpoint")
            at = int(self._position["batch"]) if self._position else 0
            self.sharding.same_everywhere(at, "the step of the checkpoint within its epoch")
        where = f", batch {self._position['batch']}" if self._position else ""
        logger.info("resumed from %s after epoch %d%s", path, self.epoch, where)

    # ----------------------------------------------------------------- training

    def fit(self, resume: bool = False) -> TrainingHistory:
        """Train for ``config.nepochs`` epochs (in total, counting resumed ones).

        Parameters
        ----------
        resume : bool
            Continue from ``checkpoint_dir/checkpoint.pt``.

        Returns
        -------
        TrainingHistory
        """
        cfg = self.config
        with reproducible_mode(cfg.reproducible, cfg.seed):
            if resume:
                self.load_checkpoint()
            self.network.train()
            t_start = time.perf_counter()
            self._last_checkpoint = time.monotonic()
            wall_before = self.history.wall_time_s
            ntrain = self.train_index.numel() if self.sharding is None else self.sharding.ntrain_total(self.train_index)
            nbatch = (ntrain + self.batch_size - 1) // self.batch_size
            self.progress.start_training(cfg.nepochs, nbatch, self.epoch)
            while self.epoch < cfg.nepochs and not self.history.stopped_early:
                position, self._position = self._position, None
                self.progress.epoch(self.epoch + 1)
                self._set_learning_rate()
                self._keep_best()
                self._train_epoch(position)
                self.flush()
                release_free_memory(collect=False)  # the catch-up's blocks: not under the validation's
                if self.valid_index is not None:
                    self._validate_epoch()
                    release_free_memory(collect=False)  # the validation's batches: not under the checkpoint
                self.epoch += 1
                self.history.wall_time_s = wall_before + time.perf_counter() - t_start
                steps_s = sum(self.history.epoch_wall_s)
                nseen = int(self.history.batch_size.sum())
                self.history.obs_per_s = nseen / steps_s if steps_s > 0 else 0.0
                logger.info("%s", self.history.epoch_line(cfg.nepochs))
                if self.checkpoint_dir is not None:
                    reason = self.stop() if self.stop is not None else None
                    due = self._epoch_checkpoint_due(reason)
                    if self.sharding is not None:  # every rank stops after the same epoch, and writes its file or not
                        reason, due = self.sharding.agreed_epoch_end(reason, due)  # (rank 0's clock)
                    if due or reason:
                        path = self.save_checkpoint()
                    if reason and self.epoch < cfg.nepochs:
                        self._close_own_progress()
                        raise self._interrupted(f"interrupted by {reason} after epoch {self.epoch}", reason, path)
            self._close_own_progress()
            self._spare_best = None
            if cfg.early_stopping and self._best_state is not None and not self._best_is_current:
                self.network.load_state_dict(self._best_state)
                logger.info("restored the parameters of the best epoch %d", (self.history.best_epoch or 0) + 1)
        return self.history

    def _epoch_checkpoint_due(self, reason: str | None) -> bool:
        """Whether this epoch's end writes the checkpoint (:data:`EPOCH_CHECKPOINT_S`)."""
        if reason or self.epoch >= self.config.nepochs or self.history.stopped_early:
            return True
        interval = min(EPOCH_CHECKPOINT_S, self.checkpoint_s) if self.checkpoint_s > 0 else EPOCH_CHECKPOINT_S
        return time.monotonic() - self._last_checkpoint >= interval

    def _keep_best(self) -> None:
        """Before an epoch changes the parameters: copy them into :attr:`_best_state` if they are the best
        epoch's (:attr:`_best_is_current`). The copy is the one early stopping would have taken at the
        best epoch's end (nothing changes the parameters between a validation and the next epoch)."""
        if self._best_is_current:
            state, spare = self.network.state_dict(), self._spare_best
            self._spare_best = None
            if spare is not None and _same_layout(spare, state):
                for k, v in state.items():
                    spare[k].copy_(v.detach())
                self._best_state = spare
            else:
                self._best_state = {k: v.detach().clone() for k, v in state.items()}
            self._best_is_current = False

    def _set_learning_rate(self) -> None:
        """This epoch's steps: each group's first step (``learning_rate`` or the network's) times
        ``lr_decay ** epoch`` and the plateau cuts (constant with the default decay 1)."""
        cfg = self.config
        if cfg.lr_decay == 1.0 and not self._lr_cuts:
            return
        factor = cfg.lr_decay**self.epoch * cfg.plateau_factor ** len(self._lr_cuts)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group.setdefault("first_lr", group["lr"]) * factor

    def _fused_step(self) -> FusedStep | None:
        """The compiled step (:mod:`~empirical_seaice.training.fused_step`) when the config asks for it and
        it applies; else None, with a one-line notice the first time."""
        if not self.config.fused_step or self._fused is False or self.device_cost_target is not None:
            return None  # (a device cost asked for: the tensor step with its kernel, _device_cost)
        if self._fused is None:
            fused, reason = build_fused_step(self.network, self.data, self.optimizers, self.nobs_total, self.device)
            if fused is None:
                # another optimiser scheme is the user's choice (--exact-reference takes dense-adam): said at -v
                chosen = self.config.optimizer != "deferred-adam"
                level = logging.INFO if chosen else logging.WARNING
                logger.log(level, "fused training step not used (%s); using the tensor step", reason)
                self._fused = False
                return None
            self._fused = fused
        step = self._fused
        assert isinstance(step, FusedStep)
        step.refresh()
        set_threads(torch.get_num_threads())
        if self._distinct_batches is None:  # distinct training observations: every batch's are distinct
            idx = self.train_index.cpu().numpy()
            seen = np.zeros(int(idx.max()) + 1, dtype=bool)
            seen[idx] = True
            self._distinct_batches = int(seen.sum()) == idx.size
        return step

    def _train_epoch(self, position: Mapping[str, Any] | None = None) -> None:
        network = self.network
        ep = self._epoch_start(position)
        shard = self.sharding
        dense_params: list[torch.Tensor] = list(network.dense_parameters()) if shard is not None else []
        names, values, first = ep.names, ep.values, ep.first
        nbatch = len(ep.batches)
        bar = self.progress if self.progress.enabled else None
        if bar is not None and first:
            bar.update(first)
        deferred = self._deferred()
        fused = self._fused_step()
        step = self._on_step_threads(fused) if fused is not None else None
        reduce = shard.reduce_arrays if shard is not None else None
        values_np: np.ndarray | None = None
        batches_np: list[np.ndarray] = []
        if fused is not None:
            names = fused.names
            if first == 0:  # a fresh epoch (a resumed one carries its values so far)
                values = torch.zeros((nbatch, len(names)), dtype=torch.float64)
            values_np = values.numpy()
            batches_np = [x.cpu().numpy() for x in ep.batches]
        release_free_memory(collect=False)  # what drawing the order freed (a permutation): not under the steps
        t0 = time.perf_counter()
        c0 = time.process_time()

        def where(b: int) -> dict[str, Any]:
            return {
                "batch": b,
                "perm": ep.perm.cpu(),
                "bounds": torch.as_tensor(ep.bounds),
                "names": list(names),
                "values": values[:b].cpu(),
                "wall": ep.wall + time.perf_counter() - t0,
                "cpu": ep.cpu + time.process_time() - c0,
            }

        # the tensor step on CPU on its own thread count (an automatic --threads: one)
        tensor_threads = self.config.tensor_step_threads if fused is None and self.device.type == "cpu" else None
        with torch_threads(tensor_threads) if tensor_threads is not None else contextlib.nullcontext():
            for b in range(first, nbatch):
                self._ask_the_ranks()
                if step is not None and values_np is not None:
                    values_np[b] = step(
                        batches_np[b],
                        distinct=bool(self._distinct_batches),
                        batch_total=int(ep.sizes[b]),
                        reduce=reduce,
                    )
                else:
                    terms, loss = self._tensor_step(ep.batches[b], int(ep.sizes[b]), deferred, dense_params)
                    with torch.no_grad():
                        if b == 0:
                            names = (*terms, "total")
                            values = torch.zeros((nbatch, len(names)), dtype=torch.float64, device=loss.device)
                        values[b] = torch.stack([*terms.values(), loss])  # 0-d terms; no graph under no_grad
                self._show_step(bar, b, nbatch, values)
                if b + 1 < nbatch:
                    self._step_boundary(b + 1, nbatch, where)
        self._wait_for_device()  # the epoch's seconds include the GPU's work still queued behind it
        wall = ep.wall + time.perf_counter() - t0
        cpu = ep.cpu + time.process_time() - c0
        if shard is not None:  # the ranks' terms add up to the global batch's
            values = shard.all_sum(values)
        self.history.book_epoch(names, values.cpu().numpy(), ep.sizes, wall, cpu, self.epoch)

    def _wait_for_device(self) -> None:
        """On CUDA, wait until the GPU has run every kernel queued so far; elsewhere nothing."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _on_step_threads(self, fused: FusedStep) -> Callable[..., np.ndarray]:
        """``fused``, or with :attr:`step_threads` the same step on the thread count it gives before each step."""
        threads = self.step_threads
        if threads is None:
            return fused

        def step(*args: Any, **kwargs: Any) -> np.ndarray:
            set_threads(threads())
            return fused(*args, **kwargs)

        return step

    def _epoch_start(self, position: Mapping[str, Any] | None) -> EpochStart:
        """Where an epoch starts (:func:`~empirical_seaice.training.epochs.epoch_start`). ``position``:
        a checkpoint's place within this epoch (resumed), or None (a fresh epoch: a new order)."""
        return epoch_start(
            position,
            self.train_index,
            self.batch_size,
            self.config.batch_order,
            self.generator,
            self.device,
            self.sharding,
        )

    def _show_step(self, bar: RunProgress | None, b: int, nbatch: int, values: torch.Tensor) -> None:
        """One step on the progress display; every 20 steps the running mean of J/nobs."""
        if bar is None:
            return
        postfix = None
        if b % 20 == 0 or b == nbatch - 1:
            postfix = f"J/nobs={float(values[max(0, b - 19) : b + 1, -1].mean()):.4g}"
        bar.update(1, postfix, refresh=b == nbatch - 1)

    def _tensor_step(
        self, index: torch.Tensor, batch_total: int, deferred: DeferredAdam | None, dense_params: list[torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One step of the tensor (autograd) path on the observations ``index``: the cost terms and the
        minimised total, after the optimisers stepped (a sharded run sums ``dense_params``' gradients
        over the ranks first)."""
        cost = self._device_cost(deferred)
        evaluated = None
        if cost is not None and deferred is not None:
            try:
                evaluated = self._device_evaluate(cost, index, deferred, batch_total)
                self._device_launched = True
            except Exception as exc:  # the kernel's first compilation or launch on this machine failed
                if self._device_launched:
                    raise
                why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                logger.warning(
                    "fused training step not used (its %s kernel failed: %s); using the tensor step", cost.target, why
                )
                self._device = False
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        if evaluated is None:
            terms = self._step_terms(self.data.batch(index), deferred, batch_total)
            loss = self.network.total_cost(terms)
            loss.backward()
        else:  # the kernel's gradients handed over as they are: no autograd
            assert deferred is not None
            rows, step = evaluated
            terms = step.terms  # (computed without a graph: their total has none either)
            loss = self.network.total_cost(terms)
            deferred.set_gathered_gradients(rows, step.state_grads)
            for p, g in zip(cost.dense, step.dense_grads, strict=True):
                if p.requires_grad:
                    p.grad = g
        if self.sharding is not None:
            self.sharding.reduce_gradients(dense_params)
        for opt in self.optimizers:
            opt.step()
        return terms, loss

    def _device_cost(self, deferred: DeferredAdam | None) -> Any:
        """The forward pass and cost of a tensor step in one kernel (the network's ``device_cost``:
        :class:`~empirical_seaice.model.fused_device.DeviceCost`) where :attr:`device_cost_target` asks
        for it and it applies; else None, with a one-line notice the first time."""
        if self._device is None:
            self._device = False
            if self.device_cost_target is not None and self.config.fused_step:
                make = getattr(self.network, "device_cost", None)
                cost, reason = None, f"{type(self.network).__name__} has no device cost"
                if deferred is None:
                    reason = "the device cost needs the deferred-adam optimiser scheme"
                elif make is not None:
                    cost, reason = make(self.data, self.nobs_total, self.device_cost_target)
                if cost is None:
                    logger.warning("fused training step not used (%s); using the tensor step", reason)
                else:
                    logger.info("fused training step: the forward pass and cost in one %s kernel", cost.target)
                    self._device = cost
        return self._device or None

    def _device_evaluate(
        self, cost: Any, index: torch.Tensor, deferred: DeferredAdam, batch_total: int
    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], Any]:
        """The cost terms of the observations ``index`` and their gradients from ``cost``'s kernel
        (:meth:`~empirical_seaice.model.fused_device.DeviceCost.evaluate`), with the rows the batch reads
        (the network's ``state_rows``) caught up and handed over (:meth:`DeferredAdam.gather`, no graph):
        ``(rows, evaluation)``."""
        with torch.no_grad():
            batch = cost.batch_rows(index)
            rows = self.network.state_rows(batch)
            values = deferred.gather(rows)
            total = batch_total if self.sharding is not None else None
            return rows, cost.evaluate(batch, index, values, total, rows[0][1])

    def _step_terms(self, batch: Any, deferred: DeferredAdam | None, batch_total: int) -> dict[str, torch.Tensor]:
        """The cost terms of one step (:meth:`_forward`, then ``network.cost_terms``); in a sharded run
        this rank's share of the global batch of ``batch_total`` observations (summed over the ranks)."""
        out = self._forward(batch, deferred)
        if self.sharding is None:
            return self.network.cost_terms(batch, out, self.nobs_total)
        return self.network.cost_terms(batch, out, self.nobs_total, batch_total=batch_total)

    def _forward(self, batch: Any, deferred: DeferredAdam | None) -> dict[str, torch.Tensor]:
        """The forward pass of one training step. With :class:`DeferredAdam` the rows the batch
        reads are caught up first and, when the network computes with rows handed to it, handed
        to it (their gradient comes back dense); either way the result equals dense Adam's."""
        network = self.network
        if deferred is None:
            return network(batch)
        rows = network.state_rows(batch)
        if network.reads_state_values:
            return network(batch, state_values=deferred.gather(rows))
        deferred.catch_up_many(rows)
        return network(batch)

    def _close_own_progress(self) -> None:
        if self._own_progress:
            self.progress.close()

    def _interrupted(self, what: str, reason: str, path: Path) -> RunInterrupted:
        """The stop by the signal ``reason`` after the checkpoint ``path`` was written; in a sharded run every
        rank's, said by rank 0 (:func:`~empirical_seaice.errors.relayed`) and naming the checkpoints' directory."""
        written = f"checkpoint {path} written" if self.sharding is None else f"checkpoints in {path.parent} written"
        return self._said_once(
            RunInterrupted(
                f"{what}; {written}: rerun the same command with --resume to continue",
                exit_code=signal_exit_code(reason),
            )
        )

    def _said_once(self, stop: RunInterrupted) -> RunInterrupted:
        """``stop`` as every rank of a sharded run raises it: said by rank 0 alone (:func:`relayed`)."""
        return stop if self.sharding is None else relayed(stop, self.sharding.rank)

    def _checkpoint_due(self) -> bool:
        """Whether ``--checkpoint-minutes`` have passed since the last checkpoint (within an epoch)."""
        return self.checkpoint_s > 0 and time.monotonic() - self._last_checkpoint >= self.checkpoint_s

    def _ask_the_ranks(self) -> None:
        """Before a step of a sharded run that writes checkpoints: this rank's stop and (rank 0's clock)
        due checkpoint, sent with the step's gradient sum (:meth:`ShardPlan.ask`); else nothing."""
        if self.sharding is not None and self.checkpoint_dir is not None:
            self.sharding.ask(self.stop() if self.stop is not None else None, self._checkpoint_due())

    def _step_boundary(self, b: int, nbatch: int, where: Callable[[int], dict[str, Any]]) -> None:
        """Between two steps: a requested stop (signal) or a due within-epoch checkpoint. The ranks of a
        sharded run take the ones they all asked of the step before (:meth:`ShardPlan.ask`, sent with its
        gradient sum: rank 0's clock, any rank's signal), so that all stop or write their checkpoints (one
        a rank) after the same step. Without a checkpoint directory (a fit with the model fixed) a stop raises
        with nothing written, and a sharded fit's ranks, whose steps sum nothing, agree on it after every
        :data:`FROZEN_STOP_STEPS`-th step (one all-reduce)."""
        if self.sharding is None:
            reason = self.stop() if self.stop is not None else None
            due = self._checkpoint_due()
        elif self.checkpoint_dir is not None:
            reason, due = self.sharding.answer()
        elif self.stop is not None and b % FROZEN_STOP_STEPS == 0:  # a fixed model's fit: its own agreement
            reason, due = agreed_stop(self.stop(), self.sharding.device), False
        else:
            return
        if not reason and not due:
            return
        if self.checkpoint_dir is None:
            if reason:
                self._close_own_progress()
                raise self._said_once(
                    RunInterrupted(
                        f"interrupted by {reason} in {self.fit_name}'s epoch {self.epoch + 1}, after step {b} of "
                        f"{nbatch}; it keeps no checkpoint",
                        exit_code=signal_exit_code(reason),
                    )
                )
            return
        path = self.save_checkpoint(where(b))
        if reason:
            self._close_own_progress()
            raise self._interrupted(
                f"interrupted by {reason} in epoch {self.epoch + 1} after step {b} of {nbatch}", reason, path
            )
        logger.info("within-epoch checkpoint at epoch %d step %d/%d", self.epoch + 1, b, nbatch)

    def _held_out_cost(self, index: torch.Tensor) -> float:
        """The mean observation cost of the held-out observations ``index`` (this rank's)."""
        if isinstance(self._fused, FusedStep):  # the compiled forward pass (no graph, no backward)
            return self._fused.program.obs_cost_sum(index.cpu().numpy()) / max(index.numel(), 1)
        return evaluate_obs_cost(
            self.network, self.data, index, self.nobs_total, max(self.batch_size, 16384), self.device
        )

    def _validate_epoch(self) -> None:
        assert self.valid_index is not None
        nlocal = self.valid_index.numel()
        costs = {name: self._held_out_cost(index) for name, index in self.valid_regions.items()}
        if self.sharding is not None and costs:  # each region's mean over every rank's held-out observations
            sums = [
                [cost * self.valid_regions[name].numel(), self.valid_regions[name].numel()]
                for name, cost in costs.items()
            ]
            total = self.sharding.all_sum(torch.tensor(sums, dtype=torch.float64, device=self.sharding.device)).tolist()
            costs = {name: s / n for name, (s, n) in zip(costs, total, strict=True)}
        for name, cost in costs.items():
            self.history.valid_cost_regions.setdefault(name, []).append(cost)
        self._hold_regions(costs)  # first: the whole's cost is that of the state it keeps
        result = self._held_out_cost(self.valid_index)
        if self.sharding is not None:  # mean over every rank's held-out observations
            local_sum = torch.tensor([result * nlocal], dtype=torch.float64, device=self.sharding.device)
            result = float(self.sharding.all_sum(local_sum).item()) / self.nvalid_total
        self.network.train()
        h = self.history
        h.valid_cost.append(result)
        if result < self._best_cost:
            self._best_cost = result
            h.best_epoch = self.epoch
            if self.config.early_stopping:
                # the older copy is no longer the best (the parameters now are): kept to copy into
                self._spare_best, self._best_state = self._best_state, None
                self._best_is_current = True  # copied only if another epoch starts (_keep_best)
        elif (
            self.config.early_stopping
            and h.best_epoch is not None
            and self.epoch - max([h.best_epoch, *self._lr_cuts]) >= self.config.patience
        ):
            if len(self._lr_cuts) < self.config.plateau_cuts:  # a smaller step instead of stopping
                self._lr_cuts.append(self.epoch)
                logger.info("held-out cost not improving: learning rate x%g", self.config.plateau_factor)
                return
            h.stopped_early = True
            logger.info(
                "early stopping after epoch %d: held-out cost has not improved for %d epoch(s) (best epoch %d)",
                self.epoch + 1,
                self.config.patience,
                h.best_epoch + 1,
            )


def _same_layout(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``a`` can take ``b``'s values by ``copy_``: the same keys, and each tensor's shape, dtype and
    device."""
    return a.keys() == b.keys() and all(
        a[k].shape == v.shape and a[k].dtype == v.dtype and a[k].device == v.device for k, v in b.items()
    )
