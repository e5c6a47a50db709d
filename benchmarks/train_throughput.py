"""Training throughput and memory benchmark (not a test; nothing is asserted).

Measures observations per second of the trainer (:class:`Trainer` over a
:class:`HybridNetwork`, v2 preset) and the peak resident memory, on a
synthetic dataset of the benchmark's shape generated here with numpy
(default: 2,000,000 observations, 5000 grid points, a 365-day state,
AMSR2 + GMI + SSMIS F17 = 17 channels), or on a twin directory (``--data``,
read with :func:`empirical_seaice.io.read_training_data`).

Each configuration runs in its own subprocess (so ``ru_maxrss`` is its own
peak) for ``--epochs`` epochs (default 6) over a random subset of ``--steps``
batches of the observations, the state keeping its full size. The median of
epochs 2 to the last is reported, with their range: from the second epoch on
every row a batch reads has been visited before (the steady state of a long
training; the first epoch touches every row for the first time), and the
median of several epochs is robust to this shared machine's speed drifting
by +-25 % over seconds. Configurations:

- the sparse scheme (DeferredAdam on the state tables) at batch 1024, 4096, 16384;
- the lazy scheme (torch SparseAdam) at batch 1024;
- per-step time as the state grows from 30 to 365 days (batch 1024);
- the dense reference mode (plain Adam over everything, full-map priors) at
  30 and 365 days, a few steps only;
- ``--only scaling``: the default step against the number of observations (0.3, 1, 3, 10 M)
  and the state size (grid of 2800, 11 190, 44 760 points, i.e. the benchmark
  twin's grid at 100, 50 and 25 km; 30 to 365 days);
- ``--only priors``: the fused step with sampled and with full whole-map priors (the whole SIC
  map stepped at every step), interleaved (``--repeat``), as the state grows from 30 to 365 days
  (batch 1024): what the full priors' pass costs per SIC-map row;
- ``--only device``: the tensor step without and with its forward pass and cost in one kernel
  (:mod:`empirical_seaice.model.fused_device`; compiled for CUDA with ``--device cuda``, else for the
  CPU), interleaved (``--repeat``), at batch 1024 and 16384: what the GPU's fused cost saves;
- ``--only fused``: the fused step alone at batch 1024 and 16384 on one and two threads
  (``--repeat`` sets, ``--epochs 6 --steps 150`` for the figures of benchmarks/results.md).
- ``--only pairs``: interleaved sets (``--repeat``) of the tensor step, the fused
  step on 1 and 2 threads at batch 1024 and 16384, and the reference-exact dense
  scheme, so that their ratios per step come from the same minutes.

Results are appended to ``benchmarks/results.md`` (``--no-write`` to skip).

Usage::

    python benchmarks/train_throughput.py                  # everything (a few minutes)
    python benchmarks/train_throughput.py --quick          # small dataset, smoke run
    python benchmarks/train_throughput.py --profile        # torch.profiler and cProfile tables of one config
    python benchmarks/train_throughput.py --profile --device cuda  # the same of the GPU's step

Each subprocess runs with the command line's OpenMP settings
(``empirical_seaice.OPENMP_ENVIRONMENT``: ``OMP_WAIT_POLICY=PASSIVE``,
``GOMP_SPINCOUNT=20000``) where the environment does not set them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from empirical_seaice import OPENMP_ENVIRONMENT

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("SEAICE_BENCH_CACHE", "/tmp/seaice_bench_cache"))
SENSORS = ("amsr2", "gmi", "ssmisf17")


# ----------------------------------------------------------------------------- data


def synthetic_arrays(nobs: int, ngrid: int, nstep: int, seed: int = 0) -> Path:
    """Write (once) a synthetic dataset as .npy files; returns its directory."""
    from empirical_seaice.all_sky import CLEAR_CLOUDY_FIELDS, all_sky_fields
    from empirical_seaice.sensors import build_channel_basis

    out = CACHE / f"obs_{nobs}_{ngrid}_{nstep}_{seed}"
    if (out / "done").is_file() and (out / "done").read_text() == "ok, all-sky":
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    basis = build_channel_basis(list(SENSORS))
    nc = basis.nchan
    f32 = np.float32
    igrid = rng.integers(0, ngrid, nobs).astype(np.int32)
    istep = rng.integers(0, nstep, nobs).astype(np.int32)
    isensor = rng.integers(0, len(SENSORS), nobs).astype(np.int16)
    arrays = {
        "igrid": igrid,
        "istep": istep,
        "isensor": isensor,
        "t_skin_k": rng.uniform(240, 275, nobs).astype(f32),
        "wind_ms": rng.uniform(0, 15, nobs).astype(f32),
        "cloud_fraction": rng.uniform(0, 1, nobs).astype(f32),
        "mask": basis.present[isensor],
    }
    for name, lo, hi in [
        ("tb_obs_k", 150, 260),
        ("emis_water", 0.4, 0.7),
        ("tau", 0.5, 1.0),
        ("t_down_k", 10, 80),
        ("t_up_k", 10, 80),
        ("tau_cld", 0.3, 0.9),
        ("t_down_cld_k", 20, 120),
        ("t_up_cld_k", 20, 120),
    ]:
        arrays[name] = rng.uniform(lo, hi, (nobs, nc)).astype(f32)
    columns = {name: arrays.pop(name) for name in CLEAR_CLOUDY_FIELDS}  # stored folded, as the reader does
    arrays |= all_sky_fields(**columns, cloud_fraction=arrays["cloud_fraction"])
    for name, arr in arrays.items():
        np.save(out / f"{name}.npy", arr)
    np.save(out / "sic_bg.npy", rng.uniform(0, 1, (ngrid, nstep + 1)).astype(f32))
    np.save(out / "tmap.npy", rng.uniform(250, 275, (ngrid, nstep)).astype(f32))
    (out / "done").write_text("ok, all-sky")
    return out


def load_synthetic(path: Path, nobs: int, ngrid: int, nstep: int):
    from empirical_seaice.observations import BackgroundMaps, Observations
    from empirical_seaice.sensors import build_channel_basis

    a = {p.stem: np.load(p, mmap_mode="r") for p in path.glob("*.npy")}
    f32 = np.float32
    obs = Observations(
        igrid=a["igrid"],
        istep=a["istep"],
        isensor=a["isensor"],
        t_skin_k=a["t_skin_k"],
        wind_ms=a["wind_ms"],
        cloud_fraction=a["cloud_fraction"],
        zenith_deg=np.zeros(nobs, f32),
        julian_day=np.zeros(nobs),
        obs_index=np.zeros(nobs, np.int64),
        tb_obs_k=a["tb_obs_k"],
        mask=a["mask"],
        emis_water=a["emis_water"],
        tau_eff=a["tau_eff"],
        down_eff_k=a["down_eff_k"],
        const_k=a["const_k"],
        basis=build_channel_basis(list(SENSORS)),
        ngrid=ngrid,
        nstep=nstep,
        jd_origin=2459000.0,
    )
    bg = BackgroundMaps(sic=np.asarray(a["sic_bg"]), t_skin_map_k=np.asarray(a["tmap"]), nlag=1)
    return obs, bg


# ----------------------------------------------------------------------------- one configuration


def run_one(cfg: dict) -> dict:
    """Train one configuration for one epoch of ``steps`` batches; returns the measurements."""
    import torch

    from empirical_seaice.config import TrainingConfig, get_preset
    from empirical_seaice.run.factory import build_network, build_trainer
    from empirical_seaice.training.fused_step import set_threads
    from empirical_seaice.training.runtime import make_generator

    torch.set_num_threads(cfg["threads"])
    set_threads(cfg["threads"])  # numba's too: the one-kernel cost on the CPU runs on them
    t0 = time.perf_counter()
    if cfg.get("data"):
        from empirical_seaice.config import DataConfig
        from empirical_seaice.io import read_training_data

        obs, bg = read_training_data(DataConfig(data=Path(cfg["data"]), sensors=SENSORS), nlag=1)
    else:
        path = synthetic_arrays(cfg["nobs"], cfg["ngrid"], cfg["nstep_data"])
        obs, bg = load_synthetic(path, cfg["nobs"], cfg["ngrid"], cfg["nstep_data"])
    nstep = cfg["nstep"]
    if nstep < obs.nstep:  # a shorter state: keep the observations of the first nstep days
        keep = np.nonzero(np.asarray(obs.istep) < nstep)[0]
        obs = replace(obs.take(keep), nstep=nstep)
        bg = replace(bg, sic=bg.sic[:, : nstep + 1], t_skin_map_k=bg.t_skin_map_k[:, :nstep])
    preset = get_preset("v2")
    device = torch.device(cfg["device"])
    gen = make_generator(0)
    bs = cfg["batch"]
    ntrain = min(obs.nobs, cfg["steps"] * bs)
    train_index = np.sort(torch.randperm(obs.nobs, generator=gen)[:ntrain].numpy())
    # the run's factory: the same network, tensors and trainer as training and retrieval
    # (row counts over every observation, as J_b / nobs of the whole dataset)
    built = build_network(
        obs,
        bg,
        preset.model,
        preset.cost,
        optimizer=cfg["optimizer"],
        generator=gen,
        device=device,
        prior_mode=cfg.get("map_priors"),
    )
    net = built.network
    t_setup = time.perf_counter() - t0
    nepochs = int(cfg.get("epochs", 2))
    tcfg = TrainingConfig(
        nepochs=nepochs,
        batch_size=bs,
        optimizer=cfg["optimizer"],
        device=cfg["device"],
        fused_step=bool(cfg.get("fused", True)),
        map_priors=cfg.get("map_priors"),
    )
    trainer = build_trainer(net, built, tcfg, train_index=train_index, generator=gen, progress=False)
    if cfg.get("device_cost"):  # the tensor step with its forward pass and cost in one kernel
        trainer.device_cost_target = cfg["device_cost"]
    cpu0 = time.process_time()
    if cfg.get("profile"):
        hist = _profiled_fit(trainer, device)
    else:
        hist = trainer.fit()
    cpu_epoch_s = (time.process_time() - cpu0) / nepochs  # steps + epoch-end work (permutation, flush)
    nsteps = len(hist.batch_size) // nepochs
    # steady state: the median epoch from the second on (this machine's speed drifts by +-25 %
    # from second to second; the median of several epochs is what a long training sees)
    steady = slice(1, None) if nepochs > 1 else slice(None)
    walls = np.asarray(hist.epoch_wall_s[steady])
    k = int(np.argsort(walls)[len(walls) // 2])  # the median epoch (the upper one of an even count)
    wall_s, cpu_s = float(walls[k]), float(np.asarray(hist.epoch_cpu_s[steady])[k])
    state_rows = net.state.ngrid * net.state.ncol + sum(
        t.weight.shape[0] for t in (net.state.props_grid, net.state.props_obs) if t is not None
    )
    state_values = sum(p.numel() for p in net.sparse_parameters())
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return {
        **cfg,
        "nstep": obs.nstep,
        "ngrid": obs.ngrid,
        "nobs_data": obs.nobs,
        "nchan": obs.nchan,
        "state_rows": int(state_rows),
        "state_values": int(state_values),
        "steps_done": nsteps,
        "epochs": nepochs,
        "obs_per_s": int(hist.batch_size.sum()) / nepochs / wall_s,
        "first_epoch_ms_per_step": 1000 * hist.epoch_wall_s[0] / nsteps,
        "ms_per_step": 1000 * wall_s / nsteps,
        "ms_per_step_min": 1000 * float(walls.min()) / nsteps,
        "ms_per_step_max": 1000 * float(walls.max()) / nsteps,
        "cpu_ms_per_step": 1000 * cpu_s / nsteps,
        "cpu_obs_per_s": int(hist.batch_size.sum()) / nepochs / cpu_s if cpu_s > 0 else 0.0,
        "cpu_epoch_end_s": cpu_epoch_s - sum(hist.epoch_cpu_s) / nepochs,
        "setup_s": t_setup,
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_peak_mib": peak,
        "final_total": hist.epoch_terms[-1]["total"],
        "fused_used": bool(getattr(trainer, "_fused", None)) and not cfg.get("device_cost"),
        "device_cost_used": bool(getattr(trainer, "_device", None)),
    }


def _profiled_fit(trainer, device):
    """``trainer.fit()`` under torch.profiler (the ATen operations, and on CUDA the kernels), then the
    same number of epochs again under cProfile (the Python functions: what a launch-bound step spends its
    CPU time in), both tables to stderr; returns the first fit's history."""
    import cProfile
    import io
    import pstats

    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities, record_shapes=True) as prof:
        hist = trainer.fit()
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages(group_by_input_shape=True).table(sort_by=sort, row_limit=30), file=sys.stderr)
    if cuda:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30), file=sys.stderr)
    trainer.config = replace(trainer.config, nepochs=2 * trainer.config.nepochs)  # as many epochs again
    profiler = cProfile.Profile()
    profiler.runcall(trainer.fit)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
    print(text.getvalue(), file=sys.stderr)
    return hist


def spawn(cfg: dict) -> dict:
    """Run one configuration in a fresh interpreter (its own peak memory)."""
    # the command line's OpenMP settings where the caller has not set them (read when OpenMP starts)
    env = {**OPENMP_ENVIRONMENT, **os.environ}
    proc = subprocess.run(
        ["nice", "-n", "5", sys.executable, __file__, "--one", json.dumps(cfg)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"configuration {cfg} failed (exit {proc.returncode})")
    if cfg.get("profile"):
        print(proc.stderr, file=sys.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--data", help="twin directory to read instead of generating a dataset")
    ap.add_argument("--nobs", type=int, default=2_000_000)
    ap.add_argument("--ngrid", type=int, default=5000)
    ap.add_argument("--nstep", type=int, default=365)
    ap.add_argument("--steps", type=int, default=300, help="batches per configuration")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op and numba threads (the CLI's default: the CPUs the process may use)",
    )
    ap.add_argument(
        "--epochs",
        type=int,
        default=6,
        help="epochs over the configuration's batches; the median of the second to last is reported "
        "(from the second on, every row a batch reads has been visited before: the steady state)",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="200k observations, 60 steps (smoke run)")
    ap.add_argument("--profile", action="store_true", help="profile the sparse scheme at batch 1024 and exit")
    ap.add_argument(
        "--only",
        default="",
        help="comma list of parts: batch,lazy,growth,dense,pairs,fused,device,scaling,priors",
    )
    ap.add_argument("--no-write", action="store_true", help="do not append to benchmarks/results.md")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved sets of the 'pairs' part")
    return ap


def _step_kind(r: dict) -> str:
    """The step that trained: the fused one, the tensor step with its one-kernel cost, or the tensor step."""
    if r.get("device_cost_used"):
        return f"tensor+kernel({r['device_cost']})"
    return "fused" if r.get("fused_used") else "tensor"


def _print_result(r: dict) -> None:
    print(
        f"{r['optimizer']:6s} {_step_kind(r)} {r.get('map_priors') or ''} "
        f"batch {r['batch']:5d} "
        f"nstep {r['nstep']:3d} threads {r['threads']}: "
        f"{r['obs_per_s']:10.0f} obs/s {r['ms_per_step']:8.2f} ms/step "
        f"(epochs {r['ms_per_step_min']:.2f}-{r['ms_per_step_max']:.2f}; CPU {r['cpu_ms_per_step']:7.2f} ms, "
        f"first epoch {r['first_epoch_ms_per_step']:.2f} ms, "
        f"{r['cpu_obs_per_s']:8.0f} obs/CPU-s, epoch end {r['cpu_epoch_end_s']:.2f} CPU-s)  "
        f"maxrss {r['maxrss_mib']:7.0f} MiB "
        f"(state {r['state_values'] / 1e6:.2f} M values, {r['steps_done']} steps)",
        flush=True,
    )


def _priors_configurations(args) -> list[dict]:
    """Part "priors": sampled and full whole-map priors, interleaved, at 30 to ``--nstep`` days."""
    todo: list[dict] = []
    for _ in range(args.repeat):
        for n in (30, 90, 180, args.nstep):
            todo += [dict(nstep=n, map_priors=m, steps=min(args.steps, 150)) for m in ("sampled", "full")]
    return todo


def _step_sets(parts: set[str], args) -> list[dict]:
    """The interleaved per-step sets (``pairs``, ``fused``), ``--repeat`` times each."""
    todo: list[dict] = []
    if "pairs" in parts:  # interleaved tensor / fused / reference-exact sets, the same minutes
        for _ in range(args.repeat):
            todo += [
                dict(fused=False),
                dict(fused=True),
                dict(fused=True, threads=2),
                dict(fused=True, batch=16384, steps=max(args.steps // 16, 20)),
                dict(fused=True, batch=16384, steps=max(args.steps // 16, 20), threads=2),
                dict(optimizer="dense-adam", steps=20, epochs=3),
            ]
    if "device" in parts:  # the tensor step with and without the one-kernel cost (model.fused_device)
        target = "cuda" if args.device.startswith("cuda") else "cpu"
        for _ in range(args.repeat):
            for batch, steps in ((1024, args.steps), (16384, max(args.steps // 16, 20))):
                todo += [
                    dict(fused=False, batch=batch, steps=steps),
                    dict(fused=True, device_cost=target, batch=batch, steps=steps),
                ]
    if "fused" in parts:  # the fused step alone: batch 1024 and 16384, one and two threads
        for _ in range(args.repeat):
            todo += [
                dict(fused=True),
                dict(fused=True, threads=2),
                dict(fused=True, batch=16384, steps=max(args.steps // 5, 20)),
                dict(fused=True, batch=16384, steps=max(args.steps // 5, 20), threads=2),
            ]
    return todo


def _configurations(parts: set[str], args) -> list[dict]:
    """The configurations of the selected parts, as overrides of the base configuration."""
    todo: list[dict] = _step_sets(parts, args)
    if "scaling" in parts:  # the default (fused) step vs observations and state size, batch 1024
        todo += [dict(nobs=n) for n in (300_000, 1_000_000, 3_000_000, 10_000_000)]
        todo += [dict(ngrid=g) for g in (2_800, 11_190, 44_760)]  # the benchmark twin's grid at 100, 50, 25 km
        todo += [dict(nstep=n) for n in (30, 90, 180)]
    if "priors" in parts:  # the fused step with sampled and with full whole-map priors, interleaved, vs state size
        todo += _priors_configurations(args)
    if "batch" in parts:
        for b in (1024, 4096, 16384):
            todo.append(dict(batch=b, steps=args.steps if b == 1024 else max(args.steps // (b // 1024), 20)))
    if "lazy" in parts:
        todo.append(dict(optimizer="sparse-adam"))
    if "growth" in parts:
        todo += [dict(nstep=n, steps=min(args.steps, 150)) for n in (30, 90, 180, args.nstep)]
    if "dense" in parts:
        todo += [dict(optimizer="dense-adam", nstep=n, steps=20) for n in (30, args.nstep)]
    return todo


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return 0
    if args.quick:
        args.nobs, args.steps = 200_000, 60
    base = dict(
        nobs=args.nobs,
        ngrid=args.ngrid,
        nstep_data=args.nstep,
        nstep=args.nstep,
        steps=args.steps,
        threads=args.threads,
        device=args.device,
        batch=1024,
        optimizer="deferred-adam",
        data=args.data,
        epochs=args.epochs,
    )
    if args.profile:  # on CUDA the step that trains there: the tensor step with the one-kernel cost
        gpu = dict(fused=True, device_cost="cuda") if args.device.startswith("cuda") else {}
        spawn({**base, "steps": min(args.steps, 100), "profile": True, **gpu})
        return 0
    parts = set(args.only.split(",")) if args.only else {"batch", "lazy", "growth", "dense"}
    results = []
    for kw in _configurations(parts, args):
        results.append(spawn({**base, **kw}))
        _print_result(results[-1])
    if not args.no_write:
        write_results(results, args)
    return 0


def _scheme(r: dict) -> str:
    """The optimiser, with the whole-map prior mode where the configuration named one, and the step."""
    step = ""
    if r.get("device_cost"):
        step = (
            f", tensor step + one-kernel cost ({r['device_cost']}{'' if r.get('device_cost_used') else ': not used'})"
        )
    elif r.get("fused") is False:
        step = ", tensor step"
    return r["optimizer"] + (f", {r['map_priors']} priors" if r.get("map_priors") else "") + step


def _openmp_settings() -> str:
    """The OpenMP settings the subprocesses ran with."""
    env = {**OPENMP_ENVIRONMENT, **os.environ}
    return " ".join(f"{k}={env[k]}" for k in OPENMP_ENVIRONMENT)


def write_results(results: list[dict], args) -> None:
    load = os.getloadavg()
    import torch

    lines = [
        "",
        f"## Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs visible, torch {torch.__version__}, "
        f"load average {load[0]:.1f} (shared machine), `--threads {args.threads}`, "
        f"OpenMP {_openmp_settings()}, "
        f"device {args.device}. "
        f"Data: {'twin ' + args.data if args.data else 'synthetic'} "
        f"{max(r['nobs_data'] for r in results):,} observations "
        f"(fewer in the shorter states: those of their days), "
        f"{results[0]['ngrid']} grid points, {results[0]['nchan']} channels, v2 preset.",
        "",
        f"{args.epochs} epochs over each configuration's batches; the median of epochs 2-{args.epochs} is reported, "
        "with the range of those epochs (first-epoch ms/step for reference).",
        "",
        "| scheme | batch | state days | state values | steps | obs/s (wall) | ms/step (wall) | epochs 2+ ms/step | "
        "CPU ms/step | obs per CPU-s | first epoch ms/step | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {_scheme(r)} | {r['batch']} | {r['nstep']} | {r['state_values']:,} | {r['steps_done']} | "
            f"{r['obs_per_s']:,.0f} | {r['ms_per_step']:.2f} | {r['ms_per_step_min']:.2f}-{r['ms_per_step_max']:.2f} | "
            f"{r['cpu_ms_per_step']:.2f} | {r['cpu_obs_per_s']:,.0f} | "
            f"{r['first_epoch_ms_per_step']:.2f} | "
            f"{r['maxrss_mib']:,.0f} |"
        )
    with open(HERE / "results.md", "a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
