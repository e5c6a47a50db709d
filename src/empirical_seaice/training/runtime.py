"""Run-time helpers of training: device, the run's random generator, the
validation split, reproducible mode and the progress bar.

Reproducibility
---------------
One :class:`torch.Generator` seeded from ``TrainingConfig.seed`` draws the
validation split and every epoch's permutation; pass the same generator to
the network for its sampled priors so a checkpoint captures all randomness.
``reproducible=True`` additionally seeds torch, switches on
``torch.use_deterministic_algorithms`` and runs single-threaded: two runs give
bit-identical parameters, and a run resumed from a checkpoint equals an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import numpy as np
import torch

from empirical_seaice.errors import SeaIceError


def resolve_device(name: str) -> torch.device:
    """The torch device of ``TrainingConfig.device``.

    ``"auto"`` is CUDA when available, else CPU; ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` are taken as given. Raises :class:`SeaIceError` for an
    unknown name or CUDA asked for on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SeaIceError(f"--device: expected auto, cpu or cuda, got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise SeaIceError(f"--device: expected auto, cpu or cuda, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SeaIceError("--device cuda: CUDA is not available on this machine; use --device cpu or auto")
    return device


def make_generator(seed: int) -> torch.Generator:
    """The one random generator of a run (CPU), seeded with ``seed``."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen


def split_observations(
    nobs: int, validation_fraction: float, generator: torch.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Random split of ``range(nobs)`` into training and held-out indices.

    ``round(validation_fraction * nobs)`` observations (at least one when the
    fraction is > 0) are held out, drawn by ``generator``. Both index arrays
    are sorted int64. Compute the network's row counts from the training part
    only. Returns ``(train_index, None)`` when the fraction is 0.
    """
    if validation_fraction <= 0.0:
        return np.arange(nobs, dtype=np.int64), None
    nvalid = max(1, int(round(validation_fraction * nobs)))
    if nvalid >= nobs:
        raise SeaIceError(
            f"--validation-fraction {validation_fraction}: holds out {nvalid} of {nobs} observations, "
            "leaving none to train on"
        )
    perm = torch.randperm(nobs, generator=generator).numpy()
    return np.sort(perm[nvalid:]).astype(np.int64), np.sort(perm[:nvalid]).astype(np.int64)


@contextlib.contextmanager
def reproducible_mode(enabled: bool, seed: int) -> Iterator[None]:
    """Seeded, deterministic, single-threaded torch while the block runs.

    Restores the previous determinism flag and thread count on exit. Does
    nothing when ``enabled`` is False.
    """
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_threads = torch.get_num_threads()
    torch.manual_seed(int(seed))
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar on stderr, or None when ``enabled`` is False."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True, mininterval=0.5)
