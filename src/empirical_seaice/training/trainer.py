"""The trainer: minibatch Adam over the observations, shuffled or in reference blocks.

The trainer knows nothing about sea ice. It minimises the stochastic cost that
a *network* reports for a batch of observations, over the parameters the
network hands it, and keeps the books (per-batch and per-epoch terms,
held-out validation, early stopping, checkpoints, progress). The network
contract it relies on (:class:`~empirical_seaice.model.operator.HybridNetwork`
fulfils it)::

    data.batch(index: LongTensor) -> batch
    network(batch) -> out
    network.cost_terms(batch, out, nobs_total) -> dict[str, Tensor]   # scalar terms
    network.total_cost(terms) -> Tensor                               # what is minimised
    network.sparse_parameters() -> list[Parameter]   # tables with sparse gradients
    network.dense_parameters() -> list[Parameter]
    network.full_prior_terms(nobs_total) -> dict[str, Tensor]  # whole-map priors, exact (evaluation)
    network.state_rows(batch) -> list[(Parameter, LongTensor)]  # optional: table rows a batch reads
    network.reads_state_values: bool      # optional: network(batch, state_values=[tensor per state_rows entry])
    network.fused_program(data, nobs_total) -> (program | None, reason)  # optional: the compiled step's
                                          # forward, cost and gradient (training.fused_step, the default)
    network.cost_terms(batch, out, nobs_total, batch_total=B)  # sharded runs only: the global batch's B

Sharded over processes (``sharding``, a
:class:`~empirical_seaice.training.distributed.ShardPlan`), the trainer runs
this rank's share of each global batch, sums the shared (dense) parameters'
gradients over the ranks before each step, and sums its books over the ranks;
see :mod:`empirical_seaice.training.distributed`.

The term named ``"obs"`` (:data:`OBS_TERM`) is the observation term: the mean
of ``J_o,i`` over the batch; it is what the held-out validation reports.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empirical_seaice.config import DEPRECATED_OPTIMIZERS, TrainingConfig
from empirical_seaice.errors import RunInterrupted, SeaIceError
from empirical_seaice.io.transaction import atomic_path
from empirical_seaice.training.deferred_adam import ADAM_BETAS, ADAM_EPS, DeferredAdam, dense_adam
from empirical_seaice.training.distributed import ShardPlan
from empirical_seaice.training.fused_step import FusedStep, build_fused_step, set_threads
from empirical_seaice.training.history import TrainingHistory, data_device, evaluate_obs_cost
from empirical_seaice.training.runtime import RunProgress, make_generator, reproducible_mode

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
"""File name of the checkpoint in the checkpoint directory."""

CHECKPOINT_FORMAT = 3
"""2: DeferredAdam keeps its state in one slab per parameter group. 3: the run's identity
(data, model, period, training options) and, within an epoch, the position in it."""

CHECKPOINT_MINUTES = 10.0
"""Default interval of the within-epoch checkpoints (minutes of wall time)."""

IDENTITY_WORDS = {
    "data": "training data (the input files' content)",
    "period": "period (--stepstart/--nsteps, the data's first day)",
    "nobs": "number of observations",
    "sensors": "sensors (--sensors)",
    "model": "model (--model, --ice-emis-init)",
    "cost": "cost configuration (--warm-ice, preset)",
    "learning_rate": "--learning-rate",
    "seed": "--seed",
    "validation_fraction": "--validation-fraction",
}
"""How a difference in each identity key is named in the ``--resume`` error."""


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
    network : torch.nn.Module
        Fulfils the contract in the module docstring. For
        ``optimizer="deferred-adam"`` or ``"sparse-adam"`` its state tables must
        produce sparse gradients (``HybridNetwork(..., sparse=True)``); for
        ``"dense-adam"`` dense ones.
    data : object with ``batch(index) -> batch``
        The observations on the training device
        (:class:`~empirical_seaice.model.operator.ObservationTensors`).
    config : TrainingConfig
        Epochs, batch size, learning rate, seed, reproducibility, early
        stopping, optimiser scheme, batch order. An automatic batch size or
        learning rate (None) is resolved for ``len(train_index)``.
    train_index : int array
        Observations to train on (indices into ``data``).
    valid_index : int array or None
        Held-out observations, whose observation cost is reported per epoch.
    nobs_total : int
        ``nobs`` of the cost normalisation ``J_b / nobs`` (the number of
        training observations in the reference).
    checkpoint_dir : Path or None
        Where ``checkpoint.pt`` is written at each epoch end; None = no
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
        many minutes since the last one (0 = only at epoch ends). A resumed run continues
        from that step.
    identity : mapping or None
        What the checkpoint must match to be resumed (data fingerprint, period, model, ...):
        stored in it, and compared key by key by :meth:`load_checkpoint`.
    stop : callable or None
        Polled at every step boundary; a non-empty string (the reason, e.g. ``"SIGINT"``)
        writes the checkpoint and raises :class:`~empirical_seaice.errors.RunInterrupted`.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        data: Any,
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
    ) -> None:
        if not checkpoint_minutes >= 0:
            raise SeaIceError(f"--checkpoint-minutes: must be >= 0, got {checkpoint_minutes}")
        self.checkpoint_s = 60.0 * checkpoint_minutes
        self.identity = dict(identity) if identity is not None else None
        self.stop = stop
        self._position: dict[str, Any] | None = None
        self._last_checkpoint = time.monotonic()
        self.network = network
        self.sharding = sharding
        self.data = data
        self.config = config = config.resolved(len(train_index))
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
        self.nobs_total = int(nobs_total)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.progress = progress if isinstance(progress, RunProgress) else RunProgress(bool(progress))
        self._own_progress = not isinstance(progress, RunProgress)
        self.generator = generator if generator is not None else make_generator(config.seed)
        self.device = data_device(data, network)
        self.optimizers = self._build_optimizers()
        self.history = TrainingHistory()
        self.epoch = 0
        self._best_cost = float("inf")
        self._best_state: dict[str, torch.Tensor] | None = None
        self._fused: FusedStep | None | bool = None  # None: not tried yet; False: not available

    # ----------------------------------------------------------------- optimisers

    def _build_optimizers(self) -> list[torch.optim.Optimizer]:
        cfg = self.config
        sparse_params = list(self.network.sparse_parameters())
        dense_params = list(self.network.dense_parameters())
        net_sparse = getattr(self.network, "sparse", None)
        if cfg.optimizer in ("deferred-adam", "sparse-adam"):
            if net_sparse is False:
                raise SeaIceError(
                    f"optimizer {cfg.optimizer!r}: the network was built with dense state gradients (sparse=False); "
                    "build it with sparse=True or use optimizer 'dense-adam'"
                )
            opts: list[torch.optim.Optimizer] = []
            if sparse_params:
                table_opt = DeferredAdam if cfg.optimizer == "deferred-adam" else torch.optim.SparseAdam
                kw = {"eps_mode": cfg.adam_epsilon} if table_opt is DeferredAdam else {}
                opts.append(table_opt(sparse_params, lr=cfg.learning_rate, betas=ADAM_BETAS, eps=ADAM_EPS, **kw))
            if dense_params:
                opts.append(dense_adam(dense_params, cfg.learning_rate, cfg.adam_epsilon))
            return opts
        # dense-adam: plain Adam over everything (the reference's way)
        if net_sparse is True:
            raise SeaIceError(
                "optimizer 'dense-adam': the network was built with sparse state gradients (sparse=True); "
                "build it with sparse=False or use optimizer 'deferred-adam' or 'sparse-adam'"
            )
        params = sparse_params + dense_params
        return [dense_adam(params, cfg.learning_rate, cfg.adam_epsilon)]

    def flush(self) -> None:
        """Apply the deferred updates of :class:`DeferredAdam` to every row (done at each epoch end)."""
        for opt in self.optimizers:
            if isinstance(opt, DeferredAdam):
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
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SeaIceError(f"{path.parent}: cannot create the checkpoint directory ({exc.strerror})") from None
        state = {
            "identity": self.identity,
            "position": None if position is None else dict(position),
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "network": self.network.state_dict(),
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "history": self.history.to_state(),
            "generator": self.generator.get_state(),
            "best_cost": self._best_cost,
            "best_state": self._best_state,
            "config": {
                "batch_size": self.config.batch_size,
                "optimizer": self.config.optimizer,
                "learning_rate": self.config.learning_rate,
                "seed": self.config.seed,
            },
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        self._last_checkpoint = time.monotonic()
        return path

    @staticmethod
    def read_checkpoint(path: Path, device: Any = "cpu") -> dict[str, Any]:
        """Load a trainer checkpoint; a missing, unreadable or older-format file is a one-line error."""
        if not Path(path).is_file():
            raise SeaIceError(f"--resume: no checkpoint at {path}; run without --resume first")
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a user problem
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
            raise SeaIceError(f"--resume: cannot read checkpoint {path} ({first}); train without --resume") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            fmt = state.get("format") if isinstance(state, dict) else None
            raise SeaIceError(
                f"--resume: {path} is not a trainer checkpoint of format {CHECKPOINT_FORMAT} (found format "
                f"{fmt}, written by another version); train without --resume"
            )
        return state

    @staticmethod
    def check_identity(path: Path, saved: Mapping[str, Any] | None, identity: Mapping[str, Any] | None) -> None:
        """Refuse (one line) a checkpoint written for other data, model, period or training options."""
        if identity is None:
            return
        saved = saved or {}
        for key, value in identity.items():
            if key in saved and saved[key] != value:
                what = IDENTITY_WORDS.get(key, key)
                old, new = saved[key], value
                detail = "" if key in ("data", "model", "cost") else f": {old} then, {new} now"
                raise SeaIceError(
                    f"--resume: checkpoint {path} was written for another {what}{detail}; "
                    "resume with the data and flags of that run, or train without --resume"
                )

    def load_checkpoint(self) -> None:
        """Restore network, optimisers, epoch, history and generator from the checkpoint."""
        path = self.checkpoint_path
        if path is None or not path.is_file():
            raise SeaIceError(f"--resume: no checkpoint at {path}; run without --resume first")
        state = self.read_checkpoint(path, self.device)
        self.check_identity(path, state.get("identity"), self.identity)
        saved = state["config"]
        saved = dict(saved, optimizer=DEPRECATED_OPTIMIZERS.get(saved["optimizer"], saved["optimizer"]))
        for key in ("batch_size", "optimizer"):
            if saved[key] != getattr(self.config, key):
                raise SeaIceError(
                    f"--resume: checkpoint {path} was written with {key}={saved[key]!r}, "
                    f"this run has {key}={getattr(self.config, key)!r}; resume with the same flags"
                )
        try:
            self.network.load_state_dict(state["network"])
        except RuntimeError:
            raise SeaIceError(
                f"--resume: checkpoint {path} does not fit this model or data; train without --resume"
            ) from None
        for opt, opt_state in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(opt_state)
        self.history = TrainingHistory.from_state(state["history"])
        self.generator.set_state(state["generator"].cpu())
        self.epoch = int(state["epoch"])
        self._best_cost = float(state["best_cost"])
        self._best_state = state["best_state"]
        self._position = state.get("position")
        if self.sharding is not None:
            self.sharding.same_everywhere(self.epoch, "the epoch of the checkpoint")
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
            nbatch = (ntrain + cfg.batch_size - 1) // cfg.batch_size
            self.progress.start_training(cfg.nepochs, nbatch, self.epoch)
            while self.epoch < cfg.nepochs and not self.history.stopped_early:
                position, self._position = self._position, None
                self.progress.epoch(self.epoch + 1)
                self._train_epoch(position)
                self.flush()
                if self.valid_index is not None:
                    self._validate_epoch()
                self.epoch += 1
                self.history.wall_time_s = wall_before + time.perf_counter() - t_start
                steps_s = sum(self.history.epoch_wall_s)
                nseen = int(self.history.batch_size.sum())
                self.history.obs_per_s = nseen / steps_s if steps_s > 0 else 0.0
                self._log_epoch()
                if self.checkpoint_dir is not None:
                    path = self.save_checkpoint()
                    reason = self.stop() if self.stop is not None else None
                    if reason and self.epoch < cfg.nepochs:
                        self._close_own_progress()
                        raise RunInterrupted(
                            f"interrupted by {reason} after epoch {self.epoch}; checkpoint {path} written: "
                            "rerun the same command with --resume to continue",
                            exit_code=143 if reason == "SIGTERM" else 130,
                        )
            self._close_own_progress()
            if cfg.early_stopping and self._best_state is not None:
                self.network.load_state_dict(self._best_state)
                logger.info("restored the parameters of the best epoch %d", self.history.best_epoch + 1)
        return self.history

    def _fused_step(self) -> FusedStep | None:
        """The compiled step (:mod:`~empirical_seaice.training.fused_step`) when the config asks for it and
        it applies; else None, with a one-line notice the first time."""
        if not self.config.fused_step or self._fused is False:
            return None
        if self._fused is None:
            fused, reason = build_fused_step(self.network, self.data, self.optimizers, self.nobs_total, self.device)
            if fused is None:
                logger.warning("fused training step not used (%s); using the tensor step", reason)
                self._fused = False
                return None
            self._fused = fused
        self._fused.refresh()
        set_threads(torch.get_num_threads())
        return self._fused

    def _epoch_order(self) -> tuple[torch.Tensor, np.ndarray]:
        """This epoch's order of the training observations (on the device) and the batch bounds in it
        (batch ``b`` is ``order[bounds[b]:bounds[b + 1]]``), by ``config.batch_order``."""
        n, bs = self.train_index.numel(), self.config.batch_size
        if self.config.batch_order == "reference-blocks":
            index = self.train_index.to(self.device)
            blocks = [
                index[k * bs : (k + 1) * bs] for k in torch.randperm((n + bs - 1) // bs, generator=self.generator)
            ]
            sizes = [len(block) for block in blocks]
            return torch.cat(blocks), np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        perm = self.train_index[torch.randperm(n, generator=self.generator)].to(self.device)
        return perm, np.minimum(np.arange((n + bs - 1) // bs + 1) * bs, n).astype(np.int64)

    def _train_epoch(self, position: Mapping[str, Any] | None = None) -> None:
        cfg = self.config
        network = self.network
        bs = cfg.batch_size
        first, wall0, cpu0 = 0, 0.0, 0.0
        n_train = self.train_index.numel()
        if position is not None:  # resumed within this epoch
            perm = position["perm"]
            saved = position.get("bounds")  # absent in checkpoints written before batch orders
            default = np.minimum(np.arange((n_train + bs - 1) // bs + 1) * bs, n_train)
            bounds = default if saved is None else torch.as_tensor(saved).cpu().numpy().astype(np.int64)
        else:
            perm, bounds = self._epoch_order()
        shard = self.sharding
        if shard is None:
            on_device = perm.to(self.device)
            batches = [on_device[bounds[b] : bounds[b + 1]] for b in range(len(bounds) - 1)]
            sizes = np.diff(bounds)
        else:  # this rank's share of each step, and the global batch sizes (they normalise the cost)
            batches, sizes = shard.epoch_batches(perm.cpu(), bs)
            dense_params = list(network.dense_parameters())
        nbatch, n = len(batches), int(sizes.sum())
        names: tuple[str, ...] | None = None
        values: torch.Tensor | None = None  # (nbatch, nterm + 1) float64 on device
        if position is not None:
            first = int(position["batch"])
            names = tuple(position["names"])
            values = torch.zeros((nbatch, len(names)), dtype=torch.float64, device=self.device)
            values[:first] = position["values"].to(self.device)
            wall0, cpu0 = float(position["wall"]), float(position["cpu"])
        bar = self.progress if self.progress.enabled else None
        if bar is not None and first:
            bar.update(first)
        deferred = next((opt for opt in self.optimizers if isinstance(opt, DeferredAdam)), None)
        state_rows = getattr(network, "state_rows", None)
        if state_rows is None:
            deferred = None
        # the network computes with the caught-up rows DeferredAdam hands it (no lookup of its own)
        gathered = deferred is not None and getattr(network, "reads_state_values", False)
        running = 0.0
        fused = self._fused_step() if shard is None else None
        if fused is not None:
            names = fused.names
            if values is None:
                values = torch.zeros((nbatch, len(names)), dtype=torch.float64)
            values_np = values.numpy()
            batches_np = [x.cpu().numpy() for x in batches]
        t0 = time.perf_counter()
        c0 = time.process_time()

        def where(b: int) -> dict[str, Any]:
            return {
                "batch": b,
                "perm": perm.cpu(),
                "bounds": torch.as_tensor(bounds),
                "names": list(names or ()),
                "values": values[:b].cpu() if values is not None else torch.zeros(0),
                "wall": wall0 + time.perf_counter() - t0,
                "cpu": cpu0 + time.process_time() - c0,
            }

        for b in range(first, nbatch):
            if fused is not None:
                values_np[b] = fused(batches_np[b])
            else:
                batch = self.data.batch(batches[b])
                if gathered:
                    out = network(batch, state_values=deferred.gather(state_rows(batch)))
                else:
                    if deferred is not None:
                        deferred.catch_up_many(state_rows(batch))
                    out = network(batch)
                if shard is None:
                    terms = network.cost_terms(batch, out, self.nobs_total)
                else:
                    terms = network.cost_terms(batch, out, self.nobs_total, batch_total=int(sizes[b]))
                loss = network.total_cost(terms)
                for opt in self.optimizers:
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                if shard is not None:
                    shard.reduce_gradients(dense_params)
                for opt in self.optimizers:
                    opt.step()
                with torch.no_grad():
                    if values is None:
                        names = tuple(terms) + ("total",)
                        values = torch.zeros((nbatch, len(names)), dtype=torch.float64, device=loss.device)
                    values[b] = torch.stack([*terms.values(), loss])  # 0-d terms; no graph under no_grad
            if bar is not None:
                postfix = None
                if b % 20 == 0 or b == nbatch - 1:
                    running = float(values[max(0, b - 19) : b + 1, -1].mean())
                    postfix = f"J/nobs={running:.4g}"
                bar.update(1, postfix, refresh=b == nbatch - 1)
            if b + 1 < nbatch:
                self._step_boundary(b + 1, nbatch, where)
        wall = wall0 + time.perf_counter() - t0
        cpu = cpu0 + time.process_time() - c0
        assert names is not None and values is not None
        if shard is not None:  # the ranks' terms add up to the global batch's
            values = shard.all_sum(values)
        if not all(np.isfinite(values.cpu().numpy()).ravel()):
            bad = [nm for nm, ok in zip(names, torch.isfinite(values).all(dim=0).tolist()) if not ok]
            raise SeaIceError(
                f"training: cost term(s) {', '.join(bad)} became non-finite in epoch {self.epoch + 1}; "
                "lower --learning-rate or check the input data"
            )
        self.history._append_epoch(names, values.cpu().numpy(), sizes)
        self.history.epoch_wall_s.append(wall)
        self.history.epoch_cpu_s.append(cpu)
        self.history.epoch_obs_per_s.append(n / wall if wall > 0 else 0.0)

    def _close_own_progress(self) -> None:
        if self._own_progress:
            self.progress.close()

    def _step_boundary(self, b: int, nbatch: int, where: Callable[[int], dict[str, Any]]) -> None:
        """Between two steps: a requested stop (signal) or a due within-epoch checkpoint."""
        reason = self.stop() if self.stop is not None else None
        due = self.checkpoint_s > 0 and time.monotonic() - self._last_checkpoint >= self.checkpoint_s
        if not reason and not due:
            return
        if self.checkpoint_dir is None:
            if reason:
                raise RunInterrupted(f"interrupted by {reason} in epoch {self.epoch + 1}; no checkpoint directory")
            return
        path = self.save_checkpoint(where(b))
        if reason:
            self._close_own_progress()
            raise RunInterrupted(
                f"interrupted by {reason} in epoch {self.epoch + 1} after step {b} of {nbatch}; checkpoint "
                f"{path} written: rerun the same command with --resume to continue",
                exit_code=143 if reason == "SIGTERM" else 130,
            )
        logger.info("within-epoch checkpoint at epoch %d step %d/%d", self.epoch + 1, b, nbatch)

    def _validate_epoch(self) -> None:
        assert self.valid_index is not None
        nlocal = self.valid_index.numel()
        result = evaluate_obs_cost(
            self.network, self.data, self.valid_index, self.nobs_total, max(self.config.batch_size, 16384), self.device
        )
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
                self._best_state = copy.deepcopy({k: v.detach().clone() for k, v in self.network.state_dict().items()})
        elif (
            self.config.early_stopping
            and h.best_epoch is not None
            and self.epoch - h.best_epoch >= self.config.patience
        ):
            h.stopped_early = True
            logger.info(
                "early stopping after epoch %d: held-out cost has not improved for %d epoch(s) (best epoch %d)",
                self.epoch + 1,
                self.config.patience,
                h.best_epoch + 1,
            )

    def _log_epoch(self) -> None:
        h = self.history
        e = h.epoch_terms[-1]
        parts = " ".join(f"{k}={v:.5g}" for k, v in e.items())
        valid = f" valid_obs={h.valid_cost[-1]:.5g}" if h.valid_cost else ""
        logger.info(
            "epoch %d/%d: %s%s (%.0f obs/s)", self.epoch, self.config.nepochs, parts, valid, h.epoch_obs_per_s[-1]
        )
