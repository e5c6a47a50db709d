"""Scaling of sharded training over processes (not a test; nothing is asserted).

Runs ``seaice-training --trainonly`` on a twin directory (default: the ``demo``
twin, 142,000 observations of AMSR2 + GMI + SSMIS F17 on 2823 grid points x 30
days, generated once into the benchmark cache) as

- one plain process (no torchrun),
- ``torchrun --nproc-per-node 1 --distributed`` (the sharded code path, one rank),
- ``torchrun --nproc-per-node 2`` with the global batch order (the default) and
  with ``--shard-order local``,
- one plain process and 2 ranks with the tensor step (``--unfused-step``; what a sharded run
  on CUDA takes) beside them,

each with ``--threads 1``, batch 1024, ``--epochs`` epochs (default 6). Reported
per run: the median over epochs 2..N of the epoch's step time (rank 0's books),
as ms per global step and observations per second; the time each rank spent in
the gradient all-reduce (including waiting for the other rank); each rank's
peak resident memory. Then micro-measurements for the estimate in
``docs/scaling.md``: the latency of one all-reduce of the shared parameters
(2 processes, gloo), the cost per row of the deferred-Adam catch-up at the
epoch end (``DeferredAdam.flush``), and the cost per observation of the global
batch order (``ShardPlan.epoch_batches``) per epoch.

Usage::

    python benchmarks/distributed_scaling.py [--data TWIN] [--epochs 6] [--no-write]

Results are appended to ``benchmarks/results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
CACHE = Path(os.environ.get("SEAICE_BENCH_CACHE", "/tmp/seaice_bench_cache"))

WRAPPER = r"""
import json, os, resource, sys, time
from empirical_seaice.training import distributed as tdist
comm = [0.0, 0]
def timed(reduce):
    def call(self, arg):
        t = time.perf_counter(); reduce(self, arg); comm[0] += time.perf_counter() - t; comm[1] += 1
    return call
tdist.ShardPlan.reduce_gradients = timed(tdist.ShardPlan.reduce_gradients)  # the tensor step's
tdist.ShardPlan.reduce_arrays = timed(tdist.ShardPlan.reduce_arrays)  # the fused step's
from empirical_seaice import cli
code = cli.main(sys.argv[2:])
rank = os.environ.get("RANK", "0")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
    json.dump({"rank": int(rank), "maxrss_mb": peak, "comm_s": comm[0], "ncomm": comm[1]}, f)
sys.exit(code)
"""

MICRO = r"""
import json, os, sys, time
import numpy as np, torch, torch.distributed as dist
torch.set_num_threads(1)
dist.init_process_group("gloo")
n = int(sys.argv[2])
x = torch.zeros(n)
for _ in range(200):
    dist.all_reduce(x)
dist.barrier()
t = time.perf_counter()
for _ in range(3000):
    dist.all_reduce(x)
latency = (time.perf_counter() - t) / 3000
if dist.get_rank() == 0:
    with open(sys.argv[1], "w") as f:
        json.dump({"allreduce_s": latency, "nfloat": n}, f)
dist.destroy_process_group()
"""


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(SRC), e.get("PYTHONPATH", "")])
    e["OMP_NUM_THREADS"] = "1"
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        e.pop(name, None)
    return e


def demo_twin() -> Path:
    out = CACHE / "demo_twin"
    if not (out / "truth").is_dir():
        subprocess.run(
            [sys.executable, "-m", "empirical_seaice.twin.cli", "--preset", "demo", "--output", str(out)],
            env=env(),
            check=True,
        )
    return out


def run_training(
    name: str, data: Path, work: Path, nproc: int | None, extra: list[str], epochs: int, batch: int
) -> dict:
    """One training run; returns its timing and memory."""
    out = work / f"{name}-{batch}"
    out.mkdir(parents=True, exist_ok=True)
    wrapper = work / "wrapper.py"
    wrapper.write_text(WRAPPER)
    flags = ["--data", str(data), "--output", str(out / "run"), "--tag", "b", "--trainonly", "--no-progress"]
    flags += ["--threads", "1", "--device", "cpu", "--batchsize", str(batch), "--nepochs", str(epochs)]
    # the sampled whole-map priors in every run: one process would take the exact ones on this small map
    # (--map-priors auto), which a sharded run does not have
    flags += ["--learning-rate", "2e-3", "--ice-emis-init", "0.9", "--map-priors", "sampled", *extra]
    launch = [sys.executable]
    if nproc is not None:
        launch += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    r = subprocess.run([*launch, str(wrapper), str(out), *flags], env=env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{r.stderr[-3000:]}")
    import torch

    ckpt = torch.load(out / "run" / "model_b.pt", weights_only=True)
    h = ckpt["history"]
    nobs = int(ckpt["nobs_train"])
    nsteps = int(h["batch_size"].numel()) // len(h["epoch_wall_s"])
    steady = sorted(h["epoch_wall_s"][1:]) or list(h["epoch_wall_s"])
    med = float(np.median(steady))
    cpu = float(np.median(h["epoch_cpu_s"][1:] or h["epoch_cpu_s"]))
    ranks = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
    return {
        "name": name,
        "batch": batch,
        "nproc": nproc or 1,
        "nobs": nobs,
        "steps_per_epoch": nsteps,
        "epoch_s_median": med,
        "epoch_s_range": (min(steady), max(steady)),
        "ms_per_step": 1e3 * med / nsteps,
        "obs_per_s": nobs / med,
        "comm_ms_per_step": [1e3 * x["comm_s"] / max(x["ncomm"], 1) for x in ranks],
        "maxrss_mb": [x["maxrss_mb"] for x in ranks],
        "process_wall_s": wall,
        "cpu_ms_per_step": 1e3 * cpu / nsteps,
        "load_before": load,
    }


def micro_allreduce(work: Path, nfloat: int) -> float:
    script, result = work / "micro.py", work / "micro.json"
    script.write_text(MICRO)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    subprocess.run([*launch, str(script), str(result), str(nfloat)], env=env(), check=True, capture_output=True)
    return float(json.loads(result.read_text())["allreduce_s"])


def micro_rows_and_order(nrow: int = 4_000_000, nobs: int = 4_000_000) -> dict:
    """Per-row cost of DeferredAdam.flush (every row caught up) and per-observation cost of the global order."""
    import torch
    import torch.distributed as dist

    sys.path.insert(0, str(SRC))
    from empirical_seaice.training.deferred_adam import DeferredAdam
    from empirical_seaice.training.distributed import ShardPlan

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    tables = [torch.nn.Parameter(torch.rand(nrow, 1, generator=g)), torch.nn.Parameter(torch.rand(nrow, 2))]
    opt = DeferredAdam(tables)
    for p in tables:  # one gradient on every row, then a step elsewhere: every row is one step behind
        p.grad = torch.ones_like(p)
    opt.step()
    for p in tables:
        p.grad = None
    opt.step()
    t = time.perf_counter()
    opt.flush()
    flush_s_per_row = (time.perf_counter() - t) / (2 * nrow)

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29000 + os.getpid() % 1000))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        g2l = np.where(np.arange(nobs) % 2 == 0, np.arange(nobs) // 2, -1)  # half the observations are ours
        plan = ShardPlan(torch.device("cpu"), global_to_local=g2l)
        perm = torch.randperm(nobs, generator=g)
        t = time.perf_counter()
        plan.epoch_batches(perm, 1024)
        order_s_per_obs = (time.perf_counter() - t) / nobs
        t = time.perf_counter()
        torch.randperm(nobs, generator=g)
        perm_s_per_obs = (time.perf_counter() - t) / nobs
    finally:
        dist.destroy_process_group()
    return {"flush_s_per_row": flush_s_per_row, "order_s_per_obs": order_s_per_obs, "perm_s_per_obs": perm_s_per_obs}


def shared_parameter_count() -> int:
    sys.path.insert(0, str(SRC))
    from empirical_seaice.config import get_preset
    from empirical_seaice.model.emissivity import NetworkEmissivity
    from empirical_seaice.sensors import build_channel_basis

    preset = get_preset("v2")
    basis = build_channel_basis(list(preset.sensors))
    m = preset.model
    net = NetworkEmissivity(m.nprop_grid + m.nprop_obs, basis, m.hidden, m.freq_scale_ghz)
    return sum(p.numel() for p in net.parameters()) + basis.nchan + 2 * len(basis.sensor_names) * basis.nchan


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="twin directory (default: the demo twin, made once)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, nargs="+", default=[1024, 8192], help="global batch sizes")
    ap.add_argument("--no-write", action="store_true", help="do not append to benchmarks/results.md")
    args = ap.parse_args(argv)
    data = args.data or demo_twin()
    results = []
    with tempfile.TemporaryDirectory(prefix="seaice_dist_") as tmp:
        work = Path(tmp)
        for batch in args.batch:
            for name, nproc, extra in (
                ("1 process (plain)", None, []),
                ("1 rank (torchrun, --distributed)", 1, ["--distributed"]),
                ("2 ranks, global order", 2, []),
                ("2 ranks, --shard-order local", 2, ["--shard-order", "local"]),
                ("1 process, tensor step", None, ["--unfused-step"]),
                ("2 ranks, global order, tensor step", 2, ["--unfused-step"]),
            ):
                results.append(run_training(name, data, work, nproc, extra, args.epochs, batch))
                print(json.dumps(results[-1]), flush=True)
        nshared = shared_parameter_count()
        latency = micro_allreduce(work, nshared)
    micro = micro_rows_and_order()
    micro.update(allreduce_s=latency, nshared=nshared)
    print(json.dumps(micro), flush=True)
    if not args.no_write:
        write_results(results, micro, data)
    return 0


def write_results(results: list[dict], micro: dict, data: Path) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "",
        f"## Sharded training over processes ({stamp}, `benchmarks/distributed_scaling.py`)",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} CPU cores, shared with other agents' work while measured "
        f"(1-minute load average before each run in the table); CPU only, gloo, 1 torch thread per process. "
        f"Data: `{data.name}` "
        f"({results[0]['nobs']:,} observations), median of epochs 2..N (range in brackets). CPU ms per step is "
        "the process CPU time of rank 0 (all its threads) per step: the work of a rank, which a loaded machine "
        "stretches less than the wall time.",
        "",
        "| run | batch | load average before | ms per global step | obs/s | CPU ms per step, rank 0 "
        "| all-reduce per step, each rank (ms) | peak memory per rank (MB) |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        lo, hi = r["epoch_s_range"]
        ms_lo, ms_hi = 1e3 * lo / r["steps_per_epoch"], 1e3 * hi / r["steps_per_epoch"]
        comm = " / ".join(f"{x:.2f}" for x in r["comm_ms_per_step"]) if r["nproc"] > 1 else "-"
        mem = " / ".join(f"{x:.0f}" for x in r["maxrss_mb"])
        step = f"{r['ms_per_step']:.2f} ({ms_lo:.2f}-{ms_hi:.2f})"
        lines.append(
            f"| {r['name']} | {r['batch']} | {r['load_before']:.1f} | {step} | {r['obs_per_s']:,.0f} "
            f"| {r['cpu_ms_per_step']:.2f} | {comm} | {mem} |"
        )
    lines += [
        "",
        f"Micro-measurements: one all-reduce of the {micro['nshared']} shared parameters (2 processes, gloo, "
        f"localhost) {1e6 * micro['allreduce_s']:.0f} us; `DeferredAdam.flush` {1e9 * micro['flush_s_per_row']:.1f} "
        f"ns per state row; the global batch order {1e9 * micro['order_s_per_obs']:.1f} ns per observation of the "
        f"run per epoch and rank (plus the permutation itself, {1e9 * micro['perm_s_per_obs']:.1f} ns).",
        "",
    ]
    with open(HERE / "results.md", "a") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
