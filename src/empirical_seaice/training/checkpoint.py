"""The trainer's checkpoint ``checkpoints_TAG/checkpoint.pt``: its name, format, reading and identity.

:class:`~empirical_seaice.training.trainer.Trainer` writes it at epoch ends (``trainer.EPOCH_CHECKPOINT_S``)
and within an epoch (a dict: ``format``, ``identity``, ``position``, ``epoch``, ``network``, ``optimizers``,
``history``, ``generator``, ``best_cost``, ``best_state``, ``best_is_current``, ``config``); ``--resume`` reads it
(:func:`read_checkpoint`) and refuses one written for other data, model, period or training
options (:func:`check_identity`, with the run identity of
:func:`empirical_seaice.run.model_file.run_identity`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empirical_seaice.config import DEPRECATED_OPTIMIZERS
from empirical_seaice.errors import SeaIceError, unreadable
from empirical_seaice.io.transaction import atomic_path, crc32_function
from empirical_seaice.memory import RELEASE_PIECE, copy_rows, file_ranges, release_file_pages
from empirical_seaice.training.deferred_adam import DeferredAdam

CHECKPOINT_NAME = "checkpoint.pt"
"""File name of the checkpoint in the checkpoint directory."""


def checkpoint_dir(output: Path, tag: str) -> Path:
    """The run's checkpoint directory ``<output>/checkpoints_TAG`` (the trainer's ``checkpoint.pt``, the
    ranks' files of a sharded run, its partition)."""
    return Path(output) / f"checkpoints_{tag}"


TRAINER_CHECKPOINT_FORMAT = 3
"""Format of the epoch checkpoint ``checkpoint.pt`` (2: DeferredAdam keeps its state in one slab per
parameter group; 3: the run's identity (data, model, period, training options) and, within an epoch,
the position in it). Not the format of the trained model file (``run.model_file.MODEL_FILE_FORMAT``)."""

IDENTITY_WORDS = {
    "data": "training data (the input files' content, --sensor-catalogue)",
    "period": "period (--stepstart/--nsteps, the data's first day)",
    "nobs": "number of observations",
    "sensors": "sensors (--sensors)",
    "model": "model (--model, --ice-emis-init, --angle-input, --exact-reference)",
    "cost": (
        "cost configuration (--warm-ice, --sic-background-error, --sic-smoothness, --sic-smoothness-time, "
        "--emis-ceiling, --exact-reference, preset)"
    ),
    "batch_size": "--batchsize",
    "optimizer": "optimiser (--optimizer, --exact-reference)",
    "learning_rate": "--learning-rate",
    "network_learning_rate": "--network-learning-rate",
    "seed": "--seed",
    "validation_fraction": "--validation-fraction",
    "validation_min_obs": "held-out minimum (--validation-fraction's automatic default)",
    "reproducible": "--reproducible",
    "early_stopping": "--early-stopping / --no-early-stopping",
    "patience": "--patience",
    "region_stopping": "--region-stopping / --no-region-stopping",
    "lr_decay": "--lr-decay",
    "plateau_cuts": "--plateau-cuts",
    "plateau_factor": "learning-rate cut factor (preset)",
    "map_priors": "--map-priors",
    "batch_order": "--batch-order",
    "adam_epsilon": "Adam's epsilon (--exact-reference)",
    "shard_order": "--shard-order (local: and number of ranks)",
}
"""How a difference in each identity key is named in the ``--resume`` error."""


DIGEST_KEY = "content_crc32"
"""The checkpoint's own checksum: CRC-32 of every tensor's and array's bytes, in the state's order
(:func:`sealed`), checked by :func:`read_checkpoint`. The zip records carry none (:func:`without_crc32`),
and ``torch.load`` checks none: one flipped bit in the optimiser's slab resumed silently to a set
130 values off an uninterrupted run, published as complete."""


def _content_crc32(obj: Any, crc: int = 0, mapped: list[tuple[int, int]] | None = None) -> int:
    """CRC-32 of the bytes of every tensor and array in ``obj`` (nested dicts, lists, tuples), in order.
    ``mapped``: the address ranges of the file ``obj`` was read from through a memory map
    (:func:`~empirical_seaice.memory.file_ranges`), whose pages are released piece by piece once read
    (:func:`~empirical_seaice.memory.release_file_pages`): the whole file is never resident at once."""
    update = crc32_function()

    def walk(o: Any, c: int) -> int:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu()
            o = (t if t.dtype != torch.bfloat16 else t.float()).numpy()  # numpy has no bfloat16: exact in float32
        if isinstance(o, np.ndarray):
            if not mapped or o.ndim == 0 or o.shape[0] == 0:
                return update(np.ascontiguousarray(o).reshape(-1).view(np.uint8), c)
            # by pieces of rows (the bytes in the same order), each piece's pages released once read: a
            # view of a slab (a table's rows, their moments) spans the slab's pages
            step = max(1, RELEASE_PIECE // max(1, o[0].nbytes))
            for a in range(0, o.shape[0], step):
                c = update(np.ascontiguousarray(o[a : a + step]).reshape(-1).view(np.uint8), c)
                release_file_pages(o[a : a + step], mapped)
            return c
        if isinstance(o, Mapping):
            for v in o.values():
                c = walk(v, c)
        elif isinstance(o, (list, tuple)):
            for v in o:
                c = walk(v, c)
        return c

    return walk(obj, crc)


def sealed(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` with its :data:`DIGEST_KEY` (any it held before dropped, e.g. a re-cut shard's)."""
    plain = {k: v for k, v in state.items() if k != DIGEST_KEY}
    return {**plain, DIGEST_KEY: _content_crc32(plain)}


def write_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write the checkpoint ``state`` (:func:`sealed`) to ``path`` atomically
    (:func:`~empirical_seaice.io.transaction.atomic_path`), creating its directory."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SeaIceError(f"{path.parent}: cannot create the checkpoint directory ({exc.strerror})") from None
    with atomic_path(path) as tmp, without_crc32():
        torch.save(sealed(state), tmp)


@contextlib.contextmanager
def without_crc32() -> Iterator[None]:
    """``torch.save`` without the CRC-32 of each record inside the block (the setting before it after).

    ``torch.load`` does not check the CRCs (a flipped byte in a tensor loads silently either way), so for
    the checkpoint, which only this package reads, they are CPU time for nothing: 0.23 s of 0.31 s to
    write the `benchmark` twin's 349 MB checkpoint into warm memory (docs/scaling.md). ``unzip -t`` reports
    the zero CRCs; the trained model file (``run.model_file``), which other tools may open, keeps them."""
    from torch.utils.serialization import config

    before = config.save.compute_crc32
    torch.serialization.set_crc32_options(False)
    try:
        yield
    finally:
        torch.serialization.set_crc32_options(before)


def check_config(path: Path, saved: Mapping[str, Any], config: Any) -> None:
    """Refuse (one line) to resume a checkpoint written with another batch size or optimiser
    (``saved``: the checkpoint's ``config``; old optimiser names are read as the new ones)."""
    saved = dict(saved, optimizer=DEPRECATED_OPTIMIZERS.get(saved["optimizer"], saved["optimizer"]))
    for key in ("batch_size", "optimizer"):
        if saved[key] != getattr(config, key):
            raise SeaIceError(
                f"--resume: checkpoint {path} was written with {key}={saved[key]!r}, "
                f"this run has {key}={getattr(config, key)!r}; resume with the same flags"
            )


def read_checkpoint(path: Path, device: Any = "cpu") -> dict[str, Any]:
    """Load a trainer checkpoint; a missing, unreadable or older-format file is a one-line error.

    On the CPU it is read through a memory map of the file (``torch.load(mmap=True)``), its checksum
    read piece by piece with each piece's pages released (:func:`check_sealed`), and every tensor but
    the optimisers' slabs (and the views of them) copied into ordinary memory: what the trainer keeps
    is then its own, and a slab, which :meth:`DeferredAdam.load_state_dict
    <empirical_seaice.training.deferred_adam.DeferredAdam.load_state_dict>` copies into the group's
    own slab piece by piece (:func:`restore_trainer`), is never resident whole beside it. Read whole,
    the `benchmark` twin's 412 MB checkpoint took a resumed run's peak from 1.63 to 2.39 GiB
    (docs/reliability.md, "Checkpoints, resume and signals": "A resume's memory")."""
    if not Path(path).is_file():
        raise SeaIceError(f"--resume: no checkpoint at {path}; run without --resume first")
    state, mapped = None, torch.device(device).type == "cpu"
    try:
        if mapped:
            try:
                state = torch.load(path, map_location=device, weights_only=True, mmap=True)
            except Exception:  # a file torch opens only whole (not its zip format): read it so, or fail so
                mapped = False
        if state is None:
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # any unreadable file is a user problem
        raise SeaIceError(
            f"--resume: cannot read checkpoint {path}: {unreadable(exc)}; train without --resume"
        ) from None
    if not isinstance(state, dict) or state.get("format") != TRAINER_CHECKPOINT_FORMAT:
        fmt = state.get("format") if isinstance(state, dict) else None
        raise SeaIceError(
            f"--resume: {path} is not a trainer checkpoint of format {TRAINER_CHECKPOINT_FORMAT} (found format "
            f"{fmt}, written by another version); train without --resume"
        )
    ranges = file_ranges(path) if mapped else []
    check_sealed(path, state, ranges)
    return _outside_the_slabs(state, ranges) if ranges else state


def _outside_the_slabs(state: dict[str, Any], mapped: list[tuple[int, int]]) -> dict[str, Any]:
    """``state``, read through a memory map of its file (``mapped``: its address ranges), with every
    tensor copied into ordinary memory but the optimisers' own entries in a slab (the slab and its
    moments' views), which :meth:`DeferredAdam.load_state_dict
    <empirical_seaice.training.deferred_adam.DeferredAdam.load_state_dict>` copies piece by piece: the
    network's tables, views of a slab spanning its pages, are copied piece by piece too, each piece's
    pages released (:func:`~empirical_seaice.memory.copy_rows`)."""
    slabs = {
        v["slab"].untyped_storage().data_ptr()
        for opt in state.get("optimizers", [])
        for v in opt.get("state", {}).values()
        if isinstance(v, Mapping) and isinstance(v.get("slab"), torch.Tensor)
    }

    def copy(o: Any, in_optimizer: bool = False) -> Any:
        if isinstance(o, torch.Tensor):
            if o.untyped_storage().data_ptr() not in slabs:
                kept = o.clone()
                release_file_pages(o, mapped)
                return kept
            if in_optimizer:
                return o
            out = torch.empty(o.shape, dtype=o.dtype)
            copy_rows(out, o, mapped)
            return out
        if isinstance(o, Mapping):
            return {k: copy(v, in_optimizer or k == "optimizers") for k, v in o.items()}
        if isinstance(o, list):
            return [copy(v, in_optimizer) for v in o]
        if isinstance(o, tuple):
            return tuple(copy(v, in_optimizer) for v in o)
        return o

    return copy(state)


def check_sealed(path: Path, state: dict[str, Any], mapped: list[tuple[int, int]] | None = None) -> None:
    """Refuse (one line) a checkpoint whose content no longer has its checksum (:data:`DIGEST_KEY`; one
    written before 2026-12-03 has none and is not checked); the key is taken out of ``state``. ``mapped``:
    the ranges where ``state`` is mapped from the file (:func:`_content_crc32`)."""
    saved = state.pop(DIGEST_KEY, None)
    if saved is not None and _content_crc32(state, mapped=mapped) != saved:
        raise SeaIceError(
            f"--resume: checkpoint {path} is damaged (its content no longer matches its checksum); "
            "train without --resume, or resume from an intact copy"
        )


def checkpoint_identity(path: Path) -> Mapping[str, Any] | None:
    """The ``identity`` of the trainer checkpoint ``path``, for :func:`check_identity` before any work,
    read through a memory map of the file (``torch.load(mmap=True)``): no tensor is read (8-9 ms for the
    benchmark twin's 349 MB checkpoint, against 0.5-1.2 s to read it whole, which the trainer does
    afterwards with its checksum). A file that cannot be opened so, or not a checkpoint of this format,
    gets :func:`read_checkpoint`'s one-line error."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        state = None
    if not isinstance(state, dict) or state.get("format") != TRAINER_CHECKPOINT_FORMAT:
        state = read_checkpoint(path)  # its error, or (a file torch opens only whole) the checkpoint
    return state.get("identity")


RANK_CHECKPOINTS = "checkpoint-rank*-of-*.pt"
"""The pattern of a sharded run's checkpoints, one a rank (:attr:`ShardPlan.checkpoint_name
<empirical_seaice.training.distributed.ShardPlan.checkpoint_name>`), beside its ``partition.pt``."""


def other_mode_checkpoints(ckpt_dir: Path, sharded: bool) -> list[Path]:
    """The checkpoints in ``ckpt_dir`` of the other mode than this run's: a single process's
    ``checkpoint.pt`` for a sharded run (``sharded``), the ranks' files and their partition for a single
    process. A run that trains from the start removes them (a later ``--resume`` of either mode would
    otherwise take the stale one); a ``--resume`` that finds only them says which mode wrote them."""
    if sharded:
        found = [ckpt_dir / CHECKPOINT_NAME]
    else:  # the ranks' files and their partition (run.partition.PARTITION_NAME); a partition alone is no checkpoint
        found = sorted(ckpt_dir.glob(RANK_CHECKPOINTS))
        found += [ckpt_dir / "partition.pt"] if found else []
    return [p for p in found if p.is_file()]


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


def trainer_state(trainer: Any, position: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a :class:`~empirical_seaice.training.trainer.Trainer` checkpoint holds: identity, position
    within the epoch (None at an epoch end), epoch, network, optimisers, history, generator, the best
    epoch's cost and state, the learning-rate cuts, each region's own stop
    (:class:`~empirical_seaice.training.regions.RegionStops`) and the configuration :func:`check_config` compares."""
    cfg = trainer.config
    return {
        "identity": trainer.identity,
        "position": None if position is None else dict(position),
        "format": TRAINER_CHECKPOINT_FORMAT,
        "epoch": trainer.epoch,
        "network": trainer.network.state_dict(),
        "optimizers": [opt.state_dict() for opt in trainer.optimizers],
        "history": trainer.history.to_state(),
        "generator": trainer.generator.get_state(),
        "best_cost": trainer._best_cost,
        "best_state": trainer._best_state,
        "best_is_current": trainer._best_is_current,  # then best_state is None: "network" holds the best epoch's
        "lr_cuts": list(trainer._lr_cuts),
        "regions": trainer._regions.to_state() if trainer._regions is not None else None,
        "config": {
            "batch_size": cfg.batch_size,
            "optimizer": cfg.optimizer,
            "learning_rate": cfg.learning_rate,
            "seed": cfg.seed,
        },
    }


def restore_trainer(trainer: Any, path: Path, state: Mapping[str, Any]) -> None:
    """Put :func:`trainer_state`'s ``state`` (read from ``path``) back into ``trainer``, after checking
    that it is this run's (identity, configuration) and fits its network: one-line errors otherwise."""
    from empirical_seaice.training.history import TrainingHistory

    check_identity(path, state.get("identity"), trainer.identity)
    check_config(path, state["config"], trainer.config)
    try:
        trainer.network.load_state_dict(state["network"])
    except RuntimeError:
        raise SeaIceError(
            f"--resume: checkpoint {path} does not fit this model or data; train without --resume"
        ) from None
    mapped = file_ranges(path)  # (none where the checkpoint was read whole)
    for opt, opt_state in zip(trainer.optimizers, state["optimizers"], strict=True):
        if isinstance(opt, DeferredAdam):
            opt.load_state_dict(opt_state, mapped=mapped)
        else:
            opt.load_state_dict(opt_state)
    trainer.history = TrainingHistory.from_state(state["history"])
    trainer.generator.set_state(state["generator"].cpu())
    trainer.epoch = int(state["epoch"])
    if trainer.epoch > trainer.config.nepochs:  # a long run stopped early: its outputs, from what it trained
        logging.getLogger(__name__).warning(
            "--nepochs %d: checkpoint %s has trained %d epochs already: no more training; the outputs are "
            "those of its %d epochs (and say so)",
            trainer.config.nepochs, path, trainer.epoch, trainer.epoch,
        )  # fmt: skip
    trainer._best_cost = float(state["best_cost"])
    trainer._best_state = state["best_state"]
    trainer._best_is_current = bool(state.get("best_is_current", False))  # absent before: a copy in best_state
    trainer._lr_cuts = [int(e) for e in state.get("lr_cuts", [])]
    trainer._position = state.get("position")
    stops = trainer._regions
    if stops is not None and state.get("regions") is not None:  # the regions held again (their moments are 0)
        stops.load_state(state["regions"])
        for name in trainer.history.region_held:
            trainer._deferred().hold(stops.tables[name], zero_moments=False)


__all__ = [
    "CHECKPOINT_NAME",
    "RANK_CHECKPOINTS",
    "other_mode_checkpoints",
    "TRAINER_CHECKPOINT_FORMAT",
    "IDENTITY_WORDS",
    "read_checkpoint",
    "checkpoint_identity",
    "check_identity",
    "write_checkpoint",
    "check_config",
]
