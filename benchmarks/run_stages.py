"""Time every stage of a whole ``seaice-training`` run and its peak memory (a benchmark; nothing is asserted).

Runs the CLI in this process (``empirical_seaice.cli.main``) with the given
arguments, wrapping the functions that make up each stage with timers, and
reads the process's peak resident memory (``VmHWM``) at the end of each stage:

    read and cache        io.read_training_data (NetCDF or the .npy cache)
    build                 network and packed observation tensors (the rest up to the first simulation)
    initial diagnostics   simulate every observation, initial cost, tbsim_initial
    training              Trainer.fit
    save model            model, state and history files
    final diagnostics     simulate, departures, tbobs/tbsim/ice_emis/truth, tbzero
    gridded product       products: gridded emissivity inputs and file
    classic algorithms    products: classic SIC maps and file
    export, plots         products (only when asked for)

Each stage's observations per second is the run's number of observations over the
stage's wall time. Usage (the ``benchmark`` twin generated once under /tmp)::

    seaice-twin --output /tmp/bench_twin --preset benchmark
    python benchmarks/run_stages.py -- --data /tmp/bench_twin --output /tmp/bench_out --threads 1 --nepochs 1

Prints one Markdown table row per stage and a JSON line (``--json FILE`` writes it).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path


def _hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Stages:
    """Named wall-time intervals (a stage may be entered several times: the times add up)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self.peak_mib: dict[str, float] = {}
        self.marks: dict[str, float] = {}
        self.active: list[str] = []

    def wrap(self, owner, name: str, stage: str, first_only: bool = False) -> None:
        fn = getattr(owner, name)
        calls = {"n": 0}

        @functools.wraps(fn)
        def timed(*a, **k):
            calls["n"] += 1
            if (first_only and calls["n"] > 1) or self.active:  # nested: the outer stage counts
                return fn(*a, **k)
            self.active.append(stage)
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.active.pop()
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t
                self.peak_mib[stage] = _hwm_mib()
                self.marks[stage + ":end"] = time.perf_counter()

        setattr(owner, name, timed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, default=None, help="write the measurements here")
    ap.add_argument("cli", nargs=argparse.REMAINDER, help="seaice-training arguments (after --)")
    args = ap.parse_args(argv)
    cli_args = [a for a in args.cli if a != "--"]

    import empirical_seaice.io as io
    from empirical_seaice import cli
    from empirical_seaice.products import classic, gridded, gridded_file, plots
    from empirical_seaice.products import write as pw
    from empirical_seaice.products.diagnostics import simulate  # noqa: F401 - the module is patched below
    from empirical_seaice.run import train
    from empirical_seaice.training.trainer import Trainer

    st = Stages()
    st.wrap(io, "read_training_data", "read and cache")
    diag = train.diag
    st.wrap(diag, "simulate", "initial diagnostics", first_only=True)
    st.wrap(train, "_full_cost", "initial diagnostics", first_only=True)
    st.wrap(train.out, "write_tb", "initial diagnostics", first_only=True)
    st.wrap(Trainer, "fit", "training")
    st.wrap(train, "_save_model", "save model")
    st.wrap(train, "final_diagnostics", "final diagnostics")
    st.wrap(pw, "write_export", "export")
    st.wrap(gridded, "grid_inputs", "gridded product")
    st.wrap(gridded_file, "write_gridded_emissivity", "gridded product")
    st.wrap(classic, "classic_sic_maps", "classic algorithms")
    st.wrap(classic, "write_classic_sic", "classic algorithms")
    st.wrap(plots, "make_plots", "plots")
    nobs = {}
    orig_read = io.read_training_data

    def read_and_count(*a, **k):
        obs, bg = orig_read(*a, **k)
        nobs["n"] = obs.nobs
        return obs, bg

    io.read_training_data = read_and_count
    t_start = time.perf_counter()
    rc = cli.main(cli_args)
    total = time.perf_counter() - t_start
    # tbzero is simulated after final_diagnostics returns: count it with the final diagnostics
    accounted = sum(st.seconds.values())
    n = nobs.get("n", 0)
    rows = []
    order = [
        "read and cache",
        "initial diagnostics",
        "training",
        "save model",
        "final diagnostics",
        "gridded product",
        "classic algorithms",
        "export",
        "plots",
    ]
    for name in order:
        if name in st.seconds:
            s = st.seconds[name]
            rows.append((name, s, n / s if s > 0 else float("inf"), st.peak_mib[name]))
    rows.append(("other (build, tbzero, summary, writes)", total - accounted, float("nan"), float("nan")))
    print(f"| stage | wall s | obs/s | peak RSS so far (MiB) |  ({n:,} observations, exit {rc})")
    print("|---|---:|---:|---:|")
    for name, s, rate, peak in rows:
        print(f"| {name} | {s:.1f} | {rate:,.0f} | {peak:,.0f} |")
    print(f"| whole run | {total:.1f} | {n / total:,.0f} | {_hwm_mib():,.0f} |")
    record = {
        "nobs": n,
        "total_s": total,
        "stages": {k: {"s": v, "peak_mib": st.peak_mib[k]} for k, v in st.seconds.items()},
        "peak_mib": _hwm_mib(),
        "argv": cli_args,
    }
    print(json.dumps(record))
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
    return rc


if __name__ == "__main__":
    sys.exit(main())
