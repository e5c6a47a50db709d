"""Run-time helpers of training: device, the run's random generator, the
validation split, reproducible mode and the progress display of a run
(:class:`RunProgress`).

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
import time
from collections.abc import Iterator

import numpy as np
import torch

from empirical_seaice.errors import SeaIceError
from empirical_seaice.threads import torch_threads


def resolve_device(name: str) -> torch.device:
    """The torch device of ``TrainingConfig.device``.

    ``"auto"`` is the CPU where numba is installed (the fused step's compiler), else CUDA when
    available, else the CPU: the fused step runs on the CPU only, and a default run there trains faster
    than one on a GPU does with the tensor step, and with the reference's exact whole-map priors, which
    a run on CUDA samples (the ``demo`` twin's default run: 17.4 s of training to a SIC RMSE of 0.0331
    on two vCPUs, 34.8 s to 0.0398 on an H200; docs/fused_step.md, "On a GPU"). ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` are taken as given. Raises :class:`SeaIceError` for an unknown name or CUDA asked for
    on a machine without it.
    """
    if name == "auto":
        from empirical_seaice.compiled import HAVE_NUMBA

        return torch.device("cuda" if not HAVE_NUMBA and torch.cuda.is_available() else "cpu")
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
    held = np.zeros(nobs, dtype=bool)  # the sorted halves of the permutation without a sort: its marks in order
    held[perm[:nvalid]] = True
    return np.flatnonzero(~held).astype(np.int64, copy=False), np.flatnonzero(held).astype(np.int64, copy=False)


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
    torch.manual_seed(int(seed))
    torch.use_deterministic_algorithms(True)
    with torch_threads(1):
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev_det)


def own_storage(network: torch.nn.Module) -> int:
    """Give every parameter that is a view into a larger storage (the deferred-Adam slab keeps each
    state table beside its moments) a storage of its own, so that the slab is freed with the
    optimiser once training is over (the ``benchmark`` twin's SIC map: 16 MB of a 349 MB slab).
    Values unchanged; returns how many parameters were copied."""
    n = 0
    with torch.no_grad():
        for p in network.parameters():
            if p.untyped_storage().nbytes() > p.numel() * p.element_size():
                p.data = p.data.clone()
                n += 1
    return n


class RunProgress:
    """One progress display for a whole run, on stderr: the stage (reading, packing, initial
    diagnostics, training epoch k/N, diagnostics, products) and, while training, the batches of
    *all* epochs with the elapsed time and the estimated time left for the training.

    Disabled (``enabled=False``, ``--quiet`` / ``--no-progress``) it prints nothing. Every stage is
    also logged at INFO level (``-v``). While the display is shown, the package's log lines on the
    console go through ``tqdm.write`` (:func:`tqdm.contrib.logging.logging_redirect_tqdm`): each on a
    line of its own above the display, not glued to it; :meth:`close` puts the handlers back.
    """

    BAR = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} batches [{elapsed}<{remaining}{postfix}]"
    PLAIN = "{desc}"

    def __init__(self, enabled: bool = True, file=None):
        self.enabled = bool(enabled)
        self.file = file if file is not None else sys.stderr
        self.bar = None
        self.nepochs = 0
        self.stages: list[tuple[str, float]] = []
        self._t0 = time.perf_counter()
        self._redirect: contextlib.ExitStack | None = None

    def _ensure(self):
        if self.bar is None and self.enabled:
            import logging

            from tqdm.auto import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self.bar = tqdm(
                total=None, file=self.file, bar_format=self.PLAIN, dynamic_ncols=True, mininterval=0.5, leave=False
            )
            self._redirect = contextlib.ExitStack()
            logger = logging.getLogger("empirical_seaice")
            consoles = (sys.stdout, sys.stderr)
            if any(isinstance(h, logging.StreamHandler) and h.stream in consoles for h in logger.handlers):
                self._redirect.enter_context(logging_redirect_tqdm(loggers=[logger], tqdm_class=tqdm))
        return self.bar

    def stage(self, name: str) -> None:
        """Enter a stage (shown at once)."""
        import logging

        elapsed = time.perf_counter() - self._t0
        self.stages.append((name, elapsed))
        logging.getLogger("empirical_seaice").info("stage: %s (%.1f s into the run)", name, elapsed)
        bar = self._ensure()
        if bar is not None:
            if not name.startswith("training"):  # after training: the stage line alone again
                bar.bar_format = self.PLAIN
                bar.set_postfix_str("", refresh=False)
            bar.set_description_str(self._label(name), refresh=True)

    def _label(self, name: str) -> str:
        """The stage with the run's elapsed time, e.g. ``[  12 s] diagnostics``."""
        return f"[{time.perf_counter() - self._t0:5.0f} s] {name}"

    def start_training(self, nepochs: int, nbatch: int, done_epochs: int = 0) -> None:
        """The training stage: a bar over ``nepochs * nbatch`` batches (resumed epochs counted done)."""
        self.nepochs = int(nepochs)
        # a run resumed after its last epoch (--resume to write the outputs again) trains no epoch
        self.stage(f"training epoch {done_epochs + 1}/{nepochs}" if done_epochs < nepochs else "training done")
        bar = self._ensure()
        if bar is not None:
            bar.bar_format = self.BAR
            bar.reset(total=max(1, nepochs * nbatch))
            bar.update(done_epochs * nbatch)

    def epoch(self, k: int) -> None:
        """Epoch ``k`` (1-based) starts."""
        if self.bar is not None:
            self.bar.set_description_str(self._label(f"training epoch {k}/{self.nepochs}"), refresh=False)

    def update(self, n: int = 1, postfix: str | None = None, refresh: bool = False) -> None:
        """``n`` more batches done; ``postfix`` e.g. the running cost; ``refresh`` draws now
        (the display otherwise redraws at most every 0.5 s)."""
        if self.bar is not None:
            if postfix is not None:
                self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.update(n)
            if refresh:
                self.bar.refresh()

    def close(self) -> None:
        """Remove the display and give the log its handlers back; nothing once closed."""
        if self._redirect is not None:
            self._redirect.close()
            self._redirect = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def even_bounds(n: int, batch_size: int) -> np.ndarray:
    """Bounds of consecutive batches of ``batch_size`` over ``n`` observations (the last one shorter):
    batch ``b`` is ``[bounds[b], bounds[b + 1])``, int64 (``ceil(n / batch_size) + 1`` values)."""
    return np.minimum(np.arange((n + batch_size - 1) // batch_size + 1) * batch_size, n).astype(np.int64)
