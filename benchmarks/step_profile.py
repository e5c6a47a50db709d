"""Where one fused training step's time goes (a benchmark; nothing is asserted).

Builds the ``pairs`` case of ``train_throughput.py`` (v2, AMSR2 + GMI + SSMIS F17, synthetic
observations, 5000 points x 365 days, one thread), trains one epoch (every row visited, the
compiled code loaded), then runs ``--repeats`` epochs of the trainer's fused step with each
compiled call of the step wrapped in a timer: the rows of each observation, the catch-up and
gather of the distinct rows, the per-observation kernel (forward, cost with the sampled priors,
backward), the bias prior, the Adam step of the rows and of the dense weights. What is left of
the step's time is the Python around them (buffers, constants, numpy, dispatch). Wall and
thread CPU microseconds per step; the calls it does not find (older code) are left out.

Usage::

    python benchmarks/step_profile.py --batch 1024 --steps 150
    python benchmarks/step_profile.py --batch 16384 --steps 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from empirical_seaice import OPENMP_ENVIRONMENT  # noqa: E402 - the command line's OpenMP settings, before torch

for _name, _value in OPENMP_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)

PARTS = [  # (module, compiled function, part)
    ("model.fused", "_refs", "rows of each observation"),
    ("training.fused_step", "_catch_up_batch_rows", "search, catch-up and gather of the distinct rows (one pass)"),
    # the same parts in the code before 2026-12-01's one pass (run against an older checkout)
    ("training.fused_step", "_catch_up_gather", "catch-up and gather of the distinct rows"),
    ("training.fused_step", "_distinct_rows", "search for the distinct rows (serial)"),
    ("training.fused_step", "_catch_up_rows", "catch-up and gather of the distinct rows"),
    ("model.fused", "_step", "kernel: forward, cost, backward per observation"),
    ("model.fused", "_bias_prior", "bias prior"),
    ("training.fused_step", "_adam_rows", "Adam on the rows"),
    ("training.fused_step", "_adam_dense", "Adam on the dense weights"),
    ("training.fused_step", "_adam_dense_all", "Adam on the dense weights"),
]


def build(nobs: int, batch: int, steps: int, threads: int = 1):
    """The benchmark's trainer after one epoch, and its fused step and training indices."""
    import torch

    import train_throughput as tt
    from empirical_seaice.config import TrainingConfig, get_preset
    from empirical_seaice.run.factory import build_network, build_trainer
    from empirical_seaice.training import fused_step
    from empirical_seaice.training.runtime import make_generator

    torch.set_num_threads(threads)
    obs, bg = tt.load_synthetic(tt.synthetic_arrays(nobs, 5000, 365), nobs, 5000, 365)
    preset = get_preset("v2")
    gen = make_generator(0)
    train_index = np.sort(torch.randperm(obs.nobs, generator=gen)[: min(obs.nobs, steps * batch)].numpy())
    built = build_network(
        obs, bg, preset.model, preset.cost, optimizer="deferred-adam", generator=gen, device=torch.device("cpu")
    )
    cfg = TrainingConfig(nepochs=1, batch_size=batch, optimizer="deferred-adam", device="cpu", fused_step=True)
    trainer = build_trainer(built.network, built, cfg, train_index=train_index, generator=gen, progress=False)
    trainer.fit()
    step = trainer._fused_step()
    fused_step.set_threads(threads)
    return step, train_index


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nobs", type=int, default=2_000_000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=150, help="batches per epoch")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs")
    ap.add_argument("--threads", type=int, default=1, help="the step's threads (torch and numba)")
    args = ap.parse_args(argv)
    import importlib

    step, train_index = build(args.nobs, args.batch, args.steps, args.threads)
    wall: dict[str, int] = {}
    cpu: dict[str, int] = {}

    def timed(f, part):
        def call(*a):
            t, c = time.perf_counter_ns(), time.thread_time_ns()
            r = f(*a)
            wall[part] = wall.get(part, 0) + time.perf_counter_ns() - t
            cpu[part] = cpu.get(part, 0) + time.thread_time_ns() - c
            return r

        return call

    for mod_name, name, part in PARTS:
        mod = importlib.import_module(f"empirical_seaice.{mod_name}")
        if hasattr(mod, name):
            setattr(mod, name, timed(getattr(mod, name), part))
    perm = train_index.copy()
    rng = np.random.default_rng(1)
    b = args.batch
    for rep in range(args.repeats):
        wall.clear()
        cpu.clear()
        rng.shuffle(perm)
        nb = len(perm) // b
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        for k in range(nb):
            step(np.ascontiguousarray(perm[k * b : (k + 1) * b]), distinct=True)
        tw, cw = time.perf_counter_ns() - t0, time.thread_time_ns() - c0
        print(
            f"epoch {rep + 1}: batch {b}, {nb} steps: {tw / nb / 1e3:.1f} us wall, {cw / nb / 1e3:.1f} us CPU per step"
        )
        rest = (
            "Python around them (buffers, constants, numpy, dispatch)",
            tw - sum(wall.values()),
            cw - sum(cpu.values()),
        )
        for part, w, c in [*((p, wall[p], cpu[p]) for p in wall), rest]:
            print(f"   {part:58s} {w / nb / 1e3:9.1f} wall {c / nb / 1e3:9.1f} CPU us/step")
    print("load average", os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
